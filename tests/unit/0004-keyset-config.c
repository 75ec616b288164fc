/* 0004-keyset-config.c: the (partition, key) set (runtime/keyset.h) and job configuration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "state.h"
#include "keyset.h"

/* ---------------------------------------------------------------- keyset */

static uint64_t rnd(uint64_t *s)
{
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* The order the keyset promises: partition, then key bytes, a prefix first. */
static int ent_order(const eddy_keyset_ent_t *x, const eddy_keyset_ent_t *y)
{
        if (x->partition != y->partition)
                return x->partition < y->partition ? -1 : 1;
        size_t n = x->len < y->len ? x->len : y->len;
        int c = n ? memcmp(x->key, y->key, n) : 0;
        if (c)
                return c;
        return (x->len > y->len) - (x->len < y->len);
}

static int ent_qsort_cmp(const void *a, const void *b)
{
        return ent_order(a, b);
}

static void assert_sorted_unique(const eddy_keyset_ent_t *e, size_t n)
{
        for (size_t i = 1; i < n; i++)
                if (ent_order(&e[i - 1], &e[i]) >= 0)
                        fail_msg(
                            "sorted view: entry %zu (partition %" PRId32
                            ", %u bytes) is not above entry %zu (partition %" PRId32 ", %u bytes)",
                            i, e[i].partition, e[i].len, i - 1, e[i - 1].partition, e[i - 1].len);
}

static void test_keyset_add_and_dup(void **state)
{
        eddy_keyset_t *ks = eddy_keyset_new();
        assert_non_null(ks);
        assert_int_equal(eddy_keyset_count(ks), 0);
        size_t n = 99;
        eddy_keyset_sorted(ks, &n);
        assert_int_equal(n, 0);

        assert_int_equal(eddy_keyset_add(ks, 0, "p1", 2), 1);
        assert_int_equal(eddy_keyset_add(ks, 0, "p1", 2), 0);
        assert_int_equal(eddy_keyset_add(ks, 1, "p1", 2), 1);   /* another partition */
        assert_int_equal(eddy_keyset_add(ks, 0, "p1\0", 3), 1); /* longer, with a NUL */
        assert_int_equal(eddy_keyset_add(ks, 0, "p", 1), 1);    /* a prefix */
        assert_int_equal(eddy_keyset_add(ks, 0, "p1\0", 3), 0);
        assert_int_equal(eddy_keyset_add(ks, 0, "\xff\xfe", 2), 1);
        assert_int_equal(eddy_keyset_add(ks, 0, "p", 1), 0);
        assert_int_equal(eddy_keyset_count(ks), 5);
        /* the set copies the bytes: the caller's buffer may change */
        char buf[8] = "zz";
        assert_int_equal(eddy_keyset_add(ks, 2, buf, 2), 1);
        memcpy(buf, "yy", 2);
        assert_int_equal(eddy_keyset_add(ks, 2, "zz", 2), 0);
        assert_int_equal(eddy_keyset_add(ks, 2, buf, 2), 1);

        const eddy_keyset_ent_t *e = eddy_keyset_sorted(ks, &n);
        assert_int_equal(n, 7);
        const struct {
                int32_t p;
                const char *k;
                uint32_t len;
        } want[] = {{0, "p", 1},  {0, "p1", 2}, {0, "p1\0", 3}, {0, "\xff\xfe", 2},
                    {1, "p1", 2}, {2, "yy", 2}, {2, "zz", 2}};
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(e[i].partition, want[i].p);
                assert_int_equal(e[i].len, want[i].len);
                assert_memory_equal(e[i].key, want[i].k, want[i].len);
        }
        eddy_keyset_destroy(ks);
        eddy_keyset_destroy(NULL);
}

/* The empty key is a member like any other, first of its partition. */
static void test_keyset_empty_key(void **state)
{
        eddy_keyset_t *ks = eddy_keyset_new();
        assert_int_equal(eddy_keyset_add(ks, 3, "", 0), 1);
        assert_int_equal(eddy_keyset_add(ks, 3, "", 0), 0);
        assert_int_equal(eddy_keyset_add(ks, 3, "a", 1), 1);
        assert_int_equal(eddy_keyset_add(ks, 2, "", 0), 1);
        size_t n;
        const eddy_keyset_ent_t *e = eddy_keyset_sorted(ks, &n);
        assert_int_equal(n, 3);
        assert_int_equal(e[0].partition, 2);
        assert_int_equal(e[0].len, 0);
        assert_int_equal(e[1].partition, 3);
        assert_int_equal(e[1].len, 0);
        assert_int_equal(e[2].len, 1);
        eddy_keyset_destroy(ks);
}

