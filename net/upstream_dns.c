/* upstream_dns: where the upstream module connects to. Each proxy endpoint's
 * address, resolved by the main thread before the shards start and at every
 * reload (ups_resolve_all), and re-resolved every upstream.dns_refresh by a
 * thread of its own, so a slow DNS server never stalls a shard's loop.
 *
 * Invariants: an address is published under a seqlock that shards read
 * without locking (ups_addr); writers hold g_resolver.mu, so there is one at a
 * time. A failed lookup keeps the last good address. The resolver thread reads
 * only its own copy of the configuration, never a generation being freed. */
#include "net/upstream.h"

#include "core/config_sect.h"
#include "core/log.h"
#include "core/json.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One endpoint's address under a seqlock: writers (the main thread at start
 * and reload, the resolver thread) hold g_resolver.mu, so there is one at a
 * time (seq odd while it writes); shards copy and retry if seq moved, never lock. */
typedef struct ups_addr {
    _Atomic uint32_t        seq;
    struct sockaddr_storage ss;
    socklen_t               len;
} ups_addr_t;

static ups_addr_t g_addrs[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS];

static struct {
    pthread_t       thr;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    bool            running, stop;
    cfg_t          *want;   /* the endpoints to follow; main thread writes it under mu */
    log_ring_t     *log;
} g_resolver = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void addr_store(ups_addr_t *a, const struct sockaddr *sa, socklen_t len)
{
    uint32_t s = atomic_load_explicit(&a->seq, memory_order_relaxed);
    atomic_store_explicit(&a->seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(&a->ss, sa, len);
    a->len = len;
    atomic_store_explicit(&a->seq, s + 2, memory_order_release);
}

socklen_t ups_addr(unsigned agent, unsigned ep, struct sockaddr_storage *out, uint32_t *seq)
{
    ups_addr_t *a = &g_addrs[agent][ep];
    for (;;) {
        uint32_t s1 = atomic_load_explicit(&a->seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        memcpy(out, &a->ss, sizeof *out);
        socklen_t len = a->len;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&a->seq, memory_order_relaxed) == s1) {
            if (seq)
                *seq = s1;
            return len;
        }
    }
}

/* 0 and one address, or a getaddrinfo error code. An IPv4 address is preferred
 * when the name has both: "localhost" lists ::1 first, and most agent services
 * listen on IPv4 only. */
static int resolve(const cfg_endpoint_t *ep, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", ep->port);
    int rc = getaddrinfo(ep->host, port, &hints, &res);
    if (rc)
        return rc;
    if (!res)
        return EAI_NONAME;
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    memcpy(ss, pick->ai_addr, pick->ai_addrlen);
    *len = pick->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

uint32_t ups_addr_seq(unsigned agent, unsigned ep)
{
    return atomic_load_explicit(&g_addrs[agent][ep].seq, memory_order_acquire);
}

int ups_resolve_all(const cfg_t *cfg, char *err, size_t errlen)
{
    /* Resolve everything first, store after: a reload that fails on one name
     * changes no address. */
    static struct { struct sockaddr_storage ss; socklen_t len; } got[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS];
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        const cfg_agent_t *ag = &cfg->agents[a];
        if (ag->kind != CFG_AGENT_PROXY || ag->removed)
            continue;
        for (uint32_t e = 0; e < ag->n_endpoints; e++) {
            struct sockaddr_storage ss;
            socklen_t len;
            int rc = resolve(&ag->endpoints[e], &ss, &len);
            if (rc) {
                snprintf(err, errlen, "agents.%s.endpoints[%u]: cannot resolve %s: %s", ag->name, e,
                         ag->endpoints[e].host, gai_strerror(rc));
                return -EINVAL;
            }
            memcpy(&got[a][e].ss, &ss, len);
            got[a][e].len = len;
        }
    }
    /* Only an address that changed is stored: a new one bumps its seqlock, and
     * pooled connections to the old address are then closed, not reused. The
     * resolver's copy changes in the same critical section, so it never stores
     * an address for an endpoint the configuration no longer has. */
    pthread_mutex_lock(&g_resolver.mu);
    if (g_resolver.want)
        memcpy(g_resolver.want, cfg, sizeof *cfg);
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        const cfg_agent_t *ag = &cfg->agents[a];
        for (uint32_t e = 0; ag->kind == CFG_AGENT_PROXY && !ag->removed && e < ag->n_endpoints; e++) {
            struct sockaddr_storage cur;
            socklen_t clen = ups_addr(a, e, &cur, NULL);
            if (clen != got[a][e].len || memcmp(&cur, &got[a][e].ss, clen))
                addr_store(&g_addrs[a][e], (struct sockaddr *)&got[a][e].ss, got[a][e].len);
        }
    }
    pthread_mutex_unlock(&g_resolver.mu);
    return 0;
}

