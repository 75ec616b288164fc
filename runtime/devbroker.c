/* devbroker.c: `eddy devbroker`, librdkafka's mock cluster behind a TCP forwarder on a fixed port.
 */
#include "devbroker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define DEVBROKER_DEFAULT_PORT 9092
/* librdkafka 2.0.2's mock gives every auto-created topic 4 partitions (hard-coded in
 * rd_kafka_mock_cluster_new(), no property or API changes it). --partitions defaults to the
 * same count so that listed and auto-created topics look alike. */
#define DEVBROKER_DEFAULT_PARTITIONS 4
#define DEVBROKER_MAX_PARTITIONS     10000
#define DEVBROKER_TOPIC_MAX          249 /* Kafka's limit on a topic name's length */
#define DEVBROKER_FWD_BUF            (64 * 1024)

static const char devbroker_usage[] =
    "usage: eddy devbroker [--port P] [--topics name[:partitions],...] [--partitions N]\n"
    "                      [--bootstrap-file F] [--help]\n"
    "\n"
    "Runs librdkafka's mock Kafka cluster (one broker, in this process, on loopback) until\n"
    "SIGTERM or SIGINT. For demos and tests only: records live in memory, each partition keeps\n"
    "only its newest ~5 MB (and 100k batches) of records, and transactions are not isolated\n"
    "(read_committed consumers also see aborted records).\n"
    "\n"
    "  --port P            offer 127.0.0.1:P as the bootstrap address (default 9092). The mock\n"
    "                      broker listens on a random port; a forwarder on P passes each\n"
    "                      connection on to it, and clients then connect straight to the broker\n"
    "                      address the metadata names. --port 0: no forwarder, offer the\n"
    "                      broker's own address.\n"
    "  --topics LIST       create these topics at start, e.g. likes:8,other:4; a name without\n"
    "                      :partitions has --partitions partitions.\n"
    "  --partitions N      partitions of --topics names given without a count (default 4).\n"
    "  --bootstrap-file F  also write the bootstrap address and a newline to F (atomically).\n"
    "  --help              print this and exit.\n"
    "\n"
    "Topics not listed are created on first use (a producer's metadata request, or any client\n"
    "that allows auto-creation), always with 4 partitions: librdkafka 2.0.2's mock hard-codes\n"
    "that count and offers no setting or API to change it, so --partitions does not apply to\n"
    "them. List a topic in --topics to choose its partition count.\n"
    "\n"
    "The first line on stdout is the bootstrap address; logs go to stderr. Exit status: 0 after\n"
    "SIGTERM or SIGINT, 1 on a runtime error (such as the port being in use), 2 on a usage\n"
    "error.\n";

/* The one piece of global mutable state: set by SIGTERM/SIGINT. */
static volatile sig_atomic_t devbroker_stop;

typedef struct devbroker_topic_s {
        char name[DEVBROKER_TOPIC_MAX + 1];
        int partitions; /* -1: --partitions */
} devbroker_topic_t;

typedef struct devbroker_args_s {
        int port;
        int partitions;
        const char *bootstrap_file;
        devbroker_topic_t *topics; /* free() */
        size_t topic_cnt;
        int help;
} devbroker_args_t;

/* One forwarded connection: a client on the forwarder's port and its connection to the broker. */
typedef struct fwd_conn_s {
        int fd[2];      /* [0] client, [1] broker; -1 once closed */
        int connecting; /* non-blocking connect() to the broker still in progress */
        int eof[2];     /* read EOF on fd[i] */
        int shut[2];    /* shutdown(fd[i], SHUT_WR) done */
        size_t off[2];  /* buf[i] holds bytes read from fd[i], not yet written to fd[1 - i], */
        size_t len[2];  /* at buf[i] + off[i], len[i] of them */
        char buf[2][DEVBROKER_FWD_BUF];
} fwd_conn_t;

/* The forwarder: one thread, one poll() loop over the listener and every connection. */
typedef struct fwd_s {
        int lfd;
        int wake[2]; /* a byte written to wake[1] stops the thread */
        struct sockaddr_storage upstream;
        socklen_t upstream_len;
        const char *upstream_name;
        fwd_conn_t **conns;
        size_t conn_cnt, conn_size;
        struct pollfd *pfds;
        size_t pfd_size;
        pthread_t thread;
        int started;
} fwd_t;

