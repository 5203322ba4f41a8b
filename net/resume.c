/* resume: resumable runs in one process (see resume.h): the producer's
 * sink, the follower run kind, detach and cancel, the shard module and the
 * resume: section. The table of logs and their lifetimes is resume_log.c.
 *
 * Ownership and invariants (the log's own: resume_int.h):
 *  - Every client of a resumable run, the first one too, is a follower run
 *    with a reader on the log, so there is one state whether it stayed or came
 *    back. The run's own client (`local`: the first follower on the owner's
 *    shard) is written to as each event is logged while it is caught up and
 *    not blocked (direct_client), its sink's bound asked before each event as
 *    a plain run's is; behind or blocked, it reads the log like any other.
 *  - The producer waits (writable() false) only for `local` when it is
 *    blocked or behind; others it does not wait for: the log's bound protects
 *    memory, and a follower left behind the dropped front gets RUN_ERROR
 *    resume_log_truncated.
 *  - Wake-ups: the producer marks its log dirty once per turn; the owner's
 *    turn end pumps `local` if it is behind (no flag, no poll of the shard's
 *    other followers) and wakes the shards whose bit is in `mask` (every
 *    other follower's: pending flag, eventfd), whose turn end pumps theirs. */
#include "net/resume.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/config_sect.h"
#include "core/json.h"
#include "core/list.h"
#include "core/metrics.h"
#include "core/rand.h"
#include "core/shard.h"
#include "net/access.h"
#include "net/conn.h"
#include "net/http1.h"
#include "net/resume_int.h"
#include "net/runlog.h"
#include "net/sse.h"
#include "proto/run.h"

typedef struct rs_run {
    struct run      *r;
    rs_log_t        *lg;
    bool             follower;
    bool             pumping, stopped;   /* stopped inside its own pump: the pump lets go of the log */
    runlog_reader_t  rd;
    list_t           link;          /* follower: on its shard's list */
} rs_run_t;

static unsigned g_rs_ext;
unsigned g_rs_mod;

static inline rs_run_t   *rs_of(const run_t *r) { return (rs_run_t *)r->ext[g_rs_ext]; }

/* --- wake-ups ------------------------------------------------------------------------ */

static void mark_dirty(rs_log_t *lg, shard_t *sh)
{
    if (lg->dirty)
        return;
    lg->dirty = true;
    list_push_back(&rs_shard(sh)->dirty, &lg->dirty_link);
}

static _Atomic bool *rs_pending(shard_t *sh) { return rs_shard(sh) ? &rs_shard(sh)->pending : NULL; }

static void wake_followers(rs_log_t *lg, shard_t *self) { shard_wake_mask(lg->mask, RS_MASK_WORDS, rs_pending, self); }

/* The owner: a client on another pod follows the run (net/runlog_redis.h):
 * the detach clock starts again. */
static void remote_seen(void *arg)
{
    rs_log_t *lg = arg;
    if (lg->detached_ms)
        lg->detached_ms = g_shards[lg->owner].now_ms;
}

/* --- the producer's sink ------------------------------------------------------------- */

static void producer_ended(rs_log_t *lg, shard_t *sh)
{
    bool failed = atomic_load_explicit(&lg->log.state, memory_order_relaxed) == RUNLOG_FAILED;
    rsx_close(sh, lg->rsx, failed, lg->status, lg->code, lg->msg);
    lg->rsx = NULL;
    lg->producer = NULL;
    lg->end_ms = sh->now_ms;
    rs_log_ended(lg, sh);
    mark_dirty(lg, sh);
}

/* The run's own client (the first follower on this shard), started, caught
 * up to record `seq` and not blocked: its events go to it as they come, as a
 * plain run's do, instead of through the turn end's pump (whose lock, peek
 * and pass were 7 % of a resumable echo run's CPU; perf, bench/cases/resume.sh).
 * ps_writable asks its sink for room before each event, as a plain run does. */
static run_t *direct_client(rs_log_t *lg, uint64_t seq)
{
    run_t *c = lg->local;
    if (!c || !c->started || c->blocked)
        return NULL;
    const rs_run_t *fr = rs_of(c);
    return !fr->pumping && fr->rd.next == seq ? c : NULL;
}

/* After a direct write: as in pump, a client released inside its write left
 * its count on the log to us; else it has every record. False when released. */
static bool direct_done(rs_log_t *lg, run_t *c)
{
    rs_run_t *fr = rs_of(c);
    fr->pumping = false;
    if (fr->stopped) {
        fr->stopped = false;
        atomic_fetch_sub(&lg->followers, 1);
        return false;
    }
    c->ev_seq = 0;
    return true;
}

