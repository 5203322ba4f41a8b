/* config: agate's configuration, from built-in defaults, one YAML file and
 * environment overrides, in that order (later wins).
 *
 * A cfg_t is filled by the main thread and never changed once shards can see
 * it: a reload builds a new one and publishes it as a new generation
 * (core/cfggen.h); a shard reads the generation it adopted last through a
 * const pointer, a run the one it started on.
 *
 * cfg_t's named fields are core's own settings and the agents; every other
 * module's settings are its registered section's struct inside cfg_t.sect
 * (cfg_section_t below), which only that module reads. */
#ifndef AGATE_CONFIG_H
#define AGATE_CONFIG_H

#include <assert.h>
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
    CFG_AGENT_PROXY,              /* an AG-UI HTTP agent service behind agate */
} cfg_agent_kind_t;

#define CFG_MAX_ENDPOINTS  8
#define CFG_MAX_FORWARD    16
#define CFG_HOST_MAX       128
#define CFG_UPATH_MAX      256
#define CFG_HEADER_MAX     64
#define CFG_MAX_CACHE_IGNORE 16
#define CFG_CACHE_PATH_MAX 64

/* An upstream agent service: http://host:port/path (no https yet). The host may
 * be a name; the upstream module resolves it off the shards' loops. */
typedef struct cfg_endpoint {
    /* A name, an IPv4 address or an IPv6 address without its [ ] (add them
     * back for the Host header); from the file, never empty. */
    char     host[CFG_HOST_MAX];
    uint16_t port;                          /* default 80 */
    char     path[CFG_UPATH_MAX];           /* "/" when the URL has none; query kept */
} cfg_endpoint_t;

typedef enum cfg_balance { CFG_BALANCE_ROUND_ROBIN, CFG_BALANCE_LEAST_OUTSTANDING } cfg_balance_t;
typedef enum cfg_validation { CFG_VALIDATION_STRICT, CFG_VALIDATION_PASS } cfg_validation_t;
/* engine.backend: the I/O engine (core/engine.h); auto tries io_uring, then epoll. */
typedef enum cfg_backend { CFG_BACKEND_AUTO, CFG_BACKEND_IO_URING, CFG_BACKEND_EPOLL } cfg_backend_t;

typedef struct cfg_agent {
    char             name[CFG_NAME_MAX];   /* [A-Za-z0-9_.-]{1,63} */
    cfg_agent_kind_t kind;
    /* Its index in cfg_t.agents, kept by its name for the life of the process
     * across reloads (core/cfggen.c), so per-agent state (metrics, breakers,
     * upstream pools, limiter rules) indexed by it survives a reload. */
    uint8_t          slot;
    bool             removed;              /* a reload dropped it: no new runs, its slot kept */
    uint32_t         token_interval_ms;    /* echo: pacing between content events; 0 = as fast as possible */

    /* proxy agents (kind CFG_AGENT_PROXY) */
    cfg_endpoint_t   endpoints[CFG_MAX_ENDPOINTS];
    uint32_t         n_endpoints;
    cfg_balance_t    balance;               /* default round_robin */
    uint32_t         connect_timeout_ms;    /* default 2 s */
    uint32_t         first_event_timeout_ms;/* request sent to first event, default 30 s */
    uint32_t         idle_timeout_ms;       /* gap between events, default 120 s */
    uint32_t         run_timeout_ms;        /* whole run, default 30 min */
    uint32_t         retry_attempts;        /* extra attempts before the first event, default 2 */
    uint32_t         retry_backoff_ms;      /* base of exponential backoff with full jitter, default 50 ms */
    uint32_t         retry_backoff_max_ms;  /* cap, default 1 s */
    uint32_t         breaker_failures;      /* consecutive failures that open it, default 5 */
    double           breaker_error_rate;    /* or this failure ratio ... default 0.5 */
    uint32_t         breaker_min_requests;  /* ... over at least this many recent attempts, default 20 */
    uint32_t         breaker_open_ms;       /* open this long before half-open, default 10 s */
    uint32_t         breaker_half_open;     /* trial runs admitted while half-open, default 3 */
    cfg_validation_t validation;            /* default strict */
    uint32_t         max_event_bytes;       /* largest upstream event, bytes, default 4 MiB */
    char             forward_headers[CFG_MAX_FORWARD][CFG_HEADER_MAX];   /* lower-case names */
    uint32_t         n_forward;
    uint32_t         pool_max_idle;         /* idle keep-alive connections per shard per endpoint, default 256 */
    uint32_t         pool_idle_timeout_ms;  /* default 60 s */

    /* proxy agents: the response cache (core/config_cache.c); off while cache_ttl_ms is 0 */
    uint32_t         cache_ttl_ms;          /* how long a stored run is served, default 0 = off */
    uint32_t         cache_max_entry;       /* largest run stored, bytes, default 1 MiB */
    uint32_t         cache_max_lag;         /* bytes a coalesced follower may fall further behind, default 8 MiB */
    bool             cache_pace;            /* replay with the original gaps between events, default false */
    bool             cache_coalesce;        /* identical requests share one in-flight run, default true */
    bool             cache_shared;          /* second tier in Redis (net/coalesce_tier2.c), default false */
    uint32_t         cache_shared_max;      /* largest run written to Redis, bytes, default 512 KiB */
    uint32_t         cache_shared_wait_ms;  /* wait for another pod's identical run, default 0 = never */
    char             cache_ignore[CFG_MAX_CACHE_IGNORE][CFG_CACHE_PATH_MAX];   /* left out of the key */
    uint32_t         n_cache_ignore;

    /* either type: resumable runs (core/config_resume.c, net/resume.c); off unless resume_enabled */
    bool             resume_enabled;        /* event ids, a run log, reattach, detach; default false */
    uint32_t         resume_log_ttl_ms;     /* a finished run's log is kept this long, default 5 min */
    uint32_t         resume_max_bytes;      /* one run's log, bytes; the front is dropped past it, default 1 MiB */
    uint32_t         resume_detach_ms;      /* a run with no client goes on this long, default 30 s */
} cfg_agent_t;

