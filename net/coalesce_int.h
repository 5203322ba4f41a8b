/* coalesce_int: what the three files of the coalescing module share, and
 * nothing outside them may use. coalesce.c decides how a run is served and
 * gives back what its role held; coalesce_flight.c keeps the flights (the
 * shared append-only logs), their table and their readers; coalesce_replay.c
 * writes an entry or a flight to a client and keeps each shard's followers.
 * net/coalesce.h stays the module's interface; this header is included only
 * by net/coalesce*.c. coal_ and COAL_ are the module's internal prefixes. */
#ifndef AGATE_COALESCE_INT_H
#define AGATE_COALESCE_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "core/buf.h"
#include "core/cache.h"
#include "core/list.h"
#include "core/shard.h"
#include "net/coalesce.h"
#include "proto/canon.h"
#include "proto/run.h"
#include "proto/runrec.h"

#define COAL_MASK_WORDS  16                  /* shards tracked per flight: 1024 */

enum { COAL_FL_RUNNING, COAL_FL_DONE, COAL_FL_FAILED };
enum { COAL_ROLE_NONE, COAL_ROLE_LEADER, COAL_ROLE_HIT, COAL_ROLE_FOLLOWER };

typedef struct coal_chunk {
    _Atomic(struct coal_chunk *) next;
    _Atomic size_t pub;                 /* bytes readers may read */
    size_t cap;
    char   data[];
} coal_chunk_t;

typedef struct coal_flight {
    struct cds_lfht_node node;
    struct rcu_head      rcu;
    uint8_t              key[CANON_KEY_LEN];
    _Atomic uint32_t     refs;
    _Atomic uint8_t      state;
    _Atomic bool         joinable;
    _Atomic uint32_t     joined;        /* followers that ever attached (or tried) */
    _Atomic uint64_t     total;         /* bytes logged, for followers' lag */
    _Atomic uint64_t     mask[COAL_MASK_WORDS];
    coal_chunk_t        *head;
    uint64_t             start_ms;
    int                  status;        /* failure, written before state */
    char                 code[40], msg[200];
    /* leader only */
    coal_chunk_t        *tail;
    runrec_ids_t         ids;
    buf_t                rec;
    uint64_t             last_ms;
    bool                 recording, storable, in_table;
} coal_flight_t;

/* Reads records from a flight's chunks or an entry's blob. */
typedef struct coal_reader {
    const coal_chunk_t *ch;
    const char        *blob;
    size_t             blob_len, off;
    uint64_t           pos;             /* bytes consumed */
} coal_reader_t;

typedef struct coal_run {
    run_t          *r;
    uint8_t         role;
    int8_t          verdict;            /* enum metrics_cache counted for it, -1 before */
    bool            store;              /* leader: store a clean end */
    coal_flight_t  *f;                  /* leader's or follower's (a ref) */
    cache_entry_t  *e;                  /* hit (a ref) */
    coal_reader_t   rd;
    runrec_plan_t   plan;               /* hit: the entry's SSE plan */
    buf_t           ids;                /* fresh ids, RUNREC_ID_LEN each */
    buf_t           out;                /* rendered event; the canonical body at prepare */
    buf_t           quoted;             /* the run's thread and run ids as JSON strings (subst) */
    runrec_subst_t  subst;              /* set at replay start */
    uint64_t        last_emit_ms;       /* paced replay */
    uint64_t        best_lag;           /* follower: the least it was ever behind */
    char            head[96];
    list_t          link;               /* follower: on its shard's list; else linked to itself */
    /* the second tier (coalesce_tier2.c), while the run waits for its lookup */
    uint8_t         key[CANON_KEY_LEN];
    const run_kind_ops_t *wrapped;      /* the kind the lookup stands in front of */
    uint64_t        t2_cmd;             /* the command's handle, 0 when none is outstanding */
    uint8_t         t2_phase;           /* what it waits for (coalesce_tier2.c) */
    uint64_t        t2_until;           /* polling another pod's run: until then (ms) */
} coal_run_t;

