/* config.c: job configuration: a JSON file and -X overrides, checked against property tables.
 *
 * The file is one JSON object. Nested objects are flattened into dotted keys, so
 * {"redis": {"url": ...}} and {"redis.url": ...} mean the same. Keys under "kafka." go to
 * librdkafka unchanged, keys under "rocksdb." to RocksDB's options parser. Every other key must be
 * a row of the runtime's table or of the processor's; anything else is an error, never a silent
 * default. A processor's JSON key takes its value whole, object or not. */
#include "config.h"
#include "log.h"
#include "mem.h"
#include "state.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RT(field) offsetof(eddy_rtconf_t, field)

const eddy_prop_t eddy_rt_props[] = {
    {"job.name", EDDY_PROP_STR, NULL, 0, 0, RT(job_name),
     "Name of the job: prefix of its fences, default consumer group, state dir and DLQ "
     "(default: the processor's name)"},
    {"input.topics", EDDY_PROP_LIST, NULL, 0, 0, RT(input_topics),
     "Topics to read (default: the processor's own); an entry starting with ^ is a POSIX "
     "extended regex over the cluster's topics, resolved at start"},
    {"state.dir", EDDY_PROP_STR, NULL, 0, 0, RT(state_dir),
     "RocksDB directory of this job instance (default: ./eddy-state/<job.name>)"},
    {"state.cache.mb", EDDY_PROP_INT, "256", 1, 1 << 20, RT(state_cache_mb),
     "Budget of the in-memory cache of state entries, MiB"},
    {"state.block.cache.mb", EDDY_PROP_INT, "64", 1, 1 << 20, RT(state_block_cache_mb),
     "RocksDB block cache, MiB"},
    {"state.write.buffer.mb", EDDY_PROP_INT, "8", 1, 1 << 16, RT(state_write_buffer_mb),
     "RocksDB memtable size, MiB"},
    {"state.sync", EDDY_PROP_BOOL, "true", 0, 1, RT(state_sync),
     "fsync the RocksDB WAL at every commit (survives a machine crash, not only a process "
     "crash)"},
    {"state.compression", EDDY_PROP_STR, "none", 0, 0, RT(state_compression),
     "Compression of the state's RocksDB files below L0: none, lz4 or zstd (less disk, more "
     "CPU in compactions)"},
    {"state.missing", EDDY_PROP_STR, "earliest", 0, 0, RT(state_missing),
     "Where to start a partition this state.dir has no offset for: earliest (rebuild state "
     "from the log), latest, or fail"},
    {"batch.max.events", EDDY_PROP_INT, "20000", 1, 10000000, RT(batch_max_events),
     "Events per batch (one commit per batch)"},
    {"batch.max.ms", EDDY_PROP_INT, "100", 1, 3600000, RT(batch_max_ms),
     "Longest a batch stays open, ms (bounds the event-to-output latency)"},
    {"redis.url", EDDY_PROP_STR, "redis://127.0.0.1:6379/0", 0, 0, RT(redis_url),
     "Redis to write to: redis://[:password@]host[:port][/db]", EDDY_PROP_SECRET},
    {"redis.timeout.ms", EDDY_PROP_INT, "5000", 10, 600000, RT(redis_timeout_ms),
     "Connect and command timeout, ms; on failure the job backs off and retries"},
    {"redis.chunk.keys", EDDY_PROP_INT, "1000", 1, 1000000, RT(redis_chunk_keys),
     "Keys per fenced Lua call (bounds how long one call blocks Redis)"},
    {"redis.fence.prefix", EDDY_PROP_STR, "eddy:fence:", 0, 0, RT(redis_fence_prefix),
     "Prefix of fence keys: <prefix><job>:<topics>:<partition>"},
    {"dlq.topic", EDDY_PROP_STR, NULL, 0, 0, RT(dlq_topic),
     "Dead-letter topic for records that do not decode or validate (default: "
     "<job.name>.dlq)"},
    {"dlq.max.value.bytes", EDDY_PROP_INT, "1000000", 0, 1 << 30, RT(dlq_max_value_bytes),
     "Largest value copied into a dead letter; a larger one is left out (header "
     "eddy.value.omitted = its size; the record stays in its topic at eddy.src)"},
    {"kafka.timeout.ms", EDDY_PROP_INT, "30000", 100, 3600000, RT(kafka_timeout_ms),
     "How long to wait for the brokers at start (metadata) before failing, and for one "
     "dead-letter flush before retrying it"},
    {"reconcile.interval.ms", EDDY_PROP_INT, "0", 0, INT64_MAX, RT(reconcile_interval_ms),
     "Run reconciliation inside the job this often, by the wall clock (0: never)"},
    {"warehouse", EDDY_PROP_STR, "off", 0, 0, RT(warehouse),
     "Where the processor's warehouse rows go: off, lake (Avro files under warehouse.dir) or "
     "clickhouse (warehouse.url)"},
    {"warehouse.tables", EDDY_PROP_LIST, NULL, 0, 0, RT(warehouse_tables),
     "Tables to write (default: every table of the processor)"},
    {"warehouse.dir", EDDY_PROP_STR, "./lake", 0, 0, RT(warehouse_dir),
     "lake: root directory of <table>/dt=YYYY-MM-DD/hr=HH/part-*.avro"},
    {"warehouse.roll.rows", EDDY_PROP_INT, "100000", 1, 100000000, RT(warehouse_roll_rows),
     "lake: a partition's file is written when it has this many rows"},
    {"warehouse.roll.bytes", EDDY_PROP_INT, "67108864", 1024, 1 << 30, RT(warehouse_roll_bytes),
     "lake: ... or this many bytes of Avro rows"},
    {"warehouse.roll.ms", EDDY_PROP_INT, "300000", 0, INT64_MAX, RT(warehouse_roll_ms),
     "lake: ... or when its first waiting row has waited this long, by the wall clock (0: "
     "never; files then depend on the input alone, see docs/warehouse.md)"},
    {"warehouse.url", EDDY_PROP_STR, "http://127.0.0.1:8123", 0, 0, RT(warehouse_url),
     "clickhouse: its HTTP interface"},
    {"warehouse.user", EDDY_PROP_STR, NULL, 0, 0, RT(warehouse_user),
     "clickhouse: user (default: $CLICKHOUSE_USER, else \"default\")"},
    {"warehouse.password", EDDY_PROP_STR, NULL, 0, 0, RT(warehouse_password),
     "clickhouse: password (default: $CLICKHOUSE_PASSWORD, else none)", EDDY_PROP_SECRET},
    {"warehouse.database", EDDY_PROP_STR, "default", 0, 0, RT(warehouse_database),
     "clickhouse: database of the tables"},
    {"warehouse.table.prefix", EDDY_PROP_STR, NULL, 0, 0, RT(warehouse_table_prefix),
     "clickhouse: prefix of table names (<prefix><table>)"},
    {"warehouse.create", EDDY_PROP_BOOL, "true", 0, 1, RT(warehouse_create),
     "clickhouse: create missing tables (ReplacingMergeTree, see docs/warehouse.md)"},
    {"warehouse.timeout.ms", EDDY_PROP_INT, "10000", 100, 3600000, RT(warehouse_timeout_ms),
     "clickhouse: connect timeout, ms (a request may take 6 times as long); on failure the "
     "job backs off and retries"},
    {"search.url", EDDY_PROP_STR, NULL, 0, 0, RT(search_url),
     "Search index (Elasticsearch / OpenSearch _bulk API), http(s)://host:port, for processors "
     "that feed one (cdc-fanout); empty: no search output"},
    {"search.user", EDDY_PROP_STR, NULL, 0, 0, RT(search_user),
     "search: basic-auth user (empty: no authentication)"},
    {"search.password", EDDY_PROP_STR, NULL, 0, 0, RT(search_password),
     "search: basic-auth password", EDDY_PROP_SECRET},
    {"search.timeout.ms", EDDY_PROP_INT, "10000", 100, 3600000, RT(search_timeout_ms),
     "search: connect timeout, ms (a request may take 6 times as long); on failure the job "
     "backs off and retries"},
    {"search.batch.bytes", EDDY_PROP_INT, "5242880", 1024, 1 << 30, RT(search_batch_bytes),
     "search: largest _bulk request body, bytes (a batch's actions go in as few as fit)"},
    {"input.format", EDDY_PROP_LIST, "json", 0, 0, RT(input_format),
     "Format of the input values: json, avro (Avro binary with the writer schema "
     "input.avro.schema) or confluent (magic byte 0, 4-byte schema id, Avro; ids resolved "
     "through schema.registry.url); one for every input topic, or one per topic in "
     "input.topics order"},
    {"input.avro.schema", EDDY_PROP_LIST, NULL, 0, 0, RT(input_avro_schema),
     "input.format=avro: the writer schema, per topic as input.format: a name of schemas/ "
     "(like_event), a file, or the schema's JSON text"},
    {"input.avro.reader.schema", EDDY_PROP_LIST, NULL, 0, 0, RT(input_reader_schema),
     "Reader schema Avro inputs are resolved to (evolution rules in docs/schemas.md), per topic "
     "as input.format: a name of schemas/, a file, JSON text, or none (read as written) "
     "(default: the processor's input schema)"},
    {"input.key.format", EDDY_PROP_LIST, "json", 0, 0, RT(input_key_format),
     "Format of the input keys, as input.format (json: as they come); Avro keys are read as "
     "written (a Debezium key is the primary key's record) and handed over as JSON"},
    {"input.key.avro.schema", EDDY_PROP_LIST, NULL, 0, 0, RT(input_key_avro_schema),
     "input.key.format=avro: the keys' writer schema, per topic as input.format"},
    {"input.max.bytes", EDDY_PROP_INT, "0", 0, 1 << 30, RT(input_max_bytes),
     "A value larger than this goes to the dead-letter topic (reason too_large), whatever its "
     "format (0: no limit)"},
    {"schema.registry.url", EDDY_PROP_STR, NULL, 0, 0, RT(sr_url),
     "Confluent schema registry, http://host:port (for input.format or output.format "
     "confluent)"},
    {"schema.registry.user", EDDY_PROP_STR, NULL, 0, 0, RT(sr_user),
     "Basic-auth user of the schema registry (none: no auth)"},
    {"schema.registry.password", EDDY_PROP_STR, NULL, 0, 0, RT(sr_password),
     "Basic-auth password of the schema registry", EDDY_PROP_SECRET},
    {"schema.registry.request.timeout.ms", EDDY_PROP_INT, "5000", 10, 600000,
     RT(sr_request_timeout_ms), "Timeout of one request to the schema registry"},
    {"schema.registry.timeout.ms", EDDY_PROP_INT, "60000", 0, 3600000, RT(sr_timeout_ms),
     "How long records wait for a schema id while the registry is unreachable before they go "
     "to the dead-letter topic (registry_timeout); the consumer stops meanwhile: keep it below "
     "kafka.max.poll.interval.ms"},
    {"schema.registry.backoff.ms", EDDY_PROP_INT, "100", 1, 60000, RT(sr_backoff_ms),
     "First wait between attempts while the registry is unreachable; doubles each attempt"},
    {"schema.registry.backoff.max.ms", EDDY_PROP_INT, "5000", 1, 600000, RT(sr_backoff_max_ms),
     "Longest wait between attempts"},
    {"schema.registry.cache.max", EDDY_PROP_INT, "10000", 1, 10000000, RT(sr_cache_max),
     "Schema ids kept in memory (the cache is emptied when full)"},
    {"output.format", EDDY_PROP_STR, "json", 0, 0, RT(output_format),
     "Format of the values of the processor's Kafka outputs: json, avro (Avro binary of "
     "output.avro.schema) or confluent (registered under the subject <topic>-value)"},
    {"output.avro.schema", EDDY_PROP_STR, NULL, 0, 0, RT(output_avro_schema),
     "Schema of the Kafka outputs with output.format avro or confluent: a name of schemas/, a "
     "file or JSON text (default: the processor's output schema)"},
    {"output.headers.lineage", EDDY_PROP_BOOL, "false", 0, 1, RT(output_lineage),
     "Also give each Kafka output record the headers eddy.job and eddy.processor (every "
     "record always has eddy.src); each header is an allocation per record in librdkafka"},
    {"log.level", EDDY_PROP_STR, "info", 0, 0, RT(log_level),
     "debug, info, notice, warning or err"},
    {"log.format", EDDY_PROP_STR, "logfmt", 0, 0, RT(log_format),
     "logfmt (key=value) or json: one line per event on stderr, same fields"},
    {"debug", EDDY_PROP_LIST, NULL, 0, 0, RT(debug),
     "Debug lines of these contexts whatever log.level, as librdkafka's debug: all, run, "
     "rebalance, state, redis, outbox, dlq, output, kafka, proc, reconcile, replay, metrics "
     "(kafka.debug=... sets librdkafka's own; its lines show without debug=kafka)"},
    {"metrics.port", EDDY_PROP_INT, "0", 0, 65535, RT(metrics_port),
     "Serve Prometheus /metrics, /healthz and /readyz on this TCP port (0: off)"},
    {"metrics.address", EDDY_PROP_STR, "0.0.0.0", 0, 0, RT(metrics_address),
     "IPv4 address the metrics server binds (127.0.0.1: this host only)"},
    {"ready.max.lag", EDDY_PROP_INT, "10000", 0, INT64_MAX, RT(ready_max_lag),
     "/readyz answers 200 when partitions are assigned and each is at most this many records "
     "behind its high watermark"},
    {NULL},
};