static void log_direct(rs_log_t *lg, uint64_t seq, uint8_t type, const char *json, size_t len, bool has_lf)
{
    run_t *c = direct_client(lg, seq);
    if (!c)
        return;
    c->ev_seq = seq;
    rs_of(c)->pumping = true;
    int rc = c->sink->raw(c, (agui_type_t)type, json, len, has_lf);
    if (direct_done(lg, c) && !rc)
        runlog_reader_end(&lg->log, &rs_of(c)->rd);
}

static int log_event(run_t *r, uint8_t type, const char *json, size_t len, bool has_lf)
{
    rs_log_t *lg = r->sink_ctx;
    int64_t seq = runlog_append(&lg->log, type, json, len, has_lf);
    if (seq < 0)
        return -ENOMEM;
    if (lg->local)
        log_direct(lg, (uint64_t)seq, type, json, len, has_lf);
    mark_dirty(lg, r->sh);   /* followers elsewhere: woken at the turn's end */
    return 0;
}

/* The run cannot log its event: it ends as failed for everyone reading it. */
static int log_failed(run_t *r)
{
    rs_log_t *lg = r->sink_ctx;
    snprintf(lg->code, sizeof lg->code, "out_of_memory");
    snprintf(lg->msg, sizeof lg->msg, "out of memory");
    lg->status = 503;
    runlog_close(&lg->log, true);
    producer_ended(lg, r->sh);
    run_release(r);
    return -ENOMEM;
}

static void ps_start(run_t *r)
{
    rs_log_t *lg = r->sink_ctx;
    static const char name[] = "X-Agate-Resume-Token: ";
    size_t xn = r->head_extra ? strlen(r->head_extra) : 0, cap = sizeof lg->head - (sizeof name - 1) - 32 - 3;
    if (xn > cap)
        xn = cap;   /* (a head_extra is one short header line) */
    char *w = lg->head;   /* no snprintf: it was 1 % of a resumable echo run */
    if (xn)
        memcpy(w, r->head_extra, xn);
    memcpy(w += xn, name, sizeof name - 1);
    memcpy(w += sizeof name - 1, lg->token, 32);
    memcpy(w + 32, "\r\n", 3);
    atomic_store_explicit(&lg->started, true, memory_order_release);
    run_t *c = lg->local;
    if (c && !c->started) {   /* the run's own client starts with it: its events can go straight */
        c->head_extra = lg->head;
        c->sink->start(c);
        c->started = true;
    }
    mark_dirty(lg, r->sh);
}

/* An agate-built event (echo, a replay): rendered once, into the direct
 * client's output when its sink says where (event_json), and copied from
 * there into the log; else into a scratch buffer, logged, then relayed. */
static int ps_event(run_t *r, const agui_event_t *ev)
{
    rs_log_t *lg = r->sink_ctx;
    uint64_t seq = atomic_load_explicit(&lg->log.last_seq, memory_order_relaxed) + 1;
    run_t *c = direct_client(lg, seq);
    if (c && c->sink->event_json) {
        const char *json;
        size_t len;
        c->ev_seq = seq;
        rs_of(c)->pumping = true;
        int rc = c->sink->event_json(c, ev, &json, &len);
        if (direct_done(lg, c) && !rc) {
            if (runlog_append(&lg->log, (uint8_t)ev->type, json, len, false) < 0)
                return log_failed(r);
            runlog_reader_end(&lg->log, &rs_of(c)->rd);
            mark_dirty(lg, r->sh);
            return 0;
        }   /* the client went: the event is still logged, below */
    }
    buf_t *b = &rs_shard(r->sh)->tmp;
    buf_reset(b);
    if (agui_write_json(b, ev) || log_event(r, (uint8_t)ev->type, b->data, b->len, false))
        return log_failed(r);
    return 0;
}

static int ps_raw(run_t *r, agui_type_t type, const char *json, size_t len, bool has_lf)
{
    return log_event(r, (uint8_t)type, json, len, has_lf) ? log_failed(r) : 0;
}

/* Waits only for a follower on this shard: blocked, or behind by stream.buffer
 * or by a quarter of the log's bound (a chunk: what the log keeps past a
 * drop is more than that, so the follower never loses what it has not read).
 * A caught-up one is written to directly: its sink's own bound decides, and
 * a full sink blocks it (its drain pumps it, which lets the producer go on). */
