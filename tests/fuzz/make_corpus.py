#!/usr/bin/env python3
"""make_corpus.py: writes the seed corpora of avro_fuzz and confluent_fuzz (valid records,
encoded by python3-avro, independently of eddy's encoder) under tests/fuzz/corpus/.

    /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import io
import json
import os
import struct

import avro.io
import avro.schema

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "schemas")


def enc(schema, datum):
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def load(name):
    with open(os.path.join(SCHEMAS, name + ".avsc")) as fp:
        text = fp.read()
    return text, avro.schema.parse(text)


def write(sub, name, data):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as fp:
        fp.write(data)


like_text, like = load("like_event")
act_text, act = load("activity_event")
like_v1_text = json.dumps({"type": "record", "name": "LikeEvent", "fields": [
    {"name": "event_id", "type": "string"}, {"name": "user_id", "type": "string"},
    {"name": "post_id", "type": "string"},
    {"name": "client", "type": ["null", "string"], "default": None},
    {"name": "action", "type": {"type": "enum", "name": "LikeAction",
                                "symbols": ["like", "unlike", "superlike"]}},
    {"name": "ts", "type": "int"}]})
like_v1 = avro.schema.parse(like_v1_text)
all_text = json.dumps({"type": "record", "name": "All", "fields": [
    {"name": "n", "type": "null"}, {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
    {"name": "f", "type": "float"}, {"name": "d", "type": "double"},
    {"name": "by", "type": "bytes"}, {"name": "s", "type": "string"},
    {"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
    {"name": "a", "type": {"type": "array", "items": ["null", "long", "string"]}},
    {"name": "m", "type": {"type": "map", "values": {"type": "array", "items": "double"}}},
    {"name": "next", "type": ["null", "All"]}]})
all_s = avro.schema.parse(all_text)
act_old_text = json.dumps({"type": "record", "name": "ActivityEvent", "fields": [
    {"name": "event_id", "type": "string"}, {"name": "user_id", "type": "string"},
    {"name": "item_id", "type": "string"},
    {"name": "tags", "type": {"type": "map", "values": "bytes"}},
    {"name": "ts", "type": "int"}]})
act_old = avro.schema.parse(act_old_text)

like_ev = {"event_id": "e1", "user_id": "u7", "post_id": "p42", "action": "like", "ts": 1700000000000}
act_ev = {"event_id": "e2", "user_id": "u7", "type": "click", "item_id": "i9", "value": 12.5,
          "ts": 1700000000000}
one = {"n": None, "b": True, "i": -7, "l": 1 << 40, "f": 1.5, "d": -0.25, "by": b"\x00\xff",
       "s": "caf\u00e9 \U0001F600", "fx": b"abcd", "a": [None, 3, "x"], "m": {"k": [1.0, 2.5]},
       "next": None}
nested = dict(one, next=dict(one, next=None, a=[], m={}))

# avro_fuzz: first byte = pair index (see avro_fuzz.c: 0 like, 1 like v1 -> like, 2 all,
# 3 activity, 4 old activity -> activity, 5 like as written)
write("avro", "like_event", b"\x00" + enc(like, like_ev))
write("avro", "like_event_v1", b"\x01" + enc(like_v1, dict(like_ev, client="ios", ts=17)))
write("avro", "all_types", b"\x02" + enc(all_s, one))
write("avro", "all_types_nested", b"\x02" + enc(all_s, nested))
write("avro", "activity_event", b"\x03" + enc(act, act_ev))
write("avro", "activity_nulls", b"\x03" + enc(act, dict(act_ev, type=None, item_id=None, value=None)))
write("avro", "activity_old", b"\x04" + enc(act_old, {"event_id": "e", "user_id": "u", "item_id": "i",
                                                       "tags": {"a": b"\x01"}, "ts": 5}))
write("avro", "like_as_written", b"\x05" + enc(like, dict(like_ev, action="unlike")))


def framed(schema_text, schema_id, body):
    st = schema_text.encode() if schema_text else b""
    return struct.pack(">H", len(st)) + st + b"\x00" + struct.pack(">i", schema_id) + body


# confluent_fuzz: even ids read as like_event, odd ones as activity_event
write("confluent", "like_reader", framed("", 2, enc(like, like_ev)))
write("confluent", "like_v1_writer", framed(like_v1_text, 4, enc(like_v1, dict(like_ev, ts=3))))
write("confluent", "activity_reader", framed("", 1, enc(act, act_ev)))
write("confluent", "activity_old_writer", framed(act_old_text, 3, enc(act_old, {
    "event_id": "e", "user_id": "u", "item_id": "i", "tags": {}, "ts": 5})))
write("confluent", "bad_magic", framed("", 2, b"")[:2] + b"\x01\x00\x00\x00\x02")
write("confluent", "all_writer", framed(all_text, 6, enc(all_s, one)))