typedef enum cfg_log_level { CFG_LOG_DEBUG, CFG_LOG_INFO, CFG_LOG_WARN, CFG_LOG_ERROR } cfg_log_level_t;

/* Bytes of every cfg_t that the registered sections keep their structs in
 * (cfg_t.sect). The largest is access's (net/access_conf.h), about 107 KiB;
 * cfg_section_register refuses a section that no longer fits. */
#define CFG_SECT_BYTES     (128u << 10)
#define CFG_SECT_ALIGN     16
#define CFG_SECT_MAX       16

typedef struct cfg {
    char     path[CFG_PATH_MAX];          /* file loaded, "" when only defaults/env */

    char     listen[CFG_ADDR_MAX];        /* main listener, "0.0.0.0:8080" */
    char     admin_listen[CFG_ADDR_MAX];  /* admin listener, "0.0.0.0:9090"; "" or "off" disables */
    uint32_t shards;                      /* 0 = one per CPU the process may use (core/cpus.h) */
    cfg_backend_t backend;                /* engine.backend */

    uint32_t max_connections;             /* per shard; more are answered 503 and closed */
    uint32_t max_connections_set;         /* as configured when lowered at start to fit the descriptor limit, else 0 */
    uint32_t max_body_bytes;              /* request body limit, 413 past it */
    uint32_t max_header_bytes;            /* request line + headers limit, 431 past it */
    uint32_t header_timeout_ms;           /* first byte to end of headers, 408 past it */
    uint32_t body_timeout_ms;             /* end of headers to end of body, 408 past it */
    uint32_t idle_timeout_ms;             /* keep-alive idle close */

    uint32_t heartbeat_ms;                /* ": ping" on a quiet stream; 0 = off */
    uint32_t pb_heartbeat_ms;             /* a protobuf stream's keep-alive frame; 0 = off */
    uint32_t max_token_interval_ms;       /* cap on a request's tokenIntervalMs */
    uint32_t stream_buffer_bytes;         /* per-stream output bound (backpressure) */
    uint32_t drain_timeout_ms;            /* SIGTERM: time given to running streams */

    bool     demo;                        /* serve the demo page at GET / */

    bool            log_requests;         /* one JSON line per request on stdout */
    cfg_log_level_t log_level;
    double          log_sample;           /* fraction 0..1 of successful (< 400) request lines written; errors always */
    uint32_t        log_writeback_bytes;  /* stdout a file: to disk and out of the page cache every this many bytes; 0 off */
    uint32_t        log_buffer_bytes;     /* each log ring (one per shard, main's, the resolver's), rounded up to a power of 2 */

    bool     metrics_enabled;             /* count and serve /metrics */
    bool     metrics_on_main;             /* also serve /metrics on the main listener */

    char     otlp_endpoint[CFG_URL_MAX];  /* "http://host:port/path"; "" = no span export */
    char     service_name[CFG_NAME_MAX];  /* OTLP resource service.name */
    uint32_t otlp_interval_ms;            /* exporter wake-up period */
    uint32_t otlp_max_batch;              /* spans per OTLP request */

    cfg_agent_t agents[CFG_MAX_AGENTS];
    uint32_t    n_agents;

    uint64_t    generation;               /* core/cfggen.c: 1, 2, ... once published; 0 for any other cfg_t */

    /* The registered sections' structs, each at its section's off: plain data
     * like everything above, so a cfg_t still copies by value (cfggen). */
    uint32_t    n_sect;                   /* sections registered when cfg_defaults built it */
    _Alignas(CFG_SECT_ALIGN) unsigned char sect[CFG_SECT_BYTES];
} cfg_t;