static void devbroker_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void devbroker_log(const char *fmt, ...)
{
        char line[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        /* One fprintf per line: lines from several threads do not interleave. */
        fprintf(stderr, "devbroker: %s\n", line);
}

static void devbroker_on_signal(int sig)
{
        devbroker_stop = 1;
}

static void devbroker_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        /* The handle only hosts the mock cluster and never connects anywhere itself. */
        if (!strcmp(fac, "CONFWARN") && strstr(buf, "bootstrap.servers"))
                return;
        devbroker_log("rdkafka %d %s: %s", level, fac, buf);
}

/* ---- command line ---- */

static int parse_int(const char *s, long min, long max, int *out)
{
        char *end;
        long v;

        if (*s == '\0')
                return -1;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || *end != '\0' || v < min || v > max)
                return -1;
        *out = (int)v;
        return 0;
}

static int topic_name_ok(const char *name, size_t len)
{
        size_t i;

        if (len == 0 || len > DEVBROKER_TOPIC_MAX)
                return 0;
        if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
                return 0;
        for (i = 0; i < len; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return 0;
        }
        return 1;
}

/* Appends the topics of "name[:partitions],..." to args. Returns 0, or 2 after printing why. */
static int parse_topics(devbroker_args_t *args, const char *list)
{
        const char *p = list;

        for (;;) {
                const char *comma = strchr(p, ',');
                size_t entry_len = comma ? (size_t)(comma - p) : strlen(p);
                const char *colon = memchr(p, ':', entry_len);
                size_t name_len = colon ? (size_t)(colon - p) : entry_len;
                devbroker_topic_t *topics, *t;
                size_t i;

                if (!topic_name_ok(p, name_len)) {
                        fprintf(stderr,
                                "eddy devbroker: --topics: bad topic name '%.*s' in '%s': expected "
                                "1-%d of [A-Za-z0-9._-], as in likes:8,other:4\n",
                                (int)name_len, p, list, DEVBROKER_TOPIC_MAX);
                        return 2;
                }
                for (i = 0; i < args->topic_cnt; i++) {
                        if (strlen(args->topics[i].name) == name_len &&
                            !memcmp(args->topics[i].name, p, name_len)) {
                                fprintf(stderr,
                                        "eddy devbroker: --topics: topic '%.*s' is listed twice; "
                                        "expected each name once\n",
                                        (int)name_len, p);
                                return 2;
                        }
                }

                topics = realloc(args->topics, (args->topic_cnt + 1) * sizeof(*topics));
                if (!topics) {
                        fprintf(stderr, "eddy devbroker: out of memory\n");
                        return 1;
                }
                args->topics = topics;
                t = &topics[args->topic_cnt];
                memcpy(t->name, p, name_len);
                t->name[name_len] = '\0';
                t->partitions = -1;

                if (colon) {
                        char num[16];
                        size_t num_len = entry_len - name_len - 1;
                        int bad = num_len >= sizeof(num);

                        if (!bad) {
                                memcpy(num, colon + 1, num_len);
                                num[num_len] = '\0';
                                bad = parse_int(num, 1, DEVBROKER_MAX_PARTITIONS, &t->partitions);
                        }
                        if (bad) {
                                fprintf(stderr,
                                        "eddy devbroker: --topics: bad partition count '%.*s' for "
                                        "topic '%s': expected an integer 1-%d, as in likes:8\n",
                                        (int)num_len, colon + 1, t->name, DEVBROKER_MAX_PARTITIONS);
                                return 2;
                        }
                }
                args->topic_cnt++;

                if (!comma)
                        return 0;
                p = comma + 1;
        }
}

#define DEVBROKER_STR_(x) #x
#define DEVBROKER_STR(x)  DEVBROKER_STR_(x)

/* The flags that take a value, and what the value must be. */
static const struct {
        const char *name;
        const char *expected;
} devbroker_flags[] = {
    {"--port", "a TCP port 0-65535 (0: the broker's own random port)"},
    {"--topics", "name[:partitions],... as in likes:8,other:4"},
    {"--partitions", "an integer 1-" DEVBROKER_STR(DEVBROKER_MAX_PARTITIONS)},
    {"--bootstrap-file", "a file name"},
};

