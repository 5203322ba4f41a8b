/* coalesce: cache hits, shared in-flight runs and recording (net/coalesce.h),
 * on a real shard (tests/support/shardrun.h: the follower lists are a shard
 * module's, polled by the loop).
 *
 * Through the API, on the shard thread, with a recording sink and the leader
 * driven by hand the way net/proxy.c drives it (coalesce_record, then
 * coalesce_leader_done or _failed): the decision (MISS, HIT, COALESCED; none
 * for an agent without a cache; Cache-Control no-cache and no-store; the key
 * without threadId/runId and the agent's ignore_fields, with its forwarded
 * headers), X-Cache and Age, a stored run replayed under the new run's ids
 * (fresh message ids, one per old id), nothing stored from an unfinished or
 * oversized run, followers fed the log from the start and then live, a
 * leader's failure or its client's departure ending its followers with
 * RUN_ERROR, and a follower that lags past cache.max_lag detached.
 *
 * End to end, with an agent service behind a proxy agent and real clients:
 * MISS then HIT (one upstream request, the replay under the second request's
 * runId), and two identical requests sharing one upstream run (COALESCED). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "net/coalesce_metrics.h"
#include "tests/support/shardrun.h"
#include "tests/unit/wire.h"

static shardrun_t S;
static uint16_t up_port;
static int up_lfd = -1;

#define CACHED 1   /* agent slots */
#define PLAIN  2

#define E1 "{\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\"}"
#define E2 "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m1\",\"role\":\"assistant\"}"
#define E3 "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m1\",\"delta\":\"hello\"}"
#define E4 "{\"type\":\"TEXT_MESSAGE_END\",\"messageId\":\"m1\"}"
#define E5 "{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\"}"

static const struct { agui_type_t type; const char *json; } EVS[] = {
    {AGUI_RUN_STARTED, E1}, {AGUI_TEXT_MESSAGE_START, E2}, {AGUI_TEXT_MESSAGE_CONTENT, E3},
    {AGUI_TEXT_MESSAGE_END, E4}, {AGUI_RUN_FINISHED, E5},
};

/* ---- a recording sink (shard thread) ---- */

typedef struct rec {
    run_t      *r;            /* NULL once released */
    const char *result;       /* coalesce_result after prepare */
    bool        active;
    char        head[96];     /* the head lines it would send */
    bool        writable;     /* what the sink says of its buffer */
    int         started, ended, failed, fail_status;
    char        fail_code[64];
    int         n;
    char        ev[64][256];  /* the events it got, as JSON */
} rec_t;

static void rec_start(run_t *r) { ((rec_t *)r->sink_ctx)->started++; }

static void rec_put(rec_t *rc, const char *json, size_t len)
{
    if (rc->n < 64)
        snprintf(rc->ev[rc->n++], sizeof rc->ev[0], "%.*s", (int)len, json);
}

static int rec_event(run_t *r, const agui_event_t *ev)
{
    buf_t b = {0};
    agui_write_json(&b, ev);
    rec_put(r->sink_ctx, b.data, b.len);
    buf_free(&b);
    return 0;
}

static int rec_raw(run_t *r, agui_type_t type, const char *json, size_t len, bool has_lf)
{
    rec_put(r->sink_ctx, json, len);
    return 0;
}

static bool rec_writable(run_t *r) { return ((rec_t *)r->sink_ctx)->writable; }

static void rec_end(run_t *r)
{
    rec_t *rc = r->sink_ctx;
    rc->ended++;
    rc->r = NULL;
    run_release(r);
}

static void rec_fail(run_t *r, int status, const char *code, const char *msg, uint32_t retry)
{
    rec_t *rc = r->sink_ctx;
    rc->failed++;
    rc->fail_status = status;
    snprintf(rc->fail_code, sizeof rc->fail_code, "%s", code);
    rc->r = NULL;
    run_release(r);
}

static const run_sink_ops_t rec_sink = {
    .start = rec_start, .event = rec_event, .raw = rec_raw, .writable = rec_writable, .end = rec_end, .fail = rec_fail,
};

