/* Unit tests for net/runlog_remote.c's rsx_meta_allows: who may reattach to,
 * or cancel, another pod's run, from the run's meta value in Redis
 * ("<nonce> <sha256(token) hex> <who hex or -> <agent> <pod>"): the token's
 * hash, or the identity that started the run (never an anonymous caller's
 * "nothing"); a malformed meta lets no one in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "net/runlog_redis_int.h"

#define NONCE "0123456789abcdef0123456789abcdef"
#define TH    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define TH2   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"
#define WHO   "00112233445566778899aabbccddeeff"
#define WHO2  "00112233445566778899aabbccddeefe"

static int allows(const char *meta, const char *tok_hash, const char *who, char *agent)
{
    return rsx_meta_allows(meta, strlen(meta), tok_hash, who, agent, CFG_NAME_MAX);
}

static void test_by_token(void **state)
{
    (void)state;
    char agent[CFG_NAME_MAX] = "";
    const char *meta = NONCE " " TH " " WHO " echo pod@host";
    assert_int_equal(allows(meta, TH, "", agent), 1);
    assert_string_equal(agent, "echo");
    assert_int_equal(allows(meta, TH2, "", agent), 0);              /* another token */
    assert_int_equal(allows(meta, "", "", agent), 0);               /* none */
    assert_int_equal(allows(meta, "aaaa", "", agent), 0);           /* a prefix of it */
    assert_int_equal(allows(NONCE " " TH " - echo pod", TH, "", agent), 1);   /* an anonymous run: the token alone */
}

static void test_by_identity(void **state)
{
    (void)state;
    char agent[CFG_NAME_MAX] = "";
    assert_int_equal(allows(NONCE " " TH " " WHO " up pod", "", WHO, agent), 1);
    assert_string_equal(agent, "up");
    assert_int_equal(allows(NONCE " " TH " " WHO " up pod", TH2, WHO, agent), 1);   /* a wrong token, the right caller */
    assert_int_equal(allows(NONCE " " TH " " WHO " up pod", "", WHO2, agent), 0);
    /* an anonymous run: no identity matches it, not even "-" */
    assert_int_equal(allows(NONCE " " TH " - up pod", "", "-", agent), 0);
    assert_int_equal(allows(NONCE " " TH " - up pod", "", "", agent), 0);
}

static void test_malformed(void **state)
{
    (void)state;
    char agent[CFG_NAME_MAX] = "";
    char big[600];
    assert_int_equal(allows(NONCE " " TH " " WHO, TH, WHO, agent), -1);          /* no agent */
    assert_int_equal(allows(NONCE " abc " WHO " echo pod", "abc", WHO, agent), -1);   /* not a sha256 */
    assert_int_equal(allows("", TH, WHO, agent), -1);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(allows(big, TH, WHO, agent), -1);                           /* longer than any meta */
    /* only n bytes are read: the value need not end in a NUL */
    const char *meta = NONCE " " TH " " WHO " echo pod";
    assert_int_equal(rsx_meta_allows(meta, strlen(meta) - 4, TH, "", agent, sizeof agent), 1);
    assert_string_equal(agent, "echo");
    assert_int_equal(rsx_meta_allows(meta, 40, TH, "", agent, sizeof agent), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_token),
        cmocka_unit_test(test_by_identity),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
