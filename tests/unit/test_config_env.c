/* Unit tests for core/config's environment overrides: AGATE_* over the file,
 * every variable, errors naming the variable (all or nothing), cfg_env_help. */
#include "tests/unit/config_fx.h"

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
    /* the access sections' overrides (net/access_conf.c) */
    assert_non_null(strstr(help, "AGATE_AUTH_ANONYMOUS       auth.anonymous"));
    assert_non_null(strstr(help, "AGATE_JWKS_FILE            auth.jwt.jwks_file"));
    assert_non_null(strstr(help, "AGATE_SECURITY_HEADERS"));
    assert_non_null(strstr(help, "AGATE_RATE_LIMIT_TABLE_SIZE rate_limit.table_size"));
    assert_ptr_equal(help, cfg_env_help());
    assert_int_equal(help[strlen(help) - 1], '\n');
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_env_overrides_file),
        T(test_env_every_variable),
        T(test_env_errors_name_variable),
        T(test_env_help),
    };
#undef T
    return cmocka_run_group_tests_name("config_env", tests, NULL, NULL);
}
