/* 0001-like-counter.c: like-counter + commit protocol vs a fake fenced Redis, with crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdirs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "redis.h"
#include "registry.h"
#include "state.h"
#include "testing.h"

#define TOPIC  "likes"
#define NPARTS 3  /* partitions of one stream */
#define NPOSTS 21 /* p0..p20; post i lives on partition i % NPARTS (the topic is keyed by post) */
#define NUSERS 31 /* u0..u30 */

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

static uint32_t below(rng_t *r, uint32_t n)
{
        return n ? (uint32_t)(rnd(r) % n) : 0;
}

/* True with probability permille / 1000. */
static int chance(rng_t *r, uint32_t permille)
{
        return below(r, 1000) < permille;
}

/* ---------------------------------------------------------------- a growable string */

typedef struct sbuf_s {
        char *p;
        size_t len, cap;
} sbuf_t;

static void sb_reserve(sbuf_t *b, size_t extra)
{
        if (b->len + extra + 1 > b->cap) {
                b->cap = (b->len + extra + 1) * 2;
                b->p = realloc(b->p, b->cap);
                assert_non_null(b->p);
        }
}

static void __attribute__((format(printf, 2, 3))) sb_printf(sbuf_t *b, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        assert_true(n >= 0);
        sb_reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
}

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
        sb_reserve(b, n);
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

/* ---------------------------------------------------------------- the fake Redis
 *
 * A model of connectors/redis.c: a delivery of one partition's ops at (pos, seq_base) is
 * cut into chunks of redis.chunk.keys ops; chunk i runs the fence script at (pos,
 * seq_base + i): it applies (SET / DEL every key of the chunk, then raises the fence) iff
 * (pos, seq) is lexicographically above the partition's fence, or there is no fence yet.
 * It can be told to fail on its N-th call, before applying anything, after applying every
 * chunk, or after applying some of them: the process dies there. */

typedef enum {
        FAIL_NONE,
        FAIL_BEFORE,     /* the connection breaks before anything is applied */
        FAIL_AFTER_ALL,  /* every chunk reached Redis, then the process died */
        FAIL_AFTER_SOME, /* a prefix of the chunks reached Redis */
} fail_mode_t;

typedef struct fence_s {
        int present;
        int64_t pos, seq;
} fence_t;

typedef struct kv_s {
        char *k, *v;
        size_t kl, vl;
} kv_t;

typedef struct fake_redis_s {
        fence_t *fences; /* by partition number */
        size_t nfences;
        kv_t *kv;
        size_t nkv, kvcap;
        size_t chunk_keys;
        uint64_t calls;
        uint64_t fail_at; /* the call that fails, with fail_mode */
        fail_mode_t fail_mode;
        rng_t rng;
        int32_t part_lo, part_hi; /* the partitions of the stream being run */
        int64_t chunks_applied, chunks_fenced;
        uint64_t failures;
        int bad; /* a protocol violation seen by the sink, described in why */
        char why[512];
        struct seen_s *seen; /* every (partition, pos, seq) delivered: a hash of its ops */
        size_t nseen, seen_slots;
} fake_redis_t;

/* A chunk identity and the hash of its ops: one identity must always carry the same ops,
 * or a fenced re-delivery would drop a write that differs. */
typedef struct seen_s {
        int used;
        int32_t partition;
        int64_t pos, seq;
        uint64_t h;
} seen_t;

static void fr_violation(fake_redis_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fr_violation(fake_redis_t *r, const char *fmt, ...)
{
        if (r->bad)
                return;
        r->bad = 1;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->why, sizeof(r->why), fmt, ap);
        va_end(ap);
}

static kv_t *fr_find(fake_redis_t *r, const char *k, size_t kl)
{
        for (size_t i = 0; i < r->nkv; i++)
                if (r->kv[i].kl == kl && !memcmp(r->kv[i].k, k, kl))
                        return &r->kv[i];
        return NULL;
}

static void fr_set(fake_redis_t *r, const char *k, size_t kl, const char *v, size_t vl)
{
        kv_t *e = fr_find(r, k, kl);
        if (!e) {
                if (r->nkv == r->kvcap) {
                        r->kvcap = r->kvcap ? r->kvcap * 2 : 32;
                        r->kv = realloc(r->kv, r->kvcap * sizeof(*r->kv));
                        assert_non_null(r->kv);
                }
                e = &r->kv[r->nkv++];
                e->k = malloc(kl ? kl : 1);
                assert_non_null(e->k);
                memcpy(e->k, k, kl);
                e->kl = kl;
                e->v = NULL;
        }
        free(e->v);
        e->v = malloc(vl ? vl : 1);
        assert_non_null(e->v);
        memcpy(e->v, v, vl);
        e->vl = vl;
}

static void fr_del(fake_redis_t *r, const char *k, size_t kl)
{
        kv_t *e = fr_find(r, k, kl);
        if (!e)
                return;
        free(e->k);
        free(e->v);
        *e = r->kv[--r->nkv];
}

static void fr_clear_keys(fake_redis_t *r)
{
        while (r->nkv)
                fr_del(r, r->kv[0].k, r->kv[0].kl);
}

static fence_t *fr_fence(fake_redis_t *r, int32_t partition)
{
        size_t p = (size_t)partition;
        if (p >= r->nfences) {
                size_t n = p + 64;
                r->fences = realloc(r->fences, n * sizeof(*r->fences));
                assert_non_null(r->fences);
                memset(r->fences + r->nfences, 0, (n - r->nfences) * sizeof(*r->fences));
                r->nfences = n;
        }
        return &r->fences[p];
}

static void fr_free(fake_redis_t *r)
{
        fr_clear_keys(r);
        free(r->kv);
        free(r->fences);
        free(r->seen);
        memset(r, 0, sizeof(*r));
}

