/* breaker: per-shard circuit breakers and balancer of proxy endpoints (see
 * breaker.h for the states and for who owns the table).
 *
 * Transitions are a cold path: at most two log lines per open period per
 * endpoint and shard, whatever the traffic, so they are not rate limited. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfggen.h"
#include "net/breaker.h"
#include "core/json.h"
#include "net/upstream_metrics.h"

enum br_state { BR_CLOSED, BR_OPEN, BR_HALF_OPEN };

typedef struct br_endpoint {
    uint32_t outstanding;        /* attempts held on it now (least_outstanding) */
    uint8_t  state;              /* enum br_state */
    uint32_t consecutive;        /* failures in a row */
    uint64_t window;             /* recent outcomes, bit set = failure, newest in bit 0 */
    uint32_t window_n;
    uint64_t open_until_ms;
    uint32_t trials, trial_ok;   /* half-open: admitted and not given back, succeeded */
    uint32_t period;             /* half-open periods so far: which one a trial was admitted in */
    int64_t *metric;             /* this shard's breaker-open gauge, NULL without metrics */
} br_endpoint_t;

typedef struct breaker_shard {
    br_endpoint_t ep[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS];
    uint32_t      rr[CFG_MAX_AGENTS];      /* round robin: where the next pick starts */
    uint32_t      epoch[CFG_MAX_AGENTS];   /* bumped when a reload changes the agent's endpoints */
} breaker_shard_t;

static unsigned g_breaker_mod;

static inline breaker_shard_t *table(const shard_t *sh) { return (breaker_shard_t *)sh->mod[g_breaker_mod]; }
static inline br_endpoint_t *EP(const shard_t *sh, unsigned a, unsigned e) { return &table(sh)->ep[a][e]; }

/* --- log lines ------------------------------------------------------------------ */

/* Why a breaker opened, for its log line. */
enum br_reason { BR_FAILURES, BR_ERROR_RATE, BR_TRIAL_FAILED };
typedef struct br_why {
    uint8_t  reason;             /* enum br_reason */
    uint32_t failed, window;     /* failures counted, out of how many recent attempts */
} br_why_t;

static const char *const br_names[] = {"closed", "open", "half_open"};
static const char *const br_reasons[] = {"consecutive_failures", "error_rate", "trial_failed"};

/* The reason, and the counts behind it, of an opening. */
static void put_why(buf_t *b, const cfg_agent_t *ag, const br_why_t *why)
{
    buf_append_lit(b, ",\"reason\":\"");
    buf_append(b, br_reasons[why->reason], strlen(br_reasons[why->reason]));
    buf_putc(b, '"');
    if (why->reason != BR_TRIAL_FAILED) {
        buf_append_lit(b, ",\"failures\":");
        buf_append_u64(b, why->failed);
    }
    if (why->reason == BR_ERROR_RATE) {
        char rate[32];
        int n = snprintf(rate, sizeof rate, ",\"window\":%u,\"error_rate\":%.3f", why->window,
                         (double)why->failed / why->window);
        buf_append(b, rate, n > 0 && (size_t)n < sizeof rate ? (size_t)n : 0);
    }
    buf_append_lit(b, ",\"open_ms\":");
    buf_append_u64(b, ag->breaker_open_ms);
}

/* The endpoint as configured, without its query (which may carry a key). */
static void put_endpoint(buf_t *b, const cfg_endpoint_t *ep)
{
    char url[CFG_HOST_MAX + CFG_UPATH_MAX + 16];
    bool v6 = strchr(ep->host, ':') != NULL;   /* stored without brackets */
    size_t plen = strcspn(ep->path, "?");
    int n = snprintf(url, sizeof url, "http://%s%s%s:%u%.*s", v6 ? "[" : "", ep->host, v6 ? "]" : "",
                     (unsigned)ep->port, (int)plen, ep->path);
    json_put_str(b, url, n < 0 ? 0 : (size_t)n < sizeof url ? (size_t)n : sizeof url - 1);
}

/* One line per state change. It appends to the shard's scratch after whatever
 * is there and takes its bytes back, since a transition can happen inside a
 * completion handler that is using the scratch. */
