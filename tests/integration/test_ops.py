"""test_ops.py: operations: /metrics, /healthz, /readyz, JSON logs and secrets, on a running job.

A like-counter job reads events produced before it starts while its Redis (with a password) is
not up yet, so it can not finish a batch and stays behind: /readyz must say 503. With Redis up it
catches up: /readyz 200, lag 0 on every partition, counters equal to what was produced. Redis down
again and more events: 503 again; up: 200. Every log line must be JSON (log.format=json), and no
secret given in the configuration may appear in logs, metrics, /readyz or --list-config.
"""
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import harness

PARTITIONS = 4
TOPIC = "likes"
JOB = "likes-ops"
DLQ = JOB + ".dlq"
REDIS_SECRET = "S3cr3tXyz"
KAFKA_SECRET = "K4fkaS3cretQ"

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def http_get(port, path, timeout=5):
    """(status, body) of GET http://127.0.0.1:port/path; (None, reason) if nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        return None, str(e)


def parse_metrics(text):
    """Prometheus text format 0.0.4 -> {(name, ((label, value), ...)): float}; checks the syntax,
    that every sample belongs to a family with # TYPE, and the histograms' invariants."""
    types, samples = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert typ in ("counter", "gauge", "histogram"), line
            types[name] = typ
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, _, labels, value = m.groups()
        pairs = []
        if labels:
            pos = 0
            while pos < len(labels):
                lm = LABEL.match(labels, pos)
                assert lm, "bad labels in %r" % line
                pairs.append((lm.group(1), lm.group(2)))
                pos = lm.end()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, "sample %s without # TYPE" % name
        key = (name, tuple(pairs))
        assert key not in samples, "duplicate sample %r" % (key,)
        samples[key] = float(value)
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        buckets = sorted((float("inf") if dict(k[1])["le"] == "+Inf" else float(dict(k[1])["le"]), v)
                         for k, v in samples.items() if k[0] == fam + "_bucket")
        assert buckets and buckets[-1][0] == float("inf"), fam
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "%s buckets not cumulative" % fam
        assert counts[-1] == samples[(fam + "_count", ())], fam
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), None)


def series(samples, name):
    return {k[1]: v for k, v in samples.items() if k[0] == name}


def events(n, start=0):
    out = []
    for i in range(start, start + n):
        post = "p%d" % (i % 97)
        ev = {"event_id": "e%d" % i, "user_id": "u%d" % (i % 31), "post_id": post,
              "action": "like" if i % 3 else "unlike", "ts": 1700000000000 + i}
        out.append((post, json.dumps(ev, separators=(",", ":"))))
    return out


BAD = [("p1", "not json"), ("p2", "{also not json"),
       ("p3", '{"event_id":"x","user_id":"u","action":"like","ts":1}'),
       ("p4", '{"event_id":"y","post_id":"p4","action":"like","ts":1}')]


