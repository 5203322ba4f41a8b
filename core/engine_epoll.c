/* engine_epoll: core/engine.h's operations on epoll, for hosts that refuse
 * io_uring (a seccomp profile, kernel.io_uring_disabled, an old kernel).
 *
 * Readiness is turned into the completions io_uring would post, with the same
 * user_data, result and flags, so the modules' handlers cannot tell:
 *
 *   - Each fd has at most one reading operation (accept, recv, multishot recv,
 *     read) and one writing one (send, connect) armed, kept in its entry of a
 *     table indexed by fd. The modules never arm two on one side (a
 *     connection has one recv armed and one send in flight at a time).
 *   - An fd joins the epoll set, edge-triggered for in, out and the peer's
 *     close, with its first operation and leaves it when eng_close closes it.
 *   - Arming an operation only notes it and lists the fd; the syscall is made
 *     at the next reap, as io_uring issues an SQE at the next enter. A handler
 *     therefore never runs inside another: every completion is handed to the
 *     shard's dispatcher by eng_epoll_reap, one at a time, right after its
 *     syscall, so one receive buffer is out at a time.
 *   - Edge-triggered means an fd's readiness is reported once, so the engine
 *     remembers it per side (rd_ready, wr_ready, as nginx's ev->ready): set by
 *     an event, cleared by EAGAIN, by a short read (the socket was emptied: the
 *     next byte brings a new event) unless the peer has closed (rdhup: read on
 *     to the EOF), by a partial send, by an eventfd read. An operation armed on
 *     a ready side is tried at the next reap; on a side known not to be ready
 *     it waits for the event, so re-arming a receive costs no EAGAIN syscall.
 *     A burst stops after ENG_EPOLL_BURST completions of one fd and goes on
 *     next turn, so one busy client cannot hold the shard.
 *   - Cancels, a connect's deadline and eng_close make their -ECANCELED
 *     completions at once into a queue, handed out at the next reap.
 *
 * Multishot accept and receive are loops of accept4/recv; provided buffers are
 * the same ring (core/engine.h), read here instead of by the kernel; the
 * linked timeout of a connect is a timer on the shard's heap.
 *
 * Memory: the fd table grows in chunks of 1024 entries as fds are seen (about
 * 100 bytes each), the lists with it; nothing is allocated per operation. An
 * allocation failure there is fatal (abort), as it would be for the kernel's
 * io_uring to run out of SQ space for good. */
#include "core/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ENG_EPOLL_CHUNK_BITS 10
#define ENG_EPOLL_CHUNK      (1u << ENG_EPOLL_CHUNK_BITS)
#define ENG_EPOLL_EVENTS     256
#define ENG_EPOLL_BURST      32

/* Why an fd is tried this turn. */
enum {
    TRY_RD = 1,      /* the reading side */
    TRY_WR = 2,      /* the writing side */
};

typedef struct epe_op {
    uint64_t    ud;
    void       *p;            /* READ: into; SEND: from; CONNECT: the address */
    eng_bufs_t *bufs;         /* RECV, RECV_MULTI */
    uint32_t    len;
    uint8_t     kind;         /* enum eng_epoll_kind, ENG_EPOLL_NONE when none */
    bool        started;      /* CONNECT: connect() said EINPROGRESS */
} epe_op_t;

typedef struct epe_fd {
    epe_op_t          rd, wr;
    agate_timer_t     deadline;     /* CONNECT's, when started */
    uint64_t          timeout_ms;
    struct eng_epoll *ep;           /* for the deadline's callback */
    uint8_t           try;
    bool              registered;   /* in the epoll set */
    bool              nonblock;     /* O_NONBLOCK set by us (accept, read, connect need it) */
    bool              rd_ready;     /* may be readable: no EAGAIN (or short read) since the last event */
    bool              wr_ready;     /* may be writable: no EAGAIN (or partial send) since the last event */
    bool              rdhup;        /* the peer closed (or an error): read to EAGAIN or EOF */
    bool              in_pend, in_work;
} epe_fd_t;

typedef struct eng_epoll {
    int             epfd;
    timer_heap_t   *timers;
    const uint64_t *now_ms;
    epe_fd_t      **chunk;          /* chunk[fd >> BITS][fd & (CHUNK - 1)] */
    uint32_t        n_chunks;
    int            *pend, *work;    /* fds to try: armed since the last wait; this reap's */
    uint32_t        n_pend, n_work;
    eng_cqe_t      *cq, *cq_ready;  /* made completions: queued; this reap's */
    uint32_t        n_cq, n_cq_ready, cap_cq;
    int             submitted;      /* operations armed since the last wait */
    struct epoll_event ev[ENG_EPOLL_EVENTS];
} eng_epoll_t;

