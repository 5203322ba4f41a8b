/* coalesce: cache hits, shared in-flight runs and the recording of misses
 * (see coalesce.h).
 *
 * Ownership and invariants:
 *  - A flight is reference-counted: one ref for the flights table (dropped by
 *    an RCU callback after it is unpublished), one for its leader, one per
 *    follower. Its chunks are freed with it, so a follower reads them for as
 *    long as it holds its ref, whatever the leader does.
 *  - Only the leader writes a flight's log, `tail` and the runrec_ids; a
 *    chunk's bytes below its published length never change again.
 *  - `state` leaves FL_RUNNING once, after the last publication (release);
 *    the failure fields are written before it.
 *  - A follower lives on its own shard's list (coal_shard_t) from attach to
 *    release; only that shard touches it. Other shards reach a shard only
 *    through its `pending` flag and eventfd.
 *  - Joining is Dekker-style on two seq_cst pairs: the follower increments
 *    refs then re-reads `joinable`; the leader clears `joinable` then reads
 *    refs. Likewise a follower sets its shard's bit in `mask` then reads the
 *    log, and the leader publishes then reads `mask` (both behind seq_cst
 *    fences), so no event is missed and no wake-up is lost. */
#include "net/coalesce.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "core/cache.h"
#include "core/list.h"
#include "proto/canon.h"
#include "proto/runrec.h"
#include "net/gwmetrics.h"

#define LOG_CHUNK   (64u * 1024)
#define MASK_WORDS  16                  /* shards tracked per flight: 1024 */

enum { FL_RUNNING, FL_DONE, FL_FAILED };
enum { ROLE_NONE, ROLE_LEADER, ROLE_HIT, ROLE_FOLLOWER };

typedef struct log_chunk {
    _Atomic(struct log_chunk *) next;
    _Atomic size_t pub;                 /* bytes readers may read */
    size_t cap;
    char   data[];
} log_chunk_t;

typedef struct flight {
    struct cds_lfht_node node;
    struct rcu_head      rcu;
    uint8_t              key[CANON_KEY_LEN];
    _Atomic uint32_t     refs;
    _Atomic uint8_t      state;
    _Atomic bool         joinable;
    _Atomic uint32_t     joined;        /* followers that ever attached (or tried) */
    _Atomic uint64_t     total;         /* bytes logged, for followers' lag */
    _Atomic uint64_t     mask[MASK_WORDS];
    log_chunk_t         *head;
    uint64_t             start_ms;
    int                  status;        /* failure, written before state */
    char                 code[40], msg[200];
    /* leader only */
    log_chunk_t         *tail;
    runrec_ids_t         ids;
    buf_t                rec;
    uint64_t             last_ms;
    bool                 recording, storable, in_table;
} flight_t;

/* Reads records from a flight's chunks or an entry's blob. */
typedef struct reader {
    const log_chunk_t *ch;
    const char        *blob;
    size_t             blob_len, off;
    uint64_t           pos;             /* bytes consumed */
} reader_t;

typedef struct coal_run {
    run_t          *r;
    uint8_t         role;
    int8_t          verdict;            /* enum metrics_cache counted for it, -1 before */
    bool            store;              /* leader: store a clean end */
    flight_t       *f;                  /* leader's or follower's (a ref) */
    cache_entry_t  *e;                  /* hit (a ref) */
    reader_t        rd;
    runrec_plan_t   plan;               /* hit: the entry's SSE plan */
    buf_t           ids;                /* fresh ids, RUNREC_ID_LEN each */
    buf_t           out;                /* rendered event; the canonical body at prepare */
    buf_t           quoted;             /* the run's thread and run ids as JSON strings (subst) */
    runrec_subst_t  subst;              /* set at replay start */
    uint64_t        last_emit_ms;       /* paced replay */
    uint64_t        best_lag;           /* follower: the least it was ever behind */
    char            head[64];
    list_t          link;               /* follower: on its shard's list; else linked to itself */
} coal_run_t;

static unsigned g_co_ext;     /* run_t.ext index (coalesce_register) */
static unsigned g_coal_mod;   /* shard_t.mod index */

static inline coal_run_t *CO(const run_t *r) { return (coal_run_t *)r->ext[g_co_ext]; }
static inline struct coal_shard *coal_of(const shard_t *sh) { return (struct coal_shard *)sh->mod[g_coal_mod]; }

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

static struct cds_lfht *g_flights;

/* --- flights ------------------------------------------------------------------------ */

static int fl_match(struct cds_lfht_node *n, const void *key)
{
    return !memcmp(caa_container_of(n, flight_t, node)->key, key, CANON_KEY_LEN);
}