/* ---- runs made on the shard thread ---- */

typedef struct mk {
    rec_t      *rec;
    unsigned    agent;
    const char *body;
    const char *cache_control;   /* the request's Cache-Control, or NULL */
    const char *tenant;          /* its X-Tenant (a forwarded header), or NULL */
    bool        start;           /* run_start after prepare (a replay: HIT, COALESCED) */
    bool        slow;            /* its sink is over its buffer bound from the start */
} mk_t;

static void mk_run(shard_t *sh, void *arg)
{
    mk_t *m = arg;
    rec_t *rc = m->rec;
    memset(rc, 0, sizeof *rc);
    rc->writable = !m->slow;
    runinput_t in;
    runinput_err_t err;
    if (runinput_parse(m->body, strlen(m->body), &in, &err))
        return;   /* (rc->r stays NULL: the test fails on it) */
    rl_holds_t holds = {0};
    run_t *r = run_new(sh, &sh->cfg->agents[m->agent], &in, &holds, &rec_sink, rc);
    r->body = m->body;
    r->body_len = strlen(m->body);
    /* the request: a header table over one raw buffer, as net/http1.c keeps it */
    http_req_t req;
    memset(&req, 0, sizeof req);
    http_hdr_t hdrs[2];
    req.hdrs = hdrs;
    const char *names[2] = {"cache-control", "x-tenant"}, *vals[2] = {m->cache_control, m->tenant};
    for (int i = 0; i < 2; i++) {
        if (!vals[i])
            continue;
        http_hdr_t *h = &hdrs[req.n_hdrs++];
        h->name = (http_slice_t){(uint32_t)req.raw.len, (uint32_t)strlen(names[i])};
        buf_append(&req.raw, names[i], strlen(names[i]));
        h->value = (http_slice_t){(uint32_t)req.raw.len, (uint32_t)strlen(vals[i])};
        buf_append(&req.raw, vals[i], strlen(vals[i]));
    }
    coalesce_prepare(r, &req);
    buf_free(&req.raw);
    rc->r = r;
    rc->result = coalesce_result(r);
    rc->active = coalesce_active(r);
    snprintf(rc->head, sizeof rc->head, "%s", r->head_extra ? r->head_extra : "");
    if (m->start)
        run_start(r);   /* may end and release it at once */
}

/* The leader, as net/proxy.c: events [from, to) recorded, then maybe the end. */
typedef struct lead {
    rec_t *rec;
    int    from, to;
    int    end;          /* 0 none, 1 done (finished), 2 done (not finished), 3 failed, 4 released (client left) */
    size_t pad;          /* record this many extra bytes of one event first (for lag and size limits) */
} lead_t;

static void do_lead(shard_t *sh, void *arg)
{
    lead_t *l = arg;
    run_t *r = l->rec->r;
    if (l->pad) {
        char *big = malloc(l->pad + 128);
        int n = snprintf(big, l->pad + 128, "{\"type\":\"CUSTOM\",\"name\":\"pad\",\"value\":\"%*s\"}", (int)l->pad, "");
        coalesce_record(r, AGUI_CUSTOM, big, (size_t)n);
        free(big);
    }
    for (int i = l->from; i < l->to; i++)
        coalesce_record(r, EVS[i].type, EVS[i].json, strlen(EVS[i].json));
    switch (l->end) {
    case 1:
    case 2:
        coalesce_leader_done(r, l->end == 1);
        l->rec->r = NULL;
        l->rec->ended++;
        run_release(r);
        break;
    case 3:
        coalesce_leader_failed(r, 502, "upstream_failed", "the agent fell over");
        l->rec->r = NULL;
        l->rec->failed++;
        run_release(r);
        break;
    case 4:
        l->rec->r = NULL;
        run_release(r);   /* the leader's client left: the run is released mid-flight */
        break;
    }
}

static void do_release(shard_t *sh, void *arg)
{
    rec_t *rc = arg;
    if (rc->r)
        run_release(rc->r);
    rc->r = NULL;
}

