/* config: builds the one cfg_t agate runs with (built-in defaults, then one
 * YAML file, then AGATE_* environment variables) and checks it.
 *
 * Every scalar setting is one row of a table: YAML key, environment variable,
 * default (as text) and range. settings[] holds the server's, echo_settings[]
 * and proxy_settings[] an agent's (keyed relative to agents.<name>).
 * cfg_defaults, the YAML loader, the environment overrides, cfg_validate and
 * the --help text all walk those tables and share setting_parse() and
 * setting_check(), so a value is spelled the same everywhere and the
 * documented default is the real default. Only a proxy agent's two lists
 * (endpoints, forward_headers) have parsers of their own.
 *
 * Invariants: cfg_load_file and cfg_apply_env work on a copy and write *c only
 * when the whole input was good. Every agent, whatever its type, holds every
 * agent default. Cold path: nothing here runs after the shards start, so it
 * favours plain code and precise messages over speed. */
#include "core/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "core/otlp.h"

#define CFG_FILE_MAX   (1u << 20)  /* a config is a few KiB; this stops /dev/zero */
#define CFG_KEY_MAX    256         /* dotted key in messages; longer ones are cut */
#define CFG_WHY_MAX    192
#define AGENT_INTERVAL_MAX 3600000u

enum kind {
    K_ADDR,        /* char[CFG_ADDR_MAX], checked by cfg_parse_addr */
    K_ADDR_OFF,    /* same, or "off" */
    K_UINT,        /* uint32_t, plain decimal */
    K_SIZE,        /* uint32_t bytes, decimal with optional unit */
    K_DURATION,    /* uint32_t ms, decimal with a required unit */
    K_BOOL,        /* bool */
    K_LEVEL,       /* cfg_log_level_t, one of level_names */
    K_BALANCE,     /* cfg_balance_t, one of balance_names */
    K_VALIDATION,  /* cfg_validation_t, one of validation_names */
    K_RATIO,       /* double 0..1, plain decimal; min 1 leaves 0 out */
    K_TEXT,        /* char[max + 1], min..max printable ASCII characters */
    K_URL,         /* char[CFG_URL_MAX], checked by otlp_parse_endpoint; "off" stores "" */
};

struct setting {
    const char *section;   /* NULL = top level (of the file, or of an agent) */
    const char *key;
    const char *env;       /* NULL = file only */
    const char *deflt;     /* parsed by cfg_defaults, shown by cfg_env_help */
    enum kind   kind;
    uint32_t    min, max;  /* K_UINT, K_SIZE, K_DURATION; length for K_TEXT; K_RATIO min */
    size_t      off;       /* into cfg_t, or cfg_agent_t for the agent tables */
};

#define F(field) offsetof(cfg_t, field)
static const struct setting settings[] = {
    { NULL,     "listen",             "AGATE_LISTEN",             "0.0.0.0:8080", K_ADDR,     0, 0,          F(listen) },
    { NULL,     "admin_listen",       "AGATE_ADMIN_LISTEN",       "0.0.0.0:9090", K_ADDR_OFF, 0, 0,          F(admin_listen) },
    { NULL,     "shards",             "AGATE_SHARDS",             "0",            K_UINT,     0, 1024,       F(shards) },
    { "limits", "max_connections",    "AGATE_MAX_CONNECTIONS",    "10000",        K_UINT,     1, 1000000,    F(max_connections) },
    { "limits", "max_body",           "AGATE_MAX_BODY",           "1MiB",         K_SIZE,     1, UINT32_MAX, F(max_body_bytes) },
    { "limits", "max_header",         "AGATE_MAX_HEADER",         "16KiB",        K_SIZE,     1024, UINT32_MAX, F(max_header_bytes) },
    { "limits", "header_timeout",     "AGATE_HEADER_TIMEOUT",     "10s",          K_DURATION, 1, UINT32_MAX, F(header_timeout_ms) },
    { "limits", "body_timeout",       "AGATE_BODY_TIMEOUT",       "30s",          K_DURATION, 1, UINT32_MAX, F(body_timeout_ms) },
    { "limits", "idle_timeout",       "AGATE_IDLE_TIMEOUT",       "60s",          K_DURATION, 1, UINT32_MAX, F(idle_timeout_ms) },
    { "stream", "heartbeat",          "AGATE_HEARTBEAT",          "15s",          K_DURATION, 0, UINT32_MAX, F(heartbeat_ms) },
    { "stream", "max_token_interval", "AGATE_MAX_TOKEN_INTERVAL", "1s",           K_DURATION, 0, UINT32_MAX, F(max_token_interval_ms) },
    { "stream", "buffer",             "AGATE_STREAM_BUFFER",      "256KiB",       K_SIZE,     1, UINT32_MAX, F(stream_buffer_bytes) },
    { "stream", "drain_timeout",      "AGATE_DRAIN_TIMEOUT",      "25s",          K_DURATION, 1, UINT32_MAX, F(drain_timeout_ms) },
    { "log",    "requests",           "AGATE_LOG_REQUESTS",       "true",         K_BOOL,     0, 0,          F(log_requests) },
    { "log",    "level",              "AGATE_LOG_LEVEL",          "info",         K_LEVEL,    0, 0,          F(log_level) },
    { "log",    "sample",             "AGATE_LOG_SAMPLE",         "1",            K_RATIO,    0, 0,          F(log_sample) },
    { "metrics", "enabled",           "AGATE_METRICS",            "true",         K_BOOL,     0, 0,          F(metrics_enabled) },
    { "metrics", "on_main_listener",  "AGATE_METRICS_ON_MAIN",    "false",        K_BOOL,     0, 0,          F(metrics_on_main) },
    { "trace",  "otlp_endpoint",      "AGATE_OTLP_ENDPOINT",      "off",          K_URL,      0, 0,          F(otlp_endpoint) },
    { "trace",  "service_name",       "AGATE_SERVICE_NAME",       "agate",        K_TEXT,     1, CFG_NAME_MAX - 1, F(service_name) },
    { "trace",  "export_interval",    "AGATE_OTLP_INTERVAL",      "1s",           K_DURATION, 1, 3600000,    F(otlp_interval_ms) },
    { "trace",  "max_batch",          "AGATE_OTLP_MAX_BATCH",     "512",          K_UINT,     1, 10000,      F(otlp_max_batch) },
    { "upstream", "dns_refresh",      "AGATE_DNS_REFRESH",        "30s",          K_DURATION, 0, 86400000,   F(dns_refresh_ms) },
};
#undef F
#define N_SETTINGS (sizeof settings / sizeof settings[0])

static const char *const sections[] = { "limits", "stream", "log", "metrics", "trace", "upstream" };

/* An agent's settings, keyed relative to agents.<name>; no environment
 * overrides. The type decides which table applies, and a key of the other
 * type's is an error rather than a silent no-op. A proxy agent also has two
 * lists, endpoints and forward_headers (load_endpoints, load_forward). Upper
 * bounds not forced by the design only catch typos (an extra zero or three). */
#define A(field) offsetof(cfg_agent_t, field)
static const struct setting echo_settings[] = {
    { NULL,       "token_interval_ms", NULL, "0",          K_UINT,       0, AGENT_INTERVAL_MAX, A(token_interval_ms) },
};
static const struct setting proxy_settings[] = {
    { NULL,       "balance",          NULL, "round_robin", K_BALANCE,    0, 0,          A(balance) },
    { "timeouts", "connect",          NULL, "2s",          K_DURATION,   1, UINT32_MAX, A(connect_timeout_ms) },
    { "timeouts", "first_event",      NULL, "30s",         K_DURATION,   1, UINT32_MAX, A(first_event_timeout_ms) },
    { "timeouts", "idle",             NULL, "120s",        K_DURATION,   1, UINT32_MAX, A(idle_timeout_ms) },
    { "timeouts", "run",              NULL, "30m",         K_DURATION,   1, UINT32_MAX, A(run_timeout_ms) },
    { "retry",    "attempts",         NULL, "2",           K_UINT,       0, 10,         A(retry_attempts) },
    { "retry",    "backoff",          NULL, "50ms",        K_DURATION,   1, UINT32_MAX, A(retry_backoff_ms) },
    { "retry",    "max_backoff",      NULL, "1s",          K_DURATION,   1, UINT32_MAX, A(retry_backoff_max_ms) },
    { "breaker",  "failures",         NULL, "5",           K_UINT,       1, 10000,      A(breaker_failures) },
    { "breaker",  "error_rate",       NULL, "0.5",         K_RATIO,      1, 0,          A(breaker_error_rate) },
    { "breaker",  "min_requests",     NULL, "20",          K_UINT,       1, 100000,     A(breaker_min_requests) },
    { "breaker",  "open",             NULL, "10s",         K_DURATION,   1, UINT32_MAX, A(breaker_open_ms) },
    { "breaker",  "half_open_trials", NULL, "3",           K_UINT,       1, 1000,       A(breaker_half_open) },
    { NULL,       "validation",       NULL, "strict",      K_VALIDATION, 0, 0,          A(validation) },
    { "pool",     "max_idle",         NULL, "16",          K_UINT,       0, 1024,       A(pool_max_idle) },
    { "pool",     "idle_timeout",     NULL, "60s",         K_DURATION,   1, UINT32_MAX, A(pool_idle_timeout_ms) },
};
#undef A
#define N_ECHO  (sizeof echo_settings / sizeof echo_settings[0])
#define N_PROXY (sizeof proxy_settings / sizeof proxy_settings[0])

