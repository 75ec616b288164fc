#!/usr/bin/env python3
"""avro_input.py: what Avro input costs the like-counter (docs/schemas.md, "Cost").

    /usr/bin/python3 bench/avro_input.py [--events N] [--partitions P]
    make bench-avro

One dev broker, one Redis, one schema registry (tests/integration/registry.py); the same N
like events (bench/run.py's generator) on two topics: as JSON, and as Avro in the Confluent
wire format (like_event.avsc, id from the registry). `eddy run like-counter --from earliest
--until end` reads each (exactly-once on, state.sync=true); the counts must agree. Prints the
events/s of both (wall time from the job's "running" line to its exit) and their ratio, and
writes bench/out/avro-input.json.
"""
import argparse
import json
import os
import re
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
import run as bench  # noqa: E402
from registry import SchemaRegistry  # noqa: E402


def zz(v):
    z = (v << 1) ^ (v >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def s(x):
    b = x.encode()
    return zz(len(b)) + b


def to_avro(sid, value):
    e = json.loads(value)
    return (b"\x00" + struct.pack(">I", sid) + s(e["event_id"]) + s(e["user_id"]) +
            s(e["post_id"]) + zz(0 if e["action"] == "like" else 1) + zz(e["ts"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    eddy = os.path.join(ROOT, "build", "eddy")
    subprocess_make = os.system("make -s -C %s" % ROOT)
    assert subprocess_make == 0
    tmp = tempfile.mkdtemp(prefix="eddy-bench-avro-")
    broker = harness.DevBroker(eddy, {"likes-json": a.partitions, "likes-avro": a.partitions}, tmp)
    rds = harness.Redis(tmp)
    reg = SchemaRegistry()
    with open(os.path.join(ROOT, "schemas", "like_event.avsc")) as fp:
        sid = reg.register("likes-avro-value", fp.read())
    bench.log("generating %d events", a.events)
    events = bench.make_events(a.events, seed=a.seed)
    part_of = bench.balanced_partitions(events, a.partitions)
    avro_events = [(k, to_avro(sid, v)) for k, v in events]
    bench.log("JSON %.1f bytes/event, Avro (Confluent) %.1f bytes/event",
              sum(len(v) for _, v in events) / len(events),
              sum(len(v) for _, v in avro_events) / len(avro_events))
    harness.produce(broker.bootstrap, "likes-json", events, partition_fn=lambda k, v: part_of[k])
    harness.produce(broker.bootstrap, "likes-avro", avro_events,
                    partition_fn=lambda k, v: part_of[k])
    expected = bench.expected_counts(events)
    del events, avro_events
    res = {"events": a.events, "partitions": a.partitions}
    for fmt, db in (("json", 1), ("avro", 2), ("json2", 3), ("avro2", 4)):
        topic = "likes-avro" if fmt.startswith("avro") else "likes-json"
        extra = {"state.sync": True}
        if fmt.startswith("avro"):
            extra.update({"input.format": "confluent", "schema.registry.url": reg.url})
        url = "redis://127.0.0.1:%d/%d" % (rds.port, db)
        job = bench.write_job(tmp, "bench-" + fmt, broker.bootstrap, url, topic, extra=extra)
        bench.log("eddy like-counter, %s input", fmt)
        t = bench.Timed([eddy, "run", "like-counter", "-c", job, "--from", "earliest", "--until",
                         "end", "--no-progress"], tmp, "eddy-" + fmt).wait(1800)
        elog = t.proc.log()
        run = [l for l in elog.splitlines() if "fac=RUN" in l and "running:" in l]
        stop = re.search(r"stopped: events=(\d+) dead_lettered=(\d+)", elog)
        assert stop and int(stop.group(1)) == a.events and int(stop.group(2)) == 0, elog[-2000:]
        run_s = t.t1 - bench.log_time(run[0])
        assert bench.redis_counts(url) == expected, fmt
        res[fmt] = dict(t.stats(a.events), run_s=round(run_s, 3),
                        run_events_per_s=round(a.events / run_s))
    best = {f: max(res[f]["run_events_per_s"], res[f + "2"]["run_events_per_s"])
            for f in ("json", "avro")}
    res["ratio_avro_json"] = round(best["avro"] / best["json"], 3)
    print("like-counter, %d events, %d partitions: JSON %d events/s, Avro (Confluent) %d "
          "events/s (best of 2 each): Avro/JSON %.3f" % (a.events, a.partitions, best["json"],
                                                          best["avro"], res["ratio_avro_json"]))
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "avro-input.json"), "w") as fp:
        json.dump(res, fp, indent=2)
    harness.cleanup()


if __name__ == "__main__":
    main()
