/* coalesce: how a cacheable run is served (see coalesce.h). Decides HIT,
 * COALESCED or MISS from the request's key and Cache-Control, sets the run up
 * for that role, and gives back what the role held when the run is released.
 * A flight and its log are in coalesce_flight.c; the replay of an entry or a
 * flight to a client in coalesce_replay.c.
 *
 * A run's coalescing state (coal_run_t, in run_t.ext) is allocated with its
 * first cacheable run and kept while the run_t is pooled. Whatever the role
 * holds (a flight ref for a leader or a follower, an entry ref for a hit) is
 * dropped by the run's release hook, however the run ends. A run without a
 * key (no-store, a body that does not parse) is neither looked up nor stored
 * nor shared. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cache.h"
#include "net/coalesce_int.h"
#include "net/coalesce_metrics.h"
#include "proto/canon.h"
#include "proto/jtape.h"
#include "proto/runinput.h"

unsigned g_coal_ext;
unsigned g_coal_mod;

/* --- deciding ------------------------------------------------------------------------ */

static coal_run_t *co_of(run_t *r)
{
    if (!coal_run_of(r)) {
        r->ext[g_coal_ext] = calloc(1, sizeof(coal_run_t));
        if (!coal_run_of(r))
            return NULL;
        list_init(&coal_run_of(r)->link);   /* on no list: coal_follower_del leaves it alone */
    }
    coal_run_t *co = coal_run_of(r);
    co->r = r;
    co->role = COAL_ROLE_NONE;
    co->verdict = -1;
    co->store = false;
    co->f = NULL;
    co->e = NULL;
    co->wrapped = NULL;
    co->t2_cmd = 0;
    buf_reset(&co->ids);
    return co;
}

/* Cache-Control request directives that matter here. */
static void cache_control(const http_req_t *req, bool *no_cache, bool *no_store)
{
    const char *v;
    size_t n;
    *no_cache = *no_store = false;
    if (!req || !http_header(req, "cache-control", &v, &n))
        return;
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == ',' || v[i] == '\t'))
            i++;
        size_t b = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t' && v[i] != '=')
            i++;
        if (i - b == 8 && !strncasecmp(v + b, "no-cache", 8))
            *no_cache = true;
        if (i - b == 8 && !strncasecmp(v + b, "no-store", 8))
            *no_store = true;
        while (i < n && v[i] != ',')
            i++;
    }
}

static int request_key(run_t *r, coal_run_t *co, const http_req_t *req, uint8_t key[CANON_KEY_LEN])
{
    const cfg_agent_t *ag = r->agent;
    const char *paths[CFG_MAX_CACHE_IGNORE];
    canon_part_t parts[CFG_MAX_FORWARD];
    for (uint32_t i = 0; i < ag->n_cache_ignore; i++)
        paths[i] = ag->cache_ignore[i];
    canon_omit_t omit = {paths, ag->n_cache_ignore};
    /* The body on this thread's tape. runinput_parse left it there (HTTP runs;
     * a WebSocket run's body is a copy), so it is read again only when the
     * tape's generation says anything was parsed since, or the body is not the
     * bytes runinput read: a stale tape would be a wrong key, one request's
     * answer served to another. The parse is 2.9k of the 16.9k instructions of
     * the echo body's key (callgrind, see proto/canon.c). Duplicates refused as
     * runinput refuses them; a tape that passed its depth limit (lower than
     * CANON_MAX_DEPTH) is the tape this parse would give. */
    jtape_t *t = jtape_thread();
    if (!t)
        return -ENOMEM;
    const char *body = r->body ? r->body : "";
    int rc;
    _Static_assert(RUNINPUT_MAX_DEPTH <= CANON_MAX_DEPTH, "runinput's tape is canon's");
    if (!(r->in.tape_gen && t->gen == r->in.tape_gen && t->src == body && t->src_len == r->body_len) &&
        (rc = jtape_parse(t, body, r->body_len, CANON_MAX_DEPTH + 1, JTAPE_REJECT_DUPLICATES)))
        return rc;
    buf_reset(&co->out);
    if ((rc = canon_write_tape(&co->out, t, 0, &omit)))
        return rc;
    for (uint32_t i = 0; i < ag->n_forward; i++) {
        const char *v = NULL;
        size_t n = 0;
        if (!req || !http_header(req, ag->forward_headers[i], &v, &n))
            v = NULL;
        parts[i] = (canon_part_t){v, n};
    }
    enum canon_memo memo;
    if ((rc = canon_key(ag->name, parts, ag->n_forward, co->out.data ? co->out.data : "", co->out.len, key, &memo)))
        return rc;
    if (coalm(r->sh))
        metrics_add(&coalm(r->sh)->key_memo[coal_agent_idx(r)][memo], 1);
    return 0;
}

