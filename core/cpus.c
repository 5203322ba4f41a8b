/* cpus: the CPUs a process may use (see cpus.h).
 *
 * The cgroup is found as the kernel describes it: /proc/self/cgroup names the
 * process's cgroup path (v2: the "0::" line; v1: the line whose controllers
 * include cpu), /proc/self/mountinfo where that hierarchy is mounted and
 * which of its directories the mount shows (a container with its own cgroup
 * namespace sees its cgroup as "/"). The quota is read in that directory and
 * each parent up to the mount, since a parent's limit binds its children. */
#include "core/cpus.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CPUS_PATH_MAX 512
#define CPUS_DIR_MAX  (3 * CPUS_PATH_MAX)   /* root + mount point + cgroup path */

static bool read_small(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t k = fread(out, 1, n - 1, f);
    fclose(f);
    out[k] = 0;
    return k > 0;
}

int cpus_parse_max(const char *text, double *cpus)
{
    char q[32];
    unsigned long long period;
    if (sscanf(text, "%31s %llu", q, &period) != 2 || period == 0)
        return -EINVAL;
    if (!strcmp(q, "max")) {
        *cpus = 0;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long quota = strtoull(q, &end, 10);
    if (errno || *end || end == q || quota == 0)
        return -EINVAL;
    *cpus = (double)quota / (double)period;
    return 0;
}

int cpus_parse_cfs(const char *quota, const char *period, double *cpus)
{
    long long q, p;
    if (sscanf(quota, "%lld", &q) != 1 || sscanf(period, "%lld", &p) != 1 || p <= 0)
        return -EINVAL;
    if (q < 0) {
        *cpus = 0;
        return 0;
    }
    if (q == 0)
        return -EINVAL;
    *cpus = (double)q / (double)p;
    return 0;
}

/* Whether comma-separated list holds word. */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, word, n) && (p[n] == ',' || p[n] == 0 || p[n] == '\n'))
            return true;
    return false;
}

/* The cgroup path of this process in the v2 (v1 false) or v1 cpu hierarchy. */
static bool cgroup_path(const char *root, bool v1, char *out, size_t n)
{
    char path[CPUS_PATH_MAX], line[1024];
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = 0;
        bool v2line = !strcmp(line, "0") && c2 == c1 + 1;
        if (v1 ? (!v2line && has_word(c1 + 1, "cpu")) : v2line) {
            char *p = c2 + 1;
            p[strcspn(p, "\n")] = 0;
            snprintf(out, n, "%s", p);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* Where the hierarchy is mounted (*mnt) and which of its directories the
 * mount shows (*mroot). */
static bool cgroup_mount(const char *root, bool v1, char *mnt, char *mroot, size_t n)
{
    char path[CPUS_PATH_MAX], line[2048];
    snprintf(path, sizeof path, "%s/proc/self/mountinfo", root);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char r[CPUS_PATH_MAX], m[CPUS_PATH_MAX], fstype[32], super[512] = "";
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %511s %511s", r, m) != 2 ||
            sscanf(dash + 3, "%31s %*s %511s", fstype, super) < 1)
            continue;
        if (v1 ? !strcmp(fstype, "cgroup") && has_word(super, "cpu") : !strcmp(fstype, "cgroup2")) {
            snprintf(mnt, n, "%s", m);
            snprintf(mroot, n, "%s", r);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* The least quota, in CPUs, over dir and its parents down to stop (0: none). */
static double least_quota(const char *dir, size_t stop, bool v1)
{
    char d[CPUS_DIR_MAX], p[CPUS_DIR_MAX + 32], a[64], b[64];
    double least = 0;
    snprintf(d, sizeof d, "%s", dir);
    for (;;) {
        double q = 0;
        if (v1) {
            snprintf(p, sizeof p, "%s/cpu.cfs_quota_us", d);
            if (read_small(p, a, sizeof a)) {
                snprintf(p, sizeof p, "%s/cpu.cfs_period_us", d);
                if (!read_small(p, b, sizeof b) || cpus_parse_cfs(a, b, &q))
                    q = 0;
            }
        } else {
            snprintf(p, sizeof p, "%s/cpu.max", d);
            if (!read_small(p, a, sizeof a) || cpus_parse_max(a, &q))
                q = 0;
        }
        if (q > 0 && (least == 0 || q < least))
            least = q;
        char *slash = strrchr(d, '/');
        if (!slash || (size_t)(slash - d) < stop)
            break;
        *slash = 0;
    }
    return least;
}

static double cgroup_quota(const char *root, bool v1)
{
    char cg[CPUS_PATH_MAX], mnt[CPUS_PATH_MAX], mroot[CPUS_PATH_MAX], dir[CPUS_DIR_MAX];
    if (!cgroup_path(root, v1, cg, sizeof cg) || !cgroup_mount(root, v1, mnt, mroot, sizeof mnt))
        return 0;
    /* The path is relative to the cgroup namespace's root; a mount of a
     * subtree shows it without that subtree's own path. */
    const char *rel = cg;
    size_t rl = strlen(mroot);
    if (strcmp(mroot, "/") && !strncmp(cg, mroot, rl) && (cg[rl] == '/' || cg[rl] == 0))
        rel = cg + rl;
    if (!strcmp(rel, "/"))
        rel = "";
    int base = snprintf(dir, sizeof dir, "%s%s", root, mnt);
    snprintf(dir + base, sizeof dir - (size_t)base, "%s", rel);
    return least_quota(dir, (size_t)base, v1);
}

void cpus_probe(const char *root, cpus_t *out)
{
    memset(out, 0, sizeof *out);
    cpu_set_t set;
    if (!*root && !sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0) {
        out->affinity = (unsigned)CPU_COUNT(&set);
    } else {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        out->affinity = n > 0 ? (unsigned)n : 1;
    }
    double q = cgroup_quota(root, false);
    const char *file = "cpu.max";
    if (q == 0) {
        q = cgroup_quota(root, true);
        file = "cpu.cfs_quota_us";
    }
    out->usable = out->affinity;
    if (q > 0) {
        out->quota = q;
        snprintf(out->quota_file, sizeof out->quota_file, "%s", file);
        unsigned up = (unsigned)q;   /* rounded up: 0.5 CPU is one shard, 1.5 two */
        if (q - up > 1e-9)
            up++;
        if (up < out->usable)
            out->usable = up;
    }
    if (!out->usable)
        out->usable = 1;
}

void cpus_describe(const cpus_t *c, char *out, size_t n)
{
    int w = snprintf(out, n, "%u CPU%s in the affinity mask", c->affinity, c->affinity == 1 ? "" : "s");
    if (w < 0 || (size_t)w >= n)
        return;
    if (c->quota > 0)
        snprintf(out + w, n - (size_t)w, ", cgroup quota %.2f CPU (%s)", c->quota, c->quota_file);
    else
        snprintf(out + w, n - (size_t)w, ", no cgroup CPU quota");
}
