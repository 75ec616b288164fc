/* 0002-json.c: the hot-path JSON decoder (schemas/json.c), by example and against jansson. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* ---- helpers ---- */

/* Parse a copy of s[0..len) in a heap block of exactly len bytes, so that ASan catches any
 * read past the end. */
static int parse_n(const char *s, size_t len, const char *const *names, size_t n,
                   eddy_json_val_t *out, char *err, size_t errsize)
{
        char *copy = malloc(len ? len : 1);
        int r;

        assert_non_null(copy);
        if (len)
                memcpy(copy, s, len);
        r = eddy_json_object(copy, len, names, n, out, err, errsize);
        /* The values point into the copy: move them to the caller's string. */
        for (size_t i = 0; i < n; i++)
                if (out[i].type != EDDY_JSON_MISSING)
                        out[i].p = s + (out[i].p - copy);
        free(copy);
        return r;
}

static int parse(const char *s, const char *const *names, size_t n, eddy_json_val_t *out, char *err,
                 size_t errsize)
{
        return parse_n(s, strlen(s), names, n, out, err, errsize);
}

static int valid_n(const char *s, size_t len)
{
        char err[128];

        return parse_n(s, len, NULL, 0, NULL, err, sizeof(err)) == 0;
}

static int valid(const char *s)
{
        return valid_n(s, strlen(s));
}

/* The value of member "a" of s, which must parse. */
static eddy_json_val_t get_a(const char *s)
{
        static const char *const names[] = {"a"};
        eddy_json_val_t v[1];
        char err[128];

        if (parse(s, names, 1, v, err, sizeof(err)) != 0)
                fail_msg("%s: %s", s, err);
        return v[0];
}

/* Unescaped string member "a" of s. */
static void assert_str_a(const char *s, const char *want, size_t wantlen)
{
        eddy_json_val_t v = get_a(s);
        char buf[256];
        ssize_t n;

        assert_int_equal(v.type, EDDY_JSON_STRING);
        n = eddy_json_unescape(&v, buf, sizeof(buf));
        assert_int_equal(n, (ssize_t)wantlen);
        assert_memory_equal(buf, want, wantlen);
        assert_int_equal(buf[n], '\0');
}

static void assert_error(const char *s, const char *want_substr)
{
        char err[128];

        if (parse(s, NULL, 0, NULL, err, sizeof(err)) == 0)
                fail_msg("accepted: %s", s);
        if (want_substr && !strstr(err, want_substr))
                fail_msg("%s: error \"%s\" lacks \"%s\"", s, err, want_substr);
}

/* ---- explicit cases ---- */

static void test_like_event(void **state)
{
        static const char doc[] =
            "{\"event_id\":\"e123456\",\"user_id\":\"u42\",\"post_id\":\"p7\","
            "\"action\":\"like\",\"ts\":1700000000000}";
        static const char *const names[] = {"event_id", "user_id", "post_id", "action",
                                            "ts",       "missing", "ts_"};
        eddy_json_val_t v[7];
        char err[128], buf[32];
        int64_t ts;

        assert_int_equal(parse(doc, names, 7, v, err, sizeof(err)), 0);
        assert_int_equal(v[0].type, EDDY_JSON_STRING);
        assert_int_equal(v[0].len, 7);
        assert_memory_equal(v[0].p, "e123456", 7);
        assert_int_equal(v[0].escaped, 0);
        assert_int_equal(eddy_json_id(&v[1], buf, sizeof(buf)), 3);
        assert_string_equal(buf, "u42");
        assert_int_equal(eddy_json_id(&v[2], buf, sizeof(buf)), 2);
        assert_string_equal(buf, "p7");
        assert_int_equal(eddy_json_unescape(&v[3], buf, sizeof(buf)), 4);
        assert_string_equal(buf, "like");
        assert_int_equal(v[4].type, EDDY_JSON_NUMBER);
        assert_int_equal(eddy_json_int64(&v[4], &ts), 0);
        assert_int_equal(ts, 1700000000000LL);
        assert_int_equal(eddy_json_id(&v[4], buf, sizeof(buf)), 13);
        assert_string_equal(buf, "1700000000000");
        assert_int_equal(v[5].type, EDDY_JSON_MISSING);
        assert_int_equal(v[6].type, EDDY_JSON_MISSING);
}

static void test_value_types_and_spans(void **state)
{
        static const char doc[] = " \t\r\n{ \"o\" : { \"x\" : [1, {}] } , \"a\":[ ],\"t\":true,"
                                  "\"f\":false,\"n\":null,\"num\":-1.5e+3,\"s\":\"\" }\n ";
        static const char *const names[] = {"o", "a", "t", "f", "n", "num", "s"};
        eddy_json_val_t v[7];
        char err[128], buf[8];
        double d;

        assert_int_equal(parse(doc, names, 7, v, err, sizeof(err)), 0);
        assert_int_equal(v[0].type, EDDY_JSON_OBJECT);
        assert_int_equal(v[0].len, strlen("{ \"x\" : [1, {}] }"));
        assert_memory_equal(v[0].p, "{ \"x\" : [1, {}] }", v[0].len);
        assert_int_equal(v[1].type, EDDY_JSON_ARRAY);
        assert_int_equal(v[1].len, 3);
        assert_int_equal(v[2].type, EDDY_JSON_TRUE);
        assert_int_equal(v[2].len, 4);
        assert_int_equal(v[3].type, EDDY_JSON_FALSE);
        assert_int_equal(v[3].len, 5);
        assert_int_equal(v[4].type, EDDY_JSON_NULL);
        assert_int_equal(v[4].len, 4);
        assert_int_equal(v[5].type, EDDY_JSON_NUMBER);
        assert_int_equal(v[5].len, 7);
        assert_int_equal(eddy_json_double(&v[5], &d), 0);
        assert_true(d == -1500.0);
        assert_int_equal(v[6].type, EDDY_JSON_STRING);
        assert_int_equal(v[6].len, 0);
        assert_int_equal(eddy_json_unescape(&v[6], buf, sizeof(buf)), 0);
        assert_int_equal(buf[0], '\0');
        /* The object's raw text is itself a valid object. */
        assert_true(valid_n(v[0].p, v[0].len));
        /* Other types do not unescape or convert. */
        assert_int_equal(eddy_json_unescape(&v[0], buf, sizeof(buf)), -1);
        assert_int_equal(eddy_json_id(&v[2], buf, sizeof(buf)), -1);
        assert_int_equal(eddy_json_int64(&v[6], &(int64_t){0}), -1);
        assert_int_equal(eddy_json_double(&v[4], &d), -1);
}

