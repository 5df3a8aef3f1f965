# vultus — a plain GNU Makefile. `make` builds build/vultus; `make test` sets up the machine
# (Debian packages, model pack), builds and runs every test; `make check` runs the tests
# built with AddressSanitizer and UBSan. See README.md.

SHELL := /bin/bash
CC ?= cc
CXX ?= c++
BUILD ?= build
PKGS := jansson sqlite3 libpq libturbojpeg libjpeg spng libwebp libmicrohttpd
# Warnings are errors in CI (CI=true) and with WERROR=1.
WERROR ?= $(if $(CI),1,0)

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT ?= -O2
CFLAGS_BASE := -std=c17 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Wshadow -Wstrict-prototypes \
	-Wno-unused-parameter -fno-strict-aliasing -pthread -Isrc $(PKG_CFLAGS)
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif
CFLAGS += $(CFLAGS_BASE) $(EXTRA_CFLAGS)
# C++ only for the bridge to hnswlib, a header-only C++ library (src/gallery/ann.cpp).
CXXFLAGS_BASE := -std=c++17 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Wshadow -Wno-unused-parameter \
	-fno-strict-aliasing -pthread -Isrc
ifeq ($(WERROR),1)
CXXFLAGS_BASE += -Werror
endif
CXXFLAGS += $(CXXFLAGS_BASE) $(EXTRA_CFLAGS)
LDLIBS += $(PKG_LIBS) -lXNNPACK -lpthreadpool -lm -lstdc++ -pthread

LIB_SRC := $(shell find src -name '*.c' ! -path src/main.c | sort)
LIB_CXX_SRC := $(shell find src -name '*.cpp' | sort)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(LIB_CXX_SRC:%.cpp=$(BUILD)/obj/%.o)
TEST_SRC := $(shell find tests -name 'test_*.c' 2>/dev/null | sort)
TEST_BIN := $(TEST_SRC:%.c=$(BUILD)/%)
FUZZ_SRC := $(shell find tests/fuzz -name 'fuzz_*.c' 2>/dev/null | sort)

.PHONY: all test test-ui check tsan bench bench-setup bench-nn run fuzz clean setup setup-run models format tests
all: $(BUILD)/vultus

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libvultus.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/vultus: $(BUILD)/obj/src/main.o $(BUILD)/libvultus.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# Each tests/<module>/test_*.c is its own program (cmocka), linked with the library.
$(BUILD)/tests/%: tests/%.c $(BUILD)/libvultus.a $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libvultus.a $(LDFLAGS) $(LDLIBS) -lcmocka

tests: $(TEST_BIN)

setup:
	@tools/bootstrap
	@tools/fetch-models

# What `make run` needs: the build's and the service's packages, not the tests'.
setup-run:
	@tools/bootstrap --run
	@tools/fetch-models

test: setup
	@$(MAKE) --no-print-directory all tests
	@tools/run-tests $(BUILD) $(TEST_BIN)
	@tests/ui/run $(BUILD)

# The web page's browser tests alone: headless Debian chromium driven by playwright-core
# (tests/ui/node_modules, npm ci on first use) against $(BUILD)/vultus on loopback;
# screenshots of every step in $(BUILD)/ui-screenshots/.
test-ui: setup
	@$(MAKE) --no-print-directory all
	@tests/ui/run $(BUILD)

# AddressSanitizer + UBSan build of the library and tests, in its own build folder.
# The sanitizers make the models' kernels 5-10x slower (test_pipeline_edges: 47 s in make test,
# over 600 s under ASan on a loaded 2-core machine), so a program gets 1200 s here: a hang is
# still caught, a slow machine no longer fails a passing test.
SANITIZED_TEST_TIMEOUT ?= 1200
check: setup
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 ASAN_LIB=1 \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
		LDFLAGS="-fsanitize=address,undefined" all tests
	@ASAN_OPTIONS=detect_leaks=1 VULTUS_SANITIZED=1 TEST_TIMEOUT=$(SANITIZED_TEST_TIMEOUT) \
		tools/run-tests build/asan \
		$(TEST_SRC:%.c=build/asan/%)
	@$(MAKE) --no-print-directory tsan

