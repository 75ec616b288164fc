/* redis.h: the fenced Redis sink: absolute writes applied by a Lua script per partition. */
#ifndef EDDY_REDIS_H
#define EDDY_REDIS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eddy_redis_s eddy_redis_t;

/* Operation codes inside an encoded op list (see runtime/outbox.h). */
#define EDDY_ROP_SET 'S'
#define EDDY_ROP_DEL 'D'

/**
 * @brief A sink for redis.url ("redis://[:password@]host[:port][/db]"). Connects lazily.
 * @param fence_prefix e.g. "eddy:fence:<job>:<topic>:"; the partition number is appended.
 * @returns NULL with errstr on a malformed URL. Free with eddy_redis_destroy().
 */
struct eddy_logger_s;
eddy_redis_t *eddy_redis_new(const char *url, int timeout_ms, const char *fence_prefix,
                             const struct eddy_logger_s *lg, char *errstr, size_t errstr_size);
void eddy_redis_destroy(eddy_redis_t *r);

typedef struct eddy_redis_op_s {
        char op;
        const char *key;
        size_t klen;
        const char *val;
        size_t vlen;
} eddy_redis_op_t;

/**
 * @brief Apply @p ops for @p partition at input position @p pos, in chunks of
 *        @p chunk_keys keys fenced by
 *        (pos, seq_base + chunk index). A chunk whose (pos, seq) is not above the fence
 *        stored in Redis is skipped, so re-delivery and zombies change nothing.
 *        Retries with backoff (logging what it waits for) until it succeeds or *stop is set.
 * @returns 0, or EDDY_ERR_STOPPED.
 */
int eddy_redis_apply(eddy_redis_t *r, int32_t partition, int64_t pos, int64_t seq_base,
                     uint32_t chunk_keys, const eddy_redis_op_t *ops, size_t nops,
                     volatile sig_atomic_t *stop);

/**
 * @brief GET each of @p keys (retrying like eddy_redis_apply()).
 * @param cb called once per key in order with its value, or NULL/0 when absent.
 */
int eddy_redis_get_each(eddy_redis_t *r, const eddy_redis_op_t *keys, size_t n,
                        void (*cb)(void *opaque, size_t i, const char *v, size_t vl), void *opaque,
                        volatile sig_atomic_t *stop);

/** Counters, for stats and metrics. */
typedef struct eddy_redis_stats_s {
        int64_t chunks_applied, chunks_fenced, retries, reconnects;
} eddy_redis_stats_t;
void eddy_redis_stats(const eddy_redis_t *r, eddy_redis_stats_t *s);

#endif
