/* main: the composition root. Registers every module (net/modules.c), reads
 * the configuration (defaults, YAML
 * file, environment), opens every shard's listeners, starts the shards and the
 * log writer, then waits for a signal. SIGTERM/SIGINT begin a graceful drain;
 * a second one cuts running streams; SIGHUP reloads the configuration: agents,
 * access and every setting the shards read per request (net/reload.c).
 *
 * Exit codes: 0 after a clean stop, 1 when start-up fails (e.g. a port in
 * use, by anything, another agate included: net/listener.c), 2 for bad
 * configuration or arguments. `--probe` is a client, not the server: it
 * exits at once with core/probe.c's code. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cache.h"
#include "core/cfggen.h"
#include "core/config.h"
#include "core/cpus.h"
#include "core/engine.h"
#include "core/json.h"
#include "core/log.h"
#include "core/otlp.h"
#include "core/probe.h"
#include "core/qsbr.h"
#include "core/shard.h"
#include "core/version.h"
#include "net/coalesce.h"
#include "net/resume.h"
#include "net/fdlimit.h"
#include "net/modules.h"
#include "net/reload.h"
#include "net/upstream.h"
#include "proto/validate.h"

/* jemalloc (release builds) reads this at start-up; MALLOC_CONF still applies
 * on top. Background threads hand freed pages back to the kernel on their own
 * schedule. Without them a shard gone quiet, which no longer calls the
 * allocator, never purges: the buffers 8000 idle keep-alive connections gave
 * back (net/conn.c, CONN_T_TRIM) stayed resident, 10.2 KiB each; with them
 * 1.3 KiB is left after the decay (10 s). Redis ships the same setting. Other
 * builds (ASan) ignore the symbol. */
const char *malloc_conf = "background_thread:true";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: agate [--config FILE] [--check-config] [--probe [URL]] [--help] [--version]\n"
            "\n"
            "AG-UI event-stream gateway: streams agent runs over Server-Sent Events.\n"
            "\n"
            "  --config FILE    YAML configuration (default: $AGATE_CONFIG, else built-in defaults)\n"
            "  --check-config   validate the configuration and exit (0 when valid, 2 when not)\n"
            "  --probe [URL]    GET URL (default " PROBE_URL_DEFAULT ") and exit: 0 on a 2xx\n"
            "                   answer within 3 s, 1 otherwise; a health check without curl\n"
            "  --help           this text\n"
            "  --version        print the version\n"
            "\n"
            "Environment overrides (applied after the file):\n%s",
            cfg_env_help());
}

/* Why this many shards: "shards: 3" when configured, else what the process
 * may use (core/cpus.h). */
static void shards_why(const cfg_t *c, char *out, size_t n)
{
    if (c->shards) {
        snprintf(out, n, "shards: %u", c->shards);
        return;
    }
    cpus_t cpus;
    cpus_probe("", &cpus);
    cpus_describe(&cpus, out, n);
}

static void log_main(const char *level, const char *msg, const cfg_t *c, unsigned nshards)
{
    buf_t b = {0};
    log_begin(&b, level, msg);
    if (c) {
        char why[160];
        const eng_choice_t *eng = eng_selected();
        buf_append_lit(&b, ",\"listen\":");
        json_put_str(&b, c->listen, strlen(c->listen));
        buf_append_lit(&b, ",\"admin_listen\":");
        json_put_str(&b, c->admin_listen, strlen(c->admin_listen));
        buf_append_lit(&b, ",\"shards\":");
        buf_append_u64(&b, nshards);
        shards_why(c, why, sizeof why);
        buf_append_lit(&b, ",\"shards_from\":");
        json_put_str(&b, why, strlen(why));
        buf_append_lit(&b, ",\"backend\":");
        json_put_str(&b, eng_backend_name(eng->backend), strlen(eng_backend_name(eng->backend)));
        buf_append_lit(&b, ",\"backend_why\":");
        json_put_str(&b, eng->why, strlen(eng->why));
        buf_append_lit(&b, ",\"version\":\"" AGATE_VERSION "\"");
    }
    log_end(&b);
    log_ring_t *r = log_ring(nshards);
    if (r)
        log_put(r, b.data, b.len);
    buf_free(&b);
}

