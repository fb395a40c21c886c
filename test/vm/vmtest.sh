#!/bin/bash
# vmtest.sh [-x] -- run espgw's kernel suite (test/kernel) inside a Debian VM whose kernel has ESP.
#   BUILD          build dir (default ./build): the image is cached in $BUILD/vm, keyed by the recipe
#   VMTEST_RUN     -test.run pattern (default: every test; TestSystemdLifecycle runs in a second boot)
#   VMTEST_TIMEOUT seconds for the whole VM run (default 300)
#   VMTEST_ENV     NAME=VALUE words for the suite's environment in the VM, e.g.
#                  "ESPGW_VM_SCALE_N=100" (TestXfrmScale's tunnels, bench/README.md)
#   -x             interactive shell in the VM instead, binaries in /host (make vmshell)
# Exit code: the suite's (0 only if it printed its final PASS); 124 = VM timeout, 125 = VM died.
# On failure the tail of the VM console is printed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD;; esac
IMG=$BUILD/vm
SHARE=$BUILD/vmshare
TIMEOUT=${VMTEST_TIMEOUT:-300}
export PATH=/usr/local/go/bin:$PATH
t0=$(date +%s)

# Rebuild the image only when its recipe (script or package/kernel choice) changed.
stamp=$( { cat "$ROOT/test/vm/build-image.sh"; echo "${KFLAVOUR:-} ${PKGS:-} ${EXTRA_PKGS:-}"; } | sha256sum | cut -c1-16)
if [ "$(cat "$IMG/stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$IMG/initrd.img" ]; then
    rm -rf "$IMG"
    "$ROOT/test/vm/build-image.sh" "$IMG"
    echo "$stamp" > "$IMG/stamp"
fi
t1=$(date +%s)

# Static binaries: the VM has no Go toolchain and a different libc set.
rm -rf "$SHARE"; mkdir -p "$SHARE"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$SHARE/espgw" ./cmd/espgw \
    && CGO_ENABLED=0 go test -c -tags vmtest -o "$SHARE/kernel.test" ./test/kernel) \
    || { echo "vmtest: FAILED: cannot build espgw or the kernel suite" >&2; exit 1; }
# The package and the Vagrant lab's provisioning scripts, for TestSystemdLifecycle.
DEB=$("$ROOT/packaging/build-deb.sh" "$SHARE") || { echo "vmtest: FAILED: cannot build the espgw package" >&2; exit 1; }
cp -r "$ROOT/packaging/vagrant" "$SHARE/vagrant"
t2=$(date +%s)

if [ "${1:-}" = -x ]; then
    echo "vmtest: shell in the VM; /host holds espgw and kernel.test; run e.g."
    echo "  ESPGW_VM=1 ESPGW_BIN=/host/espgw ./kernel.test -test.v -test.run Xfrm"
    exec "$ROOT/test/vm/run-in-vm.sh" -i "$IMG" -s "$SHARE" -m 1536 -x
fi

# Two boots of the same image: the suite under the image's own /init, then TestSystemdLifecycle
# with systemd as PID 1 (rdinit=), which the first boot skips. VMTEST_RUN selects either or both.
RUN=()
[ -z "${VMTEST_RUN:-}" ] || RUN=(-test.run "'$VMTEST_RUN'")
SYSTEMD_TEST=TestSystemdLifecycle
set +e
rc=0
: > "$SHARE/console.log"
if [ -z "${VMTEST_RUN:-}" ] || [ "$VMTEST_RUN" != "$SYSTEMD_TEST" ]; then
    "$ROOT/test/vm/run-in-vm.sh" -i "$IMG" -s "$SHARE" -t "$TIMEOUT" -m 1536 -l "$SHARE/vm.log" -- \
        "ESPGW_VM=1 ESPGW_BIN=/host/espgw ${VMTEST_ENV:-} ./kernel.test -test.v -test.count=1 -test.parallel 4 -test.timeout $((TIMEOUT - 30))s -test.skip '^$SYSTEMD_TEST\$' ${RUN[*]}" \
        2>&1 | tee -a "$SHARE/console.log"
    rc=${PIPESTATUS[0]}
    if [ $rc -eq 0 ] && ! grep -qx 'PASS' "$SHARE/vm.log" 2>/dev/null; then
        echo "vmtest: the VM exited 0 but the suite never printed PASS" >&2; rc=1
    fi
fi
if [ $rc -eq 0 ] && { [ -z "${VMTEST_RUN:-}" ] || grep -qE "$VMTEST_RUN" <<<"$SYSTEMD_TEST"; }; then
    VM_APPEND="rdinit=/lib/systemd/systemd" "$ROOT/test/vm/run-in-vm.sh" -i "$IMG" -s "$SHARE" -t "$TIMEOUT" -m 1536 -l "$SHARE/vm.log" -- \
        "ESPGW_VM=1 ESPGW_BIN=/host/espgw ESPGW_DEB=$(basename "$DEB") ./kernel.test -test.v -test.count=1 -test.timeout $((TIMEOUT - 30))s -test.run '^$SYSTEMD_TEST\$'" \
        2>&1 | tee -a "$SHARE/console.log"
    rc=${PIPESTATUS[0]}
    if [ $rc -eq 0 ] && ! grep -qx 'PASS' "$SHARE/vm.log" 2>/dev/null; then
        echo "vmtest: the systemd boot exited 0 but $SYSTEMD_TEST never printed PASS" >&2; rc=1
    fi
fi
set -e
t3=$(date +%s)
echo "vmtest: image $((t1 - t0))s, build $((t2 - t1))s, VM $((t3 - t2))s, total $((t3 - t0))s"
if [ $rc -ne 0 ]; then
    case $rc in 124) why="VM timeout after ${TIMEOUT}s";; 125) why="VM died without a result";; *) why="suite exit $rc";; esac
    echo "vmtest: FAILED ($why); last lines of the VM console:" >&2
    tail -n 80 "$SHARE/console.log" >&2
    echo "vmtest: FAILED ($why); failures and panics:" >&2
    grep -E '^(\s*--- FAIL|FAIL|panic:)' "$SHARE/console.log" >&2 || echo "(none printed: see above)" >&2
    exit $rc
fi
echo "vmtest: PASS"
