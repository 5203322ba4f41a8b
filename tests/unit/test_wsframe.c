/* wsframe: the RFC 6455 frame parser fed client frames built here, whole and
 * split at every byte boundary; each protocol violation gives its close code;
 * UTF-8 is checked across fragments; a callback's pause stops the feed at its
 * frame's end with the parser alive; server headers have the right length form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "net/wsframe.h"

/* What the callbacks saw. */
typedef struct seen {
    int  n_msg, n_ctl;
    int  msg_op[8], ctl_op[8];
    char msg[8][512];
    size_t msg_len[8];
    char ctl[8][128];
    size_t ctl_len[8];
    int  stop_on_close;
    int  pause;          /* every callback returns WSF_PAUSE */
} seen_t;

static int on_message(void *ctx, int op, const char *d, size_t n)
{
    seen_t *s = ctx;
    assert_true(s->n_msg < 8 && n < 512);
    s->msg_op[s->n_msg] = op;
    memcpy(s->msg[s->n_msg], d, n);
    s->msg_len[s->n_msg++] = n;
    return s->pause ? WSF_PAUSE : 0;
}

static int on_control(void *ctx, int op, const char *d, size_t n)
{
    seen_t *s = ctx;
    assert_true(s->n_ctl < 8 && n <= 125);
    s->ctl_op[s->n_ctl] = op;
    memcpy(s->ctl[s->n_ctl], d, n);
    s->ctl_len[s->n_ctl++] = n;
    return op == WSF_CLOSE && s->stop_on_close ? 1 : s->pause ? WSF_PAUSE : 0;
}

static const wsf_callbacks_t cbs = {on_message, on_control};

/* A client frame: flags byte (FIN|RSV|opcode), masked unless `unmasked`. */
static size_t frame(uint8_t *out, uint8_t b0, const void *payload, size_t n, int unmasked)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t at = 0;
    out[at++] = b0;
    uint8_t m = unmasked ? 0 : 0x80;
    if (n < 126) {
        out[at++] = (uint8_t)(m | n);
    } else if (n <= 0xffff) {
        out[at++] = m | 126;
        out[at++] = (uint8_t)(n >> 8);
        out[at++] = (uint8_t)n;
    } else {
        out[at++] = m | 127;
        for (int i = 0; i < 8; i++)
            out[at++] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    if (!unmasked) {
        memcpy(out + at, key, 4);
        at += 4;
    }
    for (size_t i = 0; i < n; i++)
        out[at + i] = ((const uint8_t *)payload)[i] ^ (unmasked ? 0 : key[i & 3]);
    return at + n;
}

/* Feeds buf whole; returns the result. */
static int feed_all(wsf_parser_t *p, const uint8_t *b, size_t n, seen_t *s)
{
    return wsf_feed(p, (const char *)b, n, &cbs, s);
}

/* Feeds buf split in two at every position, and byte by byte; every split must
 * give the same result and the same messages. */
static int feed_splits(const uint8_t *b, size_t n, size_t max, seen_t *out)
{
    seen_t ref = {0};
    wsf_parser_t p = {0};
    wsf_init(&p, max);
    int want = feed_all(&p, b, n, &ref);
    wsf_free(&p);
    for (size_t cut = 0; cut <= n; cut++) {
        seen_t s = {0};
        wsf_parser_t q = {0};
        wsf_init(&q, max);
        int rc = wsf_feed(&q, (const char *)b, cut, &cbs, &s);
        if (!rc)
            rc = wsf_feed(&q, (const char *)b + cut, n - cut, &cbs, &s);
        assert_int_equal(rc, want);
        assert_int_equal(s.n_msg, ref.n_msg);
        for (int i = 0; i < s.n_msg; i++) {
            assert_int_equal(s.msg_len[i], ref.msg_len[i]);
            assert_memory_equal(s.msg[i], ref.msg[i], s.msg_len[i]);
        }
        wsf_free(&q);
    }
    seen_t s = {0};
    wsf_parser_t q = {0};
    wsf_init(&q, max);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = wsf_feed(&q, (const char *)b + i, 1, &cbs, &s);
    assert_int_equal(rc, want);
    assert_int_equal(s.n_msg, ref.n_msg);
    wsf_free(&q);
    if (out)
        *out = ref;
    return want;
}

static void test_text_message(void **state)
{
    uint8_t b[256];
    size_t n = frame(b, 0x81, "{\"threadId\":\"t\"}", 16, 0);
    seen_t s;
    assert_int_equal(feed_splits(b, n, 1024, &s), 0);
    assert_int_equal(s.n_msg, 1);
    assert_int_equal(s.msg_op[0], WSF_TEXT);
    assert_int_equal(s.msg_len[0], 16);
    assert_memory_equal(s.msg[0], "{\"threadId\":\"t\"}", 16);
}

