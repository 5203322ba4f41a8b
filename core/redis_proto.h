/* redis_proto: the byte side of the Redis client (core/redis.c), apart from
 * any socket so the fuzzer (fuzz/fuzz_redis_reply.c) and the unit tests drive
 * exactly what a shard runs.
 *
 * rp_reader_t is hiredis's RESP2 reader with agate's own reply objects: each
 * reply (a whole tree) may allocate at most max_bytes, an array at most
 * RP_MAX_ELEMENTS elements, and the bytes buffered for a reply not yet whole
 * at most max_bytes; past a bound the reader is in error, which the
 * connection treats as a protocol error (it closes and reconnects).
 *
 * rp_fifo_t is the queue of commands sent and not yet answered: replies are
 * matched to it in order. A command's handle is its sequence number, which
 * never repeats on a shard, so a stale handle cannot cancel a newer command. */
#ifndef AGATE_REDIS_PROTO_H
#define AGATE_REDIS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "core/buf.h"
#include "core/redis.h"

#define RP_MAX_ELEMENTS (1u << 20)   /* per array; max_bytes usually binds first */

typedef struct rp_reader {
    redisReader *r;        /* owned; NULL until rp_reader_init */
    size_t       used;     /* bytes the reply being built has allocated */
    size_t       max_bytes;
    bool         over;     /* a bound was passed (else a reader error is the peer's bytes) */
} rp_reader_t;

int  rp_reader_init(rp_reader_t *rd, size_t max_bytes);   /* 0 or -ENOMEM */
void rp_reader_free(rp_reader_t *rd);
/* Drops any partial reply and error: a new connection. 0 or -ENOMEM. */
int  rp_reader_reset(rp_reader_t *rd);
void rp_reply_free(redisReply *rep);

/* What a command is, for the connection's own use of replies. */
enum rp_kind { RP_USER, RP_EVALSHA, RP_AUTH, RP_SELECT, RP_SCRIPT, RP_PING };

typedef struct rp_entry {
    redis_reply_fn fn;       /* NULL: cancelled, or nobody to tell */
    void          *ctx;
    uint64_t       tag;
    uint64_t       issued_us;
    uint64_t       deadline_ms;
    uint8_t        kind;     /* enum rp_kind */
} rp_entry_t;

typedef struct rp_fifo {
    rp_entry_t *v;           /* owned, cap entries, a power of two */
    uint32_t    mask;
    uint64_t    head, tail;  /* sequence numbers: entry s is v[s & mask]; head == tail: empty */
} rp_fifo_t;

int  rp_fifo_init(rp_fifo_t *f, uint32_t min_cap);   /* 0 or -ENOMEM */
void rp_fifo_free(rp_fifo_t *f);
static inline uint32_t rp_fifo_len(const rp_fifo_t *f) { return (uint32_t)(f->tail - f->head); }
static inline bool rp_fifo_full(const rp_fifo_t *f) { return rp_fifo_len(f) > f->mask; }
static inline rp_entry_t *rp_fifo_head(rp_fifo_t *f) { return f->head == f->tail ? NULL : &f->v[f->head & f->mask]; }
/* Appends e (the caller checked rp_fifo_full); its handle, never 0. */
static inline uint64_t rp_fifo_push(rp_fifo_t *f, const rp_entry_t *e)
{
    f->v[f->tail & f->mask] = *e;
    return ++f->tail;   /* the handle is the sequence + 1 */
}
static inline rp_entry_t rp_fifo_pop(rp_fifo_t *f) { return f->v[f->head++ & f->mask]; }
/* The entry handle names while it is still queued, else NULL. */
static inline rp_entry_t *rp_fifo_find(rp_fifo_t *f, uint64_t handle)
{
    uint64_t seq = handle - 1;
    return handle && seq >= f->head && seq < f->tail ? &f->v[seq & f->mask] : NULL;
}

/* Appends the command argv[0..argc) to b as RESP (an array of bulk strings),
 * the bytes hiredis's redisFormatCommandArgv makes. 0 or -ENOMEM (b unchanged). */
int rp_format(buf_t *b, int argc, const char **argv, const size_t *argvlen);

/* A reply matched to the entry it answers (already popped). A nonzero return
 * stops the dispatch (the connection is going away) and is returned. */
typedef int (*rp_on_reply_fn)(void *arg, const rp_entry_t *e, const redisReply *rep);

/* Feeds n bytes and hands every whole reply to on_reply with the entry it
 * answers. 0; -EPROTO for bytes that are not RESP, a bound passed, or a reply
 * nobody asked for; or on_reply's nonzero result. */
int rp_feed(rp_reader_t *rd, rp_fifo_t *f, const char *p, size_t n, rp_on_reply_fn on_reply, void *arg);

#endif