static const char *type_name(eddy_prop_type_t t)
{
        switch (t) {
        case EDDY_PROP_STR:
                return "string";
        case EDDY_PROP_INT:
                return "integer";
        case EDDY_PROP_BOOL:
                return "boolean";
        case EDDY_PROP_LIST:
                return "list of strings";
        case EDDY_PROP_JSON:
                return "JSON";
        }
        return "?";
}

static void list_free(eddy_strlist_t *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        l->v = NULL;
        l->n = 0;
}

static void list_add(eddy_strlist_t *l, const char *s, size_t len)
{
        l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
        l->v[l->n] = strndup(s, len);
        l->n++;
}

static void list_split(eddy_strlist_t *l, const char *s)
{
        while (*s) {
                size_t n = strcspn(s, ",");
                if (n)
                        list_add(l, s, n);
                s += n;
                if (*s == ',')
                        s++;
        }
}

static int set_json(const eddy_prop_t *p, void *conf, json_t *v, const char *src, char *errstr,
                    size_t errstr_size);

/* Sets one property from text (-X and defaults). */
static int set_text(const eddy_prop_t *p, void *conf, const char *v, const char *src, char *errstr,
                    size_t errstr_size)
{
        char *base = conf;
        switch (p->type) {
        case EDDY_PROP_STR: {
                char **f = (char **)(base + p->offset);
                free(*f);
                *f = strdup(v);
                return 0;
        }
        case EDDY_PROP_INT: {
                char *end;
                errno = 0;
                long long n = strtoll(v, &end, 10);
                if (errno || end == v || *end || n < p->min || n > p->max) {
                        snprintf(errstr, errstr_size,
                                 "%s: %s: expected an integer from %" PRId64 " to %" PRId64
                                 ", got \"%s\"",
                                 src, p->name, p->min, p->max, v);
                        return -1;
                }
                *(int64_t *)(base + p->offset) = n;
                return 0;
        }
        case EDDY_PROP_BOOL: {
                int b;
                if (!strcmp(v, "true") || !strcmp(v, "1"))
                        b = 1;
                else if (!strcmp(v, "false") || !strcmp(v, "0"))
                        b = 0;
                else {
                        snprintf(errstr, errstr_size, "%s: %s: expected true or false, got \"%s\"",
                                 src, p->name, v);
                        return -1;
                }
                *(int *)(base + p->offset) = b;
                return 0;
        }
        case EDDY_PROP_LIST: {
                eddy_strlist_t *l = (eddy_strlist_t *)(base + p->offset);
                list_free(l);
                list_split(l, v);
                return 0;
        }
        case EDDY_PROP_JSON: {
                json_error_t jerr;
                json_t *j = json_loads(v, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
                if (!j) {
                        snprintf(errstr, errstr_size, "%s: %s: expected JSON: %s", src, p->name,
                                 jerr.text);
                        return -1;
                }
                int r = set_json(p, conf, j, src, errstr, errstr_size);
                json_decref(j);
                return r;
        }
        }
        return -1;
}

/* Sets one property from a JSON value of the file. */
static int set_json(const eddy_prop_t *p, void *conf, json_t *v, const char *src, char *errstr,
                    size_t errstr_size)
{
        char *base = conf;
        switch (p->type) {
        case EDDY_PROP_STR:
                if (!json_is_string(v))
                        goto bad;
                return set_text(p, conf, json_string_value(v), src, errstr, errstr_size);
        case EDDY_PROP_INT: {
                if (!json_is_integer(v))
                        goto bad;
                json_int_t n = json_integer_value(v);
                if (n < p->min || n > p->max) {
                        snprintf(errstr, errstr_size,
                                 "%s: %s: expected an integer from %" PRId64 " to %" PRId64
                                 ", got %" JSON_INTEGER_FORMAT,
                                 src, p->name, p->min, p->max, n);
                        return -1;
                }
                *(int64_t *)(base + p->offset) = n;
                return 0;
        }
        case EDDY_PROP_BOOL:
                if (!json_is_boolean(v))
                        goto bad;
                *(int *)(base + p->offset) = json_is_true(v);
                return 0;
        case EDDY_PROP_LIST: {
                eddy_strlist_t *l = (eddy_strlist_t *)(base + p->offset);
                if (json_is_string(v))
                        return set_text(p, conf, json_string_value(v), src, errstr, errstr_size);
                if (!json_is_array(v))
                        goto bad;
                list_free(l);
                size_t i;
                json_t *e;
                json_array_foreach(v, i, e)
                {
                        if (!json_is_string(e))
                                goto bad;
                        list_add(l, json_string_value(e), json_string_length(e));
                }
                return 0;
        }
        case EDDY_PROP_JSON: {
                char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!text) {
                        snprintf(errstr, errstr_size, "%s: %s: out of memory", src, p->name);
                        return -1;
                }
                char **f = (char **)(base + p->offset);
                free(*f);
                *f = text;
                return 0;
        }
        }
bad:
        snprintf(errstr, errstr_size, "%s: %s: expected a %s", src, p->name, type_name(p->type));
        return -1;
}

