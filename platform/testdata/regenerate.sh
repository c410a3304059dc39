#!/bin/sh
# Regenerates every DTB in this directory. See README.md.
# Needs qemu-system-aarch64 (QEMU 7.2 was used) and dtc (device-tree-compiler).
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# dump NAME MACHINE-OPTIONS QEMU-ARGS...: QEMU writes a 1 MiB padded DTB;
# a dtb->dtb pass through dtc drops the padding.
dump() {
	name=$1 machine=$2
	shift 2
	qemu-system-aarch64 -M "$machine,dumpdtb=$tmp/$name.dtb" "$@" -nographic -nic none
	dtc -q -I dtb -O dtb -o "$name.dtb" "$tmp/$name.dtb"
}

S=virt,secure=on,virtualization=on
MAX="-cpu max,pauth-impdef=on"
dump virt-gicv3-smp4-1g          $S,gic-version=3 $MAX -smp 4 -m 1G
dump virt-gicv3-smp4-512m        $S,gic-version=3 $MAX -smp 4 -m 512M
dump virt-gicv3-smp4-3g          $S,gic-version=3 $MAX -smp 4 -m 3G
dump virt-gicv3-smp1-1g          $S,gic-version=3 $MAX -smp 1 -m 1G
dump virt-gicv3-smp8-1g          $S,gic-version=3 $MAX -smp 8 -m 1G
dump virt-gicv3-smp17-1g         $S,gic-version=3 $MAX -smp 17 -m 1G
dump virt-gicv2-smp4-1g          $S,gic-version=2 $MAX -smp 4 -m 1G
dump virt-gicv2-smp8-1g          $S,gic-version=2 $MAX -smp 8 -m 1G
dump virt-gicv3-a72-smp4-1g      $S,gic-version=3 -cpu cortex-a72 -smp 4 -m 1G
dump virt-nonsecure-gicv3-smp4-1g virt,virtualization=on,gic-version=3 $MAX -smp 4 -m 1G

# Hand-written trees (the bad-* ones are meant to draw dtc warnings).
for f in minimal synthetic-board bad-stdout-path bad-reg-length unsupported-console bad-gpio-phandle hv-bootargs \
	zynqmp-board; do
	dtc -q -I dts -O dtb -o "$f.dtb" "src/$f.dts"
done
