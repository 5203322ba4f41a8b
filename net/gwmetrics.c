/* gwmetrics: the gateway's metrics (HTTP requests and connections, runs and
 * events) and the per-shard blocks that hold them and every feature's own
 * (upstream_metrics.c, coalesce_metrics.c). A block is written only by its
 * shard with the relaxed single-writer adds of core/metrics.h and summed by
 * its render function at a scrape. */
#include "net/gwmetrics.h"

#include <errno.h>
#include <llhttp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned g_gwm_mod;

static const char *const listener_names[ML_COUNT] = {"main", "admin"};
static const char *const route_names[MR_COUNT] = {"none", "run", "health", "metrics", "not_found", "ws", "demo", "admin", "resume"};
static const char *const method_names[MM_COUNT] = {"GET", "HEAD", "POST", "OPTIONS", "OTHER"};
static const char *const transport_names[MT_COUNT] = {[MT_SSE] = "sse", [MT_PROTO] = "proto", [MT_WS] = "ws"};
static const char *const outcome_names[MO_COUNT] = {"finished", "error", "client_closed", "cut"};
static const char *const accept_error_names[MAE_COUNT] = {"emfile", "enfile", "enomem", "other"};
static const char *const refusal_names[MCR_COUNT] = {"no_slot", "fd_reserve"};
static const char *const reject_names[MRJ_COUNT] = {
    "bad_request", "invalid_input", "body_too_large", "headers_too_large",
    "timeout", "connection_limit", "expectation", "unauthorized", "forbidden", "rate_limited",
};

enum metrics_method metrics_method_of(int method)
{
    switch (method) {
    case HTTP_GET: return MM_GET;
    case HTTP_HEAD: return MM_HEAD;
    case HTTP_POST: return MM_POST;
    case HTTP_OPTIONS: return MM_OPTIONS;
    default: return MM_OTHER;
    }
}



#define SUM(expr) GWM_SUM(sh, n, gwmetrics_t, g_gwm_mod, expr)

/* A latency histogram summed over shards; `field` is the offset of one
 * agent's metrics_hist_t inside gwmetrics_t. */
static void hist_time(metrics_render_t *r, const char *name, const char *labels, const shard_t *sh, unsigned n,
                      size_t field)
{
    metrics_hist_t sum = {0};
    for (unsigned s = 0; s < n; s++)
        metrics_hist_add(&sum, (const metrics_hist_t *)((const char *)gwm(&sh[s]) + field));
    metrics_hist(r, name, labels, &sum);
}

/* One gauge sample with one label, summed over shards; `field` is the gauge's
 * offset inside gwmetrics_t. */
static void gauge_sum(metrics_render_t *r, const char *name, const char *label, const char *value, const shard_t *sh,
                      unsigned n, size_t field)
{
    char lb[128];
    int64_t v = 0;
    for (unsigned s = 0; s < n; s++)
        v += metrics_rdi((const int64_t *)((const char *)gwm(&sh[s]) + field));
    snprintf(lb, sizeof lb, "%s=\"%s\"", label, value);
    metrics_sample_i(r, name, lb, v);
}

