/* json_fuzz.c: libFuzzer target for the hot-path JSON decoder (schemas/json.c).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Ischemas tests/fuzz/json_fuzz.c \
 *         schemas/json.c -o json_fuzz && ./json_fuzz tests/fuzz/corpus/json
 *   cc -g -DEDDY_FUZZ_MAIN -Ischemas tests/fuzz/json_fuzz.c schemas/json.c -o json_replay &&
 *         ./json_replay crash-...          (replays files, no libFuzzer needed)
 *
 * Besides memory errors, it aborts when the decoder's answers contradict each other. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_names[] = {"event_id", "user_id", "post_id", "action",
                                         "ts",       "a",       "",        "nested"};
#define FUZZ_N (sizeof(fuzz_names) / sizeof(fuzz_names[0]))

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "json_fuzz: check failed: %s (line %d)\n", #cond,          \
                                __LINE__);                                                         \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static void check_string(const eddy_json_val_t *v)
{
        char small[16], id[16], *big = malloc(v->len + 1);
        ssize_t n, ns, ni;

        CHECK(big != NULL);
        n = eddy_json_unescape(v, big, v->len + 1);
        /* A validated string always decodes, and never grows. */
        CHECK(n >= 0 && (size_t)n <= v->len && big[n] == '\0');
        if (!v->escaped)
                CHECK((size_t)n == v->len && memcmp(big, v->p, v->len) == 0);
        ns = eddy_json_unescape(v, small, sizeof(small));
        if ((size_t)n < sizeof(small))
                CHECK(ns == n && memcmp(small, big, (size_t)n + 1) == 0);
        else
                CHECK(ns == -1);
        ni = eddy_json_id(v, id, sizeof(id));
        if (ni >= 0)
                CHECK(ni == n && memcmp(id, big, (size_t)n + 1) == 0);
        else
                CHECK((size_t)n >= sizeof(id) || memchr(big, '\0', (size_t)n) != NULL);
        free(big);
}

static void check_number(const eddy_json_val_t *v)
{
        char id[32];
        int64_t i64;
        double d;
        int iok = eddy_json_int64(v, &i64) == 0, dok = eddy_json_double(v, &d) == 0;
        int integral = memchr(v->p, '.', v->len) == NULL && memchr(v->p, 'e', v->len) == NULL &&
                       memchr(v->p, 'E', v->len) == NULL;
        ssize_t ni = eddy_json_id(v, id, sizeof(id));

        if (iok) {
                CHECK(integral);
                /* both roundings of the same exact integer */
                CHECK(dok && d == (double)i64);
        }
        if (!integral)
                CHECK(!iok && ni == -1);
        else if (v->len < sizeof(id))
                CHECK(ni == (ssize_t)v->len && memcmp(id, v->p, v->len) == 0);
        else
                CHECK(ni == -1);
        /* Below the copy limit, only overflow to infinity is refused, and it takes an
         * exponent: 255 digits stay below DBL_MAX. */
        if (v->len < 256 && !dok)
                CHECK(memchr(v->p, 'e', v->len) != NULL || memchr(v->p, 'E', v->len) != NULL);
}

static void check_vals(const eddy_json_val_t *a, const eddy_json_val_t *b, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                CHECK(a[i].type == b[i].type);
                if (a[i].type != EDDY_JSON_MISSING)
                        CHECK(a[i].p == b[i].p && a[i].len == b[i].len &&
                              a[i].escaped == b[i].escaped);
        }
}

/* eddy_json_object_nested() of the input, walking every wanted name's object value in the
 * same pass: eddy_json_object()'s result r, error and values v, and in each object what
 * eddy_json_object() of its own text finds. */
