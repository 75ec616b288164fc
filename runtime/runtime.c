/* runtime.c: the consumer loop, batching, the commit protocol, rebalancing and replay.
 *
 * The exactly-once argument, in one place:
 *
 *  1. Events are processed in batches. A processor's state changes stay in the state
 *     cache (read-your-writes), its outputs in the batch's outbox builder.
 *  2. At the end of a batch, one atomic RocksDB write holds the state changes, the next
 *     offset of every input partition the batch read, the Redis fence positions handed
 *     out, and the batch's outbox entry (the outputs, encoded). Nothing has left the
 *     process before this write.
 *  3. Then the outbox entry is delivered: Redis writes through the fenced Lua script
 *     (absolute values; a (position, seq) at or below the fence is skipped), Kafka records
 *     (dead letters and outputs) through the idempotent producer, waited for. The entry is
 *     deleted in the next commit.
 *  4. On start, and before reading anything, every committed outbox entry is delivered
 *     again, in order; on every assignment each partition is sought to the offset stored
 *     in RocksDB. Consumer-group offsets are committed for lag monitoring only.
 *
 * A crash before (2) loses only uncommitted work, which is re-read from the stored
 * offsets and recomputed into the same state (processing is deterministic). A crash
 * between (2) and the end of (3) re-delivers the entry: the fences make Redis skip what
 * was applied, the Kafka records carry an eddy.src header for de-duplication (an output's
 * is a (position, seq) of the same fence sequence as the Redis chunks, so it is unique and
 * grows with every output of its partition number). */
#include "runtime.h"
#include "testing.h"

#include "codec.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "redis.h"
#include "state.h"
#include "search.h"
#include "warehouse.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t eddy_stop;

#define EDDY__MAX_PARTITION (1 << 20) /* partition numbers are 0 .. this */

/* Flags of a Kafka record in an outbox entry (format 3). */
#define KREC_KEY   0x1 /* has a key */
#define KREC_VALUE 0x2 /* has a value; without it, a tombstone */
#define KREC_DLQ   0x4 /* a dead letter (else an output of the processor) */

/* An input topic-partition. */
typedef struct part_s {
        int assigned;
        int touched;       /* read in the batch in flight */
        int64_t next;      /* next offset to process */
        int64_t bound;     /* replay: stop before this offset; -1 none */
        int done;          /* replay: reached bound */
        int64_t start;     /* replay: first offset, for progress */
        int64_t events;    /* records processed by this process, for metrics */
        int64_t committed; /* next offset in the last commit; RD_KAFKA_OFFSET_* until then */
} part_t;

typedef struct topic_s {
        char *name;
        char *alloc; /* name, when matched by a pattern (freed with the topic) */
        int entry;   /* index of the input.topics entry that named or matched it */
        part_t *parts;
        int nparts;
} topic_t;

/* Per partition number: the fence (pos, seq) last handed out, to Redis chunks and to Kafka
 * outputs' eddy.src; dirty until it is put in the batch's commit. */
typedef struct pscope_s {
        int loaded, dirty;
        int64_t fpos, fseq;
} pscope_t;

/* An emitted Redis op, pointing into the batch arena by offsets. */
typedef struct rop_s {
        int32_t partition;
        uint32_t order;
        char op;
        size_t koff, klen, voff, vlen;
} rop_t;

/* Failed deliveries of one kind of Kafka record (outputs, dead letters) of an entry. */
typedef struct kfail_s {
        int n;
        rd_kafka_resp_err_t err; /* of the first */
        char topic[512];         /* of the first */
} kfail_t;

struct eddy_ctx_s {
        const eddy_job_args_t *args;
        const eddy_processor_t *proc;
        void *pconf;
        void *self;
        eddy_rtconf_t rt;
        eddy_logger_t lg;
        eddy_state_t *st;
        eddy_redis_t *redis;
        rd_kafka_t *rk;   /* consumer */
        rd_kafka_t *prod; /* dead-letter and output producer */
        char *src_topics; /* the input topics joined by ',', as in eddy.src */
        kfail_t kfail[2]; /* the delivery in progress: [0] outputs, [1] dead letters */
        int replay;
        int cooperative;

        topic_t *topics;
        int ntopics;
        pscope_t *scopes;
        int nscopes;

        /* the batch in flight */
        eddy_wbuf_t arena; /* keys and values of emitted ops */
        rop_t *rops;
        size_t nrops, rops_cap;
        rop_t *expects; /* reconcile: expected Redis values */
        size_t nexpects, expects_cap;
        eddy_wbuf_t krecs; /* encoded Kafka records of the batch: dead letters and outputs */
        uint32_t nkrecs;
        int64_t batch_events;
        uint64_t *done_seqs; /* delivered outbox entries to delete at the next commit */
        size_t ndone, done_cap;

        /* Redis delivery: eddy_redis_apply(), or a test's fake sink */
        eddy_test_apply_fn *apply;
        void *apply_opaque;
        /* the unit-test seam's Kafka sink (it has no producer) */
        eddy_test_kafka_fn *test_kafka;
        void *test_kafka_opaque;

        const eddy_msg_t *cur;
        char reason[64];
        char detail[512];

        /* the committer thread and its queue of prepared commits */
        int async;
        pthread_t thr;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct job_s *head, *tail;
        int queued, quit, pipe_err;
        int64_t write_ms, deliver_ms, wait_ms,
            poll_ms; /* time in RocksDB writes, delivery, back-pressure */

        /* metrics: served by eddy_metrics_serve(), reported to by report() */
        eddy_metrics_t *metrics;
        eddy_metrics_part_t *mparts;
        size_t mparts_cap;
        int64_t report_ms, batch_t0_us;
        int64_t redis_refused; /* entries the Redis sink refused (malformed ops) */

        /* the warehouse (docs/warehouse.md) */
        int wh; /* WH_* */
        eddy_wh_table_t *tables;
        int ntables;
        int *tsel; /* per table: written by this job */
        struct eddy_row_s *row;
        eddy_wbuf_t rows; /* clickhouse: the batch's rows, in the entry's format */
        uint32_t nrows;
        eddy_wbuf_t rolls; /* lake: the batch's roll instructions */
        uint32_t nrolls;
        struct lake_seg_s *segs; /* lake: [table * nseg_parts + partition] */
        int nseg_parts;
        int roll_all; /* lake: roll every segment at the next commit (end of run) */
        eddy_ch_t *ch;
        struct ch_max_s *chmax; /* clickhouse: [table * nchmax_parts + partition] */
        int nchmax_parts;
        int *tprepared;
        int ch_stale; /* set on assignment, read by delivery (atomic) */
        int64_t rows_out, rows_delivered, wh_retries;
        eddy_search_t *search; /* search.url set */
        eddy_wbuf_t sacts;     /* the batch's search actions, each length-prefixed NDJSON */
        uint32_t nsacts;
        eddy_wbuf_t sbody; /* delivery: one _bulk request body */
        eddy_wbuf_t spare; /* an entry buffer delivered, for the next batch (under mu) */
        eddy_counter_t *c_search_applied, *c_search_stale, *c_search_rejected;
        int64_t search_applied, search_retries;

        eddy_codec_t *codec;    /* input decoding, output encoding (docs/schemas.md) */
        eddy_codec_t *kcodec;   /* input.key.format other than json: key decoding */
        eddy_rtconf_t krt;      /* kcodec's view of the configuration */
        int64_t registry_waits; /* records held while the schema registry was unreachable */

        /* counters */
        int64_t events_in, events_dlq, events_out, batches, replay_total, replay_done;
        int done_changed;           /* a partition reached its replay bound */
        const char *last_tname;     /* process_one(): the last record's topic name ... */
        struct topic_s *last_topic; /* ... and its topic */
        int64_t test_dlq, test_out;
        int fatal;
};

/* ---------------------------------------------------------------- small helpers */

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* called per record: ms is enough */
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The consumer loop's clock, read several times per record: the coarse clock costs a few
 * nanoseconds and its resolution (a few ms) is enough for batch.max.ms and reporting. */
static int64_t loop_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* For the latency histograms: once per batch or delivery, finer than now_ms(). */
static int64_t now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double secs_since(int64_t t0_us)
{
        return (double)(now_us() - t0_us) / 1e6;
}

static void buf_u8(eddy_wbuf_t *b, uint8_t v)
{
        eddy_wbuf_put(b, &v, 1);
}

static void buf_u32(eddy_wbuf_t *b, uint32_t v)
{
        unsigned char x[4] = {v >> 24, v >> 16, v >> 8, v};
        eddy_wbuf_put(b, x, 4);
}

static void buf_u64(eddy_wbuf_t *b, uint64_t v)
{
        unsigned char x[8];
        for (int i = 7; i >= 0; i--, v >>= 8)
                x[i] = (unsigned char)v;
        eddy_wbuf_put(b, x, 8);
}

static void buf_bytes(eddy_wbuf_t *b, const void *p, size_t n)
{
        buf_u32(b, (uint32_t)n);
        eddy_wbuf_put(b, p, n);
}

/* A reader over an encoded outbox entry; sets bad on overrun. */
typedef struct rd_s {
        const unsigned char *p, *end;
        int bad;
} rd_t;

static uint64_t rd_n(rd_t *r, int n)
{
        if (r->end - r->p < n) {
                r->bad = 1;
                return 0;
        }
        uint64_t v = 0;
        for (int i = 0; i < n; i++)
                v = (v << 8) | *r->p++;
        return v;
}

static const char *rd_bytes(rd_t *r, size_t *len)
{
        *len = (size_t)rd_n(r, 4);
        if (r->bad || (size_t)(r->end - r->p) < *len) {
                r->bad = 1;
                return NULL;
        }
        const char *s = (const char *)r->p;
        r->p += *len;
        return s;
}

/* ---------------------------------------------------------------- plugin API */

void eddy_log(eddy_ctx_t *ctx, int level, const char *fac, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        eddy__vlog(&ctx->lg, level, fac, fmt, ap);
        va_end(ap);
}

eddy_counter_t *eddy_counter_new(eddy_ctx_t *ctx, const char *name, const char *help)
{
        char err[256];
        eddy_counter_t *c = eddy__metrics_counter_new(ctx->metrics, name, help, err, sizeof(err));
        if (!c)
                eddy__log(&ctx->lg, LOG_ERR, "PROC", "%s: %s", ctx->proc->name, err);
        return c;
}

int eddy_reject(eddy_ctx_t *ctx, const char *reason, const char *fmt, ...)
{
        snprintf(ctx->reason, sizeof(ctx->reason), "%s", reason);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->detail, sizeof(ctx->detail), fmt, ap);
        va_end(ap);
        return EDDY_ERR_BAD_RECORD;
}

int eddy_state_get(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                   const void **val, size_t *vlen)
{
        int r = eddy__state_get(ctx->st, partition, key, klen, val, vlen);
        if (r < 0)
                ctx->fatal = 1;
        return r < 0 ? -EDDY_ERR_STATE : r;
}

void eddy_state_put(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
        eddy__state_put(ctx->st, partition, key, klen, val, vlen);
}

void eddy_state_del(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen)
{
        eddy__state_del(ctx->st, partition, key, klen);
}

static int drain(eddy_ctx_t *ctx);

int eddy_state_scan(eddy_ctx_t *ctx, int32_t partition, const void *prefix, size_t plen,
                    eddy_scan_cb *cb, void *opaque)
{
        /* commits in flight hold entries the cache has and RocksDB not yet */
        if (ctx->async && drain(ctx))
                return -EDDY_ERR_STATE;
        return eddy__state_scan(ctx->st, partition, prefix, plen, cb, opaque);
}

/* Adds an op; val NULL with vlen > 0 leaves vlen bytes at ctx->arena.p + voff to fill. */
static rop_t *add_rop(eddy_ctx_t *ctx, rop_t **arr, size_t *n, size_t *cap, int32_t partition,
                      char op, const void *key, size_t klen, const void *val, size_t vlen)
{
        if (partition < 0 || partition > EDDY__MAX_PARTITION) {
                eddy__log(&ctx->lg, LOG_ERR, "PROC", "%s: a Redis output for partition %" PRId32,
                          ctx->proc->name, partition);
                ctx->fatal = 1;
                return NULL;
        }
        if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 1024;
                *arr = eddy__xrealloc(*arr, *cap * sizeof(**arr));
        }
        rop_t *o = &(*arr)[(*n)++];
        o->partition = partition;
        o->order = (uint32_t)(*n - 1);
        o->op = op;
        o->koff = ctx->arena.len;
        o->klen = klen;
        eddy_wbuf_put(&ctx->arena, key, klen);
        o->voff = ctx->arena.len;
        o->vlen = vlen;
        eddy_wbuf_put(&ctx->arena, val, vlen);
        return o;
}

void eddy_out_redis_set(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
        add_rop(ctx, &ctx->rops, &ctx->nrops, &ctx->rops_cap, partition, EDDY_ROP_SET, key, klen,
                val, vlen);
}

void eddy_out_redis_del(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen)
{
        add_rop(ctx, &ctx->rops, &ctx->nrops, &ctx->rops_cap, partition, EDDY_ROP_DEL, key, klen,
                NULL, 0);
}

void eddy_out_redis_hash(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                         const eddy_hfield_t *fields, size_t nfields, int64_t ttl_ms)
{
        if (nfields == 0) {
                /* Redis has no empty hash: replacing a hash by none is deleting it */
                eddy_out_redis_del(ctx, partition, key, klen);
                return;
        }
        size_t n = eddy_redis_hash_size(fields, nfields);
        rop_t *o = add_rop(ctx, &ctx->rops, &ctx->nrops, &ctx->rops_cap, partition, EDDY_ROP_HASH,
                           key, klen, NULL, n);
        if (o)
                eddy_redis_hash_pack(ctx->arena.p + o->voff, ttl_ms, fields, nfields);
}

void eddy_out_redis_expect(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                           const void *val, size_t vlen)
{
        add_rop(ctx, &ctx->expects, &ctx->nexpects, &ctx->expects_cap, partition,
                val ? EDDY_ROP_SET : EDDY_ROP_DEL, key, klen, val, vlen);
}

void eddy_out_search(eddy_ctx_t *ctx, int32_t partition, const char *index, const void *id,
                     size_t idlen, int64_t version, const void *doc, size_t doclen)
{
        if (!ctx->search)
                return;
        size_t at = ctx->sacts.len;
        buf_u32(&ctx->sacts, 0); /* the length, set below */
        eddy_search_action(&ctx->sacts, index, id, idlen, version, doc, doclen);
        uint32_t n = (uint32_t)(ctx->sacts.len - at - 4);
        for (int i = 0; i < 4; i++)
                ctx->sacts.p[at + (size_t)i] = (unsigned char)(n >> (24 - 8 * i));
        ctx->nsacts++;
}

/* ---------------------------------------------------------------- partitions */

static topic_t *topic_find(eddy_ctx_t *ctx, const char *name, int *idx)
{
        for (int i = 0; i < ctx->ntopics; i++)
                if (!strcmp(ctx->topics[i].name, name)) {
                        if (idx)
                                *idx = i;
                        return &ctx->topics[i];
                }
        return NULL;
}

static void scopes_grow(eddy_ctx_t *ctx, int32_t p)
{
        if (p >= ctx->nscopes) {
                ctx->scopes = eddy__xrealloc(ctx->scopes, (size_t)(p + 1) * sizeof(*ctx->scopes));
                memset(ctx->scopes + ctx->nscopes, 0,
                       (size_t)(p + 1 - ctx->nscopes) * sizeof(*ctx->scopes));
                ctx->nscopes = p + 1;
        }
}

static part_t *part_get(eddy_ctx_t *ctx, topic_t *t, int32_t p)
{
        if (p < 0 || p > EDDY__MAX_PARTITION)
                return NULL;
        if (p >= t->nparts) {
                t->parts = eddy__xrealloc(t->parts, (size_t)(p + 1) * sizeof(*t->parts));
                memset(t->parts + t->nparts, 0, (size_t)(p + 1 - t->nparts) * sizeof(*t->parts));
                for (int i = t->nparts; i <= p; i++)
                        t->parts[i].bound = -1;
                t->nparts = p + 1;
        }
        scopes_grow(ctx, p);
        return &t->parts[p];
}

/* The fence position of a partition number: the sum of next offsets over input topics, - 1.
 * With one input topic it is the last offset read. It grows with every event read. */
static int64_t scope_pos(eddy_ctx_t *ctx, int32_t p)
{
        int64_t s = 0;
        for (int i = 0; i < ctx->ntopics; i++)
                if (p < ctx->topics[i].nparts && ctx->topics[i].parts[p].next > 0)
                        s += ctx->topics[i].parts[p].next;
        return s - 1;
}

/* The fence of partition number @p p (0 .. EDDY__MAX_PARTITION), loaded on first use. */
static pscope_t *scope_get(eddy_ctx_t *ctx, int32_t p)
{
        scopes_grow(ctx, p);
        pscope_t *sc = &ctx->scopes[p];
        if (!sc->loaded) {
                if (eddy_state_fence_get(ctx->st, p, &sc->fpos, &sc->fseq) != 1) {
                        sc->fpos = -1;
                        sc->fseq = -1;
                }
                sc->loaded = 1;
        }
        return sc;
}

int eddy_partition_assigned(eddy_ctx_t *ctx, int32_t partition)
{
        for (int i = 0; i < ctx->ntopics; i++)
                if (partition >= 0 && partition < ctx->topics[i].nparts &&
                    ctx->topics[i].parts[partition].assigned)
                        return 1;
        return 0;
}

/* ---------------------------------------------------------------- Kafka records */

/* Appends one Kafka record to the batch's list, in outbox entry format 3:
 *
 *   topic (4-byte length, bytes), partition (4 bytes), flags (1 byte, KREC_*),
 *   key (4-byte length, bytes), value (4-byte length, bytes; empty without KREC_VALUE),
 *   header count (4 bytes), then each header's name and value (4-byte length, bytes).
 *
 * Format 2 had, for flags, a has-key byte; its records were all dead letters with values. */
