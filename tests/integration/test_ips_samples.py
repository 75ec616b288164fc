"""test_ips_samples.py: ips-samples against a real dev broker (and clickhouse-server where
installed), compared with an independent model of docs/ips-samples.md computed here.

A generated session log with known relevance: each request shows 8 items to a user; in the
exploitation traffic they are ranked by a noisy relevance score, in the exploration slice
(explore=true) in random order. A user examines position k with probability 1/k and clicks an
examined item with its true relevance; clicks are followed by watch heartbeats. Added: duplicate
impressions, engagements outside the window or without impression, late and malformed records.
Two topics of 8 partitions, keyed by user_id; ~150k records.

Jobs on the same topics (propensity.source=estimate, negative.keep.rate=0.5):
  clean     `--until end`, one run, never killed; the lake, plus output.topic;
  crash     `--until end`, SIGKILLed >= 10 times at random moments and restarted; the lake;
  backfill  `--from earliest --until end` into ClickHouse (when clickhouse-server is installed).
Each run's samples must equal the model's, one per emitted impression (or kept negative),
none twice; the clean and crash lakes must be identical row for row; and the IPS-weighted
click rate per position must recover the simulated relevance where the plain one does not.
A job on two topics of different partition counts must refuse to start (exit 2).

    /usr/bin/python3 tests/run.py --build build --integration-only --only ips
"""
import glob
import json
import os
import random
import re
import shutil
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from avro.datafile import DataFileReader  # noqa: E402
from avro.io import DatumReader  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMP, ENG, OUT = "impressions", "engagements", "samples"
PARTITIONS = 8
ITEMS_PER_REQ = 8
REQUESTS = 14000
W = 600000  # attribution.window.ms
L = 30000  # allowed.lateness.ms
KEEP = 0.5
CLIP = 0.05
SMOOTH = 1.0
MIN_COUNT = 150
TABLE = [1.0]
TAG = "ranker-v7"
T0 = 1767225600000  # 2026-01-01T00:00:00Z
KILLS = 10


def part_of(user):
    return zlib.crc32(user.encode()) % PARTITIONS


# ---------------------------------------------------------------- the session log

