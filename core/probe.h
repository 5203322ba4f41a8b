/* probe: `agate --probe [URL]`, a health check for images that have no shell
 * or curl (a container's HEALTHCHECK, an exec probe). One blocking GET on a
 * fresh connection, bounded in time. */
#ifndef AGATE_PROBE_H
#define AGATE_PROBE_H

#define PROBE_URL_DEFAULT "http://127.0.0.1:9090/health/ready"   /* deploy/agate.yaml's admin_listen */
#define PROBE_TIMEOUT_MS  3000

/* GETs url (core/url.h's form, numeric host or localhost) and reports on
 * stdout (2xx) or stderr. Returns the exit code: 0 for a 2xx answer, 1 for any
 * other status, no answer or a timeout, 2 for a URL it cannot use. */
int probe_run(const char *url, unsigned timeout_ms);

#endif
