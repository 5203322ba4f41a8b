/* access_http: the access module's answers on HTTP. A refused run, WebSocket
 * upgrade or admin request gets 400/401/403/429 with a JSON body and the WWW-Authenticate,
 * Retry-After and RateLimit-* lines a client needs to act on it; a CORS
 * preflight is answered here; every response head gets the security headers,
 * the CORS lines for an allowed Origin and the quota of the request it
 * answers (one response: the quota is cleared once written). Reads the policy
 * once per call and keeps nothing of it. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/digest.h"
#include "core/json.h"
#include "core/shard.h"
#include "net/access_int.h"
#include "net/conn.h"
#include "net/gwmetrics.h"
#include "net/http1.h"

/* ---- HTTP ---- */

static void count_reject(conn_t *c, access_verdict_t v)
{
    if (!c->sh || !gwm(c->sh))
        return;
    enum metrics_reject why = v == ACCESS_RATE_LIMITED || v == ACCESS_UNAVAILABLE ? MRJ_RATE_LIMITED
                            : v == ACCESS_FORBIDDEN ? MRJ_FORBIDDEN
                            : v == ACCESS_BAD_REQUEST ? MRJ_BAD_REQUEST : MRJ_UNAUTHORIZED;
    metrics_add(&gwm(c->sh)->rejected[why], 1);
}

void access_http_refuse(conn_t *c, const access_decision_t *d)
{
    char extra[384];
    buf_t *b = &c->sh->scratch;
    int status = d->verdict == ACCESS_RATE_LIMITED ? 429 : d->verdict == ACCESS_FORBIDDEN ? 403
               : d->verdict == ACCESS_BAD_REQUEST ? 400 : d->verdict == ACCESS_UNAVAILABLE ? 503 : 401;
    extra[0] = 0;
    if (status == 401 && !strcmp(d->error, "unauthorized"))
        snprintf(extra, sizeof extra, "WWW-Authenticate: Bearer realm=\"agate\"\r\n");
    else if (status == 401 || status == 400)   /* 400: invalid_request, two ways (RFC 6750 3.1) */
        snprintf(extra, sizeof extra, "WWW-Authenticate: Bearer realm=\"agate\", error=\"%s\", "
                 "error_description=\"%s\"\r\n", d->error, d->message);
    else if (status == 403)
        snprintf(extra, sizeof extra, "WWW-Authenticate: Bearer realm=\"agate\", error=\"insufficient_scope\", "
                 "scope=\"%s\"\r\n", d->scope);
    else   /* 429, 503 */
        snprintf(extra, sizeof extra, "Retry-After: %u\r\n", d->quota.retry_s ? d->quota.retry_s : 1);
    c->quota = d->quota;
    count_reject(c, d->verdict);
    buf_reset(b);
    buf_append_lit(b, "{\"error\":");
    json_put_str(b, d->error, strlen(d->error));
    buf_append_lit(b, ",\"message\":");
    json_put_str(b, d->message, strlen(d->message));
    if (status == 403) {
        buf_append_lit(b, ",\"scope\":");
        json_put_str(b, d->scope, strlen(d->scope));
    }
    if (status == 429) {
        buf_append_lit(b, ",\"retry_after\":");
        buf_append_u64(b, d->quota.retry_s);
        buf_append_lit(b, ",\"limit\":");
        buf_append_u64(b, d->quota.limit);
        buf_append_lit(b, ",\"remaining\":");
        buf_append_u64(b, d->quota.remaining);
        buf_append_lit(b, ",\"reset\":");
        buf_append_u64(b, d->quota.reset_s);
    }
    buf_append_lit(b, "}\n");
    http_respond(c, status, "application/json", b->data, b->len, extra);
}

bool access_http_run(conn_t *c, const cfg_agent_t *agent, rl_holds_t *holds)
{
    access_policy_t *p = access_policy();
    c->quota.set = false;
    c->who_set = false;
    holds->n = 0;
    if (!p || (!p->auth_on && !p->n_rules))
        return true;
    access_ident_t id;
    access_decision_t d;
    if (access_policy_identify(p, c, &c->http.req, false, &id, &d) ||
        access_admit(c->sh, &id, c->sh->cfg, agent, holds, &d)) {
        access_http_refuse(c, &d);
        return false;
    }
    c->quota = d.quota;
    /* (a digest libcrypto cannot make leaves the run to its token alone) */
    c->who_set = agent->resume_enabled && id.kind != ACCESS_ANON && !access_ident_digest(&id, c->who);
    return true;
}

