/* Unit tests for core/json.c: the string escaper against a byte-at-a-time
 * reference, exact lengths, and a round trip through jansson's parser; and the
 * number and hex formatters of core/buf.c that the JSON writers use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/json.h"

/* The obvious escaper, the spec json_put_str must match byte for byte. */
static void ref_escape(buf_t *b, const char *s, size_t n)
{
    assert_int_equal(buf_putc(b, '"'), 0);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        switch (c) {
        case '"':  assert_int_equal(buf_append_lit(b, "\\\""), 0); break;
        case '\\': assert_int_equal(buf_append_lit(b, "\\\\"), 0); break;
        case '\b': assert_int_equal(buf_append_lit(b, "\\b"), 0); break;
        case '\f': assert_int_equal(buf_append_lit(b, "\\f"), 0); break;
        case '\n': assert_int_equal(buf_append_lit(b, "\\n"), 0); break;
        case '\r': assert_int_equal(buf_append_lit(b, "\\r"), 0); break;
        case '\t': assert_int_equal(buf_append_lit(b, "\\t"), 0); break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                assert_int_equal(buf_append(b, tmp, 6), 0);
            } else {
                assert_int_equal(buf_putc(b, (char)c), 0);
            }
        }
    }
    assert_int_equal(buf_putc(b, '"'), 0);
}

/* Escapes s with both escapers and checks output and json_str_len agree. */
static void check_same(const char *s, size_t n)
{
    buf_t got = {0}, want = {0};
    assert_int_equal(json_put_str(&got, s, n), 0);
    ref_escape(&want, s, n);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
    assert_int_equal(json_str_len(s, n), want.len);
    buf_free(&got);
    buf_free(&want);
}

static void check_lit(const char *s, size_t n, const char *expect)
{
    buf_t b = {0};
    assert_int_equal(json_put_str(&b, s, n), 0);
    assert_int_equal(b.len, strlen(expect));
    assert_memory_equal(b.data, expect, b.len);
    assert_int_equal(json_str_len(s, n), strlen(expect));
    buf_free(&b);
}

static void test_empty(void **state)
{
    check_lit("", 0, "\"\"");
    check_lit(NULL, 0, "\"\"");
}

static void test_control_bytes(void **state)
{
    static const char *const named[32] = {
        ['\b'] = "\\b", ['\t'] = "\\t", ['\n'] = "\\n", ['\f'] = "\\f", ['\r'] = "\\r",
    };
    for (int c = 0; c < 0x20; c++) {
        char in = (char)c, expect[16];
        if (named[c])
            snprintf(expect, sizeof expect, "\"%s\"", named[c]);
        else
            snprintf(expect, sizeof expect, "\"\\u%04x\"", c);
        check_lit(&in, 1, expect);
    }
    check_lit("\x7f", 1, "\"\x7f\"");     /* DEL needs no escape */
}

static void test_quotes_backslash(void **state)
{
    check_lit("\"", 1, "\"\\\"\"");
    check_lit("\\", 1, "\"\\\\\"");
    check_lit("say \"hi\" \\o/", 12, "\"say \\\"hi\\\" \\\\o/\"");
    check_lit("/", 1, "\"/\"");
}

static void test_utf8_passthrough(void **state)
{
    const char *s = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e \xe4\xb8\xad\xe6\x96\x87";
    size_t n = strlen(s);
    buf_t b = {0};
    assert_int_equal(json_put_str(&b, s, n), 0);
    assert_int_equal(b.len, n + 2);
    assert_memory_equal(b.data + 1, s, n);
    buf_free(&b);
    /* every single byte >= 0x20 other than '"' and '\\' is copied as is */
    for (int c = 0x20; c < 0x100; c++)
        check_same((const char[]){ (char)c }, 1);
}

static void test_appends(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append_lit(&b, "{\"delta\":"), 0);
    assert_int_equal(json_put_str(&b, "a\nb", 3), 0);
    assert_int_equal(buf_putc(&b, '}'), 0);
    assert_int_equal(b.len, strlen("{\"delta\":\"a\\nb\"}"));
    assert_memory_equal(b.data, "{\"delta\":\"a\\nb\"}", b.len);
    buf_free(&b);
}

/* Every special byte at every offset around the 8-byte scan window. */
static void test_word_boundaries(void **state)
{
    static const char specials[] = { '"', '\\', '\0', '\n', 0x1f, 0x01 };
    char s[40];
    for (size_t len = 1; len <= sizeof s; len++)
        for (size_t pos = 0; pos < len; pos++)
            for (size_t k = 0; k < sizeof specials; k++) {
                memset(s, 'a', len);
                s[pos] = specials[k];
                check_same(s, len);
            }
    /* bytes next to the escaped ranges, which a sloppy bit trick would catch */
    const char near[] = " !#[]^\x7f\x80\xa0\xa2\xdc\xff\x20\x21\x23";
    for (size_t off = 0; off < 8; off++)
        check_same(near + off, sizeof near - 1 - off);
}

