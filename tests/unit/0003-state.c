/* 0003-state.c: the RocksDB state store (state/state.h), by example and against a model. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdirs.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "state.h"

/* ---------------------------------------------------------------- helpers */

typedef struct store_s {
        char dir[64];
        eddy_state_opts_t opts;
        eddy_state_t *st;
} store_t;

static void store_open(store_t *s)
{
        char err[512];
        s->st = eddy_state_open(s->dir, &s->opts, err, sizeof(err));
        if (!s->st)
                fail_msg("eddy_state_open(%s): %s", s->dir, err);
}

static void store_init(store_t *s, int64_t cache_mb)
{
        memset(s, 0, sizeof(*s));
        snprintf(s->dir, sizeof(s->dir), "/tmp/eddy-0003-XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        live_dir(s->dir, 1);
        s->opts = (eddy_state_opts_t){cache_mb, 8, 4, 0};
        store_open(s);
}

static void store_commit(store_t *s)
{
        char err[512];
        if (eddy_state_commit(s->st, err, sizeof(err)) != 0)
                fail_msg("eddy_state_commit: %s", err);
        assert_false(eddy_state_pending(s->st));
}

/* A crash: close without committing, open again. */
static void store_reopen(store_t *s)
{
        eddy_state_close(s->st);
        store_open(s);
}

static void store_free(store_t *s)
{
        eddy_state_close(s->st);
        s->st = NULL;
        rm_rf(s->dir);
        live_dir(s->dir, 0);
}

static void put_s(store_t *s, int32_t p, const char *k, const char *v)
{
        eddy__state_put(s->st, p, k, strlen(k), v, strlen(v));
}

static void del_s(store_t *s, int32_t p, const char *k)
{
        eddy__state_del(s->st, p, k, strlen(k));
}

/* Asserts that key @p k of partition @p p holds @p want (NULL: absent). */
static void expect_s(store_t *s, int32_t p, const char *k, const char *want)
{
        const void *v = NULL;
        size_t vl = 0;
        int r = eddy__state_get(s->st, p, k, strlen(k), &v, &vl);
        if (!want) {
                if (r != 0)
                        fail_msg("partition %" PRId32 " key \"%s\": expected absent, got %d (%.*s)",
                                 p, k, r, r == 1 ? (int)vl : 0, r == 1 ? (const char *)v : "");
                return;
        }
        if (r != 1)
                fail_msg("partition %" PRId32 " key \"%s\": expected \"%s\", got %d", p, k, want,
                         r);
        if (vl != strlen(want) || memcmp(v, want, vl))
                fail_msg("partition %" PRId32 " key \"%s\": expected \"%s\", got \"%.*s\"", p, k,
                         want, (int)vl, (const char *)v);
}

/* Scan results collected as one string: key=value;... (keys and values printable here). */
typedef struct collect_s {
        char buf[8192];
        size_t len;
        int n, stop_after;
} collect_t;

static int collect_cb(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        collect_t *c = opaque;
        for (size_t i = 0; i < kl; i++) {
                unsigned char ch = ((const unsigned char *)k)[i];
                int w = ch >= 0x20 && ch < 0x7f
                            ? snprintf(c->buf + c->len, sizeof(c->buf) - c->len, "%c", ch)
                            : snprintf(c->buf + c->len, sizeof(c->buf) - c->len, "\\x%02x", ch);
                c->len += (size_t)w;
        }
        c->len += (size_t)snprintf(c->buf + c->len, sizeof(c->buf) - c->len, "=%.*s;", (int)vl,
                                   (const char *)v);
        assert_true(c->len < sizeof(c->buf) - 64);
        c->n++;
        return c->stop_after && c->n >= c->stop_after;
}

static const char *scan_s(store_t *s, int32_t p, const void *prefix, size_t plen, collect_t *c)
{
        memset(c, 0, sizeof(*c));
        int r = eddy__state_scan(s->st, p, prefix, plen, collect_cb, c);
        assert_int_equal(r, c->n);
        return c->buf;
}

/* ---------------------------------------------------------------- by example */

/* Reads see the batch in flight; a close without commit loses it; a commit keeps it. */
static void test_read_your_writes_and_commit(void **state)
{
        store_t s;
        store_init(&s, 16);
        assert_false(eddy_state_pending(s.st));
        expect_s(&s, 0, "a", NULL);
        put_s(&s, 0, "a", "1");
        assert_true(eddy_state_pending(s.st));
        expect_s(&s, 0, "a", "1");
        put_s(&s, 0, "a", "a much longer value than before, to grow the entry");
        expect_s(&s, 0, "a", "a much longer value than before, to grow the entry");
        put_s(&s, 0, "a", "2");
        expect_s(&s, 0, "a", "2");
        put_s(&s, 0, "b", "x");
        del_s(&s, 0, "b");
        expect_s(&s, 0, "b", NULL);
        del_s(&s, 0, "never");
        expect_s(&s, 0, "never", NULL);
        /* an empty value is present, not absent */
        eddy__state_put(s.st, 0, "empty", 5, "", 0);
        const void *v;
        size_t vl = 99;
        assert_int_equal(eddy__state_get(s.st, 0, "empty", 5, &v, &vl), 1);
        assert_int_equal(vl, 0);
        /* binary keys: NUL bytes inside, 0xff bytes, and the empty key */
        eddy__state_put(s.st, 0, "k\0a", 3, "nul-a", 5);
        eddy__state_put(s.st, 0, "k\0b", 3, "nul-b", 5);
        eddy__state_put(s.st, 0, "k", 1, "plain", 5);
        eddy__state_put(s.st, 0, "", 0, "empty-key", 9);
        assert_int_equal(eddy__state_get(s.st, 0, "k\0a", 3, &v, &vl), 1);
        assert_memory_equal(v, "nul-a", 5);
        assert_int_equal(eddy__state_get(s.st, 0, "", 0, &v, &vl), 1);
        assert_memory_equal(v, "empty-key", 9);

        /* a crash: nothing of it survives */
        store_reopen(&s);
        assert_false(eddy_state_pending(s.st));
        expect_s(&s, 0, "a", NULL);
        expect_s(&s, 0, "k", NULL);
        assert_int_equal(eddy__state_get(s.st, 0, "", 0, &v, &vl), 0);

        /* again, committed this time */
        put_s(&s, 0, "a", "2");
        put_s(&s, 0, "b", "x");
        eddy__state_put(s.st, 0, "empty", 5, "", 0);
        eddy__state_put(s.st, 0, "k\0a", 3, "nul-a", 5);
        eddy__state_put(s.st, 0, "", 0, "empty-key", 9);
        store_commit(&s);
        expect_s(&s, 0, "a", "2");
        store_reopen(&s);
        expect_s(&s, 0, "a", "2");
        expect_s(&s, 0, "b", "x");
        assert_int_equal(eddy__state_get(s.st, 0, "empty", 5, &v, &vl), 1);
        assert_int_equal(vl, 0);
        assert_int_equal(eddy__state_get(s.st, 0, "k\0a", 3, &v, &vl), 1);
        assert_memory_equal(v, "nul-a", 5);
        assert_int_equal(eddy__state_get(s.st, 0, "k\0b", 3, &v, &vl), 0);
        assert_int_equal(eddy__state_get(s.st, 0, "", 0, &v, &vl), 1);
        assert_memory_equal(v, "empty-key", 9);

        /* a committed delete, and a delete lost in a crash */
        del_s(&s, 0, "a");
        store_commit(&s);
        del_s(&s, 0, "b");
        put_s(&s, 0, "c", "new");
        expect_s(&s, 0, "b", NULL);
        store_reopen(&s);
        expect_s(&s, 0, "a", NULL);
        expect_s(&s, 0, "b", "x");
        expect_s(&s, 0, "c", NULL);

        /* a value written many times in a batch is one committed value */
        char num[32];
        for (int i = 0; i < 1000; i++) {
                snprintf(num, sizeof(num), "%d", i);
                put_s(&s, 0, "hot", num);
        }
        store_commit(&s);
        store_reopen(&s);
        expect_s(&s, 0, "hot", "999");
        store_free(&s);
}

/* Scans: the batch in flight merged with committed state, key order, prefix bounds, 0xff
 * prefixes, early stop. */
static void test_scan_order_and_prefix_bounds(void **state)
{
        store_t s;
        store_init(&s, 16);
        /* inserted out of order, in partitions around the one scanned */
        static const char *const keys[] = {"b",    "a\xff", "a",    "ab",  "a\xff\xff", "aa",
                                           "\xff", "a\x01", "\xfe", "b\0", "\xff\xff",  "c"};
        static const size_t lens[] = {1, 2, 1, 2, 3, 2, 1, 2, 1, 2, 2, 1};
        const int32_t parts[] = {7, 6, 8, 255, 256};
        for (size_t pi = 0; pi < sizeof(parts) / sizeof(*parts); pi++)
                for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
                        char v[16];
                        int vl = snprintf(v, sizeof(v), "%" PRId32 ".%zu", parts[pi], i);
                        eddy__state_put(s.st, parts[pi], keys[i], lens[i], v, (size_t)vl);
                }
        collect_t c;
        /* uncommitted: seen by a scan, in key order */
        assert_string_equal(scan_s(&s, 7, "a\xff", 2, &c), "a\\xff=7.1;a\\xff\\xff=7.4;");
        store_commit(&s);

        assert_string_equal(scan_s(&s, 7, "", 0, &c),
                            "a=7.2;a\\x01=7.7;aa=7.5;ab=7.3;a\\xff=7.1;a\\xff\\xff=7.4;b=7.0;"
                            "b\\x00=7.9;c=7.11;\\xfe=7.8;\\xff=7.6;\\xff\\xff=7.10;");
        assert_string_equal(scan_s(&s, 7, "a", 1, &c),
                            "a=7.2;a\\x01=7.7;aa=7.5;ab=7.3;a\\xff=7.1;a\\xff\\xff=7.4;");
        assert_string_equal(scan_s(&s, 7, "a\xff", 2, &c), "a\\xff=7.1;a\\xff\\xff=7.4;");
        assert_string_equal(scan_s(&s, 7, "a\xff\xff", 3, &c), "a\\xff\\xff=7.4;");
        assert_string_equal(scan_s(&s, 7, "b", 1, &c), "b=7.0;b\\x00=7.9;");
        assert_string_equal(scan_s(&s, 7, "b\0", 2, &c), "b\\x00=7.9;");
        assert_string_equal(scan_s(&s, 7, "\xff", 1, &c), "\\xff=7.6;\\xff\\xff=7.10;");
        assert_string_equal(scan_s(&s, 7, "\xff\xff", 2, &c), "\\xff\\xff=7.10;");
        assert_string_equal(scan_s(&s, 7, "\xff\xff\xff", 3, &c), "");
        assert_string_equal(scan_s(&s, 7, "zz", 2, &c), "");
        /* partition 255: a prefix of 0xff bytes carries into the partition number */
        assert_string_equal(scan_s(&s, 255, "\xff", 1, &c), "\\xff=255.6;\\xff\\xff=255.10;");
        assert_string_equal(scan_s(&s, 255, "", 0, &c),
                            "a=255.2;a\\x01=255.7;aa=255.5;ab=255.3;a\\xff=255.1;a\\xff\\xff=255.4;"
                            "b=255.0;b\\x00=255.9;c=255.11;\\xfe=255.8;\\xff=255.6;\\xff\\xff=255."
                            "10;");
        assert_string_equal(scan_s(&s, 256, "a\xff", 2, &c), "a\\xff=256.1;a\\xff\\xff=256.4;");
        /* a partition with nothing, between ones with data */
        assert_string_equal(scan_s(&s, 9, "", 0, &c), "");
        assert_string_equal(scan_s(&s, 254, "\xff", 1, &c), "");

        /* the callback stops the scan */
        memset(&c, 0, sizeof(c));
        c.stop_after = 3;
        assert_int_equal(eddy__state_scan(s.st, 7, "", 0, collect_cb, &c), 3);
        assert_string_equal(c.buf, "a=7.2;a\\x01=7.7;aa=7.5;");

        /* the batch in flight over committed keys: an update, a delete, a new key before,
         * between and after the committed ones */
        eddy__state_put(s.st, 7, "aa", 2, "new", 3);
        eddy__state_del(s.st, 7, "ab", 2);
        eddy__state_put(s.st, 7, "a\x00", 2, "n0", 2);
        eddy__state_put(s.st, 7, "a\x02", 2, "n2", 2);
        eddy__state_put(s.st, 7, "a\xff\xff\xff", 4, "n3", 2);
        eddy__state_put(s.st, 8, "a\x03", 2, "other", 5);
        assert_string_equal(
            scan_s(&s, 7, "a", 1, &c),
            "a=7.2;a\\x00=n0;a\\x01=7.7;a\\x02=n2;aa=new;a\\xff=7.1;a\\xff\\xff=7.4;"
            "a\\xff\\xff\\xff=n3;");
        memset(&c, 0, sizeof(c));
        c.stop_after = 2;
        assert_int_equal(eddy__state_scan(s.st, 7, "a", 1, collect_cb, &c), 2);
        assert_string_equal(c.buf, "a=7.2;a\\x00=n0;");
        store_reopen(&s); /* never committed: gone */
        assert_string_equal(scan_s(&s, 7, "a", 1, &c),
                            "a=7.2;a\\x01=7.7;aa=7.5;ab=7.3;a\\xff=7.1;a\\xff\\xff=7.4;");

        /* scans see committed deletes, after a reopen too */
        eddy__state_del(s.st, 7, "a\xff", 2);
        store_commit(&s);
        assert_string_equal(scan_s(&s, 7, "a\xff", 2, &c), "a\\xff\\xff=7.4;");
        store_reopen(&s);
        assert_string_equal(scan_s(&s, 7, "a\xff", 2, &c), "a\\xff\\xff=7.4;");
        assert_string_equal(scan_s(&s, 6, "a\xff", 2, &c), "a\\xff=6.1;a\\xff\\xff=6.4;");
        store_free(&s);
}