static void krec_add(eddy_ctx_t *ctx, const char *topic, int flags, const void *key, size_t klen,
                     const void *val, size_t vlen, const char *const (*h)[2], size_t nh)
{
        eddy_wbuf_t *b = &ctx->krecs;
        buf_bytes(b, topic, strlen(topic));
        buf_u32(b, (uint32_t)RD_KAFKA_PARTITION_UA);
        buf_u8(b, (uint8_t)flags);
        buf_bytes(b, key, flags & KREC_KEY ? klen : 0);
        buf_bytes(b, val, flags & KREC_VALUE ? vlen : 0);
        buf_u32(b, (uint32_t)nh);
        for (size_t i = 0; i < nh; i++) {
                buf_bytes(b, h[i][0], strlen(h[i][0]));
                buf_bytes(b, h[i][1], strlen(h[i][1]));
        }
        ctx->nkrecs++;
}

/* A Kafka record read back from an outbox entry; the headers stay encoded. */
typedef struct krec_s {
        const char *topic, *key, *val;
        size_t tlen, klen, vlen;
        int32_t partition;
        int flags;
        uint32_t nh;
        rd_t hdrs;
} krec_t;

/* Reads one record of an entry of format @p version; sets r->bad if it is not one. */
static void krec_read(rd_t *r, int version, krec_t *k)
{
        k->topic = rd_bytes(r, &k->tlen);
        k->partition = (int32_t)rd_n(r, 4);
        k->flags = (int)rd_n(r, 1);
        if (version == 2)
                k->flags = (k->flags ? KREC_KEY : 0) | KREC_VALUE | KREC_DLQ;
        else if (k->flags & ~(KREC_KEY | KREC_VALUE | KREC_DLQ))
                r->bad = 1;
        k->key = rd_bytes(r, &k->klen);
        k->val = rd_bytes(r, &k->vlen);
        k->nh = (uint32_t)rd_n(r, 4);
        k->hdrs.p = r->p;
        for (uint32_t h = 0; h < k->nh && !r->bad; h++) {
                size_t l;
                rd_bytes(r, &l);
                rd_bytes(r, &l);
        }
        k->hdrs.end = r->p;
        k->hdrs.bad = r->bad;
}

/* The next (position, seq) of partition number @p p's fence sequence, handed out to an output
 * record or a warehouse row: above every one handed out before, to a Redis chunk or another
 * output, in this batch or a committed one. So it is unique even where the position has not
 * moved since the last batch, and a re-delivery of the entry repeats it. */
static void next_src(eddy_ctx_t *ctx, int32_t p, int64_t *pos, int64_t *seq)
{
        pscope_t *sc = scope_get(ctx, p);
        int64_t at = scope_pos(ctx, p);
        if (at > sc->fpos) {
                sc->fpos = at;
                sc->fseq = 0;
        } else {
                sc->fseq++;
        }
        sc->dirty = 1;
        *pos = sc->fpos;
        *seq = sc->fseq;
}

/* eddy.src: <input topics>/<partition>/<position>/<seq> (as snprintf would, without its cost:
 * one per output record). */
static void src_header(eddy_ctx_t *ctx, int32_t partition, int64_t pos, int64_t seq, char *out,
                       size_t size)
{
        size_t tl = strlen(ctx->src_topics);
        if (tl + 3 * 22 > size) {
                snprintf(out, size, "%s/%" PRId32 "/%" PRId64 "/%" PRId64, ctx->src_topics,
                         partition, pos, seq);
                return;
        }
        memcpy(out, ctx->src_topics, tl);
        char *p = out + tl;
        *p++ = '/';
        p += eddy_json_i64(p, partition);
        *p++ = '/';
        p += eddy_json_i64(p, pos);
        *p++ = '/';
        p += eddy_json_i64(p, seq);
        *p = '\0';
}

static int sleep_unless_stopped(int64_t ms);

/* The value of an output in output.format. The registry may be unreachable when a topic's
 * schema is registered (the first output to it): wait for it as for an input's schema id,
 * then stop the job, which a restart resumes from its last commit. @returns 0 or -1. */
static int encode_output(eddy_ctx_t *ctx, const char *topic, const void **val, size_t *vlen)
{
        char err[1024];
        int64_t backoff = ctx->rt.sr_backoff_ms;
        for (;;) {
                int r =
                    eddy__codec_encode(ctx->codec, topic, *val, *vlen, val, vlen, err, sizeof(err));
                if (r == EDDY_CODEC_OK)
                        return 0;
                int64_t since = eddy__codec_failing_since(ctx->codec);
                if (r == EDDY_CODEC_WAIT && eddy__codec_now_ms() - since < ctx->rt.sr_timeout_ms) {
                        eddy__log(&ctx->lg, LOG_WARNING, "SCHEMA",
                                  "waiting for the schema registry to register the schema of %s: "
                                  "%s",
                                  topic, err);
                        if (sleep_unless_stopped(backoff) == 0) {
                                backoff = backoff * 2 > ctx->rt.sr_backoff_max_ms
                                              ? ctx->rt.sr_backoff_max_ms
                                              : backoff * 2;
                                continue;
                        }
                }
                eddy__log(&ctx->lg, LOG_ERR, "SCHEMA", "output to %s: %s", topic, err);
                ctx->fatal = 1;
                return -1;
        }
}

void eddy_out_kafka(eddy_ctx_t *ctx, int32_t partition, const char *topic, const void *key,
                    size_t klen, const void *val, size_t vlen)
{
        if (partition < 0 || partition > EDDY__MAX_PARTITION || !topic || !*topic) {
                eddy__log(&ctx->lg, LOG_ERR, "OUTPUT",
                          "%s: a Kafka output for partition %" PRId32 " to topic \"%s\"",
                          ctx->proc->name, partition, topic ? topic : "(null)");
                ctx->fatal = 1;
                return;
        }
        if (val && eddy__codec_encodes(ctx->codec) && encode_output(ctx, topic, &val, &vlen))
                return;
        /* eddy.src continues the partition number's fence sequence (next_src) */
        int64_t pos, seq;
        next_src(ctx, partition, &pos, &seq);
        char src[1024];
        src_header(ctx, partition, pos, seq, src, sizeof(src));
        /* eddy.src only, unless output.headers.lineage: librdkafka allocates each header of
         * each record and frees it on its broker thread (cdc-fanout, ten pairs of runs: medians
         * 8.26 against 8.59 CPU-s per 1M changes with one header instead of three) */
        const char *h[][2] = {
            {"eddy.src", src}, {"eddy.job", ctx->rt.job_name}, {"eddy.processor", ctx->proc->name}};
        krec_add(ctx, topic, (key ? KREC_KEY : 0) | (val ? KREC_VALUE : 0), key, klen, val, vlen, h,
                 ctx->rt.output_lineage ? sizeof(h) / sizeof(h[0]) : 1);
        ctx->events_out++;
}

/* ---------------------------------------------------------------- warehouse rows */

enum { WH_OFF, WH_LAKE, WH_CH };

struct eddy_row_s {
        eddy_ctx_t *ctx;
        int table, col;
        int32_t partition;
        int64_t ts;
        eddy_wbuf_t body;
};

/* A row in a lake chunk: ts, pos, seq (8 bytes each, big-endian), body length (4), body. */
#define CHUNK_ROW_HEAD 28

/* lake: what a (table, partition) has waiting in EDDY_NS_LAKE keys since its last roll, and
 * the rows of the batch in flight, which go into one key (a chunk) at the commit */
typedef struct lake_seg_s {
        int64_t rows, bytes;
        int64_t since; /* wall clock, ms, when its first waiting row came (or was loaded) */
        uint64_t last_pos, last_seq;
        eddy_wbuf_t chunk; /* per row: ts, pos, seq (8 bytes each), length (4), Avro body */
        uint64_t chunk_pos, chunk_seq; /* of its first row */
} lake_seg_t;

/* clickhouse: the highest (pos, seq) stored for a (table, partition), when known */
typedef struct ch_max_s {
        int known;
        int64_t pos, seq;
} ch_max_t;

eddy_row_t *eddy_row_begin(eddy_ctx_t *ctx, int32_t partition, int table, int64_t event_ts)
{
        if (ctx->wh == WH_OFF || table < 0 || table >= ctx->ntables || !ctx->tsel[table])
                return NULL;
        if (partition < 0 || partition > EDDY__MAX_PARTITION) {
                eddy__log(&ctx->lg, LOG_ERR, "WAREHOUSE", "%s: a row for partition %" PRId32,
                          ctx->proc->name, partition);
                ctx->fatal = 1;
                return NULL;
        }
        eddy_row_t *r = ctx->row;
        r->ctx = ctx;
        r->table = table;
        r->col = 0;
        r->partition = partition;
        r->ts = event_ts;
        r->body.len = 0;
        return r;
}

/* The next column, if it is of type @p ty (or @p ty2); NULL (and the job stops) if not. */
static const eddy_wh_col_t *row_col(eddy_row_t *r, int ty, int ty2, int null)
{
        eddy_ctx_t *ctx = r->ctx;
        const eddy_wh_table_t *t = &ctx->tables[r->table];
        const eddy_wh_col_t *c = r->col < t->ncols - EDDY_WH_META_COLS ? &t->cols[r->col] : NULL;
        if (!c || (null ? !c->nullable
                        : (c->type != (eddy_wh_type_t)ty && c->type != (eddy_wh_type_t)ty2))) {
                if (!ctx->fatal)
                        eddy__log(&ctx->lg, LOG_ERR, "WAREHOUSE",
                                  "%s: table %s: column %d (%s) given a value of the wrong type",
                                  ctx->proc->name, t->name, r->col, c ? c->name : "past the end");
                ctx->fatal = 1;
                return NULL;
        }
        r->col++;
        if (c->nullable)
                eddy_avro_long(&r->body, null ? 0 : 1); /* the union's branch */
        return c;
}

void eddy_row_string(eddy_row_t *r, const void *s, size_t n)
{
        if (r && row_col(r, EDDY_WH_STRING, EDDY_WH_STRING, 0))
                eddy_avro_string(&r->body, s, n);
}

void eddy_row_long(eddy_row_t *r, int64_t v)
{
        if (r && row_col(r, EDDY_WH_LONG, EDDY_WH_INT, 0))
                eddy_avro_long(&r->body, v);
}

void eddy_row_double(eddy_row_t *r, double v)
{
        if (r && row_col(r, EDDY_WH_DOUBLE, EDDY_WH_DOUBLE, 0))
                eddy_avro_double(&r->body, v);
}

void eddy_row_bool(eddy_row_t *r, int v)
{
        if (r && row_col(r, EDDY_WH_BOOLEAN, EDDY_WH_BOOLEAN, 0))
                eddy_avro_bool(&r->body, v);
}

void eddy_row_null(eddy_row_t *r)
{
        if (r)
                row_col(r, -1, -1, 1);
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
        for (int i = n - 1; i >= 0; i--, v >>= 8)
                p[i] = (unsigned char)v;
}

static uint64_t get_be(const void *p, int n)
{
        const unsigned char *u = p;
        uint64_t v = 0;
        for (int i = 0; i < n; i++)
                v = (v << 8) | u[i];
        return v;
}

/* EDDY_NS_LAKE key prefix of (table, partition): 'W' name '\0' partition(4); @returns length */
static size_t lake_prefix(const eddy_wh_table_t *t, int32_t p, unsigned char *k)
{
        size_t nl = strlen(t->name);
        k[0] = EDDY_NS_LAKE;
        memcpy(k + 1, t->name, nl + 1);
        put_be(k + 2 + nl, (uint32_t)p, 4);
        return nl + 6;
}

/* Grows a [table * nparts + partition] array of @p size-byte elements so that partition
 * @p p fits, keeping every element where its (table, partition) says; new ones are zero. */
static void *tp_grow(void *arr, int *nparts, int ntables, size_t size, int32_t p)
{
        if (p < *nparts)
                return arr;
        int n = p + 1 > *nparts * 2 ? p + 1 : *nparts * 2;
        char *a = calloc((size_t)n * (size_t)ntables, size);
        if (!a)
                abort();
        for (int t = 0; arr && t < ntables; t++)
                memcpy(a + (size_t)t * (size_t)n * size,
                       (char *)arr + (size_t)t * (size_t)*nparts * size, (size_t)*nparts * size);
        free(arr);
        *nparts = n;
        return a;
}

static lake_seg_t *lake_seg(eddy_ctx_t *ctx, int table, int32_t p)
{
        ctx->segs = tp_grow(ctx->segs, &ctx->nseg_parts, ctx->ntables, sizeof(*ctx->segs), p);
        return &ctx->segs[table * ctx->nseg_parts + p];
}

static void lake_seg_add(lake_seg_t *sg, size_t bytes, uint64_t pos, uint64_t seq)
{
        if (!sg->rows)
                sg->since = now_ms();
        sg->rows++;
        sg->bytes += (int64_t)bytes;
        sg->last_pos = pos;
        sg->last_seq = seq;
}

void eddy_row_end(eddy_row_t *r)
{
        if (!r)
                return;
        eddy_ctx_t *ctx = r->ctx;
        const eddy_wh_table_t *t = &ctx->tables[r->table];
        if (r->col != t->ncols - EDDY_WH_META_COLS) {
                if (!ctx->fatal)
                        eddy__log(&ctx->lg, LOG_ERR, "WAREHOUSE",
                                  "%s: table %s: a row of %d columns, the schema has %d",
                                  ctx->proc->name, t->name, r->col, t->ncols - EDDY_WH_META_COLS);
                ctx->fatal = 1;
                return;
        }
        int64_t pos, seq;
        next_src(ctx, r->partition, &pos, &seq);
        eddy_avro_string(&r->body, ctx->src_topics, strlen(ctx->src_topics));
        eddy_avro_long(&r->body, r->partition);
        eddy_avro_long(&r->body, pos);
        eddy_avro_long(&r->body, seq);
        ctx->rows_out++;
        if (ctx->wh == WH_LAKE) {
                /* waits in state, committed with the batch, until its segment rolls */
                lake_seg_t *sg = lake_seg(ctx, r->table, r->partition);
                if (!sg->chunk.len) {
                        sg->chunk_pos = (uint64_t)pos;
                        sg->chunk_seq = (uint64_t)seq;
                }
                unsigned char h[CHUNK_ROW_HEAD];
                put_be(h, (uint64_t)r->ts, 8);
                put_be(h + 8, (uint64_t)pos, 8);
                put_be(h + 16, (uint64_t)seq, 8);
                put_be(h + 24, (uint32_t)r->body.len, 4);
                eddy_wbuf_put(&sg->chunk, h, CHUNK_ROW_HEAD);
                eddy_wbuf_put(&sg->chunk, r->body.p, r->body.len);
                lake_seg_add(sg, r->body.len, (uint64_t)pos, (uint64_t)seq);
                return;
        }
        /* clickhouse: in the batch's outbox entry */
        buf_u32(&ctx->rows, (uint32_t)r->table);
        buf_u32(&ctx->rows, (uint32_t)r->partition);
        buf_u64(&ctx->rows, (uint64_t)pos);
        buf_u64(&ctx->rows, (uint64_t)seq);
        buf_u64(&ctx->rows, (uint64_t)r->ts);
        buf_bytes(&ctx->rows, r->body.p, r->body.len);
        ctx->nrows++;
}

/* lake: puts the batch's chunks in the commit, and a roll instruction for every segment due
 * (or all, at the end of a run) */
static void lake_rolls(eddy_ctx_t *ctx)
{
        int64_t now = now_ms();
        for (int t = 0; t < ctx->ntables; t++)
                for (int p = 0; p < ctx->nseg_parts; p++) {
                        lake_seg_t *sg = &ctx->segs[t * ctx->nseg_parts + p];
                        if (sg->chunk.len) {
                                unsigned char k[600];
                                size_t kl = lake_prefix(&ctx->tables[t], p, k);
                                put_be(k + kl, sg->chunk_pos, 8);
                                put_be(k + kl + 8, sg->chunk_seq, 8);
                                eddy_state_raw_put(ctx->st, k, kl + 16, sg->chunk.p, sg->chunk.len);
                                sg->chunk.len = 0;
                        }
                        if (!sg->rows)
                                continue;
                        int64_t age = now - sg->since;
                        if (!ctx->roll_all && sg->rows < ctx->rt.warehouse_roll_rows &&
                            sg->bytes < ctx->rt.warehouse_roll_bytes &&
                            (!ctx->rt.warehouse_roll_ms || age < ctx->rt.warehouse_roll_ms))
                                continue;
                        buf_u32(&ctx->rolls, (uint32_t)t);
                        buf_u32(&ctx->rolls, (uint32_t)p);
                        buf_u64(&ctx->rolls, sg->last_pos);
                        buf_u64(&ctx->rolls, sg->last_seq);
                        ctx->nrolls++;
                        sg->rows = sg->bytes = 0;
                }
}

/* Visits the rows of a chunk, each as an eddy_wh_row_t (of partition @p p) whose body points
 * into the chunk. @returns -1 if it is corrupt. */
static int chunk_rows(const unsigned char *v, size_t vl, int32_t p,
                      void (*cb)(void *opaque, const eddy_wh_row_t *row), void *opaque)
{
        while (vl > 0) {
                if (vl < CHUNK_ROW_HEAD)
                        return -1;
                eddy_wh_row_t row = {.body = v + CHUNK_ROW_HEAD,
                                     .len = (size_t)get_be(v + 24, 4),
                                     .ts = (int64_t)get_be(v, 8),
                                     .partition = p,
                                     .pos = (int64_t)get_be(v + 8, 8),
                                     .seq = (int64_t)get_be(v + 16, 8)};
                if (row.len > vl - CHUNK_ROW_HEAD)
                        return -1;
                cb(opaque, &row);
                v += CHUNK_ROW_HEAD + row.len;
                vl -= CHUNK_ROW_HEAD + row.len;
        }
        return 0;
}

struct seg_load {
        eddy_ctx_t *ctx;
        int table;
        size_t plen;
        lake_seg_t *sg;
        int bad;
};

static void seg_row(void *opaque, const eddy_wh_row_t *row)
{
        struct seg_load *sl = opaque;
        lake_seg_add(sl->sg, row->len, (uint64_t)row->pos, (uint64_t)row->seq);
}

static int seg_visit(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        struct seg_load *sl = opaque;
        const unsigned char *u = k;
        if (kl != sl->plen + 16)
                return 0;
        int32_t p = (int32_t)get_be(u + sl->plen - 4, 4);
        sl->sg = lake_seg(sl->ctx, sl->table, p);
        sl->bad |= chunk_rows(v, vl, p, seg_row, sl);
        return 0;
}

