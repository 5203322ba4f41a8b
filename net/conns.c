/* conns: a shard's client connections (see conns.h).
 *
 * Ownership: the shard module owns the listening sockets and the slab; each
 * conn_t owns its fd and buffers (net/conn.c). A slot goes back to the slab
 * only when no SQE naming it is in flight (conn_reap).
 *
 * Out of descriptors: a main-listener connection that gets one of the numbers
 * kept for the admin listener (net/fdlimit.h) is closed at once, unanswered;
 * an accept that fails is re-armed after a back-off (conns_listener_t), never
 * at once: a multishot accept ends on its first error, and re-arming it while
 * the error lasts spun both CPUs and starved the admin listener. */
#include "net/conns.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"
#include "net/fdlimit.h"
#include "net/gwmetrics.h"
#include "net/listener.h"

#define CONNS_RESERVE 64   /* slots past max_connections, to answer 503 */
/* Accept back-off: nginx pauses accepting 500 ms on EMFILE; this starts short
 * and doubles, so a blip costs little and a lasting shortage costs two failed
 * accepts a second per listener. */
#define CONNS_BACKOFF_MIN_MS 10
#define CONNS_BACKOFF_MAX_MS 500

unsigned g_conns_mod;
uint8_t  g_conns_op_recv, g_conns_op_send;
static uint8_t g_op_accept;

static void arm_accept(shard_t *sh, int which)
{
    eng_accept_multishot(&sh->eng, conns_of(sh)->lis[which].fd, eng_ud(g_op_accept, 0, (uint32_t)which));
}

static void stop_waiting(conns_t *cs, conns_listener_t *l)
{
    if (!timer_armed(&l->retry))
        return;
    timer_cancel(&l->sh->timers, &l->retry);
    cs->n_waiting--;
}

static void close_listener(shard_t *sh, conns_t *cs, int which)
{
    conns_listener_t *l = &cs->lis[which];
    int fd = l->fd;
    if (fd < 0)
        return;
    stop_waiting(cs, l);
    /* shutdown() makes the pending multishot accept complete and refuses new
     * connections at once; close() alone would leave the accept holding the file. */
    shutdown(fd, SHUT_RDWR);
    eng_close(&sh->eng, fd);
    l->fd = -1;
}

static void retry_fired(agate_timer_t *t)
{
    conns_listener_t *l = (conns_listener_t *)((char *)t - offsetof(conns_listener_t, retry));
    conns_of(l->sh)->n_waiting--;
    if (l->fd >= 0)
        arm_accept(l->sh, l->which);
}

void conns_resume_accept(shard_t *sh)
{
    conns_t *cs = conns_of(sh);
    for (int i = 0; i < 2 && cs->n_waiting; i++) {
        conns_listener_t *l = &cs->lis[i];
        if (timer_armed(&l->retry)) {
            stop_waiting(cs, l);
            arm_accept(sh, i);   /* backoff_ms stays: a failure now waits longer */
        }
    }
}

static enum metrics_accept_error accept_error_of(int err)
{
    switch (err) {
    case EMFILE: return MAE_EMFILE;
    case ENFILE: return MAE_ENFILE;
    case ENOMEM:
    case ENOBUFS: return MAE_ENOMEM;
    default: return MAE_OTHER;
    }
}

/* The accept ended with an error: count it and try again after a pause. */
static void accept_failed(shard_t *sh, conns_listener_t *l, int err)
{
    if (gwm(sh))
        metrics_add(&gwm(sh)->accept_errors[l->which][accept_error_of(err)], 1);
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : CONNS_BACKOFF_MIN_MS;
    if (l->backoff_ms > CONNS_BACKOFF_MAX_MS)
        l->backoff_ms = CONNS_BACKOFF_MAX_MS;
    if (timer_arm(&sh->timers, &l->retry, sh->now_ms + l->backoff_ms)) {
        arm_accept(sh, l->which);   /* no memory for the timer: the old behaviour beats a dead listener */
        return;
    }
    conns_of(sh)->n_waiting++;
}

/* A main-listener connection on one of the admin listener's descriptors:
 * closed at once, unanswered (a response written before the request is read
 * would be lost to the reset the close causes when the request arrives). */
