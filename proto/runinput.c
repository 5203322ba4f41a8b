/* runinput: validates a POST body as an AG-UI RunAgentInput, the way
 * @ag-ui/core 1.0.0's zod RunAgentInputSchema does, in one pass over the body
 * onto the thread's jtape and one walk of the shared schema (proto/schema.c).
 *
 * Validation stops at the first error, whose path is always one zod reports
 * too (checked against zod on mutated bodies while writing this). Objects are
 * loose (unknown keys pass); discriminated unions (message role, content part
 * type, part source type) report a bad discriminator at the discriminator's own
 * path. Validation never enters free-form values (state, forwardedProps, tool
 * parameters, metadata); the body's nesting is capped at RUNINPUT_MAX_DEPTH.
 *
 * Deliberate differences from JSON.parse + zod: duplicate keys are rejected, as
 * are lone UTF-16 surrogates and reals past double range such as 1e999, and
 * nesting deeper than RUNINPUT_MAX_DEPTH. The tape reads what jansson reads
 * with JSON_REJECT_DUPLICATES, and U+0000 in keys (jansson refuses those,
 * JSON.parse does not); for a body it refuses, jansson
 * is asked once more, only to word the error ("invalid JSON at line 1 column 9:
 * ..."), so error texts are unchanged from when jansson parsed every body. They
 * are always ASCII so they can be put into an event without re-validation.
 *
 * Measured (bench/validate_bench.c prints it too): the 298-byte body of the
 * bench's echo and proxy cases costs 0.4 us here against 2.6 us with
 * json_loadb + the tree walk, same machine, same run. */
#include "proto/runinput.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/jsonwhy.h"
#include "proto/jtape.h"
#include "proto/schema.h"

/* --- refused bodies: the words jansson would use (cold) ------------------------- */

/* jansson quotes the offending token, which may be any bytes; keep messages ASCII. */
static void ri_json_error(runinput_err_t *err, const json_error_t *je)
{
    char text[sizeof je->text];
    size_t i;
    for (i = 0; i < sizeof text - 1 && je->text[i]; i++) {
        unsigned char ch = (unsigned char)je->text[i];
        text[i] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
    }
    text[i] = '\0';
    err->field[0] = '\0';
    snprintf(err->message, sizeof err->message, "invalid JSON at line %d column %d: %s",
             je->line, je->column, text);
}

/* The tape refused the body (or had no memory): say why as before. */
static int ri_refused(const char *body, size_t len, int rc, runinput_err_t *err)
{
    if (rc == -ENOMEM) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return -EINVAL;
    }
    if (jtape_too_deep(body, len, RUNINPUT_MAX_DEPTH)) {
        snprintf(err->message, sizeof err->message, "nesting deeper than %d",
                 RUNINPUT_MAX_DEPTH);
        return -EINVAL;
    }
    json_error_t je;
    if (jsonwhy_refused(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je)) {
        ri_json_error(err, &je);
        return -EINVAL;
    }
    /* The two readers disagree: a bug in jtape (the fuzzers look for these).
     * Refusing is the safe side. */
    snprintf(err->message, sizeof err->message, "invalid JSON");
    return -EINVAL;
}

/* --- accepted bodies -------------------------------------------------------------- */

/* forwardedProps.agate.tokenIntervalMs: an integer >= 0 within JavaScript's safe
 * range (what z.int() accepts). 1e3 and 5.0 count as integers, as they do in
 * JavaScript. */
static int ri_token_interval(jtape_t *t, uint32_t fp, int64_t *out, runinput_err_t *err)
{
    *out = -1;
    uint32_t agate = 0, v = 0;
    if (fp && jtape_kind(t, fp) == JT_OBJ)
        agate = jtape_get(t, fp, "agate", 5);
    if (agate && jtape_kind(t, agate) == JT_OBJ)
        v = jtape_get(t, agate, "tokenIntervalMs", 15);
    if (!v || jtape_safe_int(t, v, true, out))
        return 0;
    *out = -1;
    snprintf(err->field, sizeof err->field, "forwardedProps.agate.tokenIntervalMs");
    snprintf(err->message, sizeof err->message, "expected an integer >= 0");
    return -EINVAL;
}

/* Copies string node i, decoded, to *at and advances it. */
static const char *ri_copy(jtape_t *t, uint32_t i, size_t *len, char **at)
{
    const char *s = jtape_str(t, i, len);
    char *d = *at;
    memcpy(d, s, *len);
    *at += *len;
    return d;
}

