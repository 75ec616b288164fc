"""wf_model.py: an independent model of window-features, written from docs/window-features.md only.

Given the records of each input partition in offset order (raw value bytes), it computes what the
contract says: which records are rejected and why (json / missing_field / bad_field / late), each
partition's final clock, and for every entity the exact Redis hash at that clock (absent when all
its windows are empty), by brute force over the accepted events. Nothing here is incremental:
every window is recomputed from the raw events with the doc's inequality

    floor(C/S)*S + S - L  <=  ts  <=  C

Cases the doc leaves open (null entity or ts, a non-string `type`, several faults in one record,
a late record that is also malformed) raise Ambiguous: the generator must not produce them.

Run this file to self-test the model: /usr/bin/python3 tests/integration/wf_model.py
"""
import json
import math
import re

AGGS = ("count", "sum", "avg", "min", "max", "distinct", "last_n")
NUMERIC = ("sum", "avg", "min", "max")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Distinct values above exact_max are HyperLogLog estimates: each within HLL_HARD of the truth,
# at most 1% (or 3) of them beyond HLL_TOLERANCE, and over all of them a mean relative error
# within HLL_MAX_MEAN and an rms within HLL_MAX_RMS (the doc: standard error 3.25%).
HLL_TOLERANCE = 0.12
HLL_HARD = 0.25
HLL_MAX_MEAN = 0.015
HLL_MAX_RMS = 0.045


class Ambiguous(Exception):
    """A record whose handling the doc does not settle."""


