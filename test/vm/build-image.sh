#!/bin/bash
# build-image.sh OUTDIR -- the kernel-suite VM: Debian's own kernel (ESP, XFRM, eBPF) + strongSwan,
# booted by run-in-vm.sh under qemu TCG. ~25 s (+~30 s to apt-install qemu on a fresh machine).
#
# Produces OUTDIR/vmlinuz + OUTDIR/initrd.img (zstd cpio, ~20 MB, 66 MB unpacked) + OUTDIR/kver.
# The initramfs is the apt-resolved dependency closure of $PKGS, unpacked with dpkg-deb (no maintainer
# scripts), plus the kernel's net/crypto/9p/virtio modules and an /init that mounts the 9p shares
# "ctl" and "host0", runs /ctl/cmd.sh and powers off (see run-in-vm.sh).
# Env: KFLAVOUR (default amd64; cloud-amd64 has NO 9p), PKGS, EXTRA_PKGS (e.g. "nftables iptables"),
# SKIP_APT_UPDATE=1 (use the host's package lists as they are).
# Every failure stops the build with a line starting "build-image: ERROR" that says what and why.
set -euo pipefail
OUT=${1:?usage: build-image.sh OUTDIR}
KFLAVOUR=${KFLAVOUR:-amd64}
# ethtool: testutil turns TX checksum offload off on captured links. libstrongswan-standard-plugins:
# openssl (3DES, modp1024) and gcm for the strongSwan partner.
PKGS=${PKGS:-"dash busybox iproute2 iputils-ping tcpdump ethtool kmod strongswan-charon strongswan-swanctl libstrongswan-standard-plugins base-passwd libc-bin"}
# systemd, dpkg, charon-systemd, base-files, procps (/bin/kill, for ExecReload): the boot with systemd
# as PID 1 (rdinit=, see vmtest.sh) in which TestSystemdLifecycle runs the espgw package as a service.
PKGS="$PKGS systemd dpkg charon-systemd base-files procps"
PKGS="$PKGS ${EXTRA_PKGS:-}"
t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
APT="-o APT::Sandbox::User=root -qq"