static void count(run_t *r, enum coalm_result what)
{
    coal_run_of(r)->verdict = (int8_t)what;
    if (coalm(r->sh))
        metrics_add(&coalm(r->sh)->results[coal_agent_idx(r)][what], 1);
}

/* By hand: this snprintf and sse.c's head_lines one were 3 % of a cache hit's
 * CPU (perf). co->head holds the longest, "COALESCED", the tier line and 20
 * digits. */
static void set_head(coal_run_t *co, const char *what, bool shared, uint64_t age_ms)
{
    _Static_assert(sizeof co->head >= sizeof "X-Cache: COALESCED\r\nX-Cache-Tier: shared\r\n"
                                           "Age: 18446744073709551615\r\n", "head size");
    char *p = co->head;
    size_t wl = strlen(what);
    memcpy(p, "X-Cache: ", 9);
    memcpy(p + 9, what, wl);
    p += 9 + wl;
    if (shared) {
        memcpy(p, "\r\nX-Cache-Tier: shared", 22);
        p += 22;
    }
    memcpy(p, "\r\nAge: ", 7);
    p += 7;
    p += buf_fmt_u64(p, age_ms / 1000);
    memcpy(p, "\r\n", 3);
    co->r->head_extra = co->head;
}

void coal_serve_hit(run_t *r, coal_run_t *co, cache_entry_t *e, bool shared, uint64_t age_ms)
{
    cache_view_t v = cache_view(e);
    co->role = COAL_ROLE_HIT;
    co->e = e;
    coal_reader_blob(&co->rd, v, &co->plan);
    r->replay = true;
    r->ops = &coal_replay_ops;
    set_head(co, "HIT", shared, age_ms);
    count(r, MC_HIT);
}

static void follow(run_t *r, coal_run_t *co, coal_flight_t *f)
{
    shard_t *sh = r->sh;
    co->role = COAL_ROLE_FOLLOWER;
    co->f = f;
    coal_reader_flight(&co->rd, f);
    r->replay = true;
    r->ops = &coal_replay_ops;
    set_head(co, "COALESCED", false, sh->now_ms > f->start_ms ? sh->now_ms - f->start_ms : 0);
    count(r, MC_COALESCED);
}

/* Not in the cache: follow the flight for key, else lead a new one. */
static void fly(run_t *r, coal_run_t *co, const uint8_t key[CANON_KEY_LEN], bool no_cache)
{
    const cfg_agent_t *ag = r->agent;
    coal_flight_t *f = NULL;
    if (!no_cache && ag->cache_coalesce && (f = coal_flight_join(key))) {
        follow(r, co, f);
        return;
    }
    f = coal_flight_new(key, r->sh->now_ms);
    if (!f) {
        count(r, MC_MISS);
        return;   /* uncached, not an error for the client */
    }
    if (ag->cache_coalesce && !coal_flight_publish(f)) {
        coal_flight_t *other = no_cache ? NULL : coal_flight_join(key);
        if (other) {   /* another shard's identical request won the race: follow it */
            coal_flight_put(f);
            follow(r, co, other);
            return;
        }
    }
    count(r, MC_MISS);
    co->role = COAL_ROLE_LEADER;
    co->store = true;
    co->f = f;
}

