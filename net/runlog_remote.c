/* runlog_remote: GET /v1/runs/{id}/events, WebSocket RESUME, DELETE
 * /v1/runs/{id} and WebSocket CANCEL for a run another pod runs, from its
 * Redis Stream (see runlog_redis.h).
 *
 * The request waits for one script call (the run's meta and its first
 * entries) with no run yet: the reply finds its connection again by
 * reference (conn_ref/conn_lookup), since the client may have gone. Then the
 * client is a run of this kind: it writes the entries to its sink and polls
 * the stream every resume.redis_poll for more (the read script, XRANGE from
 * the next id; never a blocking read, which would stall the shard's pipelined
 * connection), until the end entry. A sink over its bound stops the polling
 * until it drains (the kind's resume). A WebSocket RESUME is the same
 * follower, but its run (and slot) exists from the start, so the meta's
 * answer is the run's first read. A cancel is one script (the cancel key,
 * which the owner's next write reads). Cold path but for the entries' loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/digest.h"
#include "core/redis.h"
#include "net/conn.h"
#include "net/http1.h"
#include "net/resume.h"
#include "net/runlog_redis.h"
#include "net/runlog_redis_int.h"
#include "net/sse.h"
#include "proto/run.h"

#define RSX_READ_COUNT "128"
#define RSX_READ_N     128

static const char k_lost_json[] =
    "{\"type\":\"RUN_ERROR\",\"message\":\"the gateway running this run stopped before its end\","
    "\"code\":\"gateway_restarted\"}";

/* A request waiting for the run's meta. */
typedef struct rsx_open {
    uint64_t ref;
    char     id[RSX_ID_MAX];
    uint16_t idn;
    char     tok_hash[65];      /* sha256 of the sent token, hex; "" none */
    char     who[33];           /* the caller's identity digest, hex; "" anonymous */
    uint64_t after;
} rsx_open_t;

/* A remote follower: the run's per-run state. */
typedef struct rsx_f {
    run_t        *r;
    char          id[RSX_ID_MAX];
    uint16_t      idn;
    char          tok_hash[65]; /* the credentials it was let in with: for a CANCEL */
    char          who[33];
    uint64_t      next;         /* the seq it wants next */
    uint64_t      handle;       /* the read in flight, 0 none */
    uint64_t      err_since_ms; /* reads failing since, 0 when the last one worked */
    agate_timer_t poll;
    bool          active;
} rsx_f_t;

enum { RF_MORE, RF_FULL, RF_BLOCKED, RF_DONE };

static unsigned g_rsx_ext;

static inline rsx_f_t *rf_of(const run_t *r) { return (rsx_f_t *)r->ext[g_rsx_ext]; }

