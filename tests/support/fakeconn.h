/* fakeconn: drives one agate connection without a socket or io_uring, for unit
 * tests and fuzzers. Bytes go in through conn_input(); "sending" is simulated by
 * moving everything queued into `wire` (what the client would have read) and
 * then doing what a send completion does (conn_after_send); time is a number
 * the test advances, which fires the shard's timers. */
#ifndef AGATE_FAKECONN_H
#define AGATE_FAKECONN_H

#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/shard.h"
#include "net/conn.h"
#include "net/conns.h"
#include "net/modules.h"
#include "proto/run.h"

typedef struct fakeconn {
    cfg_t    cfg;
    shard_t  sh;
    conns_t  conns;         /* one slot, no listeners */
    buf_t    wire;          /* every byte the server sent, in order */
    bool     admin;         /* set before fake_open: the connection came in on the admin listener */
} fakeconn_t;

static inline void fake_init(fakeconn_t *f)
{
    modules_register();   /* as core/main.c does */
    memset(f, 0, sizeof *f);
    cfg_defaults(&f->cfg);
    f->cfg.log_requests = true;     /* exercise the log line; no ring, so it goes nowhere */
}

/* Call after adjusting f->cfg. */
static inline void fake_open(fakeconn_t *f)
{
    shard_t *sh = &f->sh;
    sh->cfg = &f->cfg;
    sh->now_ms = 1000;
    strcpy(sh->http_date, "Thu, 01 Jan 1970 00:00:00 GMT");
    sh->rng.s[0] = 1;
    if (!f->conns.slab.base) {
        uint32_t open_before = f->conns.n_main;   /* a test may say others are open */
        if (conns_attach(sh, &f->conns, 1))
            abort();
        f->conns.n_main = open_before;
    }
    buf_reserve(&f->wire, 1);
    f->wire.data[0] = 0;
    conn_t *c = slab_at(&f->conns.slab, 0);
    if (!c->item.live)
        slab_take(&f->conns.slab);
    conn_init_slot(sh, c, -1, f->admin);
}

/* Delivers everything queued, as the kernel would after a full send. */
static inline void fake_flush(fakeconn_t *f)
{
    conns_t *cs = &f->conns;
    while (cs->flush_head) {
        conn_t *c = cs->flush_head;
        cs->flush_head = c->flush_next;
        c->in_flush = false;
        if (c->state == CONN_ABORT || c->state == CONN_FREE)
            continue;
        conn_body_close(c);
        for (int i = 0; i < 2; i++) {
            buf_t *b = &c->out[(c->sending + i) % 2];
            size_t from = i == 0 ? c->sent : 0;
            if (b->len > from)
                buf_append(&f->wire, b->data + from, b->len - from);
            b->len = 0;
        }
        c->sent = 0;
        if (!buf_reserve(&f->wire, 1))
            f->wire.data[f->wire.len] = 0;   /* tests search the wire as a string */
        if (c->state == CONN_CLOSING)
            c->state = CONN_LINGER;   /* the FIN; what follows is discarded */
        conn_after_send(c);           /* as a send completion: held input, blocked runs */
    }
}

static inline conn_t *fake_conn(fakeconn_t *f) { return slab_at(&f->conns.slab, 0); }

static inline void fake_send(fakeconn_t *f, const char *data, size_t n)
{
    conn_input(fake_conn(f), data, n);
    fake_flush(f);
}

static inline void fake_advance(fakeconn_t *f, uint64_t ms)
{
    f->sh.now_ms += ms;
    timer_run(&f->sh.timers, f->sh.now_ms);
    fake_flush(f);
}

/* Runs timers until no stream is left (bounded). */
static inline void fake_settle(fakeconn_t *f)
{
    for (int i = 0; i < 10000 && timer_next(&f->sh.timers) != UINT64_MAX && fake_conn(f)->run; i++)
        fake_advance(f, timer_next(&f->sh.timers) - f->sh.now_ms);
}

static inline void fake_close(fakeconn_t *f)
{
    if (f->conns.slab.base) {
        conn_t *c = fake_conn(f);
        if (c->state != CONN_FREE) {
            conn_abort(c);
            conn_reap(c);
        }
        conns_detach(&f->sh);
    }
    run_pool_free(&f->sh);
    timer_heap_free(&f->sh.timers);
    buf_free(&f->sh.scratch);
    buf_free(&f->wire);
}

#endif
