# espgw — build, test and demo. Two commands on a fresh Debian 12 machine:
#   make demo   install what it needs, build, bring the seed's tunnel up in network namespaces
#   make test   install what tests need, then run every test
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BUILD := build
# Debian packages the tests and the demo use, each by name: `make deps` installs with
# --no-install-recommends, so a package that is only a Recommends (libstrongswan-standard-plugins:
# charon's openssl and gcm plugins) must be listed here. test/deps checks that every file the tests
# and the demo load belongs to one of these or to a hard dependency of one.
# strongSwan is the interop partner, tshark the wire oracle, qemu & co. run `make vmtest`.
DEB_PKGS := strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins \
	tshark tcpdump iperf3 nftables clang-14 llvm-14 libbpf-dev linux-libc-dev iproute2 ethtool iputils-ping \
	qemu-system-x86 cpio zstd kmod prometheus systemd ruby git
# The Go release go.mod asks for; `make build` says how to get it instead of "go: command not found".
GO_MIN := 1.26
GO_TEST_TIMEOUT ?= 30m
# espgw's version (`espgw version`, the package's name), from git.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)

.PHONY: all build go-check package deps generate generate-check vet test test-go vmtest vmshell fuzz bench demo clean

all: build

build: go-check
	$(GO) build -ldflags '-X main.version=$(VERSION)' -o $(BUILD)/espgw ./cmd/espgw

# $(BUILD)/espgw_<version>_amd64.deb: static binary, hardened systemd unit, example config,
# man pages, completions (packaging/, built with nfpm from go.mod).
package: go-check
	VERSION=$(VERSION) packaging/build-deb.sh $(BUILD)

# One line that says what to do when Go is missing or too old (GOTOOLCHAIN=local: no download).
go-check:
	@v=$$(GOTOOLCHAIN=local $(GO) env GOVERSION 2>/dev/null | sed 's/^go//'); \
	if [ -z "$$v" ]; then echo "espgw needs Go $(GO_MIN) or newer and found no '$(GO)' in PATH or /usr/local/go/bin: unpack the official Go $(GO_MIN) tarball into /usr/local/go, or run make GO=/path/to/go"; exit 1; fi; \
	if [ "$$(printf '%s\n%s\n' "$(GO_MIN)" "$$v" | sort -V | head -n1)" != "$(GO_MIN)" ]; then echo "espgw needs Go $(GO_MIN) or newer, found $$v ($$(command -v $(GO))): install Go $(GO_MIN) into /usr/local/go"; exit 1; fi

# Installs only what is missing, so a prepared machine pays nothing.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		log=$$(mktemp); \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; } >$$log 2>&1 \
			|| { tail -n 20 $$log; rm -f $$log; echo "make deps: apt-get could not install:" $$missing; exit 1; }; \
		rm -f $$log; \
	fi

generate: go-check
	$(GO) generate ./loader/... ./datapath/esp/des3/...

# Fails when committed generated code (bpf2go output, 3DES S-box circuits) differs from what its sources produce.
generate-check: generate
	@git diff --exit-code --stat -- loader/ datapath/esp/des3/ || { echo "generated code is stale (bpf2go, 3DES circuits): run 'make generate' and commit"; exit 1; }

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# ESPGW_REQUIRE_INTEROP=1 turns "tool missing" skips of the interop tests into failures.
test-go: go-check
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
