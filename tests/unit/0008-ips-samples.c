/* 0008-ips-samples.c: ips-samples through the real runtime (test seam, RocksDB state, outbox).
 *
 * Examples of each rule of docs/ips-samples.md (labels, the window closing at the watermark,
 * engagements before their impression, orphans, duplicates, lateness, bad records, the
 * propensity estimator against hand-computed values, the sampling hash), then random streams
 * fed with random interleavings of the two topics, random batches and crashes that lose the
 * batch in flight: the samples must equal a clean, one-batch run's, record for record. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdirs.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ips_samples.h"
#include "registry.h"
#include "testing.h"

#define IMP "impressions"
#define ENG "engagements"

/* ---------------------------------------------------------------- a run */

#define MAXOUT 20000

typedef struct out_s {
        char *json[MAXOUT]; /* samples, as delivered */
        int n;
        char *dlq[MAXOUT]; /* dead letters: "<reason> <value>" */
        int ndlq;
} out_t;

typedef struct run_s {
        char dir[64];
        char ovbuf[16][256];
        char *ov[16];
        int nov;
        eddy_ctx_t *ctx;
        out_t out;
        int64_t off[2][4]; /* next offset fed, per topic and partition */
} run_t;

static void on_record(void *opaque, const eddy_test_krec_t *rec)
{
        out_t *o = opaque;
        if (rec->dead_letter) {
                const char *reason = "";
                size_t rl = 0;
                for (size_t i = 0; i < rec->nheaders; i++)
                        if (!strcmp(rec->headers[i].name, "eddy.reason")) {
                                reason = rec->headers[i].val;
                                rl = rec->headers[i].vlen;
                        }
                assert_true(o->ndlq < MAXOUT);
                char *s = malloc(rl + rec->vlen + 2);
                memcpy(s, reason, rl);
                s[rl] = ' ';
                memcpy(s + rl + 1, rec->val, rec->vlen);
                s[rl + 1 + rec->vlen] = '\0';
                o->dlq[o->ndlq++] = s;
                return;
        }
        assert_true(o->n < MAXOUT);
        assert_int_equal(rec->tlen, 7);
        assert_memory_equal(rec->topic, "samples", 7);
        char *s = malloc(rec->vlen + 1);
        memcpy(s, rec->val, rec->vlen);
        s[rec->vlen] = '\0';
        o->json[o->n++] = s;
}

static int no_redis(void *opaque, int32_t partition, int64_t pos, int64_t seq, uint32_t chunk,
                    const eddy_redis_op_t *ops, size_t nops)
{
        fail_msg("ips-samples wrote to Redis");
        return -1;
}

static void run_init(run_t *w)
{
        memset(w, 0, sizeof(*w));
        snprintf(w->dir, sizeof(w->dir), "/tmp/eddy-ips-XXXXXX");
        assert_non_null(mkdtemp(w->dir));
        live_dir(w->dir, 1);
        const char *fixed[] = {
            "input.topics=" IMP "," ENG, "log.level=warning",           "state.sync=false",
            "output.topic=samples",      "attribution.window.ms=10000", "allowed.lateness.ms=0"};
        snprintf(w->ovbuf[0], sizeof(w->ovbuf[0]), "state.dir=%s", w->dir);
        for (int i = 0; i < 6; i++)
                snprintf(w->ovbuf[1 + i], sizeof(w->ovbuf[0]), "%s", fixed[i]);
        w->nov = 7;
        for (int i = 0; i < 16; i++)
                w->ov[i] = w->ovbuf[i];
}

static void __attribute__((format(printf, 2, 3))) run_set(run_t *w, const char *fmt, ...)
{
        assert_true(w->nov < 16);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->ovbuf[w->nov++], sizeof(w->ovbuf[0]), fmt, ap);
        va_end(ap);
}

static void run_open(run_t *w)
{
        char err[512];
        w->ctx =
            eddy__test_open(&eddy_ips_samples, w->ov, w->nov, no_redis, NULL, err, sizeof(err));
        if (!w->ctx)
                fail_msg("eddy__test_open: %s", err);
        eddy__test_kafka_sink(w->ctx, on_record, &w->out);
}

