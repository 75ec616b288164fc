#!/usr/bin/env python3
"""run.py: eddy's test suite: cmocka unit binaries, then integration tests with real processes.

Usage: tests/run.py --build DIR [--only SUBSTRING] [--unit-only | --integration-only]

Integration tests are functions named test_* in tests/integration/test_*.py; each gets a
fresh temporary directory and the path of the eddy binary. The last line is the plain
'N passed, N failed' summary.
"""
import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_unit(build, only, results):
    udir = os.path.join(build, "tests", "unit")
    bins = sorted(f for f in os.listdir(udir) if not f.endswith(".d")) if os.path.isdir(udir) else []
    if not bins:
        print("unit: no test binaries under %s" % udir)
        results.append(("unit: binaries built", False, 0.0))
        return
    for b in bins:
        if only and only not in b:
            continue
        t0 = time.time()
        p = subprocess.run([os.path.join(udir, b)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace", timeout=600)
        out = p.stdout
        passed = sum(int(n) for n in re.findall(r"\[  PASSED  \] (\d+) test", out))
        failed = sum(int(n) for n in re.findall(r"\[  FAILED  \] (\d+) test", out))
        ok = p.returncode == 0 and failed == 0 and passed > 0
        dt = time.time() - t0
        print("%s unit/%s: %d cmocka tests passed, %d failed (%.1fs)" % ("PASS" if ok else "FAIL", b, passed, failed, dt))
        if not ok:
            print(out[-6000:])
        results.append(("unit/" + b, ok, dt))


def run_integration(eddy, only, results):
    idir = os.path.join(HERE, "integration")
    sys.path.insert(0, idir)
    for f in sorted(os.listdir(idir)):
        if not (f.startswith("test_") and f.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(f[:-3], os.path.join(idir, f))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            full = "%s::%s" % (f, name)
            if only and only not in full:
                continue
            tmp = tempfile.mkdtemp(prefix="eddy-it-")
            t0 = time.time()
            ok = True
            try:
                getattr(mod, name)(eddy=eddy, tmp=tmp)
            except Exception:
                ok = False
                traceback.print_exc()
                for lf in sorted(os.listdir(tmp)):
                    if lf.endswith(".log"):
                        path = os.path.join(tmp, lf)
                        if os.path.isfile(path):
                            with open(path, errors="replace") as fp:
                                tail = fp.read()[-2000:]
                            print("---- %s (tail) ----\n%s" % (path, tail))
            finally:
                try:
                    import harness
                    harness.cleanup()
                except Exception:
                    pass
            dt = time.time() - t0
            print("%s %s (%.1fs)" % ("PASS" if ok else "FAIL", full, dt), flush=True)
            results.append((full, ok, dt))
            if ok:
                shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--only")
    ap.add_argument("--unit-only", action="store_true")
    ap.add_argument("--integration-only", action="store_true")
    a = ap.parse_args()
    build = os.path.join(ROOT, a.build) if not os.path.isabs(a.build) else a.build
    eddy = os.path.join(build, "eddy")
    # ASan: leaks are errors; librdkafka/RocksDB keep some process-lifetime allocations
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
    os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    os.environ.setdefault("LSAN_OPTIONS", "suppressions=%s" % os.path.join(HERE, "lsan.supp"))
    results = []
    if not a.integration_only:
        run_unit(build, a.only, results)
    if not a.unit_only:
        run_integration(eddy, a.only, results)
    passed = sum(1 for r in results if r[1])
    failed = len(results) - passed
    for name, ok, dt in results:
        if not ok:
            print("failed: %s" % name)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or not results else 0)


if __name__ == "__main__":
    main()
