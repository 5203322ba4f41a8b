/* Unit tests for core/digest.c: SHA-256 against FIPS 180-2 vectors, HMAC-SHA-256
 * against RFC 4231, the
 * incremental form equal to the one-shot, and one context per thread (two
 * threads digesting at once never mix their inputs). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/digest.h"

static void hex(const uint8_t *d, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void expect_sha(const char *in, size_t n, const char *want)
{
    uint8_t d[DIGEST_SHA256_LEN];
    char h[65];
    assert_int_equal(digest_sha256(in, n, d), 0);
    hex(d, h);
    assert_string_equal(h, want);
}

static void test_vectors(void **state)
{
    (void)state;
    expect_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect_sha(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* again: the thread's context is reused and must start clean */
    expect_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_incremental(void **state)
{
    (void)state;
    const char *s = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    uint8_t whole[DIGEST_SHA256_LEN], parts[DIGEST_SHA256_LEN];
    assert_int_equal(digest_sha256(s, strlen(s), whole), 0);
    for (size_t cut = 0; cut <= strlen(s); cut++) {
        EVP_MD_CTX *ctx = digest_sha256_begin();
        assert_non_null(ctx);
        assert_int_equal(EVP_DigestUpdate(ctx, s, cut), 1);
        assert_int_equal(EVP_DigestUpdate(ctx, s + cut, strlen(s) - cut), 1);
        assert_int_equal(digest_sha256_end(ctx, parts), 0);
        assert_memory_equal(whole, parts, sizeof whole);
    }
}

/* RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first);
 * each twice in a row and interleaved, since the thread's context is re-keyed. */
static void expect_hmac(const void *key, size_t kn, const char *msg, const char *want)
{
    uint8_t d[DIGEST_SHA256_LEN];
    char h[65];
    assert_int_equal(digest_hmac_sha256(key, kn, msg, strlen(msg), d), 0);
    hex(d, h);
    assert_string_equal(h, want);
}

static void test_hmac(void **state)
{
    (void)state;
    uint8_t k1[20], k6[131];
    memset(k1, 0x0b, sizeof k1);
    memset(k6, 0xaa, sizeof k6);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    for (int i = 0; i < 2; i++) {
        expect_hmac(k1, sizeof k1, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        expect_hmac("Jefe", 4, "what do ya want for nothing?",
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        expect_hmac(k6, sizeof k6, m6, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }
    /* a SHA-256 between two HMACs does not disturb either context */
    expect_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect_hmac("Jefe", 4, "what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

struct job { char byte; int bad; };

static void *worker(void *arg)
{
    struct job *j = arg;
    char buf[300];
    memset(buf, j->byte, sizeof buf);
    uint8_t first[DIGEST_SHA256_LEN], d[DIGEST_SHA256_LEN];
    if (digest_sha256(buf, sizeof buf, first))
        j->bad++;
    for (int i = 0; i < 20000; i++) {
        EVP_MD_CTX *ctx = digest_sha256_begin();
        if (!ctx || EVP_DigestUpdate(ctx, buf, 100) != 1 || EVP_DigestUpdate(ctx, buf + 100, 200) != 1 ||
            digest_sha256_end(ctx, d) || memcmp(d, first, sizeof d))
            j->bad++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    struct job jobs[4] = {{'a', 0}, {'b', 0}, {'c', 0}, {'d', 0}};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &jobs[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].bad, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_hmac),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests_name("digest", tests, NULL, NULL);
}
