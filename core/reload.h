/* reload: configuration reload on the main thread (SIGHUP) and the JWKS file
 * watch. A reload reads the file again over defaults and the environment,
 * validates it, compiles the access policy (auth keys, JWT keys, CORS, rate
 * limit rules) and publishes it to the shards with one pointer swap; a bad file
 * is logged and the running policy kept. Limiter state survives for every rule
 * whose definition did not change (net/access.c keys cells by rule identity).
 *
 * Settings other than the access sections (listeners, shards, agents, limits,
 * ...) are read by the shards without synchronisation and are NOT swapped: a
 * reload that changes them logs "restart_required":true and applies only the
 * access sections. */
#ifndef AGATE_RELOAD_H
#define AGATE_RELOAD_H

#include <stddef.h>

#include "core/config.h"
#include "core/log.h"

/* Start-up: publishes the policy for cfg. 0 or -errno with err filled. */
int  reload_init(const cfg_t *cfg, char *err, size_t errlen);
/* SIGHUP: reload from running->path (or only defaults + environment). */
void reload_config(const cfg_t *running, log_ring_t *log);
/* Once a second: JWKS file changes, and freeing policies no shard can see. */
void reload_tick(unsigned nshards, log_ring_t *log);
void reload_shutdown(void);

#endif
