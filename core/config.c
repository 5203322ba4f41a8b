/* config: builds the one cfg_t agate runs with (built-in defaults, then one
 * YAML file, then AGATE_* environment variables) and checks it.
 *
 * This file owns the public API (core/config.h), core's own section (the
 * settings table of listen, limits, stream, log, metrics, trace, ...), the
 * YAML loader with its walking helpers and the key named at a syntax error,
 * and the --help text. The module's other files: config_sect.c is the
 * registry of sections and every walk over them (defaults, top-level keys,
 * environment, checks, --help lines, start-only keys); config_value.c parses
 * and checks every scalar value; config_agent.c (with config_cache.c) owns the
 * agents section. core/config_sect.h is what a section's own code uses,
 * core/config_int.h what the module's files share, private to them.
 *
 * Every scalar setting is one row of a table: YAML key, environment variable,
 * default (as text) and range. settings[] holds core's, each registered
 * section its own, echo_settings[] and proxy_settings[] an agent's (keyed
 * relative to agents.<name>). cfg_defaults, the YAML loader, the environment
 * overrides, cfg_validate and the --help text all walk those tables and share
 * cfg_setting_parse() and cfg_setting_check(), so a value is spelled the same
 * everywhere and the documented default is the real default. Lists and
 * mappings the rows cannot express have parsers of their own: a section's
 * load hook, a proxy agent's endpoints and forward_headers.
 *
 * Invariants: cfg_load_file and cfg_apply_env work on a copy and write *c only
 * when the whole input was good. Every agent, whatever its type, holds every
 * agent default. Cold path: nothing here runs after the shards start, so it
 * favours plain code and precise messages over speed. */
#include "core/config.h"
#include "core/config_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#define CFG_FILE_MAX   (1u << 20)  /* a config is a few KiB; this stops /dev/zero */

#define F(field) offsetof(cfg_t, field)
static const struct cfg_setting settings[] = {
    { NULL,     "listen",             "AGATE_LISTEN",             "0.0.0.0:8080", CFG_K_ADDR,     0, 0,          F(listen) },
    { NULL,     "admin_listen",       "AGATE_ADMIN_LISTEN",       "0.0.0.0:9090", CFG_K_ADDR_OFF, 0, 0,          F(admin_listen) },
    { NULL,     "shards",             "AGATE_SHARDS",             "0",            CFG_K_UINT,     0, 1024,       F(shards) },
    { "engine", "backend",            "AGATE_ENGINE_BACKEND",     "auto",         CFG_K_BACKEND,  0, 0,          F(backend) },
    { "limits", "max_connections",    "AGATE_MAX_CONNECTIONS",    "10000",        CFG_K_UINT,     1, 1000000,    F(max_connections) },
    { "limits", "max_body",           "AGATE_MAX_BODY",           "1MiB",         CFG_K_SIZE,     1, UINT32_MAX, F(max_body_bytes) },
    { "limits", "max_header",         "AGATE_MAX_HEADER",         "16KiB",        CFG_K_SIZE,     1024, UINT32_MAX, F(max_header_bytes) },
    { "limits", "header_timeout",     "AGATE_HEADER_TIMEOUT",     "10s",          CFG_K_DURATION, 1, UINT32_MAX, F(header_timeout_ms) },
    { "limits", "body_timeout",       "AGATE_BODY_TIMEOUT",       "30s",          CFG_K_DURATION, 1, UINT32_MAX, F(body_timeout_ms) },
    { "limits", "idle_timeout",       "AGATE_IDLE_TIMEOUT",       "60s",          CFG_K_DURATION, 1, UINT32_MAX, F(idle_timeout_ms) },
    { "stream", "heartbeat",          "AGATE_HEARTBEAT",          "15s",          CFG_K_DURATION, 0, UINT32_MAX, F(heartbeat_ms) },
    { "stream", "protobuf_heartbeat", "AGATE_PROTOBUF_HEARTBEAT", "15s",          CFG_K_DURATION, 0, UINT32_MAX, F(pb_heartbeat_ms) },
    { "stream", "max_token_interval", "AGATE_MAX_TOKEN_INTERVAL", "1s",           CFG_K_DURATION, 0, UINT32_MAX, F(max_token_interval_ms) },
    { "stream", "buffer",             "AGATE_STREAM_BUFFER",      "256KiB",       CFG_K_SIZE,     1, UINT32_MAX, F(stream_buffer_bytes) },
    { "stream", "drain_timeout",      "AGATE_DRAIN_TIMEOUT",      "25s",          CFG_K_DURATION, 1, UINT32_MAX, F(drain_timeout_ms) },
    { NULL,     "demo",               "AGATE_DEMO",               "true",         CFG_K_BOOL,     0, 0,          F(demo) },
    { "log",    "requests",           "AGATE_LOG_REQUESTS",       "true",         CFG_K_BOOL,     0, 0,          F(log_requests) },
    { "log",    "level",              "AGATE_LOG_LEVEL",          "info",         CFG_K_LEVEL,    0, 0,          F(log_level) },
    { "log",    "sample",             "AGATE_LOG_SAMPLE",         "1",            CFG_K_RATIO,    0, 0,          F(log_sample) },
    { "log",    "writeback",          "AGATE_LOG_WRITEBACK",      "4MiB",         CFG_K_SIZE,     0, 1u << 30,   F(log_writeback_bytes) },
    { "log",    "buffer",             "AGATE_LOG_BUFFER",         "2MiB",         CFG_K_SIZE,     65536, 1u << 30, F(log_buffer_bytes) },
    { "metrics", "enabled",           "AGATE_METRICS",            "true",         CFG_K_BOOL,     0, 0,          F(metrics_enabled) },
    { "metrics", "on_main_listener",  "AGATE_METRICS_ON_MAIN",    "false",        CFG_K_BOOL,     0, 0,          F(metrics_on_main) },
    { "trace",  "otlp_endpoint",      "AGATE_OTLP_ENDPOINT",      "off",          CFG_K_URL,      0, 0,          F(otlp_endpoint) },
    { "trace",  "service_name",       "AGATE_SERVICE_NAME",       "agate",        CFG_K_TEXT,     1, CFG_NAME_MAX - 1, F(service_name) },
    { "trace",  "export_interval",    "AGATE_OTLP_INTERVAL",      "1s",           CFG_K_DURATION, 1, 3600000,    F(otlp_interval_ms) },
    { "trace",  "max_batch",          "AGATE_OTLP_MAX_BATCH",     "512",          CFG_K_UINT,     1, 10000,      F(otlp_max_batch) },
};
#undef F
#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* core's own top-level keys: its rows' (listen, shards, ...) and its sections' */
static const char *const core_keys[] = {
    "listen", "admin_listen", "shards", "engine", "demo", "limits", "stream", "log", "metrics", "trace", NULL,
};

