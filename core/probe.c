/* probe: see probe.h. The address is taken as cfg_parse_addr takes a listener's
 * (numeric or localhost, no resolver), so a probe never waits on DNS. */
#include "core/probe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/httpc.h"
#include "core/url.h"

int probe_run(const char *url, unsigned timeout_ms)
{
    url_t u;
    const char *bad = url_parse(url, &u);
    char addr[URL_HOST_MAX + 16];
    struct sockaddr_storage ss;
    socklen_t sslen;

    if (!bad) {
        snprintf(addr, sizeof addr, strchr(u.host, ':') ? "[%s]:%u" : "%s:%u", u.host, (unsigned)u.port);
        if (cfg_parse_addr(addr, &ss, &sslen))
            bad = "host must be a numeric address or localhost";
    }
    if (bad) {
        fprintf(stderr, "agate: --probe %s: %s\n", url, bad);
        return 2;
    }
    httpc_t h;
    httpc_init(&h, &ss, sslen, u.authority, timeout_ms);
    int st = httpc_get(&h, u.path, timeout_ms);
    httpc_free(&h);
    if (st >= 200 && st < 300) {
        printf("agate: probe %s: %d\n", url, st);
        return 0;
    }
    if (st > 0)
        fprintf(stderr, "agate: probe %s: HTTP %d\n", url, st);
    else
        fprintf(stderr, "agate: probe %s: %s\n", url, strerror(-st));
    return 1;
}
