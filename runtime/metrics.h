/* metrics.h: a job's counters, Prometheus text on /metrics, /healthz and /readyz. */
#ifndef EDDY_METRICS_H
#define EDDY_METRICS_H

#include "eddy.h"
#include "log.h"

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_metrics_s eddy_metrics_t;

/* Metrics without labels: X(id, type, name, help). */
#define EDDY_METRICS_MAP(X)                                                                        \
        X(BATCHES, "counter", "eddy_batches_total", "Batches committed")                           \
        X(OUTBOX_DEPTH, "gauge", "eddy_outbox_depth",                                              \
          "Outbox entries committed or queued for commit and not yet delivered")                   \
        X(REDIS_OPS, "counter", "eddy_redis_ops_delivered_total",                                  \
          "Redis operations delivered through the fenced script (including those a fence "         \
          "skipped)")                                                                              \
        X(ASSIGNED, "gauge", "eddy_assigned_partitions", "Input partitions assigned to this job")  \
        X(STATE_KEYS, "gauge", "eddy_state_keys_estimate",                                         \
          "RocksDB estimate of the keys in state.dir (rocksdb.estimate-num-keys)")                 \
        X(STATE_LIVE_BYTES, "gauge", "eddy_state_live_bytes_estimate",                             \
          "RocksDB estimate of the live data in state.dir (rocksdb.estimate-live-data-size)")      \
        X(STATE_MEMTABLE_BYTES, "gauge", "eddy_state_memtable_bytes",                              \
          "RocksDB memtables (rocksdb.cur-size-all-mem-tables)")                                   \
        X(STATE_CACHE_ENTRIES, "gauge", "eddy_state_cache_entries",                                \
          "Entries in the in-memory state cache")                                                  \
        X(STATE_CACHE_BYTES, "gauge", "eddy_state_cache_bytes",                                    \
          "Bytes in the in-memory state cache (budget: state.cache.mb)")

typedef enum {
#define EDDY__M_ENUM(id, type, name, help) EDDY_M_##id,
        EDDY_METRICS_MAP(EDDY__M_ENUM)
#undef EDDY__M_ENUM
            EDDY_M__COUNT
} eddy_metric_id_t;

/* Counters with one label: X(id, name, label, help, preset label values "a,b" or NULL). */
#define EDDY_METRICS_LABELED_MAP(X)                                                                \
        X(DEAD_LETTERS, "eddy_dead_letters_total", "reason",                                       \
          "Input records sent to the dead-letter topic, by the processor's reason", NULL)          \
        X(EVENTS_OUT, "eddy_events_out_total", "topic",                                            \
          "Kafka records delivered (outputs and dead letters), by topic", NULL)                    \
        X(SINK_ERRORS, "eddy_sink_errors_total", "sink",                                           \
          "Failed delivery attempts (redis: failed calls; kafka: records not delivered; "          \
          "warehouse: failed inserts or file writes), by sink",                                    \
          "redis,kafka,warehouse")                                                                 \
        X(SINK_RETRIES, "eddy_sink_retries_total", "sink",                                         \
          "Deliveries retried after a backoff, by sink", "redis,kafka,warehouse")                  \
        X(WAREHOUSE_ROWS, "eddy_warehouse_rows_total", "table",                                    \
          "Warehouse rows delivered (inserted into ClickHouse or written to a lake file), by "     \
          "table",                                                                                 \
          NULL)                                                                                    \
        X(REDIS_CHUNKS, "eddy_redis_chunks_total", "result",                                       \
          "Fenced Redis script calls: applied, or skipped by the fence", "applied,fenced")         \
        X(REBALANCES, "eddy_rebalances_total", "kind",                                             \
          "Partition assignment changes seen by the consumer (one per callback)",                  \
          "assign,revoke,lost")

typedef enum {
#define EDDY__ML_ENUM(id, name, label, help, preset) EDDY_ML_##id,
        EDDY_METRICS_LABELED_MAP(EDDY__ML_ENUM)
#undef EDDY__ML_ENUM
            EDDY_ML__COUNT
} eddy_metric_labeled_t;

/* Histograms: X(id, name, help). Buckets are fixed (EDDY_METRICS_BUCKETS in metrics.c). */
#define EDDY_METRICS_HIST_MAP(X)                                                                   \
        X(BATCH, "eddy_batch_duration_seconds",                                                    \
          "From the first record of a batch to its commit handed to the committer")                \
        X(COMMIT, "eddy_commit_duration_seconds",                                                  \
          "The atomic RocksDB write of a batch (state, offsets, outbox)")                          \
        X(DELIVERY, "eddy_delivery_duration_seconds",                                              \
          "Delivery of one outbox entry to its sinks, retries included")

