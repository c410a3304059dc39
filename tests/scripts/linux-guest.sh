#!/usr/bin/env bash
# Fetches an unmodified Debian arm64 kernel and busybox-static and builds the
# Linux guest's initramfs, all under build/linux/ (`make linux-guest`):
#
#   build/linux/Image               the kernel's raw arm64 Image
#   build/linux/initramfs.cpio.gz   busybox (static), /init (tests/linux/init),
#                                   hvctl and hvvirtio (built here, static
#                                   musl) and the kernel modules /init loads
#   build/linux/modules/            those modules and load-order, their
#                                   insmod order (from the kernel's modules.dep)
#   build/linux/config              the kernel's configuration, for reference
#   build/linux/zynqmp-zcu102-rev1.0.dtb
#                                   the ZCU102's device tree from the same
#                                   kernel package, unmodified (the zcu102
#                                   board, docs/boards.md)
#   build/linux/manifest.txt        package names, versions and SHA-256s
#   build/linux/debs/, apt/         the downloaded packages and apt's state
#
# The packages come from Debian's archive (bookworm and bookworm-security,
# main, arm64) through apt-get with a private state directory: the host's
# architectures, package lists and sources stay as they are. A second run
# downloads nothing; the initramfs is rebuilt only when /init, hvctl,
# dbgtest, hvvirtio or the mkinitramfs tool changed, or a module is missing
# (the modules are unpacked again from the downloaded kernel package).
# Remove build/linux to fetch again.
#
# Environment: LINUX_GUEST_SUITE (default bookworm), LINUX_GUEST_MIRROR
# (default http://deb.debian.org/debian), LINUX_GUEST_SECURITY_MIRROR
# (default http://deb.debian.org/debian-security; empty: none).
set -euo pipefail

