/* engine_epoll: the epoll backend of core/engine.h (see engine_epoll.c).
 * Called through engine.h's operations; nothing else uses it directly. */
#ifndef AGATE_ENGINE_EPOLL_H
#define AGATE_ENGINE_EPOLL_H

#include <stdint.h>

struct eng_epoll;
struct eng_bufs;
struct io_uring_cqe;
struct timer_heap;

/* The operation kinds an fd can have armed: one reading, one writing. */
enum eng_epoll_kind {
    ENG_EPOLL_NONE,
    ENG_EPOLL_ACCEPT,       /* reading side */
    ENG_EPOLL_RECV_MULTI,
    ENG_EPOLL_RECV,
    ENG_EPOLL_READ,
    ENG_EPOLL_SEND,         /* writing side */
    ENG_EPOLL_CONNECT,
};

struct eng_epoll *eng_epoll_new(struct timer_heap *timers, const uint64_t *now_ms);
void eng_epoll_free(struct eng_epoll *ep);
/* Arms an operation on fd (p/len: the bytes, the address; bufs: where a
 * receive goes; timeout_ms: a connect's deadline). */
void eng_epoll_submit(struct eng_epoll *ep, int fd, enum eng_epoll_kind kind, uint64_t ud, void *p, uint32_t len,
                      struct eng_bufs *bufs, uint64_t timeout_ms);
void eng_epoll_cancel(struct eng_epoll *ep, int fd, uint64_t ud);
void eng_epoll_forget(struct eng_epoll *ep, int fd);
int  eng_epoll_wait(struct eng_epoll *ep, uint64_t timeout_ms);
unsigned eng_epoll_reap(struct eng_epoll *ep, void (*fn)(void *ctx, struct io_uring_cqe *cqe), void *ctx);
/* Buffers an epoll pool keeps: one is out at a time (a completion's handler
 * gives it back before the next receive). */
#define ENG_EPOLL_BUFS 4u

#endif
