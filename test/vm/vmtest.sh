#!/bin/bash
# vmtest.sh [-x] -- run espgw's kernel suite (test/kernel) inside a Debian VM whose kernel has ESP.
#   BUILD   build dir (default ./build): the image is cached in $BUILD/vm, keyed by build-image.sh
#   -x      interactive shell in the VM instead (make vmshell)
# Exit code: the suite's; 124 = VM timeout, 125 = VM died. On failure the VM log tail is printed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
IMG=$BUILD/vm
SHARE=$BUILD/vmshare
TIMEOUT=${VMTEST_TIMEOUT:-420}
export PATH=/usr/local/go/bin:$PATH

# Rebuild the image only when its recipe changed.
stamp=$(sha256sum "$ROOT/test/vm/build-image.sh" | cut -c1-16)
if [ "$(cat "$IMG/stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$IMG/initrd.img" ]; then
    rm -rf "$IMG"
    "$ROOT/test/vm/build-image.sh" "$IMG"
    echo "$stamp" > "$IMG/stamp"
fi

rm -rf "$SHARE"; mkdir -p "$SHARE"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$SHARE/espgw" ./cmd/espgw \
    && CGO_ENABLED=0 go test -c -tags vmtest -o "$SHARE/kernel.test" ./test/kernel)

if [ "${1:-}" = -x ]; then exec "$ROOT/test/vm/run-in-vm.sh" -i "$IMG" -s "$SHARE" -x; fi

set +e
"$ROOT/test/vm/run-in-vm.sh" -i "$IMG" -s "$SHARE" -t "$TIMEOUT" -m 1536 -l "$SHARE/vm.log" -- \
    "ESPGW_BIN=/host/espgw ESPGW_REQUIRE_INTEROP=1 ./kernel.test -test.v -test.count=1 -test.timeout $((TIMEOUT - 30))s"
rc=$?
set -e
if [ $rc -ne 0 ]; then
    echo "vmtest: FAILED (exit $rc); last lines of the VM log:" >&2
    tail -n 60 "$SHARE/vm.log" 2>/dev/null >&2 || echo "(no VM log: the VM died before the suite wrote one)" >&2
fi
exit $rc
