/* Unit tests for proto/jtape.c: it must accept exactly what jansson accepts
 * (JSON_DECODE_ANY | JSON_ALLOW_NUL, and JSON_REJECT_DUPLICATES on request), but
 * \u0000 in keys, which it reads as JSON.parse does; read
 * the same strings, and keep the tape's walk invariants. Every case is checked
 * against jansson itself, so a disagreement names the input. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/jtape.h"

/* What the tape must answer: jansson's verdict, but for \u0000 in a key, which
 * jansson refuses and the tape reads (as JSON.parse does): then the verdict is
 * jansson's on the text with each \u0000 spelled \u0001. */
static bool jansson_accepts(const char *s, size_t n, bool dups)
{
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL | (dups ? JSON_REJECT_DUPLICATES : 0);
    json_error_t je;
    json_t *j = json_loadb(s, n, flags, &je);
    if (!j && json_error_code(&je) == json_error_numeric_overflow)
        j = json_loadb(s, n, flags | JSON_DECODE_INT_AS_REAL, &je);
    if (!j && json_error_code(&je) == json_error_null_byte_in_key) {
        char *q = malloc(n);
        assert_non_null(q);
        memcpy(q, s, n);
        for (char *u = q; (u = memmem(u, n - (size_t)(u - q), "\\u0000", 6)); u += 6)
            u[5] = '1';
        bool ok = jansson_accepts(q, n, dups);
        free(q);
        return ok;
    }
    json_decref(j);
    return j != NULL;
}

static void agree(jtape_t *t, const char *in, size_t n)
{
    /* an exact-size copy: under ASan, a read past n is a report */
    char *s = malloc(n ? n : 1);
    assert_non_null(s);
    memcpy(s, in, n);
    for (int dups = 0; dups < 2; dups++) {
        int rc = jtape_parse(t, s, n, 64, dups ? JTAPE_REJECT_DUPLICATES : 0);
        bool want = jansson_accepts(s, n, dups);
        if ((rc == 0) != want)
            fail_msg("jtape %s, jansson %s (dups %d): %.*s", rc ? "refuses" : "accepts",
                     want ? "accepts" : "refuses", dups, (int)n, s);
    }
    free(s);
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
    /* jansson's one quirk: it skips a NUL right after a number or literal; the
     * tape refuses it, as JSON.parse does (fuzz_canon.c, fuzz_validate.c) */
    assert_int_equal(jtape_parse(&t, "1\0", 2, 64, 0), -EINVAL);
    assert_int_equal(jtape_parse(&t, "[true\0]", 7, 64, 0), -EINVAL);
    assert_int_equal(jtape_parse(&t, "{\"a\":1\0}", 8, 64, 0), -EINVAL);
    char big[2048];
    size_t n = 0;
    big[n++] = '{';
    for (int k = 0; k < 40; k++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":%d", k ? "," : "", k % 39, k);
    big[n++] = '}';
    agree(&t, big, n);
    jtape_free(&t);
}

/* U+0000 in a key: valid JSON that JSON.parse, zod and @ag-ui/client read
 * (jansson refuses it). The key is read by its length, NUL included. */
