/* Unit tests for core/config as a whole: the defaults, whole files (every key,
 * some keys, none, deploy/agate.yaml), errors in the file's structure (unknown
 * and duplicate keys, wrong shapes, YAML syntax, a missing file) with file, line
 * and key, and cfg_validate's cross-field rules for the top-level settings. */
#include "tests/unit/config_fx.h"

/* ---- defaults and whole files ---- */

static void test_defaults(void **state)
{
    struct fx *f = *state;
    cfg_t *c = &f->c;

    assert_string_equal(c->path, "");
    assert_string_equal(c->listen, "0.0.0.0:8080");
    assert_string_equal(c->admin_listen, "0.0.0.0:9090");
    assert_int_equal(c->shards, 0);
    assert_int_equal(c->max_connections, 10000);
    assert_int_equal(c->max_body_bytes, 1048576);
    assert_int_equal(c->max_header_bytes, 16384);
    assert_int_equal(c->header_timeout_ms, 10000);
    assert_int_equal(c->body_timeout_ms, 30000);
    assert_int_equal(c->idle_timeout_ms, 60000);
    assert_int_equal(c->heartbeat_ms, 15000);
    assert_int_equal(c->pb_heartbeat_ms, 15000);
    assert_int_equal(c->max_token_interval_ms, 1000);
    assert_int_equal(c->stream_buffer_bytes, 262144);
    assert_int_equal(c->drain_timeout_ms, 25000);
    assert_true(c->log_requests);
    assert_int_equal(c->log_level, CFG_LOG_INFO);
    assert_true(c->log_sample == 1.0);
    assert_int_equal(c->log_writeback_bytes, 4u << 20);
    assert_int_equal(c->log_buffer_bytes, 2u << 20);
    assert_true(c->metrics_enabled);
    assert_false(c->metrics_on_main);
    assert_string_equal(c->otlp_endpoint, "");
    assert_string_equal(c->service_name, "agate");
    assert_int_equal(c->otlp_interval_ms, 1000);
    assert_int_equal(c->otlp_max_batch, 512);
    assert_int_equal(c->n_agents, 1);
    assert_string_equal(c->agents[0].name, "echo");
    assert_int_equal(c->agents[0].kind, CFG_AGENT_ECHO);
    assert_int_equal(c->agents[0].token_interval_ms, 0);
    assert_proxy_defaults(&c->agents[0]);    /* every agent holds every agent default */
    assert_int_equal(c->agents[0].n_endpoints, 0);
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);
}

