/* engine: the seam between a shard and the kernel's I/O interface.
 *
 * A shard's modules ask for operations (accept, receive into the shard's
 * provided buffers, send, read, connect with a deadline, cancel) and get
 * completions back, each carrying the operation's user_data, a result and
 * flags with io_uring's meaning: ENG_CQE_MORE while a multishot operation goes
 * on, a buffer id with ENG_CQE_BUFFER, -ECANCELED for a cancelled operation.
 * Two backends make them:
 *
 *   io_uring (core/uring.c)        an operation is an SQE; the kernel does the
 *                                  I/O and posts the CQE. The engine agate is
 *                                  built for.
 *   epoll (core/engine_epoll.c)    an operation is remembered on its fd; when
 *                                  the fd is ready the engine makes the
 *                                  syscall and the same completion.
 *
 * Completions are dispatched by the shard loop (core/shard.c) as before: by
 * the kind packed in user_data. Each operation is an inline function with one
 * branch on the backend, taken the same way for the life of the process, so
 * the io_uring path compiles to the SQE it always was.
 *
 * user_data packs the operation kind (8 bits), a generation (24 bits) and a
 * slot index (32 bits): a completion for a slot that was closed and reused
 * carries an old generation and is recognised as stale (core/slab.h). */
#ifndef AGATE_ENGINE_H
#define AGATE_ENGINE_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/timer.h"

/* ---- user_data ---- */

/* Operation kinds core itself uses; the others are handed out by
 * shard_op_register (core/shard.h) to the modules that submit them. */
enum eng_op {
    UD_NONE = 0,
    UD_WAKE,           /* eventfd read: the main thread asks for drain, stop or a turn */
    UD_IGNORE,         /* completions nobody waits for (cancels, a connect's deadline) */
    UD_FIRST_FREE,     /* the first kind shard_op_register hands out */
    UD_OP_MAX = 64,
};

static inline uint64_t eng_ud(uint8_t op, uint32_t gen, uint32_t slot)
{
    return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffffu) << 32 | slot;
}
static inline uint8_t eng_ud_op(uint64_t ud) { return (uint8_t)(ud >> 56); }
static inline uint32_t eng_ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffffu; }
static inline uint32_t eng_ud_slot(uint64_t ud) { return (uint32_t)ud; }

/* ---- completions ---- */

/* io_uring's CQE layout; the epoll backend fills one in itself. */
typedef struct io_uring_cqe eng_cqe_t;
#define ENG_CQE_MORE   IORING_CQE_F_MORE     /* a multishot operation is still armed */
#define ENG_CQE_BUFFER IORING_CQE_F_BUFFER   /* res bytes are in provided buffer eng_cqe_bid() */

static inline uint64_t eng_cqe_ud(const eng_cqe_t *c) { return c->user_data; }
static inline bool eng_cqe_more(const eng_cqe_t *c) { return c->flags & ENG_CQE_MORE; }
static inline bool eng_cqe_has_buf(const eng_cqe_t *c) { return c->flags & ENG_CQE_BUFFER; }
static inline uint16_t eng_cqe_bid(const eng_cqe_t *c) { return (uint16_t)(c->flags >> IORING_CQE_BUFFER_SHIFT); }

/* ---- the engine ---- */

typedef enum eng_backend { ENG_IO_URING = 1, ENG_EPOLL = 2 } eng_backend_t;

struct eng_epoll;
typedef struct eng {
    struct io_uring   ring;   /* ENG_IO_URING */
    struct eng_epoll *ep;     /* ENG_EPOLL; NULL under io_uring, which is the branch every operation takes */
} eng_t;

/* A pool of receive buffers, `count` of `size` bytes, handed out per completion
 * and given back with eng_bufs_recycle() once the bytes are consumed. Under
 * io_uring it is a provided-buffer ring registered as group `bgid` (the kernel
 * picks a buffer per recv); under epoll the same ring, read by the engine, with
 * a few buffers (one is ever out at a time). */
typedef struct eng_bufs {
    struct io_uring_buf_ring *br;
    char    *mem;
    uint32_t count, size, mask;
    uint16_t bgid;
    uint16_t head;        /* epoll: the next buffer the engine hands out */
} eng_bufs_t;

