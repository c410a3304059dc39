//! The fuzz targets: one function per parser family of `platform` that
//! handles untrusted input (guest registers and memory, the DTB and the
//! kernel that came with the board, the firmware package in flash).
//!
//! Each `run` takes arbitrary bytes, feeds them to the real `platform` API,
//! and panics when an invariant breaks; a panic is what every driver reports
//! as a crash. The drivers only pick a target and pass bytes:
//! `fuzz_targets/*.rs` (libFuzzer, `cargo +nightly fuzz`), `src/bin/afl.rs`
//! (AFL++ on stable, `cargo afl`), `src/bin/replay.rs` (runs inputs once,
//! e.g. a crash file or a corpus, on any toolchain).

use arbitrary::{Arbitrary, Unstructured};

pub mod den0115;
pub mod dtb;
pub mod hypercall;
pub mod linux;
pub mod mmio;
pub mod package;
pub mod pci;
pub mod pci_ecam;
pub mod vgic;

/// A target: panics on an input that breaks an invariant.
pub type Target = fn(&[u8]);

/// Every target by name, for the drivers that choose at run time.
pub const TARGETS: &[(&str, Target)] = &[
    ("mmio", mmio::run),
    ("vgic", vgic::run),
    ("pci_ecam", pci_ecam::run),
    ("den0115", den0115::run),
    ("dtb", dtb::run),
    ("package", package::run),
    ("linux", linux::run),
    ("hypercall", hypercall::run),
];

pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// The next value from the input, or the type's default once the input is
/// used up: a short input is still a whole test case.
pub(crate) fn take<'a, T: Arbitrary<'a> + Default>(u: &mut Unstructured<'a>) -> T {
    T::arbitrary(u).unwrap_or_default()
}

/// A number in `0..n` (0 when `n` is 0 or the input is used up).
pub(crate) fn below(u: &mut Unstructured<'_>, n: usize) -> usize {
    match n.checked_sub(1) {
        Some(max) => u.int_in_range(0..=max).unwrap_or(0),
        None => 0,
    }
}

/// One of `values` most of the time, anything else sometimes: registers
/// and IDs a parser knows are where its logic is, but the rest must be
/// refused cleanly too.
pub(crate) fn pick_or_any(u: &mut Unstructured<'_>, values: &[u64]) -> u64 {
    if take::<u8>(u) < 224 {
        values.get(below(u, values.len())).copied().unwrap_or(0)
    } else {
        take(u)
    }
}
