/* access_policy: the compiled access policy and the shared limiter table.
 *
 * The main thread builds a policy from access_conf(cfg) (start-up, SIGHUP, a
 * changed JWKS file): keys loaded, rules compiled to their rates and leases,
 * and per API key the agents it may run and its limiter key bases worked out
 * once, so a request pays a bit test and a load instead of scope compares and
 * a hash. A policy is never changed after it is published with one atomic
 * store; a replaced one goes on the retired list and is freed only when
 * core/qsbr.h says every shard has passed a quiescent state since, because a
 * shard may still be reading it in the turn it loaded it. The limiter table
 * outlives policies: its cells are keyed by a hash of each rule's definition,
 * so a reload that keeps a rule keeps its state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "core/metrics.h"
#include "core/qsbr.h"
#include "core/shard.h"
#include "net/access_int.h"
#include "proto/run.h"

static const uint64_t period_ns[4] = {
    UINT64_C(1000000000), UINT64_C(60000000000), UINT64_C(3600000000000), UINT64_C(86400000000000),
};

_Atomic(access_policy_t *) g_access_policy;
rl_table_t                 g_access_table;
static access_policy_t    *g_retired;             /* main thread only; freed by core/qsbr.h */
static bool                g_access_table_ok;

/* ---- policy: build, publish, reclaim (main thread) ---- */

static void policy_free(access_policy_t *p)
{
    if (!p)
        return;
    jwt_keyset_free(&p->keys);
    OPENSSL_cleanse(&p->cfg, sizeof p->cfg);   /* HMAC secrets */
    free(p->key_base);
    free(p);
}

static int load_jwks(access_policy_t *p, char *err, size_t errlen)
{
    const char *path = p->cfg.jwks_file;
    char *text = NULL;
    FILE *f = fopen(path, "re");
    if (!f || fstat(fileno(f), &p->jwks_st)) {
        snprintf(err, errlen, "auth.jwt.jwks_file: %s: %s", path, strerror(errno));
        if (f)
            fclose(f);
        return -EINVAL;
    }
    size_t n = (size_t)p->jwks_st.st_size;
    int rc = 0;
    if (n > (1u << 20) || !(text = malloc(n + 1)) || fread(text, 1, n, f) != n) {
        snprintf(err, errlen, "auth.jwt.jwks_file: %s: cannot read (at most 1 MiB)", path);
        rc = -EINVAL;
    }
    fclose(f);
    if (!rc) {
        char why[256];
        rc = jwt_keyset_add_jwks(&p->keys, text, n, why, sizeof why);
        if (rc)
            snprintf(err, errlen, "auth.jwt.jwks_file: %s: %s", path, why);
    }
    free(text);
    return rc;
}

/* The seed of rule r's limiter keys for agent: its definition's hash, and for
 * a per-agent rule the agent's name mixed in. */
uint64_t access_rule_seed(const access_policy_t *p, const access_rule_t *r, const cfg_agent_t *agent)
{
    if (!r->def->per_agent)
        return r->id;
    if (p->known >> agent->slot & 1)
        return r->id ^ p->agent_hash[agent->slot];
    return r->id ^ (rl_hash(agent->name, strlen(agent->name), 1) | 1);
}

/* A global rule: what its Redis scripts are told, how much a shard leases,
 * and this process's share (a fleet_size-th) for on_redis_down local. */
static void compile_global(access_rule_t *r, const access_rl_rule_t *d, uint32_t fleet, uint32_t ttl_ms,
                           unsigned threads)
{
    r->global = true;
    if (!fleet)
        fleet = 1;
    for (int k = 0; k < 4; k++) {
        if (!d->rate[k])
            continue;
        rlg_rate_t *g = &r->g[k];
        uint32_t burst = d->burst ? d->burst : d->rate[k];
        g->t_us = period_ns[k] / 1000 / d->rate[k];
        if (!g->t_us)
            g->t_us = 1;
        g->tau_us = g->t_us * burst;
        g->lease_max = rlg_lease_max(d->rate[k], period_ns[k], burst, threads, fleet);
        g->down = d->on_redis_down;
        uint32_t c = d->rate[k] / fleet ? d->rate[k] / fleet : 1, b = burst / fleet ? burst / fleet : 1;
        g->share.interval_ns = period_ns[k] / c ? period_ns[k] / c : 1;
        g->share.burst_ns = g->share.interval_ns * b;
        g->share.lease = rl_lease_for(&g->share, threads);
    }
    r->gc.max = d->concurrent;
    r->gc.spare = rl_conc_lease_for(d->concurrent, threads * fleet) - 1;   /* rl_conc_lease_for is at least 1 */
    r->gc.ttl_ms = ttl_ms;
    r->gc.down = d->on_redis_down;
    r->gc.share_max = d->concurrent / fleet ? d->concurrent / fleet : 1;
    r->gc.share_lease = rl_conc_lease_for(r->gc.share_max, threads);
}

