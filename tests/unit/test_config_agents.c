/* Unit tests for core/config's agents section as a list: names, types, a file
 * without agents keeping the list, cfg_find_agent, which keys go with which
 * agent type, and cfg_validate on agents built in code. A proxy agent's own
 * settings are in test_config_proxy.c. */
#include "tests/unit/config_fx.h"

/* ---- agents ---- */

static void test_agents_replace_defaults(void **state)
{
    struct fx *f = *state;

    assert_int_equal(load(f, "agents:\n  alpha:\n    type: echo\n    token_interval_ms: 3600000\n"
                             "  b-2.x_y: {type: echo}\n"), 0);
    assert_int_equal(f->c.n_agents, 2);
    assert_null(cfg_find_agent(&f->c, "echo", 4));
    assert_non_null(cfg_find_agent(&f->c, "alpha", 5));
    assert_int_equal(cfg_find_agent(&f->c, "alpha", 5)->token_interval_ms, 3600000);
    assert_non_null(cfg_find_agent(&f->c, "b-2.x_y", 7));

    /* a file without agents: keeps the current list */
    assert_int_equal(load(f, "shards: 2\n"), 0);
    assert_int_equal(f->c.n_agents, 2);
    assert_string_equal(f->c.agents[0].name, "alpha");
}

static void test_agent_errors(void **state)
{
    struct fx *f = *state;
    char yaml[4096];
    size_t used;

    assert_int_equal(load(f, "agents:\n  ok: {type: echo}\n  a/b: {type: echo}\n"), -EINVAL);
    assert_err_at(f, 3, "agents.a/b: agent names are 1 to 63 of A-Z a-z 0-9 _ . -");
    assert_int_equal(load(f, "agents:\n  'has space': {type: echo}\n"), -EINVAL);
    assert_err_at(f, 2, "agents.has space: agent names are 1 to 63 of A-Z a-z 0-9 _ . -");
    assert_int_equal(load(f, "agents:\n  '': {type: echo}\n"), -EINVAL);
    assert_err_starts(f, 2, "agents.: agent names are");
    /* 63 characters is the longest name */
    assert_int_equal(load(f, "agents:\n  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: {type: echo}\n"), 0);
    assert_int_equal(strlen(f->c.agents[0].name), 63);
    assert_int_equal(load(f, "agents:\n  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: {type: echo}\n"), -EINVAL);
    assert_err_starts(f, 2, "agents.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: agent names are");

    assert_int_equal(load(f, "agents:\n  x:\n    token_interval_ms: 5\n    type: llm\n"), -EINVAL);
    assert_err_at(f, 4, "agents.x.type: unknown agent type \"llm\" (known: echo, proxy)");
    assert_int_equal(load(f, "agents:\n  x:\n    token_interval_ms: 5\n"), -EINVAL);
    assert_err_at(f, 2, "agents.x.type: missing; every agent needs a type (known: echo, proxy)");
    assert_int_equal(load(f, "agents:\n  x:\n"), -EINVAL);
    assert_err_at(f, 2, "agents.x: expected a mapping with at least a type (e.g. type: echo)");
    assert_int_equal(load(f, "agents:\n  x:\n    type: echo\n    token_interval_ms: 3600001\n"), -EINVAL);
    assert_err_at(f, 4, "agents.x.token_interval_ms: expected a whole number from 0 to 3600000");
    assert_int_equal(load(f, "agents:\n  x: {type: echo, token_interval_ms: 5ms}\n"), -EINVAL);
    assert_err_at(f, 2, "agents.x.token_interval_ms: expected a whole number from 0 to 3600000");

    /* CFG_MAX_AGENTS fit, one more does not */
    used = (size_t)snprintf(yaml, sizeof yaml, "agents:\n");
    for (int i = 0; i < CFG_MAX_AGENTS; i++)
        used += (size_t)snprintf(yaml + used, sizeof yaml - used, "  a%d: {type: echo}\n", i);
    assert_int_equal(load(f, yaml), 0);
    assert_int_equal(f->c.n_agents, CFG_MAX_AGENTS);
    snprintf(yaml + used, sizeof yaml - used, "  extra: {type: echo}\n");
    assert_int_equal(load(f, yaml), -EINVAL);
    assert_err_at(f, CFG_MAX_AGENTS + 2, "agents: too many agents (at most 64)");
}