static void render_http(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    char lb[256];
    metrics_family(r, "agate_http_requests", "counter", "HTTP requests answered, by listener, route, method and status class.");
    for (int l = 0; l < ML_COUNT; l++)
        for (int rt = 0; rt < MR_COUNT; rt++)
            for (int me = 0; me < MM_COUNT; me++)
                for (int c = 0; c < 5; c++) {
                    uint64_t v = SUM(m_->requests[l][rt][me][c]);
                    if (!v && !(rt == MR_RUN && me == MM_POST && c == 1 && l == ML_MAIN))
                        continue;   /* keep the series set small; one always-present series */
                    snprintf(lb, sizeof lb, "listener=\"%s\",route=\"%s\",method=\"%s\",code=\"%dxx\"",
                             listener_names[l], route_names[rt], method_names[me], c + 1);
                    metrics_sample_u(r, "agate_http_requests", "_total", lb, v);
                }
    metrics_family(r, "agate_http_rejected_requests", "counter", "Requests refused before reaching an agent, by reason.");
    for (int i = 0; i < MRJ_COUNT; i++) {
        snprintf(lb, sizeof lb, "reason=\"%s\"", reject_names[i]);
        metrics_sample_u(r, "agate_http_rejected_requests", "_total", lb, SUM(m_->rejected[i]));
    }
    metrics_family(r, "agate_connections", "gauge", "Open client connections, by listener.");
    for (int l = 0; l < ML_COUNT; l++)
        gauge_sum(r, "agate_connections", "listener", listener_names[l], sh, n,
                  offsetof(gwmetrics_t, connections) + (size_t)l * sizeof(int64_t));
    metrics_family(r, "agate_accept_errors", "counter",
           "Failed accepts, by listener and reason (emfile: out of descriptors); each pauses that listener's "
           "accepting briefly.");
    for (int l = 0; l < ML_COUNT; l++)
        for (int e = 0; e < MAE_COUNT; e++) {
            snprintf(lb, sizeof lb, "listener=\"%s\",reason=\"%s\"", listener_names[l], accept_error_names[e]);
            metrics_sample_u(r, "agate_accept_errors", "_total", lb, SUM(m_->accept_errors[l][e]));
        }
    metrics_family(r, "agate_connections_refused", "counter",
           "Connections closed unanswered as soon as accepted, by reason (no_slot: every slot of the shard "
           "taken; fd_reserve: only the admin listener's reserved descriptors were left).");
    for (int i = 0; i < MCR_COUNT; i++) {
        snprintf(lb, sizeof lb, "reason=\"%s\"", refusal_names[i]);
        metrics_sample_u(r, "agate_connections_refused", "_total", lb, SUM(m_->refused[i]));
    }
    metrics_counter(r, "agate_connection_trims", "Idle keep-alive connections that gave their buffers back.", SUM(m_->conn_trims));
    metrics_counter(r, "agate_received_bytes", "Bytes received from clients.", SUM(m_->bytes_in));
    metrics_counter(r, "agate_sent_bytes", "Bytes sent to clients.", SUM(m_->bytes_out));
    metrics_family(r, "agate_ws_connections", "gauge", "Open WebSocket connections.");
    gauge_sum(r, "agate_ws_connections", "listener", "main", sh, n, offsetof(gwmetrics_t, ws_connections));
    metrics_family(r, "agate_ws_frames", "counter", "WebSocket frames (data messages and control frames), by direction.");
    metrics_sample_u(r, "agate_ws_frames", "_total", "direction=\"in\"", SUM(m_->ws_messages[0]));
    metrics_sample_u(r, "agate_ws_frames", "_total", "direction=\"out\"", SUM(m_->ws_messages[1]));
    metrics_family(r, "agate_ws_bytes", "counter", "WebSocket bytes on the wire after the upgrade, by direction.");
    metrics_sample_u(r, "agate_ws_bytes", "_total", "direction=\"in\"", SUM(m_->ws_bytes[0]));
    metrics_sample_u(r, "agate_ws_bytes", "_total", "direction=\"out\"", SUM(m_->ws_bytes[1]));
}