static bool has_ended(shard_t *sh, void *arg)
{
    rec_t *rc = arg;
    return rc->ended || rc->failed;
}

static const char *B1 = "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"hi\"}]}";
static const char *B1_OTHER_IDS = "{\"threadId\":\"t2\",\"runId\":\"r2\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"hi\"}]}";
static const char *B2 = "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"ho\"}]}";

static int setup(void **state)
{
    sr_init(&S);
    up_lfd = sr_listen(&up_port, 16);
    uint16_t ports[1] = {up_port};
    cfg_agent_t *ag = sr_proxy_agent(&S, CACHED, "cached", ports, 1);
    ag->cache_ttl_ms = 60000;
    ag->n_cache_ignore = 0;
    const char *ignore[] = {"threadId", "runId", "parentRunId", "forwardedProps.session"};
    for (size_t i = 0; i < 4; i++)
        snprintf(ag->cache_ignore[ag->n_cache_ignore++], CFG_CACHE_PATH_MAX, "%s", ignore[i]);
    snprintf(ag->forward_headers[0], CFG_HEADER_MAX, "x-tenant");
    ag->n_forward = 1;
    sr_proxy_agent(&S, PLAIN, "plain", ports, 1)->cache_ttl_ms = 0;
    return 0;
}

static int teardown(void **state)
{
    sr_stop_with(&S, &up_lfd);
    return 0;
}

static void start(void)
{
    if (sr_start(&S))
        skip();
}

/* A run of the cached agent on body b: prepared (and started when asked). */
static void run_on(rec_t *rc, unsigned agent, const char *b, const char *cc, bool go)
{
    mk_t m = {rc, agent, b, cc, NULL, go, false};
    sr_call(&S, mk_run, &m);
    assert_true(rc->result || rc->r);   /* prepared (a replay may have ended already) */
}

/* A leader that records every event and finishes: the run is stored. */
static void store_one(const char *body)
{
    rec_t L;
    run_on(&L, CACHED, body, NULL, false);
    assert_string_equal(L.result, "MISS");
    lead_t l = {&L, 0, 5, 1, 0};
    sr_call(&S, do_lead, &l);
}

static const char *member(const char *json, const char *key, char *out, size_t cap)
{
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    const char *v = json_string_value(json_object_get(j, key));
    snprintf(out, cap, "%s", v ? v : "");
    json_decref(j);
    return out;
}

/* ---- deciding ---- */

static void test_no_cache_agent(void **state)
{
    start();
    rec_t rc;
    mk_t m = {&rc, PLAIN, B1, NULL, NULL, false, false};
    sr_call(&S, mk_run, &m);
    assert_non_null(rc.r);
    assert_null(rc.result);
    assert_false(rc.active);
    assert_string_equal(rc.head, "");
    sr_call(&S, do_release, &rc);
}

static void test_miss_then_hit(void **state)
{
    start();
    rec_t L, H;
    run_on(&L, CACHED, B1, NULL, false);
    assert_string_equal(L.result, "MISS");
    assert_true(L.active);
    assert_string_equal(L.head, "X-Cache: MISS\r\nAge: 0\r\n");
    lead_t l = {&L, 0, 5, 1, 0};
    sr_call(&S, do_lead, &l);

    run_on(&H, CACHED, B1_OTHER_IDS, NULL, true);   /* other thread and run ids: the same question */
    assert_string_equal(H.result, "HIT");
    assert_string_equal(H.head, "X-Cache: HIT\r\nAge: 0\r\n");
    assert_int_equal(H.started, 1);
    assert_int_equal(H.ended, 1);
    assert_int_equal(H.n, 5);
    char v[64], mid[64];
    assert_string_equal(member(H.ev[0], "type", v, sizeof v), "RUN_STARTED");
    assert_string_equal(member(H.ev[0], "threadId", v, sizeof v), "t2");   /* the new run's ids */
    assert_string_equal(member(H.ev[0], "runId", v, sizeof v), "r2");
    assert_string_equal(member(H.ev[4], "runId", v, sizeof v), "r2");
    member(H.ev[1], "messageId", mid, sizeof mid);
    assert_int_equal(strlen(mid), 36);                                  /* a fresh UUID ... */
    assert_string_not_equal(mid, "m1");
    assert_string_equal(member(H.ev[2], "messageId", v, sizeof v), mid);   /* ... the same for the same old id */
    assert_string_equal(member(H.ev[3], "messageId", v, sizeof v), mid);
    assert_string_equal(member(H.ev[2], "delta", v, sizeof v), "hello");

    rec_t H2;                                           /* another replay: ids of its own */
    run_on(&H2, CACHED, B1, NULL, true);
    assert_string_equal(H2.result, "HIT");
    assert_string_not_equal(member(H2.ev[1], "messageId", v, sizeof v), mid);

    rec_t M;                                            /* another question */
    run_on(&M, CACHED, B2, NULL, false);
    assert_string_equal(M.result, "MISS");
    sr_call(&S, do_release, &M);
}

