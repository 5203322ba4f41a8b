/* jwt: tokens signed here with keys made at test time (nothing committed):
 * HS256, RS256 and ES256 verify; expiry, not-before, issuer, audience and kid
 * are enforced; alg none, algorithm confusion (HS256 keyed with the RSA public
 * key's PEM) and wrong signatures are refused; JWKS RSA/EC/oct keys load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "core/jwt.h"

static const char SECRET[] = "a-test-secret-of-32-bytes-long!!";

static size_t b64url(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = tab[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = tab[(acc << (6 - bits)) & 63];
    out[o] = 0;
    return o;
}

/* header.payload.signature, signed by sign() */
typedef size_t (*sign_fn)(const char *msg, size_t n, uint8_t *sig, void *key);

static char *make_token(const char *header, const char *payload, sign_fn sign, void *key)
{
    static char tok[4096];
    size_t o = b64url((const uint8_t *)header, strlen(header), tok);
    tok[o++] = '.';
    o += b64url((const uint8_t *)payload, strlen(payload), tok + o);
    uint8_t sig[512] = {0};
    size_t sl = sign ? sign(tok, o, sig, key) : 0;
    tok[o++] = '.';
    o += b64url(sig, sl, tok + o);
    return tok;
}

static size_t sign_hs(const char *msg, size_t n, uint8_t *sig, void *key)
{
    unsigned l = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const uint8_t *)msg, n, sig, &l);
    return l;
}

static size_t sign_pk(const char *msg, size_t n, uint8_t *sig, void *key)
{
    EVP_PKEY *pk = key;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t der[600];
    size_t dl = sizeof der;
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pk), 1);
    assert_int_equal(EVP_DigestSign(ctx, der, &dl, (const uint8_t *)msg, n), 1);
    EVP_MD_CTX_free(ctx);
    if (!EVP_PKEY_is_a(pk, "EC")) {
        memcpy(sig, der, dl);
        return dl;
    }
    const uint8_t *p = der;   /* DER -> JOSE r || s */
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    BN_bn2binpad(r, sig, 32);
    BN_bn2binpad(s, sig + 32, 32);
    ECDSA_SIG_free(es);
    return 64;
}

static char *pub_pem(EVP_PKEY *pk, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, pk);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = 0;
    *len = (size_t)n;
    BIO_free(b);
    return out;
}

static EVP_PKEY *rsa_key, *ec_key;

static int setup(void **state)
{
    rsa_key = EVP_RSA_gen(2048);
    ec_key = EVP_EC_gen("P-256");
    return rsa_key && ec_key ? 0 : -1;
}

static int teardown(void **state)
{
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(ec_key);
    return 0;
}

static jwt_err_t check(const char *tok, const jwt_keyset_t *ks, const jwt_checks_t *c)
{
    jwt_token_t t;
    jwt_err_t e = jwt_parse(tok, strlen(tok), &t);
    if (e == JWT_OK)
        e = jwt_verify(&t, tok, ks, c);
    jwt_token_free(&t);
    return e;
}

static char payload[512];
static const char *claims(long exp_off, long nbf_off, const char *extra)
{
    long now = (long)time(NULL);
    snprintf(payload, sizeof payload, "{\"sub\":\"u1\",\"exp\":%ld,\"nbf\":%ld%s}", now + exp_off, now + nbf_off,
             extra ? extra : "");
    return payload;
}

