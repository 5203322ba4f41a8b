/* digest: a process-wide fetched SHA-256 and a context per thread (see
 * digest.h for why). The fetched EVP_MD is immutable and shared read-only;
 * each context belongs to its thread and is freed when the thread exits. */
#include "core/digest.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

static pthread_once_t  dg_once = PTHREAD_ONCE_INIT;
static pthread_key_t   dg_key;
static bool            dg_key_ok;
static EVP_MD         *dg_sha256;          /* fetched once; lives as long as the process */
static __thread EVP_MD_CTX *dg_tls;

static void dg_destroy(void *p)
{
    if (dg_tls == p)
        dg_tls = NULL;
    EVP_MD_CTX_free(p);
}

static void dg_init(void)
{
    dg_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    dg_key_ok = pthread_key_create(&dg_key, dg_destroy) == 0;
}

EVP_MD_CTX *digest_sha256_begin(void)
{
    EVP_MD_CTX *ctx = dg_tls;
    if (!ctx) {
        pthread_once(&dg_once, dg_init);
        if (!dg_sha256 || !dg_key_ok || !(ctx = EVP_MD_CTX_new()))
            return NULL;
        if (pthread_setspecific(dg_key, ctx)) {
            EVP_MD_CTX_free(ctx);
            return NULL;
        }
        dg_tls = ctx;
    }
    return EVP_DigestInit_ex2(ctx, dg_sha256, NULL) == 1 ? ctx : NULL;
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
