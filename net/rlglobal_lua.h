/* rlglobal_lua: the Lua scripts behind global rate limits and concurrency
 * caps (net/rlglobal.c), each one atomic on the Redis server. Registered with
 * redis_script_register, so every connection loads them on connect and a
 * lease costs one EVALSHA. Time is the server's (TIME), never a pod's clock,
 * so pods with skewed clocks still share one bucket. Included only by
 * net/rlglobal.c; tests/integration/rlglobal_lua.test.mjs runs these exact
 * strings against a real redis-server (it reads them out of this file between
 * the lua:NAME markers, so keep each a plain run of "...\n" literals).
 *
 * Numbers: microseconds since the epoch (~1.8e15) stay exact in Lua's doubles
 * (< 2^53); they are written with %.0f because tostring would print 1.8e+15. */
#ifndef AGATE_RLGLOBAL_LUA_H
#define AGATE_RLGLOBAL_LUA_H

/* GCRA lease. KEYS[1] the bucket (a TAT in µs); ARGV: T (µs per token), tau
 * (burst * T), want. Grants min(want, available) tokens at once, charging
 * them now. Reply {granted, retry_us (when 0 granted), remaining}. The key
 * expires when the bucket is full again (+1 s), so idle keys vanish. */
/* lua:take */
static const char RLG_LUA_TAKE[] =
    "local T = tonumber(ARGV[1])\n"
    "local tau = tonumber(ARGV[2])\n"
    "local want = tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
    "if tat < now then tat = now end\n"
    "local avail = math.floor((now + tau - tat) / T)\n"
    "if avail < 1 then return {0, tat + T - tau - now, 0} end\n"
    "local n = want\n"
    "if n > avail then n = avail end\n"
    "tat = tat + n * T\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)\n"
    "return {n, 0, avail - n}\n";
/* lua:end */

/* Gives back n unused tokens: the TAT moves back by n * T, never before now
 * (a bucket cannot be fuller than full). KEYS[1]; ARGV: T, n. Reply 1, or 0
 * when the key had already expired. */
/* lua:give */
static const char RLG_LUA_GIVE[] =
    "local tat = tonumber(redis.call('GET', KEYS[1]))\n"
    "if not tat then return 0 end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local nt = tat - tonumber(ARGV[2]) * tonumber(ARGV[1])\n"
    "if nt <= now then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "else\n"
    "  redis.call('SET', KEYS[1], string.format('%.0f', nt), 'PX', math.ceil((nt - now) / 1000) + 1000)\n"
    "end\n"
    "return 1\n";
/* lua:end */

/* Concurrency slots. KEYS[1] a ZSET holder -> expiry (ms), KEYS[2] a HASH
 * holder -> slots held. ARGV: holder, have (the slots it holds now, after any
 * it gives back: authoritative, since a shard has at most one command in
 * flight per key, so a reply lost to a timeout is corrected by the next
 * call), want (more slots it asks for), max, ttl_ms. Holders whose expiry
 * passed are dropped first: a pod that died gives its slots back within
 * ttl. Reply {granted, total held after}. One script serves acquire (want >
 * 0), release (a smaller have) and the renewal (the same have: the holder's
 * expiry moves to now + ttl). */
/* lua:conc */
static const char RLG_LUA_CONC[] =
    "local holder = ARGV[1]\n"
    "local cur = tonumber(ARGV[2])\n"
    "local want = tonumber(ARGV[3])\n"
    "local max = tonumber(ARGV[4])\n"
    "local ttl = tonumber(ARGV[5])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "for _, h in ipairs(dead) do redis.call('HDEL', KEYS[2], h) end\n"
    "if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end\n"
    "local total = cur\n"
    "local all = redis.call('HGETALL', KEYS[2])\n"
    "for i = 1, #all, 2 do if all[i] ~= holder then total = total + tonumber(all[i + 1]) end end\n"
    "local n = want\n"
    "if n > max - total then n = max - total end\n"
    "if n < 0 then n = 0 end\n"
    "cur = cur + n\n"
    "if cur > 0 then\n"
    "  redis.call('HSET', KEYS[2], holder, cur)\n"
    "  redis.call('ZADD', KEYS[1], now + ttl, holder)\n"
    "  redis.call('PEXPIRE', KEYS[1], ttl * 2)\n"
    "  redis.call('PEXPIRE', KEYS[2], ttl * 2)\n"
    "else\n"
    "  redis.call('HDEL', KEYS[2], holder)\n"
    "  redis.call('ZREM', KEYS[1], holder)\n"
    "end\n"
    "return {n, total + n}\n";
/* lua:end */

#endif