static void test_lengths_16_and_64(void **state)
{
    static uint8_t b[70000 + 20], payload[70000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    wsf_parser_t p = {0};
    wsf_init(&p, 1 << 20);
    seen_t s = {0};
    /* 300 bytes: 16-bit length; the callback's copy is only 512, so check here. */
    size_t n = frame(b, 0x82, payload, 300, 0);
    assert_int_equal(feed_all(&p, b, n, &s), 0);
    assert_int_equal(s.n_msg, 1);
    assert_int_equal(s.msg_op[0], WSF_BINARY);
    assert_int_equal(s.msg_len[0], 300);
    assert_memory_equal(s.msg[0], payload, 300);
    wsf_free(&p);
}

static int big_msg(void *ctx, int op, const char *d, size_t n)
{
    size_t *got = ctx;
    for (size_t i = 0; i < n; i++)
        assert_int_equal((uint8_t)d[i], (uint8_t)('a' + i % 26));
    *got = n;
    return 0;
}

static void test_length_64(void **state)
{
    static uint8_t b[70000 + 20], payload[70000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    size_t n = frame(b, 0x81, payload, sizeof payload, 0);
    assert_int_equal(b[1] & 0x7f, 127);
    wsf_callbacks_t c = {big_msg, on_control};
    size_t got = 0;
    wsf_parser_t p = {0};
    wsf_init(&p, 1 << 20);
    /* in odd pieces, so unmasking restarts at every mask offset */
    for (size_t i = 0; i < n; i += 7)
        assert_int_equal(wsf_feed(&p, (const char *)b + i, n - i < 7 ? n - i : 7, &c, &got), 0);
    assert_int_equal(got, sizeof payload);
    wsf_free(&p);
}

static void test_fragments_with_ping_between(void **state)
{
    uint8_t b[256];
    size_t n = 0;
    n += frame(b + n, 0x01, "hel", 3, 0);          /* text, no FIN */
    n += frame(b + n, 0x89, "p1", 2, 0);           /* ping inside the message */
    n += frame(b + n, 0x00, "lo ", 3, 0);          /* continuation */
    n += frame(b + n, 0x8A, "", 0, 0);             /* pong, empty */
    n += frame(b + n, 0x80, "world", 5, 0);        /* final continuation */
    seen_t s;
    assert_int_equal(feed_splits(b, n, 1024, &s), 0);
    assert_int_equal(s.n_msg, 1);
    assert_int_equal(s.msg_len[0], 11);
    assert_memory_equal(s.msg[0], "hello world", 11);
    assert_int_equal(s.n_ctl, 2);
    assert_int_equal(s.ctl_op[0], WSF_PING);
    assert_int_equal(s.ctl_len[0], 2);
    assert_memory_equal(s.ctl[0], "p1", 2);
    assert_int_equal(s.ctl_op[1], WSF_PONG);
}

/* WSF_PAUSE stops the feed at the end of the frame whose callback returned
 * it, with the parser alive: *used is that frame's end, and feeding the rest
 * gives what one feed gives, even with the pause between two fragments of a
 * message (a ping in the middle). */
static void test_pause(void **state)
{
    uint8_t b[256];
    size_t n = 0, ends[4];
    n += frame(b + n, 0x81, "one", 3, 0);
    ends[0] = n;
    n += frame(b + n, 0x01, "t", 1, 0);            /* a fragment: no callback, no pause */
    n += frame(b + n, 0x89, "p", 1, 0);            /* a ping between the fragments */
    ends[1] = n;
    n += frame(b + n, 0x80, "wo", 2, 0);
    ends[2] = n;
    n += frame(b + n, 0x8A, "", 0, 0);             /* an empty pong: ends with its header */
    ends[3] = n;
    seen_t s = {0};
    s.pause = 1;
    wsf_parser_t p = {0};
    wsf_init(&p, 64);
    size_t at = 0, used;
    for (int k = 0; k < 4; k++) {
        assert_int_equal(wsf_feed_some(&p, (const char *)b + at, n - at, &cbs, &s, &used), WSF_PAUSE);
        at += used;
        assert_int_equal(at, ends[k]);
    }
    assert_int_equal(wsf_feed_some(&p, (const char *)b + at, n - at, &cbs, &s, &used), 0);
    assert_int_equal(used, 0);
    assert_false(p.dead);
    assert_int_equal(s.n_msg, 2);
    assert_memory_equal(s.msg[0], "one", 3);
    assert_int_equal(s.msg_len[1], 3);
    assert_memory_equal(s.msg[1], "two", 3);
    assert_int_equal(s.n_ctl, 2);
    assert_int_equal(s.ctl_op[0], WSF_PING);
    assert_int_equal(s.ctl_op[1], WSF_PONG);
    s.pause = 0;                                   /* and on: a frame after the pauses */
    n = frame(b, 0x81, "three", 5, 0);
    assert_int_equal(wsf_feed_some(&p, (const char *)b, n, &cbs, &s, &used), 0);
    assert_int_equal(used, n);
    assert_int_equal(s.n_msg, 3);
    wsf_free(&p);
}

static void test_empty_messages(void **state)
{
    uint8_t b[64];
    size_t n = frame(b, 0x81, "", 0, 0);
    n += frame(b + n, 0x01, "", 0, 0);
    n += frame(b + n, 0x80, "", 0, 0);
    seen_t s;
    assert_int_equal(feed_splits(b, n, 16, &s), 0);
    assert_int_equal(s.n_msg, 2);
    assert_int_equal(s.msg_len[0], 0);
    assert_int_equal(s.msg_len[1], 0);
}

static void test_protocol_errors(void **state)
{
    uint8_t b[256];
    size_t n;
    /* unmasked client frame */
    n = frame(b, 0x81, "hi", 2, 1);
    assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_PROTOCOL);
    /* each RSV bit */
    for (int bit = 0x10; bit <= 0x40; bit <<= 1) {
        n = frame(b, (uint8_t)(0x81 | bit), "hi", 2, 0);
        assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_PROTOCOL);
    }
    /* reserved opcodes */
    static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < sizeof ops; i++) {
        n = frame(b, (uint8_t)(0x80 | ops[i]), "", 0, 0);
        assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_PROTOCOL);
    }
    /* continuation with no message open */
    n = frame(b, 0x80, "x", 1, 0);
    assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_PROTOCOL);
    /* a new text frame inside a fragmented message */
    n = frame(b, 0x01, "a", 1, 0);
    n += frame(b + n, 0x81, "b", 1, 0);
    assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_PROTOCOL);
    /* fragmented control frame */
    n = frame(b, 0x09, "x", 1, 0);
    assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_PROTOCOL);
    /* control frame over 125 bytes */
    uint8_t big[126];
    memset(big, 'x', sizeof big);
    n = frame(b, 0x89, big, sizeof big, 0);
    assert_int_equal(feed_splits(b, n, 1024, NULL), WSF_CLOSE_PROTOCOL);
    /* 64-bit length with the top bit set */
    uint8_t h[14] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    assert_int_equal(feed_splits(h, sizeof h, 64, NULL), WSF_CLOSE_PROTOCOL);
    /* close with a one-byte payload, and with invalid codes */
    n = frame(b, 0x88, "\x03", 1, 0);
    assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_PROTOCOL);
    static const unsigned bad_codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        uint8_t pl[2] = {(uint8_t)(bad_codes[i] >> 8), (uint8_t)bad_codes[i]};
        n = frame(b, 0x88, pl, 2, 0);
        assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_PROTOCOL);
    }
}