#define FP(ids, props) "{" ids "\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"hi\"}]," \
                           "\"forwardedProps\":" props "}"

static void test_key_rules(void **state)
{
    start();
    store_one(FP("\"threadId\":\"t\",\"runId\":\"r\",", "{\"session\":\"abc\"}"));
    rec_t r;
    /* other ids, another value of an ignored field: the same question */
    run_on(&r, CACHED, FP("\"threadId\":\"t9\",\"runId\":\"r9\",", "{\"session\":\"xyz\"}"), NULL, true);
    assert_string_equal(r.result, "HIT");
    /* key order and whitespace do not count (the canonical form) */
    run_on(&r, CACHED, "{ \"forwardedProps\" : {\"session\":\"q\"}, \"messages\":[{\"content\":\"hi\",\"role\":\"user\","
                       "\"id\":\"1\"}], \"runId\":\"x\" ,\"threadId\":\"y\"}", NULL, true);
    assert_string_equal(r.result, "HIT");
    /* a forwarded header's value is part of the key */
    mk_t m = {&r, CACHED, FP("\"threadId\":\"t\",\"runId\":\"r\",", "{\"session\":\"abc\"}"), NULL, "blue", false, false};
    sr_call(&S, mk_run, &m);
    assert_string_equal(r.result, "MISS");
    sr_call(&S, do_release, &r);
    /* a field that is not ignored is */
    run_on(&r, CACHED, FP("\"threadId\":\"t\",\"runId\":\"r\",", "{\"session\":\"abc\",\"other\":1}"), NULL, false);
    assert_string_equal(r.result, "MISS");
    sr_call(&S, do_release, &r);
    /* the emptied object an ignored field leaves still counts: no forwardedProps is another question */
    run_on(&r, CACHED, B1, NULL, false);
    assert_string_equal(r.result, "MISS");
    sr_call(&S, do_release, &r);
}

/* no-store: neither looked up nor stored nor shared; no-cache: not looked
 * up, but the answer is stored for the next request. */
static void test_cache_control(void **state)
{
    start();
    store_one(B1);
    rec_t r;
    run_on(&r, CACHED, B1, "no-store", false);
    assert_string_equal(r.result, "MISS");
    assert_false(r.active);
    sr_call(&S, do_release, &r);
    run_on(&r, CACHED, B1, "max-age=0, No-Cache", false);   /* a leader although it is stored */
    assert_string_equal(r.result, "MISS");
    assert_true(r.active);
    sr_call(&S, do_release, &r);

    run_on(&r, CACHED, B2, "no-cache", false);
    lead_t l = {&r, 0, 5, 1, 0};
    sr_call(&S, do_lead, &l);
    run_on(&r, CACHED, B2, NULL, true);
    assert_string_equal(r.result, "HIT");                    /* what a no-cache request fetched is kept */
}

