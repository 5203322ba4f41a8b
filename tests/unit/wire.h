/* wire: reading what a fake connection sent, for the unit tests: split HTTP
 * responses, undo chunked framing, and pull the AG-UI events out of SSE. */
#ifndef AGATE_TEST_WIRE_H
#define AGATE_TEST_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct wire_resp {
    int    status;
    char   head[4096];
    char  *body;          /* malloc'd, dechunked, NUL-terminated */
    size_t body_len;
} wire_resp_t;

/* Parses the next response at *pos; false when none is complete. */
static inline bool wire_next(const char *w, size_t len, size_t *pos, wire_resp_t *r)
{
    const char *p = w + *pos, *end = w + len;
    const char *eoh = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
    if (!eoh)
        return false;
    size_t hl = (size_t)(eoh - p) + 4;
    if (hl >= sizeof r->head)
        return false;
    memcpy(r->head, p, hl);
    r->head[hl] = 0;
    r->status = atoi(p + 9);
    p = eoh + 4;
    r->body = malloc((size_t)(end - p) + 1);
    r->body_len = 0;
    const char *cl = strcasestr(r->head, "\r\ncontent-length:");
    if (r->status == 100 || r->status == 204) {
        /* no body */
    } else if (strcasestr(r->head, "transfer-encoding: chunked")) {
        for (;;) {
            char *e;
            unsigned long n = strtoul(p, &e, 16);
            if (e == p || e + 2 > end || (n && (size_t)(end - (e + 2)) < n + 2)) {
                free(r->body);   /* not all there yet */
                return false;
            }
            p = e + 2;
            if (!n) {
                if (end - p < 2) {
                    free(r->body);
                    return false;
                }
                p += 2;
                break;
            }
            memcpy(r->body + r->body_len, p, n);
            r->body_len += n;
            p += n + 2;
        }
    } else if (cl) {
        size_t n = strtoul(cl + 17, NULL, 10);
        if ((size_t)(end - p) < n) {
            free(r->body);
            return false;
        }
        memcpy(r->body, p, n);
        r->body_len = n;
        p += n;
    } else {
        memcpy(r->body, p, (size_t)(end - p));   /* close-delimited */
        r->body_len = (size_t)(end - p);
        p = end;
    }
    r->body[r->body_len] = 0;
    *pos = (size_t)(p - w);
    return true;
}

/* The events of an SSE body, as a JSON array (caller decrefs); pings are counted. */
static inline json_t *wire_events(const char *body, int *pings)
{
    json_t *arr = json_array();
    const char *p = body;
    if (pings)
        *pings = 0;
    while (*p) {
        const char *nl = strstr(p, "\n\n");
        if (!nl)
            break;
        if (!strncmp(p, "data: ", 6)) {
            json_t *ev = json_loadb(p + 6, (size_t)(nl - p - 6), 0, NULL);
            if (ev)
                json_array_append_new(arr, ev);
        } else if (pings && !strncmp(p, ": ping", 6)) {
            (*pings)++;
        }
        p = nl + 2;
    }
    return arr;
}

static inline const char *ev_type(json_t *arr, size_t i)
{
    return json_string_value(json_object_get(json_array_get(arr, i), "type"));
}

#endif
