/* redis_conf: the `redis:` section of the configuration, the main thread's
 * part of the client (resolving redis.address, reading redis.password_file,
 * both at start and at each reload, so shards never block on DNS or a file),
 * and the agate_redis_* metrics. Cold path. */
#include "core/redis_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "core/shard.h"

#define R(field) offsetof(redis_conf_t, field)
static const struct cfg_setting redis_rows[] = {
    { "redis", "address",         "AGATE_REDIS_ADDRESS",         "",       CFG_K_TEXT,     0, REDIS_ADDR_MAX - 1,   R(address) },
    { "redis", "username",        "AGATE_REDIS_USERNAME",        "",       CFG_K_TEXT,     0, REDIS_USER_MAX - 1,   R(username) },
    { "redis", "password",        "AGATE_REDIS_PASSWORD",        "",       CFG_K_TEXT,     0, REDIS_SECRET_MAX - 1, R(password) },
    { "redis", "password_file",   "AGATE_REDIS_PASSWORD_FILE",   "",       CFG_K_TEXT,     0, CFG_PATH_MAX - 1,     R(password_file) },
    { "redis", "db",              "AGATE_REDIS_DB",              "0",      CFG_K_UINT,     0, 65535,                R(db) },
    { "redis", "connect_timeout", "AGATE_REDIS_CONNECT_TIMEOUT", "500ms",  CFG_K_DURATION, 1, 60000,                R(connect_timeout_ms) },
    { "redis", "command_timeout", "AGATE_REDIS_COMMAND_TIMEOUT", "50ms",   CFG_K_DURATION, 1, 60000,                R(command_timeout_ms) },
    { "redis", "reconnect_min",   "AGATE_REDIS_RECONNECT_MIN",   "100ms",  CFG_K_DURATION, 1, 3600000,              R(reconnect_min_ms) },
    { "redis", "reconnect_max",   "AGATE_REDIS_RECONNECT_MAX",   "5s",     CFG_K_DURATION, 1, 3600000,              R(reconnect_max_ms) },
    { "redis", "max_pending",     "AGATE_REDIS_MAX_PENDING",     "4096",   CFG_K_UINT,     1, 1u << 20,             R(max_pending) },
    { "redis", "max_reply_bytes", "AGATE_REDIS_MAX_REPLY_BYTES", "16MiB",  CFG_K_SIZE,     1024, 1u << 30,          R(max_reply_bytes) },
    { "redis", "key_prefix",      "AGATE_REDIS_KEY_PREFIX",      "agate:", CFG_K_TEXT,     0, REDIS_PREFIX_MAX,     R(key_prefix) },
};
#undef R
#define N_ROWS (sizeof redis_rows / sizeof redis_rows[0])

bool redis_configured(const cfg_t *cfg) { return redis_conf(cfg)->address[0] != '\0'; }
const char *redis_key_prefix(const cfg_t *cfg) { return redis_conf(cfg)->key_prefix; }

/* ---- the address ---- */

/* Splits "host:port" / "[v6]:port" into host and port; NULL, or the problem. */
static const char *split_hostport(const char *a, char *host, size_t hlen, char *port, size_t plen)
{
    const char *colon;
    size_t n;
    if (a[0] == '[') {
        const char *end = strchr(a, ']');
        if (!end || end[1] != ':')
            return "expected [v6-address]:port";
        n = (size_t)(end - a - 1);
        a++;
        colon = end + 1;
    } else {
        colon = strrchr(a, ':');
        if (!colon || colon == a || memchr(a, ':', (size_t)(colon - a)))
            return "expected host:port, [v6-address]:port or a unix socket path (/path or unix:/path)";
        n = (size_t)(colon - a);
    }
    if (n == 0 || n >= hlen)
        return "the host is empty or too long";
    memcpy(host, a, n);
    host[n] = '\0';
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (!colon[1] || *end || p == 0 || p > 65535)
        return "the port must be 1 to 65535";
    snprintf(port, plen, "%lu", p);
    return NULL;
}

static const char *unix_path(const char *a)
{
    if (!strncmp(a, "unix:", 5))
        return a + 5;
    return a[0] == '/' ? a : NULL;
}