/* Parses argv into args. Returns 0, or the exit code after printing why. */
static int parse_args(devbroker_args_t *args, int argc, char **argv)
{
        int i;

        args->port = DEVBROKER_DEFAULT_PORT;
        args->partitions = DEVBROKER_DEFAULT_PARTITIONS;

        for (i = 1; i < argc; i++) {
                const char *arg = argv[i];
                const char *val = NULL;
                const char *eq, *flag = NULL, *expected = NULL;
                size_t name_len, f;
                int r;

                if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
                        args->help = 1;
                        return 0;
                }
                if (strncmp(arg, "--", 2) != 0) {
                        fprintf(stderr,
                                "eddy devbroker: unexpected argument '%s': expected only flags "
                                "(--port, --topics, --partitions, --bootstrap-file, --help)\n",
                                arg);
                        return 2;
                }

                /* --flag value, or --flag=value */
                eq = strchr(arg, '=');
                name_len = eq ? (size_t)(eq - arg) : strlen(arg);
                for (f = 0; f < sizeof(devbroker_flags) / sizeof(devbroker_flags[0]); f++) {
                        if (strlen(devbroker_flags[f].name) == name_len &&
                            !strncmp(arg, devbroker_flags[f].name, name_len)) {
                                flag = devbroker_flags[f].name;
                                expected = devbroker_flags[f].expected;
                        }
                }
                if (!flag) {
                        fprintf(stderr,
                                "eddy devbroker: unknown flag '%.*s': expected --port, --topics, "
                                "--partitions, --bootstrap-file or --help\n",
                                (int)name_len, arg);
                        return 2;
                }
                if (eq) {
                        val = eq + 1;
                } else if (i + 1 < argc) {
                        val = argv[++i];
                } else {
                        fprintf(stderr, "eddy devbroker: %s needs a value: expected %s\n", flag,
                                expected);
                        return 2;
                }

                if (!strcmp(flag, "--topics")) {
                        if ((r = parse_topics(args, val)) != 0)
                                return r;
                        continue;
                }
                if ((!strcmp(flag, "--port") && parse_int(val, 0, 65535, &args->port)) ||
                    (!strcmp(flag, "--partitions") &&
                     parse_int(val, 1, DEVBROKER_MAX_PARTITIONS, &args->partitions)) ||
                    (!strcmp(flag, "--bootstrap-file") && *val == '\0')) {
                        fprintf(stderr, "eddy devbroker: %s: expected %s, got '%s'\n", flag,
                                expected, val);
                        return 2;
                }
                if (!strcmp(flag, "--bootstrap-file"))
                        args->bootstrap_file = val;
        }
        return 0;
}

/* ---- the forwarder ---- */

static void fwd_conn_close(fwd_conn_t *c)
{
        int i;

        for (i = 0; i < 2; i++) {
                if (c->fd[i] != -1)
                        close(c->fd[i]);
                c->fd[i] = -1;
        }
}

/* The poll() events fd[i] of a connection waits for; 0: none. */
static short fwd_conn_events(const fwd_conn_t *c, int i)
{
        short events = 0;

        if (i == 1 && c->connecting)
                return POLLOUT;
        if (!c->eof[i] && c->off[i] + c->len[i] < DEVBROKER_FWD_BUF)
                events |= POLLIN;
        if (c->len[1 - i] > 0)
                events |= POLLOUT;
        return events;
}

/* Reads what fd[i] has into buf[i]. Returns 0, or -1 if the connection is broken. */
static int fwd_conn_read(fwd_conn_t *c, int i)
{
        ssize_t n;

        if (c->off[i] > 0) {
                memmove(c->buf[i], c->buf[i] + c->off[i], c->len[i]);
                c->off[i] = 0;
        }
        n = recv(c->fd[i], c->buf[i] + c->len[i], DEVBROKER_FWD_BUF - c->len[i], 0);
        if (n > 0)
                c->len[i] += (size_t)n;
        else if (n == 0)
                c->eof[i] = 1;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -1;
        return 0;
}

