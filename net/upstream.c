/* upstream: client connections to agent services on the shard's engine.
 *
 * Ownership: the shard owns the slab; a connection's owner (a proxied run) holds
 * it from ups_acquire() until ups_release()/ups_abort(), after which the owner
 * pointer is NULL and no callback fires. A slot is freed only when no SQE
 * naming it is in flight (inflight == 0), as for client connections.
 *
 * Addresses come from upstream_dns.c (resolved by the main thread, refreshed
 * by the resolver thread); shards only read them, and a pooled connection to
 * an address since replaced is closed rather than reused. */
#include "net/upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/fdlimit.h"

#define UPS_SLOTS 4096   /* upstream connections per shard */
/* Upstream reads get their own provided buffers, 16 KiB instead of the
 * clients' 4 KiB: a streamed answer arrives in bursts larger than a request,
 * and with 4 KiB buffers the bench's 4.8 KB response took two or three recv
 * completions (and as many chunks to the client) instead of one. A buffer is
 * held only from the kernel's completion to the end of its handler, so the
 * count bounds completions per loop turn, not connections (ENOBUFS re-arms). */
#define UPS_RECV_BUFS     256
#define UPS_RECV_BUF_SIZE (16u << 10)
#define UPS_RECV_BGID     2

/* Per-shard slab and pools (this module's shard_t.mod entry). */
typedef struct ups_shard {
    slab_t   slab;        /* ups_t, UPS_SLOTS */
    uint32_t n_live;
    ups_t   *pool[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS];
    uint32_t pool_len[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS];
    eng_bufs_t rbufs;     /* upstream reads only; a buffer group of the shard's engine */
} ups_shard_t;

static void pool_timer_fired(agate_timer_t *t);
static void ups_free_slot(ups_t *u);


static unsigned g_ups_mod;
static uint8_t  g_op_connect, g_op_send, g_op_recv;

static inline ups_shard_t *US(const shard_t *sh) { return (ups_shard_t *)sh->mod[g_ups_mod]; }

int ups_shard_init(shard_t *sh)
{
    ups_shard_t *us = calloc(1, sizeof *us);
    if (!us)
        return -ENOMEM;
    int rc = slab_init(&us->slab, UPS_SLOTS, sizeof(ups_t));
    if (rc)
        goto fail;
    for (uint32_t i = 0; i < UPS_SLOTS; i++)
        ((ups_t *)slab_at(&us->slab, i))->fd = -1;
    rc = eng_bufs_init(&sh->eng, &us->rbufs, UPS_RECV_BGID, UPS_RECV_BUFS, UPS_RECV_BUF_SIZE);
    if (rc)
        goto fail_slab;
    sh->mod[g_ups_mod] = us;
    return 0;
fail_slab:
    slab_free(&us->slab);
fail:
    free(us);
    return rc;
}

static void ups_shard_free(shard_t *sh)
{
    ups_shard_t *us = US(sh);
    if (!us)
        return;
    for (uint32_t i = 0; i < UPS_SLOTS; i++)
        buf_free(&((ups_t *)slab_at(&us->slab, i))->out);
    slab_free(&us->slab);
    eng_bufs_free(&sh->eng, &us->rbufs);
    free(us);
    sh->mod[g_ups_mod] = NULL;
}

static bool ups_busy(const shard_t *sh) { return US(sh) && US(sh)->n_live; }

static void ups_abort_all(shard_t *sh)
{
    ups_shard_t *us = US(sh);
    if (!us)
        return;
    for (uint32_t i = 0; i < UPS_SLOTS; i++) {
        ups_t *u = slab_at(&us->slab, i);
        if (u->state != UPS_FREE)
            ups_abort(u);
    }
}

/* --- response parsing ------------------------------------------------------ */

