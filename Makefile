# q35lab — `make` builds build/q35lab, `make test` runs the cmocka suites,
# `make run` does the main job on a built-in default.  `make test SAN=1`
# builds everything with AddressSanitizer/UBSan into build-san/.

SAN ?= 0
FUZZ ?= 0
ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT := -O1
else ifeq ($(FUZZ),1)
# The library built for libFuzzer targets (tests/fuzz/): clang, coverage
# instrumentation without libFuzzer's main, ASan and UBSan.
BUILD := build-fuzz
CC := clang
# (-Wno-pass-failed: at -O1 clang does not vectorize the kernels' omp simd
# loops and says so; the kernels are not what this build is for.)
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
            -Wno-pass-failed
OPT := -O1
else
BUILD ?= build
SANFLAGS :=
OPT := -O2
endif

CC ?= cc
CSTD := -std=c11 -D_GNU_SOURCE
WARN := -Wall -Wextra -Werror
INCS := -I.
# fp-contract=fast lets the kernels use FMA; the reference opts out below.
CFLAGS_ALL := $(CSTD) $(OPT) -g $(WARN) -fopenmp -ffp-contract=fast $(INCS) $(SANFLAGS) $(CFLAGS)
# Open MPI (tensor-parallel runs, common/comm.c) is compiled in when its
# development files are there.  Recursive variables: they are read when
# comm.o is compiled and the binaries linked, after make deps has installed
# libopenmpi-dev; $(BUILD)/mpi-flags records the choice, so comm.o is
# rebuilt when it changes.
MPI_CFLAGS = $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_DEFS = $(if $(MPI_CFLAGS),-DQ35_HAVE_MPI $(MPI_CFLAGS))
LDLIBS = -fopenmp $(SANFLAGS) -lopenblas -lgsl -lcjson -lpapi -lsde -lm $(shell pkg-config --libs ompi-c 2>/dev/null) \
         $(LDFLAGS)
# xxHash (XXH3): state files' fingerprints and checksums (model/state_file.c, docs/state-file.md)
LDLIBS += -lxxhash
# PCRE2 (the tokenizer's split pattern) and utf8proc (its NFC step): model/tokenizer*.c, docs/tokenizer.md
LDLIBS += -lpcre2-8 -lutf8proc

