# yololoss: `make` builds everything into build/, `make test` installs what is missing and
# runs every test, `make run` starts the daemon, `make bench` measures.
#   make test SANITIZER=address|undefined|thread    (objects go to build/<sanitizer>/)
PREFIX ?= /usr/local
CC ?= cc
OPT ?= -O2
DEBUG ?= -g
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
STD = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
SANITIZER ?=
ifeq ($(SANITIZER),)
  B := build
  SAN :=
else ifeq ($(SANITIZER),address)
  B := build/address
  SAN := -fsanitize=address -fno-omit-frame-pointer
else ifeq ($(SANITIZER),undefined)
  B := build/undefined
  SAN := -fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SANITIZER),thread)
  B := build/thread
  SAN := -fsanitize=thread
else
  $(error SANITIZER must be address, undefined or thread)
endif
CFLAGS_ALL = $(STD) $(OPT) $(DEBUG) $(WARN) $(SAN) -MMD -MP $(CFLAGS)
LDFLAGS_ALL = $(SAN) $(LDFLAGS)
PYTHON = /usr/bin/python3

# Each part appends its programs to ALL_BINS and its test runs to TEST_RUNS.
ALL_BINS :=
TEST_RUNS :=
BENCH_RUNS :=

.PHONY: all deps test bench run clean install
all: build-all

include core/core.mk
include tests/tests.mk
include bench/bench.mk
-include server/server.mk
-include clients/clients.mk
-include clients/c/eval.mk
-include tests/fuzz/fuzz.mk
-include docker/docker.mk
-include examples/examples.mk

build-all: $(ALL_BINS)

# Installs missing Debian packages (a no-op when all are there); every entry point uses it.
deps:
	@bash .ci/deps

test: deps
	@$(MAKE) --no-print-directory build-all
	@bash .ci/run-tests $(TEST_RUNS)

bench: deps
	@$(MAKE) --no-print-directory build-all
	@set -e; for b in $(BENCH_RUNS); do $(MAKE) --no-print-directory $$b; done

clean:
	rm -rf build

-include $(wildcard $(B)/*.d $(B)/*/*.d $(B)/*/*/*.d)
