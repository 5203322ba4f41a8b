/* Unit tests for proto/pbread.c: frames out of a byte stream whatever its split
 * (every two-piece split, one byte at a time), zero-copy for whole frames, the
 * size bound, callback stops, zero-length frames and mid-frame detection. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "proto/pbread.h"

typedef struct rec {
    buf_t  log;            /* "<len>:<bytes>|" per frame */
    size_t frames, stop_after, in_input;
    const uint8_t *lo, *hi;
} rec_t;

static int on_frame(void *ctx, const uint8_t *msg, size_t len)
{
    rec_t *r = ctx;
    char t[24];
    snprintf(t, sizeof t, "%zu:", len);
    buf_append(&r->log, t, strlen(t));
    buf_append(&r->log, msg, len);
    buf_putc(&r->log, '|');
    r->frames++;
    if (r->lo && msg >= r->lo && msg + len <= r->hi)
        r->in_input++;
    return r->stop_after && r->frames == r->stop_after ? 42 : 0;
}

static void frame(buf_t *b, const char *s, size_t n)
{
    uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    buf_append(b, h, 4);
    buf_append(b, s, n);
}

static void stream(buf_t *b)
{
    frame(b, "hello", 5);
    frame(b, "", 0);
    char big[3000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    frame(b, big, sizeof big);
    frame(b, "x", 1);
}

static void feed_split(const buf_t *in, size_t at, buf_t *log, size_t max)
{
    pbread_t p;
    pbread_init(&p, max);
    rec_t r = {0};
    assert_int_equal(pbread_feed(&p, in->data, at, on_frame, &r), 0);
    assert_int_equal(pbread_feed(&p, in->data + at, in->len - at, on_frame, &r), 0);
    assert_false(pbread_mid_frame(&p));
    buf_reset(log);
    buf_append(log, r.log.data, r.log.len);
    buf_free(&r.log);
    pbread_free(&p);
}

static void test_every_split(void **state)
{
    buf_t in = {0}, whole = {0}, got = {0};
    stream(&in);
    feed_split(&in, in.len, &whole, 0);
    assert_true(whole.len > 3000);
    for (size_t at = 0; at <= in.len; at++) {
        feed_split(&in, at, &got, 4096);
        assert_int_equal(got.len, whole.len);
        assert_memory_equal(got.data, whole.data, whole.len);
    }
    /* one byte at a time */
    pbread_t p;
    pbread_init(&p, 0);
    rec_t r = {0};
    for (size_t i = 0; i < in.len; i++)
        assert_int_equal(pbread_feed(&p, in.data + i, 1, on_frame, &r), 0);
    assert_int_equal(r.frames, 4);
    assert_memory_equal(r.log.data, whole.data, whole.len);
    buf_free(&r.log);
    pbread_free(&p);
    buf_free(&in);
    buf_free(&whole);
    buf_free(&got);
}

static void test_zero_copy_and_stop(void **state)
{
    buf_t in = {0};
    stream(&in);
    pbread_t p;
    pbread_init(&p, 0);
    rec_t r = {.lo = (const uint8_t *)in.data, .hi = (const uint8_t *)in.data + in.len};
    assert_int_equal(pbread_feed(&p, in.data, in.len, on_frame, &r), 0);
    assert_int_equal(r.in_input, 4);   /* every frame handed over in place */
    buf_free(&r.log);
    pbread_reset(&p);
    rec_t s = {.stop_after = 2};
    assert_int_equal(pbread_feed(&p, in.data, in.len, on_frame, &s), 42);
    assert_int_equal(s.frames, 2);
    buf_free(&s.log);
    pbread_free(&p);
    buf_free(&in);
}

static void test_bound_and_mid_frame(void **state)
{
    pbread_t p;
    pbread_init(&p, 100);
    rec_t r = {0};
    static const uint8_t too_big[] = {0, 0, 0, 101};
    assert_int_equal(pbread_feed(&p, (const char *)too_big, 4, on_frame, &r), -EMSGSIZE);
    pbread_reset(&p);
    static const uint8_t part[] = {0, 0, 0, 5, 'a', 'b'};
    assert_int_equal(pbread_feed(&p, (const char *)part, sizeof part, on_frame, &r), 0);
    assert_true(pbread_mid_frame(&p));
    assert_int_equal(r.frames, 0);
    assert_int_equal(pbread_feed(&p, "cde", 3, on_frame, &r), 0);
    assert_false(pbread_mid_frame(&p));
    assert_int_equal(r.frames, 1);
    assert_int_equal(r.log.len, strlen("5:abcde|"));
    assert_memory_equal(r.log.data, "5:abcde|", r.log.len);
    pbread_reset(&p);
    assert_int_equal(pbread_feed(&p, "\0\0", 2, on_frame, &r), 0);
    assert_true(pbread_mid_frame(&p));   /* inside the length */
    buf_free(&r.log);
    pbread_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_zero_copy_and_stop),
        cmocka_unit_test(test_bound_and_mid_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