static inline uint64_t key_hash(const uint8_t *k)
{
    uint64_t h;
    memcpy(&h, k, sizeof h);
    return h;
}

int coalesce_init(void)
{
    g_flights = cds_lfht_new_flavor(256, 256, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, &urcu_memb_flavor, NULL);
    return g_flights ? 0 : -ENOMEM;
}

void coalesce_shutdown(void)
{
    if (!g_flights)
        return;
    urcu_memb_barrier();   /* every flight's table ref dropped (the shards removed them) */
    cds_lfht_destroy(g_flights, NULL);
    g_flights = NULL;
}

static void flight_put(flight_t *f)
{
    if (atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    for (log_chunk_t *c = f->head, *n; c; c = n) {
        n = atomic_load_explicit(&c->next, memory_order_relaxed);
        free(c);
    }
    runrec_ids_free(&f->ids);
    buf_free(&f->rec);
    free(f);
}

static void drop_table_ref(struct rcu_head *h) { flight_put(caa_container_of(h, flight_t, rcu)); }

static log_chunk_t *chunk_new(size_t need)
{
    size_t cap = need > LOG_CHUNK ? need : LOG_CHUNK;
    log_chunk_t *c = malloc(sizeof *c + cap);
    if (c) {
        atomic_init(&c->next, NULL);
        atomic_init(&c->pub, 0);
        c->cap = cap;
    }
    return c;
}

static flight_t *flight_new(const uint8_t key[CANON_KEY_LEN], uint64_t now_ms)
{
    flight_t *f = calloc(1, sizeof *f);
    if (!f || !(f->head = chunk_new(0))) {
        free(f);
        return NULL;
    }
    memcpy(f->key, key, CANON_KEY_LEN);
    cds_lfht_node_init(&f->node);
    atomic_init(&f->refs, 1);   /* the leader's */
    atomic_init(&f->state, FL_RUNNING);
    atomic_init(&f->joinable, true);
    f->tail = f->head;
    f->start_ms = f->last_ms = now_ms;
    f->recording = f->storable = true;
    return f;
}

/* Leader: no one can find the flight any more; followers keep their refs. */
static void flight_unpublish(flight_t *f)
{
    atomic_store(&f->joinable, false);
    if (!f->in_table)
        return;
    f->in_table = false;
    urcu_memb_read_lock();
    int rc = cds_lfht_del(g_flights, &f->node);
    urcu_memb_read_unlock();
    if (rc == 0)
        urcu_memb_call_rcu(&f->rcu, drop_table_ref);
}

/* Leader: tell every shard with followers (self included, without a syscall). */
static void flight_wake(flight_t *f, shard_t *self)
{
    atomic_thread_fence(memory_order_seq_cst);
    for (unsigned w = 0; w < MASK_WORDS; w++) {
        uint64_t m = atomic_load_explicit(&f->mask[w], memory_order_relaxed);
        while (m) {
            unsigned s = w * 64 + (unsigned)__builtin_ctzll(m);
            m &= m - 1;
            if (s >= g_nshards)
                continue;
            shard_t *t = &g_shards[s];
            coal_shard_t *cs = coal_of(t);
            if (cs && !atomic_exchange(&cs->pending, true) && t != self)
                shard_wake(t);
        }
    }
}

/* --- reading ------------------------------------------------------------------------- */

enum { RD_REC, RD_NONE, RD_END, RD_FAILED };

static void reader_flight(reader_t *rd, const flight_t *f) { *rd = (reader_t){.ch = f->head}; }
/* An entry's blob: u32 plan length, the plan (proto/runrec.h), the records. */
static void reader_blob(reader_t *rd, cache_view_t v, runrec_plan_t *plan)
{
    uint32_t n = 0;
    if (v.len >= 4)
        memcpy(&n, v.data, 4);
    if (v.len < 4 || n > v.len - 4 || runrec_plan_parse(v.data + 4, n, plan) != n) {
        *plan = (runrec_plan_t){0};   /* cannot be (store wrote it): read as a run with no records */
        *rd = (reader_t){.blob = v.data + v.len};
        return;
    }
    *rd = (reader_t){.blob = v.data + 4 + n, .blob_len = v.len - 4 - n};
}

/* The next record without consuming it; *size for reader_advance. */
static int reader_peek(reader_t *rd, const flight_t *f, runrec_t *rec, size_t *size)
{
    if (rd->blob) {
        if (rd->off >= rd->blob_len)
            return RD_END;
        *size = runrec_parse(rd->blob + rd->off, rd->blob_len - rd->off, rec);
        return *size ? RD_REC : RD_END;
    }
    for (;;) {
        size_t pub = atomic_load_explicit(&rd->ch->pub, memory_order_acquire);
        if (rd->off < pub) {
            *size = runrec_parse(rd->ch->data + rd->off, pub - rd->off, rec);
            return *size ? RD_REC : RD_FAILED;
        }
        const log_chunk_t *next = atomic_load_explicit(&rd->ch->next, memory_order_acquire);
        if (next) {
            if (rd->off < atomic_load_explicit(&rd->ch->pub, memory_order_acquire))
                continue;   /* the chunk was sealed after our first look */
            rd->ch = next;
            rd->off = 0;
            continue;
        }
        int st = atomic_load_explicit(&f->state, memory_order_acquire);
        if (st == FL_RUNNING)
            return RD_NONE;
        if (rd->off < atomic_load_explicit(&rd->ch->pub, memory_order_acquire) ||
            atomic_load_explicit(&rd->ch->next, memory_order_acquire))
            continue;
        return st == FL_DONE ? RD_END : RD_FAILED;
    }
}

static inline void reader_advance(reader_t *rd, size_t size)
{
    rd->off += size;
    rd->pos += size;
}

/* --- per-shard follower lists ------------------------------------------------------- */

static int coalesce_shard_init(shard_t *sh)
{
    coal_shard_t *cs = calloc(1, sizeof *cs);
    if (!cs)
        return -ENOMEM;
    list_init(&cs->followers);
    sh->mod[g_coal_mod] = cs;
    cache_thread_online();
    return 0;
}

static void coalesce_shard_free(shard_t *sh)
{
    if (!coal_of(sh))
        return;
    cache_thread_offline();
    free(coal_of(sh));
    sh->mod[g_coal_mod] = NULL;
}

/* Takes a follower off its shard's list; nothing for a run never attached. */
static void coal_follower_del(coal_run_t *co)
{
    if (list_empty(&co->link))
        return;   /* linked to itself: never attached, or already taken off */
    coal_shard_t *cs = coal_of(co->r->sh);
    if (cs->poll_next == &co->link)
        cs->poll_next = co->link.next;
    list_unlink(&co->link);
}

/* --- replay ------------------------------------------------------------------------- */

static inline unsigned agent_idx(const run_t *r) { return r->agent->slot; }

static void replay_error(run_t *r, const char *code, const char *msg)
{
    agui_event_t ev = {.type = AGUI_RUN_ERROR};
    ev.code = (agui_str_t){code, strlen(code)};
    ev.message = (agui_str_t){msg, strlen(msg)};
    r->errored = true;
    if (r->sink->event(r, &ev) == 0)
        r->sink->end(r);
}

/* A replay that cannot go on: a RUN_ERROR once the client's stream began,
 * else the sink's failure answer (an HTTP error; a RUN_ERROR on WebSocket).
 * Releases the run. */
static void replay_fail(run_t *r, int status, const char *code, const char *msg)
{
    if (r->started)
        replay_error(r, code, msg);
    else
        r->sink->fail(r, status, code, msg, 0);
}

/* How far a follower's cursor is behind the log. The leader publishes a
 * record before it raises `total`, so a follower on another shard can have
 * read past the total it sees: that is no lag, not a wrapped-around one. */
static inline uint64_t follower_lag(const coal_run_t *co)
{
    uint64_t total = atomic_load_explicit(&co->f->total, memory_order_acquire);
    return total > co->rd.pos ? total - co->rd.pos : 0;
}

static void pump(run_t *r);

/* The whole records the reader can take at once, after reader_peek found one:
 * the rest of the blob, or of the chunk's published bytes. */
static const char *reader_span(const reader_t *rd, size_t *len)
{
    if (rd->blob) {
        *len = rd->blob_len - rd->off;
        return rd->blob + rd->off;
    }
    *len = atomic_load_explicit(&rd->ch->pub, memory_order_acquire) - rd->off;
    return rd->ch->data + rd->off;
}

/* Records to the client under the run's ids: a whole stored run from its plan
 * where the sink can and it fits, else as many records as the sink takes in
 * one pass (SSE), else the peeked one, rendered into co->out and passed on;
 * only the peeked one when `batch` is false. 0; 1 when the sink failed and released the run; -ENOMEM or
 * -EINVAL when the record was not sent and the run is still the caller's. */
static int emit_records(run_t *r, coal_run_t *co, const runrec_t *rec, size_t size, bool batch)
{
    int rc;
    if (batch && co->role == ROLE_HIT && !co->rd.off && r->sink->stored) {
        rc = r->sink->stored(r, &co->plan, co->rd.blob, co->rd.blob_len, &co->subst);
        if (!rc)
            reader_advance(&co->rd, co->rd.blob_len);
        if (rc != -EAGAIN)
            return rc;
    }
    if (batch && r->sink->records) {
        size_t len, used = 0;
        const char *span = reader_span(&co->rd, &len);
        rc = r->sink->records(r, span, len, &co->subst, &used);
        if (rc == 1)
            return 1;
        reader_advance(&co->rd, used);
        if (rc || used)
            return rc;
    }
    const char *json = rec->json;
    size_t len = rec->json_len;
    if (rec->n_patch) {
        if ((rc = runrec_render(&co->out, rec, &co->subst)))
            return rc;
        json = co->out.data;
        len = co->out.len;
    }
    reader_advance(&co->rd, size);
    return r->sink->raw(r, (agui_type_t)rec->type, json, len, rec->flags & RUNREC_F_LF) ? 1 : 0;
}

static void tick_fired(agate_timer_t *t)
{
    pump((run_t *)((char *)t - offsetof(run_t, tick)));
}

/* Emits what can go now. May release the run (end, error, a failed write):
 * callers touch nothing of it afterwards. */
static void pump(run_t *r)
{
    coal_run_t *co = CO(r);
    shard_t *sh = r->sh;
    bool pace = co->role == ROLE_HIT && r->agent->cache_pace;
    while (!r->blocked) {
        runrec_t rec = {0};
        size_t size = 0;
        int st = reader_peek(&co->rd, co->f, &rec, &size);
        if (st == RD_NONE) {
            /* Caught up with the log: as close as it can be, so the lag limit
             * counts from here (a late joiner's backlog is taken by now). */
            uint64_t lag = co->f ? follower_lag(co) : 0;
            if (lag < co->best_lag)
                co->best_lag = lag;
            return;
        }
        if (st == RD_FAILED) {
            const flight_t *f = co->f;
            const char *code = f && f->code[0] ? f->code : "upstream_failed";
            const char *msg = f && f->msg[0] ? f->msg : "the shared upstream run failed";
            replay_fail(r, f && f->status ? f->status : 502, code, msg);
            return;
        }
        if (!r->started) {
            r->sink->start(r);
            r->started = true;
        }
        if (st == RD_END) {
            r->sink->end(r);
            return;
        }
        if (pace && rec.gap_ms && sh->now_ms < co->last_emit_ms + rec.gap_ms) {
            r->tick.cb = tick_fired;
            if (timer_arm(&sh->timers, &r->tick, co->last_emit_ms + rec.gap_ms))
                replay_fail(r, 503, "out_of_memory", "out of memory");
            return;
        }
        co->last_emit_ms = pace ? co->last_emit_ms + rec.gap_ms : sh->now_ms;
        int rc = emit_records(r, co, &rec, size, !pace);   /* paced: one at a time */
        if (rc == 1)
            return;   /* the client is gone; the run was released */
        if (rc) {     /* -EINVAL: a record whose id spans do not fit its event (a bug, not the client's) */
            if (rc == -ENOMEM)
                replay_fail(r, 503, "out_of_memory", "out of memory");
            else
                replay_fail(r, 500, "internal_error", "a stored event could not be replayed");
            return;
        }
        if (!r->sink->writable(r))
            r->blocked = true;
    }
}

static void replay_start(run_t *r)
{
    coal_run_t *co = CO(r);
    if (runrec_subst_init(&co->subst, &co->quoted, r->in.thread_id, r->in.thread_id_len, r->in.run_id,
                          r->in.run_id_len, &co->ids, &r->sh->rng)) {
        replay_fail(r, 503, "out_of_memory", "out of memory");
        return;
    }
    co->last_emit_ms = r->sh->now_ms;
    if (co->role == ROLE_FOLLOWER) {
        flight_t *f = co->f;
        unsigned s = r->sh->id;
        list_push_front(&coal_of(r->sh)->followers, &co->link);
        co->best_lag = atomic_load_explicit(&f->total, memory_order_acquire);   /* its backlog at attach */
        if (s < MASK_WORDS * 64)
            atomic_fetch_or(&f->mask[s / 64], 1ull << (s % 64));
        atomic_thread_fence(memory_order_seq_cst);
    }
    pump(r);
}

static void replay_resume(run_t *r) { pump(r); }
static void replay_stop(run_t *r) { (void)r; }   /* coalesce_run_stop does it, whatever the role */

static const run_kind_ops_t coalesce_replay_ops = {replay_start, replay_resume, replay_stop};

static void coalesce_shard_poll(shard_t *sh)
{
    coal_shard_t *cs = coal_of(sh);
    if (!cs)
        return;
    if (sh->now_ms >= cs->next_sweep_ms) {
        cs->next_sweep_ms = sh->now_ms + 1000;
        cache_expire(sh->now_ms);
    }
    if (list_empty(&cs->followers) || !atomic_exchange(&cs->pending, false))
        return;
    atomic_thread_fence(memory_order_seq_cst);
    /* Not list_each_safe: the next node it keeps may be unlinked by this
     * node's pump (its run released with this one's connection), and an
     * unlinked node is linked to itself, so the walk would visit a released
     * run and then stay on it. The next node lives in the shard instead,
     * where coal_follower_del moves it past a node it unlinks. Re-reading
     * n->next after the pump would not do either: n's own pump may have
     * unlinked n. A follower attached meanwhile goes in at the front, behind
     * the walk: its replay_start pumped it already. */
    for (list_t *n = cs->followers.next; n != &cs->followers; n = cs->poll_next) {
        cs->poll_next = n->next;
        coal_run_t *co = list_item(n, coal_run_t, link);
        run_t *r = co->r;
        if (!r->blocked) {
            pump(r);   /* takes all it can now: only what it cannot take is lag */
            continue;
        }
        /* A blocked follower: lag counts from the least it was ever behind
         * (a late joiner's backlog is not its fault, falling further behind
         * is), measured where it stands, not before it had its turn. */
        uint64_t lag = follower_lag(co);
        if (lag < co->best_lag)
            co->best_lag = lag;
        if (lag - co->best_lag > r->agent->cache_max_lag) {
            if (gwm(sh))
                metrics_add(&gwm(sh)->cache_detached[agent_idx(r)], 1);
            replay_fail(r, 503, "client_too_slow",
                        "this client fell too far behind the shared upstream run and was detached");
        }
    }
    cs->poll_next = NULL;
}

/* --- deciding ------------------------------------------------------------------------ */

static coal_run_t *co_of(run_t *r)
{
    if (!CO(r)) {
        r->ext[g_co_ext] = calloc(1, sizeof(coal_run_t));
        if (!CO(r))
            return NULL;
        list_init(&CO(r)->link);   /* on no list: coal_follower_del leaves it alone */
    }
    coal_run_t *co = CO(r);
    co->r = r;
    co->role = ROLE_NONE;
    co->verdict = -1;
    co->store = false;
    co->f = NULL;
    co->e = NULL;
    buf_reset(&co->ids);
    return co;
}

/* Cache-Control request directives that matter here. */
static void cache_control(const http_req_t *req, bool *no_cache, bool *no_store)
{
    const char *v;
    size_t n;
    *no_cache = *no_store = false;
    if (!req || !http_header(req, "cache-control", &v, &n))
        return;
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == ',' || v[i] == '\t'))
            i++;
        size_t b = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t' && v[i] != '=')
            i++;
        if (i - b == 8 && !strncasecmp(v + b, "no-cache", 8))
            *no_cache = true;
        if (i - b == 8 && !strncasecmp(v + b, "no-store", 8))
            *no_store = true;
        while (i < n && v[i] != ',')
            i++;
    }
}

