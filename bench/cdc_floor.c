/* cdc_floor.c: the least work an exactly-once CDC fan-out does per change with eddy's libraries,
 * as a lower bound for bench/cdc_fanout.py's cost per change.
 *
 *   cdc_floor <bootstrap> <topic> <out-topic> <redis-port> <rocksdb-dir> [key=value ...]
 *
 * Reads every partition of <topic> from the beginning (assign, no group join, polling one
 * message at a time as eddy does) and, for each change, does what cdc-fanout's contract
 * cannot do without, and nothing else:
 *   - one RocksDB put: the key's last applied position (16 bytes) under the record key;
 *   - one Kafka record to <out-topic>: the record's key, the after-image's JSON text as it
 *     stands in the value (found with memmem, not parsed or checked; a tombstone for a delete)
 *     and an eddy.src header, idempotent producer, linger.ms=5;
 *   - one Redis command: HSET floor:<key> v <after-image> (one field; cdc-fanout writes a
 *     field per column), or DEL for a delete, pipelined.
 * A tombstone record (null value) is counted and skipped.
 * Every 20,000 changes (eddy's default batch) it commits: the input offsets into the same
 * write batch, one synced RocksDB write (WAL fsync), then it waits for the batch's Kafka
 * deliveries and Redis replies. One thread; no parsing, no outbox, no read of the stored
 * position (so no skipping of duplicates), no metrics: less than the contract asks, so a lower
 * bound. Extra key=value arguments go to both librdkafka clients.
 *
 * Prints one JSON line on stdout: {"events":N,"seconds":S}. Exit status 0, or 1 on any
 * error. */
#define _GNU_SOURCE
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <rocksdb/c.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 20000

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
        fprintf(stderr, "cdc_floor: %s: %s\n", what, why);
        exit(1);
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
        char e[512];
        if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK)
                die(k, e);
}

static int delivery_failed;

/* A batch's state writes: sorted by key and written once per key at commit, as eddy does
 * (RocksDB's memtable inserts sorted keys at a fraction of the cost of random ones). */
typedef struct put_s {
        char key[64];
        size_t klen;
        int64_t pos[2];
        size_t seq;
} put_t;

static int put_cmp(const void *a, const void *b)
{
        const put_t *x = a, *y = b;
        size_t n = x->klen < y->klen ? x->klen : y->klen;
        int c = memcmp(x->key, y->key, n);
        if (c)
                return c;
        if (x->klen != y->klen)
                return x->klen < y->klen ? -1 : 1;
        return x->seq < y->seq ? -1 : 1;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)opaque;
        if (m->err)
                delivery_failed = 1;
}

static rd_kafka_t *client(rd_kafka_type_t type, int argc, char **argv)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        set(conf, "bootstrap.servers", argv[1]);
        if (type == RD_KAFKA_CONSUMER) {
                set(conf, "group.id", "eddy-bench-floor");
                set(conf, "enable.auto.commit", "false");
                set(conf, "enable.auto.offset.store", "false");
                set(conf, "enable.partition.eof", "true");
                set(conf, "queued.min.messages", "10000000");
                set(conf, "queued.max.messages.kbytes", "65536");
        } else {
                set(conf, "enable.idempotence", "true");
                set(conf, "linger.ms", "5");
                set(conf, "delivery.report.only.error", "true");
                rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        }
        for (int i = 6; i < argc; i++) {
                char *eq = strchr(argv[i], '=');
                if (!eq)
                        die("expected key=value", argv[i]);
                *eq = '\0';
                set(conf, argv[i], eq + 1);
                *eq = '=';
        }
        char e[512];
        rd_kafka_t *rk = rd_kafka_new(type, conf, e, sizeof(e));
        if (!rk)
                die("rd_kafka_new", e);
        return rk;
}

/* Puts the batch's state writes and offsets, writes it with a WAL fsync, and waits for its Kafka
 * deliveries and Redis replies (one per change). */
static void commit(rocksdb_t *db, rocksdb_writebatch_t *wb, const rocksdb_writeoptions_t *wo,
                   put_t *puts, size_t nputs, const int64_t *next, int nparts, rd_kafka_t *prod,
                   redisContext *rc, size_t pending)
{
        qsort(puts, nputs, sizeof(*puts), put_cmp);
        for (size_t i = 0; i < nputs; i++)
                if (i + 1 == nputs || puts[i + 1].klen != puts[i].klen ||
                    memcmp(puts[i + 1].key, puts[i].key, puts[i].klen))
                        rocksdb_writebatch_put(wb, puts[i].key, puts[i].klen,
                                               (const char *)puts[i].pos, sizeof(puts[i].pos));
        for (int p = 0; p < nparts; p++)
                if (next[p] >= 0) {
                        char k[16];
                        snprintf(k, sizeof(k), "o%d", p);
                        rocksdb_writebatch_put(wb, k, strlen(k), (const char *)&next[p], 8);
                }
        char *err = NULL;
        rocksdb_write(db, wo, wb, &err);
        if (err)
                die("rocksdb_write", err);
        rocksdb_writebatch_clear(wb);
        if (rd_kafka_flush(prod, 30000) || delivery_failed)
                die("produce", "not delivered");
        for (size_t i = 0; i < pending; i++) {
                redisReply *r = NULL;
                if (redisGetReply(rc, (void **)&r) != REDIS_OK || r->type == REDIS_REPLY_ERROR)
                        die("redis", rc->err ? rc->errstr : r->str);
                freeReplyObject(r);
        }
}