static const char *const proxy_sections[] = { "timeouts", "retry", "breaker", "pool" };

/* Spellings of the enum kinds, indexed by the C enum so the two cannot drift. */
static const char *const level_names[] = {
    [CFG_LOG_DEBUG] = "debug", [CFG_LOG_INFO] = "info", [CFG_LOG_WARN] = "warn", [CFG_LOG_ERROR] = "error",
};
static const char *const balance_names[] = {
    [CFG_BALANCE_ROUND_ROBIN] = "round_robin", [CFG_BALANCE_LEAST_OUTSTANDING] = "least_outstanding",
};
static const char *const validation_names[] = {
    [CFG_VALIDATION_STRICT] = "strict", [CFG_VALIDATION_PASS] = "pass",
};

__attribute__((format(printf, 3, 4)))
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void setting_name(const struct setting *s, char *out, size_t n)
{
    if (s->section)
        snprintf(out, n, "%s.%s", s->section, s->key);
    else
        snprintf(out, n, "%s", s->key);
}

/* ---- values: one parser for the file, the environment and the defaults ---- */

/* Leading decimal digits of *p. No sign, no blanks; saturates at UINT64_MAX so
 * an absurd number reads as "too large" rather than wrapping to a small one. */
static bool take_digits(const char **p, uint64_t *v)
{
    const char *s = *p;
    uint64_t n = 0;

    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++)
        n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX : n * 10 + (uint64_t)(*s - '0');
    *p = s;
    *v = n;
    return true;
}

struct unit { const char *name; uint64_t mult; };

/* Case matters: "mb" or "Mib" is more likely a typo than a wish for either base. */
static const struct unit size_units[] = {
    { "", 1 }, { "B", 1 },
    { "KB", 1000 }, { "MB", 1000000 }, { "GB", 1000000000 },
    { "KiB", 1u << 10 }, { "MiB", 1u << 20 }, { "GiB", 1u << 30 },
    { NULL, 0 },
};
static const struct unit duration_units[] = {
    { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
    { NULL, 0 },
};

/* digits followed by exactly one of units; false if the text is anything else */
static bool parse_with_unit(const char *text, const struct unit *units, uint64_t *v)
{
    const char *p = text;
    uint64_t n;

    if (!take_digits(&p, &n))
        return false;
    for (const struct unit *u = units; u->name; u++) {
        if (strcmp(p, u->name) == 0) {
            *v = n > UINT64_MAX / u->mult ? UINT64_MAX : n * u->mult;
            return true;
        }
    }
    return false;
}

/* "0", "1", "0.25", "1.0": digits, then optionally '.' and digits. No sign,
 * exponent or locale, so "0,5" is an error rather than a silent 0. Digits past
 * the 18th after the point cannot change a double's value here; they are read
 * and ignored. */
static bool parse_ratio(const char *text, double *out)
{
    const char *p = text;
    uint64_t whole, frac = 0, scale = 1;

    if (!take_digits(&p, &whole))
        return false;
    if (*p == '.') {
        if (*++p < '0' || *p > '9')
            return false;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (scale < 1000000000000000000ull) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                scale *= 10;
            }
        }
    }
    if (*p)
        return false;
    *out = (double)whole + (double)frac / (double)scale;
    return true;
}

static bool text_ok(const struct setting *s, const char *text, size_t len)
{
    if (len < s->min || len > s->max)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < 0x20 || text[i] > 0x7e)
            return false;
    }
    return true;
}

#define RATIO_RULE "expected a number from 0 to 1"
#define RATE_RULE  "expected a number more than 0, at most 1 (e.g. 0.5)"
#define URL_RULE   "expected http://host:port/path"

/* 0 if v is within s's range, else -EINVAL with the problem in why. */
static int range_check(const struct setting *s, uint64_t v, char *why, size_t n)
{
    if (v >= s->min && v <= s->max)
        return 0;
    switch (s->kind) {
    case K_SIZE:
        if (v < s->min)
            snprintf(why, n, "must be at least %" PRIu32 " byte%s", s->min, s->min == 1 ? "" : "s");
        else
            snprintf(why, n, "too large: at most %" PRIu32 " bytes", s->max);
        break;
    case K_DURATION:
        if (v < s->min)
            snprintf(why, n, "must be more than 0 (e.g. 10s)");
        else
            snprintf(why, n, "too long: at most %" PRIu32 "ms", s->max);
        break;
    default:
        snprintf(why, n, "expected a whole number from %" PRIu32 " to %" PRIu32, s->min, s->max);
        break;
    }
    return -EINVAL;
}

/* NULL on success, else what is wrong with s (for messages). */
static const char *addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN];
    const char *h, *port, *p;
    size_t hlen;
    uint64_t n;
    bool v6 = *s == '[';

    if (v6) {
        const char *rb = strchr(s, ']');
        if (!rb)
            return "missing ] after the IPv6 address";
        if (rb[1] != ':')
            return "expected :port after ]";
        h = s + 1;
        hlen = (size_t)(rb - h);
        port = rb + 2;
    } else {
        const char *colon = strchr(s, ':');
        if (!colon)
            return "expected host:port, [v6]:port or :port (e.g. 0.0.0.0:8080)";
        if (strchr(colon + 1, ':'))
            return "put an IPv6 address in brackets, e.g. [::1]:8080";
        h = s;
        hlen = (size_t)(colon - s);
        port = colon + 1;
    }
    if (hlen >= sizeof host)
        return "host is not a numeric IP address";
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    p = port;
    if (!take_digits(&p, &n) || *p || n < 1 || n > 65535)
        return "port must be a number from 1 to 65535";

    memset(ss, 0, sizeof *ss);
    if (v6) {
        struct sockaddr_in6 *sa6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &sa6->sin6_addr) != 1)
            return "not a numeric IPv6 address inside [ ]";
        sa6->sin6_family = AF_INET6;
        sa6->sin6_port = htons((uint16_t)n);
        *len = sizeof *sa6;
    } else {
        struct sockaddr_in *sa4 = (struct sockaddr_in *)ss;
        if (hlen == 0)
            sa4->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (strcmp(host, "localhost") == 0)
            sa4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &sa4->sin_addr) != 1)
            return "host must be a numeric IPv4 address, [IPv6] or localhost (names are not resolved)";
        sa4->sin_family = AF_INET;
        sa4->sin_port = htons((uint16_t)n);
        *len = sizeof *sa4;
    }
    return NULL;
}

int cfg_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    return addr_parse(s, ss, len) ? -EINVAL : 0;
}

/* The names a K_LEVEL, K_BALANCE or K_VALIDATION value is spelled with. */
static const char *const *choice_names(enum kind k, size_t *count)
{
    switch (k) {
    case K_LEVEL:
        *count = sizeof level_names / sizeof level_names[0];
        return level_names;
    case K_BALANCE:
        *count = sizeof balance_names / sizeof balance_names[0];
        return balance_names;
    case K_VALIDATION:
        *count = sizeof validation_names / sizeof validation_names[0];
        return validation_names;
    default:
        *count = 0;
        return NULL;
    }
}

