/* avro_fuzz.c: libFuzzer target for the Avro binary decoder (schemas/avro_codec.c).
 *
 *   make fuzz                      (builds build/fuzz/avro_fuzz and runs it on
 *                                   tests/fuzz/corpus/avro for FUZZ_SECONDS)
 *   cc -g -DEDDY_FUZZ_MAIN -Ischemas -Iruntime -Iconnectors tests/fuzz/avro_fuzz.c \
 *         schemas/avro_codec.c runtime/mem.c -ljansson -lm -o avro_replay && ./avro_replay
 * crash-...
 *
 * The first byte picks a (writer, reader) pair of schemas, the rest is the datum. Besides
 * memory errors, it aborts when the answers contradict each other: a datum that decodes must
 * give valid JSON, and that JSON must encode back with the reader schema and decode again to
 * the same text. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* NUL-terminates b's text without counting the NUL. */
static void eddy_wbuf_put_nul(eddy_wbuf_t *b)
{
        b->p = realloc(b->p, b->len + 1);
        if (!b->p)
                abort();
        b->p[b->len] = '\0';
        b->cap = b->len + 1;
}

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "avro_fuzz: check failed: %s (line %d)\n", #cond,          \
                                __LINE__);                                                         \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static const char *const schemas[] = {
    /* 0: like_event */
    "{\"type\":\"record\",\"name\":\"LikeEvent\",\"namespace\":\"eddy\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"post_id\",\"type\":\"string\"},{\"name\":\"action\",\"type\":{\"type\":\"enum\","
    "\"name\":\"LikeAction\",\"symbols\":[\"like\",\"unlike\"]}},{\"name\":\"ts\",\"type\":"
    "\"long\"}]}",
    /* 1: an evolved like event: an extra optional field, ts as int, one more symbol */
    "{\"type\":\"record\",\"name\":\"LikeEvent\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"post_id\",\"type\":\"string\"},{\"name\":\"client\",\"type\":[\"null\","
    "\"string\"],\"default\":null},{\"name\":\"action\",\"type\":{\"type\":\"enum\",\"name\":"
    "\"LikeAction\",\"symbols\":[\"like\",\"unlike\",\"superlike\"]}},{\"name\":\"ts\","
    "\"type\":\"int\"}]}",
    /* 2: every kind of type, recursive */
    "{\"type\":\"record\",\"name\":\"All\",\"fields\":["
    "{\"name\":\"n\",\"type\":\"null\"},{\"name\":\"b\",\"type\":\"boolean\"},"
    "{\"name\":\"i\",\"type\":\"int\"},{\"name\":\"l\",\"type\":\"long\"},"
    "{\"name\":\"f\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"double\"},"
    "{\"name\":\"by\",\"type\":\"bytes\"},{\"name\":\"s\",\"type\":\"string\"},"
    "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F4\",\"size\":4}},"
    "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":[\"null\",\"long\",\"string\"]}},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":"
    "\"double\"}}},"
    "{\"name\":\"next\",\"type\":[\"null\",\"All\"]}]}",
    /* 3: activity_event */
    "{\"type\":\"record\",\"name\":\"ActivityEvent\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"type\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"item_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"value\",\"type\":[\"null\",\"double\"],\"default\":null},"
    "{\"name\":\"ts\",\"type\":\"long\"}]}",
    /* 4: an older activity event: no value, item_id required, ts as int, an extra map */
    "{\"type\":\"record\",\"name\":\"ActivityEvent\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"item_id\",\"type\":\"string\"},{\"name\":\"tags\",\"type\":{\"type\":\"map\","
    "\"values\":\"bytes\"}},{\"name\":\"ts\",\"type\":\"int\"}]}",
};

/* (writer, reader) pairs; -1: read as written */
static const int pairs[][2] = {{0, 0}, {1, 0}, {2, -1}, {3, 3}, {4, 3}, {0, -1}};
#define NPAIRS (sizeof(pairs) / sizeof(pairs[0]))

static eddy_avro_schema_t *parsed[sizeof(schemas) / sizeof(schemas[0])];
static eddy_avro_reader_t *readers[NPAIRS], *self_readers[NPAIRS];

static void init(void)
{
        char err[512];
        for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++) {
                parsed[i] =
                    eddy_avro_schema_parse(schemas[i], strlen(schemas[i]), err, sizeof(err));
                if (!parsed[i]) {
                        fprintf(stderr, "schema %zu: %s\n", i, err);
                        abort();
                }
        }
        for (size_t i = 0; i < NPAIRS; i++) {
                const eddy_avro_schema_t *w = parsed[pairs[i][0]];
                const eddy_avro_schema_t *r = pairs[i][1] < 0 ? w : parsed[pairs[i][1]];
                readers[i] = eddy_avro_reader_new(w, pairs[i][1] < 0 ? NULL : r, err, sizeof(err));
                self_readers[i] = eddy_avro_reader_new(r, r, err, sizeof(err));
                CHECK(readers[i] && self_readers[i]);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (!parsed[0])
                init();
        if (size < 1)
                return 0;
        size_t pi = data[0] % NPAIRS;
        const eddy_avro_schema_t *r = parsed[pairs[pi][1] < 0 ? pairs[pi][0] : pairs[pi][1]];
        eddy_wbuf_t out = {0}, bin = {0}, again = {0};
        char err[512];
        out.len = 0;
        int rc =
            eddy_avro_to_json(readers[pi], data + 1, size - 1, 1 << 20, &out, err, sizeof(err));
        CHECK(rc >= 0 && rc <= EDDY_AVRO_MAGIC);
        if (rc == EDDY_AVRO_OK) {
                json_t *j = json_loadb((const char *)out.p, out.len,
                                       JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (!j)
                        fprintf(stderr, "not JSON: %.*s\n", (int)out.len, out.p);
                CHECK(j != NULL);
                /* the JSON is in the reader's shape: it encodes, and reads back the same (a
                 * non-finite float became null, which a float field does not take) */
                int erc =
                    eddy_avro_from_json(r, (const char *)out.p, out.len, &bin, err, sizeof(err));
                eddy_wbuf_put_nul(&out);
                int nonfinite = (strstr(err, "expected a number") || strstr(err, "no branch")) &&
                                strstr((const char *)out.p + 10, "null");
                if (erc != 0 && !nonfinite)
                        fprintf(stderr, "re-encode of %s: %s\n", (const char *)out.p, err);
                CHECK(erc == 0 || nonfinite);
                if (erc == 0) {
                        rc = eddy_avro_to_json(self_readers[pi], bin.p, bin.len, 1 << 22, &again,
                                               err, sizeof(err));
                        CHECK(rc == EDDY_AVRO_OK);
                        json_t *j2 = json_loadb((const char *)again.p, again.len,
                                                JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                        CHECK(j2 != NULL && json_equal(j, j2));
                        json_decref(j2);
                }
                json_decref(j);
        } else {
                CHECK(out.len == 0);
        }
        free(out.p);
        free(bin.p);
        free(again.p);
        return 0;
}

#ifdef EDDY_FUZZ_MAIN
int main(int argc, char **argv)
{
        for (int i = 1; i < argc; i++) {
                FILE *fp = fopen(argv[i], "rb");
                if (!fp) {
                        perror(argv[i]);
                        return 1;
                }
                static uint8_t buf[1 << 20];
                size_t n = fread(buf, 1, sizeof(buf), fp);
                fclose(fp);
                LLVMFuzzerTestOneInput(buf, n);
                printf("%s: ok\n", argv[i]);
        }
        return 0;
}
#endif