static void refuse(shard_t *sh, int fd, enum metrics_refusal why)
{
    close(fd);
    if (gwm(sh))
        metrics_add(&gwm(sh)->refused[why], 1);
}

/* ---- completions ---- */

static void on_accept(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    conns_t *cs = conns_of(sh);
    uint64_t ud = eng_cqe_ud(cqe);
    int which = (int)eng_ud_slot(ud);
    conns_listener_t *l = &cs->lis[which];
    if (cqe->res >= 0) {
        l->backoff_ms = 0;
        if (l->fd < 0)
            close(cqe->res);
        else if (which == CONNS_LISTEN_MAIN && fdlimit_reserved(cqe->res))
            refuse(sh, cqe->res, MCR_FD_RESERVE);
        else
            conn_accept(sh, cqe->res, which == CONNS_LISTEN_ADMIN);
    } else if (l->fd >= 0 && !eng_cqe_more(cqe)) {
        accept_failed(sh, l, -cqe->res);
        return;
    }
    if (!eng_cqe_more(cqe) && l->fd >= 0)
        arm_accept(sh, which);
}

static void *lookup(shard_t *sh, uint64_t ud) { return slab_lookup(&conns_of(sh)->slab, ud); }

conn_t *conn_lookup(shard_t *sh, uint64_t ref) { return conns_of(sh) ? lookup(sh, ref) : NULL; }

static void on_recv(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    conn_on_recv(obj, cqe);
    conn_reap(obj);
}

static void on_send(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    conn_on_send(obj, cqe->res);
    conn_reap(obj);
}

/* The connection is gone: its provided buffer still goes back to the ring. */
static void recv_stale(shard_t *sh, eng_cqe_t *cqe)
{
    if (eng_cqe_has_buf(cqe))
        eng_bufs_recycle(&sh->rbufs, eng_cqe_bid(cqe));
}

static const shard_op_t accept_op = {NULL, on_accept, NULL};
static const shard_op_t recv_op = {lookup, on_recv, recv_stale};
static const shard_op_t send_op = {lookup, on_send, NULL};

/* ---- the shard module ---- */

static void init_listeners(shard_t *sh, conns_t *cs)
{
    for (int i = 0; i < 2; i++) {
        cs->lis[i].fd = -1;
        cs->lis[i].which = (uint8_t)i;
        cs->lis[i].sh = sh;
        cs->lis[i].retry.cb = retry_fired;
    }
}

