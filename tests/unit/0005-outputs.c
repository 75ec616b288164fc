/* 0005-outputs.c: Redis hash and Kafka outputs through the outbox, the packed hash format,
 * eddy_partition_assigned(), and outbox entries of format 2 written by older binaries. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdirs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"
#include "redis.h"
#include "state.h"
#include "testing.h"

#define TOPIC "in"
#define OUT   "out"

/* ---------------------------------------------------------------- a tiny processor
 *
 * What it emits depends on the record's value: "hash", "big" (a 250-field hash), "nohash"
 * (a hash of no fields), "kafka" (a value, a tombstone, an empty value without a key),
 * "set", or "bad" (a dead letter). */

static const eddy_hfield_t hash_fields[] = {
    {"name", 4, "ada", 3},
    {"empty", 5, "", 0},
    {"bin\0ary", 7, "\x00\xff", 2},
};

/* What process() saw of the assignment, for the last record. */
static int seen_own_assigned = -1, seen_next_assigned = -1;

static int ot_init(eddy_ctx_t *ctx, const void *conf, void **selfp, char *errstr,
                   size_t errstr_size)
{
        static int self;
        *selfp = &self;
        return 0;
}

static int ot_process(void *self, eddy_ctx_t *ctx, const eddy_msg_t *msg)
{
        int32_t p = msg->partition;
        char key[64];
        int kl = snprintf(key, sizeof(key), "h:%.*s", (int)msg->key_len, (const char *)msg->key);
        seen_own_assigned = eddy_partition_assigned(ctx, p);
        seen_next_assigned = eddy_partition_assigned(ctx, p + 1);
        if (msg->value_len == 4 && !memcmp(msg->value, "hash", 4)) {
                eddy_out_redis_hash(ctx, p, key, (size_t)kl, hash_fields, 3, 60000);
        } else if (msg->value_len == 3 && !memcmp(msg->value, "big", 3)) {
                static char names[250][16], vals[250][16];
                eddy_hfield_t f[250];
                for (int i = 0; i < 250; i++) {
                        snprintf(names[i], sizeof(names[i]), "f%03d", i);
                        snprintf(vals[i], sizeof(vals[i]), "v%03d", i);
                        f[i] = (eddy_hfield_t){names[i], 4, vals[i], 4};
                }
                eddy_out_redis_hash(ctx, p, key, (size_t)kl, f, 250, 0);
        } else if (msg->value_len == 6 && !memcmp(msg->value, "nohash", 6)) {
                eddy_out_redis_hash(ctx, p, key, (size_t)kl, NULL, 0, 5);
        } else if (msg->value_len == 5 && !memcmp(msg->value, "kafka", 5)) {
                eddy_out_kafka(ctx, p, OUT, msg->key, msg->key_len, "v", 1);
                eddy_out_kafka(ctx, p, OUT, msg->key, msg->key_len, NULL, 0);
                eddy_out_kafka(ctx, p, OUT, NULL, 0, "", 0);
        } else if (msg->value_len == 3 && !memcmp(msg->value, "set", 3)) {
                key[0] = 's';
                eddy_out_redis_set(ctx, p, key, (size_t)kl, "1", 1);
        } else {
                return eddy_reject(ctx, "test", "a bad record");
        }
        return 0;
}

static const eddy_processor_t out_test = {
    .abi_version = EDDY_ABI_VERSION,
    .name = "out-test",
    .summary = "emits what its records say",
    .default_input = TOPIC,
    .init = ot_init,
    .process = ot_process,
};

/* ---------------------------------------------------------------- fake sinks */

typedef struct op_s {
        int32_t partition;
        int64_t pos, seq;
        char op;
        char *key, *val;
        size_t klen, vlen;
} op_t;

typedef struct hdr_s {
        char name[32];
        char val[128];
} hdr_t;

typedef struct rec_s {
        char topic[64];
        int dead_letter, haskey, hasval;
        char key[16], val[16];
        size_t klen, vlen;
        hdr_t h[12];
        size_t nh;
} rec_t;

typedef struct sink_s {
        op_t ops[512];
        size_t nops;
        rec_t recs[32];
        size_t nrecs;
        int fail; /* the next Redis delivery stops the job */
} sink_t;

