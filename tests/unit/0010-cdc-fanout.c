/* 0010-cdc-fanout.c: source positions, primary keys, envelopes and routes of cdc-fanout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "cdc_fanout.h"
#include "registry.h"
#include "testing.h"
#include "tmpdirs.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int src_pos(const char *src, eddy_cdc_pos_t *p, const char **why)
{
        char file[256], table[64];
        int64_t ts = -1;
        return eddy__cdc_source_pos(src, strlen(src), p, file, sizeof(file), table, sizeof(table),
                                    &ts, why);
}

static eddy_cdc_pos_t pos_of(const char *src)
{
        eddy_cdc_pos_t p;
        const char *why = NULL;
        if (src_pos(src, &p, &why))
                fail_msg("%s: %s", src, why);
        return p;
}

/* PostgreSQL by lsn; MySQL by (binlog file number, pos, row); versions follow the order. */
static void test_positions(void **state)
{
        eddy_cdc_pos_t a = pos_of("{\"lsn\":100,\"sequence\":\"[null,\\\"100\\\"]\"}");
        eddy_cdc_pos_t b = pos_of("{\"lsn\":101}");
        assert_int_equal(a.kind, EDDY_CDC_POS_PG);
        assert_true(eddy__cdc_pos_cmp(&a, &b) < 0);
        assert_true(eddy__cdc_pos_cmp(&b, &a) > 0);
        assert_int_equal(eddy__cdc_pos_cmp(&a, &a), 0);
        assert_int_equal(eddy__cdc_pos_version(&b), 101);

        /* MySQL: rotation to the next binlog file beats any pos of the previous one */
        const char *my[] = {
            "{\"file\":\"mysql-bin.000009\",\"pos\":154,\"row\":0}",
            "{\"file\":\"mysql-bin.000009\",\"pos\":154,\"row\":1}",
            "{\"file\":\"mysql-bin.000009\",\"pos\":900000,\"row\":0}",
            "{\"file\":\"mysql-bin.000010\",\"pos\":4}",
            "{\"file\":\"mysql-bin.000010\",\"pos\":5,\"row\":null}",
            "{\"file\":\"binlog.100000\",\"pos\":0,\"gtid\":\"x:1\"}",
        };
        for (size_t i = 0; i + 1 < sizeof(my) / sizeof(*my); i++) {
                eddy_cdc_pos_t x = pos_of(my[i]), y = pos_of(my[i + 1]);
                assert_int_equal(x.kind, EDDY_CDC_POS_MYSQL);
                assert_true(eddy__cdc_pos_cmp(&x, &y) < 0);
                assert_true(eddy__cdc_pos_version(&x) <= eddy__cdc_pos_version(&y));
        }
        eddy_cdc_pos_t m = pos_of(my[3]);
        assert_int_equal(m.a, 10);
        assert_int_equal(m.b, 4);
        assert_int_equal(eddy__cdc_pos_version(&m), (INT64_C(10) << 36) | 4);

        /* the table and ts_ms come along */
        char file[64], table[64];
        int64_t ts = -1;
        const char *why;
        const char *s = "{\"file\":\"b.000001\",\"pos\":7,\"table\":\"t\\u0031\",\"ts_ms\":99}";
        assert_int_equal(eddy__cdc_source_pos(s, strlen(s), &m, file, sizeof(file), table,
                                              sizeof(table), &ts, &why),
                         0);
        assert_string_equal(file, "b.000001");
        assert_string_equal(table, "t1");
        assert_int_equal(ts, 99);

        /* no position, or one out of range: refused with a reason */
        const char *bad[] = {"{}",
                             "{\"lsn\":-1}",
                             "{\"lsn\":\"12\"}",
                             "{\"lsn\":1.5}",
                             "{\"file\":\"mysql-bin\",\"pos\":1}",
                             "{\"file\":\"mysql-bin.\",\"pos\":1}",
                             "{\"file\":\"mysql-bin.000001\"}",
                             "{\"file\":\"mysql-bin.000001\",\"pos\":-4}",
                             "{\"file\":\"mysql-bin.000001\",\"pos\":68719476736}",
                             "{\"file\":\"mysql-bin.134217728\",\"pos\":1}",
                             "{\"file\":\"x.1\",\"pos\":1,\"row\":\"a\"}",
                             "[1]",
                             "{\"lsn\":1"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                why = NULL;
                if (!src_pos(bad[i], &m, &why))
                        fail_msg("accepted %s", bad[i]);
                assert_non_null(why);
        }
}

