/* conn: connection lifecycle and I/O on the shard's engine (core/engine.h).
 *
 * Input: one multishot recv per connection, using the shard's provided buffers.
 * Each completion's bytes are parsed at once (http_feed) and the buffer goes
 * straight back to the ring; bytes that must wait (a pipelined request behind a
 * running stream) are copied into `pending`. While pending holds more than a
 * request could legally be, recv is cancelled and re-armed after it drains.
 *
 * Output bounds input: nothing is parsed while the connection's queued output
 * is at stream.buffer (conn_out_full), whatever would have written it (a
 * pipelined request's response, a WebSocket pong or RUN_ERROR). Such input
 * waits in `pending` and the recv is cancelled, so the kernel's socket buffer
 * fills and TCP pushes back on the peer; the send completion that brings the
 * output under half of the bound reads `pending` again and re-arms the recv.
 * A client that never reads thus costs at most the bound, one response, and
 * the few receive buffers that landed before the cancel.
 *
 * Output: two buffers per connection. Writers append to the fill buffer; once
 * per loop turn the shard calls conn_flush(), which hands the fill buffer to the
 * kernel as one send while the other becomes the new fill buffer. So a run that
 * emits 40 events in a turn costs one send, and the kernel never reads memory we
 * are appending to. */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conns.h"
#include "net/gwmetrics.h"

#define CONN_LINGER_MS      2000
#define CONN_KEEP_BUF_BYTES (16 * 1024)   /* output capacity a freed slot keeps for reuse */

static void conn_timer_fired(agate_timer_t *t);
static void conn_trim(conn_t *c);

static void arm_recv(conn_t *c)
{
    eng_recv_multishot(&c->sh->eng, c->fd, &c->sh->rbufs, slab_ud(c, g_conns_op_recv));
    c->recv_armed = true;
    c->inflight++;
}

/* Stops reading: the multishot recv completes with -ECANCELED. */
void conn_pause_recv(conn_t *c)
{
    if (!c->recv_armed || c->recv_paused)
        return;
    c->recv_paused = true;
    eng_cancel(&c->sh->eng, c->fd, slab_ud(c, g_conns_op_recv));
}

static inline size_t out_half(const conn_t *c) { return c->sh->cfg->stream_buffer_bytes / 2; }

bool conn_out_full(const conn_t *c) { return conn_out_pending(c) >= c->sh->cfg->stream_buffer_bytes; }

/* Arms a paused recv again once nothing holds input back: `pending` read and
 * the output under half of stream.buffer (a stream's runs resume at the same
 * mark). Closing, input is read only to be dropped, so it is armed whatever
 * the output: a close() over unread bytes would reset the peer. A cancel
 * still in flight re-arms from its completion (conn_on_recv). */
static void resume_recv(conn_t *c)
{
    if (!c->recv_paused || c->recv_armed)
        return;
    if (c->state == CONN_OPEN ? c->pending.len || conn_out_pending(c) > out_half(c)
                              : c->state != CONN_CLOSING && c->state != CONN_LINGER)
        return;
    c->recv_paused = false;
    arm_recv(c);
}

void conn_hold_input(conn_t *c, const char *data, size_t n, size_t limit)
{
    if (buf_append(&c->pending, data, n)) {
        conn_abort(c);
        return;
    }
    if (c->pending.len > limit || conn_out_full(c))
        conn_pause_recv(c);
}

void conn_init_slot(shard_t *sh, conn_t *c, int fd, bool admin)
{
    c->sh = sh;
    c->fd = fd;
    c->state = CONN_OPEN;
    c->admin = admin;
    conns_t *cs = conns_of(sh);
    c->over_cap = !admin && cs->n_main >= sh->cfg->max_connections;
    c->inflight = 0;
    /* in_flush/in_reap are left alone: a reused slot may still be linked in this turn's lists. */
    c->recv_armed = c->recv_paused = c->send_inflight = c->in_feed = false;
    c->sending = 0;
    c->sent = 0;
    c->chunk_open = false;
    c->run = NULL;
    c->run_slot = -1;
    c->ws = NULL;
    c->proto = &http1_proto;
    c->peer_len = 0;
    c->key_memo.len = 0;
    c->last_progress_ms = sh->now_ms;
    c->timer.cb = conn_timer_fired;
    c->timer_kind = CONN_T_NONE;
    if (admin)
        cs->n_admin++;
    else
        cs->n_main++;
    if (gwm(sh))
        metrics_gauge_add(&gwm(sh)->connections[admin], 1);
    http_conn_init(c);
    /* The first request must begin and finish its headers within header_timeout. */
    conn_set_timer(c, CONN_T_HEADER, sh->cfg->header_timeout_ms);
}

