"""window_features.py: the window-features benchmark (DESIGN.md, "Performance").

    /usr/bin/python3 bench/window_features.py [--events N] [--users U] [--partitions P]
    make bench-wf                  # the same, with the defaults

In one run, on one dev broker and one topic of N activity events keyed by user_id (every one
of U users at least once, the rest Zipf-distributed), with 4 features x 3 windows:
  (a) bench/bare_consumer: a bare librdkafka consumer reading the topic to its end;
  (b) eddy run window-features --from earliest --until end (exactly-once on: RocksDB state
      with state.sync=true, fenced Redis writes).
Prints events/s, the ratio b/a, eddy's peak RSS, events per CPU-second, how many entity
writes the events cost (from the job's closing log line) and the number of entities in Redis
(which must be U: all users had an event inside the 24 h window), and writes
bench/out/window-features.json.
"""
import argparse
import bisect
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as lc  # noqa: E402  (the like-counter bench: processes, timing, broker helpers)

harness = lc.harness
TOPIC = "activity"
FEATURES = [
    {"name": "clicks", "agg": "count", "types": "click", "windows": ["5m", "1h", "24h"]},
    {"name": "watch", "agg": "sum", "types": "watch", "windows": ["5m", "1h", "24h"]},
    {"name": "items", "agg": "distinct", "windows": ["5m", "1h", "24h"]},
    {"name": "top", "agg": "max", "windows": ["5m", "1h", "24h"]},
]


def make_events(n, users, partitions, seed=1):
    """(key, value, partition) triples: user i's events all in partition crc32(i) % P."""
    rnd = random.Random(seed)
    order = list(range(users))
    rnd.shuffle(order)
    cum = lc.zipf_cum(users, 0.8)
    t0 = 1_700_000_000_000
    span = 2 * 3600 * 1000  # two hours of event time
    out = []
    types = ["click", "watch", "view", "like"]
    for i in range(n):
        if i < users:
            u = order[i]
        else:
            u = order[min(users - 1, bisect.bisect_left(cum, rnd.random() * cum[-1]))]
        ts = t0 + span * i // n - rnd.randrange(0, 5000)
        typ = types[rnd.randrange(4)]
        ev = {"event_id": "e%d" % i, "user_id": "u%d" % u, "type": typ,
              "item_id": "i%d" % rnd.randrange(50_000), "value": rnd.randrange(1, 300),
              "ts": ts}
        key = b"u%d" % u
        out.append((key, json.dumps(ev, separators=(",", ":")).encode(),
                    zlib.crc32(key) % partitions))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    lc.common_args(ap, "window-features.json")
    args = ap.parse_args()
    eddy, bare = lc.build(args)
    tmp = tempfile.mkdtemp(prefix="eddy-bench-wf-")
    ok = False
    try:
        broker = harness.DevBroker(eddy, {TOPIC: args.partitions}, tmp)
        rds = harness.Redis(tmp)
        n = args.events
        lc.log("generating %d events over %d users", n, args.users)
        evs = make_events(n, args.users, args.partitions, args.seed)
        part = {k: p for k, _, p in evs}
        t = time.monotonic()
        harness.produce(broker.bootstrap, TOPIC, [(k, v) for k, v, _ in evs],
                        partition_fn=lambda k, v: part[k])
        del evs, part
        lc.log("produced in %.1fs", time.monotonic() - t)
        wm = lc.watermarks(broker.bootstrap, TOPIC, args.partitions)
        if sum(hi - lo for lo, hi in wm) != n or any(lo for lo, _ in wm):
            raise SystemExit("bench: the dev broker did not keep all %d events (%s); use more "
                             "--partitions" % (n, wm))

        a = lc.bare_run(bare, broker.bootstrap, TOPIC, tmp, n)

        job = os.path.join(tmp, "wf.json")
        with open(job, "w") as f:
            json.dump({"processor": "window-features", "job.name": "bench-wf",
                       "input.topics": [TOPIC], "state.dir": os.path.join(tmp, "state-wf"),
                       "state.sync": True, "redis.url": "redis://127.0.0.1:%d/3" % rds.port,
                       "allowed.lateness.ms": 600000, "features": FEATURES,
                       "kafka": {"bootstrap.servers": broker.bootstrap}}, f, indent=2)
        lc.log("(b) eddy run window-features --from earliest --until end")
        xs = [x for kv in args.X for x in ("-X", kv)]
        b = lc.Timed([eddy, "run", "window-features", "-c", job, "--from", "earliest",
                      "--until", "end", "--no-progress"] + xs, tmp, "eddy").wait(1800)
        elog = b.proc.log()
        stop = re.search(r"stopped: events=(\d+) dead_lettered=(\d+) batches=(\d+)", elog)
        if not stop or int(stop.group(1)) != n or int(stop.group(2)):
            raise SystemExit("bench: eddy did not process all events cleanly:\n" + elog[-2000:])
        # how many entity writes the events cost (windows sliding write entities again)
        wr = re.search(r"entities written (\d+), deleted (\d+), woken by their windows sliding "
                       r"(\d+)", elog)
        writes = {"written": int(wr.group(1)), "deleted": int(wr.group(2)),
                  "woken_by_windows": int(wr.group(3))} if wr else None
        client = rds.client(db=3)
        entities = sum(1 for _ in client.scan_iter(match="feat:*", count=10000))
        res = {"events": n, "users": args.users, "partitions": args.partitions,
               "features": FEATURES, "eddy_X": args.X,
               "a_bare": a.stats(n), "b_eddy": b.stats(n), "entities_in_redis": entities,
               "entity_writes": writes}
        res["ratio_b_a"] = round(res["b_eddy"]["events_per_s"] / res["a_bare"]["events_per_s"],
                                 3)
        print("window-features, %d events, %d users, %d partitions, 4 features x 3 windows"
              % (n, args.users, args.partitions))
        print("(a) bare consumer      %8.2f s  %9d ev/s  peak RSS %6.1f MiB"
              % (a.wall, res["a_bare"]["events_per_s"], res["a_bare"]["peak_rss_mib"]))
        print("(b) eddy (EOS)         %8.2f s  %9d ev/s  peak RSS %6.1f MiB  CPU %.2f s"
              % (b.wall, res["b_eddy"]["events_per_s"], res["b_eddy"]["peak_rss_mib"], b.cpu))
        if writes:
            print("entity writes: %d (%.2f per event), deleted %d, woken by windows sliding %d; "
                  "events per CPU-second %d" % (writes["written"], writes["written"] / n,
                                                writes["deleted"], writes["woken_by_windows"],
                                                n / b.cpu if b.cpu else 0))
        print("b/a = %.3f (target >= 0.7); entities in Redis: %d (users: %d); eddy peak RSS "
              "%.1f MiB (target: 1M entities within 512 MiB)"
              % (res["ratio_b_a"], entities, args.users, res["b_eddy"]["peak_rss_mib"]))
        if entities != args.users:
            raise SystemExit("bench: %d entities in Redis, expected %d" % (entities, args.users))
        lc.save(args.out, res)
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            lc.log("logs and state kept in %s", tmp)


if __name__ == "__main__":
    main()
