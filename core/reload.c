/* reload: SIGHUP and JWKS-file reloads of the access policy, on the main
 * thread only (see reload.h). Cold path: allocation and plain code are fine.
 * Invariant: g_applied is the configuration whose access sections the
 * published policy was built from, so a JWKS change rebuilds exactly that
 * policy with the new keys. */
#include "core/reload.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/access.h"
#include "proto/json.h"

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

static void log_reload(log_ring_t *log, const char *what, const char *status, const char *error, bool restart)
{
    buf_t b = {0};
    log_begin(&b, error ? "error" : "info", "reload");
    buf_append_lit(&b, ",\"what\":");
    json_put_str(&b, what, strlen(what));
    buf_append_lit(&b, ",\"status\":");
    json_put_str(&b, status, strlen(status));
    if (error) {
        buf_append_lit(&b, ",\"error\":");
        json_put_str(&b, error, strlen(error));
    }
    if (restart)
        buf_append_lit(&b, ",\"restart_required\":true");
    log_end(&b);
    if (log && b.len)
        log_put(log, b.data, b.len);
    buf_free(&b);
}

/* Whether anything outside the access sections differs (those need a restart). */
static bool others_differ(const cfg_t *a, const cfg_t *b)
{
    return memcmp(a, b, offsetof(cfg_t, access)) != 0;
}

void reload_config(const cfg_t *running, log_ring_t *log)
{
    char err[CFG_ERR_MAX + 64];
    cfg_t *n = malloc(sizeof *n);
    if (!n) {
        log_reload(log, "config", "failed", "out of memory", false);
        return;
    }
    cfg_defaults(n);
    int rc = 0;
    if (running->path[0])
        rc = cfg_load_file(n, running->path, err, sizeof err);
    if (!rc)
        rc = cfg_apply_env(n, err, sizeof err) || cfg_validate(n, err, sizeof err);
    if (!rc) {
        /* The shards keep the running agents: policy indexes must match them. */
        cfg_t *mix = malloc(sizeof *mix);
        if (!mix) {
            snprintf(err, sizeof err, "out of memory");
            rc = -1;
        } else {
            memcpy(mix, running, sizeof *mix);
            memcpy(&mix->access, &n->access, sizeof mix->access);
            rc = cfg_validate(mix, err, sizeof err) || access_publish(mix, err, sizeof err);
            if (!rc)
                memcpy(g_applied, mix, sizeof *mix);
            free(mix);
        }
    }
    if (rc)
        log_reload(log, "config", "failed", err, false);
    else
        log_reload(log, "config", "ok", NULL, others_differ(running, n));
    free(n);
}

void reload_tick(unsigned nshards, log_ring_t *log)
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
            log_reload(log, "jwks", "failed", err, false);
        else
            log_reload(log, "jwks", "ok", NULL, false);
    }
    access_reclaim(nshards);
}

void reload_shutdown(void)
{
    access_shutdown();
    free(g_applied);
    g_applied = NULL;
}
