/* main.c: the eddy command line: run, reconcile, state, devbroker, --list-config. */
#include "config.h"
#include "devbroker.h"
#include "registry.h"
#include "runtime.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EDDY_VERSION "0.1.0"

static void usage(FILE *fp)
{
        fprintf(
            fp,
            "eddy " EDDY_VERSION ": exactly-once stream processors for Kafka\n"
            "\n"
            "usage:\n"
            "  eddy run <processor> [-c job.json] [-X key=value ...]\n"
            "        run a job until SIGTERM/SIGINT (which finish the batch, commit, exit 0)\n"
            "  eddy run <processor> [-c job.json] --from earliest|<epoch_ms>|<topic:part:off,...>\n"
            "                                     [--until end|<epoch_ms>]\n"
            "        bounded replay (backfill): replayed partitions start from empty state;\n"
            "        exits 0 when every partition reaches its bound\n"
            "  eddy reconcile <processor> [-c job.json] [-X key=value ...]\n"
            "        recompute aggregates from raw state, fix state and Redis, print a drift "
            "report\n"
            "  eddy state [-c job.json] [-p processor] offsets|stats|dump\n"
            "        look inside a job's state (the job must be stopped)\n"
            "  eddy devbroker [--port P] [--topics name:partitions,...] [--bootstrap-file F]\n"
            "        a local Kafka-protocol broker (librdkafka's mock cluster) for demos and "
            "tests\n"
            "  eddy <processor> --list-config [--markdown]\n"
            "        every configuration key, its type, default and meaning\n"
            "  eddy <processor> --list-config -c job.json [-X key=value ...]\n"
            "        the same, then the job's effective values (secrets redacted); exit 2 if the\n"
            "        job file does not load\n"
            "  eddy list        the processors\n"
            "\n"
            "options:\n"
            "  -c FILE          the job's JSON configuration (without it: embedded defaults)\n"
            "  -X key=value     override any key (kafka.bootstrap.servers=..., redis.url=...)\n"
            "  --no-progress    no progress line during a replay\n"
            "\n"
            "exit status: 0 clean stop, 1 runtime error, 2 usage or configuration error\n");
}

static void on_signal(int sig)
{
        (void)sig;
        eddy_stop = 1;
}

static const eddy_processor_t *need_proc(const char *name)
{
        const eddy_processor_t *p = name ? eddy_processor_find(name) : NULL;
        if (!p) {
                fprintf(stderr, "eddy: unknown processor \"%s\"; one of:", name ? name : "");
                for (int i = 0; eddy_processors[i]; i++)
                        fprintf(stderr, " %s", eddy_processors[i]->name);
                fputc('\n', stderr);
        }
        return p;
}

/* The "processor" key of a job file, if any, into buf. */
static const char *proc_from_file(const char *path, char *buf, size_t size)
{
        FILE *fp = path ? fopen(path, "r") : NULL;
        if (!fp)
                return NULL;
        char line[4096];
        const char *found = NULL;
        while (!found && fgets(line, sizeof(line), fp)) {
                char *k = strstr(line, "\"processor\"");
                if (!k)
                        continue;
                char *q1 = strchr(k + 11, '"');
                char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
                if (q2) {
                        snprintf(buf, size, "%.*s", (int)(q2 - q1 - 1), q1 + 1);
                        found = buf;
                }
        }
        fclose(fp);
        return found;
}

/* eddy <processor> --list-config: the tables, then with -c/-X the effective values. */
static int list_config(const eddy_processor_t *proc, int md, const char *conf_path, char **xs,
                       int nx)
{
        eddy_conf_print(stdout, "Runtime keys (every processor)", eddy_rt_props, md);
        char title[128];
        snprintf(title, sizeof(title), "%s keys", proc->name);
        eddy_conf_print(stdout, title, proc->props, md);
        for (size_t i = 0; proc->runtime_defaults && proc->runtime_defaults[i]; i += 2)
                printf(md ? "%s%s sets the default of runtime key `%s` to `%s`.\n"
                          : "%s%s sets the default of runtime key %s to %s\n",
                       i ? "" : "\n", proc->name, proc->runtime_defaults[i],
                       proc->runtime_defaults[i + 1]);
        if (md)
                printf("Keys under `kafka.` go to librdkafka unchanged (see its "
                       "CONFIGURATION.md); `-X kafka.bootstrap.servers=...` overrides "
                       "one. Keys under `rocksdb.` are RocksDB options by their names in "
                       "RocksDB's OPTIONS file (`rocksdb.level0_file_num_compaction_trigger`, "
                       "`rocksdb.max_write_buffer_number`, ...), applied over eddy's own "
                       "settings of the state store; one RocksDB does not know, or a bad value, "
                       "is an error at load. Values of keys ending in `password` or `secret` (and "
                       "`kafka.ssl.key.pem`, `kafka.sasl.oauthbearer.config`), and passwords "
                       "in URLs, are never printed: not in logs, metrics or `--list-config`.\n");
        if (!conf_path && nx == 0)
                return 0;
        eddy_rtconf_t rt;
        memset(&rt, 0, sizeof(rt));
        void *pconf = calloc(1, proc->conf_size ? proc->conf_size : 1);
        char err[1024];
        int rc = 0;
        if (eddy_conf_load_proc(conf_path, xs, nx, proc, &rt, pconf, err, sizeof(err))) {
                fprintf(stderr, "eddy: %s\n", err);
                rc = 2;
        } else {
                eddy_conf_print_values(stdout, &rt, proc->props, pconf);
        }
        eddy_conf_free(eddy_rt_props, &rt);
        eddy_conf_free(proc->props, pconf);
        free(pconf);
        return rc;
}

