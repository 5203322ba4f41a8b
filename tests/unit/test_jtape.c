/* Unit tests for proto/jtape.c: it must accept exactly what jansson accepts
 * (JSON_DECODE_ANY | JSON_ALLOW_NUL, and JSON_REJECT_DUPLICATES on request), read
 * the same strings, and keep the tape's walk invariants. Every case is checked
 * against jansson itself, so a disagreement names the input. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/jtape.h"

static bool jansson_accepts(const char *s, size_t n, bool dups)
{
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL | (dups ? JSON_REJECT_DUPLICATES : 0);
    json_error_t je;
    json_t *j = json_loadb(s, n, flags, &je);
    if (!j && json_error_code(&je) == json_error_numeric_overflow)
        j = json_loadb(s, n, flags | JSON_DECODE_INT_AS_REAL, &je);
    json_decref(j);
    return j != NULL;
}

static void agree(jtape_t *t, const char *s, size_t n)
{
    for (int dups = 0; dups < 2; dups++) {
        int rc = jtape_parse(t, s, n, 64, dups ? JTAPE_REJECT_DUPLICATES : 0);
        bool want = jansson_accepts(s, n, dups);
        if ((rc == 0) != want)
            fail_msg("jtape %s, jansson %s (dups %d): %.*s", rc ? "refuses" : "accepts",
                     want ? "accepts" : "refuses", dups, (int)n, s);
    }
}

static void test_agrees_with_jansson(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{}", "[]", " { } ", "0", "-0", "1.5", "-1e5", "1E+2", "1e-400", "1e400", "-1e400",
        "01", "1.", ".5", "-", "1e", "+1", "0x10", "123456789012345678901234567890",
        "true", "false", "null", "tru", "truex", "nul", "\"a\"", "\"a", "\"\\u00e9\"",
        "\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83dx\"", "\"\\u0000\"",
        "{\"\\u0000\":1}", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"tab\there\"",
        "\"\xc3\xa9\"", "\"\xc3\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
        "\"\xe2\x82\xac\"", "\"\xf0\x9f\x98\x80\"", "\"\xff\"", "{\"a\":1,\"a\":2}",
        "{\"a\":1,\"\\u0061\":2}", "{\"a\" 1}", "{\"a\":1,}", "[1,]", "[,1]", "{,}",
        "[1 2]", "{\"a\":1}x", "{\"a\":1} ", "\xef\xbb\xbf{}", "", "   ", "[\"x\",{\"y\":[null]}]",
        "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m\",\"delta\":\"0123456789abcdef0123\\n\"}",
    };
    jtape_t t = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        agree(&t, cases[i], strlen(cases[i]));
    /* a raw NUL inside a string, and a long object for the hashed duplicate check */
    agree(&t, "\"a\0b\"", 5);
    char big[2048];
    size_t n = 0;
    big[n++] = '{';
    for (int k = 0; k < 40; k++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":%d", k ? "," : "", k % 39, k);
    big[n++] = '}';
    agree(&t, big, n);
    jtape_free(&t);
}

static void test_reading(void **state)
{
    (void)state;
    jtape_t t = {0};
    const char *s = "{\"a\":\"x\\ny\\u00e9\",\"b\":[1,{\"c\":true},\"z\"],\"a\":\"last\",\"n\":5.0,"
                    "\"big\":9007199254740992,\"neg\":-3}";
    assert_int_equal(jtape_parse(&t, s, strlen(s), 64, 0), 0);
    assert_int_equal(jtape_kind(&t, 0), JT_OBJ);
    assert_int_equal(jtape_count(&t, 0), 6);
    uint32_t a = jtape_get(&t, 0, "a", 1);
    assert_true(jtape_str_eq(&t, a, "last", 4));   /* the last duplicate counts */
    uint32_t b = jtape_get(&t, 0, "b", 1);
    assert_int_equal(jtape_count(&t, b), 3);
    uint32_t e = b + 1, k = 0;
    for (; e < jtape_end(&t, b); e = jtape_end(&t, e))
        k++;
    assert_int_equal(k, 3);
    assert_int_equal(jtape_kind(&t, jtape_get(&t, b + 2, "c", 1)), JT_TRUE);
    int64_t v;
    assert_true(jtape_safe_int(&t, jtape_get(&t, 0, "n", 1), true, &v));
    assert_int_equal(v, 5);
    assert_false(jtape_safe_int(&t, jtape_get(&t, 0, "big", 3), false, &v));
    assert_false(jtape_safe_int(&t, jtape_get(&t, 0, "neg", 3), true, &v));
    assert_true(jtape_safe_int(&t, jtape_get(&t, 0, "neg", 3), false, &v));
    assert_int_equal(v, -3);
    assert_int_equal(jtape_get(&t, 0, "missing", 7), 0);

    const char *esc = "[\"x\\ny\\u00e9\\ud83d\\ude00\\/\"]";
    assert_int_equal(jtape_parse(&t, esc, strlen(esc), 64, 0), 0);
    size_t n;
    const char *d = jtape_str(&t, 1, &n);
    assert_int_equal(n, strlen("x\ny\xc3\xa9\xf0\x9f\x98\x80/"));
    assert_memory_equal(d, "x\ny\xc3\xa9\xf0\x9f\x98\x80/", n);
    jtape_free(&t);
}

static void test_depth(void **state)
{
    (void)state;
    jtape_t t = {0};
    char deep[200];
    for (int d = 63; d <= 65; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        int rc = jtape_parse(&t, deep, (size_t)d * 2, 64, 0);
        assert_int_equal(rc, d <= 64 ? 0 : -EINVAL);
    }
    jtape_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_jansson),
        cmocka_unit_test(test_reading),
        cmocka_unit_test(test_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
