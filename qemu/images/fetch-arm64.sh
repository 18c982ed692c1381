#!/bin/sh
# fetch-arm64.sh [-u] OUTDIR
#
# Gets what the default aarch64 images of troupe's qemu boards are built
# from: Debian's arm64 cloud kernel (the package linux-image-cloud-arm64
# depends on) and busybox-static:arm64, downloaded with apt-get download
# from the machine's own apt sources (nothing else is contacted) and
# extracted, not installed, into OUTDIR/root: boot/vmlinuz-VERSION,
# lib/modules/VERSION (with modules.dep, made by depmod) and bin/busybox.
# mkinitramfs.sh -r OUTDIR/root builds the initramfs from it.
#
# apt must know the arm64 architecture: as root,
#   dpkg --add-architecture arm64 && apt-get update
# (`make deps` does that, then runs this script).
#
# Idempotent: once OUTDIR/packages exists nothing is done (and apt is not
# asked) unless -u is given, which fetches the current candidates again if
# they differ from the ones extracted. A run that fails leaves OUTDIR as it
# was.
set -eu

usage='usage: fetch-arm64.sh [-u] OUTDIR'
update=
if [ "${1:-}" = -u ]; then
	update=1
	shift
fi
out=${1:?$usage}
[ $# -eq 1 ] || { echo "$usage" >&2; exit 2; }

if [ -z "$update" ] && [ -s "$out/packages" ] && [ -d "$out/root" ]; then
	exit 0
fi

fail() {
	echo "fetch-arm64.sh: $*" >&2
	exit 1
}
for tool in apt-cache apt-get dpkg-deb depmod; do
	command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] ||
		fail "$tool missing (Debian's apt, dpkg and kmod are needed)"
done
depmod=$(command -v depmod || { [ -x /usr/sbin/depmod ] && echo /usr/sbin/depmod; } || echo /sbin/depmod)

# The candidates, in one apt-cache call (each takes seconds): the
# metapackage depends on the versioned image package, e.g.
# linux-image-6.1.0-56-cloud-arm64 (= 6.1.192-2).
meta=linux-image-cloud-arm64:arm64
info=$(apt-cache show --no-all-versions "$meta" busybox-static:arm64 2>&1) ||
	fail "apt has no $meta or busybox-static:arm64: as root run dpkg --add-architecture arm64 && apt-get update (or make deps): $info"
kdep=$(printf '%s\n' "$info" | sed -n 's/^Depends: *\(linux-image-[^ ,]* (= [^)]*)\).*/\1/p' | head -n 1)
kpkg=${kdep%% *}
kpkg=${kpkg%:arm64}:arm64
kver=${kdep##*= }
kver=${kver%)}
bbver=$(printf '%s\n' "$info" | awk '/^Package: busybox-static$/ { p = 1 } p && /^Version: / { print $2; exit }')
[ -n "$kdep" ] && [ -n "$bbver" ] || fail "cannot tell the kernel package $meta depends on or the version of busybox-static:arm64 from apt-cache show"
want="$kpkg $kver
busybox-static:arm64 $bbver"
if [ -s "$out/packages" ] && [ -d "$out/root" ] && [ "$(cat "$out/packages")" = "$want" ]; then
	exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/debs" "$work/root"
# -o APT::Sandbox::User=root: the _apt user may not write to $work.
(cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "$kpkg=$kver" "busybox-static:arm64=$bbver") >"$work/log" 2>&1 ||
	fail "apt-get download $kpkg=$kver busybox-static:arm64=$bbver failed (apt-get update?): $(tail -n 3 "$work/log")"
for deb in "$work"/debs/*.deb; do
	dpkg-deb -x "$deb" "$work/root" || fail "dpkg-deb -x $deb failed"
done
release=$(ls -1 "$work"/root/boot/vmlinuz-* 2>/dev/null | sed 's|.*/vmlinuz-||' | sort -V | tail -n 1)
[ -n "$release" ] && [ -d "$work/root/lib/modules/$release" ] || fail "$kpkg has no boot/vmlinuz-* and lib/modules"
[ -x "$work/root/bin/busybox" ] || fail "busybox-static:arm64 has no bin/busybox"
# Installing the package would run depmod; extracting it does not.
"$depmod" -b "$work/root" "$release" || fail "depmod -b $work/root $release failed"

rm -rf "$out/root" "$out/packages"
mv "$work/root" "$out/root"
printf '%s\n' "$want" >"$out/packages"
echo "fetch-arm64.sh: $out/root: Linux $release ($kpkg $kver), busybox-static:arm64 $bbver"
