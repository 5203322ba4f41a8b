/* resume_log: the table of resumable runs' logs and their lifetimes (see
 * resume_int.h): run ids to logs (one lock, taken when a run starts and when
 * a client reattaches, never per event); on the owner's shard, the cancels
 * and detach deadlines of running logs, the expiry of ended ones after
 * log_ttl, their tombstones (a reattach is 410 for another log_ttl, at least
 * a minute), and resume.max_bytes, the bound on every log of the process.
 *
 * Invariants:
 *  - A log is on one of its owner's lists: running (its producer has not
 *    ended), ended (in the order the runs ended), tombs (expired, chunks
 *    freed). Only the owner moves or frees it.
 *  - A log is freed only out of the table and with no follower, both read
 *    under g_tab.lock, under which every new follower is counted.
 *  - g_tab.bytes counts every log's chunks and its own struct, so the bound
 *    holds tombstones too: a client minting run ids cannot grow the table
 *    past it. Over the bound, each owner's sweep drops its oldest tombstones,
 *    then expires its oldest ended logs (running logs drop their own fronts,
 *    net/runlog.c). */
#include "net/resume_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "net/resume.h"
#include "net/runlog_redis.h"

#define RS_BUCKETS        1024
#define RS_SWEEP_MS       50
#define RS_FULL_SWEEP_MS  1000u     /* ended logs of agents with different log_ttl, out of order */
#define RS_TOMB_MIN_MS    60000u    /* an expired log answers 410 at least this long */

static struct {
    pthread_mutex_t lock;
    rs_log_t       *b[RS_BUCKETS];
    _Atomic size_t  bytes;          /* every log's chunks and structs */
    _Atomic size_t  logs;           /* logs held (running, ended, tombstones) */
    _Atomic uint64_t trimmed;       /* logs expired or dropped early for resume.max_bytes */
} g_tab = {.lock = PTHREAD_MUTEX_INITIALIZER};

static rs_log_t *g_orphans;         /* logs still followed when their owner stopped (main thread frees) */

size_t resume_bytes(void) { return atomic_load_explicit(&g_tab.bytes, memory_order_relaxed); }

static uint64_t id_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a: run ids are short, hashed once per run */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

/* --- the table (g_tab.lock held) ----------------------------------------------------- */

static rs_log_t **tab_slot(const char *id, size_t n, uint64_t h)
{
    rs_log_t **p = &g_tab.b[h % RS_BUCKETS];
    for (; *p; p = &(*p)->hnext)
        if ((*p)->hash == h && (*p)->run_id_len == n && !memcmp((*p)->run_id, id, n))
            break;
    return p;
}

static void tab_remove(rs_log_t *lg)
{
    rs_log_t **p = tab_slot(lg->run_id, lg->run_id_len, lg->hash);
    if (*p == lg)
        *p = lg->hnext;
    lg->hnext = NULL;
    lg->in_table = false;
}

static bool who_equal(const rs_log_t *lg, const rs_log_t *other)
{
    return lg->who_set == other->who_set && (!lg->who_set || !memcmp(lg->who, other->who, 16));
}

/* --- logs ---------------------------------------------------------------------------- */

rs_log_t *rs_log_new(shard_t *sh, const cfg_agent_t *ag, const char *id, size_t idn)
{
    rs_log_t *lg = calloc(1, sizeof *lg);
    if (!lg || runlog_init(&lg->log, ag->resume_max_bytes, &g_tab.bytes, resume_conf(sh->cfg)->max_bytes)) {
        free(lg);   /* (runlog_init left nothing to free when it failed) */
        return NULL;
    }
    atomic_fetch_add_explicit(&g_tab.bytes, sizeof *lg, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_tab.logs, 1, memory_order_relaxed);
    memcpy(lg->run_id, id, idn);
    lg->run_id_len = (uint16_t)idn;
    lg->hash = id_hash(id, idn);
    lg->owner = sh->id;
    lg->ttl_ms = ag->resume_log_ttl_ms;
    lg->detach_ms = ag->resume_detach_ms;
    memcpy(lg->agent, ag->name, strnlen(ag->name, sizeof lg->agent - 1));
    list_init(&lg->link);
    list_init(&lg->dirty_link);
    return lg;
}

static void log_free(rs_log_t *lg)
{
    if (atomic_load_explicit(&lg->phase, memory_order_relaxed) != RS_EXPIRED)
        runlog_free(&lg->log);
    atomic_fetch_sub_explicit(&g_tab.bytes, sizeof *lg, memory_order_relaxed);
    atomic_fetch_sub_explicit(&g_tab.logs, 1, memory_order_relaxed);
    free(lg);
}

/* A run id is the client's: one still in the table is replaced by the same
 * caller's new run (its log can no longer be reattached), refused to another. */
