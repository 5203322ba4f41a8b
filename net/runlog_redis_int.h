/* runlog_redis_int: what the Stream writer (runlog_redis.c) shares with the
 * remote follower (runlog_remote.c); nothing else includes it. */
#ifndef AGATE_RUNLOG_REDIS_INT_H
#define AGATE_RUNLOG_REDIS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/metrics.h"
#include "core/shard.h"
#include "core/timer.h"

#define RSX_ID_MAX   128
#define RSX_KEY_MAX  (64 + 5 + RSX_ID_MAX + 8)   /* prefix, "run:", id, ":remote" */

/* Every script gets all of a run's keys, in this order. CANCEL: another pod
 * asks the owner to cancel (its value the run's nonce); GONE: the tombstone
 * that outlives the stream and meta, so an expired run is 410, not 404. */
enum { RSXK_STREAM, RSXK_META, RSXK_OWNER, RSXK_REMOTE, RSXK_CANCEL, RSXK_GONE, RSXK_N };

/* Per-shard counters (agate_resume_redis_*), read by a scrape on any shard. */
typedef struct rsx_metrics {
    uint64_t batches, batches_dropped, events_written, events_dropped, write_errors;
    uint64_t remote_reattaches, remote_refused, polls, poll_errors, lost_ends;
} rsx_metrics_t;

typedef struct rsx_shard {
    shard_t      *sh;
    list_t        live;           /* writers of runs this shard runs (rsx_w_t.link) */
    list_t        dirty;          /* writers with records or an end to send */
    size_t        queued;         /* event bytes sent and not yet answered */
    agate_timer_t heartbeat;
    agate_timer_t t_flush;        /* records logged after the turn end's flush */
    buf_t         args;           /* a batch's arguments, back to back */
    const char  **av;             /* a batch's argv into args */
    size_t       *al;
    size_t        av_cap;
} rsx_shard_t;

extern unsigned g_rsx_mod, g_rsx_mmod, g_rsx_script_write, g_rsx_script_read, g_rsx_script_cancel;

static inline rsx_shard_t   *rsx_shard(const shard_t *sh) { return (rsx_shard_t *)sh->mod[g_rsx_mod]; }
static inline rsx_metrics_t *rsx_m(const shard_t *sh) { return (rsx_metrics_t *)sh->mod[g_rsx_mmod]; }

/* Counts n in counter f of shard sh's block (none when metrics are off). */
#define RSX_COUNT(sh, f, n)                                                                \
    do {                                                                                   \
        rsx_metrics_t *m_ = rsx_m(sh);                                                     \
        if (m_)                                                                            \
            metrics_add(&m_->f, (n));                                                      \
    } while (0)

/* The keys of run id under cfg's prefix, into k[RSXK_N][RSX_KEY_MAX]. */
void rsx_keys(const cfg_t *cfg, const char *id, size_t idn, char k[RSXK_N][RSX_KEY_MAX], size_t kl[RSXK_N]);

/* The remote follower's part of the module (runlog_remote.c). */
void rsx_remote_register(void);

/* A run's meta value, "<nonce> <sha256(token) hex> <who hex or -> <agent> <pod>",
 * read by a pod that has not the run: 1 when the caller may (tok_hash, the
 * sha256 hex of the token it sent, matches; or who, its identity digest hex,
 * is the run's: "" for none), 0 when not, -1 when meta is malformed. The
 * run's agent into agent[cap] (when not malformed). Pure. */
int rsx_meta_allows(const char *meta, size_t n, const char *tok_hash, const char *who, char *agent, size_t cap);

#endif