static char *dup_bytes(const char *p, size_t n)
{
        char *d = malloc(n ? n : 1);
        assert_non_null(d);
        if (n)
                memcpy(d, p, n);
        return d;
}

static int fake_apply(void *opaque, int32_t partition, int64_t pos, int64_t seq, uint32_t chunk,
                      const eddy_redis_op_t *ops, size_t nops)
{
        sink_t *s = opaque;
        if (s->fail) {
                s->fail = 0;
                return EDDY_ERR_STOPPED;
        }
        for (size_t i = 0; i < nops; i++) {
                assert_true(s->nops < sizeof(s->ops) / sizeof(s->ops[0]));
                op_t *o = &s->ops[s->nops++];
                o->partition = partition;
                o->pos = pos;
                o->seq = seq + (int64_t)(i / chunk);
                o->op = ops[i].op;
                o->key = dup_bytes(ops[i].key, ops[i].klen);
                o->klen = ops[i].klen;
                o->val = ops[i].val ? dup_bytes(ops[i].val, ops[i].vlen) : NULL;
                o->vlen = ops[i].vlen;
        }
        return 0;
}

static void fake_kafka(void *opaque, const eddy_test_krec_t *r)
{
        sink_t *s = opaque;
        assert_true(s->nrecs < sizeof(s->recs) / sizeof(s->recs[0]));
        rec_t *k = &s->recs[s->nrecs++];
        memset(k, 0, sizeof(*k));
        assert_true(r->tlen < sizeof(k->topic));
        memcpy(k->topic, r->topic, r->tlen);
        k->dead_letter = r->dead_letter;
        k->haskey = r->key != NULL;
        k->hasval = r->val != NULL;
        assert_true(r->klen < sizeof(k->key) && r->vlen < sizeof(k->val));
        if (r->key)
                memcpy(k->key, r->key, r->klen);
        if (r->val)
                memcpy(k->val, r->val, r->vlen);
        k->klen = r->klen;
        k->vlen = r->vlen;
        assert_true(r->nheaders <= sizeof(k->h) / sizeof(k->h[0]));
        for (size_t i = 0; i < r->nheaders; i++) {
                snprintf(k->h[i].name, sizeof(k->h[i].name), "%.*s", (int)r->headers[i].nlen,
                         r->headers[i].name);
                snprintf(k->h[i].val, sizeof(k->h[i].val), "%.*s", (int)r->headers[i].vlen,
                         r->headers[i].val);
        }
        k->nh = r->nheaders;
}

static void sink_clear(sink_t *s)
{
        for (size_t i = 0; i < s->nops; i++) {
                free(s->ops[i].key);
                free(s->ops[i].val);
        }
        s->nops = 0;
        s->nrecs = 0;
}

static const char *header(const rec_t *r, const char *name)
{
        for (size_t i = 0; i < r->nh; i++)
                if (!strcmp(r->h[i].name, name))
                        return r->h[i].val;
        return NULL;
}

/* ---------------------------------------------------------------- a runtime over a dir */

typedef struct world_s {
        char dir[64];
        char ovbuf[7][128];
        char *ov[7];
        int nov;
        sink_t sink;
        eddy_ctx_t *ctx;
} world_t;

static void world_open(world_t *w)
{
        char err[256];
        w->ctx = eddy__test_open(&out_test, w->ov, w->nov, fake_apply, &w->sink, err, sizeof(err));
        if (!w->ctx)
                fail_msg("eddy__test_open: %s", err);
        eddy__test_kafka_sink(w->ctx, fake_kafka, &w->sink);
}

static void world_init(world_t *w)
{
        memset(w, 0, sizeof(*w));
        snprintf(w->dir, sizeof(w->dir), "/tmp/eddy-0005-XXXXXX");
        assert_non_null(mkdtemp(w->dir));
        live_dir(w->dir, 1);
        snprintf(w->ovbuf[0], sizeof(w->ovbuf[0]), "state.dir=%s", w->dir);
        snprintf(w->ovbuf[1], sizeof(w->ovbuf[1]), "input.topics=%s,other", TOPIC);
        snprintf(w->ovbuf[2], sizeof(w->ovbuf[2]), "redis.chunk.keys=2");
        snprintf(w->ovbuf[3], sizeof(w->ovbuf[3]), "state.sync=false");
        snprintf(w->ovbuf[4], sizeof(w->ovbuf[4]), "log.level=err");
        snprintf(w->ovbuf[5], sizeof(w->ovbuf[5]), "job.name=j");
        w->nov = 6;
        for (int i = 0; i < 7; i++)
                w->ov[i] = w->ovbuf[i];
}

