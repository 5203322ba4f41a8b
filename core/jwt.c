/* jwt: parsing and verification of compact JWS tokens (see jwt.h).
 *
 * Bounds: a token longer than JWT_MAX_TOKEN is malformed before anything is
 * decoded; header and payload are decoded into stack buffers and parsed with
 * jansson (duplicate keys rejected, so a claim cannot have two values). The
 * signature is compared by OpenSSL (EVP_DigestVerify) or, for HMAC, with
 * CRYPTO_memcmp. Keys are built on the main thread (start-up, reload) and are
 * read-only afterwards; verification may run on any thread at once. */
#include "core/jwt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "core/buf.h"
#include "core/digest.h"

/* ---- base64url ---- */

static int8_t b64v(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return (int8_t)(ch - 'A');
    if (ch >= 'a' && ch <= 'z') return (int8_t)(ch - 'a' + 26);
    if (ch >= '0' && ch <= '9') return (int8_t)(ch - '0' + 52);
    if (ch == '-') return 62;
    if (ch == '_') return 63;
    return -1;
}

long jwt_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4 == 1)
        return -1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int8_t v = b64v((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;   /* non-canonical: leftover bits must be zero */
    return (long)o;
}

/* ---- keys ---- */

static jwt_key_t *key_add(jwt_keyset_t *ks, const char *kid)
{
    if (ks->n == ks->cap) {
        jwt_key_t *k = buf_array_grow(ks->keys, &ks->cap, sizeof *k, 4);
        if (!k)
            return NULL;
        ks->keys = k;
    }
    jwt_key_t *k = &ks->keys[ks->n];
    memset(k, 0, sizeof *k);
    snprintf(k->kid, sizeof k->kid, "%s", kid ? kid : "");
    return k;
}

int jwt_keyset_add_secret(jwt_keyset_t *ks, const char *kid, const void *secret, size_t len)
{
    jwt_key_t *k = key_add(ks, kid);
    if (!k || !(k->secret = malloc(len ? len : 1)))
        return -ENOMEM;
    memcpy(k->secret, secret, len);
    k->secret_len = len;
    k->alg = JWT_HS256;
    ks->n++;
    return 0;
}

/* The algorithm a public key may verify: RSA (2048 bits or more) -> RS256,
 * EC on P-256 -> ES256; anything else is refused. */
static jwt_alg_t pkey_alg(EVP_PKEY *pk, char *err, size_t errlen)
{
    if (EVP_PKEY_is_a(pk, "RSA")) {
        if (EVP_PKEY_get_bits(pk) < 2048) {
            snprintf(err, errlen, "RSA key shorter than 2048 bits");
            return JWT_ALG_UNKNOWN;
        }
        return JWT_RS256;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        char group[64] = "";
        size_t gl = 0;
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &gl) &&
            (!strcmp(group, "prime256v1") || !strcmp(group, "P-256")))
            return JWT_ES256;
        snprintf(err, errlen, "EC key not on P-256 (only ES256 is supported)");
        return JWT_ALG_UNKNOWN;
    }
    snprintf(err, errlen, "unsupported key type (RSA or EC P-256 public keys only)");
    return JWT_ALG_UNKNOWN;
}

static int add_pkey(jwt_keyset_t *ks, const char *kid, EVP_PKEY *pk, char *err, size_t errlen)
{
    jwt_alg_t alg = pkey_alg(pk, err, errlen);
    if (alg == JWT_ALG_UNKNOWN) {
        EVP_PKEY_free(pk);
        return -EINVAL;
    }
    jwt_key_t *k = key_add(ks, kid);
    if (!k) {
        EVP_PKEY_free(pk);
        return -ENOMEM;
    }
    k->pkey = pk;
    k->alg = alg;
    ks->n++;
    return 0;
}

int jwt_keyset_add_pem(jwt_keyset_t *ks, const char *kid, const char *pem, size_t len, char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return -ENOMEM;
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!pk) {
        snprintf(err, errlen, "not a PEM public key (-----BEGIN PUBLIC KEY-----)");
        return -EINVAL;
    }
    return add_pkey(ks, kid, pk, err, errlen);
}

static int read_small(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            int e = errno;
            snprintf(err, errlen, "%s: %s", path, strerror(e));
            free(buf);
            close(fd);
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            snprintf(err, errlen, "%s: larger than 1 MiB", path);
            free(buf);
            close(fd);
            return -EFBIG;
        }
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

int jwt_keyset_add_pem_file(jwt_keyset_t *ks, const char *kid, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    char why[160];
    int rc = read_small(path, &text, &len, err, errlen);
    if (rc)
        return rc;
    rc = jwt_keyset_add_pem(ks, kid, text, len, why, sizeof why);
    if (rc)
        snprintf(err, errlen, "%s: %s", path, why);
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

static long b64_member(json_t *o, const char *name, uint8_t *out, size_t cap)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s ? jwt_b64url_decode(s, strlen(s), out, cap) : -1;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pk = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) > 0)
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

