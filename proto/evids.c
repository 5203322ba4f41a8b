/* evids: a small JSON scanner that finds the id strings of one AG-UI event
 * (see evids.h). It only tokenises: strings are skipped by their quotes and
 * escapes, numbers and literals by their characters, containers by depth, so
 * it allocates nothing and reads each byte once. Upstream events reach it
 * after proto/validate.c accepted them, but it stands alone: any bytes give
 * either spans inside the text or -EINVAL (fuzz/fuzz_canon.c). */
#include "proto/evids.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

typedef struct sc {
    const char   *s, *end;
    const char   *p;
    evids_span_t *out;
    size_t        max, n;
    bool          snapshot;
} sc_t;

/* Where a value sits, which decides what its keys mean. */
enum ctx { C_OTHER, C_TOP, C_INPUT, C_MESSAGES, C_MESSAGE, C_TOOLCALLS, C_TOOLCALL };

static void ws(sc_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* At a '"': the content's start and length; p after the closing quote. */
static int str(sc_t *c, const char **v, size_t *vl)
{
    if (c->p >= c->end || *c->p != '"')
        return -EINVAL;
    const char *b = ++c->p;
    while (c->p < c->end) {
        char ch = *c->p;
        if (ch == '"') {
            *v = b;
            *vl = (size_t)(c->p - b);
            c->p++;
            return 0;
        }
        if (ch == '\\') {
            if (c->end - c->p < 2)
                return -EINVAL;
            c->p += 2;
            continue;
        }
        if ((unsigned char)ch < 0x20)
            return -EINVAL;
        c->p++;
    }
    return -EINVAL;
}

static void emit(sc_t *c, const char *v, size_t vl, evids_kind_t k)
{
    if (c->n < c->max)
        c->out[c->n] = (evids_span_t){(uint32_t)(v - c->s), (uint32_t)vl, (uint8_t)k};
    c->n++;
}

static bool key_is(const char *k, size_t kl, const char *lit)
{
    return strlen(lit) == kl && !memcmp(k, lit, kl);
}

static int value(sc_t *c, enum ctx ctx, int depth);

/* The id kind a string value of key k has in ctx, or -1 for none. */
static int id_kind(const sc_t *c, enum ctx ctx, const char *k, size_t kl)
{
    switch (ctx) {
    case C_TOP:
        if (key_is(k, kl, "threadId"))
            return EVIDS_THREAD;
        if (key_is(k, kl, "runId"))
            return EVIDS_RUN;
        if (key_is(k, kl, "messageId") || key_is(k, kl, "parentMessageId") || key_is(k, kl, "toolCallId"))
            return EVIDS_ID;
        return -1;
    case C_INPUT:
        return key_is(k, kl, "threadId") ? EVIDS_THREAD : key_is(k, kl, "runId") ? EVIDS_RUN : -1;
    case C_MESSAGE:
        return key_is(k, kl, "id") || key_is(k, kl, "toolCallId") ? EVIDS_ID : -1;
    case C_TOOLCALL:
        return key_is(k, kl, "id") ? EVIDS_ID : -1;
    default:
        return -1;
    }
}

/* The context of the value of key k in an object of ctx. */
static enum ctx child_ctx(const sc_t *c, enum ctx ctx, const char *k, size_t kl)
{
    if (ctx == C_TOP && key_is(k, kl, "input"))
        return C_INPUT;
    if (ctx == C_TOP && c->snapshot && key_is(k, kl, "messages"))
        return C_MESSAGES;
    if (ctx == C_MESSAGE && key_is(k, kl, "toolCalls"))
        return C_TOOLCALLS;
    return C_OTHER;
}

static int object(sc_t *c, enum ctx ctx, int depth)
{
    c->p++;   /* '{' */
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        const char *k, *v;
        size_t kl, vl;
        ws(c);
        if (str(c, &k, &kl))
            return -EINVAL;
        ws(c);
        if (c->p >= c->end || *c->p != ':')
            return -EINVAL;
        c->p++;
        ws(c);
        int kind = id_kind(c, ctx, k, kl);
        if (kind >= 0 && c->p < c->end && *c->p == '"') {
            if (str(c, &v, &vl))
                return -EINVAL;
            emit(c, v, vl, (evids_kind_t)kind);
        } else if (value(c, child_ctx(c, ctx, k, kl), depth + 1)) {
            return -EINVAL;
        }
        ws(c);
        if (c->p >= c->end)
            return -EINVAL;
        if (*c->p == '}') {
            c->p++;
            return 0;
        }
        if (*c->p != ',')
            return -EINVAL;
        c->p++;
    }
}

static int array(sc_t *c, enum ctx ctx, int depth)
{
    enum ctx el = ctx == C_MESSAGES ? C_MESSAGE : ctx == C_TOOLCALLS ? C_TOOLCALL : C_OTHER;
    c->p++;   /* '[' */
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    for (;;) {
        ws(c);
        if (value(c, el, depth + 1))
            return -EINVAL;
        ws(c);
        if (c->p >= c->end)
            return -EINVAL;
        if (*c->p == ']') {
            c->p++;
            return 0;
        }
        if (*c->p != ',')
            return -EINVAL;
        c->p++;
    }
}

static int value(sc_t *c, enum ctx ctx, int depth)
{
    const char *v;
    size_t vl;
    if (depth > EVIDS_MAX_DEPTH || c->p >= c->end)
        return -EINVAL;
    switch (*c->p) {
    case '{':
        return object(c, ctx == C_MESSAGE || ctx == C_TOOLCALL || ctx == C_INPUT || ctx == C_TOP ? ctx : C_OTHER,
                      depth);
    case '[':
        return array(c, ctx, depth);
    case '"':
        return str(c, &v, &vl);
    default: {
        const char *b = c->p;
        while (c->p < c->end && (strchr("0123456789+-.eE", *c->p) || (*c->p >= 'a' && *c->p <= 'z')) && *c->p)
            c->p++;
        return c->p > b ? 0 : -EINVAL;
    }
    }
}

int evids_scan(const char *json, size_t len, agui_type_t type, evids_span_t *spans, size_t max)
{
    sc_t c = {.s = json, .end = json + len, .p = json, .out = spans, .max = max,
              .snapshot = type == AGUI_MESSAGES_SNAPSHOT};
    if (len > UINT32_MAX)
        return -EINVAL;
    ws(&c);
    if (c.p >= c.end || *c.p != '{' || object(&c, C_TOP, 0))
        return -EINVAL;
    ws(&c);
    if (c.p != c.end)
        return -EINVAL;
    return c.n > (size_t)INT32_MAX ? -EINVAL : (int)c.n;
}