static void check_nested(const char *buf, size_t size, int r, const char *err,
                         const eddy_json_val_t *v)
{
        eddy_json_val_t top[FUZZ_N], in[FUZZ_N][FUZZ_N], a[FUZZ_N];
        eddy_json_nest_t nest[FUZZ_N];
        char e2[128];

        e2[0] = '\0';
        for (size_t i = 0; i < FUZZ_N; i++)
                nest[i] = (eddy_json_nest_t){i, fuzz_names, FUZZ_N, in[i], NULL, NULL, 0, 0};
        CHECK(eddy_json_object_nested(buf, size, fuzz_names, FUZZ_N, top, nest, FUZZ_N, e2,
                                      sizeof(e2)) == r);
        CHECK(strcmp(e2, err) == 0);
        if (r != 0)
                return;
        check_vals(v, top, FUZZ_N);
        for (size_t i = 0; i < FUZZ_N; i++) {
                CHECK(nest[i].walked == (v[i].type == EDDY_JSON_OBJECT));
                if (!nest[i].walked)
                        continue;
                int ra = eddy_json_object(v[i].p, v[i].len, fuzz_names, FUZZ_N, a, NULL, 0);
                CHECK(nest[i].dup == (ra != 0));
                if (ra == 0)
                        check_vals(a, in[i], FUZZ_N);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *buf = (const char *)data;
        eddy_json_val_t v[FUZZ_N];
        char err[128];
        size_t i;
        int r;

        err[0] = '\0';
        r = eddy_json_object(buf, size, fuzz_names, FUZZ_N, v, err, sizeof(err));
        check_nested(buf, size, r, err, v);
        /* Acceptance does not depend on which names are wanted, except for duplicates. */
        if (eddy_json_object(buf, size, NULL, 0, NULL, NULL, 0) != 0) {
                CHECK(r != 0);
        } else if (r != 0) {
                CHECK(strncmp(err, "duplicate field '", 17) == 0);
        }
        if (r != 0) {
                CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
                return 0;
        }
        for (i = 0; i < FUZZ_N; i++) {
                if (v[i].type == EDDY_JSON_MISSING)
                        continue;
                CHECK(v[i].p >= buf && v[i].len <= size &&
                      (size_t)(v[i].p - buf) <= size - v[i].len);
                switch (v[i].type) {
                case EDDY_JSON_STRING:
                        CHECK(v[i].p > buf && v[i].p[-1] == '"' && v[i].p + v[i].len < buf + size &&
                              v[i].p[v[i].len] == '"');
                        check_string(&v[i]);
                        break;
                case EDDY_JSON_NUMBER:
                        check_number(&v[i]);
                        break;
                case EDDY_JSON_OBJECT:
                        /* a member object is a valid document on its own */
                        CHECK(eddy_json_object(v[i].p, v[i].len, NULL, 0, NULL, err, sizeof(err)) ==
                              0);
                        break;
                case EDDY_JSON_ARRAY:
                        CHECK(v[i].p[0] == '[' && v[i].p[v[i].len - 1] == ']');
                        break;
                case EDDY_JSON_TRUE:
                        CHECK(v[i].len == 4 && memcmp(v[i].p, "true", 4) == 0);
                        break;
                case EDDY_JSON_FALSE:
                        CHECK(v[i].len == 5 && memcmp(v[i].p, "false", 5) == 0);
                        break;
                case EDDY_JSON_NULL:
                        CHECK(v[i].len == 4 && memcmp(v[i].p, "null", 4) == 0);
                        break;
                default:
                        CHECK(!"unknown type");
                }
        }
        return 0;
}

#ifdef EDDY_FUZZ_MAIN
/* Replay the files named on the command line, as librdkafka's tests/fuzzers do. */
int main(int argc, char **argv)
{
        for (int i = 1; i < argc; i++) {
                FILE *fp = fopen(argv[i], "rb");
                uint8_t *data;
                long size;

                if (!fp || fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 ||
                    fseek(fp, 0, SEEK_SET) != 0) {
                        fprintf(stderr, "%s: can not read\n", argv[i]);
                        return 1;
                }
                /* exactly size bytes (1 for an empty file), so ASan sees any over-read */
                data = malloc(size ? (size_t)size : 1);
                if (!data || fread(data, 1, (size_t)size, fp) != (size_t)size) {
                        fprintf(stderr, "%s: can not read\n", argv[i]);
                        return 1;
                }
                fclose(fp);
                LLVMFuzzerTestOneInput(data, (size_t)size);
                free(data);
                printf("%s: ok\n", argv[i]);
        }
        return 0;
}
#endif
