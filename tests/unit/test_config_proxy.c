/* Unit tests for a proxy agent's settings in core/config: every key at once,
 * the defaults, each scalar's good and bad values (timeouts, retry, breaker,
 * pool, balance, validation, max_event), endpoints as URLs, forward_headers. */
#include "tests/unit/config_fx.h"

/* ---- proxy agents ---- */

/* "<section>:" on line 5 and "<key>: <value>" on line 6 of agents.lg, or
 * "<key>: <value>" on line 5 */
static int proxy_kv(struct fx *f, const char *section, const char *key, const char *value)
{
    char more[1024];

    if (section)
        snprintf(more, sizeof more, "    %s:\n      %s: %s\n", section, key, value);
    else
        snprintf(more, sizeof more, "    %s: %s\n", key, value);
    return load_proxy(f, more);
}

static void check_proxy_bad(struct fx *f, const char *section, const char *key, const struct bad *b, size_t n)
{
    char rest[CFG_ERR_MAX];

    for (size_t i = 0; i < n; i++) {
        if (proxy_kv(f, section, key, b[i].text) != -EINVAL) {
            print_error("agents.lg.%s%s%s: %s was accepted\n", section ? section : "", section ? "." : "", key,
                        b[i].text);
            fail();
        }
        if (section)
            snprintf(rest, sizeof rest, "agents.lg.%s.%s: %s", section, key, b[i].problem);
        else
            snprintf(rest, sizeof rest, "agents.lg.%s: %s", key, b[i].problem);
        assert_err_at(f, section ? 6 : 5, rest);
    }
}

static void test_proxy_full(void **state)
{
    struct fx *f = *state;
    const cfg_agent_t *a;

    assert_int_equal(load(f,
        "agents:\n"
        "  lg:\n"
        "    type: proxy\n"
        "    endpoints:\n"
        "      - http://127.0.0.1:8000/agent\n"
        "      - http://[::1]:8001/agent?tenant=a\n"
        "      - http://langgraph.internal\n"
        "    balance: least_outstanding\n"
        "    timeouts: {connect: 1s, first_event: 20s, idle: 90s, run: 1h}\n"
        "    retry: {attempts: 3, backoff: 100ms, max_backoff: 2s}\n"
        "    breaker: {failures: 7, error_rate: 0.25, min_requests: 40, open: 30s, half_open_trials: 2}\n"
        "    validation: pass\n"
        "    max_event: 16MiB\n"
        "    forward_headers: [Authorization, cookie, X-Tenant-Id]\n"
        "    pool: {max_idle: 32, idle_timeout: 90s}\n"
        "  echo:\n"
        "    type: echo\n"
        "    token_interval_ms: 10\n"), 0);
    assert_int_equal(f->c.n_agents, 2);
    a = cfg_find_agent(&f->c, "lg", 2);
    assert_non_null(a);
    assert_int_equal(a->kind, CFG_AGENT_PROXY);
    assert_int_equal(a->n_endpoints, 3);
    assert_string_equal(a->endpoints[0].host, "127.0.0.1");
    assert_int_equal(a->endpoints[0].port, 8000);
    assert_string_equal(a->endpoints[0].path, "/agent");
    assert_string_equal(a->endpoints[1].host, "::1");
    assert_int_equal(a->endpoints[1].port, 8001);
    assert_string_equal(a->endpoints[1].path, "/agent?tenant=a");
    assert_string_equal(a->endpoints[2].host, "langgraph.internal");
    assert_int_equal(a->endpoints[2].port, 80);
    assert_string_equal(a->endpoints[2].path, "/");
    assert_int_equal(a->balance, CFG_BALANCE_LEAST_OUTSTANDING);
    assert_int_equal(a->connect_timeout_ms, 1000);
    assert_int_equal(a->first_event_timeout_ms, 20000);
    assert_int_equal(a->idle_timeout_ms, 90000);
    assert_int_equal(a->run_timeout_ms, 3600000);
    assert_int_equal(a->retry_attempts, 3);
    assert_int_equal(a->retry_backoff_ms, 100);
    assert_int_equal(a->retry_backoff_max_ms, 2000);
    assert_int_equal(a->breaker_failures, 7);
    assert_true(a->breaker_error_rate == 0.25);
    assert_int_equal(a->breaker_min_requests, 40);
    assert_int_equal(a->breaker_open_ms, 30000);
    assert_int_equal(a->breaker_half_open, 2);
    assert_int_equal(a->validation, CFG_VALIDATION_PASS);
    assert_int_equal(a->max_event_bytes, 16u << 20);
    assert_int_equal(a->n_forward, 3);
    assert_string_equal(a->forward_headers[0], "authorization");
    assert_string_equal(a->forward_headers[1], "cookie");
    assert_string_equal(a->forward_headers[2], "x-tenant-id");
    assert_int_equal(a->pool_max_idle, 32);
    assert_int_equal(a->pool_idle_timeout_ms, 90000);

    a = cfg_find_agent(&f->c, "echo", 4);
    assert_non_null(a);
    assert_int_equal(a->kind, CFG_AGENT_ECHO);
    assert_int_equal(a->token_interval_ms, 10);
    assert_proxy_defaults(a);
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);
}