/* lake: the segments, from the rows waiting in state (after the outbox is re-delivered). */
static int lake_load(eddy_ctx_t *ctx)
{
        for (int i = 0; i < ctx->nseg_parts * ctx->ntables; i++) {
                lake_seg_t *sg = &ctx->segs[i];
                sg->rows = sg->bytes = 0;
        }
        for (int t = 0; t < ctx->ntables; t++) {
                unsigned char lo[600], hi[600];
                size_t nl = strlen(ctx->tables[t].name);
                lo[0] = hi[0] = EDDY_NS_LAKE;
                memcpy(lo + 1, ctx->tables[t].name, nl + 1);
                memcpy(hi + 1, ctx->tables[t].name, nl);
                hi[1 + nl] = 1; /* just past every key of this table */
                struct seg_load sl = {ctx, t, nl + 6, NULL, 0};
                if (eddy_state_raw_scan(ctx->st, lo, nl + 2, hi, nl + 2, seg_visit, &sl) < 0 ||
                    sl.bad)
                        return -1;
        }
        return 0;
}

/* ---------------------------------------------------------------- delivery */

typedef struct entry_view_s {
        eddy_redis_op_t *ops;
        size_t cap;
} entry_view_t;

/* Delivery reports come for failures only (delivery.report.only.error): successes are
 * counted per topic once an entry's records are all delivered (deliver_kafka). */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        kfail_t *f = m->_private;
        if (m->err && f && f->n++ == 0) {
                f->err = m->err;
                snprintf(f->topic, sizeof(f->topic), "%s", rd_kafka_topic_name(m->rkt));
        }
}

/* Records of an entry per run of one topic, counted while they are produced and added to
 * the metrics once all are delivered. */
typedef struct outrun_s {
        char topic[512];
        int64_t n;
} outrun_t;

static void outrun_add(outrun_t **runs, size_t *n, size_t *cap, const char *topic)
{
        if (*n && !strcmp((*runs)[*n - 1].topic, topic)) {
                (*runs)[*n - 1].n++;
                return;
        }
        if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 8;
                *runs = eddy__xrealloc(*runs, *cap * sizeof(**runs));
        }
        snprintf((*runs)[*n].topic, sizeof((*runs)[*n].topic), "%s", topic);
        (*runs)[(*n)++].n = 1;
}

static int redis_groups(eddy_ctx_t *ctx, rd_t *r, int version, uint32_t ngroups, entry_view_t *v,
                        int apply);

/* Produces the Kafka records of an entry (format @p version), applies its @p ngroups Redis
 * groups at @p groups (if any) while they travel, and waits for every delivery; retries the
 * whole list of records until it is delivered or the job stops. */
static int deliver_kafka(eddy_ctx_t *ctx, rd_t *r, int version, uint32_t nrec, rd_t *groups,
                         uint32_t ngroups, entry_view_t *v)
{
        static const char *const fac[2] = {"OUTPUT", "DLQ"};
        static const char *const what[2] = {"output records", "dead letters"};
        int attempt = 0;
        const unsigned char *start = r->p;
        outrun_t *runs = NULL;
        size_t nruns = 0, runs_cap = 0;
        for (;;) {
                nruns = 0;
                /* in ctx, not on the stack: a report may come after a stop, in ctx_free() */
                kfail_t *fail = ctx->kfail;
                memset(fail, 0, sizeof(ctx->kfail));
                r->p = start;
                for (uint32_t i = 0; i < nrec && !r->bad; i++) {
                        krec_t k;
                        krec_read(r, version, &k);
                        if (r->bad)
                                break;
                        int dlq = !!(k.flags & KREC_DLQ);
                        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(k.nh);
                        for (uint32_t h = 0; h < k.nh; h++) {
                                size_t nl, hl;
                                const char *n = rd_bytes(&k.hdrs, &nl);
                                const char *v = rd_bytes(&k.hdrs, &hl);
                                rd_kafka_header_add(hdrs, n, (ssize_t)nl, v, (ssize_t)hl);
                        }
                        char tname[512];
                        size_t tl = k.tlen < sizeof(tname) ? k.tlen : sizeof(tname) - 1;
                        memcpy(tname, k.topic, tl);
                        tname[tl] = '\0';
                        outrun_add(&runs, &nruns, &runs_cap, tname);
                        int haskey = k.flags & KREC_KEY, hasval = k.flags & KREC_VALUE;
                        rd_kafka_resp_err_t err;
                        for (;;) {
                                err = rd_kafka_producev(
                                    ctx->prod, RD_KAFKA_V_TOPIC(tname),
                                    RD_KAFKA_V_PARTITION(k.partition),
                                    RD_KAFKA_V_KEY(haskey ? k.key : NULL, haskey ? k.klen : 0),
                                    RD_KAFKA_V_VALUE(hasval ? (void *)k.val : NULL,
                                                     hasval ? k.vlen : 0),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&fail[dlq]),
                                    RD_KAFKA_V_END);
                                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                        break;
                                rd_kafka_poll(ctx->prod, 100);
                        }
                        if (err) {
                                rd_kafka_headers_destroy(hdrs);
                                eddy__log(&ctx->lg, LOG_ERR, fac[dlq], "produce to %s failed: %s",
                                          tname, rd_kafka_err2str(err));
                                if (fail[dlq].n++ == 0) {
                                        fail[dlq].err = err;
                                        snprintf(fail[dlq].topic, sizeof(fail[dlq].topic), "%s",
                                                 tname);
                                }
                        }
                }
                if (r->bad) {
                        free(runs);
                        return -1;
                }
                if (groups) {
                        /* the Redis groups, once, while the records are on their way: the
                         * broker and Redis work at the same time (cdc-fanout: Redis ~6 s and
                         * Kafka ~4 s of delivery per 1M changes, one after the other before).
                         * If Redis fails the entry is delivered again, records included, as
                         * after a crash: eddy.src names the repeats. */
                        int rc = redis_groups(ctx, groups, version, ngroups, v, 1);
                        groups = NULL;
                        if (rc) {
                                free(runs);
                                return rc;
                        }
                }
                rd_kafka_resp_err_t ferr = rd_kafka_flush(ctx->prod, (int)ctx->rt.kafka_timeout_ms);
                if (ferr == RD_KAFKA_RESP_ERR_NO_ERROR && !fail[0].n && !fail[1].n) {
                        for (size_t i = 0; i < nruns; i++)
                                eddy_metrics_label_add(ctx->metrics, EDDY_ML_EVENTS_OUT,
                                                       runs[i].topic, runs[i].n);
                        free(runs);
                        return 0;
                }
                eddy_metrics_label_add(ctx->metrics, EDDY_ML_SINK_ERRORS, "kafka",
                                       fail[0].n + fail[1].n + (ferr ? 1 : 0));
                /* Retry the whole entry: consumers de-duplicate by the eddy.src header. */
                while (rd_kafka_outq_len(ctx->prod) > 0 && !eddy_stop)
                        rd_kafka_flush(ctx->prod, 1000);
                if (eddy_stop) {
                        free(runs);
                        return EDDY_ERR_STOPPED;
                }
                int ms = 200 << (attempt < 5 ? attempt : 5);
                for (int d = 0; d < 2; d++)
                        if (fail[d].n)
                                eddy__log(&ctx->lg, LOG_WARNING, fac[d],
                                          "%d %s not delivered, the first to %s (%s); retrying "
                                          "in %d ms",
                                          fail[d].n, what[d], fail[d].topic,
                                          rd_kafka_err2str(fail[d].err), ms);
                if (ferr)
                        eddy__log(&ctx->lg, LOG_WARNING, "OUTBOX",
                                  "Kafka records not delivered within kafka.timeout.ms=%" PRId64
                                  " (%s); retrying in %d ms",
                                  ctx->rt.kafka_timeout_ms, rd_kafka_err2str(ferr), ms);
                attempt++;
                eddy_metrics_label_add(ctx->metrics, EDDY_ML_SINK_RETRIES, "kafka", 1);
                usleep((useconds_t)ms * 1000);
        }
}

/* The unit-test seam has no producer: counts the records, hands them to its sink. */
static int deliver_test(eddy_ctx_t *ctx, rd_t *r, int version, uint32_t nrec)
{
        for (uint32_t i = 0; i < nrec; i++) {
                krec_t k;
                krec_read(r, version, &k);
                if (r->bad)
                        return -1;
                if (k.flags & KREC_DLQ)
                        ctx->test_dlq++;
                else
                        ctx->test_out++;
                if (!ctx->test_kafka)
                        continue;
                eddy_hfield_t *h = eddy__xrealloc(NULL, (k.nh ? k.nh : 1) * sizeof(*h));
                for (uint32_t j = 0; j < k.nh; j++) {
                        h[j].name = rd_bytes(&k.hdrs, &h[j].nlen);
                        h[j].val = rd_bytes(&k.hdrs, &h[j].vlen);
                }
                eddy_test_krec_t tr = {
                    .topic = k.topic,
                    .tlen = k.tlen,
                    .dead_letter = !!(k.flags & KREC_DLQ),
                    .key = k.flags & KREC_KEY ? k.key : NULL,
                    .klen = k.klen,
                    .val = k.flags & KREC_VALUE ? k.val : NULL,
                    .vlen = k.vlen,
                    .headers = h,
                    .nheaders = k.nh,
                };
                ctx->test_kafka(ctx->test_kafka_opaque, &tr);
                free(h);
        }
        return 0;
}

static int apply_redis(void *opaque, int32_t partition, int64_t pos, int64_t seq, uint32_t chunk,
                       const eddy_redis_op_t *ops, size_t nops)
{
        eddy_ctx_t *ctx = opaque;
        if (!ctx->redis)
                return 0;
        return eddy_redis_apply(ctx->redis, partition, pos, seq, chunk, ops, nops, &eddy_stop);
}

/* Backs off before retry @p attempt of a delivery to @p sink ("warehouse", "search");
 * @returns non-zero to stop. */
static int sink_backoff(eddy_ctx_t *ctx, const char *sink, int attempt, const char *err)
{
        int ms = 200 << (attempt < 5 ? attempt : 5);
        eddy__log(&ctx->lg, LOG_WARNING, !strcmp(sink, "search") ? "SEARCH" : "WAREHOUSE",
                  "%s; retrying in %d ms", err, ms);
        eddy_metrics_label_add(ctx->metrics, EDDY_ML_SINK_ERRORS, sink, 1);
        eddy_metrics_label_add(ctx->metrics, EDDY_ML_SINK_RETRIES, sink, 1);
        for (int waited = 0; waited < ms && !eddy_stop; waited += 50)
                usleep(50 * 1000);
        return eddy_stop;
}

/* A warehouse table's index in an entry, checked against this job's tables. */
static int wh_table(eddy_ctx_t *ctx, uint32_t t)
{
        if (t >= (uint32_t)ctx->ntables || ctx->wh == WH_OFF) {
                eddy__log(&ctx->lg, LOG_ERR, "WAREHOUSE",
                          "an outbox entry has rows of table number %" PRIu32
                          ", and this job writes %s; restore the job's warehouse settings",
                          t, ctx->wh == WH_OFF ? "no warehouse" : "fewer tables");
                return -1;
        }
        return (int)t;
}

static ch_max_t *ch_max(eddy_ctx_t *ctx, int table, int32_t p)
{
        ctx->chmax = tp_grow(ctx->chmax, &ctx->nchmax_parts, ctx->ntables, sizeof(*ctx->chmax), p);
        return &ctx->chmax[table * ctx->nchmax_parts + p];
}

/* Forget what ClickHouse is known to hold (after a failed insert, or an assignment: another
 * instance may have written the partition meanwhile). Delivery's thread only. */
static void ch_forget(eddy_ctx_t *ctx)
{
        for (int i = 0; i < ctx->ntables * ctx->nchmax_parts; i++)
                ctx->chmax[i].known = 0;
}

/* clickhouse: inserts the rows of an entry, one INSERT per table, each row once: rows at or
 * below the highest (_offset, _seq) ClickHouse holds for their partition are skipped. */
static int deliver_rows(eddy_ctx_t *ctx, rd_t *r, uint32_t nrows)
{
        eddy_wh_row_t *rows = eddy__xrealloc(NULL, nrows * sizeof(*rows));
        uint32_t *tab = eddy__xrealloc(NULL, nrows * sizeof(*tab));
        int rc = 0;
        for (uint32_t i = 0; i < nrows && !r->bad; i++) {
                tab[i] = (uint32_t)rd_n(r, 4);
                rows[i].partition = (int32_t)rd_n(r, 4);
                rows[i].pos = (int64_t)rd_n(r, 8);
                rows[i].seq = (int64_t)rd_n(r, 8);
                rows[i].ts = (int64_t)rd_n(r, 8);
                rows[i].body = (const unsigned char *)rd_bytes(r, &rows[i].len);
        }
        if (r->bad)
                rc = -1;
        for (uint32_t i = 0; i < nrows && !rc; i++)
                if (wh_table(ctx, tab[i]) < 0 || ctx->wh != WH_CH)
                        rc = EDDY_ERR_IO;
        if (!rc && __atomic_exchange_n(&ctx->ch_stale, 0, __ATOMIC_ACQ_REL))
                ch_forget(ctx);
        eddy_wh_row_t *todo = eddy__xrealloc(NULL, nrows * sizeof(*todo));
        char err[1024];
        for (int t = 0; t < ctx->ntables && !rc; t++) {
                for (int attempt = 0;; attempt++) {
                        int crc = 0;
                        size_t n = 0;
                        if (!ctx->tprepared[t]) {
                                crc = eddy_ch_prepare(ctx->ch, &ctx->tables[t], err, sizeof(err));
                                ctx->tprepared[t] = crc == 0;
                        }
                        for (uint32_t i = 0; i < nrows && !crc; i++) {
                                if (tab[i] != (uint32_t)t)
                                        continue;
                                ch_max_t *m = ch_max(ctx, t, rows[i].partition);
                                if (!m->known) {
                                        crc = eddy_ch_max_pos(ctx->ch, &ctx->tables[t],
                                                              ctx->src_topics, rows[i].partition,
                                                              &m->pos, &m->seq, err, sizeof(err));
                                        m->known = crc == 0;
                                        if (crc)
                                                break;
                                }
                                if (rows[i].pos < m->pos ||
                                    (rows[i].pos == m->pos && rows[i].seq <= m->seq))
                                        continue; /* ClickHouse has it */
                                todo[n++] = rows[i];
                        }
                        if (!crc && n)
                                crc = eddy_ch_insert(ctx->ch, &ctx->tables[t], todo, n, err,
                                                     sizeof(err));
                        if (!crc) {
                                for (size_t i = 0; i < n; i++) {
                                        ch_max_t *m = ch_max(ctx, t, todo[i].partition);
                                        m->pos = todo[i].pos;
                                        m->seq = todo[i].seq;
                                }
                                ctx->rows_delivered += (int64_t)n;
                                eddy_metrics_label_add(ctx->metrics, EDDY_ML_WAREHOUSE_ROWS,
                                                       ctx->tables[t].name, (int64_t)n);
                                break;
                        }
                        if (crc == EDDY_CH_FATAL) {
                                eddy__log(&ctx->lg, LOG_ERR, "WAREHOUSE",
                                          "%s; the job stops (the rows stay in the outbox)", err);
                                eddy_metrics_label_add(ctx->metrics, EDDY_ML_SINK_ERRORS,
                                                       "warehouse", 1);
                                rc = EDDY_ERR_IO;
                                break;
                        }
                        /* an insert may have landed without its answer: ask again */
                        ch_forget(ctx);
                        ctx->wh_retries++;
                        if (sink_backoff(ctx, "warehouse", attempt, err)) {
                                rc = EDDY_ERR_STOPPED;
                                break;
                        }
                }
        }
        free(todo);
        free(tab);
        free(rows);
        return rc;
}

struct lake_read {
        eddy_wbuf_t data;
        eddy_wh_row_t *rows;
        size_t n, cap;
        size_t plen;
        int32_t partition;
        int bad;
};

static void lake_row(void *opaque, const eddy_wh_row_t *row)
{
        struct lake_read *lr = opaque;
        if (lr->n == lr->cap) {
                lr->cap = lr->cap ? lr->cap * 2 : 1024;
                lr->rows = eddy__xrealloc(lr->rows, lr->cap * sizeof(*lr->rows));
        }
        eddy_wh_row_t *r = &lr->rows[lr->n++];
        *r = *row;
        r->body = (const unsigned char *)(uintptr_t)lr->data.len; /* an offset until done */
        eddy_wbuf_put(&lr->data, row->body, row->len);
}

static int lake_visit(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        struct lake_read *lr = opaque;
        if (kl != lr->plen + 16)
                return 0;
        lr->bad |= chunk_rows(v, vl, lr->partition, lake_row, lr);
        return 0;
}

/* lake: writes the files of each roll instruction of an entry, then deletes their rows. */
static int deliver_rolls(eddy_ctx_t *ctx, rd_t *r, uint32_t nrolls)
{
        char err[1024];
        for (uint32_t i = 0; i < nrolls; i++) {
                uint32_t tn = (uint32_t)rd_n(r, 4);
                int32_t p = (int32_t)rd_n(r, 4);
                uint64_t pos = rd_n(r, 8), seq = rd_n(r, 8);
                if (r->bad)
                        return -1;
                int t = wh_table(ctx, tn);
                if (t < 0 || ctx->wh != WH_LAKE)
                        return EDDY_ERR_IO;
                const eddy_wh_table_t *tb = &ctx->tables[t];
                unsigned char lo[600], hi[600];
                size_t pl = lake_prefix(tb, p, lo);
                memcpy(hi, lo, pl);
                put_be(hi + pl, pos, 8);
                put_be(hi + pl + 8, seq + 1, 8); /* just past the last row of the roll */
                struct lake_read lr = {{0}, NULL, 0, 0, pl, p, 0};
                int rc = 0;
                if (eddy_state_raw_scan(ctx->st, lo, pl, hi, pl + 16, lake_visit, &lr) < 0 ||
                    lr.bad)
                        rc = EDDY_ERR_STATE;
                for (size_t k = 0; k < lr.n; k++)
                        lr.rows[k].body = lr.data.p + (uintptr_t)lr.rows[k].body;
                for (int attempt = 0; !rc; attempt++) {
                        /* a re-delivery after the rows were deleted finds none: done before */
                        if (eddy_lake_write(ctx->rt.warehouse_dir, tb, ctx->src_topics, lr.rows,
                                            lr.n, err, sizeof(err)) == 0 &&
                            eddy_state_raw_delete_range(ctx->st, lo, pl, hi, pl + 16, err,
                                                        sizeof(err)) == 0)
                                break;
                        ctx->wh_retries++;
                        if (sink_backoff(ctx, "warehouse", attempt, err))
                                rc = EDDY_ERR_STOPPED;
                }
                if (!rc) {
                        ctx->rows_delivered += (int64_t)lr.n;
                        eddy_metrics_label_add(ctx->metrics, EDDY_ML_WAREHOUSE_ROWS, tb->name,
                                               (int64_t)lr.n);
                        if (lr.n)
                                eddy__log(&ctx->lg, LOG_INFO, "WAREHOUSE",
                                          "lake: %zu rows of %s, partition %" PRId32
                                          ", up to offset %" PRIu64 " written",
                                          lr.n, tb->name, p, pos);
                }
                free(lr.rows);
                eddy_wbuf_free(&lr.data);
                if (rc)
                        return rc;
        }
        return 0;
}

