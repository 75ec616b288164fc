"""test_warehouse.py: like-counter's warehouse rows in a real clickhouse-server and in the Avro
lake, through SIGKILLs and a ClickHouse restart, against rows computed here from the events.

The model (docs/warehouse.md, like-counter's tables): for each input record, in partition
order, that changes the membership set, one like_membership row (post, user, liked, event_id,
ts) and one like_count row (post, its count right after), both at the record's offset.
"""
import glob
import json
import os
import random
import re
import subprocess
import time

import harness
import test_like_counter as lc
from avro.datafile import DataFileReader
from avro.io import DatumReader

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def model_rows(records, positions):
    """(membership rows, count rows), each a sorted list of tuples ending with (partition, offset)."""
    order = sorted(range(len(records)), key=lambda i: positions[i])
    members, mrows, crows = {}, [], []
    for i in order:
        e = lc.valid_event(records[i][1])
        if e is None:
            continue
        post, user, like = str(e["post_id"]), str(e["user_id"]), e["action"] == "like"
        s = members.setdefault(post, set())
        if (user in s) == like:
            continue
        (s.add if like else s.discard)(user)
        p, off = positions[i]
        mrows.append((post, user, int(like), str(e["event_id"]), e["ts"], p, off))
        crows.append((post, len(s), e["ts"], p, off))
    return mrows, crows


def ch_rows(ch, sql):
    out = ch.query(sql + " FORMAT JSONEachRow")
    return [json.loads(l) for l in out.splitlines() if l]


def check_clickhouse(ch, mrows, crows):
    for table, want, cols in (
        ("like_membership", mrows, ("post_id", "user_id", "liked", "event_id", "ts")),
        ("like_count", crows, ("post_id", "count", "ts")),
    ):
        n, uniq = ch.query("SELECT count(), uniqExact(_partition, _offset, _seq) FROM %s FINAL"
                           % table).split()
        assert int(n) == int(uniq) == len(want), (table, n, uniq, len(want))
        # the skip of stored offsets means no duplicates even before merges
        raw = int(ch.query("SELECT count() FROM %s" % table))
        assert raw == len(want), "%s: %d rows without FINAL, %d expected" % (table, raw, len(want))
        got = ch_rows(ch, "SELECT %s, _topic, _partition, _offset FROM %s FINAL ORDER BY "
                          "_partition, _offset" % (", ".join(cols), table))
        assert all(r["_topic"] == lc.TOPIC for r in got)
        got = [tuple(int(r[c]) if c in ("liked", "ts", "count") else r[c] for c in cols)
               + (r["_partition"], int(r["_offset"])) for r in got]
        bad = [(g, w) for g, w in zip(got, want) if g != w]
        assert not bad and len(got) == len(want), "%s: first differences %s" % (table, bad[:3])


