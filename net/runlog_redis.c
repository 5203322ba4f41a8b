/* runlog_redis: the Redis Stream writer of resumable runs (see runlog_redis.h),
 * its scripts, the shard module and the agate_resume_redis_* metrics.
 *
 * Ownership: a writer (rsx_w_t) belongs to the shard that runs its run; the
 * run log's append hook copies each record into the writer's batch (off the
 * log: the log may drop its front) and marks it dirty; the shard's turn end
 * (or a timer armed at once, for records appended after it) sends each dirty
 * writer's batch as one EVALSHA. rsx_close queues the end and frees the writer
 * once it is sent. Every byte waiting in a batch or in Redis's pipeline is
 * counted in rsx_shard_t.queued, bounded by resume.redis_max_queued. */
#include "net/runlog_redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/digest.h"
#include "core/redis.h"
#include "net/gwmetrics.h"
#include "net/resume.h"
#include "net/resume_int.h"   /* rs_hold/rs_cancel: a cancel asked on another pod */
#include "net/runlog.h"
#include "net/runlog_redis_int.h"
#include "proto/agui.h"

#define RSX_BATCH_MAX 256   /* events per EVALSHA: redis_evalsha takes at most 1024 arguments */
#define RSX_FIXED     11    /* the write script's arguments before the events */

unsigned g_rsx_mod, g_rsx_mmod, g_rsx_script_write, g_rsx_script_read, g_rsx_script_cancel;
static char g_pod[96];      /* this process: random, then the host name */

/* KEYS: stream, meta, owner, remote, cancel, gone. ARGV: maxlen, ttl ms, owner px, pod, meta (the
 * first batch only: a new run under this id replaces the old stream), nonce,
 * end kind ('' none, done, failed), end seq, status, code, message; then
 * (seq, type, json) per event. -2: the run is no longer ours (its meta expired
 * or a newer run took the id); -1: the stream has ended (a follower found the
 * owner gone); else {events written, 1 when another pod follows the run, 1
 * when another pod asked to cancel it (the cancel key holds our nonce)}. An event whose id is not above the
 * last one is skipped, so a retried or late batch never reorders the stream.
 * A run that failed before its first event (a global limit refused it, no
 * upstream) writes nothing: there is nothing to resume, its client had the
 * error. Every write renews the tombstone (gone) to outlive the meta by
 * max(ttl, 1 min): a pod without the run then answers 410, not 404, as the
 * owner's own table does (net/resume.c, RS_TOMB_MIN_MS). */
static const char k_write_lua[] =
    "local k, a = KEYS, ARGV\n"
    "if a[5] ~= '' then\n"
    "  if a[7] == 'failed' and #a < 12 then return {0, 0, 0} end\n"
    "  redis.call('DEL', k[1])\n"
    "  redis.call('SET', k[2], a[5], 'PX', a[2])\n"
    "else\n"
    "  local m = redis.call('GET', k[2])\n"
    "  if not m or string.sub(m, 1, 32) ~= a[6] then return -2 end\n"
    "end\n"
    "local last = redis.call('XREVRANGE', k[1], '+', '-', 'COUNT', 1)\n"
    "if #last == 1 and string.sub(last[1][1], -2) == '-1' then return -1 end\n"
    "local n = 0\n"
    "for i = 12, #a, 3 do\n"
    "  local r = redis.pcall('XADD', k[1], 'MAXLEN', '~', a[1], a[i] .. '-0', 't', a[i + 1], 'e', a[i + 2])\n"
    "  if type(r) ~= 'table' then n = n + 1 end\n"
    "end\n"
    "if a[7] ~= '' then\n"
    "  redis.pcall('XADD', k[1], a[8] .. '-1', 'end', a[7], 'status', a[9], 'code', a[10], 'msg', a[11])\n"
    "  redis.call('DEL', k[3], k[5])\n"
    "else\n"
    "  redis.call('SET', k[3], a[4], 'PX', a[3])\n"
    "end\n"
    "redis.call('PEXPIRE', k[1], a[2])\n"
    "redis.call('PEXPIRE', k[2], a[2])\n"
    "local ttl = tonumber(a[2])\n"
    "redis.call('SET', k[6], '1', 'PX', string.format('%d', ttl + math.max(ttl, 60000)))\n"
    "return {n, redis.call('EXISTS', k[4]), redis.call('GET', k[5]) == a[6] and 1 or 0}\n";

