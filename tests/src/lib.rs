//! Host-side tools for the firmware: the flash-image packer behind `mkflash`
//! and the pieces the QEMU scenario runner shares with it.
//!
//! - [`elf`] flattens the three ELF images into raw bytes (the monitor by
//!   load address, the position-independent hypervisor and guest-stub by
//!   link address, with their load hints).
//! - [`flash`] lays out `build/flash.bin` (monitor, then the firmware
//!   package from `platform::package`), finds the package in an existing
//!   image, and parses the `mkflash` command line.
//! - [`dts`] edits device-tree source, for the scenarios that boot QEMU
//!   with a damaged copy of its own device tree.
//! - [`selftest`] holds a guest-stub run to the checks a scenario expects,
//!   by name.
//! - [`qemu`] starts every QEMU the tools run, with the device options a
//!   minimal QEMU install needs.
//! - [`scenario`] boots one QEMU scenario under a timeout and collects what
//!   it printed.
//! - [`virtio`] reads the Linux guest's forwarded-virtio lines and runs the
//!   bare-QEMU block benchmark.
//! - [`layers`] checks that the hypervisor's modules name only their own
//!   layer and those below it.
//! - [`linux`] finds the Linux guest and reads what it printed the same way
//!   for every scenario and board.

pub mod dts;
pub mod elf;
pub mod flash;
pub mod layers;
pub mod linux;
pub mod qemu;
pub mod scenario;
pub mod selftest;
pub mod virtio;
pub mod vms;
