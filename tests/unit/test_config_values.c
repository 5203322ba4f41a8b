/* Unit tests for core/config's value kinds, each through a key that takes it:
 * sizes, durations, booleans, log levels, whole numbers, ratios, the trace
 * section's URL and name, listen addresses (cfg_parse_addr and in the file);
 * good values land, bad ones are refused naming line, key and the rule. */
#include "tests/unit/config_fx.h"

/* ---- value kinds ---- */

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

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_sizes),
        T(test_durations),
        T(test_booleans),
        T(test_levels),
        T(test_whole_numbers),
        T(test_ratios),
        T(test_trace_settings),
        T(test_parse_addr),
        T(test_addresses_in_file),
    };
#undef T
    return cmocka_run_group_tests_name("config_values", tests, NULL, NULL);
}