int runinput_parse(const char *body, size_t len, runinput_t *in, runinput_err_t *err)
{
    memset(in, 0, sizeof *in);
    in->token_interval_ms = -1;
    in->last_user_msg = -1;
    err->field[0] = err->message[0] = '\0';

    jtape_t *t = jtape_thread();
    int rc = t ? jtape_parse(t, body, len, RUNINPUT_MAX_DEPTH, JTAPE_REJECT_DUPLICATES) : -ENOMEM;
    if (rc)
        return ri_refused(body, len, rc, err);
    in->tape_gen = t->gen;

    schema_ctx_t c;   /* not zeroed: only the path frames in use are read */
    c.t = t;
    c.one_of_always = true;
    c.depth = 0;
    rc = schema_check_shape(&c, 0, &schema_input);
    if (rc) {
        schema_path(&c, err->field, sizeof err->field);
        snprintf(err->message, sizeof err->message, "%s", c.problem);
        return -EINVAL;
    }
    static const jtape_key_t keys[] = {JTAPE_KEY("threadId"), JTAPE_KEY("runId"), JTAPE_KEY("messages"),
                                       JTAPE_KEY("forwardedProps")};
    uint32_t root[4];
    jtape_get_keys(t, 0, keys, 4, root);
    if ((rc = ri_token_interval(t, root[3], &in->token_interval_ms, err)))
        return rc;

    uint32_t tid = root[0], rid = root[1], msgs = root[2], content = 0, i = 0;
    for (uint32_t m = msgs + 1; m < jtape_end(t, msgs); m = jtape_end(t, m), i++) {
        if (jtape_str_eq(t, jtape_get(t, m, "role", 4), "user", 4)) {
            content = jtape_get(t, m, "content", 7);
            in->last_user_msg = i <= (uint32_t)INT_MAX ? (int)i : -1;
        }
    }
    /* One block for everything handed out; decoded strings are never longer
     * than their JSON text. A string content keeps its quotes. */
    const jtape_node_t *cn = content ? &t->nodes[content] : NULL;
    size_t clen = cn ? cn->len + (cn->kind == JT_STR ? 2u : 0u) : 0;
    char *at = in->root = malloc((size_t)t->nodes[tid].len + t->nodes[rid].len + clen + 1);
    if (!at) {
        snprintf(err->message, sizeof err->message, "out of memory");
        in->token_interval_ms = -1;
        in->last_user_msg = -1;
        return -EINVAL;
    }
    in->thread_id = ri_copy(t, tid, &in->thread_id_len, &at);
    in->run_id = ri_copy(t, rid, &in->run_id_len, &at);
    if (cn) {
        memcpy(at, body + cn->off - (cn->kind == JT_STR), clen);
        in->user_content = at;
        in->user_content_len = clen;
    }
    return 0;
}

void runinput_free(runinput_t *in)
{
    if (!in)
        return;
    free(in->root);
    in->root = NULL;
    in->user_content = NULL;
    in->user_content_len = 0;
    in->thread_id = in->run_id = NULL;
    in->thread_id_len = in->run_id_len = 0;
}

/* The same bound as a request body's (run_drop_body): below it, keep the block. */
#define RUNINPUT_DROP_MIN 2048

void runinput_drop_content(runinput_t *in)
{
    if (!in->root || !in->user_content)
        return;
    size_t keep = (size_t)(in->user_content - in->root), clen = in->user_content_len;
    size_t t_off = (size_t)(in->thread_id - in->root), r_off = (size_t)(in->run_id - in->root);
    in->user_content = NULL;
    in->user_content_len = 0;
    if (clen < RUNINPUT_DROP_MIN)
        return;   /* a short content is not worth a copy of the ids */
    char *p = malloc(keep ? keep : 1);   /* malloc and copy, not realloc: the offsets above are taken from the old block */
    if (!p)
        return;   /* the block stays as it was */
    memcpy(p, in->root, keep);
    free(in->root);
    in->root = p;
    in->thread_id = p + t_off;
    in->run_id = p + r_off;
}

/* Deep enough for anything jansson read here before (2048 levels): the tape
 * needs no stack for nesting. */
#define RI_PEEK_DEPTH 4096

int runinput_peek(const char *text, size_t len, runinput_peek_t *pk)
{
    memset(pk, 0, sizeof *pk);
    jtape_t *t = jtape_thread();
    int rc = t ? jtape_parse(t, text, len, RI_PEEK_DEPTH, 0) : -ENOMEM;
    if (rc)
        return rc == -ENOMEM ? rc : 0;
    if (jtape_kind(t, 0) != JT_OBJ)
        return 0;
    pk->object = true;
    uint32_t ty = jtape_get(t, 0, "type", 4), id = jtape_get(t, 0, "runId", 5);
    if (ty && jtape_kind(t, ty) == JT_STR)
        pk->type = jtape_str(t, ty, &pk->type_len);
    if (id && jtape_kind(t, id) == JT_STR)
        pk->run_id = jtape_str(t, id, &pk->run_id_len);
    return 0;
}

static int ri_append(buf_t *out, const char *s, size_t n)
{
    if (buf_reserve(out, n))
        return -ENOMEM;
    memcpy(out->data + out->len, s, n);
    out->len += n;
    return 0;
}

int runinput_user_text(const runinput_t *in, buf_t *out)
{
    if (!in->root || in->last_user_msg < 0 || !in->user_content)
        return 0;
    /* The content was valid when parsed; read it again, on its own, here, where
     * its text is needed (the proxy never asks). */
    jtape_t *t = jtape_thread();
    if (!t || jtape_parse(t, in->user_content, in->user_content_len, RUNINPUT_MAX_DEPTH, 0))
        return -ENOMEM;
    size_t n;
    const char *s;
    if (jtape_kind(t, 0) == JT_STR) {
        s = jtape_str(t, 0, &n);
        if (!n)
            return 0;
        return ri_append(out, s, n) ? -ENOMEM : 1;
    }
    size_t total = 0;
    for (uint32_t part = 1; part < jtape_end(t, 0); part = jtape_end(t, part))
        if (jtape_str_eq(t, jtape_get(t, part, "type", 4), "text", 4)) {
            jtape_str(t, jtape_get(t, part, "text", 4), &n);
            total += n;
        }
    if (!total)
        return 0;
    if (buf_reserve(out, total))
        return -ENOMEM;
    for (uint32_t part = 1; part < jtape_end(t, 0); part = jtape_end(t, part))
        if (jtape_str_eq(t, jtape_get(t, part, "type", 4), "text", 4)) {
            s = jtape_str(t, jtape_get(t, part, "text", 4), &n);
            ri_append(out, s, n);
        }
    return 1;
}