/* Make a random key set; add it in two different orders; the views are identical. */
static void test_keyset_order_independent(void **state)
{
        enum { N = 3000 };
        uint64_t rs = 42;
        static char keys[N][12];
        static size_t lens[N];
        static int32_t parts[N];
        static int perm[N];
        static const char alpha[] = {'\0', 'a', 'b', '\x7f', '\x80', '\xff'};
        for (int i = 0; i < N; i++) {
                lens[i] = rnd(&rs) % 6;
                for (size_t j = 0; j < lens[i]; j++)
                        keys[i][j] = alpha[rnd(&rs) % sizeof(alpha)];
                parts[i] = (int32_t)(rnd(&rs) % 4);
                perm[i] = i;
        }
        eddy_keyset_t *a = eddy_keyset_new(), *b = eddy_keyset_new();
        size_t added_a = 0, added_b = 0;
        for (int i = 0; i < N; i++)
                added_a += (size_t)eddy_keyset_add(a, parts[i], keys[i], lens[i]);
        for (int i = N - 1; i > 0; i--) {
                int j = (int)(rnd(&rs) % (uint64_t)(i + 1)), t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
        }
        for (int i = 0; i < N; i++)
                added_b += (size_t)eddy_keyset_add(b, parts[perm[i]], keys[perm[i]], lens[perm[i]]);
        assert_int_equal(added_a, added_b);
        assert_int_equal(eddy_keyset_count(a), added_a);
        assert_true(added_a < N); /* the alphabet is small: there were duplicates */
        size_t na, nb;
        const eddy_keyset_ent_t *ea = eddy_keyset_sorted(a, &na);
        const eddy_keyset_ent_t *eb = eddy_keyset_sorted(b, &nb);
        assert_int_equal(na, added_a);
        assert_int_equal(nb, na);
        assert_sorted_unique(ea, na);
        for (size_t i = 0; i < na; i++) {
                assert_int_equal(ea[i].partition, eb[i].partition);
                assert_int_equal(ea[i].len, eb[i].len);
                if (ea[i].len)
                        assert_memory_equal(ea[i].key, eb[i].key, ea[i].len);
        }
        /* every input key is in the view */
        for (int i = 0; i < N; i++) {
                eddy_keyset_ent_t k = {parts[i], (uint32_t)lens[i], keys[i]};
                assert_non_null(bsearch(&k, ea, na, sizeof(*ea), ent_qsort_cmp));
        }
        /* a second call gives the same view */
        size_t na2;
        const eddy_keyset_ent_t *ea2 = eddy_keyset_sorted(a, &na2);
        assert_int_equal(na2, na);
        assert_sorted_unique(ea2, na2);
        eddy_keyset_destroy(a);
        eddy_keyset_destroy(b);
}

/* Clear, then reuse: nothing left behind, and old keys are new again. */
static void test_keyset_clear_and_reuse(void **state)
{
        eddy_keyset_t *ks = eddy_keyset_new();
        char k[32];
        for (int round = 0; round < 5; round++) {
                int n = 100 + round * 700;
                for (int i = 0; i < n; i++) {
                        int kl = snprintf(k, sizeof(k), "post-%d-%d", round % 2, i);
                        assert_int_equal(eddy_keyset_add(ks, i % 3, k, (size_t)kl), 1);
                }
                for (int i = 0; i < n; i += 7) {
                        int kl = snprintf(k, sizeof(k), "post-%d-%d", round % 2, i);
                        assert_int_equal(eddy_keyset_add(ks, i % 3, k, (size_t)kl), 0);
                }
                assert_int_equal(eddy_keyset_count(ks), n);
                size_t m;
                const eddy_keyset_ent_t *e = eddy_keyset_sorted(ks, &m);
                assert_int_equal(m, n);
                assert_sorted_unique(e, m);
                for (size_t i = 0; i < m; i++)
                        assert_true(e[i].len > 7 &&
                                    !memcmp(e[i].key, round % 2 ? "post-1-" : "post-0-", 7));
                eddy_keyset_clear(ks);
                assert_int_equal(eddy_keyset_count(ks), 0);
                eddy_keyset_sorted(ks, &m);
                assert_int_equal(m, 0);
        }
        /* cleared twice, and empty */
        eddy_keyset_clear(ks);
        assert_int_equal(eddy_keyset_add(ks, 0, "x", 1), 1);
        assert_int_equal(eddy_keyset_count(ks), 1);
        eddy_keyset_destroy(ks);
}

