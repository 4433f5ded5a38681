# memvisor — build, test, demo, install.
#   make            build everything into build/
#   make demo       install missing Debian packages, build, run the leaky-worker batch
#   make check      install missing Debian packages, build, run every test suite
#   make check-asan the same suites under AddressSanitizer + UndefinedBehaviorSanitizer
#   make check-valgrind   one end-to-end batch under valgrind: no leak in the supervisor
#   make check-v2   the cgroup v2 tests on real kernels: Debian 6.1 and 6.12 booted under QEMU
#   make bench      the benchmarks in bench/
#   make install PREFIX=/usr/local

PREFIX  ?= /usr/local
BUILD   ?= build
CC      ?= gcc
PKGS    := libuv libcgroup inih jansson libsystemd
VERSION := 0.1.0

OPT      ?= -O2 -g
SANITIZE ?=
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
            -Wno-unused-parameter
CFLAGS   += -std=gnu11 $(OPT) $(WARN) $(SANITIZE) -fno-omit-frame-pointer
# Example, helper and benchmark workers are built plain even in the sanitizer build: they are
# the workload, and a sanitizer's allocator (which never returns freed memory) would change
# the memory the tests measure. The worker API is compiled into them directly.
PLAIN_CFLAGS := -std=gnu11 -O2 -g $(WARN)
CPPFLAGS += -Iinclude -Isupervisor -D_GNU_SOURCE -MMD -MP \
            -DMV_VERSION='"$(VERSION)"'
LDFLAGS  += $(SANITIZE)

# pkg-config is only consulted when a target needs it, so `make deps` works on a bare box.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)

SUP_SRC   := $(filter-out supervisor/main.c,$(wildcard supervisor/*.c))
WAPI_SRC  := $(wildcard worker-api/*.c)
EX_SRC    := $(wildcard examples/*.c)
HELP_SRC  := $(wildcard tests/helpers/*.c)
TEST_SRC  := $(wildcard tests/check_*.c) tests/harness.c
BENCH_SRC := $(wildcard bench/*.c)

SUP_OBJ   := $(SUP_SRC:%.c=$(BUILD)/obj/%.o)
WAPI_OBJ  := $(WAPI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

BIN       := $(BUILD)/memvisor
LIBA      := $(BUILD)/libmemvisor.a
LIBSO     := $(BUILD)/libmemvisor.so
SUPLIB    := $(BUILD)/libmvsup.a
PCFILE    := $(BUILD)/memvisor.pc
EXAMPLES  := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)
HELPERS   := $(HELP_SRC:tests/helpers/%.c=$(BUILD)/helpers/%)
BENCHES   := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
TESTBIN   := $(BUILD)/tests/check_memvisor

.PHONY: all deps demo check check-asan check-valgrind check-v2 bench install clean format lint
all: $(BIN) $(LIBA) $(LIBSO) $(PCFILE) $(EXAMPLES) $(HELPERS) $(TESTBIN) \
     $(if $(SANITIZE),,$(BENCHES))

deps:
	@bash .ci/deps

$(BUILD)/obj/supervisor/%.o: supervisor/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

# The worker API is libc only, position-independent for the shared library.
$(BUILD)/obj/worker-api/%.o: worker-api/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) $(CHECK_CFLAGS) \
	    -DMV_BUILD_DIR='"$(abspath $(BUILD))"' -DMV_SOURCE_DIR='"$(abspath .)"' -c $< -o $@

$(SUPLIB): $(SUP_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/obj/supervisor/main.o $(SUPLIB)
	$(CC) $(LDFLAGS) $^ $(PKG_LIBS) -lm -o $@

$(LIBA): $(WAPI_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIBSO): $(WAPI_OBJ)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libmemvisor.so.0 $^ -o $@

$(PCFILE): worker-api/memvisor.pc.in Makefile
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

$(BUILD)/examples/%: examples/%.c $(WAPI_SRC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) $< $(WAPI_SRC) -o $@

$(BUILD)/helpers/%: tests/helpers/%.c $(WAPI_SRC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) $< $(WAPI_SRC) -o $@

$(BUILD)/bench/%: bench/%.c $(WAPI_SRC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) -DMV_BUILD_DIR='"$(abspath $(BUILD))"' \
	    $< $(WAPI_SRC) -lm -o $@

$(TESTBIN): $(TEST_OBJ) $(SUPLIB) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $(TEST_OBJ) $(SUPLIB) $(LIBA) $(PKG_LIBS) $(CHECK_LIBS) -lm -o $@

# Every suite, in one Check runner; CK_RUN_SUITE=name runs one of them.
check: deps
	@$(MAKE) --no-print-directory all
	@MV_BUILD=$(abspath $(BUILD)) $(TESTBIN)

check-asan: deps
	@$(MAKE) --no-print-directory all BUILD=build-asan OPT='-O1 -g' \
	    SANITIZE='-fsanitize=address,undefined -fno-sanitize-recover=undefined'
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    MV_BUILD=$(abspath build-asan) build-asan/tests/check_memvisor

check-valgrind: deps
	@$(MAKE) --no-print-directory all
	@bash tests/valgrind.sh $(abspath $(BUILD))

# Installs QEMU, busybox-static and the two kernel packages when missing (cached in
# $(BUILD)/v2), boots each kernel with cgroup v2 only and runs the v2 set in it (tests/v2/).
# V2_KERNELS="6.1" runs one; MV_V2_SUITES names the Check suites (docs/cgroup-v2-tests.md).
V2_KERNELS ?= 6.1 6.12
check-v2: deps
	@$(MAKE) --no-print-directory all
	@bash tests/v2/run.sh $(abspath $(BUILD)) $(V2_KERNELS)

demo: deps
	@$(MAKE) --no-print-directory all
	@bash examples/demo.sh $(abspath $(BUILD))

bench: deps
	@$(MAKE) --no-print-directory all
	@bash bench/run.sh $(abspath $(BUILD))

install: $(BIN) $(LIBA) $(LIBSO) $(PCFILE)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include/memvisor $(DESTDIR)$(PREFIX)/etc/memvisor
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/memvisor
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/libmemvisor.a
	install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/libmemvisor.so.0
	ln -sf libmemvisor.so.0 $(DESTDIR)$(PREFIX)/lib/libmemvisor.so
	install -m 644 $(PCFILE) $(DESTDIR)$(PREFIX)/lib/pkgconfig/memvisor.pc
	install -m 644 include/memvisor/*.h $(DESTDIR)$(PREFIX)/include/memvisor/
	install -m 644 conf/*.ini conf/memvisor.service $(DESTDIR)$(PREFIX)/etc/memvisor/
	install -d $(DESTDIR)$(PREFIX)/share/memvisor/python
	install -m 644 worker-api/python/memvisor_worker.py $(DESTDIR)$(PREFIX)/share/memvisor/python/

format:
	clang-format -i $(wildcard supervisor/*.[ch] worker-api/*.[ch] include/memvisor/*.h \
	    tests/*.[ch] tests/helpers/*.c examples/*.c bench/*.c)

lint:
	cppcheck --quiet --enable=warning,performance,portability --error-exitcode=1 \
	    --inline-suppr -Iinclude -Isupervisor -D_GNU_SOURCE supervisor worker-api

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
