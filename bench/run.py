"""run.py: the like-counter benchmark (DESIGN.md, "Performance").

    /usr/bin/python3 bench/run.py [--events N] [--partitions P] [--latency] [--memory] ...
    make bench                     # the same, with the defaults

In one run, on one dev broker and one topic of N like events:
  (a) bench/bare_consumer: a bare librdkafka consumer reading the topic to its end;
  (b) eddy run like-counter --from earliest --until end (bounded replay, exactly-once on:
      RocksDB state with state.sync=true, fenced Redis writes, offsets in the state);
  (c) bench/likes_job.py: the same work in plain Python (confluent-kafka + redis-py).
It checks that (b) and (c) leave the same counts in Redis (db 1 and db 2) and that both equal
the counts computed here from the events produced, then prints events/s and the ratios b/a
and b/c, and writes bench/out/like-counter.json.

--latency: event-to-Redis latency of a live (subscribed) like-counter at --rate events/s.
--memory: resident memory of a live like-counter holding --memory-keys membership keys.
See bench/README.md.
"""
import argparse
import bisect
import hashlib
import heapq
import datetime
import itertools
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
import confluent_kafka  # noqa: E402
import redis  # noqa: E402

TOPIC = "likes"
PREFIX = "likes:"


def log(fmt, *a):
    print("bench: " + (fmt % a if a else fmt), file=sys.stderr, flush=True)


# ------------------------------------------------------------------ data


def zipf_cum(n, s):
    """Cumulative weights of a Zipf(s) distribution over ranks 1..n."""
    acc, out = 0.0, []
    for k in range(1, n + 1):
        acc += 1.0 / k ** s
        out.append(acc)
    return out


def make_events(n, seed=1, posts=100_000, users=1_000_000):
    """n like/unlike events as (key, value) bytes pairs, keyed by post_id.

    Post popularity is Zipf(0.9) over `posts`, user activity Zipf(0.7) over `users`; a
    post's rank is scattered over the id space. 70% likes, 30% unlikes: an unlike takes back
    an earlier like (picked at random) 90% of the time and is a no-op otherwise. 2% of events
    are exact redeliveries of a recent event."""
    rnd = random.Random(seed)
    post_ids = list(range(posts))
    rnd.shuffle(post_ids)
    user_ids = list(range(users))
    rnd.shuffle(user_ids)
    pc = zipf_cum(posts, 0.9)
    uc = zipf_cum(users, 0.7)
    ptot, utot = pc[-1], uc[-1]
    liked = []  # (post, user) pairs liked so far, possibly repeated
    out = []
    ts = 1_700_000_000_000
    for i in range(n):
        r = rnd.random()
        if out and r < 0.02:
            out.append(out[-1 - rnd.randrange(min(len(out), 10_000))])
            continue
        if r < 0.02 + 0.98 * 0.3:
            if liked and rnd.random() < 0.9:
                post, user = liked[rnd.randrange(len(liked))]
            else:
                post = post_ids[min(bisect.bisect(pc, rnd.random() * ptot), posts - 1)]
                user = user_ids[min(bisect.bisect(uc, rnd.random() * utot), users - 1)]
            action = "unlike"
        else:
            post = post_ids[min(bisect.bisect(pc, rnd.random() * ptot), posts - 1)]
            user = user_ids[min(bisect.bisect(uc, rnd.random() * utot), users - 1)]
            liked.append((post, user))
            action = "like"
        key = b"p%d" % post
        val = b'{"event_id":"e%d","user_id":"u%d","post_id":"p%d","action":"%s","ts":%d}' % (
            i, user, post, action.encode(), ts + i // 10)
        out.append((key, val))
    return out


def balanced_partitions(events, partitions):
    """post key -> partition: the heaviest posts first, each to the least loaded partition.

    A producer's custom partitioner, still keyed (every event of a post in one partition):
    hashing the keys would put ~13% of these events in one partition, more than the dev
    broker keeps of it (~5 MB, ~148k of these events); balanced, 2M events fit in 16."""
    counts = {}
    for k, _ in events:
        counts[k] = counts.get(k, 0) + 1
    load = [(0, p) for p in range(partitions)]
    heapq.heapify(load)
    out = {}
    for k, c in sorted(counts.items(), key=lambda kv: -kv[1]):
        l, p = heapq.heappop(load)
        out[k] = p
        heapq.heappush(load, (l + c, p))
    return out


def expected_counts(events):
    members = {}
    for _, v in events:
        e = json.loads(v)
        s = members.setdefault(e["post_id"], set())
        if e["action"] == "like":
            s.add(e["user_id"])
        else:
            s.discard(e["user_id"])
    return {PREFIX + p: str(len(s)) for p, s in members.items() if s}


def redis_counts(url):
    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=PREFIX + "*", count=10_000))
    out = {}
    for i in range(0, len(keys), 10_000):
        chunk = keys[i:i + 10_000]
        for k, v in zip(chunk, r.mget(chunk)):
            if v is not None:
                out[k.decode()] = v.decode()
    return out