class Window:
    __slots__ = ("text", "name", "L", "S")

    def __init__(self, text):
        m = re.fullmatch(r"(\d+)([smhd])(?:/(\d+)([smhd]))?", text)
        if not m:
            raise ValueError("bad window %r" % text)
        length_s = int(m.group(1)) * UNIT_S[m.group(2)]
        if length_s <= 0:
            raise ValueError("bad window %r: zero length" % text)
        if m.group(3) is not None:
            slide_s = int(m.group(3)) * UNIT_S[m.group(4)]
            if slide_s <= 0:
                raise ValueError("bad window %r: zero slide" % text)
        else:
            # L/60 rounded to the nearest whole second, halves up, at least 1 s
            slide_s = max(1, (2 * length_s + 60) // 120)
        if length_s % slide_s or length_s // slide_s > 10000:
            raise ValueError("window %r: length must be a multiple of the slide, at most "
                             "10000 slides" % text)
        self.text = text
        self.name = text.split("/")[0]  # the length as written
        self.L = length_s * 1000
        self.S = slide_s * 1000

    def lower(self, clock):
        """The least ts inside the window ending at clock (the window holds lower..clock)."""
        return (clock // self.S) * self.S + self.S - self.L


class Feature:
    def __init__(self, spec):
        self.name = spec["name"]
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.name):
            raise ValueError("bad feature name %r" % self.name)
        self.agg = spec["agg"]
        if self.agg not in AGGS:
            raise ValueError("bad agg %r" % self.agg)
        t = spec.get("types")
        self.types = None if t is None else ({t} if isinstance(t, str) else set(t))
        default_field = "value" if self.agg in NUMERIC else ("item_id" if self.agg in ("distinct", "last_n") else None)
        self.field = spec.get("field", default_field) if self.agg != "count" else None
        self.windows = [Window(w) for w in spec.get("windows", [])]
        if not self.windows and self.agg != "last_n":
            raise ValueError("feature %s: windows required" % self.name)
        self.n = spec.get("n", 10)
        self.exact_max = spec.get("exact_max", 1000)

    def matches(self, etype):
        if self.types is None:
            return True
        return etype is not None and etype in self.types

    def fields(self):
        """(hash field name, Window or None) in output order."""
        if not self.windows:
            return [(self.name, None)]
        return [("%s_%s" % (self.name, w.name), w) for w in self.windows]


def parse_features(specs):
    return [Feature(s) for s in specs]


def fmt_num(x):
    """The doc's number text: integral and |x| < 1e15 as an integer, else the shortest %.<p>g
    (p = 1..17) that reads back as the same double."""
    x = float(x)
    if math.isfinite(x) and x == math.floor(x) and abs(x) < 1e15:
        return "%d" % int(x)
    for p in range(1, 18):
        s = "%.*g" % (p, x)
        if float(s) == x:
            return s
    raise AssertionError("unreachable")


def _reject_constant(name):
    raise ValueError("not JSON: %s" % name)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


def _id_text(v):
    """A string or integer id as text, or None when it is not one."""
    if isinstance(v, str):
        return v
    if _is_int(v):
        return str(v)
    return None


def decode(raw, features, entity_field="user_id", max_id_bytes=256):
    """Validates one record. Returns ("ok", event) or (reason, detail); event is a dict with
    entity, ts, type, and per feature index the field value (number or id text)."""
    try:
        text = raw.decode("utf-8")  # strict: invalid UTF-8 is not JSON
        if text.startswith("\ufeff"):
            raise ValueError("BOM")
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        return ("json", str(e)[:80])
    if not isinstance(obj, dict):
        return ("json", "not an object")
    faults = []
    # entity
    if entity_field not in obj:
        faults.append(("missing_field", entity_field))
        entity = None
    else:
        v = obj[entity_field]
        if v is None:
            raise Ambiguous("null entity")
        if _is_int(v):
            entity = str(v)
        elif isinstance(v, str) and v != "" and "\x00" not in v and len(v.encode()) <= max_id_bytes:
            entity = v
        else:
            entity = None
            faults.append(("bad_field", entity_field))
    # ts
    ts = None
    if "ts" not in obj:
        faults.append(("missing_field", "ts"))
    else:
        v = obj["ts"]
        if v is None:
            raise Ambiguous("null ts")
        if _is_int(v) and v >= 0:
            if v >= 2 ** 63:
                raise Ambiguous("ts beyond int64")
            ts = v
        else:
            faults.append(("bad_field", "ts"))
    # type
    etype = obj.get("type")
    if "type" in obj and not isinstance(etype, str):
        raise Ambiguous("type of a non-string kind")
    # feature fields
    vals = {}
    for i, f in enumerate(features):
        if f.field is None or not f.matches(etype):
            continue
        v = obj.get(f.field)
        if v is None:  # absent or null: "required (not null)"
            if f.field in obj:
                raise Ambiguous("null feature field")
            faults.append(("missing_field", f.field))
            continue
        if f.agg in NUMERIC:
            if not _is_num(v):
                faults.append(("bad_field", f.field))
                continue
            fv = float(v)
            if not math.isfinite(fv):
                raise Ambiguous("number overflows a double")
            vals[i] = fv
        else:
            t = _id_text(v)
            if t is None:
                faults.append(("bad_field", f.field))
                continue
            if t == "" or "\x00" in t:
                raise Ambiguous("empty id or id with NUL")
            vals[i] = t
    if faults:
        reasons = {r for r, _ in faults}
        if len(reasons) > 1:
            raise Ambiguous("several faults: %s" % faults)
        return (faults[0][0], faults[0][1])
    return ("ok", {"entity": entity, "ts": ts, "type": etype, "vals": vals})


class PartitionResult:
    def __init__(self):
        self.clock = None
        self.rejected = {}  # offset -> (reason, detail)
        self.events = {}  # entity -> list of (ts, offset, event)
        self.accepted = 0


def run_partition(records, features, lateness_ms=60000, entity_field="user_id", max_id_bytes=256):
    """records: (offset, raw bytes) in offset order."""
    res = PartitionResult()
    last_off = -1
    for off, raw in records:
        assert off > last_off, "records must be in offset order"
        last_off = off
        kind, ev = decode(raw, features, entity_field, max_id_bytes)
        if kind != "ok":
            if kind != "json" and res.clock is not None:
                # would it also be late? then the reason is a matter of check order
                try:
                    ts = json.loads(raw.decode())["ts"]
                    if _is_int(ts) and ts >= 0 and ts < res.clock - lateness_ms:
                        raise Ambiguous("malformed and late")
                except (KeyError, ValueError, TypeError):
                    pass
            res.rejected[off] = (kind, ev)
            continue
        ts = ev["ts"]
        if res.clock is not None and ts < res.clock - lateness_ms:
            res.rejected[off] = ("late", "ts %d < clock %d - %d" % (ts, res.clock, lateness_ms))
            continue
        res.accepted += 1
        res.clock = ts if res.clock is None else max(res.clock, ts)
        res.events.setdefault(ev["entity"], []).append((ts, off, ev))
    return res


def feature_value(f, fi, events, window, clock):
    """(text or None when left out, approximate?) of feature f (index fi) over the events of one
    entity inside window (None: all of them) at clock; plus whether anything is inside."""
    lo = window.lower(clock) if window is not None else None
    inside = [(ts, off, ev) for ts, off, ev in events
              if f.matches(ev["type"]) and (lo is None or lo <= ts) and ts <= clock]
    nonempty = bool(inside)
    if f.agg == "count":
        return str(len(inside)), False, nonempty
    if f.agg in NUMERIC:
        xs = [ev["vals"][fi] for _, _, ev in inside]
        total = math.fsum(xs)
        naive = 0.0
        for x in xs:
            naive += x
        assert naive == total, "the generator must keep sums exact (%r vs %r)" % (naive, total)
        if f.agg == "sum":
            return fmt_num(total), False, nonempty
        if not xs:
            return None, False, nonempty
        if f.agg == "avg":
            return fmt_num(total / len(xs)), False, nonempty
        return fmt_num(min(xs) if f.agg == "min" else max(xs)), False, nonempty
    if f.agg == "distinct":
        d = len({ev["vals"][fi] for _, _, ev in inside})
        return str(d), d > f.exact_max, nonempty
    if f.agg == "last_n":
        best = {}
        for ts, off, ev in inside:
            k = ev["vals"][fi]
            if k not in best or (ts, off) > best[k]:
                best[k] = (ts, off)
        ids = sorted(best, key=lambda k: best[k], reverse=True)[:f.n]
        return json.dumps(ids, separators=(",", ":"), ensure_ascii=False), False, nonempty
    raise AssertionError(f.agg)


def entity_hash(features, events, clock):
    """(ordered dict field -> text, set of approximate fields), or None when all windows are
    empty."""
    out = {}
    approx = set()
    any_inside = False
    for fi, f in enumerate(features):
        for fname, w in f.fields():
            text, is_approx, nonempty = feature_value(f, fi, events, w, clock)
            any_inside = any_inside or nonempty
            if text is not None:
                out[fname] = text
            if is_approx:
                approx.add(fname)
    if not any_inside:
        return None
    return out, approx


class Model:
    """The whole expectation. partitions: {partition: [(offset, raw bytes), ...]}."""

    def __init__(self, partitions, feature_specs, lateness_ms=60000, entity_field="user_id",
                 max_id_bytes=256, prefix="feat:"):
        self.features = parse_features(feature_specs)
        self.prefix = prefix
        self.parts = {}
        self.rejected = {}  # (partition, offset) -> reason
        self.hashes = {}  # redis key -> {field: text}
        self.approx = {}  # redis key -> set of approximate fields
        self.where = {}  # redis key -> (partition, entity)
        for p, recs in sorted(partitions.items()):
            r = run_partition(sorted(recs), self.features, lateness_ms, entity_field, max_id_bytes)
            self.parts[p] = r
            for off, (reason, _) in r.rejected.items():
                self.rejected[(p, off)] = reason
            for ent, evs in r.events.items():
                key = prefix + ent
                assert key not in self.where, "entity %r in two partitions" % ent
                self.where[key] = (p, ent)
                h = entity_hash(self.features, evs, r.clock)
                if h is not None:
                    self.hashes[key], self.approx[key] = h

    def field_order(self):
        return [name for f in self.features for name, _ in f.fields()]

    def explain(self, key, field, limit=12):
        """Text describing the window and the events behind one expected field."""
        p, ent = self.where.get(key, (None, None))
        if p is None:
            return "%s: no accepted event" % key
        r = self.parts[p]
        for fi, f in enumerate(self.features):
            for fname, w in f.fields():
                if fname != field:
                    continue
                lo = w.lower(r.clock) if w else None
                evs = [(ts, off, ev.get("type"), ev["vals"].get(fi))
                       for ts, off, ev in r.events[ent] if f.matches(ev["type"])]
                near = [e for e in evs if lo is None or e[0] >= lo - 2 * (w.S if w else 0)]
                return ("%s %s: partition %d clock %d window [%s, %d] (L=%s S=%s); %d matching "
                        "events, the latest (ts, offset, type, value): %s"
                        % (key, field, p, r.clock, lo, r.clock, w and w.L, w and w.S, len(evs),
                           near[-limit:]))
        return "%s: no field %s" % (key, field)


def compare(expected, approx, got, tolerance=HLL_TOLERANCE, hard=HLL_HARD):
    """Compares an expected {key: {field: text}} with a Redis snapshot. Returns (bad, soft, errs):
    bad: mismatches (key, field, expected, got), field None for a whole key; exact fields must
    be equal as strings, approximate ones (distinct above exact_max) integers within `hard`;
    soft: approximate fields off by more than `tolerance` (but within `hard`), as
    (key, field, expected, got, relative error); errs: the relative error of every approximate
    field, for aggregate checks (HLL_STATS)."""
    bad, soft, errs = [], [], []
    for key in sorted(set(expected) | set(got)):
        e, g = expected.get(key), got.get(key)
        if e is None or g is None:
            bad.append((key, None, e, g))
            continue
        for field in list(e) + [f for f in g if f not in e]:
            ev, gv = e.get(field), g.get(field)
            if field in approx.get(key, ()) and ev is not None and gv is not None:
                if re.fullmatch(r"0|[1-9][0-9]*", gv):
                    rel = (int(gv) - int(ev)) / int(ev)
                    errs.append(rel)
                    if abs(rel) <= tolerance:
                        continue
                    if abs(rel) <= hard:
                        soft.append((key, field, ev, gv, rel))
                        continue
            elif ev == gv:
                continue
            bad.append((key, field, ev, gv))
    return bad, soft, errs


def hll_verdict(soft, errs):
    """Problems with the approximate fields as a whole (empty when fine): a correct 2^10-register
    HyperLogLog has a relative standard error of 3.25% (less at small counts, where each
    register collision costs 1/n), so a few fields out of a thousand fall beyond 12%; a biased
    or broken estimator shows in the mean and the spread."""
    out = []
    if not errs:
        return out
    mean = sum(errs) / len(errs)
    rms = math.sqrt(sum(x * x for x in errs) / len(errs))
    if len(soft) > max(3, len(errs) // 100):
        out.append("%d of %d approximate fields beyond %d%%" % (len(soft), len(errs),
                                                                   100 * HLL_TOLERANCE))
    if abs(mean) > HLL_MAX_MEAN or rms > HLL_MAX_RMS:
        out.append("approximate fields: mean relative error %+.2f%%, rms %.2f%% (limits "
                   "%.1f%%, %.1f%%)" % (100 * mean, 100 * rms, 100 * HLL_MAX_MEAN,
                                        100 * HLL_MAX_RMS))
    return out


def hll_summary(soft, errs):
    if not errs:
        return "no approximate fields"
    mean = sum(errs) / len(errs)
    rms = math.sqrt(sum(x * x for x in errs) / len(errs))
    return ("%d approximate fields: mean relative error %+.2f%%, rms %.2f%%, max |error| %.1f%%, "
            "%d beyond %d%%%s" % (len(errs), 100 * mean, 100 * rms,
                                  100 * max(abs(x) for x in errs), len(soft),
                                  100 * HLL_TOLERANCE,
                                  (": " + ", ".join("%s %s %s->%s" % x[:4] for x in soft[:5]))
                                  if soft else ""))


# ---------------------------------------------------------------- self-test

def _selftest():
    W = Window
    assert (W("1m").L, W("1m").S) == (60000, 1000)
    assert W("150s").S == 3000  # 2.5 s rounds half up
    assert W("90s").S == 2000  # 1.5 -> 2
    assert W("30s").S == 1000  # 0.5 -> 1
    assert W("1s").S == 1000  # 0.0167 -> 0 -> at least 1 s
    assert W("1h").S == 60000 and W("1d").S == 1440000 and W("3h").S == 180000
    assert (W("1h/5m").L, W("1h/5m").S, W("1h/5m").name) == (3600000, 300000, "1h")
    for bad in ("3m/7s", "11s/2s", "3h/1s", "5x", "0s", "1h/0s", "m5"):
        try:
            W(bad)
        except ValueError:
            pass
        else:
            raise AssertionError("window %s must be refused" % bad)
    assert W("2h/1s").S == 1000  # 7200 steps: fine
    # the inequality: C = 100500, S = 1 s, L = 60 s -> [41000, 100500]
    assert W("1m").lower(100500) == 41000
    assert W("150s").lower(100500) == 99000 + 3000 - 150000

    for x, s in [(3, "3"), (-2.0, "-2"), (0, "0"), (0.1, "0.1"), (2.5, "2.5"), (1e16, "1e+16"),
                 (1e15, "1e+15"), (999999999999999.0, "999999999999999"), (-1e15, "-1e+15"),
                 (1 / 3, "0.3333333333333333"), (0.1 + 0.2, "0.30000000000000004"), (1e-7, "1e-07"), (123456.75, "123456.75"),
                 (1e15 + 0.5, "1000000000000000.5"), (200 / 3, "66.66666666666667"), (2 / 3 * 100, "66.66666666666666")]:
        assert fmt_num(x) == s, (x, fmt_num(x), s)

    feats = [
        {"name": "clicks", "agg": "count", "types": "click", "windows": ["1m", "5m"]},
        {"name": "all", "agg": "count", "windows": ["10s"]},
        {"name": "watch", "agg": "sum", "types": ["watch"], "windows": ["1m"]},
        {"name": "v", "agg": "avg", "types": ["watch"], "windows": ["1m"]},
        {"name": "vmin", "agg": "min", "types": ["watch"], "windows": ["1m"]},
        {"name": "items", "agg": "distinct", "types": ["view", "click"], "windows": ["1h"],
         "exact_max": 2},
        {"name": "recent", "agg": "last_n", "n": 3, "windows": ["1m"]},
        {"name": "last", "agg": "last_n", "types": "like", "n": 2},
    ]
    F = parse_features(feats)

    def rec(**kw):
        return json.dumps(kw).encode()

    # validation
    cases = [
        (b"nope", "json"), (b"", "json"), (b"[1]", "json"), (b"null", "json"), (b"\xff{}", "json"),
        (b'{"user_id":"u","ts":1,"item_id":"a","value":NaN}', "json"),
        (b'{"user_id":"u","ts":1,"item_id":"a"', "json"),
        (rec(type="view", item_id="i", ts=1), "missing_field"),
        (rec(user_id="", type="view", item_id="i", ts=1), "bad_field"),
        (rec(user_id="a\x00b", type="view", item_id="i", ts=1), "bad_field"),
        (rec(user_id="x" * 257, type="view", item_id="i", ts=1), "bad_field"),
        (rec(user_id=True, type="view", item_id="i", ts=1), "bad_field"),
        (rec(user_id=["u"], type="view", item_id="i", ts=1), "bad_field"),
        (rec(user_id="u", type="view", item_id="i"), "missing_field"),
        (rec(user_id="u", type="view", item_id="i", ts="1"), "bad_field"),
        (rec(user_id="u", type="view", item_id="i", ts=-1), "bad_field"),
        (rec(user_id="u", type="view", item_id="i", ts=1.5), "bad_field"),
        (rec(user_id="u", type="watch", item_id="i", ts=1), "missing_field"),
        (rec(user_id="u", type="watch", item_id="i", value="3", ts=1), "bad_field"),
        (rec(user_id="u", type="watch", item_id="i", value=True, ts=1), "bad_field"),
        (rec(user_id="u", type="view", ts=1), "missing_field"),
        (rec(user_id="u", type="view", item_id=1.5, ts=1), "bad_field"),
        (rec(user_id="u", type="view", item_id={"a": 1}, ts=1), "bad_field"),
        (rec(user_id="x" * 256, type="view", item_id="i", ts=1), "ok"),
        (rec(user_id=17, type="view", item_id=3, ts=0), "ok"),
        (rec(user_id="u", type="click", item_id="i", value="abc", ts=1), "ok"),
        (rec(user_id="u", item_id="i", value=None, ts=1), "ok"),
        (b'{"user_id":"u","type":"watch","item_id":"i","value":2.5e1,"ts":1}', "ok"),
    ]
    for raw, want in cases:
        got = decode(raw, F)[0]
        assert got == want, (raw[:60], got, want)
    assert decode(rec(user_id=17, type="view", item_id=3, ts=0), F)[1]["entity"] == "17"
    assert decode(rec(user_id=17, type="view", item_id=3, ts=0), F)[1]["vals"][5] == "3"
    for raw in (rec(user_id=None, item_id="i", ts=1), rec(user_id="u", item_id="i", ts=1, type=3),
                rec(item_id="i", ts="x")):
        try:
            decode(raw, F)
        except Ambiguous:
            pass
        else:
            raise AssertionError("ambiguous: %r" % raw)

    # lateness: ts == clock - L is accepted, one less is late and moves nothing
    recs = [(0, rec(user_id="a", type="click", item_id="i1", ts=200000)),
            (1, rec(user_id="a", type="click", item_id="i2", ts=140000)),
            (2, rec(user_id="a", type="click", item_id="i3", ts=139999)),
            (3, b"junk"),
            (4, rec(user_id="a", type="watch", item_id="i4", ts=10 ** 9)),  # no value: bad, no clock
            (5, rec(user_id="a", type="like", item_id="i5", ts=199999))]
    r = run_partition(recs, F, lateness_ms=60000)
    assert r.clock == 200000 and r.accepted == 3
    assert {o: v[0] for o, v in r.rejected.items()} == {2: "late", 3: "json", 4: "missing_field"}
    # a late event does not move the clock: 100000 is late w.r.t. 200000, then 150000 is fine
    r = run_partition([(0, rec(user_id="a", item_id="x", ts=200000)),
                       (1, rec(user_id="a", item_id="x", ts=100000)),
                       (2, rec(user_id="a", item_id="x", ts=140000))], F, lateness_ms=60000)
    assert set(r.rejected) == {1} and r.clock == 200000
    # the first event of a partition is never late
    r = run_partition([(0, rec(user_id="a", item_id="x", ts=5))], F, lateness_ms=1)
    assert not r.rejected and r.clock == 5

    # values at the clock
    C = 600500
    evs = [
        (C - 70000, rec(user_id="a", type="click", item_id="i1", ts=C - 70000)),  # out of 1m
        (0, rec(user_id="a", type="click", item_id="i2", ts=541000)),  # 1m lower bound: in
        (0, rec(user_id="a", type="click", item_id="i3", ts=540999)),  # just out of 1m
        (0, rec(user_id="a", type="watch", item_id="i2", value=2.5, ts=C - 1000)),
        (0, rec(user_id="a", type="watch", item_id="i2", value=-1, ts=C - 2000)),
        (0, rec(user_id="a", type="watch", item_id="i2", value=4, ts=C - 3000)),
        (0, rec(user_id="a", type="view", item_id="i9", ts=C - 3000)),  # tie with the watch above
        (0, rec(user_id="a", type="like", item_id=7, ts=C)),
        (0, rec(user_id="a", item_id="i1", ts=C - 100)),  # no type: only untyped features
    ]
    recs = [(i, raw) for i, (_, raw) in enumerate(evs)]
    r = run_partition(recs, F, lateness_ms=10 ** 9)
    assert r.clock == C
    h, approx = entity_hash(F, r.events["a"], C)
    want = {
        "clicks_1m": "1", "clicks_5m": "3", "all_10s": "6",
        "watch_1m": "5.5", "v_1m": "1.8333333333333333", "vmin_1m": "-1",
        "items_1h": "4",  # i1, i2, i3, i9 > exact_max 2: approximate
        "recent_1m": '["7","i1","i2"]',  # i2's latest event is at C - 1000
        "last": '["7"]',
    }
    assert h == want, h
    assert list(h) == ["clicks_1m", "clicks_5m", "all_10s", "watch_1m", "v_1m", "vmin_1m",
                       "items_1h", "recent_1m", "last"]
    assert approx == {"items_1h"}
    # later: avg/min omitted when empty, sum 0, last_n [] in its window, last keeps its item
    h, _ = entity_hash(F, r.events["a"], C + 3600000)
    assert h == {"clicks_1m": "0", "clicks_5m": "0", "all_10s": "0", "watch_1m": "0",
                 "items_1h": "0", "recent_1m": "[]", "last": '["7"]'}, h
    # without the like, everything empty: the entity is absent
    ev_nolike = [e for e in r.events["a"] if e[2]["type"] != "like"]
    assert entity_hash(F, ev_nolike, C + 3600000) is None
    # last_n: distinct ids, most recent first, n of them, ties by later offset
    recs = [(0, rec(user_id="b", type="like", item_id="x", ts=10)),
            (1, rec(user_id="b", type="like", item_id="y", ts=12)),
            (2, rec(user_id="b", type="like", item_id="x", ts=11)),
            (3, rec(user_id="b", type="like", item_id="z", ts=12)),
            (4, rec(user_id="b", type="like", item_id="y", ts=9))]
    r = run_partition(recs, F, lateness_ms=10 ** 9)
    assert entity_hash(F, r.events["b"], r.clock)[0]["last"] == '["z","y"]'
    # compare(): exact fields as strings, approximate ones within the tolerance
    e = {"k": {"a": "1", "d": "100"}}
    A = {"k": {"d"}}
    assert compare(e, A, {"k": {"a": "1", "d": "111"}}) == ([], [], [0.11])
    assert compare(e, A, {"k": {"a": "1", "d": "113"}}) == ([], [("k", "d", "100", "113", 0.13)],
                                                           [0.13])
    assert compare(e, A, {"k": {"a": "1", "d": "126"}})[0] == [("k", "d", "100", "126")]
    assert compare(e, A, {"k": {"a": "1", "d": "100.0"}})[0] == [("k", "d", "100", "100.0")]
    assert compare(e, A, {"k": {"a": "1.0", "d": "100"}})[0] == [("k", "a", "1", "1.0")]
    assert compare(e, A, {"k": {"a": "1"}})[0] == [("k", "d", "100", None)]
    assert compare(e, A, {"k": {"a": "1", "d": "100", "x": "1"}})[0] == [("k", "x", None, "1")]
    assert compare(e, {}, {})[0] == [("k", None, e["k"], None)]
    assert hll_verdict([], [0.01, -0.02, 0.0]) == []
    assert hll_verdict([], [0.05] * 10) != []  # biased
    assert hll_verdict([1] * 4, [0.0] * 10) != []  # too many beyond the tolerance
    print("wf_model self-test: ok")


if __name__ == "__main__":
    _selftest()
