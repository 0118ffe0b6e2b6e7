# guestmem: `make demo` runs the main job, `make check` the whole test suite.
# Both install the Debian packages they need first (scripts/install-deps.sh).
# `make install [PREFIX=/usr/local] [DESTDIR=]` installs the libraries, the
# preload, the headers, guestmem.pc and the `guestmem` command.

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
MESON_TEST  = ./scripts/with-hugepages.sh meson test --print-errorlogs --num-processes 2
PREFIX     ?= /usr/local
DESTDIR    ?=

.PHONY: all deps build demo check check-plain check-asan check-tsan check-install \
	check-kernel check-kernel-sweep bench install clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

demo: build
	./$(BUILD)/src/cli/guestmem demo

bench: build
	./$(BUILD)/src/cli/guestmem bench

check: check-plain check-asan check-tsan check-install

check-plain: build
	$(MESON_TEST) -C $(BUILD)

# AddressSanitizer + UndefinedBehaviorSanitizer, leaks reported as failures.
check-asan: deps
	[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) \
		-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(MESON_TEST) -C $(ASAN_BUILD) --suite asan

# ThreadSanitizer over the concurrent tests.
check-tsan: deps
	[ -f $(TSAN_BUILD)/build.ninja ] || meson setup $(TSAN_BUILD) \
		-Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug
	ninja -C $(TSAN_BUILD)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:die_after_fork=0 \
		$(MESON_TEST) -C $(TSAN_BUILD) --suite tsan

# The build directory is reconfigured only when PREFIX changes it.
install: build
	@[ "$$(meson introspect $(BUILD) --buildoptions | \
	      python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"][0])')" \
	   = "$(abspath $(PREFIX))" ] || meson configure $(BUILD) -Dprefix=$(abspath $(PREFIX))
	ninja -C $(BUILD)
	DESTDIR="$(DESTDIR)" meson install -C $(BUILD) --no-rebuild --quiet

# Install into a temporary root, then build and run a VMM against it with
# nothing but pkg-config (tests/install/check-install.sh).
check-install: build
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(MAKE) --no-print-directory install DESTDIR="$$tmp" && \
	./tests/install/check-install.sh "$$tmp" "$(abspath $(PREFIX))"

# Linux 6.12's own KVM selftests, built unmodified from Debian's
# linux-source-6.12 in a temporary directory, run under guestmem exec
# (tests/kernel/run-kselftests.sh; known failures in tests/kernel/known-failures).
check-kernel: build
	./tests/kernel/run-kselftests.sh

# Every x86_64 selftest binary, not only the list.
check-kernel-sweep: build
	./tests/kernel/run-kselftests.sh --sweep

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)