static bool ps_writable(run_t *r)
{
    rs_log_t *lg = r->sink_ctx;
    run_t *c = lg->local;
    if (!c)
        return true;
    if (c->blocked)
        return false;
    const rs_run_t *fr = rs_of(c);
    uint64_t total = atomic_load_explicit(&lg->log.total, memory_order_relaxed);
    if (total == fr->rd.pos && c->started) {
        if (c->sink->writable(c))
            return true;
        c->blocked = true;
        return false;
    }
    uint64_t lag = r->sh->cfg->stream_buffer_bytes, part = lg->log.max_bytes / 4;
    return total - fr->rd.pos < (part < lag ? part : lag);
}

static void ps_end(run_t *r)
{
    rs_log_t *lg = r->sink_ctx;
    runlog_close(&lg->log, false);
    producer_ended(lg, r->sh);
    run_release(r);
}

static void ps_fail(run_t *r, int status, const char *code, const char *msg, uint32_t retry_after_s)
{
    rs_log_t *lg = r->sink_ctx;
    lg->status = status;
    lg->retry_after_s = retry_after_s;
    snprintf(lg->code, sizeof lg->code, "%s", code);
    snprintf(lg->msg, sizeof lg->msg, "%s", msg);
    runlog_close(&lg->log, true);
    producer_ended(lg, r->sh);
    run_release(r);
}

static const run_sink_ops_t producer_sink = {
    .start = ps_start, .event = ps_event, .raw = ps_raw, .writable = ps_writable, .end = ps_end, .fail = ps_fail,
};

/* Owner: ends the run now. Readers get a RUN_ERROR as its last event (or,
 * before its head, the failure). The upstream sees its connection closed. */
void rs_cancel_producer(rs_log_t *lg, shard_t *sh, const char *code, const char *msg)
{
    run_t *p = lg->producer;
    if (!p)
        return;
    if (atomic_load_explicit(&lg->started, memory_order_acquire)) {
        buf_t *b = &rs_shard(sh)->tmp;
        buf_reset(b);
        buf_append_lit(b, "{\"type\":\"RUN_ERROR\",\"message\":");
        json_put_str(b, msg, strlen(msg));
        buf_append_lit(b, ",\"code\":");
        json_put_str(b, code, strlen(code));
        buf_putc(b, '}');
        runlog_append(&lg->log, AGUI_RUN_ERROR, b->data, b->len, false);   /* no memory: the log just ends */
        runlog_close(&lg->log, false);
    } else {
        lg->status = 409;
        snprintf(lg->code, sizeof lg->code, "%s", code);
        snprintf(lg->msg, sizeof lg->msg, "%s", msg);
        runlog_close(&lg->log, true);
    }
    producer_ended(lg, sh);
    run_abort(p);
}

/* --- followers ----------------------------------------------------------------------- */

static void follower_unlink(rs_run_t *fr)
{
    if (list_empty(&fr->link))
        return;
    rs_shard_t *rs = rs_shard(fr->r->sh);
    if (rs->poll_next == &fr->link)
        rs->poll_next = fr->link.next;
    list_unlink(&fr->link);
}

static void follower_error(run_t *r, const char *code, const char *msg)
{
    agui_event_t ev = {.type = AGUI_RUN_ERROR};
    ev.code = (agui_str_t){code, strlen(code)};
    ev.message = (agui_str_t){msg, strlen(msg)};
    r->errored = true;
    r->ev_seq = 0;
    if (r->sink->event(r, &ev) == 0)
        r->sink->end(r);
}

/* The producer on this shard waits for this follower: let it go on. */
void rs_kick_producer(rs_log_t *lg, shard_t *sh)
{
    if (sh->id == lg->owner && lg->producer && lg->producer->blocked && ps_writable(lg->producer))
        run_resume(lg->producer);
}

/* Writes what the follower can take now. May release it (end, failure, a
 * write the client is gone for): callers touch nothing of it afterwards. */
