/* upstream: HTTP/1.1 client connections from a shard to agent services.
 *
 * Connections live in a per-shard slab and run on the shard's engine like
 * client connections: connect (with a linked timeout), one send per request,
 * single-shot receives into the shard's provided buffers. Single-shot, not
 * multishot, because not re-arming a receive is how a slow client's stream
 * pushes back on its agent: agate stops reading, TCP's window does the rest.
 * Responses are parsed with llhttp (content-length, chunked, close-delimited).
 * After a clean keep-alive response a connection goes to a per-shard,
 * per-endpoint idle pool with a receive armed, so a server-side close is seen. */
#ifndef AGATE_UPSTREAM_H
#define AGATE_UPSTREAM_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/shard.h"
#include "core/slab.h"
#include "core/timer.h"

typedef enum ups_state { UPS_FREE, UPS_CONNECTING, UPS_ACTIVE, UPS_IDLE, UPS_ABORT } ups_state_t;

typedef enum ups_fail {
    UPS_FAIL_CONNECT,    /* refused, unreachable, or the connect timed out */
    UPS_FAIL_RESET,      /* the connection broke or closed before the response ended */
    UPS_FAIL_PROTOCOL,   /* the bytes are not an HTTP/1.1 response */
} ups_fail_t;

/* What the owner (a proxied run) hears. Callbacks run inside the completion
 * handler; the owner may call ups_release() or ups_abort() from any of them. */
typedef struct ups_ops {
    void (*head)(void *owner, int status, const char *ctype, size_t ctype_len);
    void (*body)(void *owner, const char *p, size_t n);
    void (*done)(void *owner, bool keep_alive);   /* the response ended cleanly */
    void (*fail)(void *owner, ups_fail_t why, int err);
} ups_ops_t;

typedef struct ups {
    slab_item_t     item;                  /* first: slot and generation in the shard's slab */
    shard_t        *sh;
    int             fd;                    /* owned */
    ups_state_t     state;
    uint8_t         inflight;              /* SQEs naming this slot not yet completed */
    bool            recv_armed, paused, send_inflight, reused, got_head, in_pool_list;
    uint16_t        agent, ep;             /* indexes into cfg agents and their endpoints */
    llhttp_t        parser;
    buf_t           out;                   /* the request, owned */
    size_t          sent;
    char            ctype[96];
    uint32_t        ctype_len;
    uint8_t         hdr;                   /* header being read: 1 = Content-Type */
    void           *owner;                 /* NULL once released */
    const ups_ops_t *ops;
    agate_timer_t   timer;                 /* idle timeout while pooled */
    struct __kernel_timespec connect_ts;   /* the linked connect timeout; read by the kernel at submit */
    struct sockaddr_storage  addr;         /* the connect's target; read by the kernel at submit */
    uint32_t        addr_seq;              /* generation of the endpoint address it connected to */
    struct ups     *pool_next;
} ups_t;

/* The upstream: section of the configuration (ups_conf_section, in
 * upstream_dns.c), read through ups_conf(cfg). */
typedef struct ups_conf {
    uint32_t dns_refresh_ms;   /* upstream.dns_refresh: re-resolve host names this often; 0 = only at start */
} ups_conf_t;

extern cfg_section_t ups_conf_section;

static inline const ups_conf_t *ups_conf(const cfg_t *c) { return cfg_sect(c, &ups_conf_section); }
static inline ups_conf_t *ups_conf_mut(cfg_t *c) { return cfg_sect_mut(c, &ups_conf_section); }

/* Main thread, at start-up: registers the per-shard state (a shard module:
 * the slab, the idle pools, its provided buffers), the completion kinds and
 * the upstream: section. */
void ups_register(void);
/* Shard thread: sets the state up (net/proxy.c does, once an agent is a
 * proxy); 0 or -errno. Freed with the shard. */
int  ups_shard_init(shard_t *sh);

/* The address an endpoint resolved to. Set by the main thread before shards
 * start (and by the resolver thread later); shards only read it. */
int ups_resolve_all(const cfg_t *cfg, char *err, size_t errlen);
/* Copies endpoint ep's current address (lock-free: a seqlock the resolver writes). */
socklen_t ups_addr(unsigned agent, unsigned ep, struct sockaddr_storage *out, uint32_t *seq);
/* The sequence of endpoint ep's address: it moves when the address changes. */
uint32_t ups_addr_seq(unsigned agent, unsigned ep);
/* Re-resolves host names every upstream.dns_refresh on a thread of its own, so a
 * slow DNS server never stalls a shard. log_ring: where it reports changes. */
int  ups_resolver_start(const cfg_t *cfg, struct log_ring *log_ring);
/* Main thread, after a reload: the endpoints to follow from now on (starts the
 * thread if a name appeared). 0 or -errno. */
int  ups_resolver_update(const cfg_t *cfg);
void ups_resolver_stop(void);

/* A connection for endpoint ep of agent, from the idle pool or newly
 * connecting. NULL when the shard has no free slot or the socket fails. */
ups_t *ups_acquire(shard_t *sh, unsigned agent, unsigned ep, void *owner, const ups_ops_t *ops);
static inline buf_t *ups_out(ups_t *u) { return &u->out; }
void ups_send(ups_t *u);                   /* sends what the owner put in ups_out() */
void ups_pause(ups_t *u);                  /* stop reading (backpressure) */
void ups_resume(ups_t *u);
/* The owner is done: a connection whose response ended cleanly with keep-alive
 * goes to the pool, any other is closed. */
void ups_release(ups_t *u, bool reusable);
void ups_abort(ups_t *u);                  /* close now; the owner hears nothing more */

#endif