/* Each enum through its own type: their sizes are the compiler's business. */
static unsigned choice_get(enum kind k, const void *field)
{
    if (k == K_LEVEL)
        return (unsigned)*(const cfg_log_level_t *)field;
    if (k == K_BALANCE)
        return (unsigned)*(const cfg_balance_t *)field;
    return (unsigned)*(const cfg_validation_t *)field;
}

static void choice_set(enum kind k, void *field, unsigned v)
{
    if (k == K_LEVEL)
        *(cfg_log_level_t *)field = (cfg_log_level_t)v;
    else if (k == K_BALANCE)
        *(cfg_balance_t *)field = (cfg_balance_t)v;
    else
        *(cfg_validation_t *)field = (cfg_validation_t)v;
}

/* "expected one of debug, info, warn, error" */
static void choice_rule(enum kind k, char *why, size_t n)
{
    size_t count, used = (size_t)snprintf(why, n, "expected one of");
    const char *const *names = choice_names(k, &count);

    for (size_t i = 0; i < count && used < n; i++)
        used += (size_t)snprintf(why + used, n - used, "%s %s", i ? "," : "", names[i]);
}

static void ratio_rule(const struct setting *s, char *why, size_t n)
{
    snprintf(why, n, "%s", s->min ? RATE_RULE : RATIO_RULE);
}

/* Parses text as setting s and stores it into base (a cfg_t, or a cfg_agent_t
 * for the agent tables). Returns 0, or -EINVAL with the problem in why. */
static int setting_parse(const struct setting *s, const char *text, void *base,
                         char *why, size_t n)
{
    char *field = (char *)base + s->off;
    struct sockaddr_storage ss;
    socklen_t sslen;
    const char *bad, *p = text;
    uint64_t v = 0;

    switch (s->kind) {
    case K_ADDR_OFF:
        if (strcmp(text, "off") == 0) {
            snprintf(field, CFG_ADDR_MAX, "off");
            return 0;
        }
        /* fallthrough */
    case K_ADDR:
        if (strlen(text) >= CFG_ADDR_MAX) {
            snprintf(why, n, "address too long");
            return -EINVAL;
        }
        bad = addr_parse(text, &ss, &sslen);
        if (bad) {
            snprintf(why, n, "%s", bad);
            return -EINVAL;
        }
        snprintf(field, CFG_ADDR_MAX, "%s", text);
        return 0;
    case K_UINT:
        if (!take_digits(&p, &v) || *p)
            v = UINT64_MAX;    /* not a number: report the range, which says what is wanted */
        break;
    case K_SIZE:
        if (!parse_with_unit(text, size_units, &v)) {
            snprintf(why, n, "expected a size (e.g. 1048576, 64KiB, 1MiB)");
            return -EINVAL;
        }
        break;
    case K_DURATION:
        if (!parse_with_unit(text, duration_units, &v)) {
            snprintf(why, n, "expected a duration with a unit (e.g. 10s, 250ms)");
            return -EINVAL;
        }
        break;
    case K_BOOL:
        /* YAML 1.1 booleans; any case, as YAML 1.1 allows True and TRUE */
        if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcasecmp(text, "on")) {
            *(bool *)field = true;
        } else if (!strcasecmp(text, "false") || !strcasecmp(text, "no") || !strcasecmp(text, "off")) {
            *(bool *)field = false;
        } else {
            snprintf(why, n, "expected true or false (or yes/no, on/off)");
            return -EINVAL;
        }
        return 0;
    case K_LEVEL:
    case K_BALANCE:
    case K_VALIDATION: {
        size_t count;
        const char *const *names = choice_names(s->kind, &count);
        for (size_t i = 0; i < count; i++) {
            if (strcasecmp(text, names[i]) == 0) {
                choice_set(s->kind, field, (unsigned)i);
                return 0;
            }
        }
        choice_rule(s->kind, why, n);
        return -EINVAL;
    }
    case K_RATIO: {
        double r;
        if (!parse_ratio(text, &r) || r > 1 || (s->min && r == 0)) {
            ratio_rule(s, why, n);
            return -EINVAL;
        }
        *(double *)(void *)field = r;
        return 0;
    }
    case K_TEXT:
        if (!text_ok(s, text, strlen(text))) {
            snprintf(why, n, "expected %" PRIu32 " to %" PRIu32 " printable ASCII characters", s->min, s->max);
            return -EINVAL;
        }
        snprintf(field, (size_t)s->max + 1, "%s", text);
        return 0;
    case K_URL:
        if (strcmp(text, "off") == 0) {
            field[0] = '\0';    /* "" is what the exporter reads as off */
            return 0;
        }
        if (strlen(text) >= CFG_URL_MAX) {
            snprintf(why, n, "too long: at most %d characters", CFG_URL_MAX - 1);
            return -EINVAL;
        }
        if (otlp_parse_endpoint(text, NULL)) {
            snprintf(why, n, URL_RULE);
            return -EINVAL;
        }
        snprintf(field, CFG_URL_MAX, "%s", text);
        return 0;
    }
    if (range_check(s, v, why, n))
        return -EINVAL;
    *(uint32_t *)field = (uint32_t)v;
    return 0;
}

/* The other direction, for cfg_validate: 0 if the value of s stored in base is
 * one setting_parse could have stored, else -EINVAL with the problem in why.
 * A cfg_t can be built or changed by code, not only by this file. */
static int setting_check(const struct setting *s, const void *base, char *why, size_t n)
{
    const char *field = (const char *)base + s->off;
    struct sockaddr_storage ss;
    socklen_t sslen;
    const char *bad;

    switch (s->kind) {
    case K_ADDR:
    case K_ADDR_OFF:
        if (!memchr(field, '\0', CFG_ADDR_MAX)) {
            snprintf(why, n, "address too long");
            return -EINVAL;
        }
        if (s->kind == K_ADDR_OFF && (!field[0] || !strcmp(field, "off")))
            return 0;
        bad = addr_parse(field, &ss, &sslen);
        if (bad) {
            snprintf(why, n, "%s: %s", field, bad);
            return -EINVAL;
        }
        return 0;
    case K_UINT:
    case K_SIZE:
    case K_DURATION:
        return range_check(s, *(const uint32_t *)(const void *)field, why, n);
    case K_BOOL:
        return 0;
    case K_LEVEL:
    case K_BALANCE:
    case K_VALIDATION: {
        size_t count;
        choice_names(s->kind, &count);
        if (choice_get(s->kind, field) < count)
            return 0;
        choice_rule(s->kind, why, n);
        return -EINVAL;
    }
    case K_RATIO: {
        double r = *(const double *)(const void *)field;
        if ((s->min ? r > 0 : r >= 0) && r <= 1)    /* written so that NaN fails too */
            return 0;
        ratio_rule(s, why, n);
        return -EINVAL;
    }
    case K_TEXT:
        if (memchr(field, '\0', (size_t)s->max + 1) && text_ok(s, field, strlen(field)))
            return 0;
        snprintf(why, n, "expected %" PRIu32 " to %" PRIu32 " printable ASCII characters", s->min, s->max);
        return -EINVAL;
    case K_URL:
        if (!memchr(field, '\0', CFG_URL_MAX)) {
            snprintf(why, n, "too long: at most %d characters", CFG_URL_MAX - 1);
            return -EINVAL;
        }
        if (field[0] && otlp_parse_endpoint(field, NULL)) {
            snprintf(why, n, "%s: " URL_RULE, field);
            return -EINVAL;
        }
        return 0;
    }
    return 0;
}

/* ---- a proxy agent's lists: endpoint URLs and header names ---- */

#define ENDPOINT_RULE "expected http://host[:port][/path] (e.g. http://127.0.0.1:8000/agent)"

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* NULL if host (hlen bytes, not bracketed) is a name or an IPv4 address. A
 * name is checked only for its characters; the upstream module resolves it. */