cd "$(dirname "$0")/../.."
out=build/linux
suite=${LINUX_GUEST_SUITE:-bookworm}
mirror=${LINUX_GUEST_MIRROR:-http://deb.debian.org/debian}
security_mirror=${LINUX_GUEST_SECURITY_MIRROR-http://deb.debian.org/debian-security}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
init_src=tests/linux/init
tool_src=tests/src/bin/mkinitramfs.rs
hvctl_bin=target/aarch64-unknown-linux-musl/release/hvctl
# hvvirtio, the service VM's virtio back end (hvvirtio/), built the same way.
hvvirtio_bin=target/aarch64-unknown-linux-musl/release/hvvirtio
# dbgtest, the debugging test program (tests/linux/dbgtest), built the same way.
dbgtest_bin=target/aarch64-unknown-linux-musl/release/dbgtest
# The kernel modules /init loads, by module name: uio_pci_generic (for the
# PCI shim's functions and hvvirtio), virtio_mmio, virtio_blk and
# virtio_console (a client VM's forwarded devices), ext4 (which mounts the
# ext2 disk images too) and loop (the service builds its image on one).
# Their dependencies come from the kernel package (see below), not from here.
modules=(uio_pci_generic virtio_mmio virtio_blk virtio_console ext4 loop)
# Written with the modules: one line per module above, its name and then the
# modules to insmod for it, dependencies first (what modprobe would load).
load_order=$out/modules/load-order
# The ZCU102's device tree, as the kernel package ships it under
# /usr/lib/linux-image-<version>/xilinx/.
zcu102_dtb_name=zynqmp-zcu102-rev1.0.dtb
zcu102_dtb=$out/$zcu102_dtb_name

say() { echo "linux-guest: $*"; }
die() { echo "linux-guest: error: $*" >&2; exit 1; }

# hvctl, the guest's backdoor tool (cargo does nothing when it is current,
# leaving its time stamp alone).
command -v cargo >/dev/null || die "cargo is required (https://rustup.rs), for hvctl and tests/src/bin/mkinitramfs.rs"
cargo build --quiet --release --target aarch64-unknown-linux-musl -p hvctl -p dbgtest -p hvvirtio ||
    die "building hvctl, dbgtest and hvvirtio for aarch64-unknown-linux-musl failed"

# Whether build/linux/modules has every module of load-order, and
# load-order every module of $modules (an older build/linux has only the
# uio modules and no load-order).
modules_complete() {
    [[ -s $load_order ]] || return 1
    local m line dep
    for m in "${modules[@]}"; do
        line=$(grep "^$m " "$load_order") || return 1
        for dep in ${line#* }; do
            [[ -s $out/modules/$dep.ko ]] || return 1
        done
    done
}

# Up to date: nothing to do. (The checks that run commands stand outside
# [[ ]], where a function's name would only be a non-empty string.)
if [[ -s $out/Image && -s $out/initramfs.cpio.gz && -s $out/manifest.txt &&
      $out/initramfs.cpio.gz -nt $init_src && $out/initramfs.cpio.gz -nt $tool_src &&
      $out/initramfs.cpio.gz -nt $hvctl_bin && $out/initramfs.cpio.gz -nt $dbgtest_bin &&
      $out/initramfs.cpio.gz -nt $hvvirtio_bin && $out/initramfs.cpio.gz -nt $load_order &&
      ! $out/initramfs.cpio.gz -nt $out/manifest.txt ]] &&
    modules_complete && grep -q '^zcu102-dtb: ' $out/manifest.txt; then
    say "$out is up to date ($(sed -n 's/^kernel-package: //p' $out/manifest.txt))"
    exit 0
fi

# Host tools. All but cargo and kmod (depmod, modprobe: the modules'
# dependencies) are in every Debian installation; install what is missing
# anyway, and say so.
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
need=()
for tool in apt-get:apt apt-cache:apt dpkg-deb:dpkg tar:tar gzip:gzip sha256sum:coreutils depmod:kmod modprobe:kmod; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
[[ -r $keyring ]] || need+=(debian-archive-keyring)
if ((${#need[@]})); then
    command -v apt-get >/dev/null || die "apt-get is required (a Debian host); missing: ${need[*]}"
    say "installing ${need[*]} (apt)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p $out/debs
# The packages' file names, once downloaded.
kernel_deb=$(ls $out/debs/linux-image-*_arm64.deb 2>/dev/null | head -1 || true)
busybox_deb=$(ls $out/debs/busybox-static_*_arm64.deb 2>/dev/null | head -1 || true)

if [[ -z $kernel_deb || -z $busybox_deb ]]; then
    state=$PWD/$out/apt
    rm -rf "$state"
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
    : >"$state/status"
    {
        echo "deb [arch=arm64 signed-by=$keyring] $mirror $suite main"
        [[ -z $security_mirror ]] ||
            echo "deb [arch=arm64 signed-by=$keyring] $security_mirror $suite-security main"
    } >"$state/sources.list"
    apt_opts=(
        -oAPT::Architecture=arm64 -oAPT::Architectures=arm64
        -oDir::State="$state" -oDir::State::Lists="$state/lists"
        -oDir::State::status="$state/status" -oDir::Cache="$state/cache"
        -oDir::Etc::SourceList="$state/sources.list" -oDir::Etc::SourceParts=/dev/null
        -oDir::Etc::Preferences=/dev/null -oDir::Etc::PreferencesParts=/dev/null
        -oDebug::NoLocking=1 -oAPT::Sandbox::User=root
        -oAcquire::Languages=none
        -oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
        -oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
        -oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
        -oAcquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false
    )
    say "reading Debian $suite arm64 package lists (private apt state in $out/apt)"
    apt-get "${apt_opts[@]}" -qq --allow-releaseinfo-change update ||
        die "apt-get update failed for $mirror $suite (arm64)"
    # The metapackage's dependency is the current kernel, e.g.
    # linux-image-6.1.0-56-arm64.
    kernel_pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-arm64 |
        sed -n 's/^ *|\{0,1\}Depends: \(linux-image-[^ <>]*\)$/\1/p' | head -1)
    [[ -n $kernel_pkg ]] || die "cannot resolve the kernel package of linux-image-arm64"
    say "downloading $kernel_pkg and busybox-static (arm64)"
    rm -rf $out/debs.partial
    mkdir -p $out/debs.partial
    (cd $out/debs.partial && apt-get "${apt_opts[@]}" -qq download "$kernel_pkg" busybox-static) ||
        die "apt-get download failed"
    rm -rf $out/debs
    mv $out/debs.partial $out/debs
    kernel_deb=$(ls $out/debs/"$kernel_pkg"_*_arm64.deb)
    busybox_deb=$(ls $out/debs/busybox-static_*_arm64.deb)
    rm -rf $out/Image $out/busybox $out/modules $zcu102_dtb
fi

# The kernel: /boot/vmlinuz-* is a raw arm64 Image on Debian arm64 (the
# signed one is an uncompressed EFI-stub Image); decompress it if it is
# gzip'd, since the hypervisor parses the Image header.
if [[ ! -s $out/Image ]]; then
    vmlinuz=$(dpkg-deb -c "$kernel_deb" | awk '!found && $NF ~ /^\.\/boot\/vmlinuz-/ { print $NF; found = 1 }')
    [[ -n $vmlinuz ]] || die "no /boot/vmlinuz-* in $kernel_deb"
    config=${vmlinuz/vmlinuz-/config-}
    dpkg-deb --fsys-tarfile "$kernel_deb" | tar -xO "$vmlinuz" >$out/vmlinuz.tmp
    dpkg-deb --fsys-tarfile "$kernel_deb" | tar -xO "$config" >$out/config || true
    if [[ $(head -c 2 $out/vmlinuz.tmp | od -An -tx1 | tr -d ' ') == 1f8b ]]; then
        gzip -dc <$out/vmlinuz.tmp >$out/Image.tmp
        kernel_form="gzip-compressed Image, decompressed"
        rm $out/vmlinuz.tmp
    else
        mv $out/vmlinuz.tmp $out/Image.tmp
        kernel_form="raw Image"
    fi
    # arm64 Image header: magic "ARM\x64" at offset 56.
    [[ $(dd if=$out/Image.tmp bs=1 skip=56 count=4 2>/dev/null) == ARMd ]] ||
        die "$vmlinuz is not an arm64 Image (no ARM\\x64 magic at offset 56)"
    mv $out/Image.tmp $out/Image
    echo "$vmlinuz ($kernel_form)" >$out/kernel-file
    say "kernel $vmlinuz -> $out/Image ($kernel_form)"
fi

# The ZCU102's device tree, from the same package (the kernel's own copy
# for that board; nothing edits it).
if [[ ! -s $zcu102_dtb ]]; then
    dtb_path=$(dpkg-deb -c "$kernel_deb" |
        awk -v name="/xilinx/$zcu102_dtb_name" '!found && substr($NF, length($NF) - length(name) + 1) == name { print $NF; found = 1 }')
    if [[ -n $dtb_path ]]; then
        dpkg-deb --fsys-tarfile "$kernel_deb" | tar -xO "$dtb_path" >$zcu102_dtb.tmp
        # FDT magic d00dfeed.
        [[ $(head -c 4 $zcu102_dtb.tmp | od -An -tx1 | tr -d ' ') == d00dfeed ]] ||
            die "$dtb_path in $kernel_deb is not a flattened device tree"
        mv $zcu102_dtb.tmp $zcu102_dtb
        echo "$dtb_path" >$out/zcu102-dtb-file
        say "ZCU102 device tree $dtb_path -> $zcu102_dtb"
    else
        say "warning: no xilinx/$zcu102_dtb_name in $kernel_deb: the zcu102 board cannot boot"
        rm -f $out/zcu102-dtb-file
    fi
fi

if [[ ! -s $out/busybox ]]; then
    dpkg-deb --fsys-tarfile "$busybox_deb" | tar -xO ./bin/busybox >$out/busybox.tmp
    mv $out/busybox.tmp $out/busybox
fi

# The modules, from the same package as the kernel (their vermagic must
# match it); Debian bookworm ships them uncompressed, which busybox insmod
# loads as they are. The package has no modules.dep (its postinst runs
# depmod), so the module tree is unpacked in a temporary directory and
# depmod writes it there; modprobe --show-depends then names, for each
# module, what to insmod in which order: modules.dep's dependencies and
# modules.softdep's (ext4 needs the crc32c crypto module, which no symbol
# names). Built-in modules (virtio, virtio_ring) need nothing.
if ! modules_complete; then
    moddir=$(dpkg-deb -c "$kernel_deb" | awk '!found && $NF ~ /^\.\/lib\/modules\/[^/]+\/$/ { print $NF; found = 1 }')
    [[ -n $moddir ]] || die "no /lib/modules/<version>/ in $kernel_deb"
    version=${moddir#./lib/modules/}
    version=${version%/}
    tree=$(mktemp -d)
    trap 'rm -rf "$tree"' EXIT
    dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$tree" "$moddir" ||
        die "cannot unpack $moddir from $kernel_deb"
    depmod -b "$tree" "$version" || die "depmod of $kernel_deb's modules failed"
    rm -rf $out/modules.tmp
    mkdir -p $out/modules.tmp
    for m in "${modules[@]}"; do
        # "insmod PATH" lines, dependencies first; "builtin NAME" for
        # built-in ones.
        paths=$(modprobe -d "$tree" -S "$version" --show-depends "$m" | sed -n 's/^insmod \([^ ]*\).*/\1/p') ||
            die "modprobe --show-depends $m failed for $kernel_deb"
        [[ -n $paths ]] || die "$m is not a loadable module of $kernel_deb"
        names=()
        for path in $paths; do
            name=$(basename "$path" .ko)
            cp "$path" $out/modules.tmp/"$name".ko
            names+=("$name")
        done
        echo "$m ${names[*]}" >>$out/modules.tmp/load-order
    done
    rm -rf $out/modules
    mv $out/modules.tmp $out/modules
    rm -rf "$tree"
    trap - EXIT
    say "modules for /init (insmod order): $(cut -d' ' -f2- $load_order | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')"
fi

# The initramfs, in newc cpio format, written by mkinitramfs (the host needs
# no cpio), then gzip'd reproducibly (-n: no name, no time stamp).
if [[ ! -s $out/initramfs.cpio.gz || $init_src -nt $out/initramfs.cpio.gz ||
      $tool_src -nt $out/initramfs.cpio.gz || $hvctl_bin -nt $out/initramfs.cpio.gz ||
      $dbgtest_bin -nt $out/initramfs.cpio.gz || $hvvirtio_bin -nt $out/initramfs.cpio.gz ||
      $load_order -nt $out/initramfs.cpio.gz ]]; then
    list=$out/initramfs.list
    {
        echo "# gen_init_cpio list, written by tests/scripts/linux-guest.sh"
        for d in /bin /sbin /usr /usr/bin /usr/sbin /dev /proc /sys /tmp /root /lib /lib/modules /mnt; do
            echo "dir $d 755 0 0"
        done
        echo "nod /dev/console 600 0 0 c 5 1"
        echo "nod /dev/null 666 0 0 c 1 3"
        echo "file /bin/busybox $PWD/$out/busybox 755 0 0"
        # The applets /init uses; it installs the others at run time.
        for a in sh cat grep basename mount umount uname ls setsid cttyhack nproc sleep head tail readlink insmod devmem \
            dd sync sha256sum mke2fs losetup mkfifo od tr cut wc date stty rm taskset sed; do
            echo "slink /bin/$a busybox 777 0 0"
        done
        echo "slink /sbin/poweroff ../bin/busybox 777 0 0"
        echo "file /bin/hvctl $PWD/$hvctl_bin 755 0 0"
        echo "file /bin/dbgtest $PWD/$dbgtest_bin 755 0 0"
        echo "file /bin/hvvirtio $PWD/$hvvirtio_bin 755 0 0"
        echo "file /lib/modules/load-order $PWD/$load_order 644 0 0"
        for m in $(cut -d' ' -f2- $load_order | tr ' ' '\n' | sort -u); do
            echo "file /lib/modules/$m.ko $PWD/$out/modules/$m.ko 644 0 0"
        done
        echo "file /init $PWD/$init_src 755 0 0"
    } >$list
    cargo run --quiet --release -p hvtests --bin mkinitramfs -- $list -o $out/initramfs.cpio
    gzip -9nf $out/initramfs.cpio
fi

# The manifest.
deb_field() { dpkg-deb -f "$1" "$2"; }
{
    echo "# The Linux guest, written by tests/scripts/linux-guest.sh."
    echo "# Check the files: cd $out && sed '1,/^sha256:\$/d' manifest.txt | sha256sum -c"
    echo "suite: $suite arm64 main ($mirror${security_mirror:+, $security_mirror $suite-security})"
    echo "kernel-package: $(deb_field "$kernel_deb" Package) $(deb_field "$kernel_deb" Version) (source $(deb_field "$kernel_deb" Source))"
    echo "busybox-package: $(deb_field "$busybox_deb" Package) $(deb_field "$busybox_deb" Version)"
    echo "kernel-file: $(cat $out/kernel-file 2>/dev/null || echo unknown)"
    if [[ -s $zcu102_dtb && -s $out/zcu102-dtb-file ]]; then
        echo "zcu102-dtb: $(cat $out/zcu102-dtb-file) from $(deb_field "$kernel_deb" Package) $(deb_field "$kernel_deb" Version)"
    else
        echo "zcu102-dtb: none (not in $(deb_field "$kernel_deb" Package) $(deb_field "$kernel_deb" Version))"
    fi
    echo "init: $init_src"
    echo "sha256:"
    (cd $out && sha256sum "debs/${kernel_deb##*/}" "debs/${busybox_deb##*/}" Image initramfs.cpio.gz)
    [[ ! -s $zcu102_dtb ]] || (cd $out && sha256sum $zcu102_dtb_name)
} >$out/manifest.txt.tmp
mv $out/manifest.txt.tmp $out/manifest.txt
say "wrote $out/Image ($(stat -c %s $out/Image) bytes), $out/initramfs.cpio.gz ($(stat -c %s $out/initramfs.cpio.gz) bytes), $out/manifest.txt"
sed -n 's/^\(kernel-package\|busybox-package\|zcu102-dtb\): /linux-guest:   /p' $out/manifest.txt