static void pump(run_t *r)
{
    rs_run_t *fr = rs_of(r);
    rs_log_t *lg = fr->lg;
    while (!r->blocked) {
        if (!r->started) {
            if (!atomic_load_explicit(&lg->started, memory_order_acquire)) {
                int st = atomic_load_explicit(&lg->log.state, memory_order_acquire);
                if (st == RUNLOG_OPEN)
                    return;   /* no head yet */
                r->sink->fail(r, lg->status ? lg->status : 502, lg->code[0] ? lg->code : "upstream_failed",
                              lg->msg[0] ? lg->msg : "the run failed", lg->retry_after_s);
                return;
            }
            r->head_extra = lg->head;
            r->sink->start(r);
            r->started = true;
        }
        runlog_rec_t rec;
        size_t size;
        int st;
        fr->pumping = true;
        runlog_lock(&lg->log);
        while ((st = runlog_peek(&lg->log, &fr->rd, &rec, &size)) == RUNLOG_RD_REC) {
            r->ev_seq = rec.seq;
            if (r->sink->raw(r, (agui_type_t)rec.type, rec.json, rec.len, rec.has_lf))
                break;   /* released: fr->stopped */
            runlog_advance(&fr->rd, size);
            if (!r->sink->writable(r)) {
                r->blocked = true;
                break;
            }
        }
        runlog_unlock(&lg->log);
        fr->pumping = false;
        if (fr->stopped) {   /* the run is gone; its count on the log was left to us */
            fr->stopped = false;
            atomic_fetch_sub(&lg->followers, 1);
            return;
        }
        r->ev_seq = 0;
        if (st == RUNLOG_RD_REC)
            return;   /* blocked: the sink's drain resumes it */
        if (st == RUNLOG_RD_NONE) {
            fr->rd.pos = atomic_load_explicit(&lg->log.total, memory_order_acquire);
            rs_kick_producer(lg, r->sh);
            return;
        }
        if (st == RUNLOG_RD_END)
            r->sink->end(r);
        else if (st == RUNLOG_RD_GONE)
            follower_error(r, "resume_log_truncated",
                           "this client fell behind the run's log past its bound (resume.max_bytes)");
        else
            follower_error(r, "run_failed", "the run's log ended without its end");
        return;
    }
}

/* Joins r to lg (counted in `followers` by the caller) after seq `after`. */
static void follower_attach(run_t *r, rs_log_t *lg, uint64_t after)
{
    rs_run_t *fr = rs_of(r);
    fr->lg = lg;
    fr->follower = true;
    fr->stopped = fr->pumping = false;
    runlog_reader_init(&fr->rd, after);
    r->ev_id = lg->run_id;
    r->ev_id_len = lg->run_id_len;
    list_push_front(&rs_shard(r->sh)->followers, &fr->link);
    unsigned s = r->sh->id;
    if (s == lg->owner && !lg->local) {
        lg->local = r;   /* the owner's turn end pumps it: no bit, no poll */
        return;
    }
    if (s < RS_MASK_WORDS * 64)
        atomic_fetch_or(&lg->mask[s / 64], 1ull << (s % 64));
    atomic_thread_fence(memory_order_seq_cst);
}

static void follow_start(run_t *r) { pump(r); }
static void follow_resume(run_t *r) { pump(r); }

/* The client went away (or its stream ended): detach. On the owner's shard
 * the producer stops waiting for it and lets go of its connection; a run
 * left with no client before its first event is cancelled (its request's
 * connection is what a retry would resend). */
static void follow_stop(run_t *r)
{
    rs_run_t *fr = rs_of(r);
    rs_log_t *lg = fr->lg;
    if (!lg)
        return;
    follower_unlink(fr);
    fr->lg = NULL;
    r->ev_id = NULL;
    r->ev_seq = 0;
    if (r->sh->id == lg->owner) {
        run_t *p = lg->producer;
        if (lg->local == r)
            lg->local = NULL;
        if (p && p->conn == r->conn) {   /* the run's own request: its connection is going */
            p->conn = NULL;
            p->body = NULL;
            p->body_len = 0;
            p->body_buf = NULL;
        }
        if (p && !atomic_load_explicit(&lg->log.last_seq, memory_order_relaxed) &&
            atomic_load(&lg->followers) == 1)
            lg->cancel = true;   /* at the turn end: not inside the client's abort */
        rs_shard(r->sh)->sweep_now = true;
    }
    if (fr->pumping) {
        fr->stopped = true;   /* pump decrements once it has let go of the log's lock */
        return;
    }
    atomic_fetch_sub(&lg->followers, 1);
}

static const run_kind_ops_t follow_ops = {follow_start, follow_resume, follow_stop};

static void rs_release(run_t *r)
{
    rs_run_t *fr = rs_of(r);
    if (fr && !fr->follower && fr->lg) {
        if (fr->lg->producer == r)
            fr->lg->producer = NULL;
        fr->lg = NULL;
    }
    r->ev_id = NULL;
    r->ev_seq = 0;
}

static void rs_destroy(run_t *r)
{
    free(r->ext[g_rs_ext]);
    r->ext[g_rs_ext] = NULL;
}

