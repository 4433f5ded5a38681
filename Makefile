# memvisor — build, test, demo, install.
#   make            build everything into build/ (V=1 shows each command)
#   make demo       install missing build packages, build memvisor and one example, run the
#                   leaky-worker batch
#   make check      install missing packages, build, run every test suite
#   make check-asan the same suites under AddressSanitizer + UndefinedBehaviorSanitizer
#   make check-valgrind   one end-to-end batch under valgrind: no leak in the supervisor
#   make fuzz       the libFuzzer harnesses, FUZZ_TIME seconds each (tests/fuzz/fuzz.mk)
#   make check-leaks      the labelled leak suite (tests/leaks/): kinds named vs labels
#   make check-html the HTML report of a real batch in headless chromium (installed if missing)
#   make check-mp   CPython's own multiprocessing.Pool tests against memvisor.Pool (Debian's
#                   libpython3.X-testsuite, installed if missing; tests/python/mp_suite.py)
#   make check-v2   the cgroup v2 tests on real kernels: Debian 6.1 and 6.12 booted under QEMU
#   make bench      the benchmarks in bench/
#   make soak       an hour of constant recycling: the supervisor's RSS and fds stay flat
#                   (SOAK_MINUTES=N for a shorter run; not in CI)
#   make install PREFIX=/usr/local [DESTDIR=...]     make uninstall PREFIX=/usr/local
#                   (the Python modules too: see PYTHONDIR)

PREFIX  ?= /usr/local
# Where `make install` puts configuration, the systemd unit and the man page.
SYSCONFDIR ?= $(PREFIX)/etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
MANDIR     ?= $(PREFIX)/share/man
# Python modules (memvisor, memvisor_worker) go where Debian's python3 looks for PREFIX: the
# version-independent dist-packages for /usr, the versioned one elsewhere (/usr/local/lib/
# python3.11/dist-packages). Another interpreter or a venv: pip install worker-api/python.
PYVER     = $(shell python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYTHONDIR ?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/lib/python3/dist-packages,$(PREFIX)/lib/python$(PYVER)/dist-packages)
BUILD   ?= build
CC      ?= gcc
PKGS    := libuv libcgroup inih jansson libsystemd hiredis
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
# libsystemd is not linked: notify.c loads it under systemd only (its header is used).
PKG_LIBS   = $(shell pkg-config --libs $(filter-out libsystemd,$(PKGS)) 2>/dev/null) -ldl
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)