static int load_config(cfg_t *c, int argc, char **argv, bool *check_only)
{
    const char *path = getenv("AGATE_CONFIG");
    char err[CFG_ERR_MAX];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            path = argv[i] + 9;
        } else if (!strcmp(argv[i], "--check-config")) {
            *check_only = true;
        } else if (!strcmp(argv[i], "--probe")) {   /* a URL is the next word unless it is an option */
            exit(probe_run(i + 1 < argc && argv[i + 1][0] != '-' ? argv[i + 1] : PROBE_URL_DEFAULT, PROBE_TIMEOUT_MS));
        } else if (!strncmp(argv[i], "--probe=", 8)) {
            exit(probe_run(argv[i] + 8, PROBE_TIMEOUT_MS));
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(argv[i], "--version")) {
            printf("agate %s\n", AGATE_VERSION);
            exit(0);
        } else {
            fprintf(stderr, "agate: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return -EINVAL;
        }
    }
    cfg_defaults(c);
    if (path && *path && cfg_load_file(c, path, err, sizeof err)) {
        fprintf(stderr, "agate: %s\n", err);
        return -EINVAL;
    }
    if (cfg_apply_env(c, err, sizeof err) || cfg_validate(c, err, sizeof err)) {
        fprintf(stderr, "agate: %s\n", err);
        return -EINVAL;
    }
    return 0;
}

/* Waits for signals on this thread only; the shards never see them. */
static void wait_for_stop(shard_t *shards, unsigned n, const cfg_t *cfg, const sigset_t *set)
{
    int stops = 0;
    for (;;) {
        struct timespec second = {1, 0};
        int sig = sigtimedwait(set, NULL, &second);
        if (sig < 0) {
            reload_tick(log_ring(n));   /* JWKS file changes; free retired access policies */
            continue;
        }
        if (sig == SIGHUP) {
            reload_config(log_ring(n));   /* a new configuration generation; logs a "reload" line */
            continue;
        }
        ++stops;
        atomic_store(&g_agate_draining, true);
        log_main("info", "draining", cfg, n);
        for (unsigned i = 0; i < n; i++)
            shard_wake(&shards[i]);
        if (stops > 1)
            return;
        break;
    }
    /* Draining: keep listening for a second signal until every shard is done. */
    struct timespec tick = {0, 100 * 1000 * 1000};
    for (;;) {
        unsigned done = 0;
        for (unsigned i = 0; i < n; i++)
            done += atomic_load(&shards[i].done);
        if (done == n)
            return;
        int sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            atomic_store(&g_agate_stop_now, true);
            log_main("warn", "second signal: stopping now", cfg, n);
            for (unsigned i = 0; i < n; i++)
                shard_wake(&shards[i]);
        }
    }
}

