/* config_sect: the registry of configuration sections (cfg_section_t,
 * core/config.h) and every walk over it: defaults, the top-level keys of the
 * file, environment overrides, cross-field checks, --help's variables and the
 * start-only keys of a reload. The rest of the config module (config.c) reads
 * the file and reports; it names no section but core's own.
 *
 * Invariants: a top-level key belongs to one section; a section's struct has
 * one place in cfg_t.sect for the life of the process (its off), so a cfg_t
 * built before a reload and one built after agree; sections are walked by
 * rank, then in registration order, so messages and --help list keys the same
 * way every run. Main thread, cold path. */
#include "core/config_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cfg_section_t *g_sects[CFG_SECT_MAX];   /* by rank, then registration */
static unsigned       g_nsects;
static size_t         g_sect_used;             /* bytes of cfg_t.sect handed out */

__attribute__((noreturn, format(printf, 2, 3)))
static void sect_bug(const cfg_section_t *s, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "agate: config section %s: ", s->name ? s->name : "?");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* Where a section's rows and hooks write in c: its struct, or c itself. */
static void *sect_base(cfg_t *c, const cfg_section_t *s) { return s->size ? c->sect + s->off : (void *)c; }

static const void *sect_cbase(const cfg_t *c, const cfg_section_t *s)
{
    return s->size ? c->sect + s->off : (const void *)c;
}

static void setting_name(const struct cfg_setting *s, char *out, size_t n)
{
    cfg_join(out, n, s->section, s->key);
}

/* The row whose dotted name is key. */
static const struct cfg_setting *row_named(const cfg_section_t *s, const char *key)
{
    char name[CFG_KEY_MAX];
    for (size_t i = 0; i < s->n_rows; i++) {
        setting_name(&s->rows[i], name, sizeof name);
        if (!strcmp(name, key))
            return &s->rows[i];
    }
    return NULL;
}

/* Bytes a row's value takes in its struct (config_value.c stores it so). */
static size_t row_size(const struct cfg_setting *r)
{
    switch (r->kind) {
    case CFG_K_ADDR:
    case CFG_K_ADDR_OFF:   return CFG_ADDR_MAX;
    case CFG_K_UINT:
    case CFG_K_SIZE:
    case CFG_K_DURATION:   return sizeof(uint32_t);
    case CFG_K_BOOL:       return sizeof(bool);
    case CFG_K_LEVEL:      return sizeof(cfg_log_level_t);
    case CFG_K_BALANCE:    return sizeof(cfg_balance_t);
    case CFG_K_VALIDATION: return sizeof(cfg_validation_t);
    case CFG_K_BACKEND:    return sizeof(cfg_backend_t);
    case CFG_K_RATIO:      return sizeof(double);
    case CFG_K_TEXT:       return (size_t)r->max + 1;
    case CFG_K_URL:        return CFG_URL_MAX;
    }
    return 0;
}

/* ---- registration ---- */

static void register_builtins(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    cfg_section_register(&cfg_core_section);
    cfg_section_register(&cfg_agents_section);
}

const cfg_section_t *cfg_section_of(const char *key)
{
    register_builtins();
    for (unsigned i = 0; i < g_nsects; i++)
        for (const char *const *k = g_sects[i]->keys; k && *k; k++)
            if (!strcmp(*k, key))
                return g_sects[i];
    return NULL;
}

void cfg_section_register(cfg_section_t *s)
{
    register_builtins();
    for (unsigned i = 0; i < g_nsects; i++)
        if (g_sects[i] == s)
            return;
    if (g_nsects == CFG_SECT_MAX)
        sect_bug(s, "more than CFG_SECT_MAX (%d) sections: raise it", CFG_SECT_MAX);
    for (const char *const *k = s->keys; k && *k; k++)
        if (cfg_section_of(*k))
            sect_bug(s, "top-level key '%s' is already %s's", *k, cfg_section_of(*k)->name);
    for (const char *const *k = s->restart; k && *k; k++)
        if (!row_named(s, *k))
            sect_bug(s, "start-only key '%s' is none of its rows", *k);
    for (size_t i = 0; i < s->n_rows; i++)
        if (s->size && s->rows[i].off + row_size(&s->rows[i]) > s->size)
            sect_bug(s, "row %s lies outside its struct", s->rows[i].key);
    if (s->size) {
        size_t off = (g_sect_used + CFG_SECT_ALIGN - 1) & ~(size_t)(CFG_SECT_ALIGN - 1);
        if (off + s->size > CFG_SECT_BYTES)
            sect_bug(s, "%zu bytes do not fit in cfg_t.sect (%zu of %u used): raise CFG_SECT_BYTES",
                     s->size, off, CFG_SECT_BYTES);
        s->off = off;
        g_sect_used = off + s->size;
    }
    s->id = g_nsects + 1;   /* ids only grow: sections are never unregistered */
    unsigned at = g_nsects;
    while (at > 0 && g_sects[at - 1]->rank > s->rank) {
        g_sects[at] = g_sects[at - 1];
        at--;
    }
    g_sects[at] = s;
    g_nsects++;
}

