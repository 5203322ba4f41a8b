/* resume_http: the endpoints of resumable runs (see resume.h).
 *
 *   GET    /v1/runs/{runId}/events   the run's events after Last-Event-ID (the
 *          header, or ?last_event_id=), "<runId>:<seq>"; without one, the whole
 *          run from RUN_STARTED; then the live ones, then the end.
 *   DELETE /v1/runs/{runId}          cancels the run now (202), 409 when it
 *          has already ended.
 *
 * Who may: the holder of the run's resume token (X-Agate-Resume-Token, or
 * ?token= for EventSource, which cannot set headers), or the identity that
 * started the run when it was an authenticated one. Answers, JSON: 400 a
 * malformed id; 401 bad credentials; 404 an unknown run (run ids are the
 * client's and not secret, so saying a run exists gives nothing away); 403
 * neither the token nor the identity; 410 a log dropped after log_ttl, or an
 * id before the front the log's bound dropped. Cold path. */
#include <stdio.h>
#include <string.h>

#include "net/access.h"
#include "net/conn.h"
#include "net/http1.h"
#include "net/resume.h"
#include "net/resume_int.h"
#include "net/sse.h"

#define RS_ID_CAP 128

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
         : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* Percent-decodes s[0..n) into out; false when malformed or longer than cap - 1. */
static bool pct_decode(const char *s, size_t n, char *out, size_t cap, size_t *len)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
                return false;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (k + 1 >= cap)
            return false;
        out[k++] = ch;
    }
    out[k] = '\0';
    *len = k;
    return true;
}

/* The query parameter `name`, decoded; false when absent (or malformed: *bad). */
static bool query_param(const http_req_t *r, const char *name, char *out, size_t cap, size_t *len, bool *bad)
{
    const char *url = http_str(r, r->url), *q = memchr(url, '?', r->url.len);
    size_t nl = strlen(name);
    if (!q)
        return false;
    for (const char *p = q + 1, *end = url + r->url.len; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && p[nl] == '=' && !memcmp(p, name, nl)) {
            if (!pct_decode(p + nl + 1, (size_t)(e - p - nl - 1), out, cap, len))
                *bad = true;
            return !*bad;
        }
        p = amp ? amp + 1 : end;
    }
    return false;
}

