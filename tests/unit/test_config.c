/* Unit tests for core/config: defaults, the YAML file (values, errors with file,
 * line and key), environment overrides, cross-field validation, agent lookup.
 * Each test gets its own temp file (mkstemp) and a clean AGATE_* environment. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

static const char *const env_names[] = {
    "AGATE_LISTEN", "AGATE_ADMIN_LISTEN", "AGATE_SHARDS", "AGATE_MAX_CONNECTIONS",
    "AGATE_MAX_BODY", "AGATE_MAX_HEADER", "AGATE_HEADER_TIMEOUT", "AGATE_BODY_TIMEOUT",
    "AGATE_IDLE_TIMEOUT", "AGATE_HEARTBEAT", "AGATE_MAX_TOKEN_INTERVAL", "AGATE_STREAM_BUFFER",
    "AGATE_DRAIN_TIMEOUT", "AGATE_LOG_REQUESTS", "AGATE_LOG_LEVEL", "AGATE_LOG_SAMPLE",
    "AGATE_METRICS", "AGATE_METRICS_ON_MAIN", "AGATE_OTLP_ENDPOINT", "AGATE_SERVICE_NAME",
    "AGATE_OTLP_INTERVAL", "AGATE_OTLP_MAX_BATCH",
};
#define N_ENV (sizeof env_names / sizeof env_names[0])

struct fx {
    char  path[64];
    cfg_t c;
    char  err[CFG_ERR_MAX];
};

static void clear_env(void)
{
    for (size_t i = 0; i < N_ENV; i++)
        unsetenv(env_names[i]);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    int fd;

    if (!f)
        return -1;
    snprintf(f->path, sizeof f->path, "/tmp/agate-test-config-XXXXXX");
    fd = mkstemp(f->path);
    if (fd < 0) {
        free(f);
        return -1;
    }
    close(fd);
    cfg_defaults(&f->c);
    clear_env();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    unlink(f->path);
    clear_env();
    free(f);
    return 0;
}

static void put(struct fx *f, const char *yaml)
{
    FILE *fp = fopen(f->path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(yaml, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* writes yaml and loads it over f->c */
static int load(struct fx *f, const char *yaml)
{
    put(f, yaml);
    f->err[0] = '\0';
    return cfg_load_file(&f->c, f->path, f->err, sizeof f->err);
}

/* f->err must be exactly "<tmp path>:<line>: <rest>" */
static void assert_err_at(const struct fx *f, int line, const char *rest)
{
    char want[CFG_ERR_MAX + 128];

    snprintf(want, sizeof want, "%s:%d: %s", f->path, line, rest);
    assert_string_equal(f->err, want);
}

/* f->err must start with "<tmp path>:<line>: <rest>" */
static void assert_err_starts(const struct fx *f, int line, const char *rest)
{
    char want[CFG_ERR_MAX + 128];

    snprintf(want, sizeof want, "%s:%d: %s", f->path, line, rest);
    if (strncmp(f->err, want, strlen(want)) != 0) {
        print_error("error:        %s\nwanted start: %s\n", f->err, want);
        fail();
    }
}

static void assert_same_agent(const cfg_agent_t *a, const cfg_agent_t *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->token_interval_ms, b->token_interval_ms);
    assert_int_equal(a->n_endpoints, b->n_endpoints);
    for (uint32_t i = 0; i < a->n_endpoints; i++) {
        assert_string_equal(a->endpoints[i].host, b->endpoints[i].host);
        assert_int_equal(a->endpoints[i].port, b->endpoints[i].port);
        assert_string_equal(a->endpoints[i].path, b->endpoints[i].path);
    }
    assert_int_equal(a->balance, b->balance);
    assert_int_equal(a->connect_timeout_ms, b->connect_timeout_ms);
    assert_int_equal(a->first_event_timeout_ms, b->first_event_timeout_ms);
    assert_int_equal(a->idle_timeout_ms, b->idle_timeout_ms);
    assert_int_equal(a->run_timeout_ms, b->run_timeout_ms);
    assert_int_equal(a->retry_attempts, b->retry_attempts);
    assert_int_equal(a->retry_backoff_ms, b->retry_backoff_ms);
    assert_int_equal(a->retry_backoff_max_ms, b->retry_backoff_max_ms);
    assert_int_equal(a->breaker_failures, b->breaker_failures);
    assert_true(a->breaker_error_rate == b->breaker_error_rate);
    assert_int_equal(a->breaker_min_requests, b->breaker_min_requests);
    assert_int_equal(a->breaker_open_ms, b->breaker_open_ms);
    assert_int_equal(a->breaker_half_open, b->breaker_half_open);
    assert_int_equal(a->validation, b->validation);
    assert_int_equal(a->max_event_bytes, b->max_event_bytes);
    assert_int_equal(a->n_forward, b->n_forward);
    for (uint32_t i = 0; i < a->n_forward; i++)
        assert_string_equal(a->forward_headers[i], b->forward_headers[i]);
    assert_int_equal(a->pool_max_idle, b->pool_max_idle);
    assert_int_equal(a->pool_idle_timeout_ms, b->pool_idle_timeout_ms);
}