/* 100k keys: all there once, in order, and found again as duplicates. */
static void test_keyset_100k(void **state)
{
        enum { N = 100000 };
        eddy_keyset_t *ks = eddy_keyset_new();
        eddy_keyset_ent_t *want = malloc(N * sizeof(*want));
        char *arena = malloc((size_t)N * 24);
        assert_non_null(want);
        assert_non_null(arena);
        uint64_t rs = 7;
        for (int i = 0; i < N; i++) {
                /* distinct by construction; the random part scrambles the insertion order */
                char *k = arena + (size_t)i * 24;
                int kl = snprintf(k, 24, "%016" PRIx64 "%06d",
                                  (uint64_t)(rnd(&rs) & 0xffffffffffffULL), i);
                int32_t p = (int32_t)(rnd(&rs) % 12);
                want[i] = (eddy_keyset_ent_t){p, (uint32_t)kl, k};
                assert_int_equal(eddy_keyset_add(ks, p, k, (size_t)kl), 1);
        }
        for (int i = 0; i < N; i += 3)
                assert_int_equal(eddy_keyset_add(ks, want[i].partition, want[i].key, want[i].len),
                                 0);
        assert_int_equal(eddy_keyset_count(ks), N);
        qsort(want, N, sizeof(*want), ent_qsort_cmp);
        size_t n;
        const eddy_keyset_ent_t *e = eddy_keyset_sorted(ks, &n);
        assert_int_equal(n, N);
        for (size_t i = 0; i < n; i++) {
                if (e[i].partition != want[i].partition || e[i].len != want[i].len ||
                    memcmp(e[i].key, want[i].key, e[i].len))
                        fail_msg("sorted view differs at %zu", i);
        }
        eddy_keyset_clear(ks);
        assert_int_equal(eddy_keyset_add(ks, want[0].partition, want[0].key, want[0].len), 1);
        assert_int_equal(eddy_keyset_count(ks), 1);
        eddy_keyset_destroy(ks);
        free(want);
        free(arena);
}

/* ---------------------------------------------------------------- configuration */

/* A processor's table with one key of every type. */
typedef struct pconf_s {
        char *prefix;
        int64_t max_ids;
        int flag;
        eddy_strlist_t names;
        char *json;
} pconf_t;

static const eddy_prop_t pprops[] = {
    {"redis.key.prefix", EDDY_PROP_STR, "likes:", 0, 0, offsetof(pconf_t, prefix), "prefix"},
    {"max.ids", EDDY_PROP_INT, "256", 1, 4096, offsetof(pconf_t, max_ids), "an int"},
    {"feature.flag", EDDY_PROP_BOOL, "false", 0, 1, offsetof(pconf_t, flag), "a bool"},
    {"feature.names", EDDY_PROP_LIST, "a,b", 0, 0, offsetof(pconf_t, names), "a list"},
    {"feature.json", EDDY_PROP_JSON, "{\"w\": [1, 2]}", 0, 0, offsetof(pconf_t, json), "JSON"},
    {NULL},
};

typedef struct conf_s {
        eddy_rtconf_t rt;
        pconf_t pc;
        char err[1024];
        int rc;
} conf_t;

static char tmpdir[64];
static int nfiles;