static int request_key(run_t *r, coal_run_t *co, const http_req_t *req, uint8_t key[CANON_KEY_LEN])
{
    const cfg_agent_t *ag = r->agent;
    const char *paths[CFG_MAX_CACHE_IGNORE];
    canon_part_t parts[CFG_MAX_FORWARD];
    for (uint32_t i = 0; i < ag->n_cache_ignore; i++)
        paths[i] = ag->cache_ignore[i];
    canon_omit_t omit = {paths, ag->n_cache_ignore};
    /* The body on this thread's tape. runinput_parse left it there (HTTP runs;
     * a WebSocket run's body is a copy), so it is read again only when the
     * tape's generation says anything was parsed since, or the body is not the
     * bytes runinput read: a stale tape would be a wrong key, one request's
     * answer served to another. The parse is 2.9k of the 16.9k instructions of
     * the echo body's key (callgrind, see proto/canon.c). Duplicates refused as
     * runinput refuses them; a tape that passed its depth limit (lower than
     * CANON_MAX_DEPTH) is the tape this parse would give. */
    jtape_t *t = jtape_thread();
    if (!t)
        return -ENOMEM;
    const char *body = r->body ? r->body : "";
    int rc;
    _Static_assert(RUNINPUT_MAX_DEPTH <= CANON_MAX_DEPTH, "runinput's tape is canon's");
    if (!(r->in.tape_gen && t->gen == r->in.tape_gen && t->src == body && t->src_len == r->body_len) &&
        (rc = jtape_parse(t, body, r->body_len, CANON_MAX_DEPTH + 1, JTAPE_REJECT_DUPLICATES)))
        return rc;
    buf_reset(&co->out);
    if ((rc = canon_write_tape(&co->out, t, 0, &omit)))
        return rc;
    for (uint32_t i = 0; i < ag->n_forward; i++) {
        const char *v = NULL;
        size_t n = 0;
        if (!req || !http_header(req, ag->forward_headers[i], &v, &n))
            v = NULL;
        parts[i] = (canon_part_t){v, n};
    }
    enum canon_memo memo;
    _Static_assert(CANON_MEMO_COUNT == sizeof gwm(r->sh)->cache_key_memo[0] / sizeof(uint64_t), "one counter each");
    if ((rc = canon_key(ag->name, parts, ag->n_forward, co->out.data ? co->out.data : "", co->out.len, key, &memo)))
        return rc;
    if (gwm(r->sh))
        metrics_add(&gwm(r->sh)->cache_key_memo[agent_idx(r)][memo], 1);
    return 0;
}