static void assert_same_cfg(const cfg_t *a, const cfg_t *b)
{
    assert_string_equal(a->listen, b->listen);
    assert_string_equal(a->admin_listen, b->admin_listen);
    assert_int_equal(a->shards, b->shards);
    assert_int_equal(a->max_connections, b->max_connections);
    assert_int_equal(a->max_body_bytes, b->max_body_bytes);
    assert_int_equal(a->max_header_bytes, b->max_header_bytes);
    assert_int_equal(a->header_timeout_ms, b->header_timeout_ms);
    assert_int_equal(a->body_timeout_ms, b->body_timeout_ms);
    assert_int_equal(a->idle_timeout_ms, b->idle_timeout_ms);
    assert_int_equal(a->heartbeat_ms, b->heartbeat_ms);
    assert_int_equal(a->max_token_interval_ms, b->max_token_interval_ms);
    assert_int_equal(a->stream_buffer_bytes, b->stream_buffer_bytes);
    assert_int_equal(a->drain_timeout_ms, b->drain_timeout_ms);
    assert_int_equal(a->log_requests, b->log_requests);
    assert_int_equal(a->log_level, b->log_level);
    assert_true(a->log_sample == b->log_sample);
    assert_int_equal(a->log_writeback_bytes, b->log_writeback_bytes);
    assert_int_equal(a->log_buffer_bytes, b->log_buffer_bytes);
    assert_int_equal(a->metrics_enabled, b->metrics_enabled);
    assert_int_equal(a->metrics_on_main, b->metrics_on_main);
    assert_string_equal(a->otlp_endpoint, b->otlp_endpoint);
    assert_string_equal(a->service_name, b->service_name);
    assert_int_equal(a->otlp_interval_ms, b->otlp_interval_ms);
    assert_int_equal(a->otlp_max_batch, b->otlp_max_batch);
    assert_int_equal(a->n_agents, b->n_agents);
    for (uint32_t i = 0; i < a->n_agents; i++)
        assert_same_agent(&a->agents[i], &b->agents[i]);
}

/* the proxy settings' documented defaults (core/config.h) */
static void assert_proxy_defaults_but_forward(const cfg_agent_t *a)
{
    assert_int_equal(a->balance, CFG_BALANCE_ROUND_ROBIN);
    assert_int_equal(a->connect_timeout_ms, 2000);
    assert_int_equal(a->first_event_timeout_ms, 30000);
    assert_int_equal(a->idle_timeout_ms, 120000);
    assert_int_equal(a->run_timeout_ms, 30 * 60000);
    assert_int_equal(a->retry_attempts, 2);
    assert_int_equal(a->retry_backoff_ms, 50);
    assert_int_equal(a->retry_backoff_max_ms, 1000);
    assert_int_equal(a->breaker_failures, 5);
    assert_true(a->breaker_error_rate == 0.5);
    assert_int_equal(a->breaker_min_requests, 20);
    assert_int_equal(a->breaker_open_ms, 10000);
    assert_int_equal(a->breaker_half_open, 3);
    assert_int_equal(a->validation, CFG_VALIDATION_STRICT);
    assert_int_equal(a->max_event_bytes, 4u << 20);
    assert_int_equal(a->pool_max_idle, 256);
    assert_int_equal(a->pool_idle_timeout_ms, 60000);
}

static void assert_proxy_defaults(const cfg_agent_t *a)
{
    assert_proxy_defaults_but_forward(a);
    assert_int_equal(a->n_forward, 0);
}

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

/* ---- value kinds ---- */

struct good { const char *text; uint32_t want; };
struct bad  { const char *text; const char *problem; };

/* "<section>:\n  <key>: <value>\n", or "<key>: <value>\n" at the top level;
 * the key is on line 2 (or 1), which bad-value checks rely on. */
static int load_kv(struct fx *f, const char *section, const char *key, const char *value)
{
    char yaml[512];

    if (section)
        snprintf(yaml, sizeof yaml, "%s:\n  %s: %s\n", section, key, value);
    else
        snprintf(yaml, sizeof yaml, "%s: %s\n", key, value);
    return load(f, yaml);
}

static void check_bad(struct fx *f, const char *section, const char *key, const struct bad *b, size_t n)
{
    char rest[CFG_ERR_MAX];

    for (size_t i = 0; i < n; i++) {
        if (load_kv(f, section, key, b[i].text) != -EINVAL) {
            print_error("%s.%s: %s was accepted\n", section ? section : "", key, b[i].text);
            fail();
        }
        if (section)
            snprintf(rest, sizeof rest, "%s.%s: %s", section, key, b[i].problem);
        else
            snprintf(rest, sizeof rest, "%s: %s", key, b[i].problem);
        assert_err_at(f, section ? 2 : 1, rest);
    }
}

#define SIZE_SYNTAX "expected a size (e.g. 1048576, 64KiB, 1MiB)"

