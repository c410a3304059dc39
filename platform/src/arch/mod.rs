//! AArch64 architecture support shared by the images: named system-register
//! bits the `aarch64-cpu` crate lacks, the trap frame every exception vector
//! saves, the vector-table template, and the boot helpers (`boot.S`) that
//! run before Rust can.

pub mod at;
pub mod probe;
pub mod regs;
pub mod trap;

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    include_str!("boot.S"),
    R_AARCH64_RELATIVE = const R_AARCH64_RELATIVE,
);

/// ELF relocation type of the only dynamic relocations a static PIE holds.
pub const R_AARCH64_RELATIVE: u64 = 1027;

/// Exception level encoded as in `CurrentEL` and `SPSR_ELx.M[3:2]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExceptionLevel {
    El0 = 0,
    El1 = 1,
    El2 = 2,
    El3 = 3,
}

impl ExceptionLevel {
    /// Decodes the EL field of `CurrentEL` (bits [3:2]).
    pub const fn from_current_el(current_el: u64) -> Self {
        Self::from_bits((current_el >> 2) & 0b11)
    }

    /// Decodes the EL from an AArch64 `SPSR_ELx.M` field.
    pub const fn from_spsr(spsr: u64) -> Self {
        Self::from_bits((spsr >> regs::SPSR_M_EL_SHIFT) & 0b11)
    }

    const fn from_bits(bits: u64) -> Self {
        match bits {
            0 => Self::El0,
            1 => Self::El1,
            2 => Self::El2,
            _ => Self::El3,
        }
    }
}

impl core::fmt::Display for ExceptionLevel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EL{}", *self as u8)
    }
}

/// Reads `CurrentEL`.
#[cfg(target_arch = "aarch64")]
pub fn current_el() -> ExceptionLevel {
    use aarch64_cpu::registers::{CurrentEL, Readable};
    ExceptionLevel::from_current_el(CurrentEL.get())
}

/// The affinity fields of an `MPIDR_EL1` value (Aff3..Aff0), without the
/// U, MT and RES1 bits: what PSCI and the device tree call a CPU's MPIDR.
pub const fn mpidr_affinity(mpidr: u64) -> u64 {
    mpidr & regs::MPIDR_AFFINITY_MASK
}

/// Reads this CPU's affinity.
#[cfg(target_arch = "aarch64")]
pub fn this_cpu_mpidr() -> u64 {
    use aarch64_cpu::registers::{Readable, MPIDR_EL1};
    mpidr_affinity(MPIDR_EL1.get())
}

#[cfg(target_arch = "aarch64")]
extern "C" {
    fn platform_stack_count() -> usize;
    fn platform_stack_size() -> usize;
    fn platform_cpu_stack_top(slot: usize) -> usize;
}

/// The lowest address of CPU slot `slot`'s stack (it grows down towards
/// it), if the image has a stack for that slot.
#[cfg(target_arch = "aarch64")]
pub fn stack_bottom(slot: usize) -> Option<usize> {
    // SAFETY: leaf functions that compute link-time addresses.
    let (top, size) = unsafe { (platform_cpu_stack_top(slot), platform_stack_size()) };
    top.checked_sub(size).filter(|_| top != 0)
}

/// How many CPU slots this image has a stack for (`STACK_COUNT` in its
/// linker memory file).
#[cfg(target_arch = "aarch64")]
pub fn stack_count() -> usize {
    // SAFETY: a leaf function that returns a link-time constant.
    unsafe { platform_stack_count() }
}

/// Waits for an event with `WFE`, or spins on the host.
pub fn wait_for_event() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::wfe();
    #[cfg(not(target_arch = "aarch64"))]
    core::hint::spin_loop();
}

/// Stops this CPU for good: masks interrupts and waits forever.
pub fn halt() -> ! {
    loop {
        #[cfg(target_arch = "aarch64")]
        {
            // SAFETY: masking interrupts on a CPU that will never run again
            // cannot break any invariant.
            unsafe { core::arch::asm!("msr daifset, #0xf", options(nomem, nostack)) };
            aarch64_cpu::asm::wfi();
        }
        #[cfg(not(target_arch = "aarch64"))]
        core::hint::spin_loop();
    }
}

/// Writes the system register named `$reg` (a string literal, or a
/// `concat!` of them). It expands to the
/// `asm!` statement alone, an unsafe operation: the caller wraps it in
/// `unsafe` with its own `// SAFETY:` reason. The one `MSR` of every image.
#[macro_export]
macro_rules! msr {
    ($reg:expr, $value:expr) => {
        core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) $value, options(nostack))
    };
}

/// Reads the system register named `$reg` (as for [`msr!`]), as a `u64`; like
/// [`msr!`], an unsafe operation the caller wraps. The one `MRS` of every
/// image.
#[macro_export]
macro_rules! mrs {
    ($reg:expr) => {{
        let value: u64;
        core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) value, options(nostack));
        value
    }};
}
