/* schema_registry.h: a client of the Confluent schema registry's REST API over libcurl. */
#ifndef EDDY_SCHEMA_REGISTRY_H
#define EDDY_SCHEMA_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_sr_s eddy_sr_t;

typedef struct eddy_sr_conf_s {
        const char *url;             /* http://host:8081, no trailing path */
        const char *user, *password; /* basic auth when user is set */
        int64_t timeout_ms;          /* of one request */
} eddy_sr_conf_t;

/* Results of the calls below: 0, or one of these with errstr. */
#define EDDY_SR_RETRY    -1 /* unreachable, timed out, 5xx, 429: may pass, try again later */
#define EDDY_SR_NOTFOUND -2 /* the registry answered that the schema id or subject is unknown */
#define EDDY_SR_FATAL    -3 /* refused (401, 403, 409, 422...) or an answer that is not one */

/**
 * @brief A client of the registry at conf->url (no I/O yet); the strings are copied.
 * @returns the client, or NULL with @p errstr. Free with eddy_sr_destroy().
 * @remark One thread at a time per client.
 */
eddy_sr_t *eddy_sr_new(const eddy_sr_conf_t *conf, char *errstr, size_t errstr_size);
void eddy_sr_destroy(eddy_sr_t *sr);

/**
 * @brief GET /schemas/ids/{id}: the writer schema of schema id @p id.
 * @returns 0 and the schema's JSON text in *schema (free() it), or EDDY_SR_*.
 */
int eddy_sr_schema(eddy_sr_t *sr, int32_t id, char **schema, char *errstr, size_t errstr_size);

/**
 * @brief POST /subjects/{subject}/versions: registers @p schema (Avro JSON text) under
 *        @p subject, or finds it registered already.
 * @returns 0 and its id in *id, or EDDY_SR_*.
 */
int eddy_sr_register(eddy_sr_t *sr, const char *subject, const char *schema, int32_t *id,
                     char *errstr, size_t errstr_size);

#endif
