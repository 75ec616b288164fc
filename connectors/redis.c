/* redis.c: the fenced Redis sink: absolute writes applied by a Lua script per partition.
 *
 * Each chunk of a partition's writes is one EVALSHA of FENCE_LUA with the fence key first
 * and the data keys after it (so the script also runs under Redis Cluster when all keys
 * hash to one slot). The script applies the chunk only if its (pos, seq) is above the
 * (pos, seq) stored in the fence hash, then raises the fence, all atomically. Chunks of
 * one delivery are pipelined on one connection, so they apply in order. */
#include "redis.h"

#include "eddy.h"
#include "log.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- packed hash values */

static void put_be(unsigned char *p, uint64_t v, int n)
{
        for (int i = n - 1; i >= 0; i--, v >>= 8)
                p[i] = (unsigned char)v;
}

static uint64_t get_be(const unsigned char *p, int n)
{
        uint64_t v = 0;
        for (int i = 0; i < n; i++)
                v = (v << 8) | p[i];
        return v;
}

size_t eddy_redis_hash_size(const eddy_hfield_t *fields, size_t nfields)
{
        size_t n = 8 + 4;
        for (size_t i = 0; i < nfields; i++)
                n += 4 + fields[i].nlen + 4 + fields[i].vlen;
        return n;
}

size_t eddy_redis_hash_pack(void *buf, int64_t ttl_ms, const eddy_hfield_t *fields, size_t nfields)
{
        unsigned char *p = buf;
        put_be(p, (uint64_t)ttl_ms, 8);
        put_be(p + 8, (uint64_t)nfields, 4);
        p += 12;
        for (size_t i = 0; i < nfields; i++) {
                put_be(p, (uint64_t)fields[i].nlen, 4);
                if (fields[i].nlen)
                        memcpy(p + 4, fields[i].name, fields[i].nlen);
                p += 4 + fields[i].nlen;
                put_be(p, (uint64_t)fields[i].vlen, 4);
                if (fields[i].vlen)
                        memcpy(p + 4, fields[i].val, fields[i].vlen);
                p += 4 + fields[i].vlen;
        }
        return (size_t)(p - (unsigned char *)buf);
}

/* One length-prefixed string at it->p; @returns 0, or -1 if it overruns the value. */
static int hash_str(eddy_redis_hash_iter_t *it, const char **s, size_t *len)
{
        if (it->end - it->p < 4)
                return -1;
        *len = (size_t)get_be(it->p, 4);
        if ((size_t)(it->end - it->p - 4) < *len)
                return -1;
        *s = (const char *)it->p + 4;
        it->p += 4 + *len;
        return 0;
}

/* The iterator at the first field of a value eddy_redis_hash_open() accepts (or accepted
 * before: eddy_redis_apply() checks every op before anything is sent), without walking it. */
static void hash_reopen(eddy_redis_hash_iter_t *it, const void *val, size_t vlen)
{
        it->p = (const unsigned char *)val + 12;
        it->end = (const unsigned char *)val + vlen;
        it->ttl_ms = (int64_t)get_be(val, 8);
        it->nfields = (uint32_t)get_be((const unsigned char *)val + 8, 4);
        it->i = 0;
}

int eddy_redis_hash_open(eddy_redis_hash_iter_t *it, const void *val, size_t vlen)
{
        if (!val || vlen < 12)
                return -1;
        hash_reopen(it, val, vlen);
        /* walk it once now, so that every later eddy_redis_hash_next() succeeds */
        for (uint32_t i = 0; i < it->nfields; i++) {
                const char *s;
                size_t len;
                if (hash_str(it, &s, &len) || hash_str(it, &s, &len))
                        return -1;
        }
        if (it->p != it->end)
                return -1;
        it->p = (const unsigned char *)val + 12;
        return 0;
}

int eddy_redis_hash_next(eddy_redis_hash_iter_t *it, eddy_hfield_t *f)
{
        if (it->i >= it->nfields || hash_str(it, &f->name, &f->nlen) ||
            hash_str(it, &f->val, &f->vlen))
                return 0;
        it->i++;
        return 1;
}