static void test_dead_after_error(void **state)
{
    uint8_t b[64];
    wsf_parser_t p = {0};
    wsf_init(&p, 64);
    seen_t s = {0};
    size_t n = frame(b, 0x81, "x", 1, 1);
    assert_int_equal(feed_all(&p, b, n, &s), WSF_CLOSE_PROTOCOL);
    n = frame(b, 0x81, "ok", 2, 0);
    assert_int_equal(feed_all(&p, b, n, &s), WSF_CLOSE_PROTOCOL);
    assert_int_equal(s.n_msg, 0);
    wsf_free(&p);
}

static void test_close_frames(void **state)
{
    uint8_t b[64];
    seen_t s;
    size_t n = frame(b, 0x88, "\x03\xe8" "bye", 5, 0);   /* 1000 "bye" */
    assert_int_equal(feed_splits(b, n, 64, &s), 0);
    assert_int_equal(s.n_ctl, 1);
    assert_int_equal(s.ctl_op[0], WSF_CLOSE);
    assert_int_equal(s.ctl_len[0], 5);
    n = frame(b, 0x88, "", 0, 0);                        /* no code */
    assert_int_equal(feed_splits(b, n, 64, &s), 0);
    n = frame(b, 0x88, "\x0f\xa0", 2, 0);                /* 4000: private use */
    assert_int_equal(feed_splits(b, n, 64, &s), 0);
    n = frame(b, 0x88, "\x03\xe8\xc3", 3, 0);            /* reason cut inside a character */
    assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_INVALID_DATA);
    /* a callback's non-zero return stops parsing there */
    n = frame(b, 0x88, "", 0, 0);
    n += frame(b + n, 0x81, "x", 1, 0);
    wsf_parser_t p = {0};
    wsf_init(&p, 64);
    seen_t t = {.stop_on_close = 1};
    assert_int_equal(feed_all(&p, b, n, &t), 1);
    assert_int_equal(t.n_msg, 0);
    wsf_free(&p);
}