/* KEYS: stream, meta, owner, remote, cancel, gone. ARGV: first id, count, '1' for the meta,
 * the RUN_ERROR JSON to end a run whose owner is gone, the remote key's PX. Returns {meta or nil,
 * entries, 1 when the stream exists, 1 when the meta was asked for, is gone
 * and the tombstone is there (expired: 410)}. A follower that has read everything
 * and finds neither an end nor the owner key ends the stream (once: the
 * script is atomic, and the end it writes is what the next one reads). */
static const char k_read_lua[] =
    "local k, a = KEYS, ARGV\n"
    "local meta = false\n"
    "if a[3] == '1' then meta = redis.call('GET', k[2]) end\n"
    "local e = redis.call('XRANGE', k[1], a[1], '+', 'COUNT', a[2])\n"
    "local exists = redis.call('EXISTS', k[1])\n"
    "if exists == 1 and a[3] ~= '1' then redis.call('SET', k[4], '1', 'PX', a[5]) end\n"
    "if #e == 0 and exists == 1 and redis.call('EXISTS', k[3]) == 0 then\n"
    "  local last = redis.call('XREVRANGE', k[1], '+', '-', 'COUNT', 1)\n"
    "  if #last == 1 and string.sub(last[1][1], -2) ~= '-1' then\n"
    "    local s = string.match(last[1][1], '^(%d+)-')\n"
    "    local n = tostring(tonumber(s) + 1)\n"
    "    if string.find(n, '[eE.]') then return {meta, e, exists, 0} end\n"
    "    redis.call('XADD', k[1], n .. '-0', 't', 'RUN_ERROR', 'e', a[4])\n"
    "    redis.call('XADD', k[1], n .. '-1', 'end', 'lost', 'status', '0', 'code', '', 'msg', '')\n"
    "    e = redis.call('XRANGE', k[1], a[1], '+', 'COUNT', a[2])\n"
    "  end\n"
    "end\n"
    "local gone = 0\n"
    "if a[3] == '1' and not meta then gone = redis.call('EXISTS', k[6]) end\n"
    "return {meta, e, exists, gone}\n";

/* KEYS: as above. ARGV: sha256 hex of the caller's token ('' none), its
 * identity digest hex ('' anonymous), the cancel key's PX. Another pod's
 * DELETE (or WebSocket CANCEL): checks the caller against the meta as a
 * reattach does, then leaves the run's nonce in the cancel key, which the
 * owner's next write (events, or its heartbeat) reads. Returns the HTTP
 * status: 202 recorded, 403, 404 unknown, 409 ended (or its pod is gone:
 * no one can cancel it), 410 expired. */
static const char k_cancel_lua[] =
    "local k, a = KEYS, ARGV\n"
    "local m = redis.call('GET', k[2])\n"
    "if not m then\n"
    "  if redis.call('EXISTS', k[6]) == 1 then return 410 end\n"
    "  return 404\n"
    "end\n"
    "local nonce, th, who = string.match(m, '^(%S+) (%S+) (%S+) ')\n"
    "if not nonce or not ((a[1] ~= '' and a[1] == th) or (a[2] ~= '' and a[2] == who)) then return 403 end\n"
    "local last = redis.call('XREVRANGE', k[1], '+', '-', 'COUNT', 1)\n"
    "if #last == 1 and string.sub(last[1][1], -2) == '-1' then return 409 end\n"
    "if redis.call('EXISTS', k[3]) == 0 then return 409 end\n"
    "redis.call('SET', k[5], nonce, 'PX', a[3])\n"
    "return 202\n";

enum { RSX_END_NONE, RSX_END_DONE, RSX_END_FAILED };

typedef struct rsx_w {
    list_t      link, dirty_link;
    bool        dirty, sent_meta, closing;
    uint8_t     end;                /* RSX_END_* once closed */
    shard_t    *sh;
    runlog_t   *l;
    char        id[RSX_ID_MAX];
    uint16_t    idn;
    char        nonce[33];
    char        meta[33 + 65 + 33 + 96 + CFG_NAME_MAX];
    uint32_t    ttl_ms;
    uint32_t    inflight;           /* batches sent, not answered: w is freed after the last */
    void      (*seen)(void *arg);
    void       *seen_arg;
    uint64_t    last_seq;           /* the newest record seen */
    uint64_t    sent_ms;            /* the last batch: the owner key is fresh */
    buf_t       recs;               /* waiting: [u64 seq][u32 len][u8 type] json, back to back */
    uint32_t    n_recs;
    int         status;
    char        code[40], msg[200];
} rsx_w_t;

