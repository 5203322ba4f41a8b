/* sseread: the incremental text/event-stream parser for upstream agents,
 * following WHATWG HTML "Parsing an event stream" and "Interpreting an event
 * stream" (server-sent events).
 *
 * Every upstream byte passes through sseread_feed, so it is built around the
 * common case, a whole "data: {...}\n\n" frame inside one read:
 *   - line ends are found with memchr, not a byte-at-a-time state machine; the
 *     next CR is looked up once and remembered, so an LF-only stream costs one
 *     memchr for CR per feed plus one memchr for LF per line;
 *   - a line that lies wholly in the input is interpreted in place;
 *   - an event's first data line is kept as a (pointer, length) slice of the
 *     input (or of `line`), and the blank line that ends the event hands that
 *     slice to the callback: no copy at all. Only at the end of a feed, or when a
 *     second data line arrives, is the slice copied ("spilled") into `data`;
 *   - and that whole frame, found at the start of a line with nothing of an
 *     event pending, is dispatched straight from the input without the line
 *     machinery at all.
 *
 * Invariants between feeds:
 *   - `line` holds the bytes of the current line seen so far, never a line end;
 *   - `data` is the spec's data buffer: every data value followed by LF;
 *     has_data == (data.len > 0) (no slice outlives a feed);
 *   - `id` is the last event ID buffer; it survives events, only reset clears it;
 *   - retry_ms is the newest valid retry value not yet reported, or -1.
 * Within a feed, while a slice is live, has_data is true and data.len == 0.
 *
 * The size bound is checked on logical sizes (line length + data buffer length
 * + type length), never on where the bytes happen to sit, so whether a stream
 * fails with -EMSGSIZE does not depend on how it was split into feeds.
 *
 * At the end of the stream (sseread_end) the event still being built is
 * dispatched, as @ag-ui/client reads it, where WHATWG would drop it.
 *
 * Bytes are not decoded: the spec's UTF-8 decode (with U+FFFD replacement) is
 * left to whoever consumes the fields; none of the syntax depends on it. */
#include "proto/sseread.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static const unsigned char sse_bom_bytes[3] = { 0xEF, 0xBB, 0xBF };

/* Per-feed state: the zero-copy data slice. Lives on sseread_feed's stack
 * because the bytes it points at are only the caller's for this call. */
typedef struct sse_feed {
    sseread_t         *p;
    const char        *dptr;   /* first data value, not yet copied; NULL if none */
    size_t             dlen;
    const char        *frame;  /* the whole-frame fast path's frame, for the event it dispatches */
    size_t             frame_len;
    sseread_event_cb   on_event;
    sseread_comment_cb on_comment;
    void              *ctx;
} sse_feed_t;

void sseread_init(sseread_t *p, size_t max_event)
{
    memset(p, 0, sizeof *p);
    p->retry_ms = -1;
    p->max_event = max_event ? max_event : SIZE_MAX;
}

void sseread_reset(sseread_t *p)
{
    buf_reset(&p->line);
    buf_reset(&p->data);
    buf_reset(&p->type);
    buf_reset(&p->id);
    p->retry_ms = -1;
    p->bom_state = 0;
    p->after_cr = false;
    p->has_data = false;
    p->multiline = false;
}

void sseread_free(sseread_t *p)
{
    buf_free(&p->line);
    buf_free(&p->data);
    buf_free(&p->type);
    buf_free(&p->id);
    sseread_init(p, p->max_event == SIZE_MAX ? 0 : p->max_event);
}

/* The data buffer's logical length, LFs included, wherever it lives. */
static inline size_t sse_data_len(const sse_feed_t *f)
{
    return f->dptr ? f->dlen + 1 : f->p->data.len;
}

/* Would an event holding `line_len` bytes of the current line, plus what it has
 * buffered, pass the bound? Overflow-safe: each term is at most a few times
 * max_event, or max_event is SIZE_MAX and the sum is compared saturating. */
static inline bool sse_fits(const sse_feed_t *f, size_t line_len)
{
    size_t have = sse_data_len(f) + f->p->type.len;
    return line_len <= f->p->max_event && have <= f->p->max_event - line_len;
}

/* Copies a live slice into `data`, so it survives the end of the feed. */
static int sse_spill(sse_feed_t *f)
{
    if (!f->dptr)
        return 0;
    buf_t *d = &f->p->data;
    if (buf_reserve(d, f->dlen + 1))
        return -ENOMEM;
    memcpy(d->data + d->len, f->dptr, f->dlen);
    d->len += f->dlen;
    d->data[d->len++] = '\n';
    f->dptr = NULL;
    return 0;
}

/* Drops the event being built (after an error or a stop): no slice may point
 * into bytes the caller is about to take back. */
static void sse_drop_event(sse_feed_t *f)
{
    f->dptr = NULL;
    buf_reset(&f->p->data);
    buf_reset(&f->p->type);
    buf_reset(&f->p->line);
    f->p->has_data = false;
    f->p->multiline = false;
}

