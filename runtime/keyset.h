/* keyset.h: a set of (partition, key) byte strings, for a processor's "changed this batch". */
#ifndef EDDY_KEYSET_H
#define EDDY_KEYSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_keyset_s eddy_keyset_t;

typedef struct eddy_keyset_ent_s {
        int32_t partition;
        uint32_t len;
        const char *key;
} eddy_keyset_ent_t;

/** @remark Free with eddy_keyset_destroy(). */
eddy_keyset_t *eddy_keyset_new(void);
void eddy_keyset_destroy(eddy_keyset_t *ks);
/** @returns 1 if added, 0 if it was there. */
int eddy_keyset_add(eddy_keyset_t *ks, int32_t partition, const void *key, size_t len);
size_t eddy_keyset_count(const eddy_keyset_t *ks);
/**
 * @brief The members sorted by (partition, key bytes): a deterministic order, whatever the
 *        insertion order. @returns an array valid until the next add or clear.
 */
const eddy_keyset_ent_t *eddy_keyset_sorted(eddy_keyset_t *ks, size_t *n);
void eddy_keyset_clear(eddy_keyset_t *ks);

#endif