static int compile_rules(access_policy_t *p, const cfg_t *cfg, char *err, size_t errlen)
{
    /* The shards that take from one rate cell: those running. A reload cannot
     * change their number (`shards` takes effect at start), so a reloaded file's
     * value must not size the leases; at start-up none run yet. */
    unsigned threads = g_nshards ? g_nshards : shard_count(cfg);
    for (uint32_t i = 0; i < p->cfg.n_rules; i++) {
        const access_rl_rule_t *d = &p->cfg.rules[i];
        access_rule_t *r = &p->rules[i];
        r->def = d;
        r->id = rl_hash(d, sizeof *d, 0x61676174u);   /* the whole definition: any change is a new rule */
        for (int k = 0; k < 4; k++) {
            r->count[k] = d->rate[k];
            if (!d->rate[k])
                continue;
            uint64_t t = period_ns[k] / d->rate[k];
            r->rate[k].interval_ns = t ? t : 1;
            r->rate[k].burst_ns = r->rate[k].interval_ns * (d->burst ? d->burst : d->rate[k]);
            r->rate[k].lease = rl_lease_for(&r->rate[k], threads);
        }
        r->conc_lease = rl_conc_lease_for(d->concurrent, threads);
        if (d->global) {
            compile_global(r, d, p->cfg.rl_fleet_size, p->cfg.rl_slot_ttl_ms, threads);
            p->any_global = true;
        }
        if (!d->n_agents)
            r->agents = ~UINT64_C(0);
        for (uint32_t a = 0; a < d->n_agents; a++) {
            const cfg_agent_t *ag = cfg_find_agent(cfg, d->agents[a], strlen(d->agents[a]));
            if (!ag) {
                snprintf(err, errlen, "rate_limit.rules[%u].agents: no agent named '%s'", i, d->agents[a]);
                return -EINVAL;
            }
            r->agents |= UINT64_C(1) << ag->slot;
        }
        r->claim = -1;
        if (d->key == ACCESS_RLK_CLAIM) {
            uint32_t c = 0;
            while (c < p->n_claims && strcmp(p->claims[c], d->claim))
                c++;
            if (c == ACCESS_MAX_CLAIMS) {
                snprintf(err, errlen, "rate_limit.rules[%u].key: at most %d different claims", i, ACCESS_MAX_CLAIMS);
                return -EINVAL;
            }
            if (c == p->n_claims)
                memcpy(p->claims[p->n_claims++], d->claim, sizeof d->claim);   /* both ACCESS_CLAIM_MAX */
            r->claim = (int)c;
        }
        if (d->key == ACCESS_RLK_IDENTITY || d->key == ACCESS_RLK_CLIENT_IP)
            p->need_client = true;
        r->fixed = d->key == ACCESS_RLK_GLOBAL;
        for (uint32_t a = 0; r->fixed && a < cfg->n_agents; a++)
            r->fixed_base[cfg->agents[a].slot] = rl_key_base(access_rule_seed(p, r, &cfg->agents[a]), "", 0);
        r->by_key = d->key == ACCESS_RLK_API_KEY || d->key == ACCESS_RLK_IDENTITY;
    }
    p->n_rules = p->cfg.n_rules;
    return 0;
}

/* For each API key: the agents it may run, by the rules authorize applies to
 * its scopes, and each by_key rule's limiter key base: per request, a bit test
 * and a load instead of scope string compares and a hash of the key's name. */
