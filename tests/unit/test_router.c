/* router: the route table, driven through a fake connection. Each route on
 * each listener (main, admin), each method it takes and one it does not (405
 * with the route's Allow), OPTIONS (204 with Allow), unknown paths (404 JSON,
 * counted under route "not_found"), agent names that are not names (404
 * not_found) and names that are not configured (404 agent_not_found), the
 * health family (ready turns 503 while draining), /metrics off, on the admin
 * listener only, on main when asked, the demo page on and off, DELETE
 * /admin/cache's query, and router_template's bounded names for spans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "net/router.h"
#include "tests/support/fakeconn.h"
#include "tests/unit/wire.h"

static fakeconn_t f;
static gwmetrics_t gm;

static int setup(void **state)
{
    fake_init(&f);
    memset(&gm, 0, sizeof gm);
    return 0;
}

static int teardown(void **state)
{
    fake_close(&f);
    atomic_store(&g_agate_draining, false);
    g_shards = NULL;
    g_nshards = 0;
    return 0;
}

/* Opens the connection with the shard's metrics on (so routes are counted). */
static void open_counted(void)
{
    f.sh.mod[g_gwm_mod] = &gm;
    fake_open(&f);
}

static void send_str(const char *s) { fake_send(&f, s, strlen(s)); }

/* Sends one request and parses the one response it must get. */
static wire_resp_t ask(const char *req)
{
    f.wire.len = 0;
    send_str(req);
    wire_resp_t r;
    size_t pos = 0;
    if (getenv("T_DEBUG"))
        fprintf(stderr, "%s\n---\n%s\n", req, f.wire.data);
    assert_true(wire_next(f.wire.data, f.wire.len, &pos, &r));
    assert_int_equal(pos, f.wire.len);   /* exactly one response */
    return r;
}

static void assert_error(const wire_resp_t *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    assert_non_null(strstr(r->head, "\r\nContent-Type: application/json\r\n"));
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error")), code);
    assert_non_null(json_string_value(json_object_get(j, "message")));
    json_decref(j);
}

static uint64_t counted(int listener, int route, int method, int status)
{
    return gm.requests[listener][route][method][status / 100 - 1];
}

static void test_health_routes(void **state)
{
    open_counted();
    static const struct { const char *path, *body; } h[] = {
        {"/health/live", "{\"status\":\"ok\"}\n"},
        {"/healthz", "{\"status\":\"ok\"}\n"},
        {"/health/ready", "{\"status\":\"ready\"}\n"},
        {"/health/startup", "{\"status\":\"started\"}\n"},
    };
    char req[256];
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++) {
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", h[i].path);
        wire_resp_t r = ask(req);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, h[i].body);
        assert_non_null(strstr(r.head, "\r\nContent-Type: application/json\r\n"));
        free(r.body);
        /* HEAD: the same head (length included), no body */
        snprintf(req, sizeof req, "HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n", h[i].path);
        f.wire.len = 0;
        send_str(req);
        char cl[48];
        snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", strlen(h[i].body));
        assert_non_null(strstr(f.wire.data, cl));
        assert_null(strstr(f.wire.data, "{\"status\""));
        /* Any other method: 405 naming what the route takes. */
        snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", h[i].path);
        r = ask(req);
        assert_error(&r, 405, "method_not_allowed");
        assert_non_null(strstr(r.head, "\r\nAllow: GET, HEAD, OPTIONS\r\n"));
        free(r.body);
    }
    assert_int_equal(counted(ML_MAIN, MR_HEALTH, MM_GET, 200), 4);
    assert_int_equal(counted(ML_MAIN, MR_HEALTH, MM_HEAD, 200), 4);
    assert_int_equal(counted(ML_MAIN, MR_HEALTH, MM_POST, 405), 4);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);   /* none of these ends the connection */
}

/* /health/ready is the one that says no while the process drains (a load
 * balancer takes the instance out); liveness stays 200. */
static void test_ready_while_draining(void **state)
{
    fake_open(&f);
    atomic_store(&g_agate_draining, true);
    wire_resp_t r = ask("GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "{\"status\":\"draining\"}\n");
    assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));   /* a 503 always closes */
    free(r.body);
    fake_close(&f);
    fake_init(&f);
    fake_open(&f);
    r = ask("GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void test_options_allow(void **state)
{
    open_counted();
    static const struct { const char *path, *allow; } o[] = {
        {"/healthz", "GET, HEAD, OPTIONS"},
        {"/v1/agents/echo/run", "POST, OPTIONS"},
        {"/v1/agents/echo/ws", "GET, OPTIONS"},
        {"/", "GET, HEAD, OPTIONS"},
    };
    char req[256], allow[64];
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++) {
        snprintf(req, sizeof req, "OPTIONS %s HTTP/1.1\r\nHost: x\r\n\r\n", o[i].path);
        wire_resp_t r = ask(req);
        assert_int_equal(r.status, 204);
        snprintf(allow, sizeof allow, "\r\nAllow: %s\r\n", o[i].allow);
        assert_non_null(strstr(r.head, allow));
        assert_null(strstr(r.head, "Content-Length"));
        free(r.body);
    }
    assert_int_equal(counted(ML_MAIN, MR_RUN, MM_OPTIONS, 204), 1);
    assert_int_equal(counted(ML_MAIN, MR_WS, MM_OPTIONS, 204), 1);
}

