/* fdlimit: the descriptor budget (see fdlimit.h).
 *
 * Why a reserve by number and not a spare descriptor: the usual trick (libev,
 * nginx's users) keeps one descriptor open and closes it to accept and drop a
 * connection when accept() fails with EMFILE. With several shards sharing one
 * descriptor table, any shard may take the freed number first, so a spare
 * needs every shard to agree on who closes it and who refills it. A reserve by
 * number needs nothing shared: a new descriptor always has the lowest free
 * number, so one in the reserve proves that at most the reserve was free, and
 * a main-listener connection or an upstream socket that gets one gives it back
 * at once (net/conns.c, net/upstream.c). Main-listener connections and proxy
 * upstreams therefore never hold one of those numbers, and an admin accept
 * always finds one unless admin connections (or a descriptor opened by another
 * thread: a trace export, a DNS lookup) hold them all. One compare per accept.
 *
 * Cold path: runs once at start, on the main thread. */
#include "net/fdlimit.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>

#include "core/buf.h"

int g_fdlimit_reserve_from = INT32_MAX;

uint32_t fdlimit_reserve_of(uint64_t limit)
{
    uint64_t r = limit / 8;   /* a tiny limit keeps most of its descriptors for clients */
    return (uint32_t)(r < FDLIMIT_ADMIN_RESERVE ? r : FDLIMIT_ADMIN_RESERVE);
}

static uint64_t fixed_of(uint64_t limit, unsigned shards)
{
    return FDLIMIT_BASE + (uint64_t)FDLIMIT_PER_SHARD * shards + fdlimit_reserve_of(limit);
}

uint64_t fdlimit_needed(uint64_t limit, unsigned shards, uint32_t max_conn, uint32_t per_conn)
{
    return fixed_of(limit, shards) + (uint64_t)shards * max_conn * per_conn;
}

uint32_t fdlimit_fitting(uint64_t limit, unsigned shards, uint32_t per_conn)
{
    uint64_t fixed = fixed_of(limit, shards);
    uint64_t per = (uint64_t)(shards ? shards : 1) * per_conn;
    uint64_t n = limit > fixed ? (limit - fixed) / per : 0;
    return n < 1 ? 1 : n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* A proxied run holds an upstream connection beside its client's; every
 * connection is counted with one when any agent is a proxy. (A WebSocket
 * connection running several proxied runs holds more: past the budget, the
 * reserve and the accept back-off in net/conns.c still hold.) */
static uint32_t per_conn_of(const cfg_t *c)
{
    for (uint32_t a = 0; a < c->n_agents; a++)
        if (c->agents[a].kind == CFG_AGENT_PROXY && !c->agents[a].removed)
            return 2;
    return 1;
}

int fdlimit_fit(cfg_t *c, unsigned shards, fdlimit_plan_t *p)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return -errno;
    memset(p, 0, sizeof *p);
    p->was = rl.rlim_cur;
    p->per_conn = per_conn_of(c);
    p->configured = c->max_connections;
    p->needed = fdlimit_needed(rl.rlim_cur, shards, c->max_connections, p->per_conn);
    if (p->needed > rl.rlim_cur && rl.rlim_max > rl.rlim_cur) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (!setrlimit(RLIMIT_NOFILE, &up))
            rl.rlim_cur = rl.rlim_max;   /* refused (EPERM in some sandboxes): go on with what there is */
    }
    p->soft = rl.rlim_cur;
    p->hard = rl.rlim_max;
    uint64_t limit = p->soft > INT32_MAX ? INT32_MAX : p->soft;
    p->reserve = fdlimit_reserve_of(limit);
    p->needed = fdlimit_needed(limit, shards, c->max_connections, p->per_conn);
    p->max_connections = c->max_connections;
    if (p->needed > limit) {
        uint32_t fit = fdlimit_fitting(limit, shards, p->per_conn);
        if (fit < c->max_connections) {
            c->max_connections_set = c->max_connections;
            c->max_connections = p->max_connections = fit;
        }
    }
    g_fdlimit_reserve_from = (int)(limit - p->reserve);
    return 0;
}

static void put_line(buf_t *b, log_ring_t *log)
{
    log_end(b);
    if (log && b->len)
        log_put(log, b->data, b->len);
    b->len = 0;
}

void fdlimit_log(const fdlimit_plan_t *p, unsigned shards, log_ring_t *log)
{
    buf_t b = {0};
    if (p->soft != p->was) {
        log_begin(&b, "info", "descriptor limit raised");
        buf_append_lit(&b, ",\"nofile\":");
        buf_append_u64(&b, p->soft);
        buf_append_lit(&b, ",\"was\":");
        buf_append_u64(&b, p->was);
        put_line(&b, log);
    }
    if (p->max_connections < p->configured) {
        log_begin(&b, "warn", "max_connections lowered to fit the descriptor limit");
        buf_append_lit(&b, ",\"max_connections\":");
        buf_append_u64(&b, p->max_connections);
        buf_append_lit(&b, ",\"configured\":");
        buf_append_u64(&b, p->configured);
        buf_append_lit(&b, ",\"shards\":");
        buf_append_u64(&b, shards);
        buf_append_lit(&b, ",\"per_connection\":");
        buf_append_u64(&b, p->per_conn);
        buf_append_lit(&b, ",\"needed\":");
        buf_append_u64(&b, p->needed);
        buf_append_lit(&b, ",\"nofile\":");
        buf_append_u64(&b, p->soft);
        buf_append_lit(&b, ",\"nofile_hard\":");
        buf_append_u64(&b, p->hard);
        put_line(&b, log);
    }
    buf_free(&b);
}