static void test_empty_and_not_object(void **state)
{
        char err[128];

        assert_true(valid("{}"));
        assert_true(valid(" {\n} \t"));
        assert_true(valid("{\"a\":{},\"b\":[],\"c\":[[]],\"d\":{\"\":{}}}"));
        assert_true(valid("{\"\":1}"));
        assert_int_equal(parse("[1,2]", NULL, 0, NULL, err, sizeof(err)), -1);
        assert_string_equal(err, "top-level value is not an object");
        assert_error("\"x\"", "not an object");
        assert_error("1", "not an object");
        assert_error("null", "not an object");
        assert_error("true", "not an object");
        assert_error("", "empty input");
        assert_error(" \n\t", "empty input");
        assert_error("\xef\xbb\xbf{}", "not an object"); /* no BOM */
        assert_error("{", "end of input");
        assert_error("{\"a\"", "expected ':'");
        assert_error("{\"a\":", "end of input");
        assert_error("{\"a\":1", "end of input");
        assert_error("{\"a\":1,", "end of input");
        assert_error("{,}", "member name");
        assert_error("{\"a\":1,}", "member name");
        assert_error("{\"a\":[1,]}", "expected a value");
        assert_error("{\"a\":[,1]}", "expected a value");
        assert_error("{\"a\":{\"b\"}}", "expected ':'");
        assert_error("{\"a\":{1:2}}", "member name");
        assert_error("{a:1}", "member name");
        assert_error("{'a':1}", "member name");
        assert_error("{\"a\":1 \"b\":2}", "expected ',' or '}'");
        assert_error("{\"a\":[1 2]}", "expected ',' or ']'");
        assert_error("{\"a\":[1}", "expected ',' or ']'");
        assert_error("{\"a\":{\"b\":1]}", "expected ',' or '}'");
        assert_error("{\"a\":tru}", "literal");
        assert_error("{\"a\":True}", "expected a value");
        assert_error("{\"a\":nul}", "literal");
        assert_error("{\"a\":truex}", "expected ',' or '}'");
        assert_error("{\"a\":undefined}", "expected a value");
        assert_error("{\"a\":NaN}", "expected a value");
        assert_error("{\"a\":Infinity}", "expected a value");
        assert_error("{\"a\":\f1}", "expected a value"); /* only the four RFC whitespaces */
        assert_error("{\"a\":\v1}", "expected a value");
        assert_error("{\"a\":\xc2\xa0 1}", "expected a value");
        assert_error("{\"a\":1}x", "trailing");
        assert_error("{} {}", "trailing");
        assert_error("{}}", "trailing");
        assert_error("{}]", "trailing");
        /* a NUL byte after the object is trailing data too */
        assert_false(valid_n("{}\0", 3));
        assert_false(valid_n("{\"a\":1\0}", 8));
}

static void test_error_messages(void **state)
{
        char err[128], tiny[8];

        assert_int_equal(parse("{\"a\" 1}", NULL, 0, NULL, err, sizeof(err)), -1);
        assert_string_equal(err, "invalid JSON at byte 5: expected ':'");
        assert_int_equal(parse("{\"a\":1,\"b\":01}", NULL, 0, NULL, err, sizeof(err)), -1);
        assert_string_equal(err, "invalid JSON at byte 12: leading zero in number");
        assert_int_equal(parse("{\"a\":\"x", NULL, 0, NULL, err, sizeof(err)), -1);
        assert_string_equal(err, "invalid JSON at byte 7: unterminated string");
        /* Truncated into a small buffer, still terminated; NULL is fine too. */
        assert_int_equal(parse("{\"a\" 1}", NULL, 0, NULL, tiny, sizeof(tiny)), -1);
        assert_string_equal(tiny, "invalid");
        assert_int_equal(eddy_json_object("{", 1, NULL, 0, NULL, NULL, 0), -1);
        assert_int_equal(eddy_json_object("{}", 2, NULL, 0, NULL, NULL, 0), 0);
}

static void test_escapes(void **state)
{
        eddy_json_val_t v;
        char buf[8];

        assert_str_a("{\"a\":\"plain\"}", "plain", 5);
        assert_str_a("{\"a\":\"q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\t\"}", "q\"b\\s/b\bf\fn\nr\rt\t",
                     16);
        assert_str_a("{\"a\":\"\\u0041\\u00e9\\u00E9\\u20AC\"}", "A\xc3\xa9\xc3\xa9\xe2\x82\xac",
                     8);
        assert_str_a("{\"a\":\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"}",
                     "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 11);
        /* U+1F600 as a surrogate pair, and the extremes U+10000 and U+10FFFF */
        assert_str_a("{\"a\":\"\\uD83D\\uDE00\"}", "\xf0\x9f\x98\x80", 4);
        assert_str_a("{\"a\":\"\\ud800\\udc00\\uDBFF\\uDFFF\"}", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
                     8);
        /* NUL is a valid escape; ids may not hold it */
        assert_str_a("{\"a\":\"x\\u0000y\"}", "x\0y", 3);
        v = get_a("{\"a\":\"x\\u0000y\"}");
        assert_int_equal(eddy_json_id(&v, buf, sizeof(buf)), -1);
        assert_int_equal(v.escaped, 1);
        v = get_a("{\"a\":\"\\u0070\\u0031\"}");
        assert_int_equal(eddy_json_id(&v, buf, sizeof(buf)), 2);
        assert_string_equal(buf, "p1");
        /* dst size: length + 1 is needed, escaped or not */
        v = get_a("{\"a\":\"\\u00e9\\n\"}");
        assert_int_equal(eddy_json_unescape(&v, buf, 4), 3);
        assert_int_equal(eddy_json_unescape(&v, buf, 3), -1);
        assert_int_equal(eddy_json_unescape(&v, buf, 2), -1);
        assert_int_equal(eddy_json_unescape(&v, buf, 0), -1);
        v = get_a("{\"a\":\"abc\"}");
        assert_int_equal(eddy_json_unescape(&v, buf, 4), 3);
        assert_int_equal(eddy_json_unescape(&v, buf, 3), -1);
        assert_int_equal(eddy_json_id(&v, buf, 3), -1);

        assert_error("{\"a\":\"\\x\"}", "invalid escape");
        assert_error("{\"a\":\"\\'\"}", "invalid escape");
        assert_error("{\"a\":\"\\U0041\"}", "invalid escape");
        assert_error("{\"a\":\"\\u12\"}", "\\u escape");
        assert_error("{\"a\":\"\\u12G4\"}", "\\u escape");
        assert_error("{\"a\":\"\\u-123\"}", "\\u escape");
        assert_error("{\"a\":\"\\", "unterminated");
        assert_error("{\"a\":\"\\u00", "\\u escape");
        assert_error("{\"a\":\"abc", "unterminated");
}

static void test_surrogates(void **state)
{
        assert_error("{\"a\":\"\\uD800\"}", "surrogate");
        assert_error("{\"a\":\"\\uDBFF\"}", "surrogate");
        assert_error("{\"a\":\"\\uDC00\"}", "surrogate");
        assert_error("{\"a\":\"\\uDFFF\\uD800\"}", "surrogate");
        assert_error("{\"a\":\"\\uD800x\"}", "surrogate");
        assert_error("{\"a\":\"\\uD800\\n\"}", "surrogate");
        assert_error("{\"a\":\"\\uD800\\u0041\"}", "surrogate");
        assert_error("{\"a\":\"\\uD800\\uD800\"}", "surrogate");
        assert_error("{\"a\":\"\\uD800\\uE000\"}", "surrogate");
        assert_error("{\"a\":\"\\uD800\\uDC0\"}", "surrogate");
        /* in a member name and in nested values too */
        assert_error("{\"\\uDC00\":1}", "surrogate");
        assert_error("{\"a\":[\"\\uD800\"]}", "surrogate");
        assert_error("{\"a\":{\"\\uD800\":1}}", "surrogate");
}

