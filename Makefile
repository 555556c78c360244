# twoway - the front door.  `make test` and `make demo` install what is
# missing (scripts/install-deps.sh), build, and run.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
# Seconds per fuzz target: a short run in `make test`, longer with `make fuzz`.
FUZZ_SECONDS ?= 10
PREFIX     ?= /usr/local

.PHONY: all build deps demo test test-normal test-asan test-valgrind fuzz fuzz-run \
        install clean

all: build

deps:
	@scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	      -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(BUILD) -j$(JOBS)

# The seed tutorial's story, end to end, in demo/.
demo: deps
	$(MAKE) build
	scripts/demo.sh $(BUILD)

# Every test, twice (normal, then ASan+UBSan), the integration path under
# Valgrind, and a short run of every fuzz target.
test: deps
	$(MAKE) test-normal
	$(MAKE) test-asan
	$(MAKE) test-valgrind
	$(MAKE) fuzz-run FUZZ_SECONDS=$(FUZZ_SECONDS)

test-normal: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTW_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j$(JOBS)

# The integration tests again, each program run under Valgrind (memcheck;
# any error or leak fails the run).
test-valgrind: build
	TW_WRAP="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --soname-synonyms=somalloc=*tcmalloc* --suppressions=$(CURDIR)/tests/valgrind.supp" \
	TW_QUICK=1 ctest --test-dir $(BUILD) --output-on-failure -L integration

fuzz-run:
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DTW_FUZZ=ON \
	      -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_BUILD) -j$(JOBS)
	tests/fuzz/run.sh $(FUZZ_BUILD)/tests/fuzz $(FUZZ_SECONDS)

# A longer fuzz run: `make fuzz FUZZ_SECONDS=3600`.
fuzz: deps
	$(MAKE) fuzz-run FUZZ_SECONDS=$(if $(filter 10,$(FUZZ_SECONDS)),600,$(FUZZ_SECONDS))

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