static void resolver_log(const char *level, const char *msg, const cfg_agent_t *ag, unsigned e, const char *detail)
{
    if (!g_resolver.log)
        return;
    buf_t b = {0};
    log_begin(&b, level, msg);
    char line[CFG_HOST_MAX + CFG_NAME_MAX + 160];
    int n = snprintf(line, sizeof line, ",\"agent\":\"%s\",\"endpoint\":%u,\"host\":\"%s\",\"detail\":", ag->name, e,
                     ag->endpoints[e].host);
    buf_append(&b, line, (size_t)n);
    json_put_str(&b, detail, strlen(detail));
    log_end(&b);
    log_put(g_resolver.log, b.data, b.len);
    buf_free(&b);
}

/* One pass over every named (non-numeric) endpoint; a failure keeps the last
 * good address, since a DNS hiccup must not take an agent down. */
static void refresh_once(const cfg_t *cfg)
{
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        const cfg_agent_t *ag = &cfg->agents[a];
        if (ag->kind != CFG_AGENT_PROXY || ag->removed)
            continue;
        for (uint32_t e = 0; e < ag->n_endpoints; e++) {
            unsigned char tmp[sizeof(struct in6_addr)];
            const char *h = ag->endpoints[e].host;
            if (inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1)
                continue;
            struct sockaddr_storage ss, cur;
            socklen_t len;
            int rc = resolve(&ag->endpoints[e], &ss, &len);
            if (rc) {
                resolver_log("warn", "dns refresh failed; keeping the last address", ag, e, gai_strerror(rc));
                continue;
            }
            /* Store only if the endpoint is still this one: a reload may have
             * replaced it while getaddrinfo ran. */
            pthread_mutex_lock(&g_resolver.mu);
            const cfg_endpoint_t *now = &g_resolver.want->agents[a].endpoints[e];
            bool same = !g_resolver.want->agents[a].removed && e < g_resolver.want->agents[a].n_endpoints &&
                        now->port == ag->endpoints[e].port && !strcmp(now->host, ag->endpoints[e].host);
            socklen_t clen = ups_addr(a, e, &cur, NULL);
            bool changed = same && !(clen == len && !memcmp(&cur, &ss, len));
            if (changed)
                addr_store(&g_addrs[a][e], (struct sockaddr *)&ss, len);
            pthread_mutex_unlock(&g_resolver.mu);
            if (!changed)
                continue;
            char text[INET6_ADDRSTRLEN] = "?";
            if (ss.ss_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, text, sizeof text);
            else if (ss.ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text, sizeof text);
            resolver_log("info", "upstream address changed", ag, e, text);
        }
    }
}

/* The resolver works on its own copy of the configuration: the main thread
 * replaces `want` under the mutex at a reload, and each pass copies it first,
 * so a generation being freed is never read here. */
static void *resolver_main(void *arg)
{
    cfg_t *cfg = arg;   /* owned by this thread */
    pthread_mutex_lock(&g_resolver.mu);
    while (!g_resolver.stop) {
        memcpy(cfg, g_resolver.want, sizeof *cfg);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint32_t every = ups_conf(cfg)->dns_refresh_ms;
        until.tv_sec += every / 1000;
        until.tv_nsec += (long)(every % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!g_resolver.stop && pthread_cond_timedwait(&g_resolver.cv, &g_resolver.mu, &until) != ETIMEDOUT)
            ;
        if (g_resolver.stop)
            break;
        memcpy(cfg, g_resolver.want, sizeof *cfg);   /* a reload may have changed the endpoints */
        pthread_mutex_unlock(&g_resolver.mu);
        refresh_once(cfg);
        pthread_mutex_lock(&g_resolver.mu);
    }
    pthread_mutex_unlock(&g_resolver.mu);
    free(cfg);
    return NULL;
}