int coalesce_prepare(run_t *r, const http_req_t *req)
{
    const cfg_agent_t *ag = r->agent;
    shard_t *sh = r->sh;
    if (!ag->cache_ttl_ms || !coal_flights_ready())
        return 0;
    coal_run_t *co = co_of(r);
    if (!co)
        return -ENOMEM;
    bool no_cache, no_store;
    cache_control(req, &no_cache, &no_store);
    set_head(co, "MISS", false, 0);
    uint8_t key[CANON_KEY_LEN];
    if (no_store || request_key(r, co, req, key)) {
        count(r, MC_MISS);
        return 0;   /* neither looked up nor stored nor shared */
    }

    if (!no_cache) {
        cache_entry_t *e = cache_get(key, sh->now_ms);
        if (e) {
            coal_serve_hit(r, co, e, false, sh->now_ms - cache_view(e).stored_ms);
            return 0;
        }
        if (coal_tier2_on(r)) {   /* a local miss: a local flight, else ask Redis before leading one */
            coal_flight_t *f = ag->cache_coalesce ? coal_flight_join(key) : NULL;
            if (f)
                follow(r, co, f);
            else
                coal_tier2_wait(r, co, key);
            return 0;
        }
    }
    fly(r, co, key, no_cache);
    return 0;
}

/* Redis had nothing usable: decide as prepare would now (the entry may have
 * been stored, or a flight started, while the lookup was out). */
void coal_decide_local(run_t *r, coal_run_t *co)
{
    cache_entry_t *e = cache_get(co->key, r->sh->now_ms);
    if (e)
        coal_serve_hit(r, co, e, false, r->sh->now_ms - cache_view(e).stored_ms);
    else
        fly(r, co, co->key, false);
}

const char *coalesce_result(const run_t *r)
{
    static const char *const names[MC_COUNT] = {[MC_HIT] = "HIT", [MC_MISS] = "MISS", [MC_COALESCED] = "COALESCED"};
    if (!coal_run_of(r) || coal_run_of(r)->verdict < 0 || coal_run_of(r)->verdict >= MC_COUNT)
        return NULL;
    return names[coal_run_of(r)->verdict];
}

/* --- release ------------------------------------------------------------------------- */

static void coalesce_run_stop(run_t *r)
{
    coal_run_t *co = coal_run_of(r);
    if (!co)
        return;
    switch (co->role) {
    case COAL_ROLE_LEADER:
        coalesce_leader_failed(r, 502, "upstream_failed", "the request that led this shared run was cancelled");
        coal_flight_put(co->f);
        break;
    case COAL_ROLE_FOLLOWER:
        coal_follower_del(co);
        coal_flight_put(co->f);
        break;
    case COAL_ROLE_HIT:
        cache_put(co->e);
        break;
    default:
        break;
    }
    co->role = COAL_ROLE_NONE;
    co->verdict = -1;
    co->f = NULL;
    co->e = NULL;
    r->replay = false;
    if (co->out.cap > 64 * 1024)
        buf_free(&co->out);   /* keep pooled runs small */
    if (co->ids.cap > 64 * 1024)
        buf_free(&co->ids);
    if (co->quoted.cap > 64 * 1024)
        buf_free(&co->quoted);
}

static void coalesce_run_destroy(run_t *r)
{
    coal_run_t *co = coal_run_of(r);
    if (!co)
        return;
    buf_free(&co->out);
    buf_free(&co->ids);
    buf_free(&co->quoted);
    free(co);
    r->ext[g_coal_ext] = NULL;
}

bool coalesce_active(const run_t *r) { return coal_run_of(r) != NULL && coal_run_of(r)->role != COAL_ROLE_NONE; }

static const run_ext_ops_t coalesce_ext = {.release = coalesce_run_stop, .destroy = coalesce_run_destroy};

void coalesce_register(void)
{
    g_coal_mod = shard_mod_register(&coal_shard_ops);
    g_coal_ext = run_ext_register(&coalesce_ext);
}