/* Only a run that finished is stored, and only up to cache.max_entry. */
static void test_what_is_stored(void **state)
{
    S.cfg.agents[CACHED].cache_max_entry = 4096;
    start();
    rec_t r;
    run_on(&r, CACHED, B1, NULL, false);
    lead_t l = {&r, 0, 4, 2, 0};                              /* ended without RUN_FINISHED */
    sr_call(&S, do_lead, &l);
    run_on(&r, CACHED, B1, NULL, false);
    assert_string_equal(r.result, "MISS");
    l = (lead_t){&r, 0, 2, 3, 0};                             /* failed */
    sr_call(&S, do_lead, &l);
    run_on(&r, CACHED, B1, NULL, false);
    assert_string_equal(r.result, "MISS");
    l = (lead_t){&r, 0, 5, 1, 8192};                          /* finished, but too big */
    sr_call(&S, do_lead, &l);
    run_on(&r, CACHED, B1, NULL, false);
    assert_string_equal(r.result, "MISS");
    l = (lead_t){&r, 0, 5, 1, 0};
    sr_call(&S, do_lead, &l);
    run_on(&r, CACHED, B1, NULL, true);
    assert_string_equal(r.result, "HIT");
}

/* ---- sharing a run in flight ---- */

static void test_followers(void **state)
{
    start();
    rec_t L, F1, F2;
    run_on(&L, CACHED, B1, NULL, false);
    lead_t l = {&L, 0, 2, 0, 0};
    sr_call(&S, do_lead, &l);
    run_on(&F1, CACHED, B1_OTHER_IDS, NULL, true);
    assert_string_equal(F1.result, "COALESCED");
    assert_memory_equal(F1.head, "X-Cache: COALESCED\r\nAge: ", 25);
    assert_int_equal(F1.n, 2);                               /* the log so far, at once */
    assert_int_equal(F1.ended, 0);
    char v[64];
    assert_string_equal(member(F1.ev[0], "runId", v, sizeof v), "r2");
    l = (lead_t){&L, 2, 4, 0, 0};
    sr_call(&S, do_lead, &l);
    run_on(&F2, CACHED, B1, NULL, true);                    /* a late joiner reads from the start */
    assert_string_equal(F2.result, "COALESCED");
    assert_int_equal(F2.n, 4);
    l = (lead_t){&L, 4, 5, 1, 0};
    sr_call(&S, do_lead, &l);
    assert_true(sr_until(&S, has_ended, &F1));
    assert_true(sr_until(&S, has_ended, &F2));
    assert_int_equal(F1.ended, 1);
    assert_int_equal(F1.n, 5);                               /* then live, to the end */
    assert_string_equal(member(F1.ev[4], "type", v, sizeof v), "RUN_FINISHED");
    assert_int_equal(F2.n, 5);
    rec_t H;
    run_on(&H, CACHED, B1, NULL, true);
    assert_string_equal(H.result, "HIT");                    /* and it was stored */
}

static void test_leader_fails(void **state)
{
    start();
    rec_t L, F, G;
    run_on(&L, CACHED, B1, NULL, false);
    lead_t l = {&L, 0, 2, 0, 0};
    sr_call(&S, do_lead, &l);
    run_on(&F, CACHED, B1, NULL, true);
    assert_string_equal(F.result, "COALESCED");
    l = (lead_t){&L, 2, 2, 3, 0};
    sr_call(&S, do_lead, &l);
    assert_true(sr_until(&S, has_ended, &F));
    char v[64];
    assert_int_equal(F.n, 3);                                /* what it had, then the error */
    assert_string_equal(member(F.ev[2], "type", v, sizeof v), "RUN_ERROR");
    assert_string_equal(member(F.ev[2], "code", v, sizeof v), "upstream_failed");
    assert_string_equal(member(F.ev[2], "message", v, sizeof v), "the agent fell over");

    /* a follower that had seen nothing yet gets the failure as its HTTP answer */
    run_on(&L, CACHED, B2, NULL, false);
    run_on(&G, CACHED, B2, NULL, true);
    assert_string_equal(G.result, "COALESCED");
    assert_int_equal(G.started, 0);
    l = (lead_t){&L, 0, 0, 3, 0};
    sr_call(&S, do_lead, &l);
    assert_true(sr_until(&S, has_ended, &G));
    assert_int_equal(G.failed, 1);
    assert_int_equal(G.fail_status, 502);
    assert_string_equal(G.fail_code, "upstream_failed");
}

