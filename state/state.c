/* state.c: the RocksDB store: partition-scoped keys, a write-back cache, atomic commits.
 *
 * Every RocksDB key starts with a namespace byte (state.h). Processor state lives under
 * 'S' + partition (4 bytes, big-endian) + the processor's key, so one partition's state is
 * one contiguous range that can be dropped, exported or restored on its own.
 *
 * Reads and writes of processor state go through an in-memory cache (open addressing,
 * linear probing). A write marks the entry dirty; nothing reaches RocksDB before
 * eddy_state_commit(), which puts every dirty entry, the offsets, fences and outbox
 * changes into one WriteBatch and writes it at once. So a key written by many events of a
 * batch costs one RocksDB write, a hot key costs no RocksDB read, and a crash leaves the
 * store exactly at the last commit. Absent keys are cached too (bloom filters make the
 * first miss cheap, the cache makes the next ones free). Clean entries are evicted with a
 * CLOCK sweep when the cache passes its budget; dirty ones never are. */
#include "state.h"
#include "mem.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define ENT_PRESENT 0x1
#define ENT_DIRTY   0x2
#define ENT_REF     0x4

/* One cached key: one allocation holding the key bytes, then room for the value. */
typedef struct ent_s {
        uint32_t klen, vlen, vcap;
        uint32_t dpos; /* position in the dirty list, when dirty */
        uint8_t flags;
        char buf[]; /* key bytes (klen) then value bytes (vcap) */
} ent_t;

/* A slot carries the hash, so probing does not touch the entries. */
typedef struct slot_s {
        uint64_t hash;
        ent_t *e;
} slot_t;

/* An outbox entry on its way to its segment file, and a segment's live entry count. */
typedef struct obx_put_s {
        uint64_t seq, seg, off; /* off: the header's */
        const void *p;
        size_t len;
} obx_put_t;

typedef struct seg_s {
        uint64_t first;
        int64_t live;
} seg_t;

struct eddy_state_txn_s {
        rocksdb_writebatch_t *wb;
        obx_put_t *puts;
        size_t nputs;
        uint64_t *dones;
        size_t ndones;
};

/* What the cache knows of a partition's keys in RocksDB. */
#define PART_UNKNOWN    0
#define PART_COMPLETE   1 /* every key RocksDB holds for it is in the cache */
#define PART_INCOMPLETE 2

struct eddy_state_s {
        rocksdb_t *db;
        rocksdb_options_t *opts;
        rocksdb_block_based_table_options_t *topts;
        rocksdb_cache_t *block_cache;
        rocksdb_filterpolicy_t *filter;
        rocksdb_readoptions_t *ropts;
        rocksdb_writeoptions_t *wopts;
        rocksdb_writebatch_t *wb; /* meta changes of the next commit */
        int wb_ops;

        slot_t *slots; /* the cache */
        size_t nslots, nents;
        size_t memo; /* slot of the last key found or inserted */
        size_t hand; /* where the next eviction sweep starts */
        size_t bytes, budget;
        ent_t **dirty;
        size_t ndirty, dirty_cap;
        struct dkey_s *dsort; /* the commit's sort of the dirty entries */
        size_t dsort_cap;
        uint64_t outbox_next;

        /* Outbox entries live in segment files (see "the outbox" below). The owner's thread
         * lays entries out (obx_seg, obx_off: where the next one goes) and queues them with
         * the commit; the thread that writes the commit appends them (seg_fd) and removes
         * segments whose every entry is done (segs, in order of their first seq). */
        char *obx_dir;
        int sync;
        uint64_t obx_seg, obx_off;
        int obx_open; /* 0: the next entry starts a new segment */
        obx_put_t *puts;
        size_t nputs, puts_cap;
        uint64_t *dones;
        size_t ndones, dones_cap;
        int seg_fd;
        uint64_t seg_fd_first;
        int direct;              /* segments opened with O_DIRECT (state.sync); 0 once refused */
        unsigned char *obx_blk;  /* the header block of an O_DIRECT write (OBX_ALIGN bytes) */
        unsigned char *obx_tail; /* an entry's unaligned rest, padded (O_DIRECT) */
        size_t tail_cap;
        seg_t *segs;
        size_t nsegs, segs_cap;

        uint8_t *parts; /* PART_* per partition number */
        size_t nparts;

        char *kbuf; /* scratch for full keys */
        size_t kbuf_cap;

        eddy_state_stats_t stats;
};

static int obx_open(eddy_state_t *st, const char *dir, char *errstr, size_t errstr_size);

/* A zeroed slot table. One of 2 MiB or more is mapped on its own and asks for huge pages
 * (transparent huge pages in "madvise" mode, Debian's default): a lookup is a random slot, and
 * with 4 KiB pages each one also missed the TLB; growing the table faulted every page twice
 * (read, then write). */
#define SLOTS_HUGE ((size_t)2 << 20)

static slot_t *slots_alloc(size_t nslots)
{
        size_t bytes = nslots * sizeof(slot_t);
        slot_t *t;
        if (bytes < SLOTS_HUGE) {
                t = calloc(nslots, sizeof(slot_t));
        } else {
                void *m =
                    mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                t = m == MAP_FAILED ? NULL : m;
                if (t)
                        madvise(t, bytes, MADV_HUGEPAGE); /* a hint: refused is fine */
        }
        if (!t) {
                fputs("eddy: out of memory\n", stderr);
                abort();
        }
        return t;
}

static void slots_free(slot_t *t, size_t nslots)
{
        if (nslots * sizeof(slot_t) < SLOTS_HUGE)
                free(t);
        else if (t)
                munmap(t, nslots * sizeof(slot_t));
}

static uint64_t hash_bytes(const void *p, size_t n)
{
        /* FNV-1a over 8-byte words, then a final mix: fast, and good enough for a cache. */
        const unsigned char *s = p;
        uint64_t h = 0xcbf29ce484222325ULL ^ n;
        while (n >= 8) {
                uint64_t w;
                memcpy(&w, s, 8);
                h = (h ^ w) * 0x100000001b3ULL;
                h ^= h >> 29;
                s += 8;
                n -= 8;
        }
        while (n--)
                h = (h ^ *s++) * 0x100000001b3ULL;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        return h;
}

static void put_be32(unsigned char *p, uint32_t v)
{
        p[0] = v >> 24;
        p[1] = v >> 16;
        p[2] = v >> 8;
        p[3] = v;
}

static void put_be64(unsigned char *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (unsigned char)v;
}

static uint64_t get_be64(const unsigned char *p)
{
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = (v << 8) | p[i];
        return v;
}

/* The full RocksDB key of a processor key, in st->kbuf. */
static const char *state_key(eddy_state_t *st, int32_t partition, const void *key, size_t klen,
                             size_t *outlen)
{
        if (st->kbuf_cap < klen + 5) {
                st->kbuf_cap = (klen + 5) * 2;
                st->kbuf = eddy__xrealloc(st->kbuf, st->kbuf_cap);
        }
        st->kbuf[0] = EDDY_NS_STATE;
        put_be32((unsigned char *)st->kbuf + 1, (uint32_t)partition);
        if (klen)
                memcpy(st->kbuf + 5, key, klen);
        *outlen = klen + 5;
        return st->kbuf;
}

static size_t ent_bytes(const ent_t *e)
{
        return sizeof(slot_t) * 2 + sizeof(*e) + e->klen + e->vcap + 16;
}

