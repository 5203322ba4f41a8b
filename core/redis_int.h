/* redis_int: what the Redis client's files share (core/redis.c: the
 * connection; core/redis_conf.c: the `redis:` section, its resolution and the
 * metrics). Not for callers: they use core/redis.h. */
#ifndef AGATE_REDIS_INT_H
#define AGATE_REDIS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/config.h"
#include "core/config_sect.h"
#include "core/engine.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "core/redis_proto.h"
#include "core/timer.h"

#define REDIS_ADDR_MAX    256
#define REDIS_USER_MAX    128
#define REDIS_SECRET_MAX  512
#define REDIS_PREFIX_MAX  64

/* The redis: section (cfg_t.sect), read through redis_conf(cfg). */
typedef struct redis_conf {
    char     address[REDIS_ADDR_MAX];        /* host:port, [v6]:port or a unix socket path; "" = off */
    char     username[REDIS_USER_MAX];       /* AUTH username (ACL); "" = password only */
    char     password[REDIS_SECRET_MAX];
    char     password_file[CFG_PATH_MAX];
    uint32_t db;
    uint32_t connect_timeout_ms, command_timeout_ms;
    uint32_t reconnect_min_ms, reconnect_max_ms;
    uint32_t max_pending;                    /* user commands outstanding per shard */
    uint32_t max_reply_bytes;                /* one reply's allocations and buffered bytes */
    char     key_prefix[REDIS_PREFIX_MAX + 1];

    /* Filled on the main thread (the section's env hook, at start and at each
     * reload), read by the shards: the resolved address and the secret in use
     * (password, or password_file's first line). */
    struct sockaddr_storage addr;
    socklen_t alen;
    char     secret[REDIS_SECRET_MAX];
} redis_conf_t;

extern cfg_section_t redis_conf_section;
static inline const redis_conf_t *redis_conf(const cfg_t *c) { return cfg_sect(c, &redis_conf_section); }

/* ---- metrics: one block per shard, written by that shard only ---- */

enum redis_result { RR_OK, RR_ERROR_REPLY, RR_TIMEOUT, RR_FAILED, RR_REFUSED, RR_COUNT };

typedef struct redis_metrics {
    int64_t        up;                      /* 1 while the shard's connection is up */
    int64_t        pending;                 /* commands sent or queued, not answered */
    uint64_t       commands[RR_COUNT];
    uint64_t       round_trips;             /* sends */
    uint64_t       connects_ok, connects_failed;
    uint64_t       protocol_errors;
    metrics_hist_t latency;
} redis_metrics_t;

/* The per-shard metrics block of shard sh (NULL before its module opened). */
const redis_metrics_t *redis_shard_metrics(const struct shard *sh);
void redis_metrics_render(metrics_render_t *r, const struct shard *shards, unsigned n, const cfg_t *cfg);

/* The scripts registered so far (main thread registers, shards read). */
unsigned    redis_script_count(void);
const char *redis_script_lua(unsigned i);
const char *redis_script_sha(unsigned i);   /* 40 hex digits */

#endif
