/* gwmetrics: the gateway's per-shard metrics (HTTP, connections, runs and
 * events) and their label sets, plus the per-shard block every feature's
 * metrics use (gwm_block_register: upstream_metrics, coalesce_metrics). Recording is a relaxed
 * single-writer add (core/metrics.h) through gwm(sh), which is NULL when
 * metrics are off. Label sets are bounded enums and configured agent names. */
#ifndef AGATE_GWMETRICS_H
#define AGATE_GWMETRICS_H

#include <stdint.h>

#include "core/config.h"
#include "core/metrics.h"
#include "core/shard.h"
#include "proto/agui.h"
#include "proto/canon.h"

enum metrics_listener { ML_MAIN, ML_ADMIN, ML_COUNT };
enum metrics_route { MR_NONE, MR_RUN, MR_HEALTH, MR_METRICS, MR_NOT_FOUND, MR_WS, MR_DEMO, MR_ADMIN, MR_RESUME, MR_COUNT };
enum metrics_method { MM_GET, MM_HEAD, MM_POST, MM_OPTIONS, MM_OTHER, MM_COUNT };
enum metrics_transport { MT_SSE, MT_PROTO, MT_WS, MT_COUNT };   /* proto: SSE's HTTP stream in the protobuf encoding */
enum metrics_outcome { MO_FINISHED, MO_ERROR, MO_CLIENT_CLOSED, MO_CUT, MO_COUNT };
enum metrics_reject {
    MRJ_BAD_REQUEST,        /* malformed HTTP */
    MRJ_INVALID_INPUT,      /* RunAgentInput failed validation */
    MRJ_BODY_TOO_LARGE,
    MRJ_HEADERS_TOO_LARGE,
    MRJ_TIMEOUT,            /* header or body read timeout */
    MRJ_CONNECTION_LIMIT,
    MRJ_EXPECTATION,
    MRJ_UNAUTHORIZED,       /* 401: missing or bad credentials (net/access.c) */
    MRJ_FORBIDDEN,          /* 403: scope missing */
    MRJ_RATE_LIMITED,       /* 429: a rate or concurrency limit */
    MRJ_COUNT
};
/* Why a listener's accept failed (net/conns.c): out of descriptors for the
 * process, for the system, out of kernel memory, anything else. */
enum metrics_accept_error { MAE_EMFILE, MAE_ENFILE, MAE_ENOMEM, MAE_OTHER, MAE_COUNT };
/* Why an accepted connection was closed unanswered: every slot of the shard
 * taken, or it got one of the admin listener's descriptors (net/fdlimit.h). */
enum metrics_refusal { MCR_NO_SLOT, MCR_FD_RESERVE, MCR_COUNT };

typedef struct gwmetrics {
    uint64_t requests[ML_COUNT][MR_COUNT][MM_COUNT][5];   /* by status class 1xx..5xx */
    uint64_t rejected[MRJ_COUNT];
    uint64_t runs_started[CFG_MAX_AGENTS][MT_COUNT];
    uint64_t runs_ended[CFG_MAX_AGENTS][MT_COUNT][MO_COUNT];
    uint64_t events[AGUI_TYPE_COUNT];
    metrics_hist_t first_event[CFG_MAX_AGENTS];
    metrics_hist_t duration[CFG_MAX_AGENTS];
    metrics_hist_t gap[CFG_MAX_AGENTS];
    int64_t  connections[ML_COUNT];                       /* gauges */
    uint64_t accept_errors[ML_COUNT][MAE_COUNT];
    uint64_t refused[MCR_COUNT];                          /* connections closed unanswered at accept */
    int64_t  streams[MT_COUNT];
    int64_t  ws_connections;                              /* gauge: upgraded connections */
    uint64_t ws_messages[2], ws_bytes[2];                 /* WebSocket frames/bytes: [0] in, [1] out */
    uint64_t bytes_in, bytes_out;
    uint64_t conn_trims;                                  /* idle keep-alive connections that gave back their buffers */
} gwmetrics_t;

extern unsigned g_gwm_mod;   /* this module's index in shard_t.mod */

/* The shard's gateway metrics, or NULL when metrics are off. */
static inline gwmetrics_t *gwm(const shard_t *sh) { return (gwmetrics_t *)sh->mod[g_gwm_mod]; }

enum metrics_method metrics_method_of(int llhttp_method);

/* Main thread, at start-up: the per-shard struct and the render function. */
void gwmetrics_register(void);

/* Main thread, at start-up: a feature's per-shard metrics block. Returns its
 * index in shard_t.mod, whose state is `size` zeroed bytes when metrics are on
 * and NULL when off, allocated and freed on the main thread (shard_open,
 * shard_close) so a scrape on any shard reads every shard's. `render` runs at
 * a scrape only when metrics are on, blocks in registration order. */
unsigned gwm_block_register(const char *name, size_t size, metrics_render_fn render);

/* The sum over the n shards of `expr`, in which m_ names each shard's block
 * (of C type `type`, module index `idx`). */
#define GWM_SUM(sh, n, type, idx, expr)                                                    \
    ({                                                                                     \
        uint64_t acc_ = 0;                                                                 \
        for (unsigned s_ = 0; s_ < (n); s_++) {                                            \
            const type *m_ = (const type *)(sh)[s_].mod[idx];                              \
            acc_ += metrics_rd(&(expr));                                                   \
        }                                                                                  \
        acc_;                                                                              \
    })

#endif