static void hex(char *out, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* The keys of run id and the script's other arguments, into av/al. */
static int script_args(shard_t *sh, const char *id, size_t idn, char keys[RSXK_N][RSX_KEY_MAX], const char **av,
                       size_t *al)
{
    size_t kl[RSXK_N];
    rsx_keys(sh->cfg, id, idn, keys, kl);
    for (int i = 0; i < RSXK_N; i++) {
        av[i] = keys[i];
        al[i] = kl[i];
    }
    return RSXK_N;
}

/* The read script for run id from `first` ("<seq>-<0|1>"). */
static uint64_t read_issue(shard_t *sh, const char *id, size_t idn, uint64_t from_seq, bool meta,
                           redis_reply_fn fn, void *ctx)
{
    char keys[RSXK_N][RSX_KEY_MAX], first[32], px[16];
    const char *av[RSXK_N + 5];
    size_t al[RSXK_N + 5];
    int c = script_args(sh, id, idn, keys, av, al);
    int fl = snprintf(first, sizeof first, "%llu-1", (unsigned long long)from_seq);
    int pl = snprintf(px, sizeof px, "%u", 3 * resume_conf(sh->cfg)->rsx.heartbeat_ms);
    const char *more[] = {first, RSX_READ_COUNT, meta ? "1" : "0", k_lost_json, px};
    size_t ml[] = {(size_t)fl, strlen(RSX_READ_COUNT), 1, sizeof k_lost_json - 1, (size_t)pl};
    for (int i = 0; i < 5; i++, c++) {
        av[c] = more[i];
        al[c] = ml[i];
    }
    RSX_COUNT(sh, polls, 1);
    return redis_evalsha(sh, g_rsx_script_read, fn, ctx, 0, RSXK_N, c, av, al);
}

/* A read's reply has the shape the read script gives. */
static bool read_reply_ok(const redisReply *rep, int err)
{
    return !err && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 4 &&
           rep->element[1]->type == REDIS_REPLY_ARRAY && rep->element[2]->type == REDIS_REPLY_INTEGER &&
           rep->element[3]->type == REDIS_REPLY_INTEGER;
}

static const redisReply *field(const redisReply *kv, const char *name)
{
    if (!kv || kv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING && !strcmp(kv->element[i]->str, name))
            return kv->element[i + 1];
    return NULL;
}

static bool parse_id(const redisReply *e, uint64_t *seq, bool *end)
{
    if (!e || e->type != REDIS_REPLY_STRING)
        return false;
    char *dash;
    unsigned long long s = strtoull(e->str, &dash, 10);
    if (*dash != '-')
        return false;
    *seq = s;
    *end = dash[1] == '1';
    return true;
}

static void run_error(run_t *r, const char *code, const char *msg)
{
    agui_event_t ev = {.type = AGUI_RUN_ERROR};
    ev.code = (agui_str_t){code, strlen(code)};
    ev.message = (agui_str_t){msg, strlen(msg)};
    r->errored = true;
    r->ev_seq = 0;
    if (r->sink->event(r, &ev) == 0)
        r->sink->end(r);
}

static void head(run_t *r)
{
    if (!r->started) {
        r->sink->start(r);
        r->started = true;
    }
}

/* Ends f's run: before its head with an HTTP error, after it with RUN_ERROR. */
static void fail(rsx_f_t *f, int status, const char *code, const char *msg)
{
    run_t *r = f->r;
    f->active = false;
    if (!r->started)
        r->sink->fail(r, status, code, msg, 0);
    else
        run_error(r, code, msg);
}

/* The entries of a read to f's sink, in order. */
static int consume(rsx_f_t *f, const redisReply *ents)
{
    run_t *r = f->r;
    for (size_t i = 0; i < ents->elements; i++) {
        const redisReply *e = ents->element[i];
        uint64_t seq;
        bool end;
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !parse_id(e->element[0], &seq, &end))
            continue;
        const redisReply *kv = e->element[1];
        if (end) {
            if (seq + 1 < f->next)
                continue;   /* (an older end: not ours) */
            const redisReply *k = field(kv, "end"), *st = field(kv, "status"), *code = field(kv, "code"),
                             *msg = field(kv, "msg");
            f->active = false;
            if (k && k->type == REDIS_REPLY_STRING && !strcmp(k->str, "failed")) {
                fail(f, st && st->type == REDIS_REPLY_STRING ? atoi(st->str) : 502,
                     code && code->type == REDIS_REPLY_STRING && code->len ? code->str : "run_failed",
                     msg && msg->type == REDIS_REPLY_STRING && msg->len ? msg->str : "the run failed");
                return RF_DONE;
            }
            if (k && k->type == REDIS_REPLY_STRING && !strcmp(k->str, "lost"))
                RSX_COUNT(r->sh, lost_ends, 1);
            head(r);
            r->sink->end(r);
            return RF_DONE;
        }
        if (seq < f->next)
            continue;
        if (seq > f->next) {
            if (!r->started)
                fail(f, 410, "resume_log_truncated",
                     "the events after Last-Event-ID are no longer in the run's log (resume.redis_max_len)");
            else
                fail(f, 0, "resume_log_incomplete",
                     "events of this run did not reach the shared log (Redis was down or too slow)");
            return RF_DONE;
        }
        const redisReply *t = field(kv, "t"), *js = field(kv, "e");
        if (!t || t->type != REDIS_REPLY_STRING || !js || js->type != REDIS_REPLY_STRING) {
            fail(f, 502, "resume_log_invalid", "an entry of the run's shared log is malformed");
            return RF_DONE;
        }
        head(r);
        r->ev_seq = seq;
        int rc = r->sink->raw(r, agui_type_from_name(t->str, t->len), js->str, js->len,
                              memchr(js->str, '\n', js->len) != NULL);
        if (rc)
            return RF_DONE;   /* released */
        r->ev_seq = 0;
        f->next = seq + 1;
        if (!r->sink->writable(r)) {
            r->blocked = true;
            return RF_BLOCKED;
        }
    }
    return ents->elements >= RSX_READ_N ? RF_FULL : RF_MORE;
}

