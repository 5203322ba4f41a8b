/* fuzz_http1: the HTTP/1.1 request path from raw bytes to responses: llhttp and
 * agate's callbacks, limits, pipelining, routing, RunAgentInput validation and
 * the echo agent's stream, with the input split into reads at fuzzer-chosen
 * sizes and time advanced between reads so timeouts and pacing fire too.
 * Input: byte 0 chooses the read size, byte 1 the time step; the rest is the
 * client's byte stream. */
#include <stddef.h>
#include <stdint.h>

#include "tests/support/fakeconn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = 1 + data[0] % 97;
    uint64_t step = (uint64_t)(data[1] % 8) * 250;
    data += 2;
    size -= 2;

    static fakeconn_t f;
    fake_init(&f);
    f.cfg.max_header_bytes = 2048;          /* small limits reach the limit paths */
    f.cfg.max_body_bytes = 4096;
    f.cfg.header_timeout_ms = 1000;
    f.cfg.max_token_interval_ms = 300;
    f.cfg.heartbeat_ms = 400;
    fake_open(&f);
    for (size_t off = 0; off < size && fake_conn(&f)->state == CONN_OPEN; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        fake_send(&f, (const char *)data + off, n);
        if (step)
            fake_advance(&f, step);
    }
    fake_settle(&f);
    fake_close(&f);
    return 0;
}