static void check_pk(const char *key, const char *want)
{
        char out[64];
        const char *why = NULL;
        ssize_t n = eddy__cdc_pk(key, strlen(key), 32, out, sizeof(out), &why);
        if (!want) {
                if (n >= 0)
                        fail_msg("%s: accepted as \"%s\"", key, out);
                assert_non_null(why);
                return;
        }
        if (n < 0)
                fail_msg("%s: %s", key, why);
        assert_string_equal(out, want);
        assert_int_equal((size_t)n, strlen(want));
}

/* Key columns in key order, joined by ':', strings without quotes, wrapper or not. */
static void test_primary_keys(void **state)
{
        check_pk("{\"id\":1001}", "1001");
        check_pk("{\"order_id\":7,\"line_no\":2}", "7:2");
        check_pk("{\"line_no\":2,\"order_id\":7}", "2:7");
        check_pk("{\"sku\":\"a\\\"b:c\",\"n\":-3.5e2,\"ok\":true}", "a\"b:c:-3.5e2:true");
        check_pk(
            "{\"schema\":{\"type\":\"struct\",\"fields\":[]},\"payload\":{\"id\":\"\\u00e9\"}}",
            "\xc3\xa9");
        /* without "schema" it is no wrapper: a column named payload, and no key has objects */
        check_pk("{\"payload\":{\"id\":1}}", NULL);
        check_pk("[1]", NULL);
        check_pk("{}", NULL);
        check_pk("{\"id\":null}", NULL);
        check_pk("{\"id\":{\"a\":1}}", NULL);
        check_pk("{\"id\":[1]}", NULL);
        check_pk("{\"id\":\"a\\u0000b\"}", NULL);
        check_pk("{\"id\":\"0123456789012345678901234567890123\"}", NULL); /* > 32 bytes */
        check_pk("{\"id\":1", NULL);
        check_pk("", NULL);
}

/* ---------------------------------------------------------------- the processor */

typedef struct out_s {
        char log[16384]; /* every output, one per line */
        size_t len;
} out_t;

static void outf(out_t *o, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->log + o->len, sizeof(o->log) - o->len, fmt, ap);
        va_end(ap);
        assert_true(n > 0 && o->len + (size_t)n < sizeof(o->log));
        o->len += (size_t)n;
}

static int fake_apply(void *opaque, int32_t partition, int64_t pos, int64_t seq, uint32_t chunk,
                      const eddy_redis_op_t *ops, size_t nops)
{
        out_t *o = opaque;
        for (size_t i = 0; i < nops; i++) {
                const eddy_redis_op_t *op = &ops[i];
                if (op->op == EDDY_ROP_DEL) {
                        outf(o, "redis DEL %.*s\n", (int)op->klen, op->key);
                        continue;
                }
                assert_int_equal(op->op, EDDY_ROP_HASH);
                eddy_redis_hash_iter_t it;
                assert_int_equal(eddy_redis_hash_open(&it, op->val, op->vlen), 0);
                outf(o, "redis HASH %.*s", (int)op->klen, op->key);
                eddy_hfield_t f;
                while (eddy_redis_hash_next(&it, &f))
                        outf(o, " %.*s=%.*s", (int)f.nlen, f.name, (int)f.vlen, f.val);
                outf(o, "\n");
        }
        return 0;
}

static void fake_kafka(void *opaque, const eddy_test_krec_t *r)
{
        out_t *o = opaque;
        if (r->dead_letter) {
                for (size_t i = 0; i < r->nheaders; i++)
                        if (r->headers[i].nlen == 11 &&
                            !memcmp(r->headers[i].name, "eddy.reason", 11))
                                outf(o, "dlq %.*s\n", (int)r->headers[i].vlen, r->headers[i].val);
                return;
        }
        outf(o, "kafka %.*s %.*s %.*s\n", (int)r->tlen, r->topic, (int)r->klen,
             r->key ? (const char *)r->key : "", (int)(r->val ? r->vlen : 4),
             r->val ? (const char *)r->val : "null");
}