/* A ref on the running flight for key, if one can be joined. */
static flight_t *flight_join(const uint8_t key[CANON_KEY_LEN])
{
    struct cds_lfht_iter it;
    flight_t *f = NULL;
    urcu_memb_read_lock();
    cds_lfht_lookup(g_flights, key_hash(key), fl_match, key, &it);
    struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
    if (n) {
        f = caa_container_of(n, flight_t, node);
        if (atomic_load(&f->joinable))
            atomic_fetch_add(&f->refs, 1);
        else
            f = NULL;
    }
    urcu_memb_read_unlock();
    if (f)
        atomic_fetch_add(&f->joined, 1);
    if (f && !atomic_load(&f->joinable)) {   /* the leader closed it meanwhile */
        flight_put(f);
        f = NULL;
    }
    return f;
}

static void count(run_t *r, enum metrics_cache what)
{
    CO(r)->verdict = (int8_t)what;
    if (gwm(r->sh))
        metrics_add(&gwm(r->sh)->cache_results[agent_idx(r)][what], 1);
}

/* By hand: this snprintf and sse.c's head_lines one were 3 % of a cache hit's
 * CPU (perf). co->head holds the longest, "COALESCED" and 20 digits. */
static void set_head(coal_run_t *co, const char *what, uint64_t age_ms)
{
    _Static_assert(sizeof co->head >= sizeof "X-Cache: COALESCED\r\nAge: 18446744073709551615\r\n", "head size");
    char *p = co->head;
    size_t wl = strlen(what);
    memcpy(p, "X-Cache: ", 9);
    memcpy(p + 9, what, wl);
    p += 9 + wl;
    memcpy(p, "\r\nAge: ", 7);
    p += 7;
    p += buf_fmt_u64(p, age_ms / 1000);
    memcpy(p, "\r\n", 3);
    co->r->head_extra = co->head;
}

