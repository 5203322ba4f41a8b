/* resume_http: the endpoints of resumable runs (see resume.h).
 *
 *   GET    /v1/runs/{runId}/events   the run's events after Last-Event-ID (the
 *          header, or ?last_event_id=), "<runId>:<seq>"; without one, the whole
 *          run from RUN_STARTED; then the live ones, then the end.
 *   DELETE /v1/runs/{runId}          cancels the run now (202), 409 when it
 *          has already ended. A run this process does not have is looked
 *          for in Redis (net/runlog_redis.h): another pod's run is followed
 *          from its stream, or cancelled by its owner at the owner's next write.
 *
 * Who may: the holder of the run's resume token (X-Agate-Resume-Token, or
 * ?token= for EventSource, which cannot set headers), or the identity that
 * started the run when it was an authenticated one. Answers, JSON: 400 a
 * malformed id; 401 bad credentials; 404 an unknown run (run ids are the
 * client's and not secret, so saying a run exists gives nothing away); 403
 * neither the token nor the identity; 410 a log dropped after log_ttl, or an
 * id before the front the log's bound dropped. A run that ended before its
 * first event (a rate limit refused it) has nothing to resume: 404. Cold path. */
#include <errno.h>
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

/* "<runId>:<seq>" of run id into *seq (0: none given). False when malformed. */
static bool parse_last_id(const char *p, size_t n, const char *id, size_t idn, uint64_t *seq)
{
    *seq = 0;
    if (!p || !n)
        return true;
    const char *colon = NULL;
    for (size_t i = n; i-- > 0;)
        if (p[i] == ':') {
            colon = p + i;
            break;
        }
    if (!colon || (size_t)(colon - p) != idn || memcmp(p, id, idn) || colon + 1 == p + n)
        return false;
    uint64_t v = 0;
    for (const char *q = colon + 1; q < p + n; q++) {
        if (*q < '0' || *q > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*q - '0');
    }
    *seq = v;
    return true;
}

int resume_open(const resume_req_t *q, struct rs_log **out, uint64_t *after, resume_refusal_t *no)
{
    rs_view_t v;
    *out = NULL;
    if (!parse_last_id(q->last_id, q->last_len, q->id, q->id_len, after)) {   /* syntax first: no lookup */
        *no = (resume_refusal_t){400, "invalid_last_event_id", "Last-Event-ID must be <runId>:<seq> of this run"};
        return -EINVAL;
    }
    rs_log_t *lg = rs_hold(q->id, q->id_len, &v);
    if (lg && !v.running && !v.last_seq) {   /* ended before its first event (a limit refused it, no upstream): */
        rs_unhold(lg);                        /* its client had the error, there is nothing to resume */
        lg = NULL;
    }
    if (!lg) {
        *no = (resume_refusal_t){404, "run_not_found", "no resumable run by that id is known here"};
        return -ENOENT;
    }
    bool by_token = token_equal(q->token ? q->token : "", q->token ? q->token_len : 0, v.token);
    bool by_who = q->who && v.who_set && !memcmp(q->who, v.who, 16);
    if (!by_token && !by_who)
        *no = (resume_refusal_t){403, "forbidden",
                                 q->token_len ? "the resume token does not match this run"
                                              : "this run needs its resume token (X-Agate-Resume-Token or ?token=) or the identity that started it"};
    else if (v.expired)
        *no = (resume_refusal_t){410, "resume_log_expired", "this run's log was dropped after resume.log_ttl"};
    else if (*after > v.last_seq)
        *no = (resume_refusal_t){400, "invalid_last_event_id", "Last-Event-ID is past this run's last event"};
    else if (*after + 1 < v.first_seq)
        *no = (resume_refusal_t){410, "resume_log_truncated",
                                 "the events after Last-Event-ID were dropped from the run's log (resume.max_bytes)"};
    else if (q->agent && strcmp(q->agent, v.agent))
        *no = (resume_refusal_t){404, "run_not_found", "no resumable run by that id is known for this agent"};
    else {
        snprintf(q->agent_out, CFG_NAME_MAX, "%s", v.agent);
        *out = lg;
        return 0;
    }
    rs_unhold(lg);
    return -EPERM;
}

void resume_follow(run_t *r, struct rs_log *lg, uint64_t after) { rs_follow(r, lg, after); }
void resume_close(struct rs_log *lg) { rs_unhold(lg); }