/* Unknown paths, and paths that only look like a route, are 404 not_found
 * and counted under the not_found route, never under the route they resemble. */
static void test_not_found(void **state)
{
    open_counted();
    char longname[80];
    memset(longname, 'a', 64);
    longname[64] = 0;
    char long_req[256];
    snprintf(long_req, sizeof long_req, "POST /v1/agents/%s/run HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
             longname);
    const char *reqs[] = {
        "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /healthz/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /v1/agents//run HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "POST /v1/agents/ec%20ho/run HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "POST /v1/agents/a/b/run HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "POST /v1/agents/echo/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "POST /v1/agents/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        long_req,
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        wire_resp_t r = ask(reqs[i]);
        assert_error(&r, 404, "not_found");
        free(r.body);
    }
    assert_int_equal(counted(ML_MAIN, MR_NOT_FOUND, MM_GET, 404), 3);
    assert_int_equal(counted(ML_MAIN, MR_NOT_FOUND, MM_POST, 404), 6);
    assert_int_equal(counted(ML_MAIN, MR_RUN, MM_POST, 404), 0);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
}

/* A well-formed name of no configured agent: 404 agent_not_found on the run
 * route (keep-alive), and on the WebSocket route too, but that ends the
 * connection (llhttp took the request as an upgrade). A 63-byte name is a name. */
static void test_agent_not_found(void **state)
{
    fake_open(&f);
    char name[64];
    memset(name, 'n', 63);
    name[63] = 0;
    char req[256];
    snprintf(req, sizeof req, "POST /v1/agents/%s/run HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", name);
    wire_resp_t r = ask(req);
    assert_error(&r, 404, "agent_not_found");
    free(r.body);
    r = ask("POST /v1/agents/Echo_2.v-1/run HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    assert_error(&r, 404, "agent_not_found");
    free(r.body);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
    r = ask("GET /v1/agents/nobody/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    assert_error(&r, 404, "agent_not_found");
    assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));
    free(r.body);
    assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
}

static void test_run_and_ws_methods(void **state)
{
    open_counted();
    const struct { const char *req, *allow; } m[] = {
        {"GET /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\n\r\n", "POST, OPTIONS"},
        {"HEAD /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\n\r\n", "POST, OPTIONS"},
        {"PUT /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "POST, OPTIONS"},
        {"POST /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "GET, OPTIONS"},
        {"DELETE /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\n\r\n", "GET, OPTIONS"},
    };
    char allow[64];
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        f.wire.len = 0;
        send_str(m[i].req);   /* (a HEAD's answer has no body: read the head as text) */
        assert_memory_equal(f.wire.data, "HTTP/1.1 405 ", 13);
        snprintf(allow, sizeof allow, "\r\nAllow: %s\r\n", m[i].allow);
        assert_non_null(strstr(f.wire.data, allow));
    }
    assert_int_equal(counted(ML_MAIN, MR_RUN, MM_GET, 405), 1);
    assert_int_equal(counted(ML_MAIN, MR_RUN, MM_HEAD, 405), 1);
    assert_int_equal(counted(ML_MAIN, MR_RUN, MM_OTHER, 405), 1);
    assert_int_equal(counted(ML_MAIN, MR_WS, MM_POST, 405), 1);
    assert_int_equal(counted(ML_MAIN, MR_WS, MM_OTHER, 405), 1);
    /* The run route with its method reaches the agent; a query string is not part of the path. */
    wire_resp_t r = ask("POST /v1/agents/echo/run?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 87\r\n\r\n"
                        "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"hi there\"}]}");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "RUN_FINISHED"));
    free(r.body);
    assert_int_equal(counted(ML_MAIN, MR_RUN, MM_POST, 200), 1);
}