/* The top partition numbers: all-0xff partition bytes and prefixes. */
static void test_scan_top_partition(void **state)
{
        store_t s;
        store_init(&s, 16);
        const int32_t top = INT32_MAX, neg = -1; /* 0x7fffffff, 0xffffffff */
        put_s(&s, top, "\xff", "top-ff");
        put_s(&s, top, "a", "top-a");
        put_s(&s, neg, "\xff\xff", "neg-ffff");
        put_s(&s, neg, "a", "neg-a");
        put_s(&s, 0, "a", "zero-a");
        store_commit(&s);
        collect_t c;
        assert_string_equal(scan_s(&s, top, "", 0, &c), "a=top-a;\\xff=top-ff;");
        assert_string_equal(scan_s(&s, top, "\xff", 1, &c), "\\xff=top-ff;");
        assert_string_equal(scan_s(&s, neg, "", 0, &c), "a=neg-a;\\xff\\xff=neg-ffff;");
        assert_string_equal(scan_s(&s, neg, "\xff", 1, &c), "\\xff\\xff=neg-ffff;");
        assert_string_equal(scan_s(&s, 0, "", 0, &c), "a=zero-a;");
        expect_s(&s, neg, "\xff\xff", "neg-ffff");
        /* the last partition number can be dropped without touching the others */
        eddy_state_drop_partition(s.st, neg);
        store_commit(&s);
        assert_string_equal(scan_s(&s, neg, "", 0, &c), "");
        assert_string_equal(scan_s(&s, top, "", 0, &c), "a=top-a;\\xff=top-ff;");
        expect_s(&s, top, "a", "top-a");
        expect_s(&s, 0, "a", "zero-a");
        store_free(&s);
}