static const char *endpoint_host(const char *host, size_t hlen)
{
    bool numeric = true;

    if (!isalnum((unsigned char)host[0]))
        return "host must be a name, an IPv4 address or an [IPv6] address";
    for (size_t i = 0; i < hlen; i++) {
        char ch = host[i];
        if (!isalnum((unsigned char)ch) && ch != '-' && ch != '.' && ch != '_')
            return "host must be a name, an IPv4 address or an [IPv6] address";
        numeric &= (ch >= '0' && ch <= '9') || ch == '.';
    }
    /* "10.1" or "1.2.3.256" would reach getaddrinfo as a legacy inet_aton
     * form or a failing lookup; neither is what was meant. */
    if (numeric) {
        struct in_addr a4;
        if (inet_pton(AF_INET, host, &a4) != 1)
            return "not an IPv4 address (four numbers 0 to 255)";
    }
    return NULL;
}

/* Parses an agent endpoint: http only; host a name, an IPv4 address or an
 * [IPv6] address, stored without the brackets; port 1..65535, default 80;
 * path "/" when absent, the query kept. The path goes into the request line
 * verbatim, so it must be printable ASCII with well-formed %XX escapes.
 * NULL on success, else the problem (for messages); *ep is written only on
 * success. */
static const char *endpoint_parse(const char *url, cfg_endpoint_t *ep)
{
    static const char http[] = "http://", https[] = "https://";
    cfg_endpoint_t out;
    const char *h, *hend, *p, *bad;
    size_t hlen, plen;
    uint64_t port = 80;

    if (strncasecmp(url, https, sizeof https - 1) == 0)
        return "https is not supported yet (use http://)";
    if (strncasecmp(url, http, sizeof http - 1) != 0)
        return ENDPOINT_RULE;
    if (strchr(url, '#'))
        return "a #fragment is not allowed in an endpoint";
    h = url + sizeof http - 1;
    hend = h + strcspn(h, "/?");
    if (memchr(h, '@', (size_t)(hend - h)))
        return "user@ (userinfo) is not allowed in an endpoint";

    memset(&out, 0, sizeof out);
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(hend - h));
        struct in6_addr a6;
        if (!rb)
            return "missing ] after the IPv6 address";
        hlen = (size_t)(rb - h - 1);
        if (hlen >= INET6_ADDRSTRLEN)
            return "not a numeric IPv6 address inside [ ]";
        memcpy(out.host, h + 1, hlen);
        if (inet_pton(AF_INET6, out.host, &a6) != 1)
            return "not a numeric IPv6 address inside [ ]";
        p = rb + 1;
    } else {
        const char *colon = memchr(h, ':', (size_t)(hend - h));
        if (colon && memchr(colon + 1, ':', (size_t)(hend - colon - 1)))
            return "put an IPv6 address in brackets, e.g. http://[::1]:8000/agent";
        p = h + strcspn(h, ":/?");
        hlen = (size_t)(p - h);
        if (hlen == 0)
            return "missing host";
        if (hlen >= CFG_HOST_MAX)
            return "host too long (at most 127 characters)";
        memcpy(out.host, h, hlen);
        bad = endpoint_host(out.host, hlen);
        if (bad)
            return bad;
    }
    if (*p == ':') {
        p++;
        if (!take_digits(&p, &port) || port < 1 || port > 65535 || (*p && *p != '/' && *p != '?'))
            return "port must be a number from 1 to 65535";
    } else if (*p && *p != '/' && *p != '?') {
        return ENDPOINT_RULE;    /* "[::1]x" */
    }
    out.port = (uint16_t)port;

    plen = strlen(p);
    if (plen + (*p != '/') >= CFG_UPATH_MAX)
        return "path too long (at most 255 characters)";
    for (size_t i = 0; i < plen; i++) {
        if (p[i] <= 0x20 || p[i] > 0x7e)
            return "path must be printable ASCII without spaces (percent-encode the rest, e.g. %20)";
        if (p[i] == '%' && !(is_hex(p[i + 1]) && is_hex(p[i + 2])))
            return "bad %-escape in the path (expected % and two hex digits)";
    }
    out.path[0] = '/';
    memcpy(out.path + (*p != '/'), p, plen + 1);
    *ep = out;
    return NULL;
}

#define HOP_BY_HOP "it is hop-by-hop, meaningful for one connection only, so a proxy never forwards it"

/* Headers a proxy must not pass on: the hop-by-hop ones (RFC 9110 7.6.1,
 * plus the legacy keep-alive and proxy-*) and the two agate writes itself
 * for the upstream request. Names lower-case. */
static const struct { const char *name; const char *why; } unforwardable[] = {
    { "connection", HOP_BY_HOP }, { "keep-alive", HOP_BY_HOP }, { "te", HOP_BY_HOP },
    { "trailer", HOP_BY_HOP }, { "transfer-encoding", HOP_BY_HOP }, { "upgrade", HOP_BY_HOP },
    { "proxy-*", HOP_BY_HOP },
    { "host", "agate sets it to the endpoint's host" },
    { "content-length", "agate sets it for the body it sends" },
};

/* Checks a header name (an RFC 9110 token, at most CFG_HEADER_MAX - 1
 * characters, not in unforwardable[]) and writes it lower-case into out.
 * 0, or -EINVAL with the problem in why. */
static int header_parse(const char *text, char out[CFG_HEADER_MAX], char *why, size_t n)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    size_t len = strlen(text);

    if (len >= CFG_HEADER_MAX) {
        snprintf(why, n, "header name too long (at most %d characters)", CFG_HEADER_MAX - 1);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (!isalnum((unsigned char)ch) && !strchr(tchar, ch)) {
            snprintf(why, n, "not a header name (letters, digits and %s only)", tchar);
            return -EINVAL;
        }
        out[i] = (char)tolower((unsigned char)ch);
    }
    out[len] = '\0';
    for (size_t i = 0; i < sizeof unforwardable / sizeof unforwardable[0]; i++) {
        const char *u = unforwardable[i].name;
        size_t ul = strlen(u);
        bool hit = u[ul - 1] == '*' ? strncmp(out, u, ul - 1) == 0 : strcmp(out, u) == 0;
        if (hit) {
            snprintf(why, n, "%s cannot be forwarded: %s", out, unforwardable[i].why);
            return -EINVAL;
        }
    }
    return 0;
}

