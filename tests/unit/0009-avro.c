/* 0009-avro.c: the Avro codec: round trips of every schema, evolution, bad input; and the
 * runtime reading Avro inputs (dead letters unchanged, with their reason). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_codec.h"
#include "eddy.h"
#include "testing.h"
#include "tmpdirs.h"

typedef struct eddy__schema_src_s {
        const char *name, *json;
} eddy__schema_src_t;
extern const eddy__schema_src_t eddy__schemas[];
extern const eddy_processor_t eddy_like_counter;

static uint64_t rng_state = 88172645463325252ULL;

static uint32_t rnd(uint32_t n)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (uint32_t)(rng_state % n);
}

static eddy_avro_schema_t *parse(const char *text)
{
        char err[512];
        eddy_avro_schema_t *s = eddy_avro_schema_parse(text, strlen(text), err, sizeof(err));
        if (!s)
                fail_msg("schema: %s\n%s", err, text);
        return s;
}

/* ---------------------------------------------------------------- a value of any schema */

typedef struct named_s {
        const char *name[64];
        json_t *def[64];
        int n;
} named_t;

static json_t *gen(json_t *sch, named_t *nt, int depth);

static json_t *gen_str(void)
{
        static const char *const pool[] = {
            "", "a", "p17", "caf\xc3\xa9", "q\"uo\\te\n", "\xf0\x9f\x98\x80 emoji", "x y z"};
        return json_string(pool[rnd(7)]);
}

static json_t *gen(json_t *sch, named_t *nt, int depth)
{
        if (json_is_array(sch))
                return gen(json_array_get(sch, rnd((uint32_t)json_array_size(sch))), nt, depth + 1);
        const char *t = json_string_value(sch);
        if (json_is_object(sch)) {
                t = json_string_value(json_object_get(sch, "type"));
                const char *name = json_string_value(json_object_get(sch, "name"));
                if (name && nt->n < 64) {
                        nt->name[nt->n] = name;
                        nt->def[nt->n++] = sch;
                }
                if (!strcmp(t, "record")) {
                        json_t *o = json_object();
                        size_t i;
                        json_t *f;
                        json_array_foreach(json_object_get(sch, "fields"), i, f)
                            json_object_set_new(o, json_string_value(json_object_get(f, "name")),
                                                gen(json_object_get(f, "type"), nt, depth + 1));
                        return o;
                }
                if (!strcmp(t, "enum")) {
                        json_t *sy = json_object_get(sch, "symbols");
                        return json_incref(json_array_get(sy, rnd((uint32_t)json_array_size(sy))));
                }
                if (!strcmp(t, "array")) {
                        json_t *a = json_array();
                        int n = depth > 6 ? 0 : (int)rnd(4);
                        for (int i = 0; i < n; i++)
                                json_array_append_new(
                                    a, gen(json_object_get(sch, "items"), nt, depth + 1));
                        return a;
                }
                if (!strcmp(t, "map")) {
                        json_t *o = json_object();
                        int n = depth > 6 ? 0 : (int)rnd(4);
                        for (int i = 0; i < n; i++) {
                                char k[16];
                                snprintf(k, sizeof(k), "k%d", i);
                                json_object_set_new(
                                    o, k, gen(json_object_get(sch, "values"), nt, depth + 1));
                        }
                        return o;
                }
                if (!strcmp(t, "fixed"))
                        return json_string("");
        }
        if (!strcmp(t, "null"))
                return json_null();
        if (!strcmp(t, "boolean"))
                return json_boolean(rnd(2));
        if (!strcmp(t, "int"))
                return json_integer((json_int_t)rnd(2000000) - 1000000);
        if (!strcmp(t, "long"))
                return json_integer(rnd(2) ? 1700000000000LL + rnd(1000000) : -(json_int_t)rnd(9));
        if (!strcmp(t, "float") || !strcmp(t, "double"))
                return json_real((double)rnd(100000) - 50000.5);
        if (!strcmp(t, "string") || !strcmp(t, "bytes"))
                return gen_str();
        for (int i = 0; i < nt->n; i++)
                if (!strcmp(nt->name[i], t))
                        return gen(nt->def[i], nt, depth + 1);
        fail_msg("gen: unknown type %s", t);
        return NULL;
}