/* ---------------------------------------------------------------- the sink */

static const char FENCE_LUA[] =
    "local f = redis.call('HMGET', KEYS[1], 'pos', 'seq')\n"
    "local pos, seq = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "if f[1] then\n"
    "  local fp, fs = tonumber(f[1]), tonumber(f[2])\n"
    "  if pos < fp or (pos == fp and seq <= fs) then return 0 end\n"
    "end\n"
    "local a = 3\n"
    "for i = 2, #KEYS do\n"
    "  local op = ARGV[a]\n"
    "  if op == 'S' then redis.call('SET', KEYS[i], ARGV[a + 1]); a = a + 2\n"
    "  elseif op == 'D' then redis.call('DEL', KEYS[i]); a = a + 1\n"
    "  elseif op == 'H' then\n"
    "    local n = tonumber(ARGV[a + 2])\n"
    "    redis.call('DEL', KEYS[i])\n"
    /* at most 100 pairs per HSET: unpack() of a large hash fails (too many results) */
    "    for s = 0, n - 1, 100 do\n"
    "      local e = math.min(s + 100, n)\n"
    "      redis.call('HSET', KEYS[i], unpack(ARGV, a + 3 + 2 * s, a + 2 + 2 * e))\n"
    "    end\n"
    /* the text, not a Lua number: a large ttl would be sent as 1e+20 */
    "    if tonumber(ARGV[a + 1]) > 0 then redis.call('PEXPIRE', KEYS[i], ARGV[a + 1]) end\n"
    "    a = a + 3 + 2 * n\n"
    "  else return redis.error_reply('eddy: unknown op ' .. tostring(op)) end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'pos', ARGV[1], 'seq', ARGV[2])\n"
    "return 1\n";

/* The counters are read from other threads (metrics): relaxed atomics. */
#define STAT_INC(field) __atomic_fetch_add(&(field), 1, __ATOMIC_RELAXED)

struct eddy_redis_s {
        char host[256];
        int port, db;
        char password[256];
        struct timeval tv;
        char fence_prefix[512];
        const eddy_logger_t *lg;
        redisContext *c;
        char sha[48];
        /* argv scratch; nums holds the ttl and field count text of a chunk's hashes */
        const char **argv;
        size_t *argvlen;
        size_t argv_cap;
        char (*nums)[24];
        size_t nums_cap;
        char *cmd; /* one command in RESP, formatted here (hiredis' sdscatfmt per argument
                    * cost more than the Lua script's work for small hashes) */
        size_t cmd_cap;
        eddy_redis_stats_t stats;
};

static size_t fmt_u64(char *p, uint64_t v)
{
        char tmp[24];
        size_t n = 0;
        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        for (size_t i = 0; i < n; i++)
                p[i] = tmp[n - 1 - i];
        return n;
}

/* Appends argv as one RESP command to the connection's output buffer. */
static int append_argv(eddy_redis_t *r, size_t argc, const char **argv, const size_t *argvlen)
{
        size_t need = 32;
        for (size_t i = 0; i < argc; i++)
                need += 32 + argvlen[i];
        if (need > r->cmd_cap) {
                r->cmd_cap = need * 2;
                free(r->cmd);
                if (!(r->cmd = malloc(r->cmd_cap)))
                        abort();
        }
        char *p = r->cmd;
        *p++ = '*';
        p += fmt_u64(p, argc);
        *p++ = '\r';
        *p++ = '\n';
        for (size_t i = 0; i < argc; i++) {
                *p++ = '$';
                p += fmt_u64(p, argvlen[i]);
                *p++ = '\r';
                *p++ = '\n';
                if (argvlen[i])
                        memcpy(p, argv[i], argvlen[i]);
                p += argvlen[i];
                *p++ = '\r';
                *p++ = '\n';
        }
        return redisAppendFormattedCommand(r->c, r->cmd, (size_t)(p - r->cmd));
}

