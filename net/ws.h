/* ws: AG-UI over WebSocket (RFC 6455) on an upgraded HTTP/1.1 connection.
 *
 * GET /v1/agents/{name}/ws upgrades (version 13, subprotocol "ag-ui" when the
 * client offers it). The client then sends RunAgentInput objects as text
 * messages; each starts a run, and each of the run's events comes back as one
 * text frame holding the event's JSON (the same JSON the SSE sink sends) with a
 * "runId" member added to events that do not carry one, so concurrent runs on
 * one connection can be told apart. {"type":"CANCEL","runId":"..."} ends a run
 * (it gets RUN_ERROR code "cancelled"). A message that is not a JSON object
 * closes the connection with 1007; an object that is not a valid RunAgentInput
 * gets RUN_ERROR code "invalid_input" and the connection stays open.
 *
 * Runs of a cached agent go through net/coalesce.h like HTTP runs (HIT,
 * COALESCED, MISS), with the upgrade request's headers standing in for the
 * per-message headers WebSocket lacks; each run logs a line when it ends.
 *
 * The connection keeps its conn_t (net/conn.c): same output buffers, one send
 * per loop turn, same slot lifecycle. conn.c hands a WebSocket connection's
 * input, send completions, abort and reap to the functions below. */
#ifndef AGATE_WS_H
#define AGATE_WS_H

#include <stddef.h>

#include "core/config.h"
#include "net/conn.h"

struct ws_conn;

/* The ws: section of the configuration (ws_conf_section, registered by
 * ws_register), read through ws_conf(cfg); AGATE_WS_* override it. */
typedef struct ws_conf {
    uint32_t max_message_bytes;   /* ws.max_message: largest client message, close 1009 past it */
    uint32_t ping_interval_ms;    /* ws.ping_interval: ping a connection quiet this long; 0 = never */
    uint32_t pong_timeout_ms;     /* ws.pong_timeout: no byte from the peer this long after a ping: close */
    uint32_t stall_timeout_ms;    /* ws.stall_timeout: output held over stream.buffer this long: close 1008 */
    uint32_t max_runs;            /* ws.max_runs: concurrent runs per WebSocket connection */
} ws_conf_t;

extern cfg_section_t ws_conf_section;

static inline const ws_conf_t *ws_conf(const cfg_t *c) { return cfg_sect(c, &ws_conf_section); }
static inline ws_conf_t *ws_conf_mut(cfg_t *c) { return cfg_sect_mut(c, &ws_conf_section); }

/* Main thread, at start-up: registers the ws: section. */
void ws_register(void);

/* GET /v1/agents/{name}/ws: the handshake; 101 and WebSocket mode, or an HTTP
 * error (400, 426, 503) and close. */
void ws_upgrade(conn_t *c, const cfg_agent_t *agent);
/* The connection's protocol after the upgrade (net/conn.h). */
extern const conn_proto_t ws_proto;


#endif
