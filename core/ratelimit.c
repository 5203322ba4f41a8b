/* ratelimit: GCRA and concurrency cells in one fixed-size, lock-free,
 * open-addressed table shared by every shard.
 *
 * Invariants (the argument is in docs/ARCHITECTURE.md, "Access control and
 * rate limiting"):
 *  - A cell (key, state) changes only by a 16-byte CAS. A decision expects the
 *    key and the state it read, so it lands only on its own key's cell, whatever
 *    happened to the cell in between (there is no generation to wrap).
 *  - A key has at most one live cell. A new key's cell is claimed in three
 *    steps: mark an idle cell PENDING(key, unique token); CAS the key's
 *    insertion epoch from the value read before the window was scanned to +1;
 *    then PENDING -> (key, 0). A claim whose epoch CAS fails gives the cell
 *    back; a lookup that meets a PENDING cell of its key waits for it (and
 *    cancels it if the claimer seems preempted) and scans again. Any two
 *    successful claims of a key have different epochs, and the later one's
 *    scan ran after the earlier one's mark, so it saw that cell.
 *  - Idle cells (TAT <= now, or no concurrency slot held) carry no information:
 *    forgetting one gives the same answers as keeping it. Only idle cells are
 *    taken over, so eviction never loses limiter state.
 *  - A concurrency cell with slots held is never idle, so it keeps its key
 *    until the last slot is released. */
#include "core/ratelimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "rl_cell_t puts the key in the low half");
_Static_assert(sizeof(rl_cell_t) == 16, "one cmpxchg16b per cell");

#define K_CONC UINT64_C(1)
#define K_PEND UINT64_C(2)       /* the cell is being claimed for key & ~K_PEND */

typedef unsigned __int128 u128;

static inline u128 pack(uint64_t key, uint64_t st) { return ((u128)st << 64) | key; }
static inline uint64_t lo(u128 w) { return (uint64_t)w; }
static inline uint64_t hi(u128 w) { return (uint64_t)(w >> 64); }
static inline uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* One CAS of the whole cell; returns what the cell held (== expected on
 * success). lock cmpxchg16b (every x86-64 CPU since 2006 has it) written out:
 * compilers otherwise need -mcx16 on every command line, and clang without it
 * calls a libatomic routine that may take a lock. A full barrier, like any
 * locked instruction. */
static inline u128 cas(rl_cell_t *c, u128 expect, u128 want)
{
    uint64_t elo = lo(expect), ehi = hi(expect);
    __asm__ __volatile__("lock cmpxchg16b %0"
                         : "+m"(c->w), "+a"(elo), "+d"(ehi)
                         : "b"(lo(want)), "c"(hi(want))
                         : "memory", "cc");
    return pack(elo, ehi);
}

static uint64_t g_base_ns;   /* set once by the first rl_table_init, before any shard runs */
static _Atomic uint64_t g_table_ids;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Starts at 1 s so that a fresh TAT of 0 is always in the past. */
uint64_t rl_now_ns(void) { return mono_ns() - g_base_ns + 1000000000u; }

int rl_table_init(rl_table_t *t, uint64_t capacity)
{
    uint64_t cap = 2 * RL_PROBE;
    while (cap < capacity && cap < (UINT64_C(1) << 31))
        cap <<= 1;
    memset(t, 0, sizeof *t);
    t->cells = aligned_alloc(64, cap * sizeof *t->cells);
    uint64_t ne = cap / 16 > 64 ? cap / 16 : 64;
    t->epochs = calloc(ne, sizeof *t->epochs);
    if (!t->cells || !t->epochs) {
        free(t->cells);
        free(t->epochs);
        t->cells = NULL;
        t->epochs = NULL;
        return -ENOMEM;
    }
    memset(t->cells, 0, cap * sizeof *t->cells);
    t->mask = cap - 1;
    t->emask = ne - 1;
    t->id = atomic_fetch_add_explicit(&g_table_ids, 1, memory_order_relaxed) + 1;
    if (!g_base_ns)
        g_base_ns = mono_ns();
    return 0;
}

void rl_table_free(rl_table_t *t)
{
    free(t->cells);
    free(t->epochs);
    t->cells = NULL;
    t->epochs = NULL;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

uint64_t rl_hash(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = mix64(seed ^ (n * UINT64_C(0x9e3779b97f4a7c15)));
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ mix64(w)) * UINT64_C(0x9e3779b97f4a7c15);
        h = (h << 31) | (h >> 33);
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return mix64(h ^ w ^ ((uint64_t)n << 59));
}

