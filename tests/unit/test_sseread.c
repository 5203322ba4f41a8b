/* Unit tests for proto/sseread.c: the WHATWG event-stream rules one by one, the
 * size bound, callback stops, zero-copy dispatch, and the property the proxy
 * depends on most: the events do not depend on how the stream is split into
 * reads (every two-piece split, one byte at a time, random splits). */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "proto/sseread.h"

/* --- a recorder: events and comments as one escaped, unambiguous string ------ */

typedef struct rec {
    buf_t       log;
    size_t      events, comments;
    size_t      stop_after;    /* the Nth callback (event or comment) returns 42; 0: never */
    size_t      calls;
    const char *in_lo, *in_hi; /* the current feed, to see where ev->data points */
    size_t      data_in_input;
    size_t      frames;        /* events that came with their whole frame */
} rec_t;

static void put_esc(buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '\n': buf_append_lit(b, "\\n"); break;
        case '\r': buf_append_lit(b, "\\r"); break;
        case '\0': buf_append_lit(b, "\\0"); break;
        case '|':  buf_append_lit(b, "\\|"); break;
        case '\\': buf_append_lit(b, "\\\\"); break;
        default:   buf_putc(b, s[i]); break;
        }
    }
}

static int rec_stop(rec_t *r)
{
    return r->stop_after && ++r->calls == r->stop_after ? 42 : 0;
}

static int on_event(void *ctx, const sseread_event_t *ev)
{
    rec_t *r = ctx;
    assert_non_null(ev->data);
    assert_non_null(ev->type);
    assert_non_null(ev->id);
    /* several data lines are joined by LF, one cannot hold one: the SSE sinks rely on it */
    assert_int_equal(ev->multiline, memchr(ev->data, '\n', ev->data_len) != NULL);
    if (r->in_lo && ev->data >= r->in_lo && ev->data < r->in_hi)
        r->data_in_input++;
    if (ev->frame) {   /* exactly "data: <data>\n\n", in the input, data inside it */
        assert_int_equal(ev->frame_len, ev->data_len + 8);
        assert_memory_equal(ev->frame, "data: ", 6);
        assert_ptr_equal(ev->data, ev->frame + 6);
        assert_memory_equal(ev->frame + 6 + ev->data_len, "\n\n", 2);
        assert_int_equal(ev->type_len, 0);
        assert_false(ev->multiline);
        if (r->in_lo)
            assert_true(ev->frame >= r->in_lo && ev->frame + ev->frame_len <= r->in_hi);
        r->frames++;
    }
    buf_append_lit(&r->log, "E|");
    put_esc(&r->log, ev->type, ev->type_len);
    buf_putc(&r->log, '|');
    put_esc(&r->log, ev->id, ev->id_len);
    char num[32];
    int k = snprintf(num, sizeof num, "|%" PRId64 "|", ev->retry_ms);
    buf_append(&r->log, num, (size_t)k);
    put_esc(&r->log, ev->data, ev->data_len);
    buf_putc(&r->log, '\n');
    r->events++;
    return rec_stop(r);
}

static int on_comment(void *ctx, const char *text, size_t len)
{
    rec_t *r = ctx;
    buf_append_lit(&r->log, "C|");
    put_esc(&r->log, text, len);
    buf_putc(&r->log, '\n');
    r->comments++;
    return rec_stop(r);
}

static void rec_free(rec_t *r) { buf_free(&r->log); }

/* The log as a C string (for messages and comparisons). */
static const char *rec_str(rec_t *r)
{
    buf_putc(&r->log, '\0');
    r->log.len--;
    return r->log.data ? r->log.data : "";
}

/* Feeds s[0..n) in pieces ending at the offsets in cuts (ascending, each < n),
 * stopping at the first non-zero return, which is returned. */
static int feed_cuts(sseread_t *p, rec_t *r, const char *s, size_t n, const size_t *cuts, size_t ncuts,
                     bool comments)
{
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        r->in_lo = s + at;
        r->in_hi = s + to;
        int rc = sseread_feed(p, s + at, to - at, on_event, comments ? on_comment : NULL, r);
        if (rc)
            return rc;
        at = to;
    }
    return 0;
}