static const eddy_prop_t *find(const eddy_prop_t *props, const char *name)
{
        for (const eddy_prop_t *p = props; p && p->name; p++)
                if (!strcmp(p->name, name))
                        return p;
        return NULL;
}

/* @returns 0, or -1 if a table's default does not parse (a bug of the table). */
static int defaults(const eddy_prop_t *props, void *conf, char *errstr, size_t errstr_size)
{
        for (const eddy_prop_t *p = props; p && p->name; p++)
                if (p->defval && set_text(p, conf, p->defval, "default", errstr, errstr_size))
                        return -1;
        return 0;
}

/* Routes one flattened key to kafka, the runtime table or the processor table. */
static int route(const char *key, json_t *jv, const char *tv, const char *src, eddy_rtconf_t *rt,
                 const eddy_prop_t *pprops, void *pconf, eddy_strlist_t *seen, char *errstr,
                 size_t errstr_size)
{
        /* {"redis":{"url":..}} and {"redis.url":..} name one key: the file may give it once */
        for (size_t i = 0; seen && i < seen->n; i++)
                if (!strcmp(seen->v[i], key)) {
                        snprintf(errstr, errstr_size, "%s: %s is given twice", src, key);
                        return -1;
                }
        if (seen)
                list_add(seen, key, strlen(key));
        int rocks = !strncmp(key, "rocksdb.", 8);
        if ((rocks || !strncmp(key, "kafka.", 6)) && !find(eddy_rt_props, key)) {
                size_t plen = rocks ? 8 : 6;
                char buf[4096];
                const char *v = tv;
                if (jv) {
                        if (json_is_string(jv))
                                v = json_string_value(jv);
                        else if (json_is_integer(jv)) {
                                snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
                                         json_integer_value(jv));
                                v = buf;
                        } else if (json_is_boolean(jv))
                                v = json_is_true(jv) ? "true" : "false";
                        else {
                                snprintf(errstr, errstr_size,
                                         "%s: %s: expected a string, number or boolean "
                                         "(%s)",
                                         src, key,
                                         rocks ? "RocksDB option" : "librdkafka property");
                                return -1;
                        }
                }
                char kv[8192];
                if (snprintf(kv, sizeof(kv), "%s=%s", key + plen, v) >= (int)sizeof(kv)) {
                        snprintf(errstr, errstr_size, "%s: %s: value too long", src, key);
                        return -1;
                }
                list_add(rocks ? &rt->rocksdb : &rt->kafka, kv, strlen(kv));
                return 0;
        }
        const eddy_prop_t *p = find(eddy_rt_props, key);
        void *conf = rt;
        if (!p) {
                p = find(pprops, key);
                conf = pconf;
        }
        if (!p) {
                snprintf(errstr, errstr_size,
                         "%s: unknown key \"%s\" (see `eddy <processor> --list-config`)", src, key);
                return -1;
        }
        return jv ? set_json(p, conf, jv, src, errstr, errstr_size)
                  : set_text(p, conf, tv, src, errstr, errstr_size);
}

