"""test_cdc_fanout.py: cdc-fanout against a real dev broker, redis-server and the bulk test server.

A simulated database makes a change history over three tables (a snapshot phase overlapping the
stream, inserts, updates, deletes with tombstones, primary-key changes, a truncate, duplicates
from a connector restart) as Debezium would publish it; the model here keeps the database's
final rows and each row's last change position. At the end, every sink must hold exactly the
final rows: Redis hashes, the search index's documents and versions, the derived topics
compacted by key.
"""
import json
import os
import random
import re
import subprocess
import time

import harness
from bulk_server import BulkServer
from confluent_kafka import Consumer, TopicPartition

SERVER = "dbserver1.inventory"
TABLES = {  # table: (partitions, primary key columns)
    "customers": (4, ("id",)),
    "orders": (4, ("id",)),
    "order_lines": (1, ("order_id", "line_no")),  # truncated: one partition, as Debezium makes
}
JOB = "cdc-job"
GROUP = "eddy-" + JOB
DLQ = JOB + ".dlq"
PREFIX = "cdc"
ROUTES = {
    "customers": {"exclude": ["secret"], "rename": {"email": "mail"}},
    "order_lines": {"sinks": ["redis", "topic", "warehouse"]},
}
T0 = 1700000000000


def topic(t):
    return "%s.%s" % (SERVER, t)