def test_metrics_readyz_logs_secrets(eddy, tmp):
    broker = harness.DevBroker(eddy, {TOPIC: PARTITIONS, DLQ: 1}, tmp)
    rport, mport = harness.free_port(), harness.free_port()
    redis_url = "redis://:%s@127.0.0.1:%d/0" % (REDIS_SECRET, rport)
    n1 = harness.produce(broker.bootstrap, TOPIC, events(6000) + BAD)
    job_conf = {
        "processor": "like-counter",
        "job.name": JOB,
        "input.topics": [TOPIC],
        "state.dir": os.path.join(tmp, "state"),
        "state.sync": False,
        "batch.max.events": 500,
        "batch.max.ms": 50,
        "redis.timeout.ms": 500,
        "metrics.port": mport,
        "metrics.address": "127.0.0.1",
        "ready.max.lag": 0,
        "log.format": "json",
        "kafka": {"bootstrap.servers": broker.bootstrap, "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500},
    }
    path = os.path.join(tmp, "job.json")
    with open(path, "w") as fp:
        json.dump(job_conf, fp)
    bodies = []  # everything served, searched for secrets at the end

    def scrape():
        status, body = http_get(mport, "/metrics")
        assert status == 200, (status, body)
        bodies.append(body)
        return parse_metrics(body)

    def readyz():
        status, body = http_get(mport, "/readyz")
        bodies.append(body)
        return status, body

    # Redis is down: the job starts, is assigned, and blocks on delivery behind the events
    job = harness.Proc([eddy, "run", "like-counter", "-c", path, "-X", "redis.url=" + redis_url,
                        "-X", "kafka.sasl.password=" + KAFKA_SECRET], tmp, name="job")
    harness.wait_until(lambda: http_get(mport, "/healthz")[0] == 200, 30, interval=0.05,
                       what="/healthz 200")
    harness.wait_until(
        lambda: (value(s := scrape(), "eddy_assigned_partitions") == PARTITIONS
                 and value(s, "eddy_sink_retries_total", sink="redis") > 0),
        60, what="4 partitions assigned and Redis retried")
    status, body = readyz()
    assert status == 503 and ("not caught up" in body or "not reported" in body), (status, body)

    # Redis up: caught up, ready, every counter equal to what was produced
    redis = harness.Redis(tmp, port=rport, password=REDIS_SECRET)
    harness.wait_until(lambda: readyz()[0] == 200, 60, what="/readyz 200 after Redis is up")

    def settled(n_in):
        s = scrape()
        return s if (sum(series(s, "eddy_events_in_total").values()) == n_in
                     and value(s, "eddy_events_out_total", topic=DLQ) == len(BAD)
                     and value(s, "eddy_outbox_depth") == 0) else None

    s = harness.wait_until(lambda: settled(n1), 30, what="counters settle")
    lags = series(s, "eddy_consumer_lag")
    assert len(lags) == PARTITIONS and set(lags.values()) == {0.0}, lags
    hw = series(s, "eddy_high_watermark_offset")
    assert sum(hw.values()) == n1, hw
    assert series(s, "eddy_committed_offset") == hw
    assert value(s, "eddy_dead_letters_total", reason="json") == 2, s
    assert value(s, "eddy_dead_letters_total", reason="missing_field") == 2, s
    assert value(s, "eddy_batches_total") >= n1 / 500
    assert value(s, "eddy_batch_duration_seconds_count") >= n1 / 500
    assert value(s, "eddy_commit_duration_seconds_count") == value(s, "eddy_batches_total")
    assert value(s, "eddy_delivery_duration_seconds_count") >= 1
    assert value(s, "eddy_redis_ops_delivered_total") > 0
    assert value(s, "eddy_redis_chunks_total", result="applied") > 0
    assert value(s, "eddy_sink_errors_total", sink="redis") == value(
        s, "eddy_sink_retries_total", sink="redis")
    assert value(s, "eddy_sink_errors_total", sink="kafka") == 0
    assert value(s, "eddy_rebalances_total", kind="assign") >= 1
    assert value(s, "eddy_ready") == 1
    assert value(s, "eddy_info", job=JOB, processor="like-counter") == 1
    assert value(s, "eddy_state_cache_entries") > 0

    # the cost of a scrape, measured from here (the report quotes it)
    t0 = time.monotonic()
    for _ in range(20):
        scrape()
    print("    /metrics: %d bytes, %.1f ms per scrape (20 scrapes, %s)"
          % (len(bodies[-1]), (time.monotonic() - t0) * 1000 / 20, eddy))

    # Redis down again and more events: not ready; up again: ready, counters follow
    redis.stop()
    n2 = harness.produce(broker.bootstrap, TOPIC, events(3000, start=6000))
    harness.wait_until(lambda: readyz()[0] == 503, 30, what="/readyz 503 while Redis is down")
    redis = harness.Redis(tmp, port=rport, password=REDIS_SECRET)
    harness.wait_until(lambda: readyz()[0] == 200, 60, what="/readyz 200 again")
    s = harness.wait_until(lambda: settled(n1 + n2), 30, what="counters settle again")
    assert set(series(s, "eddy_consumer_lag").values()) == {0.0}

    assert job.term() == 0
    log = job.log()
    lines = [l for l in log.splitlines() if l.strip()]
    assert lines, "no log lines"
    for line in lines:
        rec = json.loads(line)  # log.format=json: every line is one JSON object
        assert {"ts", "level", "fac", "job", "msg"} <= set(rec), line
        assert rec["job"] == JOB, line
    dlq = [json.loads(l) for l in lines if json.loads(l)["fac"] == "DLQ"]
    assert len(dlq) == len(BAD), dlq
    assert all(d["topic"] == TOPIC and isinstance(d["partition"], int)
               and isinstance(d["offset"], int) for d in dlq), dlq
    assert any(json.loads(l)["fac"] == "REDIS" for l in lines), "no line about waiting for Redis"

    # a config that fails validation (bad Redis port), logfmt, and --list-config
    bad = subprocess.run([eddy, "run", "like-counter", "-c", path, "-X",
                          "redis.url=redis://:%s@127.0.0.1:99999/0" % REDIS_SECRET],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "redis.url" in bad.stderr and "[redacted]" in bad.stderr, \
        bad.stderr
    nobroker = subprocess.run([eddy, "run", "like-counter", "-c", path,
                               "-X", "redis.url=" + redis_url, "-X", "log.format=logfmt",
                               "-X", "kafka.sasl.password=" + KAFKA_SECRET,
                               "-X", "kafka.bootstrap.servers=127.0.0.1:1",
                               "-X", "kafka.timeout.ms=1000", "-X", "metrics.port=0",
                               "-X", "debug=all"],
                              capture_output=True, text=True, timeout=60)
    assert nobroker.returncode == 1, nobroker.stderr
    assert re.search(r'^ts=\S+ level=err fac=KAFKA job=%s msg="kafka: no metadata' % JOB,
                     nobroker.stderr, re.M), nobroker.stderr
    listed = subprocess.run([eddy, "like-counter", "--list-config", "-c", path,
                             "-X", "redis.url=" + redis_url,
                             "-X", "kafka.sasl.password=" + KAFKA_SECRET,
                             "-X", "kafka.ssl.key.password=" + KAFKA_SECRET + "2"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "redis://:[redacted]@127.0.0.1:%d/0" % rport in listed.stdout, listed.stdout
    assert re.search(r"kafka.sasl.password\s+= \[redacted\]", listed.stdout), listed.stdout

    everything = "\n".join([log, bad.stdout, bad.stderr, nobroker.stdout, nobroker.stderr,
                            listed.stdout, listed.stderr] + bodies)
    for secret in (REDIS_SECRET, KAFKA_SECRET):
        assert secret not in everything, "secret %s printed" % secret
