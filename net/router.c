/* router: the route table. Routes are few and fixed, so matching is a short
 * list of exact paths plus one prefix (/v1/agents/{name}/run); no allocation,
 * no regex. 404 for an unknown path, 405 with Allow for a known path and a
 * method it does not take, 204 with Allow for OPTIONS. */
#include "net/router.h"

#include <stdio.h>
#include <string.h>

#include "core/cache.h"
#include "net/access.h"
#include "net/conn.h"
#include "net/http1.h"
#include "net/sse.h"
#include "net/demo.h"
#include "net/resume.h"
#include "net/gwmetrics.h"
#include "net/ws.h"

#define M(x) (1u << (x))
#define GET_HEAD (M(HTTP_GET) | M(HTTP_HEAD) | M(HTTP_OPTIONS))

typedef void (*route_fn)(conn_t *c, const char *arg, size_t arg_len);

static void health_live(conn_t *c, const char *a, size_t n)
{
    static const char body[] = "{\"status\":\"ok\"}\n";
    http_respond(c, 200, "application/json", body, sizeof body - 1, NULL);
}

static void health_ready(conn_t *c, const char *a, size_t n)
{
    static const char ok[] = "{\"status\":\"ready\"}\n";
    static const char draining[] = "{\"status\":\"draining\"}\n";
    if (atomic_load_explicit(&g_agate_draining, memory_order_relaxed))
        http_respond(c, 503, "application/json", draining, sizeof draining - 1, NULL);
    else
        http_respond(c, 200, "application/json", ok, sizeof ok - 1, NULL);
}

static void health_startup(conn_t *c, const char *a, size_t n)
{
    static const char body[] = "{\"status\":\"started\"}\n";
    http_respond(c, 200, "application/json", body, sizeof body - 1, NULL);
}

static void metrics_page(conn_t *c, const char *a, size_t n)
{
    const char *v;
    size_t len;
    http_req_t *r = &c->http.req;
    if (!c->sh->cfg->metrics_enabled) {
        /* Zeros would look like an idle gateway on a dashboard; say it is off instead. */
        http_error(c, 404, "metrics_disabled", "metrics are disabled (metrics.enabled: false)", NULL);
        return;
    }
    if (!c->admin && !access_http_admin(c))   /* main listener with auth on: scope admin */
        return;
    bool om = http_header(r, "accept", &v, &len) && memmem(v, len, "application/openmetrics-text", 28);
    buf_t *b = &c->sh->scratch;
    buf_reset(b);
    if (metrics_render(b, g_shards, g_nshards, c->sh->cfg, om)) {
        http_error(c, 503, "out_of_memory", "out of memory", NULL);
        return;
    }
    http_respond(c, 200,
                 om ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                    : "text/plain; version=0.0.4; charset=utf-8",
                 b->data, b->len, NULL);
}

static void agent_run(conn_t *c, const char *name, size_t len)
{
    const cfg_agent_t *agent = cfg_find_agent(c->sh->cfg, name, len);
    if (!agent) {
        http_error(c, 404, "agent_not_found", "no agent by that name is configured", NULL);
        return;
    }
    rl_holds_t holds;
    if (!access_http_run(c, agent, &holds))   /* 401, 403 or 429 answered */
        return;
    sse_run(c, agent, &holds);
    access_release(&holds);   /* slots no run took (the request failed before one started) */
}

static void agent_ws(conn_t *c, const char *name, size_t len)
{
    const cfg_agent_t *agent = cfg_find_agent(c->sh->cfg, name, len);
    if (!agent) {
        c->http.req.keep_alive = false;   /* llhttp may have taken it as an upgrade: no more HTTP after it */
        http_error(c, 404, "agent_not_found", "no agent by that name is configured", NULL);
        return;
    }
    ws_upgrade(c, agent);
}

/* DELETE /admin/cache[?agent=name]: drops every stored run, or one agent's.
 * Runs streaming now are not affected. */
static void cache_purge_route(conn_t *c, const char *a, size_t n)
{
    http_req_t *r = &c->http.req;
    if (!access_http_admin(c))   /* auth on: scope admin */
        return;
    const char *url = http_str(r, r->url), *q = memchr(url, '?', r->url.len);
    char agent[CFG_NAME_MAX] = "";
    if (q) {
        size_t ql = r->url.len - (size_t)(q + 1 - url);
        if (ql < 6 || memcmp(q + 1, "agent=", 6) || ql - 6 == 0 || ql - 6 >= sizeof agent) {
            http_error(c, 400, "bad_request", "expected no query or ?agent=<name>", NULL);
            return;
        }
        memcpy(agent, q + 7, ql - 6);
        agent[ql - 6] = '\0';
        if (!cfg_find_agent(c->sh->cfg, agent, ql - 6)) {
            http_error(c, 404, "agent_not_found", "no agent by that name is configured", NULL);
            return;
        }
    }
    size_t purged = cache_purge(agent[0] ? agent : NULL);
    char body[96];
    int len = snprintf(body, sizeof body, "{\"purged\":%zu}\n", purged);
    http_respond(c, 200, "application/json", body, (size_t)len, NULL);
}

static void demo(conn_t *c, const char *a, size_t n)
{
    if (!c->sh->cfg->demo) {
        http_error(c, 404, "not_found", "no route for this path", NULL);
        return;
    }
    demo_page(c);
}

typedef struct route {
    const char *path;
    uint8_t     route;      /* enum metrics_route */
    uint32_t    methods;
    const char *allow;
    bool        admin, main;
    route_fn    fn;
} route_t;

