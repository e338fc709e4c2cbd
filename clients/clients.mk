# Clients of yololossd: the C library and CLI (clients/c), the Python package
# (clients/python) and the JavaScript module (clients/js), with their tests against a live
# daemon. Each test target starts its own daemon on --port 0 and stops it.
CLIENT_PKGS := libcurl jansson
CLIENT_CFLAGS := $(shell pkg-config --cflags $(CLIENT_PKGS) 2>/dev/null)
CLIENT_LIBS := $(shell pkg-config --libs $(CLIENT_PKGS) 2>/dev/null)
CLIENT_INC := -Iclients/c
CLIENT_LIB := $(B)/libyololoss_client.a

$(B)/clients/c/%.o: clients/c/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CLIENT_INC) $(CLIENT_CFLAGS) -c $< -o $@

# The test also links the core, to compute the expected answers in-process.
$(B)/clients/c/tests/%.o: clients/c/tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CLIENT_INC) $(CORE_INC) $(CLIENT_CFLAGS) $(CHECK_CFLAGS) -c $< -o $@

$(CLIENT_LIB): $(B)/clients/c/yololoss_client.o $(B)/clients/c/http.o $(B)/clients/c/compact.o \
		$(B)/clients/c/shm.o
	rm -f $@ && $(AR) rcs $@ $^

# yololoss: the command-line client (.npy in, JSON and .npy out).
$(B)/yololoss: $(B)/clients/c/yololoss_cli.o $(B)/clients/c/npyfile.o $(CLIENT_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(CLIENT_LIBS) -lm

$(B)/test_clients_c: $(B)/clients/c/tests/test_client_c.o $(B)/clients/c/tests/fake_server.o \
		$(B)/clients/c/npyfile.o \
		$(CLIENT_LIB) $(CORE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(CHECK_LIBS) $(CLIENT_LIBS) -lm -lpthread

ALL_BINS += $(CLIENT_LIB) $(B)/yololoss $(B)/test_clients_c

.PHONY: test-clients-c test-clients-python test-clients-js
test-clients-c: $(B)/yololossd $(B)/yololoss $(B)/test_clients_c
	CK_FORK=yes YL_DAEMON=$(B)/yololossd YL_CLI=$(B)/yololoss $(B)/test_clients_c

# pytest (Debian's python3-pytest); the torch tests skip, saying why, without python3-torch.
test-clients-python: $(B)/yololossd
	YL_DAEMON=$(B)/yololossd $(PYTHON) -m pytest -q -rs -p no:cacheprovider clients/python/tests

# The Python client's transports (dense/compact x socket/shared memory) on the standard
# workload, YoloLossClient and RemoteYoloLoss; JSON lines (bench/bench_client_python.py).
.PHONY: bench-client-python
bench-client-python: $(B)/yololossd
	$(PYTHON) bench/bench_client_python.py --daemon $(B)/yololossd
BENCH_RUNS += bench-client-python

# node --test (Node 20+); skipped with a message where node is missing.
NODE ?= node
test-clients-js: $(B)/yololossd
	@if command -v $(NODE) >/dev/null 2>&1; then \
	  echo "YL_DAEMON=$(B)/yololossd $(NODE) --test clients/js/test/"; \
	  YL_DAEMON=$(B)/yololossd $(NODE) --test clients/js/test/; \
	else echo "test-clients-js: skipped, $(NODE) is not installed (Node 20+ runs these)"; fi

TEST_RUNS += test-clients-c test-clients-python test-clients-js

# The JS client's transports (dense/compact x socket/shared memory) on the standard workload,
# beside the daemon's core time for the same requests; JSON lines (bench/bench_client_js.js).
.PHONY: bench-client-js
bench-client-js: $(B)/yololossd
	@if command -v $(NODE) >/dev/null 2>&1; then \
	  $(NODE) bench/bench_client_js.js --daemon $(B)/yololossd; \
	else echo "bench-client-js: skipped, $(NODE) is not installed (Node 20+ runs it)"; fi
BENCH_RUNS += bench-client-js

# The C client end to end, each transport, beside the core in-process (bench/bench_client_c.c).
$(B)/bench_client_c: bench/bench_client_c.c bench/bench_common.c bench/bench_common.h $(CLIENT_LIB) \
		$(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CLIENT_INC) $(CORE_INC) $(CLIENT_CFLAGS) -o $@ $(filter-out %.h,$^) \
	  $(CLIENT_LIBS) -lm -lpthread

ALL_BINS += $(B)/bench_client_c
.PHONY: bench-client-c
bench-client-c: $(B)/yololossd $(B)/bench_client_c
	$(B)/bench_client_c --daemon $(B)/yololossd
BENCH_RUNS += bench-client-c

-include $(wildcard $(B)/clients/c/tests/*.d)

# libFuzzer target for the C client's answer parser (clients/c/fuzz/client_answer.c), with
# clang, ASan and UBSan, as the core's and the server's.
#   make fuzz-client [FUZZ_SECONDS=60]     fuzz it
#   make fuzz-client-regress               replay clients/c/fuzz/corpus once (make test)
CLIENT_FUZZ_SRC := clients/c/http.c clients/c/compact.c clients/c/shm.c
CLIENT_FUZZ_CORPUS := clients/c/fuzz/corpus

$(B)/fuzz/client_answer: clients/c/fuzz/client_answer.c clients/c/yololoss_client.c \
                         $(CLIENT_FUZZ_SRC) $(wildcard clients/c/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS_ALL) $(WARN) -fsanitize=fuzzer $(CLIENT_INC) $(CLIENT_CFLAGS) -o $@ \
	  $< $(CLIENT_FUZZ_SRC) $(CLIENT_LIBS) -lm

.PHONY: fuzz-client fuzz-client-regress
fuzz-client: $(B)/fuzz/client_answer
	@mkdir -p $(B)/fuzz/corpus/client_answer $(B)/fuzz/artifacts/client_answer
	$(B)/fuzz/client_answer $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=$(B)/fuzz/artifacts/client_answer/ \
	  $(B)/fuzz/corpus/client_answer $(CLIENT_FUZZ_CORPUS)

# `make fuzz` (and so fuzz-ci, which make test runs) covers the client's parser too.
fuzz: fuzz-client

fuzz-client-regress: $(B)/fuzz/client_answer
	@n=$$(ls $(CLIENT_FUZZ_CORPUS) | wc -l); \
	if $(B)/fuzz/client_answer $(FUZZ_OPTS) $(CLIENT_FUZZ_CORPUS)/* \
	     > $(B)/fuzz/client_answer.regress.log 2>&1; \
	then echo "fuzz-client-regress: $$n inputs ok"; \
	else tail -n 60 $(B)/fuzz/client_answer.regress.log; \
	     echo "fuzz-client-regress: FAILED (log $(B)/fuzz/client_answer.regress.log)"; exit 1; fi

TEST_RUNS += fuzz-client-regress
