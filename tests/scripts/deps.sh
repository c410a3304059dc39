#!/usr/bin/env bash
# Installs what building and booting the firmware needs, and says what it
# installs. Everything else (crates) cargo fetches by itself.
#   deps.sh          QEMU (8.0 or later), dtc, the Rust targets and clippy
#   deps.sh gdb      also gdb-multiarch, for `make gdb`
#
# QEMU must be 8.0 or later: 7.2 (Debian 12's own) does not implement the
# DCC transmit register the hypervisor's DCC console traps. On Debian 12
# the newer QEMU comes from bookworm-backports, which this script enables.
set -euo pipefail

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
apt_updated=""
apt_install() {
    if [[ -z "$apt_updated" ]]; then
        $sudo apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

qemu_major() {
    qemu-system-aarch64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p'
}

if [[ "$(qemu_major)" == "" || "$(qemu_major)" -lt 8 ]]; then
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    if [[ "$codename" == bookworm ]]; then
        list=/etc/apt/sources.list.d/bookworm-backports.list
        if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            echo "deps: enabling Debian bookworm-backports (for QEMU 8.0 or later)"
            echo "deb http://deb.debian.org/debian bookworm-backports main" | $sudo tee "$list" >/dev/null
        fi
        echo "deps: installing qemu-system-arm from bookworm-backports (apt)"
        apt_install -t bookworm-backports qemu-system-arm
    else
        echo "deps: installing qemu-system-arm (apt)"
        apt_install qemu-system-arm
    fi
    if [[ "$(qemu_major)" == "" || "$(qemu_major)" -lt 8 ]]; then
        echo "deps: QEMU 8.0 or later is needed; found: $(qemu-system-aarch64 --version | head -1)" >&2
        exit 1
    fi
fi

need_apt=()
# dtc: the QEMU tests edit QEMU's own device tree (a board's /chosen).
command -v dtc >/dev/null || need_apt+=(device-tree-compiler)
# mke2fs: the bare-QEMU virtio scenarios (tests/tests/virtio_bare.rs) make
# an ext2 disk image.
command -v mke2fs >/dev/null || need_apt+=(e2fsprogs)
if [[ "${1:-}" == gdb ]]; then
    command -v gdb-multiarch >/dev/null || need_apt+=(gdb-multiarch)
fi
if ((${#need_apt[@]})); then
    echo "deps: installing ${need_apt[*]} (apt)"
    apt_install "${need_apt[@]}"
fi

if ! command -v rustup >/dev/null; then
    echo "deps: rustup is required (https://rustup.rs); it installs the toolchain rust-toolchain.toml pins" >&2
    exit 1
fi
# rust-toolchain.toml names the targets and components; make sure they are here.
for target in aarch64-unknown-none aarch64-unknown-none-softfloat aarch64-unknown-linux-musl; do
    if ! rustup target list --installed | grep -qx "$target"; then
        echo "deps: installing the $target Rust target (rustup)"
        rustup target add "$target" >/dev/null
    fi
done
if ! cargo clippy --version >/dev/null 2>&1; then
    echo "deps: installing clippy (rustup)"
    rustup component add clippy >/dev/null
fi
