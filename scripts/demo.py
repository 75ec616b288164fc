#!/usr/bin/env python3
"""demo.py: `make demo`: the like-counter on embedded defaults, end to end, on this machine.

Starts `eddy devbroker` on 127.0.0.1:9092 and redis-server on 127.0.0.1:6379 (the embedded
defaults; free ports instead when those are taken), produces sample like events, runs
`eddy run like-counter` with no job file, kills it once mid-stream and restarts it, waits
until it has caught up, checks every count against an independent recount, shows the top
posts and a reconciliation report, reads back the Avro files it wrote to the warehouse
(warehouse=lake), then stops everything.
"""
import glob
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def main():
    eddy = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "eddy"))
    work = os.path.join(ROOT, "demo-run")
    os.makedirs(work, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="run-", dir=work)
    print("demo: working in %s" % tmp)

    bport = 9092 if port_free(9092) else 0
    broker = harness.DevBroker(eddy, {"likes": 8, "like-counter.dlq": 1}, tmp,
                               **({"port": bport} if bport else {}))
    rport = 6379 if port_free(6379) else None
    redis = harness.Redis(tmp, port=rport)
    extra = []
    if broker.bootstrap != "127.0.0.1:9092":
        extra += ["-X", "kafka.bootstrap.servers=" + broker.bootstrap]
    if redis.url != "redis://127.0.0.1:6379/0":
        extra += ["-X", "redis.url=" + redis.url]
    lake = os.path.join(tmp, "lake")
    extra += ["-X", "warehouse=lake", "-X", "warehouse.dir=" + lake]
    extra += ["-X", "state.dir=" + os.path.join(tmp, "state"),
              "-X", "kafka.session.timeout.ms=6000", "-X", "kafka.heartbeat.interval.ms=500"]
    print("demo: broker %s, redis %s" % (broker.bootstrap, redis.url))

    rnd = random.Random(42)
    events, members, changes = [], {}, 0
    for i in range(100000):
        post = "p%d" % int(rnd.paretovariate(1.1) % 500)
        user = "u%d" % rnd.randrange(5000)
        action = "like" if rnd.random() < 0.75 else "unlike"
        events.append((post.encode(), json.dumps({"event_id": "e%d" % i, "user_id": user, "post_id": post,
                                                  "action": action, "ts": 1700000000000 + i}).encode()))
        s = members.setdefault(post, set())
        changes += (user in s) != (action == "like")
        (s.add if action == "like" else s.discard)(user)
    events.append((b"p1", b"{this is not json", ))
    harness.produce(broker.bootstrap, "likes", [(k, v) for k, v, *_ in events])
    print("demo: produced %d like events (+1 malformed) to topic likes" % (len(events) - 1))

    cmd = [eddy, "run", "like-counter"] + extra
    print("demo: $ " + " ".join(cmd))
    job = harness.Proc(cmd, tmp, "job1")
    time.sleep(4.5)
    job.kill()
    print("demo: killed the job with SIGKILL mid-stream; restarting it")
    job = harness.Proc(cmd, tmp, "job2")
    harness.wait_until(lambda: "assigned" in job.log(), 60, 0.2, "the job to join its group")

    highs = {}
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "eddy-like-counter"})
    for p in range(8):
        highs[p] = c.get_watermark_offsets(TopicPartition("likes", p), timeout=10)[1]

    def caught_up():
        got = c.committed([TopicPartition("likes", p) for p in range(8)], timeout=10)
        return all(tp.offset == highs[tp.partition] for tp in got)
    harness.wait_until(caught_up, 120, 0.5, "the job to catch up")
    c.close()
    rc = job.term()
    print("demo: caught up; SIGTERM -> exit %d" % rc)

    r = redis.client()
    want = {p: len(s) for p, s in members.items() if s}
    got = {k.decode()[6:]: int(r.get(k)) for k in r.scan_iter(match="likes:*")}
    ok = got == want
    print("demo: %d posts in Redis; every count equals an independent recount: %s" % (len(got), ok))
    print("demo: top posts:")
    for p, n in sorted(got.items(), key=lambda kv: (-kv[1], kv[0]))[:5]:
        print("    likes:%-6s %d" % (p, n))
    top = max(got, key=lambda p: (got[p], p))
    r.set("likes:" + top, "1")  # drift, healed below
    rec = subprocess.run([eddy, "reconcile", "like-counter"] + extra, stdout=subprocess.PIPE, text=True)
    print("demo: after setting likes:%s to 1, `eddy reconcile like-counter` says:\n    %s"
          % (top, rec.stdout.strip()))
    healed = r.get("likes:" + top).decode()
    print("demo: likes:%s is now %s (recount %d)" % (top, healed, want[top]))
    ok = ok and healed == str(want[top])
    print("demo: the malformed record went to the dead-letter topic like-counter.dlq:",
          len(harness.consume_all(broker.bootstrap, "like-counter.dlq", 20)) >= 1)
    from avro.datafile import DataFileReader
    from avro.io import DatumReader
    files = sorted(glob.glob(os.path.join(lake, "like_membership", "*", "*", "*.avro")))
    rows = 0
    for f in files:
        with DataFileReader(open(f, "rb"), DatumReader()) as fr:
            rows += sum(1 for _ in fr)
    lake_ok = rows == changes
    print("demo: the warehouse: %d Avro files under %s; like_membership holds %d rows, one per "
          "change of the set, each once: %s" % (len(glob.glob(os.path.join(lake, "*", "*", "*",
                                                                            "*.avro"))),
                                                 lake, rows, lake_ok))
    harness.cleanup()
    good = ok and lake_ok and rc == 0 and rec.returncode == 0
    print("demo: %s" % ("OK" if good else "FAILED (counts ok=%s, job exit=%s, reconcile exit=%s)"
                                          % (ok, rc, rec.returncode)))
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