static void world_free(world_t *w)
{
        eddy__test_close(w->ctx);
        w->ctx = NULL;
        sink_clear(&w->sink);
        rm_rf(w->dir);
        live_dir(w->dir, 0);
}

static void feed(world_t *w, int32_t p, int64_t off, const char *value)
{
        assert_int_equal(eddy__test_feed(w->ctx, TOPIC, p, off, "k1", 2, value, strlen(value)), 0);
}

/* Checks that @p o is the hash of hash_fields with its ttl. */
static void assert_hash_op(const op_t *o)
{
        assert_int_equal(o->op, EDDY_ROP_HASH);
        assert_int_equal(o->klen, 4);
        assert_memory_equal(o->key, "h:k1", 4);
        eddy_redis_hash_iter_t it;
        assert_int_equal(eddy_redis_hash_open(&it, o->val, o->vlen), 0);
        assert_int_equal(it.ttl_ms, 60000);
        assert_int_equal(it.nfields, 3);
        eddy_hfield_t f;
        for (int i = 0; i < 3; i++) {
                assert_int_equal(eddy_redis_hash_next(&it, &f), 1);
                assert_int_equal(f.nlen, hash_fields[i].nlen);
                assert_memory_equal(f.name, hash_fields[i].name, f.nlen);
                assert_int_equal(f.vlen, hash_fields[i].vlen);
                if (f.vlen)
                        assert_memory_equal(f.val, hash_fields[i].val, f.vlen);
        }
        assert_int_equal(eddy_redis_hash_next(&it, &f), 0);
}

/* ---------------------------------------------------------------- tests */

static void test_hash_pack(void **state)
{
        static char names[300][8];
        eddy_hfield_t f[300];
        for (int i = 0; i < 300; i++) {
                int n = snprintf(names[i], sizeof(names[i]), "n%d", i);
                f[i] = (eddy_hfield_t){names[i], (size_t)n, i % 2 ? names[i] : "",
                                       (size_t)(i % 2) * n};
        }
        size_t size = eddy_redis_hash_size(f, 300);
        unsigned char *buf = malloc(size + 1);
        assert_non_null(buf);
        assert_int_equal(eddy_redis_hash_pack(buf, -5, f, 300), size);
        eddy_redis_hash_iter_t it;
        assert_int_equal(eddy_redis_hash_open(&it, buf, size), 0);
        assert_int_equal(it.ttl_ms, -5);
        assert_int_equal(it.nfields, 300);
        eddy_hfield_t g;
        for (int i = 0; i < 300; i++) {
                assert_int_equal(eddy_redis_hash_next(&it, &g), 1);
                assert_int_equal(g.nlen, f[i].nlen);
                assert_memory_equal(g.name, f[i].name, g.nlen);
                assert_int_equal(g.vlen, f[i].vlen);
        }
        assert_int_equal(eddy_redis_hash_next(&it, &g), 0);
        /* the layout: ttl (8), count (4), then the first name "n0" and its empty value */
        assert_memory_equal(buf, "\xff\xff\xff\xff\xff\xff\xff\xfb\x00\x00\x01\x2c", 12);
        assert_memory_equal(buf + 12, "\x00\x00\x00\x02n0\x00\x00\x00\x00", 10);
        /* malformed: short, truncated, trailing bytes, a count too large, NULL */
        assert_int_equal(eddy_redis_hash_open(&it, buf, 11), -1);
        assert_int_equal(eddy_redis_hash_open(&it, buf, size - 1), -1);
        buf[size] = 0;
        assert_int_equal(eddy_redis_hash_open(&it, buf, size + 1), -1);
        buf[11] = 0x2d;
        assert_int_equal(eddy_redis_hash_open(&it, buf, size), -1);
        assert_int_equal(eddy_redis_hash_open(&it, NULL, 0), -1);
        /* no fields at all is well-formed */
        assert_int_equal(eddy_redis_hash_pack(buf, 0, NULL, 0), 12);
        assert_int_equal(eddy_redis_hash_open(&it, buf, 12), 0);
        assert_int_equal(eddy_redis_hash_next(&it, &g), 0);
        free(buf);
}

