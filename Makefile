# eddy: exactly-once stream processors for Kafka.
#   make            build build/eddy
#   make test       install what is missing, build with ASan+UBSan, run unit and integration tests
#   make demo       install what is missing, build, run the like-counter on embedded defaults
#   make fuzz       libFuzzer runs of every decoder, FUZZ_SECONDS each (default 600)
#   make bench      benchmarks (bench/)
#   make SANITIZER=address|undefined|address,undefined   sanitizer build

CC       ?= cc
SANITIZER ?=
OPT      ?= -O2
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -g $(OPT) -MMD -MP \
              -I. -Iruntime -Istate -Iconnectors -Iprocessors -Ischemas
# RocksDB is linked statically: its hot paths read thread-locals (perf context, perf level)
# through __tls_get_addr when it is a shared library, about a fifth of the committer thread.
ROCKSDB_LIBS = -Wl,-Bstatic -lrocksdb -Wl,-Bdynamic -lgflags -lsnappy -lbz2 -llz4 -lzstd -lstdc++
LIBS     = -lrdkafka $(ROCKSDB_LIBS) -lhiredis -ljansson -lcurl -lavro -lz -lmicrohttpd -lm -lpthread

ifeq ($(SANITIZER),)
BUILD    = build
SANFLAGS =
else
BUILD    = build/san-$(subst $(comma),-,$(SANITIZER))
SANFLAGS = -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT      = -O1
endif
comma := ,

CFLAGS  = $(CFLAGS_BASE) $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS = $(SANFLAGS)

SRC      = $(wildcard runtime/*.c state/*.c connectors/*.c processors/*.c schemas/*.c)
OBJ      = $(SRC:%.c=$(BUILD)/%.o) $(BUILD)/schemas_embedded.o
AVSC     = $(sort $(wildcard schemas/*.avsc))
LIBOBJ   = $(filter-out $(BUILD)/runtime/main.o,$(OBJ))
UNIT_SRC = $(wildcard tests/unit/*.c)
UNIT_BIN = $(UNIT_SRC:%.c=$(BUILD)/%)

# Debian packages the build, the tests and the demo need.
DEB_PKGS = build-essential pkg-config librdkafka-dev librocksdb-dev libgflags-dev libsnappy-dev \
           libbz2-dev liblz4-dev libzstd-dev libjansson-dev libhiredis-dev \
           libcurl4-openssl-dev libavro-dev zlib1g-dev libmicrohttpd-dev libcmocka-dev redis-server \
           kcat python3 python3-confluent-kafka python3-redis python3-yaml python3-avro avro-bin \
           clickhouse-server clickhouse-client clang libclang-rt-14-dev

.PHONY: all deps print-deb-pkgs test unit-bins demo bench bench-wf bench-ips bench-warehouse bench-cdc bench-avro \
        docs clean fmt fmt-check fuzz fuzz-bins
all: $(BUILD)/eddy

deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:" $$missing; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi

# The list the Dockerfile's build stage installs (tests/integration/test_compose.py compares).
print-deb-pkgs:
	@echo $(DEB_PKGS)

$(BUILD)/eddy: $(OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# schemas/*.avsc, built into the binary as C strings (warehouse tables)
$(BUILD)/schemas_embedded.c: $(AVSC) Makefile
	@mkdir -p $(dir $@)
	@{ echo '/* generated from the schemas/ .avsc files by the Makefile */'; \
	  echo 'typedef struct { const char *name, *json; } eddy__schema_src_t;'; \
	  echo 'const eddy__schema_src_t eddy__schemas[] = {'; \
	  for f in $(AVSC); do n=$$(basename $$f .avsc); printf '{"%s",\n' $$n; \
	    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $$f; echo '},'; done; \
	  echo '{0, 0}};'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/schemas_embedded.o: $(BUILD)/schemas_embedded.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIBOBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBOBJ) $(LDFLAGS) $(LIBS) -lcmocka

# The test suite: everything under ASan+UBSan.
TEST_SAN = address,undefined
test: deps
	@if command -v clang-format >/dev/null; then $(MAKE) --no-print-directory fmt-check; fi
	$(MAKE) --no-print-directory SANITIZER=$(TEST_SAN) build/san-address-undefined/eddy unit-bins
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS)
	/usr/bin/python3 tests/run.py --build build/san-address-undefined