static void test_utf8(void **state)
{
        static const char *const good[] = {
            "\xc2\x80",         "\xdf\xbf",         "\xe0\xa0\x80",
            "\xe1\x80\x80",     "\xec\xbf\xbf",     "\xed\x80\x80",
            "\xed\x9f\xbf",     "\xee\x80\x80",     "\xef\xbf\xbf",
            "\xf0\x90\x80\x80", "\xf1\x80\x80\x80", "\xf3\xbf\xbf\xbf",
            "\xf4\x80\x80\x80", "\xf4\x8f\xbf\xbf", "\x7f",
        };
        static const char *const bad[] = {
            "\x80",
            "\xbf",
            "\xc0\x80",
            "\xc1\xbf",
            "\xc2",
            "\xc2\x41",
            "\xc2\xc0",
            "\xe0\x80\x80",
            "\xe0\x9f\xbf",
            "\xe1\x80",
            "\xe1\x41\x80",
            "\xe1\x80\x41",
            "\xed\xa0\x80",
            "\xed\xbf\xbf",
            "\xf0\x80\x80\x80",
            "\xf0\x8f\xbf\xbf",
            "\xf0\x90\x80",
            "\xf1\x80\x80\x41",
            "\xf4\x90\x80\x80",
            "\xf5\x80\x80\x80",
            "\xf8\x88\x80\x80",
            "\xfe",
            "\xff",
            "\x01",
            "\x1f",
            "\n",
            "\t",
        };
        char doc[64];

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                snprintf(doc, sizeof(doc), "{\"a\":\"x%sy\"}", good[i]);
                assert_str_a(doc, doc + 6, strlen(doc) - 8);
                snprintf(doc, sizeof(doc), "{\"%s\":[\"%s\"]}", good[i], good[i]);
                assert_true(valid(doc));
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                snprintf(doc, sizeof(doc), "{\"a\":\"x%sy\"}", bad[i]);
                assert_error(doc, (unsigned char)bad[i][0] < 0x20 ? "control character"
                                                                  : "invalid UTF-8");
                snprintf(doc, sizeof(doc), "{\"a\":[\"%s\"]}", bad[i]);
                assert_error(doc, NULL);
                snprintf(doc, sizeof(doc), "{\"%s\":1}", bad[i]);
                assert_error(doc, NULL);
                /* at the very end of the input, before any closing quote */
                snprintf(doc, sizeof(doc), "{\"a\":\"%s", bad[i]);
                assert_error(doc, NULL);
        }
        /* invalid UTF-8 outside strings is not a token */
        assert_error("{\"a\":\xc3\xa9}", "expected a value");
}

/* {"a": followed by depth-1 open brackets (or objects), a 1, and the closers. */
static char *nested(int depth, int objects)
{
        size_t cap = (size_t)depth * 8 + 16, o = 0;
        char *s = malloc(cap);
        int i;

        assert_non_null(s);
        o += (size_t)snprintf(s + o, cap - o, "{\"a\":");
        for (i = 1; i < depth; i++)
                o += (size_t)snprintf(s + o, cap - o, "%s", objects ? "{\"k\":" : "[");
        o += (size_t)snprintf(s + o, cap - o, "1");
        for (i = 1; i < depth; i++)
                o += (size_t)snprintf(s + o, cap - o, "%s", objects ? "}" : "]");
        snprintf(s + o, cap - o, "}");
        return s;
}

static void test_depth(void **state)
{
        for (int objects = 0; objects <= 1; objects++) {
                char *s;

                s = nested(EDDY_JSON_MAX_DEPTH, objects);
                assert_true(valid(s));
                free(s);
                s = nested(EDDY_JSON_MAX_DEPTH + 1, objects);
                assert_error(s, "nesting deeper than 64");
                free(s);
                s = nested(1000, objects);
                assert_error(s, "nesting");
                free(s);
        }
        /* Depth is about nesting, not about how many containers there are. */
        {
                char *s = malloc(40000);
                size_t o = 0;

                assert_non_null(s);
                o += (size_t)snprintf(s + o, 40000 - o, "{\"a\":[");
                for (int i = 0; i < 5000; i++)
                        o += (size_t)snprintf(s + o, 40000 - o, "%s[{}]", i ? "," : "");
                snprintf(s + o, 40000 - o, "]}");
                assert_true(valid(s));
                free(s);
        }
}

static void test_duplicates(void **state)
{
        static const char *const names[] = {"a", "b"};
        static const char *const only_b[] = {"b"};
        eddy_json_val_t v[2];
        char err[128];

        assert_int_equal(parse("{\"a\":1,\"a\":2}", names, 2, v, err, sizeof(err)), -1);
        assert_string_equal(err, "duplicate field 'a'");
        assert_int_equal(parse("{\"b\":1,\"a\":{},\"b\":\"x\"}", names, 2, v, err, sizeof(err)),
                         -1);
        assert_string_equal(err, "duplicate field 'b'");
        /* the same name, once escaped */
        assert_int_equal(parse("{\"a\":1,\"\\u0061\":2}", names, 2, v, err, sizeof(err)), -1);
        assert_string_equal(err, "duplicate field 'a'");
        /* names nobody asked for may repeat, as may nested ones */
        assert_int_equal(parse("{\"a\":1,\"a\":2,\"b\":3}", only_b, 1, v, err, sizeof(err)), 0);
        assert_int_equal(parse("{\"a\":{\"b\":1,\"b\":2},\"b\":[{\"a\":1,\"a\":1}]}", names, 2, v,
                               err, sizeof(err)),
                         0);
        assert_int_equal(v[0].type, EDDY_JSON_OBJECT);
        assert_int_equal(v[1].type, EDDY_JSON_ARRAY);
}

static void test_name_matching(void **state)
{
        static const char *const names[] = {"user_id", "user", "u", "", "user_idx", "\xc3\xa9"};
        eddy_json_val_t v[6];
        char err[128];

        assert_int_equal(parse("{\"user_i\":1,\"user_id_\":2,\"User_id\":3,\"us\":4}", names, 6, v,
                               err, sizeof(err)),
                         0);
        for (int i = 0; i < 6; i++)
                assert_int_equal(v[i].type, EDDY_JSON_MISSING);
        assert_int_equal(parse("{\"user_idx\":5,\"user\":2,\"\":4,\"u\":3,\"user_id\":1,"
                               "\"\xc3\xa9\":6}",
                               names, 6, v, err, sizeof(err)),
                         0);
        for (int i = 0; i < 6; i++) {
                int64_t x;

                assert_int_equal(eddy_json_int64(&v[i], &x), 0);
                assert_int_equal(x, i + 1);
        }
        /* escaped member names compare unescaped */
        assert_int_equal(parse("{\"\\u0075ser_id\":1,\"use\\u0072\":2,\"\\u0075\":3,"
                               "\"user\\u005fid\\u0078\":5,\"\\u00e9\":6}",
                               names, 6, v, err, sizeof(err)),
                         0);
        assert_int_equal(v[0].type, EDDY_JSON_NUMBER);
        assert_int_equal(v[1].type, EDDY_JSON_NUMBER);
        assert_int_equal(v[2].type, EDDY_JSON_NUMBER);
        assert_int_equal(v[3].type, EDDY_JSON_MISSING);
        assert_int_equal(v[4].type, EDDY_JSON_NUMBER);
        assert_int_equal(v[5].type, EDDY_JSON_NUMBER);
        /* a NUL escape never matches a shorter name; a prefix is not a match */
        assert_int_equal(
            parse("{\"u\\u0000\":1,\"user\\u005f\":2,\"\\n\":3}", names, 6, v, err, sizeof(err)),
            0);
        for (int i = 0; i < 6; i++)
                assert_int_equal(v[i].type, EDDY_JSON_MISSING);
}