static void test_outputs(void **state)
{
        world_t w;
        world_init(&w);
        world_open(&w);
        assert_int_equal(eddy_partition_assigned(w.ctx, 0), 0);

        feed(&w, 0, 0, "hash");
        assert_int_equal(seen_own_assigned, 1);
        assert_int_equal(seen_next_assigned, 0);
        assert_int_equal(eddy_partition_assigned(w.ctx, 0), 1);
        assert_int_equal(eddy_partition_assigned(w.ctx, 1), 0);
        assert_int_equal(eddy_partition_assigned(w.ctx, -1), 0);
        assert_int_equal(eddy_partition_assigned(w.ctx, 1 << 21), 0);
        feed(&w, 0, 1, "kafka");
        feed(&w, 0, 2, "set");
        feed(&w, 0, 3, "bad");
        feed(&w, 0, 4, "nohash");
        assert_int_equal(eddy__test_commit(w.ctx), 0);

        /* Redis: in emission order, chunks of 2 keys at (4, 0) and (4, 1) */
        assert_int_equal(w.sink.nops, 3);
        assert_hash_op(&w.sink.ops[0]);
        assert_int_equal(w.sink.ops[1].op, EDDY_ROP_SET);
        assert_memory_equal(w.sink.ops[1].key, "s:k1", 4);
        assert_int_equal(w.sink.ops[2].op, EDDY_ROP_DEL); /* a hash of no fields */
        assert_memory_equal(w.sink.ops[2].key, "h:k1", 4);
        assert_null(w.sink.ops[2].val);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(w.sink.ops[i].pos, 4);
                assert_int_equal(w.sink.ops[i].seq, i / 2);
        }

        /* Kafka: outputs and dead letters counted apart, all in order */
        assert_int_equal(eddy__test_out_count(w.ctx), 3);
        assert_int_equal(eddy__test_dlq_count(w.ctx), 1);
        assert_int_equal(w.sink.nrecs, 4);
        const rec_t *r = w.sink.recs;
        for (int i = 0; i < 3; i++) {
                assert_string_equal(r[i].topic, OUT);
                assert_int_equal(r[i].dead_letter, 0);
                char src[64];
                /* the position of the record that made them (offset 1), seqs from 0 */
                snprintf(src, sizeof(src), TOPIC ",other/0/1/%d", i);
                assert_string_equal(header(&r[i], "eddy.src"), src);
                assert_int_equal(r[i].nh, 1); /* no lineage headers by default */
        }
        assert_true(r[0].haskey && r[0].hasval);
        assert_int_equal(r[0].klen, 2);
        assert_memory_equal(r[0].key, "k1", 2);
        assert_int_equal(r[0].vlen, 1);
        assert_memory_equal(r[0].val, "v", 1);
        assert_true(r[1].haskey && !r[1].hasval); /* a tombstone */
        assert_true(!r[2].haskey && r[2].hasval); /* an empty value, no key */
        assert_int_equal(r[2].vlen, 0);
        assert_string_equal(r[3].topic, "j.dlq");
        assert_int_equal(r[3].dead_letter, 1);
        assert_string_equal(header(&r[3], "eddy.reason"), "test");
        assert_string_equal(header(&r[3], "eddy.src"), TOPIC "/0/3/0");
        assert_memory_equal(r[3].val, "bad", 3);

        /* The next batch: the outputs of offset 5 carry its position, above the fence
         * (4, 1) the Redis chunks took, so their seqs start again from 0. */
        sink_clear(&w.sink);
        feed(&w, 0, 5, "kafka");
        feed(&w, 0, 6, "big");
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        assert_int_equal(w.sink.nrecs, 3);
        for (int i = 0; i < 3; i++) {
                char src[64];
                snprintf(src, sizeof(src), TOPIC ",other/0/5/%d", i);
                assert_string_equal(header(&w.sink.recs[i], "eddy.src"), src);
        }
        assert_int_equal(eddy__test_out_count(w.ctx), 6);
        assert_int_equal(eddy__test_dlq_count(w.ctx), 1);
        assert_int_equal(w.sink.nops, 1);
        const op_t *o = &w.sink.ops[0];
        assert_int_equal(o->op, EDDY_ROP_HASH);
        assert_int_equal(o->pos, 6);
        assert_int_equal(o->seq, 0);
        eddy_redis_hash_iter_t it;
        eddy_hfield_t f;
        assert_int_equal(eddy_redis_hash_open(&it, o->val, o->vlen), 0);
        assert_int_equal(it.ttl_ms, 0);
        assert_int_equal(it.nfields, 250);
        for (int i = 0; eddy_redis_hash_next(&it, &f); i++) {
                char n[16];
                snprintf(n, sizeof(n), "f%03d", i);
                assert_int_equal(f.nlen, 4);
                assert_memory_equal(f.name, n, 4);
        }
        world_free(&w);
}