static void test_full_file(void **state)
{
    struct fx *f = *state;
    cfg_t *c = &f->c;

    assert_int_equal(load(f,
        "# every key, none at its default\n"
        "listen: 127.0.0.1:18080\n"
        "admin_listen: \"[::1]:19090\"\n"
        "shards: 3\n"
        "limits:\n"
        "  max_connections: 500\n"
        "  max_body: 64KiB\n"
        "  max_header: 8KiB\n"
        "  header_timeout: 5s\n"
        "  body_timeout: 2m\n"
        "  idle_timeout: 1h\n"
        "stream:\n"
        "  heartbeat: 0s\n"
        "  protobuf_heartbeat: 45s\n"
        "  max_token_interval: 250ms\n"
        "  buffer: 1MB\n"
        "  drain_timeout: 3s\n"
        "log: {requests: no, level: debug, sample: 0.25, writeback: 0, buffer: 16MiB}\n"
        "metrics:\n"
        "  enabled: false\n"
        "  on_main_listener: true\n"
        "trace:\n"
        "  otlp_endpoint: http://127.0.0.1:4318/v1/traces\n"
        "  service_name: agate-eu-1\n"
        "  export_interval: 250ms\n"
        "  max_batch: 100\n"
        "agents:\n"
        "  fast:\n"
        "    type: echo\n"
        "  slow:\n"
        "    type: echo\n"
        "    token_interval_ms: 40\n"), 0);
    assert_string_equal(c->path, f->path);
    assert_string_equal(c->listen, "127.0.0.1:18080");
    assert_string_equal(c->admin_listen, "[::1]:19090");
    assert_int_equal(c->shards, 3);
    assert_int_equal(c->max_connections, 500);
    assert_int_equal(c->max_body_bytes, 65536);
    assert_int_equal(c->max_header_bytes, 8192);
    assert_int_equal(c->header_timeout_ms, 5000);
    assert_int_equal(c->body_timeout_ms, 120000);
    assert_int_equal(c->idle_timeout_ms, 3600000);
    assert_int_equal(c->heartbeat_ms, 0);
    assert_int_equal(c->pb_heartbeat_ms, 45000);
    assert_int_equal(c->max_token_interval_ms, 250);
    assert_int_equal(c->stream_buffer_bytes, 1000000);
    assert_int_equal(c->drain_timeout_ms, 3000);
    assert_false(c->log_requests);
    assert_int_equal(c->log_level, CFG_LOG_DEBUG);
    assert_true(c->log_sample == 0.25);
    assert_int_equal(c->log_writeback_bytes, 0);
    assert_int_equal(c->log_buffer_bytes, 16u << 20);
    assert_false(c->metrics_enabled);
    assert_true(c->metrics_on_main);
    assert_string_equal(c->otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_string_equal(c->service_name, "agate-eu-1");
    assert_int_equal(c->otlp_interval_ms, 250);
    assert_int_equal(c->otlp_max_batch, 100);
    assert_int_equal(c->n_agents, 2);
    assert_string_equal(c->agents[0].name, "fast");
    assert_int_equal(c->agents[0].token_interval_ms, 0);
    assert_string_equal(c->agents[1].name, "slow");
    assert_int_equal(c->agents[1].kind, CFG_AGENT_ECHO);
    assert_int_equal(c->agents[1].token_interval_ms, 40);
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);
}

/* A file that only sets some keys leaves the rest alone. */
static void test_partial_file_keeps_defaults(void **state)
{
    struct fx *f = *state;
    cfg_t def;

    cfg_defaults(&def);
    assert_int_equal(load(f, "limits:\n  max_body: 2MiB\n"), 0);
    assert_int_equal(f->c.max_body_bytes, 2u << 20);
    def.max_body_bytes = 2u << 20;
    assert_same_cfg(&f->c, &def);
}

static void test_empty_files(void **state)
{
    struct fx *f = *state;
    cfg_t def;

    cfg_defaults(&def);
    assert_int_equal(load(f, ""), 0);
    assert_string_equal(f->c.path, f->path);
    assert_same_cfg(&f->c, &def);
    assert_int_equal(load(f, "# only comments\n"), 0);
    assert_int_equal(load(f, "---\n"), 0);
    assert_int_equal(load(f, "limits:\n  # max_body: 1MiB\nstream: ~\n"), 0);
    assert_same_cfg(&f->c, &def);
}

/* deploy/agate.yaml documents the defaults; it must stay equal to them. */
static void test_deploy_example_is_defaults(void **state)
{
    struct fx *f = *state;
    char path[512];
    const char *slash = strstr(__FILE__, "tests/unit/");
    cfg_t def;
    int rc;

    snprintf(path, sizeof path, "%.*sdeploy/agate.yaml", slash ? (int)(slash - __FILE__) : 0, __FILE__);
    rc = cfg_load_file(&f->c, path, f->err, sizeof f->err);
    if (rc == -ENOENT)
        skip();    /* run from outside the source tree */
    if (rc)
        print_error("%s\n", f->err);
    assert_int_equal(rc, 0);
    cfg_defaults(&def);
    assert_same_cfg(&f->c, &def);
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);
}

/* The commented-out proxy agent in deploy/agate.yaml, uncommented, loads and
 * holds the defaults it claims (its forward_headers aside). */
