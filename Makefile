# twoway - the front door.  `make test` and `make demo` install what is
# missing (scripts/install-deps.sh), build, and run.

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
# Seconds per fuzz target: a short run in `make test`, longer with `make fuzz`.
FUZZ_SECONDS ?= 10
PREFIX     ?= /usr/local

.PHONY: all build deps demo test test-normal test-asan test-tsan test-valgrind fuzz soak \
        fuzz-run install clean

all: build

deps:
	@scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTW_WERROR=ON \
	      -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(BUILD) -j$(JOBS)

# The seed tutorial's story, end to end, in demo/.
# The build's few hundred lines go to a log, shown only when it fails
# (scripts/quiet-build.sh; tests/integration/quiet_build_test.sh).
demo: deps
	@scripts/quiet-build.sh demo $(BUILD)/demo-build.log \
	  $(MAKE) --no-print-directory build
	scripts/demo.sh $(BUILD)

# Every test, twice (normal, then ASan+UBSan), the integration path under
# ThreadSanitizer and under Valgrind, and a short run of every fuzz target.
test: deps
	$(MAKE) test-normal
	$(MAKE) test-asan
	$(MAKE) test-tsan
	$(MAKE) test-valgrind
	$(MAKE) fuzz-run FUZZ_SECONDS=$(FUZZ_SECONDS)

test-normal: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTW_SANITIZE=ON -DTW_WERROR=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 TW_BULK=250 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j$(JOBS)

# Every test again (the integration path above all: invoice-server's
# workers, writer and reloads), built with ThreadSanitizer, $(JOBS) at a
# time (the renewal test's two minutes overlap the rest: 261 s instead of
# 470 s on 2 cores).  Reports go to files in $(TSAN_BUILD)/tsan-reports, so
# that a server a test kills still leaves its report, and any report fails
# the run.
# tests/tsan.supp holds only false positives from the uninstrumented OpenSSL,
# each with its reason; a race of ours is never suppressed.  TW_QUICK: TSan
# makes programs 5-10 times slower.
TSAN_REPORTS = $(abspath $(TSAN_BUILD))/tsan-reports
test-tsan:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTW_TSAN=ON -DTW_WERROR=ON
	cmake --build $(TSAN_BUILD) -j$(JOBS)
	rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS)
	TSAN_OPTIONS="log_path=$(TSAN_REPORTS)/tsan halt_on_error=0 exitcode=66 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	TW_QUICK=1 ctest --test-dir $(TSAN_BUILD) --output-on-failure -j$(JOBS); \
	rc=$$?; \
	if [ -n "$$(ls -A $(TSAN_REPORTS))" ]; then \
	  cat $(TSAN_REPORTS)/*; \
	  echo "test-tsan: ThreadSanitizer reports in $(TSAN_REPORTS)" >&2; \
	  exit 1; \
	fi; \
	exit $$rc

# The integration tests again, each program run under Valgrind (memcheck;
# any error or leak fails the run).  $(JOBS) at a time: a Valgrind'd
# program uses one core, and the tests wait on their servers (timeouts
# stretch 6 times under TW_WRAP); a test that cannot share the machine says
# so with RUN_SERIAL in tests/CMakeLists.txt.  ca_test.sh, the longest, runs
# as two halves (ca_cli, ca_cli_2).
test-valgrind: build
	TW_WRAP="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --soname-synonyms=somalloc=*tcmalloc* --suppressions=$(CURDIR)/tests/valgrind.supp" \
	TW_QUICK=1 ctest --test-dir $(BUILD) --output-on-failure -L integration -j$(JOBS)

fuzz-run:
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DTW_FUZZ=ON \
	      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTW_WERROR=ON
	cmake --build $(FUZZ_BUILD) -j$(JOBS)
	tests/fuzz/run.sh $(FUZZ_BUILD)/tests/fuzz $(FUZZ_SECONDS)

# Renewal under load for SOAK_MINUTES (default 15): not part of `make test`.
soak: deps
	$(MAKE) build
	scripts/soak.sh $(BUILD)

# A longer fuzz run: `make fuzz FUZZ_SECONDS=3600`.
fuzz: deps
	$(MAKE) fuzz-run FUZZ_SECONDS=$(if $(filter 10,$(FUZZ_SECONDS)),600,$(FUZZ_SECONDS))

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
