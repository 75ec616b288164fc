/* testing.h: a seam for unit tests: the runtime without Kafka, with a fake Redis sink. */
#ifndef EDDY_TESTING_H
#define EDDY_TESTING_H

#include "eddy.h"
#include "redis.h"

#include <stdio.h>

/** A Redis delivery: @p ops in chunks of @p chunk keys, fenced by (pos, seq + chunk index).
 *  An EDDY_ROP_HASH op's val is the packed hash (eddy_redis_hash_open() reads it). */
typedef int(eddy_test_apply_fn)(void *opaque, int32_t partition, int64_t pos, int64_t seq,
                                uint32_t chunk, const eddy_redis_op_t *ops, size_t nops);

/** A Kafka record the runtime would produce. Everything points into the outbox entry being
 *  delivered, valid for the call only; topic is not NUL-terminated. */
typedef struct eddy_test_krec_s {
        const char *topic;
        size_t tlen;
        int dead_letter; /* else an eddy_out_kafka() output */
        const void *key; /* NULL: no key */
        size_t klen;
        const void *val; /* NULL: a tombstone */
        size_t vlen;
        const eddy_hfield_t *headers; /* in order */
        size_t nheaders;
} eddy_test_krec_t;

typedef void(eddy_test_kafka_fn)(void *opaque, const eddy_test_krec_t *rec);

/**
 * @brief A runtime over state.dir (from @p overrides, "-X" style) that delivers Redis
 *        outputs to @p apply instead of Redis, and drops Kafka records (dead letters and
 *        outputs, counted apart; see eddy__test_kafka_sink()). Partitions fed are assigned.
 *        Re-delivers committed outbox entries first, as a real start does.
 * @returns NULL with errstr. @remark Free with eddy__test_close(): that is a crash (nothing
 *          uncommitted survives) unless eddy__test_commit() was called just before.
 */
eddy_ctx_t *eddy__test_open(const eddy_processor_t *proc, char **overrides, int noverrides,
                            eddy_test_apply_fn *apply, void *opaque, char *errstr,
                            size_t errstr_size);
/** Where a partition resumes: the offset stored in state (0 if none). */
int64_t eddy__test_next_offset(eddy_ctx_t *ctx, const char *topic, int32_t partition);
/** One record, as if consumed. @returns 0, or -1 if the job would stop. */
int eddy__test_feed(eddy_ctx_t *ctx, const char *topic, int32_t partition, int64_t offset,
                    const void *key, size_t klen, const void *value, size_t vlen);
/** Ends the batch: flush, commit, deliver. @returns 0, or the delivery's error. */
int eddy__test_commit(eddy_ctx_t *ctx);
/** Runs reconciliation, the report to @p report. */
int eddy__test_reconcile(eddy_ctx_t *ctx, FILE *report);
/** Dead-letter records produced so far (and dropped). */
int64_t eddy__test_dlq_count(eddy_ctx_t *ctx);
/** eddy_out_kafka() records produced so far (and dropped); dead letters not counted. */
int64_t eddy__test_out_count(eddy_ctx_t *ctx);
/** Hands every Kafka record delivered from now on to @p fn too (NULL: none). Entries
 *  re-delivered by eddy__test_open() are only counted. */
void eddy__test_kafka_sink(eddy_ctx_t *ctx, eddy_test_kafka_fn *fn, void *opaque);
void eddy__test_close(eddy_ctx_t *ctx);

#endif
