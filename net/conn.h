/* conn: one client connection and its I/O, driven by the shard engine's completions.
 *
 * States (see docs/ARCHITECTURE.md):
 *   OPEN     reading requests and writing responses (HTTP/1.1, keep-alive)
 *   CLOSING  last response queued: flush it, then half-close (FIN)
 *   LINGER   FIN sent; read and discard until EOF or a short timer, so the
 *            client sees our last response instead of a reset
 *   ABORT    shut down; the slot is freed once no operation is in flight
 *   FREE     slot unused
 * The conn owns its fd, its output buffers and its pending input. A slot is
 * reused only after every SQE naming it has completed (inflight == 0), so a late
 * completion can never touch another connection's memory. */
#ifndef AGATE_CONN_H
#define AGATE_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/ratelimit.h"
#include "core/shard.h"
#include "core/slab.h"
#include "core/timer.h"
#include "net/http1.h"

typedef enum conn_state { CONN_FREE, CONN_OPEN, CONN_CLOSING, CONN_LINGER, CONN_ABORT } conn_state_t;

/* A keep-alive connection idle this long gives its buffers back (CONN_T_TRIM,
 * then CONN_T_IDLE until idle_timeout): a busy one reuses them request after
 * request, an idle one holds nothing but its slot. */
#define CONN_TRIM_MS 2000

typedef enum conn_timer_kind {
    CONN_T_NONE, CONN_T_HEADER, CONN_T_BODY, CONN_T_TRIM, CONN_T_IDLE, CONN_T_STALL, CONN_T_LINGER
} conn_timer_kind_t;

/* An API key that net/access.c verified on this connection, kept so the next
 * request presenting the same bytes skips SHA-256. Raw key bytes: never logged,
 * wiped (explicit_bzero) when the connection closes. */
typedef struct conn_key_memo {
    uint64_t policy;    /* serial of the access policy it matched under */
    uint32_t idx;       /* index of the matching api_keys entry */
    uint8_t  len;       /* 0: nothing remembered */
    char     key[64];
} conn_key_memo_t;

struct conn;

/* What the protocol spoken on a connection does with it: HTTP/1.1 from the
 * accept (net/http1.c), WebSocket after an upgrade (net/ws.c, which sets it
 * with conn_set_proto). conn.c calls these and knows no protocol itself. */
typedef struct conn_proto {
    void (*input)(struct conn *c, const char *data, size_t n);   /* bytes received */
    void (*pending)(struct conn *c);     /* what waited in c->pending may be read now */
    void (*sent)(struct conn *c);        /* a send completed: output went down */
    bool (*busy)(const struct conn *c);  /* work that keeps the connection's buffers (no trim) */
    void (*drain)(struct conn *c);       /* optional: graceful shutdown began, the connection is not idle */
    void (*abort)(struct conn *c);       /* the connection is being aborted: stop what runs on it */
    void (*free)(struct conn *c);        /* optional: the slot is being freed */
} conn_proto_t;

typedef struct conn {
    slab_item_t   item;               /* first: slot and generation in the shard's slab (net/conns.c) */
    shard_t      *sh;
    int           fd;                 /* owned */
    conn_state_t  state;
    uint8_t       inflight;           /* SQEs naming this slot not yet completed */
    bool          admin;              /* accepted on the admin listener */
    bool          over_cap;           /* accepted past max_connections: answer 503 */
    bool          recv_armed, recv_paused, send_inflight, in_flush, in_reap, in_feed;

    const conn_proto_t *proto;        /* http1_proto until an upgrade hands the connection on */
    http_conn_t   http;               /* parser and current request */
    buf_t         pending;            /* input received while a response is running */

    buf_t         out[2];             /* out[sending] is with the kernel, the other fills */
    uint8_t       sending;
    size_t        sent;               /* bytes of out[sending] the kernel has taken */
    size_t        chunk_off;          /* start of the open chunk's size placeholder */
    bool          chunk_open;
    uint64_t      last_progress_ms;   /* last send completion, for stall detection */

    agate_timer_t     timer;
    conn_timer_kind_t timer_kind;
    agate_timer_t     hb_timer;       /* SSE heartbeat */
    uint64_t          last_event_ms;

    struct run   *run;                /* the streaming run, owned while set */
    struct ws_conn *ws;               /* WebSocket state once upgraded, owned by net/ws.c */
    rl_quota_t    quota;              /* RateLimit-* for the next response head (net/access_http.c) */
    uint8_t       who[16];            /* the run's caller, for a resumable run (net/access_http.c) */
    bool          who_set;            /* false: anonymous, or auth is off */
    int16_t            run_slot;      /* agent slot of the current request's run, for its span; -1 none */
    conn_key_memo_t key_memo;         /* the API key it presented last (net/access.c); wiped at close */
    char          peer[46];           /* client address text (INET6_ADDRSTRLEN), for X-Forwarded-For */
    uint8_t       peer_len;           /* 0: not looked up yet on this connection (conn_peer) */
    struct conn  *flush_next;         /* shard flush list, linked while in_flush */
    struct conn  *reap_next;          /* shard reap list, linked while in_reap */
} conn_t;