/* Writes what buf[1 - i] holds to fd[i]. Returns 0, or -1 if the connection is broken. */
static int fwd_conn_write(fwd_conn_t *c, int i)
{
        int from = 1 - i;
        ssize_t n;

        if (c->len[from] == 0 || (i == 1 && c->connecting))
                return 0;
        /* MSG_NOSIGNAL: a peer that went away is an error here, not a SIGPIPE. */
        n = send(c->fd[i], c->buf[from] + c->off[from], c->len[from], MSG_NOSIGNAL);
        if (n > 0) {
                c->off[from] += (size_t)n;
                c->len[from] -= (size_t)n;
                if (c->len[from] == 0)
                        c->off[from] = 0;
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return -1;
        }
        return 0;
}

/* Serves one connection after poll(). Returns 1 while it stays open, 0 once it is closed. */
static int fwd_conn_serve(fwd_t *fwd, fwd_conn_t *c, const struct pollfd *pfd)
{
        int i;

        if (c->connecting) {
                int err = 0;
                socklen_t err_len = sizeof(err);

                if (pfd[1].revents == 0)
                        goto serve_client;
                if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &err_len) == -1)
                        err = errno;
                if (err != 0) {
                        devbroker_log("forwarding a connection to the broker at %s failed: %s",
                                      fwd->upstream_name, strerror(err));
                        fwd_conn_close(c);
                        return 0;
                }
                c->connecting = 0;
        }

serve_client:
        for (i = 0; i < 2; i++) {
                short revents = pfd[i].revents;

                if (pfd[i].fd == -1 || revents == 0)
                        continue;
                if (pfd[i].events & POLLIN) {
                        /* POLLHUP/POLLERR: the read says whether it is EOF or an error. */
                        if ((revents & (POLLIN | POLLHUP | POLLERR)) && fwd_conn_read(c, i) == -1)
                                goto broken;
                } else if (revents & (POLLERR | POLLHUP)) {
                        if (!(pfd[i].events & POLLOUT))
                                goto broken;
                        /* waiting to write: the write below reports the error */
                }
        }

        for (i = 0; i < 2; i++) {
                if (fwd_conn_write(c, i) == -1)
                        goto broken;
                /* The other side closed its sending half and everything it sent has been
                 * passed on: pass the close on too. */
                if (c->eof[1 - i] && c->len[1 - i] == 0 && !c->shut[i] &&
                    !(i == 1 && c->connecting)) {
                        shutdown(c->fd[i], SHUT_WR);
                        c->shut[i] = 1;
                }
        }

        if (c->shut[0] && c->shut[1]) {
                fwd_conn_close(c);
                return 0;
        }
        return 1;

broken:
        fwd_conn_close(c);
        return 0;
}

static void fwd_set_nodelay(int fd)
{
        int one = 1;

        /* Kafka is request/response: do not hold small requests back. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Accepts every pending connection and starts its connection to the broker.
 * Returns 0, or -1 if accept() is out of file descriptors (stop accepting for a while). */
static int fwd_accept(fwd_t *fwd)
{
        for (;;) {
                fwd_conn_t *c;
                int cfd, ufd;

                cfd = accept4(fwd->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd == -1) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                            errno == ECONNABORTED)
                                return 0;
                        devbroker_log("accept on the forwarder's port failed: %s", strerror(errno));
                        return errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                                       errno == ENOMEM
                                   ? -1
                                   : 0;
                }

                if (fwd->conn_cnt == fwd->conn_size) {
                        size_t size = fwd->conn_size ? fwd->conn_size * 2 : 16;
                        fwd_conn_t **conns = realloc(fwd->conns, size * sizeof(*conns));
                        if (!conns) {
                                devbroker_log("out of memory: dropping a connection");
                                close(cfd);
                                continue;
                        }
                        fwd->conns = conns;
                        fwd->conn_size = size;
                }
                c = malloc(sizeof(*c));
                if (!c) {
                        devbroker_log("out of memory: dropping a connection");
                        close(cfd);
                        continue;
                }
                memset(c, 0, offsetof(fwd_conn_t, buf));

                ufd =
                    socket(fwd->upstream.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (ufd == -1) {
                        devbroker_log("socket() for a forwarded connection failed: %s",
                                      strerror(errno));
                        free(c);
                        close(cfd);
                        continue;
                }
                fwd_set_nodelay(cfd);
                fwd_set_nodelay(ufd);
                if (connect(ufd, (const struct sockaddr *)&fwd->upstream, fwd->upstream_len) == 0) {
                        c->connecting = 0;
                } else if (errno == EINPROGRESS) {
                        c->connecting = 1;
                } else {
                        devbroker_log("forwarding a connection to the broker at %s failed: %s",
                                      fwd->upstream_name, strerror(errno));
                        close(ufd);
                        free(c);
                        close(cfd);
                        continue;
                }
                c->fd[0] = cfd;
                c->fd[1] = ufd;
                fwd->conns[fwd->conn_cnt++] = c;
        }
}