static void test_deploy_proxy_example(void **state)
{
    struct fx *f = *state;
    char path[512], line[512], yaml[16384];
    const char *slash = strstr(__FILE__, "tests/unit/");
    const cfg_agent_t *a;
    size_t used = 0;
    bool in = false;
    FILE *fp;

    snprintf(path, sizeof path, "%.*sdeploy/agate.yaml", slash ? (int)(slash - __FILE__) : 0, __FILE__);
    fp = fopen(path, "r");
    if (!fp)
        skip();
    while (fgets(line, sizeof line, fp)) {
        const char *text = line;

        in |= strncmp(line, "  # lg:", 7) == 0;
        if (in && strncmp(line, "  # ", 4) == 0) {
            if (line[4 + strspn(line + 4, " ")] == '#')
                continue;    /* a comment inside the example */
            used += (size_t)snprintf(yaml + used, sizeof yaml - used, "  ");
            text = line + 4;
        }
        assert_true(used < sizeof yaml);
        used += (size_t)snprintf(yaml + used, sizeof yaml - used, "%s", text);
        assert_true(used < sizeof yaml);
    }
    fclose(fp);
    assert_true(in);
    if (load(f, yaml) != 0)
        print_error("%s\n", f->err);
    assert_int_equal(f->c.n_agents, 2);
    a = cfg_find_agent(&f->c, "lg", 2);
    assert_non_null(a);
    assert_int_equal(a->kind, CFG_AGENT_PROXY);
    assert_int_equal(a->n_endpoints, 1);
    assert_int_equal(a->n_forward, 3);
    assert_proxy_defaults_but_forward(a);
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);
}

/* ---- structural errors ---- */

static void test_unknown_key(void **state)
{
    struct fx *f = *state;

    assert_int_equal(load(f,
        "listen: 0.0.0.0:8080\n"
        "# a comment\n"
        "limits:\n"
        "  max_connections: 10\n"
        "\n"
        "  max_body: 1MiB\n"
        "  max_bodyy: 2MiB\n"
        "  max_header: 16KiB\n"), -EINVAL);
    assert_err_starts(f, 7, "limits.max_bodyy: unknown key (expected one of: max_connections, max_body,");
    assert_non_null(strstr(f->err, f->path));

    assert_int_equal(load(f, "shards: 1\nlisten: 0.0.0.0:1\nlisen: 0.0.0.0:2\n"), -EINVAL);
    assert_err_starts(f, 3, "lisen: unknown key (expected one of: listen, admin_listen, shards, engine, demo, limits, stream, log, metrics, trace, upstream, cache, redis, ws, resume, agents, auth, cors, security_headers, rate_limit)");

    assert_int_equal(load(f, "agents:\n  a:\n    type: echo\n    interval: 5\n"), -EINVAL);
    assert_err_at(f, 4, "agents.a.interval: unknown key (expected one of: type, token_interval_ms, resume)");

    assert_int_equal(load(f, "log:\n  level: info\n  format: json\n"), -EINVAL);
    assert_err_starts(f, 3, "log.format: unknown key");
}

/* A failed load changes nothing, even keys that parsed before the error. */
static void test_failed_load_changes_nothing(void **state)
{
    struct fx *f = *state;
    cfg_t def;

    cfg_defaults(&def);
    assert_int_equal(load(f, "listen: 1.2.3.4:5\nagents:\n  x: {type: echo}\nshards: many\n"), -EINVAL);
    assert_err_at(f, 4, "shards: expected a whole number from 0 to 1024");
    assert_same_cfg(&f->c, &def);
    assert_string_equal(f->c.path, "");
    assert_int_equal(cfg_load_file(&f->c, f->path, NULL, 0), -EINVAL);    /* no err buffer is fine */
}

