# One firmware image for QEMU's virt board: EL3 monitor + EL2 hypervisor +
# EL1 guest-stub. `make run` boots it, `make test` checks everything.
# Both first install what is missing (tests/scripts/deps.sh says what).
# `make image BOARD=zcu102` and `make run BOARD=zcu102` do the same for
# QEMU's xlnx-zcu102 (docs/boards.md).

# EL3 and EL2 code is built without FP/SIMD (softfloat) so that it never
# touches the registers of the guest it interrupts; the guest-stub is an
# ordinary EL1 program.
FW_TARGET   := aarch64-unknown-none-softfloat
GUEST_TARGET := aarch64-unknown-none
FW_ELF      := target/$(FW_TARGET)/release
GUEST_ELF   := target/$(GUEST_TARGET)/release
BUILD       := build
FLASH       := $(BUILD)/flash.bin

# The board `image` and `run` are for: virt (the default) or zcu102.
BOARD       ?= virt
ifeq ($(filter $(BOARD),virt zcu102),)
$(error BOARD=$(BOARD): the boards are virt and zcu102)
endif

# The board and the machine a user would pick; override on the command line,
# e.g. `make run CPU=cortex-a72 SMP=8 MEM=3G`.
MACHINE     := virt,secure=on,virtualization=on,gic-version=3
CPU         ?= max,pauth-impdef=on
SMP         ?= 4
MEM         ?= 1G
QEMU        := qemu-system-aarch64
# `-nic none`: virt's default NIC needs an option ROM (efi-virtio.rom) that a
# minimal QEMU install lacks, and nothing here uses a network. Every QEMU
# command in the repository says so (tests/src/qemu.rs checks).
QEMU_BOARD   = -M $(MACHINE) -cpu $(CPU) -smp $(SMP) -m $(MEM) -nic none
# The first UART is the console (and QEMU's monitor: Ctrl-a x quits); the
# second, the monitor's Secure UART, goes to a file.
QEMU_RUN     = $(QEMU_BOARD) -nographic -semihosting \
               -serial mon:stdio -serial file:$(BUILD)/secure-uart.log -bios $(FLASH)

# QEMU's xlnx-zcu102 (Zynq UltraScale+: four Cortex-A53, a GIC-400, Cadence
# UARTs, DDR at 0), described only by the device tree Debian ships with its
# arm64 kernel (make linux-guest extracts it). No flash: QEMU's generic
# loader puts the monitor's ELF in on-chip memory and starts CPU 0 at its
# entry, and loads the package and the DTB into DDR where the monitor's
# memory file (the one place they are written) says. -m 4G is what the DTB
# describes: 2 GiB at 0 and 2 GiB at 32 GiB. UART0, the DTB's console, is
# the first -serial. See docs/boards.md.
ZCU102_LD      := linker/boards/zcu102.ld
ZCU102_DIR     := $(BUILD)/zcu102
ZCU102_TARGET  := target/zcu102
ZCU102_MONITOR := $(ZCU102_DIR)/el3-monitor.elf
ZCU102_PACKAGE := $(ZCU102_DIR)/package.bin
# The package with the Linux guest in it (make run-linux BOARD=zcu102).
ZCU102_LINUX_PACKAGE := $(ZCU102_DIR)/package-linux.bin
# The package the zcu102 QEMU command loads.
ZCU102_RUN_PACKAGE = $(ZCU102_PACKAGE)
ZCU102_DTB     := $(BUILD)/linux/zynqmp-zcu102-rev1.0.dtb
zcu102_symbol   = $(shell sed -n 's/^$(1) = \(0x[0-9a-fA-F]*\);.*/\1/p' $(ZCU102_LD))
QEMU_ZCU102  = -M xlnx-zcu102,secure=on,virtualization=on -m 4G -nic none -audio none \
               -device loader,file=$(ZCU102_MONITOR),cpu-num=0 \
               -device loader,file=$(ZCU102_RUN_PACKAGE),addr=$(call zcu102_symbol,__board_package),force-raw=on \
               -device loader,file=$(ZCU102_DTB),addr=$(call zcu102_symbol,__board_dtb_fallback),force-raw=on
QEMU_RUN_ZCU102 = $(QEMU_ZCU102) -nographic -semihosting -serial mon:stdio

.PHONY: all deps image image-virt image-zcu102 run run-virt run-zcu102 test fmt clippy unit-test qemu-test bench gdb clean \
        linux-guest run-linux run-linux-virt run-linux-zcu102 run-vms fuzz fresh-check soak

all: image

deps:
	@tests/scripts/deps.sh

image: image-$(BOARD)