/* Parses s in one feed with a fresh parser; returns rc, log in r. */
static int parse_whole(rec_t *r, const char *s, size_t n, size_t max_event)
{
    sseread_t p;
    sseread_init(&p, max_event);
    int rc = feed_cuts(&p, r, s, n, NULL, 0, true);
    sseread_free(&p);
    return rc;
}

static void expect(const char *stream, const char *want)
{
    rec_t r = {0};
    int rc = parse_whole(&r, stream, strlen(stream), 0);
    assert_int_equal(rc, 0);
    assert_string_equal(rec_str(&r), want);
    rec_free(&r);
}

/* Same, for streams holding NUL bytes (string literals only). */
#define EXPECT_N(lit, want) expect_n((lit), sizeof(lit) - 1, (want))
static void expect_n(const char *stream, size_t n, const char *want)
{
    rec_t r = {0};
    int rc = parse_whole(&r, stream, n, 0);
    assert_int_equal(rc, 0);
    assert_string_equal(rec_str(&r), want);
    rec_free(&r);
}

/* --- the rules ----------------------------------------------------------------- */

static void test_lf(void **state)
{
    expect("data: a\n\ndata: b\n\n", "E|||-1|a\nE|||-1|b\n");
}

static void test_crlf(void **state)
{
    expect("data: a\r\n\r\ndata: b\r\n\r\n", "E|||-1|a\nE|||-1|b\n");
}

static void test_cr(void **state)
{
    expect("data: a\r\rdata: b\r\r", "E|||-1|a\nE|||-1|b\n");
}

static void test_mixed(void **state)
{
    expect("data: a\r\ndata: b\rdata: c\n\r\n", "E|||-1|a\\nb\\nc\n");
    /* LF CR is two line ends, not one: the CR ends an empty line */
    expect("data: a\n\rdata: b\n\n", "E|||-1|a\nE|||-1|b\n");
    /* CR CR LF: the first CR ends a line, CR LF ends an empty one */
    expect("data: a\r\r\ndata: b\n\n", "E|||-1|a\nE|||-1|b\n");
}

static void test_crlf_split_across_feeds(void **state)
{
    /* The LF after a CR that ended the previous feed is part of that line end;
     * read as an empty line it would dispatch "a" alone. */
    const char *parts[] = { "data: a\r", "", "\ndata: b\r", "\n", "\r", "\n" };
    sseread_t p;
    rec_t r = {0};
    sseread_init(&p, 0);
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        assert_int_equal(sseread_feed(&p, parts[i], strlen(parts[i]), on_event, NULL, &r), 0);
    assert_string_equal(rec_str(&r), "E|||-1|a\\nb\n");
    sseread_free(&p);
    rec_free(&r);
}

static void test_bom(void **state)
{
    expect("\xEF\xBB\xBF" "data: x\n\n", "E|||-1|x\n");
    /* only one BOM is stripped; a second one is part of the field name */
    expect("\xEF\xBB\xBF\xEF\xBB\xBF" "data: x\n\n", "");
    /* a BOM later in the stream is bytes like any others */
    expect("data: a\n\n\xEF\xBB\xBF" "data: b\n\n", "E|||-1|a\n");
    expect("data: \xEF\xBB\xBF" "b\n\n", "E|||-1|\xEF\xBB\xBF" "b\n");
    /* half a BOM is not a BOM */
    expect("\xEF\xBB" "data: x\n\n", "");
    expect("\xEF\xBB\n" "data: x\n\n", "E|||-1|x\n");
    expect("\xEF" "\rdata: x\n\n", "E|||-1|x\n");
}