static void test_sizes(void **state)
{
    struct fx *f = *state;
    static const struct good good[] = {
        { "1048576", 1048576 }, { "1", 1 }, { "1B", 1 }, { "1KB", 1000 }, { "5MB", 5000000 },
        { "3GB", 3000000000u }, { "64KiB", 65536 }, { "1MiB", 1048576 }, { "3GiB", 3221225472u },
        { "4294967295", 4294967295u }, { "'2KiB'", 2048 },
    };
    static const struct bad bad[] = {
        { "1.5MiB", SIZE_SYNTAX }, { "1 MiB", SIZE_SYNTAX }, { "10mb", SIZE_SYNTAX },
        { "1Kib", SIZE_SYNTAX }, { "1k", SIZE_SYNTAX }, { "-1", SIZE_SYNTAX }, { "KiB", SIZE_SYNTAX },
        { "1KiBx", SIZE_SYNTAX }, { "0x10", SIZE_SYNTAX }, { "1TiB", SIZE_SYNTAX },
        { "''", "no value given" }, { "[1]", "expected a single value, not a list" },
        { "{a: 1}", "expected a single value, not a mapping" },
        { "0", "must be at least 1 byte" },
        { "4GiB", "too large: at most 4294967295 bytes" },
        { "4294967296", "too large: at most 4294967295 bytes" },
        { "99999999999999999999999999", "too large: at most 4294967295 bytes" },
        { "18446744073709551615GiB", "too large: at most 4294967295 bytes" },
    };
    static const struct bad bad_header[] = {
        { "1000", "must be at least 1024 bytes" }, { "1KB", "must be at least 1024 bytes" },
    };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(load_kv(f, "limits", "max_body", good[i].text), 0);
        assert_int_equal(f->c.max_body_bytes, good[i].want);
    }
    check_bad(f, "limits", "max_body", bad, sizeof bad / sizeof bad[0]);
    check_bad(f, "limits", "max_header", bad_header, sizeof bad_header / sizeof bad_header[0]);
    assert_int_equal(load_kv(f, "limits", "max_header", "1KiB"), 0);
    assert_int_equal(f->c.max_header_bytes, 1024);
    assert_int_equal(load_kv(f, "stream", "buffer", "512KiB"), 0);
    assert_int_equal(f->c.stream_buffer_bytes, 512 * 1024);
    static const struct bad bad_log_buffer[] = {
        { "64000", "must be at least 65536 bytes" }, { "2GiB", "too large: at most 1073741824 bytes" },
    };
    check_bad(f, "log", "buffer", bad_log_buffer, sizeof bad_log_buffer / sizeof bad_log_buffer[0]);
    assert_int_equal(load_kv(f, "log", "buffer", "64KiB"), 0);
    assert_int_equal(f->c.log_buffer_bytes, 65536);
}

#define DUR_SYNTAX "expected a duration with a unit (e.g. 10s, 250ms)"

static void test_durations(void **state)
{
    struct fx *f = *state;
    static const struct good good[] = {
        { "250ms", 250 }, { "10s", 10000 }, { "2m", 120000 }, { "1h", 3600000 }, { "1ms", 1 },
        { "4294967295ms", 4294967295u }, { "1193h", 1193u * 3600000u },
    };
    static const struct bad bad[] = {
        { "10", DUR_SYNTAX }, { "0", DUR_SYNTAX }, { "10sec", DUR_SYNTAX }, { "1.5s", DUR_SYNTAX },
        { "-1s", DUR_SYNTAX }, { "s", DUR_SYNTAX }, { "10 s", DUR_SYNTAX }, { "10S", DUR_SYNTAX },
        { "1d", DUR_SYNTAX }, { "1m30s", DUR_SYNTAX },
        { "0s", "must be more than 0 (e.g. 10s)" }, { "0ms", "must be more than 0 (e.g. 10s)" },
        { "1194h", "too long: at most 4294967295ms" }, { "4294967296ms", "too long: at most 4294967295ms" },
    };
    static const struct bad bad_heartbeat[] = { { "15", DUR_SYNTAX } };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(load_kv(f, "limits", "header_timeout", good[i].text), 0);
        assert_int_equal(f->c.header_timeout_ms, good[i].want);
    }
    check_bad(f, "limits", "header_timeout", bad, sizeof bad / sizeof bad[0]);
    check_bad(f, "stream", "heartbeat", bad_heartbeat, 1);
    /* heartbeat and max_token_interval may be 0 (off / no pacing); the timeouts may not */
    assert_int_equal(load_kv(f, "stream", "heartbeat", "0s"), 0);
    assert_int_equal(f->c.heartbeat_ms, 0);
    assert_int_equal(load_kv(f, "stream", "max_token_interval", "0ms"), 0);
    assert_int_equal(f->c.max_token_interval_ms, 0);
    assert_int_equal(load_kv(f, "stream", "drain_timeout", "0s"), -EINVAL);
    assert_int_equal(load_kv(f, "limits", "idle_timeout", "0s"), -EINVAL);
    assert_int_equal(load_kv(f, "limits", "body_timeout", "0s"), -EINVAL);
}

#define BOOL_SYNTAX "expected true or false (or yes/no, on/off)"

