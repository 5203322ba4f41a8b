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
#include "core/ratelimit.h"
#include "net/conn.h"
#include "net/gwmetrics.h"

void sse_run(conn_t *c, const cfg_agent_t *agent, rl_holds_t *holds);   /* moves the slots into the run */

struct run;
/* A run streaming to c (SSE, or protobuf by the Accept header) with no input
 * and no agent run behind it yet, for a module that feeds it (net/resume.c's
 * followers); NULL after answering 503. The caller sets its ops. */
struct run *sse_client_run(conn_t *c, const cfg_agent_t *agent);
/* Accounts for a run's end (metrics); called once per run, however it ends. */
void sse_run_ended(conn_t *c, struct run *r, enum metrics_outcome outcome);
/* Whether the run streams in the protobuf encoding (its client asked for it);
 * the proxy then asks its upstream for protobuf first. */
bool sse_run_is_proto(const struct run *r);
/* The HTTP connection's side of its run (net/http1.c's conn_proto_t): a send
 * completed (a blocked run resumes under half the bound); the connection is
 * being aborted (the run ends as cut or client_closed). */
void sse_conn_sent(conn_t *c);
void sse_conn_abort(conn_t *c);

#endif