/* The same key in different partitions; dropping one partition leaves the others. */
static void test_partition_isolation_and_drop(void **state)
{
        store_t s;
        store_init(&s, 16);
        for (int32_t p = 0; p < 4; p++) {
                char v[16];
                snprintf(v, sizeof(v), "v%" PRId32, p);
                put_s(&s, p, "k", v);
                put_s(&s, p, "k2", v);
                eddy_state_fence_set(s.st, p, 100 + p, p);
                eddy_state_offset_set(s.st, "likes", p, 1000 + p);
        }
        store_commit(&s);
        for (int32_t p = 0; p < 4; p++) {
                char v[16];
                snprintf(v, sizeof(v), "v%" PRId32, p);
                expect_s(&s, p, "k", v);
        }
        expect_s(&s, 4, "k", NULL);
        /* (partition 1, "k\0\0\0\x02") must not meet (partition 2, "k") in key space */
        eddy__state_put(s.st, 1, "k\0\0\0\x02", 5, "tricky", 6);
        store_commit(&s);
        expect_s(&s, 2, "k", "v2");

        expect_s(&s, 1, "k", "v1"); /* cached before the drop */
        eddy_state_drop_partition(s.st, 1);
        assert_true(eddy_state_pending(s.st));
        store_commit(&s);
        expect_s(&s, 1, "k", NULL);
        expect_s(&s, 1, "k2", NULL);
        expect_s(&s, 0, "k", "v0");
        expect_s(&s, 2, "k", "v2");
        collect_t c;
        assert_string_equal(scan_s(&s, 1, "", 0, &c), "");
        assert_string_equal(scan_s(&s, 2, "", 0, &c), "k=v2;k2=v2;");
        int64_t pos, seq, off;
        assert_int_equal(eddy_state_fence_get(s.st, 1, &pos, &seq), 0);
        assert_int_equal(eddy_state_fence_get(s.st, 2, &pos, &seq), 1);
        assert_int_equal(pos, 102);
        assert_int_equal(seq, 2);
        /* offsets are not state: a replay sets them itself */
        assert_int_equal(eddy_state_offset_get(s.st, "likes", 1, &off), 1);
        assert_int_equal(off, 1001);
        store_reopen(&s);
        expect_s(&s, 1, "k", NULL);
        expect_s(&s, 0, "k2", "v0");
        expect_s(&s, 3, "k2", "v3");

        /* a drop, then new writes to the partition in the same commit: the writes stay */
        put_s(&s, 3, "old", "x");
        store_commit(&s);
        put_s(&s, 3, "dirty-before-drop", "x");
        eddy_state_drop_partition(s.st, 3);
        put_s(&s, 3, "after", "y");
        expect_s(&s, 3, "after", "y");
        store_commit(&s);
        store_reopen(&s);
        expect_s(&s, 3, "after", "y");
        expect_s(&s, 3, "old", NULL);
        expect_s(&s, 3, "dirty-before-drop", NULL);
        expect_s(&s, 3, "k", NULL);
        assert_string_equal(scan_s(&s, 3, "", 0, &c), "after=y;");
        store_free(&s);
}

/* A read between eddy_state_drop_partition() and the commit must not leave the dropped
 * value in the cache: after the commit the key is gone, in RocksDB and to readers. */
static void test_drop_then_read_before_commit(void **state)
{
        store_t s;
        store_init(&s, 16);
        put_s(&s, 5, "k", "old");
        store_commit(&s);
        store_reopen(&s); /* nothing cached */
        eddy_state_drop_partition(s.st, 5);
        const void *v;
        size_t vl;
        int before = eddy__state_get(s.st, 5, "k", 1, &v, &vl);
        store_commit(&s);
        collect_t c;
        scan_s(&s, 5, "", 0, &c);
        int in_rocksdb = c.n;
        int after = eddy__state_get(s.st, 5, "k", 1, &v, &vl);
        char got[16] = "";
        if (after == 1)
                snprintf(got, sizeof(got), "%.*s", (int)vl, (const char *)v);
        store_free(&s);
        assert_int_equal(in_rocksdb, 0);
        if (after != 0)
                fail_msg("partition 5 was dropped and committed, yet a get returns %d (\"%s\"): "
                         "the get between the drop and the commit (it returned %d) cached the "
                         "committed value, and the commit did not forget it",
                         after, got, before);
}

/* Offsets and fences: not visible before the commit, kept by it, lost in a crash. */
static void test_offsets_and_fences(void **state)
{
        store_t s;
        store_init(&s, 16);
        int64_t off = -7, pos = -7, seq = -7;
        assert_int_equal(eddy_state_offset_get(s.st, "likes", 0, &off), 0);
        assert_int_equal(eddy_state_fence_get(s.st, 0, &pos, &seq), 0);
        eddy_state_offset_set(s.st, "likes", 0, 42);
        eddy_state_offset_set(s.st, "likes", 1, 0);
        eddy_state_offset_set(s.st, "likes2", 0, INT64_MAX);
        eddy_state_offset_set(s.st, "like", 0, 5); /* a prefix of another topic's name */
        eddy_state_fence_set(s.st, 0, 41, 3);
        eddy_state_fence_set(s.st, 1, INT64_MAX, INT64_MAX - 1);
        assert_true(eddy_state_pending(s.st));
        assert_int_equal(eddy_state_offset_get(s.st, "likes", 0, &off), 0);
        assert_int_equal(eddy_state_fence_get(s.st, 0, &pos, &seq), 0);
        store_commit(&s);
        store_reopen(&s);
        assert_int_equal(eddy_state_offset_get(s.st, "likes", 0, &off), 1);
        assert_int_equal(off, 42);
        assert_int_equal(eddy_state_offset_get(s.st, "likes", 1, &off), 1);
        assert_int_equal(off, 0);
        assert_int_equal(eddy_state_offset_get(s.st, "likes2", 0, &off), 1);
        assert_int_equal(off, INT64_MAX);
        assert_int_equal(eddy_state_offset_get(s.st, "like", 0, &off), 1);
        assert_int_equal(off, 5);
        assert_int_equal(eddy_state_offset_get(s.st, "likes", 2, &off), 0);
        assert_int_equal(eddy_state_offset_get(s.st, "other", 0, &off), 0);
        assert_int_equal(eddy_state_fence_get(s.st, 0, &pos, &seq), 1);
        assert_int_equal(pos, 41);
        assert_int_equal(seq, 3);
        assert_int_equal(eddy_state_fence_get(s.st, 1, &pos, &seq), 1);
        assert_int_equal(pos, INT64_MAX);
        assert_int_equal(seq, INT64_MAX - 1);
        assert_int_equal(eddy_state_fence_get(s.st, 2, &pos, &seq), 0);
        /* overwritten, then a crash: the committed values stay */
        eddy_state_offset_set(s.st, "likes", 0, 43);
        eddy_state_fence_set(s.st, 0, 42, 0);
        store_reopen(&s);
        assert_int_equal(eddy_state_offset_get(s.st, "likes", 0, &off), 1);
        assert_int_equal(off, 42);
        assert_int_equal(eddy_state_fence_get(s.st, 0, &pos, &seq), 1);
        assert_int_equal(pos, 41);
        /* offsets, fences and state in one commit: all or nothing */
        eddy_state_offset_set(s.st, "likes", 0, 50);
        eddy_state_fence_set(s.st, 0, 49, 0);
        put_s(&s, 0, "with-offset", "50");
        store_commit(&s);
        store_reopen(&s);
        assert_int_equal(eddy_state_offset_get(s.st, "likes", 0, &off), 1);
        assert_int_equal(off, 50);
        assert_int_equal(eddy_state_fence_get(s.st, 0, &pos, &seq), 1);
        assert_int_equal(pos, 49);
        assert_int_equal(seq, 0);
        expect_s(&s, 0, "with-offset", "50");
        store_free(&s);
}