extern unsigned g_coal_ext;   /* run_t.ext index (coalesce_register) */
extern unsigned g_coal_mod;   /* shard_t.mod index */

typedef struct coal_shard {
    _Atomic bool  pending;              /* a followed flight moved on */
    list_t        followers;            /* coal_run_t.link, newest first */
    /* While the poll walks `followers`, the node it visits next, else NULL.
     * Pumping one follower may release others (a WebSocket connection's runs
     * all end when one write fails), so coal_follower_del moves this on past
     * a node it unlinks instead of leaving the poll a released run. */
    list_t       *poll_next;
    uint64_t      next_sweep_ms;
} coal_shard_t;

static inline coal_run_t   *coal_run_of(const run_t *r) { return (coal_run_t *)r->ext[g_coal_ext]; }
static inline coal_shard_t *coal_shard_of(const shard_t *sh) { return (coal_shard_t *)sh->mod[g_coal_mod]; }
static inline unsigned coal_agent_idx(const run_t *r) { return r->agent->slot; }

/* ---- coalesce_flight.c: flights and reading them ---- */

bool           coal_flights_ready(void);   /* coalesce_init succeeded */
coal_flight_t *coal_flight_new(const uint8_t key[CANON_KEY_LEN], uint64_t now_ms);
/* Leader: makes f joinable under its key, with the table's ref. False when
 * another flight has the key (another shard's identical request won the race). */
bool           coal_flight_publish(coal_flight_t *f);
coal_flight_t *coal_flight_join(const uint8_t key[CANON_KEY_LEN]);
void           coal_flight_put(coal_flight_t *f);

enum { COAL_RD_REC, COAL_RD_NONE, COAL_RD_END, COAL_RD_FAILED };

void        coal_reader_flight(coal_reader_t *rd, const coal_flight_t *f);
void        coal_reader_blob(coal_reader_t *rd, cache_view_t v, runrec_plan_t *plan);
/* The next record without consuming it: COAL_RD_*; *size for coal_reader_advance. */
int         coal_reader_peek(coal_reader_t *rd, const coal_flight_t *f, runrec_t *rec, size_t *size);
/* The whole records the reader can take at once, after coal_reader_peek found one. */
const char *coal_reader_span(const coal_reader_t *rd, size_t *len);

static inline void coal_reader_advance(coal_reader_t *rd, size_t size)
{
    rd->off += size;
    rd->pos += size;
}

/* ---- coalesce.c: deciding, for the second tier's answer ---- */

/* After a second-tier lookup that found nothing usable: the local tier, a
 * flight or a new flight, as coalesce_prepare would decide now. */
void coal_decide_local(run_t *r, coal_run_t *co);
/* Serves e (a ref, handed over) as a HIT; `shared`: it came from the second
 * tier; age_ms for the Age line. */
void coal_serve_hit(run_t *r, coal_run_t *co, cache_entry_t *e, bool shared, uint64_t age_ms);

/* ---- coalesce_tier2.c: the shared tier in Redis ---- */

/* Whether the run's agent shares its cache and Redis is configured. */
bool coal_tier2_on(const run_t *r);
/* Swaps the run's kind for the lookup's (coalesce_prepare, before run_start). */
void coal_tier2_wait(run_t *r, coal_run_t *co, const uint8_t key[CANON_KEY_LEN]);
/* The leader's run finished cleanly: write its log to Redis behind the response. */
void coal_tier2_store(run_t *r, coal_flight_t *f);

/* ---- coalesce_replay.c: replay and the per-shard followers ---- */

extern const run_kind_ops_t  coal_replay_ops;   /* the run kind of a HIT or a follower */
extern const shard_mod_ops_t coal_shard_ops;    /* the follower lists, polled at each turn's end */
/* Takes a follower off its shard's list; nothing for a run never attached. */
void coal_follower_del(coal_run_t *co);

#endif