typedef struct world_s {
        char dir[64];
        char ovbuf[8][256];
        char *ov[8];
        out_t out;
        eddy_ctx_t *ctx;
        int64_t off;
} world_t;

#define TOPIC "db.inv.customers"

static void world_init(world_t *w, const char *routes)
{
        memset(w, 0, sizeof(*w));
        snprintf(w->dir, sizeof(w->dir), "/tmp/eddy-0010-XXXXXX");
        assert_non_null(mkdtemp(w->dir));
        live_dir(w->dir, 1);
        snprintf(w->ovbuf[0], sizeof(w->ovbuf[0]), "state.dir=%s", w->dir);
        snprintf(w->ovbuf[1], sizeof(w->ovbuf[1]), "input.topics=%s", TOPIC);
        snprintf(w->ovbuf[2], sizeof(w->ovbuf[2]), "topic.prefix=out");
        snprintf(w->ovbuf[3], sizeof(w->ovbuf[3]), "state.sync=false");
        snprintf(w->ovbuf[4], sizeof(w->ovbuf[4]), "log.level=err");
        snprintf(w->ovbuf[5], sizeof(w->ovbuf[5]), "job.name=j");
        snprintf(w->ovbuf[6], sizeof(w->ovbuf[6]), "redis.key.prefix=c:");
        snprintf(w->ovbuf[7], sizeof(w->ovbuf[7]), "routes=%s", routes ? routes : "{}");
        for (int i = 0; i < 8; i++)
                w->ov[i] = w->ovbuf[i];
        char err[256];
        w->ctx = eddy__test_open(&eddy_cdc_fanout, w->ov, 8, fake_apply, &w->out, err, sizeof(err));
        if (!w->ctx)
                fail_msg("eddy__test_open: %s", err);
        eddy__test_kafka_sink(w->ctx, fake_kafka, &w->out);
}

static void feed(world_t *w, const char *key, const char *val)
{
        assert_int_equal(eddy__test_feed(w->ctx, TOPIC, 0, w->off++, key, key ? strlen(key) : 0,
                                         val, val ? strlen(val) : 0),
                         0);
}

/* Commits and returns what the batch put out, then forgets it. */
static const char *commit(world_t *w)
{
        w->out.len = 0;
        w->out.log[0] = '\0';
        assert_int_equal(eddy__test_commit(w->ctx), 0);
        return w->out.log;
}

static void world_free(world_t *w)
{
        eddy__test_close(w->ctx);
        rm_rf(w->dir);
        live_dir(w->dir, 0);
}

static char *change(const char *op, const char *before, const char *after, int64_t lsn, int wrapped)
{
        static char buf[4][1024];
        static int n;
        char *b = buf[n++ % 4];
        snprintf(b, 1024,
                 "%s{\"before\":%s,\"after\":%s,\"source\":{\"lsn\":%" PRId64
                 ",\"table\":\"customers\",\"ts_ms\":5},\"op\":\"%s\",\"ts_ms\":7}%s",
                 wrapped ? "{\"schema\":{\"type\":\"struct\"},\"payload\":" : "",
                 before ? before : "null", after ? after : "null", lsn, op, wrapped ? "}" : "");
        return b;
}