static void *fwd_run(void *arg)
{
        fwd_t *fwd = arg;
        int accept_paused = 0;
        size_t k, j;

        for (;;) {
                size_t need = 2 + 2 * fwd->conn_cnt;
                size_t served = fwd->conn_cnt;
                int r;

                if (need > fwd->pfd_size) {
                        struct pollfd *pfds = realloc(fwd->pfds, need * 2 * sizeof(*pfds));
                        if (!pfds) {
                                devbroker_log("out of memory in the forwarder; it stops");
                                break;
                        }
                        fwd->pfds = pfds;
                        fwd->pfd_size = need * 2;
                }

                fwd->pfds[0] = (struct pollfd){.fd = fwd->wake[0], .events = POLLIN};
                fwd->pfds[1] =
                    (struct pollfd){.fd = accept_paused ? -1 : fwd->lfd, .events = POLLIN};
                for (k = 0; k < fwd->conn_cnt; k++) {
                        for (j = 0; j < 2; j++) {
                                struct pollfd *pfd = &fwd->pfds[2 + 2 * k + j];
                                pfd->events = fwd_conn_events(fwd->conns[k], (int)j);
                                /* Nothing to wait for: leave it out, so that a hang-up it
                                 * reports can not spin the loop. */
                                pfd->fd = pfd->events ? fwd->conns[k]->fd[j] : -1;
                                pfd->revents = 0;
                        }
                }

                /* While accept() is out of file descriptors, retry it after a pause. */
                r = poll(fwd->pfds, need, accept_paused ? 100 : -1);
                if (r == -1) {
                        if (errno == EINTR)
                                continue;
                        devbroker_log("poll() in the forwarder failed: %s; it stops",
                                      strerror(errno));
                        break;
                }
                if (fwd->pfds[0].revents)
                        break;

                for (k = 0; k < served; k++)
                        if (!fwd_conn_serve(fwd, fwd->conns[k], &fwd->pfds[2 + 2 * k]))
                                fwd->conns[k]->fd[0] = -1; /* removed below */
                for (k = 0, j = 0; k < fwd->conn_cnt; k++) {
                        if (fwd->conns[k]->fd[0] == -1)
                                free(fwd->conns[k]);
                        else
                                fwd->conns[j++] = fwd->conns[k];
                }
                fwd->conn_cnt = j;

                if (accept_paused || fwd->pfds[1].revents)
                        accept_paused = fwd_accept(fwd) == -1;
        }

        for (k = 0; k < fwd->conn_cnt; k++) {
                fwd_conn_close(fwd->conns[k]);
                free(fwd->conns[k]);
        }
        fwd->conn_cnt = 0;
        return NULL;
}

/* Binds the forwarder's listener on 127.0.0.1:port. Returns 0, or an errno. */
static int fwd_listen(fwd_t *fwd, int port)
{
        struct sockaddr_in sin;
        int one = 1;
        int err;

        fwd->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fwd->lfd == -1)
                return errno;
        /* Lets a restarted devbroker take the port while old connections sit in TIME_WAIT;
         * on Linux it still fails while another socket listens there. */
        setsockopt(fwd->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fwd->lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
            listen(fwd->lfd, 128) == -1) {
                err = errno;
                close(fwd->lfd);
                fwd->lfd = -1;
                return err;
        }
        return 0;
}