# hnswlib 0.6.2 reads one link past a full neighbour list to compute a prefetch address (upstream
# nmslib/hnswlib#107, #578; 3 bytes past a malloc'd list, inside its chunk, so it cannot fault),
# which AddressSanitizer reports at every graph insertion. The bridge, where hnswlib's code is
# compiled, is therefore built without ASan (UBSan stays); test_ann runs under ThreadSanitizer.
ifeq ($(ASAN_LIB),1)
$(BUILD)/obj/src/gallery/ann.o: override EXTRA_CFLAGS += -fno-sanitize=address
endif

# ThreadSanitizer build of the tests of concurrent code: the library and those tests are rebuilt
# with clang -fsanitize=thread into $(BUILD)/tsan (part of make check).
TSAN_TESTS := tests/nn/test_shared_model.c tests/gallery/test_concurrency.c \
	tests/http/test_http_inproc.c tests/http/test_http_batching.c tests/gallery/test_store_postgres.c
# test_ann runs with ThreadSanitizer's deadlock detector off (data races are still reported):
# hnswlib keeps a std::mutex per face in vectors it reallocates, and libstdc++'s std::mutex has
# no destructor TSan sees, so a new graph's mutexes at a dead graph's addresses make lock
# cycles out of unrelated locks (reported without stacks). The index's own two locks are
# taken in one order everywhere, and test_concurrency checks them with the detector on. The
# one race of hnswlib's concurrent insertion we cannot avoid (its level generator) is
# suppressed by name: see tests/gallery/hnswlib-tsan.supp.
TSAN_NO_DEADLOCK_TESTS := tests/gallery/test_ann.c
tsan: setup
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/tsan CC=clang CXX=clang++ OPT=-O1 EXTRA_CFLAGS=-fsanitize=thread \
		LDFLAGS=-fsanitize=thread $(TSAN_TESTS:%.c=$(BUILD)/tsan/%) \
		$(TSAN_NO_DEADLOCK_TESTS:%.c=$(BUILD)/tsan/%)
	@TSAN_OPTIONS=halt_on_error=1 TEST_TIMEOUT=$(SANITIZED_TEST_TIMEOUT) tools/run-tests $(BUILD)/tsan \
		$(TSAN_TESTS:%.c=$(BUILD)/tsan/%)
	@VULTUS_SANITIZED=1 TEST_TIMEOUT=$(SANITIZED_TEST_TIMEOUT) TSAN_OPTIONS="halt_on_error=1 detect_deadlocks=0 \
		suppressions=$(CURDIR)/tests/gallery/hnswlib-tsan.supp" tools/run-tests \
		$(BUILD)/tsan $(TSAN_NO_DEADLOCK_TESTS:%.c=$(BUILD)/tsan/%)

# The build is a second make: on a fresh machine, pkg-config and the libraries' .pc files arrive
# with setup-run, after this make computed PKG_CFLAGS and PKG_LIBS (empty then).
run: setup-run
	@$(MAKE) --no-print-directory all
	$(BUILD)/vultus serve --models models --data data

# The set-up's failure modes alone (tests/setup/cases.sh; make test runs them too): fetch-models,
# bootstrap and tests/ui/run on copies in temporary folders, vultus serve on a busy port.
.PHONY: test-setup
test-setup: $(BUILD)/vultus $(BUILD)/tests/setup/test_setup
	@tools/run-tests $(BUILD) $(BUILD)/tests/setup/test_setup

# libFuzzer targets (clang): one per parser of untrusted bytes, tests/fuzz/fuzz_NAME.c with its
# seeds in tests/fuzz/corpus/NAME/. `make fuzz` runs each for FUZZ_SECONDS (CI runs it briefly)
# and fails if any run crashes. The library is built once with the fuzzer's instrumentation
# into $(BUILD)/fuzz and linked as an archive, so each target pulls in only what it uses.
FUZZ_SECONDS ?= 30
FUZZ_SANITIZE := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
$(BUILD)/fuzz/bin/%: tests/fuzz/%.c $(BUILD)/fuzz/libvultus.a
	@mkdir -p $(dir $@)
	clang -std=c17 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -fsanitize-link-c++-runtime \
		-Isrc $(PKG_CFLAGS) \
		-o $@ $< $(BUILD)/fuzz/libvultus.a $(LDLIBS)

