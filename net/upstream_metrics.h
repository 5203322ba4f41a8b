/* upstream_metrics: the upstream feature's per-shard metrics (attempts,
 * failures by kind, retries, open breakers), written by net/proxy.c and
 * net/breaker.c, rendered as agate_upstream_*. */
#ifndef AGATE_UPSTREAM_METRICS_H
#define AGATE_UPSTREAM_METRICS_H

#include <stdint.h>

#include "core/config.h"
#include "core/shard.h"

enum upm_fail { MUF_CONNECT, MUF_RESET, MUF_TIMEOUT, MUF_STATUS, MUF_CONTENT_TYPE, MUF_PROTOCOL, MUF_COUNT };

typedef struct upm {
    uint64_t attempts[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS];
    uint64_t failures[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS][MUF_COUNT];
    uint64_t retries[CFG_MAX_AGENTS];
    int64_t  breaker_open[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS];   /* 1 while this shard's breaker is open */
} upm_t;

extern unsigned g_upm_mod;   /* the block's index in shard_t.mod */

/* The shard's upstream metrics, or NULL when metrics are off. */
static inline upm_t *upm(const shard_t *sh) { return (upm_t *)sh->mod[g_upm_mod]; }

/* The failure kind's label value ("connect", "timeout", ...). */
const char *upm_fail_name(enum upm_fail kind);

/* Main thread, at start-up, after gwmetrics_register. */
void upm_register(void);

#endif
