#!/usr/bin/env python3
"""compose_producer.py: sample events for the docker compose stack (the `producer` service).

Produces a burst of sample events for every job's input topics, then a trickle forever, so that
`docker compose up` shows likes, features, CDC rows and samples landing. Keys follow each
processor's contract (likes by post_id, activity, impressions and engagements by user_id, CDC
by primary key). Event times follow the wall clock: this is a demo feed, not a test.

Environment: BOOTSTRAP (default kafka:9092), BURST (events per topic first, default 20000),
RATE (events per second per topic after, default 20), READY_FILE (touched after the burst).
"""
import json
import os
import random
import sys
import time

from confluent_kafka import Producer

TOPICS = {
    "likes": "likes",
    "activity": "activity",
    "cdc": "cdc.public.users",
    "impressions": "impressions",
    "engagements": "engagements",
}


def like(rnd, i, now):
    post = "p%d" % int(rnd.paretovariate(1.2) % 500)
    return post, {"event_id": "l%d" % i, "user_id": "u%d" % rnd.randrange(2000), "post_id": post,
                  "action": "like" if rnd.random() < 0.8 else "unlike", "ts": now}


def activity(rnd, i, now):
    user = "u%d" % rnd.randrange(2000)
    kind = rnd.choice(["click", "click", "watch", "view"])
    return user, {"event_id": "a%d" % i, "user_id": user, "type": kind,
                  "item_id": "i%d" % rnd.randrange(300), "value": round(rnd.uniform(1, 120), 1),
                  "ts": now}


def change(rnd, i, now):
    uid = rnd.randrange(1000)
    op = "d" if rnd.random() < 0.05 else ("c" if i < 1000 else "u")
    after = None if op == "d" else {"id": uid, "name": "user %d" % uid,
                                    "plan": rnd.choice(["free", "pro", "team"]), "updated_at": now}
    # Debezium keys a change by its primary key, as a JSON object
    return json.dumps({"id": uid}), {"before": None, "after": after, "op": op,
                      "source": {"table": "users", "lsn": 1000 + i}, "ts_ms": now}


def impression_and_engagement(rnd, i, now):
    user = "u%d" % rnd.randrange(2000)
    req = "r%d" % i
    item = "i%d" % rnd.randrange(300)
    position = 1 + rnd.randrange(10)
    imp = {"request_id": req, "user_id": user, "item_id": item, "position": position, "ts": now,
           "explore": rnd.random() < 0.1}
    eng = None
    if rnd.random() < 0.3 / position:
        eng = {"request_id": req, "user_id": user, "item_id": item, "type": "click",
               "ts": now + rnd.randrange(1, 5000)}
    return user, imp, eng


def main():
    bootstrap = os.environ.get("BOOTSTRAP", "kafka:9092")
    burst = int(os.environ.get("BURST", "20000"))
    rate = float(os.environ.get("RATE", "20"))
    ready_file = os.environ.get("READY_FILE", "/tmp/eddy-producer.ok")
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4",
                  "enable.idempotence": True})
    rnd = random.Random(7)

    def send(topic, key, value):
        while True:
            try:
                p.produce(TOPICS[topic], json.dumps(value, separators=(",", ":")), key)
                return
            except BufferError:
                p.poll(0.1)

    def one_round(i):
        now = int(time.time() * 1000)
        send("likes", *like(rnd, i, now))
        send("activity", *activity(rnd, i, now))
        send("cdc", *change(rnd, i, now))
        user, imp, eng = impression_and_engagement(rnd, i, now)
        send("impressions", user, imp)
        if eng:
            send("engagements", user, eng)

    for i in range(burst):
        one_round(i)
        if i % 10000 == 0:
            p.poll(0)
    p.flush(60)
    with open(ready_file, "w") as f:
        f.write("burst of %d events per topic produced\n" % burst)
    print("compose_producer: burst of %d per topic done, now %g/s" % (burst, rate), flush=True)
    i = burst
    while True:
        one_round(i)
        i += 1
        p.poll(0)
        time.sleep(1.0 / rate if rate > 0 else 1.0)


if __name__ == "__main__":
    sys.exit(main())
