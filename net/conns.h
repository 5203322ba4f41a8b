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

struct conn;

enum { CONNS_LISTEN_MAIN = 0, CONNS_LISTEN_ADMIN = 1 };

typedef struct conns {
    slab_t       slab;              /* conn_t slots: max_connections and a reserve, to answer 503 */
    int          listen_fd[2];      /* owned; -1 when closed or disabled */
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

#endif
