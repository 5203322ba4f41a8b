/* jwt: JSON Web Token (RFC 7519) compact serialisation, verified with
 * OpenSSL's EVP: HS256, RS256 and ES256 only.
 *
 * The key decides the algorithm: an HMAC secret verifies only HS256, an RSA
 * key only RS256, a P-256 key only ES256. The token's "alg" must equal its
 * key's, so "none" (no key has it) and algorithm confusion (HS256 signed with
 * an RSA public key's bytes) are refused without special cases. Parsing does
 * not trust anything before the signature is checked; claims are checked after.
 * Nothing here logs; callers must never log a token. */
#ifndef AGATE_JWT_H
#define AGATE_JWT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWT_MAX_TOKEN 8192
#define JWT_KID_MAX   64

typedef enum jwt_alg { JWT_ALG_UNKNOWN = 0, JWT_HS256, JWT_RS256, JWT_ES256 } jwt_alg_t;

typedef enum jwt_err {
    JWT_OK = 0,
    JWT_MALFORMED,          /* not three base64url parts of JSON objects */
    JWT_UNSUPPORTED_ALG,    /* alg is none or not one of ours */
    JWT_NO_KEY,             /* no key with that kid (and alg) */
    JWT_BAD_SIGNATURE,
    JWT_EXPIRED,
    JWT_NOT_YET_VALID,
    JWT_NO_EXPIRY,          /* exp is required */
    JWT_BAD_ISSUER,
    JWT_BAD_AUDIENCE,
} jwt_err_t;

typedef struct jwt_key {
    char       kid[JWT_KID_MAX];   /* "" = no kid */
    jwt_alg_t  alg;                /* pinned by the key's type */
    uint8_t   *secret;             /* HS256, owned */
    size_t     secret_len;
    void      *pkey;               /* EVP_PKEY *, owned (RS256, ES256) */
} jwt_key_t;

typedef struct jwt_keyset {
    jwt_key_t *keys;
    uint32_t   n, cap;
} jwt_keyset_t;

/* 0 or -errno / -EINVAL with err filled (never quoting secret material). */
int  jwt_keyset_add_secret(jwt_keyset_t *ks, const char *kid, const void *secret, size_t len);
int  jwt_keyset_add_pem(jwt_keyset_t *ks, const char *kid, const char *pem, size_t len, char *err, size_t errlen);
int  jwt_keyset_add_pem_file(jwt_keyset_t *ks, const char *kid, const char *path, char *err, size_t errlen);
/* A JWK Set ({"keys":[...]}): RSA, EC P-256 and oct keys whose "use" is sig (or absent). */
int  jwt_keyset_add_jwks(jwt_keyset_t *ks, const char *json, size_t len, char *err, size_t errlen);
void jwt_keyset_free(jwt_keyset_t *ks);

typedef struct jwt_token {
    jwt_alg_t  alg;
    char       kid[JWT_KID_MAX];
    bool       has_kid;
    size_t     signing_len;        /* header.payload: the first signing_len bytes of the token */
    uint8_t    sig[512];
    size_t     sig_len;
    json_t    *claims;             /* owned; a JSON object */
} jwt_token_t;

typedef struct jwt_checks {
    int64_t     now;               /* seconds since the epoch */
    uint32_t    leeway_s;
    const char *issuer;            /* NULL or "" = not checked */
    const char *audience;          /* NULL or "" = not checked */
} jwt_checks_t;

/* Splits and decodes; on JWT_OK the caller owns t->claims (jwt_token_free). */
jwt_err_t jwt_parse(const char *tok, size_t len, jwt_token_t *t);
/* Signature against ks (tok is the same text given to jwt_parse), then claims. */
jwt_err_t jwt_verify(const jwt_token_t *t, const char *tok, const jwt_keyset_t *ks, const jwt_checks_t *c);
void      jwt_token_free(jwt_token_t *t);
const char *jwt_err_text(jwt_err_t e);

/* base64url without padding; returns the decoded length or -1. */
long jwt_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif
