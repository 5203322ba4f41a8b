/* config_fx: the fixture and helpers the core/config unit tests share
 * (tests/unit/test_config_*.c). Each test gets its own temp file (mkstemp), a
 * config at its defaults (after every module registered its section, as
 * core/main.c does) and a clean AGATE_* environment; load() writes YAML
 * there and loads it, and the assert_err_* helpers check that an error names the
 * file, line and key. Expected messages used by more than one file are here, so
 * that a changed message is changed once. */
#ifndef AGATE_TEST_CONFIG_FX_H
#define AGATE_TEST_CONFIG_FX_H

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
#include "net/modules.h"

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

static inline void clear_env(void)
{
    for (size_t i = 0; i < N_ENV; i++)
        unsetenv(env_names[i]);
}

static inline int setup(void **state)
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
    modules_register();   /* as core/main.c does: every module's config section first */
    cfg_defaults(&f->c);
    clear_env();
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;

    unlink(f->path);
    clear_env();
    free(f);
    return 0;
}

static inline void put(struct fx *f, const char *yaml)
{
    FILE *fp = fopen(f->path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(yaml, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* writes yaml and loads it over f->c */
static inline int load(struct fx *f, const char *yaml)
{
    put(f, yaml);
    f->err[0] = '\0';
    return cfg_load_file(&f->c, f->path, f->err, sizeof f->err);
}

/* f->err must be exactly "<tmp path>:<line>: <rest>" */
static inline void assert_err_at(const struct fx *f, int line, const char *rest)
{
    char want[CFG_ERR_MAX + 128];

    snprintf(want, sizeof want, "%s:%d: %s", f->path, line, rest);
    assert_string_equal(f->err, want);
}

/* f->err must start with "<tmp path>:<line>: <rest>" */
static inline void assert_err_starts(const struct fx *f, int line, const char *rest)
{
    char want[CFG_ERR_MAX + 128];

    snprintf(want, sizeof want, "%s:%d: %s", f->path, line, rest);
    if (strncmp(f->err, want, strlen(want)) != 0) {
        print_error("error:        %s\nwanted start: %s\n", f->err, want);
        fail();
    }
}

static inline void assert_same_agent(const cfg_agent_t *a, const cfg_agent_t *b)
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

static inline void assert_same_cfg(const cfg_t *a, const cfg_t *b)
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
static inline void assert_proxy_defaults_but_forward(const cfg_agent_t *a)
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

static inline void assert_proxy_defaults(const cfg_agent_t *a)
{
    assert_proxy_defaults_but_forward(a);
    assert_int_equal(a->n_forward, 0);
}

/* ---- value tables, and the messages more than one file expects ---- */

struct good { const char *text; uint32_t want; };
struct bad  { const char *text; const char *problem; };

#define SIZE_SYNTAX "expected a size (e.g. 1048576, 64KiB, 1MiB)"
#define DUR_SYNTAX "expected a duration with a unit (e.g. 10s, 250ms)"
#define BOOL_SYNTAX "expected true or false (or yes/no, on/off)"
#define RATIO_RULE "expected a number from 0 to 1"
#define URL_RULE "expected http://host:port/path"
#define NAME_RULE "expected 1 to 63 printable ASCII characters"
#define RATE_RULE  "expected a number more than 0, at most 1 (e.g. 0.5)"
#define HOP_BY_HOP "it is hop-by-hop, meaningful for one connection only, so a proxy never forwards it"

/* ---- proxy agents ---- */

/* agents.lg, a proxy agent with one endpoint, then more (from line 5) */
static inline int load_proxy(struct fx *f, const char *more)
{
    char yaml[8192];

    snprintf(yaml, sizeof yaml, "agents:\n  lg:\n    type: proxy\n    endpoints: [http://127.0.0.1:8000/agent]\n%s",
             more);
    return load(f, yaml);
}

#endif
