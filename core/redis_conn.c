/* redis_conn: the connection of one shard to Redis (core/redis.c has the API
 * and the shard module; see there for the states and the ownership rules).
 *
 * States: OFF (not configured) -> CONNECTING -> HANDSHAKE (AUTH, SELECT,
 * SCRIPT LOAD and PING sent, replies awaited) -> UP; any failure -> CLOSING
 * (waiting for the kernel to finish every operation naming the fd) -> WAIT
 * (the jittered backoff) -> CONNECTING. Only UP accepts commands.
 *
 * Invariants: the fd is closed only when no operation names it (inflight ==
 * 0), so a completion always belongs to the current connection; every entry
 * of the FIFO is completed exactly once (a reply, or an error when the
 * connection goes), and never inside redis_cmd. */
#include "core/redis_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "core/shard.h"

static uint8_t g_op_connect, g_op_send, g_op_recv;

/* ---- logging: one line per transition ---- */

static void log_transition(redis_shard_t *rs, bool up, const char *why, const char *detail, size_t dlen)
{
    shard_t *sh = rs->sh;
    if (rs->logged_up == (int8_t)up)
        return;
    rs->logged_up = (int8_t)up;
    cfg_log_level_t level = up ? CFG_LOG_INFO : CFG_LOG_WARN;
    if (!sh->log || level < sh->cfg->log_level)
        return;
    buf_t *b = &sh->scratch;
    size_t mark = b->len;
    const redis_conf_t *rc = redis_conf(sh->cfg);
    log_begin(b, up ? "info" : "warn", up ? "redis up" : "redis down");
    buf_append_lit(b, ",\"shard\":");
    buf_append_u64(b, sh->id);
    buf_append_lit(b, ",\"address\":");
    json_put_str(b, rc->address, strlen(rc->address));
    if (!up) {
        buf_append_lit(b, ",\"reason\":");
        json_put_str(b, why, strlen(why));
        if (dlen) {
            buf_append_lit(b, ",\"detail\":");
            json_put_str(b, detail, dlen > 200 ? 200 : dlen);
        }
    }
    log_end(b);
    if (sh->log)
        log_put(sh->log, b->data + mark, b->len - mark);
    b->len = mark;
}

/* ---- completing commands ---- */

void redis_conn_set_up(redis_shard_t *rs, bool up)
{
    metrics_gauge_add(&rs->m.up, (up ? 1 : 0) - metrics_rdi(&rs->m.up));
}

void redis_conn_count(redis_shard_t *rs, enum redis_result r) { metrics_add(&rs->m.commands[r], 1); }

static void complete_err(redis_shard_t *rs, const rp_entry_t *e, int err)
{
    redis_conn_count(rs, err == -ETIMEDOUT ? RR_TIMEOUT : RR_FAILED);
    if (e->kind == RP_USER || e->kind == RP_EVALSHA)
        rs->n_user--;
    metrics_gauge_add(&rs->m.pending, -1);
    if (e->fn)
        e->fn(rs->sh, e->ctx, e->tag, NULL, err);
}

/* Every queued command gets err (those past their deadline -ETIMEDOUT). The
 * state is no longer UP first, so a callback's new command is refused. */
static void fail_all(redis_shard_t *rs, int err)
{
    uint64_t now = rs->sh->now_ms;
    while (rp_fifo_len(&rs->fifo)) {
        rp_entry_t e = rp_fifo_pop(&rs->fifo);
        complete_err(rs, &e, err == -ECONNRESET && e.deadline_ms <= now ? -ETIMEDOUT : err);
    }
    rs->next.len = 0;
}

/* ---- the connection ---- */


static uint32_t backoff_next(redis_shard_t *rs)
{
    const redis_conf_t *rc = redis_conf(rs->sh->cfg);
    if (rs->backoff_ms < rc->reconnect_min_ms)
        rs->backoff_ms = rc->reconnect_min_ms;
    /* Full jitter over the upper half: shards (and pods) that lost Redis
     * together do not all come back in the same millisecond. */
    uint32_t d = rs->backoff_ms / 2 + (uint32_t)(rand_next(&rs->sh->rng) % (rs->backoff_ms / 2 + 1));
    rs->backoff_ms = rs->backoff_ms > rc->reconnect_max_ms / 2 ? rc->reconnect_max_ms : rs->backoff_ms * 2;
    return d ? d : 1;
}

