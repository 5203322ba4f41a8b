/* sse: AG-UI over Server-Sent Events on an HTTP/1.1 connection.
 *
 * sse_run() answers POST /v1/agents/{name}/run: it validates the RunAgentInput,
 * starts the response (text/event-stream, chunked) and the agent's run, and
 * acts as the run's sink: each event becomes one "data: <json>\n\n" frame
 * appended to the connection's output buffer. A quiet stream gets a ": ping"
 * comment every heartbeat interval. */
#ifndef AGATE_SSE_H
#define AGATE_SSE_H

#include "core/config.h"
#include "net/conn.h"

void sse_run(conn_t *c, const cfg_agent_t *agent);

struct run;
/* Accounts for a run's end (metrics); called once per run, however it ends. */
void sse_run_ended(conn_t *c, struct run *r, enum metrics_outcome outcome);
/* Whether the run streams in the protobuf encoding (its client asked for it);
 * the proxy then asks its upstream for protobuf first. */
bool sse_run_is_proto(const struct run *r);

#endif