static void test_booleans(void **state)
{
    struct fx *f = *state;
    static const struct good good[] = {
        { "true", 1 }, { "false", 0 }, { "yes", 1 }, { "no", 0 }, { "on", 1 }, { "off", 0 },
        { "True", 1 }, { "FALSE", 0 }, { "YES", 1 }, { "Off", 0 },
    };
    static const struct bad bad[] = {
        { "maybe", BOOL_SYNTAX }, { "1", BOOL_SYNTAX }, { "0", BOOL_SYNTAX }, { "y", BOOL_SYNTAX },
        { "truee", BOOL_SYNTAX },
    };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        f->c.log_requests = !good[i].want;
        assert_int_equal(load_kv(f, "log", "requests", good[i].text), 0);
        assert_int_equal(f->c.log_requests, good[i].want);
    }
    check_bad(f, "log", "requests", bad, sizeof bad / sizeof bad[0]);
}

#define LEVEL_SYNTAX "expected one of debug, info, warn, error"

static void test_levels(void **state)
{
    struct fx *f = *state;
    static const struct good good[] = {
        { "debug", CFG_LOG_DEBUG }, { "info", CFG_LOG_INFO }, { "warn", CFG_LOG_WARN },
        { "error", CFG_LOG_ERROR }, { "DEBUG", CFG_LOG_DEBUG },
    };
    static const struct bad bad[] = {
        { "verbose", LEVEL_SYNTAX }, { "warning", LEVEL_SYNTAX }, { "2", LEVEL_SYNTAX },
    };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(load_kv(f, "log", "level", good[i].text), 0);
        assert_int_equal(f->c.log_level, good[i].want);
    }
    check_bad(f, "log", "level", bad, sizeof bad / sizeof bad[0]);
}

static void test_whole_numbers(void **state)
{
    struct fx *f = *state;
    static const struct bad bad_shards[] = {
        { "1025", "expected a whole number from 0 to 1024" }, { "-1", "expected a whole number from 0 to 1024" },
        { "abc", "expected a whole number from 0 to 1024" }, { "1e3", "expected a whole number from 0 to 1024" },
        { "+5", "expected a whole number from 0 to 1024" }, { "'4 '", "expected a whole number from 0 to 1024" },
        { "0x10", "expected a whole number from 0 to 1024" },
    };
    static const struct bad bad_conns[] = {
        { "0", "expected a whole number from 1 to 1000000" }, { "1000001", "expected a whole number from 1 to 1000000" },
    };

    assert_int_equal(load_kv(f, NULL, "shards", "1024"), 0);
    assert_int_equal(f->c.shards, 1024);
    assert_int_equal(load_kv(f, NULL, "shards", "0"), 0);
    assert_int_equal(f->c.shards, 0);
    /* plain-scalar trailing blanks are not part of the YAML value */
    assert_int_equal(load_kv(f, NULL, "shards", "4 "), 0);
    assert_int_equal(f->c.shards, 4);
    check_bad(f, NULL, "shards", bad_shards, sizeof bad_shards / sizeof bad_shards[0]);
    assert_int_equal(load_kv(f, "limits", "max_connections", "1000000"), 0);
    assert_int_equal(f->c.max_connections, 1000000);
    check_bad(f, "limits", "max_connections", bad_conns, 2);
}

#define RATIO_RULE "expected a number from 0 to 1"
#define RATE_RULE  "expected a number more than 0, at most 1 (e.g. 0.5)"

static void test_ratios(void **state)
{
    struct fx *f = *state;
    static const struct { const char *text; double want; } good[] = {
        { "0", 0 }, { "1", 1 }, { "0.25", 0.25 }, { "0.5", 0.5 }, { "1.0", 1 }, { "1.000", 1 },
        { "0.001", 0.001 }, { "00.75", 0.75 }, { "'0.1'", 0.1 },
        { "0.1234567890123456789012", 0.123456789012345678 },
    };
    static const struct bad bad[] = {
        { "1.5", RATIO_RULE }, { "2", RATIO_RULE }, { "1.0000001", RATIO_RULE }, { "-0.5", RATIO_RULE },
        { "-0", RATIO_RULE }, { ".5", RATIO_RULE }, { "0.", RATIO_RULE }, { "0,5", RATIO_RULE },
        { "1e-1", RATIO_RULE }, { "50%", RATIO_RULE }, { "half", RATIO_RULE }, { "+1", RATIO_RULE },
        { "nan", RATIO_RULE }, { "inf", RATIO_RULE }, { "0x1", RATIO_RULE }, { "0.5.1", RATIO_RULE },
        { "99999999999999999999999", RATIO_RULE },
        { "''", "no value given" }, { "[0.5]", "expected a single value, not a list" },
    };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(load_kv(f, "log", "sample", good[i].text), 0);
        if (f->c.log_sample < good[i].want - 1e-12 || f->c.log_sample > good[i].want + 1e-12) {
            print_error("log.sample %s read as %.17g\n", good[i].text, f->c.log_sample);
            fail();
        }
    }
    check_bad(f, "log", "sample", bad, sizeof bad / sizeof bad[0]);
}

#define URL_RULE "expected http://host:port/path"
#define NAME_RULE "expected 1 to 63 printable ASCII characters"

