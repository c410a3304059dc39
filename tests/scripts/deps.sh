#!/usr/bin/env bash
# Installs what building and booting the firmware needs, and says what it
# installs. Everything else (crates) cargo fetches by itself.
#   deps.sh          QEMU, the Rust targets and clippy (mkflash reads ELF
#                    itself, so no binutils are needed)
#   deps.sh gdb      also gdb-multiarch, for `make gdb`
set -euo pipefail

need_apt=()
command -v qemu-system-aarch64 >/dev/null || need_apt+=(qemu-system-arm)
# dtc: the QEMU tests edit QEMU's own device tree (a board's /chosen).
command -v dtc >/dev/null || need_apt+=(device-tree-compiler)
if [[ "${1:-}" == gdb ]]; then
    command -v gdb-multiarch >/dev/null || need_apt+=(gdb-multiarch)
fi

if ((${#need_apt[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "deps: installing ${need_apt[*]} (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v rustup >/dev/null; then
    echo "deps: rustup is required (https://rustup.rs); it installs the toolchain rust-toolchain.toml pins" >&2
    exit 1
fi
# rust-toolchain.toml names the targets and components; make sure they are here.
for target in aarch64-unknown-none aarch64-unknown-none-softfloat; do
    if ! rustup target list --installed | grep -qx "$target"; then
        echo "deps: installing the $target Rust target (rustup)"
        rustup target add "$target" >/dev/null
    fi
done
if ! cargo clippy --version >/dev/null 2>&1; then
    echo "deps: installing clippy (rustup)"
    rustup component add clippy >/dev/null
fi