static void test_bom_split(void **state)
{
    /* the BOM arriving a byte per feed is still stripped ... */
    const char s[] = "\xEF\xBB\xBF" "data: x\n\n";
    sseread_t p;
    rec_t r = {0};
    sseread_init(&p, 0);
    for (size_t i = 0; i < sizeof s - 1; i++)
        assert_int_equal(sseread_feed(&p, s + i, 1, on_event, NULL, &r), 0);
    assert_string_equal(rec_str(&r), "E|||-1|x\n");
    /* ... and after a reset, a new stream may start with one again */
    sseread_reset(&p);
    buf_reset(&r.log);
    assert_int_equal(sseread_feed(&p, s, 1, on_event, NULL, &r), 0);
    assert_int_equal(sseread_feed(&p, s + 1, sizeof s - 2, on_event, NULL, &r), 0);
    assert_string_equal(rec_str(&r), "E|||-1|x\n");
    /* a BOM prefix from an earlier feed that turns out not to be one is data */
    sseread_reset(&p);
    buf_reset(&r.log);
    assert_int_equal(sseread_feed(&p, "\xEF", 1, on_event, NULL, &r), 0);
    assert_int_equal(sseread_feed(&p, "\xBB", 1, on_event, NULL, &r), 0);
    assert_int_equal(sseread_feed(&p, ":\n", 2, on_event, on_comment, &r), 0);
    assert_int_equal(sseread_feed(&p, "\xEF\xBB:c\n", 5, on_event, on_comment, &r), 0);
    assert_string_equal(rec_str(&r), "");  /* "\xEF\xBB" is a field name, then ... */
    assert_int_equal(sseread_feed(&p, "data\n\n", 6, on_event, on_comment, &r), 0);
    assert_string_equal(rec_str(&r), "E|||-1|\n");
    sseread_free(&p);
    rec_free(&r);
}

static void test_multiline_data(void **state)
{
    expect("data: one\ndata: two\ndata: three\n\n", "E|||-1|one\\ntwo\\nthree\n");
    expect("data: a\ndata:\ndata: b\n\n", "E|||-1|a\\n\\nb\n");   /* "data:" adds an empty line */
    expect("data:\n\n", "E|||-1|\n");
    expect("data:\ndata:\n\n", "E|||-1|\\n\n");
}

static void test_comments(void **state)
{
    expect(": hello\n:x\n:\ndata: a\n: mid\n\n", "C| hello\nC|x\nC|\nC| mid\nE|||-1|a\n");
    /* a comment does not end an event, nor start one */
    expect(":only\n\n", "C|only\n");
    /* without a comment callback they are skipped */
    sseread_t p;
    rec_t r = {0};
    sseread_init(&p, 0);
    assert_int_equal(sseread_feed(&p, ": hi\ndata: a\n\n", 14, on_event, NULL, &r), 0);
    assert_string_equal(rec_str(&r), "E|||-1|a\n");
    sseread_free(&p);
    rec_free(&r);
}

static void test_fields(void **state)
{
    expect("event: add\nid: 7\nretry: 1500\ndata: a\n\ndata: b\n\n",
           "E|add|7|1500|a\nE||7|-1|b\n");
    /* retry: digits only, non-empty */
    expect("retry: 15x\ndata: a\n\n", "E|||-1|a\n");
    expect("retry: -5\ndata: a\n\n", "E|||-1|a\n");
    expect("retry: 1.5\ndata: a\n\n", "E|||-1|a\n");
    expect("retry:\ndata: a\n\n", "E|||-1|a\n");
    expect("retry:  5\ndata: a\n\n", "E|||-1|a\n");
    expect("retry:0\ndata: a\n\n", "E|||0|a\n");
    expect("retry: 99999999999999999999999\ndata: a\n\n", "E|||9223372036854775807|a\n");
    /* the last valid retry counts, even one in a block with no data */
    expect("retry: 5\n\nretry: 7\nretry: x\ndata: a\n\ndata: b\n\n", "E|||7|a\nE|||-1|b\n");
    /* the last event: and id: win */
    expect("event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n", "E|b|2|-1|x\n");
    /* id persists to later events, and an id-only block sets it too */
    expect("id: 1\ndata: a\n\ndata: b\n\nid: 2\n\ndata: c\n\nid\ndata: d\n\n",
           "E||1|-1|a\nE||1|-1|b\nE||2|-1|c\nE|||-1|d\n");
    /* an id with NUL is ignored: the previous one stays */
    EXPECT_N("id: 1\ndata: a\n\nid: x\0y\ndata: b\n\n", "E||1|-1|a\nE||1|-1|b\n");
    /* NUL elsewhere is just a byte */
    EXPECT_N("event: t\0\ndata: \0\n\n", "E|t\\0||-1|\\0\n");
    /* type does not persist */
    expect("event: x\ndata: a\n\ndata: b\n\n", "E|x||-1|a\nE|||-1|b\n");
}

