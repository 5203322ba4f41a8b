# agate: one Makefile, plain GNU make.
#
#   make            release build -> build/agate
#   make run        install what is missing, build, start agate on its defaults
#   make test       install, build release + ASan/UBSan, check the layers, run unit and integration tests
#   make check-layers  core/ includes neither net/ nor proto/, proto/ not net/ (includes and symbols)
#   make fuzz       libFuzzer targets, each for FUZZ_SECONDS
#   make bench      agate against nginx, HAProxy and Pushpin on this machine, same run
#                   (BASELINE=<commit>: and against agate built from that commit)
#   make V=1        show full command lines
#
# Object trees are kept apart per variant: build/rel (release, jemalloc) and
# build/asan (ASan+UBSan, libc malloc so the sanitizer sees every allocation).

SHELL := /bin/bash
CC    ?= cc
ifeq ($(origin CC),default)
CC := cc
endif
CLANG ?= clang
Q := $(if $(filter 1,$(V)),,@)

LLHTTP_DIR  := /usr/share/llhttp
LLHTTP_INC  := /usr/share/include/llhttp
LLHTTP_SRCS := $(LLHTTP_DIR)/llhttp.c $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c
# llhttp scans header values 16 bytes at a time when built for SSE4.2
# (__SSE4_2__), byte by byte otherwise: 941 fewer instructions per proxied run
# (callgrind, agate in front of nginx). Every x86-64 CPU since 2008 has SSE4.2
# (the x86-64-v2 level); `make LLHTTP_SIMD=` builds without it.
LLHTTP_SIMD ?= $(if $(filter x86_64,$(shell uname -m)),-msse4.2)