/* The leader's client leaves: the upstream run is cancelled and its followers
 * get RUN_ERROR (the run is not handed to a follower). */
static void test_leader_client_leaves(void **state)
{
    start();
    rec_t L, F;
    run_on(&L, CACHED, B1, NULL, false);
    lead_t l = {&L, 0, 1, 0, 0};
    sr_call(&S, do_lead, &l);
    run_on(&F, CACHED, B1, NULL, true);
    l = (lead_t){&L, 1, 1, 4, 0};
    sr_call(&S, do_lead, &l);
    assert_true(sr_until(&S, has_ended, &F));
    char v[128];
    assert_string_equal(member(F.ev[F.n - 1], "type", v, sizeof v), "RUN_ERROR");
    assert_string_equal(member(F.ev[F.n - 1], "message", v, sizeof v),
                        "the request that led this shared run was cancelled");
    rec_t M;
    run_on(&M, CACHED, B1, NULL, false);
    assert_string_equal(M.result, "MISS");                   /* nothing stored, nothing to join */
    sr_call(&S, do_release, &M);
}

/* A follower that stops reading falls behind; past cache.max_lag more than
 * it ever was, it is detached with RUN_ERROR client_too_slow; the leader and
 * the other followers go on. */
static void read_metrics(shard_t *sh, void *arg) { memcpy(arg, coalm(sh), sizeof(coalm_t)); }

static void test_slow_follower_detached(void **state)
{
    S.cfg.agents[CACHED].cache_max_lag = 4096;
    start();
    rec_t L, slow, fast;
    run_on(&L, CACHED, B1, NULL, false);
    lead_t l = {&L, 0, 1, 0, 0};
    sr_call(&S, do_lead, &l);
    mk_t m = {&slow, CACHED, B1, NULL, NULL, true, true};   /* its client reads nothing */
    sr_call(&S, mk_run, &m);
    assert_string_equal(slow.result, "COALESCED");
    assert_int_equal(slow.n, 1);
    run_on(&fast, CACHED, B1, NULL, true);
    l = (lead_t){&L, 1, 1, 0, 8192};                         /* 8 KiB more in the log */
    sr_call(&S, do_lead, &l);
    assert_true(sr_until(&S, has_ended, &slow));
    char v[128];
    assert_int_equal(slow.n, 2);
    assert_string_equal(member(slow.ev[1], "type", v, sizeof v), "RUN_ERROR");
    assert_string_equal(member(slow.ev[1], "code", v, sizeof v), "client_too_slow");
    l = (lead_t){&L, 1, 5, 1, 0};
    sr_call(&S, do_lead, &l);
    assert_true(sr_until(&S, has_ended, &fast));
    assert_int_equal(fast.n, 6);                              /* everything, the padding included */
    assert_string_equal(member(fast.ev[5], "type", v, sizeof v), "RUN_FINISHED");
    coalm_t *gm = calloc(1, sizeof *gm);
    sr_call(&S, read_metrics, gm);
    assert_int_equal(gm->detached[CACHED], 1);
    assert_int_equal(gm->results[CACHED][MC_COALESCED], 2);
    assert_int_equal(gm->results[CACHED][MC_MISS], 1);
    free(gm);
}

/* ---- end to end, behind a proxy agent ---- */