/* One change: its state write (kept for the commit), Redis command and Kafka record. */
static void change(const rd_kafka_message_t *m, const char *topic, const char *out,
                   rd_kafka_t *prod, redisContext *rc, put_t *pu, int64_t seq)
{
        pu->klen = m->key_len < sizeof(pu->key) ? m->key_len : sizeof(pu->key);
        memcpy(pu->key, m->key, pu->klen);
        pu->pos[0] = m->offset;
        pu->pos[1] = seq;
        pu->seq = seq;
        /* the after-image's text (no validation): "after":{...},"source": */
        const char *v = m->payload, *img = NULL;
        size_t il = 0;
        const char *a = memmem(v, m->len, "\"after\":", 8);
        if (a && a + 8 < v + m->len && a[8] == '{') {
                const char *e = memmem(a, m->len - (size_t)(a - v), ",\"source\":", 10);
                if (e) {
                        img = a + 8;
                        il = (size_t)(e - img);
                }
        }
        char rk[80];
        size_t rkl = (size_t)snprintf(rk, sizeof(rk), "floor:%.*s", (int)pu->klen, pu->key);
        const char *av[4] = {img ? "HSET" : "DEL", rk, "v", img};
        size_t al[4] = {img ? 4 : 3, rkl, 1, il};
        redisAppendCommandArgv(rc, img ? 4 : 2, av, al);
        char src[128];
        int sl = snprintf(src, sizeof(src), "%s/%" PRId32 "/%" PRId64 "/0", topic, m->partition,
                          m->offset);
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, "eddy.src", -1, src, sl);
        rd_kafka_resp_err_t kerr = rd_kafka_producev(
            prod, RD_KAFKA_V_TOPIC(out), RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE((void *)img, il), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (kerr)
                die("produce", rd_kafka_err2str(kerr));
}

int main(int argc, char **argv)
{
        if (argc < 6) {
                fprintf(stderr, "usage: cdc_floor <bootstrap> <topic> <out-topic> <redis-port> "
                                "<rocksdb-dir> [key=value ...]\n");
                return 2;
        }
        const char *topic = argv[2], *out = argv[3];
        rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, argc, argv);
        rd_kafka_t *prod = client(RD_KAFKA_PRODUCER, argc, argv);
        rd_kafka_poll_set_consumer(rk);
        redisContext *rc = redisConnect("127.0.0.1", atoi(argv[4]));
        if (!rc || rc->err)
                die("redis", rc ? rc->errstr : "no context");

        rocksdb_options_t *opts = rocksdb_options_create();
        rocksdb_options_set_create_if_missing(opts, 1);
        rocksdb_options_increase_parallelism(opts, 2);
        rocksdb_options_set_write_buffer_size(opts, 8 << 20);
        rocksdb_options_set_max_write_buffer_number(opts, 3);
        rocksdb_options_set_level_compaction_dynamic_level_bytes(opts, 1);
        rocksdb_options_set_level0_file_num_compaction_trigger(opts, 8);
        rocksdb_options_set_compression(opts, rocksdb_no_compression);
        char *err = NULL;
        rocksdb_t *db = rocksdb_open(opts, argv[5], &err);
        if (err)
                die("rocksdb_open", err);
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(wo, 1);
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();

        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (kerr || md->topic_cnt != 1 || md->topics[0].err)
                die("metadata", rd_kafka_err2str(kerr ? kerr : md->topics[0].err));
        int nparts = md->topics[0].partition_cnt, pending = 0;
        int64_t *next = malloc((size_t)nparts * sizeof(*next));
        rd_kafka_topic_partition_list_t *as = rd_kafka_topic_partition_list_new(nparts);
        for (int i = 0; i < nparts; i++) {
                int64_t lo, hi;
                int32_t p = md->topics[0].partitions[i].id;
                next[i] = -1;
                if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000) == 0 &&
                    hi > lo) {
                        rd_kafka_topic_partition_list_add(as, topic, p)->offset =
                            RD_KAFKA_OFFSET_BEGINNING;
                        pending++;
                }
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);

        double t0 = now_s();
        if ((kerr = rd_kafka_assign(rk, as)) != 0)
                die("assign", rd_kafka_err2str(kerr));
        rd_kafka_topic_partition_list_destroy(as);
        int64_t events = 0;
        int idle = 0;
        put_t *puts = malloc(BATCH * sizeof(*puts));
        size_t nputs = 0;
        while (pending > 0) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
                if (!m) {
                        if (++idle >= 30)
                                die("consume", "nothing for 30 s");
                        continue;
                }
                idle = 0;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        pending--;
                } else if (m->err) {
                        die("consume", rd_kafka_message_errstr(m));
                } else {
                        events++;
                        if (m->partition >= 0 && m->partition < nparts)
                                next[m->partition] = m->offset + 1;
                        if (m->payload) /* not a tombstone after a delete: that needs nothing */
                                change(m, topic, out, prod, rc, &puts[nputs++], events);
                        if (events % BATCH == 0) {
                                commit(db, wb, wo, puts, nputs, next, nparts, prod, rc, nputs);
                                nputs = 0;
                        }
                }
                rd_kafka_message_destroy(m);
        }
        commit(db, wb, wo, puts, nputs, next, nparts, prod, rc, nputs);
        printf("{\"events\":%" PRId64 ",\"seconds\":%.6f}\n", events, now_s() - t0);
        fflush(stdout);
        rocksdb_writebatch_destroy(wb);
        rocksdb_writeoptions_destroy(wo);
        rocksdb_close(db);
        rocksdb_options_destroy(opts);
        redisFree(rc);
        rd_kafka_destroy(prod);
        rd_kafka_destroy(rk);
        free(next);
        free(puts);
        return 0;
}