/* type and endpoints are enough; type may come last; empty sections are fine */
static void test_proxy_defaults(void **state)
{
    struct fx *f = *state;
    const cfg_agent_t *a = &f->c.agents[0];

    assert_int_equal(load(f, "agents:\n  lg:\n    endpoints:\n      - http://10.0.0.7:9000/run\n    type: proxy\n"), 0);
    assert_int_equal(f->c.n_agents, 1);
    assert_string_equal(a->name, "lg");
    assert_int_equal(a->kind, CFG_AGENT_PROXY);
    assert_int_equal(a->n_endpoints, 1);
    assert_string_equal(a->endpoints[0].host, "10.0.0.7");
    assert_int_equal(a->endpoints[0].port, 9000);
    assert_string_equal(a->endpoints[0].path, "/run");
    assert_int_equal(a->token_interval_ms, 0);
    assert_proxy_defaults(a);
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);

    assert_int_equal(load_proxy(f, "    timeouts:\n    retry: ~\n    breaker: {}\n    pool:\n    forward_headers:\n"), 0);
    assert_proxy_defaults(a);
    assert_int_equal(load_proxy(f, "    forward_headers: []\n"), 0);
    assert_int_equal(a->n_forward, 0);
}

/* every scalar key of a proxy agent: good values land, bad ones name line and key */
static void test_proxy_values(void **state)
{
    struct fx *f = *state;
    static const struct { const char *section, *key, *text; size_t off; uint32_t want; } good[] = {
        { "timeouts", "connect", "1ms", offsetof(cfg_agent_t, connect_timeout_ms), 1 },
        { "timeouts", "first_event", "2m", offsetof(cfg_agent_t, first_event_timeout_ms), 120000 },
        { "timeouts", "idle", "4294967295ms", offsetof(cfg_agent_t, idle_timeout_ms), 4294967295u },
        { "timeouts", "run", "2h", offsetof(cfg_agent_t, run_timeout_ms), 7200000 },
        { "retry", "attempts", "0", offsetof(cfg_agent_t, retry_attempts), 0 },
        { "retry", "attempts", "10", offsetof(cfg_agent_t, retry_attempts), 10 },
        { "retry", "backoff", "1s", offsetof(cfg_agent_t, retry_backoff_ms), 1000 },    /* = max_backoff */
        { "retry", "max_backoff", "1m", offsetof(cfg_agent_t, retry_backoff_max_ms), 60000 },
        { "breaker", "failures", "1", offsetof(cfg_agent_t, breaker_failures), 1 },
        { "breaker", "min_requests", "1", offsetof(cfg_agent_t, breaker_min_requests), 1 },
        { "breaker", "open", "250ms", offsetof(cfg_agent_t, breaker_open_ms), 250 },
        { "breaker", "half_open_trials", "1", offsetof(cfg_agent_t, breaker_half_open), 1 },
        { "pool", "max_idle", "0", offsetof(cfg_agent_t, pool_max_idle), 0 },
        { "pool", "max_idle", "4096", offsetof(cfg_agent_t, pool_max_idle), 4096 },
        { "pool", "idle_timeout", "5s", offsetof(cfg_agent_t, pool_idle_timeout_ms), 5000 },
        { NULL, "max_event", "1KiB", offsetof(cfg_agent_t, max_event_bytes), 1024 },
        { NULL, "max_event", "1GiB", offsetof(cfg_agent_t, max_event_bytes), 1u << 30 },
    };
    static const struct bad bad_timeout[] = {
        { "0s", "must be more than 0 (e.g. 10s)" }, { "30", DUR_SYNTAX }, { "1.5s", DUR_SYNTAX },
        { "4294967296ms", "too long: at most 4294967295ms" }, { "''", "no value given" },
        { "[1s]", "expected a single value, not a list" },
    };
    static const struct bad bad_attempts[] = {
        { "11", "expected a whole number from 0 to 10" }, { "-1", "expected a whole number from 0 to 10" },
        { "two", "expected a whole number from 0 to 10" },
    };
    static const struct bad bad_failures[] = { { "0", "expected a whole number from 1 to 10000" } };
    static const struct bad bad_min_requests[] = { { "0", "expected a whole number from 1 to 100000" } };
    static const struct bad bad_half_open[] = { { "0", "expected a whole number from 1 to 1000" } };
    static const struct bad bad_max_idle[] = { { "4097", "expected a whole number from 0 to 4096" } };
    static const struct bad bad_rate[] = {
        { "0", RATE_RULE }, { "0.0", RATE_RULE }, { "1.5", RATE_RULE }, { "-0.5", RATE_RULE },
        { "50%", RATE_RULE }, { "''", "no value given" },
    };
    static const struct bad bad_balance[] = {
        { "random", "expected one of round_robin, least_outstanding" },
        { "round-robin", "expected one of round_robin, least_outstanding" },
    };
    static const struct bad bad_validation[] = { { "lenient", "expected one of strict, pass" } };
    static const struct bad bad_max_event[] = {
        { "1023", "must be at least 1024 bytes" }, { "2GiB", "too large: at most 1073741824 bytes" },
        { "4MB4", SIZE_SYNTAX },
    };
    static const char *const timeouts[] = { "connect", "first_event", "idle", "run" };
    const cfg_agent_t *a = &f->c.agents[0];

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (proxy_kv(f, good[i].section, good[i].key, good[i].text) != 0) {
            print_error("%s.%s: %s: %s\n", good[i].section, good[i].key, good[i].text, f->err);
            fail();
        }
        assert_int_equal(*(const uint32_t *)(const void *)((const char *)a + good[i].off), good[i].want);
        assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);
    }
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++)
        check_proxy_bad(f, "timeouts", timeouts[i], bad_timeout, sizeof bad_timeout / sizeof bad_timeout[0]);
    check_proxy_bad(f, "retry", "backoff", bad_timeout, 3);
    check_proxy_bad(f, "retry", "max_backoff", bad_timeout, 3);
    check_proxy_bad(f, "breaker", "open", bad_timeout, 3);
    check_proxy_bad(f, "pool", "idle_timeout", bad_timeout, 3);
    check_proxy_bad(f, "retry", "attempts", bad_attempts, sizeof bad_attempts / sizeof bad_attempts[0]);
    check_proxy_bad(f, "breaker", "failures", bad_failures, 1);
    check_proxy_bad(f, "breaker", "min_requests", bad_min_requests, 1);
    check_proxy_bad(f, "breaker", "half_open_trials", bad_half_open, 1);
    check_proxy_bad(f, "pool", "max_idle", bad_max_idle, 1);
    check_proxy_bad(f, "breaker", "error_rate", bad_rate, sizeof bad_rate / sizeof bad_rate[0]);
    check_proxy_bad(f, NULL, "balance", bad_balance, sizeof bad_balance / sizeof bad_balance[0]);
    check_proxy_bad(f, NULL, "validation", bad_validation, 1);
    check_proxy_bad(f, NULL, "max_event", bad_max_event, sizeof bad_max_event / sizeof bad_max_event[0]);

    assert_int_equal(proxy_kv(f, "breaker", "error_rate", "1"), 0);
    assert_true(a->breaker_error_rate == 1.0);
    assert_int_equal(proxy_kv(f, "breaker", "error_rate", "0.01"), 0);
    assert_true(a->breaker_error_rate == 0.01);
    assert_int_equal(proxy_kv(f, NULL, "balance", "least_outstanding"), 0);
    assert_int_equal(a->balance, CFG_BALANCE_LEAST_OUTSTANDING);
    assert_int_equal(proxy_kv(f, NULL, "balance", "round_robin"), 0);
    assert_int_equal(a->balance, CFG_BALANCE_ROUND_ROBIN);
    assert_int_equal(proxy_kv(f, NULL, "validation", "pass"), 0);
    assert_int_equal(a->validation, CFG_VALIDATION_PASS);
    assert_int_equal(proxy_kv(f, NULL, "validation", "strict"), 0);
    assert_int_equal(a->validation, CFG_VALIDATION_STRICT);

    /* max_backoff below backoff: reported at the key that was set */
    assert_int_equal(proxy_kv(f, "retry", "backoff", "2s"), -EINVAL);
    assert_err_at(f, 6, "agents.lg.retry.backoff: must be at most retry.max_backoff (1000ms)");
    assert_int_equal(proxy_kv(f, "retry", "max_backoff", "10ms"), -EINVAL);
    assert_err_at(f, 6, "agents.lg.retry.max_backoff: must be at least retry.backoff (50ms)");
    assert_int_equal(load_proxy(f, "    retry:\n      max_backoff: 100ms\n      backoff: 200ms\n"), -EINVAL);
    assert_err_at(f, 6, "agents.lg.retry.max_backoff: must be at least retry.backoff (200ms)");
    assert_int_equal(load_proxy(f, "    retry: {backoff: 2s, max_backoff: 2s}\n"), 0);

    /* section shapes and keys */
    assert_int_equal(load_proxy(f, "    timeouts:\n      connect: 1s\n      connnect: 2s\n"), -EINVAL);
    assert_err_at(f, 7, "agents.lg.timeouts.connnect: unknown key (expected one of: connect, first_event, idle, run)");
    assert_int_equal(load_proxy(f, "    breaker: {open: 1s, close: 2s}\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.breaker.close: unknown key (expected one of: failures, error_rate, "
                        "min_requests, open, half_open_trials)");
    assert_int_equal(load_proxy(f, "    retry: {attempts: 1}\n    pool: {max_idle: 1, max_idle: 2}\n"), -EINVAL);
    assert_err_at(f, 6, "agents.lg.pool.max_idle: duplicate key (first at line 6)");
    assert_int_equal(load_proxy(f, "    timeouts: 5s\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.timeouts: expected a mapping of settings, not a single value");
    assert_int_equal(load_proxy(f, "    balance: [round_robin]\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.balance: expected a single value, not a list");
    assert_int_equal(load_proxy(f, "    weights: [1, 2]\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.weights: unknown key (expected one of: type, endpoints, balance, validation, max_event, "
                        "timeouts, retry, breaker, pool, forward_headers, cache, resume)");
}

/* agents.lg.endpoints[1] on line 6, after a good endpoints[0] */
static int load_endpoint(struct fx *f, const char *url)
{
    char yaml[1024];

    snprintf(yaml, sizeof yaml, "agents:\n  lg:\n    type: proxy\n    endpoints:\n      - http://10.0.0.1/\n      - %s\n",
             url);
    return load(f, yaml);
}

#define ENDPOINT_RULE "expected http://host[:port][/path] (e.g. http://127.0.0.1:8000/agent)"

static void test_proxy_endpoints(void **state)
{
    struct fx *f = *state;
    static const struct { const char *url, *host; uint16_t port; const char *path; } good[] = {
        { "http://127.0.0.1:8000/agent", "127.0.0.1", 8000, "/agent" },
        { "http://[::1]:9000/run", "::1", 9000, "/run" },
        { "'http://[2001:db8::7]/'", "2001:db8::7", 80, "/" },
        { "http://agent.internal", "agent.internal", 80, "/" },
        { "http://localhost:8080", "localhost", 8080, "/" },
        { "http://my_service-1:65535/a/b/", "my_service-1", 65535, "/a/b/" },
        { "http://h:81/run?x=1&y=%2F", "h", 81, "/run?x=1&y=%2F" },
        { "http://h?x=1", "h", 80, "/?x=1" },
        { "HTTP://Example.COM/A", "Example.COM", 80, "/A" },
    };
    static const struct bad bad[] = {
        { "https://127.0.0.1:8443/agent", "https is not supported yet (use http://)" },
        { "HTTPS://h/", "https is not supported yet (use http://)" },
        { "ftp://h/", ENDPOINT_RULE }, { "127.0.0.1:8000/agent", ENDPOINT_RULE }, { "h", ENDPOINT_RULE },
        { "http://h:0/", "port must be a number from 1 to 65535" },
        { "http://h:65536/", "port must be a number from 1 to 65535" },
        { "http://h:/x", "port must be a number from 1 to 65535" },
        { "http://h:80x/", "port must be a number from 1 to 65535" },
        { "http://h:-1/", "port must be a number from 1 to 65535" },
        { "http://[::1]:99999/", "port must be a number from 1 to 65535" },
        { "http://user:secret@h/", "user@ (userinfo) is not allowed in an endpoint" },
        { "http://user@h:80/", "user@ (userinfo) is not allowed in an endpoint" },
        { "http://h/a#part", "a #fragment is not allowed in an endpoint" },
        { "http:///x", "missing host" }, { "http://:80/x", "missing host" }, { "http://", "missing host" },
        { "http://[::1/x", "missing ] after the IPv6 address" },
        { "http://[nope]/x", "not a numeric IPv6 address inside [ ]" },
        { "http://[]/", "not a numeric IPv6 address inside [ ]" },
        { "http://[1.2.3.4]/", "not a numeric IPv6 address inside [ ]" },
        { "http://[fe80::1%25eth0]/", "not a numeric IPv6 address inside [ ]" },
        { "http://[::1]x/", ENDPOINT_RULE },
        { "http://::1/x", "put an IPv6 address in brackets, e.g. http://[::1]:8000/agent" },
        { "http://fe80::1:8000/x", "put an IPv6 address in brackets, e.g. http://[::1]:8000/agent" },
        { "http://1.2.3.256/", "not an IPv4 address (four numbers 0 to 255)" },
        { "http://10.1/", "not an IPv4 address (four numbers 0 to 255)" },
        { "http://-h/", "host must be a name, an IPv4 address or an [IPv6] address" },
        { "http://a b/", "host must be a name, an IPv4 address or an [IPv6] address" },
        { "http://h%41/", "host must be a name, an IPv4 address or an [IPv6] address" },
        { "http://h/a b", "path must be printable ASCII without spaces (percent-encode the rest, e.g. %20)" },
        { "\"http://h/caf\\u00e9\"", "path must be printable ASCII without spaces (percent-encode the rest, e.g. %20)" },
        { "http://h/%zz", "bad %-escape in the path (expected % and two hex digits)" },
        { "http://h/%4", "bad %-escape in the path (expected % and two hex digits)" },
        { "''", "no value given" }, { "~", "no value given" },
        { "{url: 'http://h/'}", "expected a single value, not a mapping" },
        { "http://10.0.0.1:80/", "repeats endpoints[0]" },
    };
    const cfg_agent_t *a = &f->c.agents[0];
    char url[400], rest[CFG_ERR_MAX];

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (load_endpoint(f, good[i].url) != 0) {
            print_error("%s: %s\n", good[i].url, f->err);
            fail();
        }
        assert_int_equal(a->n_endpoints, 2);
        assert_string_equal(a->endpoints[1].host, good[i].host);
        assert_int_equal(a->endpoints[1].port, good[i].port);
        assert_string_equal(a->endpoints[1].path, good[i].path);
        assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (load_endpoint(f, bad[i].text) != -EINVAL) {
            print_error("endpoint %s was accepted\n", bad[i].text);
            fail();
        }
        snprintf(rest, sizeof rest, "agents.lg.endpoints[1]: %s", bad[i].problem);
        assert_err_at(f, 6, rest);
    }

    /* lengths: the path holds 255 characters, the host 127 */
    snprintf(url, sizeof url, "http://h/%0254d", 0);
    assert_int_equal(load_endpoint(f, url), 0);
    assert_int_equal(strlen(a->endpoints[1].path), 255);
    snprintf(url, sizeof url, "http://h/%0255d", 0);
    assert_int_equal(load_endpoint(f, url), -EINVAL);
    assert_err_at(f, 6, "agents.lg.endpoints[1]: path too long (at most 255 characters)");
    snprintf(url, sizeof url, "http://h?%0254d", 0);    /* the "/" added before "?" counts */
    assert_int_equal(load_endpoint(f, url), -EINVAL);
    memset(url, 'h', sizeof url);
    memcpy(url, "http://", 7);
    url[7 + 127] = '\0';
    assert_int_equal(load_endpoint(f, url), 0);
    assert_int_equal(strlen(a->endpoints[1].host), 127);
    url[7 + 127] = 'h';
    url[7 + 128] = '\0';
    assert_int_equal(load_endpoint(f, url), -EINVAL);
    assert_err_at(f, 6, "agents.lg.endpoints[1]: host too long (at most 127 characters)");

    /* the list itself */
    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints: http://h/\n"), -EINVAL);
    assert_err_at(f, 4, "agents.lg.endpoints: expected a list of http:// URLs (e.g. [http://127.0.0.1:8000/agent]), "
                        "not a single value");
    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints:\n"), -EINVAL);
    assert_err_at(f, 4, "agents.lg.endpoints: expected a list of http:// URLs (e.g. [http://127.0.0.1:8000/agent]), "
                        "not an empty value");
    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints: []\n"), -EINVAL);
    assert_err_at(f, 4, "agents.lg.endpoints: at least one endpoint is required");
    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints: [http://h/, 'https://h/']\n"), -EINVAL);
    assert_err_at(f, 4, "agents.lg.endpoints[1]: https is not supported yet (use http://)");
    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints: [http://h:1/, http://h:2/, http://h:3/, "
                             "http://h:4/, http://h:5/, http://h:6/, http://h:7/, http://h:8/]\n"), 0);
    assert_int_equal(a->n_endpoints, CFG_MAX_ENDPOINTS);
    assert_int_equal(a->endpoints[7].port, 8);
    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints:\n      - http://h:1/\n      - http://h:2/\n"
                             "      - http://h:3/\n      - http://h:4/\n      - http://h:5/\n      - http://h:6/\n"
                             "      - http://h:7/\n      - http://h:8/\n      - http://h:9/\n"), -EINVAL);
    assert_err_at(f, 13, "agents.lg.endpoints: too many endpoints (at most 8)");
    /* the same host, port and path twice, host case aside */
    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints: [http://H/a, http://h:80/a]\n"), -EINVAL);
    assert_err_at(f, 4, "agents.lg.endpoints[1]: repeats endpoints[0]");
    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints: [http://h/a, http://h/a?b]\n"), 0);
}

static void test_proxy_forward_headers(void **state)
{
    struct fx *f = *state;
    static const char *const hop[] = {
        "connection", "Keep-Alive", "te", "trailer", "Transfer-Encoding", "upgrade", "proxy-authorization",
        "Proxy-Connection", "proxy-authenticate",
    };
    static const struct bad bad[] = {
        { "host", "host cannot be forwarded: agate sets it to the endpoint's host" },
        { "Content-Length", "content-length cannot be forwarded: agate sets it for the body it sends" },
        { "'x tenant'", "not a header name (letters, digits and !#$%&'*+-.^_`|~ only)" },
        { "'x:y'", "not a header name (letters, digits and !#$%&'*+-.^_`|~ only)" },
        { "\"caf\\u00e9\"", "not a header name (letters, digits and !#$%&'*+-.^_`|~ only)" },
        { "''", "no value given" }, { "~", "no value given" }, { "null", "no value given" },
        { "[a]", "expected a single value, not a list" },
        { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
          "header name too long (at most 63 characters)" },
        { "Authorization", "repeats forward_headers[0]" },
    };
    const cfg_agent_t *a = &f->c.agents[0];
    char more[512], rest[CFG_ERR_MAX];
    size_t used;

    assert_int_equal(load_proxy(f, "    forward_headers:\n      - Authorization\n      - X-Request-ID\n"
                                   "      - \"x-b3-!#$%&'*+.^_`|~\"\n"), 0);
    assert_int_equal(a->n_forward, 3);
    assert_string_equal(a->forward_headers[0], "authorization");
    assert_string_equal(a->forward_headers[1], "x-request-id");
    assert_string_equal(a->forward_headers[2], "x-b3-!#$%&'*+.^_`|~");
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);

    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++) {
        char lower[64];

        snprintf(more, sizeof more, "    forward_headers:\n      - authorization\n      - %s\n", hop[i]);
        assert_int_equal(load_proxy(f, more), -EINVAL);
        for (size_t j = 0; j <= strlen(hop[i]); j++)
            lower[j] = (char)(hop[i][j] >= 'A' && hop[i][j] <= 'Z' ? hop[i][j] + 32 : hop[i][j]);
        snprintf(rest, sizeof rest, "agents.lg.forward_headers[1]: %s cannot be forwarded: " HOP_BY_HOP, lower);
        assert_err_at(f, 7, rest);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(more, sizeof more, "    forward_headers:\n      - authorization\n      - %s\n", bad[i].text);
        if (load_proxy(f, more) != -EINVAL) {
            print_error("forward header %s was accepted\n", bad[i].text);
            fail();
        }
        snprintf(rest, sizeof rest, "agents.lg.forward_headers[1]: %s", bad[i].problem);
        assert_err_at(f, 7, rest);
    }

    /* 16 fit, one more does not */
    used = (size_t)snprintf(more, sizeof more, "    forward_headers: [");
    for (int i = 0; i < CFG_MAX_FORWARD; i++)
        used += (size_t)snprintf(more + used, sizeof more - used, "%sx-h%d", i ? ", " : "", i);
    snprintf(more + used, sizeof more - used, "]\n");
    assert_int_equal(load_proxy(f, more), 0);
    assert_int_equal(a->n_forward, CFG_MAX_FORWARD);
    assert_string_equal(a->forward_headers[15], "x-h15");
    snprintf(more + used, sizeof more - used, ", x-h16]\n");
    assert_int_equal(load_proxy(f, more), -EINVAL);
    assert_err_at(f, 5, "agents.lg.forward_headers: too many headers (at most 16)");

    assert_int_equal(load_proxy(f, "    forward_headers: authorization\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.forward_headers: expected a list of header names (e.g. [authorization, "
                        "x-tenant-id]), not a single value");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_proxy_full),
        T(test_proxy_defaults),
        T(test_proxy_values),
        T(test_proxy_endpoints),
        T(test_proxy_forward_headers),
    };
#undef T
    return cmocka_run_group_tests_name("config_proxy", tests, NULL, NULL);
}
