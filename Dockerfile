# Dockerfile: eddy on Debian bookworm. A build stage with the Debian packages `make deps`
# installs, a small runtime stage (the shared libraries eddy links, a non-root user, state under
# a volume), and a demo stage that adds the sample-event producer for docker-compose.yml.
# tests/integration/test_compose.py checks the package lists against the Makefile and the binary.

FROM debian:bookworm AS build
# exactly the Makefile's DEB_PKGS (`make print-deb-pkgs`)
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential pkg-config librdkafka-dev librocksdb-dev libgflags-dev libsnappy-dev \
        libbz2-dev liblz4-dev libzstd-dev libjansson-dev libhiredis-dev \
        libcurl4-openssl-dev libavro-dev zlib1g-dev libmicrohttpd-dev libcmocka-dev redis-server \
        kcat python3 python3-confluent-kafka python3-redis python3-yaml python3-avro avro-bin \
        clickhouse-server clickhouse-client clang libclang-rt-14-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY runtime runtime
COPY state state
COPY connectors connectors
COPY processors processors
COPY schemas schemas
RUN make -j"$(nproc)" build/eddy && strip build/eddy && build/eddy list

FROM debian:bookworm-slim AS runtime
# the run-time packages of the libraries in the Makefile's LIBS (RocksDB is linked in
# statically: what it needs is libgflags, libsnappy, libbz2, liblz4, libzstd, libstdc++)
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        librdkafka1 libgflags2.2 libsnappy1v5 libbz2-1.0 liblz4-1 libzstd1 libstdc++6 libjansson4 libhiredis0.14 libcurl4 libavro23 zlib1g \
        libmicrohttpd12 \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/eddy --shell /usr/sbin/nologin eddy \
    && mkdir -p /var/lib/eddy /etc/eddy \
    && chown eddy:eddy /var/lib/eddy
COPY --from=build /src/build/eddy /usr/local/bin/eddy
USER eddy
WORKDIR /var/lib/eddy
# state.dir of every job lives here: a named volume in docker-compose.yml
VOLUME ["/var/lib/eddy"]
# metrics.port of the jobs in jobs/
EXPOSE 9100
ENTRYPOINT ["eddy"]
CMD ["--help"]

FROM runtime AS demo
USER root
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-confluent-kafka \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/compose_producer.py /opt/eddy/compose_producer.py
USER eddy
ENTRYPOINT ["python3", "/opt/eddy/compose_producer.py"]
CMD []
