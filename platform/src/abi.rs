//! Function IDs of our own SMCCC calls, beside the standard ones the
//! `smccc` crate names (Arm DEN0028: bit 31 fast call, bit 30 SMC64,
//! bits [29:24] the owning service, bits [15:0] the function), and the
//! constants of the test MMIO device. What each call does, its arguments
//! and results, is described once, in `docs/hypercalls.md`.

/// The owning service of an SMCCC call, `FID[29:24]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Owner {
    Arch = 0,
    Cpu = 1,
    SiliconProvider = 2,
    Oem = 3,
    StandardSecure = 4,
    StandardHypervisor = 5,
    VendorHypervisor = 6,
}

/// Bit 31: a fast call.
pub const FAST_CALL: u32 = 1 << 31;
/// Bit 30: the SMC64/HVC64 calling convention.
pub const SMC64: u32 = 1 << 30;
const OWNER_SHIFT: u32 = 24;
const OWNER_MASK: u32 = 0x3f;

/// A fast SMC32/HVC32 function ID.
pub const fn fast_call32(owner: Owner, function: u16) -> u32 {
    FAST_CALL | ((owner as u32) << OWNER_SHIFT) | function as u32
}

/// The owning-service number of a function ID.
pub const fn owner_of(function_id: u32) -> u32 {
    (function_id >> OWNER_SHIFT) & OWNER_MASK
}

/// Records the exit status `PSCI SYSTEM_OFF` reports to a semihosting host.
pub const SIP_SET_EXIT_STATUS: u32 = fast_call32(Owner::SiliconProvider, 1);
/// A guest reports its verdict (0 = success) before powering off.
pub const HV_SET_EXIT_STATUS: u32 = fast_call32(Owner::VendorHypervisor, 1);
/// The hypervisor probes its old identity mapping (its load PA used as a
/// VA) with the address-translation instruction and reports the result.
pub const HV_PROBE_IDENTITY: u32 = fast_call32(Owner::VendorHypervisor, 2);
/// Every physical CPU checks its private data area at the fixed VA.
pub const HV_CHECK_PRDA: u32 = fast_call32(Owner::VendorHypervisor, 3);
/// The deprivileged EL0 service formats guest text.
pub const HV_EL0_FORMAT: u32 = fast_call32(Owner::VendorHypervisor, 4);

/// SMCCC's standard queries of the vendor-specific hypervisor service
/// (function numbers 0xFF00 and 0xFF01 of the service's range).
pub const HV_CALL_COUNT: u32 = fast_call32(Owner::VendorHypervisor, 0xff00);
pub const HV_CALL_UID: u32 = fast_call32(Owner::VendorHypervisor, 0xff01);
/// Our service's UID, `1f3c6a55-9d1e-4b0e-8c51-68765f656c32`, as SMCCC
/// returns a UID: four 32-bit words in x0..x3.
pub const HV_UID: [u32; 4] = [0x1f3c_6a55, 0x9d1e_4b0e, 0x8c51_6876, 0x5f65_6c32];

/// The calling CPU runs the PNMI-preemption experiment at EL2.
pub const HV_PNMI_TEST: u32 = fast_call32(Owner::VendorHypervisor, 5);
/// The calling CPU stalls at EL2 with regular interrupts masked, for the
/// lockup watchdog to find.
pub const HV_LOCKUP_TEST: u32 = fast_call32(Owner::VendorHypervisor, 6);

/// `HV_PNMI_TEST`'s result registers (docs/hypercalls.md).
pub mod pnmi_test {
    /// x1: the regular handler started (and unmasked `PSTATE.I`).
    pub const X_REGULAR_ENTRY: usize = 1;
    /// x2: the PNMI handler ran.
    pub const X_PNMI: usize = 2;
    /// x3: the regular handler finished.
    pub const X_REGULAR_EXIT: usize = 3;
    /// x4: the second regular interrupt's handler ran.
    pub const X_SECOND_REGULAR: usize = 4;
    /// x5: `ICC_RPR_EL1` (running priority) inside the PNMI handler.
    pub const X_PNMI_RUNNING_PRIORITY: usize = 5;
    /// x6: `ICC_RPR_EL1` inside the regular handler.
    pub const X_REGULAR_RUNNING_PRIORITY: usize = 6;
    /// x7: cycle-counter ticks from the PNMI's SGI write to its handler.
    pub const X_PNMI_LATENCY: usize = 7;
}

