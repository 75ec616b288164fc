/* eddy.h: the processor plugin API, all that a processor sees of the runtime. */
#ifndef EDDY_H
#define EDDY_H

#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

/* 2: input_schemas and output_schema at the end of eddy_processor_t (read only from a
 * processor that says 2 or more, so one built for 1 keeps loading) */
#define EDDY_ABI_VERSION 2

/* One error enum for the whole project; 0 is OK. eddy_strerror() comes from the same list. */
#define EDDY_ERRNO_MAP(XX)                                                                         \
        XX(OK, "success")                                                                          \
        XX(USAGE, "usage or configuration error")                                                  \
        XX(BAD_RECORD, "record can not be decoded or fails validation")                            \
        XX(STATE, "state store error")                                                             \
        XX(KAFKA, "kafka error")                                                                   \
        XX(REDIS, "redis error")                                                                   \
        XX(IO, "i/o error")                                                                        \
        XX(NOMEM, "out of memory")                                                                 \
        XX(STOPPED, "stopped")

typedef enum {
#define EDDY__ERR_ENUM(name, str) EDDY_ERR_##name,
        EDDY_ERRNO_MAP(EDDY__ERR_ENUM)
#undef EDDY__ERR_ENUM
} eddy_err_t;

/** @brief A static description of @p err. */
const char *eddy_strerror(int err);

/* ---- configuration property tables ---- */

typedef enum {
        EDDY_PROP_STR,  /* char *, heap, freed by eddy_conf_free() */
        EDDY_PROP_INT,  /* int64_t */
        EDDY_PROP_BOOL, /* int */
        EDDY_PROP_LIST, /* eddy_strlist_t: a JSON array of strings, or "a,b,c" from -X */
        EDDY_PROP_JSON, /* char *, heap: any JSON value as compact text (from -X: JSON text) */
} eddy_prop_type_t;

#define EDDY_PROP_SECRET 0x1 /* never printed: not in logs, metrics or --list-config values */

typedef struct eddy_strlist_s {
        char **v;
        size_t n;
} eddy_strlist_t;

/** One configuration key: parsing, validation, default and docs come from this row. */
typedef struct eddy_prop_s {
        const char *name;
        eddy_prop_type_t type;
        const char *defval; /* default as text; NULL: no default (empty string / 0 / empty list) */
        int64_t min, max;   /* bounds for EDDY_PROP_INT */
        size_t offset;      /* offsetof() the field in the config struct */
        const char *desc;
        int flags;
} eddy_prop_t;

/* ---- what a processor is handed ---- */

typedef struct eddy_ctx_s eddy_ctx_t; /* the runtime, as a processor sees it */

typedef struct eddy_msg_s {
        const char *topic;
        int topic_index; /* index of the input.topics entry that names (or, "^...", matches) it */
        int32_t partition;
        int64_t offset;
        int64_t timestamp; /* Kafka message timestamp, epoch ms, -1 if none */
        const void *key;
        size_t key_len;
        const void *value;
        size_t value_len;
} eddy_msg_t;