static inline ups_t *ups_of(llhttp_t *p) { return (ups_t *)p->data; }

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    ups_t *u = ups_of(p);
    /* Field names arrive whole in practice; a split name simply is not matched,
     * which only costs the Content-Type check on that response. */
    u->hdr = len == 12 && !strncasecmp(at, "content-type", 12);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    ups_t *u = ups_of(p);
    if (u->hdr && u->ctype_len + len < sizeof u->ctype) {
        memcpy(u->ctype + u->ctype_len, at, len);
        u->ctype_len += (uint32_t)len;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    ups_t *u = ups_of(p);
    u->got_head = true;
    if (u->owner)
        u->ops->head(u->owner, llhttp_get_status_code(p), u->ctype, u->ctype_len);
    return u->owner ? 0 : -1;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    ups_t *u = ups_of(p);
    if (u->owner)
        u->ops->body(u->owner, at, len);
    return u->owner ? 0 : -1;
}

static int on_message_complete(llhttp_t *p)
{
    ups_t *u = ups_of(p);
    bool keep = llhttp_should_keep_alive(p);
    if (u->owner)
        u->ops->done(u->owner, keep);
    return HPE_PAUSED;   /* nothing may follow a response we did not ask for */
}

static const llhttp_settings_t ups_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void reset_parser(ups_t *u)
{
    llhttp_init(&u->parser, HTTP_RESPONSE, &ups_settings);
    u->parser.data = u;
    u->ctype_len = 0;
    u->hdr = 0;
    u->got_head = false;
}

/* --- I/O ------------------------------------------------------------------- */

static void arm_recv(ups_t *u)
{
    eng_recv(&u->sh->eng, u->fd, &US(u->sh)->rbufs, slab_ud(u, g_op_recv));
    u->recv_armed = true;
    u->inflight++;
}

static void arm_send(ups_t *u)
{
    eng_send(&u->sh->eng, u->fd, u->out.data + u->sent, u->out.len - u->sent, slab_ud(u, g_op_send));
    u->send_inflight = true;
    u->inflight++;
}

/* Tells the owner (once) and detaches it. */
static void fail(ups_t *u, ups_fail_t why, int err)
{
    void *owner = u->owner;
    u->owner = NULL;
    ups_abort(u);
    if (owner)
        u->ops->fail(owner, why, err);
}

static void pool_remove(ups_t *u)
{
    ups_shard_t *us = US(u->sh);
    ups_t **pp = &us->pool[u->agent][u->ep];
    while (*pp && *pp != u)
        pp = &(*pp)->pool_next;
    if (*pp) {
        *pp = u->pool_next;
        us->pool_len[u->agent][u->ep]--;
    }
    u->in_pool_list = false;
    timer_cancel(&u->sh->timers, &u->timer);
}