static int core_validate(const cfg_t *c, const void *conf, char *key, size_t keylen, char *why, size_t whylen);

cfg_section_t cfg_core_section = {
    .name = "core", .keys = core_keys, .rows = settings, .n_rows = N_SETTINGS, .rank = 0,
    .validate = core_validate,
};

__attribute__((format(printf, 3, 4)))
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void setting_name(const struct cfg_setting *s, char *out, size_t n)
{
    if (s->section)
        snprintf(out, n, "%s.%s", s->section, s->key);
    else
        snprintf(out, n, "%s", s->key);
}

/* ---- defaults ---- */

void cfg_table_defaults(const struct cfg_setting *rows, size_t n, void *base)
{
    char why[CFG_WHY_MAX];

    for (size_t i = 0; i < n; i++) {
        int rc = cfg_setting_parse(&rows[i], rows[i].deflt, base, why, sizeof why);
        assert(rc == 0);    /* a bad default in a table is a bug caught by any test */
        (void)rc;
    }
}

void cfg_defaults(cfg_t *c)
{
    memset(c, 0, sizeof *c);
    cfg_sections_defaults(c);
}

/* ---- the YAML file ---- */

/* Reports "<path>:<line>: <key>: <why>" at node at; returns -EINVAL. */
__attribute__((format(printf, 4, 5)))
int cfg_load_fail(const struct cfg_loader *ld, const yaml_node_t *at, const char *key,
                  const char *fmt, ...)
{
    char why[2 * CFG_WHY_MAX];   /* an unknown top-level key lists every section's keys */
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (key && *key)
        errf(ld->err, ld->errlen, "%s:%zu: %s: %s", ld->path, at->start_mark.line + 1, key, why);
    else
        errf(ld->err, ld->errlen, "%s:%zu: %s", ld->path, at->start_mark.line + 1, why);
    return -EINVAL;
}

