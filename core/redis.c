/* redis: one connection per shard to the configured Redis primary, on the
 * shard's engine (see redis.h for the contract).
 *
 * States: OFF (not configured) -> CONNECTING -> HANDSHAKE (AUTH, SELECT,
 * SCRIPT LOAD sent, replies awaited) -> UP; any failure -> CLOSING (waiting
 * for the kernel to finish every operation naming the fd) -> WAIT (the
 * jittered backoff) -> CONNECTING. Only UP accepts commands.
 *
 * Ownership: the shard module owns the state, its fd, both output buffers and
 * the receive buffers (a buffer group of its own, so a burst of clients never
 * leaves Redis's reply waiting for a buffer). `out` belongs to the kernel while
 * a send is in flight; commands issued meanwhile go to `next`, swapped in at
 * the turn's end: one send per turn carries every command of the turn.
 *
 * Invariants: the fd is closed only when no operation names it (inflight ==
 * 0), so a completion always belongs to the current connection; every entry
 * of the FIFO is completed exactly once (a reply, or an error when the
 * connection goes), and never inside redis_cmd. */
#include "core/redis_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "core/shard.h"

#define REDIS_RECV_BUFS     4
#define REDIS_RECV_BUF_SIZE (16u << 10)
#define REDIS_RECV_BGID     3
#define REDIS_PING_MS       1000   /* an idle connection is checked this often */
#define REDIS_INTERNAL_MAX  64     /* FIFO room beyond max_pending: AUTH, SELECT, PING */
#define REDIS_SCRIPTS_MAX   32

typedef enum rc_state { RC_OFF, RC_WAIT, RC_CONNECTING, RC_HANDSHAKE, RC_UP, RC_CLOSING } rc_state_t;

typedef struct redis_shard {
    shard_t    *sh;
    rc_state_t  state;
    int         fd;                 /* owned; -1 when none */
    uint32_t    inflight;           /* operations naming fd */
    bool        connect_armed, recv_armed, send_inflight;
    bool        retry_due;          /* the backoff passed while CLOSING */
    bool        stopping;
    bool        scripts_reloading;  /* a NOSCRIPT reply queued a SCRIPT LOAD of every script */
    uint32_t    reload_left;        /* ... of which this many are not answered yet */
    int8_t      logged_up;          /* -1 unknown, 0 down, 1 up: one log line per transition */
    buf_t       out, next;          /* commands: in flight / queued since (see the file comment) */
    size_t      sent;
    rp_fifo_t   fifo;
    rp_reader_t rd;
    uint32_t    n_user;             /* entries in fifo that callers issued */
    uint32_t    handshake_left;
    uint32_t    backoff_ms;
    agate_timer_t t_cmd;            /* the oldest command's deadline (lazily moved on) */
    agate_timer_t t_tick;           /* UP: the idle PING; WAIT/CLOSING: the reconnect */
    agate_timer_t t_flush;          /* keeps the loop from sleeping on commands issued after turn_end */
    struct __kernel_timespec connect_ts;
    struct sockaddr_storage  addr;  /* the connect's target; read by the kernel at submit */
    eng_bufs_t  rbufs;
    bool        bufs_ok;
    redis_metrics_t m;
} redis_shard_t;

static unsigned g_redis_mod;
static uint8_t  g_op_connect, g_op_send, g_op_recv;

static inline redis_shard_t *RS(const shard_t *sh) { return (redis_shard_t *)sh->mod[g_redis_mod]; }

const redis_metrics_t *redis_shard_metrics(const shard_t *sh) { return RS(sh) ? &RS(sh)->m : NULL; }

/* ---- scripts (registered by the main thread before the shards start) ---- */

static struct { char *lua; char sha[41]; } g_scripts[REDIS_SCRIPTS_MAX];
static unsigned g_nscripts;

unsigned redis_script_count(void) { return g_nscripts; }
const char *redis_script_lua(unsigned i) { return g_scripts[i].lua; }
const char *redis_script_sha(unsigned i) { return g_scripts[i].sha; }

unsigned redis_script_register(const char *lua)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (g_nscripts == REDIS_SCRIPTS_MAX || !(g_scripts[g_nscripts].lua = strdup(lua)) ||
        EVP_Digest(lua, strlen(lua), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
        fprintf(stderr, "agate: redis: cannot register script %u\n", g_nscripts);
        abort();   /* a start-up bug, not a runtime condition */
    }
    buf_fmt_hex(g_scripts[g_nscripts].sha, md, 20);
    g_scripts[g_nscripts].sha[40] = '\0';
    return g_nscripts++;
}

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