static void close_fd(redis_shard_t *rs)
{
    eng_close(&rs->sh->eng, rs->fd);
    rs->fd = -1;
    rs->recv_armed = rs->send_inflight = rs->connect_armed = false;
    rs->out.len = rs->next.len = rs->sent = 0;
    if (rs->state == RC_CLOSING) {
        rs->state = rs->stopping ? RC_OFF : RC_WAIT;
        if (rs->retry_due && !rs->stopping)
            redis_conn_connect(rs);
    }
}

/* The connection failed (why, for the log; detail: Redis's words): every
 * command gets err, the fd is closed once the kernel lets go of it, and a new
 * connection is tried after the backoff (none when stopping). */
void redis_conn_down(redis_shard_t *rs, const char *why, const char *detail, size_t dlen, int err)
{
    if (rs->state == RC_OFF || rs->state == RC_WAIT || rs->state == RC_CLOSING)
        return;
    bool was_up = rs->state == RC_UP, was_handshake = rs->state == RC_HANDSHAKE;
    rs->state = RC_CLOSING;
    if (was_up)
        redis_conn_set_up(rs, false);
    else if (was_handshake)
        metrics_add(&rs->m.connects_failed, 1);
    if (!rs->stopping)
        log_transition(rs, false, why, detail, dlen);
    timer_cancel(&rs->sh->timers, &rs->t_cmd);
    timer_cancel(&rs->sh->timers, &rs->t_flush);
    rs->retry_due = false;
    if (!rs->stopping)
        timer_arm(&rs->sh->timers, &rs->t_tick, rs->sh->now_ms + backoff_next(rs));
    else
        timer_cancel(&rs->sh->timers, &rs->t_tick);
    rs->scripts_reloading = false;
    rs->handshake_left = rs->reload_left = 0;
    fail_all(rs, err);
    if (!rs->inflight) {
        close_fd(rs);
        return;
    }
    /* Make the kernel finish with the fd now: a receive ends with EOF, a
     * send with an error, a connect is cancelled. */
    if (rs->connect_armed)
        eng_cancel(&rs->sh->eng, rs->fd, eng_ud(g_op_connect, 0, 0));
    shutdown(rs->fd, SHUT_RDWR);
}

static void arm_recv(redis_shard_t *rs)
{
    eng_recv(&rs->sh->eng, rs->fd, &rs->rbufs, eng_ud(g_op_recv, 0, 0));
    rs->recv_armed = true;
    rs->inflight++;
}

static void arm_send(redis_shard_t *rs)
{
    eng_send(&rs->sh->eng, rs->fd, rs->out.data + rs->sent, rs->out.len - rs->sent, eng_ud(g_op_send, 0, 0));
    rs->send_inflight = true;
    rs->inflight++;
}

/* Turn's end: what was queued this turn leaves in one send. */
void redis_conn_flush(redis_shard_t *rs)
{
    if (rs->send_inflight || !rs->next.len || (rs->state != RC_UP && rs->state != RC_HANDSHAKE))
        return;
    buf_t t = rs->out;
    rs->out = rs->next;
    rs->next = t;
    rs->next.len = 0;
    rs->sent = 0;
    metrics_add(&rs->m.round_trips, 1);
    arm_send(rs);
}

static void want_flush(redis_shard_t *rs)
{
    if (!timer_armed(&rs->t_flush))
        timer_arm(&rs->sh->timers, &rs->t_flush, rs->sh->now_ms);
}

/* Formats a command into `next` and queues its entry; the handle, or 0. */
uint64_t redis_conn_enqueue(redis_shard_t *rs, const rp_entry_t *e, int argc, const char **argv,
                            const size_t *argvlen)
{
    if (rp_fifo_full(&rs->fifo) || rp_format(&rs->next, argc, argv, argvlen))
        return 0;
    uint64_t h = rp_fifo_push(&rs->fifo, e);
    metrics_gauge_add(&rs->m.pending, 1);
    if (!timer_armed(&rs->t_cmd) || rs->t_cmd.at > e->deadline_ms)
        timer_arm(&rs->sh->timers, &rs->t_cmd, e->deadline_ms);
    want_flush(rs);
    return h;
}