static const run_ext_ops_t rs_ext_ops = {.release = rs_release, .destroy = rs_destroy};

static rs_run_t *rs_get(run_t *r)
{
    rs_run_t *fr = rs_of(r);
    if (!fr && (fr = calloc(1, sizeof *fr)))
        r->ext[g_rs_ext] = fr;
    if (fr) {
        fr->r = r;
        list_init(&fr->link);
    }
    return fr;
}

run_t *resume_wrap(run_t *r, const uint8_t *who)
{
    shard_t *sh = r->sh;
    const cfg_agent_t *ag = r->agent;
    size_t idn = r->in.run_id_len;
    if (!idn || idn >= RS_ID_MAX || memchr(r->in.run_id, '\n', idn) || memchr(r->in.run_id, '\r', idn))
        return r;   /* an id no `id:` line (or Last-Event-ID) can carry: the run is not resumable */
    rs_run_t *fr = rs_get(r);
    rs_log_t *lg = fr ? rs_log_new(sh, ag, r->in.run_id, idn) : NULL;
    uint8_t tok[16];
    if (!lg || rand_secret(tok, sizeof tok)) {
        free(lg);
        r->sink->fail(r, 503, "out_of_memory", "out of memory", 0);
        return NULL;
    }
    buf_fmt_hex(lg->token, tok, sizeof tok);   /* (calloc'd: the NUL is there) */
    if ((lg->who_set = who != NULL))
        memcpy(lg->who, who, 16);
    if (rs_log_publish(lg)) {
        r->sink->fail(r, 409, "run_id_in_use", "another caller's resumable run has this runId", 0);
        return NULL;
    }
    run_t *p = run_new(sh, ag, &r->in, &r->holds, &producer_sink, lg);
    rs_run_t *pr = p ? rs_get(p) : NULL;
    if (!pr) {   /* run_new freed the input on failure */
        if (p)
            run_release(p);
        memset(&r->in, 0, sizeof r->in);
        lg->end_ms = sh->now_ms;
        lg->status = 503;
        runlog_close(&lg->log, true);
        rs_log_own(lg, sh);
        atomic_store(&lg->followers, 0);
        r->sink->fail(r, 503, "out_of_memory", "out of memory", 0);
        return NULL;
    }
    memset(&r->in, 0, sizeof r->in);   /* the producer owns it now */
    pr->lg = lg;
    pr->follower = false;
    p->conn = r->conn;
    p->body = r->body;
    p->body_len = r->body_len;
    p->body_buf = r->body_buf;
    r->body = NULL;
    r->body_len = 0;
    r->body_buf = NULL;
    lg->producer = p;
    lg->rsx = rsx_open(sh, &lg->log, lg->run_id, idn, lg->token, who, lg->agent, lg->ttl_ms, remote_seen, lg);
    rs_log_own(lg, sh);
    r->ops = &follow_ops;
    follower_attach(r, lg, 0);
    return p;
}

/* --- the shard module ---------------------------------------------------------------- */

static void poll_followers(shard_t *sh, rs_shard_t *rs)
{
    /* The next node lives in the shard, where follower_unlink moves it past a
     * node it unlinks: one follower's pump may release others (a shared
     * WebSocket connection), as in coalesce_replay's poll. */
    for (list_t *n = rs->followers.next; n != &rs->followers; n = rs->poll_next) {
        rs->poll_next = n->next;
        run_t *r = list_item(n, rs_run_t, link)->r;
        if (!r->blocked)
            pump(r);
    }
    rs->poll_next = NULL;
    (void)sh;
}

/* c has every record of a run still going: nothing for a pump to do. */
static bool caught_up(rs_log_t *lg, const run_t *c)
{
    return c->started && atomic_load_explicit(&lg->log.state, memory_order_relaxed) == RUNLOG_OPEN &&
           rs_of(c)->rd.next > atomic_load_explicit(&lg->log.last_seq, memory_order_relaxed);
}