/* Envelopes with and without the wrapper, every op, tombstones, source order per key. */
static void test_envelopes_and_order(void **state)
{
        world_t w;
        world_init(&w, NULL);
        const char *a1 = "{\"id\":1,\"name\":\"Ann \\\"A\\\"\",\"score\":1.50,\"note\":null,"
                         "\"tags\":[1, 2]}";
        feed(&w, "{\"id\":1}", change("c", NULL, a1, 100, 0));
        feed(&w, "{\"schema\":{},\"payload\":{\"id\":2}}",
             change("r", NULL, "{\"id\":2,\"name\":\"Bo\"}", 50, 1));
        assert_string_equal(commit(&w),
                            "redis HASH c:customers:1 id=1 name=Ann \"A\" score=1.50 tags=[1, 2]\n"
                            "redis HASH c:customers:2 id=2 name=Bo\n"
                            "kafka out.customers 1 {\"id\":1,\"name\":\"Ann \\\"A\\\"\","
                            "\"score\":1.50,\"note\":null,\"tags\":[1, 2]}\n"
                            "kafka out.customers 2 {\"id\":2,\"name\":\"Bo\"}\n");
        /* a duplicate, an older change, a snapshot read older than what is stored: skipped */
        feed(&w, "{\"id\":1}", change("c", NULL, a1, 100, 0));
        feed(&w, "{\"id\":1}", change("u", NULL, "{\"id\":1,\"name\":\"old\"}", 99, 0));
        feed(&w, "{\"id\":1}", change("r", NULL, "{\"id\":1,\"name\":\"snap\"}", 60, 0));
        assert_string_equal(commit(&w), "");
        /* an update, then a delete and its tombstone, then an older create: the row stays gone */
        feed(&w, "{\"id\":2}", change("u", NULL, "{\"id\":2,\"name\":\"B2\",\"x\":null}", 120, 0));
        feed(&w, "{\"id\":2}", change("d", "{\"id\":2}", NULL, 130, 0));
        feed(&w, "{\"id\":2}", NULL);
        feed(&w, "{\"schema\":{},\"payload\":{\"id\":2}}", "{\"schema\":{},\"payload\":null}");
        feed(&w, "{\"id\":2}", change("c", NULL, "{\"id\":2,\"name\":\"again\"}", 125, 0));
        assert_string_equal(commit(&w),
                            "redis HASH c:customers:2 id=2 name=B2\n"
                            "redis DEL c:customers:2\n"
                            "kafka out.customers 2 {\"id\":2,\"name\":\"B2\",\"x\":null}\n"
                            "kafka out.customers 2 null\n");
        /* a primary-key change: delete of the old key, create of the new one */
        feed(&w, "{\"id\":1}", change("d", a1, NULL, 140, 0));
        feed(&w, "{\"id\":1}", NULL);
        feed(&w, "{\"id\":9}", change("c", NULL, "{\"id\":9,\"name\":\"Ann\"}", 141, 0));
        assert_string_equal(commit(&w), "redis DEL c:customers:1\n"
                                        "redis HASH c:customers:9 id=9 name=Ann\n"
                                        "kafka out.customers 1 null\n"
                                        "kafka out.customers 9 {\"id\":9,\"name\":\"Ann\"}\n");
        /* a truncate: live rows older than it go; later changes come back; older ones not */
        feed(&w, "{\"id\":3}", change("c", NULL, "{\"id\":3}", 150, 0));
        feed(&w, NULL, change("t", NULL, NULL, 160, 0));
        feed(&w, NULL, change("t", NULL, NULL, 160, 0));                /* its duplicate */
        feed(&w, "{\"id\":4}", change("r", NULL, "{\"id\":4}", 60, 0)); /* before the truncate */
        feed(&w, "{\"id\":5}", change("c", NULL, "{\"id\":5}", 170, 0));
        assert_string_equal(commit(&w), "redis HASH c:customers:3 id=3\n"
                                        "redis DEL c:customers:3\n"
                                        "redis DEL c:customers:9\n"
                                        "redis HASH c:customers:5 id=5\n"
                                        "kafka out.customers 3 {\"id\":3}\n"
                                        "kafka out.customers 3 null\n"
                                        "kafka out.customers 9 null\n"
                                        "kafka out.customers 5 {\"id\":5}\n");
        /* state survives a restart: the same changes again are all skipped */
        eddy__test_close(w.ctx);
        char err[256];
        w.ctx = eddy__test_open(&eddy_cdc_fanout, w.ov, 8, fake_apply, &w.out, err, sizeof(err));
        assert_non_null(w.ctx);
        eddy__test_kafka_sink(w.ctx, fake_kafka, &w.out);
        w.off = eddy__test_next_offset(w.ctx, TOPIC, 0);
        feed(&w, "{\"id\":5}", change("c", NULL, "{\"id\":5}", 170, 0));
        feed(&w, "{\"id\":9}", change("c", NULL, "{\"id\":9,\"name\":\"Ann\"}", 141, 0));
        feed(&w, "{\"id\":2}", change("u", NULL, "{\"id\":2}", 130, 0));
        assert_string_equal(commit(&w), "");
        world_free(&w);
}

