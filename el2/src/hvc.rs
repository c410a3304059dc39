//! Calls from the guest over HVC (and SMC, which `HCR_EL2.TSC` traps here):
//! SMCCC 1.1 and the virtual PSCI the guest sees, plus our vendor call.
//! Unknown function IDs answer `NOT_SUPPORTED`.

use crate::power;
use platform::abi::{
    is_smc32, HV_CHECK_PRDA, HV_PROBE_IDENTITY, HV_SET_EXIT_STATUS, PSCI_VERSION_1_1, SMCCC_VERSION_1_1,
};
use platform::arch::trap::TrapFrame;
use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_VERSION};
use smccc::psci as ids;

/// Answers the call whose registers `frame` holds.
pub fn handle(frame: &mut TrapFrame) {
    let function = frame.x[0] as u32;
    let mut arg1 = frame.x[1];
    if is_smc32(function) {
        arg1 &= u64::from(u32::MAX);
    }
    let result: Result<u64, i32> = match function {
        SMCCC_VERSION => Ok(SMCCC_VERSION_1_1),
        SMCCC_ARCH_FEATURES => match arg1 as u32 {
            SMCCC_VERSION | SMCCC_ARCH_FEATURES => Ok(0),
            _ => Err(smccc::arch::error::NOT_SUPPORTED),
        },
        ids::PSCI_VERSION => Ok(PSCI_VERSION_1_1),
        ids::PSCI_FEATURES => match arg1 as u32 {
            SMCCC_VERSION | ids::PSCI_VERSION | ids::PSCI_FEATURES | ids::PSCI_SYSTEM_OFF
            | ids::PSCI_SYSTEM_RESET => Ok(0),
            _ => Err(ids::error::NOT_SUPPORTED),
        },
        ids::PSCI_SYSTEM_OFF => power::guest_system_off(),
        ids::PSCI_SYSTEM_RESET => power::system_reset(),
        HV_SET_EXIT_STATUS => {
            power::set_guest_status(arg1 as u32);
            Ok(0)
        }
        HV_CHECK_PRDA => {
            let me = crate::prda::with(|p| p.slot.load(core::sync::atomic::Ordering::Relaxed));
            let (mask, cpus) = crate::smp::check_prda_everywhere(me as usize);
            frame.x[1] = mask;
            frame.x[2] = cpus as u64;
            Ok(0)
        }
        HV_PROBE_IDENTITY => {
            let (address, par) = probe_identity();
            frame.x[1] = address;
            frame.x[2] = par;
            Ok(0)
        }
        _ => Err(smccc::arch::error::NOT_SUPPORTED),
    };
    frame.x[0] = match result {
        Ok(value) => value,
        Err(code) => i64::from(code) as u64,
    };
}

/// Translates the hypervisor's own load PA as an EL2 virtual address, the
/// way hardware would, and returns `(address, PAR_EL1)` (AT reports in
/// PAR_EL1 at every exception level). With no identity
/// map in the final tables this must be a translation fault.
fn probe_identity() -> (u64, u64) {
    let address = crate::switch::image_pa();
    let par: u64;
    // SAFETY: AT only performs a translation and writes PAR_EL2; the isb
    // makes the result visible to the following read.
    unsafe {
        core::arch::asm!(
            "at s1e2r, {va}",
            "isb",
            "mrs {par}, par_el1",
            va = in(reg) address,
            par = out(reg) par,
            options(nostack),
        );
    }
    (address, par)
}
