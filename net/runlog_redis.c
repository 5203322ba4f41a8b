/* runlog_redis: the Redis Stream writer of resumable runs (see runlog_redis.h),
 * its scripts, the shard module and the agate_resume_redis_* metrics.
 *
 * Ownership: a writer (rsx_w_t) belongs to the shard that runs its run; the
 * run log's append hook marks it dirty, and the shard's turn end (or a timer
 * armed at once, for records appended after it) sends each dirty writer's
 * new records as one EVALSHA whose arguments point into the log itself (no
 * copy: the Redis connection's formatter is the one copy). A record the log
 * dropped from its front before it was sent (more than resume.max_bytes in
 * one turn) is counted and skipped: a follower on another pod meets the gap.
 * rsx_close sends the last batch and the end at once, then lets go of the
 * log; the writer is freed when its last reply is in. Event bytes sent and
 * not yet answered are
 * counted in rsx_shard_t.queued, bounded by resume.redis_max_queued. */
#include "net/runlog_redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/digest.h"
#include "core/rand.h"
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
    bool        dirty, sent_meta;
    uint8_t     end;                /* RSX_END_* once closed */
    shard_t    *sh;
    runlog_t   *l;                  /* the run's log, read in place; NULL after the last batch */
    runlog_reader_t rd;             /* the next record to send */
    char        id[RSX_ID_MAX];
    uint16_t    idn;
    char        nonce[33];
    char        meta[33 + 65 + 33 + 96 + CFG_NAME_MAX];
    uint16_t    meta_len;
    uint32_t    ttl_ms;
    uint32_t    inflight;           /* batches sent, not answered: w is freed after the last */
    void      (*seen)(void *arg);
    void       *seen_arg;
    uint64_t    last_seq;           /* the newest record published */
    uint64_t    sent_ms;            /* the last batch: the owner key is fresh */
    int         status;
    char        code[40], msg[200];
} rsx_w_t;

static void hex(char *out, const uint8_t *p, size_t n) { buf_fmt_hex(out, p, n); out[2 * n] = '\0'; }

void rsx_keys(const cfg_t *cfg, const char *id, size_t idn, char k[RSXK_N][RSX_KEY_MAX], size_t kl[RSXK_N])
{
    const char *pre = redis_key_prefix(cfg);
    size_t pn = strnlen(pre, 64);
    static const char *const suffix[RSXK_N] = {"", ":meta", ":owner", ":remote", ":cancel", ":gone"};
    for (int i = 0; i < RSXK_N; i++) {
        char *w = k[i];
        memcpy(w, pre, pn);
        memcpy(w += pn, "run:", 4);
        memcpy(w += 4, id, idn);
        size_t sl = strlen(suffix[i]);
        memcpy(w += idn, suffix[i], sl + 1);
        kl[i] = pn + 4 + idn + sl;
    }
}

/* --- the writer ---------------------------------------------------------------------- */

/* Sent at this turn's end, or by the flush timer (armed at once) when the
 * records came after it. */
static void mark_dirty(rsx_shard_t *rs, rsx_w_t *w)
{
    if (w->dirty)
        return;
    w->dirty = true;
    list_push_back(&rs->dirty, &w->dirty_link);
    if (!timer_armed(&rs->t_flush))
        timer_arm(&rs->sh->timers, &rs->t_flush, rs->sh->now_ms);
}

/* The log's hook, per event: nothing copied (the batch reads the log). */
static void on_append(runlog_t *l, const runlog_rec_t *rec, void *ctx)
{
    (void)l;
    rsx_w_t *w = ctx;
    w->last_seq = rec->seq;
    mark_dirty(rsx_shard(w->sh), w);
}

