/* cpus: how many CPUs this process may use, which is how many shards it runs
 * by default: the CPUs in its affinity mask (taskset, a cpuset), and no more
 * than its cgroup's CPU quota allows (cgroup v2 cpu.max, or v1
 * cpu.cfs_quota_us / cpu.cfs_period_us), the least over the cgroup and its
 * ancestors, rounded up. A pod limited to 0.5 CPU on a 64-CPU node gets one
 * shard, not 64. Cold path: start-up only. */
#ifndef AGATE_CPUS_H
#define AGATE_CPUS_H

#include <stddef.h>

typedef struct cpus {
    unsigned affinity;         /* CPUs in the affinity mask (online CPUs when it cannot be read) */
    double   quota;            /* CPUs the cgroup quota allows; 0 when there is none */
    char     quota_file[24];   /* where it was found: "cpu.max" or "cpu.cfs_quota_us" */
    unsigned usable;           /* min(affinity, quota rounded up), at least 1 */
} cpus_t;

/* Reads the affinity mask and the cgroup files under root ("" for this
 * process's; a test passes a directory holding proc/self/cgroup,
 * proc/self/mountinfo and the cgroup tree). */
void cpus_probe(const char *root, cpus_t *out);

/* A cgroup v2 cpu.max value ("max 100000", "50000 100000") as CPUs, 0 for no
 * limit; -EINVAL when the text is not that. */
int cpus_parse_max(const char *text, double *cpus);
/* cgroup v1: cpu.cfs_quota_us ("-1": no limit) over cpu.cfs_period_us. */
int cpus_parse_cfs(const char *quota, const char *period, double *cpus);

/* "2 CPUs in the affinity mask, cgroup quota 0.50 CPU (cpu.max)" */
void cpus_describe(const cpus_t *c, char *out, size_t n);

#endif
