# memvisor — build, test, demo, install.
#   make            build everything into build/
#   make demo       install missing Debian packages, build, run the leaky-worker batch
#   make check      install missing Debian packages, build, run every test suite
#   make check-asan the same suites under AddressSanitizer + UndefinedBehaviorSanitizer
#   make check-valgrind   one end-to-end batch under valgrind: no leak in the supervisor
#   make fuzz       the libFuzzer harnesses, FUZZ_TIME seconds each (tests/fuzz/fuzz.mk)
#   make check-leaks      the labelled leak suite (tests/leaks/): kinds named vs labels
#   make bench      the benchmarks in bench/
#   make soak       an hour of constant recycling: the supervisor's RSS and fds stay flat
#                   (SOAK_MINUTES=N for a shorter run; not in CI)
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
LEAKS_SRC := $(filter-out tests/leaks/ctleak.c,$(wildcard tests/leaks/*.c))

SUP_OBJ   := $(SUP_SRC:%.c=$(BUILD)/obj/%.o)
WAPI_OBJ  := $(WAPI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

BIN       := $(BUILD)/memvisor
LIBA      := $(BUILD)/libmemvisor.a
LIBSO     := $(BUILD)/libmemvisor.so
HEAPLIB   := $(BUILD)/libmemvisor-heap.so
SUPLIB    := $(BUILD)/libmvsup.a
PCFILE    := $(BUILD)/memvisor.pc
EXAMPLES  := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)
HELPERS   := $(HELP_SRC:tests/helpers/%.c=$(BUILD)/helpers/%)
BENCHES   := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LEAKS     := $(LEAKS_SRC:tests/leaks/%.c=$(BUILD)/leaks/%) $(BUILD)/leaks/libctleak.so
HELPLIBS  := $(patsubst tests/helpers/preload/%.c,$(BUILD)/helpers/lib%.so,$(wildcard tests/helpers/preload/*.c))
TESTBIN   := $(BUILD)/tests/check_memvisor

.PHONY: all deps demo check check-asan check-valgrind check-leaks bench soak install clean format \
        lint
all: $(BIN) $(LIBA) $(LIBSO) $(HEAPLIB) $(PCFILE) $(EXAMPLES) $(HELPERS) $(HELPLIBS) $(LEAKS) \
     $(TESTBIN) \
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

# The heap preload library (docs/heap.md): libc only, built plain like the workers it goes
# into (a sanitizer runtime would interpose malloc itself). -fno-builtin: the compiler must not
# turn code inside malloc into calls to malloc or calloc.
$(HEAPLIB): worker-api/heap/heap.c include/memvisor/heap.h
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) -fPIC -shared -fvisibility=hidden -fno-builtin $< \
	    -o $@ -ldl -lpthread

$(PCFILE): worker-api/memvisor.pc.in Makefile
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

$(BUILD)/examples/%: examples/%.c $(WAPI_SRC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) $< $(WAPI_SRC) -o $@

$(BUILD)/helpers/%: tests/helpers/%.c $(WAPI_SRC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) $< $(WAPI_SRC) -o $@

# The labelled leak suite's C workers and the C library its ctypes scenario calls.
$(BUILD)/leaks/%: tests/leaks/%.c tests/leaks/c_worker.h $(WAPI_SRC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) $< $(WAPI_SRC) -o $@

$(BUILD)/leaks/libctleak.so: tests/leaks/ctleak.c
	@mkdir -p $(@D)
	$(CC) $(PLAIN_CFLAGS) -fPIC -shared -fvisibility=hidden $< -o $@

# Libraries the tests preload next to the heap library.
$(BUILD)/helpers/lib%.so: tests/helpers/preload/%.c
	@mkdir -p $(@D)
	$(CC) -D_GNU_SOURCE $(PLAIN_CFLAGS) -fPIC -shared -fvisibility=hidden $< -o $@ -ldl

# Statically linked on purpose: no interpreter, so no LD_PRELOAD (tests/check_heap.c).
$(BUILD)/helpers/static_true: tests/helpers/static_true.c
	@mkdir -p $(@D)
	$(CC) $(PLAIN_CFLAGS) -static $< -o $@

# The heap overhead benchmark makes its pages with the supervisor's own heapmon.
$(BUILD)/bench/heap_overhead: bench/heap_overhead.c supervisor/heapmon.c supervisor/heapmon.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) -DMV_BUILD_DIR='"$(abspath $(BUILD))"' \
	    bench/heap_overhead.c supervisor/heapmon.c -o $@

$(BUILD)/bench/%: bench/%.c $(WAPI_SRC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) -DMV_BUILD_DIR='"$(abspath $(BUILD))"' \
	    $< $(WAPI_SRC) -lm -o $@

$(TESTBIN): $(TEST_OBJ) $(SUPLIB) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $(TEST_OBJ) $(SUPLIB) $(LIBA) $(PKG_LIBS) $(CHECK_LIBS) -lm -o $@

# Every suite, in one Check runner; CK_RUN_SUITE=name runs one of them. LEAKS_ENFORCE=1 makes
# the leak suite's fast subset check the detector's verdicts too (docs/leak-suite.md).
LEAKS_ENFORCE ?=
check: deps
	@$(MAKE) --no-print-directory all
	@MV_BUILD=$(abspath $(BUILD)) MV_LEAKS_ENFORCE=$(LEAKS_ENFORCE) $(TESTBIN)
	@$(MAKE) --no-print-directory fuzz-smoke

# Every labelled workload in every mode; LEAKS_ARGS passes options (e.g. '-o leak.window=80',
# '--only newcomer', '--json out.json').
check-leaks: deps
	@$(MAKE) --no-print-directory all
	@python3 tests/leaks/run.py --build $(abspath $(BUILD)) $(LEAKS_ARGS)

check-asan: deps
	@$(MAKE) --no-print-directory all BUILD=build-asan OPT='-O1 -g' \
	    SANITIZE='-fsanitize=address,undefined -fno-sanitize-recover=undefined'
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    MV_BUILD=$(abspath build-asan) MV_LEAKS_ENFORCE=$(LEAKS_ENFORCE) \
	    build-asan/tests/check_memvisor

check-valgrind: deps
	@$(MAKE) --no-print-directory all
	@bash tests/valgrind.sh $(abspath $(BUILD))

demo: deps
	@$(MAKE) --no-print-directory all
	@bash examples/demo.sh $(abspath $(BUILD))

bench: deps
	@$(MAKE) --no-print-directory all
	@bash bench/run.sh $(abspath $(BUILD))

soak: deps
	@$(MAKE) --no-print-directory all
	@bash tests/soak.sh $(abspath $(BUILD))

install: $(BIN) $(LIBA) $(LIBSO) $(HEAPLIB) $(PCFILE)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include/memvisor $(DESTDIR)$(PREFIX)/etc/memvisor
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/memvisor
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/libmemvisor.a
	install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/libmemvisor.so.0
	ln -sf libmemvisor.so.0 $(DESTDIR)$(PREFIX)/lib/libmemvisor.so
	install -m 755 $(HEAPLIB) $(DESTDIR)$(PREFIX)/lib/libmemvisor-heap.so
	install -m 644 $(PCFILE) $(DESTDIR)$(PREFIX)/lib/pkgconfig/memvisor.pc
	install -m 644 include/memvisor/*.h $(DESTDIR)$(PREFIX)/include/memvisor/
	install -m 644 conf/*.ini conf/memvisor.service $(DESTDIR)$(PREFIX)/etc/memvisor/
	install -d $(DESTDIR)$(PREFIX)/share/memvisor/python
	install -m 644 worker-api/python/memvisor_worker.py $(DESTDIR)$(PREFIX)/share/memvisor/python/

format:
	clang-format -i $(wildcard supervisor/*.[ch] worker-api/*.[ch] worker-api/heap/*.c \
	    include/memvisor/*.h tests/*.[ch] tests/helpers/*.c tests/helpers/preload/*.c \
	    tests/leaks/*.[ch] tests/fuzz/*.c examples/*.c bench/*.c)

# The static check, and the include layering (tools/layers.py: no file includes a higher
# layer's header).
lint:
	cppcheck --quiet --enable=warning,performance,portability --error-exitcode=1 \
	    --inline-suppr -Iinclude -Isupervisor -D_GNU_SOURCE supervisor worker-api
	python3 tools/layers.py .

clean:
	rm -rf build build-asan build-fuzz

include tests/fuzz/fuzz.mk

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