int coalesce_prepare(run_t *r, const http_req_t *req)
{
    const cfg_agent_t *ag = r->agent;
    shard_t *sh = r->sh;
    if (!ag->cache_ttl_ms || !g_flights)
        return 0;
    coal_run_t *co = co_of(r);
    if (!co)
        return -ENOMEM;
    bool no_cache, no_store;
    cache_control(req, &no_cache, &no_store);
    set_head(co, "MISS", 0);
    uint8_t key[CANON_KEY_LEN];
    if (no_store || request_key(r, co, req, key)) {
        count(r, MC_MISS);
        return 0;   /* neither looked up nor stored nor shared */
    }

    if (!no_cache) {
        cache_entry_t *e = cache_get(key, sh->now_ms);
        if (e) {
            cache_view_t v = cache_view(e);
            co->role = ROLE_HIT;
            co->e = e;
            reader_blob(&co->rd, v, &co->plan);
            r->replay = true;
            r->ops = &coalesce_replay_ops;
            set_head(co, "HIT", sh->now_ms - v.stored_ms);
            count(r, MC_HIT);
            return 0;
        }
    }
    flight_t *f = NULL;
    if (!no_cache && ag->cache_coalesce && (f = flight_join(key))) {
follow:
        co->role = ROLE_FOLLOWER;
        co->f = f;
        reader_flight(&co->rd, f);
        r->replay = true;
        r->ops = &coalesce_replay_ops;
        set_head(co, "COALESCED", sh->now_ms > f->start_ms ? sh->now_ms - f->start_ms : 0);
        count(r, MC_COALESCED);
        return 0;
    }
    f = flight_new(key, sh->now_ms);
    if (!f) {
        count(r, MC_MISS);
        return 0;   /* uncached, not an error for the client */
    }
    if (ag->cache_coalesce) {
        atomic_fetch_add(&f->refs, 1);   /* the table's */
        urcu_memb_read_lock();
        struct cds_lfht_node *old = cds_lfht_add_unique(g_flights, key_hash(key), fl_match, key, &f->node);
        urcu_memb_read_unlock();
        if (old == &f->node) {
            f->in_table = true;
        } else {
            atomic_fetch_sub(&f->refs, 1);
            flight_t *other = no_cache ? NULL : flight_join(key);
            if (other) {   /* another shard's identical request won the race: follow it */
                flight_put(f);
                f = other;
                goto follow;
            }
        }
    }
    count(r, MC_MISS);
    co->role = ROLE_LEADER;
    co->store = true;
    co->f = f;
    return 0;
}

