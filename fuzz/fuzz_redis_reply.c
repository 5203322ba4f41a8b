/* fuzz_redis_reply: libFuzzer driver for core/redis_proto.c, the path every
 * byte from Redis takes: hiredis's reader with agate's bounded reply objects,
 * then the FIFO that matches each reply to the command it answers.
 *
 * Input: three control bytes, then the bytes "from Redis".
 *   byte 0  how the bytes are cut into feeds: < 128 fixed pieces of byte0+1
 *           bytes; otherwise pseudo-random sizes 1..(byte0 & 63)+1 seeded by it
 *   byte 1  commands queued before the bytes arrive (0..255)
 *   byte 2  max_reply_bytes: 256 + byte2 * 64 (small, so the bounds are hit)
 *
 * Checked (else trap): replies come to the queued commands in order, never
 * more replies than commands; every reply tree is well formed (no NULL
 * element, strings NUL-terminated at len, types RESP2 knows) and allocated
 * no more than the bound; feeding the bytes whole and in pieces delivers the
 * same replies, one run's list a prefix of the other's (a bound or an error
 * may stop one earlier, never make them differ). ASan checks that a reply cut
 * short by an error is freed whole. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "core/redis_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

typedef struct fz_run {
    buf_t    log;        /* each reply, canonically written */
    uint64_t expect;     /* the tag of the next command to be answered */
    size_t   max_bytes;
} fz_run_t;

/* Writes rep into b and returns what it allocated (as rp_charge counts). */
static size_t fz_put(buf_t *b, const redisReply *rep, int depth)
{
    FZ_CHECK(rep && depth < 16);
    size_t cost = sizeof(redisReply);
    FZ_CHECK(buf_putc(b, (char)('0' + rep->type)) == 0);
    switch (rep->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        FZ_CHECK(rep->str && rep->str[rep->len] == '\0');
        FZ_CHECK(buf_append_u64(b, rep->len) == 0 && buf_putc(b, ':') == 0);
        FZ_CHECK(buf_append(b, rep->str, rep->len) == 0);
        cost += rep->len + 1;
        break;
    case REDIS_REPLY_INTEGER:
        FZ_CHECK(buf_append_u64(b, (uint64_t)rep->integer) == 0);
        break;
    case REDIS_REPLY_NIL:
        break;
    case REDIS_REPLY_ARRAY:
        FZ_CHECK(rep->elements <= RP_MAX_ELEMENTS && (rep->elements == 0 || rep->element));
        FZ_CHECK(buf_append_u64(b, rep->elements) == 0 && buf_putc(b, '[') == 0);
        cost += rep->elements * sizeof(redisReply *);
        for (size_t i = 0; i < rep->elements; i++)
            cost += fz_put(b, rep->element[i], depth + 1);
        break;
    default:
        FZ_CHECK(0);
    }
    FZ_CHECK(buf_putc(b, ';') == 0);
    return cost;
}

static int fz_on_reply(void *arg, const rp_entry_t *e, const redisReply *rep)
{
    fz_run_t *r = arg;
    FZ_CHECK(e->tag == r->expect);
    r->expect++;
    size_t cost = fz_put(&r->log, rep, 0);
    FZ_CHECK(cost <= r->max_bytes);
    FZ_CHECK(buf_putc(&r->log, '\n') == 0);
    return 0;
}

/* Feeds p[0..n) in pieces as the control byte says; the last rp_feed result. */
static int fz_run(fz_run_t *r, uint8_t cut, unsigned queued, const uint8_t *p, size_t n, bool whole)
{
    rp_reader_t rd;
    rp_fifo_t f;
    FZ_CHECK(rp_reader_init(&rd, r->max_bytes) == 0);
    FZ_CHECK(rp_fifo_init(&f, 256) == 0);
    for (unsigned i = 0; i < queued; i++) {
        rp_entry_t e = {.tag = i, .kind = RP_USER};
        FZ_CHECK(rp_fifo_push(&f, &e) == i + 1);
    }
    r->expect = 0;
    int rc = 0;
    uint32_t seed = cut;
    size_t off = 0;
    while (off < n && rc == 0) {
        size_t piece;
        if (whole) {
            piece = n;
        } else if (cut < 128) {
            piece = (size_t)cut + 1;
        } else {
            seed = seed * 1103515245u + 12345u;
            piece = 1 + (seed >> 16) % ((cut & 63u) + 1);
        }
        if (piece > n - off)
            piece = n - off;
        rc = rp_feed(&rd, &f, (const char *)p + off, piece, fz_on_reply, r);
        off += piece;
    }
    FZ_CHECK(rc == 0 || rc == -EPROTO);
    FZ_CHECK(r->expect + rp_fifo_len(&f) == queued);   /* each answered command left the queue */
    rp_fifo_free(&f);
    rp_reader_free(&rd);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t cut = data[0];
    unsigned queued = data[1];
    size_t max_bytes = 256 + (size_t)data[2] * 64;
    data += 3;
    size -= 3;

    fz_run_t a = {.max_bytes = max_bytes}, b = {.max_bytes = max_bytes};
    fz_run(&a, cut, queued, data, size, true);
    fz_run(&b, cut, queued, data, size, false);
    size_t common = a.log.len < b.log.len ? a.log.len : b.log.len;
    FZ_CHECK(common == 0 || memcmp(a.log.data, b.log.data, common) == 0);
    buf_free(&a.log);
    buf_free(&b.log);
    return 0;
}