static const route_t routes[] = {
    {"/health/live", MR_HEALTH, GET_HEAD, "GET, HEAD, OPTIONS", true, true, health_live},
    {"/healthz", MR_HEALTH, GET_HEAD, "GET, HEAD, OPTIONS", true, true, health_live},
    {"/health/ready", MR_HEALTH, GET_HEAD, "GET, HEAD, OPTIONS", true, true, health_ready},
    {"/health/startup", MR_HEALTH, GET_HEAD, "GET, HEAD, OPTIONS", true, true, health_startup},
    {"/metrics", MR_METRICS, GET_HEAD, "GET, HEAD, OPTIONS", true, false, metrics_page},
    {"/", MR_DEMO, GET_HEAD, "GET, HEAD, OPTIONS", false, true, demo},
    {"/admin/cache", MR_ADMIN, M(HTTP_DELETE) | M(HTTP_OPTIONS), "DELETE, OPTIONS", true, false, cache_purge_route},
};
static const route_t run_route = {NULL, MR_RUN, M(HTTP_POST) | M(HTTP_OPTIONS), "POST, OPTIONS", false, true, agent_run};
static const route_t events_route = {NULL, MR_RESUME, M(HTTP_GET) | M(HTTP_POST) | M(HTTP_OPTIONS), "GET, POST, OPTIONS", false, true, resume_http_events};
static const route_t cancel_route = {NULL, MR_RESUME, M(HTTP_DELETE) | M(HTTP_OPTIONS), "DELETE, OPTIONS", false, true,
                                     resume_http_cancel};
static const route_t ws_route = {NULL, MR_WS, M(HTTP_GET) | M(HTTP_OPTIONS), "GET, OPTIONS", false, true, agent_ws};

/* "/v1/agents/{name}<suf>" -> name; names are [A-Za-z0-9_.-]{1,63}. */
static bool match_agent(const char *p, size_t n, const char *suf, const char **name, size_t *name_len)
{
    static const char pre[] = "/v1/agents/";
    size_t pl = sizeof pre - 1, sl = strlen(suf);
    if (n <= pl + sl || memcmp(p, pre, pl) || memcmp(p + n - sl, suf, sl))
        return false;
    *name = p + pl;
    *name_len = n - pl - sl;
    for (size_t i = 0; i < *name_len; i++) {
        char ch = (*name)[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return *name_len < 64;
}

/* "/v1/runs/{id}" -> id, and whether "/events" followed; ids are one path segment. */
static bool match_run(const char *p, size_t n, const char **id, size_t *id_len, bool *events)
{
    static const char pre[] = "/v1/runs/", suf[] = "/events";
    size_t pl = sizeof pre - 1, sl = sizeof suf - 1;
    if (n <= pl || memcmp(p, pre, pl))
        return false;
    *events = n > pl + sl && !memcmp(p + n - sl, suf, sl);
    *id = p + pl;
    *id_len = n - pl - (*events ? sl : 0);
    return *id_len && !memchr(*id, '/', *id_len);
}

const char *router_template(int route, const char *path, size_t len)
{
    switch (route) {
    case MR_RUN: return "/v1/agents/{name}/run";
    case MR_WS: return "/v1/agents/{name}/ws";
    case MR_DEMO: return "/";
    case MR_ADMIN: return "/admin/cache";
    case MR_RESUME: return len > 7 && !memcmp(path + len - 7, "/events", 7) ? "/v1/runs/{id}/events" : "/v1/runs/{id}";
    case MR_METRICS: return "/metrics";
    case MR_HEALTH:
        for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
            if (strlen(routes[i].path) == len && !memcmp(routes[i].path, path, len))
                return routes[i].path;
        return "/health";
    case MR_NOT_FOUND: return "(not found)";
    default: return "(none)";
    }
}

void router_dispatch(conn_t *c)
{
    http_req_t *r = &c->http.req;
    const char *p = http_str(r, r->path), *arg = NULL;
    size_t n = r->path.len, arg_len = 0;
    const route_t *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strlen(routes[i].path) == n && !memcmp(routes[i].path, p, n)) {
            rt = &routes[i];
            break;
        }
    }
    if (!rt && match_agent(p, n, "/run", &arg, &arg_len))
        rt = &run_route;
    else if (!rt && match_agent(p, n, "/ws", &arg, &arg_len))
        rt = &ws_route;
    bool events;
    if (!rt && match_run(p, n, &arg, &arg_len, &events))
        rt = events ? &events_route : &cancel_route;
    bool on_main = rt && (rt->main || (rt->route == MR_METRICS && c->sh->cfg->metrics_on_main));
    if (!rt || (c->admin ? !rt->admin : !on_main)) {
        r->route = MR_NOT_FOUND;
        http_error(c, 404, "not_found", "no route for this path", NULL);
        return;
    }
    r->route = rt->route;
    if (r->method >= 32 || !(rt->methods & M(r->method)) || r->method == HTTP_OPTIONS) {
        char allow[64];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", rt->allow);
        if (r->method == HTTP_OPTIONS && !access_http_preflight(c, allow))
            http_respond(c, 204, NULL, NULL, 0, allow);
        else if (r->method == HTTP_OPTIONS)
            ;   /* a CORS preflight, answered */
        else
            http_error(c, 405, "method_not_allowed", "method not allowed for this path", allow);
        return;
    }
    rt->fn(c, arg, arg_len);
}