static void test_nul_in_keys(void **state)
{
    (void)state;
    jtape_t t = {0};
    const char *s = "{\"\\u0000\":1,\"a\\u0000b\":{\"\\u0000\":[true]},\"a\":2}";
    for (int dups = 0; dups < 2; dups++) {
        assert_int_equal(jtape_parse(&t, s, strlen(s), 64, dups ? JTAPE_REJECT_DUPLICATES : 0), 0);
        uint32_t v = jtape_get(&t, 0, "\0", 1);
        assert_int_equal(jtape_kind(&t, v), JT_NUM);
        uint32_t o = jtape_get(&t, 0, "a\0b", 3);
        assert_int_equal(jtape_kind(&t, o), JT_OBJ);
        assert_int_equal(jtape_kind(&t, jtape_get(&t, o, "\0", 1)), JT_ARR);
        assert_int_equal(jtape_get(&t, 0, "a", 1), jtape_end(&t, o) + 1);   /* "a" is not "a\0b" */
        size_t n;
        const char *k = jtape_str(&t, 1, &n);
        assert_int_equal(n, 1);
        assert_int_equal(k[0], '\0');
    }
    /* duplicates are told apart by every byte, NUL included */
    const char *dup = "{\"\\u0000\":1,\"\\u0000\":2}";
    assert_int_equal(jtape_parse(&t, dup, strlen(dup), 64, JTAPE_REJECT_DUPLICATES), -EINVAL);
    assert_int_equal(jtape_parse(&t, dup, strlen(dup), 64, 0), 0);
    const char *distinct = "{\"\\u0000\":1,\"\\u0000\\u0000\":2,\"\":3}";
    assert_int_equal(jtape_parse(&t, distinct, strlen(distinct), 64, JTAPE_REJECT_DUPLICATES), 0);
    /* a raw NUL byte in a key is a control byte, refused as in a value */
    assert_int_equal(jtape_parse(&t, "{\"\0\":1}", 7, 64, 0), -EINVAL);
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

/* The string scan reads 16 bytes at a time, and within 16 bytes of the input's
 * end loads the last 16 bytes instead: each special byte (quote, escape,
 * non-ASCII, control, invalid UTF-8) is put at every offset around those
 * block edges, in inputs shorter and longer than one block, and the tape
 * must agree with jansson on acceptance and on the decoded string. The
 * string is an array element, a key, or a compact member's value (read by
 * the "key":"value" fast path), and every shape is also cut short. */
static void test_string_scan_edges(void **state)
{
    (void)state;
    static const struct { const char *s; size_t n; } specials[] = {
        { "\\\"", 2 }, { "\\\\", 2 }, { "\\n", 2 }, { "\\u00e9", 6 }, { "\\ud83d\\ude00", 12 },
        { "\\u0000", 6 }, { "\\ud83d", 6 }, { "\\x", 2 }, { "\\", 1 }, { "\xc3\xa9", 2 },
        { "\xe2\x82\xac\xe2\x82\xac", 6 }, { "\xf0\x9f\x98\x80", 4 }, { "\xc3", 1 },
        { "\xff", 1 }, { "\xed\xa0\x80", 3 }, { "\x01", 1 }, { "\x1f", 1 }, { "\x7f", 1 },
        { "\0", 1 }, { "\"", 1 }, { "", 0 },
    };
    jtape_t t = {0};
    char buf[128];
    for (size_t sp = 0; sp < sizeof specials / sizeof specials[0]; sp++)
        for (size_t before = 0; before < 36; before++)
            for (size_t after = 0; after < 20; after += 3)
                for (int shape = 0; shape < 3; shape++) {
                    static const char *const opens[] = { "[\"", "{\"", "{\"k\":\"" };
                    static const char *const closes[] = { "\"]", "\":1}", "\"}" };
                    size_t n = 0, open_n = strlen(opens[shape]);
                    bool as_key = shape == 1;
                    memcpy(buf + n, opens[shape], open_n), n += open_n;
                    memset(buf + n, 'a', before), n += before;
                    memcpy(buf + n, specials[sp].s, specials[sp].n), n += specials[sp].n;
                    memset(buf + n, 'b', after), n += after;
                    memcpy(buf + n, closes[shape], strlen(closes[shape])), n += strlen(closes[shape]);
                    agree(&t, buf, n);
                    /* cut short: the input ends inside the string, or just after it */
                    for (size_t cut = open_n + before; cut < n; cut++)
                        agree(&t, buf, cut);

                    json_t *j = json_loadb(buf, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                    if (!j)
                        continue;
                    assert_int_equal(jtape_parse(&t, buf, n, 64, 0), 0);
                    const char *want;
                    size_t want_n, got_n;
                    json_t *str = shape == 0 ? json_array_get(j, 0) : json_object_get(j, "k");
                    if (as_key) {
                        want = json_object_iter_key(json_object_iter(j));
                        want_n = strlen(want);
                    } else {
                        want = json_string_value(str);
                        want_n = json_string_length(str);
                    }
                    const char *got = jtape_str(&t, shape == 2 ? 2 : 1, &got_n);
                    assert_int_equal(got_n, want_n);
                    assert_memory_equal(got, want, want_n);
                    json_decref(j);
                }
    jtape_free(&t);
}

/* Members with and without whitespace around ':' and ',', with string and
 * other values, read the same (the compact "key":"value" form has a path of
 * its own). */
static void test_member_forms(void **state)
{
    (void)state;
    static const char *const forms[] = {
        "{\"a\":\"x\",\"b\":\"yy\",\"c\":[\"z\"]}",
        "{\"a\": \"x\", \"b\": \"yy\", \"c\": [\"z\"]}",
        "{\"a\" :\"x\" ,\"b\"\t:\n\"yy\",\"c\":[ \"z\" ]}",
        "{ \"a\":\"x\",\"b\":\"yy\",\"c\":[\"z\"] }",
    };
    jtape_t t = {0};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        agree(&t, forms[i], strlen(forms[i]));
        assert_int_equal(jtape_parse(&t, forms[i], strlen(forms[i]), 64, 0), 0);
        assert_int_equal(jtape_count(&t, 0), 3);
        assert_true(jtape_str_eq(&t, jtape_get(&t, 0, "a", 1), "x", 1));
        assert_true(jtape_str_eq(&t, jtape_get(&t, 0, "b", 1), "yy", 2));
        uint32_t c = jtape_get(&t, 0, "c", 1);
        assert_int_equal(jtape_count(&t, c), 1);
        assert_true(jtape_str_eq(&t, c + 1, "z", 1));
        assert_int_equal(jtape_end(&t, 0), t.n);
    }
    static const char *const bad[] = {
        "{\"a\":\"x\"", "{\"a\":\"x", "{\"a\":\"", "{\"a\":", "{\"a\"", "{\"a\":\"x\",}",
        "{\"a\":\"x\"\"b\":\"y\"}", "{\"a\":\"x\",\"b\"}", "{\"a\"\"x\"}", "{\"a\":\"x\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        agree(&t, bad[i], strlen(bad[i]));
        assert_int_equal(jtape_parse(&t, bad[i], strlen(bad[i]), 64, 0), -EINVAL);
    }
    /* enough members to grow the node array from inside the compact path */
    char big[8192];
    size_t n = 0;
    big[n++] = '{';
    for (int k = 0; k < 300; k++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":\"v%d\"", k ? "," : "", k, k);
    big[n++] = '}';
    jtape_t fresh = {0};
    assert_int_equal(jtape_parse(&fresh, big, n, 64, 0), 0);
    assert_int_equal(jtape_count(&fresh, 0), 300);
    assert_true(jtape_str_eq(&fresh, jtape_get(&fresh, 0, "k299", 4), "v299", 4));
    jtape_free(&fresh);
    jtape_free(&t);
}

/* Containers are closed through links kept in the tape: siblings after a
 * nested container, empty containers and whitespace everywhere keep the walk
 * invariants (count, next) right. */
static void test_nesting_walk(void **state)
{
    (void)state;
    jtape_t t = {0};
    const char *s = " { \"a\" : [ [ ] , { } , [ 1 , { \"b\" : null } ] ] , \"c\" : { } , \"d\" : 2 } ";
    assert_int_equal(jtape_parse(&t, s, strlen(s), 64, 0), 0);
    assert_int_equal(jtape_count(&t, 0), 3);
    assert_int_equal(jtape_end(&t, 0), t.n);
    uint32_t a = jtape_get(&t, 0, "a", 1);
    assert_int_equal(jtape_kind(&t, a), JT_ARR);
    assert_int_equal(jtape_count(&t, a), 3);
    uint32_t e0 = a + 1, e1 = jtape_end(&t, e0), e2 = jtape_end(&t, e1);
    assert_int_equal(jtape_kind(&t, e0), JT_ARR);
    assert_int_equal(jtape_count(&t, e0), 0);
    assert_int_equal(jtape_kind(&t, e1), JT_OBJ);
    assert_int_equal(jtape_count(&t, e1), 0);
    assert_int_equal(jtape_count(&t, e2), 2);
    assert_int_equal(jtape_end(&t, e2), jtape_end(&t, a));
    assert_int_equal(jtape_kind(&t, jtape_get(&t, e2 + 2, "b", 1)), JT_NULL);
    assert_int_equal(jtape_kind(&t, jtape_get(&t, 0, "c", 1)), JT_OBJ);
    int64_t v;
    assert_true(jtape_safe_int(&t, jtape_get(&t, 0, "d", 1), true, &v));
    assert_int_equal(v, 2);
    /* a container's text is its brackets and what is between them */
    assert_int_equal(t.nodes[e2].len, strlen("[ 1 , { \"b\" : null } ]"));
    assert_int_equal(t.nodes[0].len, strlen(s) - 2);
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

/* jtape_bytes_eq against memcmp: every length to 80 (each of its word paths),
 * equal, and unequal at every single position. */
static void test_bytes_eq(void **state)
{
    (void)state;
    char a[80], b[80];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = b[i] = (char)('a' + i % 26);
    for (size_t n = 0; n <= sizeof a; n++) {
        assert_true(jtape_bytes_eq(a, b, n));
        for (size_t k = 0; k < n; k++) {
            b[k] ^= 0x20;
            assert_false(jtape_bytes_eq(a, b, n));
            b[k] ^= 0x20;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_jansson),
        cmocka_unit_test(test_nul_in_keys),
        cmocka_unit_test(test_reading),
        cmocka_unit_test(test_string_scan_edges),
        cmocka_unit_test(test_member_forms),
        cmocka_unit_test(test_nesting_walk),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_bytes_eq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