/// `HV_LOCKUP_TEST`'s argument limit and result registers
/// (docs/hypercalls.md).
pub mod lockup_test {
    /// The longest stall a guest may ask for, in watchdog time (the
    /// stalled CPU's own ticks); in wall time the stall ends after at most
    /// ten times that.
    pub const MAX_STALL_MS: u64 = 2000;
    /// x1: lockups the watchdog reported on this CPU during the stall.
    pub const X_DETECTED: usize = 1;
    /// x2: stall start to first report, in µs of watchdog time (`u64::MAX`: none).
    pub const X_LATENCY_US: usize = 2;
    /// x3: the watchdog period, in µs of watchdog time.
    pub const X_PERIOD_US: usize = 3;
    /// x4: lockups reported on this CPU before the stall began, since the
    /// calling vCPU started there.
    pub const X_BEFORE: usize = 4;
}

/// `/chosen` property of a guest-stub VM's device tree: guest-physical
/// addresses that must be holes in its stage 2 (other VMs' RAM, the
/// hypervisor's image), as 64-bit cells. Its isolation check probes each
/// (docs/testing.md); only VMs that run the guest-stub get it.
pub const PROBE_HOLES_PROPERTY: &str = "hv,probe-holes";

/// `/chosen` property of a guest-stub VM's device tree: how many times the
/// VM started before this boot (0 the first time; one more after each
/// `SYSTEM_RESET` restart), as one 32-bit cell. The guest-stub's
/// `stub=reset` resets only in its first life, and a later life checks
/// that its RAM was cleared (`restart-memory-cleared`).
pub const STARTS_PROPERTY: &str = "hv,starts";

/// The emulated test device the hypervisor publishes to its guest
/// (docs/hypercalls.md, "The test MMIO device").
pub mod test_mmio {
    pub const COMPATIBLE: &str = "hv,test-mmio";
    pub const SIZE: u64 = 0x1000;
    /// Read-only identification register (writes ignored).
    pub const ID: u64 = 0x00;
    /// What `ID` reads: "HVMM".
    pub const ID_VALUE: u64 = 0x4856_4d4d;
    /// A 64-bit read/write register; narrower writes change only their bytes.
    pub const SCRATCH: u64 = 0x08;
    /// Counts the accesses the device has served (read-only).
    pub const ACCESSES: u64 = 0x10;
}

/// Status codes of our vendor calls (SMCCC: negative in x0).
pub mod status {
    pub const OK: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    /// A buffer is outside guest RAM, or a length is out of range.
    pub const INVALID_PARAMETER: i64 = -2;
    /// The EL0 service faulted (contained; the hypervisor goes on).
    pub const EL0_FAULTED: i64 = -16;
    /// The EL0 service's output did not fit.
    pub const EL0_OUTPUT_FULL: i64 = -17;
}

/// `PAR_ELx` as an address translation leaves it.
pub mod par {
    /// F, bit 0: the translation faulted.
    pub const F: u64 = 1 << 0;
    /// FST [6:1] when F = 1: the fault status code.
    pub const fn fault_status(par: u64) -> u8 {
        ((par >> 1) & 0x3f) as u8
    }
}

/// SMCCC says a 32-bit call's arguments are the low 32 bits of x1..x7.
pub const fn is_smc32(function_id: u32) -> bool {
    function_id & SMC64 == 0
}

/// The version both our conduits implement: SMCCC 1.1.
pub const SMCCC_VERSION_1_1: u64 = 0x1_0001;
/// The PSCI version the monitor and the hypervisor implement: 1.1.
pub const PSCI_VERSION_1_1: u64 = 0x1_0001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_den0028() {
        assert_eq!(SIP_SET_EXIT_STATUS, 0x8200_0001);
        assert_eq!(HV_SET_EXIT_STATUS, 0x8600_0001);
        assert_eq!(HV_PROBE_IDENTITY, 0x8600_0002);
        // A level-0 translation fault as AT reports it: F = 1, FST = 0b000100.
        assert_eq!(par::fault_status(0b000100 << 1 | par::F), 0b000100);
        assert_eq!(owner_of(smccc::psci::PSCI_CPU_ON_64), Owner::StandardSecure as u32);
        assert!(is_smc32(smccc::psci::PSCI_VERSION));
        assert!(!is_smc32(smccc::psci::PSCI_CPU_ON_64));
    }
}
