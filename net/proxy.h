/* proxy: agents behind agate (kind proxy). The run logic is reached through
 * the kind ops it registers (proto/run.h); the shard's side is a shard module
 * that sets up the breakers and upstream connections once an agent is a proxy
 * and resets breakers when a reload changes an agent's endpoints. */
#ifndef AGATE_PROXY_H
#define AGATE_PROXY_H

/* Main thread, at start-up, after ups_register and breaker_register. */
void proxy_register(void);

#endif
