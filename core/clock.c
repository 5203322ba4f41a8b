/* clock: wall-clock formatting. strftime is locale-dependent, so HTTP dates are
 * built from fixed English tables as RFC 9110 requires. */
#include "core/clock.h"

#include <stdio.h>
#include <string.h>

/* A thread's cached "YYYY-MM-DDTHH:MM:SS." for the current second: log lines
 * are written many thousand times a second, and gmtime_r + snprintf per line
 * was most of a request line's formatting cost. */
static __thread struct {
    time_t sec;
    char   prefix[24];
} t_iso;

size_t clock_iso8601(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (cap < 25)
        return 0;
    if (ts.tv_sec != t_iso.sec || !t_iso.prefix[0]) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(t_iso.prefix, sizeof t_iso.prefix, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        t_iso.sec = ts.tv_sec;
    }
    memcpy(out, t_iso.prefix, 20);
    long ms = ts.tv_nsec / 1000000L;
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = 0;
    return 24;
}

size_t clock_http_date(time_t t, char *out, size_t cap)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    int n = snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                     months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}