typedef struct obx_s {
        uint64_t seq[64];
        char data[64][32];
        size_t len[64];
        int n, stop_after;
} obx_t;

static int obx_cb(void *opaque, uint64_t seq, const void *e, size_t len)
{
        obx_t *o = opaque;
        assert_true(o->n < 64 && len < 32);
        o->seq[o->n] = seq;
        memcpy(o->data[o->n], e, len);
        o->data[o->n][len] = '\0';
        o->len[o->n] = len;
        o->n++;
        return o->stop_after && o->n >= o->stop_after;
}

static void obx_scan(store_t *s, obx_t *o)
{
        memset(o, 0, sizeof(*o));
        int r = eddy_state_outbox_scan(s->st, obx_cb, o);
        assert_int_equal(r, o->n);
        for (int i = 1; i < o->n; i++)
                assert_true(o->seq[i - 1] < o->seq[i]);
}

/* The outbox: entries in order, removed when done, and a sequence that goes on. */
static void test_outbox(void **state)
{
        store_t s;
        store_init(&s, 16);
        obx_t o;
        uint64_t a = eddy_state_outbox_add(s.st, "A", 1);
        uint64_t b = eddy_state_outbox_add(s.st, "BB", 2);
        uint64_t e = eddy_state_outbox_add(s.st, "", 0);
        assert_true(a < b && b < e);
        obx_scan(&s, &o);
        assert_int_equal(o.n, 0); /* not committed yet */
        store_commit(&s);
        uint64_t c = eddy_state_outbox_add(s.st, "C", 1);
        assert_true(e < c);
        store_commit(&s);
        obx_scan(&s, &o);
        assert_int_equal(o.n, 4);
        assert_int_equal(o.seq[0], a);
        assert_string_equal(o.data[0], "A");
        assert_int_equal(o.seq[1], b);
        assert_string_equal(o.data[1], "BB");
        assert_int_equal(o.seq[2], e);
        assert_int_equal(o.len[2], 0);
        assert_int_equal(o.seq[3], c);
        assert_string_equal(o.data[3], "C");

        /* early stop */
        memset(&o, 0, sizeof(o));
        o.stop_after = 2;
        assert_int_equal(eddy_state_outbox_scan(s.st, obx_cb, &o), 2);

        /* done: removed at the commit; lost in a crash if not committed */
        eddy_state_outbox_done(s.st, b);
        obx_scan(&s, &o);
        assert_int_equal(o.n, 4);
        store_commit(&s);
        obx_scan(&s, &o);
        assert_int_equal(o.n, 3);
        assert_int_equal(o.seq[0], a);
        assert_int_equal(o.seq[1], e);
        assert_int_equal(o.seq[2], c);
        eddy_state_outbox_done(s.st, a);
        uint64_t lost = eddy_state_outbox_add(s.st, "lost", 4);
        assert_true(lost > c);
        store_reopen(&s);
        obx_scan(&s, &o);
        assert_int_equal(o.n, 3);
        assert_int_equal(o.seq[0], a);

        /* after a reopen the sequence continues after the last committed entry */
        uint64_t d = eddy_state_outbox_add(s.st, "D", 1);
        assert_true(d > c);
        eddy_state_outbox_done(s.st, a);
        store_commit(&s);
        store_reopen(&s);
        uint64_t f = eddy_state_outbox_add(s.st, "F", 1);
        assert_true(f > d);
        store_commit(&s);
        obx_scan(&s, &o);
        assert_int_equal(o.n, 4);
        assert_int_equal(o.seq[0], e);
        assert_int_equal(o.seq[1], c);
        assert_int_equal(o.seq[2], d);
        assert_string_equal(o.data[2], "D");
        assert_int_equal(o.seq[3], f);
        assert_string_equal(o.data[3], "F");

        /* done of the first entries while later ones stay: order still by sequence */
        eddy_state_outbox_done(s.st, e);
        eddy_state_outbox_done(s.st, c);
        uint64_t g = eddy_state_outbox_add(s.st, "G", 1);
        store_commit(&s);
        store_reopen(&s);
        obx_scan(&s, &o);
        assert_int_equal(o.n, 3);
        assert_int_equal(o.seq[0], d);
        assert_int_equal(o.seq[1], f);
        assert_int_equal(o.seq[2], g);
        uint64_t h = eddy_state_outbox_add(s.st, "H", 1);
        assert_true(h > g);
        store_commit(&s);

        /* the outbox is not processor state: scans and drops do not see it */
        put_s(&s, 0, "x", "1");
        eddy_state_drop_partition(s.st, 0);
        store_commit(&s);
        obx_scan(&s, &o);
        assert_int_equal(o.n, 4);
        store_free(&s);
}

/* The segment files under <state.dir>/outbox: as many as hold entries not done. */
static int count_segments(const store_t *s)
{
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "ls %s/outbox | grep -c '^[0-9a-f]\\{16\\}\\.seg$'", s->dir);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        int n = -1;
        assert_int_equal(fscanf(f, "%d", &n), 1);
        pclose(f);
        return n;
}

typedef struct big_s {
        uint64_t seq[8];
        size_t len[8];
        char first[8], last[8];
        int n;
} big_t;

static int big_cb(void *opaque, uint64_t seq, const void *e, size_t len)
{
        big_t *b = opaque;
        assert_true(b->n < 8);
        b->seq[b->n] = seq;
        b->len[b->n] = len;
        b->first[b->n] = len ? ((const char *)e)[0] : 0;
        b->last[b->n] = len ? ((const char *)e)[len - 1] : 0;
        b->n++;
        return 0;
}

static void big_scan(store_t *s, big_t *b)
{
        memset(b, 0, sizeof(*b));
        int n = eddy_state_outbox_scan(s->st, big_cb, b);
        assert_int_equal(n, b->n);
}

/* Entries go to segment files: a big entry starts a new one, a segment goes when all of its
 * entries are done, a start removes segments nothing points at (a crash between the append
 * and the commit), entries stored inline by older binaries still read, and a missing
 * segment is an error, not an empty outbox. */