static void test_trace_settings(void **state)
{
    struct fx *f = *state;
    static const struct bad bad_url[] = {
        { "https://127.0.0.1:4318/v1/traces", URL_RULE }, { "http://collector:4318/v1/traces", URL_RULE },
        { "http://127.0.0.1:4318", URL_RULE }, { "http://127.0.0.1/v1/traces", URL_RULE },
        { "127.0.0.1:4318", URL_RULE }, { "\"http://[::1:4318/x\"", URL_RULE }, { "on", URL_RULE },
        { "''", "no value given" },
    };
    static const struct bad bad_name[] = {
        { "\"tab\\there\"", NAME_RULE }, { "\"caf\\u00e9\"", NAME_RULE },
        { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NAME_RULE },
        { "''", "no value given" },
    };
    static const struct bad bad_batch[] = {
        { "0", "expected a whole number from 1 to 10000" }, { "10001", "expected a whole number from 1 to 10000" },
    };
    static const struct bad bad_interval[] = {
        { "0s", "must be more than 0 (e.g. 10s)" }, { "2h", "too long: at most 3600000ms" },
        { "5", DUR_SYNTAX },
    };
    char longer[300];

    assert_int_equal(load_kv(f, "trace", "otlp_endpoint", "http://[::1]:4318/v1/traces"), 0);
    assert_string_equal(f->c.otlp_endpoint, "http://[::1]:4318/v1/traces");
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);
    assert_int_equal(load_kv(f, "trace", "otlp_endpoint", "off"), 0);    /* off again */
    assert_string_equal(f->c.otlp_endpoint, "");
    assert_int_equal(load_kv(f, "trace", "otlp_endpoint", "http://localhost:4318/v1/traces"), 0);
    check_bad(f, "trace", "otlp_endpoint", bad_url, sizeof bad_url / sizeof bad_url[0]);
    memset(longer, 'a', sizeof longer);
    memcpy(longer, "http://127.0.0.1:1/", 19);
    longer[256] = '\0';
    assert_int_equal(load_kv(f, "trace", "otlp_endpoint", longer), -EINVAL);
    assert_err_at(f, 2, "trace.otlp_endpoint: too long: at most 255 characters");

    assert_int_equal(load_kv(f, "trace", "service_name", "'checkout api (eu)'"), 0);
    assert_string_equal(f->c.service_name, "checkout api (eu)");
    assert_int_equal(load_kv(f, "trace", "service_name", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 0);
    assert_int_equal(strlen(f->c.service_name), 63);
    check_bad(f, "trace", "service_name", bad_name, sizeof bad_name / sizeof bad_name[0]);

    assert_int_equal(load_kv(f, "trace", "max_batch", "1"), 0);
    assert_int_equal(f->c.otlp_max_batch, 1);
    assert_int_equal(load_kv(f, "trace", "max_batch", "10000"), 0);
    assert_int_equal(f->c.otlp_max_batch, 10000);
    check_bad(f, "trace", "max_batch", bad_batch, sizeof bad_batch / sizeof bad_batch[0]);

    assert_int_equal(load_kv(f, "trace", "export_interval", "1h"), 0);
    assert_int_equal(f->c.otlp_interval_ms, 3600000);
    assert_int_equal(load_kv(f, "trace", "export_interval", "100ms"), 0);
    assert_int_equal(f->c.otlp_interval_ms, 100);
    check_bad(f, "trace", "export_interval", bad_interval, sizeof bad_interval / sizeof bad_interval[0]);

    assert_int_equal(load(f, "metrics:\n  enabled: off\n  on_main_listener: yes\n"), 0);
    assert_false(f->c.metrics_enabled);
    assert_true(f->c.metrics_on_main);
    assert_int_equal(load(f, "metrics:\n  enabled: sometimes\n"), -EINVAL);
    assert_err_at(f, 2, "metrics.enabled: " BOOL_SYNTAX);
    assert_int_equal(load(f, "metrics:\n  path: /m\n"), -EINVAL);
    assert_err_at(f, 2, "metrics.path: unknown key (expected one of: enabled, on_main_listener)");
    assert_int_equal(load(f, "trace:\n  sampler: always\n"), -EINVAL);
    assert_err_at(f, 2, "trace.sampler: unknown key (expected one of: otlp_endpoint, service_name, "
                        "export_interval, max_batch)");
}