/* An empty value, "~" or "null": what `limits:` with everything commented out gives. */
bool cfg_node_is_null(const yaml_node_t *n)
{
    const char *s;

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

const char *cfg_node_kind(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    return cfg_node_is_null(n) ? "an empty value" : "a single value";
}

/* Text of scalar v (the value of key k, named key), or an error. A "\0" escape
 * is refused so C string compares cannot disagree with what the file shows. */
int cfg_node_text(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                  const char *key, const char **out)
{
    if (v->type != YAML_SCALAR_NODE)
        return cfg_load_fail(ld, k, key, "expected a single value, not %s", cfg_node_kind(v));
    if (strlen((const char *)v->data.scalar.value) != v->data.scalar.length)
        return cfg_load_fail(ld, v, key, "contains a NUL character");
    *out = (const char *)v->data.scalar.value;
    return 0;
}

/* Dotted key for messages; cutting an absurdly long one is fine, the line
 * number still points at it. False when it was cut. */
bool cfg_join(char *out, size_t n, const char *prefix, const char *key)
{
    int w;

    if (prefix && *prefix)
        w = snprintf(out, n, "%s.%s", prefix, key);
    else
        w = snprintf(out, n, "%s", key);
    return w >= 0 && (size_t)w < n;
}

/* Checks that map (the value of key k, named name) is a mapping whose keys are
 * plain text and distinct; callers then walk its pairs freely. */
int cfg_map_check(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *map,
                  const char *name, const char *what)
{
    char key[CFG_KEY_MAX];

    if (map->type != YAML_MAPPING_NODE)
        return cfg_load_fail(ld, k, name, "expected a mapping of %s, not %s", what, cfg_node_kind(map));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key);
        const char *text = NULL;

        if (kn->type != YAML_SCALAR_NODE)
            return cfg_load_fail(ld, kn, name, "keys must be plain text, not %s", cfg_node_kind(kn));
        if (cfg_node_text(ld, kn, kn, name, &text))
            return -EINVAL;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            if (strcmp(cfg_key_text(ld, q), text) == 0) {
                cfg_join(key, sizeof key, name, text);
                return cfg_load_fail(ld, kn, key, "duplicate key (first at line %zu)",
                                     cfg_node_at(ld, q->key)->start_mark.line + 1);
            }
        }
    }
    return 0;
}

/* Sections as the tables hold them: NULL for a level's own keys. */
static bool same_section(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* The row of rows for key at the level section. */
const struct cfg_setting *cfg_find_setting(const struct cfg_setting *rows, size_t n, const char *section,
                                           const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (same_section(rows[i].section, section) && strcmp(rows[i].key, key) == 0)
            return &rows[i];
    }
    return NULL;
}

bool cfg_in_list(const char *const *list, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], key) == 0)
            return true;
    }
    return false;
}

/* Appends word to the comma-separated list (*used bytes so far); a list that
 * no longer fits is cut, which only shortens a message. */
void cfg_list_add(char *list, size_t size, size_t *used, const char *word)
{
    if (*used < size)
        *used += (size_t)snprintf(list + *used, size - *used, "%s%s", *used ? ", " : "", word);
}

void cfg_list_rows(char *list, size_t size, size_t *used, const struct cfg_setting *rows, size_t n,
                   const char *section)
{
    for (size_t i = 0; i < n; i++) {
        if (same_section(rows[i].section, section))
            cfg_list_add(list, size, used, rows[i].key);
    }
}

/* "unknown key (expected one of: a, b, c)" */
int cfg_unknown_key(const struct cfg_loader *ld, const yaml_node_t *k, const char *name, const char *list)
{
    return cfg_load_fail(ld, k, name, "unknown key (expected one of: %s)", list);
}

int cfg_load_setting(const struct cfg_loader *ld, const struct cfg_setting *s, const yaml_node_t *k,
                     const yaml_node_t *v, void *base, const char *name)
{
    char why[CFG_WHY_MAX];
    const char *text = NULL;

    if (cfg_node_text(ld, k, v, name, &text))
        return -EINVAL;
    if (!*text)
        return cfg_load_fail(ld, k, name, "no value given");
    if (cfg_setting_parse(s, text, base, why, sizeof why))
        return cfg_load_fail(ld, k, name, "%s", why);
    return 0;
}

/* A mapping of rows' section (e.g. "limits" of settings, "timeouts" of
 * proxy_settings), named secname in messages, into base. */
