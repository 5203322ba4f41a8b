/* cpus: how many CPUs a process may use (core/cpus.h), which is how many
 * shards it runs by default. cpu.max and cpu.cfs_quota_us values parsed;
 * the cgroup found the way the kernel describes it (/proc/self/cgroup and
 * /proc/self/mountinfo) in fake trees made under a temp directory: cgroup v2
 * with the least quota over the cgroup's ancestors, v2 seen from inside a
 * cgroup namespace, a mount of a subtree, cgroup v1's cpu controller, no
 * quota at all, and a value that is not one. The affinity mask's part is
 * tested on the real binary (tests/integration/engine.test.mjs: taskset). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cpus.h"

static char root[256];

static void put_file(const char *rel, const char *text)
{
    char p[512], dir[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", p);
    for (char *s = dir + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        mkdir(dir, 0755);
        *s = '/';
    }
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    snprintf(root, sizeof root, "/tmp/agate-cpus-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *MOUNT_V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n";

static unsigned expect(unsigned affinity, unsigned quota_up) { return quota_up < affinity ? quota_up : affinity; }

static void test_parse(void **state)
{
    double c;
    assert_int_equal(cpus_parse_max("max 100000\n", &c), 0);
    assert_true(c == 0);
    assert_int_equal(cpus_parse_max("50000 100000\n", &c), 0);
    assert_true(c == 0.5);
    assert_int_equal(cpus_parse_max("250000 100000", &c), 0);
    assert_true(c == 2.5);
    assert_int_equal(cpus_parse_max("", &c), -EINVAL);
    assert_int_equal(cpus_parse_max("lots 100000", &c), -EINVAL);
    assert_int_equal(cpus_parse_max("50000 0", &c), -EINVAL);
    assert_int_equal(cpus_parse_max("0 100000", &c), -EINVAL);
    assert_int_equal(cpus_parse_cfs("-1\n", "100000\n", &c), 0);
    assert_true(c == 0);
    assert_int_equal(cpus_parse_cfs("150000\n", "100000\n", &c), 0);
    assert_true(c == 1.5);
    assert_int_equal(cpus_parse_cfs("x", "100000", &c), -EINVAL);
    assert_int_equal(cpus_parse_cfs("100", "0", &c), -EINVAL);
}

/* A pod's container: the least of its cgroup's and its ancestors' quotas. */
static void test_v2_least_over_ancestors(void **state)
{
    put_file("proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
    put_file("proc/self/mountinfo", MOUNT_V2);
    put_file("sys/fs/cgroup/kubepods/cpu.max", "400000 100000\n");
    put_file("sys/fs/cgroup/kubepods/pod1/cpu.max", "50000 100000\n");
    put_file("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n");
    cpus_t c;
    cpus_probe(root, &c);
    assert_true(c.quota == 0.5);
    assert_string_equal(c.quota_file, "cpu.max");
    assert_int_equal(c.usable, 1);                 /* half a CPU: one shard */
    char d[160];
    cpus_describe(&c, d, sizeof d);
    assert_non_null(strstr(d, "cgroup quota 0.50 CPU (cpu.max)"));
}

/* Inside a cgroup namespace the process's cgroup is "/" at the mount. */
static void test_v2_namespace(void **state)
{
    put_file("proc/self/cgroup", "0::/\n");
    put_file("proc/self/mountinfo", MOUNT_V2);
    put_file("sys/fs/cgroup/cpu.max", "150000 100000\n");
    cpus_t c;
    cpus_probe(root, &c);
    assert_true(c.quota == 1.5);
    assert_int_equal(c.usable, expect(c.affinity, 2));   /* rounded up */
}

/* A mount showing a subtree: the path is taken relative to the mount's root. */
static void test_v2_subtree_mount(void **state)
{
    put_file("proc/self/cgroup", "0::/system.slice/agate.service\n");
    put_file("proc/self/mountinfo",
             "25 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
             "31 25 0:27 /system.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
    put_file("sys/fs/cgroup/agate.service/cpu.max", "100000 100000\n");
    cpus_t c;
    cpus_probe(root, &c);
    assert_true(c.quota == 1);
    assert_int_equal(c.usable, 1);
}

static void test_v1_cfs(void **state)
{
    put_file("proc/self/cgroup", "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n");
    put_file("proc/self/mountinfo",
             "30 23 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
             "33 23 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n");
    put_file("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "25000\n");
    put_file("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    put_file("sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us", "-1\n");
    put_file("sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n");
    cpus_t c;
    cpus_probe(root, &c);
    assert_true(c.quota == 0.25);
    assert_string_equal(c.quota_file, "cpu.cfs_quota_us");
    assert_int_equal(c.usable, 1);
}

/* No quota anywhere, or one that does not parse: the affinity mask decides. */
static void test_no_quota(void **state)
{
    put_file("proc/self/cgroup", "0::/user.slice\n");
    put_file("proc/self/mountinfo", MOUNT_V2);
    put_file("sys/fs/cgroup/user.slice/cpu.max", "max 100000\n");
    cpus_t c;
    cpus_probe(root, &c);
    assert_true(c.quota == 0);
    assert_int_equal(c.usable, c.affinity);
    assert_true(c.usable >= 1);
    char d[160];
    cpus_describe(&c, d, sizeof d);
    assert_non_null(strstr(d, "no cgroup CPU quota"));
    put_file("sys/fs/cgroup/user.slice/cpu.max", "half 100000\n");
    cpus_probe(root, &c);
    assert_true(c.quota == 0);
    assert_int_equal(c.usable, c.affinity);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test_setup_teardown(test_v2_least_over_ancestors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2_namespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2_subtree_mount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_cfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_quota, setup, teardown),
    };
    return cmocka_run_group_tests_name("cpus", tests, NULL, NULL);
}