/* ---- sections: a module owns top-level keys of the file ----
 *
 * A module registers its section (like an nginx module's ngx_command_t rows
 * beside its conf struct, or HAProxy's cfg_kw_list) from its register function,
 * which runs before cfg_defaults (net/modules.c; tests and fuzzers call it
 * too). The section names the top-level keys it owns, its scalar settings as
 * rows of a table (struct cfg_setting, core/config_sect.h) with offsets into
 * its own struct, and that struct's size; the engine gives the struct a place
 * in cfg_t.sect, and cfg_defaults, the YAML loader, the environment, cfg_validate,
 * --help and reloads (cfg_keep_start_only) walk every section's rows and call its
 * hooks. The module reads its settings through a typed accessor of its own,
 * e.g. net/ws.h's ws_conf(cfg). Hooks are optional; conf is the section's struct
 * in the cfg_t being built. */
struct cfg;
struct cfg_setting;
struct cfg_loader;
struct yaml_node_s;

typedef struct cfg_section {
    const char *name;                    /* for the abort of a registration bug */
    /* The top-level keys it owns, NULL-terminated, in the order messages list them. */
    const char *const *keys;
    /* Its scalar settings; a row's section is the top-level key whose mapping
     * holds it, or NULL for a top-level key of its own (security_headers). */
    const struct cfg_setting *rows;
    size_t      n_rows;
    /* sizeof its struct, kept in cfg_t.sect; 0 for core's own sections, whose
     * rows and hooks work on cfg_t's named fields (conf is the cfg_t). */
    size_t      size;
    /* Where its keys come among the top-level ones in "unknown key" messages
     * and --help, lowest first (core's own 0, agents 50), then registration
     * order. Text only: sections never depend on each other's order. */
    unsigned    rank;
    /* Dotted keys of its rows read only at start: a reload keeps their running
     * values and names them in restart_keys (core/cfggen.c). NULL-terminated. */
    const char *const *restart;
    /* After the rows' defaults (cfg_defaults zeroes the struct first). */
    void   (*defaults)(void *conf);
    /* The value of top-level key k (named key), in place of the rows: for a
     * section with lists or mappings the rows cannot express. */
    int    (*load)(const struct cfg_loader *ld, const char *key, const struct yaml_node_s *k,
                   const struct yaml_node_s *v, void *conf);
    /* After the rows' AGATE_* variables; err names the variable. */
    int    (*env)(void *conf, char *err, size_t errlen);
    /* After the rows' checks: cross-field rules, against the whole c. On
     * failure the dotted key and the problem, which cfg_validate reports. */
    int    (*validate)(const struct cfg *c, const void *conf, char *key, size_t keylen, char *why, size_t whylen);
    /* More --help lines after the rows' variables; bytes written, at most cap - 1. */
    size_t (*help)(char *out, size_t cap);

    /* The engine's, set by cfg_section_register. */
    size_t      off;                     /* of its struct in cfg_t.sect */
    unsigned    id;                      /* 1 + its registration index; 0 until registered */
} cfg_section_t;

/* Main thread, before cfg_defaults. Registering the same section again does
 * nothing; a key another section owns, a restart key without a row, or a
 * struct that does not fit in CFG_SECT_BYTES aborts (a build bug). */
void cfg_section_register(cfg_section_t *s);

/* Section s's struct in c. The assert catches a section read from a cfg_t
 * built by a cfg_defaults that ran before it was registered (or never was). */
static inline const void *cfg_sect(const cfg_t *c, const cfg_section_t *s)
{
    assert(s->id && s->id <= c->n_sect && s->size);
    return c->sect + s->off;
}

static inline void *cfg_sect_mut(cfg_t *c, const cfg_section_t *s)
{
    assert(s->id && s->id <= c->n_sect && s->size);
    return c->sect + s->off;
}

/* Built-in defaults: the listeners above, 1 MiB body, 16 KiB headers, 10 s header
 * timeout, 30 s body timeout, 60 s idle, 10000 connections per shard, 15 s
 * heartbeat, 1000 ms token interval cap, 256 KiB stream buffer, 25 s drain,
 * engine backend auto, shards 0 (one per CPU the process may use), log_requests on, level info, log_sample 1, log writeback every 4 MiB, 2 MiB log
 * rings, metrics on (admin listener only), no span export (service "agate", every
 * 1 s, batches of 512), and one agent: echo (kind echo, interval 0). */
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

/* name need not be NUL-terminated (a slice of a request path); NULL if absent
 * or removed. */
const cfg_agent_t *cfg_find_agent(const cfg_t *c, const char *name, size_t len);

/* Parses a listener address: "host:port", "[v6]:port" or ":port" (= 0.0.0.0).
 * host is a numeric IPv4 address, a bracketed numeric IPv6 address or
 * "localhost" (= 127.0.0.1); names are never resolved. port is 1..65535.
 * Returns 0 or -EINVAL. */
int cfg_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Text for --help: the environment variables and what they override. */
const char *cfg_env_help(void);

/* For a reload (core/cfggen.c): the registered sections' start-only keys
 * (cfg_section_t.restart) whose value differs between running and out get
 * running's value back in out, and are appended to restart (comma-separated,
 * after what it holds). */
void cfg_keep_start_only(const cfg_t *running, cfg_t *out, char *restart, size_t len);

#endif
