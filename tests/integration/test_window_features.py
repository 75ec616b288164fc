"""test_window_features.py: window-features against a real dev broker and redis-server.

Every check compares Redis (and the dead-letter topics) with wf_model.py, an independent model
of docs/window-features.md computed here from the records produced.

Three jobs read the same ~210k activity records (8 partitions, ~3.5 h of event time):
  clean    runs while the records are produced (paced over ~60 s) and to the end, never killed;
  crash    SIGKILLed at >= 10 random moments while it consumes, restarted each time, its Redis
           server stopped for a few seconds once;
  backfill `--from earliest --until end` into a fresh state dir and Redis db, bigger batches.
All three Redis snapshots must be identical, and equal to the model; distinct values above
exact_max are HyperLogLog estimates, checked as wf_model.HLL_* says (each within 25%, at most 1%
of them beyond 12%, mean and rms of the relative errors bounded). Each dead-letter topic must
hold exactly the model's rejected records (the crash run's de-duplicated by eddy.src).

    /usr/bin/python3 tests/run.py --build build --integration-only --only window_features
    /usr/bin/python3 tests/integration/test_window_features.py --model-only   # no processes
"""
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import wf_model  # noqa: E402

TOPIC = "activity"
PARTITIONS = 8
LATENESS = 120000
PREFIX = "feat:"
TTL_MS = 7 * 86400 * 1000
T0 = 1700000000000 + 12345  # not aligned to any slide
SPAN = int(3.5 * 3600 * 1000)
FAR = T0 + SPAN + 10 * 3600 * 1000  # the ts of malformed records: would move the clock far ahead
JOBS = {"clean": "wf-clean", "crash": "wf-crash", "backfill": "wf-backfill"}
KILLS = 10
PRODUCE_S = 60.0

FEATURES = [
    {"name": "clicks", "agg": "count", "types": "click", "windows": ["1m", "150s", "1h"]},
    {"name": "events", "agg": "count", "windows": ["1h/5m", "2h"]},
    {"name": "likes", "agg": "count", "types": ["like"], "windows": ["1d"]},
    {"name": "watch", "agg": "sum", "types": ["watch"], "windows": ["5m", "1h", "3h"]},
    {"name": "vavg", "agg": "avg", "types": ["watch", "like"], "windows": ["5m", "1h/1m"]},
    {"name": "vmin", "agg": "min", "types": ["watch", "like"], "windows": ["5m"]},
    {"name": "vmax", "agg": "max", "types": ["watch", "like"], "field": "value",
     "windows": ["5m", "30m/30s"]},
    {"name": "items", "agg": "distinct", "types": ["view", "click"], "windows": ["1h", "3h"],
     "exact_max": 30},
    {"name": "items_x", "agg": "distinct", "field": "item_id", "types": "view",
     "windows": ["10m"]},
    {"name": "recent", "agg": "last_n", "n": 5, "windows": ["30m"]},
    {"name": "last", "agg": "last_n", "types": ["like"], "n": 3},
]


# ---------------------------------------------------------------- the records

def part_of(key):
    return zlib.crc32(key) % PARTITIONS


def final_clock(p):
    return T0 + SPAN + 5000 + 777 * p


def _obj(fields, rnd):
    """JSON object text from (name, json text) pairs, compact or spaced, order sometimes mixed."""
    fields = list(fields)
    if rnd.random() < 0.2:
        rnd.shuffle(fields)
    if rnd.random() < 0.2:
        return "{ " + ", ".join('"%s": %s' % kv for kv in fields) + " }"
    return "{" + ",".join('"%s":%s' % kv for kv in fields) + "}"


