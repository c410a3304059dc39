//! Link settings for the images, called from each image's `build.rs` so
//! that the linker-script plumbing is written once.

use std::path::PathBuf;

/// How an image is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linkage {
    /// At fixed addresses from its memory file (the monitor, which runs in
    /// place from flash).
    Fixed,
    /// As a static position-independent executable at 0 that relocates
    /// itself (the hypervisor and the guest-stub).
    PositionIndependent,
}

/// Prints the cargo directives that link the current crate's binary with
/// `linker/<image>.ld`.
pub fn link_image(image: &str, linkage: Linkage) {
    let linker_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../linker");
    println!("cargo:rerun-if-changed={}", linker_dir.display());
    println!("cargo:rustc-link-arg-bins=-L{}", linker_dir.display());
    println!("cargo:rustc-link-arg-bins=-T{image}.ld");
    println!("cargo:rustc-link-arg-bins=--gc-sections");
    if linkage == Linkage::PositionIndependent {
        // Relocations may patch read-only sections: the image applies them to
        // itself while it is still writable, before any mapping protects it.
        for arg in ["-pie", "--no-dynamic-linker", "-z", "notext", "-z", "norelro"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
