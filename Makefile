# troupe — see README.md. `make run` for the demo, `make test` for every test.
GO      ?= go
BIN     := bin/troupe
# Debian packages the tests need: the sim boards' shell tools, netcat for
# the MultiNode examples that talk TCP between boards, the real peers of
# the real-board tests (pdudaemon, ser2net), the browser of the web UI test
# (chromium, driven by chromedp), QEMU with a kernel and busybox for the
# qemu boards (their initramfs is built by qemu/images/mkinitramfs.sh) and
# a C compiler (cgo: the sim sandbox's stage, sim/stage.c).
APT_PKGS := coreutils util-linux tar netcat-openbsd pdudaemon ser2net chromium chromium-driver \
	qemu-system-x86 qemu-system-arm busybox-static linux-image-cloud-amd64 cpio git xz-utils zstd bzip2 gcc libc6-dev
TOOLS    := sh base64 setsid tar nc /usr/sbin/pdudaemon /usr/sbin/ser2net chromium \
	qemu-system-x86_64 qemu-system-aarch64 /bin/busybox cpio unshare gcc git xz zstd bzip2
# The aarch64 QEMU boards' kernel and busybox: Debian's arm64 packages,
# downloaded with apt and extracted (not installed) here by
# qemu/images/fetch-arm64.sh; exported so the tests look in the same place
# (qemu.Arm64Dir; default <user cache dir>/troupe/arm64).
export TROUPE_ARM64_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/troupe/arm64
# Fuzz budgets are counts, not durations: Go 1.26's fuzz coordinator can fail
# a duration run with a spurious "context deadline exceeded" when -fuzztime
# expires (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
FUZZTIME ?= 30000x
# Each new interesting input is minimized, by default for up to 60 s (a
# duration again): FuzzSubmission stalled a minute per input found. A count
# keeps crashers small enough to read without stalling the run.
FUZZMINIMIZE ?= 1000x
# A fuzz run has no per-input timeout: an input that makes a target wait
# (FuzzServe's rate limit held each of thousands of lines 2 ms) stalled a
# CI run for over an hour. Each target gets FUZZLIMIT at most (they take
# 3-10 s), then fails naming itself.
FUZZLIMIT ?= 600
# package:FuzzTarget pairs run for $(FUZZTIME) each by `make test`;
# package:FuzzTarget:COUNTx runs that target COUNT times instead (one whose
# every execution costs much more than the others': still thousands of
# inputs, in about the time the others take). FuzzSubmission parses and
# checks a whole job (LAVA imports too) and FuzzReadActions writes a file
# in a new directory per input: some 500 and 250 inputs/s on 2 loaded cores,
# against thousands for the parsers.
FUZZ :=
FUZZ += ./jobs:FuzzParse
FUZZ += ./lab:FuzzParseLab
FUZZ += ./testshell:FuzzParseLine
FUZZ += ./testshell:FuzzParseMultiNode
FUZZ += ./testshell:FuzzAttach
FUZZ += ./testshell:FuzzServe
FUZZ += ./coordinator:FuzzGroup
FUZZ += ./lava:FuzzImport
FUZZ += ./lava:FuzzTestDefinition
FUZZ += ./lava:FuzzSecretValues:10000x
FUZZ += ./jobs:FuzzSecretValues
FUZZ += ./sim:FuzzNFSRoot
FUZZ += ./scenario:FuzzParse
FUZZ += ./boot:FuzzFill
FUZZ += ./console:FuzzStripANSI
FUZZ += ./server:FuzzSubmission:10000x
FUZZ += ./cmd/troupe:FuzzParseFlags
FUZZ += ./server:FuzzReadActions:10000x
FUZZ += ./hardware/console:FuzzTelnetDecode
FUZZ += ./cmd/benchtable:FuzzParse
FUZZ += ./lava:FuzzLAVATemplate
FUZZ += ./qemu:FuzzContextQemu

.PHONY: all build cc run test deps vet unit fuzz bench clean proto

all: build

# troupe is built with cgo (the sim sandbox's stage, sim/stage.c): a C
# compiler is installed first if the machine has none.
build: cc
	$(GO) build -o $(BIN) ./cmd/troupe

cc:
	@command -v gcc >/dev/null && [ -e /usr/include/stdio.h ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev; }

