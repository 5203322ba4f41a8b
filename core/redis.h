/* redis: a Redis client on the shard's own loop, for sharing state across a
 * fleet of agate processes (global rate limits, the second cache tier, run
 * logs). Redis is never needed to serve: every caller has an answer for "no
 * reply" (a fallback), and a command is never waited for outside the loop.
 *
 * Each shard keeps its own connection(s) to one Redis primary (the `redis:`
 * section; off when `redis.address` is empty). The socket, its buffers and
 * its timers are agate's and go through the shard's engine (core/engine.h),
 * so it works the same on io_uring and epoll; Debian's hiredis provides only
 * the protocol: the command formatter and the reply reader (RESP2).
 *
 * Commands are pipelined: those issued in one loop turn leave in one send at
 * the turn's end, and replies are matched to them in order. Each command has a
 * deadline (redis.command_timeout); a command that is not answered by then
 * completes with -ETIMEDOUT and, since a late reply would be matched to the
 * wrong command, the connection is closed and made again. A connection that
 * fails is made again after a jittered backoff (redis.reconnect_min ..
 * redis.reconnect_max); while it is down commands are refused at once
 * (redis_cmd returns 0), which is what lets callers fall back without waiting.
 * On connect: AUTH (redis.username, redis.password or redis.password_file),
 * SELECT redis.db when not 0, and SCRIPT LOAD of every registered script;
 * only then is the connection up.
 *
 * Topology: one primary (or a proxy in front of one, or a Sentinel-managed
 * primary reached through a stable Service address). Redis Cluster and
 * Sentinel discovery are not supported. */
#ifndef AGATE_REDIS_H
#define AGATE_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>   /* redisReply, REDIS_REPLY_* */

#include "core/config.h"

struct shard;

/* The reply to one command: exactly one call per command redis_cmd accepted,
 * unless redis_cancel was called for it first. On the shard's thread, from
 * the shard loop (never inside redis_cmd). err is 0 with rep the reply
 * (which may be REDIS_REPLY_ERROR: Redis refused it), or a negative errno
 * with rep NULL: -ETIMEDOUT (no reply within redis.command_timeout),
 * -ECONNRESET (the connection failed with the command outstanding),
 * -ECANCELED (the shard is stopping). rep is valid only during the call. */
typedef void (*redis_reply_fn)(struct shard *sh, void *ctx, uint64_t tag, const redisReply *rep, int err);

/* Main thread, at start-up (net/modules.c): the redis: section, the per-shard
 * connections (a shard module) and the metrics. */
void redis_register(void);

/* Main thread, before the shards start: a Lua script every connection loads
 * on connect (SCRIPT LOAD); its index for redis_evalsha. */
unsigned redis_script_register(const char *lua);

/* Whether redis.address is set in cfg. */
bool redis_configured(const cfg_t *cfg);
/* Whether this shard has a connection that is up (connected, authenticated,
 * scripts loaded) and not over its pending bound: a command issued now is sent. */
bool redis_up(const struct shard *sh);

/* Issues a command (argv form, binary safe). Returns a handle (never 0) for
 * redis_cancel; 0 when it was refused at once (not configured, not up, too many
 * commands pending): then fn is never called and the caller falls back now. */
uint64_t redis_cmd(struct shard *sh, redis_reply_fn fn, void *ctx, uint64_t tag, int argc, const char **argv,
                   const size_t *argvlen);
/* EVALSHA of script `script` (redis_script_register) with nkeys keys then the
 * other arguments, in argv/argvlen (keys first). As redis_cmd. */
uint64_t redis_evalsha(struct shard *sh, unsigned script, redis_reply_fn fn, void *ctx, uint64_t tag, int nkeys,
                       int argc, const char **argv, const size_t *argvlen);
/* The command's reply will not be delivered (its ctx is going away). The
 * command itself may still run on the server. */
void redis_cancel(struct shard *sh, uint64_t handle);

/* redis.key_prefix ("agate:" by default): every key agate writes starts
 * with it, so fleets can share one Redis. */
const char *redis_key_prefix(const cfg_t *cfg);

#endif
