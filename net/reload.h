/* reload: configuration reload on the main thread (SIGHUP) and the JWKS file
 * watch. A reload reads the file again over defaults and the environment,
 * validates it, compiles the access policy (auth keys, JWT keys, CORS, rate
 * limit rules) and publishes it to the shards with one pointer swap; a bad file
 * is logged and the running policy kept. Limiter state survives for every rule
 * whose definition did not change (net/access_policy.c keys cells by rule identity).
 *
 * Agents and every setting the shards read per request are swapped too, as a
 * new configuration generation (core/cfggen.c): runs started before the reload
 * finish on the generation they began with. Settings read only at start
 * (listeners, shards, max_connections, metrics.enabled, the trace exporter,
 * cache.max_bytes, dns_refresh) keep their running values, and the reload line
 * lists them under "restart_keys". */
#ifndef AGATE_RELOAD_H
#define AGATE_RELOAD_H

#include <stddef.h>

#include "core/config.h"
#include "core/log.h"

/* Start-up: publishes the policy for cfg. 0 or -errno with err filled. */
int  reload_init(const cfg_t *cfg, char *err, size_t errlen);
/* SIGHUP: reload from the running configuration's path (or only defaults +
 * environment). */
void reload_config(log_ring_t *log);
/* Once a second: JWKS file changes, and freeing policies no shard can see. */
void reload_tick(log_ring_t *log);
void reload_shutdown(void);

#endif