int access_ident_digest(const access_ident_t *id, uint8_t out[16])
{
    uint8_t in[1 + ACCESS_VAL_MAX], h[DIGEST_SHA256_LEN];
    in[0] = (uint8_t)id->kind;
    memcpy(in + 1, id->name, id->name_len);
    int rc = digest_sha256(in, 1u + id->name_len, h);
    if (!rc)
        memcpy(out, h, 16);
    return rc;
}

bool access_http_who(conn_t *c, uint8_t who[16], bool *named)
{
    access_policy_t *p = access_policy();
    access_ident_t id;
    access_decision_t d;
    *named = false;
    if (!p || !p->auth_on)
        return true;
    if (access_policy_identify(p, c, &c->http.req, false, &id, &d)) {
        access_http_refuse(c, &d);
        return false;
    }
    *named = id.kind != ACCESS_ANON && !access_ident_digest(&id, who);
    return true;
}

bool access_http_upgrade(conn_t *c, const cfg_agent_t *agent, access_ident_t *id)
{
    access_policy_t *p = access_policy();
    access_decision_t d;
    if (!p) {
        memset(id, 0, sizeof *id);
        return true;
    }
    /* The endpoint names one agent, so "may this caller run it" is known now:
     * an upgrade that every run would be refused on is refused itself. */
    if (access_policy_identify(p, c, &c->http.req, true, id, &d) ||
        access_authorize(p, id, agent, agent->slot, &d)) {
        c->http.req.keep_alive = false;   /* llhttp took it as an upgrade: no more HTTP after it */
        access_http_refuse(c, &d);
        return false;
    }
    return true;
}

bool access_http_admin(conn_t *c)
{
    access_policy_t *p = access_policy();
    if (!p || !p->auth_on || !p->cfg.metrics_need_admin)
        return true;
    access_ident_t id;
    access_decision_t d;
    if (!access_policy_identify(p, c, &c->http.req, false, &id, &d)) {
        if (id.kind == ACCESS_ANON) {
            access_refuse_401(&d, "unauthorized", "credentials required: Authorization: Bearer <token or API key>");
        } else if (!access_has_scope_str(&id, "admin")) {
            d.verdict = ACCESS_FORBIDDEN;
            d.error = "insufficient_scope";
            d.message = "the credentials lack a scope this route requires";
            snprintf(d.scope, sizeof d.scope, "admin");
        } else {
            return true;
        }
    }
    access_http_refuse(c, &d);
    return false;
}

/* The request's Origin if CORS is on and it is allowed; NULL otherwise. */
static const char *allowed_origin(const access_policy_t *p, const http_req_t *r, size_t *len)
{
    const char *v;
    if (!p->cors_on || !http_header(r, "origin", &v, len) || !*len)
        return NULL;
    if (p->any_origin)
        return v;
    for (uint32_t i = 0; i < p->cfg.n_origins; i++)
        if (strlen(p->cfg.origins[i]) == *len && !strncasecmp(p->cfg.origins[i], v, *len))
            return v;
    return NULL;
}

bool access_http_preflight(conn_t *c, const char *allow)
{
    access_policy_t *p = access_policy();
    const http_req_t *r = &c->http.req;
    const char *v;
    size_t n;
    if (!p || !p->cors_on || !http_header(r, "origin", &v, &n) ||
        !http_header(r, "access-control-request-method", &v, &n))
        return false;
    if (!allowed_origin(p, r, &n)) {
        http_error(c, 403, "origin_not_allowed", "this origin may not call the API (CORS)", NULL);
        return true;
    }
    char extra[1024];
    snprintf(extra, sizeof extra,
             "%sAccess-Control-Allow-Methods: %s\r\nAccess-Control-Allow-Headers: %s\r\n"
             "Access-Control-Max-Age: %u\r\n",
             allow, p->cfg.cors_methods, p->cfg.cors_headers, p->cfg.cors_max_age_ms / 1000);
    http_respond(c, 204, NULL, NULL, 0, extra);
    return true;
}