static int conf_setup(void **state)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/eddy-0004-XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int conf_teardown(void **state)
{
        char cmd[128];
        if (strncmp(tmpdir, "/tmp/eddy-0004-", 15))
                return -1;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

/* Writes @p json to a new file; @returns its path (static storage, one per call). */
static const char *write_conf(const char *json)
{
        static char paths[64][128];
        assert_true(nfiles < 64);
        char *path = paths[nfiles];
        snprintf(path, sizeof(paths[0]), "%s/job-%02d.json", tmpdir, nfiles);
        nfiles++;
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        assert_int_equal(fputs(json, fp) >= 0, 1);
        assert_int_equal(fclose(fp), 0);
        return path;
}

static void load(conf_t *c, const char *path, char **ov, int nov, const char *proc,
                 const char *default_input)
{
        memset(c, 0, sizeof(*c));
        c->rc = eddy_conf_load(path, ov, nov, proc, default_input, &c->rt, pprops, &c->pc, c->err,
                               sizeof(c->err));
}

static void conf_free(conf_t *c)
{
        eddy_conf_free(eddy_rt_props, &c->rt);
        eddy_conf_free(pprops, &c->pc);
}

/* Loads a file that must fail; the message must hold each of the NULL-terminated needles. */
static void expect_error(const char *json, char **ov, int nov, ...)
{
        conf_t c;
        const char *path = json ? write_conf(json) : NULL;
        load(&c, path, ov, nov, "like-counter", "likes");
        conf_free(&c);
        if (c.rc == 0)
                fail_msg("accepted: %s", json ? json : "(no file)");
        assert_int_equal(c.rc, -1);
        assert_null(strchr(c.err, '\n'));
        va_list ap;
        va_start(ap, nov);
        for (const char *needle; (needle = va_arg(ap, const char *));)
                if (!strstr(c.err, needle))
                        fail_msg("the message \"%s\" does not name \"%s\"", c.err, needle);
        va_end(ap);
        if (path && !strstr(c.err, path))
                fail_msg("the message \"%s\" does not name the file %s", c.err, path);
}

/* The last "key=value" in the kafka list for @p key, or NULL. */
static const char *kafka_get(const eddy_rtconf_t *rt, const char *key)
{
        const char *v = NULL;
        size_t kl = strlen(key);
        for (size_t i = 0; i < rt->kafka.n; i++)
                if (!strncmp(rt->kafka.v[i], key, kl) && rt->kafka.v[i][kl] == '=')
                        v = rt->kafka.v[i] + kl + 1;
        return v;
}

static void test_conf_flatten(void **state)
{
        conf_t a, b;
        load(&a,
             write_conf("{\"redis\": {\"url\": \"redis://h:7/2\", \"chunk\": {\"keys\": 5}},"
                        " \"state\": {\"cache\": {\"mb\": 3}, \"sync\": false},"
                        " \"max\": {\"ids\": 9}, \"feature\": {\"flag\": true,"
                        " \"names\": [\"x\", \"y\", \"z\"]}}"),
             NULL, 0, "like-counter", "likes");
        load(&b,
             write_conf("{\"redis.url\": \"redis://h:7/2\", \"redis.chunk.keys\": 5,"
                        " \"state.cache.mb\": 3, \"state.sync\": false, \"max.ids\": 9,"
                        " \"feature.flag\": true, \"feature.names\": \"x,y,z\"}"),
             NULL, 0, "like-counter", "likes");
        assert_int_equal(a.rc, 0);
        assert_int_equal(b.rc, 0);
        for (conf_t *c = &a; c; c = c == &a ? &b : NULL) {
                assert_string_equal(c->rt.redis_url, "redis://h:7/2");
                assert_int_equal(c->rt.redis_chunk_keys, 5);
                assert_int_equal(c->rt.state_cache_mb, 3);
                assert_int_equal(c->rt.state_sync, 0);
                assert_int_equal(c->pc.max_ids, 9);
                assert_int_equal(c->pc.flag, 1);
                assert_int_equal(c->pc.names.n, 3);
                assert_string_equal(c->pc.names.v[0], "x");
                assert_string_equal(c->pc.names.v[2], "z");
                assert_string_equal(c->pc.prefix, "likes:"); /* untouched: the default */
        }
        conf_free(&a);
        conf_free(&b);
}

static void test_conf_kafka_passthrough(void **state)
{
        conf_t c;
        load(&c,
             write_conf("{\"kafka\": {\"bootstrap.servers\": \"b1:9092\", \"linger.ms\": 7,"
                        " \"enable.idempotence\": true, \"security\": {\"protocol\": \"SSL\"}},"
                        " \"kafka.client.id\": \"cid\", \"kafka.timeout.ms\": 1234}"),
             NULL, 0, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(kafka_get(&c.rt, "bootstrap.servers"), "b1:9092");
        assert_string_equal(kafka_get(&c.rt, "linger.ms"), "7");
        assert_string_equal(kafka_get(&c.rt, "enable.idempotence"), "true");
        assert_string_equal(kafka_get(&c.rt, "security.protocol"), "SSL");
        assert_string_equal(kafka_get(&c.rt, "client.id"), "cid");
        /* kafka.timeout.ms is the runtime's own key, not librdkafka's */
        assert_null(kafka_get(&c.rt, "timeout.ms"));
        assert_int_equal(c.rt.kafka_timeout_ms, 1234);
        assert_int_equal(c.rt.kafka.n, 5);
        conf_free(&c);

        expect_error("{\"kafka\": {\"bootstrap.servers\": [\"a\", \"b\"]}}", NULL, 0,
                     "kafka.bootstrap.servers", NULL);
        expect_error("{\"kafka.linger.ms\": null}", NULL, 0, "kafka.linger.ms", NULL);
}

static void test_conf_overrides_win(void **state)
{
        char o1[] = "redis.url=redis://other:1/0", o2[] = "state.cache.mb=17",
             o3[] = "state.sync=false", o4[] = "input.topics=t1,t2",
             o5[] = "kafka.bootstrap.servers=x:1", o6[] = "feature.names=q",
             o7[] = "redis.key.prefix=", o8[] = "max.ids=4096", o9[] = "state.sync=1";
        char *ov[] = {o1, o2, o3, o4, o5, o6, o7, o8};
        conf_t c;
        const char *path = write_conf(
            "{\"redis\": {\"url\": \"redis://file:2/0\"}, \"state.cache.mb\": 5,"
            " \"state.sync\": true, \"input.topics\": [\"f1\"],"
            " \"kafka\": {\"bootstrap.servers\": \"file:9092\"}, \"feature.names\": [\"f\"],"
            " \"redis.key.prefix\": \"p:\"}");
        load(&c, path, ov, 8, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.rt.redis_url, "redis://other:1/0");
        assert_int_equal(c.rt.state_cache_mb, 17);
        assert_int_equal(c.rt.state_sync, 0);
        assert_int_equal(c.rt.input_topics.n, 2);
        assert_string_equal(c.rt.input_topics.v[0], "t1");
        assert_string_equal(c.rt.input_topics.v[1], "t2");
        /* librdkafka applies the list in order: the override comes last */
        assert_string_equal(kafka_get(&c.rt, "bootstrap.servers"), "x:1");
        assert_int_equal(c.pc.names.n, 1);
        assert_string_equal(c.pc.names.v[0], "q");
        assert_string_equal(c.pc.prefix, "");
        assert_int_equal(c.pc.max_ids, 4096);
        conf_free(&c);
        /* the last of several overrides of one key wins */
        char *ov2[] = {o3, o9};
        load(&c, path, ov2, 2, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_int_equal(c.rt.state_sync, 1);
        conf_free(&c);
        /* overrides with no file */
        load(&c, NULL, ov, 2, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_int_equal(c.rt.state_cache_mb, 17);
        assert_string_equal(c.rt.redis_url, "redis://other:1/0");
        conf_free(&c);
}

static void test_conf_unknown_keys(void **state)
{
        expect_error("{\"redis\": {\"urll\": \"redis://x\"}}", NULL, 0, "redis.urll", NULL);
        expect_error("{\"colour\": 1}", NULL, 0, "colour", NULL);
        expect_error("{\"state\": {\"cache\": {\"mb\": 3, \"gb\": 1}}}", NULL, 0, "state.cache.gb",
                     NULL);
        expect_error("{\"kafka\": \"x\"}", NULL, 0, "kafka", NULL);
        char o1[] = "no.such.key=1", o2[] = "novalue", o3[] = "=1";
        char *ov1[] = {o1}, *ov2[] = {o2}, *ov3[] = {o3};
        expect_error(NULL, ov1, 1, "-X", "no.such.key", NULL);
        expect_error(NULL, ov2, 1, "-X", "novalue", NULL);
        expect_error(NULL, ov3, 1, "-X", NULL);
}

static void test_conf_bad_values(void **state)
{
        /* ints out of range: the key and both bounds */
        expect_error("{\"state.cache.mb\": 0}", NULL, 0, "state.cache.mb", "1", "1048576", NULL);
        expect_error("{\"state\": {\"cache\": {\"mb\": 1048577}}}", NULL, 0, "state.cache.mb", "1",
                     "1048576", NULL);
        expect_error("{\"max.ids\": 4097}", NULL, 0, "max.ids", "1", "4096", NULL);
        expect_error("{\"redis.chunk.keys\": -5}", NULL, 0, "redis.chunk.keys", "1", "1000000",
                     NULL);
        char o1[] = "batch.max.events=0", o2[] = "batch.max.events=ten",
             o3[] = "batch.max.events=99999999999999999999999", o4[] = "batch.max.events=5x",
             o5[] = "batch.max.events=";
        char *ov1[] = {o1}, *ov2[] = {o2}, *ov3[] = {o3}, *ov4[] = {o4}, *ov5[] = {o5};
        expect_error(NULL, ov1, 1, "-X", "batch.max.events", "1", "10000000", NULL);
        expect_error(NULL, ov2, 1, "-X", "batch.max.events", "ten", NULL);
        expect_error(NULL, ov3, 1, "-X", "batch.max.events", NULL);
        expect_error(NULL, ov4, 1, "-X", "batch.max.events", NULL);
        expect_error(NULL, ov5, 1, "-X", "batch.max.events", NULL);
        /* wrong JSON types */
        expect_error("{\"state.cache.mb\": \"3\"}", NULL, 0, "state.cache.mb", "integer", NULL);
        expect_error("{\"state.cache.mb\": 3.5}", NULL, 0, "state.cache.mb", NULL);
        expect_error("{\"redis.url\": 5}", NULL, 0, "redis.url", "string", NULL);
        expect_error("{\"input.topics\": [\"a\", 1]}", NULL, 0, "input.topics", NULL);
        expect_error("{\"input.topics\": {\"a\": 1}}", NULL, 0, "input.topics", NULL);
        /* bools: JSON true/false; -X true/false/1/0 */
        expect_error("{\"state.sync\": \"yes\"}", NULL, 0, "state.sync", "boolean", NULL);
        expect_error("{\"state\": {\"sync\": 1}}", NULL, 0, "state.sync", NULL);
        expect_error("{\"feature.flag\": null}", NULL, 0, "feature.flag", NULL);
        char o6[] = "state.sync=maybe", o7[] = "state.sync=", o8[] = "state.sync=0";
        char *ov6[] = {o6}, *ov7[] = {o7}, *ov8[] = {o8};
        expect_error(NULL, ov6, 1, "-X", "state.sync", "maybe", NULL);
        expect_error(NULL, ov7, 1, "-X", "state.sync", NULL);
        conf_t c;
        load(&c, NULL, ov8, 1, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_int_equal(c.rt.state_sync, 0);
        conf_free(&c);
        /* the edges of a range are in it */
        load(&c,
             write_conf("{\"state.cache.mb\": 1, \"max.ids\": 4096,"
                        " \"reconcile.interval.ms\": 9223372036854775807}"),
             NULL, 0, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_int_equal(c.rt.state_cache_mb, 1);
        assert_int_equal(c.rt.reconcile_interval_ms, INT64_MAX);
        conf_free(&c);
}

static void test_conf_bad_files(void **state)
{
        expect_error("{\"redis.url\": \"a\", \"redis.url\": \"b\"}", NULL, 0, "duplicate", NULL);
        expect_error("{\"redis\": {\"url\": \"a\", \"url\": \"b\"}}", NULL, 0, "duplicate", NULL);
        expect_error("{\"kafka\": {\"acks\": 1, \"acks\": 2}}", NULL, 0, "duplicate", NULL);
        expect_error("{\"redis.url\": \"a\",}", NULL, 0, NULL);
        expect_error("{\"redis.url\": \"a\"", NULL, 0, NULL);
        expect_error("", NULL, 0, NULL);
        expect_error("[\"redis.url\"]", NULL, 0, "object", NULL);
        expect_error("\"just a string\"", NULL, 0, NULL);
        /* a file that is not there */
        char path[128];
        snprintf(path, sizeof(path), "%s/missing.json", tmpdir);
        conf_t c;
        load(&c, path, NULL, 0, "like-counter", "likes");
        conf_free(&c);
        assert_int_equal(c.rc, -1);
        assert_non_null(strstr(c.err, path));
}

/* A value checked after loading (state.missing) still names the file it came from, as
 * every configuration error does (DESIGN.md, Contracts). */
static void test_conf_state_missing(void **state)
{
        expect_error("{\"state.missing\": \"sometimes\"}", NULL, 0, "state.missing", "sometimes",
                     "earliest", NULL);
        expect_error("{\"state.compression\": \"snappy\"}", NULL, 0, "state.compression", "snappy",
                     "none, lz4 or zstd", NULL);
        conf_t c;
        load(&c, write_conf("{}"), NULL, 0, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_int_equal(eddy_rt_compression(&c.rt), EDDY_STATE_COMPRESS_NONE);
        conf_free(&c);
        char *x[] = {"state.compression=zstd"};
        load(&c, write_conf("{\"state.compression\": \"lz4\"}"), NULL, 0, "like-counter", "likes");
        assert_int_equal(eddy_rt_compression(&c.rt), EDDY_STATE_COMPRESS_LZ4);
        conf_free(&c);
        load(&c, write_conf("{\"state.compression\": \"lz4\"}"), x, 1, "like-counter", "likes");
        assert_int_equal(eddy_rt_compression(&c.rt), EDDY_STATE_COMPRESS_ZSTD);
        conf_free(&c);
}

/* rocksdb.* keys reach RocksDB's options parser (the last setting of an option wins); one it
 * does not know is an error at load, naming the file and the key. */
static void test_conf_rocksdb(void **state)
{
        conf_t c;
        char *x[] = {"rocksdb.level0_file_num_compaction_trigger=12"};
        load(&c,
             write_conf("{\"rocksdb\": {\"level0_file_num_compaction_trigger\": 16, "
                        "\"max_write_buffer_number\": \"5\"}}"),
             x, 1, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        char *s = eddy_rt_rocksdb_options(&c.rt);
        assert_string_equal(s, "max_write_buffer_number=5;level0_file_num_compaction_trigger=12");
        free(s);
        conf_free(&c);
        load(&c, write_conf("{}"), NULL, 0, "like-counter", "likes");
        s = eddy_rt_rocksdb_options(&c.rt);
        assert_string_equal(s, "");
        free(s);
        conf_free(&c);
        expect_error("{\"rocksdb.no_such_option\": 1}", NULL, 0, "rocksdb.no_such_option", NULL);
        expect_error("{\"rocksdb.write_buffer_size\": \"lots\"}", NULL, 0,
                     "rocksdb.write_buffer_size", NULL);
        expect_error("{\"rocksdb.write_buffer_size\": [1]}", NULL, 0, "rocksdb.write_buffer_size",
                     "RocksDB option", NULL);
}

/* One key given twice through flattening ({"redis": {"url"}} and "redis.url") is a duplicate
 * too: the file says two things, and one of them would be dropped without a word. */
static void test_conf_duplicate_after_flattening(void **state)
{
        expect_error("{\"redis\": {\"url\": \"redis://a:1/0\"}, \"redis.url\": \"redis://b:1/0\"}",
                     NULL, 0, "redis.url", NULL);
        expect_error("{\"kafka\": {\"linger.ms\": 5}, \"kafka.linger.ms\": 50}", NULL, 0,
                     "kafka.linger.ms", NULL);
}

static void test_conf_processor_name(void **state)
{
        conf_t c;
        load(&c, write_conf("{\"processor\": \"like-counter\", \"max.ids\": 3}"), NULL, 0,
             "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_int_equal(c.pc.max_ids, 3);
        conf_free(&c);
        expect_error("{\"processor\": \"window-features\"}", NULL, 0, "processor",
                     "window-features", "like-counter", NULL);
        expect_error("{\"processor\": 5}", NULL, 0, "processor", "like-counter", NULL);
        expect_error("{\"processor\": \"like-counter\", \"bogus\": 1}", NULL, 0, "bogus", NULL);
}

static void test_conf_derived_defaults(void **state)
{
        conf_t c;
        /* nothing at all: every default from the tables, then the derived ones */
        load(&c, NULL, NULL, 0, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.rt.job_name, "like-counter");
        assert_string_equal(c.rt.state_dir, "./eddy-state/like-counter");
        assert_string_equal(c.rt.dlq_topic, "like-counter.dlq");
        assert_int_equal(c.rt.input_topics.n, 1);
        assert_string_equal(c.rt.input_topics.v[0], "likes");
        assert_int_equal(c.rt.kafka.n, 0);
        assert_string_equal(c.pc.prefix, "likes:");
        assert_int_equal(c.pc.max_ids, 256);
        assert_int_equal(c.pc.flag, 0);
        assert_int_equal(c.pc.names.n, 2);
        for (const eddy_prop_t *p = eddy_rt_props; p->name; p++) {
                const char *base = (const char *)&c.rt;
                if (p->type == EDDY_PROP_INT && p->defval)
                        assert_int_equal(*(const int64_t *)(base + p->offset),
                                         strtoll(p->defval, NULL, 10));
                else if (p->type == EDDY_PROP_STR && p->defval)
                        assert_string_equal(*(char *const *)(base + p->offset), p->defval);
                else if (p->type == EDDY_PROP_BOOL && p->defval)
                        assert_int_equal(*(const int *)(base + p->offset),
                                         !strcmp(p->defval, "true"));
        }
        conf_free(&c);

        /* from job.name */
        char o1[] = "job.name=my-job";
        char *ov1[] = {o1};
        load(&c, write_conf("{\"job\": {\"name\": \"file-job\"}}"), ov1, 1, "like-counter",
             "likes,more");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.rt.job_name, "my-job");
        assert_string_equal(c.rt.state_dir, "./eddy-state/my-job");
        assert_string_equal(c.rt.dlq_topic, "my-job.dlq");
        assert_int_equal(c.rt.input_topics.n, 2);
        assert_string_equal(c.rt.input_topics.v[0], "likes");
        assert_string_equal(c.rt.input_topics.v[1], "more");
        conf_free(&c);

        /* explicit values win over derived ones; an empty list falls back to the default */
        load(&c,
             write_conf("{\"job.name\": \"j\", \"state.dir\": \"/var/lib/x\","
                        " \"dlq.topic\": \"dead\", \"input.topics\": []}"),
             NULL, 0, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.rt.state_dir, "/var/lib/x");
        assert_string_equal(c.rt.dlq_topic, "dead");
        assert_int_equal(c.rt.input_topics.n, 1);
        assert_string_equal(c.rt.input_topics.v[0], "likes");
        conf_free(&c);

        /* an empty job.name is no name */
        char o2[] = "job.name=";
        char *ov2[] = {o2};
        load(&c, NULL, ov2, 1, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.rt.job_name, "like-counter");
        conf_free(&c);

        /* "input.topics=a,,b," from -X: empty names are skipped */
        char o3[] = "input.topics=a,,b,";
        char *ov3[] = {o3};
        load(&c, NULL, ov3, 1, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_int_equal(c.rt.input_topics.n, 2);
        assert_string_equal(c.rt.input_topics.v[1], "b");
        conf_free(&c);
}

/* A JSON key holds any JSON value, as compact text; an object is not flattened. */
static void test_conf_json(void **state)
{
        conf_t c;
        load(&c, NULL, NULL, 0, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.pc.json, "{\"w\":[1,2]}"); /* the default, compacted */
        conf_free(&c);
        assert_null(c.pc.json);

        load(&c, write_conf("{\"feature.json\": [1, \"a\", null, {\"b\": true}]}"), NULL, 0,
             "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.pc.json, "[1,\"a\",null,{\"b\":true}]");
        conf_free(&c);

        /* an object, nested or dotted, in file order; keys beside it are still flattened */
        const char *files[] = {
            "{\"feature\": {\"json\": {\"z\": {\"y\": 1}, \"a\": [2]}, \"flag\": true}}",
            "{\"feature.json\": {\"z\": {\"y\": 1}, \"a\": [2]}, \"feature\": {\"flag\": true}}",
        };
        for (int i = 0; i < 2; i++) {
                load(&c, write_conf(files[i]), NULL, 0, "like-counter", "likes");
                assert_int_equal(c.rc, 0);
                assert_string_equal(c.pc.json, "{\"z\":{\"y\":1},\"a\":[2]}");
                assert_int_equal(c.pc.flag, 1);
                conf_free(&c);
        }
        load(&c, write_conf("{\"feature.json\": \"text\"}"), NULL, 0, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.pc.json, "\"text\"");
        conf_free(&c);

        /* -X takes JSON text, over the file */
        char o1[] = "feature.json={ \"k\" : [ 1 , 2.5 ] }", o2[] = "feature.json=42",
             o3[] = "feature.json=\"s\"";
        char *ov[] = {o1}, *ov2[] = {o2}, *ov3[] = {o3};
        load(&c, write_conf("{\"feature.json\": [1]}"), ov, 1, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.pc.json, "{\"k\":[1,2.5]}");
        conf_free(&c);
        load(&c, NULL, ov2, 1, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.pc.json, "42");
        conf_free(&c);
        load(&c, NULL, ov3, 1, "like-counter", "likes");
        assert_int_equal(c.rc, 0);
        assert_string_equal(c.pc.json, "\"s\"");
        conf_free(&c);

        /* -X text that is not JSON: the source, the key, what was expected, jansson's why */
        char b1[] = "feature.json={bad", b2[] = "feature.json=", b3[] = "feature.json=word",
             b4[] = "feature.json={\"a\": 1, \"a\": 2}";
        char *bv1[] = {b1}, *bv2[] = {b2}, *bv3[] = {b3}, *bv4[] = {b4};
        expect_error(NULL, bv1, 1, "-X: feature.json: expected JSON: ", "expected", NULL);
        expect_error(NULL, bv2, 1, "-X: feature.json: expected JSON: ", NULL);
        expect_error(NULL, bv3, 1, "-X: feature.json: expected JSON: ", "invalid token", NULL);
        expect_error(NULL, bv4, 1, "-X: feature.json: expected JSON: ", "duplicate", NULL);

        /* a table whose default is not JSON fails every load, naming it */
        pconf_t pc;
        eddy_rtconf_t rt;
        char err[256];
        static const eddy_prop_t bad[] = {
            {"bad.json", EDDY_PROP_JSON, "[1,", 0, 0, offsetof(pconf_t, json), "broken"},
            {NULL},
        };
        memset(&pc, 0, sizeof(pc));
        memset(&rt, 0, sizeof(rt));
        assert_int_equal(eddy_conf_load(NULL, NULL, 0, "p", "t", &rt, bad, &pc, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "default: bad.json: expected JSON: "));
        eddy_conf_free(eddy_rt_props, &rt);
        eddy_conf_free(bad, &pc);

        /* --list-config shows the type and the default */
        char *text = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&text, &len);
        assert_non_null(fp);
        eddy_conf_print(fp, "keys", pprops, 0);
        eddy_conf_print(fp, "keys", pprops, 1);
        assert_int_equal(fclose(fp), 0);
        assert_non_null(
            strstr(text, "  feature.json             JSON     default={\"w\": [1, 2]}"));
        assert_non_null(strstr(text, "| `feature.json` | JSON | `{\"w\": [1, 2]}` |"));
        free(text);
}

int main(void)
{
        const struct CMUnitTest keyset[] = {
            cmocka_unit_test(test_keyset_add_and_dup),
            cmocka_unit_test(test_keyset_order_independent),
            cmocka_unit_test(test_keyset_clear_and_reuse),
            cmocka_unit_test(test_keyset_100k),
        };
        const struct CMUnitTest config[] = {
            cmocka_unit_test(test_conf_flatten),
            cmocka_unit_test(test_conf_kafka_passthrough),
            cmocka_unit_test(test_conf_overrides_win),
            cmocka_unit_test(test_conf_unknown_keys),
            cmocka_unit_test(test_conf_bad_values),
            cmocka_unit_test(test_conf_bad_files),
            cmocka_unit_test(test_conf_state_missing),
            cmocka_unit_test(test_conf_rocksdb),
            cmocka_unit_test(test_conf_duplicate_after_flattening),
            cmocka_unit_test(test_conf_processor_name),
            cmocka_unit_test(test_conf_derived_defaults),
            cmocka_unit_test(test_conf_json),
        };
        int failed = cmocka_run_group_tests_name("keyset", keyset, NULL, NULL);
        failed += cmocka_run_group_tests_name("config", config, conf_setup, conf_teardown);
        /* last: under UBSan a failure here aborts the process */
        const struct CMUnitTest keyset_edge[] = {
            cmocka_unit_test(test_keyset_empty_key),
        };
        failed += cmocka_run_group_tests_name("keyset: the empty key", keyset_edge, NULL, NULL);
        return failed;
}