class Gen:
    """Seeded activity records; tracks each partition's clock as the contract defines it, to
    aim late events and window-boundary events precisely (the model recomputes it all)."""

    TYPES = (("click", 0.33), ("view", 0.30), ("watch", 0.15), ("like", 0.10), ("share", 0.05),
             (None, 0.07))

    def __init__(self, seed, n=200000):
        self.rnd = rnd = random.Random(seed)
        self.n = n
        users = []  # (json text, weight)
        for k in range(15):
            users.append(('"h%d"' % k, 40.0))  # heavy: hundreds of items an hour -> HyperLogLog
        for k in range(2600):
            w = min(rnd.paretovariate(2.0), 8.0)
            users.append((str(100000 + k) if k % 5 == 0 else '"u%d"' % k, w))
        users.append(('"m0"', 6.0))  # values of 1e15: numbers printed with %g
        users.append(('"m1"', 6.0))
        users.append(('"w' + "x" * 255 + '"', 2.0))  # a 256-byte entity: allowed
        self.users = [u for u, _ in users]
        self.cum = []
        acc = 0.0
        for _, w in users:
            acc += w
            self.cum.append(acc)
        self.early = ['"e%d"' % k for k in range(300)]  # only in the first 20 min, never like
        self.clock = [None] * PARTITIONS
        self.out = []  # (partition, key, value bytes, intent)
        self.seq = 0
        self.m_done = set()
        self.base = T0
        # events exactly on, and 1 ms before, the lower bound of every window at the final clock
        feats = wf_model.parse_features(FEATURES)
        self.inject = []  # (trigger base time, partition, ts, type)
        for p in range(PARTITIONS):
            for f in feats:
                if not f.windows:
                    continue
                t = sorted(f.types)[0] if f.types else "share"
                for w in f.windows:
                    lo = w.lower(final_clock(p))
                    for ts in (lo, lo, lo - 1, lo - 1):
                        self.inject.append((lo, p, ts, t))
        self.inject.sort()

    @staticmethod
    def key_of(utext):
        return utext.strip('"').encode()

    def pick_user(self, base):
        rnd = self.rnd
        if base < T0 + 20 * 60000 and rnd.random() < 0.25:
            return rnd.choice(self.early), True
        return rnd.choices(self.users, cum_weights=self.cum)[0], False

    def item(self):
        rnd = self.rnd
        idx = int(2000 * rnd.random() ** 2)
        if idx < 300 and rnd.random() < 0.25:
            return str(idx)  # an integer id
        return '"i%d"' % idx

    def num(self, user, etype=None):
        rnd = self.rnd
        if (user in ('"m0"', '"m1"') and user not in self.m_done and etype == "watch"
                and self.base > T0 + SPAN - (1500000 if user == '"m0"' else 3000000)):
            self.m_done.add(user)
            return "1e15" if user == '"m0"' else "1000000000000000"
        r = rnd.random()
        if r < 0.65 or user in ('"m0"', '"m1"'):
            return str(rnd.randint(-20, 400))
        q = rnd.randrange(-40, 2000) / 4
        if r < 0.95:
            return repr(q)  # 12.25, 3.0
        return "%.6e" % q  # 1.225000e+01

    def event(self, user, etype, ts, item=None, extra=()):
        rnd = self.rnd
        self.seq += 1
        fields = [("event_id", '"e%d"' % self.seq), ("user_id", user)]
        if etype is not None:
            fields.append(("type", '"%s"' % etype))
        fields.append(("item_id", item or self.item()))
        if etype in ("watch", "like"):
            fields.append(("value", self.num(user, etype)))
        else:
            r = rnd.random()
            if r < 0.3:
                fields.append(("value", self.num(user)))
            elif r < 0.45:
                fields.append(("value", '"abc"'))  # not read by any feature the event matches
            elif r < 0.6:
                fields.append(("value", "null"))
        fields.append(("ts", str(ts)))
        fields.extend(extra)
        return _obj(fields, rnd).encode()

    def emit(self, user, raw, intent, ts=None):
        key = self.key_of(user)
        p = part_of(key)
        self.out.append((p, key, raw, intent))
        if intent == "ok":
            self.clock[p] = ts if self.clock[p] is None else max(self.clock[p], ts)

    def pick_type(self, early):
        rnd = self.rnd
        r = rnd.random()
        for t, w in self.TYPES:
            r -= w
            if r < 0:
                break
        if early and t == "like":
            t = "click"
        return t

    def generate(self):
        rnd = self.rnd
        bad_at = sorted(rnd.sample(range(self.n), len(BAD)))
        bad_i = 0
        big_at = rnd.randrange(self.n)
        inj = 0
        for i in range(self.n):
            base = self.base = T0 + i * SPAN // self.n
            while inj < len(self.inject) and self.inject[inj][0] <= base:
                _, p, ts, t = self.inject[inj]
                inj += 1
                while True:
                    u = rnd.choices(self.users, cum_weights=self.cum)[0]
                    if part_of(self.key_of(u)) == p:
                        break
                assert self.clock[p] is None or ts >= self.clock[p] - LATENESS
                self.emit(u, self.event(u, t, ts), "ok", ts)
            while bad_i < len(bad_at) and bad_at[bad_i] == i:
                u = rnd.choices(self.users, cum_weights=self.cum)[0]
                intent, raw = BAD[bad_i]
                bad_i += 1
                self.out.append((part_of(self.key_of(u)), self.key_of(u), raw, intent))
            user, early = self.pick_user(base)
            p = part_of(self.key_of(user))
            clock = self.clock[p]
            etype = self.pick_type(early)
            r = rnd.random()
            if clock is not None and r < 0.004:
                ts = clock - LATENESS - 1 - (0 if rnd.random() < 0.2 else rnd.randrange(600000))
                self.emit(user, self.event(user, etype, ts), "late")
                continue
            if clock is not None and r < 0.012:
                ts = clock - LATENESS  # the oldest ts still accepted
            else:
                if r < 0.10:
                    ts = base - rnd.randrange(0, 180000)  # out of order, up to 3 min back
                else:
                    ts = base + rnd.randrange(-300, 300)
                if rnd.random() < 0.3:
                    ts -= ts % 1000  # whole seconds: many events right on slide steps
                if clock is not None:
                    ts = max(ts, clock - LATENESS)
            extra = ()
            if i == big_at:
                extra = (("blob", '"' + "b" * (1 << 20) + '"'),)  # a valid 1 MB event
            self.emit(user, self.event(user, etype, ts, extra=extra), "ok", ts)
            if rnd.random() < 0.03:  # same user, same ts: last_n breaks the tie by offset
                self.emit(user, self.event(user, self.pick_type(early), ts), "ok", ts)
        assert bad_i == len(BAD)
        for p in range(PARTITIONS):  # each partition ends exactly at its planned clock
            while True:
                u = rnd.choices(self.users, cum_weights=self.cum)[0]
                if part_of(self.key_of(u)) == p:
                    break
            assert self.clock[p] < final_clock(p)
            self.emit(u, self.event(u, "click", final_clock(p)), "ok", final_clock(p))
        return self.out


