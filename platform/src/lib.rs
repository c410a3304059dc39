//! Code shared by the three firmware images (EL3 monitor, EL2 hypervisor,
//! EL1 guest-stub) and by the host-side tools.
//!
//! Everything here is `no_std`. Modules split into pure logic, which the host
//! tests exercise with `cargo test` (package format, board description,
//! syndrome decoding), and thin hardware drivers gated on
//! `target_arch = "aarch64"`, which only the images link.
#![cfg_attr(not(any(test, feature = "std")), no_std)]

pub mod board;
pub mod package;
