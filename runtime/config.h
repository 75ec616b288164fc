/* config.h: job configuration: a JSON file and -X overrides, checked against property tables. */
#ifndef EDDY_CONFIG_H
#define EDDY_CONFIG_H

#include "eddy.h"

#include <stdio.h>

/** The runtime's own keys (the processor's come from its eddy_processor_t). */
typedef struct eddy_rtconf_s {
        char *job_name;
        eddy_strlist_t input_topics;
        char *state_dir;
        int64_t state_cache_mb, state_block_cache_mb, state_write_buffer_mb;
        int state_sync;
        char *state_missing;
        char *state_compression;
        int64_t batch_max_events, batch_max_ms;
        char *redis_url;
        int64_t redis_timeout_ms, redis_chunk_keys;
        char *redis_fence_prefix;
        char *dlq_topic;
        int64_t dlq_max_value_bytes;
        int64_t kafka_timeout_ms;
        int64_t reconcile_interval_ms;
        char *log_level;
        char *log_format;
        eddy_strlist_t debug;
        int64_t metrics_port;
        char *metrics_address;
        int64_t ready_max_lag;
        char *warehouse;
        eddy_strlist_t warehouse_tables;
        char *warehouse_dir;
        int64_t warehouse_roll_rows, warehouse_roll_bytes, warehouse_roll_ms;
        char *warehouse_url, *warehouse_user, *warehouse_password, *warehouse_database;
        char *warehouse_table_prefix;
        int warehouse_create;
        int64_t warehouse_timeout_ms;
        char *search_url, *search_user, *search_password;
        int64_t search_timeout_ms, search_batch_bytes;
        /* formats and schemas (docs/schemas.md) */
        eddy_strlist_t input_format, input_avro_schema, input_reader_schema;
        eddy_strlist_t input_key_format, input_key_avro_schema;
        int64_t input_max_bytes;
        char *sr_url, *sr_user, *sr_password;
        int64_t sr_request_timeout_ms, sr_timeout_ms, sr_backoff_ms, sr_backoff_max_ms;
        int64_t sr_cache_max;
        char *output_format, *output_avro_schema;
        int output_lineage;     /* output.headers.lineage: eddy.job and eddy.processor too */
        eddy_strlist_t kafka;   /* "key=value" pairs for rd_kafka_conf_set, in order */
        eddy_strlist_t rocksdb; /* "name=value" RocksDB options (rocksdb.*), in order */
} eddy_rtconf_t;

extern const eddy_prop_t eddy_rt_props[];

/**
 * @brief Load @p path (NULL: no file, embedded defaults) and the -X overrides into @p rt
 *        and @p pconf (filled per @p pprops). Unknown keys and bad values are errors.
 * @returns 0, or -1 with a one-line message naming the file, the key and what was expected.
 * @remark Free both with eddy_conf_free().
 */
int eddy_conf_load(const char *path, char **overrides, int noverrides, const char *proc_name,
                   const char *default_input, eddy_rtconf_t *rt, const eddy_prop_t *pprops,
                   void *pconf, char *errstr, size_t errstr_size);
/** eddy_conf_load() for @p proc: its name, default input and defaults of runtime keys
 *  (eddy_processor_t.runtime_defaults, applied before the file and -X). */
int eddy_conf_load_proc(const char *path, char **overrides, int noverrides,
                        const eddy_processor_t *proc, eddy_rtconf_t *rt, void *pconf, char *errstr,
                        size_t errstr_size);

/** @returns the rocksdb.* keys as one RocksDB options string ("a=1;b=2"; the last setting of
 *  an option only), heap, for eddy_state_opts_t.rocksdb_options. */
char *eddy_rt_rocksdb_options(const eddy_rtconf_t *rt);

/** @returns state.compression as an EDDY_STATE_COMPRESS_* value, or -1 if it names none. */
int eddy_rt_compression(const eddy_rtconf_t *rt);

/** Frees the heap fields of a struct filled from @p props. */
void eddy_conf_free(const eddy_prop_t *props, void *conf);

/** Prints the table (name, type, default, range, description), as text or Markdown. */
void eddy_conf_print(FILE *fp, const char *title, const eddy_prop_t *props, int markdown);

/** @returns non-zero if the values of @p key are secrets: a key ending in "password" or
 *  "secret", kafka.ssl.key.pem, kafka.sasl.oauthbearer.config. */
int eddy_conf_secret_key(const char *key);

/**
 * @brief Calls @p cb with every secret of a loaded configuration: the values of secret keys
 *        and of EDDY_PROP_SECRET properties, or where such a value is a URL, the password in
 *        it (redis://:password@host). Each is to be redacted wherever it could be printed.
 */
void eddy_conf_secrets(const eddy_rtconf_t *rt, const eddy_prop_t *pprops, const void *pconf,
                       void (*cb)(void *opaque, const char *s, size_t len), void *opaque);

/** Prints the effective value of every key of a loaded configuration, secrets redacted. */
void eddy_conf_print_values(FILE *fp, const eddy_rtconf_t *rt, const eddy_prop_t *pprops,
                            const void *pconf);

#endif