/* The request's run id, token, identity and last id; false when answered. */
static bool read_request(conn_t *c, const char *pid, size_t plen, resume_req_t *q, char *id, char *tok, char *last,
                         uint8_t who[16])
{
    http_req_t *r = &c->http.req;
    bool named, bad = false;
    const char *hv;
    size_t hn;
    memset(q, 0, sizeof *q);
    if (!pct_decode(pid, plen, id, RS_ID_CAP, &q->id_len) || !q->id_len) {
        http_error(c, 400, "invalid_run_id", "the run id in the path is malformed or longer than 127 bytes", NULL);
        return false;
    }
    q->id = id;
    if (!access_http_who(c, who, &named))
        return false;   /* 400/401 answered */
    q->who = named ? who : NULL;
    if (http_header(r, "x-agate-resume-token", &hv, &hn)) {
        q->token_len = hn < 63 ? hn : 63;
        memcpy(tok, hv, q->token_len);
    } else if (!query_param(r, "token", tok, 64, &q->token_len, &bad) && bad) {
        http_error(c, 400, "invalid_request", "the token parameter is malformed", NULL);
        return false;
    }
    q->token = tok;
    if (http_header(r, "last-event-id", &hv, &hn)) {
        if (hn >= RS_ID_CAP + 32) {
            http_error(c, 400, "invalid_last_event_id", "Last-Event-ID must be <runId>:<seq> of this run", NULL);
            return false;
        }
        memcpy(last, hv, hn);
        q->last_len = hn;
    } else if (!query_param(r, "last_event_id", last, RS_ID_CAP + 32, &q->last_len, &bad) && bad) {
        http_error(c, 400, "invalid_last_event_id", "Last-Event-ID must be <runId>:<seq> of this run", NULL);
        return false;
    }
    q->last_id = last;
    return true;
}

void resume_http_events(conn_t *c, const char *pid, size_t plen)
{
    char id[RS_ID_CAP], tok[64], last[RS_ID_CAP + 32], agent[CFG_NAME_MAX];
    uint8_t who[16];
    resume_req_t q;
    resume_refusal_t no;
    struct rs_log *lg;
    uint64_t after;
    if (!read_request(c, pid, plen, &q, id, tok, last, who))
        return;
    q.agent_out = agent;
    int rc = resume_open(&q, &lg, &after, &no);
    if (rc == -ENOENT && rsx_events(c, q.id, q.id_len, q.token, q.token_len, q.who, after))
        return;   /* another pod's run, from Redis (net/runlog_redis.h): answered there */
    if (rc) {
        http_error(c, no.status, no.code, no.msg, NULL);
        return;
    }
    const cfg_agent_t *a = cfg_find_agent(c->sh->cfg, agent, strlen(agent));
    run_t *r = a ? sse_client_run(c, a) : NULL;
    if (!r) {
        rs_unhold(lg);
        if (!a)
            http_error(c, 404, "agent_not_found", "the run's agent is no longer configured", NULL);
        return;   /* (503 answered by sse_client_run) */
    }
    rs_follow(r, lg, after);   /* the hold becomes the follower's */
}

void resume_http_cancel(conn_t *c, const char *pid, size_t plen)
{
    char id[RS_ID_CAP], tok[64], last[RS_ID_CAP + 32], agent[CFG_NAME_MAX];
    uint8_t who[16];
    resume_req_t q;
    resume_refusal_t no;
    struct rs_log *lg;
    uint64_t after;
    rs_view_t v;
    if (!read_request(c, pid, plen, &q, id, tok, last, who))
        return;
    q.last_len = 0;   /* a cancel names no event */
    q.agent_out = agent;
    int rc = resume_open(&q, &lg, &after, &no);
    if (rc == -ENOENT && rsx_cancel(c, q.id, q.id_len, q.token, q.token_len, q.who))
        return;   /* another pod's run: its owner is asked through Redis (net/runlog_redis.h) */
    if (rc) {
        http_error(c, no.status, no.code, no.msg, NULL);
        return;
    }
    rs_unhold(lg);
    lg = rs_hold(id, q.id_len, &v);   /* (still there: only its owner drops it, never while held) */
    if (!lg || !v.running) {
        if (lg)
            rs_unhold(lg);
        http_error(c, 409, "run_not_running", "the run has already ended", NULL);
        return;
    }
    rs_cancel(lg);
    rs_unhold(lg);
    static const char body[] = "{\"cancelled\":true}\n";
    http_respond(c, 202, "application/json", body, sizeof body - 1, NULL);
}
