/* redis: the client's API and its shard module: one connection per shard to
 * the configured Redis primary, on the shard's engine (see redis.h for the
 * contract; core/redis_conn.c runs the connection and its states).
 *
 * Ownership: the shard module owns the state (redis_shard_t), its fd, both
 * output buffers and the receive buffers (a buffer group of its own, so a
 * burst of clients never leaves Redis's reply waiting for a buffer). `out`
 * belongs to the kernel while a send is in flight; commands issued meanwhile
 * go to `next`, swapped in at the turn's end: one send per turn carries every
 * command of the turn. The state is allocated by the main thread (open), so a
 * scrape on any shard finds every shard's metrics, and freed after the shard
 * thread has stopped (close). */
#include "core/redis_int.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/shard.h"

unsigned g_redis_mod;

const redis_metrics_t *redis_shard_metrics(const shard_t *sh)
{
    const redis_shard_t *rs = redis_shard_of(sh);
    return rs ? &rs->m : NULL;
}

/* ---- scripts (registered by the main thread before the shards start) ---- */

static struct { char *lua; char sha[41]; } g_scripts[REDIS_SCRIPTS_MAX];
static unsigned g_nscripts;

unsigned redis_script_count(void) { return g_nscripts; }
const char *redis_script_lua(unsigned i) { return g_scripts[i].lua; }
const char *redis_script_sha(unsigned i) { return g_scripts[i].sha; }

unsigned redis_script_register(const char *lua)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (g_nscripts == REDIS_SCRIPTS_MAX || !(g_scripts[g_nscripts].lua = strdup(lua)) ||
        EVP_Digest(lua, strlen(lua), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
        fprintf(stderr, "agate: redis: cannot register script %u\n", g_nscripts);
        abort();   /* a start-up bug, not a runtime condition */
    }
    buf_fmt_hex(g_scripts[g_nscripts].sha, md, 20);
    g_scripts[g_nscripts].sha[40] = '\0';
    return g_nscripts++;
}

/* ---- the API ---- */

bool redis_up(const shard_t *sh)
{
    const redis_shard_t *rs = redis_shard_of(sh);
    return rs && rs->state == RC_UP && rs->n_user < redis_conf(sh->cfg)->max_pending;
}

static uint64_t issue(shard_t *sh, uint8_t kind, redis_reply_fn fn, void *ctx, uint64_t tag, int argc,
                      const char **argv, const size_t *argvlen)
{
    redis_shard_t *rs = redis_shard_of(sh);
    if (!rs || argc < 1)   /* Redis answers nothing to an empty command: the FIFO would slip */
        return 0;
    const redis_conf_t *rc = redis_conf(sh->cfg);
    if (rs->state != RC_UP || rs->n_user >= rc->max_pending) {
        redis_conn_count(rs, RR_REFUSED);
        return 0;
    }
    rp_entry_t e = {.fn = fn, .ctx = ctx, .tag = tag, .kind = kind, .issued_us = sh->now_us,
                    .deadline_ms = sh->now_ms + rc->command_timeout_ms};
    uint64_t h = redis_conn_enqueue(rs, &e, argc, argv, argvlen);
    if (!h) {
        redis_conn_count(rs, RR_REFUSED);
        return 0;
    }
    rs->n_user++;
    return h;
}

uint64_t redis_cmd(shard_t *sh, redis_reply_fn fn, void *ctx, uint64_t tag, int argc, const char **argv,
                   const size_t *argvlen)
{
    return issue(sh, RP_USER, fn, ctx, tag, argc, argv, argvlen);
}