static int sse_dispatch(sse_feed_t *f)
{
    sseread_t *p = f->p;
    if (!p->has_data) {          /* spec: empty data buffer, reset type, no event */
        buf_reset(&p->type);
        return 0;
    }
    sseread_event_t ev;
    if (f->dptr) {
        ev.data = f->dptr;
        ev.data_len = f->dlen;
    } else {                     /* has_data: at least one LF is in the buffer */
        ev.data = p->data.data;
        ev.data_len = p->data.len - 1;
    }
    ev.type = p->type.len ? p->type.data : "";
    ev.type_len = p->type.len;
    ev.id = p->id.len ? p->id.data : "";
    ev.id_len = p->id.len;
    ev.retry_ms = p->retry_ms;
    ev.multiline = p->multiline;
    ev.frame = f->frame;
    ev.frame_len = f->frame_len;
    f->frame = NULL;
    /* Reset before the call: lengths only, so the bytes ev points at stay put. */
    f->dptr = NULL;
    buf_reset(&p->data);
    buf_reset(&p->type);
    p->has_data = false;
    p->multiline = false;
    p->retry_ms = -1;
    return f->on_event(f->ctx, &ev);
}

/* "retry": only a non-empty run of ASCII digits counts; saturates rather than
 * wrapping on absurd lengths. */
static void sse_retry(sseread_t *p, const char *v, size_t n)
{
    if (!n)
        return;
    int64_t ms = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)v[i] - '0';
        if (d > 9)
            return;
        ms = ms > (INT64_MAX - 9) / 10 ? INT64_MAX : ms * 10 + d;
    }
    p->retry_ms = ms;
}

static int sse_data_field(sse_feed_t *f, const char *v, size_t n)
{
    sseread_t *p = f->p;
    if (!p->has_data) {          /* first data line: keep a slice, copy nothing */
        p->has_data = true;
        f->dptr = v;
        f->dlen = n;
        return 0;
    }
    p->multiline = true;
    if (sse_spill(f) || buf_reserve(&p->data, n + 1))
        return -ENOMEM;
    memcpy(p->data.data + p->data.len, v, n);
    p->data.len += n;
    p->data.data[p->data.len++] = '\n';
    return 0;
}

/* One complete line, without its line end. `s` stays valid until the end of
 * the feed (it is the caller's input or `line`, which is not touched again
 * before the slice is spilled). */
static int sse_line(sse_feed_t *f, const char *s, size_t n)
{
    if (!sse_fits(f, n))
        return -EMSGSIZE;
    if (n == 0)
        return sse_dispatch(f);
    if (s[0] == ':')
        return f->on_comment ? f->on_comment(f->ctx, s + 1, n - 1) : 0;
    /* Nearly every line of an AG-UI stream is "data: {...}": skip the colon search. */
    if (n >= 5 && !memcmp(s, "data:", 5)) {
        size_t skip = 5 + (n > 5 && s[5] == ' ');
        return sse_data_field(f, s + skip, n - skip);
    }

    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *v = s + n;       /* no colon: the value is empty */
    size_t vn = 0;
    if (colon) {
        v = colon + 1;
        vn = n - name_len - 1;
        if (vn && *v == ' ') {
            v++;
            vn--;
        }
    }
    sseread_t *p = f->p;
    switch (name_len) {
    case 4:
        if (!memcmp(s, "data", 4))
            return sse_data_field(f, v, vn);
        break;
    case 5:
        if (!memcmp(s, "event", 5)) {
            buf_reset(&p->type);
            return buf_append(&p->type, v, vn);
        }
        if (!memcmp(s, "retry", 5))
            sse_retry(p, v, vn);
        break;
    case 2:
        if (s[0] == 'i' && s[1] == 'd' && !memchr(v, '\0', vn)) {
            buf_reset(&p->id);
            return buf_append(&p->id, v, vn);
        }
        break;
    }
    return 0;                    /* unknown fields are ignored */
}

/* Stream start: strips one UTF-8 BOM, which may arrive split over feeds. Sets
 * *skip to the BOM bytes to drop from this feed; returns 1 when the whole feed
 * was a BOM prefix (nothing else to do), <0 on error. */
static int sse_bom(sse_feed_t *f, const char *bytes, size_t len, size_t *skip)
{
    sseread_t *p = f->p;
    uint8_t old = p->bom_state, st = old;
    size_t i = 0;
    while (st < 3 && i < len && (unsigned char)bytes[i] == sse_bom_bytes[st]) {
        st++;
        i++;
    }
    *skip = 0;
    if (st == 3) {
        p->bom_state = 3;
        *skip = i;
        return 0;
    }
    if (i == len) {              /* still a possible BOM: wait for more */
        p->bom_state = st;
        return 1;
    }
    /* Not a BOM after all. Bytes of it matched in this feed are still in `bytes`
     * and are read as usual; those from earlier feeds begin the first line
     * (they are neither CR nor LF). */
    p->bom_state = 3;
    if (old) {
        if (!sse_fits(f, old))
            return -EMSGSIZE;
        if (buf_append(&p->line, sse_bom_bytes, old))
            return -ENOMEM;
    }
    return 0;
}