def watermarks(bootstrap, topic, partitions):
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-wm"})
    try:
        return [c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=10)
                for p in range(partitions)]
    finally:
        c.close()


# ------------------------------------------------------------------ processes


class MemSampler:
    """Polls /proc/<pid>/status every `interval` s: the latest VmRSS and the peak VmHWM (KiB).

    VmHWM, not ru_maxrss: Linux carries the parent's peak RSS over fork+exec into the child's
    ru_maxrss, and the parent here holds the generated events."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.hwm_kib = self.rss_kib = 0
        self._done = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        path = "/proc/%d/status" % self.pid
        while not self._done.wait(self.interval):
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.hwm_kib = max(self.hwm_kib, int(line.split()[1]))
                        elif line.startswith("VmRSS:"):
                            self.rss_kib = int(line.split()[1])
            except (OSError, ValueError, IndexError):
                return

    def stop(self):
        self._done.set()


class Timed:
    """A process started through harness.Proc, reaped with wait4 for its own rusage:
    wall time and user+sys CPU time of exactly that process (rusage), peak RSS (VmHWM)."""

    def __init__(self, args, tmpdir, name):
        self.t0 = time.time()
        self.proc = harness.Proc(args, tmpdir, name=name)
        self.mem = MemSampler(self.proc.pid)

    def wait(self, timeout):
        timer = threading.Timer(timeout, os.kill, (self.proc.pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()
        _, status, ru = os.wait4(self.proc.pid, 0)  # blocking: exact end time, no polling
        self.t1 = time.time()
        timed_out = not timer.is_alive()
        timer.cancel()
        self.mem.stop()
        self.hwm_kib = self.mem.hwm_kib
        code = os.waitstatus_to_exitcode(status)
        self.proc.popen.returncode = code  # reaped here: tell Popen (and harness' cleanup)
        self.rc = code
        self.wall = self.t1 - self.t0
        self.cpu = ru.ru_utime + ru.ru_stime
        self.user, self.sys = ru.ru_utime, ru.ru_stime
        if timed_out:
            raise AssertionError("%s still running after %gs; killed. Its log ends:\n%s"
                                 % (self.proc.name, timeout, self.proc.log()[-3000:]))
        if code != 0:
            raise AssertionError("%s exited with %d. stderr ends:\n%s\nstdout:\n%s"
                                 % (self.proc.name, code, self.proc.log()[-3000:],
                                    self.proc.out()[-2000:]))
        return self

    def stats(self, events):
        return {
            "wall_s": round(self.wall, 3),
            "cpu_s": round(self.cpu, 3),
            "user_s": round(self.user, 3),
            "sys_s": round(self.sys, 3),
            "events_per_s": round(events / self.wall),
            "events_per_cpu_s": round(events / self.cpu) if self.cpu else None,
            "peak_rss_mib": round(self.hwm_kib / 1024, 1),
        }


def log_time(line):
    """epoch seconds of an eddy logfmt line's ts=...Z"""
    m = re.search(r"ts=(\S+?)Z", line)
    dt = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def common_args(ap, out_name):
    """The options every processor benchmark takes, after its own (bench/*.py)."""
    ap.add_argument("--partitions", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-build", action="store_true", help="do not run make first")
    ap.add_argument("--eddy", help="the eddy binary to measure (default: build/eddy, made first)")
    ap.add_argument("-X", action="append", default=[], metavar="KEY=VALUE",
                    help="a job key for eddy, as eddy's own -X")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state)")
    ap.add_argument("--out", default=os.path.join(HERE, "out", out_name))


def bare_run(bare, bootstrap, topics, tmp, n):
    """(a): the bare consumer reads topics ("a,b") to their end; checks it saw n events."""
    log("(a) bare consumer")
    a = Timed([bare, bootstrap, topics], tmp, "bare").wait(600)
    out = json.loads(a.proc.out())
    assert out["events"] == n, out
    return a