static void test_field_without_colon(void **state)
{
    expect("data\n\n", "E|||-1|\n");
    expect("data\ndata\n\n", "E|||-1|\\n\n");
    expect("event: x\nevent\ndata: a\n\n", "E|||-1|a\n");
    expect("retry\ndata: a\n\n", "E|||-1|a\n");
}

static void test_spaces_and_unknown(void **state)
{
    expect("data:x\n\n", "E|||-1|x\n");
    expect("data:  two\n\n", "E|||-1| two\n");   /* one space only is removed */
    expect("data: a \n\n", "E|||-1|a \n");       /* trailing space kept */
    expect("data:\ta\n\n", "E|||-1|\ta\n");
    expect("data: a:b: c\n\n", "E|||-1|a:b: c\n");
    expect("data :x\ndata: y\n\n", "E|||-1|y\n");  /* "data " is not "data" */
    expect("Data: x\nDATA: y\nfoo: bar\ndat: z\ndatum: q\ndata: ok\n\n", "E|||-1|ok\n");
    expect(" data: x\n\n", "");
}

static void test_no_data_no_event(void **state)
{
    expect("event: x\n\n", "");
    expect("event: x\n\ndata: y\n\n", "E|||-1|y\n");   /* and the type is reset */
    expect("\n\n\n\ndata: y\n\n\n\n", "E|||-1|y\n");
}

static void test_incomplete_event_discarded(void **state)
{
    expect("data: a\n\ndata: b\n", "E|||-1|a\n");
    expect("data: a\n\ndata: b", "E|||-1|a\n");
    expect("data: a\n\ndata: b\r", "E|||-1|a\n");
}

/* sseread_end: what the stream ends inside is read as @ag-ui/client reads
 * it, whatever the split of the stream into feeds. */
static void expect_end(const char *stream, const char *want)
{
    size_t n = strlen(stream);
    for (size_t cut = 0; cut <= n; cut++) {
        sseread_t p;
        rec_t r = {0};
        sseread_init(&p, 0);
        assert_int_equal(sseread_feed(&p, stream, cut, on_event, on_comment, &r), 0);
        assert_int_equal(sseread_feed(&p, stream + cut, n - cut, on_event, on_comment, &r), 0);
        r.in_lo = r.in_hi = NULL;
        assert_int_equal(sseread_end(&p, on_event, on_comment, &r), 0);
        assert_string_equal(rec_str(&r), want);
        /* and nothing is left for a second call */
        size_t had = r.events + r.comments;
        assert_int_equal(sseread_end(&p, on_event, on_comment, &r), 0);
        assert_int_equal(r.events + r.comments, had);
        sseread_free(&p);
        rec_free(&r);
    }
}

static void test_end_dispatches_the_last_event(void **state)
{
    expect_end("data: a\n\ndata: b\n", "E|||-1|a\nE|||-1|b\n");
    expect_end("data: a\n\ndata: b", "E|||-1|a\nE|||-1|b\n");
    expect_end("data: a\n\ndata: b\r", "E|||-1|a\nE|||-1|b\n");
    expect_end("data: b\ndata: c", "E|||-1|b\\nc\n");
    expect_end("event: x\nid: 7\ndata: b", "E|x|7|-1|b\n");
    expect_end("data: a\n\n", "E|||-1|a\n");          /* nothing pending */
    expect_end("data: a\n\nevent: x\n", "E|||-1|a\n"); /* no data: no event */
    expect_end("data: a\n\n:bye", "E|||-1|a\nC|bye\n");
    expect_end("", "");
}