static inline char *eng_bufs_addr(const eng_bufs_t *b, uint16_t bid) { return b->mem + (size_t)bid * b->size; }
static inline void eng_bufs_recycle(eng_bufs_t *b, uint16_t bid)
{
    io_uring_buf_ring_add(b->br, eng_bufs_addr(b, bid), b->size, bid, (int)b->mask, 0);
    io_uring_buf_ring_advance(b->br, 1);
}

/* Sets the engine up on this thread (the shard's): io_uring's ring, or an
 * epoll set whose connect deadlines live on `timers` at `*now_ms`. 0 or -errno. */
int  eng_init(eng_t *e, eng_backend_t backend, timer_heap_t *timers, const uint64_t *now_ms);
void eng_exit(eng_t *e);
static inline eng_backend_t eng_backend(const eng_t *e) { return e->ep ? ENG_EPOLL : ENG_IO_URING; }
int  eng_bufs_init(eng_t *e, eng_bufs_t *b, uint16_t bgid, uint32_t count, uint32_t size);
void eng_bufs_free(eng_t *e, eng_bufs_t *b);

#include "core/engine_epoll.h"

#define ENG_EPOLL_PATH(e) __builtin_expect((e)->ep != NULL, 0)

/* An SQE, submitting queued ones first when the ring is full. io_uring only. */
static inline struct io_uring_sqe *eng_sqe(eng_t *e)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
    while (!sqe) {
        io_uring_submit(&e->ring);
        sqe = io_uring_get_sqe(&e->ring);
    }
    return sqe;
}

/* ---- operations: each completes once with user_data ud, or many times with
 * ENG_CQE_MORE for the multishot ones. They are issued at the next
 * eng_submit_and_wait, never inside the call, so no handler runs within it. */

/* Each accepted fd (res) with ENG_CQE_MORE; an error ends it (no MORE). */
static inline void eng_accept_multishot(eng_t *e, int fd, uint64_t ud)
{
    if (ENG_EPOLL_PATH(e)) {
        eng_epoll_submit(e->ep, fd, ENG_EPOLL_ACCEPT, ud, NULL, 0, NULL, 0);
        return;
    }
    struct io_uring_sqe *sqe = eng_sqe(e);
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud);
}

/* Bytes as they come, each in a buffer of b (ENG_CQE_BUFFER), with
 * ENG_CQE_MORE; EOF (0), an error, -ENOBUFS or a cancel ends it. */
static inline void eng_recv_multishot(eng_t *e, int fd, eng_bufs_t *b, uint64_t ud)
{
    if (ENG_EPOLL_PATH(e)) {
        eng_epoll_submit(e->ep, fd, ENG_EPOLL_RECV_MULTI, ud, NULL, 0, b, 0);
        return;
    }
    struct io_uring_sqe *sqe = eng_sqe(e);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = b->bgid;
    io_uring_sqe_set_data64(sqe, ud);
}