static uint64_t enqueue_internal(redis_shard_t *rs, uint8_t kind, uint32_t timeout_ms, int argc, const char **argv,
                                 const size_t *argvlen)
{
    rp_entry_t e = {.kind = kind, .issued_us = rs->sh->now_us, .deadline_ms = rs->sh->now_ms + timeout_ms};
    return redis_conn_enqueue(rs, &e, argc, argv, argvlen);
}

static void script_load_all(redis_shard_t *rs, uint32_t timeout_ms)
{
    for (unsigned i = 0; i < redis_script_count(); i++) {
        const char *argv[] = {"SCRIPT", "LOAD", redis_script_lua(i)};
        size_t lens[] = {6, 4, strlen(redis_script_lua(i))};
        if (!enqueue_internal(rs, RP_SCRIPT, timeout_ms, 3, argv, lens))
            continue;
        if (rs->state == RC_HANDSHAKE)
            rs->handshake_left++;
        else
            rs->reload_left++;
    }
}

static void become_up(redis_shard_t *rs)
{
    rs->state = RC_UP;
    rs->backoff_ms = 0;
    redis_conn_set_up(rs, true);
    metrics_add(&rs->m.connects_ok, 1);
    log_transition(rs, true, NULL, NULL, 0);
    timer_arm(&rs->sh->timers, &rs->t_tick, rs->sh->now_ms + REDIS_PING_MS);
}

/* Connected: AUTH, SELECT and the scripts go out in one send; UP once every
 * one of them is answered. */
static void handshake(redis_shard_t *rs)
{
    const redis_conf_t *rc = redis_conf(rs->sh->cfg);
    uint32_t t = rc->connect_timeout_ms;
    rs->state = RC_HANDSHAKE;
    rs->handshake_left = 0;
    if (rp_reader_reset(&rs->rd)) {
        redis_conn_down(rs, "out of memory", NULL, 0, -ECONNRESET);
        return;
    }
    if (rc->secret[0]) {
        /* AUTH [username] password: the ACL form only with a username. */
        const char *argv[3] = {"AUTH"};
        size_t lens[3] = {4};
        int argc = 1;
        if (rc->username[0]) {
            argv[argc] = rc->username;
            lens[argc++] = strlen(rc->username);
        }
        argv[argc] = rc->secret;
        lens[argc++] = strlen(rc->secret);
        rs->handshake_left += enqueue_internal(rs, RP_AUTH, t, argc, argv, lens) != 0;
    }
    if (rc->db) {
        char db[12];
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, (size_t)snprintf(db, sizeof db, "%u", rc->db)};
        rs->handshake_left += enqueue_internal(rs, RP_SELECT, t, 2, argv, lens) != 0;
    }
    script_load_all(rs, t);
    /* Last, and always: up means Redis has answered, not only that the kernel
     * accepted the connection (a paused or wedged server accepts too). */
    rs->handshake_left += enqueue_internal(rs, RP_PING, t, 1, (const char *[]){"PING"}, (size_t[]){4}) != 0;
    arm_recv(rs);
    if (!rs->handshake_left)
        redis_conn_down(rs, "out of memory", NULL, 0, -ECONNRESET);
}

void redis_conn_connect(redis_shard_t *rs)
{
    shard_t *sh = rs->sh;
    const redis_conf_t *rc = redis_conf(sh->cfg);
    rs->retry_due = false;
    if (!rc->alen || rs->stopping) {
        rs->state = RC_OFF;
        return;
    }
    int fd = socket(rc->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rs->state = RC_WAIT;
        metrics_add(&rs->m.connects_failed, 1);
        timer_arm(&sh->timers, &rs->t_tick, sh->now_ms + backoff_next(rs));
        return;
    }
    if (rc->addr.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    rs->fd = fd;
    rs->state = RC_CONNECTING;
    rs->addr = rc->addr;
    rs->connect_ts.tv_sec = rc->connect_timeout_ms / 1000;
    rs->connect_ts.tv_nsec = (long long)(rc->connect_timeout_ms % 1000) * 1000000;
    rs->connect_armed = true;
    rs->inflight++;
    eng_connect(&sh->eng, fd, (const struct sockaddr *)&rs->addr, rc->alen, &rs->connect_ts,
                eng_ud(g_op_connect, 0, 0));
}

/* ---- replies ---- */

static bool is_noscript(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ERROR && rep->len >= 8 && !memcmp(rep->str, "NOSCRIPT", 8);
}

static int on_internal(redis_shard_t *rs, const rp_entry_t *e, const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        static const char *const what[] = {[RP_AUTH] = "AUTH refused", [RP_SELECT] = "SELECT refused",
                                           [RP_SCRIPT] = "SCRIPT LOAD refused", [RP_PING] = "PING refused"};
        redis_conn_down(rs, what[e->kind], rep->str, rep->len, -ECONNRESET);
        return 1;
    }
    if (e->kind == RP_SCRIPT && rs->state == RC_UP && rs->reload_left && --rs->reload_left == 0)
        rs->scripts_reloading = false;   /* reloaded: a later NOSCRIPT may reload again */
    if (rs->state == RC_HANDSHAKE && --rs->handshake_left == 0)
        become_up(rs);
    return 0;
}