const char *coalesce_result(const run_t *r)
{
    static const char *const names[MC_COUNT] = {[MC_HIT] = "HIT", [MC_MISS] = "MISS", [MC_COALESCED] = "COALESCED"};
    if (!CO(r) || CO(r)->verdict < 0 || CO(r)->verdict >= MC_COUNT)
        return NULL;
    return names[CO(r)->verdict];
}

/* --- the leader ---------------------------------------------------------------------- */

/* The run will not be stored and no one else may join. The log is still
 * written for followers already attached; with none, it stops. */
static void leader_close(flight_t *f)
{
    f->storable = false;
    flight_unpublish(f);   /* clears joinable, then: */
    if (atomic_load(&f->joined) == 0)
        f->recording = false;
}

/* The log cannot go on (an event that cannot be recorded, no memory): the
 * followers get a RUN_ERROR; the leader's own client is not affected. */
static void leader_abandon(flight_t *f, shard_t *sh, const char *code, const char *msg)
{
    leader_close(f);
    if (!f->recording && atomic_load(&f->joined) == 0)
        return;
    f->recording = false;
    f->status = 502;
    snprintf(f->code, sizeof f->code, "%s", code);
    snprintf(f->msg, sizeof f->msg, "%s", msg);
    atomic_store_explicit(&f->state, FL_FAILED, memory_order_release);
    flight_wake(f, sh);
}