static int copy_err(char *err, const char *what, char *errstr, size_t errstr_size)
{
        snprintf(errstr, errstr_size, "%s: %s", what, err);
        free(err);
        return -1;
}

int eddy_state_check_options(const char *options, char *errstr, size_t errstr_size)
{
        rocksdb_options_t *base = rocksdb_options_create(), *out = rocksdb_options_create();
        char *err = NULL;
        rocksdb_get_options_from_string(base, options, out, &err);
        rocksdb_options_destroy(base);
        rocksdb_options_destroy(out);
        if (!err)
                return 0;
        snprintf(errstr, errstr_size, "%s", err);
        free(err);
        return -1;
}

eddy_state_t *eddy_state_open(const char *dir, const eddy_state_opts_t *o, char *errstr,
                              size_t errstr_size)
{
        char *err = NULL;
        eddy_state_t *st = calloc(1, sizeof(*st));
        if (!st) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        st->seg_fd = -1;

        /* mkdir -p dir */
        char path[4096];
        if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
                snprintf(errstr, errstr_size, "state.dir is too long");
                free(st);
                return NULL;
        }
        for (char *p = path + 1; *p; p++) {
                if (*p == '/') {
                        *p = '\0';
                        mkdir(path, 0755);
                        *p = '/';
                }
        }
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                snprintf(errstr, errstr_size, "can not create state.dir %s: %s", dir,
                         strerror(errno));
                free(st);
                return NULL;
        }

        st->opts = rocksdb_options_create();
        rocksdb_options_set_create_if_missing(st->opts, 1);
        rocksdb_options_increase_parallelism(st->opts, 2);
        rocksdb_options_set_max_background_jobs(st->opts, 2);
        rocksdb_options_set_write_buffer_size(st->opts, (size_t)o->write_buffer_mb << 20);
        rocksdb_options_set_max_write_buffer_number(st->opts, 3);
        rocksdb_options_set_level_compaction_dynamic_level_bytes(st->opts, 1);
        /* 8 L0 files (not 4) before they are compacted into the level below: state keys are
         * spread over the whole key range, so each such compaction rewrites that level; this
         * halves how often (like-counter: 8.71 against 9.63 CPU-s, docs/architecture.md) */
        rocksdb_options_set_level0_file_num_compaction_trigger(st->opts, 8);
        /* state.compression: none by default (compaction spent 5-11% of the processors' CPU
         * compressing with lz4); with lz4 or zstd, L0 (memtable flushes) stays uncompressed:
         * much of it is overwritten or deleted before compaction reaches it */
        int codec = o->compression == EDDY_STATE_COMPRESS_LZ4    ? rocksdb_lz4_compression
                    : o->compression == EDDY_STATE_COMPRESS_ZSTD ? rocksdb_zstd_compression
                                                                 : rocksdb_no_compression;
        int per_level[7] = {rocksdb_no_compression, codec, codec, codec, codec, codec, codec};
        rocksdb_options_set_compression(st->opts, codec);
        rocksdb_options_set_compression_per_level(st->opts, per_level, 7);
        rocksdb_options_set_max_open_files(st->opts, 512);
        rocksdb_options_set_keep_log_file_num(st->opts, 3);
        rocksdb_options_set_info_log_level(st->opts, 2 /* WARN */);
        /* a bloom filter over whole keys in the memtable: misses (new keys) skip the skiplist */
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(st->opts, 0.1);
        rocksdb_options_set_memtable_whole_key_filtering(st->opts, 1);
        st->topts = rocksdb_block_based_options_create();
        st->block_cache = rocksdb_cache_create_lru((size_t)o->block_cache_mb << 20);
        rocksdb_block_based_options_set_block_cache(st->topts, st->block_cache);
        st->filter = rocksdb_filterpolicy_create_bloom_full(10);
        rocksdb_block_based_options_set_filter_policy(st->topts, st->filter);
        /* filters and indexes stay resident (about 1.3 bytes a key), outside the block
         * cache: a miss of a new key never reads a block from disk */
        rocksdb_block_based_options_set_cache_index_and_filter_blocks(st->topts, 0);
        rocksdb_block_based_options_set_format_version(st->topts, 5);
        rocksdb_options_set_block_based_table_factory(st->opts, st->topts);

        /* rocksdb.* settings from the job, over eddy's own */
        if (o->rocksdb_options && *o->rocksdb_options) {
                rocksdb_options_t *mine = rocksdb_options_create();
                rocksdb_get_options_from_string(st->opts, o->rocksdb_options, mine, &err);
                if (err) {
                        snprintf(errstr, errstr_size, "rocksdb.*: %s", err);
                        free(err);
                        rocksdb_options_destroy(mine);
                        eddy_state_close(st);
                        return NULL;
                }
                rocksdb_options_destroy(st->opts);
                st->opts = mine;
        }
        st->db = rocksdb_open(st->opts, dir, &err);
        if (!st->db) {
                if (err && strstr(err, "lock"))
                        snprintf(errstr, errstr_size,
                                 "state.dir %s is in use by another eddy process (%s)", dir, err);
                else
                        snprintf(errstr, errstr_size, "can not open state.dir %s: %s", dir,
                                 err ? err : "?");
                free(err);
                eddy_state_close(st);
                return NULL;
        }
        st->ropts = rocksdb_readoptions_create();
        st->wopts = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(st->wopts, o->sync);
        st->sync = o->sync;
        st->direct = o->sync;
        st->wb = rocksdb_writebatch_create();
        rocksdb_writeoptions_set_memtable_insert_hint_per_batch(st->wopts, 1);
        st->budget = (size_t)o->cache_mb << 20;
        st->nslots = 1024;
        st->slots = slots_alloc(st->nslots);

        /* The outbox sequence continues after the last committed entry. */
        rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ropts);
        char hi[1] = {EDDY_NS_OUTBOX + 1};
        rocksdb_iter_seek_for_prev(it, hi, 1);
        if (rocksdb_iter_valid(it)) {
                size_t kl;
                const char *k = rocksdb_iter_key(it, &kl);
                if (kl == 9 && k[0] == EDDY_NS_OUTBOX)
                        st->outbox_next = get_be64((const unsigned char *)k + 1) + 1;
        }
        rocksdb_iter_destroy(it);
        if (obx_open(st, dir, errstr, errstr_size) != 0) {
                eddy_state_close(st);
                return NULL;
        }
        return st;
}

void eddy_state_close(eddy_state_t *st)
{
        if (!st)
                return;
        for (size_t i = 0; st->slots && i < st->nslots; i++)
                free(st->slots[i].e);
        slots_free(st->slots, st->nslots);
        free(st->dirty);
        free(st->dsort);
        free(st->parts);
        free(st->kbuf);
        free(st->puts);
        free(st->dones);
        free(st->segs);
        free(st->obx_dir);
        free(st->obx_blk);
        free(st->obx_tail);
        if (st->seg_fd >= 0)
                close(st->seg_fd);
        if (st->wb)
                rocksdb_writebatch_destroy(st->wb);
        if (st->db)
                rocksdb_close(st->db);
        if (st->ropts)
                rocksdb_readoptions_destroy(st->ropts);
        if (st->wopts)
                rocksdb_writeoptions_destroy(st->wopts);
        if (st->opts)
                rocksdb_options_destroy(st->opts);
        if (st->topts)
                rocksdb_block_based_options_destroy(st->topts);
        if (st->block_cache)
                rocksdb_cache_destroy(st->block_cache);
        /* the filter policy is owned by the table options once set */
        free(st);
}