typedef enum {
#define EDDY__MH_ENUM(id, name, help) EDDY_MH_##id,
        EDDY_METRICS_HIST_MAP(EDDY__MH_ENUM)
#undef EDDY__MH_ENUM
            EDDY_MH__COUNT
} eddy_metric_hist_t;

/* eddy_metrics_part_t.position before a partition's first commit (else an offset >= 0). */
#define EDDY_METRICS_POS_UNKNOWN -1
#define EDDY_METRICS_POS_START   -2 /* at the log start (the low watermark) */
#define EDDY_METRICS_POS_END     -3 /* at the log end (the high watermark) */

/** One input partition as the consumer loop last reported it. */
typedef struct eddy_metrics_part_s {
        const char *topic; /* copied by eddy_metrics_publish() */
        int32_t partition;
        int assigned;
        int64_t events;   /* records processed by this process */
        int64_t position; /* next offset of the last commit, or EDDY_METRICS_POS_* */
} eddy_metrics_part_t;

/** Where a scrape reads what changes while the consumer loop may be blocked. */
typedef struct eddy_metrics_sources_s {
        /** The cached low and high watermarks of a partition (-1: not known). Must not block. */
        void (*watermarks)(void *opaque, const char *topic, int32_t partition, int64_t *lo,
                           int64_t *hi);
        /** Refreshes numbers kept elsewhere (the Redis sink's totals) before each render. */
        void (*collect)(void *opaque, eddy_metrics_t *m);
        void *opaque;
} eddy_metrics_sources_t;

/**
 * @brief The metrics of one job. Free with eddy_metrics_destroy().
 * @param lg logs the server's errors, and its secrets are redacted from every body served;
 *        it must outlive the handle.
 */
eddy_metrics_t *eddy_metrics_new(const char *job, const char *processor, int64_t ready_max_lag,
                                 const eddy_logger_t *lg);
/** Stops the server (if any) and frees. NULL is a no-op. */
void eddy_metrics_destroy(eddy_metrics_t *m);

/**
 * @brief Serves /metrics, /healthz and /readyz on @p address (IPv4) : @p port from a thread of
 *        libmicrohttpd's. A request holds the metrics' mutex only while it formats the text
 *        (tens to hundreds of microseconds), never while waiting for anything.
 * @returns 0, or -1 with @p errstr (address in use, bad address).
 */
int eddy_metrics_serve(eddy_metrics_t *m, const char *address, int port, char *errstr,
                       size_t errstr_size);

/**
 * @brief Sets the callbacks a scrape calls, from the server's thread.
 * @remark They must stay callable until eddy_metrics_stop() (or destroy) returns.
 */
void eddy_metrics_sources(eddy_metrics_t *m, const eddy_metrics_sources_t *src);

/** Stops the server: no request and no source callback runs after it returns. NULL-safe. */
void eddy_metrics_stop(eddy_metrics_t *m);

/* Updates; each is safe from any thread and NULL-safe. */
void eddy_metrics_add(eddy_metrics_t *m, eddy_metric_id_t id, double v);
void eddy_metrics_set(eddy_metrics_t *m, eddy_metric_id_t id, double v);
void eddy_metrics_label_add(eddy_metrics_t *m, eddy_metric_labeled_t id, const char *label,
                            int64_t v);
/** Sets a labeled counter to a total kept elsewhere (e.g. the Redis sink's). */
void eddy_metrics_label_set(eddy_metrics_t *m, eddy_metric_labeled_t id, const char *label,
                            int64_t v);
void eddy_metrics_observe(eddy_metrics_t *m, eddy_metric_hist_t id, double seconds);

/**
 * @brief The consumer loop's report: every input partition it knows, whether it runs a bounded
 *        replay, whether it is stopping. /readyz judges from it and the live watermarks.
 */
void eddy_metrics_publish(eddy_metrics_t *m, const eddy_metrics_part_t *parts, size_t n, int replay,
                          int stopping);

/**
 * @brief Renders the Prometheus text (exposition format 0.0.4), secrets redacted.
 * @returns a heap string (free()), its length in @p len.
 */
char *eddy_metrics_render(eddy_metrics_t *m, size_t *len);

/**
 * @brief The readiness rule (see docs/architecture.md): writes the reason into @p why.
 * @returns 1 ready, 0 not.
 */
int eddy_metrics_ready(eddy_metrics_t *m, char *why, size_t why_size);

/**
 * @brief A processor's counter, exported as eddy_<name>_total (eddy_counter_new() in eddy.h).
 * @returns NULL with @p errstr if the name is not [a-z][a-z0-9_]* or is taken.
 * @remark Owned by @p m.
 */
eddy_counter_t *eddy__metrics_counter_new(eddy_metrics_t *m, const char *name, const char *help,
                                          char *errstr, size_t errstr_size);

#endif