static EVP_PKEY *jwk_rsa(json_t *jwk)
{
    uint8_t n[1024], e[16];
    long nl = b64_member(jwk, "n", n, sizeof n), el = b64_member(jwk, "e", e, sizeof e);
    if (nl <= 0 || el <= 0)
        return NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pk = pkey_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pk;
}

static EVP_PKEY *jwk_ec(json_t *jwk)
{
    uint8_t pt[65], x[32], y[32];
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    if (!crv || strcmp(crv, "P-256"))
        return NULL;
    if (b64_member(jwk, "x", x, sizeof x) != 32 || b64_member(jwk, "y", y, sizeof y) != 32)
        return NULL;
    pt[0] = 4;
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt))
        pk = pkey_fromdata("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return pk;
}

int jwt_keyset_add_jwks(jwt_keyset_t *ks, const char *json, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "JWKS: line %d: %s", je.line, je.text);
        return -EINVAL;
    }
    json_t *keys = json_object_get(root, "keys");
    int rc = 0;
    if (!json_is_array(keys)) {
        snprintf(err, errlen, "JWKS: expected {\"keys\": [...]}");
        rc = -EINVAL;
        goto out;
    }
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk) {
        const char *kty = json_string_value(json_object_get(jwk, "kty"));
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        const char *use = json_string_value(json_object_get(jwk, "use"));
        const char *alg = json_string_value(json_object_get(jwk, "alg"));
        char why[160] = "";
        if (!kty || (use && strcmp(use, "sig")))
            continue;   /* encryption keys and unknown entries are not ours */
        if (kid && strlen(kid) >= JWT_KID_MAX) {
            snprintf(err, errlen, "JWKS: keys[%zu]: kid too long", i);
            rc = -EINVAL;
            goto out;
        }
        if (!strcmp(kty, "oct")) {
            uint8_t k[512];
            long kl = b64_member(jwk, "k", k, sizeof k);
            if (kl < 16 || (alg && strcmp(alg, "HS256"))) {
                snprintf(err, errlen, "JWKS: keys[%zu]: oct key must be HS256 with 16 to 512 bytes", i);
                rc = -EINVAL;
                goto out;
            }
            rc = jwt_keyset_add_secret(ks, kid, k, (size_t)kl);
            OPENSSL_cleanse(k, sizeof k);
        } else if (!strcmp(kty, "RSA") || !strcmp(kty, "EC")) {
            EVP_PKEY *pk = kty[0] == 'R' ? jwk_rsa(jwk) : jwk_ec(jwk);
            if (!pk) {
                snprintf(err, errlen, "JWKS: keys[%zu]: bad %s key (RSA n/e, or EC P-256 x/y)", i, kty);
                rc = -EINVAL;
                goto out;
            }
            const char *want = kty[0] == 'R' ? "RS256" : "ES256";
            if (alg && strcmp(alg, want)) {
                EVP_PKEY_free(pk);
                snprintf(err, errlen, "JWKS: keys[%zu]: alg %s is not supported for a %s key", i, want, kty);
                rc = -EINVAL;
                goto out;
            }
            rc = add_pkey(ks, kid, pk, why, sizeof why);
            if (rc)
                snprintf(err, errlen, "JWKS: keys[%zu]: %s", i, why);
        } else {
            continue;
        }
        if (rc)
            goto out;
    }
out:
    json_decref(root);
    return rc;
}

void jwt_keyset_free(jwt_keyset_t *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        if (ks->keys[i].secret) {
            OPENSSL_cleanse(ks->keys[i].secret, ks->keys[i].secret_len);
            free(ks->keys[i].secret);
        }
        EVP_PKEY_free(ks->keys[i].pkey);
    }
    free(ks->keys);
    memset(ks, 0, sizeof *ks);
}

/* ---- tokens ---- */

static json_t *decode_object(const char *p, size_t n)
{
    uint8_t buf[JWT_MAX_TOKEN];
    long len = jwt_b64url_decode(p, n, buf, sizeof buf);
    if (len <= 0)
        return NULL;
    json_t *o = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    if (o && !json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

jwt_err_t jwt_parse(const char *tok, size_t len, jwt_token_t *t)
{
    memset(t, 0, sizeof *t);
    if (len == 0 || len > JWT_MAX_TOKEN)
        return JWT_MALFORMED;
    const char *d1 = memchr(tok, '.', len);
    if (!d1)
        return JWT_MALFORMED;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return JWT_MALFORMED;
    json_t *hdr = decode_object(tok, (size_t)(d1 - tok));
    if (!hdr)
        return JWT_MALFORMED;
    jwt_err_t rc = JWT_OK;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    json_t *kid = json_object_get(hdr, "kid");
    json_t *crit = json_object_get(hdr, "crit");
    if (!alg) {
        rc = JWT_MALFORMED;
        goto out;
    }
    if (crit) {   /* RFC 7515 4.1.11: we understand no extensions */
        rc = JWT_MALFORMED;
        goto out;
    }
    t->alg = !strcmp(alg, "HS256") ? JWT_HS256 : !strcmp(alg, "RS256") ? JWT_RS256
           : !strcmp(alg, "ES256") ? JWT_ES256 : JWT_ALG_UNKNOWN;
    if (t->alg == JWT_ALG_UNKNOWN) {
        rc = JWT_UNSUPPORTED_ALG;
        goto out;
    }
    if (kid) {
        const char *k = json_string_value(kid);
        if (!k || strlen(k) >= sizeof t->kid) {
            rc = JWT_MALFORMED;
            goto out;
        }
        memcpy(t->kid, k, strlen(k) + 1);
        t->has_kid = true;
    }
    long sl = jwt_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - tok), t->sig, sizeof t->sig);
    if (sl <= 0) {
        rc = JWT_MALFORMED;
        goto out;
    }
    t->sig_len = (size_t)sl;
    t->signing_len = (size_t)(d2 - tok);
    t->claims = decode_object(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!t->claims)
        rc = JWT_MALFORMED;
out:
    json_decref(hdr);
    return rc;
}

