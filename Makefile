# espgw — build, test and demo. Two commands on a fresh Debian 12 machine:
#   make demo   install what it needs, build, bring the seed's tunnel up in network namespaces
#   make test   install what tests need, then run every test
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BUILD := build
# Debian packages the tests and the demo use (strongSwan is the interop partner, tshark the wire oracle).
DEB_PKGS := strongswan-charon strongswan-swanctl libcharon-extra-plugins tshark tcpdump iperf3 \
	clang-14 llvm-14 libbpf-dev linux-libc-dev iproute2 ethtool iputils-ping nftables
GO_TEST_TIMEOUT ?= 30m

.PHONY: all build deps generate generate-check vet test test-go vmtest vmshell fuzz bench demo clean

all: build

build:
	$(GO) build -o $(BUILD)/espgw ./cmd/espgw

# Installs only what is missing, so a prepared machine pays nothing.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

generate:
	$(GO) generate ./loader/... ./datapath/esp/des3/...

# Fails when committed generated code (bpf2go output, 3DES S-box circuits) differs from what its sources produce.
generate-check: generate
	@git diff --exit-code --stat -- loader/ datapath/esp/des3/ || { echo "generated code is stale (bpf2go, 3DES circuits): run 'make generate' and commit"; exit 1; }

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# ESPGW_REQUIRE_INTEROP=1 turns "tool missing" skips of the interop tests into failures.
test-go:
	ESPGW_REQUIRE_INTEROP=1 $(GO) test -count=1 -timeout $(GO_TEST_TIMEOUT) ./...

test: deps generate-check vet test-go vmtest

# Kernel suite (test/kernel) in a Debian 6.1 VM under qemu TCG: real kernel ESP/XFRM, strongSwan
# kernel-netlink, eBPF on a pre-TCX kernel. The image is cached in $(BUILD)/vm.
vmtest:
	BUILD=$(CURDIR)/$(BUILD) bash test/vm/vmtest.sh

# The same VM with an interactive shell (binaries in /host); Ctrl-A x quits.
vmshell:
	BUILD=$(CURDIR)/$(BUILD) bash test/vm/vmtest.sh -x

# Short coverage-guided runs of every fuzz target (not part of `make test`).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./bench/...

demo: deps build
	./scripts/demo.sh $(BUILD)/espgw

clean:
	rm -rf $(BUILD)