/* ---- the cache ---- */

static size_t slot_find(eddy_state_t *st, uint64_t h, const char *k, size_t kl)
{
        /* a processor mostly writes the key it has just read: try that slot first */
        const slot_t *m = st->memo < st->nslots ? &st->slots[st->memo] : NULL;
        if (m && m->e && m->hash == h && m->e->klen == kl && memcmp(m->e->buf, k, kl) == 0)
                return st->memo;
        size_t mask = st->nslots - 1;
        for (size_t i = h & mask;; i = (i + 1) & mask) {
                const slot_t *sl = &st->slots[i];
                if (!sl->e)
                        return i;
                if (sl->hash == h && sl->e->klen == kl && memcmp(sl->e->buf, k, kl) == 0) {
                        st->memo = i;
                        return i;
                }
        }
}

static void table_rebuild(eddy_state_t *st, size_t nslots)
{
        slot_t *old = st->slots;
        size_t oldn = st->nslots;
        st->slots = slots_alloc(nslots);
        st->nslots = nslots;
        st->memo = SIZE_MAX;
        size_t mask = nslots - 1;
        for (size_t i = 0; i < oldn; i++) {
                if (!old[i].e)
                        continue;
                size_t j = old[i].hash & mask;
                while (st->slots[j].e)
                        j = (j + 1) & mask;
                st->slots[j] = old[i];
        }
        slots_free(old, oldn);
}

static uint32_t key_partition(const char *k)
{
        const unsigned char *u = (const unsigned char *)k;
        return (uint32_t)u[1] << 24 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 8 | u[4];
}

static uint8_t *part_slot(eddy_state_t *st, uint32_t p)
{
        if (p >= st->nparts) {
                size_t n = (size_t)p + 1 > st->nparts * 2 ? (size_t)p + 1 : st->nparts * 2;
                st->parts = eddy__xrealloc(st->parts, n);
                memset(st->parts + st->nparts, PART_UNKNOWN, n - st->nparts);
                st->nparts = n;
        }
        return &st->parts[p];
}

/* Whether RocksDB holds any key of partition p (one seek). */
static int part_has_keys(eddy_state_t *st, uint32_t p)
{
        unsigned char lo[5];
        lo[0] = EDDY_NS_STATE;
        put_be32(lo + 1, p);
        rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ropts);
        rocksdb_iter_seek(it, (const char *)lo, 5);
        int has = 0;
        if (rocksdb_iter_valid(it)) {
                size_t kl;
                const char *k = rocksdb_iter_key(it, &kl);
                has = kl >= 5 && memcmp(k, lo, 5) == 0;
        }
        rocksdb_iter_destroy(it);
        return has;
}

/* Sets the value of slot i's entry, growing (moving) the entry if needed. */
static ent_t *ent_set_value(eddy_state_t *st, size_t i, const void *v, size_t vl)
{
        ent_t *e = st->slots[i].e;
        if (vl > e->vcap) {
                st->bytes -= ent_bytes(e);
                uint32_t cap = (uint32_t)(vl < 8 ? 8 : vl + vl / 4);
                e = eddy__xrealloc(e, sizeof(*e) + e->klen + cap);
                e->vcap = cap;
                st->bytes += ent_bytes(e);
                st->slots[i].e = e;
                if (e->flags & ENT_DIRTY)
                        st->dirty[e->dpos] = e;
        }
        if (vl)
                memcpy(e->buf + e->klen, v, vl);
        e->vlen = (uint32_t)vl;
        return e;
}

/* A new entry in free slot i; may rebuild the table: returns the entry's new slot index. */
static size_t ent_insert(eddy_state_t *st, size_t i, uint64_t h, const char *k, size_t kl,
                         const void *v, size_t vl, uint8_t flags)
{
        uint32_t cap = (uint32_t)(vl < 8 ? 8 : vl);
        ent_t *e = eddy__xrealloc(NULL, sizeof(*e) + kl + cap);
        e->klen = (uint32_t)kl;
        e->vcap = cap;
        e->vlen = (uint32_t)vl;
        e->dpos = 0;
        e->flags = flags;
        memcpy(e->buf, k, kl);
        if (vl)
                memcpy(e->buf + kl, v, vl);
        st->slots[i].hash = h;
        st->slots[i].e = e;
        st->nents++;
        st->bytes += ent_bytes(e);
        if (st->nents * 2 > st->nslots) {
                table_rebuild(st, st->nslots * 2);
                i = slot_find(st, h, k, kl);
        }
        st->memo = i;
        return i;
}

static void mark_dirty(eddy_state_t *st, ent_t *e)
{
        if (e->flags & ENT_DIRTY)
                return;
        e->flags |= ENT_DIRTY;
        if (st->ndirty == st->dirty_cap) {
                st->dirty_cap = st->dirty_cap ? st->dirty_cap * 2 : 1024;
                st->dirty = eddy__xrealloc(st->dirty, st->dirty_cap * sizeof(*st->dirty));
        }
        e->dpos = (uint32_t)st->ndirty;
        st->dirty[st->ndirty++] = e;
}

/* Finds or loads the entry of a full key. */
static ent_t *ent_lookup(eddy_state_t *st, const char *k, size_t kl, int *err)
{
        uint64_t h = hash_bytes(k, kl);
        size_t i = slot_find(st, h, k, kl);
        if (st->slots[i].e) {
                st->stats.cache_hits++;
                st->slots[i].e->flags |= ENT_REF;
                return st->slots[i].e;
        }
        st->stats.cache_misses++;
        /* A partition whose every stored key is cached needs no RocksDB read for a miss. */
        if (kl >= 5 && k[0] == EDDY_NS_STATE) {
                uint32_t p = key_partition(k);
                uint8_t *ps = part_slot(st, p);
                if (*ps == PART_UNKNOWN)
                        *ps = part_has_keys(st, p) ? PART_INCOMPLETE : PART_COMPLETE;
                if (*ps == PART_COMPLETE) {
                        i = ent_insert(st, i, h, k, kl, NULL, 0, ENT_REF);
                        return st->slots[i].e;
                }
        }
        char *rerr = NULL;
        size_t vl = 0;
        char *v = rocksdb_get(st->db, st->ropts, k, kl, &vl, &rerr);
        if (rerr) {
                fprintf(stderr, "eddy: state read failed: %s\n", rerr);
                free(rerr);
                *err = 1;
                return NULL;
        }
        i = ent_insert(st, i, h, k, kl, v, v ? vl : 0, ENT_REF | (v ? ENT_PRESENT : 0));
        if (v)
                rocksdb_free(v);
        return st->slots[i].e;
}

int eddy__state_get(eddy_state_t *st, int32_t partition, const void *key, size_t klen,
                    const void **val, size_t *vlen)
{
        size_t kl;
        const char *k = state_key(st, partition, key, klen, &kl);
        int err = 0;
        ent_t *e = ent_lookup(st, k, kl, &err);
        if (!e)
                return -1;
        if (!(e->flags & ENT_PRESENT))
                return 0;
        *val = e->buf + e->klen;
        *vlen = e->vlen;
        return 1;
}

