/* avro_decode.c: the per-record cost of turning a like event in Avro into the JSON the
 * like-counter parses (schemas/avro_codec.c), next to parsing that JSON (schemas/json.c).
 * Built and run by `make bench-avro`; one core, prints ns per record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "avro_codec.h"
#include "json.h"

static double now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
        const char *sch = "{\"type\":\"record\",\"name\":\"LikeEvent\",\"fields\":["
                          "{\"name\":\"event_id\",\"type\":\"string\"},"
                          "{\"name\":\"user_id\",\"type\":\"string\"},"
                          "{\"name\":\"post_id\",\"type\":\"string\"},"
                          "{\"name\":\"action\",\"type\":{\"type\":\"enum\",\"name\":\"A\","
                          "\"symbols\":[\"like\",\"unlike\"]}},"
                          "{\"name\":\"ts\",\"type\":\"long\"}]}";
        const char *ev = "{\"event_id\":\"e123456\",\"user_id\":\"u98765\",\"post_id\":"
                         "\"p4242\",\"action\":\"like\",\"ts\":1700000012345}";
        long n = argc > 1 ? atol(argv[1]) : 5000000;
        char err[256];
        eddy_avro_schema_t *s = eddy_avro_schema_parse(sch, strlen(sch), err, sizeof(err));
        eddy_avro_reader_t *rd = s ? eddy_avro_reader_new(s, s, err, sizeof(err)) : NULL;
        eddy_wbuf_t bin = {0}, out = {0};
        if (!rd || eddy_avro_from_json(s, ev, strlen(ev), &bin, err, sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        static const char *const names[] = {"event_id", "user_id", "post_id", "action", "ts"};
        eddy_json_val_t vals[5];
        long ok = 0;
        double t0 = now();
        for (long i = 0; i < n; i++) {
                out.len = 0;
                ok += eddy_avro_to_json(rd, bin.p, bin.len, 1 << 20, &out, err, sizeof(err)) == 0;
        }
        double t1 = now();
        for (long i = 0; i < n; i++)
                ok += eddy_json_object((const char *)out.p, out.len, names, 5, vals, err,
                                       sizeof(err)) == 0;
        double t2 = now();
        printf("like event: Avro %zu bytes -> JSON %zu bytes: %.0f ns/record; parsing that JSON: "
               "%.0f ns/record (%ld ok)\n",
               bin.len, out.len, (t1 - t0) / (double)n * 1e9, (t2 - t1) / (double)n * 1e9, ok);
        free(bin.p);
        free(out.p);
        eddy_avro_reader_destroy(rd);
        eddy_avro_schema_destroy(s);
        return 0;
}