static void test_end_after_a_stop(void **state)
{
    /* a callback that stops the last event: the code comes back, nothing stays */
    sseread_t p;
    rec_t r = { .stop_after = 1 };
    sseread_init(&p, 0);
    assert_int_equal(sseread_feed(&p, "data: a", 7, on_event, on_comment, &r), 0);
    assert_int_equal(sseread_end(&p, on_event, on_comment, &r), 42);
    r.stop_after = 0;
    assert_int_equal(sseread_end(&p, on_event, on_comment, &r), 0);
    assert_string_equal(rec_str(&r), "E|||-1|a\n");
    sseread_free(&p);
    rec_free(&r);
    /* the bound applies to the last line too */
    rec_t q = {0};
    sseread_init(&p, 4);
    assert_int_equal(sseread_feed(&p, "data", 4, on_event, on_comment, &q), 0);
    assert_int_equal(sseread_feed(&p, ": a", 3, on_event, on_comment, &q), -EMSGSIZE);
    sseread_reset(&p);
    assert_int_equal(sseread_feed(&p, "da", 2, on_event, on_comment, &q), 0);
    assert_int_equal(sseread_end(&p, on_event, on_comment, &q), 0);
    assert_int_equal(q.events, 0);
    sseread_free(&p);
    rec_free(&q);
}

static void test_callback_stop(void **state)
{
    const char *s = "data: a\n\n: c\ndata: b\n\ndata: c\n\n";
    for (size_t stop = 1; stop <= 4; stop++) {
        sseread_t p;
        rec_t r = { .stop_after = stop };
        sseread_init(&p, 0);
        assert_int_equal(sseread_feed(&p, s, strlen(s), on_event, on_comment, &r), 42);
        assert_int_equal(r.events + r.comments, stop);
        sseread_free(&p);
        rec_free(&r);
    }
    /* a comment that stops between a data line and its blank line: nothing leaks,
     * the event in progress is gone and the parser stays usable after a reset */
    sseread_t p;
    rec_t r = { .stop_after = 1 };
    sseread_init(&p, 0);
    assert_int_equal(sseread_feed(&p, "data: a\n:c\n\n", 12, on_event, on_comment, &r), 42);
    sseread_reset(&p);
    r.stop_after = 0;
    assert_int_equal(sseread_feed(&p, "data: b\n\n", 9, on_event, on_comment, &r), 0);
    assert_string_equal(rec_str(&r), "C|c\nE|||-1|b\n");
    sseread_free(&p);
    rec_free(&r);
}

static void test_emsgsize(void **state)
{
    rec_t r = {0};
    /* "data: abc" is 9 bytes: a bound of 9 holds it, 8 does not */
    assert_int_equal(parse_whole(&r, "data: abc\n\n", 11, 9), 0);
    assert_string_equal(rec_str(&r), "E|||-1|abc\n");
    buf_reset(&r.log);
    assert_int_equal(parse_whole(&r, "data: abc\n\n", 11, 8), -EMSGSIZE);
    assert_int_equal(r.events, 1);
    buf_reset(&r.log);
    /* data accumulates over lines: 4 + 4 + 4 bytes buffered, then the line */
    const char *s = "data: a\n\ndata: abc\ndata: abc\ndata: abc\ndata: abc\n\n";
    r.events = 0;
    assert_int_equal(parse_whole(&r, s, strlen(s), 20), -EMSGSIZE);
    assert_string_equal(rec_str(&r), "E|||-1|a\n");
    /* the type counts too, and an incomplete line is bounded while it waits */
    buf_reset(&r.log);
    assert_int_equal(parse_whole(&r, "event: 0123456789\ndata: 01234\n\n", 31, 20), -EMSGSIZE);
    buf_reset(&r.log);
    assert_int_equal(parse_whole(&r, "data: 0123456789012345678901234567", 34, 20), -EMSGSIZE);
    /* ... a byte at a time, too, with the same events before it */
    sseread_t p;
    sseread_init(&p, 20);
    buf_reset(&r.log);
    int rc = 0;
    for (size_t i = 0; i < strlen(s) && !rc; i++)
        rc = sseread_feed(&p, s + i, 1, on_event, NULL, &r);
    assert_int_equal(rc, -EMSGSIZE);
    assert_string_equal(rec_str(&r), "E|||-1|a\n");
    /* long comments count as buffered line bytes as well */
    sseread_reset(&p);
    assert_int_equal(sseread_feed(&p, ":0123456789012345678901234\n", 27, on_event, NULL, &r), -EMSGSIZE);
    sseread_free(&p);
    rec_free(&r);
}

