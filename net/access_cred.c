/* access_cred: where a request's credential is, before anything checks it.
 *
 * Over HTTP a caller sends `Authorization: Bearer <token>` (a JWT or an API
 * key) or the API key header (auth.api_key_header); Authorization wins when
 * both are there. A browser's WebSocket API can set neither, so a WebSocket
 * upgrade may also carry the token
 *   - as a Sec-WebSocket-Protocol entry, `bearer.agate.<token>` when the token
 *     is an RFC 7230 token (a JWT, most API keys), or
 *     `base64url.bearer.agate.<base64url(token), unpadded>` for any other
 *     bytes (the scheme Kubernetes uses for its own prefix); the entry is
 *     never selected, so it is never echoed in the 101;
 *   - as the `access_token` query parameter (RFC 6750 2.3), percent-decoded;
 *     `+` stays `+` (a token holds no space, and a raw `+` is far likelier the
 *     token's own). Only the path is ever logged or put in a span, never the
 *     query, so the token is not recorded.
 * One way per request (RFC 6750 2: a client MUST NOT use more than one): a
 * header credential and a browser one, two protocol entries or two
 * access_token parameters are 400 invalid_request. An access_token outside an
 * upgrade is 400 too: such a request can send a header, and a token in its
 * URL has already been exposed to whatever logs URLs on the way.
 *
 * Pure parsing over the request's header table and URL: no policy, no
 * allocation. A decoded token is copied into the caller's access_cred_t,
 * which access_cred_wipe clears once the token has been checked. */
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "core/jwt.h"
#include "net/access_int.h"
#include "net/http1.h"

#define PROTO_BEARER "bearer.agate."
#define PROTO_B64    "base64url.bearer.agate."
#define QUERY_NAME   "access_token"

static access_verdict_t refuse(access_decision_t *d, access_verdict_t v, const char *msg)
{
    d->verdict = v;
    d->error = "invalid_request";
    d->message = msg;
    return v;
}

static bool has_prefix(const char *s, size_t n, const char *pre, size_t pl)
{
    return n >= pl && !memcmp(s, pre, pl);
}

/* The header credential: Authorization (Bearer only) before the key header. */
static access_verdict_t from_headers(const char *key_header, const http_req_t *r, access_cred_t *cr,
                                     access_decision_t *d)
{
    const char *v;
    size_t n;
    /* Two of either would leave "which one counts" to whoever reads them next
     * (a proxy in front, the agent behind): refused, not first-wins. */
    if (http_header_count(r, "authorization") > 1 || (key_header[0] && http_header_count(r, key_header) > 1))
        return refuse(d, ACCESS_BAD_REQUEST, "credentials sent more than once: one Authorization or API key header");
    if (http_header(r, "authorization", &v, &n)) {
        if (n < 7 || strncasecmp(v, "Bearer ", 7))
            return refuse(d, ACCESS_UNAUTHORIZED, "Authorization must be Bearer <token>");
        v += 7;
        n -= 7;
        while (n && *v == ' ')
            v++, n--;
        while (n && v[n - 1] == ' ')
            n--;
        if (!n)
            return refuse(d, ACCESS_UNAUTHORIZED, "empty bearer token");
        *cr = (access_cred_t){.kind = ACCESS_CRED_BEARER, .tok = v, .len = n};
    } else if (key_header[0] && http_header(r, key_header, &v, &n)) {
        *cr = (access_cred_t){.kind = ACCESS_CRED_KEY, .tok = v, .len = n};
    }
    return ACCESS_ALLOW;
}

/* One Sec-WebSocket-Protocol entry; *found when it is a credential. */
static access_verdict_t proto_entry(const char *s, size_t n, access_cred_t *cr, access_decision_t *d, bool *found)
{
    size_t pl;
    *found = false;
    if (has_prefix(s, n, PROTO_B64, pl = sizeof PROTO_B64 - 1)) {
        long got = jwt_b64url_decode(s + pl, n - pl, (uint8_t *)cr->buf, sizeof cr->buf);
        size_t most = (n - pl) / 4 * 3 + 2;   /* what a failed decode may have written: wiped */
        cr->decoded = true;
        cr->len = got > 0 ? (size_t)got : most < sizeof cr->buf ? most : sizeof cr->buf;
        if (got <= 0)
            return refuse(d, ACCESS_UNAUTHORIZED, got < 0 ? "the base64url.bearer.agate. protocol entry is not "
                                                            "base64url (unpadded) of at most 8192 bytes"
                                                          : "empty bearer token");
        cr->tok = cr->buf;
    } else if (has_prefix(s, n, PROTO_BEARER, pl = sizeof PROTO_BEARER - 1)) {
        if (n == pl)
            return refuse(d, ACCESS_UNAUTHORIZED, "empty bearer token");
        cr->tok = s + pl;
        cr->len = n - pl;
    } else {
        return ACCESS_ALLOW;
    }
    cr->kind = ACCESS_CRED_BEARER;
    *found = true;
    return ACCESS_ALLOW;
}

