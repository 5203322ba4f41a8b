/* upstream_metrics: agate_upstream_{attempts,failures,retries}_total and the
 * agate_upstream_breaker_open gauge, by agent and endpoint, for proxy agents. */
#include "net/upstream_metrics.h"

#include <stdbool.h>
#include <stdio.h>

#include "net/gwmetrics.h"

unsigned g_upm_mod;

static const char *const fail_names[MUF_COUNT] = {"connect", "reset", "timeout", "status", "content_type", "protocol"};

const char *upm_fail_name(enum upm_fail kind) { return fail_names[kind]; }

#define SUM(expr) GWM_SUM(sh, n, upm_t, g_upm_mod, expr)

static bool any_proxy(const cfg_t *cfg)
{
    for (uint32_t a = 0; a < cfg->n_agents; a++)
        if (cfg->agents[a].kind == CFG_AGENT_PROXY)
            return true;
    return false;
}

static void render(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    char lb[320];
    if (!any_proxy(cfg))
        return;
#define FOR_ENDPOINTS                                                                      \
    for (uint32_t a = 0; a < cfg->n_agents; a++)                                           \
        for (uint32_t e = 0; e < (cfg->agents[a].kind == CFG_AGENT_PROXY ? cfg->agents[a].n_endpoints : 0); e++)
#define EP_LABELS(extra_fmt, ...)                                                          \
    snprintf(lb, sizeof lb, "agent=\"%s\",endpoint=\"%s:%u\"" extra_fmt, cfg->agents[a].name,   \
             cfg->agents[a].endpoints[e].host, cfg->agents[a].endpoints[e].port, ##__VA_ARGS__)
    metrics_family(r, "agate_upstream_attempts", "counter", "Requests sent to upstream agents, by agent and endpoint.");
    FOR_ENDPOINTS {
        EP_LABELS("");
        metrics_sample_u(r, "agate_upstream_attempts", "_total", lb, SUM(m_->attempts[a][e]));
    }
    metrics_family(r, "agate_upstream_failures", "counter", "Failed upstream attempts, by agent, endpoint and kind.");
    FOR_ENDPOINTS {
        for (int k = 0; k < MUF_COUNT; k++) {
            EP_LABELS(",kind=\"%s\"", fail_names[k]);
            metrics_sample_u(r, "agate_upstream_failures", "_total", lb, SUM(m_->failures[a][e][k]));
        }
    }
    metrics_family(r, "agate_upstream_breaker_open", "gauge", "Shards on which the endpoint's circuit breaker is open.");
    FOR_ENDPOINTS {
        EP_LABELS("");
        int64_t v = 0;
        for (unsigned s = 0; s < n; s++)
            v += metrics_rdi(&upm(&sh[s])->breaker_open[a][e]);
        metrics_sample_i(r, "agate_upstream_breaker_open", lb, v);
    }
#undef EP_LABELS
#undef FOR_ENDPOINTS
    metrics_family(r, "agate_upstream_retries", "counter", "Upstream attempts retried on another endpoint, by agent.");
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        if (cfg->agents[a].kind != CFG_AGENT_PROXY)
            continue;
        snprintf(lb, sizeof lb, "agent=\"%s\"", cfg->agents[a].name);
        metrics_sample_u(r, "agate_upstream_retries", "_total", lb, SUM(m_->retries[a]));
    }
}

void upm_register(void) { g_upm_mod = gwm_block_register("upstream", sizeof(upm_t), render); }
