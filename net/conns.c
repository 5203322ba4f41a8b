/* conns: a shard's client connections (see conns.h).
 *
 * Ownership: the shard module owns the listening sockets and the slab; each
 * conn_t owns its fd and buffers (net/conn.c). A slot goes back to the slab
 * only when no SQE naming it is in flight (conn_reap). */
#include "net/conns.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"
#include "net/listener.h"

#define CONNS_RESERVE 64   /* slots past max_connections, to answer 503 */

unsigned g_conns_mod;
uint8_t  g_conns_op_recv, g_conns_op_send;
static uint8_t g_op_accept;

static void arm_accept(shard_t *sh, int which)
{
    eng_accept_multishot(&sh->eng, conns_of(sh)->listen_fd[which], eng_ud(g_op_accept, 0, (uint32_t)which));
}

static void close_listener(shard_t *sh, conns_t *cs, int which)
{
    int fd = cs->listen_fd[which];
    if (fd < 0)
        return;
    /* shutdown() makes the pending multishot accept complete and refuses new
     * connections at once; close() alone would leave the accept holding the file. */
    shutdown(fd, SHUT_RDWR);
    eng_close(&sh->eng, fd);
    cs->listen_fd[which] = -1;
}

/* ---- completions ---- */

static void on_accept(shard_t *sh, void *obj, eng_cqe_t *cqe)
{
    conns_t *cs = conns_of(sh);
    uint64_t ud = eng_cqe_ud(cqe);
    int which = (int)eng_ud_slot(ud);
    if (cqe->res >= 0) {
        if (cs->listen_fd[which] < 0)
            close(cqe->res);
        else
            conn_accept(sh, cqe->res, which == CONNS_LISTEN_ADMIN);
    }
    if (!eng_cqe_more(cqe) && cs->listen_fd[which] >= 0)
        arm_accept(sh, which);
}

static void *lookup(shard_t *sh, uint64_t ud) { return slab_lookup(&conns_of(sh)->slab, ud); }

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

static int conns_open(shard_t *sh, char *err, size_t errlen)
{
    conns_t *cs = calloc(1, sizeof *cs);
    if (!cs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    cs->listen_fd[0] = cs->listen_fd[1] = -1;
    sh->mod[g_conns_mod] = cs;
    int fd = listener_open(sh->cfg->listen, err, errlen);
    if (fd < 0)
        goto fail;
    cs->listen_fd[CONNS_LISTEN_MAIN] = fd;
    if (sh->cfg->admin_listen[0] && strcmp(sh->cfg->admin_listen, "off")) {
        fd = listener_open(sh->cfg->admin_listen, err, errlen);
        if (fd < 0)
            goto fail;
        cs->listen_fd[CONNS_LISTEN_ADMIN] = fd;
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
        if (conns_of(sh)->listen_fd[i] >= 0)
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
    cs->listen_fd[0] = cs->listen_fd[1] = -1;
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
