/* modules: the registration order (see modules.h). Hooks run in this order
 * and `stop`/`free` in reverse, so a module comes after those it uses: the
 * run pool first (freed last, after every module that may still release a
 * run), the client connections last (stopped first, so their runs let go of
 * upstream connections before those are aborted), coalescing before the
 * connections (its end-of-turn pump queues output the connections then send).
 * Configuration sections are listed by their rank, not by this order. */
#include "net/modules.h"

#include "core/cache.h"
#include "core/cfggen.h"
#include "core/redis.h"
#include "net/access.h"
#include "net/breaker.h"
#include "net/coalesce.h"
#include "net/coalesce_metrics.h"
#include "net/conns.h"
#include "net/gwmetrics.h"
#include "net/proxy.h"
#include "net/resume.h"
#include "net/runlog_redis.h"
#include "net/upstream.h"
#include "net/upstream_metrics.h"
#include "net/ws.h"
#include "proto/run.h"

void modules_register(void)
{
    cfggen_register();   /* first: a reloaded configuration is adopted before any other hook runs */
    run_register();
    echo_register();
    gwmetrics_register();   /* metrics blocks: the gateway's, then each feature's */
    upm_register();
    coalm_register();
    redis_register();   /* before the modules that issue commands: it stops after them */
    access_register();
    ups_register();
    breaker_register();
    proxy_register();
    cache_register();
    coalesce_register();
    rsx_register();      /* the run logs' Redis Streams: stops after resume (whose stop ends the runs) */
    resume_register();   /* after coalescing (a replay may feed a producer), before the connections */
    ws_register();
    conns_register();
}