static int flatten(json_t *obj, const char *prefix, const char *src, eddy_rtconf_t *rt,
                   const eddy_prop_t *pprops, void *pconf, eddy_strlist_t *seen, char *errstr,
                   size_t errstr_size)
{
        const char *k;
        json_t *v;
        json_object_foreach(obj, k, v)
        {
                char key[512];
                if (snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", k) >=
                    (int)sizeof(key)) {
                        snprintf(errstr, errstr_size, "%s: key too long: %s", src, k);
                        return -1;
                }
                int r;
                if (json_is_object(v) && !find(pprops, key))
                        r = flatten(v, key, src, rt, pprops, pconf, seen, errstr, errstr_size);
                else
                        r = route(key, v, NULL, src, rt, pprops, pconf, seen, errstr, errstr_size);
                if (r)
                        return r;
        }
        return 0;
}

static int conf_load(const char *path, char **overrides, int noverrides, const char *proc_name,
                     const char *default_input, const char *const *rt_defaults, eddy_rtconf_t *rt,
                     const eddy_prop_t *pprops, void *pconf, char *errstr, size_t errstr_size)
{
        if (defaults(eddy_rt_props, rt, errstr, errstr_size) ||
            defaults(pprops, pconf, errstr, errstr_size))
                return -1;
        /* the processor's own defaults of runtime keys, before the file and -X */
        for (size_t i = 0; rt_defaults && rt_defaults[i] && rt_defaults[i + 1]; i += 2) {
                char src[160];
                snprintf(src, sizeof(src), "%s's defaults", proc_name);
                if (route(rt_defaults[i], NULL, rt_defaults[i + 1], src, rt, pprops, pconf, NULL,
                          errstr, errstr_size))
                        return -1;
        }
        if (path) {
                json_error_t jerr;
                json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
                if (!root) {
                        snprintf(errstr, errstr_size, "%s:%d:%d: %s", path, jerr.line, jerr.column,
                                 jerr.text);
                        return -1;
                }
                if (!json_is_object(root)) {
                        snprintf(errstr, errstr_size, "%s: expected a JSON object", path);
                        json_decref(root);
                        return -1;
                }
                /* "processor" may name the processor the file is for */
                json_t *pn = json_object_get(root, "processor");
                if (pn) {
                        if (!json_is_string(pn) || strcmp(json_string_value(pn), proc_name)) {
                                snprintf(errstr, errstr_size,
                                         "%s: processor: the file is for \"%s\", not \"%s\"", path,
                                         json_is_string(pn) ? json_string_value(pn) : "?",
                                         proc_name);
                                json_decref(root);
                                return -1;
                        }
                        json_object_del(root, "processor");
                }
                eddy_strlist_t seen = {0};
                int r = flatten(root, "", path, rt, pprops, pconf, &seen, errstr, errstr_size);
                list_free(&seen);
                json_decref(root);
                if (r)
                        return r;
        }
        for (int i = 0; i < noverrides; i++) {
                const char *eq = strchr(overrides[i], '=');
                if (!eq || eq == overrides[i]) {
                        snprintf(errstr, errstr_size, "-X %s: expected key=value", overrides[i]);
                        return -1;
                }
                char key[512];
                snprintf(key, sizeof(key), "%.*s", (int)(eq - overrides[i]), overrides[i]);
                if (route(key, NULL, eq + 1, "-X", rt, pprops, pconf, NULL, errstr, errstr_size))
                        return -1;
        }
        /* derived defaults */
        if (!rt->job_name || !*rt->job_name) {
                free(rt->job_name);
                rt->job_name = strdup(proc_name);
        }
        if (rt->input_topics.n == 0)
                list_split(&rt->input_topics, default_input);
        char buf[1024];
        if (!rt->state_dir || !*rt->state_dir) {
                free(rt->state_dir);
                snprintf(buf, sizeof(buf), "./eddy-state/%s", rt->job_name);
                rt->state_dir = strdup(buf);
        }
        if (!rt->dlq_topic || !*rt->dlq_topic) {
                free(rt->dlq_topic);
                snprintf(buf, sizeof(buf), "%s.dlq", rt->job_name);
                rt->dlq_topic = strdup(buf);
        }
        if (strcmp(rt->state_missing, "earliest") && strcmp(rt->state_missing, "latest") &&
            strcmp(rt->state_missing, "fail")) {
                snprintf(errstr, errstr_size,
                         "%s: state.missing: expected earliest, latest or fail, got \"%s\"",
                         path ? path : "-X", rt->state_missing);
                return -1;
        }
        for (size_t i = 0; i < rt->rocksdb.n; i++) {
                char why[512];
                if (eddy_state_check_options(rt->rocksdb.v[i], why, sizeof(why))) {
                        const char *kv = rt->rocksdb.v[i];
                        snprintf(errstr, errstr_size, "%s: rocksdb.%.*s: %s", path ? path : "-X",
                                 (int)(strchr(kv, '=') - kv), kv, why);
                        return -1;
                }
        }
        if (eddy_rt_compression(rt) < 0) {
                snprintf(errstr, errstr_size,
                         "%s: state.compression: expected none, lz4 or zstd, got \"%s\"",
                         path ? path : "-X", rt->state_compression);
                return -1;
        }
        if (strcmp(rt->log_format, "logfmt") && strcmp(rt->log_format, "json")) {
                snprintf(errstr, errstr_size, "%s: log.format: expected logfmt or json, got \"%s\"",
                         path ? path : "-X", rt->log_format);
                return -1;
        }
        eddy_logger_t scratch = {0};
        for (size_t i = 0; i < rt->debug.n; i++)
                if (eddy__log_debug_enable(&scratch, rt->debug.v[i])) {
                        snprintf(errstr, errstr_size,
                                 "%s: debug: unknown context \"%s\" (expected some of %s)",
                                 path ? path : "-X", rt->debug.v[i], eddy__log_contexts());
                        return -1;
                }
        if (rt->input_topics.n == 0) {
                snprintf(errstr, errstr_size, "%s: input.topics: expected at least one topic",
                         path ? path : "-X");
                return -1;
        }
        return 0;
}