void conn_accept(shard_t *sh, int fd, bool admin)
{
    conn_t *c = slab_take(&conns_of(sh)->slab);
    if (!c) {
        close(fd);   /* every slot, reserve included, is taken: refuse outright */
        if (gwm(sh))
            metrics_add(&gwm(sh)->refused[MCR_NO_SLOT], 1);
        return;
    }
    conn_init_slot(sh, c, fd, admin);
    arm_recv(c);
}

void conn_set_timer(conn_t *c, conn_timer_kind_t kind, uint32_t ms)
{
    c->timer_kind = kind;
    if (kind == CONN_T_NONE) {
        timer_cancel(&c->sh->timers, &c->timer);
        return;
    }
    if (timer_arm(&c->sh->timers, &c->timer, c->sh->now_ms + ms))
        conn_abort(c);   /* no memory for a timer: a connection we cannot time out is unsafe */
}

static void conn_timer_fired(agate_timer_t *t)
{
    conn_t *c = (conn_t *)((char *)t - offsetof(conn_t, timer));
    const cfg_t *cfg = c->sh->cfg;
    switch (c->timer_kind) {
    case CONN_T_HEADER:
    case CONN_T_BODY: {
        bool body = c->timer_kind == CONN_T_BODY;
        c->timer_kind = CONN_T_NONE;
        if (c->state != CONN_OPEN || c->http.req.responding)
            return;
        if (gwm(c->sh))
            metrics_add(&gwm(c->sh)->rejected[MRJ_TIMEOUT], 1);
        http_error(c, 408, "request_timeout",
                   body ? "request body not received in time" : "request headers not received in time",
                   NULL);
        return;
    }
    case CONN_T_TRIM: {
        /* The idle deadline counts from the response's end, however late this fired. */
        uint64_t idle_at = c->timer.at - CONN_TRIM_MS + cfg->idle_timeout_ms, now = c->sh->now_ms;
        conn_trim(c);
        conn_set_timer(c, CONN_T_IDLE, idle_at > now ? (uint32_t)(idle_at - now) : 0);
        return;
    }
    case CONN_T_IDLE:
    case CONN_T_LINGER:
        conn_abort(c);
        return;
    case CONN_T_STALL:
        /* Abort only a client that has output waiting and took none of it for a
         * whole idle_timeout; a quiet stream with nothing queued is fine. */
        if (conn_out_pending(c) && c->sh->now_ms - c->last_progress_ms >= cfg->idle_timeout_ms) {
            conn_abort(c);
            return;
        }
        conn_set_timer(c, CONN_T_STALL, cfg->idle_timeout_ms);
        return;
    case CONN_T_NONE:
        return;
    }
}

/* Gives back the buffers of a keep-alive connection between requests: output,
 * request head and body, pipelined input. The next request grows them again. */
static void conn_trim(conn_t *c)
{
    http_req_t *r = &c->http.req;
    if (c->state != CONN_OPEN || c->send_inflight || conn_out_pending(c) || c->proto->busy(c) ||
        c->pending.len || r->in_message || r->responding)
        return;   /* not idle after all: the idle timer that follows still applies */
    buf_free(&c->out[0]);
    buf_free(&c->out[1]);
    c->sent = 0;
    buf_free(&c->pending);
    http_req_trim(r);
    if (gwm(c->sh))
        metrics_add(&gwm(c->sh)->conn_trims, 1);
}

size_t conn_out_pending(const conn_t *c)
{
    return c->out[c->sending].len - c->sent + c->out[c->sending ^ 1].len;
}

void conn_mark_dirty(conn_t *c)
{
    if (c->in_flush)
        return;
    c->in_flush = true;
    conns_t *cs = conns_of(c->sh);
    c->flush_next = cs->flush_head;
    cs->flush_head = c;
}

void conn_body_open(conn_t *c)
{
    if (!c->http.req.chunked_resp || c->chunk_open)
        return;
    buf_t *b = conn_fill(c);
    if (buf_reserve(b, 10))
        return;
    c->chunk_off = b->len;
    memcpy(b->data + b->len, "00000000\r\n", 10);   /* size filled in at flush */
    b->len += 10;
    c->chunk_open = true;
}

/* Writes the open chunk's size into its placeholder (leading zeros are valid
 * chunk-size syntax), or removes an empty placeholder. */