LIB_SRCS := $(wildcard common/*.c kernels/*.c kernels/*/*.c ref/*.c model/*.c harness/*.c bench/*.c)
CLI_SRCS := $(wildcard cli/*.c)
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_SUPPORT_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/support/*.c))

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test run clean deps plots layers fuzz fuzz-bins memcheck
# keep objects of the test binaries (they are intermediate files to make)
.SECONDARY:
all: $(BUILD)/q35lab

$(BUILD)/obj/ref/%.o: CFLAGS_ALL += -ffp-contract=off

$(BUILD)/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

.PHONY: FORCE
$(BUILD)/mpi-flags: FORCE | deps
	@mkdir -p $(BUILD); echo '$(MPI_DEFS)' | cmp -s - $@ || echo '$(MPI_DEFS)' > $@
$(BUILD)/obj/common/comm.o: $(BUILD)/mpi-flags
$(BUILD)/obj/common/comm.o: CFLAGS_ALL += $(MPI_DEFS)

$(BUILD)/libq35.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/q35lab: $(CLI_OBJS) $(BUILD)/libq35.a
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT_OBJS) $(BUILD)/libq35.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS) -lcmocka

# Qwen3.5's tokenizer.json, committed xz-compressed (15 MB -> 3 MB; xz-utils, in debian-packages.txt, is on almost every
# Debian), unpacked for test_tokenizer, which finds it beside its own binary.
TOKENIZER_JSON := $(BUILD)/data/tokenizer/tokenizer.json
$(TOKENIZER_JSON): tests/data/tokenizer/tokenizer.json.xz
	@mkdir -p $(dir $@)
	xz -dc $< > $@.tmp && mv $@.tmp $@
$(BUILD)/tests/test_tokenizer: | $(TOKENIZER_JSON)

# The floors of .layers: no #include (../shared/tools/layers) and no symbol
# (tests/link_layers.sh) reaches from a folder to one above it.
layers: $(BUILD)/q35lab $(TEST_BINS)
	@echo "== layers: includes (../shared/tools/layers) and symbols (tests/link_layers.sh)"
	@test -x ../shared/tools/layers || { echo "../shared/tools/layers is missing (see ../shared/README.md)"; exit 1; }
	@../shared/tools/layers
	@tests/link_layers.sh $(BUILD)

# comm.c without Open MPI: a machine without libopenmpi-dev builds too (the
# only file whose code depends on it; -Werror catches what the MPI build uses alone).
$(BUILD)/comm-without-mpi.o: common/comm.c | deps
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# Each suite runs from the project root (tests read tests/data and ../shared).
test: $(TEST_BINS) $(BUILD)/q35lab layers $(BUILD)/comm-without-mpi.o
	@rm -f $(BUILD)/isa-levels.txt
	@set -e; export Q35_ISA_LEVELS_FILE=$(CURDIR)/$(BUILD)/isa-levels.txt; \
	  for t in $(TEST_BINS); do echo "== $$t"; ./$$t; done
	@echo "== tensor parallelism under mpirun (tests/tp_test.sh)"
	@tests/tp_test.sh $(BUILD)
	@echo "== speculative decoding and saved prefixes through the CLI (tests/speculative_cli_test.sh)"
	@tests/speculative_cli_test.sh $(BUILD)
	@echo "== the benchmark commands through the CLI (tests/bench_cli_test.sh)"
	@tests/bench_cli_test.sh $(BUILD)
	@echo "== text in and out through the CLI (tests/text_cli_test.sh)"
	@tests/text_cli_test.sh $(BUILD)
	@echo "== q35lab tokenize against HF's ids (tests/tokenize_cli_test.sh)"
	@tests/tokenize_cli_test.sh $(BUILD)
	@echo "== CLI smoke: q35lab check all --quick"
	@./$(BUILD)/q35lab check all --quick > $(BUILD)/check-quick.txt || { cat $(BUILD)/check-quick.txt; exit 1; }
	@grep -E "^check (deltarule|deltarule --grad|moe):" $(BUILD)/check-quick.txt
	@echo "== CLI smoke: q35lab validate against the golden files (../shared and tests/data/model)"
	@set -e; for g in ../shared/golden-samples/model/tiny-dense-f32 tests/data/model/hf-tiny-dense-bf16 \
	                  tests/data/model/hf-tiny-moe-f32; do \
	  ./$(BUILD)/q35lab validate --model $$g --golden $$g.golden.safetensors \
	    --impl "default;deltarule=chunked,moe=per_token;deltarule=neumann,moe=blockwise" > $(BUILD)/validate.txt 2>&1 \
	    || { cat $(BUILD)/validate.txt; exit 1; }; tail -n 1 $(BUILD)/validate.txt; done
	@echo "== ISA levels the per-level suites ran (tests/support/isa_levels.h, $(BUILD)/isa-levels.txt)"
	@awk '$$3 == "ran" && index(ran[$$2] " ", " " $$1 " ") == 0 { ran[$$2] = ran[$$2] " " $$1 } \
	      $$3 == "skipped" && index(sk[$$2] " ", " " $$1 " ") == 0 { sk[$$2] = sk[$$2] " " $$1 } \
	      END { n = split("generic avx2 avx512 avx512-bf16", L, " "); \
	            for (i = 1; i <= n; i++) { l = L[i]; \
	              if (l in ran) printf "  %-12s ran:%s\n", l, ran[l]; \
	              else printf "  %-12s NEVER RAN: this CPU lacks it (skipped in:%s)\n", l, sk[l] } }' \
	     $(BUILD)/isa-levels.txt

# The main job: a random tiny MoE checkpoint in the release format, every
# implementation combination validated against the reference path, a few
# tokens generated; then the same summary for tiny-dense and both dtypes.
MODELS := $(BUILD)/models
# mpirun on a 2-core machine: more ranks than cores, yielding while idle; as root it must be told so
MPIRUN_FLAGS := --oversubscribe --mca mpi_yield_when_idle 1 $(if $(filter 0,$(shell id -u)),--allow-run-as-root)
run: $(BUILD)/q35lab
	./$(BUILD)/q35lab list
	./$(BUILD)/q35lab model init --preset tiny-moe --seed 1 --dtype bf16 --out $(MODELS)/tiny-moe-bf16 --force 2>&1 | tail -n 1
	./$(BUILD)/q35lab validate --model $(MODELS)/tiny-moe-bf16 --steps 6 > $(MODELS)/validate-tiny-moe-bf16.txt; \
	  rc=$$?; head -n 12 $(MODELS)/validate-tiny-moe-bf16.txt; echo "  ... (whole table: $(MODELS)/validate-tiny-moe-bf16.txt)"; \
	  tail -n 1 $(MODELS)/validate-tiny-moe-bf16.txt; exit $$rc
	./$(BUILD)/q35lab generate --model $(MODELS)/tiny-moe-bf16 --prompt "What is the capital of France?" --chat --max-new 12
	@if command -v mpirun >/dev/null 2>&1; then \
	  echo "== the same over 2 ranks, tensor-parallel (docs/tp.md)"; \
	  echo "mpirun -np 2 $(BUILD)/q35lab generate --model $(MODELS)/tiny-moe-bf16 --prompt \"What is the capital of France?\" --chat --max-new 12"; \
	  mpirun $(MPIRUN_FLAGS) -np 2 ./$(BUILD)/q35lab generate --model $(MODELS)/tiny-moe-bf16 \
	    --prompt "What is the capital of France?" --chat --max-new 12 --threads 1; \
	else echo "mpirun is missing: the 2-rank run is skipped (debian-packages.txt: openmpi-bin)"; fi
	@set -e; for m in tiny-moe:f32 tiny-dense:bf16 tiny-dense:f32; do \
	  p=$${m%%:*}; d=$${m##*:}; \
	  ./$(BUILD)/q35lab model init --preset $$p --seed 1 --dtype $$d --out $(MODELS)/$$p-$$d --force 2>/dev/null; \
	  printf '%-16s ' "$$p $$d:"; ./$(BUILD)/q35lab validate --model $(MODELS)/$$p-$$d --steps 6 2>/dev/null | tail -n 1; \
	done

# Figures in results/ from the CSVs bench/run_deltarule.sh writes.
plots:
	@command -v gnuplot >/dev/null || { echo "gnuplot is missing: apt-get install -y gnuplot-nox"; exit 1; }
	gnuplot bench/plots.gp
	gnuplot bench/speculative.gp
	@ls -1 results/*.png

# The readers and the model loading under valgrind memcheck: no error and no
# leak (definite or indirect) in the suites below nor in any q35lab they start
# (test_cli_errors runs every malformed input through the CLI), nor in two
# validate runs against goldens.  The thread-pool variables are set because
# q35lab otherwise re-executes itself through /proc/self/exe to set them,
# which valgrind cannot follow.
MEMCHECK_SUITES := test_safetensors test_safetensors_stream test_model_config test_bad_inputs test_cli_errors test_state_file
VALGRIND := valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --show-leak-kinds=definite,indirect --trace-children=yes --log-file=$(BUILD)/memcheck/%p.log
memcheck: $(MEMCHECK_SUITES:%=$(BUILD)/tests/%) $(BUILD)/q35lab
	@rm -rf $(BUILD)/memcheck && mkdir -p $(BUILD)/memcheck
	@set -e; export GOMP_SPINCOUNT=10000 OPENBLAS_NUM_THREADS=1; \
	for t in $(MEMCHECK_SUITES); do echo "== memcheck $$t"; \
	  $(VALGRIND) ./$(BUILD)/tests/$$t > $(BUILD)/memcheck/$$t.out 2>&1 || { tail -n 20 $(BUILD)/memcheck/$$t.out; exit 1; }; \
	done; \
	for m in tests/data/model/hf-tiny-moe-f32 ../shared/golden-samples/model/tiny-dense-f32; do \
	  echo "== memcheck validate --model $$m --golden"; \
	  $(VALGRIND) ./$(BUILD)/q35lab validate --model $$m --golden $$m.golden.safetensors --impl default --threads 1 \
	    > $(BUILD)/memcheck/validate.out 2>&1 || { tail -n 20 $(BUILD)/memcheck/validate.out; exit 1; }; \
	done
	@if grep -L 'ERROR SUMMARY: 0 errors' $(BUILD)/memcheck/*.log | grep -q .; then \
	  echo "memcheck: errors in:"; grep -L 'ERROR SUMMARY: 0 errors' $(BUILD)/memcheck/*.log; exit 1; fi
	@echo "memcheck: $$(ls $(BUILD)/memcheck/*.log | wc -l) processes, 0 errors, 0 leaks"

# Fuzzing: every reader of files from elsewhere under libFuzzer
# (tests/fuzz/fuzz_*.c), FUZZ_SECONDS each (or FUZZ_RUNS executions each),
# two at a time; fails on any crash, leak or broken promise
# (tests/fuzz/run.sh says what to do with one).
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build-fuzz/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz:
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-bins
	FUZZ_RUNS=$(FUZZ_RUNS) tests/fuzz/run.sh $(FUZZ_SECONDS)

fuzz-bins: $(FUZZ_BINS)

build-fuzz/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz_input.h $(BUILD)/libq35.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer $< $(BUILD)/libq35.a $(LDLIBS) -o $@

clean:
	rm -rf build build-san build-fuzz

# Set-up, run first by `make`, `make run` and `make test` (an order-only
# prerequisite of every object): every package of debian-packages.txt that
# dpkg does not list as installed is installed when make runs as root; as
# another user make stops before compiling and prints the exact command.
deps:
	@pkgs=$$(sed -e 's/#.*//' debian-packages.txt | tr -s ' \n' ' '); \
	if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "make deps: no dpkg here (not Debian); q35lab needs the equivalents of:$$pkgs"; exit 0; fi; \
	missing=""; \
	for p in $$pkgs; do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q ' installed$$' || missing="$$missing $$p"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "make deps: missing Debian packages:$$missing"; \
	  echo "make deps: install them with:  sudo apt-get install -y$$missing"; exit 1; fi; \
	echo "make deps: installing$$missing"; \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; } || \
	  { echo "make deps: apt-get failed; run:  apt-get install -y$$missing"; exit 1; }

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(TEST_SRCS:tests/%.c=$(BUILD)/obj/tests/%.d)
