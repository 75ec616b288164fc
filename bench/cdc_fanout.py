"""cdc_fanout.py: the cdc-fanout benchmark (DESIGN.md, "Performance").

    /usr/bin/python3 bench/cdc_fanout.py [--events N] [--rows R] [--partitions P]
    make bench-cdc                 # the same, with the defaults

In one run, on one dev broker and one table topic of N Debezium change events (PostgreSQL
envelopes without the schema wrapper, keyed by primary key: a snapshot of R rows, then
updates, inserts and deletes with their tombstones):
  (a) bench/bare_consumer: a bare librdkafka consumer reading the topic to its end;
  (b) eddy run cdc-fanout --from earliest --until end, exactly-once on (RocksDB state with
      state.sync=true), with the Redis row cache and the derived topic on (no search index:
      the only one here is the tests' Python stand-in, no warehouse);
  (c) bench/cdc_floor: the least work such a fan-out does per change with eddy's libraries
      (one RocksDB put, one Kafka record with one header, one Redis command per change; one
      synced write batch with the offsets per 20,000), no parsing, no outbox, one thread.
Prints events/s, the ratio b/a and CPU per change of b against c, checks that Redis holds
exactly the final rows, and writes bench/out/cdc-fanout.json.
"""
import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as lc  # noqa: E402  (the like-counter bench: processes, timing, broker helpers)

harness = lc.harness
TOPIC = "dbserver1.inventory.customers"