def save(path, res):
    """Writes a benchmark's results as JSON (bench/out/...)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=2)


def build(args):
    eddy = os.path.abspath(args.eddy) if args.eddy else os.path.join(ROOT, "build", "eddy")
    if not args.no_build and not args.eddy:
        subprocess.run(["make", "-s", "-C", ROOT], check=True)
    bare = os.path.join(HERE, "out", "bare_consumer")
    subprocess.run(["make", "-s", "-C", HERE], check=True)
    return eddy, bare


def write_job(tmp, name, bootstrap, redis_url, topic, extra=None, kafka_extra=None):
    kafka = {"bootstrap.servers": bootstrap}
    kafka.update(kafka_extra or {})
    job = {
        "processor": "like-counter",
        "job.name": name,
        "input.topics": [topic],
        "state.dir": os.path.join(tmp, "state-" + name),
        "redis.url": redis_url,
        "kafka": kafka,
    }
    job.update(extra or {})
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(job, f, indent=2)
    return path


# ------------------------------------------------------------------ throughput


def throughput(args, eddy, bare, broker, rds, tmp):
    n = args.events
    log("generating %d events", n)
    t = time.monotonic()
    events = make_events(n, seed=args.seed)
    log("generated in %.1fs; producing to %s (%d partitions, lz4)", time.monotonic() - t,
        TOPIC, args.partitions)
    t = time.monotonic()
    part_of = balanced_partitions(events, args.partitions)
    harness.produce(broker.bootstrap, TOPIC, events, partition_fn=lambda k, v: part_of[k])
    log("produced in %.1fs", time.monotonic() - t)
    wm = watermarks(broker.bootstrap, TOPIC, args.partitions)
    retained = sum(hi - lo for lo, hi in wm)
    if retained != n or any(lo for lo, _ in wm):
        raise SystemExit("bench: the dev broker kept %d of %d events (start offsets %s): its "
                         "partitions keep only ~5 MB each; use fewer --events or more "
                         "--partitions" % (retained, n, [lo for lo, _ in wm]))
    log("all %d events retained (%s per partition)", n,
        "%d..%d" % (min(hi for _, hi in wm), max(hi for _, hi in wm)))
    expected = expected_counts(events)
    del events

    url_eddy = "redis://127.0.0.1:%d/1" % rds.port
    url_py = "redis://127.0.0.1:%d/2" % rds.port
    job = write_job(tmp, "bench-likes", broker.bootstrap, url_eddy, TOPIC,
                    extra={"state.sync": True})

    def others():  # CPU seconds of the dev broker and redis-server so far
        return proc_cpu_s(broker.proc.pid), proc_cpu_s(rds.proc.pid)

    def others_delta(before):
        after = others()
        return {"devbroker_cpu_s": round(after[0] - before[0], 2),
                "redis_cpu_s": round(after[1] - before[1], 2)}

    # (a) bare consumer
    log("(a) bare consumer")
    o = others()
    a = Timed([bare, broker.bootstrap, TOPIC], tmp, "bare").wait(600)
    a_others = others_delta(o)
    a_out = json.loads(a.proc.out())
    assert a_out["events"] == n, a_out

    # (b) eddy
    log("(b) eddy run like-counter --from earliest --until end")
    o = others()
    xs = [a for kv in args.X for a in ("-X", kv)]
    b = Timed([eddy, "run", "like-counter", "-c", job, "--from", "earliest", "--until", "end",
               "--no-progress"] + xs, tmp, "eddy").wait(1800)
    b_others = others_delta(o)
    elog = b.proc.log()
    run_lines = [l for l in elog.splitlines() if "fac=RUN" in l and "running:" in l]
    stop = re.search(r"stopped: events=(\d+) dead_lettered=(\d+) batches=(\d+)", elog)
    b_events = int(stop.group(1)) if stop else None
    b_dlq = int(stop.group(2)) if stop else None
    b_run_s = b.t1 - log_time(run_lines[0]) if run_lines else None
    if b_events != n or b_dlq:
        raise SystemExit("bench: eddy reports events=%s dead_lettered=%s, expected %d and 0"
                         % (b_events, b_dlq, n))

    # (c) the Python job
    log("(c) likes_job.py")
    o = others()
    c = Timed([sys.executable, os.path.join(HERE, "likes_job.py"), broker.bootstrap, TOPIC,
               url_py], tmp, "python").wait(1800)
    c_others = others_delta(o)
    c_out = json.loads(c.proc.out())
    assert c_out["events"] == n, c_out

    # the same answer
    got_eddy, got_py = redis_counts(url_eddy), redis_counts(url_py)
    same = got_eddy == got_py == expected
    if not same:
        diff = [k for k in set(got_eddy) | set(got_py) | set(expected)
                if not (got_eddy.get(k) == got_py.get(k) == expected.get(k))]
        raise SystemExit("bench: counts differ on %d posts, e.g. %s" % (
            len(diff), [(k, got_eddy.get(k), got_py.get(k), expected.get(k))
                        for k in sorted(diff)[:5]]))
    log("counts agree: %d posts, eddy == python == expected", len(expected))

    res = {
        "events": n,
        "partitions": args.partitions,
        "eddy_X": args.X,
        "posts_with_likes": len(expected),
        "members": c_out.get("members"),
        "a_bare": dict(a.stats(n), **a_others, read_s=a_out["seconds"],
                       read_events_per_s=round(n / a_out["seconds"])),
        "b_eddy": dict(b.stats(n), **b_others, batches=int(stop.group(3)),
                       run_s=round(b_run_s, 3) if b_run_s else None,
                       run_events_per_s=round(n / b_run_s) if b_run_s else None),
        "c_python": dict(c.stats(n), **c_others, read_s=c_out["seconds"],
                         read_events_per_s=round(n / c_out["seconds"])),
    }
    res["ratio_b_a"] = round(res["b_eddy"]["events_per_s"] / res["a_bare"]["events_per_s"], 3)
    res["ratio_b_c"] = round(res["b_eddy"]["events_per_s"] / res["c_python"]["events_per_s"], 3)
    if b_run_s:
        res["ratio_b_a_run"] = round(res["b_eddy"]["run_events_per_s"] /
                                     res["a_bare"]["read_events_per_s"], 3)
        res["ratio_b_c_run"] = round(res["b_eddy"]["run_events_per_s"] /
                                     res["c_python"]["read_events_per_s"], 3)
    return res


def print_table(res):
    n = res["events"]
    rows = [("(a) bare librdkafka consumer", res["a_bare"], "read"),
            ("(b) eddy like-counter (EOS)", res["b_eddy"], "run"),
            ("(c) python confluent-kafka+redis", res["c_python"], "read")]
    print()
    print("like-counter, %d events, %d partitions, lz4, dev broker + redis on this machine (%d cores)%s"
          % (n, res["partitions"], os.cpu_count(),
             "; eddy -X " + " -X ".join(res["eddy_X"]) if res.get("eddy_X") else ""))
    hdr = "%-34s %7s %9s %7s %9s %6s %9s %8s %8s" % (
        "", "wall s", "events/s", "loop s", "loop ev/s", "CPU s", "ev/CPU-s", "peak RSS",
        "broker s")
    print(hdr)
    print("-" * len(hdr))
    for name, s, k in rows:
        loop_s = s.get(k + "_s")
        loop_r = s.get(k + "_events_per_s")
        print("%-34s %7.2f %9d %7s %9s %6.2f %9s %7.0fM %8.2f" % (
            name, s["wall_s"], s["events_per_s"],
            "%.2f" % loop_s if loop_s else "-", loop_r or "-", s["cpu_s"],
            s["events_per_cpu_s"] or "-", s["peak_rss_mib"], s["devbroker_cpu_s"]))
    print()
    print("b/a = %.3f (target >= 0.7)   b/c = %.2f (target >= 5)" % (res["ratio_b_a"],
                                                                    res["ratio_b_c"]))
    if "ratio_b_a_run" in res:
        print("loop only (after start-up):  b/a = %.3f   b/c = %.2f" % (res["ratio_b_a_run"],
                                                                      res["ratio_b_c_run"]))
    print("eddy: %d batches, %.2f s CPU (user %.2f, sys %.2f) = %d events per CPU-second"
          % (res["b_eddy"]["batches"], res["b_eddy"]["cpu_s"], res["b_eddy"]["user_s"],
             res["b_eddy"]["sys_s"], res["b_eddy"]["events_per_cpu_s"]))


# ------------------------------------------------------------------ live jobs: helpers

LIVE_TOPIC = "likes-live"
MEM_TOPIC = "likes-mem"
LIVE_KAFKA = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def proc_cpu_s(pid):
    """user+sys CPU seconds of a running process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GroupLag:
    """Events of topic not yet committed by a consumer group (eddy commits its offsets to
    Kafka after each batch, asynchronously, for lag monitoring)."""

    def __init__(self, bootstrap, group, topic, partitions):
        self.topic, self.partitions = topic, partitions
        self.c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                           "enable.auto.commit": False})

    def __call__(self):
        tps = [confluent_kafka.TopicPartition(self.topic, p) for p in range(self.partitions)]
        lag = 0
        for tp in self.c.committed(tps, timeout=10):
            lo, hi = self.c.get_watermark_offsets(tp, timeout=10, cached=False)
            lag += hi - (tp.offset if tp.offset >= 0 else lo)
        return lag

    def close(self):
        self.c.close()