/* ---- the walks ---- */

void cfg_sections_defaults(cfg_t *c)
{
    register_builtins();
    for (unsigned j = 0; j < g_nsects; j++) {
        const cfg_section_t *s = g_sects[j];
        void *base = sect_base(c, s);
        cfg_table_defaults(s->rows, s->n_rows, base);
        if (s->defaults)
            s->defaults(base);
    }
    c->n_sect = g_nsects;
}

int cfg_section_load(const struct cfg_loader *ld, const cfg_section_t *s, const char *key,
                     const yaml_node_t *k, const yaml_node_t *v)
{
    void *base = sect_base(ld->c, s);
    const struct cfg_setting *row;

    if (s->load)
        return s->load(ld, key, k, v, base);
    row = cfg_find_setting(s->rows, s->n_rows, NULL, key);
    if (row)
        return cfg_load_setting(ld, row, k, v, base, key);
    return cfg_load_section(ld, k, v, s->rows, s->n_rows, key, key, base);
}

void cfg_sections_keys(char *list, size_t size)
{
    size_t used = 0;
    register_builtins();
    list[0] = '\0';
    for (unsigned i = 0; i < g_nsects; i++)
        for (const char *const *k = g_sects[i]->keys; k && *k; k++)
            cfg_list_add(list, size, &used, *k);
}

int cfg_sections_env(cfg_t *c, char *err, size_t errlen)
{
    char why[CFG_WHY_MAX];

    register_builtins();
    for (unsigned j = 0; j < g_nsects; j++) {
        const cfg_section_t *s = g_sects[j];
        void *base = sect_base(c, s);
        for (size_t i = 0; i < s->n_rows; i++) {
            const struct cfg_setting *r = &s->rows[i];
            const char *v = r->env ? getenv(r->env) : NULL;

            if (!v || !*v)
                continue;    /* `AGATE_X= agate` in a script means "not set" */
            if (cfg_setting_parse(r, v, base, why, sizeof why)) {
                snprintf(err, errlen, "%s: %s", r->env, why);
                return -EINVAL;
            }
        }
        if (s->env && s->env(base, err, errlen))
            return -EINVAL;
    }
    return 0;
}

int cfg_sections_validate(const cfg_t *c, char *key, size_t keylen, char *why, size_t whylen)
{
    register_builtins();
    for (unsigned j = 0; j < g_nsects; j++) {
        const cfg_section_t *s = g_sects[j];
        const void *base = sect_cbase(c, s);
        if (cfg_table_check(s->rows, s->n_rows, base, NULL, key, keylen, why, whylen))
            return -EINVAL;
        if (s->validate && s->validate(c, base, key, keylen, why, whylen))
            return -EINVAL;
    }
    return 0;
}

size_t cfg_sections_help(char *out, size_t cap)
{
    char name[CFG_KEY_MAX];
    size_t used = 0;

    register_builtins();
    for (unsigned j = 0; j < g_nsects; j++) {
        const cfg_section_t *s = g_sects[j];
        for (size_t i = 0; i < s->n_rows && used < cap; i++) {
            const struct cfg_setting *r = &s->rows[i];
            if (!r->env)
                continue;
            setting_name(r, name, sizeof name);
            used += (size_t)snprintf(out + used, cap - used, "  %-26s %-26s default %s\n", r->env, name,
                                     *r->deflt ? r->deflt : "(none)");
        }
        if (s->help && used < cap)
            used += s->help(out + used, cap - used);
    }
    return used < cap ? used : cap;
}

void cfg_keep_start_only(const cfg_t *running, cfg_t *out, char *restart, size_t len)
{
    size_t used = strlen(restart);

    register_builtins();
    for (unsigned j = 0; j < g_nsects; j++) {
        const cfg_section_t *s = g_sects[j];
        const char *from = sect_cbase(running, s);
        char *to = sect_base(out, s);
        for (const char *const *k = s->restart; k && *k; k++) {
            const struct cfg_setting *r = row_named(s, *k);
            size_t n = row_size(r);
            if (!memcmp(to + r->off, from + r->off, n))
                continue;
            memcpy(to + r->off, from + r->off, n);
            int w = snprintf(restart + used, len - used, "%s%s", used ? "," : "", *k);
            if (w > 0 && (size_t)w < len - used)
                used += (size_t)w;
            else
                restart[used] = '\0';   /* a key that does not fit is left out whole */
        }
    }
}