ups_t *ups_acquire(shard_t *sh, unsigned agent, unsigned ep, void *owner, const ups_ops_t *ops)
{
    ups_shard_t *us = US(sh);
    /* Pooled connections to an address the resolver has since replaced are
     * closed rather than reused: new runs must follow the name. */
    uint32_t seq = ups_addr_seq(agent, ep);
    ups_t *u;
    while ((u = us->pool[agent][ep]) && u->addr_seq != seq)
        ups_abort(u);
    if (u) {
        pool_remove(u);
        u->state = UPS_ACTIVE;
        u->reused = true;
    } else {
        if (!us->slab.n_free)
            return NULL;
        struct sockaddr_storage ss;
        uint32_t addr_seq;
        socklen_t alen = ups_addr(agent, ep, &ss, &addr_seq);
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return NULL;
        if (fdlimit_reserved(fd)) {   /* the admin listener's (net/fdlimit.h): out of descriptors for us */
            close(fd);
            return NULL;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        u = slab_take(&us->slab);
        us->n_live++;
        u->sh = sh;
        u->fd = fd;
        u->agent = (uint16_t)agent;
        u->ep = (uint16_t)ep;
        u->inflight = 0;
        u->recv_armed = u->send_inflight = u->paused = u->reused = u->in_pool_list = false;
        u->timer.cb = pool_timer_fired;
        u->state = UPS_CONNECTING;
        /* connect with a deadline: the engine cancels the connect when the
         * agent's connect timeout passes (io_uring: a linked timeout). */
        const cfg_agent_t *ag = &sh->cfg->agents[agent];
        u->addr = ss;
        u->addr_seq = addr_seq;
        u->inflight++;
        u->connect_ts.tv_sec = ag->connect_timeout_ms / 1000;
        u->connect_ts.tv_nsec = (long long)(ag->connect_timeout_ms % 1000) * 1000000;
        eng_connect(&sh->eng, fd, (const struct sockaddr *)&u->addr, alen, &u->connect_ts, slab_ud(u, g_op_connect));
    }
    u->owner = owner;
    u->ops = ops;
    u->out.len = 0;
    u->sent = 0;
    reset_parser(u);
    return u;
}

void ups_send(ups_t *u)
{
    u->sent = 0;
    if (u->state == UPS_ACTIVE)
        arm_send(u);   /* a connecting socket sends when the connect completes */
}

void ups_pause(ups_t *u) { u->paused = true; }

void ups_resume(ups_t *u)
{
    if (!u->paused)
        return;
    u->paused = false;
    if (u->state == UPS_ACTIVE && !u->recv_armed && !u->send_inflight && u->sent == u->out.len)
        arm_recv(u);
}

static void pool_timer_fired(agate_timer_t *t)
{
    ups_t *u = (ups_t *)((char *)t - offsetof(ups_t, timer));
    ups_abort(u);
}

void ups_release(ups_t *u, bool reusable)
{
    u->owner = NULL;
    if (u->state != UPS_ACTIVE)
        return;
    const cfg_agent_t *ag = &u->sh->cfg->agents[u->agent];
    ups_shard_t *us = US(u->sh);
    if (!reusable || u->send_inflight || us->pool_len[u->agent][u->ep] >= ag->pool_max_idle) {
        ups_abort(u);
        return;
    }
    u->state = UPS_IDLE;
    u->paused = false;
    u->pool_next = us->pool[u->agent][u->ep];
    us->pool[u->agent][u->ep] = u;
    us->pool_len[u->agent][u->ep]++;
    u->in_pool_list = true;
    timer_arm(&u->sh->timers, &u->timer, u->sh->now_ms + ag->pool_idle_timeout_ms);
    if (!u->recv_armed)
        arm_recv(u);   /* so a close by the server while idle is noticed */
}

void ups_abort(ups_t *u)
{
    if (u->state == UPS_FREE || u->state == UPS_ABORT)
        return;
    u->owner = NULL;
    if (u->in_pool_list)
        pool_remove(u);
    timer_cancel(&u->sh->timers, &u->timer);
    u->state = UPS_ABORT;
    /* A direct shutdown so in-flight operations complete now; the agent sees
     * the connection close, which is how it learns the run was cancelled. */
    if (u->inflight)
        shutdown(u->fd, SHUT_RDWR);
    else
        ups_free_slot(u);
}

static void ups_free_slot(ups_t *u)
{
    ups_shard_t *us = US(u->sh);
    eng_close(&u->sh->eng, u->fd);
    u->fd = -1;
    u->state = UPS_FREE;
    if (u->out.cap > 64 * 1024)
        buf_free(&u->out);
    slab_put(&us->slab, u);
    us->n_live--;
}

static void on_connect(ups_t *u, int res)
{
    if (u->state != UPS_CONNECTING)
        return;
    if (res < 0) {
        fail(u, UPS_FAIL_CONNECT, res == -ECANCELED ? -ETIMEDOUT : res);
        return;
    }
    u->state = UPS_ACTIVE;
    if (u->out.len)
        arm_send(u);
}

/* Request buffers up to this size are kept for the connection's next request. */
#define UPS_KEEP_OUT 2048

static void on_send(ups_t *u, int res)
{
    u->send_inflight = false;
    if (u->state != UPS_ACTIVE)
        return;
    if (res < 0) {
        fail(u, UPS_FAIL_RESET, res);
        return;
    }
    u->sent += (size_t)res;
    if (u->sent < u->out.len) {
        arm_send(u);
        return;
    }
    /* The request is with the kernel and a retry builds its own: a large one
     * (the client's body) is given back now, not when a long stream ends. */
    if (u->out.cap > UPS_KEEP_OUT)
        buf_free(&u->out);
    u->out.len = u->sent = 0;
    if (!u->recv_armed && !u->paused)
        arm_recv(u);
}

static void on_data(ups_t *u, const char *p, size_t n)
{
    if (u->state == UPS_IDLE) {
        ups_abort(u);   /* bytes nobody asked for, on a pooled connection */
        return;
    }
    llhttp_errno_t e = llhttp_execute(&u->parser, p, n);
    if (e == HPE_OK)
        return;
    if (e == HPE_PAUSED && u->owner == NULL) {
        if (llhttp_get_error_pos(&u->parser) != p + n)
            ups_abort(u);   /* bytes after the response: not safe to reuse */
        return;
    }
    if (e == HPE_PAUSED) {
        /* The owner did not release in done(): treat further bytes as a protocol error. */
        fail(u, UPS_FAIL_PROTOCOL, -EPROTO);
        return;
    }
    if (u->owner)
        fail(u, UPS_FAIL_PROTOCOL, -EPROTO);
    else if (u->state == UPS_ACTIVE)
        ups_abort(u);
}

static void on_eof(ups_t *u)
{
    if (u->state != UPS_ACTIVE) {
        ups_abort(u);
        return;
    }
    /* A close-delimited body ends here; anything else was cut short. */
    if (u->got_head && llhttp_finish(&u->parser) == HPE_OK && !u->owner) {
        ups_abort(u);
        return;
    }
    if (u->owner)
        fail(u, UPS_FAIL_RESET, -ECONNRESET);
    else
        ups_abort(u);
}

static void on_recv(ups_t *u, eng_cqe_t *cqe)
{
    shard_t *sh = u->sh;
    u->recv_armed = false;
    int res = cqe->res;
    if (res > 0) {
        uint16_t bid = eng_cqe_bid(cqe);
        if (u->state == UPS_ACTIVE || u->state == UPS_IDLE)
            on_data(u, eng_bufs_addr(&US(sh)->rbufs, bid), (size_t)res);
        eng_bufs_recycle(&US(sh)->rbufs, bid);
    } else if (res == 0) {
        on_eof(u);
        return;
    } else if (res != -ENOBUFS) {
        if (u->state == UPS_ACTIVE && u->owner)
            fail(u, UPS_FAIL_RESET, res);
        else
            ups_abort(u);
        return;
    }
    if ((u->state == UPS_ACTIVE && !u->paused && u->owner) || u->state == UPS_IDLE) {
        if (!u->recv_armed)
            arm_recv(u);
    }
}

/* ---- completions and the shard module -------------------------------------- */

static void *ups_lookup(shard_t *sh, uint64_t ud) { return US(sh) ? slab_lookup(&US(sh)->slab, ud) : NULL; }

static void ups_stale(shard_t *sh, eng_cqe_t *cqe)
{
    if (US(sh) && eng_cqe_has_buf(cqe))
        eng_bufs_recycle(&US(sh)->rbufs, eng_cqe_bid(cqe));
}

static void after_cqe(ups_t *u)
{
    if (u->state == UPS_ABORT && !u->inflight)
        ups_free_slot(u);
}

static void on_connect_cqe(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    ups_t *u = obj;
    u->inflight--;
    on_connect(u, cqe->res);
    after_cqe(u);
}

static void on_send_cqe(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    ups_t *u = obj;
    u->inflight--;
    on_send(u, cqe->res);
    after_cqe(u);
}

static void on_recv_cqe(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    ups_t *u = obj;
    u->inflight--;
    on_recv(u, cqe);
    after_cqe(u);
}

static const shard_op_t connect_op = {ups_lookup, on_connect_cqe, NULL};
static const shard_op_t send_op = {ups_lookup, on_send_cqe, NULL};
static const shard_op_t recv_op = {ups_lookup, on_recv_cqe, ups_stale};

/* Set up lazily by net/proxy.c; stopped after the client connections (it is
 * registered before them), so runs have let go of theirs first. */
static const shard_mod_ops_t ups_mod = {
    .name = "upstream",
    .stop = ups_abort_all,
    .inflight = ups_busy,
    .free = ups_shard_free,
};

void ups_register(void)
{
    cfg_section_register(&ups_conf_section);
    g_ups_mod = shard_mod_register(&ups_mod);
    g_op_connect = shard_op_register(&connect_op);
    g_op_send = shard_op_register(&send_op);
    g_op_recv = shard_op_register(&recv_op);
}