/* JSON -> Avro -> JSON gives the same value. */
static void round_trip(const eddy_avro_schema_t *s, const eddy_avro_reader_t *rd, json_t *v,
                       const char *name)
{
        char err[512];
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        eddy_wbuf_t bin = {0}, back = {0};
        if (eddy_avro_from_json(s, text, strlen(text), &bin, err, sizeof(err)))
                fail_msg("%s: encode %s: %s", name, text, err);
        int r = eddy_avro_to_json(rd, bin.p, bin.len, 1 << 20, &back, err, sizeof(err));
        if (r)
                fail_msg("%s: decode of %s: %s: %s", name, text, eddy_avro_reason(r), err);
        json_error_t jerr;
        json_t *got = json_loadb((const char *)back.p, back.len, JSON_DECODE_ANY, &jerr);
        if (!got || !json_equal(got, v))
                fail_msg("%s: sent %s, got %.*s", name, text, (int)back.len, back.p);
        /* every strict prefix fails cleanly, as truncated or (mid-string) garbage */
        for (size_t n = 0; n < bin.len; n++) {
                size_t before = back.len;
                r = eddy_avro_to_json(rd, bin.p, n, 1 << 20, &back, err, sizeof(err));
                assert_int_not_equal(r, EDDY_AVRO_OK);
                assert_int_equal(back.len, before);
        }
        json_decref(got);
        free(text);
        eddy_wbuf_free(&bin);
        eddy_wbuf_free(&back);
}

static void test_round_trip_every_schema(void **state)
{
        int schemas = 0;
        for (const eddy__schema_src_t *src = eddy__schemas; src->name; src++, schemas++) {
                eddy_avro_schema_t *s = parse(src->json);
                char err[512];
                eddy_avro_reader_t *rd = eddy_avro_reader_new(s, s, err, sizeof(err));
                if (!rd)
                        fail_msg("%s: %s", src->name, err);
                json_t *sj = json_loads(src->json, 0, NULL);
                for (int i = 0; i < 200; i++) {
                        named_t nt = {0};
                        json_t *v = gen(sj, &nt, 0);
                        round_trip(s, rd, v, src->name);
                        json_decref(v);
                }
                json_decref(sj);
                eddy_avro_reader_destroy(rd);
                eddy_avro_schema_destroy(s);
        }
        assert_true(schemas >= 8);
}

/* ---------------------------------------------------------------- evolution */

static char *decode_as(const char *wsch, const char *rsch, const char *json, int *rc)
{
        char err[512];
        eddy_avro_schema_t *w = parse(wsch), *r = rsch ? parse(rsch) : NULL;
        eddy_avro_reader_t *rd = eddy_avro_reader_new(w, r, err, sizeof(err));
        char *out = NULL;
        if (!rd) {
                *rc = -1;
                out = strdup(err);
        } else {
                eddy_wbuf_t bin = {0}, o = {0};
                if (eddy_avro_from_json(w, json, strlen(json), &bin, err, sizeof(err)))
                        fail_msg("encode %s: %s", json, err);
                *rc = eddy_avro_to_json(rd, bin.p, bin.len, 1 << 20, &o, err, sizeof(err));
                if (*rc)
                        out = strdup(eddy_avro_reason(*rc));
                else
                        out = strndup((const char *)o.p, o.len);
                eddy_wbuf_free(&bin);
                eddy_wbuf_free(&o);
        }
        eddy_avro_reader_destroy(rd);
        eddy_avro_schema_destroy(w);
        eddy_avro_schema_destroy(r);
        return out;
}

#define LIKE_V1                                                                                    \
        "{\"type\":\"record\",\"name\":\"com.acme.LikeEvent\",\"fields\":["                        \
        "{\"name\":\"event_id\",\"type\":\"string\"},"                                             \
        "{\"name\":\"user_id\",\"type\":\"string\"},"                                              \
        "{\"name\":\"post_id\",\"type\":\"string\"},"                                              \
        "{\"name\":\"client\",\"type\":[\"null\",\"string\"],\"default\":null},"                   \
        "{\"name\":\"action\",\"type\":{\"type\":\"enum\",\"name\":\"LikeAction\","                \
        "\"symbols\":[\"like\",\"unlike\",\"superlike\"]}},"                                       \
        "{\"name\":\"ts\",\"type\":\"int\"}]}"