static void test_numbers(void **state)
{
        static const char *const good[] = {
            "0",      "-0",    "1",        "-1",       "10",
            "1e5",    "1E5",   "1e+5",     "1e-5",     "1E-05",
            "0.5",    "-0.0",  "-1.25e-3", "0e0",      "0E+0",
            "123.45", "1e400", "-1e-400",  "0.000001", "12345678901234567890123",
            "1e0",    "1.0",   "-0.0e-0",  "9.9e99",   "1e0000001",
        };
        static const char *const bad[] = {
            "01",  "-01",  "00",   "1.",   ".5",  "-",     "+1",    "1e",  "1e+",
            "1E-", "0x10", "1.e5", "--1",  "-.5", "1.5.1", "1e5e5", "- 1", "1 2",
            "0-1", "1e.5", "01.5", "1ee5", "-a",  "-e5",   "0.e1",
        };
        char doc[64];
        eddy_json_val_t v;
        int64_t i64;
        double d;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                snprintf(doc, sizeof(doc), "{\"a\":%s}", good[i]);
                v = get_a(doc);
                assert_int_equal(v.type, EDDY_JSON_NUMBER);
                assert_int_equal(v.len, strlen(good[i]));
                assert_memory_equal(v.p, good[i], v.len);
                snprintf(doc, sizeof(doc), "{\"a\":[%s]}", good[i]);
                assert_true(valid(doc));
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                snprintf(doc, sizeof(doc), "{\"a\":%s}", bad[i]);
                assert_error(doc, NULL);
                snprintf(doc, sizeof(doc), "{\"a\":[%s]}", bad[i]);
                assert_error(doc, NULL);
                /* at the end of the input */
                snprintf(doc, sizeof(doc), "{\"a\":%s", bad[i]);
                assert_error(doc, NULL);
        }

        v = get_a("{\"a\":-0}");
        assert_int_equal(eddy_json_int64(&v, &i64), 0);
        assert_int_equal(i64, 0);
        v = get_a("{\"a\":1e5}");
        assert_int_equal(eddy_json_int64(&v, &i64), -1);
        assert_int_equal(eddy_json_double(&v, &d), 0);
        assert_true(d == 100000.0);
        assert_int_equal(eddy_json_id(&v, doc, sizeof(doc)), -1);
        v = get_a("{\"a\":1.0}");
        assert_int_equal(eddy_json_int64(&v, &i64), -1);
        v = get_a("{\"a\":-1.25e-3}");
        assert_int_equal(eddy_json_double(&v, &d), 0);
        assert_true(d == -1.25e-3);
        v = get_a("{\"a\":1e400}");
        assert_int_equal(eddy_json_double(&v, &d), -1);
        v = get_a("{\"a\":-1e400}");
        assert_int_equal(eddy_json_double(&v, &d), -1);
        v = get_a("{\"a\":1e-400}");
        assert_int_equal(eddy_json_double(&v, &d), 0);
        assert_true(d == 0.0);
        v = get_a("{\"a\":12345678901234567890123}");
        assert_int_equal(eddy_json_int64(&v, &i64), -1);
        assert_int_equal(eddy_json_double(&v, &d), 0);
        assert_true(d == 12345678901234567890123.0);
        assert_int_equal(eddy_json_id(&v, doc, sizeof(doc)), 23);
        assert_string_equal(doc, "12345678901234567890123");
        v = get_a("{\"a\":-17}");
        assert_int_equal(eddy_json_id(&v, doc, sizeof(doc)), 3);
        assert_string_equal(doc, "-17");
        assert_int_equal(eddy_json_id(&v, doc, 3), -1);
}

static void test_int64_bounds(void **state)
{
        static const struct {
                const char *text;
                int ok;
                int64_t want;
        } cases[] = {
            {"9223372036854775807", 1, INT64_MAX},
            {"-9223372036854775808", 1, INT64_MIN},
            {"9223372036854775806", 1, INT64_MAX - 1},
            {"-9223372036854775807", 1, INT64_MIN + 1},
            {"9223372036854775808", 0, 0},
            {"-9223372036854775809", 0, 0},
            {"9223372036854775810", 0, 0},
            {"18446744073709551615", 0, 0},
            {"18446744073709551616", 0, 0},
            {"99999999999999999999", 0, 0},
            {"-99999999999999999999", 0, 0},
            {"0", 1, 0},
            {"1", 1, 1},
            {"-1", 1, -1},
            {"922337203685477580", 1, 922337203685477580LL},
        };
        char doc[64];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                eddy_json_val_t v;
                int64_t x = 42;

                snprintf(doc, sizeof(doc), "{\"a\":%s}", cases[i].text);
                v = get_a(doc);
                assert_int_equal(eddy_json_int64(&v, &x), cases[i].ok ? 0 : -1);
                if (cases[i].ok)
                        assert_true(x == cases[i].want);
                else
                        assert_true(x == 42);
        }
}

/* Every proper prefix of a valid document must be rejected, without reading past its end. */
static void test_truncation(void **state)
{
        static const char doc[] =
            "{\"event_id\":\"e\\u00e9\\uD83D\\uDE00\xe2\x82\xac\",\"n\":[1,-2.5e+3,true,false,"
            "null,{\"k\":\"v\\n\"},[]],\"o\":{\"x\":{\"y\":[0]}},\"ts\":1700000000000,"
            "\"f\":-0.0E-2,\"t\":true,\"z\":null,\"\xf0\x9f\x98\x80\":\"\"}";
        static const char *const names[] = {"event_id", "n", "o", "ts", "f", "t", "z"};
        size_t len = strlen(doc);
        eddy_json_val_t v[7];
        char err[128];

        assert_int_equal(parse_n(doc, len, names, 7, v, err, sizeof(err)), 0);
        for (size_t cut = 0; cut < len; cut++) {
                if (parse_n(doc, cut, names, 7, v, err, sizeof(err)) == 0)
                        fail_msg("prefix of %zu bytes accepted", cut);
                assert_true(strlen(err) > 0);
        }
}