static void outbox_segments(int sync)
{
        store_t s;
        store_init(&s, 16);
        if (sync) {
                eddy_state_close(s.st);
                s.opts.sync = 1;
                store_open(&s);
        }
        big_t b;
        size_t big = (size_t)40 << 20; /* two of them do not fit one 64 MiB segment */
        char *b1 = malloc(big), *b2 = malloc(big);
        assert_non_null(b1);
        assert_non_null(b2);
        memset(b1, 'x', big);
        memset(b2, 'y', big);
        b1[big - 1] = 'X';
        uint64_t a = eddy_state_outbox_add(s.st, "A", 1);
        store_commit(&s);
        uint64_t x = eddy_state_outbox_add(s.st, b1, big);
        store_commit(&s);
        uint64_t y = eddy_state_outbox_add(s.st, b2, big);
        store_commit(&s);
        free(b1);
        free(b2);
        assert_int_equal(count_segments(&s), 2); /* {a, x} and {y} */

        store_reopen(&s);
        big_scan(&s, &b);
        assert_int_equal(b.n, 3);
        assert_int_equal(b.seq[0], a);
        assert_int_equal(b.len[0], 1);
        assert_int_equal(b.first[0], 'A');
        assert_int_equal(b.seq[1], x);
        assert_int_equal(b.len[1], big);
        assert_int_equal(b.first[1], 'x');
        assert_int_equal(b.last[1], 'X');
        assert_int_equal(b.seq[2], y);
        assert_int_equal(b.len[2], big);
        assert_int_equal(b.last[2], 'y');

        /* a and x done: their segment goes; a start appends to a new segment */
        eddy_state_outbox_done(s.st, a);
        eddy_state_outbox_done(s.st, x);
        uint64_t c = eddy_state_outbox_add(s.st, "C", 1);
        store_commit(&s);
        assert_int_equal(count_segments(&s), 2); /* {y} and {c} */
        big_scan(&s, &b);
        assert_int_equal(b.n, 2);
        assert_int_equal(b.seq[0], y);
        assert_int_equal(b.seq[1], c);

        /* a segment no committed entry points at (written before a crash) goes at the start */
        char path[256];
        snprintf(path, sizeof(path), "%s/outbox/%016" PRIx64 ".seg", s.dir, c + 1);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("garbage", f);
        fclose(f);
        assert_int_equal(count_segments(&s), 3);
        store_reopen(&s);
        assert_int_equal(count_segments(&s), 2);

        /* an entry stored inline, as binaries before segments did, reads as before */
        unsigned char k[9] = {EDDY_NS_OUTBOX};
        uint64_t old = c + 100;
        for (int i = 0; i < 8; i++)
                k[1 + i] = (unsigned char)(old >> (56 - 8 * i));
        eddy_state_raw_put(s.st, k, sizeof(k), "inline", 6);
        store_commit(&s);
        store_reopen(&s);
        big_scan(&s, &b);
        assert_int_equal(b.n, 3);
        assert_int_equal(b.seq[2], old);
        assert_int_equal(b.len[2], 6);
        assert_int_equal(b.first[2], 'i');
        eddy_state_outbox_done(s.st, y);
        eddy_state_outbox_done(s.st, c);
        eddy_state_outbox_done(s.st, old);
        uint64_t d = eddy_state_outbox_add(s.st, "D", 1);
        assert_true(d > old); /* the sequence goes on after the inline entry */
        store_commit(&s);
        assert_int_equal(count_segments(&s), 1); /* {d} */
        big_scan(&s, &b);
        assert_int_equal(b.n, 1);
        assert_int_equal(b.seq[0], d);

        /* a missing segment: the scan fails */
        snprintf(path, sizeof(path), "%s/outbox/%016" PRIx64 ".seg", s.dir, d);
        assert_int_equal(unlink(path), 0);
        memset(&b, 0, sizeof(b));
        assert_int_equal(eddy_state_outbox_scan(s.st, big_cb, &b), -1);
        assert_int_equal(b.n, 0);
        store_free(&s);
}

static void test_outbox_segments(void **state)
{
        outbox_segments(0);
}

/* The same with state.sync, whose segments are written with O_DIRECT. */
static void test_outbox_segments_sync(void **state)
{
        outbox_segments(1);
}

typedef struct bytes_s {
        size_t n;
        uint64_t seq[32];
        unsigned char *e[32];
        size_t len[32];
} bytes_t;

static int bytes_cb(void *opaque, uint64_t seq, const void *e, size_t len)
{
        bytes_t *b = opaque;
        assert_true(b->n < 32);
        b->seq[b->n] = seq;
        b->len[b->n] = len;
        b->e[b->n] = malloc(len ? len : 1);
        assert_non_null(b->e[b->n]);
        memcpy(b->e[b->n], e, len);
        b->n++;
        return 0;
}

static void bytes_free(bytes_t *b)
{
        for (size_t i = 0; i < b->n; i++)
                free(b->e[i]);
        b->n = 0;
}

/* A file system that refuses O_DIRECT writes (EINVAL), as some do: with refuse_direct set,
 * pwritev() refuses any file opened with O_DIRECT. With refuse_direct_open set, open() refuses
 * O_DIRECT itself, as tmpfs did before Linux 6.6. Both stand in for libc's in this binary. */
static int refuse_direct, refuse_direct_open, refused;

int open(const char *path, int flags, ...)
{
        static int (*real)(const char *, int, ...);
        if (!real)
                *(void **)&real = dlsym(RTLD_NEXT, "open");
        assert_non_null(real);
        mode_t mode = 0;
        if (flags & (O_CREAT | O_TMPFILE)) {
                va_list ap;
                va_start(ap, flags);
                mode = va_arg(ap, mode_t);
                va_end(ap);
        }
        if (refuse_direct_open && (flags & O_DIRECT)) {
                refused++;
                errno = EINVAL;
                return -1;
        }
        return real(path, flags, mode);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
        static ssize_t (*real)(int, const struct iovec *, int, off_t);
        if (!real)
                *(void **)&real = dlsym(RTLD_NEXT, "pwritev");
        assert_non_null(real);
        int fl = refuse_direct ? fcntl(fd, F_GETFL) : 0;
        if (fl > 0 && (fl & O_DIRECT)) {
                refused++;
                errno = EINVAL;
                return -1;
        }
        return real(fd, iov, n, off);
}

/* state.sync: entries of every length around the 4096-byte blocks O_DIRECT writes, from
 * aligned buffers (eddy_state_outbox_buf: whole blocks go uncopied) and unaligned ones, one
 * or several per commit, read back byte for byte after a restart; the segment is whole
 * blocks, every entry starting one. Then the same where the file system refuses O_DIRECT
 * writes, and where it refuses O_DIRECT at open (the same layout, through the cache), and
 * without sync (no padding). */
static void test_outbox_direct(void **state)
{
        static const size_t lens[] = {1, 4079, 4080, 4095, 4096, 4097, 8192, 3 * 4096 + 17, 100000};
        enum { NL = sizeof(lens) / sizeof(lens[0]) };
        for (int mode = 0; mode < 4; mode++) {
                int sync = mode < 3;
                refuse_direct = mode == 1;
                refuse_direct_open = mode == 2;
                refused = 0;
                store_t s;
                store_init(&s, 16);
                eddy_state_close(s.st);
                s.opts.sync = sync;
                store_open(&s);
                unsigned char *bufs[2 * NL];
                const unsigned char *ptrs[2 * NL];
                uint64_t seqs[2 * NL];
                for (size_t i = 0; i < 2 * NL; i++) {
                        size_t len = lens[i % NL];
                        int aligned = i < NL;
                        bufs[i] = aligned ? eddy_state_outbox_buf(len) : malloc(len + 1);
                        assert_non_null(bufs[i]);
                        unsigned char *p = aligned ? bufs[i] : bufs[i] + 1;
                        for (size_t k = 0; k < len; k++)
                                p[k] = (unsigned char)(k * 31 + i * 7 + (k >> 12));
                        ptrs[i] = p;
                        seqs[i] = eddy_state_outbox_add(s.st, p, len);
                        if (i % 3 == 2) /* three entries per commit */
                                store_commit(&s);
                }
                store_commit(&s);
                char path[256];
                snprintf(path, sizeof(path), "%s/outbox/%016" PRIx64 ".seg", s.dir, seqs[0]);
                struct stat sb;
                assert_int_equal(stat(path, &sb), 0);
                size_t want = 0;
                for (size_t i = 0; i < 2 * NL; i++) {
                        size_t len = lens[i % NL];
                        want = sync ? want + 4096 + (len + 4095) / 4096 * 4096 : want + 16 + len;
                }
                assert_int_equal((size_t)sb.st_size, want);
                store_reopen(&s);
                bytes_t b = {0};
                assert_int_equal(eddy_state_outbox_scan(s.st, bytes_cb, &b), 2 * NL);
                assert_int_equal(b.n, 2 * NL);
                for (size_t i = 0; i < 2 * NL; i++) {
                        assert_int_equal(b.seq[i], seqs[i]);
                        assert_int_equal(b.len[i], lens[i % NL]);
                        assert_memory_equal(b.e[i], ptrs[i], b.len[i]);
                        free(bufs[i]);
                }
                bytes_free(&b);
                store_free(&s);
                /* refused once, by the first write or open; then the flag is off */
                assert_int_equal(refused, mode == 1 || mode == 2);
        }
        refuse_direct = refuse_direct_open = 0;
}