uint64_t rl_key_base(uint64_t rule_id, const void *client, size_t len)
{
    return rl_hash(client, len, rule_id * UINT64_C(0x9e3779b97f4a7c15));
}

uint64_t rl_key_of(uint64_t base, unsigned limit, bool concurrency)
{
    uint64_t k = mix64(base + (limit + 1) * UINT64_C(0xd6e8feb86659fd93));
    k = (k & ~(K_CONC | K_PEND)) | (concurrency ? K_CONC : 0);
    return k >= 4 ? k : k | 4;
}

uint64_t rl_key(uint64_t rule_id, unsigned limit, const void *client, size_t len, bool concurrency)
{
    return rl_key_of(rl_key_base(rule_id, client, len), limit, concurrency);
}

static inline bool is_idle(uint64_t key, uint64_t s, uint64_t now)
{
    if (!key)
        return true;
    if (key & K_PEND)
        return false;
    return (key & K_CONC) ? s == 0 : s <= now;
}

/* A claim token no other claim ever uses: thread number << 40 | its count. A
 * PENDING cell carries it so that a claimer's PENDING -> key step can only
 * succeed on its own mark, never on an identical one put back by another. */
static _Atomic uint64_t g_threads;
static __thread uint64_t t_token;

static uint64_t claim_token(void)
{
    if (!t_token)
        t_token = (atomic_fetch_add_explicit(&g_threads, 1, memory_order_relaxed) + 1) << 40;
    return ++t_token;
}

/* Another lookup is claiming a cell for our key: its next step is a few
 * instructions away, so wait for it; if it does not come (the claimer was
 * preempted between its two CASes), cancel the claim: the claimer sees its
 * mark gone and starts over, so no thread waits on a descheduled one. */
static void settle_pending(rl_cell_t *c, uint64_t pkey)
{
    for (int spin = 0; spin < 4096; spin++) {
        if (ld(&c->key) != pkey)
            return;
        __builtin_ia32_pause();
    }
    uint64_t s = ld(&c->state);
    cas(c, pack(pkey, s), pack(0, 0));
}

/* Finds (or claims) the cell for key. Returns its index and, in *state, a state
 * word read for it (the caller's CAS checks it); -1 when the probe window has
 * no cell for it. */
static long find(rl_table_t *t, uint64_t key, uint64_t now, uint64_t *state)
{
    uint64_t h = mix64(key), base = h & t->mask;
    _Atomic uint64_t *epoch = &t->epochs[(h >> 40) & t->emask];
    for (int attempt = 0; attempt < 64; attempt++) {
        uint64_t e = atomic_load_explicit(epoch, memory_order_acquire);
        long cand = -1;
        uint64_t cand_key = 0, cand_state = 0;
        bool again = false;
        for (uint64_t i = 0; i < RL_PROBE; i++) {
            uint64_t j = (base + i) & t->mask;
            rl_cell_t *c = &t->cells[j];
            uint64_t k = ld(&c->key), s = ld(&c->state);
            if (k == key) {
                *state = s;
                return (long)j;
            }
            if (k == (key | K_PEND)) {
                settle_pending(c, k);
                again = true;
                break;
            }
            if (cand < 0 && is_idle(k, s, now)) {
                cand = (long)j;
                cand_key = k;
                cand_state = s;
            }
        }
        if (again)
            continue;
        if (cand < 0)
            break;
        rl_cell_t *c = &t->cells[cand];
        uint64_t tok = claim_token();
        u128 mark = pack(key | K_PEND, tok);
        if (cas(c, pack(cand_key, cand_state), mark) != pack(cand_key, cand_state))
            continue;   /* the cell changed since the scan (torn read, or taken) */
        if (!atomic_compare_exchange_strong_explicit(epoch, &e, e + 1, memory_order_acq_rel,
                                                     memory_order_acquire)) {
            /* Another claim in this epoch slot came first: it may be for our key
             * in another cell. Give ours back (unless a waiter already did). */
            cas(c, mark, pack(0, 0));
            continue;
        }
        if (cas(c, mark, pack(key, 0)) != mark)
            continue;   /* cancelled by a waiter while we were descheduled */
        atomic_fetch_add_explicit(&t->claims, 1, memory_order_relaxed);
        if (cand_key)
            atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
        *state = 0;
        return cand;
    }
    atomic_fetch_add_explicit(&t->full, 1, memory_order_relaxed);
    return -1;
}