$(BUILD)/fuzz/libvultus.a: FORCE
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/fuzz CC=clang CXX=clang++ OPT=-O1 FUZZ_LIB=1 \
		EXTRA_CFLAGS="$(FUZZ_SANITIZE)" $(BUILD)/fuzz/libvultus.a

# clang's AddressSanitizer spends many minutes on the GEMM kernel's unrolled AVX-512 intrinsics
# (measured: over 300 s for src/nn/gemm.c at -O1, 17 s with UBSan alone). It parses no
# untrusted bytes, and make check runs it under gcc's ASan, so the fuzz build compiles it with
# UBSan and the fuzzer's coverage only.
ifeq ($(FUZZ_LIB),1)
$(BUILD)/obj/src/nn/gemm.o: override EXTRA_CFLAGS := -fsanitize=fuzzer-no-link,undefined \
	-fno-sanitize-recover=undefined
# The same for the depthwise kernels' unrolled sliding groups (measured: 195 s for
# src/nn/dwconv.c with ASan and UBSan, 98 s with UBSan alone, 2.4 s with the coverage only;
# 9.1 s with the coverage only since the fourth round's two-row groups; winograd.c takes
# 9.6 s with ASan and UBSan, so it keeps them);
# make check runs them under gcc's ASan and UBSan (test_fast, test_golden).
$(BUILD)/obj/src/nn/dwconv.o: override EXTRA_CFLAGS := -fsanitize=fuzzer-no-link
endif