/* The syntax alone (no resolution): NULL, or the problem. */
static const char *address_check(const char *a)
{
    char host[REDIS_ADDR_MAX], port[8];
    const char *path = unix_path(a);
    if (path) {
        struct sockaddr_un un;
        return path[0] != '/' || strlen(path) >= sizeof un.sun_path ? "a unix socket path must be absolute and under 108 bytes" : NULL;
    }
    return split_hostport(a, host, sizeof host, port, sizeof port);
}

/* Resolves rc->address into rc->addr (main thread: getaddrinfo may block). */
static int address_resolve(redis_conf_t *rc, char *err, size_t errlen)
{
    const char *a = rc->address, *path = unix_path(a), *why;
    memset(&rc->addr, 0, sizeof rc->addr);
    rc->alen = 0;
    if (!a[0])
        return 0;
    if ((why = address_check(a))) {
        snprintf(err, errlen, "redis.address: %s: %s", a, why);
        return -EINVAL;
    }
    if (path) {
        struct sockaddr_un *un = (struct sockaddr_un *)&rc->addr;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, strlen(path) + 1);
        rc->alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        return 0;
    }
    char host[REDIS_ADDR_MAX], port[8];
    split_hostport(a, host, sizeof host, port, sizeof port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g || !res) {
        snprintf(err, errlen, "redis.address: %s does not resolve: %s", a, g ? gai_strerror(g) : "no address");
        return -EINVAL;
    }
    memcpy(&rc->addr, res->ai_addr, res->ai_addrlen);
    rc->alen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* The secret: redis.password, or the first line of redis.password_file
 * (read now, so a rotated file is picked up at the next reload). */
static int secret_read(redis_conf_t *rc, char *err, size_t errlen)
{
    if (!rc->password_file[0]) {
        memcpy(rc->secret, rc->password, sizeof rc->secret);
        return 0;
    }
    FILE *f = fopen(rc->password_file, "re");
    if (!f) {
        snprintf(err, errlen, "redis.password_file: %s: %s", rc->password_file, strerror(errno));
        return -EINVAL;
    }
    size_t n = fread(rc->secret, 1, sizeof rc->secret - 1, f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    while (n && (rc->secret[n - 1] == '\n' || rc->secret[n - 1] == '\r'))
        n--;
    rc->secret[n] = '\0';
    if (more || memchr(rc->secret, '\0', n) || memchr(rc->secret, '\n', n)) {
        snprintf(err, errlen, "redis.password_file: %s: expected one line of at most %d bytes", rc->password_file,
                 REDIS_SECRET_MAX - 1);
        return -EINVAL;
    }
    if (!n) {
        snprintf(err, errlen, "redis.password_file: %s: empty", rc->password_file);
        return -EINVAL;
    }
    return 0;
}

/* ---- the section ---- */

/* The rows, then the address's syntax where the file has it (file:line). */
static int redis_load(const struct cfg_loader *ld, const char *key, const yaml_node_t *k, const yaml_node_t *v,
                      void *conf)
{
    if (cfg_node_is_null(v))
        return 0;
    if (cfg_load_section(ld, k, v, redis_rows, N_ROWS, "redis", "redis", conf))
        return -EINVAL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const char *why, *text = ((redis_conf_t *)conf)->address;
        if (strcmp(cfg_key_text(ld, p), "address") || !text[0] || !(why = address_check(text)))
            continue;
        return cfg_load_fail(ld, cfg_node_at(ld, p->value), "redis.address", "%s: %s", text, why);
    }
    return 0;
}

/* After the file and the AGATE_REDIS_* variables: what the shards will use. */
static int redis_env(void *conf, char *err, size_t errlen)
{
    redis_conf_t *rc = conf;
    if (address_resolve(rc, err, errlen))
        return -EINVAL;
    return rc->address[0] ? secret_read(rc, err, errlen) : 0;
}

static int redis_validate(const cfg_t *c, const void *conf, char *key, size_t keylen, char *why, size_t whylen)
{
    const redis_conf_t *rc = conf;
    if (rc->reconnect_min_ms > rc->reconnect_max_ms) {
        snprintf(key, keylen, "redis.reconnect_min");
        snprintf(why, whylen, "%ums is more than redis.reconnect_max (%ums)", rc->reconnect_min_ms,
                 rc->reconnect_max_ms);
        return -EINVAL;
    }
    if (rc->password[0] && rc->password_file[0]) {
        snprintf(key, keylen, "redis.password_file");
        snprintf(why, whylen, "set both redis.password and redis.password_file; keep one");
        return -EINVAL;
    }
    if (rc->username[0] && !rc->password[0] && !rc->password_file[0]) {
        snprintf(key, keylen, "redis.username");
        snprintf(why, whylen, "needs redis.password or redis.password_file");
        return -EINVAL;
    }
    return 0;
}