static const char SECURITY_HEADERS[] =
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "X-Frame-Options: DENY\r\n";
/* For the API; an HTML page (the demo, net/demo.c) sends its own, which lets
 * exactly its inline script and style run. */
static const char API_CSP[] = "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n";

#define QUOTA_LIT(w, lit) (memcpy(w, lit, sizeof lit - 1), w += sizeof lit - 1)

/* The RateLimit-* and X-RateLimit-* headers of an allowed or refused request,
 * written straight into the head: each number formatted once, after its
 * RateLimit- name, and its X- copy a fixed 20-byte move of which the digits
 * are kept. Six appends with their conversions were ~1000 instructions per
 * response (callgrind), a stack buffer and variable copies 449. */
#define QUOTA_MAX (128 + 6 * 20 + 20)   /* names and line ends, digits, the last copy's overrun */
static void put_quota(buf_t *b, const rl_quota_t *q)
{
    if (buf_reserve(b, QUOTA_MAX))
        return;
    char *w = b->data + b->len, *lim, *rem, *rst;
    size_t ll, rl, sl;
    QUOTA_LIT(w, "RateLimit-Limit: ");
    lim = w;
    w += ll = buf_fmt_u64(w, q->limit);
    QUOTA_LIT(w, "\r\nRateLimit-Remaining: ");
    rem = w;
    w += rl = buf_fmt_u64(w, q->remaining);
    QUOTA_LIT(w, "\r\nRateLimit-Reset: ");
    rst = w;
    w += sl = buf_fmt_u64(w, q->reset_s);
    QUOTA_LIT(w, "\r\nX-RateLimit-Limit: ");
    memcpy(w, lim, 20);
    w += ll;
    QUOTA_LIT(w, "\r\nX-RateLimit-Remaining: ");
    memcpy(w, rem, 20);
    w += rl;
    QUOTA_LIT(w, "\r\nX-RateLimit-Reset: ");
    memcpy(w, rst, 20);
    w += sl;
    QUOTA_LIT(w, "\r\n");
    b->len = (size_t)(w - b->data);
}

void access_head_headers(conn_t *c, buf_t *b, const char *ctype)
{
    access_policy_t *p = access_policy();
    if (c->quota.set) {
        put_quota(b, &c->quota);
        c->quota.set = false;   /* one response */
    }
    if (!p || !p->active)
        return;
    if (p->cfg.security_headers) {
        buf_append(b, SECURITY_HEADERS, sizeof SECURITY_HEADERS - 1);
        if (!ctype || strncmp(ctype, "text/html", 9))
            buf_append(b, API_CSP, sizeof API_CSP - 1);
        /* Streams (SSE, protobuf) and the demo page say their own Cache-Control. */
        if (ctype && strncmp(ctype, "text/event-stream", 17) && strncmp(ctype, "text/html", 9) &&
            strncmp(ctype, "application/vnd.ag-ui.event+proto", 33))
            buf_append_lit(b, "Cache-Control: no-store\r\n");
    }
    if (p->cors_on) {
        size_t n;
        const char *o = allowed_origin(p, &c->http.req, &n);
        buf_append_lit(b, "Vary: Origin\r\n");
        if (o) {
            buf_append_lit(b, "Access-Control-Allow-Origin: ");
            if (p->any_origin && !p->cfg.cors_credentials)
                buf_append_lit(b, "*");
            else
                buf_append(b, o, n);
            buf_append_lit(b, "\r\n");
            if (p->cfg.cors_credentials)
                buf_append_lit(b, "Access-Control-Allow-Credentials: true\r\n");
            if (p->cfg.cors_expose[0]) {
                buf_append_lit(b, "Access-Control-Expose-Headers: ");
                buf_append(b, p->cfg.cors_expose, strlen(p->cfg.cors_expose));
                buf_append_lit(b, "\r\n");
            }
        }
    }
}