def make_producer(bootstrap, linger_ms):
    return confluent_kafka.Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": linger_ms,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "enable.idempotence": True,
        "queue.buffering.max.messages": 2000000,
        "queue.buffering.max.kbytes": 1048576,
    })


def produce1(p, topic, value, key):
    while True:
        try:
            p.produce(topic, value, key)
            return
        except BufferError:
            p.poll(0.01)


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    i = min(len(xs) - 1, max(0, int(round(q / 100.0 * len(xs) + 0.5)) - 1))
    return xs[i]


# ------------------------------------------------------------------ latency


def _subscriber(port, db, pattern, conn, ready):
    """Child process: first arrival time of every key matching the keyspace pattern."""
    r = redis.Redis(host="127.0.0.1", port=port, db=db)
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.psubscribe(pattern)
    ready.set()
    seen = {}
    while not conn.poll():
        m = ps.get_message(timeout=0.1)
        if m is None:
            continue
        now = time.time()
        if m.get("data") in (b"set", "set"):
            key = m["channel"].decode().split("__:", 1)[1]
            seen.setdefault(key, now)
    conn.send(seen)


def latency(args, eddy, broker, rds, tmp):
    """Event-to-Redis latency of a live like-counter at args.rate events/s.

    A producer in this process sends the rate in lz4 batches every 10 ms, and after each
    batch one probe event: a like of a post of its own (probe<n>), keyed and partitioned like
    any other. The latency of a probe is from just before its produce() call to the moment a
    subscriber (another process) gets the Redis keyspace notification of SET likes:probe<n>:
    producer batching, broker, consumer fetch, the batch window (batch.max.ms), the state
    commit (fsync) and the fenced Redis write, all included."""
    db = 3
    url = "redis://127.0.0.1:%d/%d" % (rds.port, db)
    rate, secs = args.rate, args.latency_seconds
    log("latency: generating %d events (%d/s for %ds)", rate * secs, rate, secs)
    events = make_events(rate * secs, seed=args.seed + 1)
    redis.Redis(host="127.0.0.1", port=rds.port).config_set("notify-keyspace-events", "K$")
    ctx = multiprocessing.get_context("fork")
    parent_conn, child_conn = ctx.Pipe()
    ready = ctx.Event()
    sub = ctx.Process(target=_subscriber, daemon=True,
                      args=(rds.port, db, "__keyspace@%d__:%sprobe*" % (db, PREFIX), child_conn,
                            ready))
    sub.start()
    if not ready.wait(10):
        raise SystemExit("bench: latency: the Redis subscriber did not start")
    kafka = dict(LIVE_KAFKA)
    if args.fetch_wait_ms is not None:
        # The dev broker (librdkafka's mock) holds an empty fetch for the whole
        # fetch.wait.max.ms (default 500) even when data arrives meanwhile; a real broker
        # answers as soon as fetch.min.bytes (1) is there. A short wait emulates that.
        kafka["fetch.wait.max.ms"] = args.fetch_wait_ms
    job = write_job(tmp, "bench-live", broker.bootstrap, url, LIVE_TOPIC,
                    extra={"state.sync": True}, kafka_extra=kafka)
    proc = harness.Proc([eddy, "run", "like-counter", "-c", job], tmp, name="eddy-live")
    mem = MemSampler(proc.pid, 0.5)
    p = make_producer(broker.bootstrap, 5)
    rcl = redis.Redis(host="127.0.0.1", port=rds.port, db=db)
    sent = {}
    seq = itertools.count()

    def probe():
        i = next(seq)
        post = "probe%d" % i
        v = b'{"event_id":"probe-%d","user_id":"u0","post_id":"%s","action":"like","ts":%d}' % (
            i, post.encode(), int(time.time() * 1000))
        sent[PREFIX + post] = time.time()
        produce1(p, LIVE_TOPIC, v, post.encode())
        return PREFIX + post

    # warm-up: the job has joined its group and writes to Redis
    log("latency: waiting for the live job to join its group and write")
    deadline = time.monotonic() + 60

    while True:
        k = probe()
        p.flush(5)
        try:
            harness.wait_until(lambda: rcl.exists(k), 2, interval=0.05)

            break
        except AssertionError:
            if not proc.running() or time.monotonic() > deadline:
                raise SystemExit("bench: latency: the live job wrote nothing within 60 s. Its "
                                 "log ends:\n" + proc.log()[-3000:])
    log("latency: producing %d events/s for %d s", rate, secs)
    lag = GroupLag(broker.bootstrap, "eddy-bench-live", LIVE_TOPIC, args.partitions)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    measured = []
    cpu0, t0 = proc_cpu_s(proc.pid), time.monotonic()
    next_t = t0
    lags = []
    last_lag_t = t0
    for i in range(0, len(events), per_tick):
        for k, v in events[i:i + per_tick]:
            produce1(p, LIVE_TOPIC, v, k)
        measured.append(probe())
        p.poll(0)
        now = time.monotonic()
        if now - last_lag_t >= 2:
            last_lag_t = now
            lags.append(lag())
        next_t += tick
        d = next_t - time.monotonic()
        if d > 0:
            time.sleep(d)
    t1 = time.monotonic()
    cpu1 = proc_cpu_s(proc.pid)
    p.flush(60)
    produced_rate = len(events) / (t1 - t0)
    end_lag = lag()
    log("latency: produced at %.0f events/s; lag at the end %d events; draining", produced_rate,
        end_lag)
    try:
        harness.wait_until(lambda: lag() == 0, max(60, end_lag / 20000), interval=0.5,
                           what="the live job to catch up")
        caught_up = True
    except AssertionError:
        caught_up = False
    t_drain = time.monotonic() - t1
    time.sleep(0.5)
    parent_conn.send("stop")
    seen = parent_conn.recv()
    sub.join(5)
    mem.stop()
    code = proc.term(60)
    lag.close()
    lat = [(seen[k] - sent[k]) * 1000 for k in measured if k in seen]
    missing = sum(1 for k in measured if k not in seen)
    res = {
        "fetch_wait_max_ms": args.fetch_wait_ms,
        "rate_target": rate,
        "rate_produced": round(produced_rate),
        "seconds": secs,
        "probes": len(measured),
        "probes_missing": missing,
        "latency_ms": {q: round(percentile(lat, float(q[1:])), 1) if lat else None
                       for q in ("p50", "p90", "p99", "p999")},
        "latency_ms_max": round(max(lat), 1) if lat else None,
        "lag_samples": lags,
        "lag_at_end": end_lag,
        "caught_up": caught_up,
        "drain_s": round(t_drain, 1),
        "eddy_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
        "eddy_peak_rss_mib": round(mem.hwm_kib / 1024, 1),
        "exit_code": code,
    }
    print()
    print("latency, live like-counter (subscribed, state.sync=true, batch.max.ms=100, "
          "kafka.fetch.wait.max.ms=%s): %d events/s produced for %ds"
          % (args.fetch_wait_ms if args.fetch_wait_ms is not None else "500 (default)",
             res["rate_produced"], secs))
    print("  event-to-Redis ms: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d probes, %d "
          "missing; target p99 < 250)" % (res["latency_ms"]["p50"], res["latency_ms"]["p90"],
                                          res["latency_ms"]["p99"], res["latency_ms"]["p999"],
                                          res["latency_ms_max"], len(measured), missing))
    print("  eddy used %.2f cores; consumer lag every 2 s: %s; at the end %d (caught up after "
          "%.1f s)" % (res["eddy_cpu_cores"], lags, end_lag, t_drain))
    return res