static int key_tables(access_policy_t *p, const cfg_t *cfg)
{
    access_ident_t id;
    for (uint32_t i = 0; i < cfg->n_agents; i++)
        if (cfg->agents[i].slot >= p->slots)
            p->slots = cfg->agents[i].slot + 1;
    size_t n = (size_t)p->cfg.n_api_keys * p->n_rules * p->slots;
    if (n && !(p->key_base = calloc(n, sizeof *p->key_base)))
        return -ENOMEM;
    for (uint32_t k = 0; k < p->cfg.n_api_keys; k++) {
        memset(&id, 0, sizeof id);
        access_ident_of_key(p, k, &id);
        id.key_policy = 0;   /* authorize must read the scopes here, not this table */
        for (uint32_t i = 0; i < cfg->n_agents; i++) {
            const cfg_agent_t *ag = &cfg->agents[i];
            access_decision_t d;
            memset(&d, 0, sizeof d);
            if (access_authorize(p, &id, ag, ag->slot, &d) == ACCESS_ALLOW)
                p->key_runs[k] |= UINT64_C(1) << ag->slot;
        }
        char kb[1 + ACCESS_VAL_MAX + 48];
        size_t kl;
        for (uint32_t i = 0; i < p->n_rules; i++) {
            const access_rule_t *r = &p->rules[i];
            if (!r->by_key || !access_rule_key(r, &id, kb, &kl))
                continue;
            for (uint32_t a = 0; a < cfg->n_agents; a++) {
                const cfg_agent_t *ag = &cfg->agents[a];
                p->key_base[((size_t)k * p->n_rules + i) * p->slots + ag->slot] =
                    rl_key_base(access_rule_seed(p, r, ag), kb, kl);
            }
        }
    }
    return 0;
}