def dumps(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


class Db:
    """The source database: rows, and the changes Debezium would publish for them."""

    def __init__(self, seed):
        self.rnd = random.Random(seed)
        self.rows = {t: {} for t in TABLES}  # table -> pk tuple -> (columns: [(name, raw)], lsn)
        self.lsn = 10_000_000
        self.next_id = {t: 1 for t in TABLES}

    def tick(self):
        self.lsn += self.rnd.randint(1, 50)
        return self.lsn

    def new_row(self, t, pk):
        r = self.rnd
        if t == "customers":
            name = r.choice(["Ann", "Bo", "Chloé", 'Dan "the man"', "Eve:1", "Fu\\bar", "Gül"])
            cols = [("id", dumps(pk[0])), ("name", dumps(name + str(r.randrange(100)))),
                    ("email", dumps("u%d@example.com" % r.randrange(10**6))),
                    ("balance", "%d.%02d" % (r.randrange(10000), r.randrange(100))),
                    ("vip", dumps(r.random() < 0.2)),
                    ("note", "null" if r.random() < 0.5 else dumps("n%d" % r.randrange(99))),
                    ("tags", dumps(["t%d" % r.randrange(5), "x"])),
                    ("secret", dumps("s%d" % r.randrange(10**9)))]
        elif t == "orders":
            cols = [("id", dumps(pk[0])), ("customer_id", dumps(r.randrange(1, 500))),
                    ("status", dumps(r.choice(["new", "paid", "shipped"]))),
                    ("total", "%d.%d" % (r.randrange(1000), r.randrange(10)))]
        else:
            cols = [("order_id", dumps(pk[0])), ("line_no", dumps(pk[1])),
                    ("sku", dumps("sku-%d" % r.randrange(1000))), ("qty", dumps(r.randrange(1, 9)))]
        return cols

    def fresh_pk(self, t):
        i = self.next_id[t]
        self.next_id[t] += 1
        if t == "order_lines":
            return (1000 + i // 4, i % 4)
        return (i,)

    @staticmethod
    def key_json(t, pk, wrapped):
        names = TABLES[t][1]
        payload = "{" + ",".join("%s:%s" % (dumps(n), dumps(v)) for n, v in zip(names, pk)) + "}"
        if not wrapped:
            return payload
        schema = {"type": "struct", "optional": False, "fields": [{"field": n, "type": "int32"} for n in names]}
        return '{"schema":%s,"payload":%s}' % (dumps(schema), payload)

    @staticmethod
    def image(cols):
        return "{" + ",".join("%s:%s" % (dumps(n), raw) for n, raw in cols) + "}"

    def event(self, t, op, pk, before, after, lsn, snapshot=False):
        """(topic, key, value) of a change; customers use the JsonConverter's schema wrapper."""
        wrapped = t == "customers"
        src = {"version": "2.1.0.Final", "connector": "postgresql", "name": "dbserver1",
               "ts_ms": T0 + lsn, "snapshot": "true" if snapshot else "false", "db": "inventory",
               "schema": "public", "table": t, "txId": lsn // 7,
               "lsn": lsn, "sequence": dumps([str(lsn - 1), str(lsn)])}
        env = '{"before":%s,"after":%s,"source":%s,"op":"%s","ts_ms":%d}' % (
            self.image(before) if before else "null", self.image(after) if after else "null",
            dumps(src), op, T0 + lsn + 5)
        if wrapped:
            env = '{"schema":{"type":"struct","name":"dbserver1.inventory.customers.Envelope"},"payload":%s}' % env
        key = self.key_json(t, pk, wrapped) if pk is not None else None
        return (topic(t), key, env)

    def tombstone(self, t, pk):
        return (topic(t), self.key_json(t, pk, t == "customers"), None)


def make_history(seed, initial=1500, changes=30000):
    """(records, db): records in publication order; db holds the final rows."""
    db = Db(seed)
    r = db.rnd
    for t in TABLES:
        for _ in range(initial if t != "order_lines" else initial // 2):
            pk = db.fresh_pk(t)
            db.rows[t][pk] = (db.new_row(t, pk), db.tick())
    snap_lsn = db.tick()
    snapshot = [db.event(t, "r", pk, None, cols, snap_lsn, snapshot=True)
                for t in TABLES for pk, (cols, _) in sorted(db.rows[t].items())]
    for t in TABLES:  # the snapshot's position is the rows' position until they change
        for pk in db.rows[t]:
            db.rows[t][pk] = (db.rows[t][pk][0], snap_lsn)
    stream = []
    truncate_at = changes // 2
    for i in range(changes):
        if i == truncate_at:
            lsn = db.tick()
            stream.append(db.event("order_lines", "t", None, None, None, lsn))
            db.rows["order_lines"].clear()
            continue
        t = r.choice(list(TABLES))
        rows = db.rows[t]
        kind = r.random()
        if not rows or kind < 0.3:  # insert
            pk = db.fresh_pk(t)
            lsn = db.tick()
            cols = db.new_row(t, pk)
            rows[pk] = (cols, lsn)
            stream.append(db.event(t, "c", pk, None, cols, lsn))
        elif kind < 0.8:  # update
            pk = r.choice(list(rows))
            old = rows[pk][0]
            cols = db.new_row(t, pk)
            lsn = db.tick()
            rows[pk] = (cols, lsn)
            stream.append(db.event(t, "u", pk, old, cols, lsn))
        elif kind < 0.95 or t != "orders":  # delete, then its tombstone
            pk = r.choice(list(rows))
            old = rows.pop(pk)[0]
            lsn = db.tick()
            stream.append(db.event(t, "d", pk, old, None, lsn))
            stream.append(db.tombstone(t, pk))
        else:  # primary-key change: delete of the old key, tombstone, create of the new one
            pk = r.choice(list(rows))
            old = rows.pop(pk)[0]
            npk = db.fresh_pk(t)
            cols = [("id", dumps(npk[0]))] + old[1:]
            lsn = db.tick()
            stream.append(db.event(t, "d", pk, old, None, lsn))
            stream.append(db.tombstone(t, pk))
            lsn = db.tick()
            rows[npk] = (cols, lsn)
            stream.append(db.event(t, "c", npk, None, cols, lsn))
    # the snapshot overlaps the stream: its reads interleave with the first changes
    records, si, ti = [], 0, 0
    overlap = len(stream) // 3
    while si < len(snapshot) or ti < len(stream):
        if si < len(snapshot) and (ti >= overlap or r.random() < 0.6):
            records.append(snapshot[si])
            si += 1
        else:
            records.append(stream[ti])
            ti += 1
    # Debezium's at-least-once: after a connector restart, a stretch published again; and
    # single duplicates
    a = r.randrange(len(records) // 2, len(records) - 2000)
    records += records[a:a + 1500]
    for _ in range(300):
        records.insert(r.randrange(len(records)), records[r.randrange(len(records))])
    return records, db


def bad_records():
    """(topic, key, value, reason) records that must land in the DLQ."""
    t = topic("orders")
    ok_src = '"source":{"lsn":5,"table":"orders"}'
    return [
        (t, '{"id":1}', "not json", "json"),
        (t, '{"id":1}', '{"before":null,"after":{"id":1},' + ok_src + "}", "missing_op"),
        (t, '{"id":1}', '{"before":null,"after":{"id":1},' + ok_src + ',"op":"x"}', "unknown_op"),
        (t, None, '{"before":null,"after":{"id":1},' + ok_src + ',"op":"c"}', "missing_key"),
        (t, '[1]', '{"before":null,"after":{"id":1},' + ok_src + ',"op":"c"}', "bad_key"),
        (t, '{"id":1}', '{"before":null,"after":{"id":1},"source":{"table":"orders"},"op":"c"}',
         "bad_position"),
        (t, '{"id":1}', '{"before":null,"after":null,' + ok_src + ',"op":"u"}', "missing_after"),
        (t, '{"id":1}', '{"schema":{},"payload":[1]}', "envelope"),
    ]


def project(t, cols):
    route = ROUTES.get(t, {})
    out = []
    for n, raw in cols:
        if n in route.get("exclude", []):
            continue
        out.append((route.get("rename", {}).get(n, n), raw))
    return out


def redis_text(raw):
    v = json.loads(raw)
    return v if isinstance(v, str) else raw


def pk_text(pk):
    return ":".join(str(x) for x in pk)


def expected(db):
    redis, search, topics = {}, {}, {}
    for t in TABLES:
        sinks = ROUTES.get(t, {}).get("sinks", ["redis", "search", "warehouse", "topic"])
        for pk, (cols, lsn) in db.rows[t].items():
            p = project(t, cols)
            if "redis" in sinks:
                redis["%s:%s" % (t, pk_text(pk))] = {n: redis_text(raw) for n, raw in p if raw != "null"}
            doc = json.loads(Db.image(p))
            if "search" in sinks:
                search.setdefault(t, {})[pk_text(pk)] = (lsn, doc)
            if "topic" in sinks:
                topics.setdefault(t, {})[pk_text(pk)] = doc
    return redis, search, topics


def redis_rows(r):
    out = {}
    for t in TABLES:
        for k in r.scan_iter(match=t + ":*", count=10000):
            out[k.decode()] = {f.decode(): v.decode() for f, v in r.hgetall(k).items()}
    return out


def compacted(bootstrap, t):
    out = {}
    for _, _, k, v, _ in harness.consume_all(bootstrap, "%s.%s" % (PREFIX, t), timeout_s=60, missing_ok=True):
        if v is None:
            out.pop(k.decode(), None)
        else:
            out[k.decode()] = json.loads(v)
    return out


def produce(bootstrap, records):
    """Produces (topic, key, value) records in order (keys hash to their partitions)."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": "lz4", "linger.ms": 20,
                  "enable.idempotence": True, "partitioner": "murmur2_random"})
    for t, k, v in records:
        while True:
            try:
                p.produce(t, key=k.encode() if k is not None else None,
                          value=v.encode() if v is not None else None)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0


def caught_up(bootstrap, group):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic(t), p) for t, (n, _) in TABLES.items() for p in range(n)]
        highs = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        got = c.committed(tps, timeout=10)
        return all(tp.offset == highs[(tp.topic, tp.partition)] for tp in got)
    finally:
        c.close()


def write_job(tmp, broker, redis_url, search_url, **extra):
    job = {
        "processor": "cdc-fanout",
        "job.name": JOB,
        "input.topics": ["^dbserver1\\.inventory\\..*"],
        "state.dir": os.path.join(tmp, "state"),
        "state.sync": False,
        "batch.max.events": 2000,
        "batch.max.ms": 50,
        "redis.url": redis_url,
        "search.url": search_url,
        "topic.prefix": PREFIX,
        "routes": ROUTES,
        "warehouse": "lake",
        "warehouse.dir": os.path.join(tmp, "lake"),
        "warehouse.roll.ms": 0,
        "kafka": {"bootstrap.servers": broker.bootstrap, "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500},
    }
    job.update(extra)
    path = os.path.join(tmp, "cdc.json")
    with open(path, "w") as fp:
        json.dump(job, fp, indent=2)
    return path


def check_sinks(db, r, srv, bootstrap, check_topics=True):
    want_redis, want_search, want_topics = expected(db)
    got = redis_rows(r)
    wrong = [k for k in want_redis if got.get(k) != want_redis[k]]
    extra = [k for k in got if k not in want_redis]
    assert not wrong and not extra, "redis: %d wrong/missing (e.g. %s: %s vs %s), %d extra (e.g. %s)" % (
        len(wrong), wrong[:1], got.get(wrong[0]) if wrong else None,
        want_redis.get(wrong[0]) if wrong else None, len(extra), extra[:3])
    for t in TABLES:
        live = {i: (v, d) for i, (v, d) in srv.live(t).items()}
        want = want_search.get(t, {})
        bad = [i for i in set(want) | set(live) if live.get(i) != want.get(i)]
        assert not bad, "search index %s: %d documents differ (e.g. %s: %s vs %s)" % (
            t, len(bad), bad[0], live.get(bad[0]), want.get(bad[0]))
        if check_topics:
            got_t = compacted(bootstrap, t)
            want_t = want_topics.get(t, {})
            bad = [i for i in set(want_t) | set(got_t) if got_t.get(i) != want_t.get(i)]
            assert not bad, "topic %s.%s: %d keys differ (e.g. %s: %s vs %s)" % (
                PREFIX, t, len(bad), bad[0], got_t.get(bad[0]), want_t.get(bad[0]))


def test_cdc_crash_restart_outage_backfill(eddy, tmp):
    topics = {topic(t): n for t, (n, _) in TABLES.items()}
    topics[DLQ] = 1
    broker = harness.DevBroker(eddy, topics, tmp)
    redis = harness.Redis(tmp)
    srv = BulkServer()
    records, db = make_history(seed=3)
    rnd = random.Random(5)
    bad = bad_records()
    for t, k, v, _ in bad:
        records.insert(rnd.randrange(len(records)), (t, k, v))
    job = write_job(tmp, broker, redis.url, srv.url)

    waves = 11
    chunk = (len(records) + waves - 1) // waves
    for w in range(waves):
        produce(broker.bootstrap, records[w * chunk:(w + 1) * chunk])
        proc = harness.Proc([eddy, "run", "cdc-fanout", "-c", job], tmp, "crash%d" % w)
        if w == 4:
            # the search index goes away for a while: delivery waits, nothing is lost
            srv.mode = "503"
            harness.wait_until(lambda: "retrying in" in proc.log() or srv.refused > 0, 60, 0.2,
                               "the job to retry the search index")
            time.sleep(2)
            srv.mode = "ok"
        time.sleep(rnd.uniform(2.5, 5.0))
        assert proc.running(), "job died:\n" + proc.log()[-3000:]
        proc.kill()
    proc = harness.Proc([eddy, "run", "cdc-fanout", "-c", job], tmp, "final")
    harness.wait_until(lambda: caught_up(broker.bootstrap, GROUP), 180, 1.0, "cdc-fanout to catch up")
    assert proc.term() == 0, proc.log()[-3000:]
    log = proc.log()
    assert srv.refused > 0
    # After 10 kills and a clean stop, every outbox entry is done: the segment files left over
    # by the kills are gone, at most the last one appended to is left (docs/architecture.md).
    segs = [f for f in os.listdir(os.path.join(tmp, "state", "outbox")) if f.endswith(".seg")]
    assert len(segs) <= 1, segs

    check_sinks(db, redis.client(), srv, broker.bootstrap)

    # every bad record is in the DLQ with its reason, the others are not
    reasons = {}
    for rec in harness.consume_all(broker.bootstrap, DLQ, timeout_s=30):
        h = {k: (v.decode() if v is not None else None) for k, v in (rec[4] or [])}
        reasons[(h["eddy.src.topic"], int(h["eddy.src.partition"]), int(h["eddy.src.offset"]))] = \
            h["eddy.reason"]
    assert sorted(reasons.values()) == sorted(b[3] for b in bad), (reasons, log[-2000:])

    # The change log in the lake: one row per applied change, none twice.
    rows = read_lake(os.path.join(tmp, "lake"))
    ids = [(x["_topic"], x["_partition"], x["_offset"], x["_seq"]) for x in rows]
    assert len(ids) == len(set(ids)), "duplicate warehouse rows"
    truncs = [x for x in rows if x["op"] == "t"]
    assert len(truncs) == 1 and truncs[0]["table"] == "order_lines"
    last = {}
    for x in sorted(rows, key=lambda x: (x["table"], x["pk"], x["version"])):
        last[(x["table"], x["pk"])] = x
    for t in ("customers", "orders"):  # the last change of each final row is in the log
        for pk, (cols, lsn) in db.rows[t].items():
            x = last[(t, pk_text(pk))]
            assert x["version"] == lsn and x["op"] in "cur", (t, pk, x)
            assert json.loads(x["after"]) == json.loads(Db.image(project(t, cols)))

    # A backfill from earliest into fresh state, a fresh Redis db and a fresh index: the same.
    srv2 = BulkServer()
    url1 = redis.url.rsplit("/", 1)[0] + "/1"
    p = subprocess.run([eddy, "run", "cdc-fanout", "-c", job, "--from", "earliest", "--until", "end",
                        "-X", "state.dir=" + os.path.join(tmp, "state2"), "-X", "redis.url=" + url1,
                        "-X", "search.url=" + srv2.url, "-X", "warehouse=off", "--no-progress"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    check_sinks(db, redis.client(db=1), srv2, broker.bootstrap, check_topics=True)
    srv.stop()
    srv2.stop()


def read_lake(root):
    import avro.datafile
    import avro.io
    rows = []
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".avro") and not f.startswith("."):
                with open(os.path.join(d, f), "rb") as fp:
                    rows += list(avro.datafile.DataFileReader(fp, avro.io.DatumReader()))
    return rows


def test_cdc_config_errors(eddy, tmp):
    def run(*args):
        return subprocess.run([eddy] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    st = ["-X", "state.dir=" + os.path.join(tmp, "s"), "-X", "kafka.bootstrap.servers=127.0.0.1:1"]
    p = run("run", "cdc-fanout", "-X", 'routes={"t":{"sinks":["fax"]}}', *st)
    assert p.returncode == 2 and "fax" in p.stderr, p.stderr
    p = run("run", "cdc-fanout", "-X", "table.from=nowhere", *st)
    assert p.returncode == 2 and "table.from" in p.stderr, p.stderr
    p = run("run", "cdc-fanout", "-X", "search.url=ftp://x", *st)
    assert p.returncode == 2 and "search.url" in p.stderr, p.stderr
    p = run("cdc-fanout", "--list-config")
    assert p.returncode == 0 and "topic.prefix" in p.stdout and "search.url" in p.stdout
    # a pattern that matches no topic: a clear error
    broker = harness.DevBroker(eddy, {"other": 1}, tmp)
    p = run("run", "cdc-fanout", "-X", "kafka.bootstrap.servers=" + broker.bootstrap,
            "-X", "state.dir=" + os.path.join(tmp, "s2"), "-X", "kafka.timeout.ms=5000")
    assert p.returncode == 1 and "matches no topic" in p.stderr, p.stderr


# ---------------------------------------------------------------- Debezium Avro

def _avro_table_schemas(t):
    """(key schema, envelope schema) as Debezium's Avro converter registers them for table t,
    with decimal.handling.mode=string (decimals as strings)."""
    cols = {
        "customers": [("id", "int"), ("name", "string"), ("email", "string"),
                      ("balance", "string"), ("vip", "boolean"), ("note", ["null", "string"]),
                      ("tags", {"type": "array", "items": "string"}), ("secret", "string")],
        "orders": [("id", "int"), ("customer_id", "int"), ("status", "string"),
                   ("total", "string")],
        "order_lines": [("order_id", "int"), ("line_no", "int"), ("sku", "string"),
                        ("qty", "int")],
    }[t]
    ns = "dbserver1.inventory." + t
    key = {"type": "record", "name": "Key", "namespace": ns,
           "fields": [{"name": n, "type": "int"} for n in TABLES[t][1]]}
    value = {"type": "record", "name": "Value", "namespace": ns,
             "fields": [{"name": n, "type": ty} for n, ty in cols]}
    source = {"type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
              "fields": [{"name": "version", "type": "string"},
                         {"name": "connector", "type": "string"},
                         {"name": "name", "type": "string"}, {"name": "ts_ms", "type": "long"},
                         {"name": "snapshot", "type": ["null", "string"], "default": None},
                         {"name": "db", "type": "string"}, {"name": "schema", "type": "string"},
                         {"name": "table", "type": "string"},
                         {"name": "txId", "type": ["null", "long"], "default": None},
                         {"name": "lsn", "type": ["null", "long"], "default": None},
                         {"name": "sequence", "type": ["null", "string"], "default": None}]}
    env = {"type": "record", "name": "Envelope", "namespace": ns,
           "fields": [{"name": "before", "type": ["null", value], "default": None},
                      {"name": "after", "type": ["null", "Value"], "default": None},
                      {"name": "source", "type": source}, {"name": "op", "type": "string"},
                      {"name": "ts_ms", "type": ["null", "long"], "default": None}]}
    return json.dumps(key), json.dumps(env)


def test_cdc_debezium_avro_same_as_json(eddy, tmp):
    """The change history as Debezium's Avro converter writes it (Confluent wire format, keys and
    values, per-table envelope schemas in the registry, decimals as strings): the sinks hold the
    final rows, as with JSON."""
    import io
    import struct

    import avro.io
    import avro.schema
    from registry import SchemaRegistry

    records, db = make_history(seed=4, initial=300, changes=4000)
    reg = SchemaRegistry()
    enc = {}
    for t in TABLES:
        ks, vs = _avro_table_schemas(t)
        enc[t] = (avro.schema.parse(ks), reg.register(topic(t) + "-key", ks),
                  avro.schema.parse(vs), reg.register(topic(t) + "-value", vs))

    def framed(schema, sid, datum):
        buf = io.BytesIO()
        avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
        return b"\x00" + struct.pack(">I", sid) + buf.getvalue()

    def decimals_as_text(raw_obj_text):
        # the JSON text of a row, its decimals kept as their source text (strings in Avro)
        return json.loads(re.sub(r'"(balance|total)":([0-9.]+)', r'"\1":"\2"', raw_obj_text))

    out = []
    for tp, k, v in records:
        t = tp.rsplit(".", 1)[1]
        kschema, kid, vschema, vid = enc[t]
        key = None
        if k is not None:
            kd = json.loads(k)
            key = framed(kschema, kid, kd.get("payload", kd))
        if v is None:
            out.append((tp, key, None))
            continue
        e = decimals_as_text(v)
        e = e.get("payload", e) if "schema" in e and "op" not in e else e
        src = dict(e["source"])
        src = {f.name: src.get(f.name) for f in vschema.fields[2].type.fields}
        datum = {"before": e["before"], "after": e["after"], "source": src, "op": e["op"],
                 "ts_ms": e["ts_ms"]}
        out.append((tp, key, framed(vschema, vid, datum)))

    tps = {topic(t): n for t, (n, _) in TABLES.items()}
    tps[DLQ] = 1
    broker = harness.DevBroker(eddy, tps, tmp)
    redis = harness.Redis(tmp)
    srv = BulkServer()
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "lz4",
                  "linger.ms": 20, "enable.idempotence": True, "partitioner": "murmur2_random"})
    for tp, k, v in out:  # a row's Avro key is always the same bytes: one partition per row
        p.produce(tp, key=k, value=v)
    assert p.flush(60) == 0
    job = write_job(tmp, broker, redis.url, srv.url, **{
        "input.format": "confluent", "input.key.format": "confluent",
        "schema.registry.url": reg.url, "warehouse": "off"})
    run = subprocess.run([eddy, "run", "cdc-fanout", "-c", job, "--from", "earliest", "--until",
                          "end", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "dead_lettered=0" in run.stderr, run.stderr[-2000:]

    # the model's final rows with decimals as strings, as the Avro run carries them
    class AvroDb:
        rows = {t: {pk: ([(n, dumps(raw) if n in ("balance", "total") else raw)
                          for n, raw in cols], lsn)
                         for pk, (cols, lsn) in db.rows[t].items()} for t in TABLES}
    check_sinks(AvroDb, redis.client(), srv, broker.bootstrap)
    srv.stop()
    reg.down()