int sseread_feed(sseread_t *p, const char *bytes, size_t len, sseread_event_cb on_event,
                 sseread_comment_cb on_comment, void *ctx)
{
    sse_feed_t f = { .p = p, .on_event = on_event, .on_comment = on_comment, .ctx = ctx };
    int rc = 0;
    if (!len)
        return 0;
    if (__builtin_expect(p->bom_state < 3, 0)) {
        size_t skip;
        rc = sse_bom(&f, bytes, len, &skip);
        if (rc > 0)
            return 0;
        if (rc)
            goto fail;
        bytes += skip;
        len -= skip;
    }
    const char *pos = bytes, *end = bytes + len;
    if (p->after_cr && pos < end) {   /* the LF of a CRLF split over two feeds */
        if (*pos == '\n')
            pos++;
        p->after_cr = false;
    }

    const char *cr = NULL;       /* next CR at or after pos, `end` if none; NULL: not looked up */
    while (pos < end) {
        if (!cr || cr < pos) {
            cr = memchr(pos, '\r', (size_t)(end - pos));
            if (!cr)
                cr = end;
        }
        /* The frame nearly every AG-UI event comes in, "data: <json>\n\n", whole
         * before the next CR and with nothing of an event pending: dispatched at
         * once, without a pass through sse_line for each of its two lines (~40 %
         * of the parse of a 100-byte event, callgrind). The bound is the one
         * sse_fits would apply to its data line; past it, the general path
         * fails the same way. */
        if (p->line.len == 0 && !p->has_data && p->type.len == 0 && cr - pos > 7 && !memcmp(pos, "data: ", 6)) {
            const char *nl = memchr(pos + 6, '\n', (size_t)(cr - pos - 6));
            if (nl && nl + 1 < cr && nl[1] == '\n' && (size_t)(nl - pos) <= p->max_event) {
                f.dptr = pos + 6;
                f.dlen = (size_t)(nl - pos - 6);
                f.frame = pos;
                f.frame_len = (size_t)(nl + 2 - pos);
                p->has_data = true;
                if ((rc = sse_dispatch(&f)))
                    break;
                pos = nl + 2;
                continue;
            }
        }
        /* the blank line that ends an event: no call for it */
        const char *eol = *pos == '\n' ? pos : memchr(pos, '\n', (size_t)(cr - pos));
        const char *next;
        if (eol) {
            next = eol + 1;
        } else if (cr < end) {
            eol = cr;
            if (cr + 1 < end) {
                next = cr + 1 + (cr[1] == '\n');
            } else {
                next = end;
                p->after_cr = true;
            }
        } else {
            break;               /* no line end in what is left */
        }

        size_t n = (size_t)(eol - pos);
        if (__builtin_expect(p->line.len != 0, 0)) {
            /* The line began in an earlier feed: complete it in `line`. Only the
             * first line of a feed can take this path. */
            if (!sse_fits(&f, p->line.len + n)) {
                rc = -EMSGSIZE;
                break;
            }
            if ((rc = buf_append(&p->line, pos, n)))
                break;
            n = p->line.len;
            p->line.len = 0;     /* bytes stay until the next append, after the spill */
            rc = sse_line(&f, p->line.data, n);
        } else {
            rc = sse_line(&f, pos, n);
        }
        if (rc)
            break;
        pos = next;
    }
    if (rc)
        goto fail;

    /* A slice into the input must not outlive this call. */
    if ((rc = sse_spill(&f)))
        goto fail;
    if (pos < end) {
        size_t n = (size_t)(end - pos);
        if (!sse_fits(&f, p->line.len + n)) {
            rc = -EMSGSIZE;
            goto fail;
        }
        if ((rc = buf_append(&p->line, pos, n)))
            goto fail;
    }
    return 0;

fail:
    sse_drop_event(&f);
    return rc;
}

int sseread_end(sseread_t *p, sseread_event_cb on_event, sseread_comment_cb on_comment, void *ctx)
{
    sse_feed_t f = { .p = p, .on_event = on_event, .on_comment = on_comment, .ctx = ctx };
    int rc = 0;
    if (p->line.len) {   /* the last line, without its line end */
        size_t n = p->line.len;
        p->line.len = 0;   /* bytes stay put: a data slice may point at them until the dispatch */
        rc = sse_line(&f, p->line.data, n);
    }
    if (!rc)
        rc = sse_dispatch(&f);   /* nothing when no data line came */
    sse_drop_event(&f);
    return rc;
}