static bool agent_name_ok(const char *s, size_t len)
{
    if (len == 0 || len >= CFG_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

#define AGENT_NAME_RULE "agent names are 1 to 63 of A-Z a-z 0-9 _ . -"

/* ---- defaults ---- */

static void table_defaults(const struct setting *rows, size_t n, void *base)
{
    char why[CFG_WHY_MAX];

    for (size_t i = 0; i < n; i++) {
        int rc = setting_parse(&rows[i], rows[i].deflt, base, why, sizeof why);
        assert(rc == 0);    /* a bad default in a table is a bug caught by any test */
        (void)rc;
    }
}

/* Every agent default, of both types: a proxy agent given only its type and
 * endpoints is complete, and an echo agent holds values cfg_validate accepts
 * should its type ever change in code. Leaves name, kind and the lists alone. */
static void agent_defaults(cfg_agent_t *a)
{
    table_defaults(echo_settings, N_ECHO, a);
    table_defaults(proxy_settings, N_PROXY, a);
}

void cfg_defaults(cfg_t *c)
{
    memset(c, 0, sizeof *c);
    table_defaults(settings, N_SETTINGS, c);
    snprintf(c->agents[0].name, CFG_NAME_MAX, "echo");
    c->agents[0].kind = CFG_AGENT_ECHO;
    agent_defaults(&c->agents[0]);
    c->n_agents = 1;
}

/* ---- the YAML file ---- */

struct loader {
    const char      *path;
    yaml_document_t *doc;
    cfg_t           *c;        /* the working copy, not the caller's */
    char            *err;
    size_t           errlen;
};

/* Reports "<path>:<line>: <key>: <why>" at node at; returns -EINVAL. */
__attribute__((format(printf, 4, 5)))
static int load_fail(const struct loader *ld, const yaml_node_t *at, const char *key,
                     const char *fmt, ...)
{
    char why[CFG_WHY_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (key && *key)
        errf(ld->err, ld->errlen, "%s:%zu: %s: %s", ld->path, at->start_mark.line + 1, key, why);
    else
        errf(ld->err, ld->errlen, "%s:%zu: %s", ld->path, at->start_mark.line + 1, why);
    return -EINVAL;
}

static const yaml_node_t *node_at(const struct loader *ld, int i)
{
    return yaml_document_get_node(ld->doc, i);
}

/* An empty value, "~" or "null": what `limits:` with everything commented out gives. */
static bool node_is_null(const yaml_node_t *n)
{
    const char *s;

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static const char *node_kind(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    return node_is_null(n) ? "an empty value" : "a single value";
}

/* Text of scalar v (the value of key k, named key), or an error. A "\0" escape
 * is refused so C string compares cannot disagree with what the file shows. */
static int node_text(const struct loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                     const char *key, const char **out)
{
    if (v->type != YAML_SCALAR_NODE)
        return load_fail(ld, k, key, "expected a single value, not %s", node_kind(v));
    if (strlen((const char *)v->data.scalar.value) != v->data.scalar.length)
        return load_fail(ld, v, key, "contains a NUL character");
    *out = (const char *)v->data.scalar.value;
    return 0;
}

static const char *key_text(const struct loader *ld, const yaml_node_pair_t *p)
{
    return (const char *)node_at(ld, p->key)->data.scalar.value;
}

/* Dotted key for messages; cutting an absurdly long one is fine, the line
 * number still points at it. False when it was cut. */
static bool join(char *out, size_t n, const char *prefix, const char *key)
{
    int w;

    if (prefix && *prefix)
        w = snprintf(out, n, "%s.%s", prefix, key);
    else
        w = snprintf(out, n, "%s", key);
    return w >= 0 && (size_t)w < n;
}

/* Checks that map (the value of key k, named name) is a mapping whose keys are
 * plain text and distinct; callers then walk its pairs freely. */
static int map_check(const struct loader *ld, const yaml_node_t *k, const yaml_node_t *map,
                     const char *name, const char *what)
{
    char key[CFG_KEY_MAX];

    if (map->type != YAML_MAPPING_NODE)
        return load_fail(ld, k, name, "expected a mapping of %s, not %s", what, node_kind(map));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = node_at(ld, p->key);
        const char *text = NULL;

        if (kn->type != YAML_SCALAR_NODE)
            return load_fail(ld, kn, name, "keys must be plain text, not %s", node_kind(kn));
        if (node_text(ld, kn, kn, name, &text))
            return -EINVAL;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            if (strcmp(key_text(ld, q), text) == 0) {
                join(key, sizeof key, name, text);
                return load_fail(ld, kn, key, "duplicate key (first at line %zu)",
                                 node_at(ld, q->key)->start_mark.line + 1);
            }
        }
    }
    return 0;
}

/* Sections as the tables hold them: NULL for a level's own keys. */
static bool same_section(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* The row of rows for key at the level section. */
static const struct setting *find_setting(const struct setting *rows, size_t n, const char *section,
                                          const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (same_section(rows[i].section, section) && strcmp(rows[i].key, key) == 0)
            return &rows[i];
    }
    return NULL;
}

static bool in_list(const char *const *list, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], key) == 0)
            return true;
    }
    return false;
}

/* Appends word to the comma-separated list (*used bytes so far); a list that
 * no longer fits is cut, which only shortens a message. */
static void list_add(char *list, size_t size, size_t *used, const char *word)
{
    if (*used < size)
        *used += (size_t)snprintf(list + *used, size - *used, "%s%s", *used ? ", " : "", word);
}

static void list_rows(char *list, size_t size, size_t *used, const struct setting *rows, size_t n,
                      const char *section)
{
    for (size_t i = 0; i < n; i++) {
        if (same_section(rows[i].section, section))
            list_add(list, size, used, rows[i].key);
    }
}

/* "unknown key (expected one of: a, b, c)" */
static int unknown_key(const struct loader *ld, const yaml_node_t *k, const char *name, const char *list)
{
    return load_fail(ld, k, name, "unknown key (expected one of: %s)", list);
}

static int load_setting(const struct loader *ld, const struct setting *s, const yaml_node_t *k,
                        const yaml_node_t *v, void *base, const char *name)
{
    char why[CFG_WHY_MAX];
    const char *text = NULL;

    if (node_text(ld, k, v, name, &text))
        return -EINVAL;
    if (!*text)
        return load_fail(ld, k, name, "no value given");
    if (setting_parse(s, text, base, why, sizeof why))
        return load_fail(ld, k, name, "%s", why);
    return 0;
}

/* A mapping of rows' section (e.g. "limits" of settings, "timeouts" of
 * proxy_settings), named secname in messages, into base. */
static int load_section(const struct loader *ld, const yaml_node_t *k, const yaml_node_t *map,
                        const struct setting *rows, size_t n, const char *section,
                        const char *secname, void *base)
{
    char name[2 * CFG_KEY_MAX], list[CFG_WHY_MAX] = "";    /* name: secname + "." + key */
    size_t used = 0;

    if (node_is_null(map))
        return 0;
    if (map_check(ld, k, map, secname, "settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = node_at(ld, p->key), *vn = node_at(ld, p->value);
        const char *key = key_text(ld, p);
        const struct setting *s = find_setting(rows, n, section, key);

        join(name, sizeof name, secname, key);
        if (!s) {
            list_rows(list, sizeof list, &used, rows, n, section);
            return unknown_key(ld, kn, name, list);
        }
        if (load_setting(ld, s, kn, vn, base, name))
            return -EINVAL;
    }
    return 0;
}

/* The key node of key in map, and its value; NULL when absent or when map is
 * not a mapping (an empty section). map_check has vetted map's keys. */
static const yaml_node_t *pair_find(const struct loader *ld, const yaml_node_t *map, const char *key,
                                    const yaml_node_t **value)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        if (strcmp(key_text(ld, p), key) == 0) {
            if (value)
                *value = node_at(ld, p->value);
            return node_at(ld, p->key);
        }
    }
    return NULL;
}

/* Text of item it, the i-th of the list named name: name[i] (from 0) in messages. */
static int item_text(const struct loader *ld, const yaml_node_t *it, const char *name, size_t i,
                     char *item, size_t itemlen, const char **text)
{
    snprintf(item, itemlen, "%s[%zu]", name, i);
    if (node_text(ld, it, it, item, text))
        return -EINVAL;
    if (node_is_null(it) || !**text)    /* "- ~" is no header named "~" */
        return load_fail(ld, it, item, "no value given");
    return 0;
}

/* endpoints: a block or flow list of 1 to CFG_MAX_ENDPOINTS URLs */
static int load_endpoints(const struct loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                          const char *name, cfg_agent_t *a)
{
    char item[CFG_KEY_MAX + 16];
    const yaml_node_item_t *start, *top;

    if (v->type != YAML_SEQUENCE_NODE)
        return load_fail(ld, k, name, "expected a list of http:// URLs (e.g. [http://127.0.0.1:8000/agent]), "
                         "not %s", node_kind(v));
    start = v->data.sequence.items.start;
    top = v->data.sequence.items.top;
    if (start == top)
        return load_fail(ld, k, name, "at least one endpoint is required");
    a->n_endpoints = 0;
    for (const yaml_node_item_t *it = start; it < top; it++) {
        const yaml_node_t *in = node_at(ld, *it);
        size_t i = (size_t)(it - start);
        cfg_endpoint_t *ep;
        const char *text = NULL, *bad;

        if (i == CFG_MAX_ENDPOINTS)
            return load_fail(ld, in, name, "too many endpoints (at most %d)", CFG_MAX_ENDPOINTS);
        if (item_text(ld, in, name, i, item, sizeof item, &text))
            return -EINVAL;
        ep = &a->endpoints[i];
        bad = endpoint_parse(text, ep);
        if (bad)
            return load_fail(ld, in, item, "%s", bad);
        for (size_t j = 0; j < i; j++) {
            const cfg_endpoint_t *e = &a->endpoints[j];
            if (!strcasecmp(e->host, ep->host) && e->port == ep->port && !strcmp(e->path, ep->path))
                return load_fail(ld, in, item, "repeats endpoints[%zu]", j);
        }
        a->n_endpoints++;
    }
    return 0;
}

/* forward_headers: a list of up to CFG_MAX_FORWARD header names, stored
 * lower-case; empty or all commented out forwards none. */