static uint64_t ops_hash(const eddy_redis_op_t *ops, size_t n)
{
        uint64_t h = 0xcbf29ce484222325ULL ^ n;
        for (size_t i = 0; i < n; i++) {
                const char *parts[2] = {ops[i].key, ops[i].op == EDDY_ROP_SET ? ops[i].val : ""};
                size_t lens[2] = {ops[i].klen, ops[i].op == EDDY_ROP_SET ? ops[i].vlen : 0};
                h = (h ^ (unsigned char)ops[i].op) * 0x100000001b3ULL;
                for (int j = 0; j < 2; j++) {
                        h = (h ^ lens[j]) * 0x100000001b3ULL;
                        for (size_t k = 0; k < lens[j]; k++)
                                h = (h ^ (unsigned char)parts[j][k]) * 0x100000001b3ULL;
                }
        }
        return h;
}

static seen_t *seen_slot(seen_t *tab, size_t nslots, int32_t partition, int64_t pos, int64_t seq)
{
        uint64_t k = ((uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ULL) ^
                     ((uint64_t)pos * 0xbf58476d1ce4e5b9ULL) ^ (uint64_t)seq;
        for (size_t i = (size_t)(k ^ (k >> 29)) & (nslots - 1);; i = (i + 1) & (nslots - 1))
                if (!tab[i].used ||
                    (tab[i].partition == partition && tab[i].pos == pos && tab[i].seq == seq))
                        return &tab[i];
}

static void fr_seen(fake_redis_t *r, int32_t partition, int64_t pos, int64_t seq,
                    const eddy_redis_op_t *ops, size_t n)
{
        if (r->nseen * 2 >= r->seen_slots) {
                size_t nslots = r->seen_slots ? r->seen_slots * 2 : 4096;
                seen_t *tab = calloc(nslots, sizeof(*tab));
                assert_non_null(tab);
                for (size_t i = 0; i < r->seen_slots; i++)
                        if (r->seen[i].used)
                                *seen_slot(tab, nslots, r->seen[i].partition, r->seen[i].pos,
                                           r->seen[i].seq) = r->seen[i];
                free(r->seen);
                r->seen = tab;
                r->seen_slots = nslots;
        }
        uint64_t h = ops_hash(ops, n);
        seen_t *e = seen_slot(r->seen, r->seen_slots, partition, pos, seq);
        if (!e->used) {
                *e = (seen_t){1, partition, pos, seq, h};
                r->nseen++;
        } else if (e->h != h) {
                fr_violation(r,
                             "partition %" PRId32 " (pos %" PRId64 ", seq %" PRId64
                             ") was delivered again with other contents",
                             partition, pos, seq);
        }
}

/* The Lua script, on one chunk. */
static void fr_script(fake_redis_t *r, int32_t partition, int64_t pos, int64_t seq,
                      const eddy_redis_op_t *ops, size_t n)
{
        fence_t *f = fr_fence(r, partition);
        fr_seen(r, partition, pos, seq, ops, n);
        if (f->present && (pos < f->pos || (pos == f->pos && seq <= f->seq))) {
                r->chunks_fenced++;
                return;
        }
        if (partition < r->part_lo || partition >= r->part_hi)
                fr_violation(r,
                             "a write for partition %" PRId32 " (pos %" PRId64 ", seq %" PRId64
                             ") passed its fence, outside the stream being run",
                             partition, pos, seq);
        for (size_t i = 0; i < n; i++) {
                if (ops[i].klen < 6 || memcmp(ops[i].key, "likes:", 6))
                        fr_violation(r, "unexpected Redis key \"%.*s\"", (int)ops[i].klen,
                                     ops[i].key);
                if (ops[i].op == EDDY_ROP_SET)
                        fr_set(r, ops[i].key, ops[i].klen, ops[i].val, ops[i].vlen);
                else if (ops[i].op == EDDY_ROP_DEL)
                        fr_del(r, ops[i].key, ops[i].klen);
                else
                        fr_violation(r, "unknown op 0x%02x", (unsigned char)ops[i].op);
        }
        f->present = 1;
        f->pos = pos;
        f->seq = seq;
        r->chunks_applied++;
}

static int fake_apply(void *opaque, int32_t partition, int64_t pos, int64_t seq_base,
                      uint32_t chunk, const eddy_redis_op_t *ops, size_t nops)
{
        fake_redis_t *r = opaque;
        uint64_t call = ++r->calls;
        /* the runtime pins the chunk size it handed fences out for into the entry */
        if (chunk != r->chunk_keys)
                fr_violation(r, "apply with chunk size %" PRIu32 ", configured %zu", chunk,
                             r->chunk_keys);
        if (partition < 0 || pos < 0 || seq_base < 0 || nops == 0)
                fr_violation(
                    r, "apply(partition %" PRId32 ", pos %" PRId64 ", seq %" PRId64 ", %zu ops)",
                    partition, pos, seq_base, nops);
        if (partition < 0)
                return EDDY_ERR_REDIS;
        size_t nchunks = nops ? (nops + r->chunk_keys - 1) / r->chunk_keys : 1;
        size_t upto = nchunks;
        int fail = 0;
        if (r->fail_mode != FAIL_NONE && call == r->fail_at) {
                fail = 1;
                if (r->fail_mode == FAIL_BEFORE)
                        upto = 0;
                else if (r->fail_mode == FAIL_AFTER_SOME)
                        upto = below(&r->rng, (uint32_t)nchunks + 1);
                r->fail_mode = FAIL_NONE;
                r->failures++;
        }
        for (size_t ch = 0, i = 0; ch < upto; ch++) {
                size_t n = nops - i < r->chunk_keys ? nops - i : r->chunk_keys;
                fr_script(r, partition, pos, seq_base + (int64_t)ch, ops + i, n);
                i += n;
        }
        return fail ? EDDY_ERR_REDIS : 0;
}

/* ---------------------------------------------------------------- event streams */

typedef struct rec_s {
        char *json;
        size_t len;
        int valid;
        int like; /* valid records: 1 like, 0 unlike */
        int post, user;
} rec_t;

typedef struct stream_s {
        rec_t *recs[NPARTS];
        size_t n[NPARTS], cap[NPARTS];
        int64_t invalid; /* records that must be dead-lettered */
        int64_t kinds[8];
} stream_t;

static void stream_add(stream_t *s, int p, const rec_t *r)
{
        if (s->n[p] == s->cap[p]) {
                s->cap[p] = s->cap[p] ? s->cap[p] * 2 : 64;
                s->recs[p] = realloc(s->recs[p], s->cap[p] * sizeof(*s->recs[p]));
                assert_non_null(s->recs[p]);
        }
        s->recs[p][s->n[p]++] = *r;
        if (!r->valid)
                s->invalid++;
}

static void stream_free(stream_t *s)
{
        for (int p = 0; p < NPARTS; p++) {
                for (size_t i = 0; i < s->n[p]; i++)
                        free(s->recs[p][i].json);
                free(s->recs[p]);
        }
        memset(s, 0, sizeof(*s));
}

static char *dup_bytes(const char *p, size_t n)
{
        char *c = malloc(n + 1);
        assert_non_null(c);
        memcpy(c, p, n);
        c[n] = '\0';
        return c;
}

/* One member of a like event; which: 0..4 = event_id, user_id, post_id, action, ts. */
static void member(sbuf_t *b, rng_t *r, int which, int64_t eid, int user, int post, int like)
{
        const char *sp = chance(r, 200) ? " " : "";
        switch (which) {
        case 0:
                sb_printf(b, "\"event_id\":%s\"e%" PRId64 "\"", sp, eid);
                break;
        case 1:
                sb_printf(b, "\"user_id\":%s\"u%d\"", sp, user);
                break;
        case 2:
                sb_printf(b, "\"post_id\":%s\"p%d\"", sp, post);
                break;
        case 3:
                sb_printf(b, "\"action\":%s\"%s\"", sp, like ? "like" : "unlike");
                break;
        default:
                sb_printf(b, "\"ts\":%s%" PRId64, sp, (int64_t)1700000000000 + eid * 7);
                break;
        }
}

/* A like event: the five fields in a random order, sometimes with extra members. With
 * @p skip >= 0 that field is left out; with @p repl (a raw JSON value) it replaces the
 * value of field @p repl_field; @p dup_field >= 0 is written twice. */
static void like_json(sbuf_t *b, rng_t *r, int64_t eid, int user, int post, int like, int skip,
                      int repl_field, const char *repl, int dup_field)
{
        static const char *const names[5] = {"event_id", "user_id", "post_id", "action", "ts"};
        int order[5] = {0, 1, 2, 3, 4};
        if (chance(r, 500))
                for (int i = 4; i > 0; i--) {
                        int j = (int)below(r, (uint32_t)i + 1), t = order[i];
                        order[i] = order[j];
                        order[j] = t;
                }
        b->len = 0;
        sb_put(b, "{", 1);
        int first = 1;
        if (chance(r, 100)) {
                sb_printf(b, "\"src\":{\"app\":[\"web\",1,null]}");
                first = 0;
        }
        for (int i = 0; i < 5; i++) {
                int f = order[i];
                if (f == skip)
                        continue;
                for (int times = f == dup_field ? 2 : 1; times > 0; times--) {
                        if (!first) {
                                int sp = chance(r, 200);
                                sb_put(b, ", ", sp ? 2 : 1);
                        }
                        first = 0;
                        if (f == repl_field)
                                sb_printf(b, "\"%s\":%s", names[f], repl);
                        else
                                member(b, r, f, eid, user, post, like);
                }
        }
        if (chance(r, 100))
                sb_printf(b, "%s\"client_ts\":17.5e3", first ? "" : ",");
        sb_put(b, "}", 1);
}

enum { K_VALID, K_DUP, K_TRUNC, K_NOTJSON, K_MISSING, K_TYPE, K_ACTION, K_DUPFIELD };

/* A random stream of @p nevents records over NPARTS partitions. */
static void gen_stream(stream_t *s, rng_t *r, int nevents, int64_t *eid)
{
        static const char *const notjson[] = {"",
                                              "like p7 by u3",
                                              "[1,2,3]",
                                              "null",
                                              "\"p1\"",
                                              "{",
                                              "{\"event_id\":\"e1\",}",
                                              "{\"event_id\" \"e1\"}",
                                              "{\"user_id\":\"u\x01\"}",
                                              "{\"post_id\":\"p1\"}}"};
        static const char *const badval[5][5] = {
            /* event_id */ {"true", "[]", "\"\"", "{}", "1.5"},
            /* user_id */ {"[\"u1\"]", "{\"id\":1}", "true", "\"\"", "2.5"},
            /* post_id */ {"[\"p1\"]", "{\"id\":1}", "false", "\"\"", "1e2"},
            /* action */ {"1", "true", "[\"like\"]", "{}", "0"},
            /* ts */ {"\"1700000000000\"", "1.5", "true", "1e12", "[1]"},
        };
        static const char *const badaction[] = {"\"love\"", "\"Like\"",  "\"LIKE\"",
                                                "\"\"",     "\"like \"", "\"unlike!\""};
        sbuf_t b = {0};
        char longid[400];
        memset(longid, 'x', sizeof(longid));
        longid[0] = '"';
        longid[299] = '"';
        longid[300] = '\0';
        uint32_t like_pm = 450 + below(r, 400); /* how often an action is a like */
        uint32_t nposts = 1 + below(r, NPOSTS), nusers = 1 + below(r, NUSERS);
        for (int k = 0; k < nevents; k++) {
                uint32_t roll = below(r, 1000);
                int post = (int)below(r, nposts), user = (int)below(r, nusers);
                int like = chance(r, like_pm);
                int p = post % NPARTS;
                rec_t rec = {0};
                int kind;
                if (roll < 100) {
                        kind = K_DUP;
                        int q = (int)below(r, NPARTS);
                        if (!s->n[q]) {
                                kind = K_VALID;
                        } else {
                                rec = s->recs[q][below(r, (uint32_t)s->n[q])];
                                rec.json = dup_bytes(rec.json, rec.len);
                                stream_add(s, q, &rec);
                                s->kinds[kind]++;
                                continue;
                        }
                } else if (roll < 780) {
                        kind = K_VALID;
                } else {
                        kind = K_TRUNC + (int)below(r, K_DUPFIELD - K_TRUNC + 1);
                }
                int64_t e = (*eid)++;
                switch (kind) {
                case K_VALID:
                        like_json(&b, r, e, user, post, like, -1, -1, NULL, -1);
                        rec.valid = 1;
                        break;
                case K_TRUNC:
                        like_json(&b, r, e, user, post, like, -1, -1, NULL, -1);
                        b.len = below(r, (uint32_t)b.len); /* never the closing brace */
                        break;
                case K_NOTJSON: {
                        const char *t = notjson[below(r, sizeof(notjson) / sizeof(*notjson))];
                        b.len = 0;
                        sb_put(&b, t, strlen(t));
                        p = (int)below(r, NPARTS);
                        break;
                }
                case K_MISSING:
                        if (chance(r, 500))
                                like_json(&b, r, e, user, post, like, (int)below(r, 5), -1, NULL,
                                          -1);
                        else
                                like_json(&b, r, e, user, post, like, -1, (int)below(r, 5), "null",
                                          -1);
                        break;
                case K_TYPE: {
                        int f = (int)below(r, 5);
                        const char *v = chance(r, 100) && f <= 2 ? longid : badval[f][below(r, 5)];
                        like_json(&b, r, e, user, post, like, -1, f, v, -1);
                        break;
                }
                case K_ACTION:
                        like_json(&b, r, e, user, post, like, -1, 3,
                                  badaction[below(r, sizeof(badaction) / sizeof(*badaction))], -1);
                        break;
                default: /* K_DUPFIELD: a field given twice */
                        like_json(&b, r, e, user, post, like, -1, -1, NULL, (int)below(r, 5));
                        break;
                }
                rec.json = dup_bytes(b.p ? b.p : "", b.len);
                rec.len = b.len;
                rec.like = like;
                rec.post = post;
                rec.user = user;
                stream_add(s, p, &rec);
                s->kinds[kind]++;
        }
        free(b.p);
}

/* ---------------------------------------------------------------- the brute-force model */

typedef struct model_s {
        unsigned char liked[NPOSTS][NUSERS];
        int64_t count[NPOSTS];
} model_t;

static void model_apply(model_t *m, const rec_t *r)
{
        if (!r->valid)
                return;
        unsigned char *l = &m->liked[r->post][r->user];
        if (*l == (unsigned char)r->like)
                return;
        *l = (unsigned char)r->like;
        m->count[r->post] += r->like ? 1 : -1;
}

/* The model after the first cur[p] records of every partition. */
static void model_at(model_t *m, const stream_t *s, const int64_t *cur)
{
        memset(m, 0, sizeof(*m));
        for (int p = 0; p < NPARTS; p++)
                for (int64_t i = 0; i < cur[p]; i++)
                        model_apply(m, &s->recs[p][i]);
}

/* ---------------------------------------------------------------- a runtime over a state.dir */

typedef struct world_s {
        char dir[64];
        char ovbuf[8][128];
        char *ov[8];
        int nov;
        fake_redis_t fr;
        eddy_ctx_t *ctx;
        int64_t dlq_closed; /* dead letters of the lives already closed */
        int64_t opens, crashes;
        uint64_t seed;
        int stream_no;
} world_t;

static void world_open(world_t *w)
{
        char err[256];
        for (int tries = 0; tries < 8; tries++) {
                uint64_t failures = w->fr.failures;
                w->opens++;
                w->ctx = eddy__test_open(&eddy_like_counter, w->ov, w->nov, fake_apply, &w->fr, err,
                                         sizeof(err));
                if (w->ctx)
                        return;
                /* only an injected delivery failure may stop a start: a crash while recovering */
                if (w->fr.failures == failures)
                        fail_msg("seed %" PRIu64 ": eddy__test_open: %s", w->seed, err);
        }
        fail_msg("seed %" PRIu64 ": eddy__test_open keeps failing", w->seed);
}

static void world_close(world_t *w)
{
        w->dlq_closed += eddy__test_dlq_count(w->ctx);
        eddy__test_close(w->ctx);
        w->ctx = NULL;
}

static int64_t world_dlq(world_t *w)
{
        return w->dlq_closed + (w->ctx ? eddy__test_dlq_count(w->ctx) : 0);
}

static void world_init(world_t *w, uint64_t seed, int chunk_keys, int cache_mb)
{
        memset(w, 0, sizeof(*w));
        w->seed = seed;
        snprintf(w->dir, sizeof(w->dir), "/tmp/eddy-0001-XXXXXX");
        assert_non_null(mkdtemp(w->dir));
        live_dir(w->dir, 1);
        snprintf(w->ovbuf[0], sizeof(w->ovbuf[0]), "state.dir=%s", w->dir);
        snprintf(w->ovbuf[1], sizeof(w->ovbuf[1]), "input.topics=%s", TOPIC);
        snprintf(w->ovbuf[2], sizeof(w->ovbuf[2]), "redis.chunk.keys=%d", chunk_keys);
        snprintf(w->ovbuf[3], sizeof(w->ovbuf[3]), "state.sync=false");
        snprintf(w->ovbuf[4], sizeof(w->ovbuf[4]), "log.level=warning");
        snprintf(w->ovbuf[5], sizeof(w->ovbuf[5]), "state.cache.mb=%d", cache_mb);
        snprintf(w->ovbuf[6], sizeof(w->ovbuf[6]), "state.write.buffer.mb=4");
        w->nov = 7;
        for (int i = 0; i < w->nov; i++)
                w->ov[i] = w->ovbuf[i];
        w->fr.chunk_keys = (size_t)chunk_keys;
        w->fr.rng.s = seed ^ 0x5eed;
        world_open(w);
}

static void world_free(world_t *w)
{
        if (w->ctx)
                world_close(w);
        fr_free(&w->fr);
        rm_rf(w->dir);
        live_dir(w->dir, 0);
}

/* On a mismatch: the records of @p post's partition fed so far, for the report. */
static void dump_partition(const stream_t *s, const int64_t *cur, int post)
{
        int p = post % NPARTS;
        for (int64_t i = 0; i < cur[p]; i++) {
                const rec_t *r = &s->recs[p][i];
                if (!r->valid || r->post == post)
                        print_message("  %d@%" PRId64 " %s %.*s\n", p, i,
                                      r->valid ? "valid  " : "invalid", (int)r->len, r->json);
        }
}

/* Redis and the stored offsets must be exactly the model of the committed prefix. */
static void check_synced(world_t *w, const stream_t *s, int32_t base, const int64_t *cur,
                         const char *where)
{
        model_t m;
        model_at(&m, s, cur);
        if (w->fr.bad)
                fail_msg("seed %" PRIu64 " stream %d (%s): %s", w->seed, w->stream_no, where,
                         w->fr.why);
        for (int p = 0; p < NPARTS; p++) {
                int64_t off = eddy__test_next_offset(w->ctx, TOPIC, base + p);
                if (off != cur[p])
                        fail_msg("seed %" PRIu64 " stream %d (%s): partition %d: stored offset "
                                 "%" PRId64 ", expected %" PRId64,
                                 w->seed, w->stream_no, where, base + p, off, cur[p]);
        }
        size_t want_keys = 0;
        for (int post = 0; post < NPOSTS; post++) {
                char k[32], v[32];
                int kl = snprintf(k, sizeof(k), "likes:p%d", post);
                int vl = snprintf(v, sizeof(v), "%" PRId64, m.count[post]);
                const kv_t *e = fr_find(&w->fr, k, (size_t)kl);
                if (m.count[post] < 0)
                        fail_msg("model went negative");
                if ((m.count[post] == 0 && e) ||
                    (m.count[post] > 0 &&
                     (!e || e->vl != (size_t)vl || memcmp(e->v, v, (size_t)vl))))
                        dump_partition(s, cur, post);
                if (m.count[post] == 0 && e)
                        fail_msg("seed %" PRIu64 " stream %d (%s): Redis holds %s = %.*s, the "
                                 "model says no key (count 0)",
                                 w->seed, w->stream_no, where, k, (int)e->vl, e->v);
                if (m.count[post] > 0) {
                        want_keys++;
                        if (!e)
                                fail_msg("seed %" PRIu64 " stream %d (%s): Redis has no %s, the "
                                         "model says %s",
                                         w->seed, w->stream_no, where, k, v);
                        if (e->vl != (size_t)vl || memcmp(e->v, v, (size_t)vl))
                                fail_msg("seed %" PRIu64 " stream %d (%s): Redis holds %s = %.*s, "
                                         "the model says %s",
                                         w->seed, w->stream_no, where, k, (int)e->vl, e->v, v);
                }
        }
        if (w->fr.nkv != want_keys)
                fail_msg("seed %" PRIu64 " stream %d (%s): Redis holds %zu keys, expected %zu",
                         w->seed, w->stream_no, where, w->fr.nkv, want_keys);
}

/* After a crash: start again and resume every partition where the state says. */
static void restart(world_t *w, const stream_t *s, int32_t base, int64_t *cur, rng_t *r)
{
        w->crashes++;
        /* sometimes the first re-delivery of the new life dies too */
        if (chance(r, 150)) {
                w->fr.fail_at = w->fr.calls + 1;
                w->fr.fail_mode = (fail_mode_t)(FAIL_BEFORE + (int)below(r, 3));
        }
        world_open(w);
        w->fr.fail_mode = FAIL_NONE;
        for (int p = 0; p < NPARTS; p++) {
                cur[p] = eddy__test_next_offset(w->ctx, TOPIC, base + p);
                if (cur[p] < 0 || (size_t)cur[p] > s->n[p])
                        fail_msg("seed %" PRIu64 " stream %d: resumed partition %d at %" PRId64,
                                 w->seed, w->stream_no, base + p, cur[p]);
        }
        check_synced(w, s, base, cur, "after a restart");
}

typedef struct run_opts_s {
        uint32_t crash_pm; /* per event: chance of a crash of some kind */
        int min_events, max_events;
} run_opts_t;

typedef struct totals_s {
        int64_t streams, events, invalid, dlq, commits, crashes, kinds[8];
} totals_t;

/* Feeds one stream through the runtime of @p w, on partitions base..base+NPARTS-1, with
 * random batch boundaries and crashes, checking Redis against the model at every point
 * where the runtime has committed and delivered. @returns the stream's dead letters. */
static int64_t run_stream(world_t *w, const run_opts_t *o, rng_t *r, int64_t *eid, totals_t *tot)
{
        stream_t s = {0};
        int nev = o->min_events + (int)below(r, (uint32_t)(o->max_events - o->min_events + 1));
        gen_stream(&s, r, nev, eid);
        int32_t base = (int32_t)(w->stream_no * NPARTS);
        w->fr.part_lo = base;
        w->fr.part_hi = base + NPARTS;
        fr_clear_keys(&w->fr);
        int64_t dlq0 = world_dlq(w);
        static const uint32_t batch_pm[] = {5, 30, 100, 300, 1000};
        uint32_t commit_pm = batch_pm[below(r, sizeof(batch_pm) / sizeof(*batch_pm))];
        int64_t cur[NPARTS];
        for (int p = 0; p < NPARTS; p++) {
                cur[p] = eddy__test_next_offset(w->ctx, TOPIC, base + p);
                assert_int_equal(cur[p], 0);
        }
        for (;;) {
                int left[NPARTS], nleft = 0;
                for (int p = 0; p < NPARTS; p++)
                        if ((size_t)cur[p] < s.n[p])
                                left[nleft++] = p;
                if (!nleft) {
                        /* the end: the last commit, then one for its done-marks; a failure
                         * armed before still strikes here */
                        uint64_t failures = w->fr.failures;
                        int rc1 = eddy__test_commit(w->ctx);
                        int rc2 = rc1 ? rc1 : eddy__test_commit(w->ctx);
                        tot->commits += 2;
                        if (rc2 == 0) {
                                if (w->fr.failures != failures)
                                        fail_msg("seed %" PRIu64 " stream %d: a delivery failed "
                                                 "and the commit returned 0",
                                                 w->seed, w->stream_no);
                                break;
                        }
                        if (w->fr.failures == failures)
                                fail_msg("seed %" PRIu64 " stream %d: commit returned %d without "
                                         "an injected failure",
                                         w->seed, w->stream_no, rc2);
                        world_close(w);
                        restart(w, &s, base, cur, r);
                        continue;
                }
                int p = left[below(r, (uint32_t)nleft)];
                const rec_t *rec = &s.recs[p][cur[p]];
                char key[16]; /* the topic is keyed by post_id */
                int kl = snprintf(key, sizeof(key), "p%d", rec->post);
                int rc = eddy__test_feed(w->ctx, TOPIC, base + p, cur[p], key, (size_t)kl,
                                         rec->json, rec->len);
                if (rc != 0)
                        fail_msg(
                            "seed %" PRIu64 " stream %d: feed of %d@%" PRId64 " (%.*s) returned %d",
                            w->seed, w->stream_no, base + p, cur[p], (int)rec->len, rec->json, rc);
                cur[p]++;
                tot->events++;
                if (o->crash_pm && chance(r, o->crash_pm)) {
                        uint32_t how = below(r, 4);
                        if (how == 0) {
                                /* killed in the middle of a batch */
                                world_close(w);
                                restart(w, &s, base, cur, r);
                                continue;
                        }
                        if (how == 1) {
                                /* killed right after a commit and its delivery, before the
                                 * done-marks reach the next commit */
                                int crc = eddy__test_commit(w->ctx);
                                tot->commits++;
                                if (crc == 0)
                                        check_synced(w, &s, base, cur, "crash after a commit");
                                world_close(w);
                                restart(w, &s, base, cur, r);
                                continue;
                        }
                        /* a delivery dies: on this batch's or a later one's */
                        if (w->fr.fail_mode == FAIL_NONE) {
                                w->fr.fail_at = w->fr.calls + 1 + below(r, 3);
                                w->fr.fail_mode = (fail_mode_t)(FAIL_BEFORE + (int)below(r, 3));
                        }
                }
                if (chance(r, commit_pm)) {
                        uint64_t failures = w->fr.failures;
                        rc = eddy__test_commit(w->ctx);
                        tot->commits++;
                        if (rc != 0) {
                                if (w->fr.failures == failures)
                                        fail_msg("seed %" PRIu64 " stream %d: commit returned %d "
                                                 "without an injected failure",
                                                 w->seed, w->stream_no, rc);
                                world_close(w);
                                restart(w, &s, base, cur, r);
                        } else {
                                if (w->fr.failures != failures)
                                        fail_msg("seed %" PRIu64 " stream %d: a delivery failed "
                                                 "and the commit returned 0",
                                                 w->seed, w->stream_no);
                                check_synced(w, &s, base, cur, "after a commit");
                        }
                }
        }
        w->fr.fail_mode = FAIL_NONE; /* armed for a delivery that never came */
        check_synced(w, &s, base, cur, "at the end");
        int64_t dlq = world_dlq(w) - dlq0;
        tot->streams++;
        tot->invalid += s.invalid;
        tot->dlq += dlq;
        for (int k = 0; k < 8; k++)
                tot->kinds[k] += s.kinds[k];
        int64_t invalid = s.invalid;
        stream_free(&s);
        if (o->crash_pm == 0 && dlq != invalid)
                fail_msg("seed %" PRIu64 " stream %d: %" PRId64 " dead letters for %" PRId64
                         " invalid records (no crash)",
                         w->seed, w->stream_no, dlq, invalid);
        if (dlq < invalid)
                fail_msg("seed %" PRIu64 " stream %d: %" PRId64 " dead letters for %" PRId64
                         " invalid records: some were lost",
                         w->seed, w->stream_no, dlq, invalid);
        w->stream_no++;
        return dlq;
}

static void run_worlds(const uint64_t *seeds, int nworlds, int streams_per_world,
                       const run_opts_t *o, const char *name)
{
        static const int chunks[] = {3, 1, 2, 1000, 3, 2, 1, 1000};
        totals_t tot = {0};
        int64_t opens = 0, applied = 0, fenced = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int wi = 0; wi < nworlds; wi++) {
                world_t w;
                rng_t r = {seeds[wi]};
                world_init(&w, seeds[wi], chunks[wi % 8], wi % 3 == 1 ? 1 : 64);
                int64_t eid = 1;
                for (int i = 0; i < streams_per_world; i++)
                        run_stream(&w, o, &r, &eid, &tot);
                /* the last commit marked every entry done: a start re-delivers nothing */
                uint64_t calls = w.fr.calls;
                world_close(&w);
                world_open(&w);
                assert_int_equal(w.fr.calls, calls);
                assert_int_equal(eddy__test_dlq_count(w.ctx), 0);
                opens += w.opens;
                tot.crashes += w.crashes;
                applied += w.fr.chunks_applied;
                fenced += w.fr.chunks_fenced;
                world_free(&w);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        print_message("%s: %" PRId64 " streams, %" PRId64 " events (%" PRId64 " valid, %" PRId64
                      " duplicates, %" PRId64 " invalid), %" PRId64 " commits, %" PRId64
                      " crashes, %" PRId64 " starts, %" PRId64 " chunks applied, %" PRId64
                      " fenced, %" PRId64 " dead letters; %.1f s\n",
                      name, tot.streams, tot.events, tot.kinds[K_VALID], tot.kinds[K_DUP],
                      tot.invalid, tot.commits, tot.crashes, opens, applied, fenced, tot.dlq,
                      (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        /* the mix must be worth something */
        assert_true(tot.invalid > tot.streams);
        assert_true(tot.kinds[K_DUP] > tot.streams);
        for (int k = K_TRUNC; k <= K_DUPFIELD; k++)
                assert_true(tot.kinds[k] > 0);
        if (o->crash_pm) {
                assert_true(tot.crashes > tot.streams / 3);
                assert_true(fenced > 0);
        }
}

/* ---------------------------------------------------------------- the tests */

/* Feeds one record of the stream being built by hand. */
static void feed1(world_t *w, int32_t p, int64_t off, const char *json)
{
        assert_int_equal(eddy__test_feed(w->ctx, TOPIC, p, off, NULL, 0, json, strlen(json)), 0);
}

static void expect_key(world_t *w, const char *k, const char *v)
{
        const kv_t *e = fr_find(&w->fr, k, strlen(k));
        if (!v) {
                if (e)
                        fail_msg("Redis holds %s = %.*s, expected no key", k, (int)e->vl, e->v);
                return;
        }
        if (!e)
                fail_msg("Redis has no %s, expected %s", k, v);
        if (e->vl != strlen(v) || memcmp(e->v, v, e->vl))
                fail_msg("Redis holds %s = %.*s, expected %s", k, (int)e->vl, e->v, v);
}

/* By example: one partition, a few batches, what reaches Redis and with which fence. */
static void test_examples(void **state)
{
        world_t w;
        world_init(&w, 1, 1000, 64);
        w.fr.part_lo = 0;
        w.fr.part_hi = 2;
        const char *like3 = "{\"event_id\":\"e1\",\"user_id\":\"u3\",\"post_id\":\"p7\","
                            "\"action\":\"like\",\"ts\":1700000000000}";
        const char *like4 = "{\"event_id\":\"e2\",\"user_id\":\"u4\",\"post_id\":\"p7\","
                            "\"action\":\"like\",\"ts\":1700000000001}";
        const char *unlike3 = "{\"event_id\":\"e3\",\"user_id\":\"u3\",\"post_id\":\"p7\","
                              "\"action\":\"unlike\",\"ts\":1700000000002}";
        const char *unlike4 = "{\"event_id\":\"e4\",\"user_id\":\"u4\",\"post_id\":\"p7\","
                              "\"action\":\"unlike\",\"ts\":1700000000003}";
        /* one like, one commit: SET likes:p7 1, fenced at the offset read */
        feed1(&w, 0, 0, like3);
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        expect_key(&w, "likes:p7", "1");
        assert_int_equal(w.fr.calls, 1);
        assert_true(w.fr.fences[0].present);
        assert_int_equal(w.fr.fences[0].pos, 0);
        assert_int_equal(w.fr.fences[0].seq, 0);
        assert_int_equal(eddy__test_next_offset(w.ctx, TOPIC, 0), 1);
        /* the same event again, a second like of a liked post: no output at all */
        feed1(&w, 0, 1, like3);
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        assert_int_equal(w.fr.calls, 1);
        assert_int_equal(eddy__test_next_offset(w.ctx, TOPIC, 0), 2);
        /* several changes of one post in a batch: one absolute value */
        feed1(&w, 0, 2, like4);
        feed1(&w, 0, 3, unlike3);
        feed1(&w, 0, 4, unlike3);
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        assert_int_equal(w.fr.calls, 2);
        expect_key(&w, "likes:p7", "1");
        assert_int_equal(w.fr.fences[0].pos, 4);
        assert_int_equal(w.fr.fences[0].seq, 0);
        /* down to 0: DEL */
        feed1(&w, 0, 5, unlike4);
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        expect_key(&w, "likes:p7", NULL);
        assert_int_equal(w.fr.nkv, 0);
        /* an event already processed (offset below the stored one) is skipped */
        feed1(&w, 0, 2, like4);
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        expect_key(&w, "likes:p7", NULL);
        assert_int_equal(eddy__test_dlq_count(w.ctx), 0);
        /* a batch of nothing but a dead letter: counted, nothing for Redis */
        uint64_t calls = w.fr.calls;
        feed1(&w, 1, 0,
              "{\"event_id\":\"e5\",\"user_id\":\"u1\",\"post_id\":\"p1\","
              "\"action\":\"love\",\"ts\":1}");
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        assert_int_equal(eddy__test_dlq_count(w.ctx), 1);
        assert_int_equal(w.fr.calls, calls);
        assert_int_equal(eddy__test_next_offset(w.ctx, TOPIC, 1), 1);
        world_free(&w);
}

/* No crash: random batch boundaries and chunk sizes; every invalid record dead-lettered
 * exactly once. */
static void test_no_crash_random_batches(void **state)
{
        static const uint64_t seeds[] = {11, 12, 13, 14, 15, 16, 17, 18};
        run_opts_t o = {0, 20, 160};
        run_worlds(seeds, 8, 250, &o, "no crash");
}

/* Crashes mid-batch, right after commits, in deliveries (before, after or in the middle of
 * the chunks reaching Redis) and while re-delivering on start. */
static void test_crashes(void **state)
{
        static const uint64_t seeds[] = {101, 102, 103, 104, 105, 106};
        run_opts_t o = {6, 20, 160};
        run_worlds(seeds, 6, 80, &o, "crashes");
}

/* Long streams, few crashes: many chunks per delivery and a deep state. */
static void test_long_streams(void **state)
{
        static const uint64_t seeds[] = {1001, 1002, 1003};
        run_opts_t o = {1, 1000, 3000};
        run_worlds(seeds, 3, 3, &o, "long streams");
}

/* Parses "checked=N state_corrected=N state_drift=N" from a reconcile report. */
static void reconcile_report(eddy_ctx_t *ctx, int64_t *checked, int64_t *corrected, int64_t *drift)
{
        FILE *fp = tmpfile();
        assert_non_null(fp);
        assert_int_equal(eddy__test_reconcile(ctx, fp), 0);
        rewind(fp);
        char line[1024];
        assert_non_null(fgets(line, sizeof(line), fp));
        fclose(fp);
        const char *names[3] = {" checked=", " state_corrected=", " state_drift="};
        int64_t *out[3] = {checked, corrected, drift};
        for (int i = 0; i < 3; i++) {
                const char *at = strstr(line, names[i]);
                if (!at)
                        fail_msg("reconcile report without%s: %s", names[i], line);
                char *end;
                *out[i] = strtoll(at + strlen(names[i]), &end, 10);
                assert_true(end > at + strlen(names[i]));
                assert_true(*end == ' ' || *end == '\n' || *end == '\0');
        }
        assert_non_null(strstr(line, " redis_corrected=0 "));
}

/* Reconciliation: no drift on consistent state; a corrupted stored count is found,
 * measured, fixed, and later events count from the fixed value. */
static void test_reconcile(void **state)
{
        world_t w;
        rng_t r = {7777};
        world_init(&w, 7777, 3, 64);
        int64_t eid = 1;
        totals_t tot = {0};
        run_opts_t o = {0, 300, 300};
        for (int i = 0; i < 4; i++)
                run_stream(&w, &o, &r, &eid, &tot);

        /* a stream fed in two halves, reconciled in between */
        stream_t s = {0};
        gen_stream(&s, &r, 400, &eid);
        int32_t base = (int32_t)(w.stream_no * NPARTS);
        w.fr.part_lo = base;
        w.fr.part_hi = base + NPARTS;
        fr_clear_keys(&w.fr);
        int64_t cur[NPARTS] = {0};
        for (int p = 0; p < NPARTS; p++)
                for (; (size_t)cur[p] < s.n[p] / 2; cur[p]++)
                        assert_int_equal(eddy__test_feed(w.ctx, TOPIC, base + p, cur[p], NULL, 0,
                                                         s.recs[p][cur[p]].json,
                                                         s.recs[p][cur[p]].len),
                                         0);
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        check_synced(&w, &s, base, cur, "reconcile: first half");

        /* posts with a count in every stream run so far: the last one's half, and the others */
        model_t m;
        model_at(&m, &s, cur);
        int64_t counted = 0;
        for (int post = 0; post < NPOSTS; post++)
                counted += m.count[post] > 0;
        int64_t checked, corrected, drift;
        reconcile_report(w.ctx, &checked, &corrected, &drift);
        assert_int_equal(corrected, 0);
        assert_int_equal(drift, 0);
        assert_true(checked >= counted);
        int64_t checked_before = checked;
        check_synced(&w, &s, base, cur, "reconcile: after a clean reconciliation");

        /* corrupt two stored counts behind the runtime's back: one too high by 5, and one
         * of 3 for a post (p77) that has no member at all */
        int liked = -1;
        for (int post = 0; post < NPOSTS && liked < 0; post++)
                if (m.count[post] > 0)
                        liked = post;
        assert_true(liked >= 0);
        const int ghost = 77;
        world_close(&w);
        eddy_state_opts_t so = {16, 8, 4, 0};
        char err[256];
        eddy_state_t *st = eddy_state_open(w.dir, &so, err, sizeof(err));
        assert_non_null(st);
        const int fixups[2][2] = {{liked, (int)m.count[liked] + 5}, {ghost, 3}};
        for (int i = 0; i < 2; i++) {
                char ck[16];
                int cl = snprintf(ck, sizeof(ck), "cp%d", fixups[i][0]);
                unsigned char v[8] = {0};
                v[7] = (unsigned char)fixups[i][1];
                eddy__state_put(st, base + fixups[i][0] % NPARTS, ck, (size_t)cl, v, 8);
        }
        assert_int_equal(eddy_state_commit(st, err, sizeof(err)), 0);
        eddy_state_close(st);
        world_open(&w);
        reconcile_report(w.ctx, &checked, &corrected, &drift);
        assert_int_equal(corrected, 2);
        assert_int_equal(drift, 5 + 3);
        assert_int_equal(checked, checked_before + 1);
        reconcile_report(w.ctx, &checked, &corrected, &drift);
        assert_int_equal(corrected, 0);
        assert_int_equal(drift, 0);
        assert_int_equal(checked, checked_before);
        check_synced(&w, &s, base, cur, "reconcile: after fixing the state");

        /* the second half counts from the fixed values */
        for (int p = 0; p < NPARTS; p++)
                for (; (size_t)cur[p] < s.n[p]; cur[p]++)
                        assert_int_equal(eddy__test_feed(w.ctx, TOPIC, base + p, cur[p], NULL, 0,
                                                         s.recs[p][cur[p]].json,
                                                         s.recs[p][cur[p]].len),
                                         0);
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        check_synced(&w, &s, base, cur, "reconcile: second half");

        /* touch the fixed post once more (u30 flips), so Redis gets a count computed from
         * the fixed one */
        model_at(&m, &s, cur);
        char ev[200];
        int lp = liked % NPARTS, flip = !m.liked[liked][NUSERS - 1];
        int el = snprintf(ev, sizeof(ev),
                          "{\"event_id\":\"fix1\",\"user_id\":\"u%d\",\"post_id\":\"p%d\","
                          "\"action\":\"%s\",\"ts\":1}",
                          NUSERS - 1, liked, flip ? "like" : "unlike");
        rec_t rec = {dup_bytes(ev, (size_t)el), (size_t)el, 1, flip, liked, NUSERS - 1};
        stream_add(&s, lp, &rec);
        assert_int_equal(eddy__test_feed(w.ctx, TOPIC, base + lp, cur[lp], NULL, 0, ev, (size_t)el),
                         0);
        cur[lp]++;
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        check_synced(&w, &s, base, cur, "reconcile: after touching the fixed post");

        /* and the ghost count is gone: a first like of p77 makes 1, not 4 */
        int gp = ghost % NPARTS;
        el = snprintf(ev, sizeof(ev),
                      "{\"event_id\":\"fix2\",\"user_id\":\"u1\",\"post_id\":\"p%d\","
                      "\"action\":\"like\",\"ts\":1}",
                      ghost);
        assert_int_equal(eddy__test_feed(w.ctx, TOPIC, base + gp, cur[gp], NULL, 0, ev, (size_t)el),
                         0);
        assert_int_equal(eddy__test_commit(w.ctx), 0);
        const kv_t *g = fr_find(&w.fr, "likes:p77", 9);
        assert_non_null(g);
        assert_int_equal(g->vl, 1);
        assert_memory_equal(g->v, "1", 1);
        assert_int_equal(eddy__test_next_offset(w.ctx, TOPIC, base + gp), cur[gp] + 1);
        stream_free(&s);
        world_free(&w);
}

int main(void)
{
        const struct CMUnitTest like_counter_commit_protocol[] = {
            cmocka_unit_test_teardown(test_examples, remove_live_dirs),
            cmocka_unit_test_teardown(test_no_crash_random_batches, remove_live_dirs),
            cmocka_unit_test_teardown(test_crashes, remove_live_dirs),
            cmocka_unit_test_teardown(test_long_streams, remove_live_dirs),
            cmocka_unit_test_teardown(test_reconcile, remove_live_dirs),
        };
        return cmocka_run_group_tests_name("like-counter and the commit protocol",
                                           like_counter_commit_protocol, NULL, NULL);
}