void eddy__state_put(eddy_state_t *st, int32_t partition, const void *key, size_t klen,
                     const void *val, size_t vlen)
{
        size_t kl;
        const char *k = state_key(st, partition, key, klen, &kl);
        uint64_t h = hash_bytes(k, kl);
        size_t i = slot_find(st, h, k, kl);
        ent_t *e;
        if (st->slots[i].e) {
                e = ent_set_value(st, i, val, vlen);
        } else {
                i = ent_insert(st, i, h, k, kl, val, vlen, 0); /* may move the table */
                e = st->slots[i].e;
        }
        e->flags |= ENT_PRESENT | ENT_REF;
        mark_dirty(st, e);
}

void eddy__state_del(eddy_state_t *st, int32_t partition, const void *key, size_t klen)
{
        size_t kl;
        const char *k = state_key(st, partition, key, klen, &kl);
        uint64_t h = hash_bytes(k, kl);
        size_t i = slot_find(st, h, k, kl);
        if (!st->slots[i].e)
                i = ent_insert(st, i, h, k, kl, NULL, 0, 0);
        ent_t *e = st->slots[i].e;
        e->flags &= ~ENT_PRESENT;
        e->vlen = 0;
        mark_dirty(st, e);
}

/* Empties slot i and moves the entries after it in its cluster back where their probe needs
 * them (Knuth's Algorithm R): every entry stays reachable from its home slot, in place. */
static void slot_delete(eddy_state_t *st, size_t i)
{
        size_t mask = st->nslots - 1, j = i;
        st->slots[i].e = NULL;
        for (;;) {
                j = (j + 1) & mask;
                if (!st->slots[j].e)
                        break;
                size_t k = st->slots[j].hash & mask;
                if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
                        continue; /* its home is after the hole: it stays */
                st->slots[i] = st->slots[j];
                st->slots[j].e = NULL;
                i = j;
        }
        st->memo = SIZE_MAX;
}

int eddy__state_check(const eddy_state_t *st)
{
        size_t mask = st->nslots - 1, n = 0;
        for (size_t p = 0; p < st->nslots; p++) {
                if (!st->slots[p].e)
                        continue;
                n++;
                for (size_t h = st->slots[p].hash & mask; h != p; h = (h + 1) & mask)
                        if (!st->slots[h].e)
                                return -1;
        }
        return n == st->nents ? 0 : -1;
}

/* CLOCK sweep over clean entries until the cache is at 3/4 of its budget. The hand goes on
 * where the last sweep stopped: sweeping from slot 0 each time would spare the end of the
 * table for ever and let it fill into long probe runs. */
static void cache_evict(eddy_state_t *st)
{
        if (st->bytes <= st->budget)
                return;
        size_t target = st->budget / 4 * 3;
        size_t n = st->nslots, i = st->hand % n;
        for (size_t seen = 0; seen < 2 * n && st->bytes > target; seen++) {
                ent_t *e = st->slots[i].e;
                if (!e || (e->flags & ENT_DIRTY)) {
                        i = (i + 1) % n;
                        continue;
                }
                if (e->flags & ENT_REF) {
                        e->flags &= ~ENT_REF;
                        i = (i + 1) % n;
                        continue;
                }
                if ((e->flags & ENT_PRESENT) && e->klen >= 5 && e->buf[0] == EDDY_NS_STATE)
                        *part_slot(st, key_partition(e->buf)) = PART_INCOMPLETE;
                st->bytes -= ent_bytes(e);
                st->nents--;
                st->stats.evictions++;
                free(e);
                slot_delete(st, i); /* slot i may now hold a later entry: looked at next */
        }
        st->hand = i;
}

/* ---- meta keys ---- */

static size_t offset_key(char *buf, size_t size, const char *topic, int32_t partition)
{
        size_t tl = strlen(topic);
        if (tl + 6 > size)
                tl = size - 6;
        buf[0] = EDDY_NS_OFFSET;
        memcpy(buf + 1, topic, tl);
        buf[1 + tl] = '\0';
        put_be32((unsigned char *)buf + 2 + tl, (uint32_t)partition);
        return tl + 6;
}

static int get_raw(eddy_state_t *st, const char *k, size_t kl, unsigned char *out, size_t outlen)
{
        char *err = NULL;
        size_t vl = 0;
        char *v = rocksdb_get(st->db, st->ropts, k, kl, &vl, &err);
        if (err) {
                fprintf(stderr, "eddy: state read failed: %s\n", err);
                free(err);
                return -1;
        }
        if (!v)
                return 0;
        int ok = vl == outlen;
        if (ok)
                memcpy(out, v, outlen);
        rocksdb_free(v);
        return ok ? 1 : -1;
}

int eddy_state_offset_get(eddy_state_t *st, const char *topic, int32_t partition, int64_t *next)
{
        char k[512];
        unsigned char v[8];
        size_t kl = offset_key(k, sizeof(k), topic, partition);
        int r = get_raw(st, k, kl, v, 8);
        if (r == 1)
                *next = (int64_t)get_be64(v);
        return r;
}

void eddy_state_offset_set(eddy_state_t *st, const char *topic, int32_t partition, int64_t next)
{
        char k[512];
        unsigned char v[8];
        size_t kl = offset_key(k, sizeof(k), topic, partition);
        put_be64(v, (uint64_t)next);
        rocksdb_writebatch_put(st->wb, k, kl, (const char *)v, 8);
        st->wb_ops++;
}

int eddy_state_fence_get(eddy_state_t *st, int32_t partition, int64_t *pos, int64_t *seq)
{
        unsigned char k[5], v[16];
        k[0] = EDDY_NS_FENCE;
        put_be32(k + 1, (uint32_t)partition);
        int r = get_raw(st, (const char *)k, 5, v, 16);
        if (r == 1) {
                *pos = (int64_t)get_be64(v);
                *seq = (int64_t)get_be64(v + 8);
        }
        return r;
}

void eddy_state_fence_set(eddy_state_t *st, int32_t partition, int64_t pos, int64_t seq)
{
        unsigned char k[5], v[16];
        k[0] = EDDY_NS_FENCE;
        put_be32(k + 1, (uint32_t)partition);
        put_be64(v, (uint64_t)pos);
        put_be64(v + 8, (uint64_t)seq);
        rocksdb_writebatch_put(st->wb, (const char *)k, 5, (const char *)v, 16);
        st->wb_ops++;
}

/* ---- the outbox ----
 *
 * An outbox entry is the batch's outputs, up to megabytes. Written as a RocksDB value it
 * went through the WAL, the memtable and, when a flush caught it before its delivery,
 * an SST file and a compaction: about a fifth of the CPU of an output-heavy job. So the
 * entries go to segment files of their own, <state.dir>/outbox/<first seq, 16 hex>.seg,
 * each entry after a 16-byte header (seq, length), and the commit's WriteBatch holds only a
 * reference under the entry's key: 'R', the segment, the offset, the length (25 bytes).
 * eddy_state_write() appends the entries, fsyncs the segment when state.sync (and the
 * directory for a new segment), and only then writes the batch: a committed reference
 * always points at written bytes. A crash in between leaves bytes no reference points at,
 * which are never read. Each start appends to a new segment, so nothing is written after
 * such a tail. A segment is removed once every entry in it is done (deliveries are in
 * order) and it is no longer the one appended to; a start removes segments no reference
 * points at. Entries stored inline by older binaries ('E'...) are read as before.
 *
 * With state.sync the segment is opened with O_DIRECT: the disk takes the entry from the
 * batch's buffer, without the copy into the page cache that was ~8% of an output-heavy
 * job's CPU (a write that is fsynced at once gains nothing from the cache). O_DIRECT wants
 * addresses, lengths and file offsets in whole blocks, so each entry starts a block of its
 * own: the 16-byte header ends a zero-filled block (OBX_ALIGN), the entry follows it, and
 * the entry's last partial block is written from a padded copy. A reference still points at
 * the header and the entry still follows it, so readers are the same for both layouts.
 * Where the file system refuses O_DIRECT, the same layout is written through the cache. */