static void w_free(rsx_shard_t *rs, rsx_w_t *w)
{
    if (w->inflight)
        return;   /* its last reply frees it */
    list_unlink(&w->link);
    if (w->dirty)
        list_unlink(&w->dirty_link);
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

/* Numbers into rs->args (reserved for a whole batch: it never moves while
 * argv points into it). */
static void put_num(rsx_shard_t *rs, uint64_t v, const char **av, size_t *al)
{
    buf_t *a = &rs->args;
    *av = a->data + a->len;
    *al = buf_fmt_u64(a->data + a->len, v);
    a->len += *al;
}

/* The records of w's log from its reader on, up to RSX_BATCH_MAX, as (seq,
 * type, json) arguments from av[c]; records dropped from the log's front
 * before they were sent are skipped (counted: a remote reader meets the gap).
 * The log is read without its lock: only this shard appends to it or drops
 * its front. Sets *more when records are left. The count of records. */
static size_t batch_records(rsx_shard_t *rs, rsx_w_t *w, size_t c, size_t *bytes, bool *more)
{
    runlog_rec_t rec;
    size_t size, n = 0;
    int st;
    *more = false;
    while ((st = runlog_peek(w->l, &w->rd, &rec, &size)) != RUNLOG_RD_NONE && st != RUNLOG_RD_END &&
           st != RUNLOG_RD_FAILED) {
        if (st == RUNLOG_RD_GONE) {
            uint64_t first = runlog_first_seq(w->l);
            RSX_COUNT(rs->sh, events_dropped, first - w->rd.next);
            runlog_reader_init(&w->rd, first - 1);
            continue;
        }
        if (n == RSX_BATCH_MAX) {
            *more = true;
            break;
        }
        const char *tn = agui_type_name((agui_type_t)rec.type);
        put_num(rs, rec.seq, &rs->av[c], &rs->al[c]);
        rs->av[c + 1] = tn;
        rs->al[c + 1] = strlen(tn);
        rs->av[c + 2] = rec.json;
        rs->al[c + 2] = rec.len;
        c += 3;
        n++;
        *bytes += rec.len;
        runlog_advance(&w->rd, size);
    }
    return n;
}

/* Skips what w's log holds past its reader (Redis down, or too much unanswered). */
static void skip_records(rsx_shard_t *rs, rsx_w_t *w)
{
    uint64_t last = atomic_load_explicit(&w->l->last_seq, memory_order_relaxed);
    if (last >= w->rd.next)
        RSX_COUNT(rs->sh, events_dropped, last + 1 - w->rd.next);
    runlog_reader_init(&w->rd, last);
}

/* One EVALSHA: up to RSX_BATCH_MAX of w's records, and the end when they are
 * the last. Its arguments point into the log (copied by redis_evalsha before
 * it returns) and rs->args. True when records are left for another batch. */
static bool send_batch(rsx_shard_t *rs, rsx_w_t *w)
{
    shard_t *sh = rs->sh;
    const resume_conf_t *rc = resume_conf(sh->cfg);
    if (w->l && (!redis_up(sh) || rs->queued > rc->rsx.max_queued)) {
        skip_records(rs, w);
        RSX_COUNT(sh, batches_dropped, 1);
        if (!w->end)
            return false;   /* an end still goes: a follower sees the gap, then the end */
    }
    char keys[RSXK_N][RSX_KEY_MAX];
    size_t kl[RSXK_N], bytes = 0, c = 0;
    rsx_keys(sh->cfg, w->id, w->idn, keys, kl);
    buf_reset(&rs->args);
    if (!av_room(rs, RSXK_N + RSX_FIXED + 3 * RSX_BATCH_MAX) || buf_reserve(&rs->args, (5 + RSX_BATCH_MAX) * 20)) {
        if (w->l)
            skip_records(rs, w);
        RSX_COUNT(sh, batches_dropped, 1);
        return false;
    }
    const char **av = rs->av;
    size_t *al = rs->al;
#define ARG(p, n) (av[c] = (p), al[c] = (n), c++)
    for (int i = 0; i < RSXK_N; i++)
        ARG(keys[i], kl[i]);
    put_num(rs, rc->rsx.max_len, &av[c], &al[c]), c++;
    put_num(rs, w->ttl_ms, &av[c], &al[c]), c++;
    put_num(rs, 3ull * rc->rsx.heartbeat_ms, &av[c], &al[c]), c++;
    ARG(g_pod, strlen(g_pod));
    ARG(w->sent_meta ? "" : w->meta, w->sent_meta ? 0 : w->meta_len);
    ARG(w->nonce, 32);
    size_t end_at = c;   /* the end's five arguments, filled once the records are known */
    c += 5;
    bool more = false;
    size_t n = w->l ? batch_records(rs, w, c, &bytes, &more) : 0;
    c += 3 * n;
    static const char *const end_names[] = {"", "done", "failed"};
    bool with_end = !more && w->end;
    av[end_at] = with_end ? end_names[w->end] : "";
    al[end_at] = strlen(av[end_at]);
    put_num(rs, w->last_seq, &av[end_at + 1], &al[end_at + 1]);
    put_num(rs, (uint64_t)w->status, &av[end_at + 2], &al[end_at + 2]);
    av[end_at + 3] = w->code;
    al[end_at + 3] = strlen(w->code);
    av[end_at + 4] = w->msg;
    al[end_at + 4] = strlen(w->msg);
#undef ARG
    if (!redis_evalsha(sh, g_rsx_script_write, write_done, w, bytes, RSXK_N, (int)c, av, al)) {
        RSX_COUNT(sh, batches_dropped, 1);
        RSX_COUNT(sh, events_dropped, n);
        return more;
    }
    rs->queued += bytes;   /* until its reply */
    w->inflight++;
    w->sent_meta = true;
    w->sent_ms = sh->now_ms;
    RSX_COUNT(sh, batches, 1);
    RSX_COUNT(sh, events_written, n);
    return more;
}

/* Sends w's records (and its end); frees w once it has ended. */
static void flush_one(rsx_shard_t *rs, rsx_w_t *w)
{
    while (send_batch(rs, w))   /* each batch on its own: one refused leaves a gap, the next ones (the end) still go */
        ;
    if (w->end) {
        w->l = NULL;   /* every record has left: the log may go */
        w_free(rs, w);
    }
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

static void flush_fired(agate_timer_t *t)
{
    flush((rsx_shard_t *)((char *)t - offsetof(rsx_shard_t, t_flush)));
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
    if (!w || rand_secret(nonce, sizeof nonce) || digest_sha256(token, 32, th)) {
        free(w);
        return NULL;
    }
    w->sh = sh;
    w->l = l;
    runlog_reader_init(&w->rd, 0);
    memcpy(w->id, id, idn);
    w->idn = (uint16_t)idn;
    hex(w->nonce, nonce, 16);
    /* "nonce token-sha256 who agent pod": the nonce first (the write script
     * compares it), then what a reattach checks. (No snprintf: per run.) */
    char *m = w->meta;
    size_t an = strnlen(agent, CFG_NAME_MAX - 1), pn = strlen(g_pod);
    memcpy(m, w->nonce, 32);
    m[32] = ' ';
    buf_fmt_hex(m += 33, th, sizeof th);
    m[64] = ' ';
    m += 65;
    if (who) {
        buf_fmt_hex(m, who, 16);
        m += 32;
    } else {
        *m++ = '-';
    }
    *m++ = ' ';
    memcpy(m, agent, an);
    m[an] = ' ';
    memcpy(m += an + 1, g_pod, pn);
    w->meta_len = (uint16_t)(m + pn - w->meta);
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
    if (failed) {
        snprintf(w->code, sizeof w->code, "%s", code ? code : "");
        snprintf(w->msg, sizeof w->msg, "%s", msg ? msg : "");
    }
    if (w->dirty) {
        list_unlink(&w->dirty_link);
        w->dirty = false;
    }
    if (!w->sent_meta && !atomic_load_explicit(&w->l->last_seq, memory_order_relaxed)) {
        w->l = NULL;
        w_free(rs, w);   /* nothing reached Redis: nothing to end there (a failed start is no run) */
        return;
    }
    flush_one(rs, w);   /* now, while the log is sure to be there; then w lets go of it */
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
    rs->t_flush.cb = flush_fired;
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
    timer_cancel(&sh->timers, &rs->t_flush);
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
    if (rand_secret(rnd, sizeof rnd))
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