/* Takes up to `want` tokens of `rate` for key at once (one CAS): returns how
 * many (0: refused, r filled in), with the cell index and its new TAT. */
static uint32_t take_tokens(rl_table_t *t, uint64_t key, const rl_rate_t *rate, uint64_t now, uint32_t want,
                            rl_result_t *r, long *cell, uint64_t *tat_after)
{
    uint64_t s;
    long idx = find(t, key, now, &s);
    for (;;) {
        if (idx < 0) {
            r->remaining = (uint32_t)(rate->burst_ns / rate->interval_ns);
            *cell = -1;
            return 1;   /* no cell: allowed (counted in t->full) */
        }
        uint64_t tat = s, base = tat > now ? tat : now;
        uint64_t nt = base + rate->interval_ns;
        if (nt - now > rate->burst_ns) {
            r->allowed = false;
            r->remaining = 0;
            r->retry_ns = nt - now - rate->burst_ns;
            r->reset_ns = tat > now ? tat - now : 0;
            return 0;
        }
        uint64_t room = (now + rate->burst_ns - base) / rate->interval_ns;   /* >= 1 */
        uint32_t n = room < want ? (uint32_t)room : want;
        nt = base + n * rate->interval_ns;
        u128 seen = cas(&t->cells[idx], pack(key, s), pack(key, nt));
        if (seen == pack(key, s)) {
            r->remaining = (uint32_t)((rate->burst_ns - (nt - now)) / rate->interval_ns);
            r->reset_ns = nt - now;
            *cell = idx;
            *tat_after = nt;
            return n;
        }
        if (lo(seen) == key)
            s = hi(seen);            /* another decision for this key came first */
        else
            idx = find(t, key, now, &s);   /* the cell changed hands: look again */
    }
}

/* Gives `amount` of TAT back to the cell if it still holds key. */
static void refund_cell(rl_table_t *t, uint32_t cell, uint64_t key, uint64_t amount)
{
    rl_cell_t *c = &t->cells[cell];
    uint64_t s = ld(&c->state);
    for (;;) {
        uint64_t nv = s > amount ? s - amount : 0;
        u128 seen = cas(c, pack(key, s), pack(key, nv));
        if (seen == pack(key, s) || lo(seen) != key)
            return;   /* given back, or the cell went idle and changed hands: nothing to give */
        s = hi(seen);
    }
}

/* Tokens a thread took from a rate cell ahead of its requests. Each thread owns
 * its table (no sharing, no atomics); a lease is spent within LEASE_NS of being
 * taken or given back to the cell. */
#define LEASE_NS UINT64_C(1000000000)
typedef struct rl_lease {
    uint64_t table;                 /* rl_table_t.id; 0 = empty */
    uint64_t key;
    uint64_t tat;                   /* the cell's TAT just after the lease */
    uint64_t until;                 /* spend by then */
    uint64_t interval;
    uint32_t cell;
    uint32_t left;                  /* tokens not yet spent */
} rl_lease_t;
static __thread rl_lease_t t_leases[RL_LEASES];

/* A key's lease may sit in either of two entries, so two hot keys that share
 * one do not take turns evicting each other (each eviction is a give-back and a
 * new CAS). The same holds for the slot leases below. */
#define WAY_A(key) (((key) >> 2) & (RL_LEASES - 1))
#define WAY_B(key) (((key) >> 8) & (RL_LEASES - 1))

static rl_lease_t *lease_find(const rl_table_t *t, uint64_t key)
{
    rl_lease_t *a = &t_leases[WAY_A(key)], *b = &t_leases[WAY_B(key)];
    if (a->table == t->id && a->key == key)
        return a;
    return b->table == t->id && b->key == key ? b : NULL;
}

/* The entry a new lease of key replaces: an empty one, else the older lease. */
static rl_lease_t *lease_victim(const rl_table_t *t, uint64_t key)
{
    rl_lease_t *a = &t_leases[WAY_A(key)], *b = &t_leases[WAY_B(key)];
    if (a->table != t->id || !a->left)
        return a;
    if (b->table != t->id || !b->left)
        return b;
    return a->until <= b->until ? a : b;
}

static void lease_give_back(rl_table_t *t, rl_lease_t *l)
{
    if (l->table == t->id && l->left)
        refund_cell(t, l->cell, l->key, l->left * l->interval);
    l->table = 0;   /* a lease of another table is dropped: tables are not swapped in a running agate */
    l->left = 0;
}

