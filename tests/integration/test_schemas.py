"""test_schemas.py: Avro inputs (Confluent wire format, schema registry) and outputs, end to end.

- like-counter and window-features read the same events once as JSON and once as Avro in the
  Confluent wire format (two writer schemas, one of them evolved): Redis must come out the same
  (and equal to test_like_counter's independent counts); window-features' output topic, in
  Avro registered under <topic>-value, must decode to the JSON run's records. Every record that
  does not decode is in the dead-letter topic, unchanged, with its reason.
- The registry goes down: records wait (nothing processed, nothing dead-lettered) and go on
  when it comes back, slow; down for longer than schema.registry.timeout.ms, records of an
  unknown id go to the dead-letter topic (registry_timeout).

Records are encoded with python3-avro, independently of eddy's encoder.
"""
import io
import json
import os
import random
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import avro.io  # noqa: E402
import avro.schema  # noqa: E402
import harness  # noqa: E402
import test_like_counter as tlc  # noqa: E402
import test_window_features as twf  # noqa: E402
from registry import SchemaRegistry  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DLQ = "schemas-job.dlq"


def schema_text(name):
    with open(os.path.join(ROOT, "schemas", name + ".avsc")) as fp:
        return fp.read()


def avro_bytes(schema, datum):
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def confluent(sid, schema, datum):
    return b"\x00" + struct.pack(">I", sid) + avro_bytes(schema, datum)


def avro_decode(writer, data):
    return avro.io.DatumReader(writer).read(avro.io.BinaryDecoder(io.BytesIO(data)))


# like_event as another producer writes it: an extra optional field, its own namespace
LIKE_V0 = json.dumps({"type": "record", "name": "LikeEvent", "namespace": "com.acme", "fields": [
    {"name": "event_id", "type": "string"}, {"name": "user_id", "type": "string"},
    {"name": "client", "type": ["null", "string"], "default": None},
    {"name": "post_id", "type": "string"},
    {"name": "action", "type": {"type": "enum", "name": "LikeAction", "symbols": ["like", "unlike"]}},
    {"name": "ts", "type": "long"}]})


def replay(eddy, job, tmp, tag, *extra):
    p = subprocess.run([eddy, "run", "like-counter" if "likes" in tag else "window-features",
                        "-c", job, "--from", "earliest", "--until", "end", "--no-progress"]
                       + list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=300)
    with open(os.path.join(tmp, tag + ".log"), "w") as fp:
        fp.write(p.stderr)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stderr


def dead_letters(bootstrap):
    """{value: reason} of the dead-letter topic, and the records' headers."""
    out = {}
    for rec in harness.consume_all(bootstrap, DLQ, timeout_s=30, missing_ok=True):
        h = {k: (v.decode() if v is not None else None) for k, v in (rec[4] or [])}
        assert h.get("eddy.src.topic") and h.get("eddy.src.offset") and h.get("eddy.processor")
        out[rec[3]] = h["eddy.reason"]
    return out


