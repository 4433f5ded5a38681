# libFuzzer harnesses: tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/corpus/NAME/. Built with
# clang (-fsanitize=fuzzer,address,undefined) into $(FUZZ_BUILD), never into build/: the
# supervisor objects a harness links are compiled again, instrumented, there.
#
#   make fuzz [FUZZ_TIME=60] [FUZZ_NAMES='config control']   fuzz each harness for FUZZ_TIME s;
#                                 new inputs go to $(FUZZ_BUILD)/corpus/NAME, crashes to
#                                 $(FUZZ_BUILD)/crashes/; fails on a crash
#   make fuzz-smoke               run each harness once over its seeds (make check does)
#
# Adding a harness: the file, its seeds, and one line here naming the supervisor/*.c files
# it links (none for header-only code). Extra libFuzzer flags: FUZZ_FLAGS_NAME.

FUZZ_CC    ?= clang-14
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 60

FUZZ_OBJS_protocol :=
FUZZ_OBJS_config   := config config_ext options units util addr log kind paths rurl
FUZZ_OBJS_control  := control runlock log util
FUZZ_OBJS_channel  := channel util
FUZZ_OBJS_results  := resume util
FUZZ_OBJS_rentry   := rentry rurl tasks job kind resume reason util

FUZZ_FLAGS_config  := -max_len=8192
FUZZ_FLAGS_control := -max_len=131072

FUZZ_NAMES ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=gnu11 -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) -Wall -Wextra \
               -Wno-unused-parameter
FUZZ_BINS   := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-smoke fuzz-build

$(FUZZ_BUILD)/obj/%.o: supervisor/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -c $< -o $@

define FUZZ_RULE
$(FUZZ_BUILD)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(FUZZ_OBJS_$(1):%=$(FUZZ_BUILD)/obj/%.o)
	@mkdir -p $$(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(PKG_CFLAGS) $$(filter %.c %.o,$$^) \
	    $(PKG_LIBS) -lm -o $$@
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call FUZZ_RULE,$(n))))

fuzz-build: $(FUZZ_BINS)

fuzz: deps
	@bash tests/fuzz/deps.sh $(FUZZ_CC)
	@$(MAKE) --no-print-directory fuzz-build
	@bash tests/fuzz/run.sh fuzz $(FUZZ_BUILD) $(FUZZ_TIME) \
	    $(foreach n,$(FUZZ_NAMES),'$(n) $(FUZZ_FLAGS_$(n))')

fuzz-smoke:
	@if bash tests/fuzz/deps.sh --check $(FUZZ_CC); then \
	    $(MAKE) --no-print-directory fuzz-build && \
	    bash tests/fuzz/run.sh smoke $(FUZZ_BUILD) 0 $(foreach n,$(FUZZ_NAMES),'$(n)'); \
	else \
	    echo "fuzz smoke: skipped, no $(FUZZ_CC) with libFuzzer (make fuzz installs it)"; \
	fi

-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
