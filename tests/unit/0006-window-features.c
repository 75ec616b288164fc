/* 0006-window-features.c: window-features against a brute-force recomputation from raw events.
 *
 * Thousands of random streams (out-of-order and late events, several entities and partitions)
 * go through the real runtime (test seam, RocksDB state, outbox, fences) in random batches,
 * with crashes that lose the batch in flight. After every commit, every entity's hash in a
 * fake fenced Redis must equal what the brute force computes from all accepted events at
 * the partition's clock (docs/window-features.md), field by field, in order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdirs.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"
#include "registry.h"
#include "testing.h"

#define TOPIC     "activity"
#define NPARTS    2
#define NENTS     6 /* e0..e5; entity i lives on partition i % NPARTS */
#define NITEMS    9
#define LATENESS  8000
#define MAXEV     1200
#define MAXFIELDS 32

static const char FEATURES[] =
    "[{\"name\":\"ca\",\"agg\":\"count\",\"types\":\"a\",\"windows\":[\"10s\",\"30s/5s\",\"1m\"]},"
    "{\"name\":\"sb\",\"agg\":\"sum\",\"types\":[\"b\",\"c\"],\"windows\":[\"20s/5s\",\"1m\"]},"
    "{\"name\":\"av\",\"agg\":\"avg\",\"windows\":[\"30s/5s\"]},"
    "{\"name\":\"mn\",\"agg\":\"min\",\"types\":\"c\",\"windows\":[\"15s/5s\",\"1m\"]},"
    "{\"name\":\"mx\",\"agg\":\"max\",\"windows\":[\"10s\"]},"
    "{\"name\":\"di\",\"agg\":\"distinct\",\"windows\":[\"20s/5s\",\"1m\"]},"
    "{\"name\":\"ln\",\"agg\":\"last_n\",\"n\":3,\"windows\":[\"20s/5s\"]},"
    "{\"name\":\"la\",\"agg\":\"last_n\",\"n\":2,\"types\":\"a\"}]";

/* The same features, for the model. */
typedef enum { M_COUNT, M_SUM, M_AVG, M_MIN, M_MAX, M_DISTINCT, M_LAST_N } magg_t;
typedef struct mwin_s {
        const char *label;
        int64_t len, slide;
} mwin_t;
typedef struct mfeat_s {
        const char *name;
        magg_t agg;
        const char *types; /* letters; NULL: all */
        int n;
        mwin_t w[3];
        int nw;
} mfeat_t;
static const mfeat_t MFEATS[] = {
    {"ca", M_COUNT, "a", 0, {{"10s", 10000, 1000}, {"30s", 30000, 5000}, {"1m", 60000, 1000}}, 3},
    {"sb", M_SUM, "bc", 0, {{"20s", 20000, 5000}, {"1m", 60000, 1000}}, 2},
    {"av", M_AVG, NULL, 0, {{"30s", 30000, 5000}}, 1},
    {"mn", M_MIN, "c", 0, {{"15s", 15000, 5000}, {"1m", 60000, 1000}}, 2},
    {"mx", M_MAX, NULL, 0, {{"10s", 10000, 1000}}, 1},
    {"di", M_DISTINCT, NULL, 0, {{"20s", 20000, 5000}, {"1m", 60000, 1000}}, 2},
    {"ln", M_LAST_N, NULL, 3, {{"20s", 20000, 5000}}, 1},
    {"la", M_LAST_N, "a", 2, {{0}}, 0},
};
#define NMFEATS (sizeof(MFEATS) / sizeof(MFEATS[0]))

/* ---------------------------------------------------------------- randomness */

typedef struct rng_s {
        uint64_t s;
} rng_t;