static const char *const redis_keys[] = { "redis", NULL };
/* The per-shard queue and reader are sized once, when the shard starts. */
static const char *const redis_restart[] = { "redis.max_pending", "redis.max_reply_bytes", NULL };

/* rank 35: after cache, before ws, in messages and --help */
cfg_section_t redis_conf_section = {
    .name = "redis", .keys = redis_keys, .rows = redis_rows, .n_rows = N_ROWS,
    .size = sizeof(redis_conf_t), .rank = 35, .restart = redis_restart,
    .load = redis_load, .env = redis_env, .validate = redis_validate,
};

/* ---- metrics ---- */

static const char *const result_names[RR_COUNT] = {"ok", "error_reply", "timeout", "failed", "refused"};

#define SUM(field)                                                             \
    ({                                                                         \
        uint64_t s_ = 0;                                                       \
        for (unsigned i_ = 0; i_ < n; i_++) {                                  \
            const redis_metrics_t *m_ = redis_shard_metrics(&shards[i_]);      \
            if (m_)                                                            \
                s_ += metrics_rd(&m_->field);                                  \
        }                                                                      \
        s_;                                                                    \
    })
#define SUMI(field)                                                            \
    ({                                                                         \
        int64_t s_ = 0;                                                        \
        for (unsigned i_ = 0; i_ < n; i_++) {                                  \
            const redis_metrics_t *m_ = redis_shard_metrics(&shards[i_]);      \
            if (m_)                                                            \
                s_ += metrics_rdi(&m_->field);                                 \
        }                                                                      \
        s_;                                                                    \
    })

void redis_metrics_render(metrics_render_t *r, const shard_t *shards, unsigned n, const cfg_t *cfg)
{
    char lb[64];
    if (!redis_configured(cfg))
        return;
    metrics_gauge(r, "agate_redis_up", "Shards whose Redis connection is up (connected, authenticated, scripts loaded).",
                  SUMI(up));
    metrics_gauge(r, "agate_redis_pending", "Redis commands sent or queued and not yet answered.", SUMI(pending));
    metrics_family(r, "agate_redis_commands", "counter",
                   "Redis commands by outcome: ok, error_reply (Redis refused it), timeout, failed (connection "
                   "lost or stopping), refused (not sent: down or too many pending). The client's own AUTH, SELECT, "
                   "SCRIPT LOAD and PING count too.");
    for (int k = 0; k < RR_COUNT; k++) {
        snprintf(lb, sizeof lb, "result=\"%s\"", result_names[k]);
        metrics_sample_u(r, "agate_redis_commands", "_total", lb, SUM(commands[k]));
    }
    metrics_counter(r, "agate_redis_round_trips", "Sends to Redis (each carries every command of a loop turn).",
                    SUM(round_trips));
    metrics_family(r, "agate_redis_connects", "counter", "Redis connection attempts by result.");
    metrics_sample_u(r, "agate_redis_connects", "_total", "result=\"ok\"", SUM(connects_ok));
    metrics_sample_u(r, "agate_redis_connects", "_total", "result=\"failed\"", SUM(connects_failed));
    metrics_counter(r, "agate_redis_protocol_errors",
                    "Redis connections closed for bytes that are not RESP, a reply over redis.max_reply_bytes, "
                    "or a reply nobody asked for.",
                    SUM(protocol_errors));
    metrics_hist_t h = {0};
    for (unsigned i = 0; i < n; i++) {
        const redis_metrics_t *m = redis_shard_metrics(&shards[i]);
        if (m)
            metrics_hist_add(&h, &m->latency);
    }
    metrics_family(r, "agate_redis_latency_seconds", "histogram", "Time from issuing a Redis command to its reply.");
    metrics_hist(r, "agate_redis_latency_seconds", "", &h);
}
