/* redis_proto: bounded reply objects for hiredis's reader, and the FIFO that
 * matches replies to commands (see redis_proto.h).
 *
 * A reply object is one allocation: the redisReply, then its string or its
 * element vector, so freeing a tree is one free per node. Every allocation of
 * the reply being built is charged to rp_reader_t.used, reset when a new
 * top-level reply starts; a create function that would pass max_bytes returns
 * NULL, which hiredis turns into a reader error (and frees the partial tree
 * through rp_free_obj). Nesting is bounded by hiredis 0.14 itself (7 levels). */
#include "core/redis_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void rp_free_obj(void *p) { rp_reply_free(p); }

void rp_reply_free(redisReply *rep)
{
    if (!rep)
        return;
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements; i++)
            rp_reply_free(rep->element[i]);
    free(rep);
}

/* Charges n bytes to the reply being built; false past the bound. */
static bool rp_charge(const redisReadTask *t, size_t n)
{
    rp_reader_t *rd = t->privdata;
    if (!t->parent)
        rd->used = 0;   /* a new top-level reply */
    if (n > rd->max_bytes - rd->used) {
        rd->over = true;
        return false;
    }
    rd->used += n;
    return true;
}

static void *rp_attach(const redisReadTask *t, redisReply *r)
{
    if (t->parent) {
        redisReply *parent = t->parent->obj;
        parent->element[t->idx] = r;
    }
    return r;
}

static redisReply *rp_alloc(const redisReadTask *t, int type, size_t extra)
{
    if (!rp_charge(t, sizeof(redisReply) + extra))
        return NULL;
    redisReply *r = calloc(1, sizeof *r + extra);
    if (r)
        r->type = type;
    return r;
}

static void *rp_create_string(const redisReadTask *t, char *s, size_t len)
{
    if (len > SIZE_MAX / 2)
        return NULL;
    redisReply *r = rp_alloc(t, t->type, len + 1);
    if (!r)
        return NULL;
    r->str = (char *)(r + 1);
    memcpy(r->str, s, len);
    r->str[len] = '\0';
    r->len = len;
    return rp_attach(t, r);
}

static void *rp_create_array(const redisReadTask *t, int elements)
{
    if (elements < 0 || (unsigned)elements > RP_MAX_ELEMENTS) {
        ((rp_reader_t *)t->privdata)->over = true;
        return NULL;
    }
    redisReply *r = rp_alloc(t, REDIS_REPLY_ARRAY, (size_t)elements * sizeof(redisReply *));
    if (!r)
        return NULL;
    r->elements = (size_t)elements;
    r->element = elements ? (redisReply **)(r + 1) : NULL;
    return rp_attach(t, r);
}

static void *rp_create_integer(const redisReadTask *t, long long v)
{
    redisReply *r = rp_alloc(t, REDIS_REPLY_INTEGER, 0);
    if (!r)
        return NULL;
    r->integer = v;
    return rp_attach(t, r);
}

static void *rp_create_nil(const redisReadTask *t)
{
    redisReply *r = rp_alloc(t, REDIS_REPLY_NIL, 0);
    return r ? rp_attach(t, r) : NULL;
}

static redisReplyObjectFunctions rp_functions = {
    .createString = rp_create_string,
    .createArray = rp_create_array,
    .createInteger = rp_create_integer,
    .createNil = rp_create_nil,
    .freeObject = rp_free_obj,
};

int rp_reader_init(rp_reader_t *rd, size_t max_bytes)
{
    rd->max_bytes = max_bytes;
    rd->used = 0;
    rd->over = false;
    rd->r = redisReaderCreateWithFunctions(&rp_functions);
    if (!rd->r)
        return -ENOMEM;
    rd->r->privdata = rd;
    /* Give the buffer back once it is drained rather than keep a burst's
     * worth: a large reply is rare, a shard's memory is not. */
    rd->r->maxbuf = 16u << 10;
    return 0;
}

void rp_reader_free(rp_reader_t *rd)
{
    if (rd->r)
        redisReaderFree(rd->r);
    rd->r = NULL;
}

int rp_reader_reset(rp_reader_t *rd)
{
    rp_reader_free(rd);
    return rp_reader_init(rd, rd->max_bytes);
}

int rp_fifo_init(rp_fifo_t *f, uint32_t min_cap)
{
    uint32_t cap = 16;
    while (cap < min_cap)
        cap <<= 1;
    f->v = calloc(cap, sizeof *f->v);
    if (!f->v)
        return -ENOMEM;
    f->mask = cap - 1;
    f->head = f->tail = 0;
    return 0;
}

void rp_fifo_free(rp_fifo_t *f)
{
    free(f->v);
    f->v = NULL;
    f->head = f->tail = 0;   /* a late redis_cancel finds nothing */
}

int rp_feed(rp_reader_t *rd, rp_fifo_t *f, const char *p, size_t n, rp_on_reply_fn on_reply, void *arg)
{
    if (redisReaderFeed(rd->r, p, n) != REDIS_OK)
        return -EPROTO;
    for (;;) {
        void *obj = NULL;
        if (redisReaderGetReply(rd->r, &obj) != REDIS_OK)
            return -EPROTO;
        if (!obj)
            break;
        if (f->head == f->tail) {   /* a reply nobody asked for: the stream is out of step */
            rp_reply_free(obj);
            return -EPROTO;
        }
        rp_entry_t e = rp_fifo_pop(f);
        int rc = on_reply(arg, &e, obj);
        rp_reply_free(obj);
        if (rc)
            return rc;
    }
    /* What is left is one reply not yet whole (a bulk string's bytes, an
     * array's elements to come); it may not grow past the bound either. */
    if (rd->r->len - rd->r->pos > rd->max_bytes) {
        rd->over = true;
        return -EPROTO;
    }
    return 0;
}

/* Written here rather than with hiredis's redisFormatCommandArgv, which
 * sprintf's every length into a string it mallocs, that we then copied: that
 * was 11 % of agate's CPU on a resumable run whose 44 events go to a Redis
 * Stream (perf, bench/cases/resume.sh). Same bytes (tests/unit/test_redis.c). */
int rp_format(buf_t *b, int argc, const char **argv, const size_t *argvlen)
{
    size_t need = 1 + 20 + 2;
    for (int i = 0; i < argc; i++)
        need += 1 + 20 + 2 + argvlen[i] + 2;
    if (argc < 0 || buf_reserve(b, need))
        return -ENOMEM;
    char *w = b->data + b->len;
    *w++ = '*';
    w += buf_fmt_u64(w, (uint64_t)argc);
    *w++ = '\r';
    *w++ = '\n';
    for (int i = 0; i < argc; i++) {
        *w++ = '$';
        w += buf_fmt_u64(w, argvlen[i]);
        *w++ = '\r';
        *w++ = '\n';
        if (argvlen[i])
            memcpy(w, argv[i], argvlen[i]);
        w += argvlen[i];
        *w++ = '\r';
        *w++ = '\n';
    }
    b->len = (size_t)(w - b->data);
    return 0;
}