void eddy_conf_free(const eddy_prop_t *props, void *conf)
{
        char *base = conf;
        for (const eddy_prop_t *p = props; p && p->name; p++) {
                if (p->type == EDDY_PROP_STR || p->type == EDDY_PROP_JSON) {
                        free(*(char **)(base + p->offset));
                        *(char **)(base + p->offset) = NULL;
                } else if (p->type == EDDY_PROP_LIST) {
                        list_free((eddy_strlist_t *)(base + p->offset));
                }
        }
        if (props == eddy_rt_props) {
                list_free(&((eddy_rtconf_t *)conf)->kafka);
                list_free(&((eddy_rtconf_t *)conf)->rocksdb);
        }
}

int eddy_conf_load(const char *path, char **overrides, int noverrides, const char *proc_name,
                   const char *default_input, eddy_rtconf_t *rt, const eddy_prop_t *pprops,
                   void *pconf, char *errstr, size_t errstr_size)
{
        return conf_load(path, overrides, noverrides, proc_name, default_input, NULL, rt, pprops,
                         pconf, errstr, errstr_size);
}

int eddy_conf_load_proc(const char *path, char **overrides, int noverrides,
                        const eddy_processor_t *proc, eddy_rtconf_t *rt, void *pconf, char *errstr,
                        size_t errstr_size)
{
        return conf_load(path, overrides, noverrides, proc->name, proc->default_input,
                         proc->runtime_defaults, rt, proc->props, pconf, errstr, errstr_size);
}

