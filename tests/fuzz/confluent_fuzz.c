/* confluent_fuzz.c: libFuzzer target for the Confluent wire-format path: a writer schema as
 * the registry would answer it (parsed, resolved against eddy's reader schema) and a record
 * in the Confluent framing (magic byte, schema id, Avro body), as runtime/codec.c decodes it.
 *
 * Input: 2 bytes (big-endian) n, n bytes of writer schema text, then the record. An empty
 * schema (n = 0) stands for the reader schema itself, so that the decoder is reached often.
 *
 *   make fuzz     (build/fuzz/confluent_fuzz on tests/fuzz/corpus/confluent)
 *   cc -g -DEDDY_FUZZ_MAIN -Ischemas -Iruntime -Iconnectors tests/fuzz/confluent_fuzz.c \
 *         schemas/avro_codec.c runtime/mem.c -ljansson -lm -o confluent_replay */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "confluent_fuzz: check failed: %s (line %d)\n", #cond,     \
                                __LINE__);                                                         \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* eddy's like_event and activity_event: the readers */
static const char *const readers_text[] = {
    "{\"type\":\"record\",\"name\":\"LikeEvent\",\"namespace\":\"eddy\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"post_id\",\"type\":\"string\"},{\"name\":\"action\",\"type\":{\"type\":\"enum\","
    "\"name\":\"LikeAction\",\"symbols\":[\"like\",\"unlike\"]}},{\"name\":\"ts\",\"type\":"
    "\"long\"}]}",
    "{\"type\":\"record\",\"name\":\"ActivityEvent\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"type\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"item_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"value\",\"type\":[\"null\",\"double\"],\"default\":null},"
    "{\"name\":\"ts\",\"type\":\"long\"}]}",
};

static eddy_avro_schema_t *readers[2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char err[512];
        if (!readers[0])
                for (int i = 0; i < 2; i++) {
                        readers[i] = eddy_avro_schema_parse(
                            readers_text[i], strlen(readers_text[i]), err, sizeof(err));
                        CHECK(readers[i] != NULL);
                }
        if (size < 2)
                return 0;
        size_t n = (size_t)data[0] << 8 | data[1];
        if (n > size - 2)
                return 0;
        const uint8_t *rec = data + 2 + n;
        size_t rlen = size - 2 - n;
        int32_t id = 0;
        const void *body = NULL;
        size_t blen = 0;
        int rc = eddy_avro_confluent(rec, rlen, &id, &body, &blen);
        if (rc) {
                CHECK(rc == EDDY_AVRO_MAGIC || rc == EDDY_AVRO_TRUNCATED);
                return 0;
        }
        CHECK(blen == rlen - EDDY_AVRO_CONFLUENT_HDR);
        eddy_avro_schema_t *r = readers[(uint32_t)id & 1];
        eddy_avro_schema_t *w = NULL;
        if (n > 0) {
                w = eddy_avro_schema_parse((const char *)data + 2, n, err, sizeof(err));
                if (!w)
                        return 0;
        }
        eddy_avro_reader_t *rd = eddy_avro_reader_new(w ? w : r, r, err, sizeof(err));
        if (rd) {
                eddy_wbuf_t out = {0};
                rc = eddy_avro_to_json(rd, body, blen, 1 << 20, &out, err, sizeof(err));
                CHECK(rc >= 0 && rc <= EDDY_AVRO_MAGIC);
                if (rc == EDDY_AVRO_OK) {
                        json_t *j = json_loadb((const char *)out.p, out.len, JSON_ALLOW_NUL, NULL);
                        CHECK(json_is_object(j));
                        json_decref(j);
                } else {
                        CHECK(out.len == 0);
                }
                free(out.p);
                eddy_avro_reader_destroy(rd);
        }
        /* a writer schema must also read its own data as written */
        if (w) {
                rd = eddy_avro_reader_new(w, NULL, err, sizeof(err));
                if (rd) {
                        eddy_wbuf_t out = {0};
                        rc = eddy_avro_to_json(rd, body, blen, 1 << 20, &out, err, sizeof(err));
                        if (rc == EDDY_AVRO_OK) {
                                json_t *j = json_loadb((const char *)out.p, out.len,
                                                       JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                                CHECK(j != NULL);
                                json_decref(j);
                        }
                        free(out.p);
                        eddy_avro_reader_destroy(rd);
                }
                eddy_avro_schema_destroy(w);
        }
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