static void test_hs256(void **state)
{
    jwt_keyset_t ks = {0};
    assert_int_equal(jwt_keyset_add_secret(&ks, "k1", SECRET, strlen(SECRET)), 0);
    jwt_checks_t c = {.now = time(NULL), .leeway_s = 30, .issuer = "iss1", .audience = "agate"};
    const char *h = "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}";
    const char *good = ",\"iss\":\"iss1\",\"aud\":[\"x\",\"agate\"]";
    assert_int_equal(check(make_token(h, claims(300, -10, good), sign_hs, (void *)SECRET), &ks, &c), JWT_OK);
    /* expired beyond the leeway; within it still fine */
    assert_int_equal(check(make_token(h, claims(-31, -100, good), sign_hs, (void *)SECRET), &ks, &c), JWT_EXPIRED);
    assert_int_equal(check(make_token(h, claims(-10, -100, good), sign_hs, (void *)SECRET), &ks, &c), JWT_OK);
    assert_int_equal(check(make_token(h, claims(300, 100, good), sign_hs, (void *)SECRET), &ks, &c), JWT_NOT_YET_VALID);
    assert_int_equal(check(make_token(h, claims(300, 0, ",\"iss\":\"other\",\"aud\":\"agate\""), sign_hs,
                                      (void *)SECRET), &ks, &c), JWT_BAD_ISSUER);
    assert_int_equal(check(make_token(h, claims(300, 0, ",\"iss\":\"iss1\",\"aud\":\"nope\""), sign_hs,
                                      (void *)SECRET), &ks, &c), JWT_BAD_AUDIENCE);
    /* wrong secret */
    assert_int_equal(check(make_token(h, claims(300, 0, good), sign_hs, "another-secret-another-secret!!"), &ks, &c),
                     JWT_BAD_SIGNATURE);
    /* unknown kid */
    assert_int_equal(check(make_token("{\"alg\":\"HS256\",\"kid\":\"k9\"}", claims(300, 0, good), sign_hs,
                                      (void *)SECRET), &ks, &c), JWT_NO_KEY);
    /* no exp */
    assert_int_equal(check(make_token(h, "{\"sub\":\"u\",\"iss\":\"iss1\",\"aud\":\"agate\"}", sign_hs,
                                      (void *)SECRET), &ks, &c), JWT_NO_EXPIRY);
    /* payload changed after signing */
    char *tok = make_token(h, claims(300, 0, good), sign_hs, (void *)SECRET);
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", tok);
    char *dot = strchr(copy, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    assert_int_not_equal(check(copy, &ks, &c), JWT_OK);
    jwt_keyset_free(&ks);
}

static void test_alg_none_and_confusion(void **state)
{
    jwt_keyset_t ks = {0};
    size_t pl;
    char *pem = pub_pem(rsa_key, &pl);
    char err[160];
    assert_int_equal(jwt_keyset_add_pem(&ks, "", pem, pl, err, sizeof err), 0);
    jwt_checks_t c = {.now = time(NULL)};
    /* alg none, with and without a signature part */
    assert_int_equal(check(make_token("{\"alg\":\"none\"}", claims(300, 0, NULL), NULL, NULL), &ks, &c),
                     JWT_UNSUPPORTED_ALG);
    assert_int_equal(check(make_token("{\"alg\":\"none\"}", claims(300, 0, NULL), sign_hs, (void *)SECRET), &ks, &c),
                     JWT_UNSUPPORTED_ALG);
    /* HS256 "signed" with the RSA public key's PEM as the HMAC secret */
    assert_int_equal(check(make_token("{\"alg\":\"HS256\"}", claims(300, 0, NULL), sign_hs, pem), &ks, &c),
                     JWT_NO_KEY);
    /* and the real RS256 token verifies */
    assert_int_equal(check(make_token("{\"alg\":\"RS256\"}", claims(300, 0, NULL), sign_pk, rsa_key), &ks, &c),
                     JWT_OK);
    /* RS256 signed by another key */
    EVP_PKEY *other = EVP_RSA_gen(2048);
    assert_int_equal(check(make_token("{\"alg\":\"RS256\"}", claims(300, 0, NULL), sign_pk, other), &ks, &c),
                     JWT_BAD_SIGNATURE);
    EVP_PKEY_free(other);
    /* a critical header we do not understand */
    assert_int_equal(check(make_token("{\"alg\":\"RS256\",\"crit\":[\"x\"]}", claims(300, 0, NULL), sign_pk,
                                      rsa_key), &ks, &c), JWT_MALFORMED);
    free(pem);
    jwt_keyset_free(&ks);
}

static void test_es256(void **state)
{
    jwt_keyset_t ks = {0};
    size_t pl;
    char *pem = pub_pem(ec_key, &pl);
    char err[160];
    assert_int_equal(jwt_keyset_add_pem(&ks, "ec", pem, pl, err, sizeof err), 0);
    jwt_checks_t c = {.now = time(NULL)};
    assert_int_equal(check(make_token("{\"alg\":\"ES256\",\"kid\":\"ec\"}", claims(300, 0, NULL), sign_pk, ec_key),
                           &ks, &c), JWT_OK);
    /* the EC key does not verify RS256 even when the header says so */
    assert_int_equal(check(make_token("{\"alg\":\"RS256\",\"kid\":\"ec\"}", claims(300, 0, NULL), sign_pk, rsa_key),
                           &ks, &c), JWT_NO_KEY);
    free(pem);
    jwt_keyset_free(&ks);
}

static void test_jwks(void **state)
{
    BIGNUM *n = NULL, *e = NULL, *x = NULL, *y = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(rsa_key, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(rsa_key, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(ec_key, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(ec_key, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
    uint8_t nb[256], eb[8], xb[32], yb[32];
    int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
    BN_bn2binpad(x, xb, 32);
    BN_bn2binpad(y, yb, 32);
    char ns[400], es[16], xs[48], ys[48], ks64[64], json[2048];
    b64url(nb, (size_t)nl, ns);
    b64url(eb, (size_t)el, es);
    b64url(xb, 32, xs);
    b64url(yb, 32, ys);
    b64url((const uint8_t *)SECRET, strlen(SECRET), ks64);
    snprintf(json, sizeof json,
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"%s\",\"e\":\"%s\"},"
             "{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"},"
             "{\"kty\":\"oct\",\"kid\":\"h1\",\"k\":\"%s\"},"
             "{\"kty\":\"RSA\",\"kid\":\"enc\",\"use\":\"enc\",\"n\":\"AA\",\"e\":\"AQAB\"}]}",
             ns, es, xs, ys, ks64);
    jwt_keyset_t ks = {0};
    char err[256];
    assert_int_equal(jwt_keyset_add_jwks(&ks, json, strlen(json), err, sizeof err), 0);
    assert_int_equal(ks.n, 3);
    jwt_checks_t c = {.now = time(NULL)};
    assert_int_equal(check(make_token("{\"alg\":\"RS256\",\"kid\":\"r1\"}", claims(300, 0, NULL), sign_pk, rsa_key),
                           &ks, &c), JWT_OK);
    assert_int_equal(check(make_token("{\"alg\":\"ES256\",\"kid\":\"e1\"}", claims(300, 0, NULL), sign_pk, ec_key),
                           &ks, &c), JWT_OK);
    assert_int_equal(check(make_token("{\"alg\":\"HS256\",\"kid\":\"h1\"}", claims(300, 0, NULL), sign_hs,
                                      (void *)SECRET), &ks, &c), JWT_OK);
    /* kid r1 with HS256: the RSA key pins RS256 */
    assert_int_equal(check(make_token("{\"alg\":\"HS256\",\"kid\":\"r1\"}", claims(300, 0, NULL), sign_hs,
                                      (void *)SECRET), &ks, &c), JWT_NO_KEY);
    jwt_keyset_free(&ks);
    const char *bad = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}]}";
    assert_int_not_equal(jwt_keyset_add_jwks(&ks, bad, strlen(bad), err, sizeof err), 0);
    jwt_keyset_free(&ks);
    assert_int_not_equal(jwt_keyset_add_jwks(&ks, "[1]", 3, err, sizeof err), 0);
    jwt_keyset_free(&ks);
    BN_free(n);
    BN_free(e);
    BN_free(x);
    BN_free(y);
}

static void test_malformed(void **state)
{
    jwt_token_t t;
    const char *bad[] = {"", "a", "a.b", "a.b.c.d", "e30.e30.", "e30.e30.AA", "eyJhbGciOiJIUzI1NiJ9..AA",
                         "eyJhbGciOiJIUzI1NiJ9.W10.AA", "!!!.e30.AA", "eyJhbGciOjF9.e30.AA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_not_equal(jwt_parse(bad[i], strlen(bad[i]), &t), JWT_OK);
        jwt_token_free(&t);
    }
    uint8_t out[8];
    assert_int_equal(jwt_b64url_decode("AQAB", 4, out, sizeof out), 3);
    assert_int_equal(jwt_b64url_decode("AQ", 2, out, sizeof out), 1);
    assert_int_equal(jwt_b64url_decode("AR", 2, out, sizeof out), -1);   /* non-zero leftover bits */
    assert_int_equal(jwt_b64url_decode("A", 1, out, sizeof out), -1);
    assert_int_equal(jwt_b64url_decode("AQ==", 4, out, sizeof out), -1); /* no padding in JWS */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hs256),
        cmocka_unit_test(test_alg_none_and_confusion),
        cmocka_unit_test(test_es256),
        cmocka_unit_test(test_jwks),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