static void oom(void)
{
    fputs("agate: out of memory in the epoll engine\n", stderr);
    abort();
}

/* ---- the fd table and the lists ---- */

static epe_fd_t *entry(eng_epoll_t *ep, int fd)
{
    uint32_t c = (uint32_t)fd >> ENG_EPOLL_CHUNK_BITS;
    if (c < ep->n_chunks && ep->chunk[c])
        return &ep->chunk[c][(uint32_t)fd & (ENG_EPOLL_CHUNK - 1)];
    return NULL;
}

/* The entry of fd, its chunk made when new. Each fd is on each list at most
 * once, so the lists and the made completions (two per fd at most, plus
 * cancels of nothing) are sized with the table: they never grow elsewhere. */
static epe_fd_t *entry_make(eng_epoll_t *ep, int fd)
{
    epe_fd_t *e = entry(ep, fd);
    if (e)
        return e;
    uint32_t c = (uint32_t)fd >> ENG_EPOLL_CHUNK_BITS;
    if (c >= ep->n_chunks) {
        uint32_t n = c + 1;
        epe_fd_t **chunk = realloc(ep->chunk, n * sizeof *chunk);
        if (!chunk)
            oom();
        memset(chunk + ep->n_chunks, 0, (n - ep->n_chunks) * sizeof *chunk);
        ep->chunk = chunk;
        size_t fds = (size_t)n * ENG_EPOLL_CHUNK;
        int *pend = realloc(ep->pend, fds * sizeof *pend);
        if (!pend)
            oom();
        ep->pend = pend;
        int *work = realloc(ep->work, fds * sizeof *work);
        if (!work)
            oom();
        ep->work = work;
        ep->n_chunks = n;
    }
    ep->chunk[c] = calloc(ENG_EPOLL_CHUNK, sizeof(epe_fd_t));
    if (!ep->chunk[c])
        oom();
    return &ep->chunk[c][(uint32_t)fd & (ENG_EPOLL_CHUNK - 1)];
}

static void cq_push(eng_epoll_t *ep, uint64_t ud, int res, uint32_t flags)
{
    if (ep->n_cq == ep->cap_cq) {
        /* Both queues swap at each wait: grow them together. */
        uint32_t cap = ep->cap_cq ? ep->cap_cq * 2 : 256;
        eng_cqe_t *a = realloc(ep->cq, cap * sizeof *a), *b;
        if (!a)
            oom();
        ep->cq = a;
        b = realloc(ep->cq_ready, cap * sizeof *b);
        if (!b)
            oom();
        ep->cq_ready = b;
        ep->cap_cq = cap;
    }
    eng_cqe_t *c = &ep->cq[ep->n_cq++];
    memset(c, 0, sizeof *c);
    c->user_data = ud;
    c->res = res;
    c->flags = flags;
}

static void list_pend(eng_epoll_t *ep, int fd, epe_fd_t *e, uint8_t why)
{
    e->try |= why;
    if (!e->in_pend) {
        e->in_pend = true;
        ep->pend[ep->n_pend++] = fd;
    }
}

static void list_work(eng_epoll_t *ep, int fd, epe_fd_t *e)
{
    if (!e->in_work) {
        e->in_work = true;
        ep->work[ep->n_work++] = fd;
    }
}

/* ---- arming ---- */

static void deadline_fired(agate_timer_t *t)
{
    epe_fd_t *e = (epe_fd_t *)((char *)t - offsetof(epe_fd_t, deadline));
    if (e->wr.kind != ENG_EPOLL_CONNECT)
        return;
    uint64_t ud = e->wr.ud;
    e->wr.kind = ENG_EPOLL_NONE;
    cq_push(e->ep, ud, -ECANCELED, 0);
}

static int join_set(eng_epoll_t *ep, int fd, epe_fd_t *e, bool nonblock)
{
    if (nonblock && !e->nonblock) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK)))
            return -errno;
        e->nonblock = true;
    }
    if (e->registered)
        return 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = fd};
    if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) && errno != EEXIST)
        return -errno;
    e->registered = true;
    e->rd_ready = e->wr_ready = true;   /* unknown: try */
    e->rdhup = false;
    return 0;
}