# libFuzzer targets (clang): every decoder, with ASan and UBSan, seeded from tests/fuzz/corpus/<name>.
# New inputs go to build/fuzz/corpus-<name>; a crash leaves build/fuzz/crash-* and fails the run.
FUZZ_SECONDS ?= 600
TEST_FUZZ_SECONDS ?= 20
FUZZ_CC      ?= clang
FUZZ_FLAGS    = -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -Iruntime -Ischemas -Iconnectors
FUZZ_NAMES    = json avro confluent
FUZZ_BINS     = $(FUZZ_NAMES:%=build/fuzz/%_fuzz)

build/fuzz/json_fuzz: tests/fuzz/json_fuzz.c schemas/json.c schemas/json.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/json_fuzz.c schemas/json.c

build/fuzz/%_fuzz: tests/fuzz/%_fuzz.c schemas/avro_codec.c schemas/avro_codec.h runtime/mem.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< schemas/avro_codec.c runtime/mem.c -ljansson -lm

fuzz-bins: $(FUZZ_BINS)

fuzz: deps fuzz-bins
	@for n in $(FUZZ_NAMES); do \
	    mkdir -p build/fuzz/corpus-$$n; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	    ( cd build/fuzz && ASAN_OPTIONS=detect_leaks=1 ./$${n}_fuzz -max_total_time=$(FUZZ_SECONDS) \
	      -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
	      corpus-$$n ../../tests/fuzz/corpus/$$n > $$n.log 2>&1 ) || \
	      { tail -60 build/fuzz/$$n.log; echo "fuzz: $$n FAILED (build/fuzz/$$n.log)"; exit 1; }; \
	    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" \
	      build/fuzz/$$n.log | tr '\n' ' '; echo; \
	done

unit-bins: $(UNIT_BIN)

demo: deps all
	/usr/bin/python3 scripts/demo.py $(BUILD)/eddy

bench: deps all
	/usr/bin/python3 bench/run.py

bench-wf: deps all
	/usr/bin/python3 bench/window_features.py

bench-ips: deps all
	/usr/bin/python3 bench/ips_samples.py

bench-warehouse: deps all
	/usr/bin/python3 bench/warehouse.py

bench-cdc: deps all
	/usr/bin/python3 bench/cdc_fanout.py

# Avro input against JSON: the decoder alone (bench/avro_decode.c), then the like-counter
bench-avro: deps all
	@mkdir -p bench/out
	$(CC) $(CFLAGS_BASE) -o bench/out/avro_decode bench/avro_decode.c schemas/avro_codec.c \
	    schemas/json.c runtime/mem.c -ljansson -lm
	bench/out/avro_decode
	/usr/bin/python3 bench/avro_input.py

docs: all
	$(BUILD)/eddy like-counter --list-config --markdown > docs/config.md
	$(BUILD)/eddy window-features --list-config --markdown > docs/config-window-features.md
	$(BUILD)/eddy cdc-fanout --list-config --markdown > docs/config-cdc-fanout.md
	$(BUILD)/eddy ips-samples --list-config --markdown > docs/config-ips-samples.md

FMT_FILES = $(SRC) $(UNIT_SRC) $(wildcard runtime/*.h state/*.h connectors/*.h processors/*.h \
            schemas/*.h tests/unit/*.h tests/fuzz/*.c bench/*.c)

fmt:
	clang-format -i $(FMT_FILES)

fmt-check:
	@clang-format --dry-run --Werror $(FMT_FILES)

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(UNIT_BIN:=.d)
