"""warehouse.py: rows per second into the warehouse sinks (docs/warehouse.md), as ratios.

    /usr/bin/python3 bench/warehouse.py [--events N] [--partitions P]
    make bench-warehouse            # the same, with the defaults

In one run, on one dev broker, one redis-server and one clickhouse-server, with the
like-counter events of bench/run.py (N events, P partitions):
  (off)  eddy run like-counter --from earliest --until end, warehouse=off: the job alone;
  (lake) the same with warehouse=lake: like_membership and like_count rows as Avro files;
  (ch)   the same with warehouse=clickhouse, into fresh tables;
  (avro) the same rows written by a plain Avro writer (python3-avro's DataFileWriter,
         deflate, one file per table): what a job would do without eddy's lake;
  (cli)  the same rows inserted by clickhouse-client (JSONEachRow from a file, one INSERT
         per table) into copies of the tables.
Rows/s of eddy = rows / wall time of the whole job (reading Kafka, state, Redis and the sink);
the "sink share" subtracts the job's time without a warehouse. Results go to
bench/out/warehouse.json.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as lc  # noqa: E402  (the like-counter bench: data, processes, timing)

harness = lc.harness
TOPIC = "likes"


def eddy_run(eddy, tmp, name, broker, rds, extra):
    job = lc.write_job(tmp, name, broker.bootstrap, "redis://127.0.0.1:%d/3" % rds.port, TOPIC,
                       extra=dict({"state.sync": True}, **extra))
    rds.client(db=3).flushdb()
    t = lc.Timed([eddy, "run", "like-counter", "-c", job, "--from", "earliest", "--until",
                  "end", "--no-progress"], tmp, name).wait(1800)
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "warehouse.json"))
    args = ap.parse_args()
    args.eddy, args.no_build = None, False
    eddy, _ = lc.build(args)
    tmp = tempfile.mkdtemp(prefix="eddy-bench-wh-")
    lc.log("temp dir %s", tmp)
    ok = False
    try:
        broker = harness.DevBroker(eddy, {TOPIC: args.partitions}, tmp)
        rds = harness.Redis(tmp)
        ch = harness.ClickHouse(tmp)
        events = lc.make_events(args.events, seed=args.seed)
        part_of = lc.balanced_partitions(events, args.partitions)
        harness.produce(broker.bootstrap, TOPIC, events, partition_fn=lambda k, v: part_of[k])
        del events
        res = {"events": args.events, "partitions": args.partitions}

        lc.log("(off) eddy, warehouse=off")
        off = eddy_run(eddy, tmp, "off", broker, rds, {"warehouse": "off"})
        lc.log("(lake) eddy, warehouse=lake")
        lake_dir = os.path.join(tmp, "lake")
        lake = eddy_run(eddy, tmp, "lake", broker, rds,
                        {"warehouse": "lake", "warehouse.dir": lake_dir})
        lc.log("(ch) eddy, warehouse=clickhouse")
        chr_ = eddy_run(eddy, tmp, "ch", broker, rds,
                        {"warehouse": "clickhouse", "warehouse.url": ch.url})
        tables = ("like_membership", "like_count")
        ch_rows = {t: int(ch.query("SELECT count() FROM %s" % t)) for t in tables}

        # the rows as JSON lines, from ClickHouse: the input of both baselines
        dumps = {}
        for t in tables:
            dumps[t] = os.path.join(tmp, t + ".jsonl")
            with open(dumps[t], "w") as f:
                f.write(ch.query("SELECT * FROM %s ORDER BY _partition, _offset, _seq "
                                 "FORMAT JSONEachRow" % t, timeout=600))
        rows = sum(ch_rows.values())
        lake_files = glob.glob(os.path.join(lake_dir, "*", "*", "*", "*.avro"))
        lake_bytes = sum(os.path.getsize(f) for f in lake_files)

        lc.log("(avro) python3-avro DataFileWriter, deflate")
        import avro.schema
        from avro.datafile import DataFileWriter
        from avro.io import DatumWriter
        t0 = time.time()
        for t in tables:
            with open(os.path.join(lc.ROOT, "schemas", t + ".avsc")) as f:
                schema = avro.schema.parse(f.read())
            with open(os.path.join(tmp, t + ".avro"), "wb") as out, \
                    DataFileWriter(out, DatumWriter(), schema, codec="deflate") as w, \
                    open(dumps[t]) as src:
                for line in src:
                    r = json.loads(line)
                    r["liked"] = bool(r.get("liked")) if "liked" in r else None
                    if r["liked"] is None:
                        del r["liked"]
                    for k in ("ts", "_offset", "_seq", "count"):
                        if k in r:
                            r[k] = int(r[k])
                    w.append(r)
        avro_s = time.time() - t0

        lc.log("(cli) clickhouse-client INSERT ... FORMAT JSONEachRow")
        client = shutil.which("clickhouse-client") or "/usr/bin/clickhouse-client"
        t0 = time.time()
        for t in tables:
            ch.query("CREATE TABLE copy_%s AS %s" % (t, t))
            with open(dumps[t]) as src:
                subprocess.run([client, "--port", str(ch.tcp_port), "--query",
                                "INSERT INTO copy_%s FORMAT JSONEachRow" % t], stdin=src,
                               check=True)
        cli_s = time.time() - t0
        for t in tables:
            assert int(ch.query("SELECT count() FROM copy_%s" % t)) == ch_rows[t]

        def rate(s):
            return round(rows / s) if s > 0 else None
        res.update({
            "rows": rows, "rows_per_table": ch_rows,
            "lake_files": len(lake_files), "lake_bytes": lake_bytes,
            "off": off.stats(args.events), "lake": lake.stats(args.events),
            "clickhouse": chr_.stats(args.events),
            "eddy_lake_rows_per_s": rate(lake.wall),
            "eddy_ch_rows_per_s": rate(chr_.wall),
            "eddy_lake_sink_rows_per_s": rate(lake.wall - off.wall),
            "eddy_ch_sink_rows_per_s": rate(chr_.wall - off.wall),
            "python_avro_rows_per_s": rate(avro_s),
            "clickhouse_client_rows_per_s": rate(cli_s),
        })
        res["ratio_lake_vs_avro"] = round(res["eddy_lake_rows_per_s"] /
                                          res["python_avro_rows_per_s"], 2)
        res["ratio_ch_vs_client"] = round(res["eddy_ch_rows_per_s"] /
                                          res["clickhouse_client_rows_per_s"], 2)
        print()
        print("warehouse, %d like events -> %d rows (%s), %d partitions"
              % (args.events, rows, ", ".join("%s %d" % kv for kv in ch_rows.items()),
                 args.partitions))
        print("%-46s %8s %10s" % ("", "wall s", "rows/s"))
        print("%-46s %8.2f %10s" % ("eddy like-counter, warehouse=off", off.wall, "-"))
        print("%-46s %8.2f %10d" % ("eddy, warehouse=lake (%d files, %.1f MiB)"
                                    % (len(lake_files), lake_bytes / 2**20), lake.wall,
                                    res["eddy_lake_rows_per_s"]))
        print("%-46s %8.2f %10d" % ("eddy, warehouse=clickhouse", chr_.wall,
                                    res["eddy_ch_rows_per_s"]))
        print("%-46s %8.2f %10d" % ("python3-avro DataFileWriter (rows only)", avro_s,
                                    res["python_avro_rows_per_s"]))
        print("%-46s %8.2f %10d" % ("clickhouse-client JSONEachRow (rows only)", cli_s,
                                    res["clickhouse_client_rows_per_s"]))
        print("lake: eddy / plain Avro writer = %.2f; sink share alone %s rows/s"
              % (res["ratio_lake_vs_avro"], res["eddy_lake_sink_rows_per_s"]))
        print("clickhouse: eddy / clickhouse-client = %.2f; sink share alone %s rows/s"
              % (res["ratio_ch_vs_client"], res["eddy_ch_sink_rows_per_s"]))
        lc.save(args.out, res)
        lc.log("wrote %s", args.out)
        ok = True
    finally:
        harness.cleanup()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            lc.log("kept %s", tmp)


if __name__ == "__main__":
    main()
