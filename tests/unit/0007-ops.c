/* 0007-ops.c: secrets and their redaction, debug contexts. */
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

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_secret_keys),
            cmocka_unit_test(test_conf_secrets),
            cmocka_unit_test(test_redact),
            cmocka_unit_test(test_debug_contexts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
