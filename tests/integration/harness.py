"""harness.py: starts, stops and feeds the processes eddy's integration tests and benchmarks use.

Run with Debian's /usr/bin/python3: that is the interpreter with python3-confluent-kafka (1.7, on
librdkafka 2.0.2) and python3-redis installed; another python3 on PATH may lack them.

    from harness import DevBroker, Redis, Proc, produce, consume_all, wait_until

    broker = DevBroker(eddy_bin, {"likes": 8}, tmpdir)
    redis = Redis(tmpdir)
    produce(broker.bootstrap, "likes", ((e["post_id"], json.dumps(e)) for e in events))
    job = Proc([eddy_bin, "run", "like-counter", "-c", conf], tmpdir, name="like-counter")
    wait_until(lambda: redis.client().get("likes:p1") == b"3", 30, what="likes:p1 == 3")
    job.kill()

Every process started here is killed when the test process exits, also when it exits on an
uncaught exception or SIGTERM (atexit), and, for processes started from the main thread, when it
dies by SIGKILL (PR_SET_PDEATHSIG).
"""

import atexit
import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import confluent_kafka
import redis

__all__ = [
    "free_port",
    "DevBroker",
    "Redis",
    "Proc",
    "produce",
    "consume_all",
    "wait_until",
    "cleanup",
]

_live = []  # subprocess.Popen of every process started here and not yet reaped
_live_lock = threading.Lock()
_names = itertools.count(1)  # makes the file names of each started process unique


def _kill_all():
    with _live_lock:
        procs = list(_live)
        _live.clear()
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


atexit.register(_kill_all)


def cleanup():
    """Kills every process started here that still runs (between tests of one run)."""
    _kill_all()

# Turn SIGTERM into a normal exit so that atexit runs, unless the test installed its own handler.
try:
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(128 + sig))
except ValueError:  # imported outside the main thread
    pass

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None


def _die_with_parent():
    # Runs in the child between fork and exec: SIGKILL it when the thread that started it
    # dies, so that a test killed with SIGKILL leaves nothing behind.
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _spawn(args, **kwargs):
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only the main thread,
    # which lives as long as the process, uses it.
    if threading.current_thread() is threading.main_thread():
        kwargs["preexec_fn"] = _die_with_parent
    p = subprocess.Popen(args, **kwargs)
    with _live_lock:
        _live.append(p)
    return p


def _reaped(p):
    with _live_lock:
        if p in _live:
            _live.remove(p)


def _tail(path, lines=20):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _stop(p, sig, timeout):
    """Sends sig, waits up to timeout, SIGKILLs on timeout. Returns (exit code, timed_out)."""
    timed_out = False
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            p.kill()
            p.wait()
    _reaped(p)
    return p.returncode, timed_out


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout, interval=0.2, what=""):
    """Calls fn() every interval seconds until it returns something true, and returns that.
    Raises AssertionError naming `what` (and fn's last value) after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                "timed out after %gs waiting for %s (last value: %r)"
                % (timeout, what or getattr(fn, "__name__", "condition"), value)
            )
        time.sleep(interval)


class Proc:
    """A process of the test (an eddy job, usually), stdout and stderr going to files in tmpdir:
    <name>-<n>.out and <name>-<n>.log."""

    def __init__(self, args, tmpdir, name=None, env=None, cwd=None):
        self.args = [str(a) for a in args]
        self.name = "%s-%d" % (name or os.path.basename(self.args[0]), next(_names))
        self.out_path = os.path.join(tmpdir, self.name + ".out")
        self.log_path = os.path.join(tmpdir, self.name + ".log")
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            self.popen = _spawn(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd
            )
        self.pid = self.popen.pid

    def running(self):
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll()

    def kill(self):
        """SIGKILL, as a crash; returns the exit code (-9 if it was still running)."""
        return _stop(self.popen, signal.SIGKILL, 30)[0]

    def term(self, timeout=30):
        """SIGTERM, a clean stop; returns the exit code. A process that has not exited after
        timeout seconds is SIGKILLed and AssertionError raised."""
        code, timed_out = _stop(self.popen, signal.SIGTERM, timeout)
        if timed_out:
            raise AssertionError(
                "%s did not stop within %gs of SIGTERM; killed. Its log ends:\n%s"
                % (self.name, timeout, _tail(self.log_path))
            )
        return code

    def wait(self, timeout=None):
        """Waits for the process to exit and returns its exit code; AssertionError on timeout
        (the process keeps running)."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "%s still running after %gs. Its log ends:\n%s"
                % (self.name, timeout, _tail(self.log_path))
            ) from None
        _reaped(self.popen)
        return code

    def log(self):
        """Everything the process wrote to stderr so far."""
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def out(self):
        """Everything the process wrote to stdout so far."""
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.running():
            self.kill()

    def __repr__(self):
        return "<Proc %s pid=%d>" % (self.name, self.pid)