static void log_change(shard_t *sh, unsigned a, unsigned e, uint8_t from, uint8_t to, const br_why_t *why)
{
    const cfg_agent_t *ag = &sh->cfg->agents[a];
    cfg_log_level_t level = to == BR_OPEN ? CFG_LOG_WARN : CFG_LOG_INFO;
    if (!sh->log || level < sh->cfg->log_level)
        return;
    buf_t *b = &sh->scratch;
    size_t mark = b->len;
    log_begin(b, level == CFG_LOG_WARN ? "warn" : "info", "breaker");
    buf_append_lit(b, ",\"agent\":");
    json_put_str(b, ag->name, strlen(ag->name));
    buf_append_lit(b, ",\"endpoint\":");
    put_endpoint(b, &ag->endpoints[e]);
    buf_append_lit(b, ",\"from\":\"");
    buf_append(b, br_names[from], strlen(br_names[from]));
    buf_append_lit(b, "\",\"to\":\"");
    buf_append(b, br_names[to], strlen(br_names[to]));
    buf_putc(b, '"');
    if (to == BR_OPEN) {
        put_why(b, ag, why);
    } else if (to == BR_HALF_OPEN) {
        buf_append_lit(b, ",\"trials\":");
        buf_append_u64(b, ag->breaker_half_open);
    } else {
        buf_append_lit(b, ",\"trials_ok\":");
        buf_append_u64(b, EP(sh, a, e)->trial_ok);
    }
    buf_append_lit(b, ",\"shard\":");
    buf_append_u64(b, sh->id);
    log_end(b);
    log_put(sh->log, b->data + mark, b->len - mark);
    b->len = mark;
}

/* --- the state machine ---------------------------------------------------------- */

/* Whether endpoint e may take an attempt now. Open turns half-open here, on
 * the first look after breaker.open: no timer per breaker. */
static bool available(shard_t *sh, unsigned a, unsigned ei)
{
    const cfg_agent_t *ag = &sh->cfg->agents[a];
    br_endpoint_t *e = EP(sh, a, ei);
    if (e->state == BR_OPEN && sh->now_ms >= e->open_until_ms) {
        e->state = BR_HALF_OPEN;
        if (e->metric)
            metrics_gauge_add(e->metric, -1);
        e->trials = e->trial_ok = 0;
        e->period++;
        log_change(sh, a, ei, BR_OPEN, BR_HALF_OPEN, NULL);
    }
    return e->state == BR_CLOSED || (e->state == BR_HALF_OPEN && e->trials < ag->breaker_half_open);
}

static void trip(shard_t *sh, unsigned a, unsigned ei, const br_why_t *why)
{
    br_endpoint_t *e = EP(sh, a, ei);
    uint8_t from = e->state;
    e->state = BR_OPEN;
    if (e->metric)
        metrics_gauge_add(e->metric, 1);
    e->open_until_ms = sh->now_ms + sh->cfg->agents[a].breaker_open_ms;
    e->consecutive = 0;
    e->window = 0;
    e->window_n = 0;
    log_change(sh, a, ei, from, BR_OPEN, why);
}

static void record(shard_t *sh, unsigned a, unsigned ei, bool failed)
{
    const cfg_agent_t *ag = &sh->cfg->agents[a];
    br_endpoint_t *e = EP(sh, a, ei);
    /* An attempt admitted before the breaker opened says nothing about the
     * endpoint since; counting it could open an open breaker again (one more
     * on the gauge, one more log line). */
    if (e->state == BR_OPEN)
        return;
    uint32_t span = ag->breaker_min_requests < 64 ? ag->breaker_min_requests : 64;
    e->window = e->window << 1 | failed;
    if (e->window_n < span)
        e->window_n++;
    if (e->state == BR_HALF_OPEN) {
        if (failed) {
            trip(sh, a, ei, &(br_why_t){BR_TRIAL_FAILED, 1, 1});
        } else if (++e->trial_ok >= ag->breaker_half_open) {
            e->state = BR_CLOSED;   /* recovered: the window starts clean */
            log_change(sh, a, ei, BR_HALF_OPEN, BR_CLOSED, NULL);
        }
        return;
    }
    if (!failed) {
        e->consecutive = 0;
        return;
    }
    e->consecutive++;
    uint64_t mask = span >= 64 ? ~0ull : (1ull << span) - 1;
    uint32_t bad = (uint32_t)__builtin_popcountll(e->window & mask);
    double rate = (double)bad / (double)e->window_n;
    if (e->consecutive >= ag->breaker_failures)
        trip(sh, a, ei, &(br_why_t){BR_FAILURES, e->consecutive, e->consecutive});
    else if (e->window_n >= span && rate >= ag->breaker_error_rate)
        trip(sh, a, ei, &(br_why_t){BR_ERROR_RATE, bad, e->window_n});
}

/* --- holds ---------------------------------------------------------------------- */