def _bad():
    def ev(**kw):
        return json.dumps(kw, separators=(",", ":")).encode()
    base = dict(event_id="x", user_id="u1", type="click", item_id="i1", ts=FAR)

    def mod(drop=(), **kw):
        d = dict(base)
        d.update(kw)
        for k in drop:
            del d[k]
        return ev(**d)
    return [
        ("json", b"not json"),
        ("json", b'{"user_id":"u1","type":"click","item_id":"i1","ts":17'),
        ("json", b""),
        ("json", b"[1,2,3]"),
        ("json", b"null"),
        ("json", b'"a string"'),
        ("json", b"\xff\xfe{}"),
        ("json", b'{"user_id":"u\xff","type":"click","item_id":"i1","ts":%d}' % FAR),
        ("json", b'{"user_id":"u1","type":"watch","item_id":"i1","value":NaN,"ts":%d}' % FAR),
        ("json", b'{"user_id":"u1","type":"click","item_id":"i1","ts":%d}{}' % FAR),
        ("missing_field", mod(drop=("ts",))),
        ("bad_field", mod(ts=str(FAR))),
        ("bad_field", mod(ts=-5)),
        ("bad_field", mod(ts=FAR + 0.5)),
        ("missing_field", mod(drop=("user_id",))),
        ("bad_field", mod(user_id="")),
        ("bad_field", mod(user_id=["u1"])),
        ("bad_field", mod(user_id="y" * 257)),
        ("bad_field", mod(user_id="a\x00b")),
        ("bad_field", mod(user_id=True)),
        ("bad_field", mod(user_id=2.5)),
        ("missing_field", mod(type="watch")),  # a sum feature's value missing
        ("bad_field", mod(type="watch", value="")),  # an empty value
        ("bad_field", mod(type="watch", value="12")),
        ("bad_field", mod(type="like", value=True)),
        ("bad_field", mod(type="like", value=[1])),
        ("missing_field", mod(type="view", drop=("item_id",))),
        ("missing_field", mod(drop=("type", "item_id"))),  # untyped: `recent` reads item_id
        ("bad_field", mod(type="view", item_id=1.5)),
        ("bad_field", mod(item_id={"a": 1})),
        ("bad_field", mod(type="share", item_id=False)),
        ("bad_field", mod(user_id="z" * (1 << 20))),  # a 1 MB value
    ]