/* One receive into a buffer of b. */
static inline void eng_recv(eng_t *e, int fd, eng_bufs_t *b, uint64_t ud)
{
    if (ENG_EPOLL_PATH(e)) {
        eng_epoll_submit(e->ep, fd, ENG_EPOLL_RECV, ud, NULL, 0, b, 0);
        return;
    }
    struct io_uring_sqe *sqe = eng_sqe(e);
    io_uring_prep_recv(sqe, fd, NULL, b->size, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = b->bgid;
    io_uring_sqe_set_data64(sqe, ud);
}

/* One send (MSG_NOSIGNAL); res may be short. p stays valid until it completes. */
static inline void eng_send(eng_t *e, int fd, const void *p, size_t n, uint64_t ud)
{
    if (ENG_EPOLL_PATH(e)) {
        eng_epoll_submit(e->ep, fd, ENG_EPOLL_SEND, ud, (void *)p, (uint32_t)n, NULL, 0);
        return;
    }
    struct io_uring_sqe *sqe = eng_sqe(e);
    io_uring_prep_send(sqe, fd, p, n, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud);
}

/* One read into p (an eventfd). */
static inline void eng_read(eng_t *e, int fd, void *p, uint32_t n, uint64_t ud)
{
    if (ENG_EPOLL_PATH(e)) {
        eng_epoll_submit(e->ep, fd, ENG_EPOLL_READ, ud, p, n, NULL, 0);
        return;
    }
    struct io_uring_sqe *sqe = eng_sqe(e);
    io_uring_prep_read(sqe, fd, p, n, 0);
    io_uring_sqe_set_data64(sqe, ud);
}

/* connect(), cancelled (-ECANCELED) when *deadline passes. addr and deadline
 * stay valid until it completes. */
static inline void eng_connect(eng_t *e, int fd, const struct sockaddr *addr, socklen_t alen,
                               struct __kernel_timespec *deadline, uint64_t ud)
{
    if (ENG_EPOLL_PATH(e)) {
        uint64_t ms = (uint64_t)deadline->tv_sec * 1000u + (uint64_t)deadline->tv_nsec / 1000000u;
        eng_epoll_submit(e->ep, fd, ENG_EPOLL_CONNECT, ud, (void *)addr, alen, NULL, ms ? ms : 1);
        return;
    }
    /* A linked timeout: the kernel cancels the connect at the deadline, no timer of ours. */
    struct io_uring_sqe *sqe = eng_sqe(e);
    io_uring_prep_connect(sqe, fd, addr, alen);
    io_uring_sqe_set_data64(sqe, ud);
    sqe->flags |= IOSQE_IO_LINK;
    sqe = eng_sqe(e);
    io_uring_prep_link_timeout(sqe, deadline, 0);
    io_uring_sqe_set_data64(sqe, eng_ud(UD_IGNORE, 0, 0));
}

/* Cancels fd's operation ud: it completes with -ECANCELED (if it had not
 * completed already). */
static inline void eng_cancel(eng_t *e, int fd, uint64_t ud)
{
    if (ENG_EPOLL_PATH(e)) {
        eng_epoll_cancel(e->ep, fd, ud);
        return;
    }
    struct io_uring_sqe *sqe = eng_sqe(e);
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, eng_ud(UD_IGNORE, 0, 0));
}

/* Closes fd, which the engine forgets (epoll: its fd table entry; an
 * operation still armed on it completes with -ECANCELED). Every fd given to an
 * operation is closed this way. */
static inline void eng_close(eng_t *e, int fd)
{
    if (ENG_EPOLL_PATH(e))
        eng_epoll_forget(e->ep, fd);
    close(fd);
}

/* Issues every operation asked for since the last call and waits until a
 * completion is ready or timeout_ms (UINT64_MAX: no limit) passes. The
 * number of operations issued, or -errno. */
static inline int eng_submit_and_wait(eng_t *e, uint64_t timeout_ms)
{
    if (ENG_EPOLL_PATH(e))
        return eng_epoll_wait(e->ep, timeout_ms);
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {.tv_sec = (long long)(timeout_ms / 1000),
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    return io_uring_submit_and_wait_timeout(&e->ring, &cqe, 1, timeout_ms == UINT64_MAX ? NULL : &ts, NULL);
}

/* Hands every ready completion to fn(ctx, cqe); how many. Inline, so the
 * shard loop's dispatch is a direct call under io_uring. */
static inline unsigned eng_reap(eng_t *e, void (*fn)(void *ctx, eng_cqe_t *cqe), void *ctx)
{
    if (ENG_EPOLL_PATH(e))
        return eng_epoll_reap(e->ep, fn, ctx);
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&e->ring, head, cqe) {
        fn(ctx, cqe);
        n++;
    }
    io_uring_cq_advance(&e->ring, n);
    return n;
}

/* ---- choosing the backend (cold: start-up) ---- */

/* What a process runs on, and why (for the start-up log line, the metric and
 * --check-config). */
typedef struct eng_choice {
    eng_backend_t backend;
    char          why[160];
} eng_choice_t;

typedef enum eng_want { ENG_WANT_AUTO, ENG_WANT_IO_URING, ENG_WANT_EPOLL } eng_want_t;

/* Main thread, before any shard starts: decides the backend every shard then
 * sets up (eng_selected). auto sets up a small ring and falls back to epoll
 * when the kernel refuses io_uring: EPERM, EACCES or ENOSYS from
 * io_uring_setup/_enter/_register (a seccomp profile, kernel.io_uring_disabled),
 * or EINVAL from a kernel too old for provided-buffer rings or multishot
 * receive (before Linux 6.0). */
void eng_select(eng_want_t want, eng_choice_t *out);
const eng_choice_t *eng_selected(void);
const char *eng_backend_name(eng_backend_t b);

#endif
