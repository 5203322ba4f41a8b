/* fuzz_sseread: libFuzzer driver for proto/sseread.c.
 *
 * Input: three control bytes, then the event stream.
 *   byte 0  how the stream is cut into feeds: < 128 fixed pieces of byte0+1
 *           bytes; otherwise pseudo-random sizes 0..(byte0 & 31)+1 seeded by it
 *   byte 1  max_event: < 128 unbounded, else (byte1 - 127) * 3
 *   byte 2  1..15: the Nth callback stops the parse; else never
 *
 * Three parses must agree, callbacks and return value alike (else trap):
 *   - a plain, byte-by-byte transcription of the WHATWG rules (ref_parse below),
 *     which knows nothing of feeds, slices or memchr;
 *   - sseread fed the whole stream at once;
 *   - sseread fed it in pieces, on the same parser after sseread_reset (so a
 *     reset must leave nothing behind).
 * Then the split parse is ended (sseread_end) and must match the reference
 * read to the end of the stream, the unfinished last line included.
 * Each event is also checked for what callers rely on: no CR or LF in type or
 * id, no NUL in id, no CR in data, retry -1 or not negative. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "proto/sseread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

typedef struct fz_log {
    buf_t  b;
    size_t calls, stop_after;
} fz_log_t;

static void fz_put(buf_t *b, char tag, const char *s, size_t n)
{
    FZ_CHECK(buf_putc(b, tag) == 0);
    FZ_CHECK(buf_append(b, &n, sizeof n) == 0);
    FZ_CHECK(buf_append(b, s, n) == 0);
}

static int fz_event(void *ctx, const sseread_event_t *ev)
{
    fz_log_t *l = ctx;
    FZ_CHECK(ev->data && ev->type && ev->id);
    FZ_CHECK(!memchr(ev->type, '\n', ev->type_len) && !memchr(ev->type, '\r', ev->type_len));
    FZ_CHECK(!memchr(ev->id, '\n', ev->id_len) && !memchr(ev->id, '\r', ev->id_len));
    FZ_CHECK(!memchr(ev->id, '\0', ev->id_len));
    FZ_CHECK(!memchr(ev->data, '\r', ev->data_len));
    FZ_CHECK(ev->multiline || !memchr(ev->data, '\n', ev->data_len));   /* the SSE sinks trust it */
    FZ_CHECK(ev->retry_ms >= -1);
    /* a relay copies a whole frame as it is: it must be exactly the event */
    FZ_CHECK(!ev->frame || (ev->frame_len == ev->data_len + 8 && !memcmp(ev->frame, "data: ", 6) &&
                            ev->data == ev->frame + 6 && !memcmp(ev->data + ev->data_len, "\n\n", 2) &&
                            !ev->type_len && !ev->multiline));
    fz_put(&l->b, 'D', ev->data, ev->data_len);
    fz_put(&l->b, 'T', ev->type, ev->type_len);
    fz_put(&l->b, 'I', ev->id, ev->id_len);
    FZ_CHECK(buf_append(&l->b, &ev->retry_ms, sizeof ev->retry_ms) == 0);
    return l->stop_after && ++l->calls == l->stop_after ? 42 : 0;
}

static bool fz_same(const fz_log_t *a, const fz_log_t *b)
{
    return a->b.len == b->b.len && (!a->b.len || !memcmp(a->b.data, b->b.data, a->b.len));
}

static int fz_comment(void *ctx, const char *text, size_t len)
{
    fz_log_t *l = ctx;
    FZ_CHECK(!memchr(text, '\n', len) && !memchr(text, '\r', len));
    fz_put(&l->b, 'C', text, len);
    return l->stop_after && ++l->calls == l->stop_after ? 42 : 0;
}

/* --- the reference: the spec's steps, one byte at a time ------------------------ */

typedef struct ref {
    buf_t   data, type, id;   /* data: the spec's buffer, each value + LF */
    int64_t retry;
} ref_t;

static int ref_line(ref_t *r, fz_log_t *l, const char *s, size_t n)
{
    if (n == 0) {                                /* dispatch */
        if (!r->data.len) {
            r->type.len = 0;
            return 0;
        }
        sseread_event_t ev = {
            .data = r->data.data, .data_len = r->data.len - 1,   /* drop the last LF */
            .type = r->type.len ? r->type.data : "", .type_len = r->type.len,
            .id = r->id.len ? r->id.data : "", .id_len = r->id.len,
            .retry_ms = r->retry, .multiline = memchr(r->data.data, '\n', r->data.len - 1) != NULL,
        };
        r->retry = -1;
        int rc = fz_event(l, &ev);
        r->data.len = r->type.len = 0;
        return rc;
    }
    if (s[0] == ':')
        return fz_comment(l, s + 1, n - 1);
    size_t c = 0;
    while (c < n && s[c] != ':')
        c++;
    const char *name = s, *val = s + n;
    size_t name_len = c, val_len = 0;
    if (c < n) {
        val = s + c + 1;
        val_len = n - c - 1;
        if (val_len && val[0] == ' ') {
            val++;
            val_len--;
        }
    }
    if (name_len == 5 && !memcmp(name, "event", 5)) {
        r->type.len = 0;
        FZ_CHECK(buf_append(&r->type, val, val_len) == 0);
    } else if (name_len == 4 && !memcmp(name, "data", 4)) {
        FZ_CHECK(buf_append(&r->data, val, val_len) == 0 && buf_putc(&r->data, '\n') == 0);
    } else if (name_len == 2 && !memcmp(name, "id", 2)) {
        bool nul = false;
        for (size_t i = 0; i < val_len; i++)
            nul |= val[i] == '\0';
        if (!nul) {
            r->id.len = 0;
            FZ_CHECK(buf_append(&r->id, val, val_len) == 0);
        }
    } else if (name_len == 5 && !memcmp(name, "retry", 5)) {
        bool digits = val_len > 0;
        int64_t v = 0;
        for (size_t i = 0; i < val_len && digits; i++) {
            if (val[i] < '0' || val[i] > '9')
                digits = false;
            else if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, val[i] - '0', &v))
                v = INT64_MAX;
        }
        if (digits)
            r->retry = v;
    }
    return 0;
}

