/* nouring: runs a command the way a hardened container runs it, under a
 * seccomp filter that refuses io_uring_setup, io_uring_enter and
 * io_uring_register (EPERM, as containerd 2's RuntimeDefault and Docker 25+
 * answer; --errno ENOSYS, as podman's default profile does). Every other
 * syscall is allowed. The integration tests start agate through it to prove
 * engine.backend: auto falls back to epoll.
 *
 *   build/nouring [--errno EPERM|ENOSYS] CMD [ARG...]
 *
 * A plain BPF program installed with prctl (no libseccomp): after
 * PR_SET_NO_NEW_PRIVS, which an unprivileged process needs for it, and which
 * exec keeps. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NOURING_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NOURING_ARCH AUDIT_ARCH_AARCH64
#else
#error "nouring: add this architecture's AUDIT_ARCH_*"
#endif

int main(int argc, char **argv)
{
    int err = EPERM, i = 1;
    if (i + 1 < argc && !strcmp(argv[i], "--errno")) {
        if (!strcmp(argv[i + 1], "ENOSYS"))
            err = ENOSYS;
        else if (strcmp(argv[i + 1], "EPERM")) {
            fprintf(stderr, "nouring: --errno EPERM or ENOSYS\n");
            return 2;
        }
        i += 2;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: nouring [--errno EPERM|ENOSYS] CMD [ARG...]\n");
        return 2;
    }
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NOURING_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
    };
    struct sock_fprog fprog = {.len = sizeof prog / sizeof prog[0], .filter = prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog)) {
        perror("nouring: seccomp");
        return 1;
    }
    execvp(argv[i], argv + i);
    fprintf(stderr, "nouring: %s: %s\n", argv[i], strerror(errno));
    return 127;
}
