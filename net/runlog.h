/* runlog: the append-only, bounded log of one resumable run's events
 * (net/resume.c). Each record is one event's JSON text under its sequence
 * number (1, 2, ... gap-free); one writer (the shard running the run) appends
 * without a lock, readers on any shard read without copying, under the log's
 * lock (held by a reader for one batch, by the writer only to add the first
 * chunk or drop chunks from the front).
 *
 * The log is bounded: past max_bytes (or the process-wide total past its own
 * bound) whole chunks are dropped from the front, so a reader that needs what
 * was dropped learns it (RUNLOG_RD_GONE) instead of reading a gap. The latest
 * chunk is never dropped: a single event larger than max_bytes is kept alone.
 * An append hook (on_append) sees every record as it is published, for a
 * second writer (a Redis Stream) to hang behind the log. */
#ifndef AGATE_RUNLOG_H
#define AGATE_RUNLOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RUNLOG_HDR 16   /* a record: u32 size (header included), u8 type, u8 flags, u16 0, u64 seq, JSON */

enum { RUNLOG_OPEN, RUNLOG_DONE, RUNLOG_FAILED };
enum { RUNLOG_RD_REC, RUNLOG_RD_NONE, RUNLOG_RD_END, RUNLOG_RD_FAILED, RUNLOG_RD_GONE };

typedef struct runlog_rec {
    uint64_t    seq;
    uint8_t     type;       /* agui_type_t */
    bool        has_lf;     /* the JSON holds a line feed */
    const char *json;
    size_t      len;
} runlog_rec_t;

typedef struct runlog_chunk {
    _Atomic(struct runlog_chunk *) next;
    _Atomic size_t pub;                 /* bytes readers may read; never change below it */
    uint64_t       seq0;                /* its first record's */
    size_t         cap;
    char           data[];
} runlog_chunk_t;

struct runlog;
typedef void (*runlog_hook_fn)(struct runlog *l, const runlog_rec_t *rec, void *ctx);

typedef struct runlog {
    pthread_mutex_t   lock;             /* head; readers' batches; the writer's front drops */
    runlog_chunk_t   *head;             /* under lock; NULL before the first record */
    runlog_chunk_t   *tail;             /* the writer's */
    _Atomic uint64_t  last_seq;         /* the newest published record's, 0 none */
    _Atomic uint64_t  total;            /* bytes ever appended (records), for readers' lag */
    _Atomic size_t    bytes;            /* bytes held (chunks) */
    _Atomic uint8_t   state;            /* RUNLOG_OPEN until runlog_close, after the last record */
    size_t            max_bytes, chunk_bytes;
    _Atomic size_t   *all_bytes;        /* the process-wide count of every log's bytes, or NULL */
    size_t            all_max;
    runlog_hook_fn    on_append;        /* optional, the writer's thread, after publication */
    void             *hook_ctx;
} runlog_t;

/* Where a reader stands: the next seq it wants, and its place in a chunk
 * (valid only while that chunk is kept: ch_seq0 >= head's seq0). */
typedef struct runlog_reader {
    const runlog_chunk_t *ch;
    uint64_t ch_seq0;
    size_t   off;
    uint64_t next;
    uint64_t pos;                       /* record bytes consumed, against `total` */
} runlog_reader_t;

/* 0 or -errno. all_bytes/all_max: a bound shared by every log (NULL: none). */
int  runlog_init(runlog_t *l, size_t max_bytes, _Atomic size_t *all_bytes, size_t all_max);
void runlog_free(runlog_t *l);   /* its chunks; no reader may hold the lock */
/* The writer: the record's seq (>= 1), or -ENOMEM (nothing appended). */
int64_t runlog_append(runlog_t *l, uint8_t type, const char *json, size_t len, bool has_lf);
/* The writer, after its last record: DONE, or FAILED (the run never began). */
void runlog_close(runlog_t *l, bool failed);
/* The seq of the oldest record kept (last + 1 when none is), under the lock. */
uint64_t runlog_first_seq(const runlog_t *l);

static inline void runlog_lock(runlog_t *l) { pthread_mutex_lock(&l->lock); }
static inline void runlog_unlock(runlog_t *l) { pthread_mutex_unlock(&l->lock); }

/* A reader wanting the records after seq `after` (0: all). */
static inline void runlog_reader_init(runlog_reader_t *rd, uint64_t after)
{
    *rd = (runlog_reader_t){.next = after + 1};
}
/* Under the lock: the reader's next record without consuming it (RUNLOG_RD_REC,
 * *size for runlog_advance), or where the log stands. rec->json points into
 * the log, valid until the lock is released. */
int runlog_peek(runlog_t *l, runlog_reader_t *rd, runlog_rec_t *rec, size_t *size);

/* The writer's thread: rd stands past the last record (it has them all). */
static inline void runlog_reader_end(const runlog_t *l, runlog_reader_t *rd)
{
    rd->ch = l->tail;
    rd->ch_seq0 = l->tail ? l->tail->seq0 : 0;
    rd->off = l->tail ? atomic_load_explicit(&l->tail->pub, memory_order_relaxed) : 0;
    rd->next = atomic_load_explicit(&l->last_seq, memory_order_relaxed) + 1;
    rd->pos = atomic_load_explicit(&l->total, memory_order_relaxed);
}

static inline void runlog_advance(runlog_reader_t *rd, size_t size)
{
    rd->off += size;
    rd->pos += size;
    rd->next++;
}

#endif