#define OBX_SEG_MAX ((uint64_t)64 << 20)
#define OBX_HDR     16
#define OBX_REF_LEN 25
#define OBX_ALIGN   4096 /* covers the logical block size of common disks */

void *eddy_state_outbox_buf(size_t size)
{
        void *p = NULL;
        if (posix_memalign(&p, OBX_ALIGN, size ? size : 1) != 0) {
                fputs("eddy: out of memory\n", stderr);
                abort();
        }
        return p;
}

static void seg_path(const eddy_state_t *st, uint64_t first, char *out, size_t size)
{
        snprintf(out, size, "%s/%016" PRIx64 ".seg", st->obx_dir, first);
}

static seg_t *seg_find(eddy_state_t *st, uint64_t seq)
{
        size_t lo = 0, hi = st->nsegs; /* the last segment whose first is <= seq */
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (st->segs[mid].first <= seq)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo ? &st->segs[lo - 1] : NULL;
}

static seg_t *seg_add(eddy_state_t *st, uint64_t first)
{
        seg_t *g = seg_find(st, first);
        if (g && g->first == first)
                return g;
        if (st->nsegs == st->segs_cap) {
                st->segs_cap = st->segs_cap ? st->segs_cap * 2 : 8;
                st->segs = eddy__xrealloc(st->segs, st->segs_cap * sizeof(*st->segs));
        }
        size_t i = g ? (size_t)(g - st->segs) + 1 : 0;
        memmove(st->segs + i + 1, st->segs + i, (st->nsegs - i) * sizeof(*st->segs));
        st->segs[i] = (seg_t){first, 0};
        st->nsegs++;
        return &st->segs[i];
}

/* Removes the segments whose entries are all done, but the one being appended to. */
static void seg_sweep(eddy_state_t *st)
{
        size_t w = 0;
        for (size_t i = 0; i < st->nsegs; i++) {
                seg_t *g = &st->segs[i];
                if (g->live <= 0 && !(st->seg_fd >= 0 && g->first == st->seg_fd_first)) {
                        char path[4200];
                        seg_path(st, g->first, path, sizeof(path));
                        unlink(path);
                        continue;
                }
                st->segs[w++] = *g;
        }
        st->nsegs = w;
}

