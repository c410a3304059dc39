//! Code shared by the three firmware images (EL3 monitor, EL2 hypervisor,
//! EL1 guest-stub) and by the host-side tools.
//!
//! Everything here is `no_std`. Modules split into pure logic, which the host
//! tests exercise with `cargo test` (package format, board description,
//! syndrome decoding, handoff record), and thin hardware drivers, which only
//! the images use.
#![cfg_attr(not(any(test, feature = "std", feature = "build")), no_std)]
// Much of this crate parses untrusted input (DTBs, firmware packages, guest
// syndromes and hypercall arguments) and all of it runs where a panic stops
// a CPU: outside tests, clippy rejects anything that can panic or wrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::arithmetic_side_effects
    )
)]

pub mod abi;
pub mod addr;
pub mod arch;
pub mod board;
#[cfg(feature = "build")]
pub mod build;
pub mod cadence_uart;
pub mod cmdline;
pub mod console;
pub mod console_mux;
pub mod control;
pub mod debug;
pub mod esr;
pub mod forward;
pub mod fw_cfg;
pub mod gicv2;
pub mod guest_store;
pub mod gvascan;
pub mod handoff;
pub mod hypercall;
pub mod linux;
pub mod mbec;
pub mod mmio;
pub mod package;
pub mod paging;
pub mod pci;
pub mod pl011;
pub mod portal;
pub mod report;
pub mod s1trace;
pub mod sched;
pub mod sched_abi;
pub mod semihosting;
pub mod serial;
pub mod stage2;
pub mod vgic;
pub mod vpl011;