static void test_duplicate_key(void **state)
{
    struct fx *f = *state;

    assert_int_equal(load(f, "listen: 0.0.0.0:1\nshards: 2\nlisten: 0.0.0.0:2\n"), -EINVAL);
    assert_err_at(f, 3, "listen: duplicate key (first at line 1)");
    assert_int_equal(load(f, "stream:\n  heartbeat: 1s\n  'heartbeat': 2s\n"), -EINVAL);
    assert_err_at(f, 3, "stream.heartbeat: duplicate key (first at line 2)");
    assert_int_equal(load(f, "agents:\n  a: {type: echo}\n  b: {type: echo}\n  a: {type: echo}\n"), -EINVAL);
    assert_err_at(f, 4, "agents.a: duplicate key (first at line 2)");
    assert_int_equal(load(f, "limits: {}\nlimits: {}\n"), -EINVAL);
    assert_err_at(f, 2, "limits: duplicate key (first at line 1)");
}

static void test_wrong_shapes(void **state)
{
    struct fx *f = *state;

    assert_int_equal(load(f, "- listen: 0.0.0.0:80\n"), -EINVAL);
    assert_err_at(f, 1, "expected a mapping of settings at the top level (e.g. listen: 0.0.0.0:8080), not a list");
    assert_int_equal(load(f, "just text\n"), -EINVAL);
    assert_err_starts(f, 1, "expected a mapping of settings at the top level");
    assert_int_equal(load(f, "shards: 1\nlimits: 5\n"), -EINVAL);
    assert_err_at(f, 2, "limits: expected a mapping of settings, not a single value");
    assert_int_equal(load(f, "listen:\n  - 0.0.0.0:80\n"), -EINVAL);
    assert_err_at(f, 1, "listen: expected a single value, not a list");
    assert_int_equal(load(f, "listen:\n"), -EINVAL);
    assert_err_at(f, 1, "listen: no value given");
    assert_int_equal(load(f, "listen: \"0.0.0.0:80\\0junk\"\n"), -EINVAL);
    assert_err_at(f, 1, "listen: contains a NUL character");
    assert_int_equal(load(f, "? [a, b]\n: 1\n"), -EINVAL);
    assert_err_at(f, 1, "keys must be plain text, not a list");
    assert_int_equal(load(f, "agents:\n  - echo\n"), -EINVAL);
    assert_err_at(f, 1, "agents: expected a mapping of agent names to agents, not a list");
    assert_int_equal(load(f, "agents:\n"), -EINVAL);
    assert_err_at(f, 1, "agents: expected a mapping of agent names to agents, not an empty value");
    assert_int_equal(load(f, "agents: {}\n"), -EINVAL);
    assert_err_at(f, 1, "agents: at least one agent is required");
}

static void test_yaml_syntax_error(void **state)
{
    struct fx *f = *state;

    assert_int_equal(load(f, "listen: 0.0.0.0:80\nlimits:\n  max_body: 1MiB\n bad: x\n"), -EINVAL);
    assert_err_starts(f, 4, "limits.bad: YAML syntax error: did not find expected key");
    assert_int_equal(load(f, "shards: 1\n\nlisten: [1, 2\nlog: {}\n"), -EINVAL);
    assert_err_starts(f, 4, "log: YAML syntax error: ");
    assert_int_equal(load(f, "shards: 1\nlisten: *nope\n"), -EINVAL);
    assert_err_at(f, 2, "listen: YAML syntax error: found undefined alias");
    /* bad UTF-8 is a reader error, which libyaml places by byte offset only */
    assert_int_equal(load(f, "shards: 1\nlog: {}\n\xff: 2\n"), -EINVAL);
    assert_err_starts(f, 3, "YAML syntax error: invalid leading UTF-8 octet");
    assert_int_equal(load(f, "shards: 1\n---\nshards: 2\n"), -EINVAL);
    assert_err_at(f, 3, "only one YAML document is allowed");
    /* the key on the failing line, with its parents by indentation */
    assert_int_equal(load(f, "limits:\n  max_body: 1MiB\n  header_timeout: 10s: x\n"), -EINVAL);
    assert_err_starts(f, 3, "limits.header_timeout: YAML syntax error: mapping values are not allowed");
}