static int fsync_dir(const char *dir)
{
        int fd = open(dir, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
                return -1;
        int rc = fsync(fd);
        close(fd);
        return rc;
}

/* Writes all of @p iov at @p off; @returns 0, or -1 with errno. */
static int pwritev_all(int fd, struct iovec *iov, int n, off_t off)
{
        for (;;) {
                ssize_t w = pwritev(fd, iov, n, off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -1;
                if (w == 0) {
                        errno = EIO;
                        return -1;
                }
                off += w;
                while (n > 0 && (size_t)w >= iov->iov_len) { /* skip what was written */
                        w -= (ssize_t)iov->iov_len;
                        iov++;
                        n--;
                }
                if (n == 0)
                        return 0;
                iov->iov_base = (char *)iov->iov_base + w;
                iov->iov_len -= (size_t)w;
        }
}

/* One entry in the O_DIRECT layout: its header block, its whole blocks straight from its
 * buffer when that is aligned, the rest from a zero-padded copy. */
static int obx_write_direct(eddy_state_t *st, const obx_put_t *u)
{
        if (!st->obx_blk) {
                st->obx_blk = eddy_state_outbox_buf(OBX_ALIGN);
                memset(st->obx_blk, 0, OBX_ALIGN);
        }
        put_be64(st->obx_blk + OBX_ALIGN - OBX_HDR, u->seq);
        put_be64(st->obx_blk + OBX_ALIGN - 8, u->len);
        size_t whole = (uintptr_t)u->p % OBX_ALIGN ? 0 : u->len / OBX_ALIGN * OBX_ALIGN;
        size_t rest = u->len - whole, padded = (rest + OBX_ALIGN - 1) / OBX_ALIGN * OBX_ALIGN;
        if (padded > st->tail_cap) {
                free(st->obx_tail);
                st->obx_tail = eddy_state_outbox_buf(padded);
                st->tail_cap = padded;
        }
        if (rest) {
                memcpy(st->obx_tail, (const char *)u->p + whole, rest);
                memset(st->obx_tail + rest, 0, padded - rest);
        }
        off_t at = (off_t)(u->off + OBX_HDR - OBX_ALIGN);
        for (;;) {
                struct iovec iov[3];
                int n = 0;
                iov[n++] = (struct iovec){st->obx_blk, OBX_ALIGN};
                if (whole)
                        iov[n++] = (struct iovec){(void *)u->p, whole};
                if (padded)
                        iov[n++] = (struct iovec){st->obx_tail, padded};
                if (pwritev_all(st->seg_fd, iov, n, at) == 0)
                        return 0;
                if (errno != EINVAL || !st->direct)
                        return -1;
                /* the file system takes no O_DIRECT (or wants larger blocks): the whole entry
                 * again, through the cache */
                st->direct = 0;
                int fl = fcntl(st->seg_fd, F_GETFL);
                if (fl < 0 || fcntl(st->seg_fd, F_SETFL, fl & ~O_DIRECT) < 0)
                        return -1;
        }
}

/* Appends the transaction's entries to their segments (the committer's thread). */
static int obx_append(eddy_state_t *st, const eddy_state_txn_t *t, char *errstr, size_t errstr_size)
{
        char path[4200];
        int created = 0;
        for (size_t i = 0; i < t->nputs; i++) {
                const obx_put_t *u = &t->puts[i];
                if (st->seg_fd < 0 || u->seg != st->seg_fd_first) {
                        if (st->seg_fd >= 0) {
                                if (st->sync && fdatasync(st->seg_fd) != 0)
                                        goto fail;
                                close(st->seg_fd);
                        }
                        seg_path(st, u->seg, path, sizeof(path));
                        int fl = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
                        st->seg_fd = open(path, fl | (st->direct ? O_DIRECT : 0), 0644);
                        if (st->seg_fd < 0 && errno == EINVAL && st->direct) {
                                st->direct = 0; /* e.g. tmpfs before Linux 6.6 */
                                st->seg_fd = open(path, fl, 0644);
                        }
                        if (st->seg_fd < 0)
                                goto fail;
                        st->seg_fd_first = u->seg;
                        seg_add(st, u->seg);
                        created = 1;
                }
                if (st->sync) { /* the O_DIRECT layout, whether or not O_DIRECT was taken */
                        if (obx_write_direct(st, u) != 0)
                                goto fail;
                } else {
                        unsigned char hdr[OBX_HDR];
                        put_be64(hdr, u->seq);
                        put_be64(hdr + 8, u->len);
                        struct iovec iov[2] = {{hdr, OBX_HDR}, {(void *)u->p, u->len}};
                        if (pwritev_all(st->seg_fd, iov, 2, (off_t)u->off) != 0)
                                goto fail;
                }
                seg_find(st, u->seq)->live++;
        }
        if (t->nputs && st->sync &&
            (fdatasync(st->seg_fd) != 0 || (created && fsync_dir(st->obx_dir) != 0)))
                goto fail;
        return 0;
fail:
        snprintf(errstr, errstr_size, "can not write the outbox segment in %s: %s", st->obx_dir,
                 strerror(errno));
        return -1;
}

/* After the commit: the transaction's done entries leave their segments. */
static void obx_release(eddy_state_t *st, const eddy_state_txn_t *t)
{
        for (size_t i = 0; i < t->ndones; i++) {
                seg_t *g = seg_find(st, t->dones[i]);
                if (g)
                        g->live--;
        }
        if (t->ndones)
                seg_sweep(st);
}

/* Start-up: count the references per segment, remove the segment files nothing points at. */
static int ref_count(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        eddy_state_t *st = opaque;
        if (kl == 9 && vl == OBX_REF_LEN && ((const char *)v)[0] == 'R')
                seg_add(st, get_be64((const unsigned char *)v + 1))->live++;
        return 0;
}

static int range_scan(eddy_state_t *st, const char *lo, size_t lol, const char *hi, size_t hil,
                      int (*cb)(void *, const void *, size_t, const void *, size_t), void *opaque);

static int obx_open(eddy_state_t *st, const char *dir, char *errstr, size_t errstr_size)
{
        size_t n = strlen(dir) + sizeof("/outbox");
        st->obx_dir = eddy__xrealloc(NULL, n);
        snprintf(st->obx_dir, n, "%s/outbox", dir);
        if (mkdir(st->obx_dir, 0755) != 0 && errno != EEXIST) {
                snprintf(errstr, errstr_size, "can not create %s: %s", st->obx_dir,
                         strerror(errno));
                return -1;
        }
        char lo[1] = {EDDY_NS_OUTBOX}, hi[1] = {EDDY_NS_OUTBOX + 1};
        if (range_scan(st, lo, 1, hi, 1, ref_count, st) < 0) {
                snprintf(errstr, errstr_size, "can not read the outbox of %s", dir);
                return -1;
        }
        DIR *d = opendir(st->obx_dir);
        if (!d) {
                snprintf(errstr, errstr_size, "can not read %s: %s", st->obx_dir, strerror(errno));
                return -1;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                char *end;
                unsigned long long first = strtoull(de->d_name, &end, 16);
                if (strlen(de->d_name) != 20 || strcmp(end, ".seg") != 0)
                        continue;
                seg_t *g = seg_find(st, first);
                if (!g || g->first != first) {
                        char path[4200];
                        seg_path(st, first, path, sizeof(path));
                        unlink(path);
                }
        }
        closedir(d);
        return 0;
}

uint64_t eddy_state_outbox_add(eddy_state_t *st, const void *entry, size_t len)
{
        unsigned char k[9];
        uint64_t seq = st->outbox_next++;
        k[0] = EDDY_NS_OUTBOX;
        put_be64(k + 1, seq);
        /* where the header goes, and where the entry after it ends */
        uint64_t at = st->obx_off;
        if (st->sync)
                at = (at + OBX_ALIGN - 1) / OBX_ALIGN * OBX_ALIGN + OBX_ALIGN - OBX_HDR;
        if (!st->obx_open || (st->obx_off > 0 && at + OBX_HDR + len > OBX_SEG_MAX)) {
                st->obx_seg = seq;
                st->obx_off = 0;
                st->obx_open = 1;
                at = st->sync ? OBX_ALIGN - OBX_HDR : 0;
        }
        unsigned char ref[OBX_REF_LEN];
        ref[0] = 'R';
        put_be64(ref + 1, st->obx_seg);
        put_be64(ref + 9, at);
        put_be64(ref + 17, len);
        rocksdb_writebatch_put(st->wb, (const char *)k, 9, (const char *)ref, sizeof(ref));
        st->wb_ops++;
        if (st->nputs == st->puts_cap) {
                st->puts_cap = st->puts_cap ? st->puts_cap * 2 : 4;
                st->puts = eddy__xrealloc(st->puts, st->puts_cap * sizeof(*st->puts));
        }
        st->puts[st->nputs++] = (obx_put_t){seq, st->obx_seg, at, entry, len};
        st->obx_off = at + OBX_HDR + len;
        return seq;
}

void eddy_state_outbox_done(eddy_state_t *st, uint64_t seq)
{
        unsigned char k[9];
        k[0] = EDDY_NS_OUTBOX;
        put_be64(k + 1, seq);
        rocksdb_writebatch_delete(st->wb, (const char *)k, 9);
        st->wb_ops++;
        if (st->ndones == st->dones_cap) {
                st->dones_cap = st->dones_cap ? st->dones_cap * 2 : 16;
                st->dones = eddy__xrealloc(st->dones, st->dones_cap * sizeof(*st->dones));
        }
        st->dones[st->ndones++] = seq;
}

/* Iterate [lo, hi) of raw keys. */
static int range_scan(eddy_state_t *st, const char *lo, size_t lol, const char *hi, size_t hil,
                      int (*cb)(void *, const void *, size_t, const void *, size_t), void *opaque)
{
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        if (hi)
                rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hil);
        rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, ro);
        int n = 0, stop = 0;
        for (rocksdb_iter_seek(it, lo, lol); !stop && rocksdb_iter_valid(it);
             rocksdb_iter_next(it)) {
                size_t kl, vl;
                const char *k = rocksdb_iter_key(it, &kl);
                const char *v = rocksdb_iter_value(it, &vl);
                stop = cb(opaque, k, kl, v, vl);
                n++;
        }
        char *err = NULL;
        rocksdb_iter_get_error(it, &err);
        rocksdb_iter_destroy(it);
        rocksdb_readoptions_destroy(ro);
        if (err) {
                fprintf(stderr, "eddy: state scan failed: %s\n", err);
                free(err);
                return -1;
        }
        return n;
}

int eddy_state_raw_scan(eddy_state_t *st, const void *lo, size_t lol, const void *hi, size_t hil,
                        int (*cb)(void *, const void *, size_t, const void *, size_t), void *opaque)
{
        return range_scan(st, lo, lol, hi, hil, cb, opaque);
}

void eddy_state_raw_put(eddy_state_t *st, const void *key, size_t klen, const void *val,
                        size_t vlen)
{
        rocksdb_writebatch_put(st->wb, key, klen, val, vlen);
        st->wb_ops++;
}

int eddy_state_raw_delete_range(eddy_state_t *st, const void *lo, size_t lol, const void *hi,
                                size_t hil, char *errstr, size_t errstr_size)
{
        eddy_state_txn_t *t = eddy__xrealloc(NULL, sizeof(*t));
        *t = (eddy_state_txn_t){rocksdb_writebatch_create(), NULL, 0, NULL, 0};
        rocksdb_writebatch_delete_range(t->wb, lo, lol, hi, hil);
        return eddy_state_write(st, t, errstr, errstr_size);
}

struct outbox_scan {
        int (*cb)(void *opaque, uint64_t seq, const void *e, size_t len);
        void *opaque;
        eddy_state_t *st;
        int fd; /* the segment last read */
        uint64_t fd_seg;
        unsigned char *buf;
        size_t cap;
        int err;
};

