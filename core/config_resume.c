/* config_resume: an agent's `resume:` settings (agents.<name>.resume), for
 * either type: whether its runs are resumable (event ids, a run log, reattach,
 * detach instead of cancel: net/resume.c), how long a finished run's log is
 * kept, how large one log may grow and how long a run with no client goes on.
 * The process-wide bound on all logs, resume.max_bytes, is net/resume.c's
 * section. Cold path. */
#include "core/config_int.h"

#include <errno.h>
#include <string.h>

#define A(field) offsetof(cfg_agent_t, field)
static const struct cfg_setting resume_settings[] = {
    { "resume", "enabled",        NULL, "false", CFG_K_BOOL,     0,     0,          A(resume_enabled) },
    { "resume", "log_ttl",        NULL, "5m",    CFG_K_DURATION, 0,     UINT32_MAX, A(resume_log_ttl_ms) },
    { "resume", "max_bytes",      NULL, "1MiB",  CFG_K_SIZE,     4096,  UINT32_MAX, A(resume_max_bytes) },
    { "resume", "detach_timeout", NULL, "30s",   CFG_K_DURATION, 0,     UINT32_MAX, A(resume_detach_ms) },
};
#undef A
#define N_RESUME (sizeof resume_settings / sizeof resume_settings[0])

void cfg_resume_defaults(cfg_agent_t *a) { cfg_table_defaults(resume_settings, N_RESUME, a); }

int cfg_load_resume(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, const char *name,
                    cfg_agent_t *a)
{
    char key[2 * CFG_KEY_MAX], list[CFG_WHY_MAX] = "";
    size_t used = 0;
    if (cfg_node_is_null(v))
        return 0;
    if (cfg_map_check(ld, k, v, name, "resume settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *ck = cfg_key_text(ld, p);
        const struct cfg_setting *s = cfg_find_setting(resume_settings, N_RESUME, "resume", ck);
        cfg_join(key, sizeof key, name, ck);
        if (!s) {
            cfg_list_rows(list, sizeof list, &used, resume_settings, N_RESUME, "resume");
            return cfg_unknown_key(ld, kn, key, list);
        }
        if (cfg_load_setting(ld, s, kn, vn, a, key))
            return -EINVAL;
    }
    return 0;
}

/* Only an agent with resume on uses the rest (the loader checked each value's
 * range already; an agent built in code with resume off may leave them 0). */
int cfg_resume_validate(const cfg_agent_t *a, const char *base, char *key, size_t keylen, char *why, size_t whylen)
{
    if (!a->resume_enabled)
        return 0;
    return cfg_table_check(resume_settings, N_RESUME, a, base, key, keylen, why, whylen);
}
