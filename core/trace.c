/* trace: W3C Trace Context level 1 (https://www.w3.org/TR/trace-context/).
 *
 * Owns nothing but the parsing and formatting rules: a trace_ctx_t lives in the
 * request that owns it, and ids come from the caller's per-shard generator.
 *
 * Invariants: every id this module writes is non-zero (an all-zero trace-id or
 * span-id is invalid on the wire); the traceparent it writes is always version
 * 00, whatever version came in; hex it writes is lowercase, hex it accepts is
 * lowercase only, as the spec requires. Runs once per request: no allocation. */
#include "core/trace.h"

#include <errno.h>
#include <string.h>

#include "core/buf.h"

/* value of a lowercase hex digit, or -1 (uppercase is invalid in traceparent) */
static inline int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* 2n lowercase hex chars into n bytes; false on any other character */
static bool unhex(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

int trace_parse(const char *v, size_t n, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags)
{
    uint8_t version, tid[16], pid[8], fl;

    /* Shorter than the version-00 layout can never be parsed, whatever the
     * version: the spec says restart the trace. */
    if (!v || n < TRACEPARENT_LEN)
        return -EINVAL;
    if (!unhex(v, 1, &version) || version == 0xff)
        return -EINVAL;
    /* Version 00 is exactly 55 chars. A later version may append fields, but
     * only after a '-', so "...-01x" is not "flags 01 plus something". */
    if (version == 0 ? n != TRACEPARENT_LEN : n > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != '-')
        return -EINVAL;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-')
        return -EINVAL;
    if (!unhex(v + 3, 16, tid) || !unhex(v + 36, 8, pid) || !unhex(v + 53, 1, &fl))
        return -EINVAL;
    if (all_zero(tid, sizeof tid) || all_zero(pid, sizeof pid))
        return -EINVAL;
    /* For a version we do not know, the spec defines only the sampled bit;
     * other bits may mean something else there, so they are not carried on. */
    if (version != 0)
        fl &= 0x01;
    memcpy(trace_id, tid, sizeof tid);
    memcpy(parent_id, pid, sizeof pid);
    *flags = fl;
    return 0;
}

/* n random bytes, retried until not all zero (about once in 2^64 draws) */
static void random_id(rand_state_t *rng, uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = rand_next(rng);
            size_t k = n - i < 8 ? n - i : 8;
            memcpy(out + i, &r, k);
        }
    } while (all_zero(out, n));
}

void trace_begin(trace_ctx_t *t, rand_state_t *rng, const char *v, size_t n)
{
    memset(t, 0, sizeof *t);
    if (v && trace_parse(v, n, t->trace_id, t->parent_id, &t->flags) == 0) {
        t->has_parent = true;
    } else {
        /* trace_parse writes nothing on failure, so parent_id is still zero */
        random_id(rng, t->trace_id, sizeof t->trace_id);
        t->flags = 0x01;    /* a trace we start is sampled: we export every span we make */
    }
    random_id(rng, t->span_id, sizeof t->span_id);
}

static void format_with(const trace_ctx_t *t, const uint8_t span[8], char out[TRACEPARENT_LEN])
{
    out[0] = '0';
    out[1] = '0';
    out[2] = '-';
    buf_fmt_hex(out + 3, t->trace_id, 16);
    out[35] = '-';
    buf_fmt_hex(out + 36, span, 8);
    out[52] = '-';
    buf_fmt_hex(out + 53, &t->flags, 1);
}

void trace_format(const trace_ctx_t *t, char out[TRACEPARENT_LEN])
{
    format_with(t, t->span_id, out);
}

void trace_child(const trace_ctx_t *t, rand_state_t *rng, uint8_t child_span[8], char out[TRACEPARENT_LEN])
{
    random_id(rng, child_span, 8);
    format_with(t, child_span, out);
}

/* ---- tracestate ---- */

#define TRACESTATE_MEMBERS_MAX 32
#define TRACESTATE_KEY_MAX     256

static inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* key = simple-key / tenant@system: lcalpha or digit first, then
 * lcalpha / digit / _ - * / and at most one '@'. */
static bool key_ok(const char *k, size_t n)
{
    bool at = false;

    if (n == 0 || n > TRACESTATE_KEY_MAX)
        return false;
    if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= '0' && k[0] <= '9')))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = k[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/')
            continue;
        if (c == '@' && !at && i + 1 < n) {
            at = true;
            continue;
        }
        return false;
    }
    return true;
}

/* value = 0*255(chr) nblk-chr; chr is printable ASCII except ',' and '=',
 * and the last one is not a space. */
static bool value_ok(const char *s, size_t n)
{
    if (n == 0 || n > 256 || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == ',' || s[i] == '=')
            return false;
    }
    return true;
}

bool trace_state_valid(const char *v, size_t n)
{
    unsigned members = 0;
    size_t i = 0;

    if (!v || n == 0 || n > TRACESTATE_MAX)
        return false;
    while (i <= n) {
        size_t start = i, end;
        const char *eq;

        while (i < n && v[i] != ',')
            i++;
        end = i++;    /* past the ',' (or one past n, which ends the loop) */
        while (start < end && is_ows(v[start]))
            start++;
        while (end > start && is_ows(v[end - 1]))
            end--;
        if (start == end)
            continue;    /* empty members are allowed and do not count */
        if (++members > TRACESTATE_MEMBERS_MAX)
            return false;
        eq = memchr(v + start, '=', end - start);
        if (!eq || !key_ok(v + start, (size_t)(eq - (v + start))) ||
            !value_ok(eq + 1, (size_t)(v + end - (eq + 1))))
            return false;
    }
    return members > 0;
}
