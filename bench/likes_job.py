"""likes_job.py: the plain Python like-counter bench/ compares eddy with.

    /usr/bin/python3 bench/likes_job.py <bootstrap> <topic> <redis-url> [--prefix likes:]

What a team would write instead of eddy, with confluent-kafka and redis-py: assign every
partition of the topic from the beginning, consume(num_messages=10000) batches, json.loads
each value, keep the members of each post in a dict of sets, and at the end of each batch
write the changed counts to Redis in one pipeline of SETs (DEL when a count drops to 0, as
eddy does). Stops when every non-empty partition has reported EOF. No persistence of its
state, no offsets, no exactly-once: it does less than eddy.

Prints one JSON line: {"events":N,"seconds":S,"seconds_first":F,"posts":P,"members":M}
(seconds: from assign() to the last EOF and Redis write; seconds_first: from the first event).
"""
import argparse
import json
import sys
import time

import confluent_kafka
import redis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("redis_url")
    ap.add_argument("--prefix", default="likes:")
    args = ap.parse_args()

    r = redis.Redis.from_url(args.redis_url)
    c = confluent_kafka.Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "eddy-bench-python",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    md = c.list_topics(args.topic, timeout=10).topics[args.topic]
    pending = set()
    for p in md.partitions:
        lo, hi = c.get_watermark_offsets(confluent_kafka.TopicPartition(args.topic, p), timeout=10)
        if hi > lo:
            pending.add(p)

    members = {}  # post_id -> set of user_ids
    events = 0
    t0 = time.monotonic()
    t_first = None
    c.assign([confluent_kafka.TopicPartition(args.topic, p, confluent_kafka.OFFSET_BEGINNING)
              for p in pending])
    idle = 0
    while pending:
        msgs = c.consume(num_messages=10000, timeout=1.0)
        if not msgs:
            idle += 1
            if idle >= 30:
                sys.exit("likes_job: nothing for 30 s; partitions %s not at EOF" % sorted(pending))
            continue
        idle = 0
        if t_first is None:
            t_first = time.monotonic()
        changed = set()
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    pending.discard(m.partition())
                    continue
                raise confluent_kafka.KafkaException(err)
            events += 1
            e = json.loads(m.value())
            post = e["post_id"]
            user = e["user_id"]
            s = members.get(post)
            if s is None:
                s = members[post] = set()
            if e["action"] == "like":
                if user not in s:
                    s.add(user)
                    changed.add(post)
            elif user in s:
                s.remove(user)
                changed.add(post)
        if changed:
            pipe = r.pipeline()
            for post in changed:
                n = len(members[post])
                if n:
                    pipe.set(args.prefix + post, n)
                else:
                    pipe.delete(args.prefix + post)
            pipe.execute()
    t1 = time.monotonic()
    c.close()
    print(json.dumps({
        "events": events,
        "seconds": round(t1 - t0, 6),
        "seconds_first": round(t1 - (t_first or t1), 6),
        "posts": sum(1 for s in members.values() if s),
        "members": sum(len(s) for s in members.values()),
    }), flush=True)


if __name__ == "__main__":
    main()