/* Resolves the broker's "host:port" into fwd->upstream. Returns 0, or -1 after logging why. */
static int fwd_set_upstream(fwd_t *fwd, const char *hostport)
{
        const char *colon = strrchr(hostport, ':');
        struct addrinfo hints, *res = NULL;
        char host[256];
        size_t host_len;
        int r;

        if (!colon || strchr(hostport, ',') || (size_t)(colon - hostport) >= sizeof(host)) {
                devbroker_log("unexpected broker address '%s': expected one host:port", hostport);
                return -1;
        }
        host_len = (size_t)(colon - hostport);
        /* an IPv6 address comes as [addr]:port */
        if (host_len >= 2 && hostport[0] == '[' && hostport[host_len - 1] == ']') {
                memcpy(host, hostport + 1, host_len - 2);
                host[host_len - 2] = '\0';
        } else {
                memcpy(host, hostport, host_len);
                host[host_len] = '\0';
        }

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        if ((r = getaddrinfo(host, colon + 1, &hints, &res)) != 0) {
                devbroker_log("can not resolve the broker address '%s': %s", hostport,
                              gai_strerror(r));
                return -1;
        }
        memcpy(&fwd->upstream, res->ai_addr, res->ai_addrlen);
        fwd->upstream_len = res->ai_addrlen;
        fwd->upstream_name = hostport;
        freeaddrinfo(res);
        return 0;
}

static int fwd_start(fwd_t *fwd)
{
        int r;

        if (pipe2(fwd->wake, O_CLOEXEC) == -1) {
                devbroker_log("pipe() for the forwarder failed: %s", strerror(errno));
                return -1;
        }
        if ((r = pthread_create(&fwd->thread, NULL, fwd_run, fwd)) != 0) {
                devbroker_log("starting the forwarder thread failed: %s", strerror(r));
                close(fwd->wake[0]);
                close(fwd->wake[1]);
                return -1;
        }
        fwd->started = 1;
        return 0;
}

/* Stops the thread if it runs, closes every connection and the listener. */
static void fwd_stop(fwd_t *fwd)
{
        if (fwd->started) {
                char b = 1;
                ssize_t n;

                do
                        n = write(fwd->wake[1], &b, 1);
                while (n == -1 && errno == EINTR);
                pthread_join(fwd->thread, NULL);
                close(fwd->wake[0]);
                close(fwd->wake[1]);
                fwd->started = 0;
        }
        if (fwd->lfd != -1)
                close(fwd->lfd);
        fwd->lfd = -1;
        free(fwd->conns);
        fwd->conns = NULL;
        free(fwd->pfds);
        fwd->pfds = NULL;
}

/* ---- start-up and the main loop ---- */

/* Writes "addr\n" to path through a temporary file and rename(), so that a reader sees the
 * whole line or no file. Returns 0, or -1 after logging why. */
static int write_bootstrap_file(const char *path, const char *addr)
{
        size_t tmp_size = strlen(path) + 32;
        char *tmp = malloc(tmp_size);
        size_t len = strlen(addr);
        int fd = -1, ok = 0;

        if (!tmp) {
                devbroker_log("out of memory writing --bootstrap-file %s", path);
                return -1;
        }
        snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd != -1) {
                char *line = malloc(len + 1);
                if (line) {
                        memcpy(line, addr, len);
                        line[len] = '\n';
                        ok = write(fd, line, len + 1) == (ssize_t)(len + 1);
                        free(line);
                }
                if (close(fd) == -1)
                        ok = 0;
                if (ok && rename(tmp, path) == -1)
                        ok = 0;
        }
        if (!ok) {
                devbroker_log("can not write --bootstrap-file %s: %s", path, strerror(errno));
                unlink(tmp);
        }
        free(tmp);
        return ok ? 0 : -1;
}

