/* proxy: agents behind agate (kind proxy). The run logic is reached through
 * proxy_agent_ops (proto/agent.h); this header is the shard's view. */
#ifndef AGATE_PROXY_H
#define AGATE_PROXY_H

#include "core/shard.h"

int  proxy_shard_init(shard_t *sh);   /* 0 or -ENOMEM; nothing when no agent is a proxy */
void proxy_shard_free(shard_t *sh);
/* Shard thread, when it adopts a new configuration generation (sh->cfg is the
 * new one): sets up proxy state if the first proxy agent appeared, and starts
 * the breakers of every agent whose endpoints changed afresh. */
void proxy_shard_adopt(shard_t *sh, const cfg_t *old);

#endif