static access_policy_t *policy_build(const cfg_t *cfg, char *err, size_t errlen)
{
    access_policy_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    static uint64_t serials;   /* main thread only */
    p->serial = ++serials;
    memcpy(&p->cfg, access_conf(cfg), sizeof p->cfg);
    const access_conf_t *a = &p->cfg;
    char why[256];
    for (uint32_t i = 0; i < a->n_jwt_keys; i++) {
        const access_jwt_key_t *k = &a->jwt_keys[i];
        int rc = k->secret_len ? jwt_keyset_add_secret(&p->keys, k->kid, k->secret, k->secret_len)
                               : jwt_keyset_add_pem_file(&p->keys, k->kid, k->pem_file, why, sizeof why);
        if (rc) {
            snprintf(err, errlen, "auth.jwt.keys[%u]: %s", i, k->secret_len ? "out of memory" : why);
            goto fail;
        }
    }
    if (a->jwks_file[0] && load_jwks(p, err, errlen))
        goto fail;
    p->auth_on = a->n_api_keys || a->n_jwt_keys || a->jwks_file[0] || !a->anonymous;
    for (uint32_t i = 0; i < cfg->n_agents; i++)
        p->anon[i] = a->anonymous;
    for (uint32_t i = 0; i < a->n_agents; i++) {
        const cfg_agent_t *ag = cfg_find_agent(cfg, a->agents[i].agent, strlen(a->agents[i].agent));
        if (!ag) {
            snprintf(err, errlen, "auth.agents.%s: no agent by that name", a->agents[i].agent);
            goto fail;
        }
        unsigned ix = ag->slot;
        if (a->agents[i].anonymous >= 0)
            p->anon[ix] = a->agents[i].anonymous;
        if (a->agents[i].scopes.n)
            p->need[ix] = &a->agents[i].scopes;
    }
    for (uint32_t i = 0; i < cfg->n_agents; i++) {
        p->agent_hash[cfg->agents[i].slot] = rl_hash(cfg->agents[i].name, strlen(cfg->agents[i].name), 1) | 1;
        p->known |= UINT64_C(1) << cfg->agents[i].slot;
    }
    if (compile_rules(p, cfg, err, errlen))
        goto fail;
    if (key_tables(p, cfg)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    p->cors_on = a->n_origins > 0;
    for (uint32_t i = 0; i < a->n_origins; i++)
        p->any_origin |= !strcmp(a->origins[i], "*");
    p->active = p->auth_on || p->n_rules || p->cors_on || a->security_headers;
    return p;
fail:
    policy_free(p);
    return NULL;
}

int access_publish(const cfg_t *cfg, char *err, size_t errlen)
{
    if (!g_access_table_ok) {
        if (rl_table_init(&g_access_table, access_conf(cfg)->rl_table_size)) {
            snprintf(err, errlen, "rate_limit.table_size: out of memory");
            return -ENOMEM;
        }
        g_access_table_ok = true;
    }
    access_policy_t *p = policy_build(cfg, err, errlen);
    if (!p)
        return -EINVAL;
    access_policy_t *old = atomic_exchange_explicit(&g_access_policy, p, memory_order_acq_rel);
    if (old) {
        old->retired_at = qsbr_retire();
        old->next = g_retired;
        g_retired = old;
    }
    return 0;
}

void access_reclaim(void)
{
    access_policy_t **pp = &g_retired;
    while (*pp) {
        access_policy_t *p = *pp;
        if (qsbr_safe(p->retired_at)) {
            *pp = p->next;
            policy_free(p);
        } else {
            pp = &p->next;
        }
    }
}

bool access_jwks_changed(uint64_t *sig)
{
    access_policy_t *p = access_policy();
    struct stat st;
    if (!p || !p->cfg.jwks_file[0] || stat(p->cfg.jwks_file, &st))
        return false;
    *sig = rl_hash(&st.st_mtim, sizeof st.st_mtim, (uint64_t)st.st_size) ^
           rl_hash(&st.st_ctim, sizeof st.st_ctim, (uint64_t)st.st_ino);
    return st.st_mtim.tv_sec != p->jwks_st.st_mtim.tv_sec || st.st_mtim.tv_nsec != p->jwks_st.st_mtim.tv_nsec ||
           st.st_size != p->jwks_st.st_size || st.st_ino != p->jwks_st.st_ino;
}

void access_shutdown(void)
{
    policy_free(atomic_exchange(&g_access_policy, NULL));
    while (g_retired) {
        access_policy_t *p = g_retired;
        g_retired = p->next;
        policy_free(p);
    }
    if (g_access_table_ok)
        rl_table_free(&g_access_table);
    g_access_table_ok = false;
}

static void access_table_stats(uint64_t *capacity, uint64_t *used, uint64_t *evictions, uint64_t *full)
{
    *capacity = *used = *evictions = *full = 0;
    if (!g_access_table_ok)
        return;
    *capacity = g_access_table.mask + 1;
    *used = rl_table_used(&g_access_table, rl_now_ns());
    *evictions = atomic_load_explicit(&g_access_table.evictions, memory_order_relaxed);
    *full = atomic_load_explicit(&g_access_table.full, memory_order_relaxed);
}

/* ---- registration ---- */

/* The shared rate-limit table: its size, cells in use (a scan),
 * cells taken over from idle keys, and lookups that found no cell (allowed). */
static void render_ratelimit(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    uint64_t cap, used, evictions, full;
    access_table_stats(&cap, &used, &evictions, &full);
    metrics_family(r, "agate_ratelimit_cells", "gauge", "Rate-limit table cells, by state (capacity, used).");
    metrics_sample_u(r, "agate_ratelimit_cells", "", "state=\"capacity\"", cap);
    metrics_sample_u(r, "agate_ratelimit_cells", "", "state=\"used\"", used);
    metrics_family(r, "agate_ratelimit_evictions", "counter", "Rate-limit cells taken over from an idle key.");
    metrics_sample_u(r, "agate_ratelimit_evictions", "_total", "", evictions);
    metrics_family(r, "agate_ratelimit_table_full", "counter", "Rate-limit lookups that found no free cell (allowed, not counted against a limit).");
    metrics_sample_u(r, "agate_ratelimit_table_full", "_total", "", full);
}

static void access_run_release(run_t *r) { access_release(&r->holds); }


static const run_ext_ops_t access_ext = {.release = access_run_release};

void access_register(void)
{
    cfg_section_register(&access_conf_section);
    run_ext_register(&access_ext);
    rlg_register(&g_access_table);
    metrics_register(render_ratelimit);
}