/* A fresh parser (left initialised in *p), s[0..n) in one feed, recorded in r. */
static void feed_fresh(sseread_t *p, rec_t *r, const char *s, size_t n)
{
    r->in_lo = s;
    r->in_hi = s + n;
    sseread_init(p, 1 << 20);
    assert_int_equal(sseread_feed(p, s, n, on_event, on_comment, r), 0);
}

static void test_zero_copy(void **state)
{
    /* a whole single-line event in one read: the callback sees the input itself,
     * and nothing is allocated for the data */
    const char s[] = "event: m\ndata: {\"type\":\"RUN_STARTED\"}\n\n: ping\ndata: x\n\n";
    sseread_t p;
    rec_t r = {0};
    feed_fresh(&p, &r, s, sizeof s - 1);
    assert_int_equal(r.events, 2);
    assert_int_equal(r.data_in_input, 2);
    assert_null(p.data.data);
    assert_null(p.line.data);
    /* once buffers have grown, events split across reads allocate nothing more */
    const char t[] = "data: one\ndata: two\n\n";
    for (size_t cut = 1; cut < sizeof t - 1; cut++)
        assert_int_equal(feed_cuts(&p, &r, t, sizeof t - 1, &cut, 1, false), 0);
    char *d = p.data.data, *l = p.line.data, *ty = p.type.data;
    size_t before = r.events;
    for (int rep = 0; rep < 100; rep++)
        for (size_t cut = 1; cut < sizeof t - 1; cut++)
            assert_int_equal(feed_cuts(&p, &r, t, sizeof t - 1, &cut, 1, false), 0);
    assert_int_equal(r.events - before, 100 * (sizeof t - 2));
    assert_ptr_equal(p.data.data, d);
    assert_ptr_equal(p.line.data, l);
    assert_ptr_equal(p.type.data, ty);
    sseread_free(&p);
    rec_free(&r);
}

/* The whole frames a relay may copy as they are: only "data: X\n\n" read in one
 * piece with nothing of an event pending; consecutive ones lie back to back. */
static void test_frames(void **state)
{
    (void)state;
    const char s[] = "data: {\"a\":1}\n\ndata: {\"b\":2}\n\n"   /* two frames, back to back */
                     "data: crlf\r\n\r\n"                          /* other line ends */
                     "event: named\ndata: x\n\n"                    /* a field before */
                     "data: one\ndata: two\n\n"                     /* two data lines */
                     ": comment\ndata: after a comment\n\n";        /* a frame again */
    sseread_t p;
    rec_t r = {0};
    feed_fresh(&p, &r, s, sizeof s - 1);
    assert_int_equal(r.events, 6);
    assert_int_equal(r.frames, 3);
    sseread_free(&p);
    /* split anywhere inside a frame, that frame is not whole in any read */
    const char t[] = "data: {\"a\":1}\n\n";
    for (size_t cut = 1; cut < sizeof t - 1; cut++) {
        rec_t q = {0};
        sseread_init(&p, 1 << 20);
        assert_int_equal(feed_cuts(&p, &q, t, sizeof t - 1, &cut, 1, false), 0);
        assert_int_equal(q.events, 1);
        assert_int_equal(q.frames, 0);
        sseread_free(&p);
        rec_free(&q);
    }
    rec_free(&r);
}

/* --- split invariance ------------------------------------------------------------ */