/* Routes: include / exclude / rename, sinks per table, other tables by "*". */
static void test_routes(void **state)
{
        world_t w;
        world_init(&w, "{\"customers\":{\"exclude\":[\"secret\"],\"rename\":{\"email\":\"mail\"},"
                       "\"sinks\":[\"redis\"]},\"*\":{\"include\":[\"id\"]}}");
        feed(&w, "{\"id\":1}",
             change("c", NULL, "{\"id\":1,\"email\":\"a@b\",\"secret\":\"s\",\"z\":0}", 10, 0));
        assert_string_equal(commit(&w), "redis HASH c:customers:1 id=1 mail=a@b z=0\n");
        world_free(&w);
        world_init(&w, "{\"*\":{\"include\":[\"id\",\"z\"],\"topic\":\"all-rows\"}}");
        feed(&w, "{\"id\":1}",
             change("c", NULL, "{\"id\":1,\"email\":\"a@b\",\"secret\":\"s\",\"z\":0}", 10, 0));
        assert_string_equal(commit(&w), "redis HASH c:customers:1 id=1 z=0\n"
                                        "kafka all-rows 1 {\"id\":1,\"z\":0}\n");
        world_free(&w);
}

/* Bad input: the dead-letter topic with a reason, the job goes on. */
static void test_bad_input(void **state)
{
        world_t w;
        world_init(&w, NULL);
        feed(&w, "{\"id\":1}", "not json");
        feed(&w, "{\"id\":1}", "{\"before\":null,\"after\":{\"id\":1},\"source\":{\"lsn\":1}}");
        feed(&w, "{\"id\":1}", change("x", NULL, "{\"id\":1}", 1, 0));
        feed(&w, "{\"id\":1}", change("cc", NULL, "{\"id\":1}", 1, 0));
        feed(&w, NULL, change("c", NULL, "{\"id\":1}", 1, 0));
        feed(&w, "{\"id\":null}", change("c", NULL, "{\"id\":1}", 1, 0));
        feed(&w, "{\"id\":1}", "{\"after\":{\"id\":1},\"op\":\"c\",\"source\":{\"table\":\"t\"}}");
        feed(&w, "{\"id\":1}", "{\"after\":{\"id\":1},\"op\":\"c\",\"source\":5}");
        feed(&w, "{\"id\":1}", change("u", NULL, NULL, 1, 0));
        feed(&w, "{\"id\":1}", change("c", NULL, "[1]", 1, 0));
        feed(&w, "{\"id\":1}", "{\"schema\":{},\"payload\":7}");
        feed(&w, "{\"id\":1}", change("c", NULL, "{\"id\":1}", 1, 0)); /* and a good one */
        assert_string_equal(commit(&w), "redis HASH c:customers:1 id=1\n"
                                        "dlq json\n"
                                        "dlq missing_op\n"
                                        "dlq unknown_op\n"
                                        "dlq unknown_op\n"
                                        "dlq missing_key\n"
                                        "dlq bad_key\n"
                                        "dlq bad_position\n"
                                        "dlq missing_position\n"
                                        "dlq missing_after\n"
                                        "dlq missing_after\n"
                                        "dlq envelope\n"
                                        "kafka out.customers 1 {\"id\":1}\n");
        assert_int_equal(eddy__test_dlq_count(w.ctx), 11);
        world_free(&w);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_positions),
            cmocka_unit_test(test_primary_keys),
            cmocka_unit_test_teardown(test_envelopes_and_order, remove_live_dirs),
            cmocka_unit_test_teardown(test_routes, remove_live_dirs),
            cmocka_unit_test_teardown(test_bad_input, remove_live_dirs),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