/* 300,000 keys: the slot table grows past 2 MiB (mapped on its own, huge pages asked for)
 * and every key stays readable, before and after a commit, and after a reopen (from RocksDB
 * into a new table). */
static void test_cache_large_table(void **state)
{
        store_t s;
        store_init(&s, 256);
        enum { N = 300000 };
        for (int i = 0; i < N; i++) {
                char k[32];
                int kl = snprintf(k, sizeof(k), "big-%07d", i);
                eddy__state_put(s.st, i % 4, k, (size_t)kl, &i, sizeof(i));
        }
        for (int round = 0; round < 3; round++) {
                if (round == 1)
                        store_commit(&s);
                if (round == 2)
                        store_reopen(&s);
                eddy_state_stats_t st;
                eddy_state_stats(s.st, &st);
                for (int i = 0; i < N; i++) {
                        char k[32];
                        int kl = snprintf(k, sizeof(k), "big-%07d", i);
                        const void *v;
                        size_t vl;
                        int x;
                        assert_int_equal(eddy__state_get(s.st, i % 4, k, (size_t)kl, &v, &vl), 1);
                        assert_int_equal(vl, sizeof(x));
                        memcpy(&x, v, sizeof(x));
                        if (x != i)
                                fail_msg("key %s holds %d", k, x);
                }
                if (round < 2)
                        assert_true(st.cache_entries >= N);
                assert_int_equal(eddy__state_check(s.st), 0);
        }
        store_free(&s);
}

/* Evictions delete entries in place (each cluster shifted back): over random updates,
 * reads and commits with a 1 MiB cache, every cached entry stays reachable from its home slot,
 * and every key reads its last value. */
static void test_cache_evict_in_place(void **state)
{
        store_t s;
        store_init(&s, 1);
        enum { N = 40000, ROUNDS = 12 };
        int *model = calloc(N, sizeof(int));
        assert_non_null(model);
        uint64_t x = 0x9E3779B97F4A7C15ULL;
        int64_t evictions = 0;
        for (int round = 0; round < ROUNDS; round++) {
                for (int u = 0; u < N; u++) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        int i = (int)(x % N);
                        char k[32], v[64];
                        int kl = snprintf(k, sizeof(k), "ev-%06d", i);
                        model[i] = round * N + u + 1;
                        memset(v, 'a' + i % 26, sizeof(v));
                        memcpy(v, &model[i], sizeof(int));
                        eddy__state_put(s.st, i % 5, k, (size_t)kl, v, sizeof(v));
                        if (u % 7 == 0) { /* reads of other keys pull entries back in */
                                const void *g;
                                size_t gl;
                                int j = (int)((x >> 20) % N);
                                kl = snprintf(k, sizeof(k), "ev-%06d", j);
                                int r = eddy__state_get(s.st, j % 5, k, (size_t)kl, &g, &gl);
                                assert_int_equal(r, model[j] != 0);
                                if (r)
                                        assert_memory_equal(g, &model[j], sizeof(int));
                        }
                }
                store_commit(&s);
                assert_int_equal(eddy__state_check(s.st), 0);
                for (int i = 0; i < N; i += 3) {
                        char k[32];
                        int kl = snprintf(k, sizeof(k), "ev-%06d", i);
                        const void *g;
                        size_t gl;
                        int r = eddy__state_get(s.st, i % 5, k, (size_t)kl, &g, &gl);
                        assert_int_equal(r, model[i] != 0);
                        if (r)
                                assert_memory_equal(g, &model[i], sizeof(int));
                }
                assert_int_equal(eddy__state_check(s.st), 0);
                eddy_state_stats_t st;
                eddy_state_stats(s.st, &st);
                evictions = st.evictions;
        }
        print_message("evict in place: %" PRId64 " evictions\n", evictions);
        assert_true(evictions > 100000);
        free(model);
        store_free(&s);
}

/* A 1 MiB cache and several MiB of values: every value stays readable and right. */
static void test_cache_eviction(void **state)
{
        store_t s;
        store_init(&s, 1);
        enum { N = 700, VMAX = 6000 };
        char *val = malloc(VMAX);
        assert_non_null(val);
        size_t total = 0;
        for (int round = 0; round < 2; round++) {
                for (int i = 0; i < N; i++) {
                        char k[32];
                        int kl = snprintf(k, sizeof(k), "key-%05d", i);
                        size_t vl = (size_t)(1000 + (i * 7919 + round * 31) % (VMAX - 1000));
                        for (size_t j = 0; j < vl; j++)
                                val[j] = (char)('a' + (i + j * 13 + (size_t)round) % 26);
                        eddy__state_put(s.st, i % 3, k, (size_t)kl, val, vl);
                        total += vl;
                }
                store_commit(&s);
                assert_int_equal(eddy__state_check(s.st), 0);
                eddy_state_stats_t st;
                eddy_state_stats(s.st, &st);
                assert_true(total > (size_t)(round + 1) << 20);
                assert_true(st.evictions > 0);
                assert_true(st.cache_bytes <= (int64_t)1 << 20);
                /* read everything back, twice: from RocksDB, then partly from the cache */
                for (int pass = 0; pass < 2; pass++)
                        for (int i = 0; i < N; i++) {
                                char k[32];
                                int kl = snprintf(k, sizeof(k), "key-%05d", i);
                                size_t vl =
                                    (size_t)(1000 + (i * 7919 + round * 31) % (VMAX - 1000));
                                const void *v;
                                size_t got;
                                assert_int_equal(
                                    eddy__state_get(s.st, i % 3, k, (size_t)kl, &v, &got), 1);
                                assert_int_equal(got, vl);
                                for (size_t j = 0; j < vl; j++)
                                        if (((const char *)v)[j] !=
                                            (char)('a' + (i + j * 13 + (size_t)round) % 26))
                                                fail_msg("key %s byte %zu is wrong", k, j);
                                assert_int_equal(
                                    eddy__state_get(s.st, (i + 1) % 3, k, (size_t)kl, &v, &got), 0);
                        }
                /* reads alone grow the cache; the next commit trims it again */
                store_commit(&s);
        }
        /* one value larger than the whole cache */
        size_t big = 3u << 20;
        char *bv = malloc(big);
        assert_non_null(bv);
        for (size_t j = 0; j < big; j++)
                bv[j] = (char)(j * 7 + j / 4099);
        eddy__state_put(s.st, 9, "big", 3, bv, big);
        store_commit(&s);
        put_s(&s, 9, "small", "after");
        store_commit(&s);
        const void *v;
        size_t got;
        assert_int_equal(eddy__state_get(s.st, 9, "big", 3, &v, &got), 1);
        assert_int_equal(got, big);
        assert_memory_equal(v, bv, big);
        store_reopen(&s);
        assert_int_equal(eddy__state_get(s.st, 9, "big", 3, &v, &got), 1);
        assert_int_equal(got, big);
        assert_memory_equal(v, bv, big);
        expect_s(&s, 9, "small", "after");
        free(bv);
        free(val);
        store_free(&s);
}

/* ---------------------------------------------------------------- against a model */

#define MP    3     /* partitions */
#define MK    400   /* keys per partition */
#define MVMAX 16384 /* longest value */

/* A value is len bytes generated from vseed, so the model stays small. */
typedef struct mval_s {
        int present;
        size_t len;
        uint64_t vseed;
} mval_t;

static void gen_value(uint64_t vseed, size_t len, unsigned char *out)
{
        uint64_t x = vseed * 0x9e3779b97f4a7c15ULL + 1;
        for (size_t j = 0; j < len; j++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                out[j] = (unsigned char)x;
        }
}

static unsigned char vbuf[MVMAX];

