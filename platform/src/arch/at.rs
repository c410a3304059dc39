//! The address-translation instruction (`AT`): one sequence for every
//! image. `AT` walks the translation regime its operation names with the
//! live registers and leaves the result in `PAR_EL1`, which
//! [`crate::gvascan::Par::decode`] reads.

/// An `AT` operation: stage 1 (`S1`) or both stages (`S12`), the
/// translation regime's exception level, and the access it checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    S1E0R,
    S1E0W,
    S1E1R,
    S1E1W,
    S1E2R,
    S1E2W,
    S12E0R,
    S12E0W,
    S12E1R,
    S12E1W,
}

/// Runs `AT op, va`, then `ISB`, and returns `PAR_EL1`.
///
/// # Safety
///
/// The caller runs at an exception level that may execute `op` (EL2 or
/// EL3 for the EL2 and two-stage operations), and accepts that `PAR_EL1`
/// is overwritten (restoring it if it belongs to code it interrupted).
#[cfg(target_arch = "aarch64")]
pub unsafe fn translate(op: At, va: u64) -> u64 {
    let par: u64;
    macro_rules! at {
        ($op:literal) => {
            // SAFETY: forwarded from this function's contract; AT reads the
            // translation tables and writes only PAR_EL1, and the ISB makes
            // its result visible to the MRS.
            unsafe {
                core::arch::asm!(
                    concat!("at ", $op, ", {va}"),
                    "isb",
                    "mrs {par}, par_el1",
                    va = in(reg) va,
                    par = out(reg) par,
                    options(nostack, preserves_flags),
                )
            }
        };
    }
    match op {
        At::S1E0R => at!("s1e0r"),
        At::S1E0W => at!("s1e0w"),
        At::S1E1R => at!("s1e1r"),
        At::S1E1W => at!("s1e1w"),
        At::S1E2R => at!("s1e2r"),
        At::S1E2W => at!("s1e2w"),
        At::S12E0R => at!("s12e0r"),
        At::S12E0W => at!("s12e0w"),
        At::S12E1R => at!("s12e1r"),
        At::S12E1W => at!("s12e1w"),
    }
    par
}
