/* proxy: agents behind agate (kind proxy). The run logic is reached through
 * proxy_agent_ops (proto/agent.h); this header is the shard's view. */
#ifndef AGATE_PROXY_H
#define AGATE_PROXY_H

#include "core/shard.h"

int  proxy_shard_init(shard_t *sh);   /* 0 or -ENOMEM; nothing when no agent is a proxy */
void proxy_shard_free(shard_t *sh);

#endif