/* Every rule above, in one stream. */
static const char big[] =
    "\xEF\xBB\xBF"
    ": welcome\r\n"
    "retry: 2500\r\n"
    "\r\n"
    "event: RUN_STARTED\n"
    "id: run-1\n"
    "data: {\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\"}\n"
    "\n"
    "data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"delta\":\"multi\"}\r"
    "data: second line\r"
    "data:\r"
    "data:third\r"
    "\r"
    "event: ignored, no data\n"
    "id: 2\n"
    "\n"
    "data\n"
    "retry: 12x\n"
    "\n"
    "id: bad\0id\n"
    "data: \xEF\xBB\xBF" "bom-looking\r\n"
    "\xEF\xBB\xBF" "data: not a field\n"
    "unknown: field\n"
    "data:  two spaces\n"
    ":\n"
    ":no space\n"
    "\n"
    "event\n"
    "id\n"
    "retry:0\n"
    "data: after empty id\n"
    "\r\n"
    "data: trailing cr lf mix\r\n"
    "\n\r"
    "data: unfinished event that is discarded\n";

static const char big_want[] =
    "C| welcome\n"
    "E|RUN_STARTED|run-1|2500|{\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\"}\n"
    "E||run-1|-1|{\"type\":\"TEXT_MESSAGE_CONTENT\",\"delta\":\"multi\"}\\nsecond line\\n\\nthird\n"
    "E||2|-1|\n"
    "C|\n"
    "C|no space\n"
    "E||2|-1|\xEF\xBB\xBF" "bom-looking\\n two spaces\n"
    "E|||0|after empty id\n"
    "E|||-1|trailing cr lf mix\n";

static void test_big_stream_whole(void **state)
{
    rec_t r = {0};
    assert_int_equal(parse_whole(&r, big, sizeof big - 1, 0), 0);
    assert_string_equal(rec_str(&r), big_want);
    rec_free(&r);
}

/* Parses s split at cuts and checks the log and rc against the one-feed parse. */
static void check_split(const char *s, size_t n, size_t max_event, const size_t *cuts, size_t ncuts,
                        int want_rc, const char *want)
{
    sseread_t p;
    rec_t r = {0};
    sseread_init(&p, max_event);
    int rc = feed_cuts(&p, &r, s, n, cuts, ncuts, true);
    const char *got = rec_str(&r);
    if (rc != want_rc || strcmp(got, want)) {
        char where[256];
        int k = 0;
        for (size_t i = 0; i < ncuts && k < 200; i++)
            k += snprintf(where + k, sizeof where - (size_t)k, " %zu", cuts[i]);
        fail_msg("split at%s (max %zu): rc %d want %d\n--- got\n%s--- want\n%s", where, max_event, rc,
                 want_rc, got, want);
    }
    sseread_free(&p);
    rec_free(&r);
}

static void split_everywhere(const char *s, size_t n, size_t max_event)
{
    rec_t whole = {0};
    int want_rc = parse_whole(&whole, s, n, max_event);
    const char *want = rec_str(&whole);

    for (size_t cut = 0; cut <= n; cut++)    /* two pieces (empty ones included) */
        check_split(s, n, max_event, &cut, 1, want_rc, want);

    size_t *bytes = malloc(n * sizeof *bytes);    /* a byte at a time */
    assert_non_null(bytes);
    for (size_t i = 0; i < n; i++)
        bytes[i] = i;
    check_split(s, n, max_event, bytes, n, want_rc, want);
    free(bytes);
    rec_free(&whole);
}

static void test_big_stream_every_split(void **state)
{
    split_everywhere(big, sizeof big - 1, 0);
}

static void test_big_stream_every_split_bounded(void **state)
{
    /* bounds that fail at different places, including inside the BOM, and on
     * lines that arrive whole in one case and in pieces in the other */
    static const size_t bounds[] = { 1, 2, 3, 5, 11, 20, 40, 57, 58, 59, 60, 100, 120, 200 };
    for (size_t i = 0; i < sizeof bounds / sizeof *bounds; i++)
        split_everywhere(big, sizeof big - 1, bounds[i]);
}

