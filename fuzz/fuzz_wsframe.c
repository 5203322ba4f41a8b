/* fuzz_wsframe: libFuzzer driver for net/wsframe.c, the WebSocket frame parser.
 *
 * Input: two control bytes, then client bytes.
 *   byte 0  how the bytes are cut into feeds: < 128 fixed pieces of byte0+1
 *           bytes; otherwise pseudo-random sizes 1..(byte0 & 31)+1 seeded by it
 *   byte 1  max_message: (byte1 + 1) * 4 bytes
 *
 * The stream is parsed three times, whole, in pieces, and whole with every
 * callback pausing the feed (WSF_PAUSE, fed again from where it stopped, as
 * net/ws.c does while its output is full); all must agree on the result and
 * on every message and control frame (else trap). Each delivered
 * message must respect what callers rely on: at most max_message bytes, text
 * messages valid UTF-8, control payloads at most 125 bytes, a close payload
 * never one byte long and its code valid. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "net/wsframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

typedef struct fz_log {
    buf_t  b;
    size_t max;
    bool   pause;   /* callbacks return WSF_PAUSE */
} fz_log_t;

static void fz_put(buf_t *b, char tag, int op, const char *s, size_t n)
{
    FZ_CHECK(buf_putc(b, tag) == 0);
    FZ_CHECK(buf_putc(b, (char)op) == 0);
    FZ_CHECK(buf_append(b, &n, sizeof n) == 0);
    FZ_CHECK(buf_append(b, s, n) == 0);
}

static int fz_message(void *ctx, int op, const char *d, size_t n)
{
    fz_log_t *l = ctx;
    FZ_CHECK(n <= l->max);
    FZ_CHECK(op == WSF_TEXT || op == WSF_BINARY);
    if (op == WSF_TEXT)
        FZ_CHECK(wsf_utf8_valid(d, n));
    fz_put(&l->b, 'm', op, d, n);
    return l->pause ? WSF_PAUSE : 0;
}

static int fz_control(void *ctx, int op, const char *d, size_t n)
{
    fz_log_t *l = ctx;
    FZ_CHECK(n <= WSF_MAX_CONTROL);
    FZ_CHECK(op == WSF_PING || op == WSF_PONG || op == WSF_CLOSE);
    if (op == WSF_CLOSE) {
        FZ_CHECK(n != 1);
        if (n >= 2)
            FZ_CHECK(wsf_close_code_valid((unsigned)(uint8_t)d[0] << 8 | (uint8_t)d[1]));
    }
    fz_put(&l->b, 'c', op, d, n);
    return l->pause ? WSF_PAUSE : 0;
}

static const wsf_callbacks_t fz_cbs = {fz_message, fz_control};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t cut = data[0];
    size_t max = ((size_t)data[1] + 1) * 4;
    data += 2;
    size -= 2;

    fz_log_t whole = {.max = max}, parts = {.max = max};
    wsf_parser_t p;
    memset(&p, 0, sizeof p);
    wsf_init(&p, max);
    int rc_whole = wsf_feed(&p, (const char *)data, size, &fz_cbs, &whole);
    wsf_init(&p, max);   /* reuse: init must leave nothing of the last stream */
    int rc_parts = 0;
    uint32_t seed = cut;
    for (size_t i = 0; i < size && !rc_parts;) {
        size_t n;
        if (cut < 128) {
            n = (size_t)cut + 1;
        } else {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % ((cut & 31) + 1);
        }
        if (n > size - i)
            n = size - i;
        rc_parts = wsf_feed(&p, (const char *)data + i, n, &fz_cbs, &parts);
        i += n;
    }
    FZ_CHECK(rc_whole == rc_parts);
    FZ_CHECK(whole.b.len == parts.b.len);
    FZ_CHECK(!whole.b.len || !memcmp(whole.b.data, parts.b.data, whole.b.len));

    fz_log_t paused = {.max = max, .pause = true};
    wsf_init(&p, max);
    size_t at = 0, used;
    int rc_paused;
    while ((rc_paused = wsf_feed_some(&p, (const char *)data + at, size - at, &fz_cbs, &paused, &used)) == WSF_PAUSE) {
        FZ_CHECK(used >= 2 && used <= size - at);   /* a frame's end: at least its header */
        at += used;
    }
    FZ_CHECK(rc_paused == rc_whole);
    FZ_CHECK(!rc_paused ? used == size - at : true);
    FZ_CHECK(whole.b.len == paused.b.len);
    FZ_CHECK(!whole.b.len || !memcmp(whole.b.data, paused.b.data, whole.b.len));
    FZ_CHECK(rc_whole == 0 || rc_whole == WSF_CLOSE_PROTOCOL || rc_whole == WSF_CLOSE_INVALID_DATA ||
             rc_whole == WSF_CLOSE_TOO_BIG);
    wsf_free(&p);
    buf_free(&whole.b);
    buf_free(&parts.b);
    buf_free(&paused.b);
    return 0;
}