static void test_helpers_reject_bad_values(void **state)
{
        eddy_json_val_t v = {EDDY_JSON_NUMBER, "1x", 2, 0};
        char buf[16];
        int64_t i64;
        double d;

        assert_int_equal(eddy_json_int64(&v, &i64), -1);
        assert_int_equal(eddy_json_double(&v, &d), -1);
        assert_int_equal(eddy_json_id(&v, buf, sizeof(buf)), -1);
        v = (eddy_json_val_t){EDDY_JSON_NUMBER, "inf", 3, 0};
        assert_int_equal(eddy_json_double(&v, &d), -1);
        v = (eddy_json_val_t){EDDY_JSON_NUMBER, "0x1p3", 5, 0};
        assert_int_equal(eddy_json_double(&v, &d), -1);
        v = (eddy_json_val_t){EDDY_JSON_NUMBER, "-", 1, 0};
        assert_int_equal(eddy_json_int64(&v, &i64), -1);
        assert_int_equal(eddy_json_id(&v, buf, sizeof(buf)), -1);
        v = (eddy_json_val_t){EDDY_JSON_NUMBER, "", 0, 0};
        assert_int_equal(eddy_json_int64(&v, &i64), -1);
        assert_int_equal(eddy_json_double(&v, &d), -1);
        v = (eddy_json_val_t){EDDY_JSON_STRING, "ab\\", 3, 1};
        assert_int_equal(eddy_json_unescape(&v, buf, sizeof(buf)), -1);
        v = (eddy_json_val_t){EDDY_JSON_STRING, "\\uD800", 6, 1};
        assert_int_equal(eddy_json_unescape(&v, buf, sizeof(buf)), -1);
        v = (eddy_json_val_t){EDDY_JSON_MISSING, NULL, 0, 0};
        assert_int_equal(eddy_json_unescape(&v, buf, sizeof(buf)), -1);
        assert_int_equal(eddy_json_id(&v, buf, sizeof(buf)), -1);
        assert_int_equal(eddy_json_int64(&v, &i64), -1);
        assert_int_equal(eddy_json_double(&v, &d), -1);
        assert_int_equal(eddy_json_id(NULL, buf, sizeof(buf)), -1);
}

/* ---- differential property test against jansson ---- */

typedef struct {
        uint64_t s;
} rng_t;

static uint64_t rnd64(rng_t *r)
{
        /* xorshift64* */
        r->s ^= r->s >> 12;
        r->s ^= r->s << 25;
        r->s ^= r->s >> 27;
        return r->s * 2685821657736338717ULL;
}

static unsigned rnd(rng_t *r, unsigned n)
{
        return (unsigned)(rnd64(r) >> 33) % n;
}

typedef struct {
        char *b;
        size_t len, cap;
} sbuf_t;

static void sb_putn(sbuf_t *sb, const void *p, size_t n)
{
        if (sb->len + n + 1 > sb->cap) {
                sb->cap = (sb->len + n + 1) * 2;
                sb->b = realloc(sb->b, sb->cap);
                assert_non_null(sb->b);
        }
        memcpy(sb->b + sb->len, p, n);
        sb->len += n;
        sb->b[sb->len] = '\0';
}

static void sb_puts(sbuf_t *sb, const char *s)
{
        sb_putn(sb, s, strlen(s));
}

static void sb_putc(sbuf_t *sb, char c)
{
        sb_putn(sb, &c, 1);
}

static void sb_printf(sbuf_t *sb, const char *fmt, ...)
{
        char tmp[64];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        assert_true(n >= 0 && (size_t)n < sizeof(tmp));
        sb_putn(sb, tmp, (size_t)n);
}

static void gen_ws(rng_t *r, sbuf_t *sb)
{
        if (rnd(r, 4) == 0)
                for (unsigned i = rnd(r, 3) + 1; i > 0; i--)
                        sb_putc(sb, " \t\n\r"[rnd(r, 4)]);
}

static void put_u_escape(rng_t *r, sbuf_t *sb, unsigned cp)
{
        sb_printf(sb, rnd(r, 2) ? "\\u%04x" : "\\u%04X", cp);
}

static void put_utf8(sbuf_t *sb, unsigned cp)
{
        unsigned char u[4];
        size_t n;

        if (cp < 0x80) {
                u[0] = (unsigned char)cp;
                n = 1;
        } else if (cp < 0x800) {
                u[0] = (unsigned char)(0xC0 | cp >> 6);
                u[1] = (unsigned char)(0x80 | (cp & 0x3F));
                n = 2;
        } else if (cp < 0x10000) {
                u[0] = (unsigned char)(0xE0 | cp >> 12);
                u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
                u[2] = (unsigned char)(0x80 | (cp & 0x3F));
                n = 3;
        } else {
                u[0] = (unsigned char)(0xF0 | cp >> 18);
                u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
                u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
                u[3] = (unsigned char)(0x80 | (cp & 0x3F));
                n = 4;
        }
        sb_putn(sb, u, n);
}

/* A random code point that is not a surrogate. */
static unsigned gen_cp(rng_t *r, unsigned lo, unsigned hi)
{
        unsigned cp;

        do
                cp = lo + rnd(r, hi - lo + 1);
        while (cp >= 0xD800 && cp <= 0xDFFF);
        return cp;
}

/* The content of a string (no quotes), every kind of character and escape. */
static void gen_str_body(rng_t *r, sbuf_t *sb)
{
        unsigned n = rnd(r, 8) == 0 ? rnd(r, 40) : rnd(r, 10);

        for (unsigned i = 0; i < n; i++) {
                unsigned k = rnd(r, 100), cp;

                if (k < 55) {
                        char c;

                        do
                                c = (char)(0x20 + rnd(r, 0x5F));
                        while (c == '"' || c == '\\');
                        sb_putc(sb, c);
                } else if (k < 65) {
                        sb_putc(sb, '\\');
                        sb_putc(sb, "\"\\/bfnrt"[rnd(r, 8)]);
                } else if (k < 72) {
                        cp = rnd(r, 4) == 0 ? rnd(r, 0x20) : gen_cp(r, 0, 0xFFFF);
                        put_u_escape(r, sb, cp);
                } else if (k < 77) {
                        put_u_escape(r, sb, 0xD800 + rnd(r, 0x400));
                        put_u_escape(r, sb, 0xDC00 + rnd(r, 0x400));
                } else if (k < 85) {
                        put_utf8(sb, gen_cp(r, 0x80, 0x7FF));
                } else if (k < 92) {
                        put_utf8(sb, gen_cp(r, 0x800, 0xFFFF));
                } else if (k < 97) {
                        put_utf8(sb, gen_cp(r, 0x10000, 0x10FFFF));
                } else {
                        sb_putc(sb, 0x7F);
                }
        }
}

static void gen_number(rng_t *r, sbuf_t *sb)
{
        unsigned k = rnd(r, 40);

        if (k == 0) {
                sb_puts(sb, rnd(r, 2) ? "9223372036854775807" : "-9223372036854775808");
                return;
        }
        if (rnd(r, 3) == 0)
                sb_putc(sb, '-');
        if (rnd(r, 4) == 0) {
                sb_putc(sb, '0');
        } else {
                sb_putc(sb, (char)('1' + rnd(r, 9)));
                for (unsigned i = rnd(r, 16); i > 0; i--)
                        sb_putc(sb, (char)('0' + rnd(r, 10)));
        }
        if (rnd(r, 3) == 0) {
                sb_putc(sb, '.');
                for (unsigned i = rnd(r, 10) + 1; i > 0; i--)
                        sb_putc(sb, (char)('0' + rnd(r, 10)));
        }
        if (rnd(r, 4) == 0) {
                sb_putc(sb, rnd(r, 2) ? 'e' : 'E');
                if (rnd(r, 2))
                        sb_putc(sb, rnd(r, 2) ? '+' : '-');
                unsigned e = rnd(r, 201); /* apart: argument order is unspecified */

                sb_printf(sb, rnd(r, 4) ? "%u" : "%03u", e);
        }
}