int breaker_pick(shard_t *sh, const cfg_agent_t *ag, uint64_t tried, breaker_hold_t *h, uint32_t *retry_after_s)
{
    breaker_shard_t *t = table(sh);
    unsigned a = ag->slot, n = ag->n_endpoints;
    int best = -1;
    uint64_t soonest = UINT64_MAX;
    for (int pass = 0; pass < 2 && best < 0; pass++) {
        for (unsigned k = 0; k < n; k++) {
            unsigned e = (t->rr[a] + k) % n;
            br_endpoint_t *pe = EP(sh, a, e);
            if (pass == 0 && (tried >> e & 1))
                continue;
            if (!available(sh, a, e)) {
                if (pe->open_until_ms < soonest)
                    soonest = pe->open_until_ms;
                continue;
            }
            if (best < 0 || (ag->balance == CFG_BALANCE_LEAST_OUTSTANDING &&
                             pe->outstanding < EP(sh, a, (unsigned)best)->outstanding))
                best = (int)e;
            if (ag->balance == CFG_BALANCE_ROUND_ROBIN)
                break;
        }
    }
    if (best < 0) {
        uint64_t wait = soonest > sh->now_ms && soonest != UINT64_MAX ? soonest - sh->now_ms : 1000;
        *retry_after_s = (uint32_t)((wait + 999) / 1000);
        return -1;
    }
    t->rr[a] = (unsigned)(best + 1) % n;
    br_endpoint_t *pe = EP(sh, a, (unsigned)best);
    *h = (breaker_hold_t){.ep = (int16_t)best, .agent = (uint16_t)a, .epoch = t->epoch[a],
                          .trial = pe->state == BR_HALF_OPEN, .period = pe->period};
    if (h->trial)
        pe->trials++;
    pe->outstanding++;
    return best;
}

void breaker_record(shard_t *sh, breaker_hold_t *h, bool failed)
{
    if (h->ep < 0)
        return;
    h->recorded = true;
    if (h->epoch == table(sh)->epoch[h->agent])   /* else the endpoint it tried was reconfigured */
        record(sh, h->agent, (unsigned)h->ep, failed);
}

void breaker_end(shard_t *sh, breaker_hold_t *h)
{
    if (h->ep < 0)
        return;
    br_endpoint_t *e = EP(sh, h->agent, (unsigned)h->ep);
    e->outstanding--;   /* whatever the epoch: breaker_adopt leaves outstanding alone */
    /* A trial that showed nothing (no connection, a 429 or 4xx, the client
     * left, a broken first event, the run timed out) gives its slot back:
     * kept, the endpoint would stay half-open for good once every slot was
     * taken by attempts long gone. Only to the half-open period that admitted
     * it; a later period (or a reset by breaker_adopt) counts afresh. */
    if (h->trial && !h->recorded && e->state == BR_HALF_OPEN && e->period == h->period &&
        h->epoch == table(sh)->epoch[h->agent])
        e->trials--;
    *h = BREAKER_HOLD_NONE;
}

/* --- the table ------------------------------------------------------------------ */

int breaker_shard_init(shard_t *sh)
{
    breaker_shard_t *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    if (upm(sh))
        for (unsigned a = 0; a < CFG_MAX_AGENTS; a++)
            for (unsigned e = 0; e < CFG_MAX_ENDPOINTS; e++)
                t->ep[a][e].metric = &upm(sh)->breaker_open[a][e];
    sh->mod[g_breaker_mod] = t;
    return 0;
}

bool breaker_shard_ready(const shard_t *sh) { return table(sh) != NULL; }

void breaker_shard_free(shard_t *sh)
{
    free(table(sh));
    sh->mod[g_breaker_mod] = NULL;
}

/* Set up lazily by net/proxy.c, freed with the shard. */
static const shard_mod_ops_t breaker_mod = {.name = "breaker", .free = breaker_shard_free};

void breaker_register(void) { g_breaker_mod = shard_mod_register(&breaker_mod); }

void breaker_adopt(shard_t *sh, const cfg_t *old)
{
    breaker_shard_t *t = table(sh);
    for (uint32_t a = 0; a < sh->cfg->n_agents; a++) {
        const cfg_agent_t *now = &sh->cfg->agents[a];
        if (a < old->n_agents && !cfggen_endpoints_changed(&old->agents[a], now))
            continue;
        t->epoch[a]++;
        t->rr[a] = 0;
        for (unsigned e = 0; e < CFG_MAX_ENDPOINTS; e++) {
            br_endpoint_t *pe = &t->ep[a][e];
            if (pe->state == BR_OPEN && pe->metric)
                metrics_gauge_add(pe->metric, -1);
            pe->state = BR_CLOSED;
            pe->consecutive = pe->window_n = pe->trials = pe->trial_ok = 0;
            pe->window = pe->open_until_ms = 0;
        }
    }
}