void eddy_conf_print(FILE *fp, const char *title, const eddy_prop_t *props, int markdown)
{
        if (markdown)
                fprintf(fp,
                        "### %s\n\n| key | type | default | range | description |\n"
                        "|---|---|---|---|---|\n",
                        title);
        else
                fprintf(fp, "%s:\n", title);
        for (const eddy_prop_t *p = props; p && p->name; p++) {
                char range[64] = "";
                if (p->type == EDDY_PROP_INT)
                        snprintf(range, sizeof(range), "%" PRId64 "..%" PRId64, p->min, p->max);
                const char *def = p->defval ? p->defval : "";
                if (markdown)
                        fprintf(fp, "| `%s` | %s | %s%s%s | %s | %s |\n", p->name,
                                type_name(p->type), *def ? "`" : "", def, *def ? "`" : "", range,
                                p->desc);
                else
                        fprintf(fp, "  %-24s %-8s default=%-24s %s%s%s\n    %s\n", p->name,
                                type_name(p->type), *def ? def : "(none)", *range ? "range=" : "",
                                range, "", p->desc);
        }
        if (markdown)
                fputc('\n', fp);
        else
                fputc('\n', fp);
}

char *eddy_rt_rocksdb_options(const eddy_rtconf_t *rt)
{
        size_t size = 1;
        for (size_t i = 0; i < rt->rocksdb.n; i++)
                size += strlen(rt->rocksdb.v[i]) + 1;
        char *s = eddy__xrealloc(NULL, size), *p = s;
        for (size_t i = 0; i < rt->rocksdb.n; i++) {
                const char *kv = rt->rocksdb.v[i];
                size_t nl = (size_t)(strchr(kv, '=') - kv);
                int later = 0; /* a later setting of the same option wins: give only that one */
                for (size_t j = i + 1; j < rt->rocksdb.n && !later; j++)
                        later = !strncmp(rt->rocksdb.v[j], kv, nl + 1);
                if (later)
                        continue;
                if (p > s)
                        *p++ = ';';
                size_t n = strlen(kv);
                memcpy(p, kv, n);
                p += n;
        }
        *p = '\0';
        return s;
}