# ------------------------------------------------------------------ memory


def memory(args, eddy, broker, rds, tmp):
    """Resident memory of a live like-counter whose state holds args.memory_keys membership
    keys (each a distinct (post, user) like over 100k posts) plus a count per post.

    The dev broker keeps only ~5 MB per partition, so the producer stays at most ~1M events
    ahead of what the job has committed. If the job's progress stalls (no committed progress
    for --stall-seconds), the run stops there and reports how far it got."""
    n = args.memory_keys
    db = 4
    url = "redis://127.0.0.1:%d/%d" % (rds.port, db)
    job = write_job(tmp, "bench-mem", broker.bootstrap, url, MEM_TOPIC,
                    extra={"state.sync": True}, kafka_extra=LIVE_KAFKA)
    proc = harness.Proc([eddy, "run", "like-counter", "-c", job], tmp, name="eddy-mem")
    mem = MemSampler(proc.pid, 0.2)
    lag = GroupLag(broker.bootstrap, "eddy-bench-mem", MEM_TOPIC, args.partitions)
    p = make_producer(broker.bootstrap, 20)
    posts = 100_000
    log("memory: %d distinct likes into a live job", n)
    t0 = time.monotonic()
    cpu0 = proc_cpu_s(proc.pid)
    series = []  # (seconds, events produced, events committed by the job, RSS MiB)
    chunk = 100_000
    ts = 1_700_000_000_000
    produced = 0
    stalled = False
    l = 0
    for start in range(0, n, chunk):
        for i in range(start, min(n, start + chunk)):
            post = i % posts
            user = (i // posts) * 9973 % 1_000_000  # distinct per post: 9973 is prime to 10^6
            produce1(p, MEM_TOPIC,
                     b'{"event_id":"m%d","user_id":"u%07d","post_id":"p%d","action":"like",'
                     b'"ts":%d}' % (i, user, post, ts + i // 100), b"p%d" % post)
        p.poll(0)
        p.flush(60)
        produced = min(n, start + chunk)
        best, best_t = None, time.monotonic()
        while True:
            l = lag()
            if l < 1_000_000:
                break
            if not proc.running():
                raise SystemExit("bench: memory: the job died. Its log ends:\n" +
                                 proc.log()[-3000:])
            if best is None or l < best - 1000:
                best, best_t = l, time.monotonic()
            elif time.monotonic() - best_t > args.stall_seconds:
                stalled = True
                break
            time.sleep(0.5)
        series.append((round(time.monotonic() - t0, 1), produced, produced - l,
                       round(mem.rss_kib / 1024)))
        if (start // chunk) % 10 == 9 or stalled:
            log("memory: %.0fs: %d produced, %d committed by the job, RSS %d MiB",
                series[-1][0], produced, produced - l, mem.rss_kib // 1024)
        if stalled:
            log("memory: the job made no progress for %ds: stopping here", args.stall_seconds)
            break
    if not stalled:
        try:
            harness.wait_until(lambda: lag() == 0, 600, interval=0.5,
                               what="the memory job to catch up")
            l = 0
        except AssertionError:
            stalled = True
            l = lag()
    t1 = time.monotonic()
    cpu1 = proc_cpu_s(proc.pid)
    done = produced - l
    time.sleep(1)
    rss_end, hwm = mem.rss_kib, mem.hwm_kib
    with open("/proc/%d/status" % proc.pid) as f:
        status = {k.split(":")[0]: k.split(":")[1].strip() for k in f if k.startswith("Vm")}
    mem.stop()
    code = proc.term(120)
    lag.close()
    ok = None
    if not stalled:
        r = redis.Redis.from_url(url)
        want = str(n // posts)
        sample = [r.get(PREFIX + "p%d" % i) for i in (0, 1, posts // 2, posts - 1)]
        ok = all(v is not None and v.decode() in (want, str(n // posts + 1)) for v in sample)
    st = subprocess.run([eddy, "state", "-c", job, "stats"], capture_output=True, text=True)
    stats = dict(k.split(None, 1) for k in st.stdout.splitlines() if " " in k)
    res = {
        "keys_target": n,
        "events_committed": done,
        "stalled": stalled,
        "rocksdb_estimate_num_keys": stats.get("rocksdb.estimate-num-keys"),
        "seconds": round(t1 - t0, 1),
        "events_per_s": round(done / (t1 - t0)),
        "eddy_cpu_s": round(cpu1 - cpu0, 1),
        "events_per_cpu_s": round(done / (cpu1 - cpu0)) if cpu1 > cpu0 else None,
        "rss_end_mib": round(rss_end / 1024, 1),
        "peak_rss_mib": round(hwm / 1024, 1),
        "vm_status": status,
        "series_s_produced_committed_rssmib": series,
        "redis_counts_ok": ok,
        "exit_code": code,
    }
    print()
    print("memory, live like-counter, target %d membership keys (+%d counts), default cache "
          "budgets:" % (n, posts))
    if stalled:
        print("  STALLED: the job committed %d events (~keys) in %.0f s, then made no progress "
              "for %d s" % (done, t1 - t0, args.stall_seconds))
    print("  RSS at the end %.0f MiB, peak (VmHWM) %.0f MiB (target <= 1024 at 10M keys); "
          "%d events/s, %d events per CPU-second; Redis counts %s" % (
              res["rss_end_mib"], res["peak_rss_mib"], res["events_per_s"],
              res["events_per_cpu_s"] or 0,
              "not checked" if ok is None else "ok" if ok else "WRONG"))
    print("  (seconds, produced, committed, RSS MiB) every 1M: %s"
          % [x for i, x in enumerate(series) if i % 10 == 9 or i == len(series) - 1])
    return res


# ------------------------------------------------------------------ profile


def profile(args, eddy, broker, rds, tmp):
    """The replay of (b) again, under perf record (DWARF call graphs); reports in bench/out/."""
    url = "redis://127.0.0.1:%d/5" % rds.port
    job = write_job(tmp, "bench-prof", broker.bootstrap, url, TOPIC, extra={"state.sync": True})
    data = os.path.join(tmp, "perf.data")
    log("profile: eddy replay under perf record")
    subprocess.run(["perf", "record", "-q", "-F", str(args.perf_freq), "--call-graph",
                    "dwarf,16384", "-o", data, "--", eddy, "run", "like-counter", "-c", job,
                    "--from", "earliest", "--until", "end", "--no-progress"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outdir = os.path.dirname(args.out)
    reports = {
        "self": ["--no-children", "--sort", "comm,dso,symbol", "-g", "none",
                 "--percent-limit", "0.3"],
        "children": ["--children", "--sort", "symbol", "-g", "none", "--percent-limit", "1"],
    }
    paths = {}
    for name, opts in reports.items():
        path = os.path.join(outdir, "like-counter.perf-%s.txt" % name)
        with open(path, "w") as f:
            subprocess.run(["perf", "report", "-i", data, "--stdio"] + opts, stdout=f,
                           stderr=subprocess.DEVNULL, check=True)
        paths[name] = path
    print()
    print("profile of (b): top symbols by self time (all threads; %s)" % paths["self"])
    with open(paths["self"]) as f:
        rows = [l.rstrip() for l in f if l.strip() and not l.startswith("#")]
    for l in rows[:25]:
        print("  " + re.sub(r"\s+", " ", l.strip()))
    return paths


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--latency", action="store_true",
                    help="also measure event-to-Redis latency of a live job at --rate")
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--latency-seconds", type=int, default=20)
    ap.add_argument("--fetch-wait-ms", type=int, default=10,
                    help="kafka.fetch.wait.max.ms of the live job (see README; -1: default)")
    ap.add_argument("--memory", action="store_true",
                    help="also measure the RSS of a live job holding --memory-keys keys")
    ap.add_argument("--memory-keys", type=int, default=10_000_000)
    ap.add_argument("--stall-seconds", type=int, default=60)
    ap.add_argument("--profile", action="store_true",
                    help="also run (b) under perf record and report the hot spots")
    ap.add_argument("--perf-freq", type=int, default=499)
    ap.add_argument("--only", choices=["latency", "memory"],
                    help="skip the throughput comparison")
    ap.add_argument("--no-build", action="store_true", help="do not run make first")
    ap.add_argument("--eddy", help="the eddy binary to measure (default: build/eddy, made first)")
    ap.add_argument("-X", action="append", default=[], metavar="KEY=VALUE",
                    help="extra -X setting for eddy in (b), e.g. kafka.queued.min.messages=1000000")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state)")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "like-counter.json"))
    args = ap.parse_args()
    if args.fetch_wait_ms is not None and args.fetch_wait_ms < 0:
        args.fetch_wait_ms = None
    if args.only:
        base, ext = os.path.splitext(args.out)
        if args.out == ap.get_default("out"):
            args.out = "%s-%s%s" % (base, args.only, ext)

    eddy, bare = build(args)
    tmp = tempfile.mkdtemp(prefix="eddy-bench-")
    log("temp dir %s", tmp)
    ok = False
    try:
        broker = harness.DevBroker(eddy, {TOPIC: args.partitions, LIVE_TOPIC: args.partitions,
                                          MEM_TOPIC: args.partitions}, tmp)
        rds = harness.Redis(tmp)
        git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
        with open(eddy, "rb") as f:
            eddy_sha = hashlib.sha256(f.read()).hexdigest()[:16]
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        log("eddy %s (git %s, sha256 %s); load average before: %s", eddy, git, eddy_sha,
            " ".join(load))
        res = {"machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname()[2:4]),
                           "loadavg_before": load},
               "eddy": {"binary": eddy, "git": git, "sha256_16": eddy_sha},
               "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        if not args.only:
            res["throughput"] = throughput(args, eddy, bare, broker, rds, tmp)
            print_table(res["throughput"])
            if args.profile:
                res["profile"] = profile(args, eddy, broker, rds, tmp)
        if args.latency or args.only == "latency":
            res["latency"] = latency(args, eddy, broker, rds, tmp)
        if args.memory or args.only == "memory":
            res["memory"] = memory(args, eddy, broker, rds, tmp)
        save(args.out, res)
        log("wrote %s", args.out)
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("logs and state kept in %s", tmp)


if __name__ == "__main__":
    main()