static void poll_arm(rsx_f_t *f, uint32_t ms)
{
    shard_t *sh = f->r->sh;
    timer_arm(&sh->timers, &f->poll, sh->now_ms + ms);
}

static void poll_done(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err);

static void poll_fired(agate_timer_t *t)
{
    rsx_f_t *f = (rsx_f_t *)((char *)t - offsetof(rsx_f_t, poll));
    run_t *r = f->r;
    if (!f->active || f->handle || r->blocked)
        return;
    f->handle = read_issue(r->sh, f->id, f->idn, f->next - 1, false, poll_done, f);
    if (!f->handle)
        poll_done(r->sh, f, 0, NULL, -ECONNREFUSED);
}

/* Redis down while following: a bounded wait, then the client is told. */
static bool poll_failed(rsx_f_t *f)
{
    shard_t *sh = f->r->sh;
    uint32_t hb = resume_conf(sh->cfg)->rsx.heartbeat_ms, wait = 3 * hb > 2000 ? 3 * hb : 2000;
    RSX_COUNT(sh, poll_errors, 1);
    if (!f->err_since_ms)
        f->err_since_ms = sh->now_ms;
    if (sh->now_ms - f->err_since_ms < wait)
        return false;
    fail(f, 503, "shared_state_unavailable", "the shared run log (Redis) could not be read");
    return true;
}

static void follow(rsx_f_t *f, const redisReply *ents)
{
    uint32_t poll = resume_conf(f->r->sh->cfg)->rsx.poll_ms;
    int st = consume(f, ents);
    if (st == RF_MORE)
        poll_arm(f, poll);
    else if (st == RF_FULL)
        poll_arm(f, 0);
}

static void poll_done(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    (void)tag;
    rsx_f_t *f = ctx;
    f->handle = 0;
    if (err == -ECANCELED)
        return;
    if (!read_reply_ok(rep, err)) {
        if (!poll_failed(f))
            poll_arm(f, resume_conf(sh->cfg)->rsx.poll_ms);
        return;
    }
    f->err_since_ms = 0;
    if (!rep->element[1]->elements && rep->element[2]->integer == 0) {
        fail(f, 410, "resume_log_expired", "the run's shared log expired (resume.log_ttl)");
        return;
    }
    follow(f, rep->element[1]);
}

/* --- the run kind -------------------------------------------------------------------- */

static void rf_start(run_t *r) { (void)r; }

static void rf_resume(run_t *r)
{
    rsx_f_t *f = rf_of(r);
    r->blocked = false;
    if (f && f->active && !f->handle)
        poll_arm(f, 0);
}

static void rf_stop(run_t *r)
{
    rsx_f_t *f = rf_of(r);
    if (!f)
        return;
    f->active = false;
    if (f->handle)
        redis_cancel(r->sh, f->handle);
    f->handle = 0;
    timer_cancel(&r->sh->timers, &f->poll);
}

static const run_kind_ops_t rf_ops = {rf_start, rf_resume, rf_stop};

static void rf_release(run_t *r)
{
    rsx_f_t *f = rf_of(r);
    if (f && f->active)
        rf_stop(r);
    if (f)
        f->active = false;
}

