/* 0007-ops.c: secrets and their redaction, debug contexts, the metrics text and /readyz rule. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

/* ---------------------------------------------------------------- secrets */

static void collect(void *opaque, const char *s, size_t len)
{
        eddy__log_secret(opaque, s, len);
}

static int has_secret(const eddy_logger_t *lg, const char *s)
{
        for (size_t i = 0; i < lg->nsecrets; i++)
                if (!strcmp(lg->secrets[i], s))
                        return 1;
        return 0;
}

static void test_secret_keys(void **state)
{
        assert_true(eddy_conf_secret_key("kafka.sasl.password"));
        assert_true(eddy_conf_secret_key("kafka.ssl.key.password"));
        assert_true(eddy_conf_secret_key("kafka.ssl.keystore.password"));
        assert_true(eddy_conf_secret_key("kafka.sasl.oauthbearer.client.secret"));
        assert_true(eddy_conf_secret_key("kafka.ssl.key.pem"));
        assert_true(eddy_conf_secret_key("warehouse.Password"));
        assert_false(eddy_conf_secret_key("kafka.sasl.username"));
        assert_false(eddy_conf_secret_key("redis.url"));
}

/* A processor's defaults of runtime keys: under the job file and -X, checked like them. */
static void test_runtime_defaults(void **state)
{
        static const char *const defs[] = {"state.write.buffer.mb", "64", "batch.max.ms", "7",
                                           NULL};
        eddy_processor_t proc = {.name = "p", .default_input = "in", .runtime_defaults = defs};
        eddy_rtconf_t rt;
        memset(&rt, 0, sizeof(rt));
        char err[512];
        assert_int_equal(eddy_conf_load_proc(NULL, NULL, 0, &proc, &rt, NULL, err, sizeof(err)), 0);
        assert_int_equal(rt.state_write_buffer_mb, 64);
        assert_int_equal(rt.batch_max_ms, 7);
        eddy_conf_free(eddy_rt_props, &rt);
        char *x[] = {"state.write.buffer.mb=16"};
        memset(&rt, 0, sizeof(rt));
        assert_int_equal(eddy_conf_load_proc(NULL, x, 1, &proc, &rt, NULL, err, sizeof(err)), 0);
        assert_int_equal(rt.state_write_buffer_mb, 16);
        assert_int_equal(rt.batch_max_ms, 7);
        eddy_conf_free(eddy_rt_props, &rt);
        /* without them, the table's default */
        memset(&rt, 0, sizeof(rt));
        assert_int_equal(
            eddy_conf_load(NULL, NULL, 0, "p", "in", &rt, NULL, NULL, err, sizeof(err)), 0);
        assert_int_equal(rt.state_write_buffer_mb, 8);
        eddy_conf_free(eddy_rt_props, &rt);
        /* a bad one is an error that names the processor */
        static const char *const bad[] = {"batch.max.ms", "0", NULL};
        proc.runtime_defaults = bad;
        memset(&rt, 0, sizeof(rt));
        assert_int_equal(eddy_conf_load_proc(NULL, NULL, 0, &proc, &rt, NULL, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "batch.max.ms"));
        assert_non_null(strstr(err, "p's defaults"));
        eddy_conf_free(eddy_rt_props, &rt);
}

static void test_conf_secrets(void **state)
{
        char *x[] = {"redis.url=redis://:R3dis@h:1/0", "kafka.sasl.password=Sasl1",
                     "kafka.ssl.key.password=Key2", "kafka.sasl.username=alice"};
        eddy_rtconf_t rt;
        memset(&rt, 0, sizeof(rt));
        char err[512];
        assert_int_equal(eddy_conf_load(NULL, x, 4, "p", "in", &rt, NULL, NULL, err, sizeof(err)),
                         0);
        eddy_logger_t lg = {0};
        eddy_conf_secrets(&rt, NULL, NULL, collect, &lg);
        assert_int_equal(lg.nsecrets, 3);
        assert_true(has_secret(&lg, "R3dis"));
        assert_true(has_secret(&lg, "Sasl1"));
        assert_true(has_secret(&lg, "Key2"));

        /* --list-config values */
        char *text = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&text, &len);
        eddy_conf_print_values(fp, &rt, NULL, NULL);
        fclose(fp);
        assert_non_null(strstr(text, "redis://:[redacted]@h:1/0"));
        assert_non_null(strstr(text, "kafka.sasl.username"));
        assert_non_null(strstr(text, "= alice\n"));
        assert_null(strstr(text, "R3dis"));
        assert_null(strstr(text, "Sasl1"));
        assert_null(strstr(text, "Key2"));
        free(text);
        eddy__log_free(&lg);
        eddy_conf_free(eddy_rt_props, &rt);

        /* a redis.url that is no URL is secret whole: it may be a mistyped one */
        char *y[] = {"redis.url=redis//:pw@h"};
        memset(&rt, 0, sizeof(rt));
        assert_int_equal(eddy_conf_load(NULL, y, 1, "p", "in", &rt, NULL, NULL, err, sizeof(err)),
                         0);
        eddy_conf_secrets(&rt, NULL, NULL, collect, &lg);
        assert_true(has_secret(&lg, "redis//:pw@h"));
        eddy__log_free(&lg);
        eddy_conf_free(eddy_rt_props, &rt);
}

