# yololossd: the loss over HTTP (Open Inference Protocol v2), libmicrohttpd driven by libuv.
# Builds $(B)/yololossd from server/**/*.c (layers: http/, v2/, monitor/) and $(B)/test_server from tests/server/*.c.
SERVER_PKGS := libmicrohttpd jansson libuv zlib sqlite3 libpq
SERVER_CFLAGS := $(shell pkg-config --cflags $(SERVER_PKGS) 2>/dev/null)
SERVER_LIBS := $(shell pkg-config --libs $(SERVER_PKGS) 2>/dev/null)
SERVER_SRC := $(wildcard server/*.c server/*/*.c)
SERVER_OBJ := $(patsubst server/%.c,$(B)/server/%.o,$(SERVER_SRC))

$(B)/server/%.o: server/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CORE_INC) -Iserver $(SERVER_CFLAGS) -c $< -o $@

# The dashboard (server/monitor/dashboard/): its files and npm's uPlot, embedded into the daemon as a
# generated C file. `npm ci` installs the locked versions into server/monitor/dashboard/node_modules
# (ignored by git; the registry is needed once).
DASH_DIR := server/monitor/dashboard
DASH_NPM := $(DASH_DIR)/node_modules/.package-lock.json
DASH_UPLOT := $(DASH_DIR)/node_modules/uplot/dist
DASH_FILES := $(DASH_DIR)/index.html $(DASH_DIR)/app.js $(DASH_DIR)/style.css