int eddy_rt_compression(const eddy_rtconf_t *rt)
{
        static const struct {
                const char *name;
                int codec;
        } codecs[] = {{"none", EDDY_STATE_COMPRESS_NONE},
                      {"lz4", EDDY_STATE_COMPRESS_LZ4},
                      {"zstd", EDDY_STATE_COMPRESS_ZSTD}};
        for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]); i++)
                if (rt->state_compression && !strcmp(rt->state_compression, codecs[i].name))
                        return codecs[i].codec;
        return -1;
}

int eddy_conf_secret_key(const char *key)
{
        static const char *const ends[] = {"password", "secret"};
        size_t n = strlen(key);
        for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
                size_t e = strlen(ends[i]);
                if (n >= e && !strcasecmp(key + n - e, ends[i]))
                        return 1;
        }
        return !strcmp(key, "kafka.ssl.key.pem") || !strcmp(key, "kafka.sasl.oauthbearer.config");
}

/* The password of a URL scheme://[user]:password@host...: @returns its length, 0 if none. */
static size_t url_password(const char *v, size_t *off)
{
        const char *s = strstr(v, "://");
        if (!s)
                return 0;
        s += 3;
        size_t auth = strcspn(s, "/?#");
        const char *at = memrchr(s, '@', auth);
        const char *colon = at ? memchr(s, ':', (size_t)(at - s)) : NULL;
        if (!colon || at == colon + 1)
                return 0;
        *off = (size_t)(colon + 1 - v);
        return (size_t)(at - colon - 1);
}