static void rs_turn_end(shard_t *sh)
{
    rs_shard_t *rs = rs_shard(sh);
    if (!rs)
        return;
    if (atomic_exchange(&rs->sweep_now, false))
        rs_sweep(sh);
    /* Pumping a follower can resume its producer, which logs more: a few
     * rounds in this turn (the logs dirtied in one are the next one's), then
     * the eventfd for another. */
    for (int round = 0; round < 4; round++) {
        list_t now;
        list_move_all(&now, &rs->dirty);
        while (!list_empty(&now)) {
            rs_log_t *lg = list_item(now.next, rs_log_t, dirty_link);
            list_unlink(&lg->dirty_link);
            lg->dirty = false;
            run_t *c = lg->local;
            if (c && !c->blocked && !caught_up(lg, c))
                pump(c);
            wake_followers(lg, sh);
        }
        bool more = !list_empty(&rs->dirty);
        if (atomic_exchange(&rs->pending, false)) {
            atomic_thread_fence(memory_order_seq_cst);
            poll_followers(sh, rs);
            more = true;
        }
        if (!more)
            return;
    }
    if (!list_empty(&rs->dirty) || atomic_load(&rs->pending))
        shard_wake(sh);
}

static void sweep_fired(agate_timer_t *t)
{
    rs_shard_t *rs = (rs_shard_t *)((char *)t - offsetof(rs_shard_t, sweep));
    rs_sweep(rs->sh);
}

static int rs_init(shard_t *sh)
{
    rs_shard_t *rs = calloc(1, sizeof *rs);
    if (!rs)
        return -ENOMEM;
    list_init(&rs->followers);
    list_init(&rs->running);
    list_init(&rs->ended);
    list_init(&rs->tombs);
    list_init(&rs->dirty);
    rs->sweep.cb = sweep_fired;
    rs->sh = sh;
    sh->mod[g_rs_mod] = rs;
    return 0;
}

/* The loop ends: runs still producing are cancelled (their readers get a
 * RUN_ERROR end); every log waits for resume_shutdown (rs_free). */
static void rs_stop(shard_t *sh)
{
    rs_shard_t *rs = rs_shard(sh);
    if (!rs)
        return;
    list_each_safe(&rs->running, n, tmp)
        rs_cancel_producer(list_item(n, rs_log_t, link), sh, "gateway_shutdown",
                           "the gateway stopped while the run was going");
    timer_cancel(&sh->timers, &rs->sweep);
}

static void rs_free(shard_t *sh)
{
    rs_shard_t *rs = rs_shard(sh);
    if (!rs)
        return;
    rs_logs_orphan(rs);
    buf_free(&rs->tmp);
    free(rs);
    sh->mod[g_rs_mod] = NULL;
}

static const shard_mod_ops_t rs_shard_ops = {
    .name = "resume", .init = rs_init, .turn_end = rs_turn_end, .stop = rs_stop, .free = rs_free,
};

/* --- the resume: section ------------------------------------------------------------- */

static const struct cfg_setting resume_rows[] = {
    { "resume", "max_bytes", "AGATE_RESUME_MAX_BYTES", "256MiB", CFG_K_SIZE, 65536, UINT32_MAX,
      offsetof(resume_conf_t, max_bytes) },
    RSX_CONF_ROWS
};
static const char *const resume_keys[] = { "resume", NULL };

/* rank 45: after ws, before the agents */
cfg_section_t resume_conf_section = {
    .name = "resume", .keys = resume_keys, .rows = resume_rows, .n_rows = sizeof resume_rows / sizeof *resume_rows, .size = sizeof(resume_conf_t),
    .rank = 45,
};

void resume_register(void)
{
    cfg_section_register(&resume_conf_section);
    g_rs_ext = run_ext_register(&rs_ext_ops);
    g_rs_mod = shard_mod_register(&rs_shard_ops);
    metrics_register(rs_log_metrics);
}

/* --- for resume_http.c --------------------------------------------------------------- */

void rs_follow(run_t *r, rs_log_t *lg, uint64_t after)
{
    rs_run_t *fr = rs_get(r);
    if (!fr) {
        rs_unhold(lg);
        r->sink->fail(r, 503, "out_of_memory", "out of memory", 0);
        return;
    }
    r->ops = &follow_ops;
    follower_attach(r, lg, after);
    pump(r);
}

void rs_cancel(rs_log_t *lg)
{
    atomic_store(&lg->cancel, true);
    shard_t *t = &g_shards[lg->owner];
    rs_shard_t *rs = rs_shard(t);
    if (rs) {
        atomic_store(&rs->sweep_now, true);
        shard_wake(t);
    }
}

void resume_cancel_followed(run_t *r)
{
    rs_run_t *fr = rs_of(r);
    if (fr && fr->follower && fr->lg)
        rs_cancel(fr->lg);
}

const char *resume_token_of(const run_t *r)
{
    const rs_run_t *fr = rs_of(r);
    return fr && fr->follower && fr->lg ? fr->lg->token : NULL;
}
