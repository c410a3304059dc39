//! Reading a register that may not be there.
//!
//! Firmware that trusts a device tree still must not die when the tree
//! names a device the machine lacks: reading it raises a synchronous
//! external abort. [`read_u32`] does its load at one known instruction; an
//! image's exception vector hands a same-EL data abort to [`recover`],
//! which, if the abort was that load, makes it report failure and steps
//! over it.

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".section .text.platform_probe, \"ax\"",
    ".global platform_probe_read32",
    "platform_probe_read32:",
    "    mov x1, #0",
    ".global platform_probe_read32_load",
    "platform_probe_read32_load:",
    "    ldr w0, [x0]",
    "    ret",
);

#[cfg(target_arch = "aarch64")]
extern "C" {
    fn platform_probe_read32(address: usize) -> Probed;
    static platform_probe_read32_load: u8;
}

/// x0 = the value, x1 = 1 if the load faulted.
#[cfg(target_arch = "aarch64")]
#[repr(C)]
struct Probed {
    value: u64,
    faulted: u64,
}

/// Reads the 32-bit register at `address`; `None` if nothing answers there.
///
/// # Safety
///
/// `address` must be a 4-byte aligned device-register address that is safe
/// to read (a read has no side effects there), in the current translation
/// regime, and the image's vector must call [`recover`] for data aborts
/// taken at its own exception level.
#[cfg(target_arch = "aarch64")]
pub unsafe fn read_u32(address: usize) -> Option<u32> {
    // SAFETY: forwarded from this function's contract.
    let probed = unsafe { platform_probe_read32(address) };
    (probed.faulted == 0).then_some(probed.value as u32)
}

/// For an image's vector, on a data abort at its own EL: if it was
/// [`read_u32`]'s load, marks the read failed, steps over the load and
/// returns true.
#[cfg(target_arch = "aarch64")]
pub fn recover(frame: &mut super::trap::TrapFrame) -> bool {
    let load = core::ptr::addr_of!(platform_probe_read32_load) as u64;
    if frame.elr != load {
        return false;
    }
    frame.x[1] = 1;
    frame.elr = frame.elr.wrapping_add(4);
    true
}