/** Log through the runtime (level first checked, then formatted). */
void eddy_log(eddy_ctx_t *ctx, int level, const char *fac, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/**
 * @brief Mark the record being processed as bad: it goes to the dead-letter topic with
 *        @p reason (a short token such as "json", "missing_field", "late") and @p detail.
 * @returns EDDY_ERR_BAD_RECORD, for `return eddy_reject(...)` from process().
 */
int eddy_reject(eddy_ctx_t *ctx, const char *reason, const char *detail_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * @brief A dead letter for an earlier record of the partition, one the processor kept in its
 *        state (an engagement that never found its impression): @p msg describes it as
 *        process() saw it (topic, partition, offset, key, value). Goes out with the batch,
 *        like eddy_reject()'s, with the same headers; eddy.src names @p msg.
 */
void eddy_out_dead_letter(eddy_ctx_t *ctx, const eddy_msg_t *msg, const char *reason,
                          const char *detail);

/* ---- state: keys are scoped by input partition number ----
 *
 * Reads see the batch in flight (read-your-writes). Writes become durable only at the
 * runtime's commit, atomically with the input offsets and the outbox. A value pointer
 * returned by eddy_state_get() stays valid until the next put/del of that key or the end
 * of the current callback, whichever comes first. */

/** @returns 1 and sets val and vlen if found, 0 if not, <0 (an eddy_err_t negated) on error. */
int eddy_state_get(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                   const void **val, size_t *vlen);
void eddy_state_put(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                    const void *val, size_t vlen);
void eddy_state_del(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen);

typedef int(eddy_scan_cb)(void *opaque, const void *key, size_t klen, const void *val, size_t vlen);
/**
 * @brief Visit every key of @p partition that starts with @p prefix, in key order, as reads
 *        see them (the batch in flight included).
 * @remark It first waits for the commits in flight to be written and delivered, so it costs
 *         a pipeline stall: for rare events (reconcile, a truncate, loading a partition), not
 *         per record. The callback may write keys of other prefixes and the key it is
 *         given; other writes to the scanned range wait until the scan returns. A callback
 *         returning non-zero stops the scan. @returns the keys visited, or <0 on error.
 */
int eddy_state_scan(eddy_ctx_t *ctx, int32_t partition, const void *prefix, size_t plen,
                    eddy_scan_cb *cb, void *opaque);

/* ---- outputs: queued in the batch's outbox, delivered after the commit ---- */

/** Redis: absolute SET of @p key, fenced by @p partition's input position. */
void eddy_out_redis_set(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                        const void *val, size_t vlen);
/** Redis: DEL of @p key, fenced by @p partition's input position. */
void eddy_out_redis_del(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen);

/** A field of a Redis hash. */
typedef struct eddy_hfield_s {
        const char *name;
        size_t nlen;
        const char *val;
        size_t vlen;
} eddy_hfield_t;

/** Redis: replace hash @p key by exactly @p fields (in this order), then PEXPIRE it by
 *  @p ttl_ms when > 0; fenced like eddy_out_redis_set(). nfields must be > 0 (use
 *  eddy_out_redis_del() for an empty hash). */
void eddy_out_redis_hash(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                         const eddy_hfield_t *fields, size_t nfields, int64_t ttl_ms);

/** Kafka: a record for @p topic, partitioned by the producer's partitioner (murmur2 of the
 *  key), value NULL for a tombstone. Delivered after the commit with the idempotent producer;
 *  a crash between commit and delivery re-delivers it, so it carries an eddy.src header
 *  (<input topic>/<partition>/<position>/<seq>) by which consumers drop duplicates. */
void eddy_out_kafka(eddy_ctx_t *ctx, int32_t partition, const char *topic, const void *key,
                    size_t klen, const void *val, size_t vlen);

/** Search index (Elasticsearch / OpenSearch _bulk, when the job sets search.url; a no-op
 *  otherwise): index @p doc (a JSON object) as document @p id of @p index with external
 *  version @p version, or delete the document when @p doc is NULL. The index refuses an
 *  action whose version is not greater than the document's, so a re-delivery after a crash
 *  changes nothing and an older change never overwrites a newer one. */
void eddy_out_search(eddy_ctx_t *ctx, int32_t partition, const char *index, const void *id,
                     size_t idlen, int64_t version, const void *doc, size_t doclen);

/* ---- warehouse rows (docs/warehouse.md) ----
 *
 * A row of one of the processor's tables (eddy_processor_t.tables, each schemas/<table>.avsc),
 * built column by column in the schema's order, without the last four columns (_topic,
 * _partition, _offset, _seq): the runtime adds them, naming the input position that made the
 * row. Rows are committed with the batch and delivered after it, exactly once. */
typedef struct eddy_row_s eddy_row_t;
/**
 * @brief Starts a row of table number @p table (index into eddy_processor_t.tables) for
 *        input partition @p partition; @p event_ts (epoch ms) places it in the lake's hours.
 * @returns NULL when the job writes no warehouse or not this table: the eddy_row_* calls
 *          below take NULL and do nothing, so a processor need not check.
 */
eddy_row_t *eddy_row_begin(eddy_ctx_t *ctx, int32_t partition, int table, int64_t event_ts);
void eddy_row_string(eddy_row_t *row, const void *s, size_t n);
void eddy_row_long(eddy_row_t *row, int64_t v); /* a long or an int column */
void eddy_row_double(eddy_row_t *row, double v);
void eddy_row_bool(eddy_row_t *row, int v);
void eddy_row_null(eddy_row_t *row); /* a ["null", T] column */
/** Ends the row; a column missing or of the wrong type stops the job (a processor bug). */
void eddy_row_end(eddy_row_t *row);

/** Whether input partition number @p partition is assigned to this instance (any topic). */
int eddy_partition_assigned(eddy_ctx_t *ctx, int32_t partition);

/** Reconcile only: the value @p key should have in Redis; the runtime compares and fixes. */
void eddy_out_redis_expect(eddy_ctx_t *ctx, int32_t partition, const void *key, size_t klen,
                           const void *val, size_t vlen);

/* ---- metrics: the processor's own counters, served by the runtime on /metrics ---- */

typedef struct eddy_counter_s eddy_counter_t;

/**
 * @brief A counter exported as `eddy_<name>_total` (Prometheus text, on metrics.port).
 * @param name [a-z][a-z0-9_]*, not one of the runtime's metric names (e.g. "late_events")
 * @param help one line for the # HELP comment
 * @returns the counter, or NULL (logged) if the name is bad or taken.
 * @remark Call from init(). The runtime owns the counter; it stays valid until close()
 *         returns. Counters are not outputs: they restart at 0 with the process and may
 *         count a record again when it is re-read after a crash or a rebalance.
 */
eddy_counter_t *eddy_counter_new(eddy_ctx_t *ctx, const char *name, const char *help);

/** Adds @p n to @p c. Lock-free, safe from any thread; a NULL @p c is a no-op. */
void eddy_counter_add(eddy_counter_t *c, int64_t n);

/* ---- the plugin ---- */

typedef struct eddy_reconcile_stats_s {
        int64_t checked;   /* entities recomputed */
        int64_t corrected; /* entities whose stored aggregate differed */
        int64_t drift;     /* sum of |stored - recomputed| */
} eddy_reconcile_stats_t;

typedef struct eddy_processor_s {
        int abi_version; /* EDDY_ABI_VERSION; new callbacks go at the end */
        const char *name;
        const char *summary;
        const char *default_input; /* input.topics when the job names none, "a,b" */
        const eddy_prop_t *props;  /* processor keys, terminated by a row with name NULL */
        size_t conf_size;          /* size of the struct that props fill */

        /** Create the processor's context from its filled config. */
        int (*init)(eddy_ctx_t *ctx, const void *conf, void **selfp, char *errstr,
                    size_t errstr_size);
        /** One input record. Return 0, eddy_reject(), or another error to stop the job. */
        int (*process)(void *self, eddy_ctx_t *ctx, const eddy_msg_t *msg);
        /** End of batch: emit outputs for what changed, then forget the batch's bookkeeping. */
        int (*flush)(void *self, eddy_ctx_t *ctx);
        /** Recompute aggregates of @p partition from raw state, fix them, emit expectations. */
        int (*reconcile)(void *self, eddy_ctx_t *ctx, int32_t partition,
                         eddy_reconcile_stats_t *stats);
        void (*close)(void *self);
        /** Warehouse tables it writes, NULL-terminated (schemas/<name>.avsc); may be NULL. */
        const char *const *tables;
        /* ---- abi_version 2 ---- */
        /** Non-zero for a join of co-partitioned topics: the job refuses to start (exit 2)
         *  unless every input topic has the same number of partitions. */
        int copartitioned;
        /** Runtime keys whose default this processor changes: "key", "value", ..., NULL
         *  (e.g. a larger memtable for short-lived state); the job file and -X still win. */
        const char *const *runtime_defaults;
        /** Schemas (schemas/<name>.avsc) of its input records, parallel to input.topics (the
         *  last one for the topics after it); NULL-terminated; may be NULL. Avro inputs are
         *  resolved to them and handed to process() as JSON (docs/schemas.md). */
        const char *const *input_schemas;
        /** Schema of its eddy_out_kafka() values, for output.format avro or confluent. */
        const char *output_schema;
} eddy_processor_t;

#endif
