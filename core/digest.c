/* digest: a process-wide fetched SHA-256 and HMAC and a context of each per
 * thread (see digest.h for why). The fetched algorithms are immutable and
 * shared read-only; the contexts belong to their thread and are freed when the
 * thread exits. */
#include "core/digest.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include <openssl/core_names.h>

typedef struct {
    EVP_MD_CTX  *md;
    EVP_MAC_CTX *mac;   /* HMAC with SHA-256 set once; a call only sets the key */
} dg_thread_t;

static pthread_once_t dg_once = PTHREAD_ONCE_INIT;
static pthread_key_t  dg_key;
static bool           dg_key_ok;
static EVP_MD        *dg_sha256;   /* fetched once; live as long as the process */
static EVP_MAC       *dg_hmac;
static __thread dg_thread_t *dg_tls;

static void dg_destroy(void *p)
{
    dg_thread_t *t = p;
    if (dg_tls == t)
        dg_tls = NULL;
    EVP_MD_CTX_free(t->md);
    EVP_MAC_CTX_free(t->mac);
    free(t);
}

static void dg_init(void)
{
    dg_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    dg_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    dg_key_ok = pthread_key_create(&dg_key, dg_destroy) == 0;
}

static dg_thread_t *dg_thread(void)
{
    if (dg_tls)
        return dg_tls;
    pthread_once(&dg_once, dg_init);
    dg_thread_t *t;
    if (!dg_sha256 || !dg_key_ok || !(t = calloc(1, sizeof *t)))
        return NULL;
    if (pthread_setspecific(dg_key, t)) {
        free(t);
        return NULL;
    }
    return dg_tls = t;
}

const EVP_MD *digest_sha256_md(void)
{
    pthread_once(&dg_once, dg_init);
    return dg_sha256;
}

EVP_MD_CTX *digest_sha256_begin(void)
{
    dg_thread_t *t = dg_thread();
    if (!t || (!t->md && !(t->md = EVP_MD_CTX_new())))
        return NULL;
    return EVP_DigestInit_ex2(t->md, dg_sha256, NULL) == 1 ? t->md : NULL;
}

int digest_sha256_end(EVP_MD_CTX *ctx, uint8_t out[DIGEST_SHA256_LEN])
{
    unsigned int n = 0;
    return EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == DIGEST_SHA256_LEN ? 0 : -EIO;
}

int digest_sha256(const void *p, size_t n, uint8_t out[DIGEST_SHA256_LEN])
{
    EVP_MD_CTX *ctx = digest_sha256_begin();
    if (!ctx)
        return -ENOMEM;
    if (EVP_DigestUpdate(ctx, p, n) != 1)
        return -EIO;
    return digest_sha256_end(ctx, out);
}

/* The thread's HMAC context, its digest set to SHA-256 on creation: setting the
 * digest parameter fetches the digest, which is what a call must not do. */
static EVP_MAC_CTX *dg_mac_ctx(void)
{
    dg_thread_t *t = dg_thread();
    if (!t || !dg_hmac)
        return NULL;
    if (!t->mac) {
        EVP_MAC_CTX *c = EVP_MAC_CTX_new(dg_hmac);
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                               OSSL_PARAM_construct_end()};
        if (!c || EVP_MAC_CTX_set_params(c, params) != 1) {
            EVP_MAC_CTX_free(c);
            return NULL;
        }
        t->mac = c;
    }
    return t->mac;
}

int digest_hmac_sha256(const void *key, size_t key_len, const void *p, size_t n, uint8_t out[DIGEST_SHA256_LEN])
{
    EVP_MAC_CTX *c = dg_mac_ctx();
    if (!c)
        return -ENOMEM;
    size_t ol = 0;
    /* HMAC needs a key; an empty one is still a key (RFC 2104 pads it). */
    static const uint8_t empty[1];
    if (EVP_MAC_init(c, key_len ? key : empty, key_len, NULL) != 1 || EVP_MAC_update(c, p, n) != 1 ||
        EVP_MAC_final(c, out, &ol, DIGEST_SHA256_LEN) != 1 || ol != DIGEST_SHA256_LEN)
        return -EIO;
    return 0;
}
