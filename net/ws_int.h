/* ws_int: what the two files of the WebSocket module share, and nothing
 * outside them may use. ws.c is the connection: the handshake, frames in,
 * closing, backpressure and the timer, and its protocol ops; ws_run.c is the
 * runs on it: admission, the per-run sink and the frames written for them.
 * net/ws.h stays the module's interface; this header is included only by
 * net/ws*.c.
 *
 * A ws_conn_t hangs off an upgraded conn_t (conn_t.ws) from the upgrade to
 * the reap. It owns the frame parser (net/wsframe.c), one timer and a fixed
 * array of run slots (ws.max_runs); a slot is free when its run is NULL, and
 * n_runs counts the others. */
#ifndef AGATE_WS_INT_H
#define AGATE_WS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/timer.h"
#include "net/access.h"
#include "net/conn.h"
#include "net/gwmetrics.h"
#include "net/ws.h"
#include "net/wsframe.h"
#include "proto/run.h"
#include "proto/runinput.h"

typedef struct ws_slot {
    run_t          *run;          /* NULL when free */
    struct ws_conn *ws;
    buf_t           body;         /* the run's RunAgentInput text, owned */
    buf_t           rid;          /* "runId":"<escaped>" for injection, owned */
    uint64_t        start_us, last_event_us;
    uint32_t        events;       /* sent, for the run's log line */
    uint32_t        gap_zero;     /* events in the same loop turn as the one before, for the gap
                                     histogram at slot_finish (see sse.c's count_event) */
} ws_slot_t;

typedef struct ws_conn {
    conn_t            *c;
    uint8_t            agent;          /* its slot: looked up in the shard's configuration per run */
    wsf_parser_t       parser;
    buf_t              tmp;            /* one gateway-built event's JSON, before framing */
    agate_timer_t      timer;
    uint64_t           last_rx_ms;     /* last byte from the peer */
    uint64_t           ping_sent_ms;   /* our unanswered ping, 0 when none */
    uint64_t           blocked_since_ms;   /* output went over the bound, 0 when under */
    uint64_t           close_at_ms;    /* after our close frame: abort at this time */
    bool               closing;        /* close frame queued: nothing else goes out */
    bool               pong_due;       /* a ping was read in this feed: pong[] answers it at the feed's end */
    uint8_t            pong_len;
    uint8_t            pong[WSF_MAX_CONTROL];   /* the latest ping's payload (RFC 6455 5.5.3: the latest suffices) */
    access_ident_t     ident;          /* who upgraded (net/access.c); each run is admitted against it */
    uint32_t           n_runs, cap, next_resume;
    ws_slot_t          slots[];
} ws_conn_t;

/* ---- ws.c ---- */

/* Stops every run, queues one close frame and half-closes after the flush;
 * nothing after the first call. */
void ws_close(ws_conn_t *ws, unsigned code, const char *reason);
/* The output reached stream.buffer (a run cannot write, or input waits):
 * starts the stall clock (ws.stall_timeout) unless it runs already. */
void ws_note_blocked(ws_conn_t *ws);

/* ---- ws_run.c ---- */

/* Appends one frame whose payload is the concatenation of up to three pieces. */
int  ws_put_frame(ws_conn_t *ws, int opcode, const char *a, size_t an, const char *b, size_t bn, const char *d,
                  size_t dn);
/* Admits and starts one run; takes ownership of `in`. 0, or -ENOMEM when the
 * connection must be dropped. */
int  ws_run_start(ws_conn_t *ws, runinput_t *in, const char *text, size_t len);
/* A message that is not a RunAgentInput: a CANCEL, an invalid input (a
 * RUN_ERROR), or not a JSON object at all (closed with 1007). For the frame
 * parser: 0 to go on, 1 once the connection is closing, or -ENOMEM. */
int  ws_not_a_run(ws_conn_t *ws, const char *text, size_t len, const runinput_err_t *err);
/* Stops every run (the agents see the cancel: a proxy drops its upstream). */
void ws_stop_runs(ws_conn_t *ws, enum metrics_outcome outcome);
/* Closes a draining connection once its last run is over. */
void ws_maybe_drained(ws_conn_t *ws);

#endif