static void gen_value(rng_t *r, sbuf_t *sb, int depth);

static void gen_object_body(rng_t *r, sbuf_t *sb, int depth, unsigned members)
{
        sb_putc(sb, '{');
        gen_ws(r, sb);
        for (unsigned i = 0; i < members; i++) {
                if (i) {
                        sb_putc(sb, ',');
                        gen_ws(r, sb);
                }
                sb_putc(sb, '"');
                gen_str_body(r, sb);
                sb_putc(sb, '"');
                gen_ws(r, sb);
                sb_putc(sb, ':');
                gen_ws(r, sb);
                gen_value(r, sb, depth + 1);
                gen_ws(r, sb);
        }
        sb_putc(sb, '}');
}

static void gen_value(rng_t *r, sbuf_t *sb, int depth)
{
        unsigned k = rnd(r, depth >= 12 ? 55 : 100 - (unsigned)depth * 3);

        if (k < 20) {
                sb_putc(sb, '"');
                gen_str_body(r, sb);
                sb_putc(sb, '"');
        } else if (k < 40) {
                gen_number(r, sb);
        } else if (k < 45) {
                sb_puts(sb, "true");
        } else if (k < 50) {
                sb_puts(sb, "false");
        } else if (k < 55) {
                sb_puts(sb, "null");
        } else if (k < 75) {
                sb_putc(sb, '[');
                gen_ws(r, sb);
                for (unsigned i = 0, n = rnd(r, 5); i < n; i++) {
                        if (i) {
                                sb_putc(sb, ',');
                                gen_ws(r, sb);
                        }
                        gen_value(r, sb, depth + 1);
                        gen_ws(r, sb);
                }
                sb_putc(sb, ']');
        } else {
                gen_object_body(r, sb, depth, rnd(r, 5));
        }
}

static const char *const diff_names[] = {"event_id", "user_id", "post_id", "action",  "ts",
                                         "nested",   "a",       "",        "\xc3\xa9"};
#define DIFF_N (sizeof(diff_names) / sizeof(diff_names[0]))

/* A top-level object whose names are drawn from diff_names (each once, sometimes escaped)
 * and random strings; or, now and then, another top-level value. */
static void gen_doc(rng_t *r, sbuf_t *sb)
{
        int used[DIFF_N] = {0};
        unsigned members = rnd(r, 9);

        sb->len = 0;
        gen_ws(r, sb);
        if (rnd(r, 30) == 0) {
                gen_value(r, sb, 1);
                gen_ws(r, sb);
                return;
        }
        sb_putc(sb, '{');
        gen_ws(r, sb);
        for (unsigned i = 0; i < members; i++) {
                unsigned which = rnd(r, DIFF_N);
                int named = 0;

                if (i) {
                        sb_putc(sb, ',');
                        gen_ws(r, sb);
                }
                sb_putc(sb, '"');
                if (rnd(r, 3) && !used[which]) {
                        used[which] = 1;
                        for (const char *c = diff_names[which]; *c; c++) {
                                if (rnd(r, 6) == 0 && (unsigned char)*c < 0x80)
                                        put_u_escape(r, sb, (unsigned char)*c);
                                else
                                        sb_putc(sb, *c);
                        }
                        named = 1;
                } else {
                        /* mostly kept apart from the wanted names ("a" and "" are easy to
                         * hit), sometimes not: a repeated wanted name must be refused */
                        if (rnd(r, 10))
                                sb_putc(sb, '_');
                        gen_str_body(r, sb);
                }
                sb_putc(sb, '"');
                gen_ws(r, sb);
                sb_putc(sb, ':');
                gen_ws(r, sb);
                if (named && rnd(r, 2)) {
                        sb_putc(sb, '"');
                        gen_str_body(r, sb);
                        sb_putc(sb, '"');
                } else {
                        gen_value(r, sb, 2);
                }
                gen_ws(r, sb);
        }
        sb_putc(sb, '}');
        gen_ws(r, sb);
}

/* One to three random edits: bytes replaced, inserted, deleted, cut or repeated. */
static void mutate(rng_t *r, sbuf_t *sb)
{
        static const char interesting[] = "\"\\{}[],:0123456789-+.eE \t\n\rtfnu\x00\x1f\x7f"
                                          "\x80\xbf\xc0\xc2\xdf\xe0\xed\xef\xf0\xf4\xf5\xff";

        for (unsigned m = rnd(r, 3) + 1; m > 0; m--) {
                size_t at = sb->len ? rnd(r, (unsigned)sb->len) : 0;
                unsigned char c = rnd(r, 2)
                                      ? (unsigned char)rnd(r, 256)
                                      : (unsigned char)interesting[rnd(r, sizeof(interesting) - 1)];

                switch (rnd(r, 6)) {
                case 0:
                case 1:
                        if (sb->len)
                                sb->b[at] = (char)c;
                        break;
                case 2:
                        sb_putc(sb, 0);
                        memmove(sb->b + at + 1, sb->b + at, sb->len - 1 - at);
                        sb->b[at] = (char)c;
                        break;
                case 3:
                        if (sb->len) {
                                memmove(sb->b + at, sb->b + at + 1, sb->len - at - 1);
                                sb->len--;
                        }
                        break;
                case 4:
                        sb->len = at;
                        break;
                default: {
                        /* repeat b[at, at+n) in place */
                        size_t n = rnd(r, 8) + 1, old = sb->len;

                        if (at + n <= old) {
                                char tmp[8];

                                memcpy(tmp, sb->b + at, n);
                                sb_putn(sb, tmp, n);
                                memmove(sb->b + at + 2 * n, sb->b + at + n, old - at - n);
                                memcpy(sb->b + at + n, tmp, n);
                        }
                        break;
                }
                }
        }
}

static int jdepth(const json_t *j)
{
        int d = 0, sub;

        if (json_is_object(j)) {
                const char *k;
                json_t *v;

                json_object_foreach((json_t *)j, k, v)
                {
                        if ((sub = jdepth(v)) > d)
                                d = sub;
                }
                return d + 1;
        }
        if (json_is_array(j)) {
                size_t i;
                json_t *v;

                json_array_foreach(j, i, v)
                {
                        if ((sub = jdepth(v)) > d)
                                d = sub;
                }
                return d + 1;
        }
        return 0;
}

typedef struct {
        unsigned both_ok, both_bad, jansson_limits, jansson_nul, not_object, too_deep, dup, strings;
} diff_stats_t;