BAD = _bad()


def build_model(records, positions=None):
    """The model over records (partition, key, value, intent) at their (partition, offset)."""
    parts = {p: [] for p in range(PARTITIONS)}
    nxt = [0] * PARTITIONS
    for i, (p, _, raw, _) in enumerate(records):
        if positions is None:
            off = nxt[p]
            nxt[p] += 1
        else:
            assert positions[i][0] == p
            off = positions[i][1]
        parts[p].append((off, raw))
    return wf_model.Model(parts, FEATURES, lateness_ms=LATENESS, prefix=PREFIX)


def check_intents(records, model):
    """The generator's intent for every record equals the model's verdict (checks both)."""
    nxt = [0] * PARTITIONS
    wrong = []
    for p, _, raw, intent in records:
        off = nxt[p]
        nxt[p] += 1
        got = model.rejected.get((p, off), "ok")
        if got != intent:
            wrong.append((p, off, intent, got, raw[:100]))
    assert not wrong, "generator and model disagree: %s" % wrong[:5]


def model_stats(model):
    from collections import Counter
    reasons = Counter(model.rejected.values())
    approx = sum(len(a) for a in model.approx.values())
    ents = sum(len(r.events) for r in model.parts.values())
    fields = Counter()
    for h in model.hashes.values():
        for f, v in h.items():
            if "e+" in v:
                fields["exponent"] += 1
            elif "." in v and len(v) > 12:
                fields["long-number"] += 1
            if v == "0":
                fields["zero"] += 1
            if v == "[]":
                fields["empty-list"] += 1
    # events exactly on / just below a window's lower bound at the final clock
    edge = Counter()
    for p, r in model.parts.items():
        for fi, f in enumerate(model.features):
            for fname, w in f.fields():
                if w is None:
                    continue
                lo = w.lower(r.clock)
                for evs in r.events.values():
                    for ts, _, ev in evs:
                        if f.matches(ev["type"]):
                            if ts == lo:
                                edge["on lower bound"] += 1
                            elif ts == lo - 1:
                                edge["1 ms below"] += 1
    return ("rejected %s; entities %d, in Redis %d (absent %d); approximate fields %d; %s; %s"
            % (dict(reasons), ents, len(model.hashes), ents - len(model.hashes), approx,
               dict(fields), dict(edge)))


# ---------------------------------------------------------------- processes

