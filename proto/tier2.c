/* tier2: encoding and checking shared cache entries (see tier2.h). Encoding
 * runs once per stored run, decoding once per second-tier hit (the entry then
 * lives in the local tier), so both favour plain checks over speed; the
 * checksum is the one pass over every byte and is word-at-a-time. */
#include "proto/tier2.h"

#include <errno.h>
#include <string.h>

#include "proto/agui.h"
#include "proto/canon.h"
#include "proto/jtape.h"
#include "proto/runrec.h"

static const char MAGIC[4] = {'A', 'G', 'C', '2'};

const char *tier2_why_name(int why)
{
    static const char *const names[TIER2_WHY_COUNT] = {
        [TIER2_OK] = "ok",           [TIER2_SHORT] = "truncated", [TIER2_MAGIC] = "magic",
        [TIER2_VERSION_] = "version", [TIER2_FOREIGN] = "foreign",  [TIER2_CHECKSUM] = "checksum",
        [TIER2_RECORDS] = "records",  [TIER2_EXPIRED] = "expired",
    };
    return why >= 0 && why < TIER2_WHY_COUNT ? names[why] : "unknown";
}

uint64_t tier2_agent_hash(const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ull;
    return h | 1;
}

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t round64(uint64_t acc, uint64_t w) { return rotl(acc + w * P2, 31) * P1; }

/* Every byte moves the state through a multiply and a rotation, so a changed,
 * dropped or swapped word changes the sum but with odds of 2^-64; the length
 * goes in too, so a cut at a word boundary does as well. */
uint64_t tier2_sum(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    uint64_t h = round64(seed ^ P1, (uint64_t)n);
    for (; n >= 8; b += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = round64(h, w);
    }
    uint64_t tail = 0;
    memcpy(&tail, b, n);
    h = round64(h, tail ^ ((uint64_t)n << 56));
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    return h;
}

static inline void put64(char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint64_t get64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t get32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

int tier2_encode(buf_t *out, const tier2_meta_t *m, const char *const *parts, const size_t *lens, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lens[i];
    if (buf_reserve(out, TIER2_HDR + total))
        return -ENOMEM;
    char *h = out->data + out->len;
    uint32_t v = TIER2_VERSION;
    memcpy(h, MAGIC, 4);
    memcpy(h + 4, &v, 4);
    memcpy(h + 8, m->key, TIER2_KEY_LEN);
    put64(h + 40, m->agent);
    put64(h + 48, m->stored_ms);
    put64(h + 56, m->ttl_ms);
    put64(h + 64, total);
    char *w = h + TIER2_HDR;
    for (size_t i = 0; i < n; w += lens[i], i++)
        memcpy(w, parts[i], lens[i]);
    put64(h + 72, tier2_sum(h + TIER2_HDR, total, tier2_sum(h, 72, 0)));
    out->len += TIER2_HDR + total;
    return 0;
}

/* One record's patches as runrec_render and the SSE plan will read them: in
 * order, inside the JSON, each the content of a JSON string; fresh ids (2 + k)
 * numbered by first use, so a replay mints no more ids than the run has
 * patches (a forged k of 4e9 would otherwise mint 4e9 UUIDs). */
static int check_patches(const runrec_t *rec, uint32_t *n_fresh)
{
    size_t at = 0;
    for (uint16_t i = 0; i < rec->n_patch; i++) {
        const char *pp = rec->patches + (size_t)i * RUNREC_PATCH;
        uint32_t off = get32(pp), len = get32(pp + 4), id = get32(pp + 8);
        if (off < 1 || off < at + 1 || (uint64_t)off + len + 1 > rec->json_len)
            return -EINVAL;
        if (rec->json[off - 1] != '"' || rec->json[off + len] != '"')
            return -EINVAL;
        if (id >= 2) {
            if (id - 2 > *n_fresh)
                return -EINVAL;
            if (id - 2 == *n_fresh)
                (*n_fresh)++;
        }
        at = (size_t)off + len + 1;
    }
    return 0;
}

int tier2_check_records(const char *recs, size_t len)
{
    jtape_t *t = jtape_thread();
    uint32_t n_fresh = 0;
    uint8_t last = AGUI_TYPE_COUNT;
    if (!t)
        return -ENOMEM;
    for (size_t off = 0, size; off < len; off += size) {
        runrec_t rec;
        if (!(size = runrec_parse(recs + off, len - off, &rec)))
            return -EINVAL;
        if (rec.type >= AGUI_TYPE_COUNT || (rec.flags & ~RUNREC_F_LF))
            return -EINVAL;
        /* an unflagged line feed would end the SSE data line early */
        if (!(rec.flags & RUNREC_F_LF) && memchr(rec.json, '\n', rec.json_len))
            return -EINVAL;
        if (check_patches(&rec, &n_fresh))
            return -EINVAL;
        if (jtape_parse(t, rec.json, rec.json_len, CANON_MAX_DEPTH, 0) || t->n == 0 || t->nodes[0].kind != JT_OBJ)
            return -EINVAL;
        last = rec.type;
    }
    return last == AGUI_RUN_FINISHED ? 0 : -EINVAL;
}

int tier2_decode(const char *p, size_t n, const uint8_t key[TIER2_KEY_LEN], uint64_t agent, tier2_meta_t *m,
                 const char **recs, size_t *recs_len)
{
    if (n < 8)
        return n >= 4 && memcmp(p, MAGIC, 4) ? TIER2_MAGIC : TIER2_SHORT;
    if (memcmp(p, MAGIC, 4))
        return TIER2_MAGIC;
    if (get32(p + 4) != TIER2_VERSION)
        return TIER2_VERSION_;
    if (n < TIER2_HDR)
        return TIER2_SHORT;
    memcpy(m->key, p + 8, TIER2_KEY_LEN);
    m->agent = get64(p + 40);
    m->stored_ms = get64(p + 48);
    m->ttl_ms = get64(p + 56);
    uint64_t len = get64(p + 64);
    if (memcmp(m->key, key, TIER2_KEY_LEN) || m->agent != agent)
        return TIER2_FOREIGN;
    if (len != n - TIER2_HDR)
        return len > n - TIER2_HDR ? TIER2_SHORT : TIER2_CHECKSUM;
    if (get64(p + 72) != tier2_sum(p + TIER2_HDR, len, tier2_sum(p, 72, 0)))
        return TIER2_CHECKSUM;
    if (tier2_check_records(p + TIER2_HDR, len))
        return TIER2_RECORDS;
    *recs = p + TIER2_HDR;
    *recs_len = len;
    return TIER2_OK;
}