static int load_forward(const struct loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                        const char *name, cfg_agent_t *a)
{
    char item[CFG_KEY_MAX + 16], why[CFG_WHY_MAX];
    const yaml_node_item_t *start, *top;

    if (node_is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return load_fail(ld, k, name, "expected a list of header names (e.g. [authorization, x-tenant-id]), "
                         "not %s", node_kind(v));
    start = v->data.sequence.items.start;
    top = v->data.sequence.items.top;
    a->n_forward = 0;
    for (const yaml_node_item_t *it = start; it < top; it++) {
        const yaml_node_t *in = node_at(ld, *it);
        size_t i = (size_t)(it - start);
        const char *text = NULL;

        if (i == CFG_MAX_FORWARD)
            return load_fail(ld, in, name, "too many headers (at most %d)", CFG_MAX_FORWARD);
        if (item_text(ld, in, name, i, item, sizeof item, &text))
            return -EINVAL;
        if (header_parse(text, a->forward_headers[i], why, sizeof why))
            return load_fail(ld, in, item, "%s", why);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(a->forward_headers[j], a->forward_headers[i]) == 0)
                return load_fail(ld, in, item, "repeats forward_headers[%zu]", j);
        }
        a->n_forward++;
    }
    return 0;
}

#define AGENT_TYPES "known: echo, proxy"

/* One key of an agent whose type is known: that type's keys are allowed, the
 * other type's are named as such, anything else is unknown. */
static int load_agent_key(const struct loader *ld, const yaml_node_t *kn, const yaml_node_t *vn,
                          const char *key, const char *name, cfg_agent_t *a)
{
    const struct setting *es = find_setting(echo_settings, N_ECHO, NULL, key);
    const struct setting *ps = find_setting(proxy_settings, N_PROXY, NULL, key);
    bool section = in_list(proxy_sections, sizeof proxy_sections / sizeof proxy_sections[0], key);
    bool endpoints = strcmp(key, "endpoints") == 0, forward = strcmp(key, "forward_headers") == 0;
    bool proxy = a->kind == CFG_AGENT_PROXY;

    if (!es && !ps && !section && !endpoints && !forward) {
        char list[CFG_WHY_MAX] = "";
        size_t used = 0;

        list_add(list, sizeof list, &used, "type");
        if (!proxy) {
            list_rows(list, sizeof list, &used, echo_settings, N_ECHO, NULL);
        } else {
            list_add(list, sizeof list, &used, "endpoints");
            list_rows(list, sizeof list, &used, proxy_settings, N_PROXY, NULL);
            for (size_t i = 0; i < sizeof proxy_sections / sizeof proxy_sections[0]; i++)
                list_add(list, sizeof list, &used, proxy_sections[i]);
            list_add(list, sizeof list, &used, "forward_headers");
        }
        return unknown_key(ld, kn, name, list);
    }
    if (!proxy && !es)
        return load_fail(ld, kn, name, "only for type: proxy");
    if (proxy && es)
        return load_fail(ld, kn, name, "only for type: echo");
    if (es)
        return load_setting(ld, es, kn, vn, a, name);
    if (ps)
        return load_setting(ld, ps, kn, vn, a, name);
    if (section)
        return load_section(ld, kn, vn, proxy_settings, N_PROXY, key, name, a);
    if (endpoints)
        return load_endpoints(ld, kn, vn, name, a);
    return load_forward(ld, kn, vn, name, a);
}

/* What no single key shows: a proxy agent has endpoints, and its backoff cap is
 * not below the base. Errors go to the key the user would change. */
static int proxy_check(const struct loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                       const char *base, const cfg_agent_t *a)
{
    char name[CFG_KEY_MAX];
    const yaml_node_t *rv = NULL, *rk, *at;

    if (a->n_endpoints == 0) {
        join(name, sizeof name, base, "endpoints");
        return load_fail(ld, k, name, "missing; a proxy agent needs at least one "
                         "(e.g. endpoints: [http://127.0.0.1:8000/agent])");
    }
    if (a->retry_backoff_max_ms >= a->retry_backoff_ms)
        return 0;
    rk = pair_find(ld, v, "retry", &rv);    /* the defaults agree, so retry set one */
    at = pair_find(ld, rv, "max_backoff", NULL);
    if (at) {
        join(name, sizeof name, base, "retry.max_backoff");
        return load_fail(ld, at, name, "must be at least retry.backoff (%" PRIu32 "ms)", a->retry_backoff_ms);
    }
    at = pair_find(ld, rv, "backoff", NULL);
    join(name, sizeof name, base, "retry.backoff");
    return load_fail(ld, at ? at : rk ? rk : k, name, "must be at most retry.max_backoff (%" PRIu32 "ms)",
                     a->retry_backoff_max_ms);
}

static int load_agent(const struct loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                      const char *agent, cfg_agent_t *a)
{
    char base[sizeof "agents." + CFG_NAME_MAX], name[CFG_KEY_MAX];  /* agent is a checked name */
    const yaml_node_t *tk, *tv = NULL;
    const char *text = NULL;

    join(base, sizeof base, "agents", agent);
    if (node_is_null(v))
        return load_fail(ld, k, base, "expected a mapping with at least a type (e.g. type: echo)");
    if (map_check(ld, k, v, base, "agent settings"))
        return -EINVAL;
    snprintf(a->name, sizeof a->name, "%s", agent);
    agent_defaults(a);

    /* The type decides which keys are allowed, and it may come after them. */
    join(name, sizeof name, base, "type");
    tk = pair_find(ld, v, "type", &tv);
    if (!tk)
        return load_fail(ld, k, name, "missing; every agent needs a type (" AGENT_TYPES ")");
    if (node_text(ld, tk, tv, name, &text))
        return -EINVAL;
    if (strcmp(text, "echo") == 0)
        a->kind = CFG_AGENT_ECHO;
    else if (strcmp(text, "proxy") == 0)
        a->kind = CFG_AGENT_PROXY;
    else
        return load_fail(ld, tk, name, "unknown agent type \"%.64s\" (" AGENT_TYPES ")", text);

    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const char *key = key_text(ld, p);

        if (strcmp(key, "type") == 0)
            continue;
        join(name, sizeof name, base, key);
        if (load_agent_key(ld, node_at(ld, p->key), node_at(ld, p->value), key, name, a))
            return -EINVAL;
    }
    return a->kind == CFG_AGENT_PROXY ? proxy_check(ld, k, v, base, a) : 0;
}

/* The file's agents replace the list, rather than adding to the defaults, so
 * that a deployment can drop the echo agent. */
static int load_agents(const struct loader *ld, const yaml_node_t *k, const yaml_node_t *map)
{
    cfg_t *c = ld->c;

    if (map_check(ld, k, map, "agents", "agent names to agents"))
        return -EINVAL;
    if (map->data.mapping.pairs.start == map->data.mapping.pairs.top)
        return load_fail(ld, k, "agents", "at least one agent is required");
    memset(c->agents, 0, sizeof c->agents);
    c->n_agents = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = node_at(ld, p->key), *vn = node_at(ld, p->value);
        const char *agent = key_text(ld, p);
        char name[CFG_KEY_MAX];

        if (!agent_name_ok(agent, strlen(agent))) {
            join(name, sizeof name, "agents", agent);
            return load_fail(ld, kn, name, AGENT_NAME_RULE);
        }
        if (c->n_agents == CFG_MAX_AGENTS)
            return load_fail(ld, kn, "agents", "too many agents (at most %d)", CFG_MAX_AGENTS);
        if (load_agent(ld, kn, vn, agent, &c->agents[c->n_agents]))
            return -EINVAL;
        c->n_agents++;
    }
    return 0;
}