void jwt_token_free(jwt_token_t *t)
{
    json_decref(t->claims);
    t->claims = NULL;
}

/* JOSE ES256 signatures are r || s (32 bytes each); EVP wants DER. */
static int es256_der(const uint8_t *sig, size_t len, uint8_t *der, size_t cap, size_t *out)
{
    if (len != 64)
        return -1;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return -1;
    }
    int n = i2d_ECDSA_SIG(es, NULL);
    if (n <= 0 || (size_t)n > cap) {
        ECDSA_SIG_free(es);
        return -1;
    }
    uint8_t *p = der;
    i2d_ECDSA_SIG(es, &p);
    ECDSA_SIG_free(es);
    *out = (size_t)n;
    return 0;
}

static bool sig_ok(const jwt_key_t *k, const jwt_token_t *t, const char *tok)
{
    if (k->alg == JWT_HS256) {
        uint8_t mac[DIGEST_SHA256_LEN];
        if (digest_hmac_sha256(k->secret, k->secret_len, tok, t->signing_len, mac))
            return false;
        return t->sig_len == sizeof mac && CRYPTO_memcmp(mac, t->sig, sizeof mac) == 0;
    }
    const uint8_t *sig = t->sig;
    size_t sl = t->sig_len;
    uint8_t der[80];
    if (k->alg == JWT_ES256) {
        if (es256_der(t->sig, t->sig_len, der, sizeof der, &sl))
            return false;
        sig = der;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *md = digest_sha256_md();
    bool ok = ctx && md && EVP_DigestVerifyInit(ctx, NULL, md, NULL, (EVP_PKEY *)k->pkey) == 1 &&
              EVP_DigestVerify(ctx, sig, sl, (const uint8_t *)tok, t->signing_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static bool aud_ok(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return !strcmp(json_string_value(aud), want);
    size_t i;
    json_t *v;
    if (json_is_array(aud))
        json_array_foreach(aud, i, v)
            if (json_is_string(v) && !strcmp(json_string_value(v), want))
                return true;
    return false;
}

jwt_err_t jwt_verify(const jwt_token_t *t, const char *tok, const jwt_keyset_t *ks, const jwt_checks_t *c)
{
    bool any = false, good = false;
    for (size_t i = 0; i < ks->n && !good; i++) {
        const jwt_key_t *k = &ks->keys[i];
        if (k->alg != t->alg)   /* the key's type pins the algorithm */
            continue;
        if (t->has_kid ? strcmp(k->kid, t->kid) != 0 : false)
            continue;
        any = true;
        good = sig_ok(k, t, tok);
    }
    if (!any)
        return JWT_NO_KEY;
    if (!good)
        return JWT_BAD_SIGNATURE;
    json_t *exp = json_object_get(t->claims, "exp"), *nbf = json_object_get(t->claims, "nbf");
    if (!exp)
        return JWT_NO_EXPIRY;
    if (!json_is_number(exp) || (nbf && !json_is_number(nbf)))
        return JWT_MALFORMED;
    if (json_number_value(exp) + c->leeway_s <= (double)c->now)
        return JWT_EXPIRED;
    if (nbf && json_number_value(nbf) > (double)c->now + c->leeway_s)
        return JWT_NOT_YET_VALID;
    if (c->issuer && *c->issuer) {
        const char *iss = json_string_value(json_object_get(t->claims, "iss"));
        if (!iss || strcmp(iss, c->issuer))
            return JWT_BAD_ISSUER;
    }
    if (c->audience && *c->audience && !aud_ok(json_object_get(t->claims, "aud"), c->audience))
        return JWT_BAD_AUDIENCE;
    return JWT_OK;
}

const char *jwt_err_text(jwt_err_t e)
{
    switch (e) {
    case JWT_OK: return "ok";
    case JWT_MALFORMED: return "malformed token";
    case JWT_UNSUPPORTED_ALG: return "unsupported token algorithm";
    case JWT_NO_KEY: return "no key for this token";
    case JWT_BAD_SIGNATURE: return "token signature does not verify";
    case JWT_EXPIRED: return "token expired";
    case JWT_NOT_YET_VALID: return "token not yet valid";
    case JWT_NO_EXPIRY: return "token has no exp claim";
    case JWT_BAD_ISSUER: return "token issuer not accepted";
    case JWT_BAD_AUDIENCE: return "token audience not accepted";
    }
    return "invalid token";
}