static void set_up(redis_shard_t *rs, bool up)
{
    metrics_gauge_add(&rs->m.up, (up ? 1 : 0) - metrics_rdi(&rs->m.up));
}

static void count_result(redis_shard_t *rs, enum redis_result r) { metrics_add(&rs->m.commands[r], 1); }

static void complete_err(redis_shard_t *rs, const rp_entry_t *e, int err)
{
    count_result(rs, err == -ETIMEDOUT ? RR_TIMEOUT : RR_FAILED);
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

static void connect_now(redis_shard_t *rs);

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
            connect_now(rs);
    }
}

/* The connection failed (why, for the log; detail: Redis's words): every
 * command gets err, the fd is closed once the kernel lets go of it, and a new
 * connection is tried after the backoff (none when stopping). */
static void conn_down(redis_shard_t *rs, const char *why, const char *detail, size_t dlen, int err)
{
    if (rs->state == RC_OFF || rs->state == RC_WAIT || rs->state == RC_CLOSING)
        return;
    bool was_up = rs->state == RC_UP, was_handshake = rs->state == RC_HANDSHAKE;
    rs->state = RC_CLOSING;
    if (was_up)
        set_up(rs, false);
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
static void flush(redis_shard_t *rs)
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
static uint64_t enqueue(redis_shard_t *rs, const rp_entry_t *e, int argc, const char **argv, const size_t *argvlen)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0 || rp_fifo_full(&rs->fifo) || buf_append(&rs->next, cmd, (size_t)len)) {
        free(cmd);
        return 0;
    }
    free(cmd);
    uint64_t h = rp_fifo_push(&rs->fifo, e);
    metrics_gauge_add(&rs->m.pending, 1);
    if (!timer_armed(&rs->t_cmd))
        timer_arm(&rs->sh->timers, &rs->t_cmd, e->deadline_ms);
    want_flush(rs);
    return h;
}

static uint64_t enqueue_internal(redis_shard_t *rs, uint8_t kind, uint32_t timeout_ms, int argc, const char **argv,
                                 const size_t *argvlen)
{
    rp_entry_t e = {.kind = kind, .issued_us = rs->sh->now_us, .deadline_ms = rs->sh->now_ms + timeout_ms};
    return enqueue(rs, &e, argc, argv, argvlen);
}