static int load_root(const struct loader *ld, const yaml_node_t *root)
{
    if (node_is_null(root))
        return 0;    /* "---" alone, or only comments after it */
    if (root->type != YAML_MAPPING_NODE)
        return load_fail(ld, root, NULL, "expected a mapping of settings at the top level "
                         "(e.g. listen: 0.0.0.0:8080), not %s", node_kind(root));
    if (map_check(ld, root, root, "", "settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = node_at(ld, p->key), *vn = node_at(ld, p->value);
        const char *key = key_text(ld, p);
        const struct setting *s = find_setting(settings, N_SETTINGS, NULL, key);
        char list[CFG_WHY_MAX] = "";
        size_t used = 0;
        int rc;

        if (strcmp(key, "agents") == 0) {
            rc = load_agents(ld, kn, vn);
        } else if (in_list(sections, sizeof sections / sizeof sections[0], key)) {
            rc = load_section(ld, kn, vn, settings, N_SETTINGS, key, key, ld->c);
        } else if (s) {
            rc = load_setting(ld, s, kn, vn, ld->c, key);
        } else {
            list_rows(list, sizeof list, &used, settings, N_SETTINGS, NULL);
            for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
                list_add(list, sizeof list, &used, sections[i]);
            list_add(list, sizeof list, &used, "agents");
            rc = unknown_key(ld, kn, key, list);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Whole file into memory, so that a reader error (bad UTF-8), which libyaml
 * reports as a byte offset only, can still be given a line number. */
static int read_all(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap), *grown;
    int fd, rc;

    if (!buf) {
        errf(err, errlen, "%s: %s", path, strerror(ENOMEM));
        return -ENOMEM;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        goto fail_open;
    }
    for (;;) {
        ssize_t n;

        if (len == cap) {
            if (cap > CFG_FILE_MAX) {
                rc = -EFBIG;
                errf(err, errlen, "%s: file too large (a config is at most %u bytes)", path, CFG_FILE_MAX);
                goto fail_read;
            }
            grown = realloc(buf, cap * 2);
            if (!grown) {
                rc = -ENOMEM;
                goto fail_read;
            }
            buf = grown;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;    /* EISDIR lands here: open() accepts a directory */
            goto fail_read;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    *out = buf;
    *outlen = len;
    return 0;

fail_read:
    close(fd);
fail_open:
    free(buf);
    if (rc != -EFBIG)
        errf(err, errlen, "%s: %s", path, strerror(-rc));
    return rc;
}

/* The dotted key at a syntax error, so it is named like every other error. The
 * document API stops without one, and the event API holds back a key until its
 * value scans, so the key comes from the text: the key on the error line (or
 * the nearest line above with one), then each less-indented key above it. */
static bool line_key(const char *l, const char *end, int *indent, const char **k, size_t *kl)
{
    const char *p = l;
    while (p < end && *p == ' ')
        p++;
    const char *ks = p;
    while (p < end && (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.'))
        p++;
    if (p == ks || p >= end || *p != ':')
        return false;
    *indent = (int)(ks - l);
    *k = ks;
    *kl = (size_t)(p - ks);
    return true;
}

static void syntax_key(const char *text, size_t len, size_t line, char *out, size_t outlen)
{
    const char *starts[4096];
    size_t n = 0;
    for (size_t i = 0; i < len && n < 4096; i++)
        if (i == 0 || text[i - 1] == '\n')
            starts[n++] = text + i;
    const char *keys[16];
    size_t klens[16], nk = 0;
    int want = INT32_MAX;
    for (size_t i = line < n ? line : n; i-- > 0 && nk < 16;) {
        const char *end = memchr(starts[i], '\n', (size_t)(text + len - starts[i]));
        int indent;
        const char *k;
        size_t kl;
        if (!line_key(starts[i], end ? end : text + len, &indent, &k, &kl) || indent >= want)
            continue;
        keys[nk] = k;
        klens[nk++] = kl;
        want = indent;
        if (!indent)
            break;
    }
    size_t o = 0;
    out[0] = 0;
    while (nk-- > 0) {
        int w = snprintf(out + o, outlen - o, "%s%.*s", o ? "." : "", (int)klens[nk], keys[nk]);
        if (w < 0 || (size_t)w >= outlen - o)
            break;
        o += (size_t)w;
    }
}

static int syntax_fail(const char *path, const yaml_parser_t *yp, const char *text, size_t len,
                       char *err, size_t errlen)
{
    const char *problem = yp->problem ? yp->problem : "unknown error";
    size_t line = yp->problem_mark.line + 1;

    if (yp->error == YAML_MEMORY_ERROR) {
        errf(err, errlen, "%s: %s", path, strerror(ENOMEM));
        return -ENOMEM;
    }
    if (yp->error == YAML_READER_ERROR) {
        size_t end = yp->problem_offset < len ? yp->problem_offset : len;
        line = 1;
        for (size_t i = 0; i < end; i++)
            line += text[i] == '\n';
    }
    char key[256], where[300] = "";
    key[0] = 0;
    if (yp->error != YAML_READER_ERROR)   /* an encoding error belongs to no key */
        syntax_key(text, len, line, key, sizeof key);
    if (key[0])
        snprintf(where, sizeof where, " %s:", key);
    if (yp->context)
        errf(err, errlen, "%s:%zu:%s YAML syntax error: %s (%s at line %zu)", path, line, where, problem,
             yp->context, yp->context_mark.line + 1);
    else
        errf(err, errlen, "%s:%zu:%s YAML syntax error: %s", path, line, where, problem);
    return -EINVAL;
}

int cfg_load_file(cfg_t *c, const char *path, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc, more;
    yaml_node_t *root, *extra;
    struct loader ld;
    cfg_t work;
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (strlen(path) >= CFG_PATH_MAX) {
        errf(err, errlen, "%.64s...: path too long", path);
        return -ENAMETOOLONG;
    }
    rc = read_all(path, &text, &len, err, errlen);
    if (rc)
        return rc;
    if (!yaml_parser_initialize(&parser)) {
        errf(err, errlen, "%s: %s", path, strerror(ENOMEM));
        rc = -ENOMEM;
        goto fail_parser;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = syntax_fail(path, &parser, text, len, err, errlen);
        goto fail_doc;
    }
    /* Parse to the end: a syntax error or a second document after the first
     * must fail the load rather than be silently ignored. */
    if (!yaml_parser_load(&parser, &more)) {
        rc = syntax_fail(path, &parser, text, len, err, errlen);
        goto fail_more;
    }
    extra = yaml_document_get_root_node(&more);
    if (extra) {
        errf(err, errlen, "%s:%zu: only one YAML document is allowed", path, extra->start_mark.line + 1);
        rc = -EINVAL;
        goto fail_extra;
    }

    memcpy(&work, c, sizeof work);
    ld = (struct loader){ .path = path, .doc = &doc, .c = &work, .err = err, .errlen = errlen };
    root = yaml_document_get_root_node(&doc);
    rc = root ? load_root(&ld, root) : 0;
    if (rc == 0) {
        snprintf(work.path, sizeof work.path, "%s", path);
        memcpy(c, &work, sizeof *c);
    }

fail_extra:
    yaml_document_delete(&more);
fail_more:
    yaml_document_delete(&doc);
fail_doc:
    yaml_parser_delete(&parser);
fail_parser:
    free(text);
    return rc;
}

/* ---- environment ---- */

int cfg_apply_env(cfg_t *c, char *err, size_t errlen)
{
    char why[CFG_WHY_MAX];
    cfg_t work;

    memcpy(&work, c, sizeof work);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        const char *v = s->env ? getenv(s->env) : NULL;

        if (!v || !*v)
            continue;    /* `AGATE_X= agate` in a script means "not set" */
        if (setting_parse(s, v, &work, why, sizeof why)) {
            errf(err, errlen, "%s: %s", s->env, why);
            return -EINVAL;
        }
    }
    memcpy(c, &work, sizeof *c);
    return 0;
}

/* ---- cross-field checks ---- */

__attribute__((format(printf, 5, 6)))
static int validate_fail(const cfg_t *c, char *err, size_t errlen, const char *key, const char *fmt, ...)
{
    char why[CFG_WHY_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (c->path[0])
        errf(err, errlen, "%s: %s: %s", c->path, key, why);
    else
        errf(err, errlen, "%s: %s", key, why);
    return -EINVAL;
}

static bool addr_is_any(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* Would the two listeners collide? With SO_REUSEPORT a collision does not fail
 * bind(); it silently splits connections between them, so check here. [::]
 * is taken as dual-stack, which also covers every IPv4 address. */
static bool addr_overlap(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
    const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;
    uint16_t pa = a->ss_family == AF_INET ? a4->sin_port : a6->sin6_port;
    uint16_t pb = b->ss_family == AF_INET ? b4->sin_port : b6->sin6_port;

    if (pa != pb)
        return false;
    if (a->ss_family != b->ss_family)
        return (a->ss_family == AF_INET6 && addr_is_any(a)) || (b->ss_family == AF_INET6 && addr_is_any(b));
    if (addr_is_any(a) || addr_is_any(b))
        return true;
    if (a->ss_family == AF_INET)
        return a4->sin_addr.s_addr == b4->sin_addr.s_addr;
    return IN6_ARE_ADDR_EQUAL(&a6->sin6_addr, &b6->sin6_addr);
}

/* The checks of one table against base; on failure the dotted key (prefix,
 * section, key) goes to key. */
static int table_check(const struct setting *rows, size_t n, const void *base, const char *prefix,
                       char *key, size_t keylen, char *why, size_t whylen)
{
    char name[CFG_KEY_MAX];

    for (size_t i = 0; i < n; i++) {
        if (setting_check(&rows[i], base, why, whylen) == 0)
            continue;
        setting_name(&rows[i], name, sizeof name);
        join(key, keylen, prefix, name);
        return -EINVAL;
    }
    return 0;
}

/* A proxy agent's lists and cross-field rule, as load_agent enforces them. An
 * endpoint is checked by printing it back as a URL and parsing that. */
static int proxy_validate(const cfg_agent_t *a, const char *base, char *key, size_t keylen,
                          char *why, size_t whylen)
{
    char url[sizeof "http://[]:65535" + CFG_HOST_MAX + CFG_UPATH_MAX], lower[CFG_HEADER_MAX];
    cfg_endpoint_t ep;
    const char *bad;

    if (a->n_endpoints == 0 || a->n_endpoints > CFG_MAX_ENDPOINTS) {
        join(key, keylen, base, "endpoints");
        snprintf(why, whylen, "a proxy agent needs 1 to %d endpoints", CFG_MAX_ENDPOINTS);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < a->n_endpoints; i++) {
        const cfg_endpoint_t *e = &a->endpoints[i];
        bool v6 = memchr(e->host, ':', CFG_HOST_MAX) != NULL;

        snprintf(key, keylen, "%s.endpoints[%" PRIu32 "]", base, i);
        if (!memchr(e->host, '\0', CFG_HOST_MAX) || !memchr(e->path, '\0', CFG_UPATH_MAX)) {
            snprintf(why, whylen, "host or path too long");
            return -EINVAL;
        }
        if (e->path[0] != '/') {
            snprintf(why, whylen, "path must start with /");
            return -EINVAL;
        }
        snprintf(url, sizeof url, "http://%s%s%s:%u%s", v6 ? "[" : "", e->host, v6 ? "]" : "",
                 (unsigned)e->port, e->path);
        bad = endpoint_parse(url, &ep);
        if (bad) {
            snprintf(why, whylen, "%s", bad);
            return -EINVAL;
        }
    }
    if (a->retry_backoff_max_ms < a->retry_backoff_ms) {
        join(key, keylen, base, "retry.max_backoff");
        snprintf(why, whylen, "must be at least retry.backoff (%" PRIu32 "ms)", a->retry_backoff_ms);
        return -EINVAL;
    }
    if (a->n_forward > CFG_MAX_FORWARD) {
        join(key, keylen, base, "forward_headers");
        snprintf(why, whylen, "too many headers (at most %d)", CFG_MAX_FORWARD);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < a->n_forward; i++) {
        const char *h = a->forward_headers[i];

        snprintf(key, keylen, "%s.forward_headers[%" PRIu32 "]", base, i);
        if (!memchr(h, '\0', CFG_HEADER_MAX) || !h[0]) {
            snprintf(why, whylen, "expected 1 to %d characters", CFG_HEADER_MAX - 1);
            return -EINVAL;
        }
        if (header_parse(h, lower, why, whylen))
            return -EINVAL;
        if (strcmp(lower, h) != 0) {
            snprintf(why, whylen, "must be lower-case");
            return -EINVAL;
        }
    }
    return 0;
}

/* One agent as the file would have had to give it; key and why on failure. */
static int agent_validate(const cfg_agent_t *a, const char *base, char *key, size_t keylen,
                          char *why, size_t whylen)
{
    snprintf(key, keylen, "%s", base);
    if (!agent_name_ok(a->name, strnlen(a->name, CFG_NAME_MAX))) {
        snprintf(why, whylen, AGENT_NAME_RULE);
        return -EINVAL;
    }
    if (a->kind == CFG_AGENT_ECHO)
        return table_check(echo_settings, N_ECHO, a, base, key, keylen, why, whylen);
    if (a->kind != CFG_AGENT_PROXY) {
        snprintf(why, whylen, "unknown agent type (" AGENT_TYPES ")");
        return -EINVAL;
    }
    if (table_check(proxy_settings, N_PROXY, a, base, key, keylen, why, whylen))
        return -EINVAL;
    return proxy_validate(a, base, key, keylen, why, whylen);
}

int cfg_validate(const cfg_t *c, char *err, size_t errlen)
{
    struct sockaddr_storage main_ss, admin_ss;
    char name[CFG_KEY_MAX], key[2 * CFG_KEY_MAX], why[CFG_WHY_MAX];    /* key: name + "." + a table key */
    bool admin_on;
    socklen_t sslen;

    if (table_check(settings, N_SETTINGS, c, NULL, key, sizeof key, why, sizeof why))
        return validate_fail(c, err, errlen, key, "%s", why);
    /* both are terminated and parse: the table check passed */
    admin_on = c->admin_listen[0] && strcmp(c->admin_listen, "off") != 0;
    memset(&main_ss, 0, sizeof main_ss);
    memset(&admin_ss, 0, sizeof admin_ss);
    addr_parse(c->listen, &main_ss, &sslen);
    if (admin_on)
        addr_parse(c->admin_listen, &admin_ss, &sslen);
    if (admin_on && addr_overlap(&main_ss, &admin_ss))
        return validate_fail(c, err, errlen, "admin_listen",
                             "%s overlaps listen %s (same port); use another port", c->admin_listen, c->listen);

    if (c->n_agents == 0)
        return validate_fail(c, err, errlen, "agents", "at least one agent is required");
    if (c->n_agents > CFG_MAX_AGENTS)
        return validate_fail(c, err, errlen, "agents", "too many agents (at most %d)", CFG_MAX_AGENTS);
    for (uint32_t i = 0; i < c->n_agents; i++) {
        const cfg_agent_t *a = &c->agents[i];

        snprintf(name, sizeof name, "agents.%.*s", (int)strnlen(a->name, CFG_NAME_MAX), a->name);
        if (agent_validate(a, name, key, sizeof key, why, sizeof why))
            return validate_fail(c, err, errlen, key, "%s", why);
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(c->agents[j].name, a->name) == 0)
                return validate_fail(c, err, errlen, name, "duplicate agent name");
        }
    }
    return 0;
}

const cfg_agent_t *cfg_find_agent(const cfg_t *c, const char *name, size_t len)
{
    for (uint32_t i = 0; i < c->n_agents; i++) {
        const cfg_agent_t *a = &c->agents[i];
        if (strnlen(a->name, CFG_NAME_MAX) == len && memcmp(a->name, name, len) == 0)
            return a;
    }
    return NULL;
}

/* ---- help ---- */

static char env_help[4096];
static pthread_once_t env_help_once = PTHREAD_ONCE_INIT;

static void env_help_build(void)
{
    char name[CFG_KEY_MAX];
    size_t used;

    used = (size_t)snprintf(env_help, sizeof env_help,
        "Environment (applied after the config file; empty variables are ignored):\n"
        "  %-26s %s\n", "AGATE_CONFIG", "path of the YAML config file");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        setting_name(&settings[i], name, sizeof name);
        assert(used < sizeof env_help);
        used += (size_t)snprintf(env_help + used, sizeof env_help - used, "  %-26s %-26s default %s\n",
                                 settings[i].env, name, settings[i].deflt);
    }
    assert(used < sizeof env_help);
    used += (size_t)snprintf(env_help + used, sizeof env_help - used,
        "Values use the file's syntax: sizes 1048576, 64KiB, 1MiB, 1MB; durations 250ms, 10s,\n"
        "2m, 1h; booleans true/false, yes/no, on/off; addresses host:port, [v6]:port, :port;\n"
        "ratios 0 to 1 (0.25); the OTLP endpoint http://host:port/path, or off.\n");
    assert(used < sizeof env_help);    /* the table grew: enlarge env_help */
}

const char *cfg_env_help(void)
{
    pthread_once(&env_help_once, env_help_build);
    return env_help;
}