static void test_long_strings(void **state)
{
    /* below and above the 4096-byte switch between worst-case and exact sizing */
    static const size_t sizes[] = { 4095, 4096, 4097, 100000, 1 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        char *s = malloc(n);
        assert_non_null(s);
        memset(s, 'x', n);
        check_same(s, n);                 /* plain: one memcpy */
        for (size_t j = 0; j < n; j += 7)
            s[j] = (char)(j % 3 == 0 ? '\n' : j % 3 == 1 ? '"' : 0x02);
        check_same(s, n);
        memset(s, 0x01, n);               /* worst case: 6x */
        check_same(s, n);
        free(s);
    }
}

static uint32_t rng_state = 0x12345678;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* A random code point, biased towards the bytes that need escaping. */
static uint32_t random_cp(void)
{
    switch (rng() % 6) {
    case 0:  return rng() % 0x20;
    case 1:  return (uint32_t[]){ '"', '\\', '/', 0x7f }[rng() % 4];
    case 2:  return 0x20 + rng() % 0x60;
    case 3:  return 0x80 + rng() % 0x780;
    case 4: {
        uint32_t cp = 0x800 + rng() % 0xf800;
        return cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp;
    }
    default: return 0x10000 + rng() % 0x100000;
    }
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static void test_jansson_roundtrip(void **state)
{
    char s[4 * 300];
    buf_t b = {0};
    for (int iter = 0; iter < 5000; iter++) {
        size_t n = 0, cps = rng() % 300;
        for (size_t i = 0; i < cps; i++)
            n += put_utf8(s + n, random_cp());
        buf_reset(&b);
        assert_int_equal(json_put_str(&b, s, n), 0);
        assert_int_equal(b.len, json_str_len(s, n));

        json_error_t je;
        json_t *v = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!v)
            fail_msg("jansson rejected output: %s", je.text);
        assert_true(json_is_string(v));
        assert_int_equal(json_string_length(v), n);
        assert_memory_equal(json_string_value(v), s, n);
        json_decref(v);
    }
    buf_free(&b);
}

/* buf_fmt_u64 (core/buf.c) against printf at every length, both sides of each power of ten. */
static void test_fmt_u64(void **state)
{
    (void)state;
    uint64_t vals[200];
    size_t nv = 0;
    vals[nv++] = 0;
    vals[nv++] = UINT64_MAX;
    for (uint64_t p = 1; nv < 60; p *= 10) {
        vals[nv++] = p;
        vals[nv++] = p - 1;
        vals[nv++] = p + 1;
        if (p > UINT64_MAX / 10)
            break;
    }
    while (nv < sizeof vals / sizeof vals[0])
        vals[nv++] = ((uint64_t)rng() << 32 | rng()) >> (rng() % 64);
    for (size_t i = 0; i < nv; i++) {
        char want[32], got[24];
        memset(got, 'x', sizeof got);
        int wn = snprintf(want, sizeof want, "%llu", (unsigned long long)vals[i]);
        size_t n = buf_fmt_u64(got, vals[i]);
        assert_int_equal(n, (size_t)wn);
        assert_memory_equal(got, want, n);
        assert_int_equal(got[n], 'x');   /* nothing written past the digits */
    }
}

/* buf_fmt_hex (core/buf.c): every byte value against printf, nothing written past 2n. */
static void test_fmt_hex(void **state)
{
    (void)state;
    uint8_t all[256];
    char got[513], want[3];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    memset(got, 'x', sizeof got);
    buf_fmt_hex(got, all, 256);
    for (int i = 0; i < 256; i++) {
        snprintf(want, sizeof want, "%02x", i);
        assert_memory_equal(got + 2 * i, want, 2);
    }
    assert_int_equal(got[512], 'x');
    buf_fmt_hex(got, (const uint8_t[]){ 0x00, 0x0f, 0xa0, 0xff }, 4);
    assert_memory_equal(got, "000fa0ff", 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_control_bytes),
        cmocka_unit_test(test_quotes_backslash),
        cmocka_unit_test(test_utf8_passthrough),
        cmocka_unit_test(test_appends),
        cmocka_unit_test(test_word_boundaries),
        cmocka_unit_test(test_long_strings),
        cmocka_unit_test(test_jansson_roundtrip),
        cmocka_unit_test(test_fmt_u64),
        cmocka_unit_test(test_fmt_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