static int run(const devbroker_args_t *args)
{
        char errstr[512];
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rk = NULL;
        rd_kafka_mock_cluster_t *mcluster = NULL;
        const char *mock_addr;
        char offered[64];
        fwd_t fwd = {.lfd = -1, .wake = {-1, -1}};
        struct sigaction sa, old_term, old_int;
        sigset_t block, old_mask;
        size_t i;
        int r, rc = 1;

        /* Take the port before anything else, so that a busy port fails fast and alone. */
        if (args->port != 0 && (r = fwd_listen(&fwd, args->port)) != 0) {
                if (r == EADDRINUSE)
                        fprintf(stderr,
                                "eddy devbroker: port %d on 127.0.0.1 is in use; pick another "
                                "with --port P (--port 0: the broker's own random port)\n",
                                args->port);
                else
                        fprintf(stderr,
                                "eddy devbroker: can not listen on 127.0.0.1:%d: %s; pick "
                                "another port with --port P\n",
                                args->port, strerror(r));
                return 1;
        }

        /* Block SIGTERM/SIGINT in every thread started from here on (librdkafka's and the
         * forwarder's); this thread takes them only while it waits in ppoll(), so no check
         * of the flag can miss one. */
        devbroker_stop = 0;
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        pthread_sigmask(SIG_BLOCK, &block, &old_mask);
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = devbroker_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, &old_term);
        sigaction(SIGINT, &sa, &old_int);

        conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, devbroker_rdkafka_log);
        if (rd_kafka_conf_set(conf, "client.id", "eddy-devbroker", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
                devbroker_log("rdkafka configuration: %s", errstr);
                goto out;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                devbroker_log("can not create the rdkafka handle for the mock cluster: %s", errstr);
                goto out;
        }
        conf = NULL; /* owned by rk */

        mcluster = rd_kafka_mock_cluster_new(rk, 1);
        if (!mcluster) {
                devbroker_log("can not start librdkafka's mock cluster");
                goto out;
        }
        mock_addr = rd_kafka_mock_cluster_bootstraps(mcluster);

        for (i = 0; i < args->topic_cnt; i++) {
                const devbroker_topic_t *t = &args->topics[i];
                int partitions = t->partitions == -1 ? args->partitions : t->partitions;
                rd_kafka_resp_err_t err =
                    rd_kafka_mock_topic_create(mcluster, t->name, partitions, 1);

                if (err) {
                        devbroker_log("can not create topic %s with %d partitions: %s", t->name,
                                      partitions, rd_kafka_err2str(err));
                        goto out;
                }
                devbroker_log("created topic %s with %d partitions", t->name, partitions);
        }

        if (args->port != 0) {
                if (fwd_set_upstream(&fwd, mock_addr) == -1 || fwd_start(&fwd) == -1)
                        goto out;
                snprintf(offered, sizeof(offered), "127.0.0.1:%d", args->port);
                devbroker_log("mock broker at %s, bootstrap forwarder on %s", mock_addr, offered);
        } else {
                snprintf(offered, sizeof(offered), "%s", mock_addr);
                devbroker_log("mock broker at %s", mock_addr);
        }

        if (args->bootstrap_file && write_bootstrap_file(args->bootstrap_file, offered) == -1)
                goto out;
        printf("%s\n", offered);
        if (fflush(stdout) == EOF) {
                devbroker_log("can not write the bootstrap address to stdout: %s", strerror(errno));
                goto out;
        }
        devbroker_log("ready; topics not listed in --topics are created on first use with 4 "
                      "partitions; stop with SIGTERM or SIGINT");

        {
                sigset_t wait_mask = old_mask;

                sigdelset(&wait_mask, SIGTERM);
                sigdelset(&wait_mask, SIGINT);
                /* Like sigsuspend(), and also wakes up each second: a thread the caller
                 * started before us may take the signal and run the handler instead. */
                while (!devbroker_stop)
                        ppoll(NULL, 0, &(struct timespec){.tv_sec = 1}, &wait_mask);
        }
        devbroker_log("stopping");
        rc = 0;

out:
        fwd_stop(&fwd);
        if (mcluster)
                rd_kafka_mock_cluster_destroy(mcluster);
        if (rk)
                rd_kafka_destroy(rk);
        if (conf)
                rd_kafka_conf_destroy(conf);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGINT, &old_int, NULL);
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        if (rc == 0)
                devbroker_log("stopped");
        return rc;
}

int eddy_devbroker_main(int argc, char **argv)
{
        devbroker_args_t args = {0};
        int rc;

        rc = parse_args(&args, argc, argv);
        if (rc == 0 && args.help) {
                fputs(devbroker_usage, stdout);
                fflush(stdout);
        } else if (rc == 0) {
                rc = run(&args);
        }
        free(args.topics);
        return rc;
}