void coalesce_record(run_t *r, agui_type_t type, const char *json, size_t len)
{
    coal_run_t *co = CO(r);
    flight_t *f = co ? co->f : NULL;
    if (!f || co->role != ROLE_LEADER || !f->recording)
        return;
    shard_t *sh = r->sh;
    uint64_t gap = sh->now_ms - f->last_ms;
    f->last_ms = sh->now_ms;
    buf_reset(&f->rec);
    if (runrec_build(&f->rec, &f->ids, type, json, len, gap > UINT32_MAX ? UINT32_MAX : (uint32_t)gap)) {
        leader_abandon(f, sh, "upstream_failed", "the shared run could not be recorded");
        return;
    }
    size_t size = f->rec.len;
    log_chunk_t *t = f->tail;
    size_t used = atomic_load_explicit(&t->pub, memory_order_relaxed);
    if (t->cap - used < size) {
        log_chunk_t *c = chunk_new(size);
        if (!c) {
            leader_abandon(f, sh, "out_of_memory", "out of memory");
            return;
        }
        atomic_store_explicit(&t->next, c, memory_order_release);   /* seals t at its pub */
        f->tail = t = c;
        used = 0;
    }
    memcpy(t->data + used, f->rec.data, size);
    atomic_store_explicit(&t->pub, used + size, memory_order_release);
    uint64_t total = atomic_load_explicit(&f->total, memory_order_relaxed) + size;
    atomic_store_explicit(&f->total, total, memory_order_release);
    if (total > r->agent->cache_max_entry && f->storable)
        leader_close(f);   /* too big to store or to join */
    flight_wake(f, sh);
}

/* The log in a new cache entry: its SSE plan (runrec_plan_build), then the
 * records as one contiguous blob (see reader_blob). Not stored when out of
 * memory: the run was served, only not kept. */
