/* coalesce_replay: a run served from a cache entry (HIT) or from a flight
 * (COALESCED), written to its client through the run's sink at the client's
 * pace (or the recorded one, cache.pace) under the run's own ids; and each
 * shard's list of the followers it runs, polled at the end of its turns.
 *
 * Invariants:
 *  - A follower lives on its own shard's list (coal_shard_t) from attach
 *    (replay_start) to release (coal_follower_del); only that shard touches
 *    it. Other shards reach a shard only through its `pending` flag and
 *    eventfd.
 *  - pump may release the run it pumps and, through a shared connection,
 *    other followers of the shard: nothing of a run is touched after its
 *    pump, and the poll walks the list with a cursor that removal moves on.
 *  - A follower's lag is judged only when it is blocked, against the least
 *    it was ever behind: a late joiner's backlog is not its fault. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/cache.h"
#include "core/timer.h"
#include "net/coalesce_int.h"
#include "net/coalesce_metrics.h"

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
    if (!coal_shard_of(sh))
        return;
    cache_thread_offline();
    free(coal_shard_of(sh));
    sh->mod[g_coal_mod] = NULL;
}

void coal_follower_del(coal_run_t *co)
{
    if (list_empty(&co->link))
        return;   /* linked to itself: never attached, or already taken off */
    coal_shard_t *cs = coal_shard_of(co->r->sh);
    if (cs->poll_next == &co->link)
        cs->poll_next = co->link.next;
    list_unlink(&co->link);
}

/* --- replay ------------------------------------------------------------------------- */

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

/* Records to the client under the run's ids: a whole stored run from its plan
 * where the sink can and it fits, else as many records as the sink takes in
 * one pass (SSE), else the peeked one, rendered into co->out and passed on;
 * only the peeked one when `batch` is false. 0; 1 when the sink failed and released the run; -ENOMEM or
 * -EINVAL when the record was not sent and the run is still the caller's. */
static int emit_records(run_t *r, coal_run_t *co, const runrec_t *rec, size_t size, bool batch)
{
    int rc;
    if (batch && co->role == COAL_ROLE_HIT && !co->rd.off && r->sink->stored) {
        rc = r->sink->stored(r, &co->plan, co->rd.blob, co->rd.blob_len, &co->subst);
        if (!rc)
            coal_reader_advance(&co->rd, co->rd.blob_len);
        if (rc != -EAGAIN)
            return rc;
    }
    if (batch && r->sink->records) {
        size_t len, used = 0;
        const char *span = coal_reader_span(&co->rd, &len);
        rc = r->sink->records(r, span, len, &co->subst, &used);
        if (rc == 1)
            return 1;
        coal_reader_advance(&co->rd, used);
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
    coal_reader_advance(&co->rd, size);
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
    coal_run_t *co = coal_run_of(r);
    shard_t *sh = r->sh;
    bool pace = co->role == COAL_ROLE_HIT && r->agent->cache_pace;
    while (!r->blocked) {
        runrec_t rec = {0};
        size_t size = 0;
        int st = coal_reader_peek(&co->rd, co->f, &rec, &size);
        if (st == COAL_RD_NONE) {
            /* Caught up with the log: as close as it can be, so the lag limit
             * counts from here (a late joiner's backlog is taken by now). */
            uint64_t lag = co->f ? follower_lag(co) : 0;
            if (lag < co->best_lag)
                co->best_lag = lag;
            return;
        }
        if (st == COAL_RD_FAILED) {
            const coal_flight_t *f = co->f;
            const char *code = f && f->code[0] ? f->code : "upstream_failed";
            const char *msg = f && f->msg[0] ? f->msg : "the shared upstream run failed";
            replay_fail(r, f && f->status ? f->status : 502, code, msg);
            return;
        }
        if (!r->started) {
            r->sink->start(r);
            r->started = true;
        }
        if (st == COAL_RD_END) {
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
    coal_run_t *co = coal_run_of(r);
    if (runrec_subst_init(&co->subst, &co->quoted, r->in.thread_id, r->in.thread_id_len, r->in.run_id,
                          r->in.run_id_len, &co->ids, &r->sh->rng)) {
        replay_fail(r, 503, "out_of_memory", "out of memory");
        return;
    }
    co->last_emit_ms = r->sh->now_ms;
    if (co->role == COAL_ROLE_FOLLOWER) {
        coal_flight_t *f = co->f;
        unsigned s = r->sh->id;
        list_push_front(&coal_shard_of(r->sh)->followers, &co->link);
        co->best_lag = atomic_load_explicit(&f->total, memory_order_acquire);   /* its backlog at attach */
        if (s < COAL_MASK_WORDS * 64)
            atomic_fetch_or(&f->mask[s / 64], 1ull << (s % 64));
        atomic_thread_fence(memory_order_seq_cst);
    }
    pump(r);
}

static void replay_resume(run_t *r) { pump(r); }
static void replay_stop(run_t *r) { (void)r; }   /* coalesce_run_stop does it, whatever the role */

const run_kind_ops_t coal_replay_ops = {replay_start, replay_resume, replay_stop};

static void coalesce_shard_poll(shard_t *sh)
{
    coal_shard_t *cs = coal_shard_of(sh);
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
            if (coalm(sh))
                metrics_add(&coalm(sh)->detached[coal_agent_idx(r)], 1);
            replay_fail(r, 503, "client_too_slow",
                        "this client fell too far behind the shared upstream run and was detached");
        }
    }
    cs->poll_next = NULL;
}

const shard_mod_ops_t coal_shard_ops = {
    .name = "coalesce",
    .init = coalesce_shard_init,
    .turn_end = coalesce_shard_poll,
    .free = coalesce_shard_free,
};