fuzz: setup $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/bin/%)
	@set -o pipefail; for f in $(FUZZ_SRC:tests/fuzz/%.c=%); do \
		name=$${f#fuzz_}; mkdir -p $(BUILD)/fuzz/corpus-$$name; \
		echo "fuzz: $$f for $(FUZZ_SECONDS) s"; \
		$(BUILD)/fuzz/bin/$$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus-$$name \
			tests/fuzz/corpus/$$name 2>&1 | { grep -E 'stat::number_of_executed_units|ERROR|SUMMARY|crash-' || true; } \
			|| { echo "fuzz: $$f FAILED (artifacts in $(BUILD)/fuzz/)"; exit 1; }; \
	done

.PHONY: FORCE
FORCE:

models:
	@tools/fetch-models

# The engine against TF.js-WASM and ONNX Runtime in the same run (JSON lines + a table in
# $(BUILD)/bench-nn.{jsonl,txt}); BENCH_NN_ARGS="--quick" or model names for a shorter run.
bench-setup:
	@tools/bootstrap --bench
	@tools/fetch-models

# The benchmarks build in a second make, as run does: on a fresh machine the set-up installs
# pkg-config and the libraries' .pc files after this make read PKG_CFLAGS and PKG_LIBS.
bench-nn: bench-setup
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bench/nn/run $(BENCH_NN_ARGS)

bench: bench-nn

format:
	clang-format -i $(shell find src tests bench -name '*.[ch]' -o -name '*.cpp')

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/src/main.d

# The OpenAPI document is embedded into openapi.o by the assembler (.incbin).
$(BUILD)/obj/src/http/openapi.o: src/http/openapi.json
# The web page's files are embedded into static.o the same way.
$(BUILD)/obj/src/http/static.o: $(wildcard web/*)

# The gallery (exact scan and HNSW graph) against FAISS (Debian libfaiss-dev) on the same
# random and clustered vectors in the same run: JSON lines, then tables (also appended to
# $(BUILD)/bench-gallery/results.jsonl). Galleries and ground truth are built once into
# $(BUILD)/bench-gallery and reused. BENCH_GALLERY_ARGS="--sizes 20000,100000 --dims 192" for
# a shorter run, "--ann-only" for the HNSW comparison alone (100k and 1M, dim 192; a 1M graph
# takes 5-20 minutes to build here). Links only the gallery and base objects, so the rest of
# the library may be mid-edit.
GALLERY_BENCH_OBJ := $(filter $(BUILD)/obj/src/gallery/% $(BUILD)/obj/src/base/%,$(LIB_OBJ))
.PHONY: bench-gallery
bench-gallery: bench-setup
	@$(MAKE) --no-print-directory $(BUILD)/bench/gallery/bench_gallery $(BUILD)/bench/gallery/faiss_peer
	$(BUILD)/bench/gallery/bench_gallery --data $(BUILD)/bench-gallery \
		--peer $(BUILD)/bench/gallery/faiss_peer $(BENCH_GALLERY_ARGS)

$(BUILD)/bench/gallery/bench_gallery: bench/gallery/bench_gallery.c $(GALLERY_BENCH_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) -lsqlite3 -lpq -ljansson -lm -lstdc++ -pthread

$(BUILD)/bench/gallery/faiss_peer: bench/gallery/faiss_peer.cpp
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -o $@ $< -lfaiss -llapack -lblas -lgomp -lsqlite3 -pthread

# The face pipeline against Human (@vladmandic/human, TF.js WASM backend, node) on the same
# photos in the same run: per image and stage on 1 and 2 workers, then the ratios (JSON lines
# in $(BUILD)/bench-pipeline.jsonl, a table in $(BUILD)/bench-pipeline.txt).
# BENCH_PIPELINE_ARGS="--runs 5" for a shorter run, or image paths to time those instead.
.PHONY: bench-pipeline
bench-pipeline: setup
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bench/pipeline/run $(BENCH_PIPELINE_ARGS)

# The service under load (issue 5): `vultus serve` on loopback and a load generator of our own
# (bench/load/loadgen.c: epoll, keep-alive, closed and open loop) in a second process; the
# in-process pipeline rate in the same run for the ratio. JSON lines, then a table
# ($(BUILD)/bench-load.{jsonl,txt}). BENCH_LOAD_ARGS="--quick" for a short run.
.PHONY: bench-load
bench-load: setup
	@$(MAKE) --no-print-directory all $(BUILD)/bench/load/loadgen $(BUILD)/bench/load/collage
	@BUILD=$(BUILD) bench/load/run $(BENCH_LOAD_ARGS)

$(BUILD)/bench/load/loadgen: bench/load/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -lm

$(BUILD)/bench/load/collage: bench/load/collage.c $(BUILD)/libvultus.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libvultus.a $(LDFLAGS) $(LDLIBS)

# ---- install: one machine with systemd (README, "One machine with systemd") ----------------
# GNU conventions: PREFIX (default /usr/local), DESTDIR for a staging tree (packaging, tests),
# SYSCONFDIR for the example environment file. Units go to $(PREFIX)/lib/systemd/system, a
# folder systemd reads for /usr/local and /usr alike: /etc/systemd/system stays the
# administrator's (`systemctl edit`, overrides), and uninstall removes only what install put.
# With another PREFIX (/opt/vultus), set UNITDIR=/etc/systemd/system. The binary, the models
# and the backup script keep the Dockerfile's names: bin/vultus, the model pack as the
# service's VULTUS_MODELS. Paths in the units and the script are written for PREFIX and
# SYSCONFDIR as they are installed. Install does not build: run `make` first as yourself
# (sudo make install must not leave root-owned files in build/), and `make setup` or
# tools/fetch-models for models/.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
VULTUS_SHARE := $(PREFIX)/share/vultus
VULTUS_LIBEXEC := $(PREFIX)/lib/vultus
# The model pack's folders that `vultus serve` reads, and its licences (models/samples and the
# download cache stay in the checkout).
INSTALL_MODEL_DIRS := faceapi human licenses
UNITS := vultus.service vultus-backup.service vultus-backup.timer
SUBST := sed -e 's|/usr/local/|$(PREFIX)/|g' -e 's|/etc/vultus/|$(SYSCONFDIR)/vultus/|g'

.PHONY: install uninstall test-systemd
install:
	@test -x $(BUILD)/vultus || { \
		echo "install: $(BUILD)/vultus is not built: run make first" >&2; exit 1; }
	@for d in $(INSTALL_MODEL_DIRS); do test -d models/$$d || { \
		echo "install: models/$$d is missing: run make setup (or tools/fetch-models) first;" \
			"install copies the model pack, it does not fetch it" >&2; exit 1; }; done
	install -d -m 0755 $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(VULTUS_SHARE)/models \
		$(DESTDIR)$(VULTUS_LIBEXEC) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/vultus
	install -m 0755 $(BUILD)/vultus $(DESTDIR)$(PREFIX)/bin/vultus
	@# A previous version's models are replaced, not merged: a model dropped by the new pack
	@# must not linger.
	rm -rf $(addprefix $(DESTDIR)$(VULTUS_SHARE)/models/,$(INSTALL_MODEL_DIRS))
	cd models && find -L $(INSTALL_MODEL_DIRS) -type d \
			-exec install -d -m 0755 '$(abspath $(DESTDIR)$(VULTUS_SHARE))/models/{}' \; \
		&& find -L $(INSTALL_MODEL_DIRS) -type f \
			-exec install -m 0644 '{}' '$(abspath $(DESTDIR)$(VULTUS_SHARE))/models/{}' \;
	for u in $(UNITS); do $(SUBST) deploy/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u.tmp \
		&& chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp && mv -f $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u; done
	$(SUBST) deploy/systemd/vultus-backup > $(DESTDIR)$(VULTUS_LIBEXEC)/vultus-backup.tmp \
		&& chmod 0755 $(DESTDIR)$(VULTUS_LIBEXEC)/vultus-backup.tmp \
		&& mv -f $(DESTDIR)$(VULTUS_LIBEXEC)/vultus-backup.tmp $(DESTDIR)$(VULTUS_LIBEXEC)/vultus-backup
	@# The settings are the administrator's once installed: never overwritten. Mode 0600: it
	@# may hold VULTUS_STORE's database password.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env ]; then \
		echo "install: $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env exists: kept (the new example is deploy/systemd/vultus.env)"; \
	else $(SUBST) deploy/systemd/vultus.env > $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env \
		&& chmod 0600 $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env \
		&& echo "install: wrote $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env"; fi
	@# The service's own system user, on the real system only (not into a DESTDIR): a fixed
	@# account, so the store's owner stays the same across restarts, upgrades and reinstalls.
	@if [ -z "$(DESTDIR)" ] && ! getent passwd vultus >/dev/null; then \
		echo "install: creating the system user vultus"; \
		useradd --system --user-group --home-dir /var/lib/vultus --no-create-home \
			--shell /usr/sbin/nologin --comment "vultus face-analysis service" vultus; fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Removes what install put, never the data (/var/lib/vultus: the store and its backups). The
# environment file goes only while it is still the example as installed (settings someone wrote
# survive, as a Debian conffile does on remove); the user vultus stays: it owns the data.
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now vultus.service vultus-backup.timer 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/vultus $(DESTDIR)$(VULTUS_LIBEXEC)/vultus-backup \
		$(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -rf $(DESTDIR)$(VULTUS_SHARE)/models
	@if [ -f $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env ] && $(SUBST) deploy/systemd/vultus.env \
		| cmp -s - $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env; then \
		rm -f $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env; \
	elif [ -f $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env ]; then \
		echo "uninstall: $(DESTDIR)$(SYSCONFDIR)/vultus/vultus.env was edited: kept"; fi
	-rmdir $(DESTDIR)$(SYSCONFDIR)/vultus $(DESTDIR)$(VULTUS_SHARE) $(DESTDIR)$(VULTUS_LIBEXEC) 2>/dev/null
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# The install, the units and the readiness protocol alone (make test runs it too).
test-systemd: $(BUILD)/vultus $(BUILD)/tests/deploy/test_systemd
	@tools/run-tests $(BUILD) $(BUILD)/tests/deploy/test_systemd
