/* conns: a shard's client connections, as a shard module (core/shard.h): its
 * listening sockets, the slab of connection slots, the completions of accept,
 * receive and send, the lists worked through at the end of each loop turn
 * (connections with output to send, aborted ones to free), drain and
 * teardown. */
#ifndef AGATE_CONNS_H
#define AGATE_CONNS_H

#include <stdint.h>

#include "core/shard.h"
#include "core/slab.h"
#include "core/timer.h"

struct conn;

enum { CONNS_LISTEN_MAIN = 0, CONNS_LISTEN_ADMIN = 1 };

/* A listening socket and its multishot accept. An accept that fails (EMFILE:
 * out of descriptors) is not re-armed at once, which would spin: it waits
 * backoff_ms, doubled while it keeps failing, or until one of this shard's
 * connections closes and gives a descriptor back. */
typedef struct conns_listener {
    int           fd;               /* owned; -1 when closed or disabled */
    uint8_t       which;            /* CONNS_LISTEN_MAIN or _ADMIN */
    uint32_t      backoff_ms;       /* the last pause after a failed accept; 0 after one succeeds */
    agate_timer_t retry;            /* armed while the accept waits out backoff_ms */
    shard_t      *sh;
} conns_listener_t;

typedef struct conns {
    slab_t       slab;              /* conn_t slots: max_connections and a reserve, to answer 503 */
    conns_listener_t lis[2];
    uint8_t      n_waiting;         /* listeners whose accept waits out a back-off */
    uint32_t     n_main, n_admin;   /* open connections per listener */
    struct conn *flush_head;        /* connections with output to send this turn */
    struct conn *reap_head;         /* aborted connections to free once idle */
} conns_t;

extern unsigned g_conns_mod;                 /* this module's index in shard_t.mod */
extern uint8_t  g_conns_op_recv, g_conns_op_send;

static inline conns_t *conns_of(const shard_t *sh) { return (conns_t *)sh->mod[g_conns_mod]; }

/* Main thread, at start-up: registers the module and its completion kinds. */
void conns_register(void);

/* For tests and fuzzers that drive connections without a loop: the state a
 * shard's `open` and `init` would make, with cap slots and no listeners. */
int  conns_attach(shard_t *sh, conns_t *cs, uint32_t cap);
void conns_detach(shard_t *sh);

/* A connection of this shard gave its descriptor back: an accept waiting out
 * a back-off is tried again now (net/conn.c, conn_reap). */
void conns_resume_accept(shard_t *sh);

#endif