static uint64_t rnd(rng_t *r)
{
        uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static int64_t below(rng_t *r, int64_t n)
{
        return n > 0 ? (int64_t)(rnd(r) % (uint64_t)n) : 0;
}

/* ---------------------------------------------------------------- the fake Redis */

typedef struct rhash_s {
        int present;
        int nf;
        char name[MAXFIELDS][16];
        char val[MAXFIELDS][96];
        int64_t ttl;
} rhash_t;

typedef struct fake_s {
        rhash_t h[NENTS];
        int fenced[NPARTS];
        int64_t fpos[NPARTS], fseq[NPARTS];
        int64_t outputs;
} fake_t;

static int ent_of_key(const char *k, size_t kl)
{
        if (kl != 7 || memcmp(k, "feat:e", 6) || k[6] < '0' || k[6] >= '0' + NENTS)
                return -1;
        return k[6] - '0';
}

static int fake_apply(void *opaque, int32_t partition, int64_t pos, int64_t seq, uint32_t chunk,
                      const eddy_redis_op_t *ops, size_t nops)
{
        fake_t *f = opaque;
        assert_true(partition >= 0 && partition < NPARTS);
        for (size_t c = 0; c * chunk < nops || (c == 0 && nops == 0); c++) {
                int64_t s = seq + (int64_t)c;
                if (f->fenced[partition] &&
                    (pos < f->fpos[partition] ||
                     (pos == f->fpos[partition] && s <= f->fseq[partition])))
                        continue;
                for (size_t i = c * chunk; i < nops && i < (c + 1) * chunk; i++) {
                        int e = ent_of_key(ops[i].key, ops[i].klen);
                        assert_true(e >= 0);
                        rhash_t *h = &f->h[e];
                        if (ops[i].op == EDDY_ROP_DEL) {
                                h->present = 0;
                                continue;
                        }
                        assert_int_equal(ops[i].op, EDDY_ROP_HASH);
                        eddy_redis_hash_iter_t it;
                        assert_int_equal(eddy_redis_hash_open(&it, ops[i].val, ops[i].vlen), 0);
                        assert_true(it.nfields > 0 && it.nfields <= MAXFIELDS);
                        h->present = 1;
                        h->ttl = it.ttl_ms;
                        h->nf = 0;
                        eddy_hfield_t hf;
                        while (eddy_redis_hash_next(&it, &hf)) {
                                assert_true(hf.nlen < 16 && hf.vlen < 96);
                                snprintf(h->name[h->nf], 16, "%.*s", (int)hf.nlen, hf.name);
                                snprintf(h->val[h->nf], 96, "%.*s", (int)hf.vlen, hf.val);
                                h->nf++;
                        }
                }
                f->fenced[partition] = 1;
                f->fpos[partition] = pos;
                f->fseq[partition] = s;
                if (nops == 0)
                        break;
        }
        return 0;
}

/* ---------------------------------------------------------------- the model */

typedef struct mev_s {
        int64_t ts, off;
        int ent;
        char type; /* 0: none */
        int item;
        double value;
} mev_t;

typedef struct mpart_s {
        mev_t ev[MAXEV];
        int n;
        int has_clock;
        int64_t clock;
} mpart_t;

static int64_t floor_div(int64_t a, int64_t b)
{
        int64_t q = a / b;
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static void fmt(double v, char *out, size_t size)
{
        if (v == floor(v) && fabs(v) < 1e15) {
                snprintf(out, size, "%.0f", v == 0 ? 0.0 : v);
                return;
        }
        for (int p = 1; p <= 17; p++) {
                snprintf(out, size, "%.*g", p, v);
                if (strtod(out, NULL) == v)
                        return;
        }
}

static int matches(const mfeat_t *f, char type)
{
        return !f->types || (type && strchr(f->types, type));
}

static int in_window(const mwin_t *w, int64_t ts, int64_t c)
{
        return ts >= floor_div(c, w->slide) * w->slide + w->slide - w->len && ts <= c;
}

/* The expected hash of entity e on partition mp at its clock. */
static void model(const mpart_t *mp, int e, rhash_t *out)
{
        memset(out, 0, sizeof(*out));
        int nonempty = 0;
        int64_t c = mp->clock;
        for (size_t fi = 0; fi < NMFEATS; fi++) {
                const mfeat_t *f = &MFEATS[fi];
                int nw = f->nw ? f->nw : 1;
                for (int w = 0; w < nw; w++) {
                        const mwin_t *win = f->nw ? &f->w[w] : NULL;
                        char val[96] = "";
                        int have = 1;
                        if (f->agg == M_LAST_N) {
                                /* latest (ts, off) per item, then the n most recent */
                                int64_t best_ts[NITEMS], best_off[NITEMS];
                                for (int i = 0; i < NITEMS; i++)
                                        best_ts[i] = -1;
                                for (int i = 0; i < mp->n; i++) {
                                        const mev_t *ev = &mp->ev[i];
                                        if (ev->ent != e || !matches(f, ev->type))
                                                continue;
                                        if (win && !in_window(win, ev->ts, c))
                                                continue;
                                        if (ev->ts > best_ts[ev->item] ||
                                            (ev->ts == best_ts[ev->item] &&
                                             ev->off > best_off[ev->item])) {
                                                best_ts[ev->item] = ev->ts;
                                                best_off[ev->item] = ev->off;
                                        }
                                }
                                strcpy(val, "[");
                                for (int k = 0; k < f->n; k++) {
                                        int pick = -1;
                                        for (int i = 0; i < NITEMS; i++)
                                                if (best_ts[i] >= 0 &&
                                                    (pick < 0 || best_ts[i] > best_ts[pick] ||
                                                     (best_ts[i] == best_ts[pick] &&
                                                      best_off[i] > best_off[pick])))
                                                        pick = i;
                                        if (pick < 0)
                                                break;
                                        nonempty = 1;
                                        snprintf(val + strlen(val), sizeof(val) - strlen(val),
                                                 "%s\"i%d\"", k ? "," : "", pick);
                                        best_ts[pick] = -1;
                                }
                                strcat(val, "]");
                        } else {
                                int64_t n = 0;
                                double sum = 0, mn = 0, mx = 0;
                                int seen[NITEMS] = {0};
                                for (int i = 0; i < mp->n; i++) {
                                        const mev_t *ev = &mp->ev[i];
                                        if (ev->ent != e || !matches(f, ev->type) ||
                                            !in_window(win, ev->ts, c))
                                                continue;
                                        mn = n == 0 || ev->value < mn ? ev->value : mn;
                                        mx = n == 0 || ev->value > mx ? ev->value : mx;
                                        sum += ev->value;
                                        seen[ev->item] = 1;
                                        n++;
                                }
                                nonempty |= n > 0;
                                int d = 0;
                                for (int i = 0; i < NITEMS; i++)
                                        d += seen[i];
                                switch (f->agg) {
                                case M_COUNT:
                                        snprintf(val, sizeof(val), "%" PRId64, n);
                                        break;
                                case M_SUM:
                                        fmt(sum, val, sizeof(val));
                                        break;
                                case M_AVG:
                                        have = n > 0;
                                        if (have)
                                                fmt(sum / (double)n, val, sizeof(val));
                                        break;
                                case M_MIN:
                                        have = n > 0;
                                        fmt(mn, val, sizeof(val));
                                        break;
                                case M_MAX:
                                        have = n > 0;
                                        fmt(mx, val, sizeof(val));
                                        break;
                                case M_DISTINCT:
                                        snprintf(val, sizeof(val), "%d", d);
                                        break;
                                default:
                                        break;
                                }
                        }
                        if (!have)
                                continue;
                        snprintf(out->name[out->nf], 16, "%s%s%s", f->name, win ? "_" : "",
                                 win ? win->label : "");
                        snprintf(out->val[out->nf], 96, "%s", val);
                        out->nf++;
                }
        }
        out->present = nonempty;
        if (!nonempty)
                out->nf = 0;
}

/* ---------------------------------------------------------------- a run */

typedef struct rec_s {
        char json[256];
        int bad;
        mev_t ev; /* when !bad */
} rec_t;

/* A random stream for one partition: mostly in order, some out of order, some late. */
static int gen(rng_t *r, int part, rec_t *recs, int n)
{
        int64_t t = 1000000 + below(r, 100000);
        for (int i = 0; i < n; i++) {
                rec_t *rc = &recs[i];
                memset(rc, 0, sizeof(*rc));
                int64_t step = below(r, 10) < 8 ? below(r, 1500) : below(r, 20000);
                t += step;
                int64_t ts = t;
                int64_t k = below(r, 100);
                if (k < 15)
                        ts = t - below(r, LATENESS); /* out of order, within the lateness */
                else if (k < 20)
                        ts = t - LATENESS - 1 - below(r, 30000); /* late (most likely) */
                if (ts < 0)
                        ts = 0;
                int ent = part + NPARTS * (int)below(r, NENTS / NPARTS);
                char type = "abc"[below(r, 3)];
                if (below(r, 10) == 0)
                        type = 0;
                int item = (int)below(r, NITEMS);
                double value = (double)(below(r, 81) - 20) / 4; /* quarters: exact sums */
                if (below(r, 100) < 2) {
                        rc->bad = 1;
                        snprintf(rc->json, sizeof(rc->json), "{\"user_id\":\"e%d\",\"ts\":\"x\"}",
                                 ent);
                        continue;
                }
                char tbuf[32] = "";
                if (type)
                        snprintf(tbuf, sizeof(tbuf), "\"type\":\"%c\",", type);
                snprintf(rc->json, sizeof(rc->json),
                         "{\"event_id\":\"x%d\",\"user_id\":\"e%d\",%s\"item_id\":\"i%d\","
                         "\"value\":%.2f,\"ts\":%" PRId64 "}",
                         i, ent, tbuf, item, value, ts);
                rc->ev = (mev_t){ts, 0, ent, type, item, value};
        }
        return n;
}

/* Feeds the model one record of partition p (at offset off) as the processor must see it. */
static void model_feed(mpart_t *mp, const rec_t *rc, int64_t off)
{
        if (rc->bad)
                return;
        if (mp->has_clock && rc->ev.ts < mp->clock - LATENESS)
                return; /* late */
        if (!mp->has_clock || rc->ev.ts > mp->clock)
                mp->clock = rc->ev.ts;
        mp->has_clock = 1;
        mev_t ev = rc->ev;
        ev.off = off;
        mp->ev[mp->n++] = ev;
}

static void check(const fake_t *fk, const mpart_t *mps, uint64_t seed, int step)
{
        for (int e = 0; e < NENTS; e++) {
                rhash_t want;
                model(&mps[e % NPARTS], e, &want);
                const rhash_t *got = &fk->h[e];
                if (want.present != got->present)
                        fail_msg("seed %" PRIu64 " step %d: entity e%d: present %d, expected %d",
                                 seed, step, e, got->present, want.present);
                if (!want.present)
                        continue;
                if (want.nf != got->nf)
                        fail_msg("seed %" PRIu64 " step %d: entity e%d: %d fields, expected %d "
                                 "(first: %s)",
                                 seed, step, e, got->nf, want.nf, want.name[0]);
                for (int i = 0; i < want.nf; i++)
                        if (strcmp(want.name[i], got->name[i]) || strcmp(want.val[i], got->val[i]))
                                fail_msg("seed %" PRIu64 " step %d: entity e%d: field %d: %s=%s, "
                                         "expected %s=%s",
                                         seed, step, e, i, got->name[i], got->val[i], want.name[i],
                                         want.val[i]);
        }
}

typedef struct run_s {
        char dir[64];
        char ovbuf[8][512];
        char *ov[8];
        int nov;
} run_t;

static eddy_ctx_t *open_ctx(run_t *w, fake_t *fk)
{
        char err[512];
        eddy_ctx_t *ctx =
            eddy__test_open(&eddy_window_features, w->ov, w->nov, fake_apply, fk, err, sizeof(err));
        if (!ctx)
                fail_msg("eddy__test_open: %s", err);
        return ctx;
}

/* A fresh state dir and the overrides every run has; run_set() adds more. */
static void run_init(run_t *w, const char *features)
{
        memset(w, 0, sizeof(*w));
        snprintf(w->dir, sizeof(w->dir), "/tmp/eddy-wf-XXXXXX");
        assert_non_null(mkdtemp(w->dir));
        live_dir(w->dir, 1);
        const char *fixed[] = {"input.topics=" TOPIC, "log.level=warning", "state.sync=false"};
        snprintf(w->ovbuf[0], sizeof(w->ovbuf[0]), "state.dir=%s", w->dir);
        snprintf(w->ovbuf[1], sizeof(w->ovbuf[1]), "features=%s", features);
        for (int i = 0; i < 3; i++)
                snprintf(w->ovbuf[2 + i], sizeof(w->ovbuf[0]), "%s", fixed[i]);
        w->nov = 5;
        for (int i = 0; i < 8; i++)
                w->ov[i] = w->ovbuf[i];
}

static void __attribute__((format(printf, 2, 3))) run_set(run_t *w, const char *fmt, ...)
{
        assert_true(w->nov < 8);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->ovbuf[w->nov++], sizeof(w->ovbuf[0]), fmt, ap);
        va_end(ap);
}

static void run_done(run_t *w)
{
        rm_rf(w->dir);
        live_dir(w->dir, 0);
}

static void run_stream(uint64_t seed, int nev, int crash_permille)
{
        rng_t r = {seed};
        static rec_t recs[NPARTS][MAXEV];
        static mpart_t mps[NPARTS];
        static fake_t fk;
        memset(mps, 0, sizeof(mps));
        memset(&fk, 0, sizeof(fk));
        for (int p = 0; p < NPARTS; p++)
                gen(&r, p, recs[p], nev);
        run_t w;
        run_init(&w, FEATURES);
        run_set(&w, "allowed.lateness.ms=%d", LATENESS);
        run_set(&w, "redis.chunk.keys=%d", 1 + (int)below(&r, 4));

        eddy_ctx_t *ctx = open_ctx(&w, &fk);
        int64_t next[NPARTS] = {0}; /* fed so far, per partition */
        int64_t done[NPARTS] = {0}; /* committed */
        int step = 0;
        while (done[0] < nev || done[1] < nev) {
                int nb = 1 + (int)below(&r, 40);
                for (int i = 0; i < nb; i++) {
                        int p = (int)below(&r, NPARTS);
                        if (next[p] >= nev)
                                p = 1 - p;
                        if (next[p] >= nev)
                                break;
                        const rec_t *rc = &recs[p][next[p]];
                        char key[8];
                        snprintf(key, sizeof(key), "e%d", rc->bad ? 0 : rc->ev.ent);
                        assert_int_equal(eddy__test_feed(ctx, TOPIC, p, next[p], key, strlen(key),
                                                         rc->json, strlen(rc->json)),
                                         0);
                        next[p]++;
                }
                if ((int64_t)below(&r, 1000) < crash_permille) {
                        /* a crash: the batch in flight is lost, and re-read from the state */
                        eddy__test_close(ctx);
                        ctx = open_ctx(&w, &fk);
                        for (int p = 0; p < NPARTS; p++) {
                                next[p] = eddy__test_next_offset(ctx, TOPIC, p);
                                assert_int_equal(next[p], done[p]);
                        }
                        continue;
                }
                assert_int_equal(eddy__test_commit(ctx), 0);
                for (int p = 0; p < NPARTS; p++) {
                        while (done[p] < next[p]) {
                                model_feed(&mps[p], &recs[p][done[p]], done[p]);
                                done[p]++;
                        }
                }
                check(&fk, mps, seed, step++);
        }
        eddy__test_close(ctx);
        run_done(&w);
}

static void test_examples(void **state)
{
        (void)state;
        /* one entity, by hand: windows slide with the clock and empty out */
        run_t w;
        run_init(&w, "[{\"name\":\"c\",\"agg\":\"count\",\"windows\":[\"10s\"]}]");
        run_set(&w, "redis.ttl.ms=5000");
        static fake_t fk;
        memset(&fk, 0, sizeof(fk));
        eddy_ctx_t *ctx = open_ctx(&w, &fk);
        const char *evs[] = {
            "{\"user_id\":\"e0\",\"ts\":1000}",  "{\"user_id\":\"e0\",\"ts\":5500}",
            "{\"user_id\":\"e2\",\"ts\":10999}", /* clock 10999: e0 has 1000 and 5500 */
            "{\"user_id\":\"e2\",\"ts\":11000}", /* window [2000, 11000]: e0 has 1 */
            "{\"user_id\":\"e2\",\"ts\":16000}", /* [7000, 16000]: e0 empty, deleted */
        };
        const char *want_e0[] = {"1", "2", "2", "1", NULL};
        for (int i = 0; i < 5; i++) {
                assert_int_equal(eddy__test_feed(ctx, TOPIC, 0, i, "k", 1, evs[i], strlen(evs[i])),
                                 0);
                assert_int_equal(eddy__test_commit(ctx), 0);
                if (want_e0[i]) {
                        assert_true(fk.h[0].present);
                        assert_int_equal(fk.h[0].nf, 1);
                        assert_string_equal(fk.h[0].name[0], "c_10s");
                        assert_string_equal(fk.h[0].val[0], want_e0[i]);
                        assert_int_equal(fk.h[0].ttl, 5000);
                } else {
                        assert_false(fk.h[0].present);
                }
        }
        assert_string_equal(fk.h[2].val[0], "3");
        eddy__test_close(ctx);

        /* a job restarted with other features refuses the state */
        snprintf(w.ovbuf[1], sizeof(w.ovbuf[1]), "features=%s",
                 "[{\"name\":\"c\",\"agg\":\"count\",\"windows\":[\"20s\"]}]");
        ctx = open_ctx(&w, &fk);
        const char *ev = "{\"user_id\":\"e0\",\"ts\":20000}";
        assert_int_equal(eddy__test_feed(ctx, TOPIC, 0, 5, "k", 1, ev, strlen(ev)), -1);
        eddy__test_close(ctx);
        run_done(&w);
}

/* State written by the first encoding (version 1: hashes as varints, numbers as 8-byte
 * doubles) is still read, timers included. */
static size_t put_varint(unsigned char *b, uint64_t v)
{
        size_t n = 0;
        while (v >= 0x80) {
                b[n++] = (unsigned char)(v | 0x80);
                v >>= 7;
        }
        b[n++] = (unsigned char)v;
        return n;
}

static size_t put_double(unsigned char *b, double d)
{
        uint64_t u;
        memcpy(&u, &d, 8);
        for (int i = 0; i < 8; i++)
                b[i] = (unsigned char)(u >> (8 * i));
        return 8;
}

static void test_state_v1(void **state)
{
        (void)state;
        run_t w;
        run_init(&w, "[{\"name\":\"s\",\"agg\":\"sum\",\"windows\":[\"10s\"]},"
                     "{\"name\":\"d\",\"agg\":\"distinct\",\"windows\":[\"10s\"]},"
                     "{\"name\":\"m\",\"agg\":\"max\",\"windows\":[\"10s\"]}]");
        static fake_t fk;
        memset(&fk, 0, sizeof(fk));
        eddy_ctx_t *ctx = open_ctx(&w, &fk);
        /* e0: one tile (number 99 of the 1 s slide) with sum 7.5, one item, max 7.5; due at
         * (99 + 10) * 1000 */
        unsigned char v[64];
        size_t n = 0;
        n += put_varint(v + n, 1);          /* version */
        n += put_varint(v + n, 109000 + 1); /* due + 1 */
        n += put_varint(v + n, 1);          /* tiles */
        n += put_varint(v + n, 99);         /* tile number */
        n += put_varint(v + n, 1);          /* s: n */
        n += put_double(v + n, 7.5);
        n += put_varint(v + n, 1);                     /* d: n */
        n += put_varint(v + n, 2);                     /* dn + 1 */
        n += put_varint(v + n, 0xfedcba9876543210ULL); /* the item's hash */
        n += put_varint(v + n, 1);                     /* m: n */
        n += put_double(v + n, 7.5);
        eddy_state_put(ctx, 0, "ee0", 3, v, n);
        assert_int_equal(eddy__test_commit(ctx), 0);
        eddy__test_close(ctx);

        ctx = open_ctx(&w, &fk);
        const char *evs[] = {
            "{\"user_id\":\"e0\",\"ts\":100500,\"item_id\":\"i1\",\"value\":5}",
            "{\"user_id\":\"e1\",\"ts\":109500,\"item_id\":\"i1\",\"value\":1}",
        };
        const char *want[][3] = {{"12.5", "2", "7.5"}, {"5", "1", "5"}};
        for (int i = 0; i < 2; i++) {
                assert_int_equal(eddy__test_feed(ctx, TOPIC, 0, i, "k", 1, evs[i], strlen(evs[i])),
                                 0);
                assert_int_equal(eddy__test_commit(ctx), 0);
                assert_true(fk.h[0].present);
                assert_int_equal(fk.h[0].nf, 3);
                for (int f = 0; f < 3; f++)
                        assert_string_equal(fk.h[0].val[f], want[i][f]);
        }
        eddy__test_close(ctx);
        run_done(&w);
}

/* distinct: exact up to exact_max, then a HyperLogLog estimate within its error */
static void test_distinct_hll(void **state)
{
        (void)state;
        run_t w;
        run_init(&w, "[{\"name\":\"d\",\"agg\":\"distinct\",\"exact_max\":100,"
                     "\"windows\":[\"1d/1h\"]}]");
        static fake_t fk;
        memset(&fk, 0, sizeof(fk));
        eddy_ctx_t *ctx = open_ctx(&w, &fk);
        /* items spread over many tiles; each one twice */
        const int checks[] = {100, 101, 1000, 20000};
        int64_t off = 0;
        for (int i = 0, c = 0; c < 4; i++) {
                for (int twice = 0; twice < 2; twice++) {
                        char ev[128];
                        snprintf(ev, sizeof(ev),
                                 "{\"user_id\":\"e0\",\"item_id\":\"item-%d\",\"ts\":%d}", i,
                                 1000 + i * 3);
                        assert_int_equal(
                            eddy__test_feed(ctx, TOPIC, 0, off++, "e0", 2, ev, strlen(ev)), 0);
                }
                if (i + 1 != checks[c])
                        continue;
                assert_int_equal(eddy__test_commit(ctx), 0);
                long got = strtol(fk.h[0].val[0], NULL, 10);
                if (checks[c] <= 100)
                        assert_int_equal(got, checks[c]);
                else if (fabs((double)got - checks[c]) > 0.10 * checks[c])
                        fail_msg("distinct of %d items: estimate %ld, more than 10%% off",
                                 checks[c], got);
                c++;
        }
        eddy__test_close(ctx);
        run_done(&w);
}

static void test_random_streams(void **state)
{
        (void)state;
        for (uint64_t seed = 1; seed <= 300; seed++)
                run_stream(seed, 40 + (int)(seed % 7) * 20, 0);
}

static void test_crashes(void **state)
{
        (void)state;
        for (uint64_t seed = 1001; seed <= 1200; seed++)
                run_stream(seed, 60 + (int)(seed % 5) * 30, 120);
}

static void test_long_streams(void **state)
{
        (void)state;
        for (uint64_t seed = 5001; seed <= 5004; seed++)
                run_stream(seed, MAXEV, 20);
}

int main(void)
{
        const struct CMUnitTest window_features[] = {
            cmocka_unit_test_teardown(test_examples, remove_live_dirs),
            cmocka_unit_test_teardown(test_distinct_hll, remove_live_dirs),
            cmocka_unit_test_teardown(test_state_v1, remove_live_dirs),
            cmocka_unit_test_teardown(test_random_streams, remove_live_dirs),
            cmocka_unit_test_teardown(test_crashes, remove_live_dirs),
            cmocka_unit_test_teardown(test_long_streams, remove_live_dirs),
        };
        return cmocka_run_group_tests_name("window-features vs brute force", window_features, NULL,
                                           NULL);
}
