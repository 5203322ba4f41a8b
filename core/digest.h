/* digest: SHA-256 and HMAC-SHA-256 on the request path without OpenSSL's
 * per-call lookups.
 *
 * OpenSSL 3's one-shot SHA256() and EVP_DigestInit_ex(EVP_sha256()) fetch the
 * algorithm from the provider store on every call, under a process-wide
 * read-write lock: 6.7 % of agate's CPU in the auth bench (API key hashed per
 * request) and 3.6 % in the cache-hit bench, plus a lock word every shard
 * writes. Here the algorithm is fetched once per process and each thread keeps
 * one EVP_MD_CTX, so a digest is an init, updates and a final on warm memory. */
#ifndef AGATE_DIGEST_H
#define AGATE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define DIGEST_SHA256_LEN 32

/* out = SHA-256(p[0..n)). 0, or -EIO (libcrypto failed), -ENOMEM. */
int digest_sha256(const void *p, size_t n, uint8_t out[DIGEST_SHA256_LEN]);

/* The calling thread's context, started for SHA-256; feed it with
 * EVP_DigestUpdate and finish with digest_sha256_end. NULL on failure. Not
 * re-entrant: one digest at a time per thread. */
EVP_MD_CTX *digest_sha256_begin(void);
int         digest_sha256_end(EVP_MD_CTX *ctx, uint8_t out[DIGEST_SHA256_LEN]);

/* out = HMAC-SHA-256(key, p[0..n)), on the thread's context: no algorithm
 * lookup per call (OpenSSL's one-shot HMAC() fetches both HMAC and SHA-256). */
int digest_hmac_sha256(const void *key, size_t key_len, const void *p, size_t n, uint8_t out[DIGEST_SHA256_LEN]);

/* The process's fetched SHA-256, for EVP calls that take an EVP_MD (signature
 * verification); NULL if libcrypto could not provide it. */
const EVP_MD *digest_sha256_md(void);

#endif
