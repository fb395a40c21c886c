#!/bin/bash
# build-deb.sh OUTDIR -- OUTDIR/espgw_<version>_amd64.deb from this tree (make package).
#   VERSION  espgw's version (default: git describe --tags --always --dirty), shown by `espgw version`
# The Debian version is derived from it: v1.2.3-4-gabc1234-dirty -> 1.2.3+4.gabc1234.dirty;
# a tree without a tag -> 0~git<hash> (sorts before any tagged release). Prints the .deb's path.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?usage: build-deb.sh OUTDIR}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
export PATH=/usr/local/go/bin:$PATH
cd "$ROOT"
VERSION=${VERSION:-$(git describe --tags --always --dirty)}
v=${VERSION#v}
case $v in [0-9]*.*) ;; *) v=0~git$v;; esac
DEB_VERSION=$(sed 's/-/+/; s/-/./g' <<<"$v")

STAGE=$(mktemp -d /tmp/espgw-deb.XXXXXX); trap 'rm -rf "$STAGE"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$STAGE/espgw" ./cmd/espgw
# man pages and completions come from the binary's own commands; dated by the commit
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
"$STAGE/espgw" man "$STAGE/man"
gzip -9n "$STAGE"/man/*.8
mkdir "$STAGE/completion"
for sh in bash zsh fish; do "$STAGE/espgw" completion "$sh" > "$STAGE/completion/espgw.$sh"; done

DEB=$OUT/espgw_${DEB_VERSION}_amd64.deb
ESPGW_VERSION=$DEB_VERSION ESPGW_STAGE=$STAGE go tool nfpm package -f packaging/nfpm.yaml -p deb -t "$DEB" >&2
echo "$DEB"