static void test_parse_addr(void **state)
{
    static const char *const bad[] = {
        "8080", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:", "1.2.3.4:80x", "1.2.3.4:-1",
        "example.com:80", "::1:80", "[::1]80", "[::1:80", "[1.2.3.4]:80", "1.2.3:80", ":", "[]:80",
        "", " 1.2.3.4:80", "localhost", "256.1.1.1:80", "[fe80::1%lo]:80",
    };
    struct sockaddr_storage ss;
    struct sockaddr_in *sa4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sa6 = (struct sockaddr_in6 *)&ss;
    socklen_t len = 0;
    struct in6_addr lo6 = IN6ADDR_LOOPBACK_INIT;

    assert_int_equal(cfg_parse_addr("10.1.2.3:8080", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(sa4->sin_port), 8080);
    assert_int_equal(ntohl(sa4->sin_addr.s_addr), 0x0a010203);

    assert_int_equal(cfg_parse_addr(":80", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(sa4->sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_equal(ntohs(sa4->sin_port), 80);

    assert_int_equal(cfg_parse_addr("localhost:65535", &ss, &len), 0);
    assert_int_equal(sa4->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_int_equal(ntohs(sa4->sin_port), 65535);

    assert_int_equal(cfg_parse_addr("[::1]:9000", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_true(IN6_ARE_ADDR_EQUAL(&sa6->sin6_addr, &lo6));
    assert_int_equal(ntohs(sa6->sin6_port), 9000);

    assert_int_equal(cfg_parse_addr("[::]:1", &ss, &len), 0);
    assert_true(IN6_IS_ADDR_UNSPECIFIED(&sa6->sin6_addr));

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cfg_parse_addr(bad[i], &ss, &len) != -EINVAL) {
            print_error("address \"%s\" was accepted\n", bad[i]);
            fail();
        }
    }
}

static void test_addresses_in_file(void **state)
{
    struct fx *f = *state;

    assert_int_equal(load_kv(f, NULL, "admin_listen", "off"), 0);
    assert_string_equal(f->c.admin_listen, "off");
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);
    assert_int_equal(load_kv(f, NULL, "listen", ":8081"), 0);
    assert_string_equal(f->c.listen, ":8081");

    assert_int_equal(load(f, "shards: 1\nlisten: example.com:80\n"), -EINVAL);
    assert_err_at(f, 2, "listen: host must be a numeric IPv4 address, [IPv6] or localhost (names are not resolved)");
    assert_int_equal(load(f, "listen: off\n"), -EINVAL);    /* only the admin listener can be off */
    assert_err_at(f, 1, "listen: expected host:port, [v6]:port or :port (e.g. 0.0.0.0:8080)");
    assert_int_equal(load(f, "admin_listen: 1.2.3.4:0\n"), -EINVAL);
    assert_err_at(f, 1, "admin_listen: port must be a number from 1 to 65535");
    assert_int_equal(load(f, "listen: ::1:80\n"), -EINVAL);
    assert_err_at(f, 1, "listen: put an IPv6 address in brackets, e.g. [::1]:8080");
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
    assert_err_starts(f, 3, "lisen: unknown key (expected one of: listen, admin_listen, shards, demo, limits, stream, log, metrics, trace, upstream, cache, ws, agents, auth, cors, security_headers, rate_limit)");

    assert_int_equal(load(f, "agents:\n  a:\n    type: echo\n    interval: 5\n"), -EINVAL);
    assert_err_at(f, 4, "agents.a.interval: unknown key (expected one of: type, token_interval_ms)");

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

/* ---- proxy agents ---- */

/* agents.lg, a proxy agent with one endpoint, then more (from line 5) */
static int load_proxy(struct fx *f, const char *more)
{
    char yaml[8192];

    snprintf(yaml, sizeof yaml, "agents:\n  lg:\n    type: proxy\n    endpoints: [http://127.0.0.1:8000/agent]\n%s",
             more);
    return load(f, yaml);
}

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

/* agents.<name>.cache and cache.max_bytes: defaults, values, errors naming line and key */
static void test_cache_config(void **state)
{
    struct fx *f = *state;
    const cfg_agent_t *a = &f->c.agents[0];

    assert_int_equal(load_proxy(f, ""), 0);
    assert_int_equal(a->cache_ttl_ms, 0);
    assert_int_equal(a->cache_max_entry, 1u << 20);
    assert_int_equal(a->cache_max_lag, 8u << 20);
    assert_false(a->cache_pace);
    assert_true(a->cache_coalesce);
    assert_int_equal(a->n_cache_ignore, 3);
    assert_string_equal(a->cache_ignore[2], "parentRunId");
    assert_int_equal(f->c.cache_max_bytes, 64u << 20);

    assert_int_equal(load_proxy(f, "    cache: {ttl: 5m, max_entry: 64KiB, max_lag: 2MiB, pace: true, coalesce: false,\n"
                                   "            ignore_fields: [threadId, \"messages[].id\", forwardedProps.session]}\n"), 0);
    assert_int_equal(a->cache_ttl_ms, 300000);
    assert_int_equal(a->cache_max_entry, 65536);
    assert_int_equal(a->cache_max_lag, 2u << 20);
    assert_true(a->cache_pace);
    assert_false(a->cache_coalesce);
    assert_int_equal(a->n_cache_ignore, 3);
    assert_string_equal(a->cache_ignore[1], "messages[].id");
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);
    assert_int_equal(load_proxy(f, "    cache: {ttl: 1s, ignore_fields: []}\n"), 0);
    assert_int_equal(a->n_cache_ignore, 0);

    assert_int_equal(load_proxy(f, "    cache: {ttl: 1s, bogus: 1}\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.cache.bogus: unknown key (expected one of: ttl, max_entry, max_lag, pace, coalesce, "
                        "ignore_fields)");
    assert_int_equal(load_proxy(f, "    cache: {ttl: soon}\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.cache.ttl: expected a duration with a unit (e.g. 10s, 250ms)");
    assert_int_equal(load_proxy(f, "    cache:\n      ignore_fields: [a..b]\n"), -EINVAL);
    assert_err_at(f, 6, "agents.lg.cache.ignore_fields[0]: expected a field path like threadId, "
                        "forwardedProps.session or messages[].id");
    assert_int_equal(load(f, "agents:\n  e:\n    type: echo\n    cache: {ttl: 1s}\n"), -EINVAL);
    assert_err_at(f, 4, "agents.e.cache: only for type: proxy");
    /* only validated runs are stored */
    assert_int_equal(load_proxy(f, "    validation: pass\n    cache: {ttl: 1s}\n"), 0);
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_non_null(strstr(f->err, "agents.lg.cache.ttl: caching needs validation: strict"));
    assert_int_equal(load(f, "cache: {max_bytes: 1GiB}\n"), 0);
    assert_int_equal(f->c.cache_max_bytes, 1u << 30);
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
                        "timeouts, retry, breaker, pool, forward_headers, cache)");
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

#define HOP_BY_HOP "it is hop-by-hop, meaningful for one connection only, so a proxy never forwards it"

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
    assert_err_at(f, 4, "agents.e.timeout: unknown key (expected one of: type, token_interval_ms)");

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

/* ---- environment ---- */

static void test_env_overrides_file(void **state)
{
    struct fx *f = *state;
    cfg_t *c = &f->c;

    assert_int_equal(load(f, "shards: 2\nlisten: 127.0.0.1:7000\nlog:\n  level: warn\n"), 0);
    setenv("AGATE_SHARDS", "4", 1);
    setenv("AGATE_LISTEN", "", 1);    /* empty: ignored, the file's value stays */
    assert_int_equal(cfg_apply_env(c, f->err, sizeof f->err), 0);
    assert_int_equal(c->shards, 4);
    assert_string_equal(c->listen, "127.0.0.1:7000");
    assert_int_equal(c->log_level, CFG_LOG_WARN);
    assert_string_equal(c->path, f->path);
}

static void test_env_every_variable(void **state)
{
    struct fx *f = *state;
    cfg_t *c = &f->c;

    setenv("AGATE_LISTEN", "[::1]:1234", 1);
    setenv("AGATE_ADMIN_LISTEN", "off", 1);
    setenv("AGATE_SHARDS", "7", 1);
    setenv("AGATE_MAX_CONNECTIONS", "77", 1);
    setenv("AGATE_MAX_BODY", "2MB", 1);
    setenv("AGATE_MAX_HEADER", "4KiB", 1);
    setenv("AGATE_HEADER_TIMEOUT", "1s", 1);
    setenv("AGATE_BODY_TIMEOUT", "2s", 1);
    setenv("AGATE_IDLE_TIMEOUT", "3m", 1);
    setenv("AGATE_HEARTBEAT", "0s", 1);
    setenv("AGATE_MAX_TOKEN_INTERVAL", "5ms", 1);
    setenv("AGATE_STREAM_BUFFER", "100", 1);
    setenv("AGATE_DRAIN_TIMEOUT", "1h", 1);
    setenv("AGATE_LOG_REQUESTS", "off", 1);
    setenv("AGATE_LOG_LEVEL", "error", 1);
    setenv("AGATE_LOG_SAMPLE", "0.1", 1);
    setenv("AGATE_METRICS", "false", 1);
    setenv("AGATE_METRICS_ON_MAIN", "true", 1);
    setenv("AGATE_OTLP_ENDPOINT", "http://10.0.0.5:4318/v1/traces", 1);
    setenv("AGATE_SERVICE_NAME", "gw", 1);
    setenv("AGATE_OTLP_INTERVAL", "5s", 1);
    setenv("AGATE_OTLP_MAX_BATCH", "64", 1);
    assert_int_equal(cfg_apply_env(c, f->err, sizeof f->err), 0);
    assert_string_equal(c->listen, "[::1]:1234");
    assert_string_equal(c->admin_listen, "off");
    assert_int_equal(c->shards, 7);
    assert_int_equal(c->max_connections, 77);
    assert_int_equal(c->max_body_bytes, 2000000);
    assert_int_equal(c->max_header_bytes, 4096);
    assert_int_equal(c->header_timeout_ms, 1000);
    assert_int_equal(c->body_timeout_ms, 2000);
    assert_int_equal(c->idle_timeout_ms, 180000);
    assert_int_equal(c->heartbeat_ms, 0);
    assert_int_equal(c->max_token_interval_ms, 5);
    assert_int_equal(c->stream_buffer_bytes, 100);
    assert_int_equal(c->drain_timeout_ms, 3600000);
    assert_false(c->log_requests);
    assert_int_equal(c->log_level, CFG_LOG_ERROR);
    assert_true(c->log_sample == 0.1);
    assert_false(c->metrics_enabled);
    assert_true(c->metrics_on_main);
    assert_string_equal(c->otlp_endpoint, "http://10.0.0.5:4318/v1/traces");
    assert_string_equal(c->service_name, "gw");
    assert_int_equal(c->otlp_interval_ms, 5000);
    assert_int_equal(c->otlp_max_batch, 64);
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);

    /* off from the environment turns off what the file set */
    setenv("AGATE_OTLP_ENDPOINT", "off", 1);
    assert_int_equal(cfg_apply_env(c, f->err, sizeof f->err), 0);
    assert_string_equal(c->otlp_endpoint, "");
}

static void test_env_errors_name_variable(void **state)
{
    struct fx *f = *state;
    cfg_t def;

    cfg_defaults(&def);
    setenv("AGATE_LISTEN", "10.0.0.1:1", 1);    /* valid, but must not land: all or nothing */
    setenv("AGATE_SHARDS", "abc", 1);
    assert_int_equal(cfg_apply_env(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_SHARDS: expected a whole number from 0 to 1024");
    assert_same_cfg(&f->c, &def);
    unsetenv("AGATE_SHARDS");

    setenv("AGATE_HEARTBEAT", "10", 1);
    assert_int_equal(cfg_apply_env(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_HEARTBEAT: " DUR_SYNTAX);
    unsetenv("AGATE_HEARTBEAT");

    setenv("AGATE_MAX_BODY", "1 MiB", 1);
    assert_int_equal(cfg_apply_env(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_MAX_BODY: " SIZE_SYNTAX);
    unsetenv("AGATE_MAX_BODY");

    setenv("AGATE_LOG_REQUESTS", "maybe", 1);
    assert_int_equal(cfg_apply_env(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_LOG_REQUESTS: " BOOL_SYNTAX);
    unsetenv("AGATE_LOG_REQUESTS");

    setenv("AGATE_LOG_SAMPLE", "25%", 1);
    assert_int_equal(cfg_apply_env(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_LOG_SAMPLE: " RATIO_RULE);
    unsetenv("AGATE_LOG_SAMPLE");

    setenv("AGATE_OTLP_ENDPOINT", "https://127.0.0.1:4318/v1/traces", 1);
    assert_int_equal(cfg_apply_env(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_OTLP_ENDPOINT: " URL_RULE);
    unsetenv("AGATE_OTLP_ENDPOINT");

    setenv("AGATE_SERVICE_NAME", "bad\nname", 1);
    assert_int_equal(cfg_apply_env(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_SERVICE_NAME: " NAME_RULE);
    unsetenv("AGATE_SERVICE_NAME");

    setenv("AGATE_ADMIN_LISTEN", "9090", 1);
    assert_int_equal(cfg_apply_env(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_ADMIN_LISTEN: expected host:port, [v6]:port or :port (e.g. 0.0.0.0:8080)");
    assert_same_cfg(&f->c, &def);
}

static void test_env_help(void **state)
{
    const char *help = cfg_env_help();

    assert_non_null(strstr(help, "AGATE_CONFIG"));
    for (size_t i = 0; i < N_ENV; i++) {
        if (!strstr(help, env_names[i])) {
            print_error("%s missing from cfg_env_help()\n", env_names[i]);
            fail();
        }
    }
    assert_non_null(strstr(help, "limits.max_body"));
    assert_non_null(strstr(help, "default 1MiB"));
    assert_non_null(strstr(help, "default 0.0.0.0:8080"));
    assert_non_null(strstr(help, "trace.otlp_endpoint"));
    assert_non_null(strstr(help, "default off"));
    /* the access sections' overrides (core/config_auth.c) */
    assert_non_null(strstr(help, "AGATE_AUTH_ANONYMOUS       auth.anonymous"));
    assert_non_null(strstr(help, "AGATE_JWKS_FILE            auth.jwt.jwks_file"));
    assert_non_null(strstr(help, "AGATE_SECURITY_HEADERS"));
    assert_non_null(strstr(help, "AGATE_RATE_LIMIT_TABLE_SIZE rate_limit.table_size"));
    assert_ptr_equal(help, cfg_env_help());
    assert_int_equal(help[strlen(help) - 1], '\n');
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
        T(test_sizes),
        T(test_durations),
        T(test_booleans),
        T(test_levels),
        T(test_whole_numbers),
        T(test_ratios),
        T(test_trace_settings),
        T(test_parse_addr),
        T(test_addresses_in_file),
        T(test_unknown_key),
        T(test_failed_load_changes_nothing),
        T(test_duplicate_key),
        T(test_wrong_shapes),
        T(test_yaml_syntax_error),
        T(test_missing_file),
        T(test_agents_replace_defaults),
        T(test_agent_errors),
        T(test_find_agent),
        T(test_proxy_full),
        T(test_proxy_defaults),
        T(test_proxy_values),
        T(test_cache_config),
        T(test_proxy_endpoints),
        T(test_proxy_forward_headers),
        T(test_proxy_and_echo_keys),
        T(test_validate_proxy),
        T(test_env_overrides_file),
        T(test_env_every_variable),
        T(test_env_errors_name_variable),
        T(test_env_help),
        T(test_validate),
    };
#undef T
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