SRCS      := $(sort $(wildcard core/*.c net/*.c proto/*.c))
LIB_SRCS  := $(filter-out core/main.c,$(SRCS))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))

WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Werror
BASEFLAGS := -std=gnu11 -D_GNU_SOURCE -I. -Ibuild/gen -I$(LLHTTP_INC) -MMD -MP -g
HIREDIS_LIBS := $(shell pkg-config --libs hiredis 2>/dev/null || echo -lhiredis)
LIBS      := -luring -ljansson -lyaml -lcrypto -lprotobuf-c $(HIREDIS_LIBS) -lurcu-cds -lurcu-memb -lurcu-common -lpthread

# AG-UI's protobuf encoding: proto/agui.proto and the well-known struct.proto it
# imports (from libprotobuf-dev) compiled by protoc-c into build/gen; generated code
# is never committed. Every object waits for the headers (order-only), so a clean
# tree builds in any order under -j.
PROTO_INC := /usr/include
PB_GEN_C  := build/gen/agui.pb-c.c build/gen/google/protobuf/struct.pb-c.c
PB_GEN_H  := $(PB_GEN_C:.c=.h)

REL_CFLAGS  := $(BASEFLAGS) -O2 -flto=auto -fno-plt
REL_LDFLAGS := -flto=auto -O2
# --no-as-needed: nothing calls jemalloc by name (it replaces malloc), so with
# LTO the default --as-needed would drop it and leave glibc's malloc in place.
REL_LIBS    := $(LIBS) -Wl,--push-state,--no-as-needed -ljemalloc -Wl,--pop-state
SAN_FLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_CFLAGS := $(BASEFLAGS) -O1 $(SAN_FLAGS) -DAGATE_SANITIZE=1
ASAN_LDFLAGS:= $(SAN_FLAGS)
ASAN_LIBS   := $(LIBS)

# Keep intermediate objects (llhttp, fuzz) between runs.
.SECONDARY:

.PHONY: all run test unit integration fuzz bench deps test-deps bench-deps clean check-layers deploy-check validate-instr
all: build/agate

# --- dependencies ------------------------------------------------------------
deps:
	$(Q)deploy/install-deps.sh build
test-deps:
	$(Q)deploy/install-deps.sh build test
bench-deps:
	$(Q)deploy/install-deps.sh build bench

# --- generated protobuf code --------------------------------------------------
$(PB_GEN_C) $(PB_GEN_H) &: proto/agui.proto
	@mkdir -p build/gen
	$(if $(Q),@echo "  PROTOC-C proto/agui.proto")
	$(Q)protoc-c -Iproto -I$(PROTO_INC) --c_out=build/gen agui.proto google/protobuf/struct.proto

# --- objects -----------------------------------------------------------------
# $(1): variant name, $(2): CFLAGS
define variant
build/$(1)/%.o: %.c | $(PB_GEN_H)
	@mkdir -p $$(@D)
	$$(if $$(Q),@echo "  CC [$(1)] $$<")
	$(Q)$$(CC) $(2) $(WARN) -c $$< -o $$@
build/$(1)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $$(@D)
	$$(if $$(Q),@echo "  CC [$(1)] llhttp/$$(<F)")
	$(Q)$$(CC) $(2) $(LLHTTP_SIMD) -w -c $$< -o $$@
build/$(1)/gen/%.o: build/gen/%.c $(PB_GEN_H)
	@mkdir -p $$(@D)
	$$(if $$(Q),@echo "  CC [$(1)] gen/$$*.c")
	$(Q)$$(CC) $(2) -w -c $$< -o $$@
$(1)_LIB_OBJS := $$(patsubst %.c,build/$(1)/%.o,$(LIB_SRCS)) \
                 $$(patsubst build/gen/%.c,build/$(1)/gen/%.o,$(PB_GEN_C)) \
                 $$(patsubst $(LLHTTP_DIR)/%.c,build/$(1)/llhttp/%.o,$(LLHTTP_SRCS))
$(1)_UNIT_BINS := $$(patsubst tests/unit/%.c,build/$(1)/tests/%,$(UNIT_SRCS))
build/$(1)/tests/%: tests/unit/%.c $$($(1)_LIB_OBJS)
	@mkdir -p $$(@D)
	$$(if $$(Q),@echo "  LD [$(1)] $$@")
	$(Q)$$(CC) $(2) $(WARN) -Wno-missing-prototypes $$< $$($(1)_LIB_OBJS) -o $$@ $$($(1)_LDFLAGS_) $$($(1)_LIBS_) -lcmocka
-include $$(patsubst %.c,build/$(1)/%.d,$(SRCS)) $$(patsubst tests/unit/%.c,build/$(1)/tests/%.d,$(UNIT_SRCS))
endef
rel_LDFLAGS_  := $(REL_LDFLAGS)
rel_LIBS_     := $(REL_LIBS)
asan_LDFLAGS_ := $(ASAN_LDFLAGS)
asan_LIBS_    := $(ASAN_LIBS)
$(eval $(call variant,rel,$(REL_CFLAGS)))
$(eval $(call variant,asan,$(ASAN_CFLAGS)))
# net/demo.c embeds the page with .incbin, which -MMD does not see.
build/rel/net/demo.o build/asan/net/demo.o build/fuzz/net/demo.o: net/demo.html

build/agate: build/rel/core/main.o $(rel_LIB_OBJS)
	$(if $(Q),@echo "  LD $@")
	$(Q)$(CC) $(REL_LDFLAGS) $^ -o $@ $(REL_LIBS)

build/agate-asan: build/asan/core/main.o $(asan_LIB_OBJS)
	$(if $(Q),@echo "  LD $@")
	$(Q)$(CC) $(ASAN_LDFLAGS) $^ -o $@ $(ASAN_LIBS)

# --- the two commands ----------------------------------------------------------
run: deps
	$(Q)$(MAKE) --no-print-directory build/agate
	exec build/agate $(ARGS)

test: test-deps
	$(Q)$(MAKE) --no-print-directory build/agate build/agate-asan build/nouring $(rel_UNIT_BINS) $(asan_UNIT_BINS)
	$(Q)tests/check-layers.sh build/asan
	$(Q)tests/run-all.sh

# Every file under deploy/ checked against the binary and the real tools (deploy/check.sh).
deploy-check: build/agate
	$(Q)deploy/check.sh

# The dependency rule core <- proto <- net (core/README.md), from the #include
# lines and from the symbols of the sanitizer build's objects (no LTO).
check-layers: build/agate-asan
	$(Q)tests/check-layers.sh build/asan

unit: build/agate $(rel_UNIT_BINS) $(asan_UNIT_BINS)
	$(Q)tests/run-unit.sh

integration: build/agate build/agate-asan build/nouring
	$(Q)tests/run-integration.sh

# Runs a command under a seccomp filter that refuses io_uring (the integration
# tests' hardened-container runs: engine.backend auto falls back to epoll).
build/nouring: tests/support/nouring.c
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC $@")
	$(Q)$(CC) -O2 -std=gnu11 -D_GNU_SOURCE $(WARN) $< -o $@

# --- fuzzing (clang + libFuzzer, with ASan/UBSan) ---------------------------------
FUZZ_SECONDS ?= 60
FUZZ_SRCS    := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BINS    := $(patsubst fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_CFLAGS  := $(BASEFLAGS) -O1 -fsanitize=fuzzer-no-link,address,undefined -DAGATE_FUZZ=1
fuzz_LIB_OBJS := $(patsubst %.c,build/fuzz/%.o,$(LIB_SRCS)) \
                 $(patsubst build/gen/%.c,build/fuzz/gen/%.o,$(PB_GEN_C)) \
                 $(patsubst $(LLHTTP_DIR)/%.c,build/fuzz/llhttp/%.o,$(LLHTTP_SRCS))
build/fuzz/%.o: %.c | $(PB_GEN_H)
	@mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -Wall -Wextra -Wno-unused-parameter -c $< -o $@
build/fuzz/gen/%.o: build/gen/%.c $(PB_GEN_H)
	@mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -w -c $< -o $@
build/fuzz/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -w -c $< -o $@
build/fuzz/fuzz_%: fuzz/fuzz_%.c $(fuzz_LIB_OBJS)
	@mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ -o $@ $(LIBS)
-include $(patsubst %.c,build/fuzz/%.d,$(LIB_SRCS))

fuzz: deps
	$(Q)$(MAKE) --no-print-directory $(FUZZ_BINS)
	$(Q)fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# --- benchmarks --------------------------------------------------------------------
# make bench [BASELINE=<commit>]: bench/run.sh, every case, after the rate limiter's
# micro-benchmark; with BASELINE (e.g. 3bf7da1, the commit before issue 22's redesign)
# also the baseline case: build/agate's echo, proxy and cache CPU per response against
# agate built from that commit (in build/baseline-<sha>). The whole output is kept in
# bench/runs/; bench/RESULTS.md says where agate stands.
bench: bench-deps
	$(Q)$(MAKE) --no-print-directory build/agate build/ratelimit_bench build/wsload build/sseload
	$(Q)BENCH_LIMITER=1 $(if $(BASELINE),BENCH_BASELINE=$(BASELINE)) bench/run.sh

# The rate limiter alone (core/ratelimit.c): ns per decision, 1 and N threads.
build/ratelimit_bench: bench/ratelimit_bench.c core/ratelimit.c core/ratelimit.h
	@mkdir -p $(@D)
	$(Q)$(CC) -O2 -std=gnu11 -D_GNU_SOURCE -I. $(WARN) -Wno-missing-prototypes bench/ratelimit_bench.c core/ratelimit.c -lpthread -o $@

# The event validator alone (bench/validate_bench.c): ns per event, and with
# `make validate-instr` instructions per event under callgrind (any machine load).
VB_SRCS := bench/validate_bench.c proto/validate.c proto/validate_ids.c proto/validate_chunk.c \
           proto/validate_seq.c proto/schema.c \
           proto/jtape.c proto/jsonwhy.c proto/runinput.c proto/agui.c core/json.c core/buf.c
build/validate_bench: $(VB_SRCS) $(wildcard proto/*.h)
	@mkdir -p $(@D)
	$(Q)$(CC) -O2 -std=gnu11 -D_GNU_SOURCE -I. $(VB_SRCS) -ljansson -lpthread -lm -o $@
build/validate_bench_instr: $(VB_SRCS) $(wildcard proto/*.h)
	@mkdir -p $(@D)
	$(Q)$(CC) -O2 -std=gnu11 -D_GNU_SOURCE -DRUNS=500 -DROUNDS=1 -I. $(VB_SRCS) -ljansson -lpthread -lm -o $@
validate-instr: build/validate_bench_instr
	$(Q)bench/validate_instr.sh build/validate_bench_instr

# WebSocket load generator for bench/run.sh's ws case.
build/wsload: bench/wsload.c bench/loadgen.h
	@mkdir -p $(@D)
	$(Q)$(CC) -O2 -std=gnu11 -D_GNU_SOURCE -I. $(WARN) -Wno-missing-prototypes $< -o $@

# Many slow SSE streams held open at once (bench/run.sh, streams case).
build/sseload: bench/sseload.c bench/loadgen.h
	@mkdir -p $(@D)
	$(Q)$(CC) -O2 -std=gnu11 -D_GNU_SOURCE -I. $(WARN) -Wno-missing-prototypes $< -o $@

clean:
	rm -rf build