static int on_reply(void *arg, const rp_entry_t *e, const redisReply *rep)
{
    redis_shard_t *rs = arg;
    metrics_observe_us(&rs->m.latency, rs->sh->now_us - e->issued_us);
    metrics_gauge_add(&rs->m.pending, -1);
    redis_conn_count(rs, rep->type == REDIS_REPLY_ERROR ? RR_ERROR_REPLY : RR_OK);
    if (e->kind != RP_USER && e->kind != RP_EVALSHA)
        return on_internal(rs, e, rep);
    rs->n_user--;
    if (e->kind == RP_EVALSHA && is_noscript(rep) && !rs->scripts_reloading) {
        /* Redis lost its scripts (a restart without persistence, SCRIPT FLUSH):
         * load them again; this caller falls back on the error it gets. */
        rs->scripts_reloading = true;
        script_load_all(rs, redis_conf(rs->sh->cfg)->command_timeout_ms);
    }
    if (e->fn)
        e->fn(rs->sh, e->ctx, e->tag, rep, 0);
    return rs->state == RC_UP ? 0 : 1;
}

/* ---- timers ---- */

/* The timer runs late rather than moving with every reply: when it fires it
 * looks for the earliest deadline still queued (deadlines are in order but
 * for a reload's new command_timeout and the handshake's connect_timeout). */
static void on_cmd_deadline(agate_timer_t *t)
{
    redis_shard_t *rs = (redis_shard_t *)((char *)t - offsetof(redis_shard_t, t_cmd));
    const rp_entry_t *first = NULL;
    for (uint64_t s = rs->fifo.head; s != rs->fifo.tail; s++) {
        const rp_entry_t *e = &rs->fifo.v[s & rs->fifo.mask];
        if (!first || e->deadline_ms < first->deadline_ms)
            first = e;
    }
    if (!first)
        return;
    if (first->deadline_ms > rs->sh->now_ms) {
        timer_arm(&rs->sh->timers, &rs->t_cmd, first->deadline_ms);
        return;
    }
    /* No reply in time: a later one would be matched to the wrong command,
     * so the connection goes (the expired commands get -ETIMEDOUT). */
    redis_conn_down(rs, first->kind == RP_PING ? "PING timed out" : "command timed out", NULL, 0, -ECONNRESET);
}

static void on_tick(agate_timer_t *t)
{
    redis_shard_t *rs = (redis_shard_t *)((char *)t - offsetof(redis_shard_t, t_tick));
    switch (rs->state) {
    case RC_WAIT:
        redis_conn_connect(rs);
        break;
    case RC_CLOSING:
        rs->retry_due = true;
        break;
    case RC_UP:
        /* Idle: a PING, so a peer that died without a FIN is noticed. */
        if (!rp_fifo_len(&rs->fifo))
            enqueue_internal(rs, RP_PING, redis_conf(rs->sh->cfg)->command_timeout_ms, 1, (const char *[]){"PING"},
                             (size_t[]){4});
        timer_arm(&rs->sh->timers, &rs->t_tick, rs->sh->now_ms + REDIS_PING_MS);
        break;
    default:
        break;
    }
}

static void on_flush_timer(agate_timer_t *t) { (void)t; /* turn_end flushes; this only woke the loop */ }

/* ---- completions ---- */

static void *redis_lookup(shard_t *sh, uint64_t ud) { return redis_shard_of(sh); }

static void after_cqe(redis_shard_t *rs)
{
    if (rs->state == RC_CLOSING && !rs->inflight)
        close_fd(rs);
}