def generate(seed):
    """(impressions, engagements, truth): records as (key, value text, partition) in produce
    order per topic; truth: per item its relevance."""
    rnd = random.Random(seed)
    nitems = 3000
    rel = {"it%d" % i: rnd.uniform(0.05, 0.6) for i in range(nitems)}
    items = sorted(rel)
    users = ["user%d" % i for i in range(1500)]
    imps, engs = [], []
    t = T0
    for r in range(REQUESTS):
        t += rnd.randint(100, 1400)
        user = rnd.choice(users)
        rid = "req%d" % r
        explore = rnd.random() < 0.3
        shown = rnd.sample(items, ITEMS_PER_REQ)
        if not explore:
            shown.sort(key=lambda i: -(rel[i] + rnd.gauss(0, 0.1)))
        for k, item in enumerate(shown, 1):
            ts = t + rnd.randint(0, 300)
            imp = {"request_id": rid, "user_id": user, "item_id": item, "position": k, "ts": ts}
            if explore:
                imp["explore"] = True
            imps.append(imp)
            if rnd.random() < 0.01:
                imps.append(dict(imp))  # a duplicate
            examined = rnd.random() < 1.0 / k
            if examined and rnd.random() < rel[item]:
                ct = ts + rnd.randint(500, 60000)
                if rnd.random() < 0.03:
                    ct = ts - rnd.randint(1, 20000)  # logged before the impression's ts
                engs.append({"request_id": rid, "user_id": user, "item_id": item,
                             "type": "click", "ts": ct})
                duration = rnd.choice([30, 60, 120, 600])
                watched = 0
                for h in range(rnd.randint(0, 3)):
                    watched += rnd.randint(5, 60)
                    engs.append({"request_id": rid, "user_id": user, "item_id": item,
                                 "type": "watch", "watch_time": watched, "duration": duration,
                                 "ts": ct + 10000 * (h + 1)})
            if rnd.random() < 0.003:  # outside the window
                engs.append({"request_id": rid, "user_id": user, "item_id": item,
                             "type": "click", "ts": ts + W + rnd.randint(1, 60000)})
        if rnd.random() < 0.01:  # an engagement of a request never shown
            engs.append({"request_id": "ghost%d" % r, "user_id": user, "item_id": "it1",
                         "type": "click", "ts": t})
    # engagements in time order per user, as a tracker would log them, with a little jitter
    engs.sort(key=lambda e: e["ts"] + rnd.randint(0, 2000))
    out_i = [(v["user_id"], json.dumps(v, separators=(",", ":"))) for v in imps]
    out_e = [(v["user_id"], json.dumps(v, separators=(",", ":"))) for v in engs]
    # late and malformed records
    for lst, n in ((out_i, 20), (out_e, 20)):
        for _ in range(n):
            i = rnd.randrange(len(lst) // 2, len(lst))
            v = json.loads(lst[i][1])
            v["ts"] -= 10 * L
            v["request_id"] = "late" + v["request_id"]
            lst.insert(i + 1, (v["user_id"], json.dumps(v, separators=(",", ":"))))
    bad_i = ['{"request_id":"b1","user_id":"user1","item_id":"x","position":0,"ts":%d}',
             '{"request_id":"b2","user_id":"user1","item_id":"x","position":1,"ts":%d,"propensity":2}',
             '{"request_id":"b3","user_id":"user1","position":1,"ts":%d}', 'not json %d']
    bad_e = ['{"request_id":"b4","user_id":"user1","item_id":"x","type":"watch","watch_time":3,'
             '"duration":0,"ts":%d}',
             '{"request_id":"b5","user_id":"user1","item_id":"x","type":"like","ts":%d}']
    for lst, bads in ((out_i, bad_i), (out_e, bad_e)):
        for b in bads:
            i = rnd.randrange(1, len(lst))
            lst.insert(i, ("user1", b % json.loads(lst[i - 1][1])["ts"]))
    out_i = [(k, v, part_of(k)) for k, v in out_i]
    out_e = [(k, v, part_of(k)) for k, v in out_e]
    return out_i, out_e, rel


# ---------------------------------------------------------------- the model (docs/ips-samples.md)

def ips_hash(rid, iid):
    h = 0xcbf29ce484222325
    for b in rid.encode() + b"\0" + iid.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    h = ((h ^ (h >> 30)) * 0xbf58476d1ce4e5b9) & 0xFFFFFFFFFFFFFFFF
    h = ((h ^ (h >> 27)) * 0x94d049bb133111eb) & 0xFFFFFFFFFFFFFFFF
    return h ^ (h >> 31)


def keep(rid, iid, rate):
    return (ips_hash(rid, iid) >> 11) * 2.0 ** -53 < rate


def valid_id(v):
    return (isinstance(v, str) and 0 < len(v.encode()) <= 256) or (
        isinstance(v, int) and not isinstance(v, bool))


def parse(text, engagement):
    """The record's fields, or None if it is rejected (json, missing_field, bad_field)."""
    try:
        v = json.loads(text)
    except ValueError:
        return None
    if not isinstance(v, dict):
        return None
    for f in ("request_id", "user_id", "item_id"):
        if not valid_id(v.get(f)):
            return None
    ts = v.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
        return None
    if engagement:
        if v.get("type") == "click":
            v["frac"] = None
        elif v.get("type") == "watch":
            wt, du = v.get("watch_time"), v.get("duration")
            if not isinstance(wt, (int, float)) or not isinstance(du, (int, float)) or wt < 0 \
                    or du <= 0:
                return None
            v["frac"] = min(float(wt) / float(du), 1.0)
        else:
            return None
    else:
        pos = v.get("position")
        if not isinstance(pos, int) or isinstance(pos, bool) or not 1 <= pos <= 65535:
            return None
        p = v.get("propensity")
        if p is not None and (not isinstance(p, (int, float)) or not 0 < p <= 1):
            return None
        if v.get("explore") not in (None, True, False):
            return None
    return v


def model(imps, engs, positions):
    """{partition: [sample dict, ...] in emission order}, and the dead letters
    {(topic, partition, offset): reason}. positions: {(topic, index): (partition, offset)}."""
    per = {p: ([], []) for p in range(PARTITIONS)}
    for t, recs in ((0, imps), (1, engs)):
        for i, rec in enumerate(recs):
            p, off = positions[(t, i)]
            per[p][t].append((off, rec[1]))
    samples, dlq = {}, {}
    for p in range(PARTITIONS):
        clocks, accepted = [None, None], ([], [])
        for t in (0, 1):
            for off, text in sorted(per[p][t]):
                v = parse(text, t == 1)
                if v is None:
                    dlq[(t, p, off)] = "invalid"
                    continue
                if clocks[t] is not None and v["ts"] < clocks[t] - L:
                    dlq[(t, p, off)] = "late"
                    continue
                clocks[t] = v["ts"] if clocks[t] is None else max(clocks[t], v["ts"])
                v["_off"] = off
                accepted[t].append(v)
        if None in clocks:
            samples[p] = []
            continue
        thr = min(clocks) - L
        first = {}
        for v in accepted[0]:
            first.setdefault((str(v["request_id"]), str(v["item_id"])), v)
        byk = {}
        for e in accepted[1]:
            byk.setdefault((str(e["request_id"]), str(e["item_id"])), []).append(e)
        counted = set()
        out = []
        for k, v in first.items():
            if not thr > v["ts"] + W:
                continue
            clicked, frac = 0, 0.0
            for e in byk.get(k, []):
                if v["ts"] <= e["ts"] <= v["ts"] + W:
                    counted.add(id(e))
                    if e["frac"] is None:
                        clicked = 1
                    else:
                        frac = max(frac, e["frac"])
            out.append((v["ts"], k[0].encode() + b"\0" + k[1].encode(), k, v, clicked, frac))
        for k, es in byk.items():
            for e in es:
                if id(e) not in counted and thr > e["ts"]:
                    if not (k in first and first[k]["ts"] <= e["ts"] <= first[k]["ts"] + W):
                        dlq[(1, p, e["_off"])] = "orphan"
        out.sort(key=lambda x: (x[0], x[1]))
        counts = {}
        rows = []
        for ts, _, k, v, clicked, frac in out:
            pos = v["position"]
            prop, src = TABLE[min(pos, len(TABLE)) - 1], "table"
            nk, ck = counts.get(pos, (0, 0))
            n1, c1 = counts.get(1, (0, 0))
            if nk >= MIN_COUNT and n1 >= MIN_COUNT:
                e = ((ck + SMOOTH) / (nk + 2 * SMOOTH)) / ((c1 + SMOOTH) / (n1 + 2 * SMOOTH))
                prop, src = min(e, 1.0), "estimate"
            if v.get("explore"):
                counts[pos] = (nk + 1, ck + clicked)
            neg = not clicked and frac == 0
            rate = KEEP if neg else 1.0
            if neg and not keep(k[0], k[1], KEEP):
                continue
            rows.append({"request_id": k[0], "user_id": str(v["user_id"]), "item_id": k[1],
                         "position": pos, "ts": ts, "clicked": clicked, "watch_frac": frac,
                         "propensity": prop, "propensity_source": src, "clip": CLIP,
                         "weight": 1 / max(prop, CLIP) / rate, "keep_rate": rate,
                         "explore": bool(v.get("explore")), "model_tag": TAG,
                         "imp_topic": IMP, "imp_partition": p, "imp_offset": v["_off"]})
        samples[p] = rows
    return samples, dlq


# ---------------------------------------------------------------- reading the outputs

COLS = ("request_id", "user_id", "item_id", "position", "ts", "clicked", "watch_frac",
        "propensity", "propensity_source", "clip", "weight", "keep_rate", "explore",
        "model_tag", "imp_topic", "imp_partition", "imp_offset")


def lake_rows(root):
    """{partition: [row, ...] in (_offset, _seq) order}; checks names, schema, no temp files."""
    name = re.compile(r"^training_sample/dt=\d{4}-\d\d-\d\d/hr=\d\d/"
                      r"part-impressions,engagements-(\d+)-(\d+)-(\d+)(\.\d+)?\.avro$")
    with open(os.path.join(ROOT, "schemas", "training_sample.avsc")) as fp:
        want_schema = json.load(fp)
    out = {}
    for f in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isdir(f):
            continue
        rel = os.path.relpath(f, root)
        assert not os.path.basename(f).startswith("."), "temporary file left: " + rel
        m = name.match(rel)
        assert m, "unexpected file in the lake: " + rel
        with DataFileReader(open(f, "rb"), DatumReader()) as r:
            assert json.loads(r.meta["avro.schema"].decode()) == want_schema, rel
            rows = list(r)
        assert rows and all(x["_partition"] == int(m.group(1)) for x in rows), rel
        hour = time.strftime("dt=%Y-%m-%d/hr=%H", time.gmtime(rows[0]["ts"] // 1000))
        assert hour in rel, rel
        out.setdefault(int(m.group(1)), []).extend(rows)
    for p in out:
        ids = [(x["_offset"], x["_seq"]) for x in out[p]]
        assert len(ids) == len(set(ids)), "partition %d: a row identity written twice" % p
        out[p].sort(key=lambda x: (x["_offset"], x["_seq"]))
    return out


def same(a, b):
    for c in COLS:
        x, y = a[c], b[c]
        if isinstance(x, float) or isinstance(y, float):
            if abs(x - y) > 1e-9 * max(1.0, abs(x)):
                return False
        elif x != y:
            return False
    return True


def check_samples(name, got, want):
    """got, want: {partition: [rows]}; same rows in the same order per partition, none twice."""
    problems = []
    for p in range(PARTITIONS):
        g, w = got.get(p, []), want.get(p, [])
        keys = [(r["request_id"], r["item_id"]) for r in g]
        if len(keys) != len(set(keys)):
            problems.append("%s partition %d: %d samples twice" % (name, p,
                                                                    len(keys) - len(set(keys))))
        if len(g) != len(w):
            problems.append("%s partition %d: %d samples, the model %d" % (name, p, len(g), len(w)))
        for i, (a, b) in enumerate(zip(g, w)):
            if not same(a, b):
                problems.append("%s partition %d sample %d:\n  got  %s\n  want %s"
                                % (name, p, i, {c: a[c] for c in COLS}, b))
                break
    assert not problems, "\n".join(problems[:10])


def ips_check(rows, shown):
    """The IPS-weighted click rate per position recovers the mean true relevance of the items
    shown there; the plain click rate does not (examination falls with the position)."""
    report = []
    misses_plain = 0
    for k in range(1, ITEMS_PER_REQ + 1):
        rk = [r for r in rows if r["position"] == k and r["propensity_source"] == "estimate"]
        assert len(rk) > 1000, (k, len(rk))
        n = sum(1 / r["keep_rate"] for r in rk)  # impressions, the dropped negatives included
        ips = sum(r["clicked"] * r["weight"] * r["keep_rate"] for r in rk) / n
        plain = sum(r["clicked"] for r in rk) / n
        truth = shown[k]  # over every impression at k, from the generator
        report.append("k=%d truth=%.3f ips=%.3f plain=%.3f" % (k, truth, ips, plain))
        assert abs(ips - truth) <= 0.2 * truth, "IPS misses the relevance:\n" + "\n".join(report)
        if abs(plain - truth) > 0.2 * truth:
            misses_plain += 1
    assert misses_plain >= ITEMS_PER_REQ - 2, "the plain click rate is not biased?\n" + \
        "\n".join(report)
    return report


# ---------------------------------------------------------------- the test

def write_job(tmp, broker, name, **extra):
    job = {
        "processor": "ips-samples",
        "job.name": name,
        "input.topics": [IMP, ENG],
        "state.dir": os.path.join(tmp, "state-" + name),
        "state.sync": False,
        "batch.max.events": 3000,
        "batch.max.ms": 50,
        "attribution.window.ms": W,
        "allowed.lateness.ms": L,
        "propensity.source": "estimate",
        "propensity.table": TABLE,
        "estimator.smoothing": str(SMOOTH),
        "estimator.min.count": MIN_COUNT,
        "weight.clip": str(CLIP),
        "negative.keep.rate": str(KEEP),
        "model.tag": TAG,
        "orphans.to.dlq": True,
        "dlq.topic": name + ".dlq",
        "warehouse": "lake",
        "warehouse.dir": os.path.join(tmp, "lake-" + name),
        "warehouse.roll.rows": 4000,
        "kafka": {"bootstrap.servers": broker.bootstrap},
    }
    job.update(extra)
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as fp:
        json.dump(job, fp, indent=2)
    return path


def produce_positions(broker, topic, recs):
    harness.produce(broker.bootstrap, topic, [(k, v) for k, v, _ in recs],
                    partition_fn=lambda key, value: part_of(key.decode() if isinstance(key, bytes)
                                                            else key))
    # offsets follow produce order per partition (one idempotent producer)
    nxt, pos = {}, []
    for _, _, p in recs:
        pos.append((p, nxt.get(p, 0)))
        nxt[p] = nxt.get(p, 0) + 1
    return pos


def dead_letters(bootstrap, topic):
    """{(topic index, partition, offset): reason}, repeats (same eddy.src) dropped."""
    out = {}
    for rec in harness.consume_all(bootstrap, topic, timeout_s=60, missing_ok=True):
        hd = {k: (v.decode() if v is not None else None) for k, v in rec[4]}
        key = ({IMP: 0, ENG: 1}[hd["eddy.src.topic"]], int(hd["eddy.src.partition"]),
               int(hd["eddy.src.offset"]))
        reason = hd["eddy.reason"]
        if reason not in ("late", "orphan"):
            reason = "invalid"
        assert out.get(key, reason) == reason, (key, out[key], reason)
        out[key] = reason
    return out


def test_ips_samples_crash_model_clickhouse(eddy, tmp):
    t_start = time.monotonic()
    laps = []

    def lap(what):
        laps.append("%s %.1fs" % (what, time.monotonic() - t_start))

    broker = harness.DevBroker(eddy, {IMP: PARTITIONS, ENG: PARTITIONS, OUT: 8, "imp8": 8, "eng4": 4},
                               tmp)
    # the partition counts are checked at start
    bad = harness.Proc([eddy, "run", "ips-samples", "-X", "kafka.bootstrap.servers=" +
                        broker.bootstrap, "-X", "input.topics=imp8,eng4", "-X",
                        "state.dir=" + os.path.join(tmp, "state-bad"), "--until", "end"], tmp,
                       "mismatch")
    assert bad.wait(60) == 2, bad.log()
    assert re.search(r"imp8 has 8 partitions and eng4 has 4", bad.log()), bad.log()

    imps, engs, rel = generate(11)
    pos_i = produce_positions(broker, IMP, imps)
    pos_e = produce_positions(broker, ENG, engs)
    positions = {(0, i): pos_i[i] for i in range(len(imps))}
    positions.update({(1, i): pos_e[i] for i in range(len(engs))})
    want, want_dlq = model(imps, engs, positions)
    nwant = sum(len(v) for v in want.values())
    lap("generated and produced %d impressions, %d engagements; model: %d samples"
        % (len(imps), len(engs), nwant))
    assert nwant > 50000

    clean_job = write_job(tmp, broker, "ips-clean", **{"output.topic": OUT})
    t0 = time.monotonic()
    clean = harness.Proc([eddy, "run", "ips-samples", "-c", clean_job, "--until", "end"], tmp,
                         "clean")
    assert clean.wait(120) == 0, clean.log()[-3000:]
    lap("clean run (%.1fs)" % (time.monotonic() - t0))
    got_clean = lake_rows(os.path.join(tmp, "lake-ips-clean"))
    check_samples("clean", got_clean, want)
    out = harness.consume_all(broker.bootstrap, OUT, timeout_s=60)
    assert len(out) == nwant, (len(out), nwant)
    by_key = {(r["request_id"], r["item_id"]): r for rows in want.values() for r in rows}
    for rec in out:
        s = json.loads(rec[3])
        assert rec[2].decode() == s["user_id"]
        assert same(s, by_key[(s["request_id"], s["item_id"])]), s
    got_dlq = dead_letters(broker.bootstrap, "ips-clean.dlq")
    assert got_dlq == want_dlq, (len(got_dlq), len(want_dlq),
                                 sorted(set(got_dlq.items()) ^ set(want_dlq.items()))[:5])
    lap("clean run checked")

    # the crash run: SIGKILLs at random moments, each restart resumes from its own state
    rnd = random.Random(5)
    crash_job = write_job(tmp, broker, "ips-crash")
    kills, cycle = 0, 0
    while kills < KILLS:
        proc = harness.Proc([eddy, "run", "ips-samples", "-c", crash_job, "--until", "end"], tmp,
                            "crash%d" % cycle)
        cycle += 1
        # Kill once it has logged a random 20..80 dead letters in this run (~1,100 in a whole
        # run, spread over the stream): the kills land at random points of the stream
        # whatever the machine's speed.
        target = rnd.randint(20, 80)
        while proc.running() and proc.log().count("fac=DLQ") < target:
            time.sleep(0.005)
        if not proc.running():
            assert proc.wait() == 0, proc.log()[-3000:]
            break
        proc.kill()
        kills += 1
    final = harness.Proc([eddy, "run", "ips-samples", "-c", crash_job, "--until", "end"], tmp,
                         "crash-final")
    assert final.wait(120) == 0, final.log()[-3000:]
    assert kills >= KILLS, "only %d kills: the crash job finished first" % kills
    lap("crash run: %d SIGKILLs" % kills)
    got_crash = lake_rows(os.path.join(tmp, "lake-ips-crash"))
    check_samples("crash", got_crash, want)
    for p in range(PARTITIONS):  # the clean and crash lakes: the same rows, in the same order
        a, b = got_clean.get(p, []), got_crash.get(p, [])
        assert [tuple(r[c] for c in COLS) for r in a] == [tuple(r[c] for c in COLS) for r in b]
    assert dead_letters(broker.bootstrap, "ips-crash.dlq") == want_dlq
    lap("crash run checked")

    # IPS: the weighted click rate per position recovers the simulated relevance
    shown = {}
    for k, v, _ in imps:
        try:
            d = json.loads(v)
        except ValueError:
            continue
        if isinstance(d.get("position"), int) and d.get("item_id") in rel and \
                not d["request_id"].startswith("late"):
            shown.setdefault(d["position"], []).append(rel[d["item_id"]])
    shown = {k: sum(v) / len(v) for k, v in shown.items()}
    report = ips_check([r for rows in got_crash.values() for r in rows], shown)
    lap("IPS check: " + "; ".join(report))

    if shutil.which("clickhouse-server") or os.path.exists("/usr/sbin/clickhouse-server"):
        ch = harness.ClickHouse(tmp)
        job = write_job(tmp, broker, "ips-backfill", **{"warehouse": "clickhouse",
                                                        "warehouse.url": ch.url})
        bf = harness.Proc([eddy, "run", "ips-samples", "-c", job, "--from", "earliest", "--until",
                           "end"], tmp, "backfill")
        assert bf.wait(120) == 0, bf.log()[-3000:]
        raw = int(ch.query("SELECT count() FROM training_sample"))
        assert raw == nwant, (raw, nwant)
        text = ch.query("SELECT %s FROM training_sample FINAL ORDER BY imp_partition, _offset, "
                        "_seq FORMAT JSONEachRow" % ", ".join(COLS))
        got = {}
        for line in text.splitlines():
            r = json.loads(line)
            r["explore"] = bool(r["explore"])
            r["imp_offset"] = int(r["imp_offset"])
            r["ts"] = int(r["ts"])
            got.setdefault(r["imp_partition"], []).append(r)
        check_samples("clickhouse", got, want)
        ch.stop()
        lap("backfill into ClickHouse checked")
    print("ips-samples: " + "; ".join(laps))


def test_ips_samples_confluent_avro_same_as_json(eddy, tmp):
    """The same session log in the Confluent wire format (schemas/impression.avsc and
    engagement.avsc, ids from the schema registry, encoded by python3-avro): the samples and
    the dead letters equal the model's, as for JSON. A record Avro can not carry (a missing
    field, an unknown type, not JSON at all) goes out as its JSON bytes, which do not decode:
    a dead letter at the same offset as the JSON run's."""
    import io
    import struct

    import avro.io
    import avro.schema
    from registry import SchemaRegistry

    def text(name):
        with open(os.path.join(ROOT, "schemas", name + ".avsc")) as fp:
            return fp.read()
    reg = SchemaRegistry()
    schemas, ids = {}, {}
    for topic, name in ((IMP, "impression"), (ENG, "engagement")):
        schemas[topic] = avro.schema.parse(text(name))
        ids[topic] = reg.register(topic + "-value", text(name))

    def encode(topic, value):
        try:
            d = json.loads(value)
            names = [f.name for f in schemas[topic].fields]
            if not isinstance(d, dict) or set(d) - set(names):
                raise ValueError(value)
            datum = {n: d.get(n) for n in names}
            for n in ("watch_time", "duration", "propensity"):
                if isinstance(datum.get(n), int):
                    datum[n] = float(datum[n])
            buf = io.BytesIO()
            avro.io.DatumWriter(schemas[topic]).write(datum, avro.io.BinaryEncoder(buf))
            return b"\x00" + struct.pack(">I", ids[topic]) + buf.getvalue()
        except Exception:
            return value.encode()

    broker = harness.DevBroker(eddy, {IMP: PARTITIONS, ENG: PARTITIONS}, tmp)
    imps, engs, _ = generate(11)
    pos_i = produce_positions(broker, IMP, [(k, encode(IMP, v), p) for k, v, p in imps])
    pos_e = produce_positions(broker, ENG, [(k, encode(ENG, v), p) for k, v, p in engs])
    positions = {(0, i): pos_i[i] for i in range(len(imps))}
    positions.update({(1, i): pos_e[i] for i in range(len(engs))})
    want, want_dlq = model(imps, engs, positions)
    job = write_job(tmp, broker, "ips-avro", **{"input.format": "confluent",
                                                 "schema.registry.url": reg.url})
    run = harness.Proc([eddy, "run", "ips-samples", "-c", job, "--until", "end"], tmp, "avro")
    assert run.wait(180) == 0, run.log()[-3000:]
    check_samples("avro", lake_rows(os.path.join(tmp, "lake-ips-avro")), want)
    assert dead_letters(broker.bootstrap, "ips-avro.dlq") == want_dlq
    assert reg.gets(ids[IMP]) == 1 and reg.gets(ids[ENG]) == 1  # one request per id
    reg.down()