/* Delivers one committed outbox entry. @returns 0, EDDY_ERR_STOPPED, or -1 if corrupt. */
/* search: the entry's actions in _bulk requests of at most search.batch.bytes, in order.
 * Each carries its version, so a request sent again (a retry, a re-delivery) is harmless. */
static int deliver_search(eddy_ctx_t *ctx, rd_t *r, uint32_t n)
{
        if (!ctx->search) {
                eddy__log(&ctx->lg, LOG_ERR, "SEARCH",
                          "an outbox entry has search actions, and this job has no search.url; "
                          "restore the job's search settings");
                return EDDY_ERR_IO;
        }
        uint32_t i = 0;
        char err[1024];
        while (i < n) {
                eddy_wbuf_t *b = &ctx->sbody;
                b->len = 0;
                uint32_t first = i;
                while (i < n) {
                        rd_t peek = *r;
                        size_t len;
                        const char *a = rd_bytes(&peek, &len);
                        if (peek.bad)
                                return -1;
                        if (b->len && b->len + len > (size_t)ctx->rt.search_batch_bytes)
                                break;
                        eddy_wbuf_put(b, a, len);
                        *r = peek;
                        i++;
                }
                for (int attempt = 0;; attempt++) {
                        eddy_search_result_t res;
                        int rc =
                            eddy_search_bulk(ctx->search, b->p, b->len, &res, err, sizeof(err));
                        if (rc == 0) {
                                ctx->search_applied += res.applied;
                                eddy_counter_add(ctx->c_search_applied, res.applied);
                                eddy_counter_add(ctx->c_search_stale, res.stale);
                                eddy_counter_add(ctx->c_search_rejected, res.rejected);
                                if (res.rejected)
                                        eddy__log(
                                            &ctx->lg, LOG_ERR, "SEARCH",
                                            "the index refused %" PRId64
                                            " of %u actions for good (first: %s); they are "
                                            "counted in eddy_search_rejected_total and dropped",
                                            res.rejected, i - first, res.first_reject);
                                break;
                        }
                        if (rc == EDDY_SEARCH_FATAL) {
                                eddy__log(&ctx->lg, LOG_ERR, "SEARCH",
                                          "%s; the job stops (the actions stay in the outbox)",
                                          err);
                                eddy_metrics_label_add(ctx->metrics, EDDY_ML_SINK_ERRORS, "search",
                                                       1);
                                return EDDY_ERR_IO;
                        }
                        ctx->search_retries++;
                        if (sink_backoff(ctx, "search", attempt, err))
                                return EDDY_ERR_STOPPED;
                }
        }
        return 0;
}

/* The Redis groups of an entry (its first section, @p ngroups of them) from r: parsed and, if
 * @p apply, applied group by group; without, only stepped over (a hash's fields are checked
 * when it is applied). */
static int redis_groups(eddy_ctx_t *ctx, rd_t *r, int version, uint32_t ngroups, entry_view_t *v,
                        int apply)
{
        for (uint32_t g = 0; g < ngroups && !r->bad; g++) {
                int32_t part = (int32_t)rd_n(r, 4);
                int64_t pos = (int64_t)rd_n(r, 8);
                int64_t seq = (int64_t)rd_n(r, 8);
                uint32_t chunk = (uint32_t)rd_n(r, 4);
                uint32_t nops = (uint32_t)rd_n(r, 4);
                if (r->bad)
                        break;
                if (nops > v->cap) {
                        v->cap = nops * 2;
                        v->ops = eddy__xrealloc(v->ops, v->cap * sizeof(*v->ops));
                }
                for (uint32_t i = 0; i < nops && !r->bad; i++) {
                        eddy_redis_op_t *o = &v->ops[i];
                        o->op = (char)rd_n(r, 1);
                        o->key = rd_bytes(r, &o->klen);
                        o->val = NULL;
                        o->vlen = 0;
                        eddy_redis_hash_iter_t it;
                        if (o->op == EDDY_ROP_SET)
                                o->val = rd_bytes(r, &o->vlen);
                        else if (o->op == EDDY_ROP_HASH && version >= 3) {
                                o->val = rd_bytes(r, &o->vlen);
                                if (apply && !r->bad && eddy_redis_hash_open(&it, o->val, o->vlen))
                                        return -1;
                        } else if (o->op != EDDY_ROP_DEL)
                                return -1;
                }
                if (r->bad)
                        break;
                if (chunk == 0)
                        return -1;
                if (!apply)
                        continue;
                int rc = ctx->apply(ctx->apply_opaque, part, pos, seq, chunk, v->ops, nops);
                if (rc == EDDY_ERR_REDIS) /* read by src_collect() on the server's thread */
                        __atomic_fetch_add(&ctx->redis_refused, 1, __ATOMIC_RELAXED);
                if (rc)
                        return rc;
                eddy_metrics_add(ctx->metrics, EDDY_M_REDIS_OPS, nops);
        }
        return r->bad ? -1 : 0;
}

static int deliver(eddy_ctx_t *ctx, const void *e, size_t len, entry_view_t *v)
{
        rd_t r = {e, (const unsigned char *)e + len, 0};
        if (rd_n(&r, 1) != 'E')
                return -1;
        int version = (int)rd_n(&r, 1); /* 2 to 4 (older binaries) or 5 */
        if (version < 2 || version > 5)
                return -1;
        uint32_t ngroups = (uint32_t)rd_n(&r, 4);
        rd_t groups = r;
        if (r.bad || redis_groups(ctx, &r, version, ngroups, v, 0))
                return -1;
        uint32_t nrec = (uint32_t)rd_n(&r, 4);
        if (r.bad)
                return -1;
        /* Redis is applied while the Kafka records travel (deliver_kafka); a test's sinks get
         * Redis first */
        int rc = 0;
        if (nrec && ctx->prod)
                rc = deliver_kafka(ctx, &r, version, nrec, &groups, ngroups, v);
        else if (!(rc = redis_groups(ctx, &groups, version, ngroups, v, 1)) && nrec)
                rc = deliver_test(ctx, &r, version, nrec);
        if (rc || version < 4)
                return rc;
        uint32_t nrows = (uint32_t)rd_n(&r, 4);
        if (r.bad)
                return -1;
        if (nrows && (rc = deliver_rows(ctx, &r, nrows)) != 0)
                return rc;
        uint32_t nrolls = (uint32_t)rd_n(&r, 4);
        if (r.bad)
                return -1;
        if (nrolls && (rc = deliver_rolls(ctx, &r, nrolls)) != 0)
                return rc;
        if (version < 5)
                return r.p == r.end ? 0 : -1;
        uint32_t nsacts = (uint32_t)rd_n(&r, 4);
        if (r.bad)
                return -1;
        if (nsacts && (rc = deliver_search(ctx, &r, nsacts)) != 0)
                return rc;
        return r.p == r.end ? 0 : -1;
}

struct redeliver {
        eddy_ctx_t *ctx;
        entry_view_t v;
        int rc, n;
};

static int redeliver_one(void *opaque, uint64_t seq, const void *e, size_t len)
{
        struct redeliver *rd = opaque;
        int64_t t0 = now_us();
        int rc = deliver(rd->ctx, e, len, &rd->v);
        eddy_metrics_observe(rd->ctx->metrics, EDDY_MH_DELIVERY, secs_since(t0));
        if (rc == -1) {
                eddy__log(&rd->ctx->lg, LOG_ERR, "OUTBOX",
                          "outbox entry %" PRIu64 " is corrupt; state.dir is damaged", seq);
                rd->rc = -1;
                return 1;
        }
        if (rc) {
                rd->rc = rc;
                return 1;
        }
        eddy_state_outbox_done(rd->ctx->st, seq);
        eddy_metrics_add(rd->ctx->metrics, EDDY_M_OUTBOX_DEPTH, -1);
        rd->n++;
        return 0;
}

/* Delivers every committed outbox entry, in order, and commits their removal. */
static int redeliver_all(eddy_ctx_t *ctx)
{
        struct redeliver rd = {ctx, {NULL, 0}, 0, 0};
        int pending = eddy_state_outbox_scan(ctx->st, NULL, NULL);
        eddy_metrics_set(ctx->metrics, EDDY_M_OUTBOX_DEPTH, pending > 0 ? pending : 0);
        if (eddy_state_outbox_scan(ctx->st, redeliver_one, &rd) < 0)
                rd.rc = -1;
        free(rd.v.ops);
        if (rd.n)
                eddy__log(&ctx->lg, LOG_NOTICE, "OUTBOX",
                          "re-delivered %d committed outbox entries", rd.n);
        if (rd.rc)
                return rd.rc;
        char err[512];
        if (eddy_state_pending(ctx->st) && eddy_state_commit(ctx->st, err, sizeof(err))) {
                eddy__log(&ctx->lg, LOG_ERR, "STATE", "%s", err);
                return -1;
        }
        if (ctx->wh == WH_LAKE && lake_load(ctx)) {
                eddy__log(&ctx->lg, LOG_ERR, "STATE", "can not read the lake's waiting rows");
                return -1;
        }
        return 0;
}

/* ---------------------------------------------------------------- the commit */

static int rop_cmp(const void *a, const void *b)
{
        const rop_t *x = a, *y = b;
        if (x->partition != y->partition)
                return x->partition < y->partition ? -1 : 1;
        return x->order < y->order ? -1 : x->order > y->order;
}

/* Encodes the batch's outputs into an outbox entry; hands out fence (pos, seq) per group. */
static void encode_entry(eddy_ctx_t *ctx, rop_t *ops, size_t nops, eddy_wbuf_t *out)
{
        if (nops > 1)
                qsort(ops, nops, sizeof(*ops), rop_cmp);
        buf_u8(out, 'E');
        buf_u8(out, 5); /* entry format version */
        uint32_t ngroups = 0;
        for (size_t i = 0; i < nops; i++)
                if (i == 0 || ops[i].partition != ops[i - 1].partition)
                        ngroups++;
        buf_u32(out, ngroups);
        for (size_t i = 0; i < nops;) {
                int32_t p = ops[i].partition;
                size_t j = i;
                while (j < nops && ops[j].partition == p)
                        j++;
                pscope_t *sc = scope_get(ctx, p);
                int64_t pos = scope_pos(ctx, p);
                int64_t seq = pos > sc->fpos ? 0 : sc->fseq + 1;
                if (pos < sc->fpos)
                        pos = sc->fpos; /* never hand out a position below one handed out */
                int64_t chunk = ctx->rt.redis_chunk_keys;
                int64_t nchunks = j - i == 0 ? 1 : ((int64_t)(j - i) + chunk - 1) / chunk;
                sc->fpos = pos;
                sc->fseq = seq + nchunks - 1;
                sc->dirty = 1;
                buf_u32(out, (uint32_t)p);
                buf_u64(out, (uint64_t)pos);
                buf_u64(out, (uint64_t)seq);
                buf_u32(out, (uint32_t)chunk); /* the seqs handed out assume this chunk size */
                buf_u32(out, (uint32_t)(j - i));
                for (size_t k = i; k < j; k++) {
                        buf_u8(out, (uint8_t)ops[k].op);
                        buf_bytes(out, ctx->arena.p + ops[k].koff, ops[k].klen);
                        if (ops[k].op == EDDY_ROP_SET || ops[k].op == EDDY_ROP_HASH)
                                buf_bytes(out, ctx->arena.p + ops[k].voff, ops[k].vlen);
                }
                i = j;
        }
        /* the fences handed out, to Redis chunks here and to Kafka outputs' eddy.src */
        for (int32_t p = 0; p < ctx->nscopes; p++)
                if (ctx->scopes[p].dirty) {
                        eddy_state_fence_set(ctx->st, p, ctx->scopes[p].fpos, ctx->scopes[p].fseq);
                        ctx->scopes[p].dirty = 0;
                }
        buf_u32(out, ctx->nkrecs);
        eddy_wbuf_put(out, ctx->krecs.p, ctx->krecs.len);
        /* format 4: warehouse rows (clickhouse), then lake roll instructions */
        buf_u32(out, ctx->nrows);
        eddy_wbuf_put(out, ctx->rows.p, ctx->rows.len);
        buf_u32(out, ctx->nrolls);
        eddy_wbuf_put(out, ctx->rolls.p, ctx->rolls.len);
        /* format 5: search actions */
        buf_u32(out, ctx->nsacts);
        eddy_wbuf_put(out, ctx->sacts.p, ctx->sacts.len);
}

static void batch_reset(eddy_ctx_t *ctx)
{
        ctx->arena.len = 0;
        ctx->nrops = 0;
        ctx->nexpects = 0;
        ctx->krecs.len = 0;
        ctx->nkrecs = 0;
        ctx->rows.len = 0;
        ctx->nrows = 0;
        ctx->rolls.len = 0;
        ctx->nrolls = 0;
        ctx->sacts.len = 0;
        ctx->nsacts = 0;
        ctx->batch_events = 0;
        for (int t = 0; t < ctx->ntopics; t++)
                for (int p = 0; p < ctx->topics[t].nparts; p++)
                        ctx->topics[t].parts[p].touched = 0;
}

/* The consumer-group offsets of the batch, for lag monitoring only; NULL if none. */
static rd_kafka_topic_partition_list_t *group_offsets(eddy_ctx_t *ctx)
{
        if (ctx->replay || !ctx->rk)
                return NULL;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
        for (int t = 0; t < ctx->ntopics; t++)
                for (int p = 0; p < ctx->topics[t].nparts; p++)
                        if (ctx->topics[t].parts[p].touched)
                                rd_kafka_topic_partition_list_add(l, ctx->topics[t].name, p)
                                    ->offset = ctx->topics[t].parts[p].next;
        if (l->cnt)
                return l;
        rd_kafka_topic_partition_list_destroy(l);
        return NULL;
}

/* A prepared commit on its way: the RocksDB write, then the delivery of its entry. */
typedef struct job_s {
        eddy_state_txn_t *txn;
        eddy_wbuf_t entry;
        uint64_t seq;
        rd_kafka_topic_partition_list_t *offsets;
        struct job_s *next;
} job_t;

static void done_add(eddy_ctx_t *ctx, uint64_t seq)
{
        pthread_mutex_lock(&ctx->mu);
        if (ctx->ndone == ctx->done_cap) {
                ctx->done_cap = ctx->done_cap ? ctx->done_cap * 2 : 16;
                ctx->done_seqs = eddy__xrealloc(ctx->done_seqs, ctx->done_cap * sizeof(uint64_t));
        }
        ctx->done_seqs[ctx->ndone++] = seq;
        pthread_mutex_unlock(&ctx->mu);
}

/* Write, then deliver. @returns 0, or an error (the job must stop). Frees the job. */
static int run_job(eddy_ctx_t *ctx, job_t *j)
{
        char err[512];
        int rc = 0;
        int64_t t0 = now_ms(), u0 = now_us();
        int wr = eddy_state_write(ctx->st, j->txn, err, sizeof(err));
        int64_t t1 = now_ms(), u1 = now_us();
        ctx->write_ms += t1 - t0;
        eddy_metrics_observe(ctx->metrics, EDDY_MH_COMMIT, (double)(u1 - u0) / 1e6);
        if (wr != 0) {
                eddy__log(&ctx->lg, LOG_ERR, "STATE", "%s", err);
                rc = -1;
        } else {
                if (j->offsets)
                        rd_kafka_commit(ctx->rk, j->offsets, 1 /* async: for lag monitoring */);
                /* after a stop too: one attempt, no retries (each sink gives up on
                 * eddy_stop), so that a clean stop leaves nothing waiting when the sinks are up */
                if (j->entry.len) {
                        entry_view_t v = {NULL, 0};
                        rc = deliver(ctx, j->entry.p, j->entry.len, &v);
                        free(v.ops);
                        ctx->deliver_ms += now_ms() - t1;
                        eddy_metrics_observe(ctx->metrics, EDDY_MH_DELIVERY, secs_since(u1));
                        if (rc == 0) {
                                done_add(ctx, j->seq);
                                eddy_metrics_add(ctx->metrics, EDDY_M_OUTBOX_DEPTH, -1);
                        } else if (rc == EDDY_ERR_STOPPED)
                                rc = 0; /* stays in the outbox: delivered at the next start */
                }
        }
        if (j->offsets)
                rd_kafka_topic_partition_list_destroy(j->offsets);
        /* keep the buffer for the next batch: no large allocation, page faults and copies of
         * a growing buffer per batch */
        pthread_mutex_lock(&ctx->mu);
        if (!ctx->spare.p || ctx->spare.cap < j->entry.cap) {
                free(ctx->spare.p);
                ctx->spare = j->entry;
                ctx->spare.len = 0;
        } else {
                free(j->entry.p);
        }
        pthread_mutex_unlock(&ctx->mu);
        free(j);
        return rc;
}

/* The committer thread: jobs in order, one at a time. */
static void *committer(void *opaque)
{
        eddy_ctx_t *ctx = opaque;
        pthread_setname_np(pthread_self(), "eddy-commit");
        pthread_mutex_lock(&ctx->mu);
        for (;;) {
                while (!ctx->head && !ctx->quit)
                        pthread_cond_wait(&ctx->cv, &ctx->mu);
                if (!ctx->head)
                        break;
                job_t *j = ctx->head;
                ctx->head = j->next;
                if (!ctx->head)
                        ctx->tail = NULL;
                pthread_mutex_unlock(&ctx->mu);
                /* after an error, jobs are still written (their state is consistent) but a
                 * failed delivery is not retried here: the next start re-delivers */
                int rc = run_job(ctx, j);
                pthread_mutex_lock(&ctx->mu);
                ctx->queued--;
                if (rc)
                        ctx->pipe_err = 1;
                pthread_cond_broadcast(&ctx->cv);
        }
        pthread_mutex_unlock(&ctx->mu);
        return NULL;
}

