/* bare_consumer.c: the baseline of bench/: how fast a plain librdkafka consumer reads a topic.
 *
 *   bare_consumer <bootstrap> <topic>[,<topic>...] [key=value ...]
 *
 * Assigns every partition of each topic from the beginning (no consumer group join, as eddy's
 * bounded replay does), polls one message at a time with rd_kafka_consumer_poll() (as eddy's
 * runtime does), counts the messages and stops when every non-empty partition has reported
 * EOF (enable.partition.eof=true). The consumer settings that matter for throughput are
 * eddy's: queued.max.messages.kbytes=65536, fetch sizes at librdkafka's defaults. Extra
 * key=value arguments are passed to librdkafka.
 *
 * Prints one JSON line on stdout:
 *   {"events":N,"bytes":B,"seconds":S,"seconds_first":F}
 * seconds: from assign() to the last EOF; seconds_first: from the first message to the
 * last EOF. Exit status 0, or 1 on any error. */
#define _GNU_SOURCE
#include <librdkafka/rdkafka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
        char e[512];
        if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "bare_consumer: %s=%s: %s\n", k, v, e);
                exit(1);
        }
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr,
                        "usage: bare_consumer <bootstrap> <topic>[,<topic>...] [key=value ...]\n");
                return 2;
        }
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        set(conf, "bootstrap.servers", argv[1]);
        set(conf, "group.id", "eddy-bench-bare"); /* required by the API; no join with assign() */
        set(conf, "enable.auto.commit", "false");
        set(conf, "enable.auto.offset.store", "false");
        set(conf, "auto.offset.reset", "earliest");
        set(conf, "enable.partition.eof", "true");
        set(conf, "queued.max.messages.kbytes", "65536");
        for (int i = 3; i < argc; i++) {
                char *eq = strchr(argv[i], '=');
                if (!eq) {
                        fprintf(stderr, "bare_consumer: expected key=value: %s\n", argv[i]);
                        return 2;
                }
                *eq = '\0';
                set(conf, argv[i], eq + 1);
        }
        char e[512];
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
        if (!rk) {
                fprintf(stderr, "bare_consumer: %s\n", e);
                return 1;
        }
        rd_kafka_poll_set_consumer(rk);

        /* every partition of every topic (a join reads several) */
        char *topics[8];
        int ntopics = 0;
        char *list = strdup(argv[2]);
        for (char *t = list; t && ntopics < 8;) {
                char *comma = strchr(t, ',');
                if (comma)
                        *comma = '\0';
                topics[ntopics++] = t;
                t = comma ? comma + 1 : NULL;
        }
        rd_kafka_topic_partition_list_t *as = rd_kafka_topic_partition_list_new(64);
        int pending = 0, nparts = 0;
        char *is_pending = NULL;
        rd_kafka_resp_err_t err;
        for (int ti = 0; ti < ntopics; ti++) {
                const char *topic = topics[ti];
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
                const struct rd_kafka_metadata *md = NULL;
                err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
                if (err || md->topic_cnt != 1 || md->topics[0].err) {
                        fprintf(stderr, "bare_consumer: metadata of %s: %s\n", topic,
                                rd_kafka_err2str(err             ? err
                                                 : md->topic_cnt ? md->topics[0].err
                                                                 : 0));
                        return 1;
                }
                int n = md->topics[0].partition_cnt;
                if (ti == 0) {
                        nparts = n;
                        is_pending = calloc((size_t)(nparts + 1) * 8, 1);
                }
                for (int i = 0; i < n; i++) {
                        int32_t p = md->topics[0].partitions[i].id;
                        int64_t lo, hi;
                        err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
                        if (err) {
                                fprintf(stderr, "bare_consumer: watermarks of %s/%d: %s\n", topic,
                                        p, rd_kafka_err2str(err));
                                return 1;
                        }
                        if (hi > lo && p >= 0 && p < nparts) {
                                rd_kafka_topic_partition_list_add(as, topic, p)->offset =
                                    RD_KAFKA_OFFSET_BEGINNING;
                                is_pending[ti * nparts + p] = 1;
                                pending++;
                        }
                }
                rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(rkt);
        }

        double t0 = now_s(), t_first = 0;
        err = rd_kafka_assign(rk, as);
        rd_kafka_topic_partition_list_destroy(as);
        if (err) {
                fprintf(stderr, "bare_consumer: assign: %s\n", rd_kafka_err2str(err));
                return 1;
        }
        int64_t events = 0, bytes = 0;
        int idle = 0; /* consecutive empty polls of 1 s */
        while (pending > 0) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
                if (!m) {
                        if (++idle >= 30) {
                                fprintf(stderr,
                                        "bare_consumer: nothing for 30 s, %d partition(s) "
                                        "not at EOF\n",
                                        pending);
                                return 1;
                        }
                        continue;
                }
                idle = 0;
                if (!m->err) {
                        if (!events)
                                t_first = now_s();
                        events++;
                        bytes += (int64_t)m->len;
                } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        int ti = 0;
                        while (ti < ntopics && strcmp(topics[ti], rd_kafka_topic_name(m->rkt)))
                                ti++;
                        if (ti < ntopics && m->partition >= 0 && m->partition < nparts &&
                            is_pending[ti * nparts + m->partition]) {
                                is_pending[ti * nparts + m->partition] = 0;
                                pending--;
                        }
                } else {
                        fprintf(stderr, "bare_consumer: %s\n", rd_kafka_message_errstr(m));
                        if (m->err == RD_KAFKA_RESP_ERR__FATAL)
                                return 1;
                }
                rd_kafka_message_destroy(m);
        }
        double t1 = now_s();
        printf("{\"events\":%" PRId64 ",\"bytes\":%" PRId64 ",\"seconds\":%.6f,"
               "\"seconds_first\":%.6f}\n",
               events, bytes, t1 - t0, events ? t1 - t_first : 0.0);
        fflush(stdout);
        free(is_pending);
        free(list);
        rd_kafka_destroy(rk);
        return 0;
}
