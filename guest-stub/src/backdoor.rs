//! The guest side of the hypervisor's hypercall conduits
//! (`platform::hypercall`): the `BRK #HV_BRK_IMM` backdoor and the DCC
//! registers (`MDCCSR_EL0` reads, `DBGDTRTX_EL0` writes).
//!
//! Each helper runs its instruction under [`expect_sync`]: a hypervisor that
//! does not take the instruction (no `MDCR_EL2.TDE`/`TDCC` routing, or a CPU
//! that lacks the register) lets the exception reach the stub's own EL1
//! vector, and the helper reports that as an `Err` with what was caught
//! instead of ending the run.
//!
//! None of the `asm!` blocks here is `nomem`: each must stay between
//! `expect_sync`'s arming and disarming, which are memory operations.

use crate::exceptions::{expect_sync, Caught};
use platform::hypercall::{Call, DCC_CALL_MAGIC};

/// `BRK #HV_BRK_IMM` with x0 = `function`, x1..x7 = `args`; returns x0..x3.
pub fn brk_call(function: u64, args: [u64; 7]) -> Result<[u64; 4], Caught> {
    let [x0, x1, x2, x3, _] = brk_call_x4(function, args)?;
    Ok([x0, x1, x2, x3])
}

/// [`brk_call`], returning x4 as well (`SCAN`'s cursor; other calls
/// preserve it).
pub fn brk_call_x4(function: u64, args: [u64; 7]) -> Result<[u64; 5], Caught> {
    let mut reply = [0u64; 5];
    let call = Call { function, args };
    let caught = expect_sync(|| {
        // SAFETY: the only memory calls touch is where their arguments
        // point, which the stub's callers own (CONSOLE_WRITE and SCAN
        // buffers). Should the BRK reach the stub's own vector instead, the
        // handler steps over it and the registers are unchanged.
        let out = unsafe { platform::hypercall::brk(&call) };
        reply = [out.x0, out.x1, out.x2, out.x3, out.x4.unwrap_or(args[3])];
    });
    match caught {
        Some(caught) => Err(caught),
        None => Ok(reply),
    }
}

/// A DCC hypercall: x0 = `DCC_CALL_MAGIC | function`, x1..x3 = `args`,
/// then `MRS x8, MDCCSR_EL0`. Returns x0..x3 and x8 (which must read as the
/// register: 0); x8 is preloaded with `x8_before` so that a read that
/// leaves it alone shows.
pub fn dcc_call(function: u64, args: [u64; 3], x8_before: u64) -> Result<([u64; 4], u64), Caught> {
    mdccsr_read_with(DCC_CALL_MAGIC | function, args, x8_before)
}

/// `MRS x8, MDCCSR_EL0` with x0 = `x0`, x1..x3 = `args` and x8 =
/// `x8_before`; returns x0..x3 and x8 afterwards.
pub fn mdccsr_read_with(x0: u64, args: [u64; 3], x8_before: u64) -> Result<([u64; 4], u64), Caught> {
    let mut out = ([0u64; 4], 0u64);
    let caught = expect_sync(|| {
        let (r0, r1, r2, r3, r8);
        // SAFETY: reading MDCCSR_EL0 has no side effect on the stub; the
        // hypervisor, trapping it, writes only x0..x3 and the destination.
        unsafe {
            core::arch::asm!(
                "mrs x8, mdccsr_el0",
                inout("x0") x0 => r0,
                inout("x1") args[0] => r1,
                inout("x2") args[1] => r2,
                inout("x3") args[2] => r3,
                inout("x8") x8_before => r8,
                options(nostack),
            );
        }
        out = ([r0, r1, r2, r3], r8);
    });
    match caught {
        Some(caught) => Err(caught),
        None => Ok(out),
    }
}

/// `MSR DBGDTRTX_EL0, x` with `byte`: one byte on the DCC console channel.
pub fn dcc_put(byte: u8) -> Result<(), Caught> {
    let caught = expect_sync(|| {
        // SAFETY: writing the DCC transmit register has no effect on the
        // stub's memory or registers.
        unsafe {
            platform::msr!("dbgdtrtx_el0", u64::from(byte));
        }
    });
    match caught {
        Some(caught) => Err(caught),
        None => Ok(()),
    }
}