int rs_log_publish(rs_log_t *lg)
{
    pthread_mutex_lock(&g_tab.lock);
    rs_log_t **slot = tab_slot(lg->run_id, lg->run_id_len, lg->hash), *old = *slot;
    if (old && !who_equal(old, lg)) {
        pthread_mutex_unlock(&g_tab.lock);
        log_free(lg);
        return -EEXIST;
    }
    if (old)
        tab_remove(old);
    slot = tab_slot(lg->run_id, lg->run_id_len, lg->hash);
    lg->hnext = *slot;
    *slot = lg;
    lg->in_table = true;
    atomic_store(&lg->followers, 1);
    pthread_mutex_unlock(&g_tab.lock);
    return 0;
}

void rs_log_own(rs_log_t *lg, shard_t *sh)
{
    rs_shard_t *rs = rs_shard(sh);
    list_push_back(lg->producer ? &rs->running : &rs->ended, &lg->link);
    rs_sweep_arm(sh);
}

void rs_log_ended(rs_log_t *lg, shard_t *sh)
{
    list_unlink(&lg->link);
    list_push_back(&rs_shard(sh)->ended, &lg->link);
    if (atomic_load_explicit(&lg->log.state, memory_order_relaxed) == RUNLOG_FAILED &&
        !atomic_load_explicit(&lg->log.last_seq, memory_order_relaxed)) {
        pthread_mutex_lock(&g_tab.lock);   /* nothing to reattach to (a limit refused it): the id is free */
        if (lg->in_table)
            tab_remove(lg);
        pthread_mutex_unlock(&g_tab.lock);
        rs_sweep_arm(sh);
    }
}

/* --- the owner's sweep --------------------------------------------------------------- */

void rs_sweep_arm(shard_t *sh)
{
    rs_shard_t *rs = rs_shard(sh);
    if (!timer_armed(&rs->sweep))
        timer_arm(&sh->timers, &rs->sweep, sh->now_ms + RS_SWEEP_MS);
}

/* A running log: a cancel asked for, its detach clock. */
static void sweep_running(rs_log_t *lg, shard_t *sh)
{
    uint64_t now = sh->now_ms;
    if (atomic_exchange(&lg->cancel, false)) {
        bool nobody = atomic_load(&lg->followers) == 0 && !atomic_load(&lg->log.last_seq);
        rs_cancel_producer(lg, sh, nobody ? "client_closed" : "run_cancelled",
                           nobody ? "the client left before the run's first event" : "the run was cancelled");
    } else if (atomic_load(&lg->followers)) {
        lg->detached_ms = 0;
        rs_kick_producer(lg, sh);
    } else if (!lg->detached_ms) {
        lg->detached_ms = now;
        rs_kick_producer(lg, sh);   /* it may have waited for the follower that left */
    } else if (now - lg->detached_ms >= lg->detach_ms) {
        rs_cancel_producer(lg, sh, "detach_timeout", "no client reattached within resume.detach_timeout");
    }
}

enum { RS_KEEP, RS_TO_TOMB, RS_DROP };

/* An ended log: expired after log_ttl, or at once when `trim` (the process's
 * bound); dropped a tombstone's time later, at once when trimming a
 * tombstone, or once out of the table. False when it stays as it is. */
static bool settle(rs_shard_t *rs, rs_log_t *lg, uint64_t now, bool trim)
{
    bool live = atomic_load_explicit(&lg->phase, memory_order_relaxed) == RS_LIVE;
    uint64_t gone = lg->end_ms + lg->ttl_ms, tomb = lg->ttl_ms > RS_TOMB_MIN_MS ? lg->ttl_ms : RS_TOMB_MIN_MS;
    if (!trim && atomic_load(&lg->in_table) && now < (live ? gone : gone + tomb))
        return false;   /* the common case, without the table's lock */
    int act = RS_KEEP;
    pthread_mutex_lock(&g_tab.lock);   /* in_table: another shard's new run may have replaced it */
    if (!atomic_load(&lg->followers)) {
        if (!lg->in_table || now >= gone + tomb || (trim && !live)) {
            if (lg->in_table)
                tab_remove(lg);
            act = RS_DROP;
        } else if (live) {
            atomic_store(&lg->phase, RS_EXPIRED);   /* no one reads it, and no one can start to */
            runlog_free(&lg->log);
            act = RS_TO_TOMB;
        }
    }
    pthread_mutex_unlock(&g_tab.lock);
    if (act == RS_KEEP)
        return false;
    list_unlink(&lg->link);
    if (lg->dirty) {
        list_unlink(&lg->dirty_link);
        lg->dirty = false;
    }
    if (act == RS_TO_TOMB)
        list_push_back(&rs->tombs, &lg->link);
    else
        log_free(lg);
    return true;
}

static bool over_bound(const shard_t *sh)
{
    return atomic_load_explicit(&g_tab.bytes, memory_order_relaxed) > resume_conf(sh->cfg)->max_bytes;
}