/* output.headers.lineage=true: every output record also names its job and processor; dead
 * letters always do. */
static void test_output_lineage(void **state)
{
        world_t w;
        world_init(&w);
        snprintf(w.ovbuf[6], sizeof(w.ovbuf[6]), "output.headers.lineage=true");
        w.nov = 7;
        world_open(&w);
        feed(&w, 0, 0, "kafka");
        feed(&w, 0, 1, "bad");
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        assert_int_equal(w.sink.nrecs, 4);
        for (int i = 0; i < 3; i++) {
                const rec_t *r = &w.sink.recs[i];
                char src[64];
                snprintf(src, sizeof(src), TOPIC ",other/0/0/%d", i);
                assert_int_equal(r->dead_letter, 0);
                assert_int_equal(r->nh, 3);
                assert_string_equal(header(r, "eddy.src"), src);
                assert_string_equal(header(r, "eddy.job"), "j");
                assert_string_equal(header(r, "eddy.processor"), "out-test");
        }
        assert_int_equal(w.sink.recs[3].dead_letter, 1);
        assert_string_equal(header(&w.sink.recs[3], "eddy.job"), "j");
        assert_string_equal(header(&w.sink.recs[3], "eddy.processor"), "out-test");
        world_free(&w);
}

/* A crash between the commit and the delivery: the next start delivers the entry again,
 * Redis and Kafka, and eddy.src goes on from the committed fence. */
static void test_redelivery(void **state)
{
        world_t w;
        world_init(&w);
        world_open(&w);
        feed(&w, 0, 0, "hash");
        feed(&w, 0, 1, "kafka");
        w.sink.fail = 1;
        assert_int_equal(eddy__test_commit(w.ctx), 0); /* stays in the outbox */
        assert_int_equal(w.sink.nops, 0);
        assert_int_equal(eddy__test_out_count(w.ctx), 0);
        eddy__test_close(w.ctx);

        world_open(&w);
        assert_int_equal(w.sink.nops, 1);
        assert_hash_op(&w.sink.ops[0]);
        assert_int_equal(w.sink.ops[0].pos, 1);
        assert_int_equal(w.sink.ops[0].seq, 3); /* after the three outputs of offset 1 */
        assert_int_equal(eddy__test_out_count(w.ctx), 3);
        assert_int_equal(eddy__test_dlq_count(w.ctx), 0);
        assert_int_equal(eddy__test_next_offset(w.ctx, TOPIC, 0), 2);

        sink_clear(&w.sink);
        feed(&w, 0, 2, "kafka");
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        assert_int_equal(w.sink.nrecs, 3);
        assert_string_equal(header(&w.sink.recs[0], "eddy.src"), TOPIC ",other/0/2/0");
        world_free(&w);
}