uint32_t rl_lease_for(const rl_rate_t *rate, unsigned threads)
{
    if (!rate->interval_ns || !threads)
        return 1;
    uint64_t per_s = UINT64_C(1000000000) / rate->interval_ns;
    uint64_t burst = rate->burst_ns / rate->interval_ns;
    uint64_t k = per_s / (200 * (uint64_t)threads);
    if (k > burst / (8 * (uint64_t)threads))
        k = burst / (8 * (uint64_t)threads);
    if (k > RL_LEASE_MAX)
        k = RL_LEASE_MAX;
    return k < 2 ? 1 : (uint32_t)k;
}

static void hold_charge(rl_hold_t *hold, long cell, uint64_t key, uint64_t amount, bool leased)
{
    if (cell < 0)
        return;
    hold->cell = (uint32_t)cell;
    hold->key = key;
    hold->amount = amount;
    hold->leased = leased;
}

rl_result_t rl_rate_take(rl_table_t *t, uint64_t key, const rl_rate_t *rate, uint64_t now, rl_hold_t *hold)
{
    rl_result_t r = {.allowed = true};
    rl_hold_clear(hold);
    long cell;
    uint64_t tat;
    if (rate->lease <= 1) {
        if (take_tokens(t, key, rate, now, 1, &r, &cell, &tat))
            hold_charge(hold, cell, key, rate->interval_ns, false);
        return r;
    }
    rl_lease_t *l = lease_find(t, key);
    if (l && l->left && now < l->until && l->interval == rate->interval_ns) {
        l->left--;
        uint64_t ahead = l->tat > now ? l->tat - now : 0;
        uint64_t rem = ahead < rate->burst_ns ? (rate->burst_ns - ahead) / rate->interval_ns : 0;
        rem += l->left;
        r.remaining = rem > UINT32_MAX ? UINT32_MAX : (uint32_t)rem;
        r.reset_ns = ahead;
        hold_charge(hold, l->cell, key, rate->interval_ns, true);
        return r;
    }
    if (!l)
        l = lease_victim(t, key);
    lease_give_back(t, l);
    uint32_t n = take_tokens(t, key, rate, now, rate->lease, &r, &cell, &tat);
    if (!n || cell < 0)
        return r;
    *l = (rl_lease_t){.table = t->id, .key = key, .tat = tat, .until = now + LEASE_NS,
                      .interval = rate->interval_ns, .cell = (uint32_t)cell, .left = n - 1};
    r.remaining += n - 1;
    hold_charge(hold, cell, key, rate->interval_ns, true);
    return r;
}

void rl_refund(rl_table_t *t, rl_hold_t *hold)
{
    if (hold->cell == UINT32_MAX)
        return;
    rl_lease_t *l = hold->leased ? lease_find(t, hold->key) : NULL;
    if (l && l->cell == hold->cell)
        l->left++;   /* back to this thread's lease: the cell was charged for it */
    else
        refund_cell(t, hold->cell, hold->key, hold->amount);
    rl_hold_clear(hold);
}

/* Takes up to `want` slots of `max` for key in one CAS: returns how many (0:
 * all taken, r filled in), with the cell index (-1: no cell, allowed). */
static uint32_t take_slots(rl_table_t *t, uint64_t key, uint32_t max, uint32_t want, rl_result_t *r, long *cell)
{
    uint64_t s;
    long idx = find(t, key, 0, &s);
    for (;;) {
        if (idx < 0) {
            r->remaining = max;
            *cell = -1;
            return 1;
        }
        if (s >= max) {
            r->allowed = false;
            r->retry_ns = 1000000000u;   /* a slot frees when a run ends: no better guess */
            return 0;
        }
        uint32_t n = max - s < want ? (uint32_t)(max - s) : want;
        u128 seen = cas(&t->cells[idx], pack(key, s), pack(key, s + n));
        if (seen == pack(key, s)) {
            r->remaining = max - (uint32_t)s - n;
            *cell = idx;
            return n;
        }
        if (lo(seen) == key)
            s = hi(seen);
        else
            idx = find(t, key, 0, &s);
    }
}

/* Gives n slots back to the cell. count > 0 pins the cell (never idle, never
 * taken over): the key is still ours and only other takes and releases race. */
static void release_slots(rl_table_t *t, uint32_t cell, uint64_t key, uint64_t n)
{
    rl_cell_t *c = &t->cells[cell];
    uint64_t s = ld(&c->state);
    for (;;) {
        u128 seen = cas(c, pack(key, s), pack(key, s - n));
        if (seen == pack(key, s) || lo(seen) != key || hi(seen) < n)
            return;   /* (the last two cannot happen while we hold the slots) */
        s = hi(seen);
    }
}

