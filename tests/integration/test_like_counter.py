"""test_like_counter.py: like-counter against a real dev broker and redis-server.

Every check compares Redis with counts computed here, independently, from the events
produced: per post, the users whose last action on it was a like.
"""
import json
import os
import random
import signal
import subprocess
import time

import harness
from confluent_kafka import Consumer, TopicPartition

PARTITIONS = 8
TOPIC = "likes"
DLQ = "likes-job.dlq"
GROUP = "eddy-likes-job"


def make_events(n, seed, posts=3000, users=400):
    """Like/unlike events with churn and exact duplicates, keyed by post_id."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        if out and rnd.random() < 0.05:
            out.append(out[rnd.randrange(len(out))])  # an exact duplicate, later
            continue
        post = "p%d" % (int(rnd.paretovariate(0.7)) % posts)
        user = "u%d" % rnd.randrange(users)
        action = "like" if rnd.random() < 0.7 else "unlike"
        ev = {"event_id": "e%d" % i, "user_id": user, "post_id": post, "action": action,
              "ts": 1700000000000 + i}
        out.append((post.encode(), json.dumps(ev, separators=(",", ":")).encode()))
    return out


def bad_records():
    """(key, value, why) records that must all land in the DLQ."""
    big = b'{"event_id":"e","user_id":"u","post_id":"' + b"x" * (1 << 20) + b'","action":"like","ts":1}'
    return [
        (b"p1", b"not json", "malformed"),
        (b"p1", b'{"event_id":"e1","user_id":"u1","post_id":"p1","action":"like","ts":1', "truncated"),
        (b"p2", b'{"event_id":"e2","user_id":"u1","action":"like","ts":1}', "missing post_id"),
        (b"p2", b'{"event_id":"e3","user_id":"u1","post_id":"p2","ts":1}', "missing action"),
        (b"p3", b'{"event_id":"e4","user_id":"u1","post_id":"p3","action":"love","ts":1}', "bad action"),
        (b"p3", b'{"event_id":"e5","user_id":["u"],"post_id":"p3","action":"like","ts":1}', "user_id array"),
        (b"p4", b'{"event_id":"e6","user_id":"u1","post_id":"p4","action":"like","ts":"x"}', "ts string"),
        (b"p4", b"", "empty"),
        (b"p5", b"[1,2,3]", "array"),
        (b"p5", b'{"event_id":"e7","user_id":"u1","post_id":"p5","action":"like","ts":1,"ts":2}', "duplicate key"),
        (b"p6", b"\xff\xfe{}", "binary"),
        (b"p6", big, "1 MB value"),
    ]


def _no_dups(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def valid_event(v):
    """The contract's validation, written independently: the event, or None."""
    try:
        e = json.loads(v, object_pairs_hook=_no_dups)
    except Exception:
        return None
    if not isinstance(e, dict):
        return None
    for f in ("event_id", "user_id", "post_id"):
        x = e.get(f)
        if isinstance(x, bool) or not isinstance(x, (str, int)) or x == "" or len(str(x)) > 256:
            return None
    if e.get("action") not in ("like", "unlike"):
        return None
    if isinstance(e.get("ts"), bool) or not isinstance(e.get("ts"), int):
        return None
    return e


def expected_counts(events):
    members = {}
    for _, v in events:
        e = valid_event(v)
        if e is None:
            continue
        s = members.setdefault(str(e["post_id"]), set())
        if e["action"] == "like":
            s.add(str(e["user_id"]))
        else:
            s.discard(str(e["user_id"]))
    return {"likes:" + p: str(len(s)) for p, s in members.items() if s}


def redis_counts(r):
    return {k.decode(): r.get(k).decode() for k in r.scan_iter(match="likes:*", count=10000)}