static void script_load_all(redis_shard_t *rs, uint32_t timeout_ms)
{
    for (unsigned i = 0; i < g_nscripts; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", g_scripts[i].lua};
        size_t lens[] = {6, 4, strlen(g_scripts[i].lua)};
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
    set_up(rs, true);
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
        conn_down(rs, "out of memory", NULL, 0, -ECONNRESET);
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
        conn_down(rs, "out of memory", NULL, 0, -ECONNRESET);
}

static void connect_now(redis_shard_t *rs)
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
        conn_down(rs, what[e->kind], rep->str, rep->len, -ECONNRESET);
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
    count_result(rs, rep->type == REDIS_REPLY_ERROR ? RR_ERROR_REPLY : RR_OK);
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

static void on_cmd_deadline(agate_timer_t *t)
{
    redis_shard_t *rs = (redis_shard_t *)((char *)t - offsetof(redis_shard_t, t_cmd));
    rp_entry_t *head = rp_fifo_head(&rs->fifo);
    if (!head)
        return;
    if (head->deadline_ms > rs->sh->now_ms) {
        timer_arm(&rs->sh->timers, &rs->t_cmd, head->deadline_ms);   /* the head moved on since */
        return;
    }
    /* No reply in time: a later one would be matched to the wrong command,
     * so the connection goes (the expired commands get -ETIMEDOUT). */
    conn_down(rs, head->kind == RP_PING ? "PING timed out" : "command timed out", NULL, 0, -ECONNRESET);
}

static void on_tick(agate_timer_t *t)
{
    redis_shard_t *rs = (redis_shard_t *)((char *)t - offsetof(redis_shard_t, t_tick));
    switch (rs->state) {
    case RC_WAIT:
        connect_now(rs);
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

static void *redis_lookup(shard_t *sh, uint64_t ud) { return RS(sh); }

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
            conn_down(rs, cqe->res == -ECANCELED ? "connect timed out" : strerror(-cqe->res), NULL, 0, -ECONNRESET);
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
            conn_down(rs, "send failed", strerror(-cqe->res), strlen(strerror(-cqe->res)), -ECONNRESET);
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
        conn_down(rs, "protocol error", e, strlen(e), -ECONNRESET);
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
        conn_down(rs, "closed by Redis", NULL, 0, -ECONNRESET);
    } else if (res != -ENOBUFS) {
        conn_down(rs, "receive failed", strerror(-res), strlen(strerror(-res)), -ECONNRESET);
    }
    if ((rs->state == RC_UP || rs->state == RC_HANDSHAKE) && !rs->recv_armed)
        arm_recv(rs);
    after_cqe(rs);
}

static void redis_stale(shard_t *sh, eng_cqe_t *cqe)
{
    if (RS(sh) && eng_cqe_has_buf(cqe))
        eng_bufs_recycle(&RS(sh)->rbufs, eng_cqe_bid(cqe));
}

static const shard_op_t connect_op = {redis_lookup, on_connect_cqe, NULL};
static const shard_op_t send_op = {redis_lookup, on_send_cqe, NULL};
static const shard_op_t recv_op = {redis_lookup, on_recv_cqe, redis_stale};

/* ---- the API ---- */

bool redis_up(const shard_t *sh)
{
    const redis_shard_t *rs = RS(sh);
    return rs && rs->state == RC_UP && rs->n_user < redis_conf(sh->cfg)->max_pending;
}

static uint64_t issue(shard_t *sh, uint8_t kind, redis_reply_fn fn, void *ctx, uint64_t tag, int argc,
                      const char **argv, const size_t *argvlen)
{
    redis_shard_t *rs = RS(sh);
    if (!rs)
        return 0;
    const redis_conf_t *rc = redis_conf(sh->cfg);
    if (rs->state != RC_UP || rs->n_user >= rc->max_pending) {
        count_result(rs, RR_REFUSED);
        return 0;
    }
    rp_entry_t e = {.fn = fn, .ctx = ctx, .tag = tag, .kind = kind, .issued_us = sh->now_us,
                    .deadline_ms = sh->now_ms + rc->command_timeout_ms};
    uint64_t h = enqueue(rs, &e, argc, argv, argvlen);
    if (!h) {
        count_result(rs, RR_REFUSED);
        return 0;
    }
    rs->n_user++;
    return h;
}

uint64_t redis_cmd(shard_t *sh, redis_reply_fn fn, void *ctx, uint64_t tag, int argc, const char **argv,
                   const size_t *argvlen)
{
    return issue(sh, RP_USER, fn, ctx, tag, argc, argv, argvlen);
}

uint64_t redis_evalsha(shard_t *sh, unsigned script, redis_reply_fn fn, void *ctx, uint64_t tag, int nkeys,
                       int argc, const char **argv, const size_t *argvlen)
{
    if (script >= g_nscripts || argc < 0 || nkeys < 0 || nkeys > argc || argc > 1024)
        return 0;
    const char *av[argc + 3];
    size_t al[argc + 3];
    char nk[12];
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = g_scripts[script].sha;
    al[1] = 40;
    al[2] = (size_t)snprintf(nk, sizeof nk, "%d", nkeys);
    av[2] = nk;
    for (int i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        al[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    return issue(sh, RP_EVALSHA, fn, ctx, tag, argc + 3, av, al);
}

void redis_cancel(shard_t *sh, uint64_t handle)
{
    redis_shard_t *rs = RS(sh);
    rp_entry_t *e = rs ? rp_fifo_find(&rs->fifo, handle) : NULL;
    if (e)
        e->fn = NULL;
}

/* ---- the shard module ---- */

static int redis_open(shard_t *sh, char *err, size_t errlen)
{
    redis_shard_t *rs = calloc(1, sizeof *rs);
    if (!rs) {
        snprintf(err, errlen, "redis: out of memory");
        return -ENOMEM;
    }
    rs->sh = sh;
    rs->fd = -1;
    rs->logged_up = -1;
    rs->t_cmd.cb = on_cmd_deadline;
    rs->t_tick.cb = on_tick;
    rs->t_flush.cb = on_flush_timer;
    sh->mod[g_redis_mod] = rs;   /* from now on a scrape on any shard reads its metrics */
    return 0;
}

static void redis_close(shard_t *sh)
{
    free(RS(sh));
    sh->mod[g_redis_mod] = NULL;
}

/* Shard thread: the buffers, the queue and the reader, once Redis is
 * configured (at start, or by the first reload that sets redis.address). */
static int redis_setup(redis_shard_t *rs)
{
    shard_t *sh = rs->sh;
    const redis_conf_t *rc = redis_conf(sh->cfg);
    if (rs->bufs_ok || !rc->address[0])
        return 0;
    int r = rp_fifo_init(&rs->fifo, rc->max_pending + REDIS_INTERNAL_MAX + g_nscripts);
    if (r)
        return r;
    if ((r = rp_reader_init(&rs->rd, rc->max_reply_bytes)))
        goto fail_fifo;
    if ((r = eng_bufs_init(&sh->eng, &rs->rbufs, REDIS_RECV_BGID, REDIS_RECV_BUFS, REDIS_RECV_BUF_SIZE)))
        goto fail_reader;
    rs->bufs_ok = true;
    return 0;
fail_reader:
    rp_reader_free(&rs->rd);
fail_fifo:
    rp_fifo_free(&rs->fifo);
    return r;
}

static int redis_init(shard_t *sh) { return RS(sh) ? redis_setup(RS(sh)) : 0; }

static void redis_start(shard_t *sh)
{
    redis_shard_t *rs = RS(sh);
    if (rs && rs->bufs_ok)
        connect_now(rs);
}

static void redis_turn_end(shard_t *sh)
{
    redis_shard_t *rs = RS(sh);
    if (rs && rs->next.len) {
        timer_cancel(&sh->timers, &rs->t_flush);
        flush(rs);
    }
}

/* A reload that changed where or as whom to connect: a new connection now. */
static void redis_adopt(shard_t *sh, const cfg_t *old)
{
    redis_shard_t *rs = RS(sh);
    if (!rs)
        return;   /* a shard without this module's state (a unit test's) */
    const redis_conf_t *o = redis_conf(old), *n = redis_conf(sh->cfg);
    if (redis_setup(rs) || !rs->bufs_ok)
        return;   /* out of memory: stays off until the next reload */
    bool same = o->alen == n->alen && !memcmp(&o->addr, &n->addr, n->alen) && !strcmp(o->username, n->username) &&
                !strcmp(o->secret, n->secret) && o->db == n->db;
    if (same)
        return;
    rs->backoff_ms = 0;
    if (rs->state == RC_OFF || rs->state == RC_WAIT) {
        timer_cancel(&sh->timers, &rs->t_tick);
        connect_now(rs);
        return;
    }
    conn_down(rs, "configuration changed", NULL, 0, -ECONNRESET);
    if (rs->state == RC_CLOSING)
        rs->retry_due = true;   /* reconnect as soon as the old fd is closed */
    else if (rs->state == RC_WAIT)
        connect_now(rs);
}

static void redis_stop(shard_t *sh)
{
    redis_shard_t *rs = RS(sh);
    if (!rs)
        return;
    rs->stopping = true;
    timer_cancel(&sh->timers, &rs->t_tick);
    timer_cancel(&sh->timers, &rs->t_flush);
    timer_cancel(&sh->timers, &rs->t_cmd);
    if (rs->state == RC_WAIT)
        rs->state = RC_OFF;
    conn_down(rs, "stopping", NULL, 0, -ECANCELED);
}

static bool redis_inflight(const shard_t *sh)
{
    const redis_shard_t *rs = RS(sh);
    return rs && rs->inflight;
}

static void redis_free(shard_t *sh)
{
    redis_shard_t *rs = RS(sh);
    if (!rs)
        return;
    if (rs->fd >= 0)
        eng_close(&sh->eng, rs->fd);
    rs->fd = -1;
    set_up(rs, false);
    metrics_gauge_add(&rs->m.pending, -metrics_rdi(&rs->m.pending));
    rp_fifo_free(&rs->fifo);
    rp_reader_free(&rs->rd);
    buf_free(&rs->out);
    buf_free(&rs->next);
    if (rs->bufs_ok)
        eng_bufs_free(&sh->eng, &rs->rbufs);
    rs->bufs_ok = false;
}

/* Registered before the modules that issue commands, so it stops after them
 * (they cancel their own commands first) and is freed after them. */
static const shard_mod_ops_t redis_mod = {
    .name = "redis",
    .open = redis_open,
    .close = redis_close,
    .init = redis_init,
    .start = redis_start,
    .turn_end = redis_turn_end,
    .adopt = redis_adopt,
    .stop = redis_stop,
    .inflight = redis_inflight,
    .free = redis_free,
};

void redis_register(void)
{
    cfg_section_register(&redis_conf_section);
    g_redis_mod = shard_mod_register(&redis_mod);
    g_op_connect = shard_op_register(&connect_op);
    g_op_send = shard_op_register(&send_op);
    g_op_recv = shard_op_register(&recv_op);
    metrics_register(redis_metrics_render);
}