static void test_too_big(void **state)
{
    uint8_t b[256];
    char pl[100];
    memset(pl, 'a', sizeof pl);
    size_t n = frame(b, 0x81, pl, 65, 0);
    assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_TOO_BIG);
    n = frame(b, 0x81, pl, 64, 0);
    assert_int_equal(feed_splits(b, n, 64, NULL), 0);
    /* over the limit only in sum: 40 + 40 fragments */
    n = frame(b, 0x01, pl, 40, 0);
    n += frame(b + n, 0x80, pl, 40, 0);
    assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_TOO_BIG);
    /* decided from the header alone: a 1 GiB length with no payload yet */
    uint8_t h[14] = {0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4};
    wsf_parser_t p = {0};
    wsf_init(&p, 1 << 20);
    seen_t s = {0};
    assert_int_equal(feed_all(&p, h, sizeof h, &s), WSF_CLOSE_TOO_BIG);
    assert_true(p.msg.cap < (1 << 20) + 64);
    wsf_free(&p);
}

static void test_utf8(void **state)
{
    /* valid: ASCII, 2-, 3-, 4-byte forms at the range edges */
    static const char *good[] = {
        "plain ascii text that is longer than eight bytes", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80",
        "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
        "h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(wsf_utf8_valid(good[i], strlen(good[i])));
    /* invalid: lone continuation, overlongs, surrogates, past U+10FFFF, truncated */
    static const char *bad[] = {
        "\x80", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf0\x80\x80\xaf",
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "abc\xc3", "abcdefgh\xe2\x82",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(wsf_utf8_valid(bad[i], strlen(bad[i])));
    /* across fragments: a character split between two frames is fine */
    uint8_t b[64];
    size_t n = frame(b, 0x01, "caf\xc3", 4, 0);
    n += frame(b + n, 0x80, "\xa9!", 2, 0);
    seen_t s;
    assert_int_equal(feed_splits(b, n, 64, &s), 0);
    assert_int_equal(s.msg_len[0], 6);
    /* fail fast: a bad byte in the first fragment fails before the message ends */
    n = frame(b, 0x01, "ok\xff", 3, 0);
    wsf_parser_t p = {0};
    wsf_init(&p, 64);
    seen_t t = {0};
    assert_int_equal(feed_all(&p, b, n, &t), WSF_CLOSE_INVALID_DATA);
    wsf_free(&p);
    /* ends inside a character */
    n = frame(b, 0x81, "ab\xe2\x82", 4, 0);
    assert_int_equal(feed_splits(b, n, 64, NULL), WSF_CLOSE_INVALID_DATA);
    /* binary messages are not checked */
    n = frame(b, 0x82, "\xff\xfe", 2, 0);
    assert_int_equal(feed_splits(b, n, 64, NULL), 0);
}

static void test_server_header(void **state)
{
    uint8_t h[WSF_MAX_HEADER];
    assert_int_equal(wsf_header(h, WSF_TEXT, 0), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0);
    assert_int_equal(wsf_header(h, WSF_TEXT, 125), 2);
    assert_int_equal(h[1], 125);
    assert_int_equal(wsf_header(h, WSF_CLOSE, 126), 4);
    assert_int_equal(h[0], 0x88);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2], 0);
    assert_int_equal(h[3], 126);
    assert_int_equal(wsf_header(h, WSF_TEXT, 65535), 4);
    assert_int_equal(h[2], 0xff);
    assert_int_equal(h[3], 0xff);
    assert_int_equal(wsf_header(h, WSF_TEXT, 65536), 10);
    assert_int_equal(h[1], 127);
    static const uint8_t want[8] = {0, 0, 0, 0, 0, 1, 0, 0};
    assert_memory_equal(h + 2, want, 8);
}

static void test_close_codes(void **state)
{
    assert_true(wsf_close_code_valid(1000));
    assert_true(wsf_close_code_valid(1003));
    assert_true(wsf_close_code_valid(1007));
    assert_true(wsf_close_code_valid(1011));
    assert_true(wsf_close_code_valid(3000));
    assert_true(wsf_close_code_valid(4999));
    assert_false(wsf_close_code_valid(1004));
    assert_false(wsf_close_code_valid(1005));
    assert_false(wsf_close_code_valid(1006));
    assert_false(wsf_close_code_valid(1015));
    assert_false(wsf_close_code_valid(2000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_message),
        cmocka_unit_test(test_lengths_16_and_64),
        cmocka_unit_test(test_length_64),
        cmocka_unit_test(test_fragments_with_ping_between),
        cmocka_unit_test(test_pause),
        cmocka_unit_test(test_empty_messages),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_dead_after_error),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_server_header),
        cmocka_unit_test(test_close_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