int main(int argc, char **argv)
{
        /* first of all: a SIGTERM that comes early still means a clean stop */
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
            !strcmp(argv[1], "help")) {
                usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (!strcmp(argv[1], "--version")) {
                printf("eddy %s\n", EDDY_VERSION);
                return 0;
        }
        if (!strcmp(argv[1], "devbroker"))
                return eddy_devbroker_main(argc - 1, argv + 1);
        if (!strcmp(argv[1], "list")) {
                for (int i = 0; eddy_processors[i]; i++)
                        printf("%-16s %s\n", eddy_processors[i]->name, eddy_processors[i]->summary);
                return 0;
        }

        const char *cmd = argv[1];
        int is_run = !strcmp(cmd, "run"), is_rec = !strcmp(cmd, "reconcile"),
            is_state = !strcmp(cmd, "state");
        const eddy_processor_t *proc = NULL;
        int i = 2;
        if (!is_run && !is_rec && !is_state) {
                /* eddy <processor> --list-config [--markdown] */
                proc = eddy_processor_find(cmd);
                if (!proc) {
                        fprintf(stderr, "eddy: unknown command \"%s\" (see eddy --help)\n", cmd);
                        return 2;
                }
                int md = 0, list = 0, nx = 0;
                const char *conf_path = NULL;
                char **xs = calloc((size_t)argc, sizeof(char *));
                for (; i < argc; i++) {
                        if (!strcmp(argv[i], "--list-config"))
                                list = 1;
                        else if (!strcmp(argv[i], "--markdown"))
                                md = 1;
                        else if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "-X")) &&
                                 i + 1 < argc) {
                                if (argv[i][1] == 'c')
                                        conf_path = argv[i + 1];
                                else
                                        xs[nx++] = argv[i + 1];
                                i++;
                        } else if (!strcmp(argv[i], "--help")) {
                                printf("%s: %s\n\n", proc->name, proc->summary);
                                usage(stdout);
                                free(xs);
                                return 0;
                        } else {
                                fprintf(stderr,
                                        "eddy %s: unknown option %s (expected "
                                        "--list-config [--markdown] [-c job.json] [-X k=v])\n",
                                        cmd, argv[i]);
                                free(xs);
                                return 2;
                        }
                }
                if (!list) {
                        fprintf(stderr, "eddy %s: expected --list-config\n", cmd);
                        free(xs);
                        return 2;
                }
                int rc = list_config(proc, md, conf_path, xs, nx);
                free(xs);
                return rc;
        }
        if ((is_run || is_rec) && argc > 2 && argv[2][0] != '-') {
                if (!strcmp(argv[2], "--help")) {
                        usage(stdout);
                        return 0;
                }
                if (!(proc = need_proc(argv[2])))
                        return 2;
                i = 3;
        }

        eddy_job_args_t a = {0};
        a.overrides = calloc((size_t)argc, sizeof(char *));
        a.progress = isatty(2);
        const char *what = NULL, *pname = NULL;
        int rc = 2;
        for (; i < argc; i++) {
                const char *o = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
                        usage(stdout);
                        rc = 0;
                        goto out;
                } else if (!strcmp(o, "--no-progress")) {
                        a.progress = 0;
                } else if (!strcmp(o, "-c") || !strcmp(o, "-X") || !strcmp(o, "--from") ||
                           !strcmp(o, "--until") || !strcmp(o, "-p") || !strcmp(o, "--processor")) {
                        if (!v) {
                                fprintf(stderr, "eddy %s: %s needs a value\n", cmd, o);
                                goto out;
                        }
                        if (!strcmp(o, "-c"))
                                a.conf_path = v;
                        else if (!strcmp(o, "-X"))
                                a.overrides[a.noverrides++] = argv[i + 1];
                        else if (!strcmp(o, "--from") && is_run)
                                a.from = v;
                        else if (!strcmp(o, "--until") && is_run)
                                a.until = v;
                        else if (!strcmp(o, "-p") || !strcmp(o, "--processor"))
                                pname = v;
                        else {
                                fprintf(stderr, "eddy %s: %s is only for eddy run\n", cmd, o);
                                goto out;
                        }
                        i++;
                } else if (is_state && !what && o[0] != '-') {
                        what = o;
                } else {
                        fprintf(stderr, "eddy %s: unexpected argument \"%s\" (see eddy --help)\n",
                                cmd, o);
                        goto out;
                }
        }
        if (is_state) {
                char buf[128];
                if (!pname)
                        pname = proc_from_file(a.conf_path, buf, sizeof(buf));
                if (!what) {
                        fprintf(stderr, "eddy state: expected offsets, stats or dump\n");
                        goto out;
                }
                if (!pname) {
                        fprintf(stderr, "eddy state: name the processor with -p, or with "
                                        "\"processor\" in the job file\n");
                        goto out;
                }
                if (!(proc = need_proc(pname)))
                        goto out;
        }
        if (!proc) {
                fprintf(stderr, "eddy %s: expected a processor name (see eddy list)\n", cmd);
                goto out;
        }
        a.proc = proc;

        if (is_run)
                rc = eddy_runtime_run(&a);
        else if (is_rec)
                rc = eddy_runtime_reconcile(&a);
        else
                rc = eddy_runtime_state_cmd(&a, what);
out:
        free(a.overrides);
        return rc;
}