SUP_SRC   := $(filter-out supervisor/main.c,$(wildcard supervisor/*.c))
WAPI_SRC  := $(wildcard worker-api/*.c)
EX_SRC    := $(wildcard examples/*.c)
HELP_SRC  := $(wildcard tests/helpers/*.c)
TEST_SRC  := $(wildcard tests/check_*.c) tests/harness.c
BENCH_SRC := $(wildcard bench/*.c)
LEAKS_SRC := $(filter-out tests/leaks/ctleak.c,$(wildcard tests/leaks/*.c))

SUP_OBJ   := $(SUP_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/supervisor/assets.o
# Files the binary embeds (supervisor/assets.S, .incbin): uPlot and the HTML report's page.
ASSETS    := third_party/uplot/uPlot.iife.min.js third_party/uplot/uPlot.min.css \
             supervisor/html/report.js supervisor/html/report.css
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
# The Python modules, byte-compiled where they are (worker-api/python/__pycache__), as an
# install does: an interpreter that may not write its cache (PYTHONDONTWRITEBYTECODE, a
# directory not its user's) compiles their ~80 KB of source at every start otherwise, 12-20 ms
# of each template's or exec'd worker's (docs/templates.md, "Byte code").
PY_SRC    := $(wildcard worker-api/python/*.py worker-api/python/memvisor/*.py)
PYC       := $(BUILD)/pyc.stamp

.PHONY: all deps demo check check-asan check-valgrind check-leaks check-html check-mp check-v2 bench \
        soak install \
        uninstall clean format lint FORCE
all: $(BIN) $(LIBA) $(LIBSO) $(HEAPLIB) $(PCFILE) $(EXAMPLES) $(HELPERS) $(HELPLIBS) $(LEAKS) \
     $(TESTBIN) $(PYC) \
     $(if $(SANITIZE),,$(BENCHES))

# One short line per file built; V=1 shows the whole commands instead.
ifeq ($(V),1)
Q   :=
SAY := @true
else
Q   := @
SAY := @printf '  %-4s %s\n'
endif

# The Debian packages each target needs (.ci/deps has the lists): a demo only builds.
deps:
	@bash .ci/deps test

$(BUILD)/obj/supervisor/%.o: supervisor/%.c
	@mkdir -p $(@D)
	$(SAY) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/obj/supervisor/assets.o: supervisor/assets.S $(ASSETS)
	@mkdir -p $(@D)
	$(SAY) AS $<
	$(Q)$(CC) -Wa,-I. -c $< -o $@

# The worker API is libc only, position-independent for the shared library.
$(BUILD)/obj/worker-api/%.o: worker-api/%.c
	@mkdir -p $(@D)
	$(SAY) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(SAY) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) $(CHECK_CFLAGS) \
	    -DMV_BUILD_DIR='"$(abspath $(BUILD))"' -DMV_SOURCE_DIR='"$(abspath .)"' -c $< -o $@

$(SUPLIB): $(SUP_OBJ)
	@rm -f $@
	$(SAY) AR $@
	$(Q)ar rcs $@ $^

# libm statically: memvisor needs sqrt and fmax of it, and the shared library costs ~300 KiB
# resident (its load-time ifunc resolution touches most of its text; bench/footprint).
# libuv, hiredis, jansson and inih (MIT and BSD licensed) statically too when their archives
# are installed (Debian's -dev packages ship them): each shared library costs this process
# its own mapped headers, relocated data and text windows, and every exec shim (one per worker
# spawned) their loading and relocation. Measured (bench/footprint, docs/benchmarks.md):
# ~120 KiB less resident, and an exec of memvisor 1.34 -> 1.07 ms. The price: a security
# update of one of them needs memvisor rebuilt. STATIC_LIBS=no links them all shared.
# libcgroup (LGPL) stays shared.
STATIC_LIBS ?= yes
STATIC_A = $(if $(filter yes,$(STATIC_LIBS)),$(foreach a,libuv_a.a libhiredis.a libjansson.a \
             libinih.a,$(filter /%,$(shell $(CC) -print-file-name=$(a)))))
BIN_LIBS = $(STATIC_A) $(filter-out $(patsubst %_a,%,$(patsubst lib%.a,-l%,$(notdir $(STATIC_A)))),\
             $(PKG_LIBS))
# supervisor/layout.ld: the code a run does not use apart from the code it does, and the
# report's embedded files (assets.S) away from the data a run reads (bench/footprint).
$(BIN): $(BUILD)/obj/supervisor/main.o $(SUPLIB) supervisor/layout.ld
	$(SAY) LD $@
	$(Q)$(CC) $(LDFLAGS) $(filter %.o %.a,$^) $(BIN_LIBS) -Wl,-Bstatic -lm -Wl,-Bdynamic \
	    -Wl,-T,supervisor/layout.ld -o $@

$(LIBA): $(WAPI_OBJ)
	@rm -f $@
	$(SAY) AR $@
	$(Q)ar rcs $@ $^

$(LIBSO): $(WAPI_OBJ)
	$(SAY) LD $@
	$(Q)$(CC) $(LDFLAGS) -shared -Wl,-soname,libmemvisor.so.0 $^ -o $@

# The heap preload library (docs/heap.md): libc only, built plain like the workers it goes
# into (a sanitizer runtime would interpose malloc itself). -fno-builtin: the compiler must not
# turn code inside malloc into calls to malloc or calloc.
$(HEAPLIB): worker-api/heap/heap.c include/memvisor/heap.h
	$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) -fPIC -shared -fvisibility=hidden -fno-builtin $< \
	    -o $@ -ldl -lpthread

# The prefix the build was last asked for: rewritten only when PREFIX changes, so that the
# .pc file is remade for `make install PREFIX=...` after a plain `make`.
$(BUILD)/prefix: FORCE
	@mkdir -p $(@D)
	@echo '$(PREFIX)' | cmp -s - $@ || echo '$(PREFIX)' > $@

$(PCFILE): worker-api/memvisor.pc.in $(BUILD)/prefix Makefile
	@mkdir -p $(@D)
	$(SAY) GEN $@
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

$(PYC): $(PY_SRC)
	@mkdir -p $(@D)
	$(SAY) PYC worker-api/python
	$(Q)python3 -m compileall -q worker-api/python
	@touch $@

$(BUILD)/examples/%: examples/%.c $(WAPI_SRC)
	@mkdir -p $(@D)
	$(SAY) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) $< $(WAPI_SRC) -o $@

$(BUILD)/helpers/%: tests/helpers/%.c $(WAPI_SRC)
	@mkdir -p $(@D)
	$(SAY) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) $< $(WAPI_SRC) -o $@

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

# bench/accounting times the supervisor's own meter and cgroup reads: it links them.
$(BUILD)/bench/accounting: bench/accounting.c $(SUPLIB)
	@mkdir -p $(@D)
	$(SAY) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) $(PKG_CFLAGS) $< $(SUPLIB) $(PKG_LIBS) -lm -o $@

$(BUILD)/bench/%: bench/%.c $(WAPI_SRC)
	@mkdir -p $(@D)
	$(SAY) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(PLAIN_CFLAGS) -DMV_BUILD_DIR='"$(abspath $(BUILD))"' \
	    $< $(WAPI_SRC) -lm -o $@

$(TESTBIN): $(TEST_OBJ) $(SUPLIB) $(LIBA)
	@mkdir -p $(@D)
	$(SAY) LD $@
	$(Q)$(CC) $(LDFLAGS) $(TEST_OBJ) $(SUPLIB) $(LIBA) $(PKG_LIBS) $(CHECK_LIBS) -lm -o $@

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

check-valgrind:
	@bash .ci/deps test valgrind
	@$(MAKE) --no-print-directory all
	@bash tests/valgrind.sh $(abspath $(BUILD))

# Installs QEMU, busybox-static and the two kernel packages when missing (cached in
# $(BUILD)/v2), boots each kernel with cgroup v2 only and runs the v2 set in it (tests/v2/).
# V2_KERNELS="6.1" runs one; MV_V2_SUITES names the Check suites (docs/cgroup-v2-tests.md).
V2_KERNELS ?= 6.1 6.12
check-v2: deps
	@$(MAKE) --no-print-directory all
	@bash tests/v2/run.sh $(abspath $(BUILD)) $(V2_KERNELS)

# Debian's chromium is installed here, not by .ci/deps: only this target needs a browser.
check-html: deps
	@$(MAKE) --no-print-directory all
	@command -v chromium >/dev/null || { echo "memvisor: installing chromium"; \
	    $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@python3 tests/html/check_html.py $(abspath $(BUILD))

# CPython's Pool tests (test/_test_multiprocessing.py) with memvisor.Pool in place of
# multiprocessing's: the ones that differ by design are skipped with their reasons
# (tests/python/mp_suite.py EXPECTED_SKIPS); any other failure, or a process or temporary file
# left behind, fails. Debian's python3 and its test suite (.ci/deps mp).
MP_PYTHON ?= /usr/bin/python3
check-mp: deps
	@bash .ci/deps mp
	@$(MAKE) --no-print-directory $(BIN)
	@MEMVISOR_BIN=$(abspath $(BIN)) PYTHONDONTWRITEBYTECODE=1 $(MP_PYTHON) tests/python/mp_suite.py

# Only what the demo runs: no test runner, no benchmarks, one line while it builds.
demo:
	@bash .ci/deps build
	@echo "memvisor: building (make V=1 shows the commands)"
	@$(MAKE) -s --no-print-directory SAY=@true $(BIN) $(HEAPLIB) $(BUILD)/examples/leaky_worker
	@bash examples/demo.sh $(abspath $(BUILD))

bench:
	@bash .ci/deps bench
	@$(MAKE) --no-print-directory all
	@bash bench/run.sh $(abspath $(BUILD))

soak: deps
	@$(MAKE) --no-print-directory all
	@bash tests/soak.sh $(abspath $(BUILD))

# What `make install` puts where (uninstall removes the same list).
EX_DATA     := $(wildcard examples/python/*.py examples/python/*.tasks examples/*.tasks \
                          examples/tasks.txt examples/line_worker.*)
INST_BIN    := $(PREFIX)/bin/memvisor
INST_LIB    := $(PREFIX)/lib/libmemvisor.a $(PREFIX)/lib/libmemvisor.so.0 \
               $(PREFIX)/lib/libmemvisor.so $(PREFIX)/lib/libmemvisor-heap.so \
               $(PREFIX)/lib/pkgconfig/memvisor.pc
INST_INC    := $(patsubst include/memvisor/%,$(PREFIX)/include/memvisor/%, \
                          $(wildcard include/memvisor/*.h))
INST_CONF   := $(SYSCONFDIR)/memvisor/memvisor.ini $(SYSCONFDIR)/memvisor/service.ini
INST_EX     := $(patsubst $(BUILD)/examples/%,$(PREFIX)/lib/memvisor/examples/%,$(EXAMPLES)) \
               $(patsubst examples/%,$(PREFIX)/lib/memvisor/examples/%,$(EX_DATA))
INST_OTHER  := $(UNITDIR)/memvisor.service $(MANDIR)/man1/memvisor.1 \
               $(PYTHONDIR)/memvisor_worker.py $(PYTHONDIR)/memvisor_template.py \
               $(patsubst worker-api/python/%,$(PYTHONDIR)/%,$(wildcard worker-api/python/memvisor/*.py))
# The modules' byte code (install compiles them; any interpreter's, optimized or not).
INST_PYC    := $(PYTHONDIR)/__pycache__/memvisor_worker.*.pyc \
               $(PYTHONDIR)/__pycache__/memvisor_template.*.pyc $(PYTHONDIR)/memvisor/__pycache__/*.pyc
# The installed service: its example worker where install puts it, its state where the
# unit's StateDirectory= and RuntimeDirectory= make room (/var/lib/memvisor, /run/memvisor).
SERVICE_SED := -e 's|^command = build/examples/|command = $(PREFIX)/lib/memvisor/examples/|' \
               -e 's|^state_dir = .*|state_dir = /var/lib/memvisor|' \
               -e 's|^socket =.*|socket = /run/memvisor/control.sock|'
UNIT_SED    := -e 's|/usr/local/bin/memvisor|$(PREFIX)/bin/memvisor|g' \
               -e 's|/usr/local/etc/memvisor|$(SYSCONFDIR)/memvisor|g'

install: $(BIN) $(LIBA) $(LIBSO) $(HEAPLIB) $(PCFILE) $(EXAMPLES)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include/memvisor $(DESTDIR)$(SYSCONFDIR)/memvisor \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(PREFIX)/lib/memvisor/examples/python
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/memvisor
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/libmemvisor.a
	install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/libmemvisor.so.0
	ln -sf libmemvisor.so.0 $(DESTDIR)$(PREFIX)/lib/libmemvisor.so
	install -m 755 $(HEAPLIB) $(DESTDIR)$(PREFIX)/lib/libmemvisor-heap.so
	install -m 644 $(PCFILE) $(DESTDIR)$(PREFIX)/lib/pkgconfig/memvisor.pc
	install -m 644 include/memvisor/*.h $(DESTDIR)$(PREFIX)/include/memvisor/
	install -m 644 conf/memvisor.ini $(DESTDIR)$(SYSCONFDIR)/memvisor/
	sed $(SERVICE_SED) conf/service.ini > $(DESTDIR)$(SYSCONFDIR)/memvisor/service.ini
	sed $(UNIT_SED) conf/memvisor.service > $(DESTDIR)$(UNITDIR)/memvisor.service
	install -m 644 docs/memvisor.1 $(DESTDIR)$(MANDIR)/man1/memvisor.1
	install -d $(DESTDIR)$(PYTHONDIR)/memvisor
	install -m 644 worker-api/python/memvisor_worker.py worker-api/python/memvisor_template.py \
	    $(DESTDIR)$(PYTHONDIR)/
	install -m 644 worker-api/python/memvisor/*.py $(DESTDIR)$(PYTHONDIR)/memvisor/
	python3 -m compileall -q $(if $(DESTDIR),-s $(DESTDIR) -p /) \
	    $(addprefix $(DESTDIR)$(PYTHONDIR)/,memvisor_worker.py memvisor_template.py memvisor)
	install -m 755 $(EXAMPLES) $(DESTDIR)$(PREFIX)/lib/memvisor/examples/
	for f in $(EX_DATA); do \
	    install -m $$(test -x $$f && echo 755 || echo 644) $$f \
	        $(DESTDIR)$(PREFIX)/lib/memvisor/$$f || exit 1; done

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INST_BIN) $(INST_LIB) $(INST_INC) $(INST_CONF) $(INST_EX) \
	    $(INST_OTHER) $(INST_PYC))
	@for d in $(addprefix $(DESTDIR),$(PREFIX)/lib/memvisor/examples/python \
	    $(PREFIX)/lib/memvisor/examples $(PREFIX)/lib/memvisor $(PREFIX)/include/memvisor \
	    $(SYSCONFDIR)/memvisor $(PYTHONDIR)/memvisor/__pycache__ $(PYTHONDIR)/memvisor \
	    $(PYTHONDIR)/__pycache__); do \
	    rmdir $$d 2>/dev/null || true; done

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
	rm -rf build build-asan build-fuzz worker-api/python/__pycache__ \
	    worker-api/python/memvisor/__pycache__

include tests/fuzz/fuzz.mk

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