$(DASH_NPM): $(DASH_DIR)/package.json $(DASH_DIR)/package-lock.json
	cd $(DASH_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(B)/server/monitor/dashboard_assets.c: $(DASH_NPM) $(DASH_FILES) $(DASH_DIR)/embed.py
	@mkdir -p $(dir $@)
	$(PYTHON) $(DASH_DIR)/embed.py $@ index.html=$(DASH_DIR)/index.html app.js=$(DASH_DIR)/app.js \
	  style.css=$(DASH_DIR)/style.css uPlot.iife.min.js=$(DASH_UPLOT)/uPlot.iife.min.js \
	  uPlot.min.css=$(DASH_UPLOT)/uPlot.min.css

$(B)/server/monitor/dashboard_assets.o: $(B)/server/monitor/dashboard_assets.c server/monitor/dashboard_assets.h
	$(CC) $(filter-out -Wmissing-prototypes,$(CFLAGS_ALL)) -Iserver/monitor -c $< -o $@

SERVER_OBJ += $(B)/server/monitor/dashboard_assets.o

$(B)/yololossd: $(SERVER_OBJ) $(CORE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(SERVER_LIBS) -lm -lpthread

ALL_BINS += $(B)/yololossd

# The integration tests: Check + libcurl against the real daemon, with the core linked in
# to compute the expected answers in-process.
TEST_SERVER_SRC := $(wildcard tests/server/*.c)
TEST_SERVER_OBJ := $(patsubst tests/server/%.c,$(B)/tests/server/%.o,$(TEST_SERVER_SRC))
TEST_SERVER_CFLAGS := $(shell pkg-config --cflags check libcurl jansson zlib sqlite3 2>/dev/null)
TEST_SERVER_LIBS := $(shell pkg-config --libs check libcurl jansson zlib sqlite3 2>/dev/null)

$(B)/tests/server/%.o: tests/server/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CORE_INC) $(TEST_SERVER_CFLAGS) -c $< -o $@

# test_point.c includes the daemon's monitor/history.h, test_lockouts.c its server.h (peers.c),
# test_shm_index.c v2/infer.h and v2/shm.h
$(B)/tests/server/test_point.o $(B)/tests/server/test_lockouts.o \
$(B)/tests/server/test_shm_index.o: TEST_SERVER_CFLAGS += -Iserver $(SERVER_CFLAGS)

# image_rank.o: the images ranking, a pure file of the daemon checked against numbers by
# hand; point.o: a point's JSON and stored matrices (test_point.c); peers.o: the per-address
# keys (test_lockouts.c); a request's parse with the region registry, the models, the
# budgeted buffers and the failures they name (test_shm_index.c)
TEST_SERVER_V2_OBJ := $(addprefix $(B)/server/,v2/infer_request.o v2/outputs.o v2/shm.o v2/models.o \
                        http/bufcache.o http/budget.o http/fail.o)
$(B)/test_server: $(TEST_SERVER_OBJ) $(B)/server/monitor/image_rank.o $(B)/server/monitor/point.o \
                  $(B)/server/http/peers.o $(TEST_SERVER_V2_OBJ) \
                  $(CORE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TEST_SERVER_LIBS) -lm -lpthread

ALL_BINS += $(B)/test_server

.PHONY: run test-server
run:
	@bash .ci/deps build
	@$(MAKE) --no-print-directory $(B)/yololossd
	exec $(B)/yololossd --host 127.0.0.1 --port 8000

# CK_FORK: each test in its own process; the daemon under test is the one of this build.
# The history-pg suite (a real PostgreSQL server, started by the suite) runs in its own
# target, test-history-pg: skipped, with a message, when PostgreSQL's binaries are missing.
test-server: $(B)/yololossd $(B)/test_server
	CK_FORK=yes CK_EXCLUDE_SUITE=history-pg YL_DAEMON=$(B)/yololossd $(B)/test_server

TEST_RUNS += test-server

# The layers call downward only: http/ names nothing of v2/ or monitor/, monitor/ nothing
# of v2/, and no files of a layer call each other in a circle (checked on the objects with nm).
.PHONY: test-server-layers
test-server-layers: $(B)/yololossd
	sh tests/server/layers.sh $(B)

TEST_RUNS += test-server-layers

# docs/server.md's flag list is the flag table of server/options.c (as --help prints it).
.PHONY: test-server-flags
test-server-flags: $(B)/yololossd
	sh tests/server/flags_doc.sh $(B)/yololossd docs/server.md

TEST_RUNS += test-server-flags

.PHONY: test-history-pg
test-history-pg: $(B)/yololossd $(B)/test_server
	CK_FORK=yes CK_RUN_SUITE=history-pg YL_DAEMON=$(B)/yololossd $(B)/test_server

TEST_RUNS += test-history-pg

# /metrics of a live daemon that has recorded points, through `promtool check metrics`.
.PHONY: test-metrics-promtool test-dashboard
test-metrics-promtool: $(B)/yololossd
	YL_DAEMON=$(B)/yololossd bash tests/server/metrics_promtool.sh

TEST_RUNS += test-metrics-promtool

# The dashboard in headless Chromium (Debian's) driven by playwright-core (npm): feeds a
# live daemon steps, checks the charts show them, saves build/dashboard.png
# and build/dashboard-images.png (the README's pictures come from real training runs instead:
# `make docs-screenshots`, examples/examples.mk).
test-dashboard: $(B)/yololossd $(DASH_NPM)
	@mkdir -p build
	YL_DAEMON=$(B)/yololossd node tests/server/dashboard.test.mjs

TEST_RUNS += test-dashboard

# The server benchmark (make bench): the standard workload end to end, binary and JSON,
# 1/2/4 clients, against the core in-process in the same run.
$(B)/bench_server: bench/bench_server.c bench/bench_common.c bench/bench_common.h $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CORE_INC) $(shell pkg-config --cflags libcurl) -o $@ $(filter %.c,$^) $(CORE_LIB) \
	  $(shell pkg-config --libs libcurl) -lm -lpthread

ALL_BINS += $(B)/bench_server
.PHONY: bench-server
bench-server: $(B)/bench_server $(B)/yololossd
	$(B)/bench_server --daemon $(B)/yololossd
BENCH_RUNS += bench-server

# The wire benchmark (make bench): dense vs compact vs shared memory on the standard
# workload, over loopback and, when run as root, over 10 and 1 Gbit links (a private network
# namespace with tc on its loopback, made by the benchmark), beside the in-process time;
# first with libcurl (bench_wire.c), then through the Python client (bench_wire.py, which
# uses bench_wire --inprocess-helper for the workload and the in-process time).
$(B)/bench_wire: bench/bench_wire.c bench/bench_common.c bench/bench_common.h $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CORE_INC) $(shell pkg-config --cflags libcurl) -o $@ $(filter %.c,$^) $(CORE_LIB) \
	  $(shell pkg-config --libs libcurl) -lm -lrt

ALL_BINS += $(B)/bench_wire
.PHONY: bench-wire
bench-wire: $(B)/bench_wire $(B)/yololossd
	$(B)/bench_wire --daemon $(B)/yololossd
	$(PYTHON) bench/bench_wire.py --daemon $(B)/yololossd --helper $(B)/bench_wire
BENCH_RUNS += bench-wire

# Triton's tritonclient (pure Python, from its public source) against the daemon: skipped
# unless TRITONCLIENT_PATH names .../client/src/python/library (or tritonclient is
# installed). Needs python3-numpy, -rapidjson, -gevent, -geventhttpclient (.ci/deps).
.PHONY: test-server-tritonclient
test-server-tritonclient: $(B)/yololossd
	YL_DAEMON=$(B)/yololossd $(PYTHON) -m pytest -q tests/server/test_tritonclient.py

TEST_RUNS += test-server-tritonclient

# libFuzzer target for the daemon's parsers (request body, gzip/deflate, router, Accept-
# Encoding, anchors), with clang, ASan and UBSan; the core objects are tests/fuzz/fuzz.mk's.
#   make fuzz-server [FUZZ_SECONDS=60]     fuzz it
#   make fuzz-server-regress               replay tests/server/fuzz/corpus once (make test)
SERVER_FUZZ_SRC := server/v2/infer_request.c server/v2/outputs.c server/v2/models.c server/v2/shm.c server/http/encoding.c \
                   server/http/router.c server/http/bufcache.c server/http/budget.c \
                   server/http/fail.c
SERVER_FUZZ_CORE := $(patsubst core/%.c,$(B)/fuzz/core/%.o,$(CORE_SRC))
SERVER_FUZZ_CORPUS := tests/server/fuzz/corpus/server_request

$(B)/fuzz/server_request: tests/server/fuzz/server_request.c $(SERVER_FUZZ_SRC) server/server.h \
                          server/v2/infer.h $(SERVER_FUZZ_CORE)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS_ALL) $(WARN) -fsanitize=fuzzer $(CORE_INC) -Iserver $(SERVER_CFLAGS) -o $@ \
	  $< $(SERVER_FUZZ_SRC) $(SERVER_FUZZ_CORE) -ljansson -lz -lm -lpthread -lrt

.PHONY: fuzz-server fuzz-server-regress
fuzz-server: $(B)/fuzz/server_request
	@mkdir -p $(B)/fuzz/corpus/server_request $(B)/fuzz/artifacts/server_request
	$(B)/fuzz/server_request $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=$(B)/fuzz/artifacts/server_request/ \
	  $(B)/fuzz/corpus/server_request $(SERVER_FUZZ_CORPUS)

# `make fuzz` (and so fuzz-ci, which make test runs) covers the server's parser too.
fuzz: fuzz-server

fuzz-server-regress: $(B)/fuzz/server_request
	@n=$$(ls $(SERVER_FUZZ_CORPUS) | wc -l); \
	if $(B)/fuzz/server_request $(FUZZ_OPTS) $(SERVER_FUZZ_CORPUS)/* \
	     > $(B)/fuzz/server_request.regress.log 2>&1; \
	then echo "fuzz-server-regress: $$n inputs ok"; \
	else tail -n 60 $(B)/fuzz/server_request.regress.log; \
	     echo "fuzz-server-regress: FAILED (log $(B)/fuzz/server_request.regress.log)"; exit 1; fi

TEST_RUNS += fuzz-server-regress

# libFuzzer target for the evaluation models' parser and evaluation (server/v2/eval_*.c).
#   make fuzz-eval-request [FUZZ_SECONDS=60]   fuzz it
#   make fuzz-eval-request-regress             replay its corpus once (make test)
EVAL_FUZZ_SRC := server/v2/eval_request.c server/v2/eval_run.c server/http/bufcache.c \
                 server/http/budget.c server/http/fail.c
EVAL_FUZZ_CORPUS := tests/server/fuzz/corpus/eval_request

$(B)/fuzz/eval_request: tests/server/fuzz/eval_request.c $(EVAL_FUZZ_SRC) server/server.h \
                        server/v2/eval.h server/v2/eval_request.h $(SERVER_FUZZ_CORE)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS_ALL) $(WARN) -fsanitize=fuzzer $(CORE_INC) -Iserver $(SERVER_CFLAGS) -o $@ \
	  $< $(EVAL_FUZZ_SRC) $(SERVER_FUZZ_CORE) -ljansson -lm -lpthread

.PHONY: fuzz-eval-request fuzz-eval-request-regress
fuzz-eval-request: $(B)/fuzz/eval_request
	@mkdir -p $(B)/fuzz/corpus/eval_request $(B)/fuzz/artifacts/eval_request
	$(B)/fuzz/eval_request $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=$(B)/fuzz/artifacts/eval_request/ \
	  $(B)/fuzz/corpus/eval_request $(EVAL_FUZZ_CORPUS)

fuzz: fuzz-eval-request

fuzz-eval-request-regress: $(B)/fuzz/eval_request
	@n=$$(ls $(EVAL_FUZZ_CORPUS) | wc -l); \
	if $(B)/fuzz/eval_request $(FUZZ_OPTS) $(EVAL_FUZZ_CORPUS)/* \
	     > $(B)/fuzz/eval_request.regress.log 2>&1; \
	then echo "fuzz-eval-request-regress: $$n inputs ok"; \
	else tail -n 60 $(B)/fuzz/eval_request.regress.log; \
	     echo "fuzz-eval-request-regress: FAILED (log $(B)/fuzz/eval_request.regress.log)"; exit 1; fi

TEST_RUNS += fuzz-eval-request-regress

# The soak test (make soak; not part of make test): a live daemon, 32 clients for
# SOAK_SECONDS (default 120), every answer checked against the core; `soak-short` (10 s) runs
# in make test. tests/soak/soak.c prints the summary and a "SOAK {json}" line.
SOAK_SECONDS ?= 120
SOAK_CLIENTS ?= 32
$(B)/tests/soak/soak.o: tests/soak/soak.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CORE_INC) $(TEST_SERVER_CFLAGS) -c $< -o $@

$(B)/soak: $(B)/tests/soak/soak.o $(B)/tests/server/harness.o $(B)/tests/server/cases.o $(CORE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TEST_SERVER_LIBS) -lm -lpthread

ALL_BINS += $(B)/soak
.PHONY: soak soak-short
soak: $(B)/yololossd $(B)/soak
	$(B)/soak --daemon $(B)/yololossd --seconds $(SOAK_SECONDS) --clients $(SOAK_CLIENTS) \
	  --json $(B)/soak.json

soak-short: $(B)/yololossd $(B)/soak
	$(B)/soak --daemon $(B)/yololossd --seconds 10 --clients $(SOAK_CLIENTS) \
	  --json $(B)/soak-short.json

TEST_RUNS += soak-short

# The server suites under sanitizers (make test runs it): every suite under ASan and under
# UBSan, the concurrency suite under TSan. Each build goes to build/<sanitizer>/.
.PHONY: test-sanitize test-server-concurrency
test-server-concurrency: $(B)/yololossd $(B)/test_server
	CK_FORK=yes CK_RUN_SUITE=concurrency YL_DAEMON=$(B)/yololossd $(B)/test_server

test-sanitize:
	@$(MAKE) --no-print-directory SANITIZER=address test-server
	@$(MAKE) --no-print-directory SANITIZER=undefined test-server
	@$(MAKE) --no-print-directory SANITIZER=thread test-server-concurrency

TEST_RUNS += test-sanitize