def lake_rows(root):
    """{table: [row dicts]}, checking names, schemas and that no file is half-written."""
    out = {}
    name = re.compile(r"^(like_membership|like_count)/dt=\d{4}-\d\d-\d\d/hr=\d\d/"
                      r"part-likes-(\d+)-(\d+)-(\d+)(\.\d+)?\.avro$")
    files = sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True))
    assert not [f for f in files if os.path.basename(f).startswith(".")], "temporary files left"
    for f in files:
        if os.path.isdir(f):
            continue
        rel = os.path.relpath(f, root)
        m = name.match(rel)
        assert m, "unexpected file in the lake: " + rel
        table, part, first, last = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
        with open(os.path.join(ROOT, "schemas", table + ".avsc")) as fp:
            want_schema = json.load(fp)
        with DataFileReader(open(f, "rb"), DatumReader()) as r:
            assert json.loads(r.meta["avro.schema"].decode()) == want_schema, rel
            assert r.meta["avro.codec"] == b"deflate", rel
            rows = list(r)
        assert rows, "empty file " + rel
        assert all(x["_partition"] == part for x in rows), rel
        assert rows[0]["_offset"] == first and rows[-1]["_offset"] == last, rel
        hour = time.strftime("dt=%Y-%m-%d/hr=%H", time.gmtime(rows[0]["ts"] // 1000))
        assert all(time.strftime("dt=%Y-%m-%d/hr=%H", time.gmtime(x["ts"] // 1000)) == hour
                   for x in rows), rel
        assert hour in rel, rel
        out.setdefault(table, []).extend(rows)
    return out


def check_lake(root, mrows, crows):
    rows = lake_rows(root)
    for table, want, cols in (
        ("like_membership", mrows, ("post_id", "user_id", "liked", "event_id", "ts")),
        ("like_count", crows, ("post_id", "count", "ts")),
    ):
        got = rows.get(table, [])
        ids = [(r["_partition"], r["_offset"], r["_seq"]) for r in got]
        assert len(ids) == len(set(ids)), "%s: %d rows written twice" % (table, len(ids) - len(set(ids)))
        got = sorted(tuple(int(r[c]) if c == "liked" else r[c] for c in cols)
                     + (r["_partition"], r["_offset"]) for r in got)
        want = sorted(want)
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        assert got == want, "%s: %d missing (e.g. %s), %d extra (e.g. %s)" % (
            table, len(missing), missing[:2], len(extra), extra[:2])


def test_warehouse_crash_clickhouse_restart_lake(eddy, tmp):
    broker = harness.DevBroker(eddy, {lc.TOPIC: lc.PARTITIONS, lc.DLQ: 1}, tmp)
    redis = harness.Redis(tmp)
    ch = harness.ClickHouse(tmp)
    rnd = random.Random(23)
    records = lc.make_events(48000, seed=5)
    for b in lc.bad_records()[:6]:
        records.insert(rnd.randrange(len(records)), (b[0], b[1]))
    lake = os.path.join(tmp, "lake")
    common = {"batch.max.events": 500, "kafka": {"bootstrap.servers": broker.bootstrap,
                                                 "session.timeout.ms": 6000,
                                                 "heartbeat.interval.ms": 500}}
    job_ch = lc.write_job(tmp, broker, redis.url.rsplit("/", 1)[0] + "/1", "ch.json",
                          **dict(common, **{"job.name": "wh-ch", "state.dir": tmp + "/state-ch",
                                            "warehouse": "clickhouse", "warehouse.url": ch.url,
                                            "warehouse.timeout.ms": 1000}))
    job_lake = lc.write_job(tmp, broker, redis.url.rsplit("/", 1)[0] + "/2", "lake.json",
                            **dict(common, **{"job.name": "wh-lake",
                                              "state.dir": tmp + "/state-lake",
                                              "warehouse": "lake", "warehouse.dir": lake,
                                              "warehouse.roll.rows": 3000}))

    waves = 12
    chunk = (len(records) + waves - 1) // waves
    positions = []
    kills = 0
    for w in range(waves):
        positions += lc.produce_with_positions(broker.bootstrap, records[w * chunk:(w + 1) * chunk])
        if w == 5:
            ch.stop()  # ClickHouse goes away while this wave is processed
        a = harness.Proc([eddy, "run", "like-counter", "-c", job_ch], tmp, "ch%d" % w)
        b = harness.Proc([eddy, "run", "like-counter", "-c", job_lake], tmp, "lake%d" % w)
        if w == 5:
            harness.wait_until(lambda: "retrying" in a.log(), 60, 0.2,
                               "the job to report that it retries ClickHouse")
            time.sleep(1.5)
            ch.start()
        time.sleep(rnd.uniform(2.5, 5.0))
        for p in (a, b):
            assert p.running(), "job died:\n" + p.log()[-3000:]
            p.kill()
            kills += 1
    assert kills >= 20
    # rows waiting for their file are listed by `eddy state`
    p = subprocess.run([eddy, "state", "-c", job_lake, "stats"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    waiting = re.findall(r"^lake\.waiting (like_membership|like_count) (\d+) rows=(\d+) "
                         r"bytes=(\d+)$", p.stdout, re.M)
    assert waiting and all(int(w[2]) > 0 for w in waiting), p.stdout

    lc.run_to_end(eddy, job_ch, broker, tmp, "ch-final", group="eddy-wh-ch")
    lc.run_to_end(eddy, job_lake, broker, tmp, "lake-final", group="eddy-wh-lake")
    mrows, crows = model_rows(records, positions)
    assert len(mrows) > 20000 and len(crows) == len(mrows)
    check_clickhouse(ch, mrows, crows)
    check_lake(lake, mrows, crows)
    files = glob.glob(os.path.join(lake, "like_count", "*", "*", "*.avro"))
    assert len(files) > 8, files  # rolled by count, per partition
    p = subprocess.run(["avrocat", files[0]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.count("\n") > 0, p.stderr

    # A backfill into a fresh state dir writes nothing twice to the same ClickHouse tables.
    p = subprocess.run([eddy, "run", "like-counter", "-c", job_ch, "--from", "earliest",
                        "--until", "end", "--no-progress", "-X", "state.dir=" + tmp + "/state-bf",
                        "-X", "batch.max.events=7000"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    check_clickhouse(ch, mrows, crows)

    # A table whose columns differ from the schema stops the job, naming table and column.
    ch.query("CREATE TABLE bad_like_membership (post_id String, user_id String, liked UInt8, "
             "event_id String, ts String, _topic String, _partition Int32, _offset Int64, "
             "_seq Int64) ENGINE = ReplacingMergeTree ORDER BY (post_id, user_id)")
    p = subprocess.run([eddy, "run", "like-counter", "-c", job_ch, "--from", "earliest",
                        "--until", "end", "--no-progress", "-X", "state.dir=" + tmp + "/state-bad",
                        "-X", "warehouse.table.prefix=bad_"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    assert "table default.bad_like_membership column ts: expected Int64, found type String" \
        in p.stderr, p.stderr[-2000:]

    # A wrong password stops the job too (a retry will not fix it), and is never printed.
    secret = "Zq9-not-in-logs"
    p = subprocess.run([eddy, "run", "like-counter", "-c", job_ch, "--from", "earliest",
                        "--until", "end", "--no-progress", "-X", "state.dir=" + tmp + "/state-pw",
                        "-X", "warehouse.password=" + secret],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 1 and "Wrong password" in p.stderr, (p.returncode, p.stderr[-2000:])
    assert secret not in p.stdout + p.stderr
    ch.stop()


def test_window_features_feature_log(eddy, tmp):
    """window-features' feature_update rows in ClickHouse are exactly the records of its output
    topic, matched by (partition, position, entity): the same clock and features, deletions
    (tombstones) as rows with deleted=1 and features {}. (The row and the record of one
    update take consecutive seqs of the partition's counter, so their _seq differ.)"""
    broker = harness.DevBroker(eddy, {"activity": 4}, tmp)
    redis = harness.Redis(tmp)
    ch = harness.ClickHouse(tmp)
    rnd = random.Random(3)
    recs = []
    ts = 1_700_000_000_000
    for i in range(6000):
        ts += rnd.randrange(0, 2000)
        user = "u%d" % rnd.randrange(300)
        ev = {"event_id": "e%d" % i, "user_id": user, "item_id": "i%d" % rnd.randrange(50),
              "type": rnd.choice(["click", "view", "watch"]), "value": rnd.randrange(100),
              "ts": ts - rnd.randrange(0, 3000)}
        recs.append((user.encode(), json.dumps(ev).encode()))
    harness.produce(broker.bootstrap, "activity", recs)
    job = {
        "processor": "window-features", "job.name": "wf-wh", "input.topics": ["activity"],
        "state.dir": os.path.join(tmp, "state-wf"), "state.sync": False,
        "batch.max.events": 700, "redis.url": redis.url, "output.topic": "features-out",
        "features": [{"name": "clicks", "agg": "count", "types": "click", "windows": ["1m"]},
                     {"name": "watch", "agg": "sum", "types": "watch", "windows": ["2m/10s"]},
                     {"name": "items", "agg": "distinct", "windows": ["5m"]},
                     {"name": "recent", "agg": "last_n", "n": 3, "windows": ["5m"]}],
        "warehouse": "clickhouse", "warehouse.url": ch.url,
        "kafka": {"bootstrap.servers": broker.bootstrap},
    }
    path = os.path.join(tmp, "wf.json")
    with open(path, "w") as fp:
        json.dump(job, fp)
    p = subprocess.run([eddy, "run", "window-features", "-c", path, "--from", "earliest",
                        "--until", "end", "--no-progress"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    topic = {}
    for part, off, key, val, hdrs in harness.consume_all(broker.bootstrap, "features-out"):
        src = dict(hdrs)["eddy.src"].decode()
        t, pp, pos, seq = src.rsplit("/", 3)
        v = json.loads(val) if val is not None else None
        topic[(t, int(pp), int(pos), key.decode())] = (
            v["ts"] if v else None, 0 if v else 1, v["features"] if v else {})
    rows = {}
    for r in ch_rows(ch, "SELECT * FROM feature_update FINAL"):
        rows[(r["_topic"], r["_partition"], int(r["_offset"]), r["entity"])] = (
            int(r["ts"]), r["deleted"], json.loads(r["features"]))
    assert len(topic) > 500 and any(v[1] for v in topic.values()), len(topic)
    # a tombstone carries no clock: compare it without
    got = {k: v if not v[1] else (None, 1, v[2]) for k, v in rows.items()}
    assert got == topic, "%d rows, %d records; first differences %s" % (
        len(got), len(topic), [(k, got.get(k), topic.get(k)) for k in sorted(set(got) | set(topic))
                               if got.get(k) != topic.get(k)][:3])
    ch.stop()