static void rf_destroy(run_t *r)
{
    free(r->ext[g_rsx_ext]);
    r->ext[g_rsx_ext] = NULL;
}

static const run_ext_ops_t rf_ext_ops = {.release = rf_release, .destroy = rf_destroy};

/* --- the request --------------------------------------------------------------------- */

static void refuse(conn_t *c, int status, const char *code, const char *msg)
{
    RSX_COUNT(c->sh, remote_refused, 1);
    http_error(c, status, code, msg, NULL);
}

int rsx_meta_allows(const char *meta, size_t n, const char *tok_hash, const char *who, char *agent, size_t cap)
{
    char buf[512], nonce[40], th[80], mw[40], ag[CFG_NAME_MAX + 8];
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, meta, n);
    buf[n] = '\0';
    if (sscanf(buf, "%39s %79s %39s %71s", nonce, th, mw, ag) != 4 || strlen(th) != 64)
        return -1;
    snprintf(agent, cap, "%s", ag);
    unsigned char diff = strlen(tok_hash) == 64 ? 0 : 1;
    for (size_t i = 0; i < 64 && !diff; i++)
        diff |= (unsigned char)(tok_hash[i] ^ th[i]);
    return !diff || (who[0] && strlen(who) == 32 && !strcmp(who, mw));
}

/* What a pod without the run answers a reattach, from the read script's
 * first reply: 0 and the run's agent, or the refusal in *no. */
static int check_meta(const redisReply *rep, int err, const char *tok_hash, const char *who, char *agent,
                      size_t cap, resume_refusal_t *no)
{
    const redisReply *meta;
    int ok;
    if (!read_reply_ok(rep, err))
        *no = (resume_refusal_t){503, "shared_state_unavailable", "the shared run log (Redis) did not answer"};
    else if ((meta = rep->element[0])->type != REDIS_REPLY_STRING && rep->element[3]->integer == 1)
        *no = (resume_refusal_t){410, "resume_log_expired", "the run's shared log expired (resume.log_ttl)"};
    else if (meta->type != REDIS_REPLY_STRING)
        *no = (resume_refusal_t){404, "run_not_found", "no resumable run by that id is known here or in the shared log"};
    else if ((ok = rsx_meta_allows(meta->str, meta->len, tok_hash, who, agent, cap)) != 1)
        *no = (resume_refusal_t){403, "forbidden",
                                 tok_hash[0] ? "the resume token does not match this run"
                                             : "this run needs its resume token (X-Agate-Resume-Token or ?token=) or the identity that started it"};
    else if (!rep->element[1]->elements && rep->element[2]->integer == 0)
        *no = (resume_refusal_t){410, "resume_log_expired", "the run's shared log expired (resume.log_ttl)"};
    else
        return 0;
    return -EPERM;
}

/* The caller's credentials as the meta keeps them: sha256 hex of the token, the digest hex. */
static void creds(const char *tok, size_t tokn, const uint8_t *who, char tok_hash[65], char who_hex[33])
{
    uint8_t h[DIGEST_SHA256_LEN];
    tok_hash[0] = who_hex[0] = '\0';
    if (tokn == 32 && !digest_sha256(tok, 32, h))
        hex(tok_hash, h, sizeof h);
    if (who)
        hex(who_hex, who, 16);
}

