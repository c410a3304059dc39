# One firmware image for QEMU's virt board: EL3 monitor + EL2 hypervisor +
# EL1 guest-stub. `make run` boots it, `make test` checks everything.
# Both first install what is missing (tests/scripts/deps.sh says what).

# EL3 and EL2 code is built without FP/SIMD (softfloat) so that it never
# touches the registers of the guest it interrupts; the guest-stub is an
# ordinary EL1 program.
FW_TARGET   := aarch64-unknown-none-softfloat
GUEST_TARGET := aarch64-unknown-none
FW_ELF      := target/$(FW_TARGET)/release
GUEST_ELF   := target/$(GUEST_TARGET)/release
BUILD       := build
FLASH       := $(BUILD)/flash.bin

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

.PHONY: all deps image run test fmt clippy unit-test qemu-test bench gdb clean linux-guest run-linux run-vms fuzz fresh-check soak

all: image

deps:
	@tests/scripts/deps.sh

# One cargo invocation per image: features are unified within an invocation,
# and the hypervisor's (a heap for aarch64-paging) must not reach the
# monitor, which has none.
image: deps
	cargo build --release --target $(FW_TARGET) -p el3-monitor
	cargo build --release --target $(FW_TARGET) -p el2
	cargo build --release --target $(GUEST_TARGET) -p guest-stub
	@mkdir -p $(BUILD)
	cargo run --quiet --release -p hvtests --bin mkflash -- \
		--monitor $(FW_ELF)/el3-monitor --hypervisor $(FW_ELF)/el2 \
		--guest-stub $(GUEST_ELF)/guest-stub -o $(FLASH)

run: image
	@echo "make run: $(QEMU) $(QEMU_RUN)"
	@$(QEMU) $(QEMU_RUN)

# An unmodified Debian arm64 kernel and a busybox initramfs in build/linux/
# (tests/scripts/linux-guest.sh; downloads once, then does nothing).
linux-guest: deps
	@tests/scripts/linux-guest.sh

# The Linux guest under the firmware, which takes kernel, initrd and command
# line from QEMU's fw_cfg.
run-linux: image linux-guest
	@echo "make run-linux: $(QEMU) $(QEMU_RUN) -kernel $(BUILD)/linux/Image -initrd $(BUILD)/linux/initramfs.cpio.gz -append \"console=ttyAMA0 earlycon\""
	@$(QEMU) $(QEMU_RUN) -kernel $(BUILD)/linux/Image -initrd $(BUILD)/linux/initramfs.cpio.gz \
		-append "console=ttyAMA0 earlycon"

# Several VMs described in a device tree (docs/vms.md): VMS names the
# source, compiled with dtc and handed to the firmware as fw_cfg
# opt/hv/vms.dtb; the Linux guest's kernel and initramfs go along as
# opt/hv/linux/kernel and opt/hv/linux/initrd.
VMS         ?= examples/vms/two-linux.dts
QEMU_VMS     = $(QEMU_RUN) -fw_cfg name=opt/hv/vms.dtb,file=$(BUILD)/vms.dtb \
               -fw_cfg name=opt/hv/linux/kernel,file=$(BUILD)/linux/Image \
               -fw_cfg name=opt/hv/linux/initrd,file=$(BUILD)/linux/initramfs.cpio.gz
run-vms: MEM = 2G
run-vms: image linux-guest
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

# The QEMU scenarios (tests/tests/qemu.rs) boot the image `make image` wrote.
# The Linux scenarios boot build/linux (make linux-guest); if Debian's archive
# cannot be reached they say they were skipped and why, and the rest runs.
qemu-test: image
	@tests/scripts/linux-guest.sh > $(BUILD)/linux-guest.log 2>&1 \
		|| echo "linux-guest: not available, the Linux scenarios will be skipped (see $(BUILD)/linux-guest.log)"
	HV_FLASH=$(abspath $(FLASH)) cargo test -p hvtests --test qemu --test vms --test sched --test portals --test manage --test service --test virtio_bare -- --test-threads=2

# The README's two commands, as written there, in a fresh clone of HEAD in a
# temporary directory (tests/scripts/fresh-check.sh).
fresh-check:
	@tests/scripts/fresh-check.sh

# The six -smp 4 scheme scenarios SOAK_RUNS times (30) while a make test loop
# in a fresh clone loads the machine (SOAK_LOAD=0: without it); counts
# failures (tests/scripts/soak.sh).
soak: image
	@tests/scripts/soak.sh

# Instructions per trap path under -icount, both schemes (tests/src/bin/bench.rs).
bench: image linux-guest
	cargo run --quiet --release -p hvtests --bin bench -- $(FLASH) \
		$(FW_ELF)/el3-monitor $(FW_ELF)/el2 $(GUEST_ELF)/guest-stub

# QEMU halted at reset with its gdb stub on :1234, and gdb-multiarch with the
# symbols of all three images (tests/scripts/gdbinit places the two
# position-independent ones where they are loaded).
gdb: image
	@tests/scripts/deps.sh gdb
	$(QEMU) $(QEMU_BOARD) -display none -semihosting -serial file:$(BUILD)/console.log \
		-serial file:$(BUILD)/secure-uart.log -bios $(FLASH) -S -gdb tcp::1234 & \
	gdb-multiarch -q -x tests/scripts/gdbinit; kill %1 2>/dev/null || true

clean:
	cargo clean
	rm -rf $(BUILD)