static bool any_named(const cfg_t *cfg)
{
    for (uint32_t a = 0; a < cfg->n_agents; a++)
        for (uint32_t e = 0; cfg->agents[a].kind == CFG_AGENT_PROXY && !cfg->agents[a].removed &&
                             e < cfg->agents[a].n_endpoints; e++) {
            unsigned char tmp[sizeof(struct in6_addr)];
            const char *h = cfg->agents[a].endpoints[e].host;
            if (inet_pton(AF_INET, h, tmp) != 1 && inet_pton(AF_INET6, h, tmp) != 1)
                return true;
        }
    return false;
}

/* Under g_resolver.mu: starts the thread when some endpoint has a name to follow. */
static int resolver_start_locked(log_ring_t *log_ring)
{
    if (g_resolver.running || !any_named(g_resolver.want) || !ups_conf(g_resolver.want)->dns_refresh_ms)
        return 0;
    cfg_t *own = malloc(sizeof *own);
    if (!own)
        return -ENOMEM;
    memcpy(own, g_resolver.want, sizeof *own);
    g_resolver.log = log_ring;
    g_resolver.stop = false;
    int rc = pthread_create(&g_resolver.thr, NULL, resolver_main, own);
    if (rc) {
        free(own);
        return -rc;
    }
    pthread_setname_np(g_resolver.thr, "agate-dns");
    g_resolver.running = true;
    return 0;
}

int ups_resolver_start(const cfg_t *cfg, log_ring_t *log_ring)
{
    pthread_mutex_lock(&g_resolver.mu);
    int rc = 0;
    if (!g_resolver.want && !(g_resolver.want = malloc(sizeof *g_resolver.want)))
        rc = -ENOMEM;
    if (!rc) {
        memcpy(g_resolver.want, cfg, sizeof *cfg);
        g_resolver.log = log_ring;
        rc = resolver_start_locked(log_ring);
    }
    pthread_mutex_unlock(&g_resolver.mu);
    return rc;
}

int ups_resolver_update(const cfg_t *cfg)
{
    pthread_mutex_lock(&g_resolver.mu);
    int rc = 0;
    if (g_resolver.want) {
        memcpy(g_resolver.want, cfg, sizeof *cfg);
        rc = resolver_start_locked(g_resolver.log);
    }
    pthread_mutex_unlock(&g_resolver.mu);
    return rc;
}

void ups_resolver_stop(void)
{
    if (g_resolver.running) {
        pthread_mutex_lock(&g_resolver.mu);
        g_resolver.stop = true;
        pthread_cond_signal(&g_resolver.cv);
        pthread_mutex_unlock(&g_resolver.mu);
        pthread_join(g_resolver.thr, NULL);
        g_resolver.running = false;
    }
    free(g_resolver.want);
    g_resolver.want = NULL;
}

/* ---- the upstream: section of the configuration ---- */

static const struct cfg_setting ups_rows[] = {
    { "upstream", "dns_refresh", "AGATE_DNS_REFRESH", "30s", CFG_K_DURATION, 0, 86400000,
      offsetof(ups_conf_t, dns_refresh_ms) },
};

static const char *const ups_keys[] = { "upstream", NULL };
/* The resolver thread starts (or not) with the shards; its interval stays. */
static const char *const ups_restart[] = { "upstream.dns_refresh", NULL };

/* rank 20: the first section after core's own in messages and --help */
cfg_section_t ups_conf_section = {
    .name = "upstream", .keys = ups_keys, .rows = ups_rows, .n_rows = sizeof ups_rows / sizeof ups_rows[0],
    .size = sizeof(ups_conf_t), .rank = 20, .restart = ups_restart,
};
