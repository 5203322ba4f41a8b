/* config: agate's configuration, from built-in defaults, one YAML file and
 * environment overrides, in that order (later wins).
 *
 * The cfg_t is filled once at start-up by the main thread and is read-only after
 * the shards start; shards keep a const pointer to it. */
#ifndef AGATE_CONFIG_H
#define AGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CFG_MAX_AGENTS     64
#define CFG_NAME_MAX       64
#define CFG_ADDR_MAX       128
#define CFG_PATH_MAX       512
#define CFG_URL_MAX        256
#define CFG_ERR_MAX        512

typedef enum cfg_agent_kind {
    CFG_AGENT_ECHO = 1,           /* the built-in echo agent */
} cfg_agent_kind_t;

typedef struct cfg_agent {
    char             name[CFG_NAME_MAX];   /* [A-Za-z0-9_.-]{1,63} */
    cfg_agent_kind_t kind;
    uint32_t         token_interval_ms;    /* pacing between content events; 0 = as fast as possible */
} cfg_agent_t;

typedef enum cfg_log_level { CFG_LOG_DEBUG, CFG_LOG_INFO, CFG_LOG_WARN, CFG_LOG_ERROR } cfg_log_level_t;

typedef struct cfg {
    char     path[CFG_PATH_MAX];          /* file loaded, "" when only defaults/env */

    char     listen[CFG_ADDR_MAX];        /* main listener, "0.0.0.0:8080" */
    char     admin_listen[CFG_ADDR_MAX];  /* admin listener, "0.0.0.0:9090"; "" or "off" disables */
    uint32_t shards;                      /* 0 = one per online CPU */

    uint32_t max_connections;             /* per shard; more are answered 503 and closed */
    uint32_t max_body_bytes;              /* request body limit, 413 past it */
    uint32_t max_header_bytes;            /* request line + headers limit, 431 past it */
    uint32_t header_timeout_ms;           /* first byte to end of headers, 408 past it */
    uint32_t body_timeout_ms;             /* end of headers to end of body, 408 past it */
    uint32_t idle_timeout_ms;             /* keep-alive idle close */

    uint32_t heartbeat_ms;                /* ": ping" on a quiet stream; 0 = off */
    uint32_t max_token_interval_ms;       /* cap on a request's tokenIntervalMs */
    uint32_t stream_buffer_bytes;         /* per-stream output bound (backpressure) */
    uint32_t drain_timeout_ms;            /* SIGTERM: time given to running streams */

    bool            log_requests;         /* one JSON line per request on stdout */
    cfg_log_level_t log_level;
    double          log_sample;           /* fraction 0..1 of successful (< 400) request lines written; errors always */

    bool     metrics_enabled;             /* count and serve /metrics */
    bool     metrics_on_main;             /* also serve /metrics on the main listener */

    char     otlp_endpoint[CFG_URL_MAX];  /* "http://host:port/path"; "" = no span export */
    char     service_name[CFG_NAME_MAX];  /* OTLP resource service.name */
    uint32_t otlp_interval_ms;            /* exporter wake-up period */
    uint32_t otlp_max_batch;              /* spans per OTLP request */

    cfg_agent_t agents[CFG_MAX_AGENTS];
    uint32_t    n_agents;
} cfg_t;

/* Built-in defaults: the listeners above, 1 MiB body, 16 KiB headers, 10 s header
 * timeout, 30 s body timeout, 60 s idle, 10000 connections per shard, 15 s
 * heartbeat, 1000 ms token interval cap, 256 KiB stream buffer, 25 s drain,
 * log_requests on, level info, log_sample 1, metrics on (admin listener only),
 * no span export (service "agate", every 1 s, batches of 512), and one agent:
 * echo (kind echo, interval 0). */
void cfg_defaults(cfg_t *c);

/* Loads a YAML file over the current values. On error returns -EINVAL (or
 * -errno when the file cannot be read) and writes into err a message naming the
 * file, line and key, e.g.
 *   "/etc/agate.yaml:12: limits.max_body: expected a size (e.g. 1048576, 64KiB, 1MiB)"
 * All or nothing: on error *c is left exactly as it was. An `agents:` mapping
 * in the file replaces the whole agent list. */
int cfg_load_file(cfg_t *c, const char *path, char *err, size_t errlen);

/* Applies AGATE_* environment overrides (see cfg_env_help). Errors name the
 * variable: "AGATE_SHARDS: expected a whole number from 0 to 1024". Empty
 * variables are ignored; all or nothing like cfg_load_file. */
int cfg_apply_env(cfg_t *c, char *err, size_t errlen);

/* Cross-field checks after everything is applied (addresses parse, at least one
 * agent, unique agent names, ...). */
int cfg_validate(const cfg_t *c, char *err, size_t errlen);

/* name need not be NUL-terminated (a slice of a request path); NULL if absent. */
const cfg_agent_t *cfg_find_agent(const cfg_t *c, const char *name, size_t len);

/* Parses a listener address: "host:port", "[v6]:port" or ":port" (= 0.0.0.0).
 * host is a numeric IPv4 address, a bracketed numeric IPv6 address or
 * "localhost" (= 127.0.0.1); names are never resolved. port is 1..65535.
 * Returns 0 or -EINVAL. */
int cfg_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Text for --help: the environment variables and what they override. */
const char *cfg_env_help(void);

#endif
