"""ips_samples.py: the ips-samples benchmark (DESIGN.md, "Performance": 300k events/s per core).

    /usr/bin/python3 bench/ips_samples.py [--requests R] [--partitions P]
    make bench-ips                 # the same, with the defaults

In one run, on one dev broker, two co-partitioned topics (impressions, engagements keyed by
user_id; 8 impressions per request, a position-based click model, watch heartbeats):
  (a) bench/bare_consumer: a bare librdkafka consumer reading both topics to their end;
  (b) eddy run ips-samples --from earliest --until end (exactly-once on: RocksDB state with
      state.sync=true, propensity.source=estimate, negative.keep.rate=0.2, the samples into the
      Avro lake).
Prints events/s, events per CPU-second, the ratio b/a, the samples written and eddy's peak RSS;
writes bench/out/ips-samples.json.
"""
import argparse
import glob
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
IMP, ENG = "impressions", "engagements"


def make_events(requests, partitions, seed=1):
    """(impressions, engagements): (key, value, partition) triples in time order."""
    rnd = random.Random(seed)
    rel = [rnd.uniform(0.05, 0.6) for _ in range(50_000)]
    t = 1_767_225_600_000
    imps, engs = [], []
    for r in range(requests):
        t += rnd.randint(1, 40)
        user = b"u%d" % rnd.randrange(200_000)
        p = zlib.crc32(user) % partitions
        explore = rnd.random() < 0.1
        for k in range(1, 9):
            item = rnd.randrange(len(rel))
            ts = t + rnd.randint(0, 200)
            v = {"request_id": "r%d" % r, "user_id": user.decode(), "item_id": "i%d" % item,
                 "position": k, "ts": ts}
            if explore:
                v["explore"] = True
            imps.append((user, json.dumps(v, separators=(",", ":")).encode(), p))
            if rnd.random() < rel[item] / k:
                ct = ts + rnd.randint(500, 30000)
                engs.append((ct, user, {"request_id": "r%d" % r, "user_id": user.decode(),
                                        "item_id": "i%d" % item, "type": "click", "ts": ct}, p))
                for h in range(rnd.randint(0, 2)):
                    engs.append((ct + 10000 * (h + 1), user,
                                 {"request_id": "r%d" % r, "user_id": user.decode(),
                                  "item_id": "i%d" % item, "type": "watch",
                                  "watch_time": 10 * (h + 1), "duration": 60,
                                  "ts": ct + 10000 * (h + 1)}, p))
    engs.sort(key=lambda e: e[0])
    engs = [(u, json.dumps(v, separators=(",", ":")).encode(), p) for _, u, v, p in engs]
    return imps, engs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=150_000)
    lc.common_args(ap, "ips-samples.json")
    args = ap.parse_args()
    eddy, bare = lc.build(args)
    tmp = tempfile.mkdtemp(prefix="eddy-bench-ips-")
    ok = False
    try:
        broker = harness.DevBroker(eddy, {IMP: args.partitions, ENG: args.partitions}, tmp)
        lc.log("generating %d requests", args.requests)
        imps, engs = make_events(args.requests, args.partitions, args.seed)
        n = len(imps) + len(engs)
        t = time.monotonic()
        for topic, recs in ((IMP, imps), (ENG, engs)):
            part = {k: p for k, _, p in recs}
            harness.produce(broker.bootstrap, topic, [(k, v) for k, v, _ in recs],
                            partition_fn=lambda k, v: part[k])
        lc.log("produced %d impressions, %d engagements in %.1fs", len(imps), len(engs),
               time.monotonic() - t)
        kept = 0
        for topic, recs in ((IMP, imps), (ENG, engs)):
            wm = lc.watermarks(broker.bootstrap, topic, args.partitions)
            kept += sum(hi - lo for lo, hi in wm)
            if any(lo for lo, _ in wm):
                raise SystemExit("bench: the dev broker dropped records of %s (%s); use more "
                                 "--partitions" % (topic, wm))
        if kept != n:
            raise SystemExit("bench: the dev broker holds %d of %d records" % (kept, n))
        del imps, engs

        a = lc.bare_run(bare, broker.bootstrap, IMP + "," + ENG, tmp, n)

        job = os.path.join(tmp, "ips.json")
        lake = os.path.join(tmp, "lake")
        with open(job, "w") as f:
            json.dump({"processor": "ips-samples", "job.name": "bench-ips",
                       "input.topics": [IMP, ENG], "state.dir": os.path.join(tmp, "state-ips"),
                       "state.sync": True, "attribution.window.ms": 60000,
                       "allowed.lateness.ms": 5000, "propensity.source": "estimate",
                       "estimator.min.count": 200, "negative.keep.rate": "0.2",
                       "model.tag": "bench", "warehouse": "lake", "warehouse.dir": lake,
                       "kafka": {"bootstrap.servers": broker.bootstrap}}, f, indent=2)
        lc.log("(b) eddy run ips-samples --from earliest --until end")
        xs = [x for kv in args.X for x in ("-X", kv)]
        b = lc.Timed([eddy, "run", "ips-samples", "-c", job, "--from", "earliest",
                      "--until", "end", "--no-progress"] + xs, tmp, "eddy").wait(1800)
        elog = b.proc.log()
        stop = re.search(r"stopped: events=(\d+) dead_lettered=(\d+) batches=(\d+)", elog)
        if not stop or int(stop.group(1)) != n:
            raise SystemExit("bench: eddy did not process all events:\n" + elog[-2000:])
        rows = re.search(r"warehouse_rows_delivered=(\d+)", elog)
        files = glob.glob(os.path.join(lake, "**", "*.avro"), recursive=True)
        res = {"events": n, "requests": args.requests, "partitions": args.partitions,
               "eddy_X": args.X, "a_bare": a.stats(n), "b_eddy": b.stats(n),
               "samples": int(rows.group(1)) if rows else None,
               "dead_letters": int(stop.group(2)), "lake_files": len(files)}
        res["ratio_b_a"] = round(res["b_eddy"]["events_per_s"] / res["a_bare"]["events_per_s"],
                                 3)
        print("ips-samples, %d events (%d requests x 8 impressions + engagements), %d partitions"
              " x 2 topics" % (n, args.requests, args.partitions))
        print("(a) bare consumer      %8.2f s  %9d ev/s  %9s ev/CPU-s  peak RSS %6.1f MiB"
              % (a.wall, res["a_bare"]["events_per_s"], res["a_bare"]["events_per_cpu_s"],
                 res["a_bare"]["peak_rss_mib"]))
        print("(b) eddy (EOS)         %8.2f s  %9d ev/s  %9s ev/CPU-s  peak RSS %6.1f MiB"
              % (b.wall, res["b_eddy"]["events_per_s"], res["b_eddy"]["events_per_cpu_s"],
                 res["b_eddy"]["peak_rss_mib"]))
        print("b/a = %.3f; samples written: %s in %d files; dead letters: %d (target: 300k "
              "events/s per core)" % (res["ratio_b_a"], res["samples"], len(files),
                                       res["dead_letters"]))
        lc.save(args.out, res)
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            lc.log("logs and state kept in %s", tmp)


if __name__ == "__main__":
    main()