static void put_be(unsigned char **p, uint64_t v, int n)
{
        for (int i = n - 1; i >= 0; i--)
                (*p)[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
        *p += n;
}

static void put_bytes(unsigned char **p, const char *s, size_t n)
{
        put_be(p, n, 4);
        memcpy(*p, s, n);
        *p += n;
}

/* Commits @p e as an outbox entry of the state dir, as an older (or broken) binary would:
 * inline in RocksDB under 'X' + seq, where binaries since segment files keep a reference. */
static void put_entry(world_t *w, const unsigned char *e, size_t len)
{
        char err[256];
        eddy_state_opts_t so = {8, 8, 4, 0};
        eddy_state_t *st = eddy_state_open(w->dir, &so, err, sizeof(err));
        if (!st)
                fail_msg("eddy_state_open: %s", err);
        const unsigned char k[9] = {EDDY_NS_OUTBOX, 0, 0, 0, 0, 0, 0, 0, 1};
        eddy_state_raw_put(st, k, sizeof(k), e, len);
        assert_int_equal(eddy_state_commit(st, err, sizeof(err)), 0);
        eddy_state_close(st);
}

/* An entry of format 2 (every Kafka record a dead letter with a value) is still delivered. */
static void test_format2_entry(void **state)
{
        world_t w;
        world_init(&w);
        unsigned char e[256], *p = e;
        put_be(&p, 'E', 1);
        put_be(&p, 2, 1);
        put_be(&p, 1, 4); /* one group: partition 0 at (7, 0), chunks of 1000 keys, one op */
        put_be(&p, 0, 4);
        put_be(&p, 7, 8);
        put_be(&p, 0, 8);
        put_be(&p, 1000, 4);
        put_be(&p, 1, 4);
        put_be(&p, 'S', 1);
        put_bytes(&p, "k", 1);
        put_bytes(&p, "v", 1);
        put_be(&p, 1, 4); /* one dead letter, with a key and an empty value */
        put_bytes(&p, "x.dlq", 5);
        put_be(&p, (uint32_t)-1, 4);
        put_be(&p, 1, 1);
        put_bytes(&p, "kk", 2);
        put_bytes(&p, "", 0);
        put_be(&p, 1, 4);
        put_bytes(&p, "eddy.src", 8);
        put_bytes(&p, "in/0/7/0", 8);
        put_entry(&w, e, (size_t)(p - e));

        world_open(&w);
        assert_int_equal(w.sink.nops, 1);
        assert_int_equal(w.sink.ops[0].op, EDDY_ROP_SET);
        assert_int_equal(w.sink.ops[0].pos, 7);
        assert_memory_equal(w.sink.ops[0].val, "v", 1);
        assert_int_equal(eddy__test_dlq_count(w.ctx), 1);
        assert_int_equal(eddy__test_out_count(w.ctx), 0);
        world_free(&w);
}

/* A hash op whose value is not a packed hash is a corrupt entry: the start fails. */
static void test_corrupt_hash_entry(void **state)
{
        world_t w;
        world_init(&w);
        unsigned char e[128], *p = e;
        put_be(&p, 'E', 1);
        put_be(&p, 3, 1);
        put_be(&p, 1, 4);
        put_be(&p, 0, 4);
        put_be(&p, 7, 8);
        put_be(&p, 0, 8);
        put_be(&p, 1000, 4);
        put_be(&p, 1, 4);
        put_be(&p, 'H', 1);
        put_bytes(&p, "h", 1);
        put_bytes(&p, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", 12); /* no field */
        put_be(&p, 0, 4);
        put_entry(&w, e, (size_t)(p - e));
        char err[256];
        eddy_ctx_t *ctx =
            eddy__test_open(&out_test, w.ov, 6, fake_apply, &w.sink, err, sizeof(err));
        assert_null(ctx);
        assert_non_null(strstr(err, "re-delivery"));
        assert_int_equal(w.sink.nops, 0);
        world_free(&w);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_hash_pack),
            cmocka_unit_test_teardown(test_outputs, remove_live_dirs),
            cmocka_unit_test_teardown(test_output_lineage, remove_live_dirs),
            cmocka_unit_test_teardown(test_redelivery, remove_live_dirs),
            cmocka_unit_test_teardown(test_format2_entry, remove_live_dirs),
            cmocka_unit_test_teardown(test_corrupt_hash_entry, remove_live_dirs),
        };
        return cmocka_run_group_tests_name("outputs", tests, NULL, NULL);
}