static void test_callback_stop_every_split(void **state)
{
    rec_t whole = { .stop_after = 4 };
    assert_int_equal(parse_whole(&whole, big, sizeof big - 1, 0), 42);
    const char *want = rec_str(&whole);
    for (size_t cut = 0; cut <= sizeof big - 1; cut++) {
        sseread_t p;
        rec_t r = { .stop_after = 4 };
        sseread_init(&p, 0);
        assert_int_equal(feed_cuts(&p, &r, big, sizeof big - 1, &cut, 1, true), 42);
        assert_string_equal(rec_str(&r), want);
        sseread_free(&p);
        rec_free(&r);
    }
    rec_free(&whole);
}

static uint64_t rng_next(uint64_t *s)   /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void test_random_splits(void **state)
{
    const size_t n = sizeof big - 1;
    rec_t whole = {0};
    assert_int_equal(parse_whole(&whole, big, n, 0), 0);
    const char *want = rec_str(&whole);
    uint64_t seed = 0x5eed5eedull;
    size_t cuts[sizeof big];
    for (int iter = 0; iter < 5000; iter++) {
        size_t ncuts = 0, at = 0;
        unsigned maxstep = 1u + (unsigned)(rng_next(&seed) % 64);
        for (;;) {
            at += rng_next(&seed) % (maxstep + 1);   /* 0 gives an empty feed */
            if (at > n || ncuts == sizeof cuts / sizeof *cuts)
                break;
            cuts[ncuts++] = at;
        }
        check_split(big, n, 0, cuts, ncuts, 0, want);
    }
    rec_free(&whole);
}

/* A stream made of random pieces of SSE syntax, split randomly. */
static void test_random_streams(void **state)
{
    static const char *atoms[] = {
        "data", "data:", "data: ", "event", "event: ", "id", "id: ", "retry", "retry: ", ":",
        ": ", "x", "7", "42", "\0", "\n", "\r", "\r\n", "\xEF\xBB\xBF", "\xEF", "\xBB", " ", "zz",
    };
    static const size_t alen[] = { 4, 5, 6, 5, 7, 2, 4, 5, 7, 1, 2, 1, 1, 2, 1, 1, 1, 2, 3, 1, 1, 1, 2 };
    _Static_assert(sizeof atoms / sizeof *atoms == sizeof alen / sizeof *alen, "atoms");
    uint64_t seed = 0xC0FFEEull;
    char s[512];
    size_t cuts[512];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 0;
        while (n < 400) {
            size_t a = rng_next(&seed) % (sizeof atoms / sizeof *atoms);
            memcpy(s + n, atoms[a], alen[a]);
            n += alen[a];
        }
        size_t max_event = rng_next(&seed) % 4 ? 0 : 1 + rng_next(&seed) % 64;
        rec_t whole = {0};
        int want_rc = parse_whole(&whole, s, n, max_event);
        const char *want = rec_str(&whole);
        size_t ncuts = 0, at = 0;
        for (;;) {
            at += rng_next(&seed) % 9;
            if (at > n || ncuts == sizeof cuts / sizeof *cuts)
                break;
            cuts[ncuts++] = at;
        }
        check_split(s, n, max_event, cuts, ncuts, want_rc, want);
        rec_free(&whole);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_cr),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_crlf_split_across_feeds),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_bom_split),
        cmocka_unit_test(test_multiline_data),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_field_without_colon),
        cmocka_unit_test(test_spaces_and_unknown),
        cmocka_unit_test(test_no_data_no_event),
        cmocka_unit_test(test_incomplete_event_discarded),
        cmocka_unit_test(test_end_dispatches_the_last_event),
        cmocka_unit_test(test_end_after_a_stop),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_emsgsize),
        cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_big_stream_whole),
        cmocka_unit_test(test_big_stream_every_split),
        cmocka_unit_test(test_big_stream_every_split_bounded),
        cmocka_unit_test(test_callback_stop_every_split),
        cmocka_unit_test(test_random_splits),
        cmocka_unit_test(test_random_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