int cfg_load_section(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *map,
                     const struct cfg_setting *rows, size_t n, const char *section,
                     const char *secname, void *base)
{
    char name[2 * CFG_KEY_MAX], list[CFG_WHY_MAX] = "";    /* name: secname + "." + key */
    size_t used = 0;

    if (cfg_node_is_null(map))
        return 0;
    if (cfg_map_check(ld, k, map, secname, "settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *key = cfg_key_text(ld, p);
        const struct cfg_setting *s = cfg_find_setting(rows, n, section, key);

        cfg_join(name, sizeof name, secname, key);
        if (!s) {
            cfg_list_rows(list, sizeof list, &used, rows, n, section);
            return cfg_unknown_key(ld, kn, name, list);
        }
        if (cfg_load_setting(ld, s, kn, vn, base, name))
            return -EINVAL;
    }
    return 0;
}

static int load_root(const struct cfg_loader *ld, const yaml_node_t *root)
{
    if (cfg_node_is_null(root))
        return 0;    /* "---" alone, or only comments after it */
    if (root->type != YAML_MAPPING_NODE)
        return cfg_load_fail(ld, root, NULL, "expected a mapping of settings at the top level "
                             "(e.g. listen: 0.0.0.0:8080), not %s", cfg_node_kind(root));
    if (cfg_map_check(ld, root, root, "", "settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *key = cfg_key_text(ld, p);
        const cfg_section_t *s = cfg_section_of(key);
        char list[2 * CFG_WHY_MAX];
        int rc;

        if (s) {
            rc = cfg_section_load(ld, s, key, kn, vn);
        } else {
            cfg_sections_keys(list, sizeof list);
            rc = cfg_unknown_key(ld, kn, key, list);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Whole file into memory, so that a reader error (bad UTF-8), which libyaml
 * reports as a byte offset only, can still be given a line number. */
static int read_all(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap), *grown;
    int fd, rc;

    if (!buf) {
        errf(err, errlen, "%s: %s", path, strerror(ENOMEM));
        return -ENOMEM;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        goto fail_open;
    }
    for (;;) {
        ssize_t n;

        if (len == cap) {
            if (cap > CFG_FILE_MAX) {
                rc = -EFBIG;
                errf(err, errlen, "%s: file too large (a config is at most %u bytes)", path, CFG_FILE_MAX);
                goto fail_read;
            }
            grown = realloc(buf, cap * 2);
            if (!grown) {
                rc = -ENOMEM;
                goto fail_read;
            }
            buf = grown;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;    /* EISDIR lands here: open() accepts a directory */
            goto fail_read;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    *out = buf;
    *outlen = len;
    return 0;

fail_read:
    close(fd);
fail_open:
    free(buf);
    if (rc != -EFBIG)
        errf(err, errlen, "%s: %s", path, strerror(-rc));
    return rc;
}

/* The dotted key at a syntax error, so it is named like every other error. The
 * document API stops without one, and the event API holds back a key until its
 * value scans, so the key comes from the text: the key on the error line (or
 * the nearest line above with one), then each less-indented key above it. */
static bool line_key(const char *l, const char *end, int *indent, const char **k, size_t *kl)
{
    const char *p = l;
    while (p < end && *p == ' ')
        p++;
    const char *ks = p;
    while (p < end && (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.'))
        p++;
    if (p == ks || p >= end || *p != ':')
        return false;
    *indent = (int)(ks - l);
    *k = ks;
    *kl = (size_t)(p - ks);
    return true;
}

static void syntax_key(const char *text, size_t len, size_t line, char *out, size_t outlen)
{
    const char *starts[4096];
    size_t n = 0;
    for (size_t i = 0; i < len && n < 4096; i++)
        if (i == 0 || text[i - 1] == '\n')
            starts[n++] = text + i;
    const char *keys[16];
    size_t klens[16], nk = 0;
    int want = INT32_MAX;
    for (size_t i = line < n ? line : n; i-- > 0 && nk < 16;) {
        const char *end = memchr(starts[i], '\n', (size_t)(text + len - starts[i]));
        int indent;
        const char *k;
        size_t kl;
        if (!line_key(starts[i], end ? end : text + len, &indent, &k, &kl) || indent >= want)
            continue;
        keys[nk] = k;
        klens[nk++] = kl;
        want = indent;
        if (!indent)
            break;
    }
    size_t o = 0;
    out[0] = 0;
    while (nk-- > 0) {
        int w = snprintf(out + o, outlen - o, "%s%.*s", o ? "." : "", (int)klens[nk], keys[nk]);
        if (w < 0 || (size_t)w >= outlen - o)
            break;
        o += (size_t)w;
    }
}

static int syntax_fail(const char *path, const yaml_parser_t *yp, const char *text, size_t len,
                       char *err, size_t errlen)
{
    const char *problem = yp->problem ? yp->problem : "unknown error";
    size_t line = yp->problem_mark.line + 1;

    if (yp->error == YAML_MEMORY_ERROR) {
        errf(err, errlen, "%s: %s", path, strerror(ENOMEM));
        return -ENOMEM;
    }
    if (yp->error == YAML_READER_ERROR) {
        size_t end = yp->problem_offset < len ? yp->problem_offset : len;
        line = 1;
        for (size_t i = 0; i < end; i++)
            line += text[i] == '\n';
    }
    char key[256], where[300] = "";
    key[0] = 0;
    if (yp->error != YAML_READER_ERROR)   /* an encoding error belongs to no key */
        syntax_key(text, len, line, key, sizeof key);
    if (key[0])
        snprintf(where, sizeof where, " %s:", key);
    if (yp->context)
        errf(err, errlen, "%s:%zu:%s YAML syntax error: %s (%s at line %zu)", path, line, where, problem,
             yp->context, yp->context_mark.line + 1);
    else
        errf(err, errlen, "%s:%zu:%s YAML syntax error: %s", path, line, where, problem);
    return -EINVAL;
}

int cfg_load_file(cfg_t *c, const char *path, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc, more;
    yaml_node_t *root, *extra;
    struct cfg_loader ld;
    cfg_t work;
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (strlen(path) >= CFG_PATH_MAX) {
        errf(err, errlen, "%.64s...: path too long", path);
        return -ENAMETOOLONG;
    }
    rc = read_all(path, &text, &len, err, errlen);
    if (rc)
        return rc;
    if (!yaml_parser_initialize(&parser)) {
        errf(err, errlen, "%s: %s", path, strerror(ENOMEM));
        rc = -ENOMEM;
        goto fail_parser;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = syntax_fail(path, &parser, text, len, err, errlen);
        goto fail_doc;
    }
    /* Parse to the end: a syntax error or a second document after the first
     * must fail the load rather than be silently ignored. */
    if (!yaml_parser_load(&parser, &more)) {
        rc = syntax_fail(path, &parser, text, len, err, errlen);
        goto fail_more;
    }
    extra = yaml_document_get_root_node(&more);
    if (extra) {
        errf(err, errlen, "%s:%zu: only one YAML document is allowed", path, extra->start_mark.line + 1);
        rc = -EINVAL;
        goto fail_extra;
    }

    memcpy(&work, c, sizeof work);
    ld = (struct cfg_loader){ .path = path, .doc = &doc, .c = &work, .err = err, .errlen = errlen };
    root = yaml_document_get_root_node(&doc);
    rc = root ? load_root(&ld, root) : 0;
    if (rc == 0) {
        snprintf(work.path, sizeof work.path, "%s", path);
        memcpy(c, &work, sizeof *c);
    }

fail_extra:
    yaml_document_delete(&more);
fail_more:
    yaml_document_delete(&doc);
fail_doc:
    yaml_parser_delete(&parser);
fail_parser:
    free(text);
    return rc;
}

/* ---- environment ---- */

int cfg_apply_env(cfg_t *c, char *err, size_t errlen)
{
    cfg_t work;

    memcpy(&work, c, sizeof work);
    if (cfg_sections_env(&work, err, errlen))
        return -EINVAL;
    memcpy(c, &work, sizeof *c);
    return 0;
}

/* ---- cross-field checks ---- */

__attribute__((format(printf, 5, 6)))
static int validate_fail(const cfg_t *c, char *err, size_t errlen, const char *key, const char *fmt, ...)
{
    char why[CFG_WHY_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (c->path[0])
        errf(err, errlen, "%s: %s: %s", c->path, key, why);
    else
        errf(err, errlen, "%s: %s", key, why);
    return -EINVAL;
}

static bool addr_is_any(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* Would the two listeners collide? With SO_REUSEPORT a collision does not fail
 * bind(); it silently splits connections between them, so check here. [::]
 * is taken as dual-stack, which also covers every IPv4 address. */
static bool addr_overlap(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
    const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;
    uint16_t pa = a->ss_family == AF_INET ? a4->sin_port : a6->sin6_port;
    uint16_t pb = b->ss_family == AF_INET ? b4->sin_port : b6->sin6_port;

    if (pa != pb)
        return false;
    if (a->ss_family != b->ss_family)
        return (a->ss_family == AF_INET6 && addr_is_any(a)) || (b->ss_family == AF_INET6 && addr_is_any(b));
    if (addr_is_any(a) || addr_is_any(b))
        return true;
    if (a->ss_family == AF_INET)
        return a4->sin_addr.s_addr == b4->sin_addr.s_addr;
    return IN6_ARE_ADDR_EQUAL(&a6->sin6_addr, &b6->sin6_addr);
}

/* The checks of one table against base; on failure the dotted key (prefix,
 * section, key) goes to key. */
int cfg_table_check(const struct cfg_setting *rows, size_t n, const void *base, const char *prefix,
                    char *key, size_t keylen, char *why, size_t whylen)
{
    char name[CFG_KEY_MAX];

    for (size_t i = 0; i < n; i++) {
        if (cfg_setting_check(&rows[i], base, why, whylen) == 0)
            continue;
        setting_name(&rows[i], name, sizeof name);
        cfg_join(key, keylen, prefix, name);
        return -EINVAL;
    }
    return 0;
}

/* core's cross-field rule, after its rows' checks: the listeners apart */
static int core_validate(const cfg_t *c, const void *conf, char *key, size_t keylen, char *why, size_t whylen)
{
    struct sockaddr_storage main_ss, admin_ss;
    bool admin_on;
    socklen_t sslen;

    /* both are terminated and parse: the rows' checks passed */
    admin_on = c->admin_listen[0] && strcmp(c->admin_listen, "off") != 0;
    memset(&main_ss, 0, sizeof main_ss);
    memset(&admin_ss, 0, sizeof admin_ss);
    cfg_addr_parse(c->listen, &main_ss, &sslen);
    if (admin_on)
        cfg_addr_parse(c->admin_listen, &admin_ss, &sslen);
    if (admin_on && addr_overlap(&main_ss, &admin_ss)) {
        snprintf(key, keylen, "admin_listen");
        snprintf(why, whylen, "%s overlaps listen %s (same port); use another port", c->admin_listen, c->listen);
        return -EINVAL;
    }
    return 0;
}

int cfg_validate(const cfg_t *c, char *err, size_t errlen)
{
    char key[2 * CFG_KEY_MAX], why[CFG_WHY_MAX];    /* key: a name + "." + a table key */

    if (cfg_sections_validate(c, key, sizeof key, why, sizeof why))
        return validate_fail(c, err, errlen, key, "%s", why);
    return 0;
}

const cfg_agent_t *cfg_find_agent(const cfg_t *c, const char *name, size_t len)
{
    for (uint32_t i = 0; i < c->n_agents; i++) {
        const cfg_agent_t *a = &c->agents[i];
        if (!a->removed && strnlen(a->name, CFG_NAME_MAX) == len && memcmp(a->name, name, len) == 0)
            return a;
    }
    return NULL;
}

/* ---- help ---- */

static char env_help[8192];
static pthread_once_t env_help_once = PTHREAD_ONCE_INIT;

static void env_help_build(void)
{
    size_t used;

    used = (size_t)snprintf(env_help, sizeof env_help,
        "Environment (applied after the config file; empty variables are ignored):\n"
        "  %-26s %s\n", "AGATE_CONFIG", "path of the YAML config file");
    used += cfg_sections_help(env_help + used, sizeof env_help - used);
    assert(used < sizeof env_help);
    used += (size_t)snprintf(env_help + used, sizeof env_help - used,
        "Values use the file's syntax: sizes 1048576, 64KiB, 1MiB, 1MB; durations 250ms, 10s,\n"
        "2m, 1h; booleans true/false, yes/no, on/off; addresses host:port, [v6]:port, :port;\n"
        "ratios 0 to 1 (0.25); the OTLP endpoint http://host:port/path, or off.\n");
    assert(used < sizeof env_help);    /* the rows grew: enlarge env_help */
}

const char *cfg_env_help(void)
{
    pthread_once(&env_help_once, env_help_build);
    return env_help;
}