void eng_epoll_submit(eng_epoll_t *ep, int fd, enum eng_epoll_kind kind, uint64_t ud, void *p, uint32_t len,
                      eng_bufs_t *bufs, uint64_t timeout_ms)
{
    ep->submitted++;
    if (fd < 0) {
        cq_push(ep, ud, -EBADF, 0);
        return;
    }
    epe_fd_t *e = entry_make(ep, fd);
    bool rd = kind < ENG_EPOLL_SEND;
    epe_op_t *op = rd ? &e->rd : &e->wr;
    if (op->kind != ENG_EPOLL_NONE) {
        cq_push(ep, ud, -EBUSY, 0);   /* a second operation on one side: the modules never ask for one */
        return;
    }
    int rc = join_set(ep, fd, e, kind == ENG_EPOLL_ACCEPT || kind == ENG_EPOLL_READ || kind == ENG_EPOLL_CONNECT);
    if (rc) {
        cq_push(ep, ud, rc, 0);
        return;
    }
    e->ep = ep;
    *op = (epe_op_t){.ud = ud, .p = p, .bufs = bufs, .len = len, .kind = (uint8_t)kind};
    if (kind == ENG_EPOLL_CONNECT) {
        e->timeout_ms = timeout_ms;
        e->deadline.cb = deadline_fired;
    }
    /* Tried at the next reap when the side may be ready (its event may have
     * come already); else its event will list it. A connect is always tried:
     * it must be started. */
    if (rd ? e->rd_ready : (e->wr_ready || kind == ENG_EPOLL_CONNECT))
        list_pend(ep, fd, e, rd ? TRY_RD : TRY_WR);
}

static void end_op(eng_epoll_t *ep, epe_fd_t *e, epe_op_t *op)
{
    if (op->kind == ENG_EPOLL_CONNECT)
        timer_cancel(ep->timers, &e->deadline);
    op->kind = ENG_EPOLL_NONE;
}

void eng_epoll_cancel(eng_epoll_t *ep, int fd, uint64_t ud)
{
    epe_fd_t *e = fd >= 0 ? entry(ep, fd) : NULL;
    if (!e)
        return;
    epe_op_t *ops[2] = {&e->rd, &e->wr};
    for (int i = 0; i < 2; i++)
        if (ops[i]->kind != ENG_EPOLL_NONE && ops[i]->ud == ud) {
            end_op(ep, e, ops[i]);
            cq_push(ep, ud, -ECANCELED, 0);
        }
}

void eng_epoll_forget(eng_epoll_t *ep, int fd)
{
    epe_fd_t *e = fd >= 0 ? entry(ep, fd) : NULL;
    if (!e)
        return;
    epe_op_t *ops[2] = {&e->rd, &e->wr};
    for (int i = 0; i < 2; i++)
        if (ops[i]->kind != ENG_EPOLL_NONE) {
            uint64_t ud = ops[i]->ud;
            end_op(ep, e, ops[i]);
            cq_push(ep, ud, -ECANCELED, 0);
        }
    /* close() takes the fd out of the epoll set; the list flags stay, as the
     * fd may still be listed (a later turn finds nothing armed). */
    e->registered = e->nonblock = e->rdhup = false;
    e->try = 0;
}

/* ---- waiting ---- */