static void test_evolution(void **state)
{
        int rc;
        char *reader = NULL;
        for (const eddy__schema_src_t *s = eddy__schemas; s->name; s++)
                if (!strcmp(s->name, "like_event"))
                        reader = strdup(s->json);
        assert_non_null(reader);

        /* a writer with an extra optional field (removed in the reader), ts as int, a
         * namespace of its own: read as eddy's like_event */
        char *out = decode_as(LIKE_V1, reader,
                              "{\"event_id\":\"e1\",\"user_id\":\"u1\",\"post_id\":\"p1\","
                              "\"client\":\"ios\",\"action\":\"unlike\",\"ts\":1700000}",
                              &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(out, "{\"event_id\":\"e1\",\"user_id\":\"u1\",\"post_id\":\"p1\","
                                 "\"action\":\"unlike\",\"ts\":1700000}");
        free(out);
        /* a symbol the reader does not know: a bad record */
        out = decode_as(LIKE_V1, reader,
                        "{\"event_id\":\"e1\",\"user_id\":\"u1\",\"post_id\":\"p1\","
                        "\"action\":\"superlike\",\"ts\":1}",
                        &rc);
        assert_int_equal(rc, EDDY_AVRO_TYPE);
        free(out);

        /* a reader with an added field with a default; a promotion int -> long -> double */
        const char *w2 = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                         "{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"b\",\"type\":\"long\"},"
                         "{\"name\":\"c\",\"type\":\"float\"},{\"name\":\"s\",\"type\":\"bytes\"},"
                         "{\"name\":\"u\",\"type\":\"int\"}]}";
        const char *r2 =
            "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
            "{\"name\":\"n\",\"type\":\"string\",\"default\":\"dflt\"},"
            "{\"name\":\"a\",\"type\":\"long\"},{\"name\":\"b\",\"type\":\"double\"},"
            "{\"name\":\"c\",\"type\":\"double\"},{\"name\":\"s\",\"type\":\"string\"},"
            "{\"name\":\"u\",\"type\":[\"null\",\"long\"]},"
            "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"int\"},"
            "\"default\":{\"x\":1}}]}";
        out = decode_as(w2, r2, "{\"a\":-5,\"b\":7,\"c\":1.5,\"s\":\"hi\",\"u\":3}", &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(out, "{\"a\":-5,\"b\":7,\"c\":1.5,\"s\":\"hi\",\"u\":3,"
                                 "\"n\":\"dflt\",\"m\":{\"x\":1}}");
        free(out);

        /* a reader field without a default that the writer lacks: no resolution */
        const char *r3 = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                         "{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"z\",\"type\":\"int\"}]}";
        out = decode_as(w2, r3, "{\"a\":1,\"b\":2,\"c\":1.0,\"s\":\"\",\"u\":0}", &rc);
        assert_int_equal(rc, -1);
        assert_non_null(strstr(out, "z"));
        free(out);
        /* long can not be read as int */
        const char *r4 = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                         "{\"name\":\"b\",\"type\":\"int\"}]}";
        out = decode_as(w2, r4, "{\"a\":1,\"b\":2,\"c\":1.0,\"s\":\"\",\"u\":0}", &rc);
        assert_int_equal(rc, -1);
        free(out);
        /* a union writer read as a plain reader: fine while the branch matches */
        const char *w5 = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                         "{\"name\":\"v\",\"type\":[\"null\",\"int\",\"string\"]}]}";
        const char *r5 = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                         "{\"name\":\"v\",\"type\":\"long\"}]}";
        out = decode_as(w5, r5, "{\"v\":42}", &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(out, "{\"v\":42}");
        free(out);
        out = decode_as(w5, r5, "{\"v\":\"x\"}", &rc);
        assert_int_equal(rc, EDDY_AVRO_TYPE);
        free(out);
        /* a field renamed with an alias; a recursive type */
        const char *w6 = "{\"type\":\"record\",\"name\":\"N\",\"fields\":["
                         "{\"name\":\"old\",\"type\":\"int\"},"
                         "{\"name\":\"next\",\"type\":[\"null\",\"N\"]}]}";
        const char *r6 = "{\"type\":\"record\",\"name\":\"N\",\"fields\":["
                         "{\"name\":\"new\",\"aliases\":[\"old\"],\"type\":\"long\"},"
                         "{\"name\":\"next\",\"type\":[\"null\",\"N\"]}]}";
        out = decode_as(w6, r6, "{\"old\":1,\"next\":{\"old\":2,\"next\":null}}", &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(out, "{\"new\":1,\"next\":{\"new\":2,\"next\":null}}");
        free(out);
        free(reader);
}

/* A Debezium envelope as its Avro converter registers it (a Value record per table), read as
 * written: the JSON of Debezium's JSON converter without the schema wrapper. */
static void test_debezium_envelope(void **state)
{
        const char *w =
            "{\"type\":\"record\",\"name\":\"Envelope\",\"namespace\":\"dbserver1.inventory."
            "customers\",\"fields\":["
            "{\"name\":\"before\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"Value\","
            "\"fields\":[{\"name\":\"id\",\"type\":\"int\"},{\"name\":\"email\",\"type\":"
            "\"string\"},{\"name\":\"score\",\"type\":[\"null\",\"double\"],\"default\":null}]}],"
            "\"default\":null},"
            "{\"name\":\"after\",\"type\":[\"null\",\"Value\"],\"default\":null},"
            "{\"name\":\"source\",\"type\":{\"type\":\"record\",\"name\":\"Source\","
            "\"namespace\":\"io.debezium.connector.postgresql\",\"fields\":["
            "{\"name\":\"version\",\"type\":\"string\"},{\"name\":\"table\",\"type\":"
            "\"string\"},{\"name\":\"lsn\",\"type\":[\"null\",\"long\"],\"default\":null}]}},"
            "{\"name\":\"op\",\"type\":\"string\"},"
            "{\"name\":\"ts_ms\",\"type\":[\"null\",\"long\"],\"default\":null}]}";
        const char *ev = "{\"before\":null,\"after\":{\"id\":1004,\"email\":\"a@b.c\","
                         "\"score\":2.5},\"source\":{\"version\":\"2.1.0\",\"table\":"
                         "\"customers\",\"lsn\":33841872},\"op\":\"c\",\"ts_ms\":1700000000123}";
        int rc;
        char *out = decode_as(w, NULL, ev, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(out, ev);
        free(out);
        /* the generic envelope of schemas/ round-trips a delete */
        for (const eddy__schema_src_t *src = eddy__schemas; src->name; src++)
                if (!strcmp(src->name, "debezium_envelope")) {
                        const char *del =
                            "{\"before\":{\"id\":7,\"name\":\"x\",\"gone\":null},\"after\":null,"
                            "\"source\":{\"version\":\"\",\"connector\":\"mysql\",\"name\":\"s\","
                            "\"ts_ms\":1,\"db\":\"d\",\"schema\":null,\"table\":\"t\",\"lsn\":null,"
                            "\"file\":\"binlog.000003\",\"pos\":154},\"op\":\"d\",\"ts_ms\":2}";
                        out = decode_as(src->json, src->json, del, &rc);
                        assert_int_equal(rc, 0);
                        assert_string_equal(out, del);
                        free(out);
                }
}

/* ---------------------------------------------------------------- bad input */

static int dec(const eddy_avro_reader_t *rd, const void *p, size_t n)
{
        eddy_wbuf_t o = {0};
        char err[256];
        int r = eddy_avro_to_json(rd, p, n, 1 << 16, &o, err, sizeof(err));
        assert_true(r != 0 || o.len > 0);
        eddy_wbuf_free(&o);
        return r;
}

static void test_bad_input(void **state)
{
        char err[512];
        eddy_avro_schema_t *s = parse("{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                                      "{\"name\":\"b\",\"type\":\"boolean\"},"
                                      "{\"name\":\"u\",\"type\":[\"null\",\"string\"]},"
                                      "{\"name\":\"a\",\"type\":{\"type\":\"array\","
                                      "\"items\":\"null\"}}]}");
        eddy_avro_reader_t *rd = eddy_avro_reader_new(s, NULL, err, sizeof(err));
        assert_non_null(rd);
        const unsigned char ok[] = {1, 2, 4, 'h', 'i', 0};
        assert_int_equal(dec(rd, ok, sizeof(ok)), 0);
        const unsigned char trailing[] = {1, 2, 4, 'h', 'i', 0, 7};
        assert_int_equal(dec(rd, trailing, sizeof(trailing)), EDDY_AVRO_TRAILING);
        const unsigned char badbool[] = {2, 0, 0};
        assert_int_equal(dec(rd, badbool, sizeof(badbool)), EDDY_AVRO_TYPE);
        const unsigned char badbranch[] = {0, 4, 0};
        assert_int_equal(dec(rd, badbranch, sizeof(badbranch)), EDDY_AVRO_TYPE);
        const unsigned char neglen[] = {0, 2, 1, 0};
        assert_int_equal(dec(rd, neglen, sizeof(neglen)), EDDY_AVRO_TYPE);
        const unsigned char longlen[] = {0, 2, 0xfe, 0xff, 0xff, 0xff, 0x0f};
        assert_int_equal(dec(rd, longlen, sizeof(longlen)), EDDY_AVRO_TRUNCATED);
        const unsigned char notutf8[] = {0, 2, 4, 0xc0, 0x80, 0};
        assert_int_equal(dec(rd, notutf8, sizeof(notutf8)), EDDY_AVRO_TYPE);
        const unsigned char surrogate[] = {0, 2, 12, 0xed, 0xa0, 0x80, 'a', 'b', 'c', 0};
        assert_int_equal(dec(rd, surrogate, sizeof(surrogate)), EDDY_AVRO_TYPE);
        /* 2^62 nulls: no bytes each, bounded work */
        const unsigned char many[] = {0,    0,    0xfe, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0x7f, 0};
        assert_int_equal(dec(rd, many, sizeof(many)), EDDY_AVRO_TOO_LARGE);
        const unsigned char varint11[] = {0,    0,    0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
        assert_int_equal(dec(rd, varint11, sizeof(varint11)), EDDY_AVRO_TYPE);
        /* random garbage: never a crash */
        unsigned char g[64];
        for (int i = 0; i < 20000; i++) {
                size_t n = rnd(sizeof(g));
                for (size_t k = 0; k < n; k++)
                        g[k] = (unsigned char)rnd(256);
                dec(rd, g, n);
        }
        eddy_avro_reader_destroy(rd);
        eddy_avro_schema_destroy(s);

        /* schemas that are not */
        static const char *const bad[] = {"",
                                          "{",
                                          "{\"type\":\"record\"}",
                                          "{\"type\":\"nope\"}",
                                          "[]",
                                          "[\"int\",[\"null\"]]",
                                          "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[]}",
                                          "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                                          "{\"name\":\"a\",\"type\":\"int\"},"
                                          "{\"name\":\"a\",\"type\":\"int\"}]}"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_null(eddy_avro_schema_parse(bad[i], strlen(bad[i]), err, sizeof(err)));

        /* the Confluent header */
        int32_t id = 0;
        const void *body;
        size_t blen;
        const unsigned char c1[] = {0, 0, 0, 1, 2, 9};
        assert_int_equal(eddy_avro_confluent(c1, sizeof(c1), &id, &body, &blen), 0);
        assert_int_equal(id, 258);
        assert_int_equal(blen, 1);
        assert_int_equal(eddy_avro_confluent("{}", 2, &id, &body, &blen), EDDY_AVRO_MAGIC);
        assert_int_equal(eddy_avro_confluent(c1, 3, &id, &body, &blen), EDDY_AVRO_TRUNCATED);
        assert_string_equal(eddy_avro_reason(EDDY_AVRO_MAGIC), "avro_magic");
}

/* ---------------------------------------------------------------- the runtime with Avro input */

typedef struct sink_s {
        int n;
        char reason[64], offset[32];
        unsigned char val[64];
        size_t vlen;
} sink_t;

static void fake_kafka(void *opaque, const eddy_test_krec_t *r)
{
        sink_t *s = opaque;
        if (!r->dead_letter)
                return;
        s->n++;
        for (size_t i = 0; i < r->nheaders; i++) {
                const eddy_hfield_t *h = &r->headers[i];
                if (h->nlen == 11 && !memcmp(h->name, "eddy.reason", 11))
                        snprintf(s->reason, sizeof(s->reason), "%.*s", (int)h->vlen, h->val);
                if (h->nlen == 15 && !memcmp(h->name, "eddy.src.offset", 15))
                        snprintf(s->offset, sizeof(s->offset), "%.*s", (int)h->vlen, h->val);
        }
        s->vlen = r->vlen < sizeof(s->val) ? r->vlen : sizeof(s->val);
        memcpy(s->val, r->val, s->vlen);
}

static int counts;
static char last_count[32];

static int fake_apply(void *opaque, int32_t partition, int64_t pos, int64_t seq, uint32_t chunk,
                      const eddy_redis_op_t *ops, size_t nops)
{
        for (size_t i = 0; i < nops; i++)
                if (ops[i].op == EDDY_ROP_SET) {
                        counts++;
                        snprintf(last_count, sizeof(last_count), "%.*s", (int)ops[i].vlen,
                                 (const char *)ops[i].val);
                }
        return 0;
}

static void test_runtime_avro_input(void **state)
{
        char dir[64] = "/tmp/eddy-avro-XXXXXX", o0[128];
        assert_non_null(mkdtemp(dir));
        live_dir(dir, 1);
        snprintf(o0, sizeof(o0), "state.dir=%s", dir);
        char *ov[] = {o0,
                      "input.topics=likes",
                      "input.format=avro",
                      "input.avro.schema=like_event",
                      "input.max.bytes=100",
                      "state.sync=false",
                      "log.level=err",
                      "job.name=j"};
        char err[512];
        eddy_ctx_t *ctx =
            eddy__test_open(&eddy_like_counter, ov, 8, fake_apply, NULL, err, sizeof(err));
        if (!ctx)
                fail_msg("open: %s", err);
        sink_t sink = {0};
        eddy__test_kafka_sink(ctx, fake_kafka, &sink);
        eddy_avro_schema_t *s = NULL;
        for (const eddy__schema_src_t *src = eddy__schemas; src->name; src++)
                if (!strcmp(src->name, "like_event"))
                        s = parse(src->json);
        eddy_wbuf_t b = {0};
        const char *ev[] = {
            "{\"event_id\":\"e1\",\"user_id\":\"u1\",\"post_id\":\"p1\",\"action\":\"like\","
            "\"ts\":1}",
            "{\"event_id\":\"e2\",\"user_id\":\"u2\",\"post_id\":\"p1\",\"action\":\"like\","
            "\"ts\":2}",
            "{\"event_id\":\"e3\",\"user_id\":\"\",\"post_id\":\"p1\",\"action\":\"like\","
            "\"ts\":3}"};
        int64_t off = 0;
        for (int i = 0; i < 3; i++) {
                b.len = 0;
                assert_int_equal(eddy_avro_from_json(s, ev[i], strlen(ev[i]), &b, err, sizeof(err)),
                                 0);
                assert_int_equal(eddy__test_feed(ctx, "likes", 0, off++, "p1", 2, b.p, b.len), 0);
        }
        /* truncated: the dead-letter topic gets the bytes as they came */
        assert_int_equal(eddy__test_feed(ctx, "likes", 0, off++, "p1", 2, b.p, b.len - 1), 0);
        unsigned char big[101] = {0};
        assert_int_equal(eddy__test_feed(ctx, "likes", 0, off++, "p1", 2, big, sizeof(big)), 0);
        assert_int_equal(eddy__test_commit(ctx), 0);
        assert_string_equal(last_count, "2");
        /* e3 (empty user_id, the processor's reject), the truncated one, the large one */
        assert_int_equal(sink.n, 3);
        assert_int_equal(eddy__test_dlq_count(ctx), 3);
        assert_string_equal(sink.reason, "too_large");
        assert_string_equal(sink.offset, "4");
        eddy__test_close(ctx);

        /* the truncated record, alone, to see its dead letter */
        ctx = eddy__test_open(&eddy_like_counter, ov, 8, fake_apply, NULL, err, sizeof(err));
        assert_non_null(ctx);
        memset(&sink, 0, sizeof(sink));
        eddy__test_kafka_sink(ctx, fake_kafka, &sink);
        assert_int_equal(eddy__test_feed(ctx, "likes", 0, off++, "p1", 2, b.p, b.len - 1), 0);
        assert_int_equal(eddy__test_commit(ctx), 0);
        assert_int_equal(sink.n, 1);
        assert_string_equal(sink.reason, "avro_truncated");
        assert_int_equal(sink.vlen, b.len - 1);
        assert_memory_equal(sink.val, b.p, b.len - 1);
        eddy__test_close(ctx);
        eddy_wbuf_free(&b);
        eddy_avro_schema_destroy(s);
        rm_rf(dir);
        live_dir(dir, 0);

        /* configuration errors name the key */
        char *bad[] = {"input.topics=likes", "input.format=avro", "log.level=err"};
        char st[64] = "/tmp/eddy-avro-XXXXXX", o1[128];
        assert_non_null(mkdtemp(st));
        snprintf(o1, sizeof(o1), "state.dir=%s", st);
        char *ov2[] = {o1, bad[0], bad[1], bad[2]};
        assert_null(
            eddy__test_open(&eddy_like_counter, ov2, 4, fake_apply, NULL, err, sizeof(err)));
        char *ov3[] = {o1, bad[0], "input.format=confluent", bad[2]};
        assert_null(
            eddy__test_open(&eddy_like_counter, ov3, 4, fake_apply, NULL, err, sizeof(err)));
        rm_rf(st);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip_every_schema),
            cmocka_unit_test(test_evolution),
            cmocka_unit_test(test_debezium_envelope),
            cmocka_unit_test(test_bad_input),
            cmocka_unit_test_teardown(test_runtime_avro_input, remove_live_dirs),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