static void store(run_t *r, flight_t *f)
{
    uint64_t total = atomic_load_explicit(&f->total, memory_order_relaxed);
    size_t n = 0, k = 0;
    for (log_chunk_t *c = f->head; c; c = atomic_load_explicit(&c->next, memory_order_relaxed))
        n++;
    const char **parts = malloc(n * sizeof *parts);
    size_t *lens = malloc(n * sizeof *lens);
    buf_t plan = {0};
    cache_entry_t *e = NULL;
    char *data;
    if (!parts || !lens)
        goto out;
    for (log_chunk_t *c = f->head; c; c = atomic_load_explicit(&c->next, memory_order_relaxed), k++) {
        parts[k] = c->data;
        lens[k] = atomic_load_explicit(&c->pub, memory_order_relaxed);
    }
    if (runrec_plan_build(&plan, parts, lens, n) || plan.len > UINT32_MAX ||
        !(e = cache_entry_new(4 + plan.len + total, &data)))
        goto out;
    uint32_t pl = (uint32_t)plan.len;
    memcpy(data, &pl, 4);
    memcpy(data + 4, plan.data, plan.len);
    for (size_t at = 4 + plan.len, i = 0; i < n; at += lens[i], i++)
        memcpy(data + at, parts[i], lens[i]);
    cache_insert(e, f->key, r->agent->name, r->agent->cache_ttl_ms, r->sh->now_ms);
out:
    buf_free(&plan);
    free(parts);
    free(lens);
}

void coalesce_leader_done(run_t *r, bool finished)
{
    coal_run_t *co = CO(r);
    if (!co || co->role != ROLE_LEADER || !co->f)
        return;
    flight_t *f = co->f;
    if (finished && f->recording && f->storable && co->store)
        store(r, f);   /* before unpublishing: a request in between finds one or the other */
    /* An abandoned log (leader_abandon) stays FAILED: its followers have not
     * all read that yet, and DONE would end their streams cleanly, cut short. */
    if (atomic_load_explicit(&f->state, memory_order_relaxed) == FL_RUNNING)
        atomic_store_explicit(&f->state, FL_DONE, memory_order_release);
    flight_wake(f, r->sh);
    flight_unpublish(f);
}

void coalesce_leader_failed(run_t *r, int status, const char *code, const char *msg)
{
    coal_run_t *co = CO(r);
    if (!co || co->role != ROLE_LEADER || !co->f)
        return;
    flight_t *f = co->f;
    if (atomic_load_explicit(&f->state, memory_order_relaxed) != FL_RUNNING)
        return;
    f->status = status;
    snprintf(f->code, sizeof f->code, "%s", code);
    snprintf(f->msg, sizeof f->msg, "%s", msg);
    atomic_store_explicit(&f->state, FL_FAILED, memory_order_release);
    flight_wake(f, r->sh);
    flight_unpublish(f);
}

/* --- release ------------------------------------------------------------------------- */

static void coalesce_run_stop(run_t *r)
{
    coal_run_t *co = CO(r);
    if (!co)
        return;
    switch (co->role) {
    case ROLE_LEADER:
        coalesce_leader_failed(r, 502, "upstream_failed", "the request that led this shared run was cancelled");
        flight_put(co->f);
        break;
    case ROLE_FOLLOWER:
        coal_follower_del(co);
        flight_put(co->f);
        break;
    case ROLE_HIT:
        cache_put(co->e);
        break;
    default:
        break;
    }
    co->role = ROLE_NONE;
    co->verdict = -1;
    co->f = NULL;
    co->e = NULL;
    r->replay = false;
    if (co->out.cap > 64 * 1024)
        buf_free(&co->out);   /* keep pooled runs small */
    if (co->ids.cap > 64 * 1024)
        buf_free(&co->ids);
    if (co->quoted.cap > 64 * 1024)
        buf_free(&co->quoted);
}

static void coalesce_run_destroy(run_t *r)
{
    coal_run_t *co = CO(r);
    if (!co)
        return;
    buf_free(&co->out);
    buf_free(&co->ids);
    buf_free(&co->quoted);
    free(co);
    r->ext[g_co_ext] = NULL;
}

bool coalesce_active(const run_t *r) { return CO(r) != NULL && CO(r)->role != ROLE_NONE; }

static const run_ext_ops_t coalesce_ext = {.release = coalesce_run_stop, .destroy = coalesce_run_destroy};
static const shard_mod_ops_t coalesce_mod = {
    .name = "coalesce",
    .init = coalesce_shard_init,
    .turn_end = coalesce_shard_poll,
    .free = coalesce_shard_free,
};

void coalesce_register(void)
{
    g_coal_mod = shard_mod_register(&coalesce_mod);
    g_co_ext = run_ext_register(&coalesce_ext);
}
