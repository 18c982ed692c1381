#!/bin/sh
# mkinitramfs.sh [-r ROOT] [-t FILES] OUTDIR [KERNEL_VERSION]
#
# Builds the default images of troupe's qemu boards from what Debian
# installed (busybox-static, linux-image-cloud-amd64, cpio): OUTDIR/vmlinuz
# (the kernel) and OUTDIR/initrd (a gzipped busybox initramfs). Nothing is
# downloaded.
#
# -r ROOT takes the kernel (ROOT/boot/vmlinuz-*), its modules
# (ROOT/lib/modules/VERSION, with modules.dep) and busybox (ROOT/bin/busybox)
# from a tree of extracted Debian packages instead of /: that is how the
# aarch64 images are built, from the arm64 packages fetch-arm64.sh extracts.
# A busybox the host cannot run installs its applet links at boot.
#
# -t FILES puts the tree FILES in the guest's /tmp at every boot (troupe's
# test-shell helpers, so that they need not be typed on the console).
#
# The init mounts proc, sys, dev, devpts and /tmp (and copies the -t files
# there), loads the virtio network and console-port modules (the latter:
# the MultiNode side channel's port), configures eth0 from
# troupe.ip=ADDR/PREFIX on the kernel command line (troupe.name=NAME sets
# the hostname), then prints "NAME login: " on
# the console and, for any user name, starts a shell that owns the serial
# port as its controlling tty (setsid cttyhack), so /dev/tty works. When the
# shell exits the login prompt comes back, like a getty's.
set -eu

usage='usage: mkinitramfs.sh [-r ROOT] [-t FILES] OUTDIR [KERNEL_VERSION]'
sysroot=
tmpfiles=
while getopts r:t: opt; do
	case $opt in
	r) sysroot=$OPTARG ;;
	t) tmpfiles=$OPTARG ;;
	*) echo "$usage" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
out=${1:?$usage}
kver=${2:-}
if [ -n "$sysroot" ]; then
	hint="run make deps (qemu/images/fetch-arm64.sh)"
else
	hint="install busybox-static and linux-image-cloud-amd64"
fi
if [ -z "$kver" ]; then
	kernel=$(ls -1 "$sysroot"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
	[ -n "$kernel" ] || { echo "mkinitramfs.sh: no $sysroot/boot/vmlinuz-*: $hint" >&2; exit 1; }
	kver=${kernel##*/vmlinuz-}
fi
kernel=$sysroot/boot/vmlinuz-$kver
moddir=$sysroot/lib/modules/$kver
busybox=$sysroot/bin/busybox
for f in "$kernel" "$moddir/modules.dep" "$busybox"; do
	[ -r "$f" ] || { echo "mkinitramfs.sh: $f missing: $hint" >&2; exit 1; }
done
command -v cpio >/dev/null || { echo "mkinitramfs.sh: cpio missing: install cpio" >&2; exit 1; }

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/bin" "$root/sbin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" \
	"$root/root" "$root/var/www" "$root/lib/modules"
cp "$busybox" "$root/bin/busybox"
if [ -n "$tmpfiles" ]; then
	mkdir -p "$root/lib/troupe/tmp"
	cp -R "$tmpfiles"/. "$root/lib/troupe/tmp/"
fi
if apps=$("$busybox" --list 2>/dev/null); then
	for app in $apps; do
		[ "$app" = busybox ] || ln -s busybox "$root/bin/$app"
	done
else
	# Another architecture's busybox: the init installs the links.
	ln -s busybox "$root/bin/sh"
fi

# Modules and their dependencies (modules.dep lists all of them), in load
# order; those built into the kernel are simply not in modules.dep.
order=$work/order
: >"$order"
add() {
	grep -qx "$1" "$order" && return 0
	line=$(grep "^$1:" "$moddir/modules.dep" || true)
	[ -n "$line" ] || return 0
	for dep in ${line#*:}; do add "$dep"; done
	echo "$1" >>"$order"
}
for m in virtio virtio_ring virtio_pci virtio_net virtio_blk virtio_console; do
	path=$(grep -o "^[^:]*/$m\.ko[^:]*:" "$moddir/modules.dep" | head -n 1 | tr -d :) || true
	[ -n "$path" ] && add "$path"
done
while read -r m; do
	case $m in
	*.ko) cp "$moddir/$m" "$root/lib/modules/" ;;
	*.ko.xz) xz -dc "$moddir/$m" >"$root/lib/modules/$(basename "$m" .xz)" ;;
	*.ko.zst) zstd -qdc "$moddir/$m" >"$root/lib/modules/$(basename "$m" .zst)" ;;
	*.ko.gz) gzip -dc "$moddir/$m" >"$root/lib/modules/$(basename "$m" .gz)" ;;
	esac
	b=$(basename "$m")
	echo "${b%.ko*}.ko" >>"$root/etc/modules"
done <"$order"
touch "$root/etc/modules"

echo 'root::0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
cat >"$root/etc/profile" <<'PROFILE'
export PATH=/bin:/sbin HOME=/root TERM=vt100
cd /root
PS1='# '
PROFILE

cat >"$root/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin
[ -e /bin/mount ] || /bin/busybox --install -s /bin
mount -t devtmpfs dev /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
[ -d /lib/troupe/tmp ] && cp -a /lib/troupe/tmp/. /tmp/
while read -r m; do insmod "/lib/modules/$m" 2>/dev/null; done </etc/modules
ip link set lo up
name=board
addr=
for arg in $(cat /proc/cmdline); do
	case $arg in
	troupe.ip=*) addr=${arg#troupe.ip=} ;;
	troupe.name=*) name=${arg#troupe.name=} ;;
	esac
done
hostname "$name"
if [ -n "$addr" ]; then
	ip link set eth0 up && ip addr add "$addr" dev eth0 || echo "init: cannot configure eth0 with $addr"
fi
while :; do
	printf '\n%s login: ' "$name"
	read -r user || sleep 1
	setsid cttyhack sh -l
done
INIT
chmod 755 "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet -R 0:0) | gzip -1 >"$work/initrd"
cp "$kernel" "$work/vmlinuz"
mv "$work/initrd" "$out/initrd"
mv "$work/vmlinuz" "$out/vmlinuz"
echo "$kver" >"$out/version"