int eng_epoll_wait(eng_epoll_t *ep, uint64_t timeout_ms)
{
    for (uint32_t i = 0; i < ep->n_pend; i++) {
        int fd = ep->pend[i];
        epe_fd_t *e = entry(ep, fd);
        e->in_pend = false;
        list_work(ep, fd, e);
    }
    ep->n_pend = 0;
    eng_cqe_t *t = ep->cq_ready;
    ep->cq_ready = ep->cq;
    ep->n_cq_ready = ep->n_cq;
    ep->cq = t;
    ep->n_cq = 0;

    int ms = ep->n_work || ep->n_cq_ready ? 0 : timeout_ms >= (uint64_t)INT32_MAX ? -1 : (int)timeout_ms;
    int n = epoll_wait(ep->epfd, ep->ev, ENG_EPOLL_EVENTS, ms);
    for (int i = 0; i < n; i++) {
        uint32_t m = ep->ev[i].events;
        int fd = ep->ev[i].data.fd;
        epe_fd_t *e = entry(ep, fd);
        if (!e)
            continue;
        uint8_t why = 0;
        if (m & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            e->rd_ready = true;
            why |= TRY_RD;
        }
        if (m & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            e->rdhup = true;
        if (m & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
            e->wr_ready = true;
            why |= TRY_WR;
        }
        if (((why & TRY_RD) && e->rd.kind) || ((why & TRY_WR) && e->wr.kind)) {
            e->try |= why;
            list_work(ep, fd, e);
        }
    }
    int submitted = ep->submitted;
    ep->submitted = 0;
    return n < 0 && errno != EINTR ? -errno : submitted;
}

/* ---- reaping: the syscalls, each followed by its completion ---- */

typedef void (*reap_fn)(void *ctx, eng_cqe_t *cqe);

static void deliver(reap_fn fn, void *ctx, uint64_t ud, int res, uint32_t flags)
{
    eng_cqe_t c;
    memset(&c, 0, sizeof c);
    c.user_data = ud;
    c.res = res;
    c.flags = flags;
    fn(ctx, &c);
}

/* Ends the armed operation (before its handler runs: it may arm the next). */
static void finish(eng_epoll_t *ep, epe_fd_t *e, epe_op_t *op, reap_fn fn, void *ctx, int res, uint32_t flags)
{
    uint64_t ud = op->ud;
    end_op(ep, e, op);
    deliver(fn, ctx, ud, res, flags);
}

/* The next buffer of b without taking it; -1 when every one is out. */
static int bufs_peek(const eng_bufs_t *b)
{
    uint16_t tail = __atomic_load_n(&b->br->tail, __ATOMIC_ACQUIRE);
    if (b->head == tail)
        return -1;
    return b->br->bufs[b->head & b->mask].bid;
}

static inline bool same_op(const epe_op_t *op, uint8_t kind, uint64_t ud) { return op->kind == kind && op->ud == ud; }

static unsigned do_accept(eng_epoll_t *ep, int fd, epe_fd_t *e, reap_fn fn, void *ctx)
{
    uint64_t ud = e->rd.ud;
    unsigned n = 0;
    while (same_op(&e->rd, ENG_EPOLL_ACCEPT, ud)) {
        if (n == ENG_EPOLL_BURST) {
            list_pend(ep, fd, e, TRY_RD);
            break;
        }
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) {
            deliver(fn, ctx, ud, c, ENG_CQE_MORE);
            n++;
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN) {
            e->rd_ready = false;
            break;
        }
        finish(ep, e, &e->rd, fn, ctx, -errno, 0);
        n++;
        break;
    }
    return n;
}

static unsigned do_recv(eng_epoll_t *ep, int fd, epe_fd_t *e, reap_fn fn, void *ctx)
{
    uint8_t kind = e->rd.kind;
    uint64_t ud = e->rd.ud;
    unsigned n = 0;
    while (same_op(&e->rd, kind, ud)) {
        if (n == ENG_EPOLL_BURST) {
            list_pend(ep, fd, e, TRY_RD);
            break;
        }
        eng_bufs_t *b = e->rd.bufs;
        int bid = bufs_peek(b);
        if (bid < 0) {
            finish(ep, e, &e->rd, fn, ctx, -ENOBUFS, 0);
            return n + 1;
        }
        ssize_t r = recv(fd, eng_bufs_addr(b, (uint16_t)bid), b->size, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN) {
            e->rd_ready = false;
            break;
        }
        n++;
        if (r <= 0) {
            finish(ep, e, &e->rd, fn, ctx, r ? -errno : 0, 0);
            break;
        }
        b->head++;
        uint32_t flags = ENG_CQE_BUFFER | (uint32_t)bid << IORING_CQE_BUFFER_SHIFT;
        if (kind == ENG_EPOLL_RECV) {
            if ((size_t)r < b->size && !e->rdhup)
                e->rd_ready = false;
            finish(ep, e, &e->rd, fn, ctx, (int)r, flags);
            break;
        }
        bool emptied = (size_t)r < b->size && !e->rdhup;   /* the next byte brings an event */
        if (emptied)
            e->rd_ready = false;
        deliver(fn, ctx, ud, (int)r, flags | ENG_CQE_MORE);
        if (emptied)
            break;
    }
    return n;
}

static unsigned do_read(eng_epoll_t *ep, int fd, epe_fd_t *e, reap_fn fn, void *ctx)
{
    ssize_t r;
    do
        r = read(fd, e->rd.p, e->rd.len);
    while (r < 0 && errno == EINTR);
    /* An eventfd: a read takes the whole count, so it is not readable again
     * until the next write, which brings an event. */
    e->rd_ready = false;
    if (r < 0 && errno == EAGAIN)
        return 0;
    finish(ep, e, &e->rd, fn, ctx, r < 0 ? -errno : (int)r, 0);
    return 1;
}