static void show(const char *what, const char *b, size_t len, const char *err, const char *jerr)
{
        char out[2048];
        size_t o = 0;

        for (size_t i = 0; i < len && o + 5 < sizeof(out); i++) {
                unsigned char c = (unsigned char)b[i];

                if (c >= 0x20 && c < 0x7F && c != '\\')
                        out[o++] = (char)c;
                else
                        o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
        }
        out[o] = '\0';
        fail_msg("%s\n  doc: %s\n  eddy: %s\n  jansson: %s", what, out, err, jerr);
}

/* Check one document: eddy and jansson must agree on acceptance, and on the values of the
 * wanted top-level members. */
static void diff_one(const char *doc, size_t len, diff_stats_t *st)
{
        char *b = malloc(len ? len : 1), err[128] = "", *ubuf;
        eddy_json_val_t v[DIFF_N];
        json_error_t je;
        json_t *j;
        int ok;

        assert_non_null(b);
        if (len)
                memcpy(b, doc, len);
        ok = eddy_json_object(b, len, diff_names, DIFF_N, v, err, sizeof(err)) == 0;
        if (!ok && err[0] == '\0')
                show("error without a message", b, len, err, "");
        j = json_loadb(b, len, JSON_ALLOW_NUL, &je);

        if (!j && !ok) {
                st->both_bad++;
        } else if (!j && ok) {
                /* jansson refuses numbers its types can not hold and NUL in names; RFC 8259
                 * allows both. */
                if (strstr(je.text, "too big") || strstr(je.text, "real number overflow") ||
                    strstr(je.text, "NUL byte in object key"))
                        st->jansson_limits++;
                else
                        show("eddy accepts what jansson rejects", b, len, "", je.text);
        } else if (j && !ok) {
                if (memchr(b, '\0', len)) {
                        /* jansson skips a NUL byte read just after a number or literal (its
                         * lexer ungets it into a NUL-terminated lookahead buffer): compare
                         * against what it really parsed. */
                        size_t o = 0;

                        for (size_t i = 0; i < len; i++)
                                if (b[i] != '\0')
                                        b[o++] = b[i];
                        st->jansson_nul++;
                        diff_one(b, o, st);
                } else if (!json_is_object(j) &&
                           strcmp(err, "top-level value is not an object") == 0)
                        st->not_object++;
                else if (strstr(err, "nesting") && jdepth(j) > EDDY_JSON_MAX_DEPTH)
                        st->too_deep++;
                else if (strncmp(err, "duplicate field", 15) == 0 &&
                         eddy_json_object(b, len, NULL, 0, NULL, err, sizeof(err)) == 0)
                        st->dup++;
                else
                        show("eddy rejects what jansson accepts", b, len, err, "");
        } else {
                st->both_ok++;
                for (size_t i = 0; i < DIFF_N; i++) {
                        json_t *jv = json_object_get(j, diff_names[i]);
                        int64_t i64;
                        double d;
                        ssize_t n;

                        switch (v[i].type) {
                        case EDDY_JSON_MISSING:
                                if (jv)
                                        show("member missed", b, len, diff_names[i], "");
                                break;
                        case EDDY_JSON_STRING:
                                assert_true(json_is_string(jv));
                                assert_true(v[i].p > b && v[i].p + v[i].len < b + len);
                                assert_int_equal(v[i].p[-1], '"');
                                assert_int_equal(v[i].p[v[i].len], '"');
                                ubuf = malloc(v[i].len + 1);
                                assert_non_null(ubuf);
                                n = eddy_json_unescape(&v[i], ubuf, v[i].len + 1);
                                if (n != (ssize_t)json_string_length(jv) ||
                                    memcmp(ubuf, json_string_value(jv), (size_t)n) != 0)
                                        show("string differs", b, len, diff_names[i], "");
                                free(ubuf);
                                if (!v[i].escaped)
                                        assert_int_equal(n, v[i].len);
                                st->strings++;
                                break;
                        case EDDY_JSON_NUMBER:
                                if (json_is_integer(jv)) {
                                        assert_int_equal(eddy_json_int64(&v[i], &i64), 0);
                                        assert_true(i64 == json_integer_value(jv));
                                } else {
                                        assert_true(json_is_real(jv));
                                        assert_int_equal(eddy_json_int64(&v[i], &i64), -1);
                                        assert_int_equal(eddy_json_double(&v[i], &d), 0);
                                        assert_true(d == json_real_value(jv));
                                }
                                break;
                        case EDDY_JSON_TRUE:
                                assert_true(json_is_true(jv));
                                break;
                        case EDDY_JSON_FALSE:
                                assert_true(json_is_false(jv));
                                break;
                        case EDDY_JSON_NULL:
                                assert_true(json_is_null(jv));
                                break;
                        case EDDY_JSON_OBJECT:
                                assert_true(json_is_object(jv));
                                assert_int_equal(v[i].p[0], '{');
                                assert_int_equal(v[i].p[v[i].len - 1], '}');
                                if (eddy_json_object(v[i].p, v[i].len, NULL, 0, NULL, err,
                                                     sizeof(err)) != 0)
                                        show("nested object span invalid", b, len, err, "");
                                break;
                        case EDDY_JSON_ARRAY:
                                assert_true(json_is_array(jv));
                                assert_int_equal(v[i].p[0], '[');
                                assert_int_equal(v[i].p[v[i].len - 1], ']');
                                break;
                        }
                }
        }
        json_decref(j);
        free(b);
}

static void test_differential_jansson(void **state)
{
        rng_t r = {0x0DDB1A5E5BAD5EEDULL};
        sbuf_t sb = {0}, mut = {0};
        diff_stats_t st = {0};
        unsigned docs = 5000, muts = 6;

        for (unsigned i = 0; i < docs; i++) {
                gen_doc(&r, &sb);
                diff_one(sb.b, sb.len, &st);
                for (unsigned m = 0; m < muts; m++) {
                        mut.len = 0;
                        sb_putn(&mut, sb.b, sb.len);
                        mutate(&r, &mut);
                        diff_one(mut.b, mut.len, &st);
                }
        }
        print_message("differential: %u documents: %u accepted by both, %u rejected by both, "
                      "%u top-level non-objects, %u beyond jansson's number range or NUL names, "
                      "%u too deep, %u duplicates, %u NUL bytes jansson skips; "
                      "%u string values compared\n",
                      docs * (muts + 1), st.both_ok, st.both_bad, st.not_object, st.jansson_limits,
                      st.too_deep, st.dup, st.jansson_nul, st.strings);
        /* Make sure the mix is worth something: many valid, many invalid, many strings. */
        assert_true(st.both_ok > docs);
        assert_true(st.both_bad > docs * muts / 4);
        assert_true(st.strings > docs);
        free(sb.b);
        free(mut.b);
}

typedef struct memlist_s {
        eddy_json_val_t v[2 * 64];
        unsigned n;
} memlist_t;

static void memlist_add(void *opaque, const eddy_json_val_t *name, const eddy_json_val_t *v)
{
        memlist_t *m = opaque;
        assert_true(m->n + 2 <= 2 * 64);
        m->v[m->n++] = *name;
        m->v[m->n++] = *v;
}

static void assert_vals_equal(const eddy_json_val_t *a, const eddy_json_val_t *b, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(a[i].type, b[i].type);
                if (a[i].type == EDDY_JSON_MISSING)
                        continue;
                assert_ptr_equal(a[i].p, b[i].p);
                assert_int_equal(a[i].len, b[i].len);
                assert_int_equal(a[i].escaped, b[i].escaped);
        }
}