static void on_connect_cqe(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    redis_shard_t *rs = obj;
    rs->inflight--;
    rs->connect_armed = false;
    if (rs->state == RC_CONNECTING) {
        if (cqe->res < 0) {
            metrics_add(&rs->m.connects_failed, 1);
            redis_conn_down(rs, cqe->res == -ECANCELED ? "connect timed out" : strerror(-cqe->res), NULL, 0, -ECONNRESET);
        } else {
            handshake(rs);
        }
    }
    after_cqe(rs);
}

static void on_send_cqe(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    redis_shard_t *rs = obj;
    rs->inflight--;
    rs->send_inflight = false;
    if (rs->state == RC_UP || rs->state == RC_HANDSHAKE) {
        if (cqe->res < 0) {
            redis_conn_down(rs, "send failed", strerror(-cqe->res), strlen(strerror(-cqe->res)), -ECONNRESET);
        } else {
            rs->sent += (size_t)cqe->res;
            if (rs->sent < rs->out.len) {
                arm_send(rs);
            } else {
                rs->out.len = rs->sent = 0;
                if (rs->next.len)
                    want_flush(rs);
            }
        }
    }
    after_cqe(rs);
}

static void on_data(redis_shard_t *rs, const char *p, size_t n)
{
    int rc = rp_feed(&rs->rd, &rs->fifo, p, n, on_reply, rs);
    if (rc == -EPROTO) {
        metrics_add(&rs->m.protocol_errors, 1);
        const char *e = rs->rd.over ? "reply over redis.max_reply_bytes" : rs->rd.r->err ? rs->rd.r->errstr
                                                                                          : "reply nobody asked for";
        redis_conn_down(rs, "protocol error", e, strlen(e), -ECONNRESET);
    }
}

static void on_recv_cqe(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    redis_shard_t *rs = obj;
    rs->inflight--;
    rs->recv_armed = false;
    int res = cqe->res;
    if (res > 0) {
        uint16_t bid = eng_cqe_bid(cqe);
        if (rs->state == RC_UP || rs->state == RC_HANDSHAKE)
            on_data(rs, eng_bufs_addr(&rs->rbufs, bid), (size_t)res);
        eng_bufs_recycle(&rs->rbufs, bid);
    } else if (res == 0) {
        redis_conn_down(rs, "closed by Redis", NULL, 0, -ECONNRESET);
    } else if (res != -ENOBUFS) {
        redis_conn_down(rs, "receive failed", strerror(-res), strlen(strerror(-res)), -ECONNRESET);
    }
    if ((rs->state == RC_UP || rs->state == RC_HANDSHAKE) && !rs->recv_armed)
        arm_recv(rs);
    after_cqe(rs);
}

static void redis_stale(shard_t *sh, eng_cqe_t *cqe)
{
    if (redis_shard_of(sh) && eng_cqe_has_buf(cqe))
        eng_bufs_recycle(&redis_shard_of(sh)->rbufs, eng_cqe_bid(cqe));
}

static const shard_op_t connect_op = {redis_lookup, on_connect_cqe, NULL};
static const shard_op_t send_op = {redis_lookup, on_send_cqe, NULL};
static const shard_op_t recv_op = {redis_lookup, on_recv_cqe, redis_stale};


void redis_conn_timers_init(redis_shard_t *rs)
{
    rs->t_cmd.cb = on_cmd_deadline;
    rs->t_tick.cb = on_tick;
    rs->t_flush.cb = on_flush_timer;
}

void redis_conn_register(void)
{
    g_op_connect = shard_op_register(&connect_op);
    g_op_send = shard_op_register(&send_op);
    g_op_recv = shard_op_register(&recv_op);
}

bool redis_conn_dispatch(shard_t *sh, eng_cqe_t *cqe)
{
    uint8_t op = eng_ud_op(eng_cqe_ud(cqe));
    const shard_op_t *o = op == g_op_connect ? &connect_op : op == g_op_send ? &send_op : op == g_op_recv ? &recv_op : NULL;
    if (!o)
        return false;
    void *obj = o->lookup(sh, eng_cqe_ud(cqe));
    if (obj)
        o->complete(sh, obj, cqe);
    else if (o->stale)
        o->stale(sh, cqe);
    return true;
}