static int parse_url(eddy_redis_t *r, const char *url, char *errstr, size_t errstr_size)
{
        const char *p = url;
        if (strncmp(p, "redis://", 8) != 0) {
                snprintf(errstr, errstr_size,
                         "redis.url \"%s\": expected redis://[:password@]host[:port][/db]", url);
                return -1;
        }
        p += 8;
        const char *at = strrchr(p, '@');
        if (at) {
                const char *colon = memchr(p, ':', (size_t)(at - p));
                const char *pw = colon ? colon + 1 : p;
                size_t n = (size_t)(at - pw);
                if (n >= sizeof(r->password)) {
                        snprintf(errstr, errstr_size, "redis.url: password too long");
                        return -1;
                }
                memcpy(r->password, pw, n);
                r->password[n] = '\0';
                p = at + 1;
        }
        size_t hl = strcspn(p, ":/");
        if (hl == 0 || hl >= sizeof(r->host)) {
                snprintf(errstr, errstr_size, "redis.url: expected a host after redis://");
                return -1;
        }
        memcpy(r->host, p, hl);
        r->host[hl] = '\0';
        p += hl;
        r->port = 6379;
        if (*p == ':') {
                char *end;
                long port = strtol(p + 1, &end, 10);
                if (end == p + 1 || port <= 0 || port > 65535 || (*end && *end != '/')) {
                        snprintf(errstr, errstr_size, "redis.url: bad port in \"%s\"", url);
                        return -1;
                }
                r->port = (int)port;
                p = end;
        }
        if (*p == '/' && p[1]) {
                char *end;
                long db = strtol(p + 1, &end, 10);
                if (*end || db < 0 || db > 1000000) {
                        snprintf(errstr, errstr_size, "redis.url: bad database number in \"%s\"",
                                 url);
                        return -1;
                }
                r->db = (int)db;
        }
        return 0;
}

eddy_redis_t *eddy_redis_new(const char *url, int timeout_ms, const char *fence_prefix,
                             const eddy_logger_t *lg, char *errstr, size_t errstr_size)
{
        eddy_redis_t *r = calloc(1, sizeof(*r));
        if (!r)
                return NULL;
        if (parse_url(r, url, errstr, errstr_size) != 0) {
                free(r);
                return NULL;
        }
        r->tv.tv_sec = timeout_ms / 1000;
        r->tv.tv_usec = (timeout_ms % 1000) * 1000;
        snprintf(r->fence_prefix, sizeof(r->fence_prefix), "%s", fence_prefix);
        r->lg = lg;
        return r;
}

void eddy_redis_destroy(eddy_redis_t *r)
{
        if (!r)
                return;
        if (r->c)
                redisFree(r->c);
        free(r->argv);
        free(r->argvlen);
        free(r->nums);
        free(r->cmd);
        free(r);
}

static void disconnect(eddy_redis_t *r)
{
        if (r->c) {
                redisFree(r->c);
                r->c = NULL;
        }
}

/* One command, synchronously; @returns the reply or NULL (connection dropped). */
static redisReply *cmd(eddy_redis_t *r, int argc, const char **argv, const size_t *lens)
{
        redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
        if (!rep)
                return NULL;
        return rep;
}

