# peftd - see README.md. Targets: all, test, bench, run, image, fuzz, clean.
# SANITIZER=address|undefined|thread builds into build-$(SANITIZER)/.
# No built-in rules: every target has its own, and make's `%: %.c` would otherwise "build" the
# directory server/console (a prerequisite below) from server/console.c whenever it is newer.
MAKEFLAGS += --no-builtin-rules
CC      ?= cc
SANITIZER ?=
WERROR  ?=
PKGS    := libmicrohttpd libcjson openblas
OPT     ?= -O2
CFLAGS  += -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wno-unused-parameter $(OPT) -g -MMD -MP \
           -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
ifneq ($(WERROR),)
CFLAGS  += -Werror
endif

ifeq ($(SANITIZER),)
B := build
else ifeq ($(SANITIZER),address)
B := build-asan
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SANITIZER),undefined)
B := build-ubsan
CFLAGS  += -fsanitize=undefined -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=undefined
else ifeq ($(SANITIZER),thread)
B := build-tsan
CFLAGS  += -fsanitize=thread
LDFLAGS += -fsanitize=thread
else
$(error SANITIZER must be address, undefined or thread)
endif

CORE_SRC    := $(wildcard core/*.c)
ADAPTER_SRC := $(wildcard adapters/*.c)
TRAIN_SRC   := $(wildcard train/*.c)
SERVER_SRC  := $(filter-out server/main.c,$(wildcard server/*.c))
TEST_SRC    := $(wildcard tests/test_*.c)
BENCH_SRC   := $(wildcard bench/*.c)

OBJ_CORE    := $(CORE_SRC:%.c=$(B)/obj/%.o)
OBJ_ADAPTER := $(ADAPTER_SRC:%.c=$(B)/obj/%.o)
OBJ_TRAIN   := $(TRAIN_SRC:%.c=$(B)/obj/%.o)
OBJ_SERVER  := $(SERVER_SRC:%.c=$(B)/obj/%.o)
LIB_OBJ     := $(OBJ_SERVER) $(OBJ_TRAIN) $(OBJ_ADAPTER) $(OBJ_CORE)
# The web console (server/console/): console-embed, a small C program built here, turns its
# files into a C source of byte arrays with content types and ETags (server/console.h), linked
# into the server, which serves them from memory. The directory is a prerequisite too, so
# adding or removing a file regenerates the source.
CONSOLE_FILES := $(sort $(wildcard $(addprefix server/console/*.,html css js svg png txt)))
OBJ_CONSOLE := $(B)/obj/gen/console_files.o
LIB_OBJ     += $(OBJ_CONSOLE)
# The OpenAPI description: docs/openapi.yaml (the one source) is converted to JSON by
# openapi-embed (server/openapi/embed.c, a small converter for the YAML subset the file uses:
# no YAML library in the product) into a C array GET /openapi.json serves (server/openapi.h).
OBJ_OPENAPI := $(B)/obj/gen/openapi_json.o
LIB_OBJ     += $(OBJ_OPENAPI)
TESTS       := $(TEST_SRC:tests/%.c=$(B)/tests/%)
BENCHES     := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

.PHONY: all tests benches test test-fast bench run image clean deps model fuzz
all: $(B)/peftd

# The layers, lowest first: each compiles with its own and lower include paths only, so a
# header included the wrong way (core -> adapters, adapters -> train, train -> server) fails
# to build. Tests and benches see every layer.
INC_core     := -Icore
INC_adapters := $(INC_core) -Iadapters
INC_train    := $(INC_adapters) -Itrain
INC_server   := $(INC_train) -Iserver
INC_tests    := $(INC_server)
INC_bench    := $(INC_server)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC_$(firstword $(subst /, ,$*))) -c $< -o $@

$(B)/tools/console-embed: server/console/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Wpedantic -O2 $(if $(WERROR),-Werror) $< -o $@

$(B)/gen/console_files.c: $(B)/tools/console-embed $(CONSOLE_FILES) server/console
	@mkdir -p $(dir $@)
	$(B)/tools/console-embed $@ $(CONSOLE_FILES)

$(OBJ_CONSOLE): $(B)/gen/console_files.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC_server) -c $< -o $@

$(B)/tools/openapi-embed: server/openapi/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Wpedantic -O2 $(if $(WERROR),-Werror) $< -o $@

$(B)/gen/openapi_json.c: $(B)/tools/openapi-embed docs/openapi.yaml
	@mkdir -p $(dir $@)
	$(B)/tools/openapi-embed $@ docs/openapi.yaml

$(OBJ_OPENAPI): $(B)/gen/openapi_json.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC_server) -c $< -o $@

$(B)/peftd: $(B)/obj/server/main.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(B)/tests/%: $(B)/obj/tests/%.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# test_allocfail fails each allocation of a path in turn: peftd's calls to the allocators go
# through its __wrap_ functions (tests/test_allocfail.c).
$(B)/tests/test_allocfail: LDFLAGS += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=posix_memalign,--wrap=aligned_alloc

$(B)/bench/%: $(B)/obj/bench/%.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

tests: $(TESTS) $(B)/peftd
benches: $(BENCHES) $(B)/peftd

# Installs missing Debian packages (needs root on a fresh machine; a no-op when present).
deps:
	@scripts/install-deps.sh

# The committed default model (models/peftd-mini-en, its card: models/peftd-mini-en/README.md),
# rebuilt from a fresh machine by the whole pipeline: corpus, vocabulary, QA data, pretraining
# (about 2-4 hours of these 2 cores), heads and evidence (about an hour), card. Resumable:
# scripts/model/make-model.sh --from STAGE; a smoke test: scripts/model/make-model.sh --quick.
MODEL ?= models/peftd-mini-en
model: deps $(B)/peftd
	@scripts/model/make-model.sh

test: deps
	@scripts/run-tests.sh

bench: deps
	@bench/run.sh

# The soak of tests/e2e/test_soak.py on the normal build for SOAK_SECONDS (30 minutes), faults
# included; `make test` runs a 2-minute one under ASan.
SOAK_SECONDS ?= 1800
.PHONY: soak
soak: deps all
	@PEFTD_BIN=$(CURDIR)/$(B)/peftd /usr/bin/python3 tests/e2e/test_soak.py --seconds $(SOAK_SECONDS)

# libFuzzer targets of tests/fuzz/ (clang), FUZZ_SECONDS each; not part of `make test`.
fuzz:
	@scripts/fuzz.sh

# Serves the committed pretrained model (MODEL=DIR for another one).
run: deps all
	exec $(B)/peftd serve --model $(MODEL)

image: deps
	@docker/build-image.sh

clean:
	rm -rf build build-asan build-ubsan build-tsan build-fuzz

-include $(shell find $(B)/obj -type f -name '*.d' 2>/dev/null)