/* Reads the entry a reference points at into os->buf; @returns 0, or -1 (a message). */
static int obx_read(struct outbox_scan *os, uint64_t seq, const unsigned char *ref)
{
        eddy_state_t *st = os->st;
        uint64_t seg = get_be64(ref + 1), off = get_be64(ref + 9), len = get_be64(ref + 17);
        char path[4200];
        seg_path(st, seg, path, sizeof(path));
        if (os->fd < 0 || os->fd_seg != seg) {
                if (os->fd >= 0)
                        close(os->fd);
                os->fd = open(path, O_RDONLY | O_CLOEXEC);
                os->fd_seg = seg;
                if (os->fd < 0) {
                        fprintf(stderr, "eddy: outbox entry %" PRIu64 ": can not open %s: %s\n",
                                seq, path, strerror(errno));
                        return -1;
                }
        }
        if (len > SIZE_MAX - OBX_HDR) {
                fprintf(stderr, "eddy: outbox entry %" PRIu64 ": bad reference\n", seq);
                return -1;
        }
        size_t need = OBX_HDR + (size_t)len;
        if (need > os->cap) {
                free(os->buf);
                os->buf = eddy__xrealloc(NULL, need);
                os->cap = need;
        }
        size_t got = 0;
        while (got < need) {
                ssize_t n = pread(os->fd, os->buf + got, need - got, (off_t)(off + got));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        if (got < need || get_be64(os->buf) != seq || get_be64(os->buf + 8) != len) {
                fprintf(stderr,
                        "eddy: outbox entry %" PRIu64 " is not at %s offset %" PRIu64
                        " (state.dir is damaged)\n",
                        seq, path, off);
                return -1;
        }
        return 0;
}

static int outbox_visit(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        struct outbox_scan *os = opaque;
        if (kl != 9)
                return 0;
        if (!os->cb)
                return 0; /* counting */
        uint64_t seq = get_be64((const unsigned char *)k + 1);
        if (vl == OBX_REF_LEN && ((const char *)v)[0] == 'R') {
                if (obx_read(os, seq, v) != 0) {
                        os->err = 1;
                        return 1;
                }
                return os->cb(os->opaque, seq, os->buf + OBX_HDR, (size_t)get_be64(os->buf + 8));
        }
        return os->cb(os->opaque, seq, v, vl); /* stored inline by an older binary */
}

int eddy_state_outbox_scan(eddy_state_t *st,
                           int (*cb)(void *opaque, uint64_t seq, const void *e, size_t len),
                           void *opaque)
{
        char lo[1] = {EDDY_NS_OUTBOX}, hi[1] = {EDDY_NS_OUTBOX + 1};
        struct outbox_scan os = {cb, opaque, st, -1, 0, NULL, 0, 0};
        int n = range_scan(st, lo, 1, hi, 1, outbox_visit, &os);
        if (os.fd >= 0)
                close(os.fd);
        free(os.buf);
        return os.err ? -1 : n;
}

static int ent_key_cmp(const void *a, const void *b)
{
        const ent_t *x = *(ent_t *const *)a, *y = *(ent_t *const *)b;
        size_t n = x->klen < y->klen ? x->klen : y->klen;
        int c = memcmp(x->buf, y->buf, n);
        return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

/* The commit's sort: each dirty entry with its key's first 16 bytes as two big-endian words
 * (zero-padded), so that most comparisons touch neither the entries nor memcmp. The keys are
 * distinct, so the order is the byte order of the keys whatever the algorithm. */
typedef struct dkey_s {
        uint64_t a, b;
        ent_t *e;
} dkey_t;

static uint64_t key_word(const char *k, size_t kl, size_t at)
{
        unsigned char w[8] = {0};
        if (kl > at)
                memcpy(w, k + at, kl - at < 8 ? kl - at : 8);
        return get_be64(w);
}

static int dkey_less(const dkey_t *x, const dkey_t *y)
{
        if (x->a != y->a)
                return x->a < y->a;
        if (x->b != y->b)
                return x->b < y->b;
        size_t xl = x->e->klen, yl = y->e->klen;
        if (xl > 16 && yl > 16) {
                int c = memcmp(x->e->buf + 16, y->e->buf + 16, (xl < yl ? xl : yl) - 16);
                if (c)
                        return c < 0;
        }
        return xl < yl; /* equal up to the shorter one: it comes first */
}

static void dkey_sort(dkey_t *v, size_t n)
{
        while (n > 16) {
                /* median of three as the pivot, then Hoare partition */
                dkey_t *m = &v[n / 2], *l = &v[n - 1], t;
                if (dkey_less(m, v))
                        t = *m, *m = *v, *v = t;
                if (dkey_less(l, m)) {
                        t = *l, *l = *m, *m = t;
                        if (dkey_less(m, v))
                                t = *m, *m = *v, *v = t;
                }
                dkey_t pivot = *m;
                size_t i = 0, j = n - 1;
                for (;;) {
                        while (dkey_less(&v[i], &pivot))
                                i++;
                        while (dkey_less(&pivot, &v[j]))
                                j--;
                        if (i >= j)
                                break;
                        t = v[i], v[i] = v[j], v[j] = t;
                        i++, j--;
                }
                /* [0, j] and [j + 1, n): recurse into the smaller, loop on the larger */
                if (j + 1 < n - j - 1) {
                        dkey_sort(v, j + 1);
                        v += j + 1;
                        n -= j + 1;
                } else {
                        dkey_sort(v + j + 1, n - j - 1);
                        n = j + 1;
                }
        }
        for (size_t i = 1; i < n; i++) {
                dkey_t x = v[i];
                size_t j = i;
                for (; j > 0 && dkey_less(&x, &v[j - 1]); j--)
                        v[j] = v[j - 1];
                v[j] = x;
        }
}

/* A scan of committed keys merged with the dirty entries of the same range, which are newer. */
struct state_scan {
        int (*cb)(void *, const void *, size_t, const void *, size_t);
        void *opaque;
        ent_t **d; /* dirty entries of the range, in key order */
        size_t nd, di;
        int n, stop;
};

static int full_key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
        int c = memcmp(a, b, al < bl ? al : bl);
        return c ? c : (al > bl) - (al < bl);
}

static int visit_ent(struct state_scan *ss, const ent_t *e)
{
        if (!(e->flags & ENT_PRESENT))
                return 0; /* deleted in the batch */
        ss->n++;
        return ss->stop = ss->cb(ss->opaque, e->buf + 5, e->klen - 5, e->buf + e->klen, e->vlen);
}

/* Visits the dirty entries that sort before @p k (all of them when k is NULL). */
static int visit_dirty_below(struct state_scan *ss, const char *k, size_t kl)
{
        while (ss->di < ss->nd) {
                const ent_t *e = ss->d[ss->di];
                if (k && full_key_cmp(e->buf, e->klen, k, kl) >= 0)
                        return 0;
                ss->di++;
                if (visit_ent(ss, e))
                        return 1;
        }
        return 0;
}

static int state_visit(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        struct state_scan *ss = opaque;
        if (visit_dirty_below(ss, k, kl))
                return 1;
        if (ss->di < ss->nd) {
                const ent_t *e = ss->d[ss->di];
                if (!full_key_cmp(e->buf, e->klen, k, kl)) {
                        ss->di++;
                        return visit_ent(ss, e); /* the batch's value replaces RocksDB's */
                }
        }
        ss->n++;
        return ss->stop = ss->cb(ss->opaque, (const char *)k + 5, kl - 5, v, vl);
}

int eddy__state_scan(eddy_state_t *st, int32_t partition, const void *prefix, size_t plen,
                     int (*cb)(void *, const void *, size_t, const void *, size_t), void *opaque)
{
        size_t kl;
        const char *k = state_key(st, partition, prefix, plen, &kl);
        char *lo = eddy__xrealloc(NULL, kl), *hi = eddy__xrealloc(NULL, kl);
        memcpy(lo, k, kl);
        memcpy(hi, k, kl);
        /* upper bound: the prefix + 1 (carrying over 0xff bytes) */
        size_t hil = kl;
        while (hil > 0 && (unsigned char)hi[hil - 1] == 0xff)
                hil--;
        if (hil > 0)
                hi[hil - 1]++;
        struct state_scan ss = {cb, opaque, NULL, 0, 0, 0, 0};
        size_t cap = 0;
        for (size_t i = 0; i < st->ndirty; i++) {
                ent_t *e = st->dirty[i];
                if (e->klen >= kl && !memcmp(e->buf, lo, kl)) {
                        if (ss.nd == cap) {
                                cap = cap ? cap * 2 : 16;
                                ss.d = eddy__xrealloc(ss.d, cap * sizeof(*ss.d));
                        }
                        ss.d[ss.nd++] = e;
                }
        }
        if (ss.nd > 1)
                qsort(ss.d, ss.nd, sizeof(*ss.d), ent_key_cmp);
        int r = range_scan(st, lo, kl, hil ? hi : NULL, hil, state_visit, &ss);
        if (r >= 0) {
                if (!ss.stop)
                        visit_dirty_below(&ss, NULL, 0);
                r = ss.n;
        }
        free(ss.d);
        free(lo);
        free(hi);
        return r;
}

void eddy_state_drop_partition(eddy_state_t *st, int32_t partition)
{
        unsigned char lo[5], hi[5], fk[5];
        lo[0] = EDDY_NS_STATE;
        put_be32(lo + 1, (uint32_t)partition);
        memcpy(hi, lo, 5);
        /* next partition number, or the next namespace after the last one */
        if ((uint32_t)partition == 0xffffffffu) {
                hi[0] = EDDY_NS_STATE + 1;
                memset(hi + 1, 0, 4);
        } else {
                put_be32(hi + 1, (uint32_t)partition + 1);
        }
        rocksdb_writebatch_delete_range(st->wb, (const char *)lo, 5, (const char *)hi, 5);
        fk[0] = EDDY_NS_FENCE;
        put_be32(fk + 1, (uint32_t)partition);
        rocksdb_writebatch_delete(st->wb, (const char *)fk, 5);
        st->wb_ops += 2;
        /* forget the partition's cached entries, dirty or not */
        size_t kept = 0;
        for (size_t i = 0; i < st->ndirty; i++) {
                ent_t *e = st->dirty[i];
                if (memcmp(e->buf, lo, 5) != 0) {
                        e->dpos = (uint32_t)kept;
                        st->dirty[kept++] = e;
                }
        }
        st->ndirty = kept;
        for (size_t i = 0; i < st->nslots; i++) {
                ent_t *e = st->slots[i].e;
                if (e && e->klen >= 5 && memcmp(e->buf, lo, 5) == 0) {
                        st->bytes -= ent_bytes(e);
                        st->nents--;
                        free(e);
                        st->slots[i].e = NULL;
                }
        }
        table_rebuild(st, st->nslots);
        /* from here on (and after the commit) the partition is empty: reads are misses */
        *part_slot(st, (uint32_t)partition) = PART_COMPLETE;
}

int eddy_state_pending(const eddy_state_t *st)
{
        return st->ndirty > 0 || st->wb_ops > 0;
}

eddy_state_txn_t *eddy_state_prepare(eddy_state_t *st)
{
        /* in key order, so that each memtable insert starts next to the previous one */
        if (st->ndirty > st->dsort_cap) {
                st->dsort_cap = st->ndirty * 2;
                free(st->dsort);
                st->dsort = eddy__xrealloc(NULL, st->dsort_cap * sizeof(*st->dsort));
        }
        for (size_t i = 0; i < st->ndirty; i++) {
                ent_t *e = st->dirty[i];
                st->dsort[i] =
                    (dkey_t){key_word(e->buf, e->klen, 0), key_word(e->buf, e->klen, 8), e};
        }
        dkey_sort(st->dsort, st->ndirty);
        for (size_t i = 0; i < st->ndirty; i++) {
                ent_t *e = st->dsort[i].e;
                if (e->flags & ENT_PRESENT)
                        rocksdb_writebatch_put(st->wb, e->buf, e->klen, e->buf + e->klen, e->vlen);
                else
                        rocksdb_writebatch_delete(st->wb, e->buf, e->klen);
                e->flags &= ~ENT_DIRTY;
        }
        st->stats.commits++;
        st->stats.committed_keys += (int64_t)st->ndirty;
        st->ndirty = 0;
        eddy_state_txn_t *t = eddy__xrealloc(NULL, sizeof(*t));
        *t = (eddy_state_txn_t){st->wb, st->puts, st->nputs, st->dones, st->ndones};
        st->puts = NULL;
        st->nputs = st->puts_cap = 0;
        st->dones = NULL;
        st->ndones = st->dones_cap = 0;
        st->wb = rocksdb_writebatch_create();
        st->wb_ops = 0;
        return t;
}

int eddy_state_write(eddy_state_t *st, eddy_state_txn_t *t, char *errstr, size_t errstr_size)
{
        char *err = NULL;
        int rc = obx_append(st, t, errstr, errstr_size);
        if (rc == 0) {
                rocksdb_write(st->db, st->wopts, t->wb, &err);
                if (err)
                        rc = copy_err(err, "state commit failed", errstr, errstr_size);
                else
                        obx_release(st, t);
        }
        rocksdb_writebatch_destroy(t->wb);
        free(t->puts);
        free(t->dones);
        free(t);
        return rc;
}

int eddy_state_over_budget(const eddy_state_t *st)
{
        return st->bytes > st->budget;
}

void eddy_state_evict(eddy_state_t *st)
{
        cache_evict(st);
}

int eddy_state_commit(eddy_state_t *st, char *errstr, size_t errstr_size)
{
        if (eddy_state_write(st, eddy_state_prepare(st), errstr, errstr_size))
                return -1;
        cache_evict(st);
        return 0;
}

static void prop(eddy_state_t *st, const char *name, char *out, size_t size)
{
        char *v = rocksdb_property_value(st->db, name);
        snprintf(out, size, "%s", v ? v : "?");
        free(v);
}

void eddy_state_stats(eddy_state_t *st, eddy_state_stats_t *s)
{
        *s = st->stats;
        s->cache_entries = (int64_t)st->nents;
        s->cache_bytes = (int64_t)st->bytes;
        prop(st, "rocksdb.estimate-num-keys", s->rocksdb_keys, sizeof(s->rocksdb_keys));
        prop(st, "rocksdb.estimate-live-data-size", s->rocksdb_live_bytes,
             sizeof(s->rocksdb_live_bytes));
        prop(st, "rocksdb.cur-size-all-mem-tables", s->memtables_bytes, sizeof(s->memtables_bytes));
}

int eddy_state_dump(eddy_state_t *st,
                    int (*cb)(void *opaque, const void *k, size_t kl, const void *v, size_t vl),
                    void *opaque)
{
        char lo[1] = {0};
        return range_scan(st, lo, 0, NULL, 0, cb, opaque);
}
