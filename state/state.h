/* state.h: the RocksDB store: partition-scoped keys, a write-back cache, atomic commits. */
#ifndef EDDY_STATE_H
#define EDDY_STATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_state_s eddy_state_t;

typedef struct eddy_state_opts_s {
        int64_t cache_mb;       /* budget of the in-memory cache of state entries */
        int64_t block_cache_mb; /* RocksDB block cache */
        int64_t write_buffer_mb;
        int sync;                    /* fsync the WAL at each commit */
        int compression;             /* of the levels below L0: EDDY_STATE_COMPRESS_* (0: none) */
        const char *rocksdb_options; /* "name=value;..." over eddy's own (NULL: none) */
} eddy_state_opts_t;

enum { EDDY_STATE_COMPRESS_NONE, EDDY_STATE_COMPRESS_LZ4, EDDY_STATE_COMPRESS_ZSTD };

/**
 * @brief Open (creating if needed) the store in @p dir.
 * @returns the handle, or NULL with the reason in @p errstr.
 * @remark Free with eddy_state_close().
 */
eddy_state_t *eddy_state_open(const char *dir, const eddy_state_opts_t *opts, char *errstr,
                              size_t errstr_size);
/** @returns 0 if RocksDB takes @p options ("name=value;..."), else -1 with its message. */
int eddy_state_check_options(const char *options, char *errstr, size_t errstr_size);

/** @brief Close without committing what is pending. NULL is a no-op. */
void eddy_state_close(eddy_state_t *st);

/* Processor state, scoped by partition; reads see the uncommitted batch (see eddy.h). */
int eddy__state_get(eddy_state_t *st, int32_t partition, const void *key, size_t klen,
                    const void **val, size_t *vlen);
void eddy__state_put(eddy_state_t *st, int32_t partition, const void *key, size_t klen,
                     const void *val, size_t vlen);
void eddy__state_del(eddy_state_t *st, int32_t partition, const void *key, size_t klen);
int eddy__state_scan(eddy_state_t *st, int32_t partition, const void *prefix, size_t plen,
                     int (*cb)(void *, const void *, size_t, const void *, size_t), void *opaque);
/* Tests: 0 if every cached entry is reachable from its home slot and the count is right. */
int eddy__state_check(const eddy_state_t *st);

/* Input positions: the next offset to read of topic/partition. */
/** @returns 1 and *next if stored, 0 if not, -1 on error. Reads committed state. */
int eddy_state_offset_get(eddy_state_t *st, const char *topic, int32_t partition, int64_t *next);
/** Part of the next commit. */
void eddy_state_offset_set(eddy_state_t *st, const char *topic, int32_t partition, int64_t next);

/* Redis fences: the last (position, seq) this store has handed out for a partition. */
int eddy_state_fence_get(eddy_state_t *st, int32_t partition, int64_t *pos, int64_t *seq);
void eddy_state_fence_set(eddy_state_t *st, int32_t partition, int64_t pos, int64_t seq);

/* The outbox: entries committed with the batch, delivered after, removed when done. The
 * entries live in segment files under <state.dir>/outbox; RocksDB holds references. */
/** Adds @p entry to the next commit; @returns its sequence number. Not copied: the bytes
 *  must stay valid until the transaction that holds them is written. */
uint64_t eddy_state_outbox_add(eddy_state_t *st, const void *entry, size_t len);
/** A buffer for outbox entries (free() it): one from here goes to the disk without a copy
 *  when state.sync writes the outbox with O_DIRECT. Any other buffer works, with a copy. */
void *eddy_state_outbox_buf(size_t size);
/** Removes entry @p seq in the next commit. */
void eddy_state_outbox_done(eddy_state_t *st, uint64_t seq);
/** Visit committed outbox entries in order (@p cb NULL: only count them, reading no
 *  segment). @returns count, or -1 on error (a missing or damaged segment: on stderr). */
int eddy_state_outbox_scan(eddy_state_t *st,
                           int (*cb)(void *opaque, uint64_t seq, const void *e, size_t len),
                           void *opaque);

/* Raw keys of the runtime's own namespaces (EDDY_NS_*), outside the cache. */
/** Visit committed keys in [lo, hi) in order. @returns the count, or -1 on error. */
int eddy_state_raw_scan(eddy_state_t *st, const void *lo, size_t lol, const void *hi, size_t hil,
                        int (*cb)(void *opaque, const void *k, size_t kl, const void *v, size_t vl),
                        void *opaque);
/** Part of the next commit. */
void eddy_state_raw_put(eddy_state_t *st, const void *key, size_t klen, const void *val,
                        size_t vlen);
/** Deletes committed keys in [lo, hi) now, in a write of its own (any thread). */
int eddy_state_raw_delete_range(eddy_state_t *st, const void *lo, size_t lol, const void *hi,
                                size_t hil, char *errstr, size_t errstr_size);

/** Drop every state key of @p partition (and its fence), in the next commit. */
void eddy_state_drop_partition(eddy_state_t *st, int32_t partition);

/** @returns non-zero if anything awaits a commit. */
int eddy_state_pending(const eddy_state_t *st);
/**
 * @brief One atomic RocksDB write of: dirty state entries, offsets, fences, outbox changes.
 *        eddy_state_prepare() + eddy_state_write() + eddy_state_evict().
 * @returns 0, or -1 with @p errstr.
 */
int eddy_state_commit(eddy_state_t *st, char *errstr, size_t errstr_size);

/* The same commit in two steps, so that the write can run on another thread while the
 * owner goes on with the next batch. Between the two, the cache already holds what the
 * transaction writes, so reads stay right; eviction must wait until no transaction is in
 * flight (a re-read from RocksDB of an evicted entry would see the older value). */
typedef struct eddy_state_txn_s eddy_state_txn_t;
/** Moves everything pending into a transaction; the cache entries become clean. */
eddy_state_txn_t *eddy_state_prepare(eddy_state_t *st);
/**
 * @brief The atomic RocksDB write of @p t, which it frees. Safe to call from one other
 *        thread while the owner uses the store. @returns 0, or -1 with @p errstr: then the
 *        store must not be used further (the cache is ahead of RocksDB).
 */
int eddy_state_write(eddy_state_t *st, eddy_state_txn_t *t, char *errstr, size_t errstr_size);
/** @returns non-zero if the cache is over its budget (call eddy_state_evict when idle). */
int eddy_state_over_budget(const eddy_state_t *st);
/** Evicts clean entries down to 3/4 of the budget. Only with no transaction in flight. */
void eddy_state_evict(eddy_state_t *st);

typedef struct eddy_state_stats_s {
        int64_t cache_entries, cache_bytes, cache_hits, cache_misses, evictions;
        int64_t commits, committed_keys;
        char rocksdb_keys[32], rocksdb_live_bytes[32], memtables_bytes[32];
} eddy_state_stats_t;
void eddy_state_stats(eddy_state_t *st, eddy_state_stats_t *stats);

/** Visit every stored key of the whole store (committed), raw, for `eddy state dump`. */
int eddy_state_dump(eddy_state_t *st,
                    int (*cb)(void *opaque, const void *k, size_t kl, const void *v, size_t vl),
                    void *opaque);

/* Key namespaces (first byte of every RocksDB key). */
#define EDDY_NS_META   'M'
#define EDDY_NS_OFFSET 'O'
#define EDDY_NS_FENCE  'F'
#define EDDY_NS_OUTBOX 'X'
#define EDDY_NS_STATE  'S'
#define EDDY_NS_LAKE   'W' /* rows waiting for their Avro file */

#endif