/* Over resume.max_bytes: this shard's oldest tombstones go, then its oldest
 * ended logs become tombstones. */
static void trim(rs_shard_t *rs, shard_t *sh)
{
    list_t *lists[2] = {&rs->tombs, &rs->ended};
    for (int i = 0; i < 2; i++)
        list_each_safe(lists[i], n, tmp) {
            if (!over_bound(sh))
                return;
            if (settle(rs, list_item(n, rs_log_t, link), sh->now_ms, true))
                atomic_fetch_add_explicit(&g_tab.trimmed, 1, memory_order_relaxed);
        }
}

/* Running logs every time; of the ended and tombs lists (each in the order
 * its logs came), the front until one stays, and the whole lists every
 * RS_FULL_SWEEP_MS (agents' log_ttl differ). */
void rs_sweep(shard_t *sh)
{
    rs_shard_t *rs = rs_shard(sh);
    uint64_t now = sh->now_ms;
    list_each_safe(&rs->running, n, tmp)
        sweep_running(list_item(n, rs_log_t, link), sh);
    bool full = now >= rs->full_sweep_ms;
    if (full)
        rs->full_sweep_ms = now + RS_FULL_SWEEP_MS;
    list_t *lists[2] = {&rs->ended, &rs->tombs};
    for (int i = 0; i < 2; i++)
        list_each_safe(lists[i], n, tmp)
            if (!settle(rs, list_item(n, rs_log_t, link), now, false) && !full)
                break;
    trim(rs, sh);
    if (!list_empty(&rs->running) || !list_empty(&rs->ended) || !list_empty(&rs->tombs))
        rs_sweep_arm(sh);
}

void rs_logs_orphan(rs_shard_t *rs)
{
    list_t *lists[3] = {&rs->running, &rs->ended, &rs->tombs};
    pthread_mutex_lock(&g_tab.lock);
    for (int i = 0; i < 3; i++)
        list_each_safe(lists[i], n, tmp) {
            rs_log_t *lg = list_item(n, rs_log_t, link);
            list_unlink(&lg->link);
            if (lg->in_table)
                tab_remove(lg);
            lg->hnext = g_orphans;   /* freed at resume_shutdown, once no shard runs */
            g_orphans = lg;
        }
    pthread_mutex_unlock(&g_tab.lock);
}

void resume_shutdown(void)
{
    pthread_mutex_lock(&g_tab.lock);
    rs_log_t *lg = g_orphans;
    g_orphans = NULL;
    pthread_mutex_unlock(&g_tab.lock);
    for (rs_log_t *n; lg; lg = n) {
        n = lg->hnext;
        log_free(lg);
    }
}

/* --- holds, for reattaches ----------------------------------------------------------- */

rs_log_t *rs_hold(const char *id, size_t n, rs_view_t *v)
{
    uint64_t h = id_hash(id, n);
    pthread_mutex_lock(&g_tab.lock);
    rs_log_t *lg = *tab_slot(id, n, h);
    if (lg) {
        atomic_fetch_add(&lg->followers, 1);
        memcpy(v->token, lg->token, sizeof v->token);
        memcpy(v->who, lg->who, sizeof v->who);
        v->who_set = lg->who_set;
        v->expired = atomic_load(&lg->phase) == RS_EXPIRED;
        v->running = atomic_load_explicit(&lg->log.state, memory_order_acquire) == RUNLOG_OPEN;
        v->last_seq = atomic_load_explicit(&lg->log.last_seq, memory_order_acquire);
        v->first_seq = 1;
        if (!v->expired) {
            runlog_lock(&lg->log);
            v->first_seq = runlog_first_seq(&lg->log);
            runlog_unlock(&lg->log);
        }
        memcpy(v->agent, lg->agent, sizeof v->agent);
    }
    pthread_mutex_unlock(&g_tab.lock);
    return lg;
}

void rs_unhold(rs_log_t *lg) { atomic_fetch_sub(&lg->followers, 1); }

/* --- metrics ------------------------------------------------------------------------- */

void rs_log_metrics(metrics_render_t *r, const shard_t *shards, unsigned n, const cfg_t *cfg)
{
    (void)shards;
    (void)n;
    (void)cfg;
    metrics_gauge(r, "agate_resume_log_bytes",
                  "Bytes held by resumable runs' logs (events and bookkeeping), against resume.max_bytes.",
                  (int64_t)atomic_load_explicit(&g_tab.bytes, memory_order_relaxed));
    metrics_gauge(r, "agate_resume_logs", "Resumable runs' logs held: running, ended, and expired (410).",
                  (int64_t)atomic_load_explicit(&g_tab.logs, memory_order_relaxed));
    metrics_counter(r, "agate_resume_logs_trimmed",
                    "Ended logs expired or dropped before their time to keep every log under resume.max_bytes.",
                    atomic_load_explicit(&g_tab.trimmed, memory_order_relaxed));
}