die() { echo "build-image: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (apt-get, dpkg-deb, depmod)"
command -v apt-get >/dev/null || die "needs a Debian/Ubuntu host with apt-get"

# apt-get update, retried: a mirror hiccup must not fail CI, a persistent failure must say so.
# (every time: a stale list names a kernel ABI the mirror no longer has; ~3 s)
apt_update() {
  local i out
  for i in 1 2 3; do
    if out=$(apt-get update -qq 2>&1) && ! grep -qE '^(E:|Err:)' <<<"$out"; then return 0; fi
    echo "build-image: apt-get update failed (attempt $i/3):" >&2; echo "$out" | tail -5 >&2; sleep $((i * 3))
  done
  die "apt-get update failed 3 times: cannot fetch package lists (network? /etc/apt/sources.list?)"
}

# --- host tools (a fresh Debian 12 CI machine lacks qemu, cpio, zstd, kmod) -------------------------
[ -n "${SKIP_APT_UPDATE:-}" ] || apt_update
need=""; for p in qemu-system-x86 cpio zstd kmod; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
  apt-get install -y -qq --no-install-recommends $need >/dev/null || die "cannot install host tools:$need"
fi
t1=$(date +%s)

# every requested package must have an install candidate, or the closure below is silently short
missing=""
for p in $PKGS "linux-image-$KFLAVOUR"; do
  cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/{print $2}')
  [ -n "$cand" ] && [ "$cand" != "(none)" ] || missing="$missing $p"
done
[ -z "$missing" ] || die "no install candidate for:$missing (typo, or a component missing from sources.list?)"

W=$(mktemp -d /tmp/vmbuild.XXXXXX); trap 'rm -rf "$W"' EXIT
R=$W/root; mkdir -p "$R" "$W/debs" "$W/k"
KPKG=$(apt-cache depends "linux-image-$KFLAVOUR" | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$KPKG" ] || die "linux-image-$KFLAVOUR depends on no linux-image-* package"
KVER=${KPKG#linux-image-}
# full dependency closure as if nothing were installed (empty dpkg status); drop perl & co
: > "$W/empty-status"
apt-get -s -o Dir::State::status="$W/empty-status" install --no-install-recommends $PKGS > "$W/sim" 2>&1 \
  || { tail -20 "$W/sim" >&2; die "cannot resolve the dependencies of: $PKGS"; }
awk '/^Inst /{print $2}' "$W/sim" \
  | grep -Ev '^(perl|perl-base|perl-modules-.*|libperl.*|lib.*-perl|usrmerge|libdb5\.3|libgdbm.*)$' > "$W/pkgs"
for p in $PKGS; do grep -qx "$p" "$W/pkgs" || die "package $p is not in the resolved closure (is it a virtual package? name the real one)"; done
# one retry after a fresh update: the lists may name versions the mirror has just replaced
download() { (cd "$W/debs" && apt-get download $APT $(cat "$W/pkgs") "$KPKG"); }
if ! download; then
  echo "build-image: apt-get download failed; updating package lists and retrying once" >&2
  apt_update; download || die "apt-get download failed for the image packages (network? mirror?)"
fi
t2=$(date +%s)

# --- rootfs: merged /usr like bookworm, unpack every deb ------------------------------------------
mkdir -p "$R"/usr/{bin,sbin,lib,lib64}; for d in bin sbin lib lib64; do ln -sfn usr/$d "$R/$d"; done
for f in "$W"/debs/*.deb; do
  case $f in */linux-image-*) continue;; esac
  dpkg-deb --fsys-tarfile "$f" | tar -x --keep-directory-symlink -C "$R"
done
mkdir -p "$R"/{etc,proc,sys,dev,run,tmp,root,host,ctl,var/tmp}
# /var/run and /var/lock point into /run as on a booted Debian (base-files ships them as directories)
rm -rf "$R/var/run" "$R/var/lock"; ln -sfn /run "$R/var/run"; ln -sfn /run/lock "$R/var/lock"
cp "$R/usr/share/base-passwd/passwd.master" "$R/etc/passwd"; cp "$R/usr/share/base-passwd/group.master" "$R/etc/group"
echo 'tcpdump:x:104:108::/nonexistent:/usr/sbin/nologin' >> "$R/etc/passwd"; echo 'tcpdump:x:108:' >> "$R/etc/group"
rm -rf "$R"/usr/share/{doc,man,locale,info,lintian}
ldconfig -r "$R"
# busybox applets for whatever the closure lacks (mount, cat, ls, unshare, timeout, ...; coreutils and
# util-linux are not in the closure). Debian's busybox prefers applets over $PATH only inside busybox sh;
# /bin/sh here is dash, so iproute2's ip wins over busybox ip.
mkdir -p "$R/usr/local/bin"
for a in $("$R/bin/busybox" --list); do
  found=""; for d in bin sbin usr/bin usr/sbin; do { [ -e "$R/$d/$a" ] || [ -L "$R/$d/$a" ]; } && found=1; done
  [ -n "$found" ] || ln -sfn /bin/busybox "$R/usr/local/bin/$a"
done

# --- kernel + modules ------------------------------------------------------------------------------
dpkg-deb -x "$W"/debs/${KPKG}_*.deb "$W/k"
KM=$W/k/lib/modules/$KVER/kernel; M=$R/lib/modules/$KVER
mkdir -p "$M/kernel/fs" "$M/kernel/drivers/net" "$M/kernel/drivers/char/hw_random" "$M/kernel/arch/x86"
cp -a "$W/k/lib/modules/$KVER"/modules.{builtin,builtin.modinfo,order} "$M/"
cp -a "$KM"/{net,crypto,lib} "$M/kernel/"                       # xfrm, esp4/6, netfilter, 9pnet, crypto
rm -rf "$M"/kernel/net/{wireless,mac80211,bluetooth,sunrpc,ceph,tipc,rxrpc,nfc,6lowpan,ieee802154,mac802154,rds,batman-adv,can,atm,ax25,netrom,rose,appletalk,x25,lapb,phonet,qrtr,smc,dsa,mctp,caif,l2tp} \
       "$R/usr/lib/x86_64-linux-gnu/gconv"                      # smaller initrd = faster unpack under TCG
cp -a "$KM/arch/x86/crypto" "$M/kernel/arch/x86/"
for d in 9p netfs fscache; do [ -d "$KM/fs/$d" ] && cp -a "$KM/fs/$d" "$M/kernel/fs/"; done
cp -a "$KM/drivers/virtio" "$M/kernel/drivers/"
cp -a "$KM"/drivers/net/*.ko "$M/kernel/drivers/net/"            # veth, dummy, virtio_net, ...
cp -a "$KM/drivers/char/hw_random/virtio-rng.ko" "$M/kernel/drivers/char/hw_random/" 2>/dev/null || true
depmod -b "$R" "$KVER"
[ -f "$M/kernel/fs/9p/9p.ko" ] || echo "WARNING: $KPKG has no 9p module: host shares will not work" >&2
# loaded at boot (everything else autoloads on demand). drbg = the crypto "stdrng": without it every
# ESP SA with an IV generator fails: "Kernel was unable to initialize cryptographic operations".
echo "virtio_pci 9pnet_virtio 9p virtio_net veth dummy tun xfrm_user af_key esp4 esp6 xfrm4_tunnel xfrm6_tunnel
 xfrm_interface authenc cbc ctr gcm ccm ghash echainiv seqiv drbg des3_ede sha1 sha256 sha512 aesni_intel" > "$R/etc/vm-modules"

mkdir -p "$R/usr/local/sbin"
cat > "$R/usr/local/sbin/vm-cmd" <<'EOF'
#!/bin/sh
# Load modules, mount the 9p shares, run /ctl/cmd.sh (output -> console + /ctl/log, exit code ->
# /ctl/rc). Exit 0 after the command, 2 without the 9p share, 3 without /ctl/cmd.sh.
# Called by /init (busybox PID 1) and by vm-cmd.service (systemd PID 1).
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/bin HOME=/root TERM=${TERM:-linux}
modprobe -a $(cat /etc/vm-modules) 2>/dev/null || for m in $(cat /etc/vm-modules); do
  modprobe "$m" 2>/dev/null || echo "[vm-init] modprobe $m failed"; done
mkdir -p /run/netns /run/lock
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ctl /ctl; then
  echo "[vm-init] cannot mount 9p share 'ctl' (kernel without 9p? cloud-amd64 has none): powering off"
  exit 2; fi
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host0 /host 2>/dev/null
[ -f /ctl/cmd.sh ] || exit 3
echo "[vm-init] up at $(cut -d' ' -f1 /proc/uptime)s, running command"
cd /host 2>/dev/null || cd /
# log to a file, not a pipe: daemons the command leaves running would hold a pipe open forever
: > /run/cmd.log; tail -f /run/cmd.log > /dev/console & tailpid=$!
/bin/sh /ctl/cmd.sh < /dev/null > /run/cmd.log 2>&1; rc=$?
sleep 1.2; kill $tailpid 2>/dev/null   # busybox tail -f polls once a second
cp /run/cmd.log /ctl/log; echo "$rc" > /ctl/rc
echo "[vm-init] command exited rc=$rc at $(cut -d' ' -f1 /proc/uptime)s"
cd /; sync; umount /host /ctl 2>/dev/null
exit 0
EOF
chmod 755 "$R/usr/local/sbin/vm-cmd"
cat > "$R/init" <<'EOF'
#!/bin/sh
# PID 1: mount basics, run vm-cmd, power off. Without /ctl/cmd.sh: interactive shell on the console.
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/bin HOME=/root TERM=${TERM:-linux}
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null    # for pinned eBPF maps and links
busybox hostname vm; ip link set lo up
vm-cmd
[ $? = 3 ] && busybox setsid busybox cttyhack /bin/sh -l
busybox poweroff -f
EOF
chmod 755 "$R/init"
# The systemd boot (kernel command line rdinit=/lib/systemd/systemd, see vmtest.sh): vm-cmd as a
# service, then power off. No udev in the image: gettys would wait for their devices: masked.
S=$R/etc/systemd/system
mkdir -p "$S/multi-user.target.wants"
cat > "$S/vm-cmd.service" <<'EOF'
[Unit]
Description=vmtest: run /ctl/cmd.sh from the host, then power off
After=basic.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/usr/local/sbin/vm-cmd
StandardOutput=journal+console
EOF
ln -sfn ../vm-cmd.service "$S/multi-user.target.wants/vm-cmd.service"
ln -sfn /usr/lib/systemd/system/multi-user.target "$S/default.target"
for u in serial-getty@.service getty@.service systemd-firstboot.service; do ln -sfn /dev/null "$S/$u"; done
: > "$R/etc/machine-id"; echo vm > "$R/etc/hostname"
# dpkg's database: every unpacked package as installed (no file lists, no conffiles), so that
# `dpkg -i` of the espgw package finds its dependencies
mkdir -p "$R"/var/lib/dpkg/{info,updates,triggers,alternatives} "$R/var/log"
for f in "$W"/debs/*.deb; do
  case $f in */linux-image-*) continue;; esac
  dpkg-deb -f "$f" | sed '1a Status: install ok installed'; echo
done > "$R/var/lib/dpkg/status"
: > "$R/var/lib/dpkg/available"

mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cp "$W/k/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
(cd "$R" && find . -xdev | cpio -o -H newc --quiet | zstd -q -3 -T0 > "$OUT/initrd.img.tmp") && mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
echo "$KVER" > "$OUT/kver"; cp "$W/pkgs" "$OUT/packages.txt"
t3=$(date +%s)
echo "build-image: $KVER, $(wc -l < "$W/pkgs") packages, rootfs $(du -sh "$R" | cut -f1), initrd $(du -h "$OUT/initrd.img" | cut -f1);" \
     "host tools $((t1-t0))s, download $((t2-t1))s, assemble $((t3-t2))s, total $((t3-t0))s -> $OUT"
