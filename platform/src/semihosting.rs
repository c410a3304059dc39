//! Arm semihosting: how the firmware ends a QEMU run with an exit status.
//!
//! A semihosting call is `HLT #0xF000`. When QEMU was started without
//! `-semihosting` that instruction is undefined and traps to our own vector;
//! the vector hands the frame to [`recover`], which skips the instruction and
//! makes the call report [`Unavailable`]. So callers learn at run time
//! whether a debugger host is there, and fall back to other means.
#![cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]


/// Semihosting operation numbers.
const SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: exit with the status in the subcode.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;
/// What the recovery path puts in x0 to say "no semihosting host".
const UNAVAILABLE: u64 = u64::MAX;

/// Semihosting is not enabled in this QEMU (or there is no debugger).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".section .text.platform_semihosting, \"ax\"",
    ".global platform_semihosting_call",
    "platform_semihosting_call:",
    ".global platform_semihosting_hlt",
    "platform_semihosting_hlt:",
    "    hlt #0xf000",
    "    ret",
);

#[cfg(target_arch = "aarch64")]
extern "C" {
    fn platform_semihosting_call(op: u64, param: u64) -> u64;
    static platform_semihosting_hlt: u8;
}

/// Makes one semihosting call.
#[cfg(target_arch = "aarch64")]
fn call(op: u64, param: u64) -> Result<u64, Unavailable> {
    // SAFETY: the call's parameter block is owned by the caller for the
    // duration of the call; an absent host is caught by `recover`.
    match unsafe { platform_semihosting_call(op, param) } {
        UNAVAILABLE => Err(Unavailable),
        result => Ok(result),
    }
}

/// Ends the QEMU run with `status` as its exit code. Returns only if there
/// is no semihosting host.
#[cfg(target_arch = "aarch64")]
pub fn exit(status: u32) -> Unavailable {
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(status)];
    match call(SYS_EXIT, block.as_ptr() as u64) {
        Ok(_) | Err(Unavailable) => Unavailable,
    }
}

/// Called by an exception vector for an undefined-instruction trap at the
/// current EL: if it was the semihosting `HLT`, makes the call report
/// [`Unavailable`] and returns true.
#[cfg(target_arch = "aarch64")]
pub fn recover(frame: &mut crate::arch::trap::TrapFrame) -> bool {
    let hlt = core::ptr::addr_of!(platform_semihosting_hlt) as u64;
    if frame.elr != hlt {
        return false;
    }
    frame.x[0] = UNAVAILABLE;
    frame.elr = frame.elr.wrapping_add(4);
    true
}