typedef struct model_s {
        mval_t cur[MP][MK], com[MP][MK];  /* as readers see it, and as committed */
        int64_t off_cur[MP], off_com[MP]; /* -1: none */
        char key[MK][16];
        size_t klen[MK];
        int order[MK]; /* key indexes in byte order */
} model_t;

static const model_t *sort_model;

static int key_cmp(const void *a, const void *b)
{
        int x = *(const int *)a, y = *(const int *)b;
        size_t lx = sort_model->klen[x], ly = sort_model->klen[y];
        int c = memcmp(sort_model->key[x], sort_model->key[y], lx < ly ? lx : ly);
        return c ? c : (lx > ly) - (lx < ly);
}

static uint64_t rnd(uint64_t *s)
{
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static void model_keys(model_t *m, uint64_t *rs)
{
        for (int i = 0; i < MK; i++) {
                /* short keys over a small alphabet with NUL and 0xff: many shared prefixes */
                static const unsigned char alpha[] = {0x00, 'a', 'b', 0x7f, 0xfe, 0xff};
                for (;;) {
                        size_t len = 1 + rnd(rs) % 4;
                        for (size_t j = 0; j < len; j++)
                                m->key[i][j] = (char)alpha[rnd(rs) % sizeof(alpha)];
                        int dup = 0;
                        for (int k = 0; k < i && !dup; k++)
                                dup = m->klen[k] == len && !memcmp(m->key[k], m->key[i], len);
                        if (!dup) {
                                m->klen[i] = len;
                                break;
                        }
                }
                m->order[i] = i;
        }
        sort_model = m;
        qsort(m->order, MK, sizeof(int), key_cmp);
}

static void check_key(store_t *s, const model_t *m, int p, int k, const char *when)
{
        const void *v;
        size_t vl;
        int r = eddy__state_get(s->st, p, m->key[k], m->klen[k], &v, &vl);
        const mval_t *want = &m->cur[p][k];
        if (r != want->present)
                fail_msg("%s: partition %d key #%d: get returned %d, the model says %d", when, p, k,
                         r, want->present);
        if (r == 1)
                gen_value(want->vseed, want->len, vbuf);
        if (r == 1 && (vl != want->len || memcmp(v, vbuf, vl)))
                fail_msg("%s: partition %d key #%d: value of %zu bytes differs from the "
                         "model's %zu bytes",
                         when, p, k, vl, want->len);
}

static void check_all(store_t *s, const model_t *m, const char *when)
{
        for (int p = 0; p < MP; p++)
                for (int k = 0; k < MK; k++)
                        check_key(s, m, p, k, when);
        for (int p = 0; p < MP; p++) {
                int64_t off;
                int r = eddy_state_offset_get(s->st, "t", p, &off);
                assert_int_equal(r, m->off_com[p] >= 0);
                if (r == 1)
                        assert_int_equal(off, m->off_com[p]);
        }
}

typedef struct scan_check_s {
        const model_t *m;
        int p;
        const unsigned char *prefix;
        size_t plen;
        int next; /* position in m->order */
} scan_check_t;

static int scan_check_cb(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        scan_check_t *c = opaque;
        const model_t *m = c->m;
        /* the next key with the prefix as reads see it (the batch in flight too), in order */
        while (c->next < MK) {
                int i = m->order[c->next];
                if (m->cur[c->p][i].present && m->klen[i] >= c->plen &&
                    !memcmp(m->key[i], c->prefix, c->plen))
                        break;
                c->next++;
        }
        if (c->next >= MK)
                fail_msg("scan of partition %d returned a key the model does not have", c->p);
        int i = m->order[c->next++];
        const mval_t *want = &m->cur[c->p][i];
        if (kl != m->klen[i] || memcmp(k, m->key[i], kl))
                fail_msg("scan of partition %d: got a key of %zu bytes, expected key #%d", c->p, kl,
                         i);
        gen_value(want->vseed, want->len, vbuf);
        if (vl != want->len || memcmp(v, vbuf, vl))
                fail_msg("scan of partition %d: key #%d has a wrong value", c->p, i);
        return 0;
}

static void check_scan(store_t *s, const model_t *m, int p, const unsigned char *prefix,
                       size_t plen)
{
        scan_check_t c = {m, p, prefix, plen, 0};
        int n = eddy__state_scan(s->st, p, prefix, plen, scan_check_cb, &c);
        int want = 0;
        for (int i = 0; i < MK; i++)
                want +=
                    m->cur[p][i].present && m->klen[i] >= plen && !memcmp(m->key[i], prefix, plen);
        if (n != want)
                fail_msg("scan of partition %d, prefix of %zu bytes: %d keys, the model has %d", p,
                         plen, n, want);
}

static int64_t evictions_of(store_t *s)
{
        eddy_state_stats_t st;
        eddy_state_stats(s->st, &st);
        return st.evictions;
}

/* Thousands of random puts, deletes, reads, scans, drops, commits and crashes. */
static void test_random_against_model(void **state)
{
        static const uint64_t seeds[] = {1, 2, 3};
        for (size_t si = 0; si < sizeof(seeds) / sizeof(*seeds); si++) {
                uint64_t rs = seeds[si];
                model_t *m = calloc(1, sizeof(*m));
                assert_non_null(m);
                model_keys(m, &rs);
                for (int p = 0; p < MP; p++)
                        m->off_cur[p] = m->off_com[p] = -1;
                store_t s;
                store_init(&s, si == 0 ? 1 : 16);
                int commits = 0, crashes = 0, scans = 0, drops = 0;
                int64_t evictions = 0;
                clock_t t0 = clock();
                uint64_t large = si == 0 ? 3 : 20; /* a third of the values large: evictions */
                for (int op = 0; op < 12000; op++) {
                        uint64_t roll = rnd(&rs) % 1000;
                        int p = (int)(rnd(&rs) % MP), k = (int)(rnd(&rs) % MK);
                        if (roll < 450) {
                                mval_t *mv = &m->cur[p][k];
                                /* mostly small values, some large ones to push the cache */
                                mv->len = rnd(&rs) % large == 0 ? rnd(&rs) % MVMAX : rnd(&rs) % 24;
                                mv->vseed = rnd(&rs);
                                mv->present = 1;
                                gen_value(mv->vseed, mv->len, vbuf);
                                eddy__state_put(s.st, p, m->key[k], m->klen[k], vbuf, mv->len);
                        } else if (roll < 600) {
                                m->cur[p][k].present = 0;
                                m->cur[p][k].len = 0;
                                eddy__state_del(s.st, p, m->key[k], m->klen[k]);
                        } else if (roll < 850) {
                                check_key(&s, m, p, k, "random read");
                        } else if (roll < 880) {
                                m->off_cur[p] = (int64_t)(rnd(&rs) % 100000);
                                eddy_state_offset_set(s.st, "t", p, m->off_cur[p]);
                        } else if (roll < 940) {
                                store_commit(&s);
                                memcpy(m->com, m->cur, sizeof(m->com));
                                memcpy(m->off_com, m->off_cur, sizeof(m->off_com));
                                commits++;
                        } else if (roll < 970) {
                                /* a scan sees what is committed */
                                size_t plen = rnd(&rs) % 3;
                                check_scan(&s, m, p, (const unsigned char *)m->key[k],
                                           plen < m->klen[k] ? plen : m->klen[k]);
                                scans++;
                        } else if (roll < 971) {
                                /* drop a partition, committed at once (as a replay does) */
                                store_commit(&s);
                                eddy_state_drop_partition(s.st, p);
                                store_commit(&s);
                                memset(m->cur[p], 0, sizeof(m->cur[p]));
                                memcpy(m->com, m->cur, sizeof(m->com));
                                memcpy(m->off_com, m->off_cur, sizeof(m->off_com));
                                drops++;
                        } else if (roll < 974) {
                                /* a crash: back to the last commit */
                                evictions += evictions_of(&s);
                                store_reopen(&s);
                                memcpy(m->cur, m->com, sizeof(m->cur));
                                memcpy(m->off_cur, m->off_com, sizeof(m->off_cur));
                                crashes++;
                                check_all(&s, m, "after a crash");
                        } else {
                                check_all(&s, m, "full check");
                        }
                }
                store_commit(&s);
                memcpy(m->com, m->cur, sizeof(m->com));
                memcpy(m->off_com, m->off_cur, sizeof(m->off_com));
                check_all(&s, m, "at the end");
                for (int p = 0; p < MP; p++)
                        check_scan(&s, m, p, (const unsigned char *)"", 0);
                evictions += evictions_of(&s);
                store_reopen(&s);
                check_all(&s, m, "at the end, reopened");
                print_message("seed %" PRIu64 ": %d commits, %d crashes, %d scans, %d drops, "
                              "%" PRId64 " cache evictions, %.1f s cpu\n",
                              seeds[si], commits, crashes, scans, drops, evictions,
                              (double)(clock() - t0) / CLOCKS_PER_SEC);
                assert_true(commits > 100 && crashes > 20 && scans > 100 && drops > 3);
                if (si == 0)
                        assert_true(evictions > 0);
                store_free(&s);
                free(m);
        }
}

/* The first line setting option @p name in the newest OPTIONS file RocksDB wrote in @p dir. */
static void options_line(const char *dir, const char *name, char *out, size_t outsz)
{
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "grep -h '^ *%s=' \"$(ls -t %s/OPTIONS-* | head -1)\" | head -1",
                 name, dir);
        FILE *fp = popen(cmd, "r");
        assert_non_null(fp);
        out[0] = '\0';
        if (!fgets(out, (int)outsz, fp))
                out[0] = '\0';
        pclose(fp);
        out[strcspn(out, "\n")] = '\0';
}