/* Waits until every prepared commit is written and delivered. @returns 0 or -1. */
static int drain(eddy_ctx_t *ctx)
{
        pthread_mutex_lock(&ctx->mu);
        while (ctx->queued > 0)
                pthread_cond_wait(&ctx->cv, &ctx->mu);
        int err = ctx->pipe_err;
        pthread_mutex_unlock(&ctx->mu);
        return err ? -1 : 0;
}

/* Ends the batch in flight: flush, prepare one atomic commit, hand it to the committer
 * (or, without one, write and deliver it here). @returns 0 or an error. */
static int commit_batch(eddy_ctx_t *ctx)
{
        if (ctx->proc->flush && ctx->proc->flush(ctx->self, ctx) != 0) {
                eddy__log(&ctx->lg, LOG_ERR, "PROC", "%s flush failed", ctx->proc->name);
                return -1;
        }
        if (ctx->fatal)
                return -1;
        for (int t = 0; t < ctx->ntopics; t++)
                for (int p = 0; p < ctx->topics[t].nparts; p++)
                        if (ctx->topics[t].parts[p].touched) {
                                part_t *pt = &ctx->topics[t].parts[p];
                                eddy_state_offset_set(ctx->st, ctx->topics[t].name, p, pt->next);
                                pt->committed = pt->next;
                        }
        if (ctx->batch_events > 0)
                eddy_metrics_observe(ctx->metrics, EDDY_MH_BATCH, secs_since(ctx->batch_t0_us));
        pthread_mutex_lock(&ctx->mu);
        for (size_t i = 0; i < ctx->ndone; i++)
                eddy_state_outbox_done(ctx->st, ctx->done_seqs[i]);
        ctx->ndone = 0;
        pthread_mutex_unlock(&ctx->mu);
        if (ctx->wh == WH_LAKE)
                lake_rolls(ctx);
        job_t *j = calloc(1, sizeof(*j));
        if (ctx->nrops > 0 || ctx->nkrecs > 0 || ctx->nrows > 0 || ctx->nrolls > 0 ||
            ctx->nsacts > 0) {
                /* the entry's size, at most: its buffer is allocated once */
                size_t need = 64 + ctx->arena.len + ctx->nrops * (1 + 4 + 4 + 28) + ctx->krecs.len +
                              ctx->rows.len + ctx->rolls.len + ctx->sacts.len;
                pthread_mutex_lock(&ctx->mu);
                j->entry = ctx->spare;
                memset(&ctx->spare, 0, sizeof(ctx->spare));
                pthread_mutex_unlock(&ctx->mu);
                if (j->entry.cap < need) {
                        free(j->entry.p);
                        j->entry.p = eddy_state_outbox_buf(need); /* to the disk uncopied */
                        j->entry.cap = need;
                }
                j->entry.len = 0;
                encode_entry(ctx, ctx->rops, ctx->nrops, &j->entry);
                j->seq = eddy_state_outbox_add(ctx->st, j->entry.p, j->entry.len);
                eddy_metrics_add(ctx->metrics, EDDY_M_OUTBOX_DEPTH, 1);
        }
        if (!eddy_state_pending(ctx->st)) {
                free(j);
                batch_reset(ctx);
                return 0;
        }
        j->offsets = group_offsets(ctx);
        j->txn = eddy_state_prepare(ctx->st);
        ctx->batches++;
        eddy_metrics_add(ctx->metrics, EDDY_M_BATCHES, 1);
        batch_reset(ctx);
        if (!ctx->async) {
                int rc = run_job(ctx, j);
                if (rc == 0 && eddy_state_over_budget(ctx->st))
                        eddy_state_evict(ctx->st);
                return rc;
        }
        int64_t w0 = now_ms();
        pthread_mutex_lock(&ctx->mu);
        while (ctx->queued >= 2 && !ctx->pipe_err) /* at most one waiting behind the one in work */
                pthread_cond_wait(&ctx->cv, &ctx->mu);
        ctx->wait_ms += now_ms() - w0;
        if (ctx->tail)
                ctx->tail->next = j;
        else
                ctx->head = j;
        ctx->tail = j;
        ctx->queued++;
        int err = ctx->pipe_err;
        pthread_cond_broadcast(&ctx->cv);
        pthread_mutex_unlock(&ctx->mu);
        if (err)
                return -1;
        if (eddy_state_over_budget(ctx->st)) {
                if (drain(ctx))
                        return -1;
                eddy_state_evict(ctx->st);
        }
        return 0;
}

static int committer_start(eddy_ctx_t *ctx)
{
        if (pthread_create(&ctx->thr, NULL, committer, ctx) != 0)
                return -1;
        ctx->async = 1;
        return 0;
}

static void committer_stop(eddy_ctx_t *ctx)
{
        if (!ctx->async)
                return;
        pthread_mutex_lock(&ctx->mu);
        ctx->quit = 1;
        pthread_cond_broadcast(&ctx->cv);
        pthread_mutex_unlock(&ctx->mu);
        pthread_join(ctx->thr, NULL);
        ctx->async = 0;
}

/* ---------------------------------------------------------------- dead letters */

static void dlq_add(eddy_ctx_t *ctx, const eddy_msg_t *m, const char *reason, const char *detail)
{
        char off[24], part[16], src[600];
        const char *topic = m->topic;
        snprintf(off, sizeof(off), "%" PRId64, m->offset);
        snprintf(part, sizeof(part), "%" PRId32, m->partition);
        snprintf(src, sizeof(src), "%s/%s/%s/0", topic, part, off);
        /* A value too large for the dead-letter topic is left out (it stays in the source
         * topic at eddy.src); its size goes in a header. A dead letter always has a value
         * (empty for a tombstone), as in entry format 2. */
        int omit = m->value && (int64_t)m->value_len > ctx->rt.dlq_max_value_bytes;
        char omitted[24];
        snprintf(omitted, sizeof(omitted), "%zu", m->value_len);
        const char *h[][2] = {{"eddy.reason", reason},        {"eddy.detail", detail},
                              {"eddy.src.topic", topic},      {"eddy.src.partition", part},
                              {"eddy.src.offset", off},       {"eddy.processor", ctx->proc->name},
                              {"eddy.job", ctx->rt.job_name}, {"eddy.src", src},
                              {"eddy.value.omitted", omitted}};
        size_t nh = sizeof(h) / sizeof(h[0]) - !omit;
        krec_add(ctx, ctx->rt.dlq_topic, KREC_DLQ | KREC_VALUE | (m->key ? KREC_KEY : 0), m->key,
                 m->key_len, m->value, m->value && !omit ? m->value_len : 0, h, nh);
        ctx->events_dlq++;
        eddy_metrics_label_add(ctx->metrics, EDDY_ML_DEAD_LETTERS, reason, 1);
        eddy__log_at(&ctx->lg, LOG_INFO, "DLQ", topic, m->partition, m->offset,
                     "%s/%" PRId32 "@%" PRId64 " -> %s: %s: %s", topic, m->partition, m->offset,
                     ctx->rt.dlq_topic, reason, detail);
}

void eddy_out_dead_letter(eddy_ctx_t *ctx, const eddy_msg_t *msg, const char *reason,
                          const char *detail)
{
        dlq_add(ctx, msg, reason, detail ? detail : "");
}

/* ---------------------------------------------------------------- processing */

/* Sleeps @p ms in short steps. @returns 0, or -1 as soon as the job is told to stop. */
static int sleep_unless_stopped(int64_t ms)
{
        int64_t end = eddy__codec_now_ms() + ms;
        while (!eddy_stop) {
                int64_t left = end - eddy__codec_now_ms();
                if (left <= 0)
                        return 0;
                struct timespec ts = {0, (left < 50 ? left : 50) * 1000000L};
                nanosleep(&ts, NULL);
        }
        return -1;
}

/* Turns @p em's value into the JSON the processor parses (docs/schemas.md).
 *
 * While the schema registry is unreachable for a schema id not yet cached, the record is
 * held: it is neither processed nor skipped, and since this runs on the consumer loop's
 * thread, nothing after it is either. What was processed before it is committed and
 * delivered first, so a stop or a crash while waiting resumes at this record. The wait ends
 * when the id resolves, or schema.registry.timeout.ms after the registry started failing:
 * then the record goes to the dead-letter topic (registry_timeout), and so does each record
 * after it whose id does not resolve at its first attempt, until the registry answers again.
 * @returns 0 (value replaced), 1 (undecodable: reason and detail set), -1 (stopping while
 *          held: the record stays unprocessed) or -2 (the commit before waiting failed). */
static int decode_input(eddy_ctx_t *ctx, eddy_codec_t *codec, eddy_msg_t *em, const void **val,
                        size_t *vlen)
{
        int64_t backoff = ctx->rt.sr_backoff_ms, held = 0;
        for (;;) {
                const void *out;
                size_t olen;
                int r = eddy__codec_decode(codec, em->topic_index, *val, *vlen, &out, &olen,
                                           ctx->reason, sizeof(ctx->reason), ctx->detail,
                                           sizeof(ctx->detail));
                if (r == EDDY_CODEC_OK) {
                        *val = out;
                        *vlen = olen;
                        if (held)
                                eddy__log_at(&ctx->lg, LOG_NOTICE, "SCHEMA", em->topic,
                                             em->partition, em->offset,
                                             "schema registry answers again after %" PRId64
                                             " ms: resuming at %s/%" PRId32 "@%" PRId64,
                                             eddy__codec_now_ms() - held, em->topic, em->partition,
                                             em->offset);
                        return 0;
                }
                if (r != EDDY_CODEC_WAIT)
                        return 1;
                int64_t now = eddy__codec_now_ms();
                int64_t since = eddy__codec_failing_since(codec);
                if (now - since >= ctx->rt.sr_timeout_ms) {
                        char d[sizeof(ctx->detail)];
                        snprintf(d, sizeof(d), "%s", ctx->detail);
                        snprintf(ctx->reason, sizeof(ctx->reason), "registry_timeout");
                        snprintf(ctx->detail, sizeof(ctx->detail),
                                 "schema registry unreachable for %" PRId64
                                 " ms (schema.registry.timeout.ms=%" PRId64 "): %.400s",
                                 now - since, ctx->rt.sr_timeout_ms, d);
                        return 1;
                }
                if (!held) {
                        held = now;
                        ctx->registry_waits++;
                        eddy__log_at(&ctx->lg, LOG_WARNING, "SCHEMA", em->topic, em->partition,
                                     em->offset,
                                     "waiting for the schema registry, %s/%" PRId32 "@%" PRId64
                                     " and what follows held: %s",
                                     em->topic, em->partition, em->offset, ctx->detail);
                        if (ctx->batch_events > 0 && commit_batch(ctx) != 0)
                                return -2;
                }
                if (sleep_unless_stopped(backoff))
                        return -1;
                backoff = backoff * 2 > ctx->rt.sr_backoff_max_ms ? ctx->rt.sr_backoff_max_ms
                                                                  : backoff * 2;
        }
}

/* Processes one input record of an assigned partition. @returns 0, or -1 to stop the job. */
static int process_one(eddy_ctx_t *ctx, eddy_msg_t *em)
{
        /* librdkafka hands the same name pointer for every record of a topic */
        topic_t *t = em->topic == ctx->last_tname ? ctx->last_topic : NULL;
        if (!t) {
                t = topic_find(ctx, em->topic, NULL);
                ctx->last_tname = t ? em->topic : NULL;
                ctx->last_topic = t;
        }
        part_t *pt = t ? part_get(ctx, t, em->partition) : NULL;
        if (!pt || !pt->assigned || pt->done)
                return 0; /* from a partition no longer ours: not processed, not committed */
        if (em->offset < pt->next)
                return 0; /* already processed (a fetch from before a seek) */
        if (pt->bound >= 0 && em->offset >= pt->bound)
                return 0;
        em->topic = t->name;
        em->topic_index = t->entry;
        /* the processor gets JSON; the dead-letter topic the value as it came */
        const void *raw = em->value, *raw_key = em->key;
        size_t raw_len = em->value_len, raw_klen = em->key_len;
        int undecodable = 0;
        if (em->key && ctx->kcodec && eddy__codec_decodes(ctx->kcodec, em->topic_index)) {
                undecodable =
                    decode_input(ctx, ctx->kcodec, em, (const void **)&em->key, &em->key_len);
                if (undecodable < 0)
                        return undecodable == -1 ? 0 : -1; /* stopping: left unprocessed */
                if (undecodable) {
                        char d[sizeof(ctx->detail)];
                        snprintf(d, sizeof(d), "%s", ctx->detail);
                        snprintf(ctx->detail, sizeof(ctx->detail), "key: %.400s", d);
                }
        }
        if (em->value && !undecodable) {
                undecodable = decode_input(ctx, ctx->codec, em, &em->value, &em->value_len);
                if (undecodable < 0)
                        return undecodable == -1 ? 0 : -1; /* stopping: left unprocessed */
        }
        if (ctx->batch_events == 0)
                ctx->batch_t0_us = now_us();
        ctx->cur = em;
        /* first, so that outputs of this record carry its position (scope_pos) */
        pt->next = em->offset + 1;
        pt->touched = 1;
        int rc = undecodable ? EDDY_ERR_BAD_RECORD : ctx->proc->process(ctx->self, ctx, em);
        ctx->cur = NULL;
        em->value = raw;
        em->value_len = raw_len;
        em->key = raw_key;
        em->key_len = raw_klen;
        if (rc == EDDY_ERR_BAD_RECORD)
                dlq_add(ctx, em, ctx->reason, ctx->detail);
        else if (rc != 0 || ctx->fatal) {
                eddy__log_at(&ctx->lg, LOG_ERR, "PROC", t->name, em->partition, em->offset,
                             "%s failed on %s/%" PRId32 "@%" PRId64 ": %s", ctx->proc->name,
                             t->name, em->partition, em->offset,
                             eddy_strerror(rc ? rc : EDDY_ERR_STATE));
                return -1;
        }
        pt->events++;
        ctx->events_in++;
        ctx->batch_events++;
        if (ctx->replay)
                ctx->replay_done++;
        if (pt->bound >= 0 && pt->next >= pt->bound) {
                pt->done = 1;
                ctx->done_changed = 1;
        }
        return 0;
}

static int process_msg(eddy_ctx_t *ctx, rd_kafka_message_t *m)
{
        rd_kafka_timestamp_type_t tt;
        eddy_msg_t em = {
            .topic = rd_kafka_topic_name(m->rkt),
            .partition = m->partition,
            .offset = m->offset,
            .timestamp = rd_kafka_message_timestamp(m, &tt),
            .key = m->key,
            .key_len = m->key_len,
            .value = m->payload,
            .value_len = m->len,
        };
        return process_one(ctx, &em);
}

/* ---------------------------------------------------------------- rebalancing */

/* Where a partition starts: its stored offset, else per state.missing. */
static int start_offset(eddy_ctx_t *ctx, const char *topic, int32_t p, int64_t *off)
{
        int r = eddy_state_offset_get(ctx->st, topic, p, off);
        if (r < 0)
                return -1;
        if (r == 1)
                return 0;
        if (!strcmp(ctx->rt.state_missing, "fail")) {
                eddy__log_at(&ctx->lg, LOG_ERR, "STATE", topic, p, -1,
                             "state.dir has no offset for %s/%" PRId32 " and state.missing=fail",
                             topic, p);
                return -1;
        }
        *off = !strcmp(ctx->rt.state_missing, "latest") ? RD_KAFKA_OFFSET_END
                                                        : RD_KAFKA_OFFSET_BEGINNING;
        return 0;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        eddy_ctx_t *ctx = opaque;
        const char *proto = rd_kafka_rebalance_protocol(rk);
        ctx->cooperative = proto && !strcmp(proto, "COOPERATIVE");
        ctx->report_ms = 0; /* report the new assignment at once */
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                eddy_metrics_label_add(ctx->metrics, EDDY_ML_REBALANCES, "assign", 1);
                for (int i = 0; i < parts->cnt; i++) {
                        rd_kafka_topic_partition_t *tp = &parts->elems[i];
                        topic_t *t = topic_find(ctx, tp->topic, NULL);
                        part_t *pt = t ? part_get(ctx, t, tp->partition) : NULL;
                        int64_t off;
                        if (!pt || start_offset(ctx, tp->topic, tp->partition, &off) != 0) {
                                ctx->fatal = 1;
                                eddy_stop = 1;
                                off = RD_KAFKA_OFFSET_END;
                        }
                        tp->offset = off;
                        if (pt) {
                                pt->assigned = 1;
                                pt->next = off >= 0 ? off : 0;
                                pt->committed = off; /* or where state.missing starts it */
                        }
                        eddy__log_at(&ctx->lg, LOG_INFO, "REBALANCE", tp->topic, tp->partition,
                                     off >= 0 ? off : -1, "assigned %s/%" PRId32 " from %s%" PRId64,
                                     tp->topic, tp->partition, off >= 0 ? "offset " : "", off);
                }
                /* another instance may have written these partitions to ClickHouse */
                __atomic_store_n(&ctx->ch_stale, 1, __ATOMIC_RELEASE);
                if (ctx->cooperative)
                        rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
                else
                        rd_kafka_assign(rk, parts);
        } else {
                eddy_metrics_label_add(ctx->metrics, EDDY_ML_REBALANCES,
                                       rd_kafka_assignment_lost(rk) ? "lost" : "revoke", 1);
                /* Revoked or lost: the batch in flight holds their events; commit it, and
                 * deliver what is committed, before letting them go (with the lake's
                 * waiting rows, which would otherwise wait until they come back). */
                ctx->roll_all = 1;
                if (commit_batch(ctx) != 0 || drain(ctx) != 0) {
                        ctx->fatal = 1;
                        eddy_stop = 1;
                }
                ctx->roll_all = 0;
                for (int i = 0; i < parts->cnt; i++) {
                        topic_t *t = topic_find(ctx, parts->elems[i].topic, NULL);
                        part_t *pt = t ? part_get(ctx, t, parts->elems[i].partition) : NULL;
                        if (pt)
                                pt->assigned = 0;
                        eddy__log_at(&ctx->lg, LOG_INFO, "REBALANCE", parts->elems[i].topic,
                                     parts->elems[i].partition, -1, "%s %s/%" PRId32,
                                     rd_kafka_assignment_lost(rk) ? "lost" : "revoked",
                                     parts->elems[i].topic, parts->elems[i].partition);
                }
                if (ctx->cooperative)
                        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
                else
                        rd_kafka_assign(rk, NULL);
        }
}

