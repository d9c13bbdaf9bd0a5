# q35lab — `make` builds build/q35lab, `make test` runs the cmocka suites,
# `make run` does the main job on a built-in default.  `make test SAN=1`
# builds everything with AddressSanitizer/UBSan into build-san/.

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT := -O1
else
BUILD ?= build
SANFLAGS :=
OPT := -O2
endif

CC ?= cc
CSTD := -std=c11 -D_GNU_SOURCE
WARN := -Wall -Wextra -Werror
INCS := -I. -Ikernels -Ikernels/deltarule -Ikernels/matmul -Ikernels/moe -Ikernels/attention -Ikernels/conv -Ikernels/linear -Iref -Iharness -Ibench -Imodel
# fp-contract=fast lets the kernels use FMA; the reference opts out below.
CFLAGS_ALL := $(CSTD) $(OPT) -g $(WARN) -fopenmp -ffp-contract=fast $(INCS) $(SANFLAGS) $(CFLAGS)
LDLIBS := -fopenmp $(SANFLAGS) -lopenblas -lgsl -lcjson -lpapi -lsde -lm $(LDFLAGS)

LIB_SRCS := $(wildcard kernels/*.c kernels/*/*.c ref/*.c model/*.c) $(filter-out harness/cli_%.c,$(wildcard harness/*.c))
CLI_SRCS := $(wildcard harness/cli_*.c bench/*.c)
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_SUPPORT_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/support/*.c))

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test run clean check-deps plots
# keep objects of the test binaries (they are intermediate files to make)
.SECONDARY:
all: $(BUILD)/q35lab

$(BUILD)/obj/ref/%.o: CFLAGS_ALL += -ffp-contract=off

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libq35.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/q35lab: $(CLI_OBJS) $(BUILD)/libq35.a
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT_OBJS) $(BUILD)/libq35.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS) -lcmocka

# Each suite runs from the project root (tests read tests/data and ../shared).
test: check-deps $(TEST_BINS) $(BUILD)/q35lab
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; ./$$t; done
	@echo "== CLI smoke: q35lab check all --quick"
	@./$(BUILD)/q35lab check all --quick > $(BUILD)/check-quick.txt || { cat $(BUILD)/check-quick.txt; exit 1; }
	@grep -E "^check (deltarule|moe):" $(BUILD)/check-quick.txt

run: $(BUILD)/q35lab
	./$(BUILD)/q35lab list
	./$(BUILD)/q35lab check all --quick

# Figures in results/ from the CSVs bench/run_deltarule.sh writes.
plots:
	@command -v gnuplot >/dev/null || { echo "gnuplot is missing: apt-get install -y gnuplot-nox"; exit 1; }
	gnuplot bench/plots.gp
	@ls -1 results/*.png

clean:
	rm -rf build build-san

# Names the Debian packages a fresh machine is missing, with the command.
check-deps:
	@missing=""; \
	for h in cblas.h:libopenblas-dev cmocka.h:libcmocka-dev gsl/gsl_rng.h:libgsl-dev papi.h:libpapi-dev \
	         sde_lib.h:libpapi-dev cjson/cJSON.h:libcjson-dev; do \
	  f=$${h%%:*}; p=$${h##*:}; \
	  echo "#include <$$f>" | $(CC) -E -x c - >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then echo "missing packages:$$missing"; \
	  echo "install with: apt-get install -y$$missing"; exit 1; fi

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(TEST_SRCS:tests/%.c=$(BUILD)/obj/tests/%.d)