run: build
	./$(BIN) run --out results/hello-multinode examples/hello-multinode.toml

deps:
	@missing=""; for c in $(TOOLS); do command -v $$c >/dev/null || [ -x "$$c" ] || missing=1; done; \
	nc -h 2>&1 | grep -q OpenBSD || missing=1; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS); fi
	@[ -s "$(TROUPE_ARM64_DIR)/packages" ] || { \
	  arm64() { echo "make deps: $$1: the aarch64 QEMU boards have no kernel (as root: dpkg --add-architecture arm64 && apt-get update && sh qemu/images/fetch-arm64.sh $(TROUPE_ARM64_DIR))" >&2; exit 1; }; \
	  if ! dpkg --print-foreign-architectures | grep -qx arm64; then \
	    dpkg --add-architecture arm64 || arm64 "dpkg --add-architecture arm64 failed"; \
	    apt-get update -qq || arm64 "apt-get update failed"; \
	  elif ! apt-cache show --no-all-versions linux-image-cloud-arm64:arm64 >/dev/null 2>&1; then \
	    apt-get update -qq || arm64 "apt-get update failed"; \
	  fi; \
	  sh qemu/images/fetch-arm64.sh "$(TROUPE_ARM64_DIR)" || { echo "make deps: retrying after apt-get update" >&2; \
	    apt-get update -qq && sh qemu/images/fetch-arm64.sh "$(TROUPE_ARM64_DIR)"; } || arm64 "qemu/images/fetch-arm64.sh failed"; }
	$(GO) mod download

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# TROUPE_REQUIRE_TOOLS=1: a test whose tool is missing fails instead of
# skipping (internal/testenv), so `make test` never passes by skipping.
unit:
	TROUPE_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout 25m ./...

fuzz:
	@set -e; for t in $(FUZZ); do pkg=$${t%%:*}; fn=$${t#*:}; n=$(FUZZTIME); \
	  case $$fn in *:*) n=$${fn#*:}; fn=$${fn%%:*};; esac; \
	  echo "fuzz $$pkg $$fn ($$n)"; \
	  timeout -k 10 $(FUZZLIMIT) $(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$$n -fuzzminimizetime=$(FUZZMINIMIZE) $$pkg || \
	  { echo "fuzz $$pkg $$fn: failed, or still running after $(FUZZLIMIT) s (FUZZLIMIT)" >&2; exit 1; }; done

test: deps vet unit fuzz

# `make bench` runs the benchmarks into $(BENCH_OUT), then prints the
# issue-18 figures with their goals (cmd/benchtable; exit 1 if one failed).
BENCH_OUT ?= bench.out
bench:
	@: > $(BENCH_OUT)
	$(GO) test -run='^$$' -bench=. ./coordinator ./actors ./scheduler ./labstate ./workers 2>&1 | tee -a $(BENCH_OUT)
	$(GO) test -run='^$$' -bench=. -benchtime=3x -timeout=30m ./runner 2>&1 | tee -a $(BENCH_OUT)
	$(GO) test -run='^$$' -bench=HostShellStart -benchtime=300x ./runner 2>&1 | tee -a $(BENCH_OUT)
	TROUPE_BENCH_1000=1 $(GO) test -run='^$$' -bench='SyncJob/N=1000' -benchtime=1x -timeout=15m ./runner 2>&1 | tee -a $(BENCH_OUT)
	$(GO) test -run='^$$' -bench='SubmitLoad' -benchtime=1x -timeout=90m ./server 2>&1 | tee -a $(BENCH_OUT)
	$(GO) test -run='^$$' -bench=QemuJob -benchtime=3x ./qemu 2>&1 | tee -a $(BENCH_OUT)
	$(GO) test -run='^$$' -bench=Workers10x100 -benchtime=1x -timeout=20m ./cmd/troupe 2>&1 | tee -a $(BENCH_OUT)
	$(GO) run ./cmd/benchtable < $(BENCH_OUT)

# Regenerate the protobuf messages of the workers (the .pb.go files are
# committed): needs protoc (apt protobuf-compiler) and
# go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.33.0.
proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc --go_out=. --go_opt=paths=source_relative workers/workerpb/worker.proto

clean:
	rm -rf bin results