def write_job(tmp, broker, redis_url, job_name, **extra):
    job = {
        "processor": "window-features",
        "job.name": job_name,
        "input.topics": [TOPIC],
        "state.dir": os.path.join(tmp, "state-" + job_name),
        "state.sync": False,
        "batch.max.events": 2000,
        "batch.max.ms": 50,
        "redis.url": redis_url,
        "features": FEATURES,
        "allowed.lateness.ms": LATENESS,
        "redis.ttl.ms": TTL_MS,
        "kafka": {"bootstrap.servers": broker.bootstrap, "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500},
    }
    job.update(extra)
    path = os.path.join(tmp, job_name + ".json")
    with open(path, "w") as fp:
        json.dump(job, fp, indent=2)
    return path


def fence_progress(redis, job):
    """Records of TOPIC the job has delivered to Redis, by its fences (docs/architecture.md:
    hash eddy:fence:<job>:<topics>:<partition>, field pos = the last offset read); 0 when
    Redis does not answer."""
    try:
        r = redis.client(socket_timeout=2)
        total = 0
        for k in r.scan_iter(match="eddy:fence:%s:*" % job, count=1000):
            pos = r.hget(k, "pos")
            if pos is not None:
                total += int(pos) + 1
        return total
    except Exception:
        return 0


def watermarks(bootstrap, topic=TOPIC):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wf-wm-probe"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in range(PARTITIONS)}
    finally:
        c.close()


def committed(bootstrap, group):
    """The group's committed offsets {partition: offset} (0 for none)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in got}
    finally:
        c.close()


def committed_all(bootstrap, group, highs):
    return committed(bootstrap, group) == highs


class Producer(threading.Thread):
    """Produces the records in chunks, paced over about `seconds`; positions[i] is where record
    i landed."""

    def __init__(self, bootstrap, records, seconds):
        super().__init__(daemon=True)
        self.bootstrap, self.records, self.seconds = bootstrap, records, seconds
        self.positions = [None] * len(records)
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            from confluent_kafka import Producer as KP
            p = KP({"bootstrap.servers": self.bootstrap, "compression.type": "lz4",
                    "linger.ms": 20, "enable.idempotence": True, "message.max.bytes": 4 << 20,
                    "queue.buffering.max.messages": 1000000})
            pos = self.positions
            errors = []

            chunks = 100
            size = (len(self.records) + chunks - 1) // chunks
            t0 = time.monotonic()
            for c in range(chunks):
                for i in range(c * size, min(len(self.records), (c + 1) * size)):
                    part, key, value, _ = self.records[i]

                    def cb(err, msg, i=i):
                        if err is not None:
                            errors.append(err)
                        else:
                            pos[i] = (msg.partition(), msg.offset())
                    while True:
                        try:
                            p.produce(TOPIC, value=value, key=key, partition=part, on_delivery=cb)
                            break
                        except BufferError:
                            p.poll(0.05)
                p.poll(0)
                target = t0 + (c + 1) * self.seconds / chunks
                while time.monotonic() < target:  # poll() returns early on a delivery report
                    p.poll(min(0.05, max(0.0, target - time.monotonic())))
            left = p.flush(60)
            assert left == 0 and not errors, "produce: %d left, errors %s" % (left, errors[:3])
            assert all(x is not None for x in pos)
        except BaseException as e:  # reported by the test thread
            self.error = e
        finally:
            self.done.set()


def snapshot(r):
    """{key: {field: value}}, {key: [fields in order]}, {key: encoding}, {key: pttl}."""
    keys = sorted(r.scan_iter(match=PREFIX + "*", count=10000))
    h, order, enc, ttl = {}, {}, {}, {}
    for i in range(0, len(keys), 500):
        pipe = r.pipeline(transaction=False)
        chunk = keys[i:i + 500]
        for k in chunk:
            pipe.hgetall(k)
            pipe.object("encoding", k)
            pipe.pttl(k)
        res = pipe.execute()
        for j, k in enumerate(chunk):
            ks = k.decode()
            d = res[3 * j]
            h[ks] = {f.decode(): v.decode() for f, v in d.items()}
            order[ks] = [f.decode() for f in d]
            e = res[3 * j + 1]
            enc[ks] = e.decode() if isinstance(e, bytes) else e
            ttl[ks] = res[3 * j + 2]
    return h, order, enc, ttl


def dead_letters(bootstrap, topic):
    """{(partition, offset): (reason, value or None, omitted size or None)}, and the number of
    repeats (same eddy.src); a repeat that differs is an error."""
    recs = harness.consume_all(bootstrap, topic, timeout_s=60, missing_ok=True)
    out, repeats, problems = {}, 0, []
    for rec in recs:
        hd = {k: (v.decode() if v is not None else None) for k, v in rec[4]}
        src = (int(hd.get("eddy.src.partition", -1)), int(hd.get("eddy.src.offset", -1)))
        if hd.get("eddy.src.topic") != TOPIC or "eddy.src" not in hd:
            problems.append("dead letter without proper eddy.src headers: %s" % hd)
        item = (hd.get("eddy.reason"), rec[3], hd.get("eddy.value.omitted"))
        if src in out:
            repeats += 1
            if out[src] != item:
                problems.append("dead letter %s repeated differently: %s vs %s"
                                % (src, out[src][0], item[0]))
            continue
        out[src] = item
    return out, repeats, problems


def check_dead_letters(name, got, model, raw_at, problems, once, repeats):
    want = model.rejected
    if once and repeats:
        problems.append("%s: %d dead letters repeated (a run without crashes sends each once)"
                        % (name, repeats))
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in set(want) & set(got) if got[k][0] != want[k])
    for k in missing[:10]:
        problems.append("%s: no dead letter for %s (model: %s) value %r"
                        % (name, k, want[k], raw_at[k][:120]))
    for k in extra[:10]:
        problems.append("%s: unexpected dead letter for %s reason %s, value %r"
                        % (name, k, got[k][0], raw_at.get(k, b"?")[:120]))
    for k in wrong[:10]:
        problems.append("%s: dead letter %s has reason %s, model says %s; value %r"
                        % (name, k, got[k][0], want[k], raw_at[k][:120]))
    if len(missing) > 10 or len(extra) > 10 or len(wrong) > 10:
        problems.append("%s: %d missing, %d extra, %d with a wrong reason in all"
                        % (name, len(missing), len(extra), len(wrong)))
    for k in sorted(set(want) & set(got)):
        reason, value, omitted = got[k]
        raw = raw_at[k]
        if omitted is not None:
            if omitted != str(len(raw)) or value:
                problems.append("%s: dead letter %s: eddy.value.omitted=%s for a %d-byte record"
                                % (name, k, omitted, len(raw)))
        elif (value or b"") != raw:
            problems.append("%s: dead letter %s: value differs from the record" % (name, k))


def compare_snapshot(name, snap, model, problems, limit=40):
    h, order, enc, ttl = snap
    bad, soft, errs = wf_model.compare(model.hashes, model.approx, h)
    for key, field, e, g in bad[:limit]:
        if field is None:
            problems.append("%s: key %s: expected %s, got %s" % (
                name, key, "absent" if e is None else json.dumps(e),
                "absent" if g is None else json.dumps(g)))
        else:
            problems.append("%s: %s field %s: expected %r, got %r%s [%s]" % (
                name, key, field, e, g,
                " (approximate)" if field in model.approx.get(key, ()) else "",
                model.explain(key, field)))
    if len(bad) > limit:
        problems.append("%s: %d mismatches in all (first %d above)" % (name, len(bad), limit))
    problems.extend("%s: %s" % (name, x) for x in wf_model.hll_verdict(soft, errs))
    print("  %s: %s" % (name, wf_model.hll_summary(soft, errs)))
    canon = model.field_order()
    misordered = [k for k in h if k in model.hashes and enc.get(k) in ("listpack", "ziplist")
                  and order[k] != [f for f in canon if f in h[k]]]
    if misordered:
        problems.append("%s: %d hashes not in features-then-windows order, e.g. %s: %s"
                        % (name, len(misordered), misordered[0], order[misordered[0]]))
    bad_ttl = [k for k, t in ttl.items() if not (0 < t <= TTL_MS)]
    if bad_ttl:
        problems.append("%s: %d keys without a TTL in (0, redis.ttl.ms], e.g. %s: %s"
                        % (name, len(bad_ttl), bad_ttl[0], ttl[bad_ttl[0]]))
    return len(bad)


def test_window_features_crash_backfill_model(eddy, tmp):
    timings = []
    t_start = last = time.monotonic()

    def lap(what, detail=""):
        nonlocal last
        now = time.monotonic()
        timings.append("%s %.1fs" % (what, now - last))
        print("  [%6.1fs] %s (%.1fs)%s" % (now - t_start, what, now - last,
                                           ": " + detail if detail else ""), flush=True)
        last = now

    p = subprocess.run([eddy, "window-features", "--list-config"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    for k in ("features", "entity.field", "allowed.lateness.ms", "late.policy", "idle.advance.ms",
              "redis.prefix", "redis.ttl.ms", "output.topic", "max.id.bytes"):
        assert k in p.stdout, "--list-config lacks %s" % k

    records = Gen(seed=20240611).generate()
    model = build_model(records)
    check_intents(records, model)
    assert len(records) >= 200000
    lap("generate + model", "%d records; %s" % (len(records), model_stats(model)))

    dlqs = {name + ".dlq": 1 for name in JOBS.values()}
    broker = harness.DevBroker(eddy, dict({TOPIC: PARTITIONS}, **dlqs), tmp)
    os.makedirs(os.path.join(tmp, "redis-a"))
    os.makedirs(os.path.join(tmp, "redis-b"))
    redis_a = harness.Redis(os.path.join(tmp, "redis-a"))  # clean (db 0) and backfill (db 1)
    redis_b = harness.Redis(os.path.join(tmp, "redis-b"))  # crash (db 0), stopped once
    url_b = redis_b.url
    job_clean = write_job(tmp, broker, redis_a.url, JOBS["clean"])
    job_crash = write_job(tmp, broker, url_b, JOBS["crash"])
    lap("broker and redis up")

    prod = Producer(broker.bootstrap, records, PRODUCE_S)
    prod.start()
    clean = harness.Proc([eddy, "run", "window-features", "-c", job_clean], tmp, "clean")
    rnd = random.Random(5)
    kills = 0
    cycle = 0
    lags = []  # records produced but not committed by the crash job, right after each kill
    resumed = []  # records the crash job had committed to its state when it started, per cycle
    at_kill = []  # records the crash job had delivered to Redis (its fences) when killed
    while kills < KILLS or not prod.done.is_set():
        outage = cycle == 4
        if outage:
            redis_b.client().shutdown(save=True)  # its data comes back from the dump
        proc = harness.Proc([eddy, "run", "window-features", "-c", job_crash], tmp,
                            "crash%d" % cycle)
        if outage:
            harness.wait_until(lambda: "waiting for redis" in proc.log(), 60, 0.2,
                               "the crash job to report that it waits for redis")
            time.sleep(3)
            redis_b.restart()
            harness.wait_until(lambda: "delivery resumed" in proc.log(), 60, 0.2,
                               "the crash job to resume delivery once redis is back")
        harness.wait_until(lambda: "assigned" in proc.log() or not proc.running(), 60, 0.1,
                           "the crash job to be assigned (cycle %d)" % cycle)
        time.sleep(0.05)
        resumed.append(sum(int(m) for m in re.findall(r"assigned %s/\d+ from offset (\d+)" % TOPIC,
                                                     proc.log())))
        # Kill once its Redis fences show it past a random point of this cycle's tenth of the
        # stream (so the kills spread over the whole stream, each with records still to
        # read), or after a random 1..8 s at the latest.
        target = len(records) * (min(cycle, 9) + rnd.uniform(0.1, 0.9)) / 10.5
        deadline = time.monotonic() + rnd.uniform(1.0, 8.0)
        while time.monotonic() < deadline and fence_progress(redis_b, JOBS["crash"]) < target:
            time.sleep(0.05)
        time.sleep(rnd.uniform(0.0, 0.2))
        at_kill.append(fence_progress(redis_b, JOBS["crash"]))
        assert proc.running(), "crash job died:\n" + proc.log()[-3000:]
        assert clean.running(), "clean job died:\n" + clean.log()[-3000:]
        proc.kill()
        kills += 1
        cycle += 1
        hi = {q: h for q, (_, h) in watermarks(broker.bootstrap).items()}
        lags.append(sum(hi.values()) - sum(committed(broker.bootstrap,
                                                     "eddy-" + JOBS["crash"]).values()))
    prod.join()
    if prod.error:
        raise prod.error
    lap("produce + crash loop", "%d SIGKILLs of the crash job at %s records delivered; it "
        "resumed at %s; its group offsets lagged by %s records at the kills"
        % (kills, at_kill, resumed, lags))

    positions = prod.positions
    if any(positions[i][1] != off for i, off in enumerate(_predicted_offsets(records))):
        model = build_model(records, positions)  # offsets other than predicted: recompute
    raw_at = {positions[i]: records[i][2] for i in range(len(records))}
    wm = watermarks(broker.bootstrap)
    highs = {q: hi for q, (lo, hi) in wm.items()}
    assert all(lo == 0 for lo, _ in wm.values()), "the broker dropped records: %s" % wm

    final = harness.Proc([eddy, "run", "window-features", "-c", job_crash], tmp, "crash-final")
    harness.wait_until(lambda: "assigned" in final.log(), 60, 0.2, "the final crash job to join")
    harness.wait_until(lambda: committed_all(broker.bootstrap, "eddy-" + JOBS["crash"], highs),
                       180, 0.5, "the crash job to catch up")
    assert final.term() == 0, final.log()[-3000:]
    harness.wait_until(lambda: committed_all(broker.bootstrap, "eddy-" + JOBS["clean"], highs),
                       180, 0.5, "the clean job to catch up")
    rc = clean.term()
    assert rc == 0, "clean stop must exit 0, got %s\n%s" % (rc, clean.log()[-3000:])
    lap("crash and clean jobs caught up")
    snap_clean = snapshot(redis_a.client(db=0))
    snap_crash = snapshot(redis_b.client(db=0))

    url_bf = redis_a.url.rsplit("/", 1)[0] + "/1"
    p = subprocess.run([eddy, "run", "window-features", "-c", job_clean, "--from", "earliest",
                        "--until", "end", "-X", "job.name=" + JOBS["backfill"],
                        "-X", "state.dir=" + os.path.join(tmp, "state-backfill"),
                        "-X", "redis.url=" + url_bf, "-X", "batch.max.events=20000",
                        "-X", "batch.max.ms=500", "--no-progress"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    snap_bf = snapshot(redis_a.client(db=1))
    lap("backfill")

    problems = []
    n_bad = {}
    for name, snap in (("clean", snap_clean), ("crash", snap_crash), ("backfill", snap_bf)):
        n_bad[name] = compare_snapshot(name, snap, model, problems)
    for name, snap in (("crash", snap_crash), ("backfill", snap_bf)):
        if snap[0] != snap_clean[0]:
            diff = sorted(k for k in set(snap[0]) | set(snap_clean[0])
                          if snap[0].get(k) != snap_clean[0].get(k))
            problems.append("%s differs from clean in %d keys, e.g. %s: %s vs %s" % (
                name, len(diff), diff[0], snap[0].get(diff[0]), snap_clean[0].get(diff[0])))
    for name in ("clean", "crash", "backfill"):
        got, repeats, probs = dead_letters(broker.bootstrap, JOBS[name] + ".dlq")
        problems += ["%s: %s" % (name, x) for x in probs]
        check_dead_letters(name, got, model, raw_at, problems, once=(name != "crash"),
                           repeats=repeats)
        print("  %s: %d keys, %d mismatches with the model; %d dead letters (%d repeats)"
              % (name, len({"clean": snap_clean, "crash": snap_crash, "backfill": snap_bf}[name][0]),
                 n_bad[name], len(got), repeats))
    lap("checks")
    print("  timings: %s; total %.1fs" % (", ".join(timings), time.monotonic() - t_start))
    assert not problems, "%d problems:\n  %s" % (len(problems), "\n  ".join(problems))


def _predicted_offsets(records):
    nxt = [0] * PARTITIONS
    out = []
    for p, _, _, _ in records:
        out.append(nxt[p])
        nxt[p] += 1
    return out


if __name__ == "__main__":
    if "--model-only" in sys.argv:
        wf_model._selftest()
        t = time.monotonic()
        recs = Gen(seed=20240611).generate()
        t1 = time.monotonic()
        m = build_model(recs)
        t2 = time.monotonic()
        check_intents(recs, m)
        print("%d records (generated in %.1fs), model in %.1fs" % (len(recs), t1 - t, t2 - t1))
        print(model_stats(m))
        print("sizes per partition:", [sum(len(r[2]) for r in recs if r[0] == q) // 1000
                                       for q in range(PARTITIONS)], "kB")
        for k in list(m.hashes)[:3] + ["feat:h0", "feat:m0", "feat:m1"]:
            print(k[:40], m.hashes.get(k), m.approx.get(k))
    else:
        print(__doc__)