static void test_missing_file(void **state)
{
    struct fx *f = *state;
    cfg_t def;

    cfg_defaults(&def);
    assert_int_equal(cfg_load_file(&f->c, "/nonexistent/agate.yaml", f->err, sizeof f->err), -ENOENT);
    assert_string_equal(f->err, "/nonexistent/agate.yaml: No such file or directory");
    assert_int_equal(cfg_load_file(&f->c, "/tmp", f->err, sizeof f->err), -EISDIR);
    assert_string_equal(f->err, "/tmp: Is a directory");
    assert_same_cfg(&f->c, &def);
}

/* ---- validation ---- */

static void test_validate(void **state)
{
    struct fx *f = *state;
    cfg_t *c = &f->c;

    snprintf(c->listen, sizeof c->listen, "nope");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "listen: nope: expected host:port, [v6]:port or :port (e.g. 0.0.0.0:8080)");
    snprintf(c->path, sizeof c->path, "/etc/agate.yaml");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "/etc/agate.yaml: listen: nope: expected host:port, [v6]:port or :port (e.g. 0.0.0.0:8080)");
    c->path[0] = '\0';

    snprintf(c->listen, sizeof c->listen, "0.0.0.0:8080");
    snprintf(c->admin_listen, sizeof c->admin_listen, "0.0.0.0:8080");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "admin_listen: 0.0.0.0:8080 overlaps listen 0.0.0.0:8080 (same port); use another port");
    snprintf(c->admin_listen, sizeof c->admin_listen, "127.0.0.1:8080");    /* inside the wildcard */
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    snprintf(c->listen, sizeof c->listen, "[::]:8080");                     /* dual-stack wildcard */
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    snprintf(c->listen, sizeof c->listen, "10.0.0.1:8080");                 /* distinct addresses */
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);
    snprintf(c->listen, sizeof c->listen, "127.0.0.1:8081");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);
    snprintf(c->admin_listen, sizeof c->admin_listen, "off");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);
    c->admin_listen[0] = '\0';
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);

    c->max_header_bytes = 100;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "limits.max_header: must be at least 1024 bytes");
    c->max_header_bytes = 1024;
    c->shards = 5000;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "shards: expected a whole number from 0 to 1024");
    c->shards = 0;

    c->n_agents = 0;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents: at least one agent is required");
    c->n_agents = 2;
    c->agents[1] = c->agents[0];
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.echo: duplicate agent name");
    snprintf(c->agents[1].name, sizeof c->agents[1].name, "bad name");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "agents.bad name: agent names are 1 to 63 of A-Z a-z 0-9 _ . -");
    snprintf(c->agents[1].name, sizeof c->agents[1].name, "other");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);

    c->log_sample = 1.5;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "log.sample: " RATIO_RULE);
    c->log_sample = NAN;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    c->log_sample = 0;
    snprintf(c->otlp_endpoint, sizeof c->otlp_endpoint, "http://collector:4318/v1/traces");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "trace.otlp_endpoint: http://collector:4318/v1/traces: " URL_RULE);
    snprintf(c->otlp_endpoint, sizeof c->otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);
    c->service_name[0] = '\0';
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "trace.service_name: " NAME_RULE);
    memset(c->service_name, 'x', sizeof c->service_name);    /* no terminator */
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    snprintf(c->service_name, sizeof c->service_name, "agate");
    c->otlp_max_batch = 0;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "trace.max_batch: expected a whole number from 1 to 10000");
    c->otlp_max_batch = 512;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_full_file),
        T(test_partial_file_keeps_defaults),
        T(test_empty_files),
        T(test_deploy_example_is_defaults),
        T(test_deploy_proxy_example),
        T(test_unknown_key),
        T(test_failed_load_changes_nothing),
        T(test_duplicate_key),
        T(test_wrong_shapes),
        T(test_yaml_syntax_error),
        T(test_missing_file),
        T(test_validate),
    };
#undef T
    return cmocka_run_group_tests_name("config_core", tests, NULL, NULL);
}