static int client_run(const char *body)
{
    int fd = sr_connect(S.port);
    char req[1024];
    snprintf(req, sizeof req, "POST /v1/agents/cached/run HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    sr_write(fd, req);
    return fd;
}

static bool resp_complete(const buf_t *b)
{
    size_t pos = 0;
    wire_resp_t r;
    if (!wire_next(b->data, b->len, &pos, &r))
        return false;
    free(r.body);
    return true;
}

static bool head_complete(const buf_t *b) { return memmem(b->data, b->len, "\r\n\r\n", 4) != NULL; }

static wire_resp_t client_response(int fd, buf_t *b)
{
    assert_true(sr_read_until(fd, b, resp_complete));
    wire_resp_t r;
    size_t pos = 0;
    assert_true(wire_next(b->data, b->len, &pos, &r));
    return r;
}

#define SSE_EVENTS "data: " E1 "\n\ndata: " E2 "\n\ndata: " E3 "\n\ndata: " E4 "\n\ndata: " E5 "\n\n"

static void test_http_miss_then_hit(void **state)
{
    start();
    int c = client_run(B1);
    int u = sr_accept(up_lfd, SR_WAIT_MS);
    buf_t req = {0}, b = {0};
    assert_true(sr_read_request(u, &req));
    char resp[1024];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(SSE_EVENTS), SSE_EVENTS);
    sr_write(u, resp);
    wire_resp_t r = client_response(c, &b);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "\r\nX-Cache: MISS\r\nAge: 0\r\n"));
    assert_string_equal(r.body, SSE_EVENTS);
    free(r.body);
    close(c);

    buf_reset(&b);
    c = client_run(B1_OTHER_IDS);
    r = client_response(c, &b);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "\r\nX-Cache: HIT\r\nAge: 0\r\n"));
    json_t *ev = wire_events(r.body, NULL);
    assert_int_equal(json_array_size(ev), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "runId")), "r2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 2), "delta")), "hello");
    json_decref(ev);
    free(r.body);
    assert_false(sr_readable(up_lfd, 50));                   /* the agent was not asked again */
    close(c);
    close(u);
    buf_free(&req);
    buf_free(&b);
}

static void test_http_coalesced(void **state)
{
    start();
    int c1 = client_run(B1);
    int u = sr_accept(up_lfd, SR_WAIT_MS);
    buf_t req = {0}, b1 = {0}, b2 = {0};
    assert_true(sr_read_request(u, &req));
    char part[512];
    snprintf(part, sizeof part, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "%zx\r\ndata: " E1 "\n\n\r\n", strlen("data: " E1 "\n\n"));
    sr_write(u, part);
    assert_true(sr_read_until(c1, &b1, head_complete));
    assert_non_null(strstr(b1.data, "\r\nX-Cache: MISS\r\n"));
    int c2 = client_run(B1_OTHER_IDS);                       /* the same question while it runs */
    assert_true(sr_read_until(c2, &b2, head_complete));
    assert_non_null(strstr(b2.data, "\r\nX-Cache: COALESCED\r\n"));
    const char *rest = "data: " E2 "\n\ndata: " E3 "\n\ndata: " E4 "\n\ndata: " E5 "\n\n";
    snprintf(part, sizeof part, "%zx\r\n%s\r\n0\r\n\r\n", strlen(rest), rest);
    sr_write(u, part);
    wire_resp_t r1 = client_response(c1, &b1), r2 = client_response(c2, &b2);
    assert_string_equal(r1.body, SSE_EVENTS);
    json_t *ev = wire_events(r2.body, NULL);
    assert_int_equal(json_array_size(ev), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "runId")), "r2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 4), "type")), "RUN_FINISHED");
    json_decref(ev);
    free(r1.body);
    free(r2.body);
    assert_false(sr_readable(up_lfd, 50));                   /* one upstream run for both */
    close(c1);
    close(c2);
    close(u);
    buf_free(&req);
    buf_free(&b1);
    buf_free(&b2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_cache_agent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_miss_then_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_what_is_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_followers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_client_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_follower_detached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_miss_then_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_coalesced, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("coalesce on io_uring", tests, NULL, NULL);
    sr_backend = CFG_BACKEND_EPOLL;   /* the same on core/engine_epoll.c */
    return failed + cmocka_run_group_tests_name("coalesce on epoll", tests, NULL, NULL);
}