static void open_done(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    (void)tag;
    rsx_open_t *o = ctx;
    conn_t *c = conn_lookup(sh, o->ref);
    if (!c || c->state != CONN_OPEN || c->run || err == -ECANCELED) {
        free(o);
        return;   /* the client went away */
    }
    char agent_name[CFG_NAME_MAX + 8];
    const cfg_agent_t *agent;
    resume_refusal_t no;
    if (check_meta(rep, err, o->tok_hash, o->who, agent_name, sizeof agent_name, &no)) {
        refuse(c, no.status, no.code, no.msg);
    } else if (!(agent = cfg_find_agent(sh->cfg, agent_name, strlen(agent_name)))) {
        refuse(c, 404, "agent_not_found", "the run's agent is not configured on this gateway");
    } else {
        run_t *r = sse_client_run(c, agent);
        rsx_f_t *f = r ? rf_of(r) : NULL;
        if (r && !f && (f = calloc(1, sizeof *f)))
            r->ext[g_rsx_ext] = f;
        if (r && !f) {
            r->sink->fail(r, 503, "out_of_memory", "out of memory", 0);
        } else if (r) {
            RSX_COUNT(sh, remote_reattaches, 1);
            *f = (rsx_f_t){.r = r, .idn = o->idn, .next = o->after + 1, .active = true};
            f->poll.cb = poll_fired;
            memcpy(f->id, o->id, o->idn);
            memcpy(f->tok_hash, o->tok_hash, sizeof f->tok_hash);
            memcpy(f->who, o->who, sizeof f->who);
            r->ops = &rf_ops;
            r->ev_id = f->id;
            r->ev_id_len = f->idn;
            follow(f, rep->element[1]);
        }
    }
    free(o);
}

bool rsx_events(conn_t *c, const char *id, size_t idn, const char *tok, size_t tokn, const uint8_t *who,
                uint64_t after)
{
    shard_t *sh = c->sh;
    if (!redis_configured(sh->cfg) || !rsx_shard(sh) || idn >= RSX_ID_MAX)
        return false;
    rsx_open_t *o = calloc(1, sizeof *o);
    if (!o) {
        http_error(c, 503, "out_of_memory", "out of memory", NULL);
        return true;
    }
    o->ref = conn_ref(c);
    memcpy(o->id, id, idn);
    o->idn = (uint16_t)idn;
    o->after = after;
    creds(tok, tokn, who, o->tok_hash, o->who);
    if (!read_issue(sh, id, idn, after, true, open_done, o)) {
        free(o);
        refuse(c, 503, "shared_state_unavailable",
               "this run is not on this gateway and the shared run log (Redis) is unavailable");
    }
    return true;
}

bool rsx_enabled(const shard_t *sh) { return redis_configured(sh->cfg) && rsx_shard(sh); }

/* --- WebSocket RESUME ---------------------------------------------------------------- */

/* The first read's answer: the meta decides, then r follows as a GET's run does. */
static void attach_done(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    (void)tag;
    rsx_f_t *f = ctx;
    run_t *r = f->r;
    char agent[CFG_NAME_MAX + 8];
    resume_refusal_t no;
    f->handle = 0;
    if (err == -ECANCELED)
        return;
    int rc = check_meta(rep, err, f->tok_hash, f->who, agent, sizeof agent, &no);
    if (!rc && strcmp(agent, r->agent->name)) {   /* a connection serves one agent, as on the owner */
        no = (resume_refusal_t){404, "run_not_found", "no resumable run by that id is known for this agent"};
        rc = -ENOENT;
    }
    if (rc) {
        RSX_COUNT(sh, remote_refused, 1);
        fail(f, no.status, no.code, no.msg);   /* may release r, and f with it */
        return;
    }
    RSX_COUNT(sh, remote_reattaches, 1);
    follow(f, rep->element[1]);
}

bool rsx_follow(run_t *r, const char *id, size_t idn, const char *tok, size_t tokn, const uint8_t *who,
                uint64_t after)
{
    if (!rsx_enabled(r->sh) || idn >= RSX_ID_MAX)
        return false;
    rsx_f_t *f = rf_of(r);
    if (!f && (f = calloc(1, sizeof *f)))
        r->ext[g_rsx_ext] = f;
    if (!f) {
        r->sink->fail(r, 503, "out_of_memory", "out of memory", 0);
        return true;
    }
    *f = (rsx_f_t){.r = r, .idn = (uint16_t)idn, .next = after + 1, .active = true};
    f->poll.cb = poll_fired;
    memcpy(f->id, id, idn);
    creds(tok, tokn, who, f->tok_hash, f->who);
    r->ops = &rf_ops;
    r->ev_id = f->id;
    r->ev_id_len = f->idn;
    f->handle = read_issue(r->sh, id, idn, after, true, attach_done, f);
    if (!f->handle) {
        RSX_COUNT(r->sh, remote_refused, 1);
        fail(f, 503, "shared_state_unavailable",
             "this run is not on this gateway and the shared run log (Redis) is unavailable");
    }
    return true;
}