static int connect_once(eddy_redis_t *r, char *why, size_t whysize)
{
        if (r->c)
                return 0;
        r->c = redisConnectWithTimeout(r->host, r->port, r->tv);
        if (!r->c || r->c->err) {
                snprintf(why, whysize, "connect %s:%d: %s", r->host, r->port,
                         r->c ? r->c->errstr : "out of memory");
                disconnect(r);
                return -1;
        }
        redisSetTimeout(r->c, r->tv);
        STAT_INC(r->stats.reconnects);
        redisReply *rep;
        if (r->password[0]) {
                const char *a[] = {"AUTH", r->password};
                size_t l[] = {4, strlen(r->password)};
                rep = cmd(r, 2, a, l);
                if (!rep || rep->type == REDIS_REPLY_ERROR) {
                        snprintf(why, whysize, "AUTH at %s:%d failed: %s", r->host, r->port,
                                 rep ? rep->str : r->c->errstr);
                        goto fail;
                }
                freeReplyObject(rep);
        }
        if (r->db) {
                char dbs[16];
                snprintf(dbs, sizeof(dbs), "%d", r->db);
                const char *a[] = {"SELECT", dbs};
                size_t l[] = {6, strlen(dbs)};
                rep = cmd(r, 2, a, l);
                if (!rep || rep->type == REDIS_REPLY_ERROR) {
                        snprintf(why, whysize, "SELECT %d at %s:%d failed: %s", r->db, r->host,
                                 r->port, rep ? rep->str : r->c->errstr);
                        goto fail;
                }
                freeReplyObject(rep);
        }
        const char *a[] = {"SCRIPT", "LOAD", FENCE_LUA};
        size_t l[] = {6, 4, sizeof(FENCE_LUA) - 1};
        rep = cmd(r, 3, a, l);
        if (!rep || rep->type != REDIS_REPLY_STRING) {
                snprintf(why, whysize, "SCRIPT LOAD at %s:%d failed: %s", r->host, r->port,
                         rep && rep->str ? rep->str : r->c->errstr);
                goto fail;
        }
        snprintf(r->sha, sizeof(r->sha), "%s", rep->str);
        freeReplyObject(rep);
        return 0;
fail:
        if (rep)
                freeReplyObject(rep);
        disconnect(r);
        return -1;
}

static void argv_reserve(eddy_redis_t *r, size_t n)
{
        if (n <= r->argv_cap)
                return;
        r->argv_cap = n * 2;
        r->argv = realloc(r->argv, r->argv_cap * sizeof(*r->argv));
        r->argvlen = realloc(r->argvlen, r->argv_cap * sizeof(*r->argvlen));
        if (!r->argv || !r->argvlen) {
                fputs("eddy: out of memory\n", stderr);
                abort();
        }
}

static void nums_reserve(eddy_redis_t *r, size_t n)
{
        if (n <= r->nums_cap)
                return;
        r->nums_cap = n * 2;
        r->nums = realloc(r->nums, r->nums_cap * sizeof(*r->nums));
        if (!r->nums) {
                fputs("eddy: out of memory\n", stderr);
                abort();
        }
}

/* Appends the ARGV of a hash op after its 'H' at r->argv[a]: ttl, nfields, then the field
 * and value pairs (pointing into the op's value). @returns the next argv index. */
static size_t hash_args(eddy_redis_t *r, size_t a, size_t *nn, const eddy_redis_op_t *op)
{
        eddy_redis_hash_iter_t it;
        eddy_hfield_t f;
        hash_reopen(&it, op->val, op->vlen);
        char *ttl = r->nums[(*nn)++], *nf = r->nums[(*nn)++];
        r->argv[a] = ttl;
        r->argvlen[a++] = (size_t)snprintf(ttl, sizeof(r->nums[0]), "%" PRId64, it.ttl_ms);
        r->argv[a] = nf;
        r->argvlen[a++] = (size_t)snprintf(nf, sizeof(r->nums[0]), "%" PRIu32, it.nfields);
        while (eddy_redis_hash_next(&it, &f)) {
                r->argv[a] = f.name;
                r->argvlen[a++] = f.nlen;
                r->argv[a] = f.val;
                r->argvlen[a++] = f.vlen;
        }
        return a;
}

/* Sleep with backoff; @returns non-zero if asked to stop. */
static int backoff(eddy_redis_t *r, int *attempt, const char *why, volatile sig_atomic_t *stop)
{
        int ms = 100 << (*attempt < 6 ? *attempt : 6); /* 100 ms .. 6.4 s */
        if (*attempt == 0 || *attempt % 5 == 0)
                eddy__log(r->lg, LOG_WARNING, "REDIS",
                          "waiting for redis at %s:%d (%s); retrying in %d ms, nothing is lost",
                          r->host, r->port, why, ms);
        (*attempt)++;
        STAT_INC(r->stats.retries);
        for (int waited = 0; waited < ms; waited += 50) {
                if (stop && *stop)
                        return 1;
                struct timespec ts = {0, 50 * 1000000L};
                nanosleep(&ts, NULL);
        }
        return stop && *stop;
}