rl_result_t rl_conc_take(rl_table_t *t, uint64_t key, uint32_t max, rl_hold_t *hold)
{
    return rl_conc_take_leased(t, key, max, 1, hold);
}

/* Slots a thread took from a concurrency cell: `used` hold runs, the rest are
 * spare for its next takes. Thread-owned like rl_lease_t. */
typedef struct rl_slots {
    uint64_t table;                 /* rl_table_t.id; 0 = empty */
    uint64_t key;
    uint32_t cell;
    uint32_t held;                  /* slots the cell counts for this thread */
    uint32_t used;                  /* of those, held by runs */
    uint32_t lease;
} rl_slots_t;
static __thread rl_slots_t t_slots[RL_LEASES];

static rl_slots_t *slots_find(const rl_table_t *t, uint64_t key)
{
    rl_slots_t *a = &t_slots[WAY_A(key)], *b = &t_slots[WAY_B(key)];
    if (a->table == t->id && a->key == key)
        return a;
    return b->table == t->id && b->key == key ? b : NULL;
}

/* The entry new slots of key replace: one holding nothing, else the one with
 * fewer runs (its spares go back to its cell, its runs release there). */
static rl_slots_t *slots_victim(rl_table_t *t, uint64_t key)
{
    rl_slots_t *a = &t_slots[WAY_A(key)], *b = &t_slots[WAY_B(key)];
    rl_slots_t *v = a->table != t->id || !a->held ? a
                  : b->table != t->id || !b->held ? b
                  : a->used <= b->used ? a : b;
    if (v->table == t->id && v->held > v->used)
        release_slots(t, v->cell, v->key, v->held - v->used);
    v->table = 0;
    return v;
}

uint32_t rl_conc_lease_for(uint32_t max, unsigned threads)
{
    uint64_t k = threads ? max / (100 * (uint64_t)threads) : 0;
    if (k > RL_LEASE_MAX)
        k = RL_LEASE_MAX;
    return k < 2 ? 1 : (uint32_t)k;
}

rl_result_t rl_conc_take_leased(rl_table_t *t, uint64_t key, uint32_t max, uint32_t lease, rl_hold_t *hold)
{
    rl_result_t r = {.allowed = true};
    rl_hold_clear(hold);
    long cell;
    if (lease <= 1) {
        if (take_slots(t, key, max, 1, &r, &cell))
            hold_charge(hold, cell, key, 1, false);
        return r;
    }
    rl_slots_t *l = slots_find(t, key);
    if (l && l->used < l->held) {
        l->used++;
        r.remaining = max - l->used;   /* what this thread knows: its spare plus the rest it has not seen */
        hold_charge(hold, l->cell, key, 1, true);
        return r;
    }
    uint32_t n = take_slots(t, key, max, lease, &r, &cell);
    if (!n || cell < 0)
        return r;
    if (l && l->cell == (uint32_t)cell) {
        l->held += n;   /* more of the same key (all its held slots were in use) */
        l->lease = lease;
    } else {
        if (!l)
            l = slots_victim(t, key);
        *l = (rl_slots_t){.table = t->id, .key = key, .cell = (uint32_t)cell, .held = n, .lease = lease};
    }
    l->used++;
    hold_charge(hold, cell, key, 1, true);
    return r;
}

void rl_release(rl_table_t *t, rl_hold_t *hold)
{
    if (hold->cell == UINT32_MAX)
        return;
    rl_slots_t *l = hold->leased ? slots_find(t, hold->key) : NULL;
    if (l && l->cell == hold->cell && l->used) {
        l->used--;
        if (l->held - l->used > l->lease) {
            /* keep at most one lease spare */
            release_slots(t, l->cell, l->key, l->held - l->used - l->lease);
            l->held = l->used + l->lease;
        }
    } else {
        release_slots(t, hold->cell, hold->key, 1);
    }
    rl_hold_clear(hold);
}

uint64_t rl_table_used(rl_table_t *t, uint64_t now)
{
    uint64_t n = 0;
    for (uint64_t j = 0; j <= t->mask; j++) {
        uint64_t k = __atomic_load_n(&t->cells[j].key, __ATOMIC_RELAXED);
        uint64_t s = __atomic_load_n(&t->cells[j].state, __ATOMIC_RELAXED);
        n += k && !is_idle(k, s, now);
    }
    return n;
}