static unsigned do_send(eng_epoll_t *ep, int fd, epe_fd_t *e, reap_fn fn, void *ctx)
{
    ssize_t r;
    do
        r = send(fd, e->wr.p, e->wr.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if ((r < 0 && errno == EAGAIN) || (r >= 0 && (size_t)r < e->wr.len))
        e->wr_ready = false;   /* the socket is full; room brings an event */
    if (r < 0 && errno == EAGAIN)
        return 0;
    finish(ep, e, &e->wr, fn, ctx, r < 0 ? -errno : (int)r, 0);
    return 1;
}

static unsigned do_connect(eng_epoll_t *ep, int fd, epe_fd_t *e, reap_fn fn, void *ctx)
{
    epe_op_t *op = &e->wr;
    if (!op->started) {
        if (!connect(fd, op->p, op->len)) {
            finish(ep, e, op, fn, ctx, 0, 0);
            return 1;
        }
        if (errno != EINPROGRESS && errno != EINTR) {
            finish(ep, e, op, fn, ctx, -errno, 0);
            return 1;
        }
        op->started = true;
        e->wr_ready = false;   /* its completion brings an event */
        if (timer_arm(ep->timers, &e->deadline, *ep->now_ms + e->timeout_ms)) {
            finish(ep, e, op, fn, ctx, -ENOMEM, 0);
            return 1;
        }
        return 0;
    }
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el))
        err = errno;
    if (!err) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getpeername(fd, (struct sockaddr *)&ss, &sl)) {
            /* Not connected and no error: still in progress (woken by something
             * else), unless the event said hang-up, which must end it even if
             * the kernel left no error to read (a shutdown() while connecting
             * leaves ECONNRESET today). */
            if (errno == ENOTCONN && !e->rdhup)
                return 0;
            err = errno == ENOTCONN ? ECONNABORTED : errno;
        }
    }
    finish(ep, e, op, fn, ctx, -err, 0);
    return 1;
}

unsigned eng_epoll_reap(eng_epoll_t *ep, reap_fn fn, void *ctx)
{
    unsigned n = ep->n_cq_ready;
    for (uint32_t i = 0; i < ep->n_cq_ready; i++)
        fn(ctx, &ep->cq_ready[i]);
    ep->n_cq_ready = 0;
    for (uint32_t i = 0; i < ep->n_work; i++) {
        int fd = ep->work[i];
        epe_fd_t *e = entry(ep, fd);
        e->in_work = false;
        uint8_t why = e->try;
        e->try = 0;
        if (why & TRY_RD) {
            switch (e->rd.kind) {
            case ENG_EPOLL_ACCEPT:     n += do_accept(ep, fd, e, fn, ctx); break;
            case ENG_EPOLL_RECV_MULTI:
            case ENG_EPOLL_RECV:       n += do_recv(ep, fd, e, fn, ctx); break;
            case ENG_EPOLL_READ:       n += do_read(ep, fd, e, fn, ctx); break;
            default:                   break;
            }
        }
        if (why & TRY_WR) {
            if (e->wr.kind == ENG_EPOLL_SEND)
                n += do_send(ep, fd, e, fn, ctx);
            else if (e->wr.kind == ENG_EPOLL_CONNECT)
                n += do_connect(ep, fd, e, fn, ctx);
        }
    }
    ep->n_work = 0;
    return n;
}

/* ---- life ---- */

eng_epoll_t *eng_epoll_new(timer_heap_t *timers, const uint64_t *now_ms)
{
    eng_epoll_t *ep = calloc(1, sizeof *ep);
    if (!ep)
        return NULL;
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ep->epfd < 0) {
        free(ep);
        return NULL;
    }
    ep->timers = timers;
    ep->now_ms = now_ms;
    return ep;
}

void eng_epoll_free(eng_epoll_t *ep)
{
    if (!ep)
        return;
    for (uint32_t c = 0; c < ep->n_chunks; c++) {
        if (!ep->chunk[c])
            continue;
        for (uint32_t i = 0; i < ENG_EPOLL_CHUNK; i++)
            timer_cancel(ep->timers, &ep->chunk[c][i].deadline);   /* it points into the table */
        free(ep->chunk[c]);
    }
    free(ep->chunk);
    free(ep->pend);
    free(ep->work);
    free(ep->cq);
    free(ep->cq_ready);
    close(ep->epfd);
    free(ep);
}