/* The bound, as sseread documents it: a line (complete or not) plus the data
 * buffer plus the type may not pass max_event. */
static bool ref_fits(const ref_t *r, size_t line_len, size_t max_event)
{
    return !max_event || line_len + r->data.len + r->type.len <= max_event;
}

/* at_end: the stream ends there (sseread_end): the unfinished line is read
 * and the event built so far dispatched, as @ag-ui/client does. */
static int ref_parse(const char *s, size_t n, size_t max_event, bool at_end, fz_log_t *l)
{
    static const char bom[] = "\xEF\xBB\xBF";
    if (n < 3 && !memcmp(s, bom, n))
        return 0;                                /* could still be a BOM */
    ref_t r = { .retry = -1 };
    size_t i = n >= 3 && !memcmp(s, bom, 3) ? 3 : 0;
    int rc = 0;
    while (!rc) {
        size_t j = i;
        while (j < n && s[j] != '\r' && s[j] != '\n')
            j++;
        if (!ref_fits(&r, j - i, max_event)) {
            rc = -EMSGSIZE;
            break;
        }
        if (j == n) {                            /* an unfinished line */
            if (at_end && j > i)
                rc = ref_line(&r, l, s + i, j - i);
            if (at_end && !rc)
                rc = ref_line(&r, l, NULL, 0);
            break;
        }
        rc = ref_line(&r, l, s + i, j - i);
        i = j + 1;
        if (s[j] == '\r' && i < n && s[i] == '\n')
            i++;
    }
    buf_free(&r.data);
    buf_free(&r.type);
    buf_free(&r.id);
    return rc;
}

/* --- the driver -------------------------------------------------------------------- */

static uint32_t fz_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t cut = data[0], bound = data[1], stop = data[2];
    const char *s = (const char *)data + 3;
    size_t n = size - 3;
    size_t max_event = bound < 128 ? 0 : (size_t)(bound - 127) * 3;
    size_t stop_after = stop >= 1 && stop <= 15 ? stop : 0;

    fz_log_t ref = { .stop_after = stop_after }, ref_e = { .stop_after = stop_after };
    int ref_rc = ref_parse(s, n, max_event, false, &ref);
    int ref_e_rc = ref_parse(s, n, max_event, true, &ref_e);

    sseread_t p;
    sseread_init(&p, max_event);
    fz_log_t whole = { .stop_after = stop_after };
    int whole_rc = sseread_feed(&p, s, n, fz_event, fz_comment, &whole);
    FZ_CHECK(whole_rc == 0 || whole_rc == -EMSGSIZE || whole_rc == 42);
    FZ_CHECK(whole_rc == ref_rc);
    FZ_CHECK(fz_same(&whole, &ref));

    sseread_reset(&p);
    fz_log_t split = { .stop_after = stop_after };
    uint32_t seed = 0x9e3779b9u ^ cut;
    int split_rc = 0;
    for (size_t at = 0; at < n && !split_rc;) {
        size_t k = cut < 128 ? (size_t)cut + 1 : fz_rand(&seed) % ((cut & 31u) + 2);
        if (k > n - at)
            k = n - at;
        split_rc = sseread_feed(&p, s + at, k, fz_event, fz_comment, &split);
        at += k;
    }
    FZ_CHECK(split_rc == whole_rc);
    FZ_CHECK(fz_same(&split, &whole));
    /* the end of the stream: the same on the split parse as the reference */
    if (!split_rc) {
        split_rc = sseread_end(&p, fz_event, fz_comment, &split);
        FZ_CHECK(split_rc == ref_e_rc);
        FZ_CHECK(fz_same(&split, &ref_e));
        size_t had = split.b.len;   /* nothing is left for a second call */
        FZ_CHECK(sseread_end(&p, fz_event, fz_comment, &split) == 0 && split.b.len == had);
    }

    sseread_free(&p);
    buf_free(&ref.b);
    buf_free(&ref_e.b);
    buf_free(&whole.b);
    buf_free(&split.b);
    return 0;
}