/* Pipelines every chunk, then reads every reply. @returns 0, or -1 with why. */
static int apply_once(eddy_redis_t *r, int32_t partition, int64_t pos, int64_t seq_base,
                      size_t chunk_keys, const eddy_redis_op_t *ops, size_t nops, char *why,
                      size_t whysize)
{
        char fence[600], poss[24];
        snprintf(fence, sizeof(fence), "%s%" PRId32, r->fence_prefix, partition);
        snprintf(poss, sizeof(poss), "%" PRId64, pos);
        int64_t nchunks = nops == 0 ? 1 : (int64_t)((nops + chunk_keys - 1) / chunk_keys);
        char(*seqbuf)[24] = calloc((size_t)nchunks, sizeof(*seqbuf));
        if (!seqbuf)
                abort();
        size_t i = 0;
        for (int64_t ch = 0; ch < nchunks; ch++) {
                size_t n = nops - i < chunk_keys ? nops - i : chunk_keys;
                size_t argc = 6 + 3 * n, nhash = 0;
                for (size_t j = 0; j < n; j++) {
                        if (ops[i + j].op == EDDY_ROP_HASH) {
                                eddy_redis_hash_iter_t it;
                                hash_reopen(&it, ops[i + j].val, ops[i + j].vlen);
                                argc += 2 + 2 * (size_t)it.nfields;
                                nhash++;
                        }
                }
                argv_reserve(r, argc);
                nums_reserve(r, 2 * nhash);
                size_t a = 0, nn = 0;
                r->argv[a] = "EVALSHA";
                r->argvlen[a++] = 7;
                r->argv[a] = r->sha;
                r->argvlen[a++] = strlen(r->sha);
                char nk[24];
                snprintf(nk, sizeof(nk), "%zu", n + 1);
                r->argv[a] = nk;
                r->argvlen[a++] = strlen(nk);
                r->argv[a] = fence;
                r->argvlen[a++] = strlen(fence);
                for (size_t j = 0; j < n; j++) {
                        r->argv[a] = ops[i + j].key;
                        r->argvlen[a++] = ops[i + j].klen;
                }
                snprintf(seqbuf[ch], sizeof(seqbuf[ch]), "%" PRId64, seq_base + ch);
                r->argv[a] = poss;
                r->argvlen[a++] = strlen(poss);
                r->argv[a] = seqbuf[ch];
                r->argvlen[a++] = strlen(seqbuf[ch]);
                for (size_t j = 0; j < n; j++) {
                        const eddy_redis_op_t *op = &ops[i + j];
                        r->argv[a] = &op->op;
                        r->argvlen[a++] = 1;
                        if (op->op == EDDY_ROP_SET) {
                                r->argv[a] = op->val;
                                r->argvlen[a++] = op->vlen;
                        } else if (op->op == EDDY_ROP_HASH) {
                                a = hash_args(r, a, &nn, op);
                        }
                }
                if (append_argv(r, a, r->argv, r->argvlen) != REDIS_OK) {
                        snprintf(why, whysize, "%s", r->c->errstr);
                        free(seqbuf);
                        return -1;
                }
                i += n;
        }
        int rc = 0;
        for (int64_t ch = 0; ch < nchunks; ch++) {
                redisReply *rep = NULL;
                if (redisGetReply(r->c, (void **)&rep) != REDIS_OK || !rep) {
                        snprintf(why, whysize, "%s", r->c->errstr[0] ? r->c->errstr : "no reply");
                        rc = -1;
                        break;
                }
                if (rep->type == REDIS_REPLY_ERROR) {
                        /* NOSCRIPT (script cache flushed), OOM, READONLY ...: reconnect, retry */
                        snprintf(why, whysize, "%s", rep->str);
                        rc = -1;
                } else if (rep->type == REDIS_REPLY_INTEGER) {
                        if (rep->integer)
                                STAT_INC(r->stats.chunks_applied);
                        else
                                STAT_INC(r->stats.chunks_fenced);
                }
                freeReplyObject(rep);
        }
        free(seqbuf);
        return rc;
}