static void test_redact(void **state)
{
        eddy_logger_t lg = {0};
        size_t n;
        assert_null(eddy__redact(&lg, "abc", 3, &n));
        eddy__log_secret(&lg, "pw", 2);
        eddy__log_secret(&lg, "pw", 2); /* once */
        eddy__log_secret(&lg, "", 0);   /* ignored */
        eddy__log_secret(&lg, "longer-secret", 13);
        assert_int_equal(lg.nsecrets, 2);
        assert_null(eddy__redact(&lg, "nothing here", 12, &n));
        char *r = eddy__redact(&lg, "a pw b longer-secretpw", 22, &n);
        assert_string_equal(r, "a [redacted] b [redacted][redacted]");
        assert_int_equal(n, strlen(r));
        free(r);
        eddy__log_secret(&lg, "pwlong", 6); /* begins with another secret */
        r = eddy__redact(&lg, "a pwlong", 8, &n);
        assert_string_equal(r, "a [redacted]");
        free(r);
        char buf[16] = "xpwx";
        eddy__redact_buf(&lg, buf, sizeof(buf));
        assert_string_equal(buf, "x[redacted]x");
        char small[8] = "pwpw";
        eddy__redact_buf(&lg, small, sizeof(small)); /* truncated, never the secret */
        assert_string_equal(small, "[redact");
        eddy__log_free(&lg);
}

static void test_debug_contexts(void **state)
{
        eddy_logger_t lg = {0};
        assert_int_equal(eddy__log_debug_enable(&lg, "redis"), 0);
        assert_int_equal(eddy__log_debug_enable(&lg, "nope"), -1);
        assert_int_equal(lg.debug_procs, 0);
        assert_int_equal(eddy__log_debug_enable(&lg, "all"), 0);
        assert_int_equal(lg.debug_procs, 1);
        assert_non_null(strstr(eddy__log_contexts(), ",metrics"));

        char *x[] = {"debug=state,nope"};
        eddy_rtconf_t rt;
        memset(&rt, 0, sizeof(rt));
        char err[512];
        assert_int_equal(eddy_conf_load(NULL, x, 1, "p", "in", &rt, NULL, NULL, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "debug: unknown context \"nope\""));
        eddy_conf_free(eddy_rt_props, &rt);
        char *y[] = {"log.format=xml"};
        memset(&rt, 0, sizeof(rt));
        assert_int_equal(eddy_conf_load(NULL, y, 1, "p", "in", &rt, NULL, NULL, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "log.format: expected logfmt or json"));
        eddy_conf_free(eddy_rt_props, &rt);
}

/* ---------------------------------------------------------------- metrics */

static int64_t fake_hi[4] = {-1, -1, -1, -1}, fake_lo[4] = {0, 0, 0, 0};

static void fake_watermarks(void *opaque, const char *topic, int32_t p, int64_t *lo, int64_t *hi)
{
        *lo = fake_lo[p];
        *hi = fake_hi[p];
}