/* ---------------------------------------------------------------- set-up */

static int kafka_conf_apply(eddy_ctx_t *ctx, rd_kafka_conf_t *conf, const char *const *defs,
                            int consumer, char *errstr, size_t errstr_size)
{
        char e[512];
        for (int i = 0; defs[i]; i += 2)
                if (rd_kafka_conf_set(conf, defs[i], defs[i + 1], e, sizeof(e)) !=
                    RD_KAFKA_CONF_OK) {
                        snprintf(errstr, errstr_size, "kafka.%s: %s", defs[i], e);
                        return -1;
                }
        for (size_t i = 0; i < ctx->rt.kafka.n; i++) {
                char *kv = ctx->rt.kafka.v[i];
                char *eq = strchr(kv, '=');
                char key[256];
                snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
                /* consumer-only keys are not for the producer */
                if (!consumer &&
                    (!strcmp(key, "group.id") || !strncmp(key, "auto.", 5) ||
                     !strcmp(key, "session.timeout.ms") || !strcmp(key, "heartbeat.interval.ms") ||
                     !strcmp(key, "partition.assignment.strategy") ||
                     !strcmp(key, "isolation.level") || !strcmp(key, "max.poll.interval.ms") ||
                     !strcmp(key, "group.instance.id") || !strncmp(key, "fetch.", 6) ||
                     !strncmp(key, "queued.", 7) || !strncmp(key, "enable.auto", 11)))
                        continue;
                rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, key, eq + 1, e, sizeof(e));
                if (res != RD_KAFKA_CONF_OK) {
                        snprintf(errstr, errstr_size, "kafka.%s: %s", key, e);
                        return -1;
                }
        }
        return 0;
}

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        eddy_ctx_t *ctx = rd_kafka_opaque(rk);
        eddy__log(ctx ? &ctx->lg : NULL, level, "KAFKA", "%s: %s", fac, buf);
}

