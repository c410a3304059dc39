//! SMC dispatch: the services the monitor offers the Non-secure world.
//!
//! SMCCC 1.1 (`SMCCC_VERSION`, `SMCCC_ARCH_FEATURES`), PSCI 1.1
//! (`PSCI_VERSION`, `PSCI_FEATURES`, `CPU_ON`, `CPU_OFF`, `AFFINITY_INFO`,
//! `SYSTEM_OFF`, `SYSTEM_RESET`), the PCI configuration-space calls of Arm
//! DEN0115 ([`crate::pci`]) and our one SiP call, `SIP_SET_EXIT_STATUS`. Any other function ID answers `NOT_SUPPORTED`;
//! nothing a caller passes can make the monitor fault. Errors stay typed
//! until the last line, where they become SMCCC return codes.

use crate::{power, psci, state};
use platform::abi::{is_smc32, PSCI_VERSION_1_1, SIP_SET_EXIT_STATUS, SMCCC_VERSION_1_1};
use platform::arch::trap::TrapFrame;
use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_VERSION};
use smccc::psci::{self as psci_ids, Error as PsciError};

/// What a call answers: a value for x0, or an error code.
type CallResult = Result<u64, i64>;

/// Answers the SMC whose registers `frame` holds, from CPU slot `slot`.
pub fn handle(frame: &mut TrapFrame, slot: usize) {
    let function = frame.x[0] as u32;
    if platform::pci::den0115::is_pci_call(function) {
        let results = crate::pci::smc(function, [frame.x[1], frame.x[2], frame.x[3], frame.x[4]]);
        frame.x[..4].copy_from_slice(&results);
        return;
    }
    let mut args = [0u64; 3];
    args.copy_from_slice(&frame.x[1..4]);
    if is_smc32(function) {
        for arg in &mut args {
            *arg &= u64::from(u32::MAX);
        }
    }
    let result = dispatch(function, args, slot);
    frame.x[0] = match result {
        Ok(value) => value,
        Err(code) => code as u64,
    };
}

fn psci(result: Result<u64, PsciError>) -> CallResult {
    result.map_err(i64::from)
}

fn not_supported() -> CallResult {
    Err(smccc::arch::error::NOT_SUPPORTED.into())
}

fn dispatch(function: u32, [a1, a2, a3]: [u64; 3], slot: usize) -> CallResult {
    match function {
        SMCCC_VERSION => Ok(SMCCC_VERSION_1_1),
        SMCCC_ARCH_FEATURES => match a1 as u32 {
            SMCCC_VERSION | SMCCC_ARCH_FEATURES => Ok(0),
            _ => not_supported(),
        },
        psci_ids::PSCI_VERSION => Ok(PSCI_VERSION_1_1),
        psci_ids::PSCI_FEATURES => match a1 as u32 {
            f if implemented(f) => Ok(0),
            _ => not_supported(),
        },
        psci_ids::PSCI_CPU_ON_32 | psci_ids::PSCI_CPU_ON_64 => psci(cpu_on(a1, a2, a3)),
        psci_ids::PSCI_CPU_OFF => psci::cpu_off(slot),
        psci_ids::PSCI_AFFINITY_INFO_32 | psci_ids::PSCI_AFFINITY_INFO_64 => psci(affinity_info(a1, a2)),
        psci_ids::PSCI_SYSTEM_OFF => power::system_off(),
        psci_ids::PSCI_SYSTEM_RESET => power::system_reset(),
        SIP_SET_EXIT_STATUS => {
            power::set_exit_status(a1 as u32);
            Ok(0)
        }
        _ => not_supported(),
    }
}

/// The PSCI and SMCCC functions `PSCI_FEATURES` reports as present.
fn implemented(function: u32) -> bool {
    matches!(
        function,
        SMCCC_VERSION
            | psci_ids::PSCI_VERSION
            | psci_ids::PSCI_FEATURES
            | psci_ids::PSCI_CPU_ON_32
            | psci_ids::PSCI_CPU_ON_64
            | psci_ids::PSCI_CPU_OFF
            | psci_ids::PSCI_AFFINITY_INFO_32
            | psci_ids::PSCI_AFFINITY_INFO_64
            | psci_ids::PSCI_SYSTEM_OFF
            | psci_ids::PSCI_SYSTEM_RESET
    )
}

fn cpu_on(target: u64, entry: u64, context: u64) -> Result<u64, PsciError> {
    let slot = state::slot_of(target).ok_or(PsciError::InvalidParameters)?;
    if !state::board().ram.iter().any(|r| r.contains(entry)) || !entry.is_multiple_of(4) {
        return Err(PsciError::InvalidAddress);
    }
    psci::cpu_on(slot, entry, context)?;
    Ok(0)
}

fn affinity_info(target: u64, lowest_level: u64) -> Result<u64, PsciError> {
    if lowest_level != 0 {
        return Err(PsciError::InvalidParameters);
    }
    let slot = state::slot_of(target).ok_or(PsciError::InvalidParameters)?;
    Ok(psci::affinity_info(slot)? as u64)
}