/* Main listener: no /metrics unless metrics.on_main_listener, no /admin/cache. */
static void test_main_listener_hides_admin_routes(void **state)
{
    open_counted();
    wire_resp_t r = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_error(&r, 404, "not_found");
    free(r.body);
    r = ask("DELETE /admin/cache HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_error(&r, 404, "not_found");
    free(r.body);
    assert_int_equal(counted(ML_MAIN, MR_NOT_FOUND, MM_GET, 404), 1);
    assert_int_equal(counted(ML_MAIN, MR_NOT_FOUND, MM_OTHER, 404), 1);
}

static void test_metrics_on_main(void **state)
{
    f.cfg.metrics_on_main = true;
    open_counted();
    g_shards = &f.sh;
    g_nshards = 1;
    wire_resp_t r = ask("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    free(r.body);
    r = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    /* the scrape sums this shard: the health check before it is there */
    assert_non_null(strstr(r.body, "agate_http_requests_total{listener=\"main\",route=\"health\",method=\"GET\",code=\"2xx\"} 1\n"));
    assert_non_null(strstr(r.body, "agate_connections{listener=\"main\"} 1\n"));
    free(r.body);
    r = ask("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"));
    assert_int_equal(strcmp(r.body + r.body_len - 6, "# EOF\n"), 0);
    free(r.body);
    assert_int_equal(counted(ML_MAIN, MR_METRICS, MM_GET, 200), 2);
}

/* Admin listener: health and /metrics, no agents, no demo page. */
static void test_admin_listener(void **state)
{
    f.admin = true;
    open_counted();
    g_shards = &f.sh;
    g_nshards = 1;
    wire_resp_t r = ask("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(r.status, 200);
    free(r.body);
    r = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "agate_connections{listener=\"admin\"} 1\n"));
    free(r.body);
    r = ask("POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    assert_error(&r, 404, "not_found");
    free(r.body);
    r = ask("GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_error(&r, 404, "not_found");
    free(r.body);
    r = ask("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_error(&r, 404, "not_found");
    free(r.body);
    assert_int_equal(counted(ML_ADMIN, MR_HEALTH, MM_GET, 200), 1);
    assert_int_equal(counted(ML_ADMIN, MR_METRICS, MM_GET, 200), 1);
    assert_int_equal(counted(ML_ADMIN, MR_NOT_FOUND, MM_POST, 404), 1);
    assert_int_equal(counted(ML_ADMIN, MR_NOT_FOUND, MM_GET, 404), 2);
    assert_int_equal(counted(ML_MAIN, MR_HEALTH, MM_GET, 200), 0);
}

/* metrics.enabled false: /metrics says it is off rather than serve zeros. */
static void test_metrics_disabled(void **state)
{
    f.cfg.metrics_enabled = false;
    f.admin = true;
    fake_open(&f);
    wire_resp_t r = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_error(&r, 404, "metrics_disabled");
    free(r.body);
}

static void test_demo_page(void **state)
{
    fake_open(&f);
    wire_resp_t r = ask("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "\r\nContent-Type: text/html; charset=utf-8\r\n"));
    assert_non_null(strstr(r.head, "\r\nContent-Security-Policy: default-src 'none'; script-src 'sha256-"));
    assert_non_null(strcasestr(r.body, "<html"));
    free(r.body);
    fake_close(&f);

    fake_init(&f);
    f.cfg.demo = false;
    fake_open(&f);
    r = ask("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_error(&r, 404, "not_found");
    free(r.body);
}

/* DELETE /admin/cache takes no query or exactly ?agent=<a configured agent>. */
static void test_admin_cache_purge(void **state)
{
    f.admin = true;
    fake_open(&f);
    wire_resp_t r = ask("DELETE /admin/cache HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"purged\":0}\n");
    free(r.body);
    r = ask("DELETE /admin/cache?agent=echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"purged\":0}\n");
    free(r.body);
    r = ask("DELETE /admin/cache?agent=nobody HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_error(&r, 404, "agent_not_found");
    free(r.body);
    const char *bad[] = {
        "DELETE /admin/cache?agent= HTTP/1.1\r\nHost: x\r\n\r\n",
        "DELETE /admin/cache?name=echo HTTP/1.1\r\nHost: x\r\n\r\n",
        "DELETE /admin/cache? HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = ask(bad[i]);
        assert_error(&r, 400, "bad_request");
        free(r.body);
    }
    r = ask("GET /admin/cache HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_error(&r, 405, "method_not_allowed");
    assert_non_null(strstr(r.head, "\r\nAllow: DELETE, OPTIONS\r\n"));
    free(r.body);
}

/* Span names: a route's template, never the client's path. */
static void test_template(void **state)
{
    assert_string_equal(router_template(MR_RUN, "/v1/agents/secret/run", 21), "/v1/agents/{name}/run");
    assert_string_equal(router_template(MR_WS, "/v1/agents/secret/ws", 20), "/v1/agents/{name}/ws");
    assert_string_equal(router_template(MR_HEALTH, "/health/ready", 13), "/health/ready");
    assert_string_equal(router_template(MR_HEALTH, "/healthz", 8), "/healthz");
    assert_string_equal(router_template(MR_HEALTH, "/elsewhere", 10), "/health");
    assert_string_equal(router_template(MR_METRICS, "/metrics", 8), "/metrics");
    assert_string_equal(router_template(MR_DEMO, "/", 1), "/");
    assert_string_equal(router_template(MR_ADMIN, "/admin/cache", 12), "/admin/cache");
    assert_string_equal(router_template(MR_NOT_FOUND, "/x/y/z", 6), "(not found)");
    assert_string_equal(router_template(MR_NONE, "", 0), "(none)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_while_draining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options_allow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_and_ws_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_main_listener_hides_admin_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_on_main, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_demo_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_cache_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_template, setup, teardown),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