def like_job(tmp, broker, redis_url, name, topic, **extra):
    job = {
        "processor": "like-counter",
        "job.name": "schemas-job",
        "dlq.topic": DLQ,
        "input.topics": [topic],
        "state.dir": os.path.join(tmp, "state-" + name),
        "state.sync": False,
        "batch.max.events": 2000,
        "batch.max.ms": 50,
        "redis.url": redis_url,
        "kafka": {"bootstrap.servers": broker.bootstrap, "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500},
    }
    job.update(extra)
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as fp:
        json.dump(job, fp, indent=2)
    return path


def test_like_counter_confluent_same_as_json(eddy, tmp):
    broker = harness.DevBroker(eddy, {"likes": 4, "likes-json": 4, DLQ: 1}, tmp)
    redis = harness.Redis(tmp)
    reg = SchemaRegistry(user="eddy", password="s3cret")
    like_s, v0_s = avro.schema.parse(schema_text("like_event")), avro.schema.parse(LIKE_V0)
    sid = reg.register("likes-value", schema_text("like_event"))
    sid0 = reg.register("likes-value", LIKE_V0)
    events = tlc.make_events(40000, seed=5)
    rnd = random.Random(9)
    records = []
    for i, (k, v) in enumerate(events):
        e = json.loads(v)
        if i % 3 == 0:
            records.append((k, confluent(sid0, v0_s, dict(e, client="web" if i % 2 else None))))
        else:
            records.append((k, confluent(sid, like_s, e)))
    good = confluent(sid, like_s, json.loads(events[0][1]))
    like_int_s = avro.schema.parse(schema_text("like_event").replace(
        '{"type": "enum", "name": "LikeAction", "symbols": ["like", "unlike"]}', '"int"'))
    bad = [
        (b"p1", b"\x01" + good[1:], "avro_magic"),
        (b"p1", b"\x00\x00", "avro_truncated"),
        (b"p2", b"\x00" + struct.pack(">I", 999) + good[5:], "avro_unknown_schema"),
        (b"p2", good[:-3], "avro_truncated"),
        (b"p3", good + b"\x07", "avro_trailing"),
        (b"p3", b"\x00" + struct.pack(">I", sid) + avro_bytes(like_int_s, dict(
            json.loads(events[0][1]), action=5)), "avro_type"),  # enum index out of range
        (b"p4", good[:5] + b"\x7e" + good[6:], "avro_truncated"),  # event_id of 63 bytes
        (b"p4", b'{"event_id":"e","user_id":"u","post_id":"p4","action":"like","ts":1}',
         "avro_magic"),
        (b"p5", confluent(sid, like_s, dict(json.loads(events[0][1]), user_id="")), None),
        (b"p5", b"\x00" + struct.pack(">I", sid) + b"\x02x" * 300000, "too_large"),
    ]
    want_reasons = {}
    for b in bad:
        records.insert(rnd.randrange(len(records)), (b[0], b[1]))
        want_reasons[b[1]] = b[2]
    harness.produce(broker.bootstrap, "likes", records)
    harness.produce(broker.bootstrap, "likes-json", events)

    auth = {"schema.registry.url": reg.url, "schema.registry.user": "eddy",
            "schema.registry.password": "s3cret"}
    url0, url1 = redis.url.rsplit("/", 1)[0] + "/0", redis.url.rsplit("/", 1)[0] + "/1"
    t0 = time.time()
    job = like_job(tmp, broker, url0, "avro", "likes", **{"input.format": "confluent",
                                                          "input.max.bytes": 500000}, **auth)
    log = replay(eddy, job, tmp, "likes-avro")
    t_avro = time.time() - t0
    assert "s3cret" not in log
    t0 = time.time()
    replay(eddy, like_job(tmp, broker, url1, "json", "likes-json"), tmp, "likes-json")
    t_json = time.time() - t0
    print("like-counter replay of %d records: confluent %.1fs, json %.1fs"
          % (len(records), t_avro, t_json))

    want = tlc.expected_counts(events)
    got_avro, got_json = tlc.redis_counts(redis.client(db=0)), tlc.redis_counts(redis.client(db=1))
    assert len(want) > 200
    assert got_json == want
    assert got_avro == want, "%d differ" % sum(1 for k in want if got_avro.get(k) != want[k])

    # every bad record is a dead letter, unchanged, with its reason; ids asked for once
    dl = dead_letters(broker.bootstrap)
    assert set(dl) == set(want_reasons), (len(dl), len(want_reasons))
    for v, reason in want_reasons.items():
        if reason:
            assert dl[v] == reason, (v[:20], dl[v], reason)
    assert reg.gets(sid) == 1 and reg.gets(sid0) == 1 and reg.gets(999) == 1, reg.requests

    # a wrong password: the registry answers 401 until the timeout; then dead letters
    job = like_job(tmp, broker, url0, "badauth", "likes", **{
        "input.format": "confluent", "schema.registry.url": reg.url,
        "schema.registry.user": "eddy", "schema.registry.password": "Wr0ngPw",
        "schema.registry.timeout.ms": 1500, "schema.registry.backoff.ms": 200})
    log = replay(eddy, job, tmp, "likes-badauth", "-X", "dlq.topic=badauth.dlq",
                 "-X", "redis.url=" + redis.url.rsplit("/", 1)[0] + "/2")
    assert "HTTP 401" in log and "Wr0ngPw" not in log
    assert " dead_lettered=%d " % len(records) in log, log[-2000:]


def test_registry_down_delays_then_timeout(eddy, tmp):
    broker = harness.DevBroker(eddy, {"likes": 2, DLQ: 1}, tmp)
    redis = harness.Redis(tmp)
    reg = SchemaRegistry()
    like_s, v0_s = avro.schema.parse(schema_text("like_event")), avro.schema.parse(LIKE_V0)
    sid = reg.register("likes-value", schema_text("like_event"))
    reg.down()
    events = tlc.make_events(3000, seed=8)
    harness.produce(broker.bootstrap, "likes",
                    [(k, confluent(sid, like_s, json.loads(v))) for k, v in events])
    job = like_job(tmp, broker, redis.url, "down", "likes", **{
        "input.format": "confluent", "schema.registry.url": reg.url,
        "schema.registry.timeout.ms": 120000, "schema.registry.backoff.ms": 100,
        "schema.registry.backoff.max.ms": 500, "schema.registry.request.timeout.ms": 2000})
    proc = harness.Proc([eddy, "run", "like-counter", "-c", job], tmp, "down")
    harness.wait_until(lambda: "waiting for the schema registry" in proc.log(), 60, 0.2,
                       "the job to wait for the registry")
    time.sleep(3)
    r = redis.client()
    assert proc.running(), proc.log()[-3000:]
    assert not tlc.redis_counts(r), "processed while the registry was down"
    assert not dead_letters(broker.bootstrap), "dead-lettered while waiting"

    # back, but slow: everything goes through
    reg.delay = 1.0
    reg.up()
    want = tlc.expected_counts(events)
    harness.wait_until(lambda: tlc.redis_counts(r) == want, 60, 0.5, "counts after the outage")
    assert "answers again" in proc.log()
    assert not dead_letters(broker.bootstrap)
    assert proc.term() == 0

    # down for longer than the timeout, with records of an id not cached: dead letters
    reg.delay = 0.0
    reg.down()
    sid0 = reg.register("likes-value", LIKE_V0)
    late = tlc.make_events(5, seed=99)
    harness.produce(broker.bootstrap, "likes", [
        (k, confluent(sid0, v0_s, dict(json.loads(v), client=None))) for k, v in late])
    proc = harness.Proc([eddy, "run", "like-counter", "-c", job,
                         "-X", "schema.registry.timeout.ms=3000"], tmp, "timeout")
    harness.wait_until(lambda: len(dead_letters(broker.bootstrap)) == 5, 60, 0.5,
                       "5 dead letters after the timeout")
    assert set(dead_letters(broker.bootstrap).values()) == {"registry_timeout"}
    assert tlc.redis_counts(r) == want
    # the registry back: the same id resolves for new records
    reg.up()
    more = tlc.make_events(50, seed=100)
    harness.produce(broker.bootstrap, "likes", [
        (k, confluent(sid0, v0_s, dict(json.loads(v), client="x"))) for k, v in more])
    want2 = tlc.expected_counts(events + more)
    harness.wait_until(lambda: tlc.redis_counts(r) == want2, 60, 0.5, "counts after it is back")
    assert proc.term() == 0


def activity(n, seed):
    """(key, JSON bytes, Avro datum) of activity events; optional fields left out at random."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        user = "u%d" % rnd.randrange(150)
        etype = rnd.choice(["click", "view", "watch", "like", "share"])
        e = {"event_id": "e%d" % i, "user_id": user, "type": etype,
             "ts": twf.T0 + i * 300 + rnd.randrange(5000)}
        e["item_id"] = "i%d" % rnd.randrange(400)  # last_n "recent" reads it from every event
        if etype in ("watch", "like") or rnd.random() < 0.2:
            e["value"] = round(rnd.uniform(0, 300), 2)
        if etype == "share" and rnd.random() < 0.5:
            del e["type"]
        datum = {"type": None, "item_id": None, "value": None}
        datum.update(e)
        out.append((user.encode(), json.dumps(e).encode(), datum))
    return out


def test_window_features_confluent_same_as_json(eddy, tmp):
    topics = {"activity": 4, "activity-json": 4, "feat-avro": 4, "feat-json": 4, DLQ: 1}
    broker = harness.DevBroker(eddy, topics, tmp)
    redis = harness.Redis(tmp)
    reg = SchemaRegistry()
    act_s = avro.schema.parse(schema_text("activity_event"))
    sid = reg.register("activity-value", schema_text("activity_event"))
    evs = activity(20000, seed=4)
    harness.produce(broker.bootstrap, "activity-json", [(k, j) for k, j, _ in evs])
    harness.produce(broker.bootstrap, "activity", [(k, confluent(sid, act_s, d)) for k, _, d in evs])
    base = redis.url.rsplit("/", 1)[0]

    def job(name, topic, out, db, **extra):
        j = {"processor": "window-features", "job.name": "wf-" + name, "dlq.topic": DLQ,
             "input.topics": [topic], "state.dir": os.path.join(tmp, "state-" + name),
             "state.sync": False, "redis.url": "%s/%d" % (base, db), "features": twf.FEATURES,
             "allowed.lateness.ms": 600000, "output.topic": out,
             "kafka": {"bootstrap.servers": broker.bootstrap}}
        j.update(extra)
        path = os.path.join(tmp, name + ".json")
        with open(path, "w") as fp:
            json.dump(j, fp)
        return path

    replay(eddy, job("json", "activity-json", "feat-json", 1), tmp, "wf-json")
    replay(eddy, job("avro", "activity", "feat-avro", 0, **{
        "input.format": "confluent", "output.format": "confluent",
        "schema.registry.url": reg.url}), tmp, "wf-avro")
    snap_json, snap_avro = twf.snapshot(redis.client(db=1))[0], twf.snapshot(redis.client(db=0))[0]
    assert len(snap_json) >= 100
    assert snap_avro == snap_json
    assert not dead_letters(broker.bootstrap)

    # the output topic: Avro registered under feat-avro-value, the same records as the JSON run
    assert "feat-avro-value" in reg.subjects
    out_sid = reg.subjects["feat-avro-value"][0]
    writer = avro.schema.parse(reg.by_id[out_sid])
    # how many updates depends on batch boundaries; each entity's last one does not
    got, want = {}, {}
    for rec in harness.consume_all(broker.bootstrap, "feat-avro"):
        got[rec[2]] = rec[3]
    for rec in harness.consume_all(broker.bootstrap, "feat-json"):
        want[rec[2]] = rec[3]
    assert got.keys() == want.keys() and len(got) >= 100
    for key, w in want.items():
        g = got[key]
        if w is None:
            assert g is None
            continue
        assert g[0] == 0 and struct.unpack(">I", g[1:5])[0] == out_sid
        a, j = avro_decode(writer, g[5:]), json.loads(w)
        assert a["entity"] == j["entity"] and a["ts"] == j["ts"]
        assert a["features"].keys() == j["features"].keys()
        for f, v in j["features"].items():
            assert (a["features"][f] == v if isinstance(v, list)
                    else abs(a["features"][f] - float(v)) <= 1e-9 * max(1.0, abs(float(v)))), f