class DevBroker:
    """`eddy devbroker` on a free loopback port. topics: {name: partitions} created at start;
    other topics are created on first produce with 4 partitions. .bootstrap is its address."""

    def __init__(self, eddy_bin, topics=None, tmpdir=".", timeout=20, port=None):
        self.eddy_bin = str(eddy_bin)
        self.topics = dict(topics or {})
        self.tmpdir = str(tmpdir)
        self.proc = None
        self.bootstrap = None
        self.port = None
        self._fixed_port = port
        self._start(timeout)

    def _start(self, timeout):
        for _attempt in range(5):
            self.port = self._fixed_port or free_port()
            bootstrap_file = os.path.join(self.tmpdir, "devbroker-%d.bootstrap" % self.port)
            args = [self.eddy_bin, "devbroker", "--port", str(self.port)]
            if self.topics:
                args += ["--topics", ",".join("%s:%d" % kv for kv in self.topics.items())]
            args += ["--bootstrap-file", bootstrap_file]
            self.proc = Proc(args, self.tmpdir, name="devbroker")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if os.path.exists(bootstrap_file):  # written atomically: complete when there
                    with open(bootstrap_file) as f:
                        self.bootstrap = f.read().strip()
                    return
                if not self.proc.running():
                    break
                time.sleep(0.02)
            else:
                self.proc.kill()
                raise AssertionError(
                    "eddy devbroker gave no bootstrap address within %gs. Its log ends:\n%s"
                    % (timeout, _tail(self.proc.log_path))
                )
            code = self.proc.wait(5)
            log = self.proc.log()
            if code == 1 and "in use" in log:  # lost a race for the free port: try another
                continue
            raise AssertionError(
                "eddy devbroker exited with %d before it was ready. Its log ends:\n%s"
                % (code, _tail(self.proc.log_path))
            )
        raise AssertionError("eddy devbroker: no free port after 5 attempts")

    def stop(self, timeout=10):
        """SIGTERM, wait, SIGKILL on timeout. Returns the exit code."""
        return _stop(self.proc.popen, signal.SIGTERM, timeout)[0]

    def log(self):
        return self.proc.log()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Redis:
    """redis-server on a free loopback port, no persistence, files in tmpdir; with password, it
    requires AUTH (requirepass) and .url carries the password."""

    def __init__(self, tmpdir=".", port=None, timeout=10, password=None):
        self.tmpdir = str(tmpdir)
        self.port = port or free_port()
        self.password = password
        auth = ":%s@" % password if password else ""
        self.url = "redis://%s127.0.0.1:%d/0" % (auth, self.port)
        self.proc = None
        self._start(timeout)

    def _start(self, timeout):
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.tmpdir]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = Proc(args, self.tmpdir, name="redis-%d" % self.port)

        def ready():
            if not self.proc.running():
                raise AssertionError(
                    "redis-server on port %d exited with %s. Its log ends:\n%s"
                    % (self.port, self.proc.returncode, _tail(self.proc.out_path))
                )
            try:
                with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1,
                                 password=self.password) as c:
                    return c.ping()
            except redis.exceptions.ConnectionError:
                return False

        wait_until(ready, timeout, interval=0.05, what="redis-server on port %d" % self.port)

    def client(self, **kwargs):
        """A redis.Redis on this server (db 0 unless db= is given)."""
        kw = {"host": "127.0.0.1", "port": self.port, "db": 0, "password": self.password}
        kw.update(kwargs)
        return redis.Redis(**kw)

    def stop(self, timeout=10):
        """SIGTERM, wait, SIGKILL on timeout. Returns the exit code."""
        return _stop(self.proc.popen, signal.SIGTERM, timeout)[0]

    def restart(self, timeout=10):
        """Stops the server and starts a new one on the same port. Its data is lost."""
        self.stop()
        self._start(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class ClickHouse:
    """clickhouse-server (Debian's package) on free loopback ports, its data in tmpdir.
    .url is its HTTP interface; query() runs SQL over it. The files are set up once; stop()
    and start() keep the data (a restart mid-run)."""

    def __init__(self, tmpdir=".", timeout=60):
        self.dir = os.path.join(str(tmpdir), "clickhouse-%d" % os.getpid())
        os.makedirs(self.dir, exist_ok=True)
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.inter_port = free_port()
        self.url = "http://127.0.0.1:%d" % self.http_port
        self.proc = None
        with open("/etc/clickhouse-server/config.xml") as f:
            conf = f.read()
        d = self.dir
        subst = [
            (r"<log>[^<]*</log>", "<log>%s/server.log</log>" % d),
            (r"<errorlog>[^<]*</errorlog>", "<errorlog>%s/server.err.log</errorlog>" % d),
            (r"<http_port>\d+</http_port>", "<http_port>%d</http_port>" % self.http_port),
            (r"<tcp_port>\d+</tcp_port>", "<tcp_port>%d</tcp_port>" % self.tcp_port),
            (r"<interserver_http_port>\d+</interserver_http_port>",
             "<interserver_http_port>%d</interserver_http_port>" % self.inter_port),
            (r"<listen_host>::1</listen_host>", ""),
            (r"<path>/var/lib/clickhouse/</path>", "<path>%s/data/</path>" % d),
            (r"<tmp_path>[^<]*</tmp_path>", "<tmp_path>%s/tmp/</tmp_path>" % d),
            (r"<user_files_path>[^<]*</user_files_path>",
             "<user_files_path>%s/user_files/</user_files_path>" % d),
            (r"<format_schema_path>[^<]*</format_schema_path>",
             "<format_schema_path>%s/format_schemas/</format_schema_path>" % d),
        ]
        for pat, rep in subst:
            conf, n = re.subn(pat, rep, conf, count=1)
            if n != 1 and "listen_host" not in pat:
                raise AssertionError("clickhouse config: no match for %s" % pat)
        with open(os.path.join(d, "config.xml"), "w") as f:
            f.write(conf)
        shutil.copy("/etc/clickhouse-server/users.xml", os.path.join(d, "users.xml"))
        self.start(timeout)

    def start(self, timeout=60):
        server = shutil.which("clickhouse-server") or "/usr/bin/clickhouse-server"
        self.proc = Proc([server, "--config-file=%s/config.xml" % self.dir], self.dir,
                         name="clickhouse-%d" % self.http_port)

        def ready():
            if not self.proc.running():
                raise AssertionError("clickhouse-server exited with %s. Its log ends:\n%s"
                                     % (self.proc.returncode, _tail(self.proc.out_path)))
            try:
                return self.query("SELECT 1").strip() == "1"
            except OSError:
                return False

        wait_until(ready, timeout, interval=0.1, what="clickhouse-server on %s" % self.url)

    def query(self, sql, data=None, timeout=30):
        """Runs @sql over HTTP; returns the body as text; raises on an HTTP error."""
        import urllib.error
        import urllib.parse
        import urllib.request
        req = urllib.request.Request(self.url + "/?" + urllib.parse.urlencode({"query": sql}),
                                     data=data if data is not None else b"")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise AssertionError("clickhouse: %s: %s" % (sql, e.read().decode()[:500]))

    def stop(self, timeout=30):
        """SIGTERM, wait, SIGKILL on timeout. Returns the exit code."""
        if self.proc and self.proc.running():
            return _stop(self.proc.popen, signal.SIGTERM, timeout)[0]
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _as_bytes(v):
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    return json.dumps(v, separators=(",", ":")).encode()


def produce(bootstrap, topic, records, key_fn=None, partition_fn=None, compression="lz4",
            timeout=120, config=None):
    """Produces records to topic as fast as librdkafka goes; returns how many.

    records: (key, value) pairs, or bare values when key_fn is given. Keys and values may be
    bytes, str (UTF-8), None, or anything else json.dumps takes (written as compact JSON).
    key_fn(value) -> key, when given, computes every key from its value. partition_fn(key, value)
    -> partition number (None: librdkafka's partitioner, which hashes the key).
    Idempotent producer, lz4 by default. Raises if any record was not delivered, or if
    they are not all delivered within timeout seconds. config: extra librdkafka properties.
    """
    conf = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 50,
        "batch.num.messages": 10000,
        "compression.type": compression or "none",
        "enable.idempotence": True,
        "queue.buffering.max.messages": 1000000,
        "delivery.report.only.error": True,
    }
    conf.update(config or {})
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append((err, msg.partition()))

    conf["on_delivery"] = on_delivery
    p = confluent_kafka.Producer(conf)
    count = 0
    for rec in records:
        if key_fn is not None:
            value = rec
            key = key_fn(value)
        else:
            key, value = rec
        kwargs = {}
        if partition_fn is not None:
            part = partition_fn(key, value)
            if part is not None:
                kwargs["partition"] = part
        key, value = _as_bytes(key), _as_bytes(value)
        while True:
            try:
                p.produce(topic, value, key, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain
                p.poll(0.05)
        count += 1
        if count % 10000 == 0:
            p.poll(0)
            if failed:
                break
    left = p.flush(timeout)
    if failed:
        raise RuntimeError(
            "produce to %s at %s: %d record(s) not delivered, first: %s (partition %s)"
            % (topic, bootstrap, len(failed), failed[0][0], failed[0][1])
        )
    if left:
        raise RuntimeError(
            "produce to %s at %s: %d record(s) still undelivered after %gs"
            % (topic, bootstrap, left, timeout)
        )
    return count


def consume_all(bootstrap, topic, timeout_s=60, missing_ok=False):
    """Every record of topic from the beginning of each partition to its end, as a list of
    (partition, offset, key, value, headers) sorted by partition and offset; headers is a list of
    (name, bytes) pairs. Assigns all partitions (no consumer group) and reads until EOF on all.
    A topic that does not exist raises, or gives [] with missing_ok."""
    c = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "eddy-harness-%d-%d" % (os.getpid(), next(_names)),
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    try:
        # List all topics: the dev broker creates any topic a metadata request names, whatever
        # the client's allow.auto.create.topics (its Metadata API stops at v2, before that flag).
        md = c.list_topics(timeout=min(timeout_s, 10)).topics.get(topic)
        if md is None or md.error is not None:
            if missing_ok:
                return []
            raise RuntimeError("consume_all: topic %s at %s: %s"
                               % (topic, bootstrap, md.error if md else "no such topic"))
        partitions = sorted(md.partitions)
        pending = set()
        for part in partitions:
            lo, hi = c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, part),
                                             timeout=min(timeout_s, 10))
            if hi > lo:
                pending.add(part)
        c.assign([confluent_kafka.TopicPartition(topic, part, confluent_kafka.OFFSET_BEGINNING)
                  for part in pending])
        out = []
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(
                    "consume_all: %s at %s: partitions %s not read to the end within %gs "
                    "(%d records read)" % (topic, bootstrap, sorted(pending), timeout_s, len(out))
                )
            for m in c.consume(10000, 0.5):
                err = m.error()
                if err is None:
                    out.append((m.partition(), m.offset(), m.key(), m.value(),
                                list(m.headers() or [])))
                elif err.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    pending.discard(m.partition())
                else:
                    raise confluent_kafka.KafkaException(err)
        out.sort(key=lambda r: (r[0], r[1]))
        return out
    finally:
        c.close()