static void out_free(out_t *o)
{
        for (int i = 0; i < o->n; i++)
                free(o->json[i]);
        for (int i = 0; i < o->ndlq; i++)
                free(o->dlq[i]);
        o->n = o->ndlq = 0;
}

static void run_done(run_t *w)
{
        if (w->ctx) {
                assert_int_equal(eddy__test_commit(w->ctx), 0);
                eddy__test_close(w->ctx);
        }
        out_free(&w->out);
        rm_rf(w->dir);
        live_dir(w->dir, 0);
}

static void feed(run_t *w, int topic, int p, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void feed(run_t *w, int topic, int p, const char *fmt, ...)
{
        char v[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(v, sizeof(v), fmt, ap);
        va_end(ap);
        assert_int_equal(
            eddy__test_feed(w->ctx, topic ? ENG : IMP, p, w->off[topic][p]++, "u", 1, v, (size_t)n),
            0);
}

static void imp(run_t *w, int p, const char *rid, const char *iid, int pos, int64_t ts,
                const char *extra)
{
        feed(w, 0, p,
             "{\"request_id\":\"%s\",\"user_id\":\"u1\",\"item_id\":\"%s\",\"position\":%d,"
             "\"ts\":%" PRId64 "%s}",
             rid, iid, pos, ts, extra ? extra : "");
}

static void click(run_t *w, int p, const char *rid, const char *iid, int64_t ts)
{
        feed(w, 1, p,
             "{\"request_id\":\"%s\",\"user_id\":\"u1\",\"item_id\":\"%s\",\"type\":\"click\","
             "\"ts\":%" PRId64 "}",
             rid, iid, ts);
}

static void watch(run_t *w, int p, const char *rid, const char *iid, double wt, double du,
                  int64_t ts)
{
        feed(w, 1, p,
             "{\"request_id\":\"%s\",\"user_id\":\"u1\",\"item_id\":\"%s\",\"type\":\"watch\","
             "\"watch_time\":%g,\"duration\":%g,\"ts\":%" PRId64 "}",
             rid, iid, wt, du, ts);
}

/* Both clocks of partition p to ts, with records of keys no test looks at. */
static void tick(run_t *w, int p, int64_t ts)
{
        imp(w, p, "tick", "t", 1, ts, NULL);
        click(w, p, "tick-e", "t", ts);
}

static void commit(run_t *w)
{
        assert_int_equal(eddy__test_commit(w->ctx), 0);
}

/* The delivered sample of (rid, iid), or NULL; fails if there are two. */
static json_t *sample(run_t *w, const char *rid, const char *iid)
{
        json_t *found = NULL;
        for (int i = 0; i < w->out.n; i++) {
                json_t *j = json_loads(w->out.json[i], 0, NULL);
                assert_non_null(j);
                if (!strcmp(json_string_value(json_object_get(j, "request_id")), rid) &&
                    !strcmp(json_string_value(json_object_get(j, "item_id")), iid)) {
                        if (found)
                                fail_msg("two samples of %s/%s", rid, iid);
                        found = j;
                } else {
                        json_decref(j);
                }
        }
        return found;
}

static double num(json_t *j, const char *f)
{
        json_t *v = json_object_get(j, f);
        assert_true(json_is_number(v));
        return json_number_value(v);
}

static int dlq_count(run_t *w, const char *reason)
{
        int n = 0;
        size_t rl = strlen(reason);
        for (int i = 0; i < w->out.ndlq; i++)
                if (!strncmp(w->out.dlq[i], reason, rl) && w->out.dlq[i][rl] == ' ')
                        n++;
        return n;
}

/* ---------------------------------------------------------------- examples */

static void test_labels(void **state)
{
        run_t w;
        run_init(&w);
        run_set(&w, "propensity.table=[0.5]");
        run_open(&w);
        imp(&w, 0, "r1", "a", 1, 1000, NULL);
        imp(&w, 0, "r1", "b", 2, 1000, NULL);
        imp(&w, 0, "r1", "c", 3, 1000, NULL);
        click(&w, 0, "r1", "a", 2000);
        watch(&w, 0, "r1", "a", 30, 100, 3000);
        watch(&w, 0, "r1", "a", 80, 100, 4000); /* heartbeats: the maximum counts */
        watch(&w, 0, "r1", "a", 50, 100, 5000);
        watch(&w, 0, "r1", "b", 300, 100, 11000); /* at the window's end: counts, capped at 1 */
        click(&w, 0, "r1", "c", 11001);           /* past the window: does not count */
        commit(&w);
        assert_int_equal(w.out.n, 0);
        tick(&w, 0, 11002);
        commit(&w);
        json_t *a = sample(&w, "r1", "a"), *b = sample(&w, "r1", "b"), *c = sample(&w, "r1", "c");
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(c);
        assert_int_equal((int)num(a, "clicked"), 1);
        assert_true(num(a, "watch_frac") == 0.8);
        assert_int_equal((int)num(b, "clicked"), 0);
        assert_true(num(b, "watch_frac") == 1);
        assert_int_equal((int)num(c, "clicked"), 0);
        assert_true(num(c, "watch_frac") == 0);
        assert_true(num(a, "propensity") == 0.5 && num(a, "weight") == 2);
        assert_string_equal(json_string_value(json_object_get(a, "propensity_source")), "table");
        assert_string_equal(json_string_value(json_object_get(a, "imp_topic")), IMP);
        assert_int_equal((int)num(a, "imp_offset"), 0);
        assert_int_equal((int)num(c, "imp_offset"), 2);
        /* emission order: (window end, ts, request_id, item_id) */
        assert_non_null(strstr(w.out.json[0], "\"item_id\":\"a\""));
        assert_non_null(strstr(w.out.json[1], "\"item_id\":\"b\""));
        assert_non_null(strstr(w.out.json[2], "\"item_id\":\"c\""));
        json_decref(a);
        json_decref(b);
        json_decref(c);
        run_done(&w);
}

static void test_watermark(void **state)
{
        run_t w;
        run_init(&w);
        run_set(&w, "allowed.lateness.ms=500");
        run_open(&w);
        imp(&w, 0, "r1", "a", 1, 1000, "");
        /* only the impressions' clock moves: the watermark is the lower of the two */
        imp(&w, 0, "r2", "a", 1, 50000, "");
        commit(&w);
        assert_int_equal(w.out.n, 0);
        click(&w, 0, "r9", "z", 11500); /* watermark 11500 - 500 = 11000 = window end: open */
        commit(&w);
        assert_int_equal(w.out.n, 0);
        click(&w, 0, "r9", "z", 11501); /* 11001 > 11000: closed */
        commit(&w);
        assert_int_equal(w.out.n, 1);
        assert_non_null(strstr(w.out.json[0], "\"request_id\":\"r1\""));
        /* per-topic lateness: 11000 is late for the engagements (clock 11501 - 500) */
        click(&w, 0, "r1", "a", 11001);
        click(&w, 0, "r1", "a", 11000);
        assert_int_equal(dlq_count(&w, "late"), 0);
        commit(&w);
        assert_int_equal(dlq_count(&w, "late"), 1);
        /* an impression is late by the impressions' clock (50000) only */
        imp(&w, 0, "r3", "a", 1, 49499, "");
        imp(&w, 0, "r3", "b", 1, 49500, "");
        commit(&w);
        assert_int_equal(dlq_count(&w, "late"), 2);
        run_done(&w);
}

static void test_before_impression_and_orphans(void **state)
{
        run_t w;
        run_init(&w);
        run_set(&w, "orphans.to.dlq=true");
        run_set(&w, "allowed.lateness.ms=5000");
        run_open(&w);
        click(&w, 0, "r1", "a", 1500);       /* before its impression: held */
        watch(&w, 0, "r1", "a", 1, 4, 1600); /* held */
        watch(&w, 0, "r1", "a", 9, 10, 400); /* before the impression's ts: will not count */
        click(&w, 0, "r2", "nobody", 1700);  /* never finds an impression */
        imp(&w, 0, "r1", "a", 2, 1000, "");
        commit(&w);
        tick(&w, 0, 16001); /* 16001 - 5000 > 11000 */
        commit(&w);
        json_t *a = sample(&w, "r1", "a");
        assert_non_null(a);
        assert_int_equal((int)num(a, "clicked"), 1);
        assert_true(num(a, "watch_frac") == 0.25);
        json_decref(a);
        assert_int_equal(dlq_count(&w, "orphan"), 2);
        int seen = 0;
        for (int i = 0; i < w.out.ndlq; i++)
                seen += strstr(w.out.dlq[i], "\"nobody\"") != NULL ||
                        strstr(w.out.dlq[i], "\"watch_time\":9") != NULL;
        assert_int_equal(seen, 2);
        run_done(&w);
}

static void test_duplicates_and_bad_records(void **state)
{
        run_t w;
        run_init(&w);
        run_open(&w);
        imp(&w, 0, "r1", "a", 1, 1000, ",\"propensity\":0.5");
        imp(&w, 0, "r1", "a", 1, 1000, ",\"propensity\":0.5");
        imp(&w, 0, "r1", "a", 3, 1200, ",\"propensity\":0.5"); /* the first one stands */
        feed(&w, 0, 0, "{\"request_id\":1");
        imp(&w, 0, "r1", "b", 0, 1000, "");
        imp(&w, 0, "r1", "c", 1, 1000, ",\"propensity\":0");
        imp(&w, 0, "r1", "d", 1, 1000, ",\"explore\":1");
        watch(&w, 0, "r1", "a", 1, 0, 1500);
        feed(&w, 1, 0, "{\"request_id\":\"r1\",\"user_id\":\"u1\",\"item_id\":\"a\",\"ts\":1}");
        feed(&w, 1, 0,
             "{\"request_id\":\"r1\",\"user_id\":\"u1\",\"item_id\":\"a\",\"type\":\"like\","
             "\"ts\":1}");
        commit(&w);
        assert_int_equal(dlq_count(&w, "json"), 1);
        assert_int_equal(dlq_count(&w, "bad_field"), 5);
        assert_int_equal(dlq_count(&w, "missing_field"), 1);
        tick(&w, 0, 30000);
        commit(&w);
        json_t *a = sample(&w, "r1", "a");
        assert_non_null(a);
        assert_int_equal((int)num(a, "position"), 1);
        assert_string_equal(json_string_value(json_object_get(a, "propensity_source")), "event");
        json_decref(a);
        assert_null(sample(&w, "r1", "b"));
        /* after the window closed, the same key within the retention is still a duplicate */
        int before = w.out.n;
        imp(&w, 0, "r1", "a", 1, 30000, "");
        tick(&w, 0, 60000);
        commit(&w);
        assert_int_equal(w.out.n, before + 1); /* tick's own sample only */
        run_done(&w);
}

/* The estimator against values computed by hand (docs/ips-samples.md). */
static void test_estimator(void **state)
{
        run_t w;
        run_init(&w);
        run_set(&w, "propensity.source=estimate");
        run_set(&w, "propensity.table=[1,0.5]");
        run_set(&w, "estimator.min.count=4");
        run_set(&w, "estimator.smoothing=1");
        run_set(&w, "weight.clip=0.1");
        run_open(&w);
        /* explore traffic at positions 1 and 2, 4 impressions each: 2 and 1 clicks */
        char rid[16];
        for (int i = 0; i < 4; i++) {
                snprintf(rid, sizeof(rid), "x%d", i);
                imp(&w, 1, rid, "p1", 1, 1000 + i, ",\"explore\":true");
                imp(&w, 1, rid, "p2", 2, 1000 + i, ",\"explore\":true");
                if (i < 2)
                        click(&w, 1, rid, "p1", 1500);
                if (i == 0)
                        click(&w, 1, rid, "p2", 1500);
        }
        /* exploitation traffic after them */
        imp(&w, 1, "y", "p2", 2, 2000, "");
        imp(&w, 1, "y", "p3", 3, 2000, "");
        tick(&w, 1, 13000);
        commit(&w);
        /* the explore samples saw fewer than 4 impressions: the table */
        json_t *x3 = sample(&w, "x3", "p2");
        assert_non_null(x3);
        assert_string_equal(json_string_value(json_object_get(x3, "propensity_source")), "table");
        assert_true(num(x3, "propensity") == 0.5);
        json_decref(x3);
        /* ctr(1) = (2 + 1) / (4 + 2) = 1/2, ctr(2) = (1 + 1) / (4 + 2) = 1/3: 2/3 */
        json_t *y = sample(&w, "y", "p2");
        assert_non_null(y);
        assert_string_equal(json_string_value(json_object_get(y, "propensity_source")), "estimate");
        assert_true(fabs(num(y, "propensity") - 2.0 / 3) < 1e-12);
        assert_true(fabs(num(y, "weight") - 1.5) < 1e-12);
        json_decref(y);
        /* position 3 has no explore counts: the table's last element */
        json_t *y3 = sample(&w, "y", "p3");
        assert_string_equal(json_string_value(json_object_get(y3, "propensity_source")), "table");
        assert_true(num(y3, "propensity") == 0.5);
        json_decref(y3);
        run_done(&w);

        assert_true(eddy__ips_estimate(3, 1, 4, 2, 1, 4) == -1);
        assert_true(fabs(eddy__ips_estimate(100, 9, 100, 19, 0.5, 10) -
                         (9.5 / 101) / (19.5 / 101)) < 1e-15);
        assert_true(eddy__ips_estimate(100, 50, 100, 10, 1, 10) == 1); /* capped at 1 */
}

/* Sampling of negatives: a hash of (request_id, item_id), the rate within tolerance over 100k
 * keys, the same keys every time, and the weight times 1/r. */
static void test_sampling(void **state)
{
        /* the hash is the documented one: FNV-1a 64 of "r" 0 "i", splitmix64's finalizer */
        uint64_t h = 0xcbf29ce484222325ULL;
        const char raw[] = {'r', '1', 0, 'a'};
        for (size_t i = 0; i < sizeof(raw); i++)
                h = (h ^ (unsigned char)raw[i]) * 0x100000001b3ULL;
        h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
        h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
        h ^= h >> 31;
        assert_true(eddy__ips_hash("r1", 2, "a", 1) == h);
        for (int run = 0; run < 2; run++) {
                static unsigned char kept[2][100000];
                int n = 0;
                for (int i = 0; i < 100000; i++) {
                        char rid[32];
                        int rl = snprintf(rid, sizeof(rid), "req-%d", i / 10);
                        char iid[16];
                        int il = snprintf(iid, sizeof(iid), "item%d", i % 10);
                        kept[run][i] = (unsigned char)eddy__ips_keep(
                            eddy__ips_hash(rid, (size_t)rl, iid, (size_t)il), 0.2);
                        n += kept[run][i];
                }
                /* binomial sd at p=0.2, n=1e5: 126; 5 sd */
                assert_true(n > 20000 - 632 && n < 20000 + 632);
                if (run == 1)
                        assert_memory_equal(kept[0], kept[1], sizeof(kept[0]));
        }

        run_t w;
        run_init(&w);
        run_set(&w, "negative.keep.rate=0.25");
        run_set(&w, "weight.clip=0.2");
        run_open(&w);
        int expect = 0;
        char rid[16];
        for (int i = 0; i < 400; i++) {
                snprintf(rid, sizeof(rid), "n%d", i);
                imp(&w, 2, rid, "a", 1, 1000, ",\"propensity\":0.1");
                expect += eddy__ips_keep(eddy__ips_hash(rid, strlen(rid), "a", 1), 0.25);
        }
        imp(&w, 2, "pos", "a", 1, 1000, ",\"propensity\":0.1");
        click(&w, 2, "pos", "a", 1000);
        feed(&w, 0, 2,
             "{\"request_id\":\"z\",\"user_id\":\"u1\",\"item_id\":\"a\",\"position\":1,"
             "\"ts\":20000,\"propensity\":1}");
        click(&w, 2, "z", "a", 20000);
        commit(&w);
        assert_int_equal(w.out.n, expect + 1);
        assert_true(expect > 60 && expect < 140);
        json_t *p = sample(&w, "pos", "a");
        assert_true(num(p, "weight") == 5 && num(p, "keep_rate") == 1); /* 1 / max(0.1, 0.2) */
        json_decref(p);
        for (int i = 0; i < w.out.n; i++)
                if (!strstr(w.out.json[i], "\"pos\"")) {
                        json_t *j = json_loads(w.out.json[i], 0, NULL);
                        assert_true(num(j, "weight") == 20 && num(j, "keep_rate") == 0.25);
                        json_decref(j);
                }
        run_done(&w);
}

/* ---------------------------------------------------------------- random streams */

typedef struct rng_s {
        uint64_t s;
} rng_t;

static uint64_t rnd(rng_t *r)
{
        uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static int64_t below(rng_t *r, int64_t n)
{
        return n > 0 ? (int64_t)(rnd(r) % (uint64_t)n) : 0;
}

#define NP    2
#define MAXEV 600

typedef struct rec_s {
        char v[256];
} rec_t;

/* Per partition and topic, a stream: sessions of impressions, clicks and watches nearby in
 * time (some before their impression, some late, duplicates, orphans). */
static int gen(rng_t *r, int p, rec_t (*recs)[MAXEV], int *n)
{
        int64_t t = 100000;
        n[0] = n[1] = 0;
        while (n[0] < MAXEV - 10 && n[1] < MAXEV - 10) {
                t += below(r, 3000);
                int req = (int)below(r, 1000000);
                int items = 1 + (int)below(r, 4);
                int explore = below(r, 4) == 0;
                for (int k = 0; k < items; k++) {
                        int64_t ts = t + below(r, 4000) - 2000; /* out of order, some late */
                        snprintf(recs[0][n[0]++].v, 256,
                                 "{\"request_id\":\"q%d-%d\",\"user_id\":\"u%d\",\"item_id\":"
                                 "\"i%d\",\"position\":%d,\"ts\":%" PRId64 "%s}",
                                 p, req, p, k, k + 1, ts, explore ? ",\"explore\":true" : "");
                        if (below(r, 20) == 0) { /* a duplicate */
                                memcpy(recs[0][n[0]].v, recs[0][n[0] - 1].v, 256);
                                n[0]++;
                        }
                        int ne = (int)below(r, 3);
                        for (int e = 0; e < ne; e++) {
                                int64_t ets = ts + below(r, 14000) - 1000;
                                if (below(r, 2))
                                        snprintf(
                                            recs[1][n[1]++].v, 256,
                                            "{\"request_id\":\"q%d-%d\",\"user_id\":\"u%d\","
                                            "\"item_id\":\"i%d\",\"type\":\"click\",\"ts\":%" PRId64
                                            "}",
                                            p, req, p, k, ets);
                                else
                                        snprintf(recs[1][n[1]++].v, 256,
                                                 "{\"request_id\":\"q%d-%d\",\"user_id\":\"u%d\","
                                                 "\"item_id\":\"i%d\",\"type\":\"watch\","
                                                 "\"watch_time\":%d,\"duration\":60,\"ts\":%" PRId64
                                                 "}",
                                                 p, req, p, below(r, 3) ? k : k + 7,
                                                 (int)below(r, 80), ets);
                        }
                }
        }
        return 0;
}

/* Feeds every record; @p batch_max 0: one batch, no crash. @returns the samples in order of
 * delivery per partition, joined. */
static void run_stream(rec_t (*recs)[2][MAXEV], int (*n)[2], uint64_t seed, int batch_max,
                       int crash_permille, int64_t retention, out_t *out)
{
        rng_t r = {seed};
        run_t w;
        run_init(&w);
        run_set(&w, "allowed.lateness.ms=3000");
        run_set(&w, "orphans.to.dlq=true");
        run_set(&w, "propensity.source=estimate");
        run_set(&w, "estimator.min.count=3");
        run_set(&w, "negative.keep.rate=0.5");
        run_set(&w, "propensity.table=[1,0.7,0.5,0.4]");
        run_set(&w, "dedupe.retention.ms=%" PRId64, retention);
        run_open(&w);
        for (;;) {
                int left = 0;
                for (int p = 0; p < NP; p++)
                        for (int t = 0; t < 2; t++)
                                left += w.off[t][p] < n[p][t];
                if (!left)
                        break;
                int nb = batch_max ? 1 + (int)below(&r, batch_max) : 1 << 30;
                for (int i = 0; i < nb; i++) {
                        int p = (int)below(&r, NP), t = (int)below(&r, 2);
                        /* runs of one topic, as fetches deliver them */
                        int run = 1 + (int)below(&r, 30);
                        for (int k = 0; k < run; k++) {
                                if (w.off[t][p] >= n[p][t])
                                        break;
                                assert_int_equal(eddy__test_feed(w.ctx, t ? ENG : IMP, p,
                                                                 w.off[t][p], "u", 1,
                                                                 recs[p][t][w.off[t][p]].v,
                                                                 strlen(recs[p][t][w.off[t][p]].v)),
                                                 0);
                                w.off[t][p]++;
                        }
                        int done = 1;
                        for (int q = 0; q < NP; q++)
                                for (int u = 0; u < 2; u++)
                                        done &= w.off[u][q] >= n[q][u];
                        if (done)
                                break;
                }
                if (crash_permille && below(&r, 1000) < crash_permille) {
                        eddy__test_close(w.ctx); /* the batch in flight is lost */
                        run_open(&w);
                        for (int p = 0; p < NP; p++)
                                for (int t = 0; t < 2; t++)
                                        w.off[t][p] =
                                            eddy__test_next_offset(w.ctx, t ? ENG : IMP, p);
                        continue;
                }
                commit(&w);
        }
        commit(&w);
        eddy__test_close(w.ctx);
        w.ctx = NULL;
        *out = w.out;
        memset(&w.out, 0, sizeof(w.out));
        run_done(&w);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Samples of one partition, in delivery order (each carries imp_partition). */
static int of_partition(const out_t *o, int p, char **dst)
{
        char pat[32];
        snprintf(pat, sizeof(pat), "\"imp_partition\":%d,", p);
        int n = 0;
        for (int i = 0; i < o->n; i++)
                if (strstr(o->json[i], pat))
                        dst[n++] = o->json[i];
        return n;
}

static void test_random_streams(void **state)
{
        static rec_t recs[NP][2][MAXEV];
        static int n[NP][2];
        static char *a[MAXOUT], *b[MAXOUT];
        for (uint64_t seed = 1; seed <= 24; seed++) {
                rng_t r = {seed * 7919};
                for (int p = 0; p < NP; p++)
                        gen(&r, p, recs[p], n[p]);
                out_t clean, crash;
                /* closed keys kept a day; none (a repeat is late, or new); or 5 s, so that
                 * markers are purged during the stream */
                int64_t retention = seed % 3 == 0 ? 86400000 : seed % 3 == 1 ? 0 : 5000;
                run_stream(recs, n, seed, 0, 0, retention, &clean);
                run_stream(recs, n, seed + 1000, 1 + (int)(seed % 5) * 10, 150, retention, &crash);
                assert_true(clean.n > 100);
                for (int p = 0; p < NP; p++) {
                        int na = of_partition(&clean, p, a), nb = of_partition(&crash, p, b);
                        assert_int_equal(na, nb);
                        for (int i = 0; i < na; i++)
                                if (strcmp(a[i], b[i]))
                                        fail_msg("seed %" PRIu64 " partition %d sample %d:\n%s\n%s",
                                                 seed, p, i, a[i], b[i]);
                }
                /* dead letters (late, orphan) are the same records, in any order */
                assert_int_equal(clean.ndlq, crash.ndlq);
                qsort(clean.dlq, (size_t)clean.ndlq, sizeof(char *), cmp_str);
                qsort(crash.dlq, (size_t)crash.ndlq, sizeof(char *), cmp_str);
                for (int i = 0; i < clean.ndlq; i++)
                        assert_string_equal(clean.dlq[i], crash.dlq[i]);
                out_free(&clean);
                out_free(&crash);
        }
}

int main(void)
{
        const struct CMUnitTest ips[] = {
            cmocka_unit_test_teardown(test_labels, remove_live_dirs),
            cmocka_unit_test_teardown(test_watermark, remove_live_dirs),
            cmocka_unit_test_teardown(test_before_impression_and_orphans, remove_live_dirs),
            cmocka_unit_test_teardown(test_duplicates_and_bad_records, remove_live_dirs),
            cmocka_unit_test_teardown(test_estimator, remove_live_dirs),
            cmocka_unit_test_teardown(test_sampling, remove_live_dirs),
            cmocka_unit_test_teardown(test_random_streams, remove_live_dirs),
        };
        return cmocka_run_group_tests_name("ips-samples", ips, NULL, NULL);
}