void conn_body_close(conn_t *c)
{
    if (!c->chunk_open)
        return;
    buf_t *b = conn_fill(c);
    c->chunk_open = false;
    size_t size = b->len - c->chunk_off - 10;
    if (!size) {
        b->len = c->chunk_off;
        return;
    }
    static const char hex[] = "0123456789abcdef";
    char *p = b->data + c->chunk_off;
    for (int i = 7; i >= 0; i--, size >>= 4)
        p[i] = hex[size & 15];
    buf_append_lit(b, "\r\n");
}

static void begin_linger(conn_t *c)
{
    c->state = CONN_LINGER;
    shutdown(c->fd, SHUT_WR);
    conn_set_timer(c, CONN_T_LINGER, CONN_LINGER_MS);
    resume_recv(c);   /* input held back for the output: read and dropped now */
    if (!c->recv_armed)
        conn_abort(c);
}

void conn_flush(conn_t *c)
{
    c->in_flush = false;
    if (c->send_inflight || c->state == CONN_ABORT || c->state == CONN_FREE)
        return;
    buf_t *s = &c->out[c->sending];
    if (c->sent == s->len) {
        s->len = 0;
        c->sent = 0;
        conn_body_close(c);
        if (!conn_fill(c)->len) {
            if (c->state == CONN_CLOSING)
                begin_linger(c);
            return;
        }
        c->sending ^= 1;
        s = &c->out[c->sending];
    }
    eng_send(&c->sh->eng, c->fd, s->data + c->sent, s->len - c->sent, slab_ud(c, g_conns_op_send));
    c->send_inflight = true;
    c->inflight++;
}

void conn_on_send(conn_t *c, int res)
{
    c->inflight--;
    c->send_inflight = false;
    if (c->state == CONN_ABORT)
        return;
    if (res < 0) {
        conn_abort(c);
        return;
    }
    c->sent += (size_t)res;
    c->last_progress_ms = c->sh->now_ms;
    if (gwm(c->sh))
        metrics_add(&gwm(c->sh)->bytes_out, (uint64_t)res);
    if (c->sent < c->out[c->sending].len || conn_fill(c)->len || c->state == CONN_CLOSING)
        conn_mark_dirty(c);
    conn_after_send(c);
}

static void process_pending(conn_t *c);

/* Held input first: a WebSocket peer's CANCEL is read before its runs refill
 * the output. Then the protocol's own release (a blocked stream's runs). */
void conn_after_send(conn_t *c)
{
    if ((c->pending.len || c->recv_paused) && conn_out_pending(c) <= out_half(c)) {
        process_pending(c);
        if (c->state == CONN_ABORT || c->state == CONN_FREE)
            return;
    }
    c->proto->sent(c);
}

bool conn_is_idle(const conn_t *c)
{
    return c->state == CONN_OPEN && !c->http.req.responding && !c->http.req.in_message && !c->pending.len;
}

/* Keep-alive between requests: TRIM, then IDLE for the rest of idle_timeout. */
static void arm_keepalive(conn_t *c)
{
    uint32_t idle = c->sh->cfg->idle_timeout_ms;
    if (idle > CONN_TRIM_MS)
        conn_set_timer(c, CONN_T_TRIM, CONN_TRIM_MS);
    else
        conn_set_timer(c, CONN_T_IDLE, idle);
}

/* Reads what waited in `pending` once the response before it is done, or once
 * the output went under half of the bound (the protocol stops again when it
 * reaches the bound), then re-arms a recv that nothing holds back any more. */
static void process_pending(conn_t *c)
{
    if (c->pending.len && c->state == CONN_OPEN) {
        c->proto->pending(c);
        /* The last pipelined request was answered while its bytes still sat in
         * pending, so conn_response_finished could not arm the keep-alive. (An
         * upgraded connection is never idle: its upgrade request is still
         * responding.) */
        if (conn_is_idle(c))
            arm_keepalive(c);
    }
    resume_recv(c);
}

void conn_response_finished(conn_t *c)
{
    if (c->state != CONN_OPEN)
        return;
    if (c->sh->draining && !c->admin) {
        conn_close_after_flush(c);
        return;
    }
    if (!c->pending.len)
        arm_keepalive(c);
    if (!c->in_feed)
        process_pending(c);
}

void conn_close_after_flush(conn_t *c)
{
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_CLOSING;
    conn_set_timer(c, CONN_T_STALL, c->sh->cfg->idle_timeout_ms);
    conn_mark_dirty(c);
}

