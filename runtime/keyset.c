/* keyset.c: a set of (partition, key) byte strings: open addressing over an arena. */
#include "keyset.h"
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct item_s {
        uint64_t hash;
        size_t off; /* key bytes in the arena */
        uint32_t len;
        int32_t partition;
} item_t;

struct eddy_keyset_s {
        uint32_t *slots; /* 1 + index into items; 0 is empty */
        size_t nslots;
        item_t *items;
        size_t n, cap;
        char *arena;
        size_t alen, acap;
        eddy_keyset_ent_t *out; /* sorted view */
        size_t out_cap;
};

static uint64_t hash(int32_t partition, const void *p, size_t n)
{
        const unsigned char *s = p;
        uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)(uint32_t)partition;
        for (size_t i = 0; i < n; i++)
                h = (h ^ s[i]) * 0x100000001b3ULL;
        h ^= h >> 31;
        return h;
}

eddy_keyset_t *eddy_keyset_new(void)
{
        eddy_keyset_t *ks = calloc(1, sizeof(*ks));
        if (!ks)
                return NULL;
        ks->nslots = 256;
        ks->slots = eddy__xrealloc(NULL, ks->nslots * sizeof(*ks->slots));
        memset(ks->slots, 0, ks->nslots * sizeof(*ks->slots));
        return ks;
}

void eddy_keyset_destroy(eddy_keyset_t *ks)
{
        if (!ks)
                return;
        free(ks->slots);
        free(ks->items);
        free(ks->arena);
        free(ks->out);
        free(ks);
}

static void rehash(eddy_keyset_t *ks, size_t nslots)
{
        free(ks->slots);
        ks->nslots = nslots;
        ks->slots = eddy__xrealloc(NULL, nslots * sizeof(*ks->slots));
        memset(ks->slots, 0, nslots * sizeof(*ks->slots));
        for (size_t i = 0; i < ks->n; i++) {
                size_t j = ks->items[i].hash & (nslots - 1);
                while (ks->slots[j])
                        j = (j + 1) & (nslots - 1);
                ks->slots[j] = (uint32_t)i + 1;
        }
}

int eddy_keyset_add(eddy_keyset_t *ks, int32_t partition, const void *key, size_t len)
{
        uint64_t h = hash(partition, key, len);
        size_t mask = ks->nslots - 1, j;
        for (j = h & mask; ks->slots[j]; j = (j + 1) & mask) {
                const item_t *it = &ks->items[ks->slots[j] - 1];
                if (it->hash == h && it->partition == partition && it->len == len &&
                    (len == 0 || memcmp(ks->arena + it->off, key, len) == 0))
                        return 0;
        }
        if (ks->n == ks->cap) {
                ks->cap = ks->cap ? ks->cap * 2 : 256;
                ks->items = eddy__xrealloc(ks->items, ks->cap * sizeof(*ks->items));
        }
        if (ks->alen + len > ks->acap) {
                ks->acap = (ks->alen + len) * 2 + 4096;
                ks->arena = eddy__xrealloc(ks->arena, ks->acap);
        }
        if (len)
                memcpy(ks->arena + ks->alen, key, len);
        ks->items[ks->n] = (item_t){h, ks->alen, (uint32_t)len, partition};
        ks->alen += len;
        ks->n++;
        ks->slots[j] = (uint32_t)ks->n;
        if (ks->n * 2 > ks->nslots)
                rehash(ks, ks->nslots * 2);
        return 1;
}

size_t eddy_keyset_count(const eddy_keyset_t *ks)
{
        return ks->n;
}

static int ent_cmp(const void *a, const void *b)
{
        const eddy_keyset_ent_t *x = a, *y = b;
        if (x->partition != y->partition)
                return x->partition < y->partition ? -1 : 1;
        size_t n = x->len < y->len ? x->len : y->len;
        int c = memcmp(x->key, y->key, n);
        if (c)
                return c;
        return x->len < y->len ? -1 : x->len > y->len;
}

const eddy_keyset_ent_t *eddy_keyset_sorted(eddy_keyset_t *ks, size_t *n)
{
        if (ks->n > ks->out_cap) {
                ks->out_cap = ks->n;
                ks->out = eddy__xrealloc(ks->out, ks->out_cap * sizeof(*ks->out));
        }
        for (size_t i = 0; i < ks->n; i++)
                ks->out[i] = (eddy_keyset_ent_t){ks->items[i].partition, ks->items[i].len,
                                                 ks->arena ? ks->arena + ks->items[i].off : ""};
        if (ks->n > 1)
                qsort(ks->out, ks->n, sizeof(*ks->out), ent_cmp);
        *n = ks->n;
        return ks->out;
}

void eddy_keyset_clear(eddy_keyset_t *ks)
{
        if (ks->n)
                memset(ks->slots, 0, ks->nslots * sizeof(*ks->slots));
        ks->n = 0;
        ks->alen = 0;
}