/* eddy_json_object_nested: on the member objects of 5000 random documents (each wrapped as
 * {"o": doc, "p": [doc]}), the same members, spans, escape flags and duplicates as
 * eddy_json_object() and eddy_json_members() of the object's own text, found in one pass;
 * errors and their offsets as eddy_json_object() of the whole. */
static void test_nested(void **state)
{
        rng_t r = {0x5EED0FCAFEULL};
        sbuf_t doc = {0}, outer = {0};
        static const char *const o_names[] = {"o", "p"};
        unsigned objects = 0, dups = 0, errors = 0;
        for (unsigned i = 0; i < 5000; i++) {
                gen_doc(&r, &doc);
                if (i % 3 == 2 && doc.len) { /* one byte changed: mostly an error somewhere */
                        static const char bytes[] = "\"{}[],:\\ 1e-x\x01\xc3";
                        doc.b[rnd(&r, (unsigned)doc.len)] = bytes[rnd(&r, sizeof(bytes) - 1)];
                }
                outer.len = 0;
                sb_puts(&outer, "{\"o\":");
                sb_putn(&outer, doc.b, doc.len);
                sb_puts(&outer, ",\"p\":[");
                sb_putn(&outer, doc.b, doc.len);
                sb_puts(&outer, "]}");
                eddy_json_val_t o[2], got[DIFF_N];
                char ew[160] = "", eg[160] = "";
                int rw = eddy_json_object(outer.b, outer.len, o_names, 2, o, ew, sizeof(ew));
                memlist_t mg = {0};
                eddy_json_nest_t nest[2] = {{0, diff_names, DIFF_N, got, memlist_add, &mg, 0, 0},
                                            {1, NULL, 0, NULL, NULL, NULL, 0, 0}};
                eddy_json_val_t on[2];
                int rg = eddy_json_object_nested(outer.b, outer.len, o_names, 2, on, nest, 2, eg,
                                                 sizeof(eg));
                assert_int_equal(rg, rw);
                assert_string_equal(eg, ew);
                assert_int_equal(nest[1].walked, 0); /* an array is not walked */
                if (rw) {
                        errors++;
                        continue;
                }
                assert_vals_equal(o, on, 2);
                assert_int_equal(nest[0].walked, o[0].type == EDDY_JSON_OBJECT);
                if (o[0].type != EDDY_JSON_OBJECT) {
                        assert_int_equal(mg.n, 0);
                        continue;
                }
                objects++;
                eddy_json_val_t want[DIFF_N];
                int rd = eddy_json_object(o[0].p, o[0].len, diff_names, DIFF_N, want, NULL, 0);
                assert_int_equal(nest[0].dup, rd != 0);
                if (rd == 0)
                        assert_vals_equal(want, got, DIFF_N);
                else
                        dups++;
                memlist_t mw = {0};
                assert_int_equal(eddy_json_members(o[0].p, o[0].len, memlist_add, &mw, NULL, 0), 0);
                assert_int_equal(mg.n, mw.n);
                assert_vals_equal(mw.v, mg.v, mw.n);
        }
        /* nesting at the limit counts the levels above the nested object */
        for (int depth = 60; depth <= 66; depth++) {
                outer.len = 0;
                sb_puts(&outer, "{\"o\":{\"a\":");
                for (int k = 2; k < depth; k++)
                        sb_putc(&outer, '[');
                for (int k = 2; k < depth; k++)
                        sb_putc(&outer, ']');
                sb_puts(&outer, "}}");
                eddy_json_val_t o[2], got[DIFF_N];
                char ew[160] = "", eg[160] = "";
                int rw = eddy_json_object(outer.b, outer.len, o_names, 2, o, ew, sizeof(ew));
                eddy_json_nest_t nest = {0, diff_names, DIFF_N, got, NULL, NULL, 0, 0};
                int rg = eddy_json_object_nested(outer.b, outer.len, o_names, 2, o, &nest, 1, eg,
                                                 sizeof(eg));
                assert_int_equal(rg, rw);
                assert_int_equal(rw, depth > EDDY_JSON_MAX_DEPTH ? -1 : 0);
                assert_string_equal(eg, ew);
        }
        print_message("nested: %u objects, %u with a wanted name twice, %u errors\n", objects, dups,
                      errors);
        assert_true(objects > 2500);
        assert_true(dups > 5);
        assert_true(errors > 500);
        free(doc.b);
        free(outer.b);
}

/* eddy_json_quote: every byte string of a few hundred random ones, with quotes, backslashes,
 * controls and UTF-8, comes back from jansson as itself, within EDDY_JSON_QUOTED_MAX. */
static void test_quote(void **state)
{
        char out[EDDY_JSON_QUOTED_MAX(64)];
        size_t n = eddy_json_quote(out, "a\"b\\c\n\x01\xc3\xa9", 9);
        assert_int_equal(n, strlen("\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\""));
        assert_memory_equal(out, "\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\"", n);
        assert_int_equal(eddy_json_quote(out, "", 0), 2);
        static const char alphabet[] = "ab\"\\\n\t\x01\x1f \xc3\xa9/";
        unsigned seed = 7;
        for (int round = 0; round < 500; round++) {
                char in[64];
                size_t len = (size_t)(round % 64);
                for (size_t i = 0; i < len; i++) {
                        seed = seed * 1103515245u + 12345u;
                        in[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
                }
                /* keep UTF-8 whole: a lone 0xc3 or 0xa9 becomes 'x' */
                for (size_t i = 0; i < len; i++)
                        if ((unsigned char)in[i] == 0xc3 &&
                            (i + 1 == len || (unsigned char)in[i + 1] != 0xa9))
                                in[i] = 'x';
                        else if ((unsigned char)in[i] == 0xc3)
                                i++;
                        else if ((unsigned char)in[i] == 0xa9)
                                in[i] = 'x';
                n = eddy_json_quote(out, in, len);
                assert_true(n <= EDDY_JSON_QUOTED_MAX(len));
                json_error_t je;
                json_t *j = json_loadb(out, n, JSON_DECODE_ANY, &je);
                assert_non_null(j);
                assert_int_equal(json_string_length(j), len);
                assert_memory_equal(json_string_value(j), in, len);
                json_decref(j);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_like_event),
            cmocka_unit_test(test_value_types_and_spans),
            cmocka_unit_test(test_empty_and_not_object),
            cmocka_unit_test(test_error_messages),
            cmocka_unit_test(test_escapes),
            cmocka_unit_test(test_surrogates),
            cmocka_unit_test(test_utf8),
            cmocka_unit_test(test_depth),
            cmocka_unit_test(test_duplicates),
            cmocka_unit_test(test_name_matching),
            cmocka_unit_test(test_numbers),
            cmocka_unit_test(test_int64_bounds),
            cmocka_unit_test(test_truncation),
            cmocka_unit_test(test_helpers_reject_bad_values),
            cmocka_unit_test(test_differential_jansson),
            cmocka_unit_test(test_nested),
            cmocka_unit_test(test_quote),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