static rd_kafka_t *kafka_new(eddy_ctx_t *ctx, int consumer, char *errstr, size_t errstr_size)
{
        char gid[300];
        snprintf(gid, sizeof(gid), "eddy-%s", ctx->rt.job_name);
        const char *cdefs[] = {
            "bootstrap.servers", "127.0.0.1:9092", "group.id", gid, "enable.auto.commit", "false",
            "enable.auto.offset.store", "false", "auto.offset.reset", "earliest",
            "partition.assignment.strategy", "cooperative-sticky", "enable.partition.eof",
            ctx->replay ? "true" : "false",
            /* librdkafka 2.0.2 stops fetching a partition for a whole second once its
             * local queue reaches queued.min.messages or queued.max.messages.kbytes
             * (librdkafka #2879; fetch.queue.backoff.ms only came in 2.1). A busy job
             * then starves: 1M events took 6.7 s with 100k, 4.5 s with 300k. So the
             * limit is bytes, per partition (64 MiB, librdkafka's own default), large
             * enough to hold seconds of work. */
            "queued.min.messages", "10000000", "queued.max.messages.kbytes", "65536",
            /* a quiet topic's records are not held back long */
            "fetch.wait.max.ms", "50", NULL};
        const char *pdefs[] = {"bootstrap.servers",
                               "127.0.0.1:9092",
                               "enable.idempotence",
                               "true",
                               "partitioner",
                               "murmur2",
                               "linger.ms",
                               "5",
                               "message.max.bytes",
                               "4194304",
                               "delivery.report.only.error",
                               "true",
                               NULL};
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (kafka_conf_apply(ctx, conf, consumer ? cdefs : pdefs, consumer, errstr, errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rd_kafka_conf_set_opaque(conf, ctx);
        rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
        if (consumer)
                rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        else
                rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        char e[512];
        rd_kafka_t *rk =
            rd_kafka_new(consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, conf, e, sizeof(e));
        if (!rk) {
                snprintf(errstr, errstr_size, "kafka: %s", e);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        return rk;
}

/* Reads the input topics' partition counts; checks that the brokers answer. */
static int topic_name_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the topics matching input.topics entry @p e (a POSIX extended regex starting with '^',
 * as librdkafka's patterns), in name order, to ctx->topics. @returns 0, or -1 (Kafka) or -2
 * (a bad pattern) with errstr. */
static int topics_match(eddy_ctx_t *ctx, int e, char *errstr, size_t errstr_size)
{
        const char *pat = ctx->rt.input_topics.v[e];
        regex_t re;
        int rc = regcomp(&re, pat, REG_EXTENDED | REG_NOSUB);
        if (rc) {
                char why[256];
                regerror(rc, &re, why, sizeof(why));
                snprintf(errstr, errstr_size, "input.topics: pattern %s: %s", pat, why);
                return -2;
        }
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_resp_err_t err =
            rd_kafka_metadata(ctx->rk, 1, NULL, &md, (int)ctx->rt.kafka_timeout_ms);
        if (err) {
                regfree(&re);
                snprintf(errstr, errstr_size,
                         "kafka: no metadata within kafka.timeout.ms=%" PRId64
                         " (%s): are kafka.bootstrap.servers right and the brokers up?",
                         ctx->rt.kafka_timeout_ms, rd_kafka_err2str(err));
                return -1;
        }
        char **names = calloc((size_t)md->topic_cnt + 1, sizeof(*names));
        int *counts = calloc((size_t)md->topic_cnt + 1, sizeof(*counts));
        int n = 0;
        for (int i = 0; i < md->topic_cnt; i++) {
                const char *name = md->topics[i].topic;
                if (md->topics[i].err || !strncmp(name, "__", 2) || regexec(&re, name, 0, NULL, 0))
                        continue;
                names[n++] = strdup(name);
        }
        regfree(&re);
        qsort(names, (size_t)n, sizeof(*names), topic_name_cmp);
        for (int i = 0; i < n; i++)
                for (int j = 0; j < md->topic_cnt; j++)
                        if (!strcmp(md->topics[j].topic, names[i]))
                                counts[i] = md->topics[j].partition_cnt;
        rd_kafka_metadata_destroy(md);
        int added = 0;
        for (int i = 0; i < n; i++) {
                if (topic_find(ctx, names[i], NULL) || counts[i] <= 0) {
                        free(names[i]);
                        continue;
                }
                ctx->topics =
                    eddy__xrealloc(ctx->topics, (size_t)(ctx->ntopics + 1) * sizeof(*ctx->topics));
                topic_t *t = &ctx->topics[ctx->ntopics++];
                memset(t, 0, sizeof(*t));
                t->name = t->alloc = names[i];
                t->entry = e;
                part_get(ctx, t, counts[i] - 1);
                added++;
                eddy__log(&ctx->lg, LOG_INFO, "RUN", "input.topics pattern %s: %s (%d partitions)",
                          pat, t->name, counts[i]);
        }
        free(names);
        free(counts);
        if (!added) {
                snprintf(errstr, errstr_size,
                         "input.topics: pattern %s matches no topic (topics created later are "
                         "read after a restart)",
                         pat);
                return -1;
        }
        return 0;
}

/* Resolves input.topics: each entry is a topic that must exist, or a pattern ("^...") that
 * must match at least one. The set is fixed for the run (docs/cdc-fanout.md says why).
 * @returns 0, -1 (Kafka: the job exits 1) or -2 (configuration: exit 2) with errstr. */
static int load_topics(eddy_ctx_t *ctx, char *errstr, size_t errstr_size)
{
        ctx->ntopics = 0;
        ctx->topics = NULL;
        for (int e = 0; e < (int)ctx->rt.input_topics.n; e++) {
                const char *name = ctx->rt.input_topics.v[e];
                if (name[0] == '^') {
                        int r = topics_match(ctx, e, errstr, errstr_size);
                        if (r)
                                return r;
                        continue;
                }
                if (topic_find(ctx, name, NULL))
                        continue;
                const rd_kafka_metadata_t *md = NULL;
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(ctx->rk, name, NULL);
                rd_kafka_resp_err_t err =
                    rd_kafka_metadata(ctx->rk, 0, rkt, &md, (int)ctx->rt.kafka_timeout_ms);
                rd_kafka_topic_destroy(rkt);
                if (err) {
                        snprintf(errstr, errstr_size,
                                 "kafka: no metadata for topic %s within kafka.timeout.ms=%" PRId64
                                 " (%s): are kafka.bootstrap.servers right and the brokers up?",
                                 name, ctx->rt.kafka_timeout_ms, rd_kafka_err2str(err));
                        return -1;
                }
                int n = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
                rd_kafka_resp_err_t terr = md->topic_cnt == 1 ? md->topics[0].err : 0;
                rd_kafka_metadata_destroy(md);
                if (terr || n <= 0) {
                        snprintf(errstr, errstr_size,
                                 "input topic %s: %s (input.topics names topics that must exist)",
                                 name, terr ? rd_kafka_err2str(terr) : "no partitions");
                        return -1;
                }
                ctx->topics =
                    eddy__xrealloc(ctx->topics, (size_t)(ctx->ntopics + 1) * sizeof(*ctx->topics));
                topic_t *t = &ctx->topics[ctx->ntopics++];
                memset(t, 0, sizeof(*t));
                t->name = ctx->rt.input_topics.v[e];
                t->entry = e;
                part_get(ctx, t, n - 1);
        }
        for (int i = 1; ctx->proc->copartitioned && i < ctx->ntopics; i++)
                if (ctx->topics[i].nparts != ctx->topics[0].nparts) {
                        snprintf(errstr, errstr_size,
                                 "input.topics: %s joins co-partitioned topics, but %s has %d "
                                 "partitions and %s has %d (give them the same count)",
                                 ctx->proc->name, ctx->topics[0].name, ctx->topics[0].nparts,
                                 ctx->topics[i].name, ctx->topics[i].nparts);
                        return -2;
                }
        return 0;
}

static int parse_i64(const char *s, int64_t *v)
{
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (errno || end == s || *end)
                return -1;
        *v = n;
        return 0;
}

/* Sets up a bounded replay: start and bound of every partition, then assign(). */
static int replay_setup(eddy_ctx_t *ctx, char *errstr, size_t errstr_size)
{
        const char *from = ctx->args->from, *until = ctx->args->until;
        int64_t from_ts = -1, until_ts = -1;
        int explicit = from && strchr(from, ':');
        if (from && !explicit && strcmp(from, "earliest") && parse_i64(from, &from_ts)) {
                snprintf(errstr, errstr_size,
                         "--from %s: expected earliest, an epoch time in ms, or "
                         "topic:partition:offset,...",
                         from);
                return -2;
        }
        if (until && strcmp(until, "end") && parse_i64(until, &until_ts)) {
                snprintf(errstr, errstr_size, "--until %s: expected end or an epoch time in ms",
                         until);
                return -2;
        }
        rd_kafka_topic_partition_list_t *as = rd_kafka_topic_partition_list_new(32);
        int tm = (int)ctx->rt.kafka_timeout_ms;
        for (int ti = 0; ti < ctx->ntopics; ti++) {
                topic_t *t = &ctx->topics[ti];
                for (int p = 0; p < t->nparts; p++) {
                        part_t *pt = &t->parts[p];
                        int64_t lo, hi;
                        rd_kafka_resp_err_t err =
                            rd_kafka_query_watermark_offsets(ctx->rk, t->name, p, &lo, &hi, tm);
                        if (err) {
                                snprintf(errstr, errstr_size, "watermarks of %s/%d: %s", t->name, p,
                                         rd_kafka_err2str(err));
                                goto fail;
                        }
                        int64_t start = -1;
                        if (explicit) {
                                /* topic:partition:offset entries; others keep their state */
                                char pat[600];
                                snprintf(pat, sizeof(pat), "%s:%d:", t->name, p);
                                const char *s = from;
                                while (s && *s) {
                                        if (!strncmp(s, pat, strlen(pat))) {
                                                char num[32];
                                                size_t n = strcspn(s + strlen(pat), ",");
                                                snprintf(num, sizeof(num), "%.*s", (int)n,
                                                         s + strlen(pat));
                                                if (parse_i64(num, &start) || start < 0) {
                                                        snprintf(errstr, errstr_size,
                                                                 "--from: bad offset \"%s\"", num);
                                                        rd_kafka_topic_partition_list_destroy(as);
                                                        return -2;
                                                }
                                        }
                                        s = strchr(s, ',');
                                        if (s)
                                                s++;
                                }
                        } else if (from && !strcmp(from, "earliest")) {
                                start = lo;
                        } else if (from) {
                                rd_kafka_topic_partition_list_t *q =
                                    rd_kafka_topic_partition_list_new(1);
                                rd_kafka_topic_partition_list_add(q, t->name, p)->offset = from_ts;
                                rd_kafka_offsets_for_times(ctx->rk, q, tm);
                                start = q->elems[0].offset >= 0 ? q->elems[0].offset : hi;
                                rd_kafka_topic_partition_list_destroy(q);
                        }
                        if (start >= 0) {
                                /* a replay recomputes: the partition's old state goes */
                                eddy_state_drop_partition(ctx->st, p);
                                ctx->scopes[p].loaded = 0;
                                for (int tj = 0; tj < ctx->ntopics; tj++)
                                        if (p < ctx->topics[tj].nparts)
                                                eddy_state_offset_set(ctx->st, ctx->topics[tj].name,
                                                                      p, 0);
                        } else {
                                int64_t off;
                                if (start_offset(ctx, t->name, p, &off)) {
                                        snprintf(errstr, errstr_size, "no start for %s/%d", t->name,
                                                 p);
                                        goto fail;
                                }
                                start = off == RD_KAFKA_OFFSET_BEGINNING ? lo
                                        : off == RD_KAFKA_OFFSET_END     ? hi
                                                                         : off;
                        }
                        if (start < lo)
                                start = lo;
                        int64_t bound = -1;
                        if (until && !strcmp(until, "end"))
                                bound = hi;
                        else if (until) {
                                rd_kafka_topic_partition_list_t *q =
                                    rd_kafka_topic_partition_list_new(1);
                                rd_kafka_topic_partition_list_add(q, t->name, p)->offset = until_ts;
                                rd_kafka_offsets_for_times(ctx->rk, q, tm);
                                bound = q->elems[0].offset >= 0 ? q->elems[0].offset : hi;
                                rd_kafka_topic_partition_list_destroy(q);
                        }
                        pt->assigned = 1;
                        pt->next = start;
                        pt->committed = start;
                        pt->start = start;
                        pt->bound = bound;
                        pt->done = bound >= 0 && start >= bound;
                        if (bound > start)
                                ctx->replay_total += bound - start;
                        if (!pt->done)
                                rd_kafka_topic_partition_list_add(as, t->name, p)->offset = start;
                }
        }
        /* the dropped state and the new start offsets are committed before any event */
        if (eddy_state_pending(ctx->st) && eddy_state_commit(ctx->st, errstr, errstr_size))
                goto fail;
        rd_kafka_assign(ctx->rk, as);
        rd_kafka_topic_partition_list_destroy(as);
        return 0;
fail:
        rd_kafka_topic_partition_list_destroy(as);
        return -1;
}

static int replay_finished(eddy_ctx_t *ctx)
{
        for (int t = 0; t < ctx->ntopics; t++)
                for (int p = 0; p < ctx->topics[t].nparts; p++) {
                        part_t *pt = &ctx->topics[t].parts[p];
                        if (pt->assigned && !pt->done)
                                return 0;
                }
        return 1;
}

static double stat_num(const char *v)
{
        char *end;
        double d = strtod(v, &end);
        return end == v ? 0 : d;
}

/* Reports partitions and state size to the metrics, at most every 500 ms unless @p force.
 * What a scrape must see live while this loop is blocked (watermarks, the Redis sink's
 * counters) it reads itself through metrics_sources(). */
static void report(eddy_ctx_t *ctx, int force, int stopping)
{
        int64_t now = loop_ms();
        if (!ctx->metrics || !ctx->st || (!force && now - ctx->report_ms < 500))
                return;
        ctx->report_ms = now;
        size_t n = 0;
        for (int t = 0; t < ctx->ntopics; t++)
                for (int p = 0; p < ctx->topics[t].nparts; p++) {
                        part_t *pt = &ctx->topics[t].parts[p];
                        if (!pt->assigned && !pt->events)
                                continue;
                        if (n == ctx->mparts_cap) {
                                ctx->mparts_cap = n ? 2 * n : 64;
                                ctx->mparts = eddy__xrealloc(ctx->mparts, ctx->mparts_cap *
                                                                              sizeof(*ctx->mparts));
                        }
                        eddy_metrics_part_t *mp = &ctx->mparts[n++];
                        mp->topic = ctx->topics[t].name;
                        mp->partition = p;
                        mp->assigned = pt->assigned && !pt->done;
                        mp->events = pt->events;
                        /* before its first commit a partition is where its assignment put it:
                         * the log start (state.missing=earliest) or its end (latest) */
                        mp->position =
                            pt->committed >= 0                           ? pt->committed
                            : pt->committed == RD_KAFKA_OFFSET_BEGINNING ? EDDY_METRICS_POS_START
                            : pt->committed == RD_KAFKA_OFFSET_END       ? EDDY_METRICS_POS_END
                                                                         : EDDY_METRICS_POS_UNKNOWN;
                }
        eddy_state_stats_t ss;
        eddy_state_stats(ctx->st, &ss);
        eddy_metrics_set(ctx->metrics, EDDY_M_STATE_KEYS, stat_num(ss.rocksdb_keys));
        eddy_metrics_set(ctx->metrics, EDDY_M_STATE_LIVE_BYTES, stat_num(ss.rocksdb_live_bytes));
        eddy_metrics_set(ctx->metrics, EDDY_M_STATE_MEMTABLE_BYTES, stat_num(ss.memtables_bytes));
        eddy_metrics_set(ctx->metrics, EDDY_M_STATE_CACHE_ENTRIES, (double)ss.cache_entries);
        eddy_metrics_set(ctx->metrics, EDDY_M_STATE_CACHE_BYTES, (double)ss.cache_bytes);
        eddy_metrics_publish(ctx->metrics, ctx->mparts, n, ctx->replay, stopping);
}

/* A scrape's live sources (the server's thread). librdkafka's cached watermarks: from its
 * last fetch response, no request, so lag keeps growing on /metrics while the loop waits. */
static void src_watermarks(void *opaque, const char *topic, int32_t partition, int64_t *lo,
                           int64_t *hi)
{
        eddy_ctx_t *ctx = opaque;
        if (!ctx->rk || rd_kafka_get_watermark_offsets(ctx->rk, topic, partition, lo, hi) != 0) {
                *lo = *hi = -1;
                return;
        }
        if (*lo < 0)
                *lo = -1;
        if (*hi < 0)
                *hi = -1;
}

static void src_collect(void *opaque, eddy_metrics_t *m)
{
        eddy_ctx_t *ctx = opaque;
        if (!ctx->redis)
                return;
        eddy_redis_stats_t rs;
        eddy_redis_stats(ctx->redis, &rs);
        /* every failed attempt is retried after a backoff; refused ops are not */
        eddy_metrics_label_set(m, EDDY_ML_SINK_ERRORS, "redis",
                               rs.retries + __atomic_load_n(&ctx->redis_refused, __ATOMIC_RELAXED));
        eddy_metrics_label_set(m, EDDY_ML_SINK_RETRIES, "redis", rs.retries);
        eddy_metrics_label_set(m, EDDY_ML_REDIS_CHUNKS, "applied", rs.chunks_applied);
        eddy_metrics_label_set(m, EDDY_ML_REDIS_CHUNKS, "fenced", rs.chunks_fenced);
}

static void progress(eddy_ctx_t *ctx, int64_t t0, int final)
{
        double secs = (double)(now_ms() - t0) / 1000.0;
        double rate = secs > 0 ? (double)ctx->replay_done / secs : 0;
        int64_t left = ctx->replay_total - ctx->replay_done;
        double eta = rate > 0 && left > 0 ? (double)left / rate : 0;
        fprintf(stderr,
                "\rreplay: %" PRId64 "/%" PRId64 " events (%.1f%%), %.0f ev/s, ETA %d:%02d%s",
                ctx->replay_done, ctx->replay_total,
                ctx->replay_total ? 100.0 * (double)ctx->replay_done / (double)ctx->replay_total
                                  : 100.0,
                rate, (int)eta / 60, (int)eta % 60, final ? "\n" : "   ");
}

static void ctx_free(eddy_ctx_t *ctx)
{
        eddy_metrics_stop(ctx->metrics); /* what its sources read goes below */
        committer_stop(ctx);
        pthread_mutex_destroy(&ctx->mu);
        pthread_cond_destroy(&ctx->cv);
        if (ctx->self && ctx->proc->close)
                ctx->proc->close(ctx->self);
        if (ctx->rk)
                rd_kafka_destroy(ctx->rk);
        if (ctx->prod) {
                rd_kafka_flush(ctx->prod, 5000);
                rd_kafka_destroy(ctx->prod);
        }
        eddy_redis_destroy(ctx->redis);
        eddy_state_close(ctx->st);
        for (int i = 0; i < ctx->ntopics; i++) {
                free(ctx->topics[i].parts);
                free(ctx->topics[i].alloc);
        }
        free(ctx->topics);
        free(ctx->scopes);
        free(ctx->arena.p);
        free(ctx->rops);
        free(ctx->expects);
        free(ctx->krecs.p);
        free(ctx->rows.p);
        free(ctx->rolls.p);
        for (int i = 0; ctx->tables && i < ctx->ntables; i++)
                eddy_wh_table_free(&ctx->tables[i]);
        free(ctx->tables);
        free(ctx->tsel);
        free(ctx->tprepared);
        for (int i = 0; i < ctx->nseg_parts * ctx->ntables; i++)
                eddy_wbuf_free(&ctx->segs[i].chunk);
        free(ctx->segs);
        free(ctx->chmax);
        if (ctx->row)
                eddy_wbuf_free(&ctx->row->body);
        free(ctx->row);
        eddy_ch_destroy(ctx->ch);
        eddy_search_destroy(ctx->search);
        eddy_wbuf_free(&ctx->sacts);
        eddy_wbuf_free(&ctx->sbody);
        eddy_wbuf_free(&ctx->spare);
        free(ctx->src_topics);
        free(ctx->done_seqs);
        eddy__codec_destroy(ctx->codec);
        eddy__codec_destroy(ctx->kcodec);
        eddy_conf_free(eddy_rt_props, &ctx->rt);
        if (ctx->pconf) {
                eddy_conf_free(ctx->proc->props, ctx->pconf);
                free(ctx->pconf);
        }
        /* last: the producer's final delivery reports still count into it */
        eddy_metrics_destroy(ctx->metrics);
        free(ctx->mparts);
        eddy__log_free(&ctx->lg);
}

static void add_secret(void *opaque, const char *s, size_t len)
{
        eddy__log_secret(opaque, s, len);
}

/* The warehouse of the job: its tables, and the ClickHouse client. @returns 0 or -1. */
static int wh_init(eddy_ctx_t *ctx, char *errstr, size_t errstr_size)
{
        const char *w = ctx->rt.warehouse;
        ctx->wh = !strcmp(w, "off")          ? WH_OFF
                  : !strcmp(w, "lake")       ? WH_LAKE
                  : !strcmp(w, "clickhouse") ? WH_CH
                                             : -1;
        if (ctx->wh < 0) {
                snprintf(errstr, errstr_size,
                         "warehouse: expected off, lake or clickhouse, got \"%s\"", w);
                return -1;
        }
        const char *const *names = ctx->proc->tables;
        for (ctx->ntables = 0; names && names[ctx->ntables];)
                ctx->ntables++;
        for (size_t i = 0; i < ctx->rt.warehouse_tables.n; i++) {
                int found = 0;
                for (int t = 0; t < ctx->ntables; t++)
                        found |= !strcmp(names[t], ctx->rt.warehouse_tables.v[i]);
                if (!found) {
                        snprintf(errstr, errstr_size,
                                 "warehouse.tables: %s writes no table \"%s\" (its tables: %s)",
                                 ctx->proc->name, ctx->rt.warehouse_tables.v[i],
                                 ctx->ntables ? "see docs/warehouse.md" : "none");
                        return -1;
                }
        }
        if (ctx->wh == WH_OFF)
                return 0;
        if (!ctx->ntables) {
                snprintf(errstr, errstr_size, "warehouse: %s writes no warehouse tables",
                         ctx->proc->name);
                return -1;
        }
        ctx->tables = calloc((size_t)ctx->ntables, sizeof(*ctx->tables));
        ctx->tsel = calloc((size_t)ctx->ntables, sizeof(*ctx->tsel));
        ctx->tprepared = calloc((size_t)ctx->ntables, sizeof(*ctx->tprepared));
        ctx->row = calloc(1, sizeof(*ctx->row));
        if (!ctx->tables || !ctx->tsel || !ctx->tprepared || !ctx->row) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        for (int t = 0; t < ctx->ntables; t++) {
                if (eddy_wh_table_load(names[t], &ctx->tables[t], errstr, errstr_size))
                        return -1;
                ctx->tsel[t] = ctx->rt.warehouse_tables.n == 0;
                for (size_t i = 0; i < ctx->rt.warehouse_tables.n; i++)
                        ctx->tsel[t] |= !strcmp(names[t], ctx->rt.warehouse_tables.v[i]);
        }
        lake_seg(ctx, 0, 0);
        ch_max(ctx, 0, 0);
        if (ctx->wh == WH_CH) {
                const char *user = ctx->rt.warehouse_user, *pass = ctx->rt.warehouse_password;
                eddy_ch_conf_t cc = {
                    .url = ctx->rt.warehouse_url,
                    .user = user && *user ? user : getenv("CLICKHOUSE_USER"),
                    .password = pass && *pass ? pass : getenv("CLICKHOUSE_PASSWORD"),
                    .database = ctx->rt.warehouse_database,
                    .table_prefix = ctx->rt.warehouse_table_prefix,
                    .create = ctx->rt.warehouse_create,
                    .timeout_ms = ctx->rt.warehouse_timeout_ms,
                };
                if (!(ctx->ch = eddy_ch_new(&cc, errstr, errstr_size)))
                        return -1;
        }
        return 0;
}

/* Loads config, opens state and (optionally) Redis and Kafka. @returns an exit code or -1. */
static int ctx_init(eddy_ctx_t *ctx, const eddy_job_args_t *a, int want_kafka, int want_redis)
{
        char err[1024];
        memset(ctx, 0, sizeof(*ctx));
        ctx->args = a;
        ctx->proc = a->proc;
        ctx->apply = apply_redis;
        ctx->apply_opaque = ctx;
        pthread_mutex_init(&ctx->mu, NULL);
        pthread_cond_init(&ctx->cv, NULL);
        ctx->pconf = calloc(1, a->proc->conf_size ? a->proc->conf_size : 1);
        ctx->lg.level = LOG_INFO;
        if (eddy_conf_load_proc(a->conf_path, a->overrides, a->noverrides, a->proc, &ctx->rt,
                                ctx->pconf, err, sizeof(err))) {
                fprintf(stderr, "eddy: %s\n", err);
                return 2;
        }
        int lvl = eddy_log_level(ctx->rt.log_level);
        if (lvl < 0) {
                fprintf(stderr,
                        "eddy: log.level: expected debug, info, notice, warning or err, "
                        "got \"%s\"\n",
                        ctx->rt.log_level);
                return 2;
        }
        ctx->lg.level = lvl;
        snprintf(ctx->lg.job, sizeof(ctx->lg.job), "%s", ctx->rt.job_name);
        ctx->lg.json = !strcmp(ctx->rt.log_format, "json");
        for (size_t i = 0; i < ctx->rt.debug.n; i++)
                eddy__log_debug_enable(&ctx->lg, ctx->rt.debug.v[i]); /* checked by the loader */
        for (size_t i = 0; i < ctx->rt.kafka.n; i++)
                if (!strncmp(ctx->rt.kafka.v[i], "debug=", 6))
                        eddy__log_debug_enable(&ctx->lg, "kafka");
        eddy_conf_secrets(&ctx->rt, a->proc->props, ctx->pconf, add_secret, &ctx->lg);
        if (!(ctx->codec = eddy__codec_new(&ctx->rt, a->proc, err, sizeof(err)))) {
                eddy__redact_buf(&ctx->lg, err, sizeof(err));
                fprintf(stderr, "eddy: %s\n", err);
                return 2;
        }
        /* keys: input.key.format, read as written (a Debezium key is the primary key's record) */
        int keys = 0;
        for (size_t i = 0; i < ctx->rt.input_key_format.n; i++)
                keys |= strcmp(ctx->rt.input_key_format.v[i], "json") != 0;
        if (keys) {
                static char *none[] = {"none"};
                ctx->krt = ctx->rt;
                ctx->krt.input_format = ctx->rt.input_key_format;
                ctx->krt.input_avro_schema = ctx->rt.input_key_avro_schema;
                ctx->krt.input_reader_schema = (eddy_strlist_t){none, 1};
                ctx->krt.input_max_bytes = 0;
                ctx->krt.output_format = NULL;
                eddy_processor_t kp = *a->proc;
                kp.input_schemas = NULL;
                kp.output_schema = NULL;
                if (!(ctx->kcodec = eddy__codec_new(&ctx->krt, &kp, err, sizeof(err)))) {
                        eddy__redact_buf(&ctx->lg, err, sizeof(err));
                        fprintf(stderr, "eddy: input.key.format: %s\n", err);
                        return 2;
                }
        }
        ctx->metrics =
            eddy_metrics_new(ctx->rt.job_name, a->proc->name, ctx->rt.ready_max_lag, &ctx->lg);
        eddy_wbuf_t src = {NULL, 0, 0};
        for (size_t i = 0; i < ctx->rt.input_topics.n; i++) {
                if (i)
                        eddy_wbuf_put(&src, ",", 1);
                eddy_wbuf_put(&src, ctx->rt.input_topics.v[i], strlen(ctx->rt.input_topics.v[i]));
        }
        eddy_wbuf_put(&src, "", 1);
        ctx->src_topics = (char *)src.p;
        ctx->replay = a->from || a->until;

        char *rocks = eddy_rt_rocksdb_options(&ctx->rt);
        eddy_state_opts_t so = {ctx->rt.state_cache_mb,        ctx->rt.state_block_cache_mb,
                                ctx->rt.state_write_buffer_mb, ctx->rt.state_sync,
                                eddy_rt_compression(&ctx->rt), rocks};
        ctx->st = eddy_state_open(ctx->rt.state_dir, &so, err, sizeof(err));
        free(rocks);
        if (!ctx->st) {
                eddy__log(&ctx->lg, LOG_ERR, "STATE", "%s", err);
                return 1;
        }
        if (wh_init(ctx, err, sizeof(err))) {
                fprintf(stderr, "eddy: %s\n", err);
                return 2;
        }
        if (ctx->rt.search_url && *ctx->rt.search_url) {
                eddy_search_conf_t sc = {ctx->rt.search_url, ctx->rt.search_user,
                                         ctx->rt.search_password, ctx->rt.search_timeout_ms};
                if (!(ctx->search = eddy_search_new(&sc, err, sizeof(err)))) {
                        fprintf(stderr, "eddy: %s\n", err);
                        return 2;
                }
                ctx->c_search_applied = eddy_counter_new(
                    ctx, "search_applied", "Search index actions applied (indexed or deleted)");
                ctx->c_search_stale = eddy_counter_new(
                    ctx, "search_stale",
                    "Search index actions refused as not newer than the document (409): a "
                    "re-delivery, or a newer version already there");
                ctx->c_search_rejected = eddy_counter_new(
                    ctx, "search_rejected", "Search index actions refused for good (dropped)");
        }
        if (want_redis) {
                char fence[1024];
                size_t fl = (size_t)snprintf(fence, sizeof(fence),
                                             "%s%s:", ctx->rt.redis_fence_prefix, ctx->rt.job_name);
                for (size_t i = 0; i < ctx->rt.input_topics.n && fl < sizeof(fence); i++)
                        fl += (size_t)snprintf(fence + fl, sizeof(fence) - fl, "%s%s", i ? "," : "",
                                               ctx->rt.input_topics.v[i]);
                if (fl < sizeof(fence))
                        snprintf(fence + fl, sizeof(fence) - fl, ":");
                ctx->redis = eddy_redis_new(ctx->rt.redis_url, (int)ctx->rt.redis_timeout_ms, fence,
                                            &ctx->lg, err, sizeof(err));
                if (!ctx->redis) {
                        eddy__redact_buf(&ctx->lg, err, sizeof(err));
                        fprintf(stderr, "eddy: %s\n", err);
                        return 2;
                }
        }
        if (want_kafka) {
                if (!(ctx->rk = kafka_new(ctx, 1, err, sizeof(err))) ||
                    !(ctx->prod = kafka_new(ctx, 0, err, sizeof(err)))) {
                        eddy__redact_buf(&ctx->lg, err, sizeof(err));
                        fprintf(stderr, "eddy: %s\n", err);
                        return 2;
                }
        }
        if (ctx->proc->init(ctx, ctx->pconf, &ctx->self, err, sizeof(err)) != 0) {
                eddy__redact_buf(&ctx->lg, err, sizeof(err));
                fprintf(stderr, "eddy: %s\n", err);
                return 2;
        }
        return -1;
}

/* ---------------------------------------------------------------- reconciliation */

struct recon_cmp {
        eddy_ctx_t *ctx;
        rop_t *exp;
        int64_t redis_fixed, redis_drift;
};

static void recon_cmp_cb(void *opaque, size_t i, const char *v, size_t vl)
{
        struct recon_cmp *rc = opaque;
        rop_t *e = &rc->exp[i];
        const char *want = (const char *)rc->ctx->arena.p + e->voff;
        int same = e->op == EDDY_ROP_DEL ? v == NULL : (v && vl == e->vlen && !memcmp(v, want, vl));
        if (same)
                return;
        /* numeric drift where both sides are numbers; otherwise count 1 */
        char a[32] = "0", b[32] = "0";
        if (v && vl < sizeof(a))
                snprintf(a, sizeof(a), "%.*s", (int)vl, v);
        if (e->op == EDDY_ROP_SET && e->vlen < sizeof(b))
                snprintf(b, sizeof(b), "%.*s", (int)e->vlen, want);
        char *ea, *eb;
        long long x = strtoll(a, &ea, 10), y = strtoll(b, &eb, 10);
        rc->redis_drift += (*ea || *eb) ? 1 : (x > y ? x - y : y - x);
        rc->redis_fixed++;
        const char *key = (const char *)rc->ctx->arena.p + e->koff;
        if (e->op == EDDY_ROP_SET)
                add_rop(rc->ctx, &rc->ctx->rops, &rc->ctx->nrops, &rc->ctx->rops_cap, e->partition,
                        EDDY_ROP_SET, key, e->klen, want, e->vlen);
        else
                add_rop(rc->ctx, &rc->ctx->rops, &rc->ctx->nrops, &rc->ctx->rops_cap, e->partition,
                        EDDY_ROP_DEL, key, e->klen, NULL, 0);
}

/* Partitions with state: those with a stored offset for the first input topic. */
static int recon_partitions(eddy_ctx_t *ctx, int32_t **out)
{
        int n = 0;
        int32_t *v = NULL;
        for (int32_t p = 0; p < 1 << 16; p++) {
                int64_t off;
                int found = 0;
                for (size_t t = 0; t < ctx->rt.input_topics.n; t++)
                        if (eddy_state_offset_get(ctx->st, ctx->rt.input_topics.v[t], p, &off) == 1)
                                found = 1;
                if (!found) {
                        if (p > 4096 && p > (n ? v[n - 1] : 0) + 4096)
                                break;
                        continue;
                }
                v = eddy__xrealloc(v, (size_t)(n + 1) * sizeof(*v));
                v[n++] = p;
        }
        *out = v;
        return n;
}

/* Recomputes every aggregate, fixes state and Redis, reports. @returns 0 or -1. */
static int reconcile_all(eddy_ctx_t *ctx, FILE *report)
{
        if (!ctx->proc->reconcile) {
                eddy__log(&ctx->lg, LOG_ERR, "RECONCILE", "%s has no reconciliation",
                          ctx->proc->name);
                return -1;
        }
        if (drain(ctx) != 0)
                return -1;
        int32_t *parts;
        int np = recon_partitions(ctx, &parts);
        eddy_reconcile_stats_t tot = {0, 0, 0};
        int64_t redis_fixed = 0, redis_drift = 0;
        for (int i = 0; i < np; i++) {
                int32_t p = parts[i];
                /* the fence position of the partition is its stored position */
                for (int t = 0; t < ctx->ntopics; t++) {
                        part_t *pt = part_get(ctx, &ctx->topics[t], p);
                        int64_t off;
                        if (eddy_state_offset_get(ctx->st, ctx->topics[t].name, p, &off) == 1)
                                pt->next = off;
                }
                eddy_reconcile_stats_t s = {0, 0, 0};
                if (ctx->proc->reconcile(ctx->self, ctx, p, &s) != 0) {
                        free(parts);
                        return -1;
                }
                tot.checked += s.checked;
                tot.corrected += s.corrected;
                tot.drift += s.drift;
                eddy_redis_op_t *keys = eddy__xrealloc(NULL, ctx->nexpects * sizeof(*keys));
                for (size_t k = 0; k < ctx->nexpects; k++) {
                        keys[k].key = (const char *)ctx->arena.p + ctx->expects[k].koff;
                        keys[k].klen = ctx->expects[k].klen;
                }
                struct recon_cmp rc = {ctx, ctx->expects, 0, 0};
                int r = ctx->redis ? eddy_redis_get_each(ctx->redis, keys, ctx->nexpects,
                                                         recon_cmp_cb, &rc, &eddy_stop)
                                   : 0;
                free(keys);
                if (r) {
                        free(parts);
                        return -1;
                }
                redis_fixed += rc.redis_fixed;
                redis_drift += rc.redis_drift;
                /* the fixes go out like any batch: one commit, then fenced delivery */
                if (commit_batch(ctx) != 0 || drain(ctx) != 0) {
                        free(parts);
                        return -1;
                }
        }
        free(parts);
        fprintf(report,
                "reconcile %s: partitions=%d checked=%" PRId64 " state_corrected=%" PRId64
                " state_drift=%" PRId64 " redis_corrected=%" PRId64 " redis_drift=%" PRId64
                " corrected=%" PRId64 " drift=%" PRId64 "\n",
                ctx->rt.job_name, np, tot.checked, tot.corrected, tot.drift, redis_fixed,
                redis_drift, tot.corrected + redis_fixed, tot.drift + redis_drift);
        fflush(report);
        return 0;
}

int eddy_runtime_reconcile(const eddy_job_args_t *a)
{
        eddy_ctx_t ctx;
        int rc = ctx_init(&ctx, a, 0, 1);
        if (rc < 0) {
                ctx.ntopics = (int)ctx.rt.input_topics.n;
                ctx.topics = calloc((size_t)ctx.ntopics, sizeof(*ctx.topics));
                for (int i = 0; i < ctx.ntopics; i++) {
                        ctx.topics[i].name = ctx.rt.input_topics.v[i];
                        ctx.topics[i].entry = i;
                }
                rc = redeliver_all(&ctx) == 0 && reconcile_all(&ctx, stdout) == 0 ? 0 : 1;
        }
        ctx_free(&ctx);
        return rc;
}

/* ---------------------------------------------------------------- the job */

int eddy_runtime_run(const eddy_job_args_t *a)
{
        eddy_ctx_t ctx;
        char err[1024];
        int rc = ctx_init(&ctx, a, 1, 1);
        if (rc >= 0)
                goto out;
        rc = 1;
        if (ctx.rt.metrics_port > 0) {
                /* first: /healthz answers while the job loads topics and re-delivers */
                eddy_metrics_sources_t src = {src_watermarks, src_collect, &ctx};
                eddy_metrics_sources(ctx.metrics, &src);
                if (eddy_metrics_serve(ctx.metrics, ctx.rt.metrics_address,
                                       (int)ctx.rt.metrics_port, err, sizeof(err))) {
                        eddy__log(&ctx.lg, LOG_ERR, "METRICS", "%s", err);
                        goto out;
                }
                eddy__log(&ctx.lg, LOG_NOTICE, "METRICS",
                          "serving http://%s:%" PRId64 "/metrics, /healthz and /readyz",
                          ctx.rt.metrics_address, ctx.rt.metrics_port);
        }
        int lt = load_topics(&ctx, err, sizeof(err));
        if (lt) {
                eddy__log(&ctx.lg, LOG_ERR, lt == -2 ? "CONFIG" : "KAFKA", "%s", err);
                rc = lt == -2 ? 2 : 1;
                goto out;
        }
        /* outputs committed before a crash go out before anything new is read */
        if (redeliver_all(&ctx) != 0) {
                rc = eddy_stop ? 0 : 1;
                goto out;
        }
        if (ctx.replay) {
                int r = replay_setup(&ctx, err, sizeof(err));
                if (r) {
                        eddy__log(&ctx.lg, LOG_ERR, "REPLAY", "%s", err);
                        rc = r == -2 ? 2 : 1;
                        goto out;
                }
        } else {
                rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(4);
                for (int i = 0; i < ctx.ntopics; i++)
                        rd_kafka_topic_partition_list_add(sub, ctx.topics[i].name,
                                                          RD_KAFKA_PARTITION_UA);
                rd_kafka_resp_err_t e = rd_kafka_subscribe(ctx.rk, sub);
                rd_kafka_topic_partition_list_destroy(sub);
                if (e) {
                        eddy__log(&ctx.lg, LOG_ERR, "KAFKA", "subscribe: %s", rd_kafka_err2str(e));
                        goto out;
                }
        }
        eddy__log(&ctx.lg, LOG_NOTICE, "RUN",
                  "%s running: state.dir=%s batch.max.events=%" PRId64 " batch.max.ms=%" PRId64
                  "%s",
                  ctx.proc->name, ctx.rt.state_dir, ctx.rt.batch_max_events, ctx.rt.batch_max_ms,
                  ctx.replay ? " (bounded replay)" : "");
        if (committer_start(&ctx) != 0) {
                eddy__log(&ctx.lg, LOG_ERR, "RUN", "can not start the committer thread");
                goto out;
        }
        int64_t t0 = now_ms(), last_progress = t0, last_recon = t0;
        int failed = 0;
        while (!eddy_stop && !failed) {
                if (ctx.replay && replay_finished(&ctx))
                        break;
                int64_t deadline = loop_ms() + ctx.rt.batch_max_ms;
                while (ctx.batch_events < ctx.rt.batch_max_events && !eddy_stop) {
                        int64_t p0 = loop_ms(), left = deadline - p0;
                        if (left < 0)
                                break;
                        report(&ctx, 0, 0);
                        /* at most 500 ms, so that long batches still report to the metrics */
                        rd_kafka_message_t *m =
                            rd_kafka_consumer_poll(ctx.rk, (int)(left < 500 ? left : 500));
                        ctx.poll_ms += loop_ms() - p0;
                        if (!m)
                                continue;
                        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                topic_t *t = topic_find(&ctx, rd_kafka_topic_name(m->rkt), NULL);
                                part_t *pt = t ? part_get(&ctx, t, m->partition) : NULL;
                                if (pt && pt->bound >= 0 && m->offset >= pt->bound) {
                                        pt->done = 1;
                                        ctx.done_changed = 1;
                                }
                        } else if (m->err) {
                                int fatal = m->err == RD_KAFKA_RESP_ERR__FATAL;
                                eddy__log(&ctx.lg, fatal ? LOG_ERR : LOG_WARNING, "KAFKA",
                                          "consumer: %s", rd_kafka_message_errstr(m));
                                if (fatal)
                                        failed = 1;
                        } else if (process_msg(&ctx, m) != 0) {
                                failed = 1;
                        }
                        rd_kafka_message_destroy(m);
                        if (failed || ctx.fatal)
                                break;
                        if (ctx.replay && ctx.done_changed) { /* not a scan per record */
                                ctx.done_changed = 0;
                                if (replay_finished(&ctx))
                                        break;
                        }
                }
                if (failed || ctx.fatal) {
                        failed = 1;
                        break;
                }
                if (commit_batch(&ctx) != 0) {
                        failed = 1;
                        break;
                }
                report(&ctx, 0, 0);
                if (ctx.rt.reconcile_interval_ms > 0 &&
                    now_ms() - last_recon >= ctx.rt.reconcile_interval_ms && !ctx.replay) {
                        last_recon = now_ms();
                        /* runs on the runtime's thread, between batches: sees committed state */
                        FILE *devnull = fopen("/dev/null", "w");
                        if (reconcile_all(&ctx, ctx.lg.level >= LOG_INFO ? stderr : devnull))
                                failed = 1;
                        if (devnull)
                                fclose(devnull);
                }
                if (a->progress && ctx.replay && now_ms() - last_progress >= 1000) {
                        last_progress = now_ms();
                        progress(&ctx, t0, 0);
                }
        }
        report(&ctx, 1, 1);
        ctx.roll_all = 1; /* the lake's waiting rows go out at a clean stop */
        if (!failed && (commit_batch(&ctx) != 0 || drain(&ctx) != 0))
                failed = 1;
        /* the done-marks of the last deliveries */
        if (!failed && ctx.ndone) {
                for (size_t i = 0; i < ctx.ndone; i++)
                        eddy_state_outbox_done(ctx.st, ctx.done_seqs[i]);
                ctx.ndone = 0;
                if (eddy_state_commit(ctx.st, err, sizeof(err)))
                        failed = 1;
        }
        if (a->progress && ctx.replay)
                progress(&ctx, t0, 1);
        if (!ctx.replay)
                rd_kafka_consumer_close(ctx.rk);
        eddy_redis_stats_t rs = {0};
        if (ctx.redis)
                eddy_redis_stats(ctx.redis, &rs);
        eddy_state_stats_t ss;
        eddy_state_stats(ctx.st, &ss);
        eddy__log(&ctx.lg, LOG_NOTICE, "RUN",
                  "stopped: events=%" PRId64 " dead_lettered=%" PRId64 " batches=%" PRId64
                  " state_write_ms=%" PRId64 " deliver_ms=%" PRId64 " backpressure_ms=%" PRId64
                  " poll_ms=%" PRId64 " redis_chunks_applied=%" PRId64
                  " redis_chunks_fenced=%" PRId64 " redis_retries=%" PRId64 " cache_hits=%" PRId64
                  " cache_misses=%" PRId64 " cache_evictions=%" PRId64 " kafka_outputs=%" PRId64
                  " warehouse_rows=%" PRId64 " warehouse_rows_delivered=%" PRId64
                  " warehouse_retries=%" PRId64 " search_applied=%" PRId64
                  " search_retries=%" PRId64 " registry_waits=%" PRId64 "%s",
                  ctx.events_in, ctx.events_dlq, ctx.batches, ctx.write_ms, ctx.deliver_ms,
                  ctx.wait_ms, ctx.poll_ms, rs.chunks_applied, rs.chunks_fenced, rs.retries,
                  ss.cache_hits, ss.cache_misses, ss.evictions, ctx.events_out, ctx.rows_out,
                  ctx.rows_delivered, ctx.wh_retries, ctx.search_applied, ctx.search_retries,
                  ctx.registry_waits, failed ? " (on an error)" : "");
        rc = failed || ctx.fatal ? 1 : 0;
out:
        ctx_free(&ctx);
        return rc;
}

/* ---------------------------------------------------------------- eddy state */

static void print_escaped(FILE *fp, const void *p, size_t n)
{
        const unsigned char *s = p;
        for (size_t i = 0; i < n; i++) {
                if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
                        fputc(s[i], fp);
                else
                        fprintf(fp, "\\x%02x", s[i]);
        }
}

static int dump_cb(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        FILE *fp = opaque;
        const unsigned char *key = k;
        if (kl >= 5 && key[0] == EDDY_NS_STATE) {
                uint32_t p = (uint32_t)key[1] << 24 | key[2] << 16 | key[3] << 8 | key[4];
                fprintf(fp, "state p=%" PRIu32 " key=", p);
                print_escaped(fp, key + 5, kl - 5);
        } else {
                fprintf(fp, "meta key=");
                print_escaped(fp, k, kl);
        }
        fprintf(fp, " value=");
        print_escaped(fp, v, vl < 256 ? vl : 256);
        fputc('\n', fp);
        return 0;
}

struct pending_count {
        int n;
        size_t bytes;
};

static int pending_cb(void *opaque, uint64_t seq, const void *e, size_t len)
{
        struct pending_count *pc = opaque;
        pc->n++;
        pc->bytes += len;
        printf("outbox pending seq=%" PRIu64 " bytes=%zu\n", seq, len);
        return 0;
}

int eddy_runtime_state_cmd(const eddy_job_args_t *a, const char *what)
{
        eddy_ctx_t ctx;
        int rc = ctx_init(&ctx, a, 0, 0);
        if (rc >= 0)
                goto out;
        rc = 0;
        if (!strcmp(what, "offsets")) {
                for (size_t t = 0; t < ctx.rt.input_topics.n; t++)
                        for (int32_t p = 0; p < 4096; p++) {
                                int64_t off;
                                if (eddy_state_offset_get(ctx.st, ctx.rt.input_topics.v[t], p,
                                                          &off) == 1)
                                        printf("%s\t%" PRId32 "\t%" PRId64 "\n",
                                               ctx.rt.input_topics.v[t], p, off);
                        }
        } else if (!strcmp(what, "stats")) {
                eddy_state_stats_t s;
                eddy_state_stats(ctx.st, &s);
                struct pending_count pc = {0, 0};
                eddy_state_outbox_scan(ctx.st, pending_cb, &pc);
                printf("state.dir %s\nrocksdb.estimate-num-keys %s\nrocksdb.live-data-bytes %s\n"
                       "rocksdb.memtables-bytes %s\noutbox.pending %d\noutbox.pending-bytes %zu\n",
                       ctx.rt.state_dir, s.rocksdb_keys, s.rocksdb_live_bytes, s.memtables_bytes,
                       pc.n, pc.bytes);
                /* the lake's rows waiting for their file, per table and partition */
                if (ctx.wh == WH_LAKE && lake_load(&ctx) == 0)
                        for (int t = 0; t < ctx.ntables; t++)
                                for (int p = 0; p < ctx.nseg_parts; p++) {
                                        lake_seg_t *sg = &ctx.segs[t * ctx.nseg_parts + p];
                                        if (sg->rows)
                                                printf("lake.waiting %s %d rows=%" PRId64
                                                       " bytes=%" PRId64 "\n",
                                                       ctx.tables[t].name, p, sg->rows, sg->bytes);
                                }
        } else if (!strcmp(what, "dump")) {
                eddy_state_dump(ctx.st, dump_cb, stdout);
        } else {
                fprintf(stderr, "eddy state: expected offsets, stats or dump, got \"%s\"\n", what);
                rc = 2;
        }
out:
        ctx_free(&ctx);
        return rc;
}

/* ---------------------------------------------------------------- the unit-test seam */

typedef struct test_ctx_s {
        eddy_ctx_t ctx;
        eddy_job_args_t args;
} test_ctx_t;

eddy_ctx_t *eddy__test_open(const eddy_processor_t *proc, char **overrides, int noverrides,
                            eddy_test_apply_fn *apply, void *opaque, char *errstr,
                            size_t errstr_size)
{
        test_ctx_t *t = calloc(1, sizeof(*t));
        t->args.proc = proc;
        t->args.overrides = overrides;
        t->args.noverrides = noverrides;
        eddy_ctx_t *ctx = &t->ctx;
        if (ctx_init(ctx, &t->args, 0, 0) >= 0) {
                snprintf(errstr, errstr_size, "test runtime: set-up failed (see stderr)");
                ctx_free(ctx);
                free(t);
                return NULL;
        }
        ctx->apply = apply;
        ctx->apply_opaque = opaque;
        ctx->ntopics = (int)ctx->rt.input_topics.n;
        ctx->topics = calloc((size_t)ctx->ntopics, sizeof(*ctx->topics));
        for (int i = 0; i < ctx->ntopics; i++) {
                ctx->topics[i].name = ctx->rt.input_topics.v[i];
                ctx->topics[i].entry = i;
        }
        if (redeliver_all(ctx) != 0) {
                snprintf(errstr, errstr_size, "test runtime: re-delivery failed");
                eddy__test_close(ctx);
                return NULL;
        }
        return ctx;
}

int64_t eddy__test_next_offset(eddy_ctx_t *ctx, const char *topic, int32_t partition)
{
        int64_t off = 0;
        if (eddy_state_offset_get(ctx->st, topic, partition, &off) != 1)
                off = 0;
        return off;
}

int eddy__test_feed(eddy_ctx_t *ctx, const char *topic, int32_t partition, int64_t offset,
                    const void *key, size_t klen, const void *value, size_t vlen)
{
        topic_t *t = topic_find(ctx, topic, NULL);
        part_t *pt = t ? part_get(ctx, t, partition) : NULL;
        if (!pt)
                return -1;
        if (!pt->assigned) {
                pt->assigned = 1;
                pt->next = eddy__test_next_offset(ctx, topic, partition);
        }
        eddy_msg_t em = {.topic = t->name, /* one pointer per topic, as librdkafka's */
                         .partition = partition,
                         .offset = offset,
                         .timestamp = -1,
                         .key = key,
                         .key_len = klen,
                         .value = value,
                         .value_len = vlen};
        return process_one(ctx, &em);
}

int eddy__test_commit(eddy_ctx_t *ctx)
{
        return commit_batch(ctx);
}

int eddy__test_reconcile(eddy_ctx_t *ctx, FILE *report)
{
        if (commit_batch(ctx) != 0)
                return -1;
        return reconcile_all(ctx, report);
}

int64_t eddy__test_dlq_count(eddy_ctx_t *ctx)
{
        return ctx->test_dlq;
}

int64_t eddy__test_out_count(eddy_ctx_t *ctx)
{
        return ctx->test_out;
}

void eddy__test_kafka_sink(eddy_ctx_t *ctx, eddy_test_kafka_fn *fn, void *opaque)
{
        ctx->test_kafka = fn;
        ctx->test_kafka_opaque = opaque;
}

void eddy__test_close(eddy_ctx_t *ctx)
{
        if (!ctx)
                return;
        ctx_free(ctx);
        free((test_ctx_t *)ctx); /* ctx is the first member */
}
