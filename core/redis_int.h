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
#include "core/buf.h"
#include "core/shard.h"

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

/* ---- the per-shard connection (core/redis_conn.c), driven by core/redis.c ---- */

#define REDIS_RECV_BUFS     4
#define REDIS_RECV_BUF_SIZE (16u << 10)
#define REDIS_RECV_BGID     3
#define REDIS_PING_MS       1000   /* an idle connection is checked this often */
#define REDIS_INTERNAL_MAX  64     /* FIFO room beyond max_pending: AUTH, SELECT, PING */
#define REDIS_SCRIPTS_MAX   32

typedef enum rc_state { RC_OFF, RC_WAIT, RC_CONNECTING, RC_HANDSHAKE, RC_UP, RC_CLOSING } rc_state_t;

typedef struct redis_shard {
    struct shard *sh;
    rc_state_t  state;
    int         fd;                 /* owned; -1 when none */
    uint32_t    inflight;           /* operations naming fd */
    bool        connect_armed, recv_armed, send_inflight;
    bool        retry_due;          /* the backoff passed while CLOSING */
    bool        stopping;
    bool        scripts_reloading;  /* a NOSCRIPT reply queued a SCRIPT LOAD of every script */
    uint32_t    reload_left;        /* ... of which this many are not answered yet */
    int8_t      logged_up;          /* -1 unknown, 0 down, 1 up: one log line per transition */
    buf_t       out, next;          /* commands: in flight / queued since (see the file comment) */
    size_t      sent;
    rp_fifo_t   fifo;
    rp_reader_t rd;
    uint32_t    n_user;             /* entries in fifo that callers issued */
    uint32_t    handshake_left;
    uint32_t    backoff_ms;
    agate_timer_t t_cmd;            /* the oldest command's deadline (lazily moved on) */
    agate_timer_t t_tick;           /* UP: the idle PING; WAIT/CLOSING: the reconnect */
    agate_timer_t t_flush;          /* keeps the loop from sleeping on commands issued after turn_end */
    struct __kernel_timespec connect_ts;
    struct sockaddr_storage  addr;  /* the connect's target; read by the kernel at submit */
    eng_bufs_t  rbufs;
    bool        bufs_ok;
    redis_metrics_t m;
} redis_shard_t;

extern unsigned g_redis_mod;   /* this module's slot in shard_t.mod */
static inline redis_shard_t *redis_shard_of(const struct shard *sh) { return (redis_shard_t *)sh->mod[g_redis_mod]; }

/* core/redis_conn.c: the completion kinds, registered by redis_register. */
void redis_conn_register(void);
bool redis_conn_dispatch(struct shard *sh, struct io_uring_cqe *cqe);
void redis_conn_timers_init(redis_shard_t *rs);
void redis_conn_connect(redis_shard_t *rs);
/* The connection failed or must go (why/detail for the log line): every
 * queued command gets err; reconnects after the backoff unless stopping. */
void redis_conn_down(redis_shard_t *rs, const char *why, const char *detail, size_t dlen, int err);
void redis_conn_flush(redis_shard_t *rs);   /* turn_end: the turn's commands in one send */
/* Queues a command (formatted into the next send); its handle, or 0 when the
 * queue is full or out of memory. */
uint64_t redis_conn_enqueue(redis_shard_t *rs, const rp_entry_t *e, int argc, const char **argv, const size_t *argvlen);
void redis_conn_count(redis_shard_t *rs, enum redis_result r);
void redis_conn_set_up(redis_shard_t *rs, bool up);

/* For tests that drive a shard by hand (tests/unit/test_redis.c), as
 * core/shard.c would: the module's hooks, and the handling of a completion of
 * one of its kinds (false for another kind's). */
struct shard_mod_ops;
const struct shard_mod_ops *redis_mod_ops(void);
bool redis_dispatch(struct shard *sh, struct io_uring_cqe *cqe);

#endif