static bool token_equal(const char *a, size_t an, const char *b)
{
    if (an != 32)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < 32; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static bool last_event_id(const http_req_t *r, const char *id, size_t idn, uint64_t *seq, bool *bad);

/* The run named by the path, held, once the caller may see it; NULL when
 * answered. remote: a run this process does not have is looked for in Redis
 * (net/runlog_redis.h), which answers the request. */
static rs_log_t *authorize(conn_t *c, const char *pid, size_t plen, char *id, size_t *idn, rs_view_t *v,
                           bool remote)
{
    http_req_t *r = &c->http.req;
    uint8_t who[16];
    bool named, bad = false;
    char tok[64];
    size_t tokn = 0;
    const char *hv;
    size_t hn;
    if (!pct_decode(pid, plen, id, RS_ID_CAP, idn) || !*idn) {
        http_error(c, 400, "invalid_run_id", "the run id in the path is malformed or longer than 127 bytes", NULL);
        return NULL;
    }
    if (!access_http_who(c, who, &named))
        return NULL;   /* 400/401 answered */
    if (http_header(r, "x-agate-resume-token", &hv, &hn)) {
        tokn = hn < sizeof tok ? hn : sizeof tok - 1;
        memcpy(tok, hv, tokn);
    } else if (!query_param(r, "token", tok, sizeof tok, &tokn, &bad) && bad) {
        http_error(c, 400, "invalid_request", "the token parameter is malformed", NULL);
        return NULL;
    }
    rs_log_t *lg = rs_hold(id, *idn, v);
    if (!lg) {
        uint64_t after = 0;
        if (remote && !last_event_id(r, id, *idn, &after, &bad))
            http_error(c, 400, "invalid_last_event_id", "Last-Event-ID must be <runId>:<seq> of this run", NULL);
        else if (!remote || !rsx_events(c, id, *idn, tok, tokn, named ? who : NULL, after))
            http_error(c, 404, "run_not_found", "no resumable run by that id is known here", NULL);
        return NULL;
    }
    bool by_token = token_equal(tok, tokn, v->token);
    bool by_who = named && v->who_set && !memcmp(who, v->who, 16);
    if (!by_token && !by_who) {
        rs_unhold(lg);
        http_error(c, 403, "forbidden",
                   tokn ? "the resume token does not match this run"
                        : "this run needs its resume token (X-Agate-Resume-Token or ?token=) or the identity that started it",
                   NULL);
        return NULL;
    }
    return lg;
}

/* "<runId>:<seq>" for run id; *seq 0 when none was sent. False when malformed. */
static bool last_event_id(const http_req_t *r, const char *id, size_t idn, uint64_t *seq, bool *bad)
{
    char buf[RS_ID_CAP + 32];
    size_t n = 0;
    const char *hv;
    *seq = 0;
    if (http_header(r, "last-event-id", &hv, &n)) {
        if (n >= sizeof buf)
            return false;
        memcpy(buf, hv, n);
    } else if (!query_param(r, "last_event_id", buf, sizeof buf, &n, bad)) {
        return !*bad;
    }
    if (!n)
        return true;
    const char *colon = NULL;
    for (size_t i = n; i-- > 0;)
        if (buf[i] == ':') {
            colon = buf + i;
            break;
        }
    if (!colon || (size_t)(colon - buf) != idn || memcmp(buf, id, idn) || colon + 1 == buf + n)
        return false;
    uint64_t v = 0;
    for (const char *p = colon + 1; p < buf + n; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *seq = v;
    return true;
}

void resume_http_events(conn_t *c, const char *pid, size_t plen)
{
    char id[RS_ID_CAP];
    size_t idn;
    rs_view_t v;
    uint64_t after;
    bool bad = false;
    rs_log_t *lg = authorize(c, pid, plen, id, &idn, &v, true);
    if (!lg)
        return;
    if (!last_event_id(&c->http.req, id, idn, &after, &bad)) {
        rs_unhold(lg);
        http_error(c, 400, "invalid_last_event_id", "Last-Event-ID must be <runId>:<seq> of this run", NULL);
        return;
    }
    if (v.expired) {
        rs_unhold(lg);
        http_error(c, 410, "resume_log_expired", "this run's log was dropped after resume.log_ttl", NULL);
        return;
    }
    if (after > v.last_seq) {
        rs_unhold(lg);
        http_error(c, 400, "invalid_last_event_id", "Last-Event-ID is past this run's last event", NULL);
        return;
    }
    if (after + 1 < v.first_seq) {
        rs_unhold(lg);
        http_error(c, 410, "resume_log_truncated",
                   "the events after Last-Event-ID were dropped from the run's log (resume.max_bytes)", NULL);
        return;
    }
    const cfg_agent_t *agent = cfg_find_agent(c->sh->cfg, v.agent, strlen(v.agent));
    if (!agent) {
        rs_unhold(lg);
        http_error(c, 404, "agent_not_found", "the run's agent is no longer configured", NULL);
        return;
    }
    run_t *r = sse_client_run(c, agent);
    if (!r) {
        rs_unhold(lg);
        return;   /* 503 answered */
    }
    rs_follow(r, lg, after);   /* the hold becomes the follower's */
}

void resume_http_cancel(conn_t *c, const char *pid, size_t plen)
{
    char id[RS_ID_CAP], body[64 + RS_ID_CAP];
    size_t idn;
    rs_view_t v;
    rs_log_t *lg = authorize(c, pid, plen, id, &idn, &v, false);
    if (!lg)
        return;
    if (!v.running) {
        rs_unhold(lg);
        http_error(c, 409, "run_not_running", "the run has already ended", NULL);
        return;
    }
    rs_cancel(lg);
    rs_unhold(lg);
    int n = snprintf(body, sizeof body, "{\"cancelled\":true}\n");
    http_respond(c, 202, "application/json", body, (size_t)n, NULL);
}