def write_job(tmp, broker, redis_url, name="job.json", **extra):
    job = {
        "processor": "like-counter",
        "job.name": "likes-job",
        "input.topics": [TOPIC],
        "state.dir": os.path.join(tmp, "state"),
        "state.sync": False,
        "batch.max.events": 2000,
        "batch.max.ms": 50,
        "redis.url": redis_url,
        "kafka": {"bootstrap.servers": broker.bootstrap, "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500},
    }
    job.update(extra)
    path = os.path.join(tmp, name)
    with open(path, "w") as fp:
        json.dump(job, fp, indent=2)
    return path


def committed_all(bootstrap, highs, group=GROUP):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
        return all(tp.offset == highs[tp.partition] for tp in got)
    finally:
        c.close()


def high_watermarks(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm-probe"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        c.close()


def dlq_sources(bootstrap):
    """The (topic, partition, offset) each dead letter came from, de-duplicated by eddy.src."""
    recs = harness.consume_all(bootstrap, DLQ, timeout_s=30)
    srcs = set()
    for rec in recs:
        h = {k: (v.decode() if v is not None else None) for k, v in (rec[4] or [])}
        srcs.add((h["eddy.src.topic"], int(h["eddy.src.partition"]), int(h["eddy.src.offset"])))
        assert h.get("eddy.reason"), h
    return srcs


def produce_with_positions(bootstrap, records):
    """Produces (key, value) records; returns their (partition, offset) in order."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": "lz4", "linger.ms": 20,
                  "enable.idempotence": True, "message.max.bytes": 4 << 20})
    pos = [None] * len(records)

    def dr(i):
        def cb(err, msg):
            assert err is None, err
            pos[i] = (msg.partition(), msg.offset())
        return cb
    for i, (k, v) in enumerate(records):
        while True:
            try:
                p.produce(TOPIC, key=k, value=v, on_delivery=dr(i))
                break
            except BufferError:
                p.poll(0.05)
        if i % 10000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    return pos


def run_to_end(eddy, job, broker, tmp, tag, group=GROUP):
    """Runs the job until its committed group offsets reach the high watermarks; SIGTERM."""
    highs = high_watermarks(broker.bootstrap)
    proc = harness.Proc([eddy, "run", "like-counter", "-c", job], tmp, tag)
    # the group offsets may be at the end already (a killed run got there): wait for this one
    harness.wait_until(lambda: "assigned" in proc.log(), 60, 0.2, "the job to be assigned")
    harness.wait_until(lambda: committed_all(broker.bootstrap, highs, group), 180, 1.0,
                       "like-counter to catch up (%s)" % tag)
    rc = proc.term()
    assert rc == 0, "clean stop must exit 0, got %s\n%s" % (rc, proc.log()[-3000:])
    return proc


def test_crash_restart_redis_outage_backfill(eddy, tmp):
    broker = harness.DevBroker(eddy, {TOPIC: PARTITIONS, DLQ: 1}, tmp)
    redis = harness.Redis(tmp)
    events = make_events(200000, seed=7)
    bad = bad_records()
    rnd = random.Random(11)
    # interleave the bad records at random places
    records = list(events)
    for b in bad:
        records.insert(rnd.randrange(len(records)), (b[0], b[1]))
    job = write_job(tmp, broker, redis.url)

    # Produce in waves while the job runs; SIGKILL it at random moments, 12 times.
    waves = 12
    chunk = (len(records) + waves - 1) // waves
    positions = []
    kills = 0
    for w in range(waves):
        if w == 5:
            # Redis goes away while this wave is processed, then comes back with its data.
            redis.client().shutdown(save=True)
        positions += produce_with_positions(broker.bootstrap, records[w * chunk:(w + 1) * chunk])
        proc = harness.Proc([eddy, "run", "like-counter", "-c", job], tmp, "crash%d" % w)
        if w == 5:
            harness.wait_until(lambda: "waiting for redis" in proc.log(), 30, 0.2,
                               "the job to report that it waits for redis")
            time.sleep(2)
            redis.restart()
            harness.wait_until(lambda: "delivery resumed" in proc.log(), 30, 0.2,
                               "the job to resume delivery once redis is back")
        time.sleep(rnd.uniform(2.5, 6.0))
        assert proc.running(), "job died:\n" + proc.log()[-3000:]
        proc.kill()
        kills += 1
    assert kills >= 10

    run_to_end(eddy, job, broker, tmp, "final")
    want = expected_counts(records)
    got = redis_counts(redis.client())
    assert len(want) > 1000
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in want}
    assert not missing and not extra, "mismatch: %d wrong/missing (e.g. %s), %d extra (e.g. %s)" % (
        len(missing), list(missing.items())[:3], len(extra), list(extra.items())[:3])

    # Every bad record is in the DLQ (at least once; de-duplicated by its eddy.src header).
    bad_pos = set()
    for i, rec in enumerate(records):
        if valid_event(rec[1]) is None:
            bad_pos.add((TOPIC,) + positions[i])
    assert len(bad_pos) == len(bad)
    assert dlq_sources(broker.bootstrap) == bad_pos

    # A backfill into a fresh state dir and a fresh Redis db gives the same counts.
    fresh = os.path.join(tmp, "state-backfill")
    url1 = redis.url.rsplit("/", 1)[0] + "/1"
    p = subprocess.run([eddy, "run", "like-counter", "-c", job, "--from", "earliest", "--until", "end",
                        "-X", "state.dir=" + fresh, "-X", "redis.url=" + url1, "--no-progress"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r1 = redis.client(db=1)
    assert redis_counts(r1) == want

    # Drift in Redis (lost keys, wrong values) is healed by reconciliation.
    r = redis.client()
    keys = sorted(want)
    for k in keys[:50]:
        r.delete(k)
    for k in keys[50:80]:
        r.set(k, "999999")
    r.set("likes:p-stray-not-in-state", "5")  # not ours: reconcile leaves unknown keys alone
    p = subprocess.run([eddy, "reconcile", "like-counter", "-c", job], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    report = dict(kv.split("=") for kv in p.stdout.split() if "=" in kv)
    assert int(report["redis_corrected"]) == 80, p.stdout
    assert int(report["state_corrected"]) == 0, p.stdout
    assert int(report["checked"]) >= len(want), p.stdout
    got = redis_counts(r)
    del got["likes:p-stray-not-in-state"]
    assert got == want


def test_bad_config_and_usage(eddy, tmp):
    def run(*args):
        return subprocess.run([eddy] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    bad = os.path.join(tmp, "bad.json")
    with open(bad, "w") as fp:
        json.dump({"batch.max.events": 0, "kafka": {"bootstrap.servers": "127.0.0.1:1"}}, fp)
    p = run("run", "like-counter", "-c", bad)
    assert p.returncode == 2 and "batch.max.events" in p.stderr and bad in p.stderr, p.stderr
    with open(bad, "w") as fp:
        json.dump({"no.such.key": 1}, fp)
    p = run("run", "like-counter", "-c", bad)
    assert p.returncode == 2 and "no.such.key" in p.stderr, p.stderr
    p = run("run", "like-counter", "-X", "state.sync=maybe")
    assert p.returncode == 2 and "state.sync" in p.stderr, p.stderr
    p = run("run", "no-such-processor")
    assert p.returncode == 2 and "like-counter" in p.stderr, p.stderr
    p = run("like-counter", "--list-config")
    assert p.returncode == 0 and "batch.max.events" in p.stdout and "redis.key.prefix" in p.stdout
    for proc, doc in (("like-counter", "config.md"),
                      ("window-features", "config-window-features.md"),
                      ("cdc-fanout", "config-cdc-fanout.md"),
                      ("ips-samples", "config-ips-samples.md")):
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", doc)) as fp:
            assert fp.read() == run(proc, "--list-config", "--markdown").stdout, \
                "docs/%s is stale: make docs" % doc
    p = run("--help")
    assert p.returncode == 0 and "devbroker" in p.stdout
    # An unreachable broker: a runtime error after kafka.timeout.ms, naming the topic.
    p = run("run", "like-counter", "-X", "kafka.bootstrap.servers=127.0.0.1:1", "-X",
            "kafka.timeout.ms=1500", "-X", "state.dir=" + os.path.join(tmp, "s"))
    assert p.returncode == 1 and "likes" in p.stderr and "kafka.timeout.ms" in p.stderr, p.stderr


def test_state_command_and_periodic_reconcile(eddy, tmp):
    broker = harness.DevBroker(eddy, {TOPIC: 4, DLQ: 1}, tmp)
    redis = harness.Redis(tmp)
    events = make_events(20000, seed=3, posts=200, users=50)
    positions = produce_with_positions(broker.bootstrap, events)
    job = write_job(tmp, broker, redis.url, **{"reconcile.interval.ms": 500})
    want = expected_counts(events)
    r = redis.client()
    proc = harness.Proc([eddy, "run", "like-counter", "-c", job], tmp, "periodic")
    harness.wait_until(lambda: redis_counts(r) == want, 60, 0.5, "counts to reach Redis")
    # Drift while the job runs: the job's own reconciliation heals it.
    victim = sorted(want)[0]
    r.set(victim, "12345")
    r.delete(sorted(want)[1])
    harness.wait_until(lambda: redis_counts(r) == want, 30, 0.5, "the job to heal the drift")
    assert "redis_corrected=" in proc.log()
    assert proc.term() == 0

    # eddy state: offsets are the next offsets to read, i.e. the high watermarks.
    def state(what):
        p = subprocess.run([eddy, "state", "-c", job, what], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout
    highs = {}
    for part, off in positions:
        highs[part] = max(highs.get(part, 0), off + 1)
    offs = {int(l.split("\t")[1]): int(l.split("\t")[2]) for l in state("offsets").splitlines()}
    assert offs == highs, (offs, highs)
    stats = state("stats")
    assert "outbox.pending 0" in stats, stats
    dump = state("dump")
    post = victim[len("likes:"):]
    assert ("key=c%s " % post) in dump, "the count of %s is in the dump" % post
    # The job holds a lock on its state: a second instance on the same state.dir is refused.
    proc = harness.Proc([eddy, "run", "like-counter", "-c", job], tmp, "first")
    harness.wait_until(lambda: "running" in proc.log(), 30, 0.2, "the job to start")
    p = subprocess.run([eddy, "state", "-c", job, "offsets"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 1 and "in use" in p.stderr, p.stderr
    assert proc.term() == 0