def make_changes(n, rows, seed=1):
    """(key, value) pairs of n change events, and the final rows {id: image text}."""
    rnd = random.Random(seed)
    lsn = 1_000_000
    live = {}
    out = []
    names = ["Ann", "Bo", "Chloe", "Dan", "Eve", "Fu", "Gul"]

    def image(i):
        return ('{"id":%d,"first_name":"%s","last_name":"L%d","email":"u%d@example.com",'
                '"balance":%d.%02d,"vip":%s,"note":null}'
                % (i, rnd.choice(names), rnd.randrange(10**6), rnd.randrange(10**6),
                   rnd.randrange(10**5), rnd.randrange(100), "true" if rnd.random() < 0.1 else "false"))

    def event(op, i, before, after, lsn, snap):
        return ('{"before":%s,"after":%s,"source":{"version":"2.1.0.Final","connector":"postgresql",'
                '"name":"dbserver1","ts_ms":%d,"snapshot":"%s","db":"inventory","schema":"public",'
                '"table":"customers","txId":%d,"lsn":%d},"op":"%s","ts_ms":%d}'
                % (before or "null", after or "null", 1_700_000_000_000 + lsn,
                   "true" if snap else "false", lsn // 3, lsn, op, 1_700_000_000_000 + lsn))

    for i in range(1, rows + 1):
        live[i] = image(i)
    lsn += 1
    for i in range(1, rows + 1):
        out.append((b'{"id":%d}' % i, event("r", i, None, live[i], lsn, True).encode()))
    nxt = rows + 1
    while len(out) < n:
        lsn += rnd.randint(1, 20)
        k = rnd.random()
        if k < 0.1 or not live:
            i, nxt = nxt, nxt + 1
            live[i] = image(i)
            out.append((b'{"id":%d}' % i, event("c", i, None, live[i], lsn, False).encode()))
        elif k < 0.95:
            i = rnd.randrange(1, nxt)
            if i not in live:
                continue
            old, live[i] = live[i], image(i)
            out.append((b'{"id":%d}' % i, event("u", i, old, live[i], lsn, False).encode()))
        else:
            i = rnd.randrange(1, nxt)
            if i not in live:
                continue
            old = live.pop(i)
            out.append((b'{"id":%d}' % i, event("d", i, old, None, lsn, False).encode()))
            out.append((b'{"id":%d}' % i, None))
    return out[:n], live


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rows", type=int, default=200_000)
    lc.common_args(ap, "cdc-fanout.json")
    args = ap.parse_args()
    eddy, bare = lc.build(args)
    floor = os.path.join(HERE, "out", "cdc_floor")
    tmp = tempfile.mkdtemp(prefix="eddy-bench-cdc-")
    ok = False
    try:
        broker = harness.DevBroker(eddy, {TOPIC: args.partitions, "cdc.customers": args.partitions,
                                                  "floor.customers": args.partitions},
                                   tmp)
        rds = harness.Redis(tmp)
        n = args.events
        lc.log("generating %d change events over %d rows", n, args.rows)
        evs, live = make_changes(n, args.rows, args.seed)
        t = time.monotonic()
        harness.produce(broker.bootstrap, TOPIC, evs, config={"partitioner": "murmur2_random"})
        del evs
        lc.log("produced in %.1fs", time.monotonic() - t)
        wm = lc.watermarks(broker.bootstrap, TOPIC, args.partitions)
        if sum(hi - lo for lo, hi in wm) != n or any(lo for lo, _ in wm):
            raise SystemExit("bench: the dev broker did not keep all %d events (%s); use more "
                             "--partitions" % (n, wm))

        a = lc.bare_run(bare, broker.bootstrap, TOPIC, tmp, n)

        job = os.path.join(tmp, "cdc.json")
        with open(job, "w") as f:
            json.dump({"processor": "cdc-fanout", "job.name": "bench-cdc",
                       "input.topics": ["^dbserver1\\.inventory\\..*"],
                       "state.dir": os.path.join(tmp, "state-cdc"), "state.sync": True,
                       "redis.url": "redis://127.0.0.1:%d/3" % rds.port, "topic.prefix": "cdc",
                       "kafka": {"bootstrap.servers": broker.bootstrap}}, f, indent=2)
        lc.log("(b) eddy run cdc-fanout --from earliest --until end")
        xs = [x for kv in args.X for x in ("-X", kv)]
        b = lc.Timed([eddy, "run", "cdc-fanout", "-c", job, "--from", "earliest",
                      "--until", "end", "--no-progress"] + xs, tmp, "eddy").wait(1800)
        elog = b.proc.log()
        stop = re.search(r"stopped: events=(\d+) dead_lettered=(\d+) batches=(\d+)", elog)
        if not stop or int(stop.group(1)) != n or int(stop.group(2)):
            raise SystemExit("bench: eddy did not process all events cleanly:\n" + elog[-2000:])
        client = rds.client(db=3)
        keys = sum(1 for _ in client.scan_iter(match="customers:*", count=10000))
        sample = random.Random(2).sample(sorted(live), min(1000, len(live)))
        for i in sample:
            want = {k: (v if isinstance(v, str) else json.dumps(v))
                    for k, v in json.loads(live[i]).items() if v is not None}
            want["balance"] = re.search(r'"balance":([0-9.]+)', live[i]).group(1)
            got = {k.decode(): v.decode() for k, v in client.hgetall("customers:%d" % i).items()}
            if got != want:
                raise SystemExit("bench: customers:%d is %s, expected %s" % (i, got, want))
        lc.log("(c) cdc_floor")
        c = lc.Timed([floor, broker.bootstrap, TOPIC, "floor.customers", str(rds.port),
                      os.path.join(tmp, "state-floor")], tmp, "floor").wait(1800)
        if json.loads(c.proc.out())["events"] != n:
            raise SystemExit("bench: cdc_floor did not read all %d events: %s"
                             % (n, c.proc.out()))
        res = {"events": n, "rows": args.rows, "final_rows": len(live),
               "partitions": args.partitions, "eddy_X": args.X,
               "a_bare": a.stats(n), "b_eddy": b.stats(n), "c_floor": c.stats(n),
               "rows_in_redis": keys}
        res["ratio_b_a"] = round(res["b_eddy"]["events_per_s"] / res["a_bare"]["events_per_s"],
                                 3)
        res["cpu_b_over_c"] = round(b.cpu / c.cpu, 3) if c.cpu else None
        print("cdc-fanout, %d change events, %d rows at the end, %d partitions, Redis + topic"
              % (n, len(live), args.partitions))
        print("(a) bare consumer      %8.2f s  %9d ev/s  peak RSS %6.1f MiB"
              % (a.wall, res["a_bare"]["events_per_s"], res["a_bare"]["peak_rss_mib"]))
        print("(b) eddy (EOS)         %8.2f s  %9d ev/s  peak RSS %6.1f MiB  CPU %.2f s"
              % (b.wall, res["b_eddy"]["events_per_s"], res["b_eddy"]["peak_rss_mib"], b.cpu))
        print("(c) floor              %8.2f s  %9d ev/s  peak RSS %6.1f MiB  CPU %.2f s"
              % (c.wall, res["c_floor"]["events_per_s"], res["c_floor"]["peak_rss_mib"], c.cpu))
        print("b/a = %.3f; eddy %d changes/s per core of CPU (target >= 200k), the floor %d; "
              "eddy's CPU per change %.2f times the floor's; rows in Redis: %d (final rows: %d)"
              % (res["ratio_b_a"], n / b.cpu if b.cpu else 0, n / c.cpu if c.cpu else 0,
                 res["cpu_b_over_c"] or 0, keys, len(live)))
        if keys != len(live):
            raise SystemExit("bench: %d rows in Redis, expected %d" % (keys, len(live)))
        lc.save(args.out, res)
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            lc.log("logs and state kept in %s", tmp)


if __name__ == "__main__":
    main()
