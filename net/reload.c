/* reload: SIGHUP and JWKS-file reloads of the access policy, on the main
 * thread only (see reload.h). Cold path: allocation and plain code are fine.
 * Invariant: g_applied is the configuration whose access sections the
 * published policy was built from, so a JWKS change rebuilds exactly that
 * policy with the new keys. */
#include "net/reload.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfggen.h"
#include "net/access.h"
#include "net/upstream.h"
#include "core/json.h"

static cfg_t *g_applied;   /* heap copy; main thread only */

int reload_init(const cfg_t *cfg, char *err, size_t errlen)
{
    if (!g_applied && !(g_applied = malloc(sizeof *g_applied))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = access_publish(cfg, err, errlen);
    if (!rc)
        memcpy(g_applied, cfg, sizeof *cfg);
    return rc;
}

/* agents: "added"/"removed"/"changed" name lists for the log, between two generations. */
static void put_agent_changes(buf_t *b, const cfg_t *old, const cfg_t *now)
{
    static const char *const what[] = {"agents_added", "agents_removed", "agents_changed"};
    for (int k = 0; k < 3; k++) {
        bool any = false;
        for (uint32_t a = 0; a < now->n_agents; a++) {
            const cfg_agent_t *x = a < old->n_agents ? &old->agents[a] : NULL, *y = &now->agents[a];
            bool hit = k == 0 ? !y->removed && (!x || x->removed)
                     : k == 1 ? y->removed && x && !x->removed
                              : x && !x->removed && !y->removed && memcmp(x, y, sizeof *x);
            if (!hit)
                continue;
            if (!any) {
                buf_append_lit(b, ",\"");
                buf_append(b, what[k], strlen(what[k]));
                buf_append_lit(b, "\":[");
            } else {
                buf_putc(b, ',');
            }
            json_put_str(b, y->name, strlen(y->name));
            any = true;
        }
        if (any)
            buf_putc(b, ']');
    }
}

static void log_reload(log_ring_t *log, const char *what, const char *status, const char *error,
                       const char *restart, const cfg_t *old, const cfg_t *now)
{
    buf_t b = {0};
    log_begin(&b, error ? "error" : restart && restart[0] ? "warn" : "info", "reload");
    buf_append_lit(&b, ",\"what\":");
    json_put_str(&b, what, strlen(what));
    buf_append_lit(&b, ",\"status\":");
    json_put_str(&b, status, strlen(status));
    if (error) {
        buf_append_lit(&b, ",\"error\":");
        json_put_str(&b, error, strlen(error));
    }
    if (old && now) {
        buf_append_lit(&b, ",\"generation\":");
        buf_append_u64(&b, now->generation);
        put_agent_changes(&b, old, now);
    }
    if (restart && restart[0]) {   /* start-only settings that changed: kept as they were */
        buf_append_lit(&b, ",\"restart_required\":true,\"restart_keys\":");
        json_put_str(&b, restart, strlen(restart));
    }
    log_end(&b);
    if (log && b.len)
        log_put(log, b.data, b.len);
    buf_free(&b);
}

/* Reads, checks and applies the file; 0, or -1 with err filled. */
static int reload_apply(const cfg_t *running, cfg_t *n, cfg_t *pub, char *restart, size_t rlen, char *err,
                        size_t errlen)
{
    cfg_defaults(n);
    if (running->path[0] && cfg_load_file(n, running->path, err, errlen))
        return -1;
    if (cfg_apply_env(n, err, errlen) || cfg_validate(n, err, errlen))
        return -1;
    if (cfggen_prepare(running, n, pub, restart, rlen, err, errlen) || cfg_validate(pub, err, errlen))
        return -1;
    /* Names resolve here, on the main thread, before any shard can use them;
     * then the policy (it may still fail on a key file), then the agents. */
    if (ups_resolve_all(pub, err, errlen) || access_publish(pub, err, errlen))
        return -1;
    if (cfggen_publish(pub)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (ups_resolver_update(cfggen_current()))
        snprintf(err, errlen, "DNS refresh thread not started");   /* logged below, not fatal */
    memcpy(g_applied, pub, sizeof *pub);
    return 0;
}

void reload_config(log_ring_t *log)
{
    char err[CFG_ERR_MAX + 64] = "", restart[256] = "";
    const cfg_t *running = cfggen_current();
    cfg_t *n = malloc(sizeof *n), *pub = malloc(sizeof *pub);
    if (!n || !pub) {
        log_reload(log, "config", "failed", "out of memory", NULL, NULL, NULL);
    } else if (reload_apply(running, n, pub, restart, sizeof restart, err, sizeof err)) {
        log_reload(log, "config", "failed", err, NULL, NULL, NULL);
    } else {
        log_reload(log, "config", "ok", NULL, restart, running, cfggen_current());
        if (err[0])
            log_reload(log, "dns", "failed", err, NULL, NULL, NULL);
    }
    free(n);
    free(pub);
}

void reload_tick(log_ring_t *log)
{
    /* A file that failed to load is tried again, and logged again, only once
     * it changes (not every second while it stays broken). */
    static uint64_t failed_sig;
    static bool failed;
    char err[CFG_ERR_MAX + 64];
    uint64_t sig = 0;
    if (g_applied && access_jwks_changed(&sig) && !(failed && sig == failed_sig)) {
        failed = access_publish(g_applied, err, sizeof err) != 0;
        failed_sig = sig;
        if (failed)
            log_reload(log, "jwks", "failed", err, NULL, NULL, NULL);
        else
            log_reload(log, "jwks", "ok", NULL, NULL, NULL, NULL);
    }
    access_reclaim();
    cfggen_reclaim();
}

void reload_shutdown(void)
{
    cfggen_shutdown();
    access_shutdown();
    free(g_applied);
    g_applied = NULL;
}