int main(int argc, char **argv)
{
    static cfg_t cfg;
    bool check_only = false;
    modules_register();   /* net/modules.c: every module, in order */
    if (load_config(&cfg, argc, argv, &check_only))
        return 2;
    char aerr[CFG_ERR_MAX + 64];
    if (reload_init(&cfg, aerr, sizeof aerr)) {   /* access policy: reads key files, so a bad one is a config error */
        fprintf(stderr, "agate: %s\n", aerr);
        return 2;
    }
    static const eng_want_t wants[] = {[CFG_BACKEND_AUTO] = ENG_WANT_AUTO, [CFG_BACKEND_IO_URING] = ENG_WANT_IO_URING,
                                       [CFG_BACKEND_EPOLL] = ENG_WANT_EPOLL};
    eng_choice_t eng;
    eng_select(wants[cfg.backend], &eng);   /* before any shard: they all set up this backend */
    unsigned n = shard_count(&cfg);
    if (check_only) {
        char why[160];
        shards_why(&cfg, why, sizeof why);
        printf("agate: configuration OK (%s)\n", cfg.path[0] ? cfg.path : "built-in defaults");
        printf("agate: would run %u shard%s (%s) on %s (%s)\n", n, n == 1 ? "" : "s", why,
               eng_backend_name(eng.backend), eng.why);
        return 0;
    }
    /* Before the generation copies max_connections: it may be lowered to fit
     * the descriptor limit, and the admin listener's reserve is set. */
    fdlimit_plan_t fdp;
    bool fdp_ok = !fdlimit_fit(&cfg, n, &fdp);
    const cfg_t *gen = qsbr_init(n) ? NULL : cfggen_init(&cfg, n);   /* what the shards read; reloads replace it */
    if (!gen) {
        fprintf(stderr, "agate: out of memory\n");
        return 1;
    }
    char rerr[CFG_ERR_MAX + 64];
    if (ups_resolve_all(&cfg, rerr, sizeof rerr)) {
        fprintf(stderr, "agate: %s\n", rerr);
        return 2;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);   /* inherited by every thread created below */
    signal(SIGPIPE, SIG_IGN);

    /* A ring per shard, main's, the resolver's, of log.buffer bytes. The default
     * 2 MiB holds ~7000 request lines: ~90 ms of a shard at 75k req/s, enough for
     * a writer thread that a busy machine leaves unscheduled for a few of its
     * 10 ms polls (1 MiB dropped ~1 % of lines at 150k req/s on a 2-CPU machine
     * with a compiler running); a writer held in write(2) by a slow disk for
     * longer needs more (one full make bench dropped 1.1 % of its lines). */
    int rc = log_init(n + 2, cfg.log_buffer_bytes, STDOUT_FILENO, cfg.log_writeback_bytes);
    if (rc) {
        fprintf(stderr, "agate: log: %s\n", strerror(-rc));
        return 1;
    }
    if (fdp_ok)
        fdlimit_log(&fdp, n, log_ring(n));   /* the soft limit raised, max_connections lowered */
    shard_t *shards = calloc(n, sizeof *shards);
    if (!shards) {
        fprintf(stderr, "agate: out of memory\n");
        return 1;
    }
    char err[256];
    unsigned opened = 0;
    for (; opened < n; opened++) {
        if (shard_open(&shards[opened], opened, gen, err, sizeof err)) {
            fprintf(stderr, "agate: cannot listen on %s\n", err);
            rc = 1;
            goto fail_listen;
        }
    }
    g_shards = shards;
    g_nshards = n;
    /* Before the shards start: they read otlp_enabled() without synchronisation. */
    if (cfg.otlp_endpoint[0]) {
        int orc = otlp_init(cfg.otlp_endpoint, cfg.service_name, n, 4096, cfg.otlp_interval_ms, cfg.otlp_max_batch);
        if (orc || (orc = otlp_start()))
            fprintf(stderr, "agate: OTLP export disabled: %s\n", strerror(-orc));
    }
    validate_init();   /* jansson's allocator hooks are process-wide: set them before any shard parses */
    if (cache_init(cache_conf(&cfg)->max_bytes) || coalesce_init()) {   /* shared by every shard */
        fprintf(stderr, "agate: response cache: out of memory\n");
        _exit(1);
    }
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, n + 1);
    for (unsigned i = 0; i < n; i++) {
        if (shard_start(&shards[i], &ready)) {
            fprintf(stderr, "agate: cannot start shard thread %u\n", i);
            _exit(1);   /* a barrier with a missing party cannot be unwound */
        }
    }
    pthread_barrier_wait(&ready);
    pthread_barrier_destroy(&ready);
    log_start();
    if (ups_resolver_start(&cfg, log_ring(n + 1)))
        fprintf(stderr, "agate: DNS refresh thread not started; upstream addresses stay as resolved at start\n");
    for (unsigned i = 0; i < n; i++) {
        if (shards[i].start_rc) {
            fprintf(stderr, "agate: shard %u: %s set-up failed: %s (%s)%s\n", i, eng_backend_name(eng.backend),
                    strerror(-shards[i].start_rc), eng.why,
                    eng.backend == ENG_IO_URING && cfg.backend == CFG_BACKEND_IO_URING
                        ? "; engine.backend: auto would use epoll where io_uring is refused" : "");
            rc = 1;
        }
    }
    if (rc) {
        atomic_store(&g_agate_draining, true);
        atomic_store(&g_agate_stop_now, true);
        for (unsigned i = 0; i < n; i++)
            shard_wake(&shards[i]);
    } else {
        log_main("info", "listening", &cfg, n);
        wait_for_stop(shards, n, &cfg, &set);
    }
    for (unsigned i = 0; i < n; i++)
        shard_join(&shards[i]);
    for (unsigned i = 0; i < n; i++)
        shard_close(&shards[i]);   /* what the main thread opened for it (metrics read by scrapes) */
    otlp_stop();   /* after the shards: they are its producers */
    ups_resolver_stop();
    coalesce_shutdown();   /* after the shards: every flight and entry reference is gone */
    resume_shutdown();     /* the run logs still followed when their shard stopped */
    cache_shutdown();
    if (!rc)
        log_main("info", "stopped", NULL, n);
    reload_shutdown();   /* after the shards: no policy pointer or limiter cell is in use */
    qsbr_shutdown();
    log_stop();
    free(shards);
    return rc;

fail_listen:
    for (unsigned i = 0; i < opened; i++)
        shard_close(&shards[i]);
    free(shards);
    qsbr_shutdown();
    log_stop();
    return rc;
}