# One cargo invocation per image: features are unified within an invocation,
# and the hypervisor's (a heap for aarch64-paging) must not reach the
# monitor, which has none.
image-virt: deps
	cargo build --release --target $(FW_TARGET) -p el3-monitor
	cargo build --release --target $(FW_TARGET) -p el2
	cargo build --release --target $(GUEST_TARGET) -p guest-stub
	@mkdir -p $(BUILD)
	cargo run --quiet --release -p hvtests --bin mkflash -- \
		--monitor $(FW_ELF)/el3-monitor --hypervisor $(FW_ELF)/el2 \
		--guest-stub $(GUEST_ELF)/guest-stub -o $(FLASH)

# The zcu102 image: the monitor linked for the board (HV_BOARD picks
# linker/boards/zcu102.ld; its own target directory, so that virt's monitor
# is never relinked) and the package alone, the same as in virt's flash.
image-zcu102: deps
	HV_BOARD=zcu102 cargo build --release --target $(FW_TARGET) -p el3-monitor --target-dir $(ZCU102_TARGET)
	cargo build --release --target $(FW_TARGET) -p el2
	cargo build --release --target $(GUEST_TARGET) -p guest-stub
	@mkdir -p $(ZCU102_DIR)
	cp $(ZCU102_TARGET)/$(FW_TARGET)/release/el3-monitor $(ZCU102_MONITOR)
	cargo run --quiet --release -p hvtests --bin mkflash -- --package-only \
		--hypervisor $(FW_ELF)/el2 --guest-stub $(GUEST_ELF)/guest-stub -o $(ZCU102_PACKAGE)

run: run-$(BOARD)

run-virt: image-virt
	@echo "make run: $(QEMU) $(QEMU_RUN)"
	@$(QEMU) $(QEMU_RUN)

# The DTB comes with the Linux guest (tests/scripts/linux-guest.sh).
$(ZCU102_DTB):
	@tests/scripts/linux-guest.sh

run-zcu102: image-zcu102 $(ZCU102_DTB)
	@echo "make run: $(QEMU) $(QEMU_RUN_ZCU102)"
	@$(QEMU) $(QEMU_RUN_ZCU102)

# An unmodified Debian arm64 kernel and a busybox initramfs in build/linux/
# (tests/scripts/linux-guest.sh; downloads once, then does nothing).
linux-guest: deps
	@tests/scripts/linux-guest.sh

# The Linux guest under the firmware, with the kernel command line
# LINUX_APPEND: the board's console (virt's PL011 is ttyAMA0 to Linux, the
# ZCU102's Cadence UART ttyPS0) and an interactive shell; e.g.
# `make run-linux BOARD=zcu102 LINUX_APPEND="console=ttyPS0 linux-guest=poweroff"`
# runs what the tests check and powers off.
LINUX_APPEND_virt   := console=ttyAMA0 earlycon
LINUX_APPEND_zcu102 := console=ttyPS0 earlycon
LINUX_APPEND        ?= $(LINUX_APPEND_$(BOARD))

run-linux: run-linux-$(BOARD)

# virt: kernel, initrd and command line through QEMU's fw_cfg.
run-linux-virt: image-virt linux-guest
	@echo "make run-linux: $(QEMU) $(QEMU_RUN) -kernel $(BUILD)/linux/Image -initrd $(BUILD)/linux/initramfs.cpio.gz -append \"$(LINUX_APPEND)\""
	@$(QEMU) $(QEMU_RUN) -kernel $(BUILD)/linux/Image -initrd $(BUILD)/linux/initramfs.cpio.gz \
		-append "$(LINUX_APPEND)"

# zcu102 has no fw_cfg: kernel, initrd and command line go into the
# firmware package (mkflash's --linux-* options), which the monitor hands
# to the hypervisor.
run-linux-zcu102: ZCU102_RUN_PACKAGE = $(ZCU102_LINUX_PACKAGE)
run-linux-zcu102: image-zcu102 linux-guest
	cargo run --quiet --release -p hvtests --bin mkflash -- --package-only \
		--hypervisor $(FW_ELF)/el2 --guest-stub $(GUEST_ELF)/guest-stub \
		--linux-kernel $(BUILD)/linux/Image --linux-initrd $(BUILD)/linux/initramfs.cpio.gz \
		--linux-cmdline "$(LINUX_APPEND)" -o $(ZCU102_LINUX_PACKAGE)
	@echo "make run-linux: $(QEMU) $(QEMU_RUN_ZCU102)"
	@$(QEMU) $(QEMU_RUN_ZCU102)