void conn_abort(conn_t *c)
{
    if (c->state == CONN_ABORT || c->state == CONN_FREE)
        return;
    c->state = CONN_ABORT;
    timer_cancel(&c->sh->timers, &c->timer);
    timer_cancel(&c->sh->timers, &c->hb_timer);
    c->proto->abort(c);
    /* A direct shutdown, not an SQE: it takes effect now, so the in-flight recv
     * and send complete promptly and the fd cannot have been reused meanwhile. */
    if (c->inflight)
        shutdown(c->fd, SHUT_RDWR);
    if (!c->in_reap) {
        c->in_reap = true;
        conns_t *cs = conns_of(c->sh);
        c->reap_next = cs->reap_head;
        cs->reap_head = c;
    }
}

void conn_reap(conn_t *c)
{
    if (c->state != CONN_ABORT || c->inflight)
        return;
    shard_t *sh = c->sh;
    if (c->http.req.responding)
        http_response_done(c);   /* logs the run that ended with the connection */
    eng_close(&sh->eng, c->fd);
    c->fd = -1;
    explicit_bzero(&c->key_memo, sizeof c->key_memo);
    for (int i = 0; i < 2; i++) {
        c->out[i].len = 0;
        if (c->out[i].cap > CONN_KEEP_BUF_BYTES)
            buf_free(&c->out[i]);
    }
    buf_free(&c->pending);
    if (c->proto->free)
        c->proto->free(c);
    http_conn_free(&c->http);
    c->state = CONN_FREE;
    conns_t *cs = conns_of(sh);
    if (c->admin)
        cs->n_admin--;
    else
        cs->n_main--;
    if (gwm(sh))
        metrics_gauge_add(&gwm(sh)->connections[c->admin], -1);
    slab_put(&cs->slab, c);
    if (cs->n_waiting)
        conns_resume_accept(sh);   /* a descriptor came back: an accept out of them may succeed now */
}

void conn_free_buffers(conn_t *c)
{
    buf_free(&c->out[0]);
    buf_free(&c->out[1]);
    buf_free(&c->pending);
    http_conn_free(&c->http);
}

void conn_input(conn_t *c, const char *data, size_t n)
{
    if (c->state != CONN_OPEN)
        return;   /* CLOSING/LINGER: the peer's further bytes are discarded */
    c->proto->input(c, data, n);
}

void conn_set_proto(conn_t *c, const conn_proto_t *proto) { c->proto = proto; }

void conn_on_recv(conn_t *c, eng_cqe_t *cqe)
{
    shard_t *sh = c->sh;
    if (!eng_cqe_more(cqe)) {
        c->recv_armed = false;
        c->inflight--;
    }
    if (cqe->res > 0) {
        uint16_t bid = eng_cqe_bid(cqe);
        if (gwm(sh))
            metrics_add(&gwm(sh)->bytes_in, (uint64_t)cqe->res);
        conn_input(c, eng_bufs_addr(&sh->rbufs, bid), (size_t)cqe->res);
        eng_bufs_recycle(&sh->rbufs, bid);
    } else if (cqe->res == 0 || (cqe->res != -ENOBUFS && cqe->res != -ECANCELED)) {
        conn_abort(c);   /* EOF or error: the client is gone, mid-stream or not */
        return;
    }
    if (!c->recv_armed && !c->recv_paused && (c->state == CONN_OPEN || c->state == CONN_LINGER ||
                                              c->state == CONN_CLOSING))
        arm_recv(c);
    else if (!c->recv_armed)
        resume_recv(c);   /* the cancel came back after what held input had gone */
    if (c->state == CONN_LINGER && !c->recv_armed)
        conn_abort(c);
}

/* Looked up once per connection: keep-alive clients run many times on one, and
 * getpeername() per run was 2.5 % of agate's CPU in the proxy bench. */
bool conn_peer(conn_t *c)
{
    if (c->peer_len)
        return c->peer[0] != 'u';   /* "unknown" */
    _Static_assert(sizeof c->peer >= INET6_ADDRSTRLEN, "conn_t.peer holds any address");
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    const char *ok = NULL;
    if (c->fd >= 0 && !getpeername(c->fd, (struct sockaddr *)&ss, &sl)) {
        if (ss.ss_family == AF_INET)
            ok = inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer, sizeof c->peer);
        else if (ss.ss_family == AF_INET6)
            ok = inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer, sizeof c->peer);
    }
    if (!ok)
        memcpy(c->peer, "unknown", 8);
    c->peer_len = (uint8_t)strlen(c->peer);
    return ok != NULL;
}
