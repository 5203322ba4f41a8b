/* config_value: the one set of value parsers behind every scalar setting, for
 * the YAML file, the AGATE_* environment and the built-in defaults alike:
 * whole numbers, sizes (with units), durations (with units), booleans,
 * ratios, listener addresses, printable text, the OTLP URL and the choices
 * (log level, balance, validation). cfg_setting_parse turns text into a
 * stored value; cfg_setting_check is the other direction, for cfg_validate,
 * and accepts exactly what cfg_setting_parse can store.
 *
 * Invariants: a parse failure leaves the field untouched and says why in
 * words that name the expected form; numbers saturate rather than wrap, so an
 * absurd one is reported as too large. Cold path. */
#include "core/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/otlp.h"

/* Spellings of the choice kinds, indexed by the C enum so the two cannot drift. */
static const char *const level_names[] = {
    [CFG_LOG_DEBUG] = "debug", [CFG_LOG_INFO] = "info", [CFG_LOG_WARN] = "warn", [CFG_LOG_ERROR] = "error",
};
static const char *const balance_names[] = {
    [CFG_BALANCE_ROUND_ROBIN] = "round_robin", [CFG_BALANCE_LEAST_OUTSTANDING] = "least_outstanding",
};
static const char *const validation_names[] = {
    [CFG_VALIDATION_STRICT] = "strict", [CFG_VALIDATION_PASS] = "pass",
};
static const char *const backend_names[] = {
    [CFG_BACKEND_AUTO] = "auto", [CFG_BACKEND_IO_URING] = "io_uring", [CFG_BACKEND_EPOLL] = "epoll",
};

/* Leading decimal digits of *p. No sign, no blanks; saturates at UINT64_MAX so
 * an absurd number reads as "too large" rather than wrapping to a small one. */
bool cfg_take_digits(const char **p, uint64_t *v)
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

    if (!cfg_take_digits(&p, &n))
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

    if (!cfg_take_digits(&p, &whole))
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