static void test_find_agent(void **state)
{
    struct fx *f = *state;
    const char *path = "echoX/run";

    assert_int_equal(load(f, "agents:\n  echo: {type: echo}\n  echo2: {type: echo, token_interval_ms: 7}\n"), 0);
    assert_ptr_equal(cfg_find_agent(&f->c, path, 4), &f->c.agents[0]);    /* slice, not NUL-terminated */
    assert_ptr_equal(cfg_find_agent(&f->c, "echo2", 5), &f->c.agents[1]);
    assert_null(cfg_find_agent(&f->c, "ech", 3));
    assert_null(cfg_find_agent(&f->c, "echo23", 6));
    assert_null(cfg_find_agent(&f->c, "", 0));
    assert_null(cfg_find_agent(&f->c, "ECHO", 4));
}

/* which keys go with which type, and what a proxy agent cannot do without */
static void test_proxy_and_echo_keys(void **state)
{
    struct fx *f = *state;
    static const char *const proxy_only[] = {
        "endpoints: [http://h/]", "balance: round_robin", "timeouts: {connect: 1s}", "retry: {attempts: 1}",
        "breaker: {failures: 2}", "validation: strict", "forward_headers: [authorization]", "pool: {max_idle: 1}",
        "endpoints: [https://not.checked/]",    /* the type error comes first */
    };
    char yaml[512], rest[CFG_ERR_MAX];
    cfg_t def;

    for (size_t i = 0; i < sizeof proxy_only / sizeof proxy_only[0]; i++) {
        size_t klen = strcspn(proxy_only[i], ":");

        snprintf(yaml, sizeof yaml, "agents:\n  e:\n    token_interval_ms: 5\n    %s\n    type: echo\n", proxy_only[i]);
        assert_int_equal(load(f, yaml), -EINVAL);
        snprintf(rest, sizeof rest, "agents.e.%.*s: only for type: proxy", (int)klen, proxy_only[i]);
        assert_err_at(f, 4, rest);
    }
    assert_int_equal(load_proxy(f, "    token_interval_ms: 5\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.token_interval_ms: only for type: echo");
    assert_int_equal(load(f, "agents:\n  e:\n    type: echo\n    timeout: 5s\n"), -EINVAL);
    assert_err_at(f, 4, "agents.e.timeout: unknown key (expected one of: type, token_interval_ms, resume)");

    /* no endpoints: reported at the agent */
    assert_int_equal(load(f, "agents:\n  echo: {type: echo}\n  lg:\n    type: proxy\n    balance: round_robin\n"), -EINVAL);
    assert_err_at(f, 3, "agents.lg.endpoints: missing; a proxy agent needs at least one "
                        "(e.g. endpoints: [http://127.0.0.1:8000/agent])");
    assert_int_equal(load(f, "agents:\n  lg: {type: proxy}\n"), -EINVAL);
    assert_err_starts(f, 2, "agents.lg.endpoints: missing;");
    assert_int_equal(load(f, "agents:\n  lg:\n    endpoints: [http://h/]\n"), -EINVAL);
    assert_err_at(f, 2, "agents.lg.type: missing; every agent needs a type (known: echo, proxy)");
    assert_int_equal(load(f, "agents:\n  lg:\n    endpoints: [http://h/]\n    type: [proxy]\n"), -EINVAL);
    assert_err_at(f, 4, "agents.lg.type: expected a single value, not a list");

    /* all or nothing: a bad proxy agent leaves the list as it was */
    cfg_defaults(&def);
    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints: [http://h/]\n    pool: {max_idle: 5000}\n"),
                     -EINVAL);
    assert_err_at(f, 5, "agents.lg.pool.max_idle: expected a whole number from 0 to 4096");
    assert_same_cfg(&f->c, &def);
}

/* cfg_validate holds a proxy agent built in code to the file's rules */
static void test_validate_proxy(void **state)
{
    struct fx *f = *state;
    cfg_t *c = &f->c;
    cfg_agent_t *a = &c->agents[0];
    cfg_agent_t good;

    assert_int_equal(load(f, "agents:\n  lg:\n    type: proxy\n    endpoints: [http://h/, 'http://[::1]:81/x?y']\n"
                             "    forward_headers: [authorization]\n"), 0);
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);
    c->path[0] = '\0';    /* messages without the file name */
    good = *a;

    a->n_endpoints = 0;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.endpoints: a proxy agent needs 1 to 8 endpoints");
    a->n_endpoints = 9;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    *a = good;
    a->endpoints[1].port = 0;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.endpoints[1]: port must be a number from 1 to 65535");
    *a = good;
    a->endpoints[0].host[0] = '\0';
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.endpoints[0]: missing host");
    *a = good;
    snprintf(a->endpoints[0].path, sizeof a->endpoints[0].path, "run");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.endpoints[0]: path must start with /");
    *a = good;
    memset(a->endpoints[0].host, 'h', sizeof a->endpoints[0].host);
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.endpoints[0]: host or path too long");
    *a = good;
    a->connect_timeout_ms = 0;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.timeouts.connect: must be more than 0 (e.g. 10s)");
    *a = good;
    a->breaker_error_rate = 0;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.breaker.error_rate: " RATE_RULE);
    a->breaker_error_rate = NAN;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    *a = good;
    a->balance = (cfg_balance_t)7;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.balance: expected one of round_robin, least_outstanding");
    *a = good;
    a->retry_attempts = 11;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.retry.attempts: expected a whole number from 0 to 10");
    *a = good;
    a->retry_backoff_ms = 5000;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.retry.max_backoff: must be at least retry.backoff (5000ms)");
    *a = good;
    snprintf(a->forward_headers[0], sizeof a->forward_headers[0], "X-Tenant");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.forward_headers[0]: must be lower-case");
    snprintf(a->forward_headers[0], sizeof a->forward_headers[0], "upgrade");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.forward_headers[0]: upgrade cannot be forwarded: " HOP_BY_HOP);
    a->forward_headers[0][0] = '\0';
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    a->n_forward = CFG_MAX_FORWARD + 1;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg.forward_headers: too many headers (at most 16)");
    *a = good;
    a->kind = (cfg_agent_kind_t)9;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.lg: unknown agent type (known: echo, proxy)");
    *a = good;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);

    /* an echo agent is held to the echo table only */
    cfg_defaults(c);
    c->agents[0].token_interval_ms = 3600001;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.echo.token_interval_ms: expected a whole number from 0 to 3600000");
    c->agents[0].token_interval_ms = 0;
    c->agents[0].connect_timeout_ms = 0;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);
}