/* Every entry of every Sec-WebSocket-Protocol line; *count credentials seen. */
static access_verdict_t from_protocols(const http_req_t *r, access_cred_t *cr, access_decision_t *d, unsigned *count)
{
    static const char name[] = "sec-websocket-protocol";
    for (uint32_t h = 0; h < r->n_hdrs; h++) {
        const http_hdr_t *hd = &r->hdrs[h];
        if (hd->name.len != sizeof name - 1 || strncasecmp(http_str(r, hd->name), name, sizeof name - 1))
            continue;
        const char *v = http_str(r, hd->value);
        size_t pos = 0, len;
        const char *el;
        while (http_list_next(v, hd->value.len, &pos, &el, &len)) {
            if (*count && (has_prefix(el, len, PROTO_BEARER, sizeof PROTO_BEARER - 1) ||
                           has_prefix(el, len, PROTO_B64, sizeof PROTO_B64 - 1))) {
                ++*count;   /* a second credential: not decoded, the request is refused */
                continue;
            }
            bool found;
            if (proto_entry(el, len, cr, d, &found))
                return d->verdict;
            *count += found;
        }
    }
    return ACCESS_ALLOW;
}

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
         : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* The access_token parameter's value, percent-decoded into cr->buf when it
 * holds escapes. */
static access_verdict_t query_value(const char *s, size_t n, access_cred_t *cr, access_decision_t *d)
{
    if (!n)
        return refuse(d, ACCESS_UNAUTHORIZED, "empty bearer token");
    if (!memchr(s, '%', n)) {
        cr->tok = s;
        cr->len = n;
    } else {
        cr->decoded = true;   /* cr->len bytes of buf are wiped by access_cred_wipe, whatever happens */
        cr->len = 0;
        for (size_t i = 0; i < n; i++) {
            if (cr->len == sizeof cr->buf)
                return refuse(d, ACCESS_UNAUTHORIZED, "access_token is longer than 8192 bytes");
            char ch = s[i];
            if (ch == '%') {
                int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = hi >= 0 ? hexval(s[i + 2]) : -1;
                if (lo < 0)
                    return refuse(d, ACCESS_UNAUTHORIZED, "access_token: every % must start a %XX escape");
                ch = (char)(hi << 4 | lo);
                i += 2;
            }
            cr->buf[cr->len++] = ch;
        }
        cr->tok = cr->buf;
    }
    cr->kind = ACCESS_CRED_BEARER;
    return ACCESS_ALLOW;
}

/* Every access_token parameter of the query; *count of them. The value is
 * taken only when `take` and it is the first credential of the request. */
static access_verdict_t from_query(const http_req_t *r, bool take, access_cred_t *cr, access_decision_t *d,
                                   unsigned *count)
{
    const char *u = http_str(r, r->url), *end = u + r->url.len, *q = memchr(u, '?', r->url.len);
    if (!q)
        return ACCESS_ALLOW;
    const size_t nl = sizeof QUERY_NAME - 1;
    for (const char *p = q + 1; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *pe = amp ? amp : end;
        size_t pn = (size_t)(pe - p);
        if (pn >= nl && !memcmp(p, QUERY_NAME, nl) && (pn == nl || p[nl] == '=')) {
            if (take && !*count && query_value(p + nl + (pn > nl), pn - nl - (pn > nl), cr, d))
                return d->verdict;
            ++*count;
        }
        p = pe + 1;
    }
    return ACCESS_ALLOW;
}

access_verdict_t access_cred_find(const char *key_header, const http_req_t *r, bool upgrade, access_cred_t *cr,
                                  access_decision_t *d)
{
    cr->kind = ACCESS_CRED_NONE;
    cr->decoded = false;
    if (from_headers(key_header, r, cr, d))
        return d->verdict;
    unsigned count = cr->kind != ACCESS_CRED_NONE, in_query = 0;
    bool has_query = r->url.len > r->path.len;
    if (!upgrade) {
        if (has_query && from_query(r, false, cr, d, &in_query))
            return d->verdict;
        if (in_query)
            return refuse(d, ACCESS_BAD_REQUEST, "access_token is accepted on a WebSocket upgrade only: "
                                                 "send Authorization: Bearer <token>");
        return ACCESS_ALLOW;
    }
    if (from_protocols(r, cr, d, &count) || (has_query && from_query(r, true, cr, d, &count))) {
        access_cred_wipe(cr);
        return d->verdict;
    }
    if (count > 1) {
        access_cred_wipe(cr);
        return refuse(d, ACCESS_BAD_REQUEST, "send the credential one way only: Authorization, the API key "
                                             "header, a bearer.agate. protocol entry or access_token");
    }
    return ACCESS_ALLOW;
}

void access_cred_wipe(access_cred_t *cr)
{
    if (cr->decoded)
        OPENSSL_cleanse(cr->buf, cr->len);
    cr->decoded = false;
}