static void hex(char *out, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

void rsx_keys(const cfg_t *cfg, const char *id, size_t idn, char k[RSXK_N][RSX_KEY_MAX], size_t kl[RSXK_N])
{
    const char *pre = redis_key_prefix(cfg);
    static const char *const suffix[RSXK_N] = {"", ":meta", ":owner", ":remote", ":cancel", ":gone"};
    for (int i = 0; i < RSXK_N; i++) {
        int n = snprintf(k[i], RSX_KEY_MAX, "%srun:", pre);
        memcpy(k[i] + n, id, idn);
        size_t sl = strlen(suffix[i]);
        memcpy(k[i] + n + idn, suffix[i], sl + 1);
        kl[i] = (size_t)n + idn + sl;
    }
}

/* --- the writer ---------------------------------------------------------------------- */

static void mark_dirty(rsx_shard_t *rs, rsx_w_t *w)
{
    if (w->dirty)
        return;
    w->dirty = true;
    list_push_back(&rs->dirty, &w->dirty_link);
    if (!timer_armed(&rs->heartbeat) || rs->heartbeat.at > rs->sh->now_ms)
        timer_arm(&rs->sh->timers, &rs->heartbeat, rs->sh->now_ms);   /* records after the turn end's flush */
}

static void on_append(runlog_t *l, const runlog_rec_t *rec, void *ctx)
{
    (void)l;
    rsx_w_t *w = ctx;
    rsx_shard_t *rs = rsx_shard(w->sh);
    size_t need = 13 + rec->len;
    w->last_seq = rec->seq;
    if (rs->queued + need > resume_conf(w->sh->cfg)->rsx.max_queued || !redis_up(w->sh)) {
        RSX_COUNT(w->sh, events_dropped, 1);   /* a follower meets the gap: RUN_ERROR */
        return;
    }
    buf_t *b = &w->recs;
    if (buf_reserve(b, need)) {
        RSX_COUNT(w->sh, events_dropped, 1);
        return;
    }
    memcpy(b->data + b->len, &rec->seq, 8);
    uint32_t n = (uint32_t)rec->len;
    memcpy(b->data + b->len + 8, &n, 4);
    b->data[b->len + 12] = (char)rec->type;
    memcpy(b->data + b->len + 13, rec->json, rec->len);
    b->len += need;
    w->n_recs++;
    rs->queued += need;
    mark_dirty(rs, w);
}

static void w_free(rsx_shard_t *rs, rsx_w_t *w)
{
    if (w->inflight)
        return;   /* its last reply frees it */
    rs->queued -= w->recs.len;
    list_unlink(&w->link);
    if (w->dirty)
        list_unlink(&w->dirty_link);
    buf_free(&w->recs);
    free(w);
}

/* Another pod asked to cancel w's run (its DELETE or WebSocket CANCEL, read
 * by the write script): the run under this id, if it is still w's (its token
 * hashes to w's meta), is cancelled as a local DELETE cancels it. */
static void owner_cancel(rsx_w_t *w)
{
    rs_view_t v;
    rs_log_t *lg = rs_hold(w->id, w->idn, &v);
    uint8_t h[DIGEST_SHA256_LEN];
    char hx[2 * DIGEST_SHA256_LEN + 1];
    if (!lg)
        return;
    if (v.running && !digest_sha256(v.token, 32, h)) {
        hex(hx, h, sizeof h);
        if (!memcmp(hx, w->meta + 33, 64))   /* meta: "<nonce> <token hash> ..." */
            rs_cancel(lg);
    }
    rs_unhold(lg);
}

static void write_done(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    rsx_w_t *w = ctx;
    rsx_shard_t *rs = rsx_shard(sh);
    rs->queued -= tag;
    w->inflight--;
    if (err || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
        RSX_COUNT(sh, write_errors, 1);
    } else if (!w->end) {
        if (rep->element[1]->type == REDIS_REPLY_INTEGER && rep->element[1]->integer == 1 && w->seen)
            w->seen(w->seen_arg);   /* a client on another pod follows: not detached */
        if (rep->element[2]->type == REDIS_REPLY_INTEGER && rep->element[2]->integer == 1)
            owner_cancel(w);
    }
    if (w->end && !w->inflight && !w->dirty)
        w_free(rs, w);
}

static bool av_room(rsx_shard_t *rs, size_t n)
{
    if (n <= rs->av_cap)
        return true;
    const char **av = realloc(rs->av, n * sizeof *av);
    if (av)
        rs->av = av;
    size_t *al = av ? realloc(rs->al, n * sizeof *al) : NULL;
    if (al)
        rs->al = al;
    if (!av || !al)
        return false;
    rs->av_cap = n;
    return true;
}

/* One EVALSHA: up to RSX_BATCH_MAX of w's records from *off, and the end
 * when they are the last. Strings are formatted into rs->args first, then
 * pointed at (args does not move once filled). */
static void send_batch(rsx_shard_t *rs, rsx_w_t *w, size_t *off)
{
    shard_t *sh = rs->sh;
    const resume_conf_t *rc = resume_conf(sh->cfg);
    char keys[RSXK_N][RSX_KEY_MAX];
    size_t kl[RSXK_N], start = *off, n = 0;
    while (*off < w->recs.len && n < RSX_BATCH_MAX) {
        uint32_t len;
        memcpy(&len, w->recs.data + *off + 8, 4);
        *off += 13 + len;
        n++;
    }
    bool last = *off >= w->recs.len, with_end = last && w->end;
    rsx_keys(sh->cfg, w->id, w->idn, keys, kl);
    buf_t *a = &rs->args;
    buf_reset(a);
    /* numbers: maxlen, ttl, px, end seq, status, then each event's seq */
    if (buf_reserve(a, 128 + n * 24) || !av_room(rs, RSXK_N + RSX_FIXED + 3 * n)) {
        rs->queued -= *off - start;
        RSX_COUNT(sh, batches_dropped, 1);
        RSX_COUNT(sh, events_dropped, n);
        return;
    }
    size_t num[5 + RSX_BATCH_MAX][2];
    uint64_t vals[5] = {rc->rsx.max_len, w->ttl_ms, 3ull * rc->rsx.heartbeat_ms, w->last_seq, (uint64_t)w->status};
    for (int i = 0; i < 5; i++) {
        num[i][0] = a->len;
        a->len += (size_t)snprintf(a->data + a->len, 24, "%llu", (unsigned long long)vals[i]);
        num[i][1] = a->len - num[i][0];
    }
    for (size_t i = 0, p = start; i < n; i++) {
        uint64_t seq;
        uint32_t len;
        memcpy(&seq, w->recs.data + p, 8);
        memcpy(&len, w->recs.data + p + 8, 4);
        num[5 + i][0] = a->len;
        a->len += (size_t)snprintf(a->data + a->len, 24, "%llu", (unsigned long long)seq);
        num[5 + i][1] = a->len - num[5 + i][0];
        p += 13 + len;
    }
    const char **av = rs->av;
    size_t *al = rs->al, c = 0;
#define ARG(p, n) (av[c] = (p), al[c] = (n), c++)
#define NUM(i)    ARG(a->data + num[i][0], num[i][1])
    for (int i = 0; i < RSXK_N; i++)
        ARG(keys[i], kl[i]);
    static const char *const end_names[] = {"", "done", "failed"};
    NUM(0);
    NUM(1);
    NUM(2);
    ARG(g_pod, strlen(g_pod));
    ARG(w->sent_meta ? "" : w->meta, w->sent_meta ? 0 : strlen(w->meta));
    ARG(w->nonce, 32);
    ARG(with_end ? end_names[w->end] : "", with_end ? strlen(end_names[w->end]) : 0);
    NUM(3);
    NUM(4);
    ARG(w->code, strlen(w->code));
    ARG(w->msg, strlen(w->msg));
    for (size_t i = 0, p = start; i < n; i++) {
        uint32_t len;
        memcpy(&len, w->recs.data + p + 8, 4);
        const char *tn = agui_type_name((agui_type_t)(uint8_t)w->recs.data[p + 12]);
        NUM(5 + i);
        ARG(tn, strlen(tn));
        ARG(w->recs.data + p + 13, len);
        p += 13 + len;
    }
#undef NUM
#undef ARG
    size_t bytes = *off - start;
    if (!redis_evalsha(sh, g_rsx_script_write, write_done, w, bytes, RSXK_N, (int)c, av, al)) {
        rs->queued -= bytes;   /* else counted until its reply */
        RSX_COUNT(sh, batches_dropped, 1);
        RSX_COUNT(sh, events_dropped, n);
        return;
    }
    w->inflight++;
    w->sent_meta = true;
    w->sent_ms = sh->now_ms;
    RSX_COUNT(sh, batches, 1);
    RSX_COUNT(sh, events_written, n);
}

/* Sends w's batch (and its end); frees w once it has ended. */
static void flush_one(rsx_shard_t *rs, rsx_w_t *w)
{
    size_t off = 0;
    do   /* each batch on its own: one refused leaves a gap, the next ones (the end) still go */
        send_batch(rs, w, &off);
    while (off < w->recs.len);
    buf_reset(&w->recs);
    w->n_recs = 0;
    if (w->end)
        w_free(rs, w);
}

static void flush(rsx_shard_t *rs)
{
    while (!list_empty(&rs->dirty)) {
        rsx_w_t *w = list_item(rs->dirty.next, rsx_w_t, dirty_link);
        list_unlink(&w->dirty_link);
        w->dirty = false;
        flush_one(rs, w);
    }
}

/* The timer: the flush of records appended after the turn end, and the
 * owner keys of runs that sent nothing for a heartbeat. */
static void heartbeat_fired(agate_timer_t *t)
{
    rsx_shard_t *rs = (rsx_shard_t *)((char *)t - offsetof(rsx_shard_t, heartbeat));
    shard_t *sh = rs->sh;
    uint32_t hb = resume_conf(sh->cfg)->rsx.heartbeat_ms;
    flush(rs);
    list_each_safe(&rs->live, n, tmp) {
        rsx_w_t *w = list_item(n, rsx_w_t, link);
        if (!w->end && w->sent_meta && sh->now_ms - w->sent_ms >= hb && redis_up(sh))
            mark_dirty(rs, w);   /* an empty batch renews the owner key and the expiries */
    }
    flush(rs);
    if (!list_empty(&rs->live))
        timer_arm(&sh->timers, &rs->heartbeat, sh->now_ms + hb / 2);
}

void *rsx_open(shard_t *sh, runlog_t *l, const char *id, size_t idn, const char *token, const uint8_t *who,
               const char *agent, uint32_t ttl_ms, void (*seen)(void *arg), void *arg)
{
    rsx_shard_t *rs = rsx_shard(sh);
    if (!rs || !redis_configured(sh->cfg) || idn >= RSX_ID_MAX)
        return NULL;
    rsx_w_t *w = calloc(1, sizeof *w);
    uint8_t nonce[16], th[DIGEST_SHA256_LEN];
    if (!w || getrandom(nonce, sizeof nonce, GRND_NONBLOCK) != (ssize_t)sizeof nonce ||
        digest_sha256(token, 32, th)) {
        free(w);
        return NULL;
    }
    w->sh = sh;
    w->l = l;
    memcpy(w->id, id, idn);
    w->idn = (uint16_t)idn;
    hex(w->nonce, nonce, 16);
    char th_hex[65], who_hex[33] = "-";
    hex(th_hex, th, sizeof th);
    if (who)
        hex(who_hex, who, 16);
    /* the nonce first (the write script compares it), then what a reattach checks */
    snprintf(w->meta, sizeof w->meta, "%s %s %s %s %s", w->nonce, th_hex, who_hex, agent, g_pod);
    w->ttl_ms = ttl_ms;
    w->seen = seen;
    w->seen_arg = arg;
    list_init(&w->dirty_link);
    list_push_back(&rs->live, &w->link);
    l->hook_ctx = w;
    l->on_append = on_append;
    if (!timer_armed(&rs->heartbeat))
        timer_arm(&sh->timers, &rs->heartbeat, sh->now_ms + resume_conf(sh->cfg)->rsx.heartbeat_ms / 2);
    return w;
}

void rsx_close(shard_t *sh, void *ctx, bool failed, int status, const char *code, const char *msg)
{
    rsx_w_t *w = ctx;
    rsx_shard_t *rs = rsx_shard(sh);
    if (!w || !rs)
        return;
    w->l->on_append = NULL;
    w->l->hook_ctx = NULL;
    w->end = failed ? RSX_END_FAILED : RSX_END_DONE;
    w->status = failed ? status : 0;
    snprintf(w->code, sizeof w->code, "%s", failed && code ? code : "");
    snprintf(w->msg, sizeof w->msg, "%s", failed && msg ? msg : "");
    if (!w->sent_meta && !w->n_recs && !failed) {
        w_free(rs, w);   /* nothing reached Redis: nothing to end there */
        return;
    }
    mark_dirty(rs, w);
}

/* --- the shard module ---------------------------------------------------------------- */

static void rsx_turn_end(shard_t *sh)
{
    rsx_shard_t *rs = rsx_shard(sh);
    if (rs && !list_empty(&rs->dirty) && !sh->stopping)
        flush(rs);
}

static int rsx_init(shard_t *sh)
{
    rsx_shard_t *rs = calloc(1, sizeof *rs);
    if (!rs)
        return -ENOMEM;
    rs->sh = sh;
    list_init(&rs->live);
    list_init(&rs->dirty);
    rs->heartbeat.cb = heartbeat_fired;
    sh->mod[g_rsx_mod] = rs;
    return 0;
}

/* After net/resume.c's stop (registered after this module), which ended
 * every run: their ends go out now if Redis is still up. */
static void rsx_stop(shard_t *sh)
{
    rsx_shard_t *rs = rsx_shard(sh);
    if (!rs)
        return;
    flush(rs);
    timer_cancel(&sh->timers, &rs->heartbeat);
}

static void rsx_free(shard_t *sh)
{
    rsx_shard_t *rs = rsx_shard(sh);
    if (!rs)
        return;
    list_each_safe(&rs->live, n, tmp) {   /* (redis's stop answered every command: nothing is in flight) */
        rsx_w_t *w = list_item(n, rsx_w_t, link);
        if (!w->end)
            w->l->on_append = NULL;
        w->inflight = 0;
        w_free(rs, w);
    }
    buf_free(&rs->args);
    free(rs->av);
    free(rs->al);
    free(rs);
    sh->mod[g_rsx_mod] = NULL;
}

static const shard_mod_ops_t rsx_shard_ops = {
    .name = "resume_redis", .init = rsx_init, .turn_end = rsx_turn_end, .stop = rsx_stop, .free = rsx_free,
};

/* --- metrics ------------------------------------------------------------------------- */

static void render(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    if (!redis_configured(cfg))
        return;
#define SUM(f) GWM_SUM(sh, n, rsx_metrics_t, g_rsx_mmod, m_->f)
    metrics_counter(r, "agate_resume_redis_batches", "Batches of run log events sent to Redis Streams.",
                    SUM(batches));
    metrics_counter(r, "agate_resume_redis_batches_dropped",
                    "Batches not sent: Redis down, or too much waiting (resume.redis_max_queued).",
                    SUM(batches_dropped));
    metrics_counter(r, "agate_resume_redis_events_written", "Run log events sent to Redis Streams.",
                    SUM(events_written));
    metrics_counter(r, "agate_resume_redis_events_dropped",
                    "Run log events not sent to Redis (down, or over resume.redis_max_queued).",
                    SUM(events_dropped));
    metrics_counter(r, "agate_resume_redis_write_errors",
                    "Batches Redis refused or did not answer in time (the run's stream has a gap).",
                    SUM(write_errors));
    metrics_counter(r, "agate_resume_redis_remote_reattaches",
                    "Reattaches to runs of another pod, followed through Redis.", SUM(remote_reattaches));
    metrics_counter(r, "agate_resume_redis_remote_refused",
                    "Reattaches to another pod's run refused: unknown, forbidden, truncated, or Redis down.",
                    SUM(remote_refused));
    metrics_counter(r, "agate_resume_redis_polls", "Reads of a remote run's stream by its followers.",
                    SUM(polls));
    metrics_counter(r, "agate_resume_redis_poll_errors",
                    "Reads of a remote run's stream that failed (Redis down or slow).", SUM(poll_errors));
    metrics_counter(r, "agate_resume_redis_lost_ends",
                    "Remote runs ended with RUN_ERROR gateway_restarted: their pod's owner key expired.",
                    SUM(lost_ends));
#undef SUM
}

void rsx_register(void)
{
    char host[64] = "";
    uint8_t rnd[6] = {0};
    if (gethostname(host, sizeof host - 1))
        snprintf(host, sizeof host, "unknown");
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        memset(rnd, 0, sizeof rnd);
    char rh[13];
    hex(rh, rnd, sizeof rnd);
    for (char *p = host; *p; p++)
        if (*p == ' ')
            *p = '_';   /* the meta value is space-separated */
    snprintf(g_pod, sizeof g_pod, "%s@%s", rh, host);
    static bool scripts;   /* a test's set-up registers the modules again; scripts are not deduplicated */
    if (!scripts) {
        g_rsx_script_write = redis_script_register(k_write_lua);
        g_rsx_script_read = redis_script_register(k_read_lua);
        g_rsx_script_cancel = redis_script_register(k_cancel_lua);
        scripts = true;
    }
    g_rsx_mod = shard_mod_register(&rsx_shard_ops);
    g_rsx_mmod = gwm_block_register("resume_redis", sizeof(rsx_metrics_t), render);
    rsx_remote_register();
}