static void render_runs(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    char lb[256];
    metrics_family(r, "agate_runs_started", "counter", "Agent runs started, by agent and transport.");
    for (uint32_t a = 0; a < cfg->n_agents; a++)
        for (int t = 0; t < MT_COUNT; t++) {
            snprintf(lb, sizeof lb, "agent=\"%s\",transport=\"%s\"", cfg->agents[a].name, transport_names[t]);
            metrics_sample_u(r, "agate_runs_started", "_total", lb, SUM(m_->runs_started[a][t]));
        }
    metrics_family(r, "agate_runs_ended", "counter",
           "Agent runs ended, by agent, transport and outcome (finished, error, client_closed, cut).");
    for (uint32_t a = 0; a < cfg->n_agents; a++)
        for (int t = 0; t < MT_COUNT; t++)
            for (int o = 0; o < MO_COUNT; o++) {
                snprintf(lb, sizeof lb, "agent=\"%s\",transport=\"%s\",outcome=\"%s\"", cfg->agents[a].name,
                         transport_names[t], outcome_names[o]);
                metrics_sample_u(r, "agate_runs_ended", "_total", lb, SUM(m_->runs_ended[a][t][o]));
            }
    metrics_family(r, "agate_streams", "gauge", "Event streams in progress, by transport.");
    for (int t = 0; t < MT_COUNT; t++)
        gauge_sum(r, "agate_streams", "transport", transport_names[t], sh, n,
                  offsetof(gwmetrics_t, streams) + (size_t)t * sizeof(int64_t));
    metrics_family(r, "agate_events_sent", "counter", "AG-UI events sent to clients, by event type.");
    for (int t = 0; t < AGUI_TYPE_COUNT; t++) {
        snprintf(lb, sizeof lb, "type=\"%s\"", agui_type_name((agui_type_t)t));
        metrics_sample_u(r, "agate_events_sent", "_total", lb, SUM(m_->events[t]));
    }
    static const struct {
        const char *name, *help;
        size_t      off;
    } hists[] = {
        {"agate_run_first_event_seconds", "Time from request to the run's first event.", offsetof(gwmetrics_t, first_event)},
        {"agate_run_duration_seconds", "Time from request to the run's last byte queued.", offsetof(gwmetrics_t, duration)},
        {"agate_run_event_gap_seconds", "Time between consecutive events of a run.", offsetof(gwmetrics_t, gap)},
    };
    for (size_t h = 0; h < sizeof hists / sizeof hists[0]; h++) {
        metrics_family(r, hists[h].name, "histogram", hists[h].help);
        for (uint32_t a = 0; a < cfg->n_agents; a++) {
            snprintf(lb, sizeof lb, "agent=\"%s\"", cfg->agents[a].name);
            hist_time(r, hists[h].name, lb, sh, n, hists[h].off + a * sizeof(metrics_hist_t));
        }
    }
}

/* Every feature's block, in registration order. The allocation is one module
 * ("gwmetrics", registered with the first block) so the hooks need not know
 * which block they serve. */
#define GWM_BLOCKS_MAX 8
static struct gwm_block {
    shard_mod_ops_t   ops;   /* a name only: the slot in shard_t.mod */
    unsigned          idx;
    size_t            size;
    metrics_render_fn render;
} g_blocks[GWM_BLOCKS_MAX];
static unsigned g_nblocks;

static void gwm_close(shard_t *sh)
{
    for (unsigned b = 0; b < g_nblocks; b++) {
        free(sh->mod[g_blocks[b].idx]);
        sh->mod[g_blocks[b].idx] = NULL;
    }
}

static int gwm_open(shard_t *sh, char *err, size_t errlen)
{
    if (!sh->cfg->metrics_enabled)
        return 0;
    for (unsigned b = 0; b < g_nblocks; b++)
        if (!(sh->mod[g_blocks[b].idx] = calloc(1, g_blocks[b].size))) {
            gwm_close(sh);
            snprintf(err, errlen, "out of memory for %s metrics", g_blocks[b].ops.name);
            return -ENOMEM;
        }
    return 0;
}

static void render_all(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    for (unsigned s = 0; s < n; s++)
        if (!gwm(&sh[s]))
            return;   /* metrics off */
    for (unsigned b = 0; b < g_nblocks; b++)
        g_blocks[b].render(r, sh, n, cfg);
}

/* Freed by the main thread after every shard has stopped (shard_close): a
 * scrape on one shard reads every shard's, also while another tears down. */
static const shard_mod_ops_t gwm_mod = {.name = "gwmetrics", .open = gwm_open, .close = gwm_close};

unsigned gwm_block_register(const char *name, size_t size, metrics_render_fn render)
{
    for (unsigned b = 0; b < g_nblocks; b++)
        if (!strcmp(g_blocks[b].ops.name, name))
            return g_blocks[b].idx;   /* a test's set-up runs twice */
    if (g_nblocks == GWM_BLOCKS_MAX) {
        fprintf(stderr, "agate: bug: more than GWM_BLOCKS_MAX metrics blocks (%s)\n", name);
        abort();
    }
    if (!g_nblocks) {
        shard_mod_register(&gwm_mod);
        metrics_register(render_all);
    }
    struct gwm_block *b = &g_blocks[g_nblocks++];
    b->ops.name = name;
    b->idx = shard_mod_register(&b->ops);
    b->size = size;
    b->render = render;
    return b->idx;
}

static void render_gateway(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    render_http(r, sh, n, cfg);
    render_runs(r, sh, n, cfg);
}

void gwmetrics_register(void)
{
    g_gwm_mod = gwm_block_register("gateway", sizeof(gwmetrics_t), render_gateway);
}
