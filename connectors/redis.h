/* redis.h: the fenced Redis sink: absolute writes applied by a Lua script per partition. */
#ifndef EDDY_REDIS_H
#define EDDY_REDIS_H

#include "eddy.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eddy_redis_s eddy_redis_t;

/* Operation codes inside an encoded op list (see encode_entry() in runtime/runtime.c). */
#define EDDY_ROP_SET  'S'
#define EDDY_ROP_DEL  'D'
#define EDDY_ROP_HASH 'H' /* replace a hash; the value is packed as below */

/* The value of an EDDY_ROP_HASH op, all integers big-endian:
 *
 *   ttl_ms   8 bytes, signed: PEXPIRE the hash by this when > 0
 *   nfields  4 bytes
 *   nfields times: name length (4 bytes), name, value length (4 bytes), value
 *
 * The fence script gets it as ARGV 'H', ttl_ms, nfields, name1, value1, ... */

/** @returns the size of the packed value of @p fields. */
size_t eddy_redis_hash_size(const eddy_hfield_t *fields, size_t nfields);

/**
 * @brief Packs @p fields and @p ttl_ms into @p buf.
 * @returns the bytes written, eddy_redis_hash_size(fields, nfields).
 * @remark @p buf holds at least that many bytes. Names and values are copied.
 */
size_t eddy_redis_hash_pack(void *buf, int64_t ttl_ms, const eddy_hfield_t *fields, size_t nfields);

/** A reader over a packed hash value. */
typedef struct eddy_redis_hash_iter_s {
        const unsigned char *p, *end;
        int64_t ttl_ms;
        uint32_t nfields, i;
} eddy_redis_hash_iter_t;

/**
 * @brief Starts reading the packed value @p val: sets it->ttl_ms and it->nfields.
 * @returns 0, or -1 if @p val is not exactly one well-formed packed hash (checked in full,
 *          so that eddy_redis_hash_next() then never fails).
 * @remark The fields returned point into @p val.
 */
int eddy_redis_hash_open(eddy_redis_hash_iter_t *it, const void *val, size_t vlen);

/** @returns 1 and the next field in @p f, or 0 after the last. */
int eddy_redis_hash_next(eddy_redis_hash_iter_t *it, eddy_hfield_t *f);

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
 * @returns 0, EDDY_ERR_STOPPED, or EDDY_ERR_REDIS (nothing sent) if an op is not one of
 *          EDDY_ROP_* or a hash value is malformed.
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

/** Counters, for stats and metrics; eddy_redis_stats() is safe from any thread. */
typedef struct eddy_redis_stats_s {
        int64_t chunks_applied, chunks_fenced, retries, reconnects;
} eddy_redis_stats_t;
void eddy_redis_stats(const eddy_redis_t *r, eddy_redis_stats_t *s);

#endif