static void test_readyz_rule(void **state)
{
        eddy_logger_t lg = {.level = LOG_ERR};
        eddy_metrics_t *m = eddy_metrics_new("j", "p", 10, &lg);
        eddy_metrics_sources_t src = {fake_watermarks, NULL, NULL};
        eddy_metrics_sources(m, &src);
        char why[600];
        assert_int_equal(eddy_metrics_ready(m, why, sizeof(why)), 0);
        assert_non_null(strstr(why, "starting"));

        eddy_metrics_part_t parts[2] = {{"t", 0, 1, 0, 100},
                                        {"t", 1, 1, 0, EDDY_METRICS_POS_START}};
        eddy_metrics_publish(m, parts, 0, 0, 0);
        assert_int_equal(eddy_metrics_ready(m, why, sizeof(why)), 0);
        assert_string_equal(why, "no partitions assigned");

        eddy_metrics_publish(m, parts, 2, 0, 0);
        assert_int_equal(eddy_metrics_ready(m, why, sizeof(why)), 0);
        assert_non_null(strstr(why, "2 of 2 partitions not caught up, first t/0: lag not known"));

        fake_hi[0] = 110; /* lag 10: within */
        fake_hi[1] = 5;   /* from the log start at 3: lag 2 */
        fake_lo[1] = 3;
        assert_int_equal(eddy_metrics_ready(m, why, sizeof(why)), 1);
        assert_non_null(strstr(why, "ready: 2 partitions assigned, max lag 10"));

        fake_hi[0] = 111;
        assert_int_equal(eddy_metrics_ready(m, why, sizeof(why)), 0);
        assert_non_null(strstr(why, "t/0: lag 11 > ready.max.lag=10"));

        fake_lo[0] = 105; /* retention passed the position: lag from the log start */
        assert_int_equal(eddy_metrics_ready(m, why, sizeof(why)), 1);

        eddy_metrics_publish(m, parts, 2, 0, 1);
        assert_int_equal(eddy_metrics_ready(m, why, sizeof(why)), 0);
        assert_string_equal(why, "stopping");
        eddy_metrics_destroy(m);
}

static void test_render(void **state)
{
        eddy_logger_t lg = {.level = LOG_ERR};
        eddy__log_secret(&lg, "hunter2", 7);
        eddy_metrics_t *m = eddy_metrics_new("j\"ob", "p", 0, &lg);
        eddy_metrics_observe(m, EDDY_MH_BATCH, 0.0005);
        eddy_metrics_observe(m, EDDY_MH_BATCH, 0.3);
        eddy_metrics_observe(m, EDDY_MH_BATCH, 100);
        eddy_metrics_label_add(m, EDDY_ML_DEAD_LETTERS, "hunter2", 2);
        eddy_metrics_label_add(m, EDDY_ML_DEAD_LETTERS, "json", 1);
        for (int i = 0; i < 100; i++) { /* past the label limit: "other" */
                char l[16];
                snprintf(l, sizeof(l), "r%d", i);
                eddy_metrics_label_add(m, EDDY_ML_DEAD_LETTERS, l, 1);
        }
        char err[128];
        eddy_counter_t *c = eddy__metrics_counter_new(m, "late_events", "late", err, sizeof(err));
        assert_non_null(c);
        eddy_counter_add(c, 3);
        assert_null(eddy__metrics_counter_new(m, "late_events", "again", err, sizeof(err)));
        assert_null(eddy__metrics_counter_new(m, "Bad-Name", "x", err, sizeof(err)));
        assert_null(eddy__metrics_counter_new(m, "batches", "x", err, sizeof(err)));
        size_t len;
        char *t = eddy_metrics_render(m, &len);
        assert_int_equal(strlen(t), len);
        assert_non_null(strstr(t, "eddy_info{job=\"j\\\"ob\",processor=\"p\"} 1\n"));
        assert_non_null(strstr(t, "eddy_batch_duration_seconds_bucket{le=\"0.001\"} 1\n"));
        assert_non_null(strstr(t, "eddy_batch_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert_non_null(strstr(t, "eddy_batch_duration_seconds_bucket{le=\"30\"} 2\n"));
        assert_non_null(strstr(t, "eddy_batch_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert_non_null(strstr(t, "eddy_batch_duration_seconds_count 3\n"));
        assert_non_null(strstr(t, "eddy_dead_letters_total{reason=\"json\"} 1\n"));
        assert_non_null(strstr(t, "eddy_dead_letters_total{reason=\"other\"} 38\n"));
        assert_non_null(strstr(t, "eddy_dead_letters_total{reason=\"[redacted]\"} 2\n"));
        assert_non_null(
            strstr(t, "# TYPE eddy_late_events_total counter\neddy_late_events_total 3\n"));
        assert_non_null(strstr(t, "eddy_sink_retries_total{sink=\"redis\"} 0\n"));
        assert_null(strstr(t, "hunter2"));
        free(t);
        eddy_metrics_destroy(m);
        eddy__log_free(&lg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_secret_keys),      cmocka_unit_test(test_conf_secrets),
            cmocka_unit_test(test_runtime_defaults), cmocka_unit_test(test_redact),
            cmocka_unit_test(test_debug_contexts),   cmocka_unit_test(test_readyz_rule),
            cmocka_unit_test(test_render),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
