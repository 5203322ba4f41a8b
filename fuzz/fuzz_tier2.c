/* fuzz_tier2: libFuzzer driver for the shared cache entry decoder
 * (proto/tier2.c), the one reader of bytes another process wrote to Redis.
 *
 * The input is taken three ways: as an entry as it stands (for the key and
 * agent in its own header, so the checks past the header are reached); as
 * records sealed into an entry with a valid checksum (what a buggy or hostile
 * writer could store), which must decode exactly when tier2_check_records
 * accepts them; and when they are accepted, every record must render under
 * fresh ids (runrec_render) into a JSON text with no line feed unless the
 * record is flagged, minting no more fresh ids than it has patches, and the
 * SSE plan must build from them (what a local hit replays). */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "core/rand.h"
#include "proto/runrec.h"
#include "proto/tier2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void replay_all(const char *recs, size_t len)
{
    static buf_t out, q, ids, plan;
    static rand_state_t rng;
    static int seeded;
    if (!seeded) {
        assert(rand_seed(&rng) == 0);
        seeded = 1;
    }
    runrec_subst_t s;
    buf_reset(&ids);
    assert(runrec_subst_init(&s, &q, "t", 1, "r", 1, &ids, &rng) == 0);
    size_t patches = 0;
    for (size_t off = 0, n; off < len; off += n) {
        runrec_t rec;
        n = runrec_parse(recs + off, len - off, &rec);
        assert(n);
        patches += rec.n_patch;
        assert(runrec_render(&out, &rec, &s) == 0);
        if (!(rec.flags & RUNREC_F_LF))
            assert(!memchr(out.data, '\n', out.len));
    }
    assert(ids.len / RUNREC_ID_LEN <= patches);
    const char *parts[1] = {recs};
    size_t lens[1] = {len};
    buf_reset(&plan);
    assert(runrec_plan_build(&plan, parts, lens, 1) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    tier2_meta_t m;
    const char *recs;
    size_t len;
    uint8_t key[TIER2_KEY_LEN] = {0};
    uint64_t agent = 0;
    if (size >= TIER2_HDR) {
        memcpy(key, p + 8, TIER2_KEY_LEN);
        memcpy(&agent, p + 40, 8);
    }
    if (tier2_decode(p, size, key, agent, &m, &recs, &len) == TIER2_OK) {
        assert(recs == p + TIER2_HDR && len == size - TIER2_HDR);
        replay_all(recs, len);
    }

    static buf_t e;
    tier2_meta_t mine = {.agent = 7, .stored_ms = 1, .ttl_ms = 2};
    const char *parts[1] = {p};
    size_t lens[1] = {size};
    buf_reset(&e);
    assert(tier2_encode(&e, &mine, parts, lens, 1) == 0);
    int why = tier2_decode(e.data, e.len, mine.key, mine.agent, &m, &recs, &len);
    assert((why == TIER2_OK) == (tier2_check_records(p, size) == 0));
    if (why == TIER2_OK) {
        assert(len == size && !memcmp(recs, p, size));
        replay_all(recs, len);
    }
    return 0;
}
