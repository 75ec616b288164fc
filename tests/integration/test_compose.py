"""test_compose.py: docker-compose.yml and the Dockerfile, checked statically (no Docker engine here).

The compose file parses; every service has what it needs; every eddy job's image, command, job
file, state volume, metrics port and topics agree with the repository and with each other; the
Dockerfile's build stage installs exactly `make deps`'s packages and its runtime stage exactly
the run-time packages of the libraries eddy links; the README says how to run it.
"""
import importlib.util
import json
import os
import re
import shlex
import subprocess

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Processors with a service and a job file but not in `eddy list` yet. Their services sit in the
# "pending" compose profile; the test checks their job files fully once they are listed, and
# fails while a listed processor is still named here (remove it then).
PENDING_PROCESSORS = set()

# One-shot services: they exit 0 and the jobs wait for that instead of a health check.
ONE_SHOT = {"kafka-init"}

JOB_SERVICES = {"likes", "features", "cdc", "samples"}
INFRA = {"kafka", "kafka-init", "schema-registry", "redis", "clickhouse", "producer"}


def load_compose():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        return yaml.safe_load(f)


def dockerfile_stages():
    """{stage name: [instruction lines, continuations joined]}."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    stages, name = {}, None
    for line in lines:
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            name = m.group(2) or m.group(1)
            stages[name] = [line]
        else:
            stages[name].append(line)
    return stages


def apt_packages(stage):
    """Packages named by `apt-get install` in a stage's RUN lines."""
    pkgs = []
    for line in stage:
        for cmd in re.split(r"&&|;", line):
            words = shlex.split(cmd)
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def eddy_processors(eddy):
    out = subprocess.run([eddy, "list"], capture_output=True, text=True, timeout=30, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def init_topics(compose):
    """{topic: partitions} that kafka-init creates."""
    env = compose["services"]["kafka-init"]["environment"]
    topics = {}
    for item in env["TOPICS"].split():
        name, parts = item.rsplit(":", 1)
        topics[name] = int(parts)
    return topics


def test_compose_services(eddy, tmp):
    c = load_compose()
    services = c["services"]
    assert set(services) == JOB_SERVICES | INFRA, sorted(services)
    for name, svc in services.items():
        assert "image" in svc, "%s: no image" % name
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", name
            assert "healthcheck" not in svc, name
        else:
            hc = svc.get("healthcheck")
            assert hc and hc.get("test"), "%s: no health check" % name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    env = services["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert services["schema-registry"]["image"].startswith("confluentinc/cp-schema-registry:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert "$${t%%:*}" in services["kafka-init"]["command"][0]

    # every named volume used is declared
    declared = set(c.get("volumes") or {})
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if not src.startswith("."):
                assert src in declared, "%s: volume %s not declared" % (name, src)

    # host ports are unique
    host_ports = [p.split(":")[0] for svc in services.values() for p in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports

    # the producer: built from the Dockerfile's demo stage, its script in the repository
    prod = services["producer"]
    assert prod["build"]["target"] == "demo" and prod["build"]["dockerfile"] == "Dockerfile"
    assert prod["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    demo = dockerfile_stages()["demo"]
    copies = [l.split()[1] for l in demo if l.upper().startswith("COPY ")]
    assert copies and all(os.path.exists(os.path.join(ROOT, p)) for p in copies), copies
    spec = importlib.util.spec_from_file_location(
        "compose_producer", os.path.join(ROOT, "scripts", "compose_producer.py"))
    producer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(producer)
    topics = init_topics(c)
    assert len(producer.TOPICS) == 5
    for t in producer.TOPICS.values():
        assert t in topics, "producer writes to %s, which kafka-init does not create" % t


def test_compose_jobs(eddy, tmp):
    c = load_compose()
    services = c["services"]
    topics = init_topics(c)
    listed = eddy_processors(eddy)
    assert not (listed & PENDING_PROCESSORS), (
        "%s landed: remove it from PENDING_PROCESSORS and its service from the pending profile"
        % sorted(listed & PENDING_PROCESSORS))
    seen = set()
    for name in sorted(JOB_SERVICES):
        svc = services[name]
        assert svc["image"] == "eddy:local", name
        assert svc["build"]["dockerfile"] == "Dockerfile" and svc["build"]["target"] == "runtime"
        assert svc["restart"] == "unless-stopped", name
        deps = svc["depends_on"]
        for dep in ("kafka", "redis", "clickhouse"):
            assert deps[dep]["condition"] == "service_healthy", (name, dep)
        assert deps["kafka-init"]["condition"] == "service_completed_successfully", name

        cmd = svc["command"]
        assert cmd[0] == "run" and cmd[2] == "-c" and len(cmd) == 4, (name, cmd)
        proc, conf_in_container = cmd[1], cmd[3]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert conf_in_container in mounts, (name, conf_in_container, mounts)
        host_path = mounts[conf_in_container]
        assert host_path.startswith("./jobs/") and svc["volumes"][0].endswith(":ro"), host_path
        job_path = os.path.join(ROOT, host_path)
        with open(job_path) as f:
            job = json.load(f)
        assert job["processor"] == proc, (name, job["processor"], proc)
        seen.add(proc)

        # state on the service's own named volume, at the runtime image's state directory
        state_mounts = [t for t, s in mounts.items() if not s.startswith(".")]
        assert state_mounts == ["/var/lib/eddy"], (name, mounts)
        assert mounts["/var/lib/eddy"] == name + "-state"
        assert job["state.dir"].startswith("/var/lib/eddy/"), job["state.dir"]

        # metrics: the job file's port is the container port published, and health-checked
        ports = [p.split(":") for p in svc["ports"]]
        assert len(ports) == 1 and int(ports[0][1]) == job["metrics.port"], (name, ports)
        assert "/dev/tcp/127.0.0.1/%d" % job["metrics.port"] in " ".join(svc["healthcheck"]["test"])
        assert "GET /healthz" in " ".join(svc["healthcheck"]["test"])

        # services by their compose names
        assert job["kafka"]["bootstrap.servers"] == "kafka:9092", name
        assert job["redis.url"].startswith("redis://redis:6379/"), name

        # every topic it reads or writes exists, joined inputs co-partitioned
        for t in job["input.topics"]:
            assert t in topics, (name, t)
        assert len({topics[t] for t in job["input.topics"]}) == 1, (name, job["input.topics"])
        assert job["dlq.topic"] in topics, (name, job["dlq.topic"])
        if "output.topic" in job:
            assert job["output.topic"] in topics, (name, job["output.topic"])

        if proc in listed:
            assert "profiles" not in svc, "%s runs %s, which exists: take it out of profiles" % (
                name, proc)
            out = subprocess.run([eddy, proc, "--list-config", "-c", job_path],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, "%s does not load: %s" % (host_path, out.stderr)
        else:
            assert proc in PENDING_PROCESSORS, "%s: unknown processor %s" % (name, proc)
            assert svc.get("profiles") == ["pending"], name
            # runtime keys only: checked against the runtime's table through a listed processor
            runtime_keys = {k: v for k, v in job.items() if k != "processor"}
            probe = os.path.join(tmp, name + ".json")
            with open(probe, "w") as f:
                json.dump(runtime_keys, f)
            out = subprocess.run([eddy, "like-counter", "--list-config", "-c", probe],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, "%s: %s" % (host_path, out.stderr)
    assert seen == {"like-counter", "window-features", "cdc-fanout", "ips-samples"}, seen


def test_dockerfile_packages(eddy, tmp):
    stages = dockerfile_stages()
    assert list(stages) == ["build", "runtime", "demo"], list(stages)
    assert stages["build"][0].split()[1] == "debian:bookworm"
    assert stages["runtime"][0].split()[1] == "debian:bookworm-slim"

    deps = subprocess.run(["make", "-s", "-C", ROOT, "print-deb-pkgs"], capture_output=True,
                          text=True, timeout=60, check=True).stdout.split()
    build_pkgs = apt_packages(stages["build"])
    assert build_pkgs == deps, "Dockerfile build stage %s != make deps %s" % (build_pkgs, deps)

    # runtime: the packages holding the shared objects that the Makefile's -l libraries resolve
    # to (libfoo.so -> libfoo.so.N.M), and ca-certificates for TLS to brokers
    # (RocksDB is linked statically, between -Wl,-Bstatic and -Wl,-Bdynamic: its archive comes
    # from a package of DEB_PKGS and nothing of it is needed at run time but its own libraries)
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    var = lambda n: re.search(r"^%s\s*=\s*(.*)$" % n, makefile, re.M).group(1)
    libs = var("LIBS").replace("$(ROCKSDB_LIBS)", var("ROCKSDB_LIBS")).split()
    arch = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], capture_output=True,
                          text=True).stdout.strip() or "x86_64-linux-gnu"
    want = {"ca-certificates"}
    static = False
    for lib in libs:
        if lib.startswith("-Wl,"):
            static = {"-Wl,-Bstatic": True, "-Wl,-Bdynamic": False}.get(lib, static)
            continue
        name = lib[2:]
        if name in ("m", "pthread"):  # libc6, in every image
            continue
        if name == "stdc++":  # build-essential's g++; at run time libstdc++6
            want.add("libstdc++6")
            continue
        if static:
            archive = "/usr/lib/%s/lib%s.a" % (arch, name)
            owners = subprocess.run(["dpkg", "-S", archive], capture_output=True, text=True).stdout
            assert owners.split(":")[0] in deps, "%s comes from %r, not in DEB_PKGS" % (archive, owners)
            continue
        dev = "/usr/lib/%s/lib%s.so" % (arch, name)
        assert os.path.exists(dev), "%s: %s missing (is its -dev package in DEB_PKGS?)" % (lib, dev)
        owners = subprocess.run(["dpkg", "-S", dev], capture_output=True, text=True).stdout
        assert owners.split(":")[0] in deps, "%s comes from %s, not in DEB_PKGS" % (dev, owners)
        real = os.path.realpath(dev)
        out = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
        if out.returncode != 0 and real.startswith("/usr/"):  # merged /usr: dpkg knows /lib/...
            out = subprocess.run(["dpkg", "-S", real[4:]], capture_output=True, text=True)
        assert out.returncode == 0, "no package owns %s" % real
        want.add(out.stdout.split(":")[0])
    runtime_pkgs = apt_packages(stages["runtime"])
    assert set(runtime_pkgs) == want and len(runtime_pkgs) == len(want), (runtime_pkgs, want)

    # a non-root user, state under a volume, the binary as entrypoint
    rt = stages["runtime"]
    users = [l.split()[1] for l in rt if l.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    assert any(l.upper().startswith("VOLUME") and "/var/lib/eddy" in l for l in rt)
    assert 'ENTRYPOINT ["eddy"]' in rt
    assert [l.split()[1] for l in stages["demo"] if l.upper().startswith("USER ")][-1] == "eddy"
    # what the build stage copies exists
    for l in stages["build"]:
        if l.upper().startswith("COPY "):
            assert os.path.exists(os.path.join(ROOT, l.split()[1])), l


def test_readme_says_how(eddy, tmp):
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "docker compose up --build" in readme
    c = load_compose()
    for name in ("likes", "features"):
        host = c["services"][name]["ports"][0].split(":")[0]
        assert "localhost:%s/metrics" % host in readme, name
    assert "/readyz" in readme and "ready.max.lag" in readme
    assert "SCRAM-SHA-512" in readme and "SASL_SSL" in readme