/* --- cancel -------------------------------------------------------------------------- */

typedef struct rsx_cancel {
    uint64_t ref;
} rsx_cancel_t;

static uint64_t cancel_issue(shard_t *sh, const char *id, size_t idn, const char *tok_hash, const char *who,
                             redis_reply_fn fn, void *ctx)
{
    char keys[RSXK_N][RSX_KEY_MAX], px[16];
    const char *av[RSXK_N + 3];
    size_t al[RSXK_N + 3];
    int c = script_args(sh, id, idn, keys, av, al);
    int pl = snprintf(px, sizeof px, "%u", 3 * resume_conf(sh->cfg)->rsx.heartbeat_ms);   /* the owner writes within 1.5 */
    av[c] = tok_hash;
    al[c++] = strlen(tok_hash);
    av[c] = who;
    al[c++] = strlen(who);
    av[c] = px;
    al[c++] = (size_t)pl;
    return redis_evalsha(sh, g_rsx_script_cancel, fn, ctx, 0, RSXK_N, c, av, al);
}

static void cancel_done(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    (void)tag;
    rsx_cancel_t *k = ctx;
    conn_t *c = conn_lookup(sh, k->ref);
    free(k);
    if (!c || c->state != CONN_OPEN || c->run || err == -ECANCELED)
        return;   /* the client went away (the request stays recorded) */
    /* (not counted as refused reattaches: agate_resume_redis_remote_refused is the reattaches') */
    long long st = !err && rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : 503;
    static const char body[] = "{\"cancelled\":true}\n";
    switch (st) {
    case 202:
        http_respond(c, 202, "application/json", body, sizeof body - 1, NULL);
        break;
    case 403:
        http_error(c, 403, "forbidden", "neither the resume token nor the identity is this run's", NULL);
        break;
    case 404:
        http_error(c, 404, "run_not_found", "no resumable run by that id is known here or in the shared log", NULL);
        break;
    case 409:
        http_error(c, 409, "run_not_running", "the run has already ended", NULL);
        break;
    case 410:
        http_error(c, 410, "resume_log_expired", "the run's shared log expired (resume.log_ttl)", NULL);
        break;
    default:
        http_error(c, 503, "shared_state_unavailable", "the shared run log (Redis) did not answer", NULL);
    }
}

bool rsx_cancel(conn_t *c, const char *id, size_t idn, const char *tok, size_t tokn, const uint8_t *who)
{
    shard_t *sh = c->sh;
    char tok_hash[65], who_hex[33];
    if (!rsx_enabled(sh) || idn >= RSX_ID_MAX)
        return false;
    rsx_cancel_t *k = malloc(sizeof *k);
    if (!k) {
        http_error(c, 503, "out_of_memory", "out of memory", NULL);
        return true;
    }
    k->ref = conn_ref(c);
    creds(tok, tokn, who, tok_hash, who_hex);
    if (!cancel_issue(sh, id, idn, tok_hash, who_hex, cancel_done, k)) {
        free(k);
        http_error(c, 503, "shared_state_unavailable",
                   "this run is not on this gateway and the shared run log (Redis) is unavailable", NULL);
    }
    return true;
}

void rsx_cancel_followed(run_t *r)
{
    const rsx_f_t *f = rf_of(r);
    if (f && f->r == r && f->idn)   /* nothing waits for the answer: the run's end comes through its stream */
        cancel_issue(r->sh, f->id, f->idn, f->tok_hash, f->who, NULL, NULL);
}

void rsx_remote_register(void) { g_rsx_ext = run_ext_register(&rf_ext_ops); }