static bool text_ok(const struct cfg_setting *s, const char *text, size_t len)
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
static int range_check(const struct cfg_setting *s, uint64_t v, char *why, size_t n)
{
    if (v >= s->min && v <= s->max)
        return 0;
    switch (s->kind) {
    case CFG_K_SIZE:
        if (v < s->min)
            snprintf(why, n, "must be at least %" PRIu32 " byte%s", s->min, s->min == 1 ? "" : "s");
        else
            snprintf(why, n, "too large: at most %" PRIu32 " bytes", s->max);
        break;
    case CFG_K_DURATION:
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
const char *cfg_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
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
    if (!cfg_take_digits(&p, &n) || *p || n < 1 || n > 65535)
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
    return cfg_addr_parse(s, ss, len) ? -EINVAL : 0;
}

/* The names a CFG_K_LEVEL, CFG_K_BALANCE, CFG_K_VALIDATION or CFG_K_BACKEND value is spelled with. */
static const char *const *choice_names(enum cfg_kind k, size_t *count)
{
    switch (k) {
    case CFG_K_LEVEL:
        *count = sizeof level_names / sizeof level_names[0];
        return level_names;
    case CFG_K_BALANCE:
        *count = sizeof balance_names / sizeof balance_names[0];
        return balance_names;
    case CFG_K_VALIDATION:
        *count = sizeof validation_names / sizeof validation_names[0];
        return validation_names;
    case CFG_K_BACKEND:
        *count = sizeof backend_names / sizeof backend_names[0];
        return backend_names;
    default:
        *count = 0;
        return NULL;
    }
}

/* Each enum through its own type: their sizes are the compiler's business. */
static unsigned choice_get(enum cfg_kind k, const void *field)
{
    if (k == CFG_K_LEVEL)
        return (unsigned)*(const cfg_log_level_t *)field;
    if (k == CFG_K_BALANCE)
        return (unsigned)*(const cfg_balance_t *)field;
    if (k == CFG_K_BACKEND)
        return (unsigned)*(const cfg_backend_t *)field;
    return (unsigned)*(const cfg_validation_t *)field;
}

static void choice_set(enum cfg_kind k, void *field, unsigned v)
{
    if (k == CFG_K_LEVEL)
        *(cfg_log_level_t *)field = (cfg_log_level_t)v;
    else if (k == CFG_K_BALANCE)
        *(cfg_balance_t *)field = (cfg_balance_t)v;
    else if (k == CFG_K_BACKEND)
        *(cfg_backend_t *)field = (cfg_backend_t)v;
    else
        *(cfg_validation_t *)field = (cfg_validation_t)v;
}

/* "expected one of debug, info, warn, error" */
static void choice_rule(enum cfg_kind k, char *why, size_t n)
{
    size_t count, used = (size_t)snprintf(why, n, "expected one of");
    const char *const *names = choice_names(k, &count);

    for (size_t i = 0; i < count && used < n; i++)
        used += (size_t)snprintf(why + used, n - used, "%s %s", i ? "," : "", names[i]);
}

static void ratio_rule(const struct cfg_setting *s, char *why, size_t n)
{
    snprintf(why, n, "%s", s->min ? RATE_RULE : RATIO_RULE);
}

/* Parses text as setting s and stores it into base (a cfg_t, or a cfg_agent_t
 * for the agent tables). Returns 0, or -EINVAL with the problem in why. */
int cfg_setting_parse(const struct cfg_setting *s, const char *text, void *base,
                      char *why, size_t n)
{
    char *field = (char *)base + s->off;
    struct sockaddr_storage ss;
    socklen_t sslen;
    const char *bad, *p = text;
    uint64_t v = 0;

    switch (s->kind) {
    case CFG_K_ADDR_OFF:
        if (strcmp(text, "off") == 0) {
            snprintf(field, CFG_ADDR_MAX, "off");
            return 0;
        }
        /* fallthrough */
    case CFG_K_ADDR:
        if (strlen(text) >= CFG_ADDR_MAX) {
            snprintf(why, n, "address too long");
            return -EINVAL;
        }
        bad = cfg_addr_parse(text, &ss, &sslen);
        if (bad) {
            snprintf(why, n, "%s", bad);
            return -EINVAL;
        }
        snprintf(field, CFG_ADDR_MAX, "%s", text);
        return 0;
    case CFG_K_UINT:
        if (!cfg_take_digits(&p, &v) || *p)
            v = UINT64_MAX;    /* not a number: report the range, which says what is wanted */
        break;
    case CFG_K_SIZE:
        if (!parse_with_unit(text, size_units, &v)) {
            snprintf(why, n, "expected a size (e.g. 1048576, 64KiB, 1MiB)");
            return -EINVAL;
        }
        break;
    case CFG_K_DURATION:
        if (!parse_with_unit(text, duration_units, &v)) {
            snprintf(why, n, "expected a duration with a unit (e.g. 10s, 250ms)");
            return -EINVAL;
        }
        break;
    case CFG_K_BOOL:
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
    case CFG_K_LEVEL:
    case CFG_K_BALANCE:
    case CFG_K_VALIDATION:
    case CFG_K_BACKEND: {
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
    case CFG_K_RATIO: {
        double r;
        if (!parse_ratio(text, &r) || r > 1 || (s->min && r == 0)) {
            ratio_rule(s, why, n);
            return -EINVAL;
        }
        *(double *)(void *)field = r;
        return 0;
    }
    case CFG_K_TEXT:
        if (!text_ok(s, text, strlen(text))) {
            snprintf(why, n, "expected %" PRIu32 " to %" PRIu32 " printable ASCII characters", s->min, s->max);
            return -EINVAL;
        }
        snprintf(field, (size_t)s->max + 1, "%s", text);
        return 0;
    case CFG_K_URL:
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
 * one cfg_setting_parse could have stored, else -EINVAL with the problem in why.
 * A cfg_t can be built or changed by code, not only by this file. */
int cfg_setting_check(const struct cfg_setting *s, const void *base, char *why, size_t n)
{
    const char *field = (const char *)base + s->off;
    struct sockaddr_storage ss;
    socklen_t sslen;
    const char *bad;

    switch (s->kind) {
    case CFG_K_ADDR:
    case CFG_K_ADDR_OFF:
        if (!memchr(field, '\0', CFG_ADDR_MAX)) {
            snprintf(why, n, "address too long");
            return -EINVAL;
        }
        if (s->kind == CFG_K_ADDR_OFF && (!field[0] || !strcmp(field, "off")))
            return 0;
        bad = cfg_addr_parse(field, &ss, &sslen);
        if (bad) {
            snprintf(why, n, "%s: %s", field, bad);
            return -EINVAL;
        }
        return 0;
    case CFG_K_UINT:
    case CFG_K_SIZE:
    case CFG_K_DURATION:
        return range_check(s, *(const uint32_t *)(const void *)field, why, n);
    case CFG_K_BOOL:
        return 0;
    case CFG_K_LEVEL:
    case CFG_K_BALANCE:
    case CFG_K_VALIDATION:
    case CFG_K_BACKEND: {
        size_t count;
        choice_names(s->kind, &count);
        if (choice_get(s->kind, field) < count)
            return 0;
        choice_rule(s->kind, why, n);
        return -EINVAL;
    }
    case CFG_K_RATIO: {
        double r = *(const double *)(const void *)field;
        if ((s->min ? r > 0 : r >= 0) && r <= 1)    /* written so that NaN fails too */
            return 0;
        ratio_rule(s, why, n);
        return -EINVAL;
    }
    case CFG_K_TEXT:
        if (memchr(field, '\0', (size_t)s->max + 1) && text_ok(s, field, strlen(field)))
            return 0;
        snprintf(why, n, "expected %" PRIu32 " to %" PRIu32 " printable ASCII characters", s->min, s->max);
        return -EINVAL;
    case CFG_K_URL:
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