/* agents.<name>.resume: both types, defaults, values, errors naming line and key. */
static void test_resume_keys(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "agents:\n  e: {type: echo}\n"), 0);
    const cfg_agent_t *a = cfg_find_agent(&f->c, "e", 1);
    assert_false(a->resume_enabled);
    assert_int_equal(a->resume_log_ttl_ms, 300000);
    assert_int_equal(a->resume_max_bytes, 1 << 20);
    assert_int_equal(a->resume_detach_ms, 30000);
    assert_int_equal(load(f, "agents:\n  e:\n    type: echo\n    resume: {enabled: true, log_ttl: 2s, max_bytes: 64KiB, "
                             "detach_timeout: 0s}\n"), 0);
    a = cfg_find_agent(&f->c, "e", 1);
    assert_true(a->resume_enabled);
    assert_int_equal(a->resume_log_ttl_ms, 2000);
    assert_int_equal(a->resume_max_bytes, 65536);
    assert_int_equal(a->resume_detach_ms, 0);
    assert_int_equal(load_proxy(f, "    resume:\n      enabled: true\n"), 0);
    assert_int_equal(load(f, "agents:\n  e:\n    type: echo\n    resume:\n      ttl: 5s\n"), -EINVAL);
    assert_err_at(f, 5, "agents.e.resume.ttl: unknown key (expected one of: enabled, log_ttl, max_bytes, detach_timeout)");
    assert_int_equal(load(f, "agents:\n  e:\n    type: echo\n    resume: {max_bytes: 100}\n"), -EINVAL);
    assert_non_null(strstr(f->err, ":4: agents.e.resume.max_bytes"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_agents_replace_defaults),
        T(test_agent_errors),
        T(test_find_agent),
        T(test_proxy_and_echo_keys),
        T(test_validate_proxy),
        T(test_resume_keys),
    };
#undef T
    return cmocka_run_group_tests_name("config_agents", tests, NULL, NULL);
}