/* Calls cb with the secret in @p v, a value of @p key (flagged: an EDDY_PROP_SECRET row). */
static void value_secrets(const char *key, const char *v, int flagged,
                          void (*cb)(void *, const char *, size_t), void *opaque)
{
        size_t off, n = url_password(v, &off);
        if (n)
                cb(opaque, v + off, n);
        else if (eddy_conf_secret_key(key) || (flagged && !strstr(v, "://")))
                cb(opaque, v, strlen(v));
}

static void table_secrets(const eddy_prop_t *props, const void *conf,
                          void (*cb)(void *, const char *, size_t), void *opaque)
{
        const char *base = conf;
        for (const eddy_prop_t *p = props; p && p->name; p++) {
                if (p->type != EDDY_PROP_STR)
                        continue;
                const char *v = *(char *const *)(base + p->offset);
                if (v && *v)
                        value_secrets(p->name, v, p->flags & EDDY_PROP_SECRET, cb, opaque);
        }
}

void eddy_conf_secrets(const eddy_rtconf_t *rt, const eddy_prop_t *pprops, const void *pconf,
                       void (*cb)(void *opaque, const char *s, size_t len), void *opaque)
{
        table_secrets(eddy_rt_props, rt, cb, opaque);
        table_secrets(pprops, pconf, cb, opaque);
        for (size_t i = 0; i < rt->kafka.n; i++) {
                const char *kv = rt->kafka.v[i], *eq = strchr(kv, '=');
                char key[300];
                snprintf(key, sizeof(key), "kafka.%.*s", (int)(eq - kv), kv);
                value_secrets(key, eq + 1, 0, cb, opaque);
        }
}

/* Prints @p v, a value of @p key, with its secret replaced. */
static void print_redacted(FILE *fp, const char *key, const char *v, int flagged)
{
        size_t off, n = url_password(v, &off);
        if (n)
                fprintf(fp, "%.*s[redacted]%s", (int)off, v, v + off + n);
        else if (eddy_conf_secret_key(key) || (flagged && !strstr(v, "://")))
                fputs("[redacted]", fp);
        else
                fputs(v, fp);
}

static void print_table_values(FILE *fp, const eddy_prop_t *props, const void *conf)
{
        const char *base = conf;
        for (const eddy_prop_t *p = props; p && p->name; p++) {
                fprintf(fp, "  %-24s = ", p->name);
                switch (p->type) {
                case EDDY_PROP_STR:
                case EDDY_PROP_JSON: {
                        const char *v = *(char *const *)(base + p->offset);
                        print_redacted(fp, p->name, v ? v : "", p->flags & EDDY_PROP_SECRET);
                        break;
                }
                case EDDY_PROP_INT:
                        fprintf(fp, "%" PRId64, *(const int64_t *)(base + p->offset));
                        break;
                case EDDY_PROP_BOOL:
                        fputs(*(const int *)(base + p->offset) ? "true" : "false", fp);
                        break;
                case EDDY_PROP_LIST: {
                        const eddy_strlist_t *l = (const eddy_strlist_t *)(base + p->offset);
                        for (size_t i = 0; i < l->n; i++) {
                                if (i)
                                        fputc(',', fp);
                                print_redacted(fp, p->name, l->v[i], p->flags & EDDY_PROP_SECRET);
                        }
                        break;
                }
                }
                fputc('\n', fp);
        }
}

void eddy_conf_print_values(FILE *fp, const eddy_rtconf_t *rt, const eddy_prop_t *pprops,
                            const void *pconf)
{
        fprintf(fp, "Effective values (secrets redacted):\n");
        print_table_values(fp, eddy_rt_props, rt);
        print_table_values(fp, pprops, pconf);
        for (size_t i = 0; i < rt->kafka.n; i++) {
                const char *kv = rt->kafka.v[i], *eq = strchr(kv, '=');
                char key[300];
                snprintf(key, sizeof(key), "kafka.%.*s", (int)(eq - kv), kv);
                fprintf(fp, "  %-24s = ", key);
                print_redacted(fp, key, eq + 1, 0);
                fputc('\n', fp);
        }
        for (size_t i = 0; i < rt->rocksdb.n; i++) {
                const char *kv = rt->rocksdb.v[i], *eq = strchr(kv, '=');
                fprintf(fp, "  rocksdb.%-16.*s = %s\n", (int)(eq - kv), kv, eq + 1);
        }
}