/* state.compression reaches RocksDB (L0 always uncompressed, the codec below it), and a
 * state.dir written with one codec reads back whole under another. */
static void test_compression(void **state)
{
        static const struct {
                int codec;
                const char *name;
        } codecs[] = {{EDDY_STATE_COMPRESS_NONE, "kNoCompression"},
                      {EDDY_STATE_COMPRESS_LZ4, "kLZ4Compression"},
                      {EDDY_STATE_COMPRESS_ZSTD, "kZSTD"}};
        store_t s;
        store_init(&s, 16);
        char val[1024], key[32], line[512], want[512];
        memset(val, 'v', sizeof(val) - 1);
        val[sizeof(val) - 1] = '\0';
        for (int round = 0; round < 6; round++) {
                int c = round % 3;
                eddy_state_close(s.st);
                s.opts.compression = codecs[c].codec;
                store_open(&s);
                options_line(s.dir, "compression_per_level", line, sizeof(line));
                snprintf(want, sizeof(want),
                         "compression_per_level=kNoCompression:%s:%s:%s:%s:%s:%s", codecs[c].name,
                         codecs[c].name, codecs[c].name, codecs[c].name, codecs[c].name,
                         codecs[c].name);
                if (!strstr(line, want))
                        fail_msg("round %d: OPTIONS has \"%s\", expected \"%s\"", round, line,
                                 want);
                /* what every earlier round wrote is there; 6 MiB more through the memtables */
                for (int r = 0; r < round; r++)
                        for (int i = 0; i < 6000; i += 97) {
                                snprintf(key, sizeof(key), "r%d-%05d", r, i);
                                val[0] = (char)('a' + r);
                                expect_s(&s, 1, key, val);
                        }
                val[0] = (char)('a' + round);
                for (int i = 0; i < 6000; i++) {
                        snprintf(key, sizeof(key), "r%d-%05d", round, i);
                        put_s(&s, 1, key, val);
                        if (i % 500 == 499)
                                store_commit(&s);
                }
                store_commit(&s);
        }
        store_free(&s);
}

/* rocksdb.* options go over eddy's own (L0 compaction trigger 8); a bad one stops the open
 * with RocksDB's message and leaves the store as it was. */
static void test_rocksdb_options(void **state)
{
        store_t s;
        store_init(&s, 16);
        char line[512];
        options_line(s.dir, "level0_file_num_compaction_trigger", line, sizeof(line));
        assert_non_null(strstr(line, "level0_file_num_compaction_trigger=8"));
        put_s(&s, 2, "k", "v");
        store_commit(&s);
        eddy_state_close(s.st);
        s.opts.rocksdb_options = "level0_file_num_compaction_trigger=16;max_write_buffer_number=5";
        store_open(&s);
        options_line(s.dir, "level0_file_num_compaction_trigger", line, sizeof(line));
        assert_non_null(strstr(line, "level0_file_num_compaction_trigger=16"));
        options_line(s.dir, "max_write_buffer_number", line, sizeof(line));
        assert_non_null(strstr(line, "max_write_buffer_number=5"));
        expect_s(&s, 2, "k", "v");
        eddy_state_close(s.st);
        char err[512] = "";
        s.opts.rocksdb_options = "no_such_option=1";
        assert_null(eddy_state_open(s.dir, &s.opts, err, sizeof(err)));
        assert_non_null(strstr(err, "no_such_option"));
        assert_int_equal(eddy_state_check_options("no_such_option=1", err, sizeof(err)), -1);
        assert_non_null(strstr(err, "no_such_option"));
        assert_int_equal(eddy_state_check_options("write_buffer_size=1048576", err, sizeof(err)),
                         0);
        s.opts.rocksdb_options = NULL;
        store_open(&s);
        expect_s(&s, 2, "k", "v");
        store_free(&s);
}

/* Opening a state.dir that is a file fails with a message. */
static void test_open_errors(void **state)
{
        char path[64];
        snprintf(path, sizeof(path), "/tmp/eddy-0003-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        eddy_state_opts_t o = {16, 8, 4, 0};
        char err[512] = "";
        eddy_state_t *st = eddy_state_open(path, &o, err, sizeof(err));
        assert_null(st);
        assert_non_null(strstr(err, path));
        unlink(path);
        eddy_state_close(NULL);
}

int main(void)
{
        const struct CMUnitTest state_store[] = {
            cmocka_unit_test_teardown(test_read_your_writes_and_commit, remove_live_dirs),
            cmocka_unit_test_teardown(test_scan_order_and_prefix_bounds, remove_live_dirs),
            cmocka_unit_test_teardown(test_scan_top_partition, remove_live_dirs),
            cmocka_unit_test_teardown(test_partition_isolation_and_drop, remove_live_dirs),
            cmocka_unit_test_teardown(test_drop_then_read_before_commit, remove_live_dirs),
            cmocka_unit_test_teardown(test_offsets_and_fences, remove_live_dirs),
            cmocka_unit_test_teardown(test_outbox, remove_live_dirs),
            cmocka_unit_test_teardown(test_outbox_segments, remove_live_dirs),
            cmocka_unit_test_teardown(test_outbox_segments_sync, remove_live_dirs),
            cmocka_unit_test_teardown(test_outbox_direct, remove_live_dirs),
            cmocka_unit_test_teardown(test_cache_eviction, remove_live_dirs),
            cmocka_unit_test_teardown(test_cache_large_table, remove_live_dirs),
            cmocka_unit_test_teardown(test_cache_evict_in_place, remove_live_dirs),
            cmocka_unit_test_teardown(test_random_against_model, remove_live_dirs),
            cmocka_unit_test_teardown(test_open_errors, remove_live_dirs),
            cmocka_unit_test_teardown(test_compression, remove_live_dirs),
            cmocka_unit_test_teardown(test_rocksdb_options, remove_live_dirs),
        };
        return cmocka_run_group_tests_name("state store", state_store, NULL, NULL);
}