static int conns_open(shard_t *sh, char *err, size_t errlen)
{
    conns_t *cs = calloc(1, sizeof *cs);
    if (!cs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    init_listeners(sh, cs);
    sh->mod[g_conns_mod] = cs;
    /* Shard 0's sockets bind first and alone: another process on the address
     * stops start-up here (net/listener.c). */
    int fd = listener_open(sh->cfg->listen, sh->id == 0, err, errlen);
    if (fd < 0)
        goto fail;
    cs->lis[CONNS_LISTEN_MAIN].fd = fd;
    if (sh->cfg->admin_listen[0] && strcmp(sh->cfg->admin_listen, "off")) {
        fd = listener_open(sh->cfg->admin_listen, sh->id == 0, err, errlen);
        if (fd < 0)
            goto fail;
        cs->lis[CONNS_LISTEN_ADMIN].fd = fd;
    }
    return 0;
fail:
    close_listener(sh, cs, CONNS_LISTEN_MAIN);
    free(cs);
    sh->mod[g_conns_mod] = NULL;
    return fd;
}

static void conns_close(shard_t *sh)
{
    conns_t *cs = conns_of(sh);
    if (!cs)
        return;
    close_listener(sh, cs, CONNS_LISTEN_MAIN);
    close_listener(sh, cs, CONNS_LISTEN_ADMIN);
    free(cs);
    sh->mod[g_conns_mod] = NULL;
}

static int conns_init(shard_t *sh)
{
    conns_t *cs = conns_of(sh);
    int rc = slab_init(&cs->slab, sh->cfg->max_connections + CONNS_RESERVE, sizeof(conn_t));
    if (rc)
        return rc;
    for (uint32_t i = 0; i < cs->slab.cap; i++)
        ((conn_t *)slab_at(&cs->slab, i))->fd = -1;
    return 0;
}

static void conns_start(shard_t *sh)
{
    for (int i = 0; i < 2; i++)
        if (conns_of(sh)->lis[i].fd >= 0)
            arm_accept(sh, i);
}

static void flush_all(conns_t *cs)
{
    while (cs->flush_head) {
        conn_t *c = cs->flush_head;
        cs->flush_head = c->flush_next;
        conn_flush(c);
        conn_reap(c);
    }
}

/* Frees the connections aborted this turn that have nothing in flight; the
 * others are freed by the completion that ends their last operation. */
static void reap_all(conns_t *cs)
{
    while (cs->reap_head) {
        conn_t *c = cs->reap_head;
        cs->reap_head = c->reap_next;
        c->in_reap = false;
        conn_reap(c);
    }
}

static void conns_turn_end(shard_t *sh)
{
    conns_t *cs = conns_of(sh);
    flush_all(cs);
    reap_all(cs);
}

#define EACH_CONN(cs, c) \
    for (conn_t *c = slab_at(&(cs)->slab, 0), *end_ = slab_at(&(cs)->slab, (cs)->slab.cap); c < end_; c++)

static void conns_drain(shard_t *sh)
{
    conns_t *cs = conns_of(sh);
    close_listener(sh, cs, CONNS_LISTEN_MAIN);
    EACH_CONN(cs, c) {
        if (c->state == CONN_OPEN && !c->admin && conn_is_idle(c))
            conn_close_after_flush(c);   /* graceful: a response may still be in the send queue */
        else if (c->state != CONN_FREE && c->proto->drain)
            c->proto->drain(c);          /* WebSocket: no new runs; close 1001 once its runs end */
    }
}

static void conns_cut(shard_t *sh)
{
    EACH_CONN(conns_of(sh), c)
        if (c->state != CONN_FREE && !c->admin)
            conn_abort(c);
}

static bool conns_busy(const shard_t *sh) { return conns_of(sh)->n_main != 0; }

static void conns_stop(shard_t *sh)
{
    conns_t *cs = conns_of(sh);
    close_listener(sh, cs, CONNS_LISTEN_MAIN);
    close_listener(sh, cs, CONNS_LISTEN_ADMIN);
    EACH_CONN(cs, c)
        if (c->state != CONN_FREE)
            conn_abort(c);
}

static bool conns_inflight(const shard_t *sh) { return conns_of(sh)->n_main || conns_of(sh)->n_admin; }

static void conns_free(shard_t *sh)
{
    conns_t *cs = conns_of(sh);
    if (!cs)
        return;
    if (cs->slab.base)
        EACH_CONN(cs, c)
            conn_free_buffers(c);
    slab_free(&cs->slab);
    conns_close(sh);
}

static const shard_mod_ops_t conns_mod = {
    .name = "conns",
    .open = conns_open,
    .close = conns_close,
    .init = conns_init,
    .start = conns_start,
    .turn_end = conns_turn_end,
    .drain = conns_drain,
    .cut = conns_cut,
    .busy = conns_busy,
    .stop = conns_stop,
    .inflight = conns_inflight,
    .free = conns_free,
};

void conns_register(void)
{
    g_conns_mod = shard_mod_register(&conns_mod);
    g_op_accept = shard_op_register(&accept_op);
    g_conns_op_recv = shard_op_register(&recv_op);
    g_conns_op_send = shard_op_register(&send_op);
}

int conns_attach(shard_t *sh, conns_t *cs, uint32_t cap)
{
    memset(cs, 0, sizeof *cs);
    init_listeners(sh, cs);
    sh->mod[g_conns_mod] = cs;
    int rc = slab_init(&cs->slab, cap, sizeof(conn_t));
    if (!rc)
        for (uint32_t i = 0; i < cap; i++)
            ((conn_t *)slab_at(&cs->slab, i))->fd = -1;
    return rc;
}

void conns_detach(shard_t *sh)
{
    conns_t *cs = conns_of(sh);
    EACH_CONN(cs, c)
        conn_free_buffers(c);
    slab_free(&cs->slab);
    sh->mod[g_conns_mod] = NULL;
}