# Several VMs described in a device tree (docs/vms.md): VMS names the
# source, compiled with dtc and handed to the firmware as fw_cfg
# opt/hv/vms.dtb; the Linux guest's kernel and initramfs go along as
# opt/hv/linux/kernel and opt/hv/linux/initrd.
VMS         ?= examples/vms/two-linux.dts
QEMU_VMS     = $(QEMU_RUN) -fw_cfg name=opt/hv/vms.dtb,file=$(BUILD)/vms.dtb \
               -fw_cfg name=opt/hv/linux/kernel,file=$(BUILD)/linux/Image \
               -fw_cfg name=opt/hv/linux/initrd,file=$(BUILD)/linux/initramfs.cpio.gz
run-vms: MEM = 2G
run-vms: image-virt linux-guest
	@dtc -q -I dts -O dtb -o $(BUILD)/vms.dtb $(VMS)
	@echo "make run-vms: $(QEMU) $(QEMU_VMS)"
	@$(QEMU) $(QEMU_VMS)

test: fmt clippy unit-test qemu-test

# Formatting is checked, not applied: `cargo fmt --all` (and the same in
# fuzz/, its own workspace) formats the tree to rustfmt.toml.
fmt: deps
	cargo fmt --all -- --check
	cd fuzz && cargo fmt -- --check

clippy: deps
	cargo clippy --target $(FW_TARGET) -p el3-monitor -p platform -- -D warnings
	cargo clippy --target $(FW_TARGET) -p el2 -- -D warnings
	cargo clippy --target $(GUEST_TARGET) -p guest-stub -- -D warnings
	cargo clippy --target aarch64-unknown-linux-musl -p hvctl -p hvvirtio -p dbgtest -- -D warnings
	cargo clippy -p platform -p hvtests -p hvctl -p hvvirtio --all-targets -- -D warnings
	# The fuzz targets (their own workspace; the libFuzzer and AFL++ runtimes
	# are left out, the target code is all in the library).
	cd fuzz && cargo clippy --no-default-features --all-targets -- -D warnings

# platform's --tests include its bounded property tests (tests/proptest_*).
unit-test: deps
	cargo test -p platform --tests
	cargo test -p hvtests --lib --bins
	cargo test -p hvctl -p hvvirtio

# Each fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS, one after the other:
# libFuzzer where a nightly toolchain is installed, AFL++ on stable otherwise
# (fuzz/run.sh; FUZZ_DRIVER=afl|libfuzzer chooses, FUZZ_TARGETS="dtb linux"
# picks targets).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

# The QEMU scenarios (tests/tests/qemu.rs) boot the image `make image` wrote,
# and tests/tests/zcu102.rs the one `make image BOARD=zcu102` wrote.
# The Linux scenarios boot build/linux (make linux-guest), and the zcu102 one
# needs its device tree from there; if Debian's archive cannot be reached
# they say they were skipped and why, and the rest runs.
qemu-test: image-virt image-zcu102
	@tests/scripts/linux-guest.sh > $(BUILD)/linux-guest.log 2>&1 \
		|| echo "linux-guest: not available, the Linux scenarios will be skipped (see $(BUILD)/linux-guest.log)"
	HV_FLASH=$(abspath $(FLASH)) HV_ZCU102_DIR=$(abspath $(ZCU102_DIR)) cargo test -p hvtests --test qemu --test vms \
		--test sched --test portals --test manage --test service --test virtio_bare --test zcu102 --test integrity -- --test-threads=2

# The README's two commands, as written there, in a fresh clone of HEAD in a
# temporary directory (tests/scripts/fresh-check.sh).
fresh-check:
	@tests/scripts/fresh-check.sh

# The six -smp 4 scheme scenarios SOAK_RUNS times (30) while a make test loop
# in a fresh clone loads the machine (SOAK_LOAD=0: without it); counts
# failures (tests/scripts/soak.sh).
soak: image-virt
	@tests/scripts/soak.sh

# Instructions per trap path under -icount, both schemes (tests/src/bin/bench.rs).
bench: image-virt linux-guest
	cargo run --quiet --release -p hvtests --bin bench -- $(FLASH) \
		$(FW_ELF)/el3-monitor $(FW_ELF)/el2 $(GUEST_ELF)/guest-stub

# QEMU halted at reset with its gdb stub on :1234, and gdb-multiarch with the
# symbols of all three images (tests/scripts/gdbinit places the two
# position-independent ones where they are loaded).
gdb: image-virt
	@tests/scripts/deps.sh gdb
	$(QEMU) $(QEMU_BOARD) -display none -semihosting -serial file:$(BUILD)/console.log \
		-serial file:$(BUILD)/secure-uart.log -bios $(FLASH) -S -gdb tcp::1234 & \
	gdb-multiarch -q -x tests/scripts/gdbinit; kill %1 2>/dev/null || true

clean:
	cargo clean
	rm -rf $(BUILD)