int eddy_redis_apply(eddy_redis_t *r, int32_t partition, int64_t pos, int64_t seq_base,
                     uint32_t chunk_keys, const eddy_redis_op_t *ops, size_t nops,
                     volatile sig_atomic_t *stop)
{
        char why[512];
        int attempt = 0;
        /* what the script would refuse, refused before anything is sent: retrying can not
         * fix it */
        for (size_t i = 0; i < nops; i++) {
                eddy_redis_hash_iter_t it;
                char op = ops[i].op;
                if (op == EDDY_ROP_SET || op == EDDY_ROP_DEL ||
                    (op == EDDY_ROP_HASH &&
                     eddy_redis_hash_open(&it, ops[i].val, ops[i].vlen) == 0))
                        continue;
                eddy__log(r->lg, LOG_ERR, "REDIS",
                          "partition %" PRId32 " at %" PRId64 ": %s op for key \"%.*s\"", partition,
                          pos, op == EDDY_ROP_HASH ? "malformed hash" : "unknown",
                          (int)(ops[i].klen < 200 ? ops[i].klen : 200), ops[i].key);
                return EDDY_ERR_REDIS;
        }
        for (;;) {
                if (connect_once(r, why, sizeof(why)) == 0 &&
                    apply_once(r, partition, pos, seq_base, chunk_keys ? chunk_keys : 1, ops, nops,
                               why, sizeof(why)) == 0) {
                        if (attempt)
                                eddy__log(r->lg, LOG_NOTICE, "REDIS",
                                          "redis at %s:%d is back; delivery resumed", r->host,
                                          r->port);
                        return 0;
                }
                disconnect(r);
                if (backoff(r, &attempt, why, stop))
                        return EDDY_ERR_STOPPED;
        }
}

int eddy_redis_get_each(eddy_redis_t *r, const eddy_redis_op_t *keys, size_t n,
                        void (*cb)(void *opaque, size_t i, const char *v, size_t vl), void *opaque,
                        volatile sig_atomic_t *stop)
{
        char why[512];
        int attempt = 0;
        for (;;) {
                int ok = connect_once(r, why, sizeof(why)) == 0;
                for (size_t i = 0; ok && i < n; i++) {
                        const char *a[] = {"GET", keys[i].key};
                        size_t l[] = {3, keys[i].klen};
                        if (redisAppendCommandArgv(r->c, 2, a, l) != REDIS_OK)
                                ok = 0;
                }
                /* read all replies first, then call back, so a failure calls nothing twice */
                redisReply **reps = ok ? calloc(n ? n : 1, sizeof(*reps)) : NULL;
                for (size_t i = 0; ok && i < n; i++) {
                        if (redisGetReply(r->c, (void **)&reps[i]) != REDIS_OK || !reps[i] ||
                            reps[i]->type == REDIS_REPLY_ERROR) {
                                snprintf(why, sizeof(why), "%s",
                                         reps[i] && reps[i]->str ? reps[i]->str : r->c->errstr);
                                ok = 0;
                        }
                }
                for (size_t i = 0; ok && i < n; i++) {
                        if (reps[i]->type == REDIS_REPLY_STRING)
                                cb(opaque, i, reps[i]->str, reps[i]->len);
                        else
                                cb(opaque, i, NULL, 0);
                }
                for (size_t i = 0; reps && i < n; i++)
                        if (reps[i])
                                freeReplyObject(reps[i]);
                free(reps);
                if (ok)
                        return 0;
                disconnect(r);
                if (backoff(r, &attempt, why, stop))
                        return EDDY_ERR_STOPPED;
        }
}

void eddy_redis_stats(const eddy_redis_t *r, eddy_redis_stats_t *s)
{
        s->chunks_applied = __atomic_load_n(&r->stats.chunks_applied, __ATOMIC_RELAXED);
        s->chunks_fenced = __atomic_load_n(&r->stats.chunks_fenced, __ATOMIC_RELAXED);
        s->retries = __atomic_load_n(&r->stats.retries, __ATOMIC_RELAXED);
        s->reconnects = __atomic_load_n(&r->stats.reconnects, __ATOMIC_RELAXED);
}