uint64_t redis_evalsha(shard_t *sh, unsigned script, redis_reply_fn fn, void *ctx, uint64_t tag, int nkeys,
                       int argc, const char **argv, const size_t *argvlen)
{
    if (script >= g_nscripts || argc < 0 || nkeys < 0 || nkeys > argc || argc > 1024)
        return 0;
    const char *av[argc + 3];
    size_t al[argc + 3];
    char nk[20];
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = g_scripts[script].sha;
    al[1] = 40;
    al[2] = buf_fmt_u64(nk, (uint64_t)nkeys);
    av[2] = nk;
    for (int i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        al[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    return issue(sh, RP_EVALSHA, fn, ctx, tag, argc + 3, av, al);
}

void redis_cancel(shard_t *sh, uint64_t handle)
{
    redis_shard_t *rs = redis_shard_of(sh);
    rp_entry_t *e = rs ? rp_fifo_find(&rs->fifo, handle) : NULL;
    if (e)
        e->fn = NULL;
}

/* ---- the shard module ---- */

static int redis_open(shard_t *sh, char *err, size_t errlen)
{
    redis_shard_t *rs = calloc(1, sizeof *rs);
    if (!rs) {
        snprintf(err, errlen, "redis: out of memory");
        return -ENOMEM;
    }
    rs->sh = sh;
    rs->fd = -1;
    rs->logged_up = -1;
    redis_conn_timers_init(rs);
    sh->mod[g_redis_mod] = rs;   /* from now on a scrape on any shard reads its metrics */
    return 0;
}

static void redis_close(shard_t *sh)
{
    free(redis_shard_of(sh));
    sh->mod[g_redis_mod] = NULL;
}

/* Shard thread: the buffers, the queue and the reader, once Redis is
 * configured (at start, or by the first reload that sets redis.address). */
static int redis_setup(redis_shard_t *rs)
{
    shard_t *sh = rs->sh;
    const redis_conf_t *rc = redis_conf(sh->cfg);
    if (rs->bufs_ok || !rc->address[0])
        return 0;
    int r = rp_fifo_init(&rs->fifo, rc->max_pending + REDIS_INTERNAL_MAX + g_nscripts);
    if (r)
        return r;
    if ((r = rp_reader_init(&rs->rd, rc->max_reply_bytes)))
        goto fail_fifo;
    if ((r = eng_bufs_init(&sh->eng, &rs->rbufs, REDIS_RECV_BGID, REDIS_RECV_BUFS, REDIS_RECV_BUF_SIZE)))
        goto fail_reader;
    rs->bufs_ok = true;
    return 0;
fail_reader:
    rp_reader_free(&rs->rd);
fail_fifo:
    rp_fifo_free(&rs->fifo);
    return r;
}

static int redis_init(shard_t *sh) { return redis_shard_of(sh) ? redis_setup(redis_shard_of(sh)) : 0; }

static void redis_start(shard_t *sh)
{
    redis_shard_t *rs = redis_shard_of(sh);
    if (rs && rs->bufs_ok)
        redis_conn_connect(rs);
}

static void redis_turn_end(shard_t *sh)
{
    redis_shard_t *rs = redis_shard_of(sh);
    if (rs && rs->next.len) {
        timer_cancel(&sh->timers, &rs->t_flush);
        redis_conn_flush(rs);
    }
}

/* A reload that changed where or as whom to connect: a new connection now. */
static void redis_adopt(shard_t *sh, const cfg_t *old)
{
    redis_shard_t *rs = redis_shard_of(sh);
    if (!rs)
        return;   /* a shard without this module's state (a unit test's) */
    const redis_conf_t *o = redis_conf(old), *n = redis_conf(sh->cfg);
    if (redis_setup(rs) || !rs->bufs_ok)
        return;   /* out of memory: stays off until the next reload */
    bool same = o->alen == n->alen && !memcmp(&o->addr, &n->addr, n->alen) && !strcmp(o->username, n->username) &&
                !strcmp(o->secret, n->secret) && o->db == n->db;
    if (same)
        return;
    rs->backoff_ms = 0;
    if (rs->state == RC_OFF || rs->state == RC_WAIT) {
        timer_cancel(&sh->timers, &rs->t_tick);
        redis_conn_connect(rs);
        return;
    }
    redis_conn_down(rs, "configuration changed", NULL, 0, -ECONNRESET);
    if (rs->state == RC_CLOSING)
        rs->retry_due = true;   /* reconnect as soon as the old fd is closed */
    else if (rs->state == RC_WAIT)
        redis_conn_connect(rs);
}

static void redis_stop(shard_t *sh)
{
    redis_shard_t *rs = redis_shard_of(sh);
    if (!rs)
        return;
    rs->stopping = true;
    timer_cancel(&sh->timers, &rs->t_tick);
    timer_cancel(&sh->timers, &rs->t_flush);
    timer_cancel(&sh->timers, &rs->t_cmd);
    if (rs->state == RC_WAIT)
        rs->state = RC_OFF;
    redis_conn_down(rs, "stopping", NULL, 0, -ECANCELED);
}

static bool redis_inflight(const shard_t *sh)
{
    const redis_shard_t *rs = redis_shard_of(sh);
    return rs && rs->inflight;
}

static void redis_free(shard_t *sh)
{
    redis_shard_t *rs = redis_shard_of(sh);
    if (!rs)
        return;
    if (rs->fd >= 0)
        eng_close(&sh->eng, rs->fd);
    rs->fd = -1;
    redis_conn_set_up(rs, false);
    metrics_gauge_add(&rs->m.pending, -metrics_rdi(&rs->m.pending));
    rp_fifo_free(&rs->fifo);
    rp_reader_free(&rs->rd);
    buf_free(&rs->out);
    buf_free(&rs->next);
    if (rs->bufs_ok)
        eng_bufs_free(&sh->eng, &rs->rbufs);
    rs->bufs_ok = false;
}

/* Registered before the modules that issue commands, so it stops after them
 * (they cancel their own commands first) and is freed after them. */
static const shard_mod_ops_t redis_mod = {
    .name = "redis",
    .open = redis_open,
    .close = redis_close,
    .init = redis_init,
    .start = redis_start,
    .turn_end = redis_turn_end,
    .adopt = redis_adopt,
    .stop = redis_stop,
    .inflight = redis_inflight,
    .free = redis_free,
};

const shard_mod_ops_t *redis_mod_ops(void) { return &redis_mod; }

bool redis_dispatch(shard_t *sh, eng_cqe_t *cqe) { return redis_conn_dispatch(sh, cqe); }

void redis_register(void)
{
    cfg_section_register(&redis_conf_section);
    g_redis_mod = shard_mod_register(&redis_mod);
    redis_conn_register();
    metrics_register(redis_metrics_render);
}