void conn_accept(shard_t *sh, int fd, bool admin);
/* A reference to c that outlives it (slot and generation: slab_ud), and the
 * live connection it names on sh, or NULL once that one is gone: for a reply
 * that comes back to a request after its connection may have closed. */
static inline uint64_t conn_ref(const conn_t *c) { return slab_ud(c, 0); }
conn_t *conn_lookup(shard_t *sh, uint64_t ref);
/* Initialises slab slot c without arming I/O: conn_accept's first half, also
 * used by tests and fuzzers that feed bytes directly. */
void conn_init_slot(shard_t *sh, conn_t *c, int fd, bool admin);
/* Frees the buffers a slot keeps across connections (the shard is stopping). */
void conn_free_buffers(conn_t *c);
void conn_input(conn_t *c, const char *data, size_t n);   /* received bytes */
/* Hands the connection to another protocol (an upgrade); the bytes that came
 * after the upgrade request wait in c->pending for its `pending`. */
void conn_set_proto(conn_t *c, const conn_proto_t *proto);
/* Stops reading (cancels the recv); it is armed again once `pending` is read
 * and the output is under half of stream.buffer (conn.c, resume_recv). */
void conn_pause_recv(conn_t *c);
/* Whether the queued output has reached stream.buffer: the protocol parses no
 * more input until the client reads (the send completion under half of it
 * feeds `pending` again). */
bool conn_out_full(const conn_t *c);
/* Keeps input the protocol cannot read now in `pending`, and stops the recv
 * when the output is full or pending passes `limit` (a WebSocket passes 0:
 * it holds input only for its output). */
void conn_hold_input(conn_t *c, const char *data, size_t n, size_t limit);
/* What a send completion does once its bytes are counted: held input is read
 * again under half of the bound, then the protocol's `sent`. Called by
 * conn_on_send, and by tests/support/fakeconn.h after a simulated send. */
void conn_after_send(conn_t *c);
void conn_on_recv(conn_t *c, eng_cqe_t *cqe);
void conn_on_send(conn_t *c, int res);
void conn_flush(conn_t *c);                   /* from the shard loop */

/* Output side, for http1/sse. */
static inline buf_t *conn_fill(conn_t *c) { return &c->out[c->sending ^ 1]; }
size_t conn_out_pending(const conn_t *c);
void conn_mark_dirty(conn_t *c);
void conn_body_open(conn_t *c);               /* chunked: open a chunk if none is open */
void conn_body_close(conn_t *c);              /* chunked: frame the open chunk */
void conn_close_after_flush(conn_t *c);
void conn_abort(conn_t *c);
void conn_set_timer(conn_t *c, conn_timer_kind_t kind, uint32_t ms);
void conn_response_finished(conn_t *c);      /* the current response is fully queued */
bool conn_is_idle(const conn_t *c);
/* The client's address as text in c->peer ("unknown" when it cannot be had),
 * looked up on first use and kept; true when known. */
bool conn_peer(conn_t *c);
void conn_reap(conn_t *c);                    /* frees an ABORT slot with nothing in flight */

#endif
