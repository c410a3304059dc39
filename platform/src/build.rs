//! Link settings for the images, called from each image's `build.rs` so
//! that the linker-script plumbing is written once.
//!
//! The monitor is the one image linked at fixed addresses, so it is the one
//! built per board: `HV_BOARD` (the Makefile's `BOARD`) names the board,
//! `virt` when unset, and picks its memory file, `linker/el3-monitor.ld` for
//! QEMU `virt` and `linker/boards/<board>.ld` for any other.

use std::path::PathBuf;

/// How an image is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linkage {
    /// At fixed addresses from its board's memory file (the monitor, which
    /// runs where the board's boot loads it).
    Fixed,
    /// As a static position-independent executable at 0 that relocates
    /// itself (the hypervisor and the guest-stub).
    PositionIndependent,
}

/// The environment variable that names the board a fixed image is linked
/// for.
pub const BOARD_VAR: &str = "HV_BOARD";
/// The board when [`BOARD_VAR`] is unset or empty.
pub const DEFAULT_BOARD: &str = "virt";

/// The linker script of `image` for `board`, relative to `linker/`.
pub fn script(image: &str, linkage: Linkage, board: &str) -> String {
    match linkage {
        Linkage::Fixed if board != DEFAULT_BOARD => format!("boards/{board}.ld"),
        _ => format!("{image}.ld"),
    }
}

/// Prints the cargo directives that link the current crate's binary with
/// its linker script (see [`script`]).
pub fn link_image(image: &str, linkage: Linkage) {
    let linker_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../linker");
    println!("cargo:rerun-if-changed={}", linker_dir.display());
    println!("cargo:rerun-if-env-changed={BOARD_VAR}");
    let board = std::env::var(BOARD_VAR).ok().filter(|b| !b.is_empty()).unwrap_or_else(|| DEFAULT_BOARD.into());
    let script = script(image, linkage, &board);
    if !linker_dir.join(&script).is_file() {
        // A build script fails by exiting non-zero; cargo shows its stderr.
        eprintln!(
            "error: {BOARD_VAR}={board}: no memory file linker/{script} for {image} (virt, or linker/boards/*.ld)"
        );
        std::process::exit(1);
    }
    println!("cargo:rustc-link-arg-bins=-L{}", linker_dir.display());
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rustc-link-arg-bins=--gc-sections");
    if linkage == Linkage::PositionIndependent {
        // Relocations may patch read-only sections: the image applies them to
        // itself while it is still writable, before any mapping protects it.
        for arg in ["-pie", "--no-dynamic-linker", "-z", "notext", "-z", "norelro"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
