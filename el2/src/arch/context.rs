//! A guest CPU's register state that lives in the physical CPU's own
//! registers while its vCPU runs, and in memory ([`CpuState`]) while it
//! does not: what a vCPU switch saves and loads, apart from the general
//! registers (the trap frame) and the virtual GIC interface (its own
//! module, `crate::vm::vgic`).
//!
//! - **EL1 and EL0 system registers**: translation, exception, thread and
//!   context registers, reached through the `*_EL12` aliases under VHE
//!   (see [`crate::arch::sysregs`]).
//! - **The guest's two EL1 timers** (`CNTV_*`, `CNTP_*`, `CNTKCTL`): saved
//!   and switched off on the way out, so that they neither fire for the
//!   next vCPU nor keep their interrupt asserted on a CPU that no longer
//!   runs them. The virtual counter's offset is the VM's and is loaded by
//!   the caller.
//! - **FP/SIMD**, eagerly: `V0`–`V31`, `FPCR`, `FPSR`. EL2 is built without
//!   FP (soft-float), so these registers hold nothing but the guest's, and
//!   a lazy scheme (trap the next vCPU's first FP use with `CPTR_EL2`)
//!   would save 66 accesses per switch only for guests that do not touch
//!   FP between two switches, which a Linux guest (whose user programs and
//!   kernel `memcpy` use SIMD) practically never is, at the cost of a trap
//!   on the first use after every switch.
//! - **SVE**, where the CPU has it: the predicate registers, `FFR` and
//!   `ZCR_EL1`. The guests' vector length is held at 128 bits
//!   (`ZCR_EL2.LEN` = 0, [`crate::arch::cpu::init`]), where the `Z`
//!   registers are the `V` registers, which the FP/SIMD save covers.
//! - **Pointer-authentication keys**, where the CPU has them (`HCR_EL2.APK`
//!   leaves them to the guest): a kernel that signs its return addresses
//!   with its own key must find that key again.
//! - **Debug**: `MDSCR_EL1` always; the breakpoint and watchpoint
//!   registers the CPU implements, the OS lock and double lock and the
//!   claim tags only for a vCPU that has used them (`with_debug`). Every
//!   guest access to them traps (`MDCR_EL2.TDE`), so EL2 knows who has:
//!   the first access loads the vCPU's own values ([`CpuState::load_debug`])
//!   before it is passed through (`crate::traps::debugregs`), and a vCPU
//!   that never made one cannot see what another left there. With its
//!   `MDSCR_EL1.MDE` and `KDE` its own (clear), the stale values raise
//!   nothing for it.
//! - **PMU**: every guest-visible counter, its type and the enables
//!   (`MDCR_EL2.HPMN` gives the guest all of them).
//!
//! Each save or load is straight-line register moves; what the CPU does not
//! implement (keys, PMU, unused breakpoints) is skipped from the ID
//! registers read once at boot ([`Features`]).

use crate::arch::layout::{scheme, Scheme};
use aarch64_cpu::registers::{Readable, ID_AA64DFR0_EL1, ID_AA64ISAR1_EL1};
use core::sync::atomic::{AtomicU64, Ordering};
use platform::arch::regs::{ID_AA64ISAR1_APA, ID_AA64ISAR1_API};
use platform::arch::trap::TrapFrame;

/// EL1/EL0 system registers saved by [`save_system`].
const SYSTEM_REGS: usize = 25;
/// Breakpoint and watchpoint registers: 16 of each at most.
const MAX_BREAKPOINTS: usize = 16;
/// Event counters: 31 at most.
const MAX_COUNTERS: usize = 31;

/// One vCPU's saved CPU state (not the general registers).
#[repr(C, align(16))]
pub struct CpuState {
    /// `V0`–`V31`, then `FPCR` and `FPSR` (offsets shared with the asm).
    fp: [u128; 32],
    fpcr: u64,
    fpsr: u64,
    system: [u64; SYSTEM_REGS],
    timer: Timers,
    keys: [u64; 10],
    /// `P0`-`P15` and `FFR` (2 bytes each at a 128-bit vector length),
    /// then `ZCR_EL1`.
    sve_p: [u16; 17],
    zcr: u64,
    debug: Debug,
    pmu: Pmu,
}

/// The guest's EL1 timers.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Timers {
    pub cntv_ctl: u64,
    pub cntv_cval: u64,
    pub cntp_ctl: u64,
    pub cntp_cval: u64,
    pub cntkctl: u64,
}

#[derive(Clone, Copy)]
struct Debug {
    mdscr: u64,
    bvr: [u64; MAX_BREAKPOINTS],
    bcr: [u64; MAX_BREAKPOINTS],
    wvr: [u64; MAX_BREAKPOINTS],
    wcr: [u64; MAX_BREAKPOINTS],
    os_lock: u64,
    osdlr: u64,
    claim: u64,
}

#[derive(Clone, Copy)]
struct Pmu {
    pmcr: u64,
    selr: u64,
    cnten: u64,
    inten: u64,
    ovs: u64,
    userenr: u64,
    ccntr: u64,
    ccfiltr: u64,
    evcntr: [u64; MAX_COUNTERS],
    evtyper: [u64; MAX_COUNTERS],
}

impl CpuState {
    /// A CPU out of reset as PSCI `CPU_ON` promises it: MMU and caches
    /// off, every other register zero, timers off.
    pub const fn reset() -> Self {
        let mut system = [0; SYSTEM_REGS];
        system[SCTLR] = platform::arch::regs::SCTLR_EL1_RES1;
        Self {
            fp: [0; 32],
            fpcr: 0,
            fpsr: 0,
            system,
            timer: Timers { cntv_ctl: 0, cntv_cval: 0, cntp_ctl: 0, cntp_cval: 0, cntkctl: 0 },
            keys: [0; 10],
            sve_p: [0; 17],
            zcr: 0,
            debug: Debug {
                mdscr: 0,
                bvr: [0; MAX_BREAKPOINTS],
                bcr: [0; MAX_BREAKPOINTS],
                wvr: [0; MAX_BREAKPOINTS],
                wcr: [0; MAX_BREAKPOINTS],
                // Clear, as firmware leaves it for an OS.
                os_lock: 0,
                osdlr: 0,
                claim: 0,
            },
            pmu: Pmu {
                pmcr: 0,
                selr: 0,
                cnten: 0,
                inten: 0,
                ovs: 0,
                userenr: 0,
                ccntr: 0,
                ccfiltr: 0,
                evcntr: [0; MAX_COUNTERS],
                evtyper: [0; MAX_COUNTERS],
            },
        }
    }

    /// [`reset`](Self::reset), in place: a VM's start builds no 2 KiB
    /// temporary to copy over the old state (measured: some 2,800
    /// instructions of `memset` and `memcpy` per vCPU started).
    pub fn reset_in_place(&mut self) {
        self.fp.fill(0);
        (self.fpcr, self.fpsr, self.zcr) = (0, 0, 0);
        self.system.fill(0);
        if let Some(sctlr) = self.system.get_mut(SCTLR) {
            *sctlr = platform::arch::regs::SCTLR_EL1_RES1;
        }
        self.timer = Timers::default();
        self.keys.fill(0);
        self.sve_p.fill(0);
        let d = &mut self.debug;
        (d.mdscr, d.os_lock, d.osdlr, d.claim) = (0, 0, 0, 0);
        for regs in [&mut d.bvr, &mut d.bcr, &mut d.wvr, &mut d.wcr] {
            regs.fill(0);
        }
        let p = &mut self.pmu;
        (p.pmcr, p.selr, p.cnten, p.inten, p.ovs, p.userenr, p.ccntr, p.ccfiltr) = (0, 0, 0, 0, 0, 0, 0, 0);
        p.evcntr.fill(0);
        p.evtyper.fill(0);
    }

    /// Sets what identifies the vCPU and its VM's time: `VMPIDR_EL2`,
    /// `VPIDR_EL2` and the virtual counter's offset `CNTVOFF_EL2`.
    pub fn set_identity(&mut self, vmpidr: u64, vpidr: u64, cntvoff: u64) {
        for (index, value) in [(VMPIDR, vmpidr), (CNTVOFF, cntvoff), (VPIDR, vpidr)] {
            if let Some(slot) = self.system.get_mut(index) {
                *slot = value;
            }
        }
    }

    /// Loads the debug registers saved here (beyond `MDSCR_EL1`, which
    /// stays as the CPU has it): a vCPU's first access to them.
    pub fn load_debug(&self) {
        load_debug(&self.debug, Features::get());
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    }

    /// The timers as they were saved.
    pub fn timers(&self) -> Timers {
        self.timer
    }

    /// Saves this CPU's guest state here (the debug registers beyond
    /// `MDSCR_EL1` only `with_debug`) and switches the guest's timers off
    /// on the CPU.
    pub fn save(&mut self, with_debug: bool) {
        let features = Features::get();
        save_fp(self);
        save_system(&mut self.system);
        self.timer = save_timers();
        if features.pauth {
            save_keys(&mut self.keys);
        }
        if features.sve {
            save_sve(self);
        }
        // SAFETY: reading MDSCR_EL1 has no side effects.
        self.debug.mdscr = unsafe { platform::mrs!("mdscr_el1") };
        if with_debug {
            save_debug(&mut self.debug, features);
        }
        if features.counters != NO_PMU {
            save_pmu(&mut self.pmu, features);
        }
    }

    /// Loads the state saved here into this CPU (the debug registers
    /// beyond `MDSCR_EL1` only `with_debug`; timers last, so that one that
    /// fires at once finds the rest of its vCPU in place).
    pub fn load(&self, with_debug: bool) {
        let features = Features::get();
        load_fp(self);
        load_system(&self.system);
        if features.pauth {
            load_keys(&self.keys);
        }
        if features.sve {
            load_sve(self);
        }
        // SAFETY: the guest's own MDSCR_EL1 (EL2's debug holds never span
        // a switch).
        unsafe { platform::msr!("mdscr_el1", self.debug.mdscr) };
        if with_debug {
            load_debug(&self.debug, Features::get());
        }
        if features.counters != NO_PMU {
            load_pmu(&self.pmu, features);
        }
        load_timers(&self.timer);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    }
}

/// Copies a trap frame (the general registers, `ELR`, `SPSR`): 17 pairs
/// of loads and stores, where the `memcpy` that `clone` calls spent some
/// 190 instructions per frame on every vCPU switch.
pub fn copy_frame(dst: &mut TrapFrame, src: &TrapFrame) {
    const _: () = assert!(core::mem::size_of::<TrapFrame>() == 17 * 16);
    // SAFETY: both point to whole `TrapFrame`s (272 bytes, 8-byte
    // aligned), which cannot overlap (one is borrowed mutably); only
    // scratch registers are clobbered.
    unsafe {
        core::arch::asm!(
            "mov {n}, #17",
            "2:",
            "ldp {a}, {b}, [{src}], #16",
            "stp {a}, {b}, [{dst}], #16",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            src = inout(reg) src as *const TrapFrame => _,
            dst = inout(reg) dst as *mut TrapFrame => _,
            n = out(reg) _,
            a = out(reg) _,
            b = out(reg) _,
            options(nostack),
        );
    }
}

/// What the CPU implements of the optional state, read once.
#[derive(Clone, Copy)]
struct Features {
    breakpoints: usize,
    watchpoints: usize,
    /// Event counters (`PMCR_EL0.N`), or [`NO_PMU`].
    counters: usize,
    pauth: bool,
    sve: bool,
}

const NO_PMU: usize = usize::MAX;

static FEATURES: AtomicU64 = AtomicU64::new(0);
const FEATURES_READ: u64 = 1 << 63;

impl Features {
    fn get() -> Self {
        let mut bits = FEATURES.load(Ordering::Relaxed);
        if bits & FEATURES_READ == 0 {
            bits = Self::read().pack();
            FEATURES.store(bits, Ordering::Relaxed);
        }
        Self::unpack(bits)
    }

    fn read() -> Self {
        let dfr0 = ID_AA64DFR0_EL1.get();
        let pmu_version = (dfr0 >> 8) & 0xf;
        let counters = if pmu_version == 0 || pmu_version == 0xf {
            NO_PMU
        } else {
            // SAFETY: reading PMCR_EL0 at EL2 has no side effects.
            let pmcr = unsafe { platform::mrs!("pmcr_el0") };
            ((pmcr >> platform::arch::regs::PMCR_N_SHIFT) & platform::arch::regs::PMCR_N_MASK) as usize
        };
        let isar1 = ID_AA64ISAR1_EL1.get();
        Self {
            breakpoints: (((dfr0 >> 12) & 0xf) as usize + 1).min(MAX_BREAKPOINTS),
            watchpoints: (((dfr0 >> 20) & 0xf) as usize + 1).min(MAX_BREAKPOINTS),
            counters: counters.min(MAX_COUNTERS),
            pauth: ID_AA64ISAR1_APA.present(isar1) || ID_AA64ISAR1_API.present(isar1),
            sve: sve_implemented(),
        }
    }

    fn pack(self) -> u64 {
        let counters = if self.counters == NO_PMU { 0xff } else { self.counters as u64 };
        FEATURES_READ
            | self.breakpoints as u64
            | (self.watchpoints as u64) << 8
            | counters << 16
            | u64::from(self.pauth) << 24
            | u64::from(self.sve) << 25
    }

    fn unpack(bits: u64) -> Self {
        let counters = ((bits >> 16) & 0xff) as usize;
        Self {
            breakpoints: (bits & 0xff) as usize,
            watchpoints: ((bits >> 8) & 0xff) as usize,
            counters: if counters == 0xff { NO_PMU } else { counters },
            pauth: (bits >> 24) & 1 != 0,
            sve: (bits >> 25) & 1 != 0,
        }
    }
}

// Offsets into `CpuState` for the FP/SIMD asm.
const FPCR_OFFSET: usize = core::mem::offset_of!(CpuState, fpcr);
const FPSR_OFFSET: usize = core::mem::offset_of!(CpuState, fpsr);

fn save_fp(state: &mut CpuState) {
    // SAFETY: stores the FP/SIMD registers into `state`, which is 16-byte
    // aligned and large enough (the offsets come from its layout); EL2
    // itself never uses these registers.
    unsafe {
        core::arch::asm!(
            // EL2 is built without FP; the instructions are assembled anyway.
            ".arch_extension fp",
            ".arch_extension simd",
            "stp q0, q1, [{s}, #0]",
            "stp q2, q3, [{s}, #32]",
            "stp q4, q5, [{s}, #64]",
            "stp q6, q7, [{s}, #96]",
            "stp q8, q9, [{s}, #128]",
            "stp q10, q11, [{s}, #160]",
            "stp q12, q13, [{s}, #192]",
            "stp q14, q15, [{s}, #224]",
            "stp q16, q17, [{s}, #256]",
            "stp q18, q19, [{s}, #288]",
            "stp q20, q21, [{s}, #320]",
            "stp q22, q23, [{s}, #352]",
            "stp q24, q25, [{s}, #384]",
            "stp q26, q27, [{s}, #416]",
            "stp q28, q29, [{s}, #448]",
            "stp q30, q31, [{s}, #480]",
            "mrs {t}, fpcr",
            "str {t}, [{s}, #{fpcr}]",
            "mrs {t}, fpsr",
            "str {t}, [{s}, #{fpsr}]",
            s = in(reg) state as *mut CpuState,
            t = out(reg) _,
            fpcr = const FPCR_OFFSET,
            fpsr = const FPSR_OFFSET,
            options(nostack),
        );
    }
}

fn load_fp(state: &CpuState) {
    // SAFETY: loads the FP/SIMD registers from `state` (see `save_fp`).
    unsafe {
        core::arch::asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "ldp q0, q1, [{s}, #0]",
            "ldp q2, q3, [{s}, #32]",
            "ldp q4, q5, [{s}, #64]",
            "ldp q6, q7, [{s}, #96]",
            "ldp q8, q9, [{s}, #128]",
            "ldp q10, q11, [{s}, #160]",
            "ldp q12, q13, [{s}, #192]",
            "ldp q14, q15, [{s}, #224]",
            "ldp q16, q17, [{s}, #256]",
            "ldp q18, q19, [{s}, #288]",
            "ldp q20, q21, [{s}, #320]",
            "ldp q22, q23, [{s}, #352]",
            "ldp q24, q25, [{s}, #384]",
            "ldp q26, q27, [{s}, #416]",
            "ldp q28, q29, [{s}, #448]",
            "ldp q30, q31, [{s}, #480]",
            "ldr {t}, [{s}, #{fpcr}]",
            "msr fpcr, {t}",
            "ldr {t}, [{s}, #{fpsr}]",
            "msr fpsr, {t}",
            s = in(reg) state as *const CpuState,
            t = out(reg) _,
            fpcr = const FPCR_OFFSET,
            fpsr = const FPSR_OFFSET,
            options(nostack, readonly),
        );
    }
}

/// Whether the CPU implements SVE (`ID_AA64PFR0_EL1.SVE`, bits [35:32]).
pub fn sve_implemented() -> bool {
    (aarch64_cpu::registers::ID_AA64PFR0_EL1.get() >> 32) & 0xf != 0
}

const SVE_P_OFFSET: usize = core::mem::offset_of!(CpuState, sve_p);

fn save_sve(state: &mut CpuState) {
    // SAFETY: stores the predicate registers and FFR (2 bytes each at the
    // 128-bit vector length EL2 keeps, `ZCR_EL2.LEN` = 0) into
    // `state.sve_p`, 34 bytes; P0 is reloaded after it carried FFR. EL2
    // itself never uses SVE.
    unsafe {
        core::arch::asm!(
            ".arch_extension sve",
            "add {p}, {s}, #{off}",
            "str p0, [{p}, #0, mul vl]",
            "str p1, [{p}, #1, mul vl]",
            "str p2, [{p}, #2, mul vl]",
            "str p3, [{p}, #3, mul vl]",
            "str p4, [{p}, #4, mul vl]",
            "str p5, [{p}, #5, mul vl]",
            "str p6, [{p}, #6, mul vl]",
            "str p7, [{p}, #7, mul vl]",
            "str p8, [{p}, #8, mul vl]",
            "str p9, [{p}, #9, mul vl]",
            "str p10, [{p}, #10, mul vl]",
            "str p11, [{p}, #11, mul vl]",
            "str p12, [{p}, #12, mul vl]",
            "str p13, [{p}, #13, mul vl]",
            "str p14, [{p}, #14, mul vl]",
            "str p15, [{p}, #15, mul vl]",
            "rdffr p0.b",
            "str p0, [{p}, #16, mul vl]",
            "ldr p0, [{p}, #0, mul vl]",
            s = in(reg) state as *mut CpuState,
            p = out(reg) _,
            off = const SVE_P_OFFSET,
            options(nostack),
        );
    }
    state.zcr = match scheme() {
        // SAFETY: reading the guest's ZCR_EL1 has no side effects.
        Scheme::Vhe => unsafe { platform::mrs!("S3_5_C1_C2_0") },
        // SAFETY: as above.
        Scheme::Nvhe => unsafe { platform::mrs!("S3_0_C1_C2_0") },
    };
}

fn load_sve(state: &CpuState) {
    match scheme() {
        // SAFETY: the guest's own vector length control, capped by ZCR_EL2.
        Scheme::Vhe => unsafe { platform::msr!("S3_5_C1_C2_0", state.zcr) },
        // SAFETY: as above.
        Scheme::Nvhe => unsafe { platform::msr!("S3_0_C1_C2_0", state.zcr) },
    }
    // SAFETY: loads FFR and the predicate registers from `state.sve_p`
    // (see `save_sve`).
    unsafe {
        core::arch::asm!(
            ".arch_extension sve",
            "add {p}, {s}, #{off}",
            "ldr p0, [{p}, #16, mul vl]",
            "wrffr p0.b",
            "ldr p0, [{p}, #0, mul vl]",
            "ldr p1, [{p}, #1, mul vl]",
            "ldr p2, [{p}, #2, mul vl]",
            "ldr p3, [{p}, #3, mul vl]",
            "ldr p4, [{p}, #4, mul vl]",
            "ldr p5, [{p}, #5, mul vl]",
            "ldr p6, [{p}, #6, mul vl]",
            "ldr p7, [{p}, #7, mul vl]",
            "ldr p8, [{p}, #8, mul vl]",
            "ldr p9, [{p}, #9, mul vl]",
            "ldr p10, [{p}, #10, mul vl]",
            "ldr p11, [{p}, #11, mul vl]",
            "ldr p12, [{p}, #12, mul vl]",
            "ldr p13, [{p}, #13, mul vl]",
            "ldr p14, [{p}, #14, mul vl]",
            "ldr p15, [{p}, #15, mul vl]",
            s = in(reg) state as *const CpuState,
            p = out(reg) _,
            off = const SVE_P_OFFSET,
            options(nostack, readonly),
        );
    }
}

/// Indices in [`CpuState::system`] (the order of `system_registers!`).
const SCTLR: usize = 0;
const VMPIDR: usize = 22;
const CNTVOFF: usize = 23;
const VPIDR: usize = 24;

/// `save_system` and `load_system`: the first list has an `*_EL12` alias
/// under VHE, the second is reached by its own name in both schemes.
macro_rules! system_registers {
    (aliased: $($el1:literal / $el12:literal,)* plain: $($plain:literal,)*) => {
        fn save_system(regs: &mut [u64; SYSTEM_REGS]) {
            let mut slots = regs.iter_mut();
            match scheme() {
                // SAFETY: reading guest EL1/EL0 registers has no side effects.
                Scheme::Vhe => unsafe { $(if let Some(s) = slots.next() { *s = platform::mrs!($el12); })* },
                // SAFETY: as above.
                Scheme::Nvhe => unsafe { $(if let Some(s) = slots.next() { *s = platform::mrs!($el1); })* },
            }
            // SAFETY: as above.
            unsafe { $(if let Some(s) = slots.next() { *s = platform::mrs!($plain); })* }
        }

        fn load_system(regs: &[u64; SYSTEM_REGS]) {
            let mut slots = regs.iter();
            match scheme() {
                // SAFETY: these registers hold guest state only; EL2's own
                // translation and exception state is in the EL2 registers.
                Scheme::Vhe => unsafe { $(if let Some(&v) = slots.next() { platform::msr!($el12, v); })* },
                // SAFETY: as above.
                Scheme::Nvhe => unsafe { $(if let Some(&v) = slots.next() { platform::msr!($el1, v); })* },
            }
            // SAFETY: as above.
            unsafe { $(if let Some(&v) = slots.next() { platform::msr!($plain, v); })* }
        }

        const _: () = assert!([$($el1,)* $($plain,)*].len() == SYSTEM_REGS);
    };
}

system_registers! {
    aliased:
        "sctlr_el1" / "S3_5_C1_C0_0",
        "cpacr_el1" / "S3_5_C1_C0_2",
        "ttbr0_el1" / "S3_5_C2_C0_0",
        "ttbr1_el1" / "S3_5_C2_C0_1",
        "tcr_el1" / "S3_5_C2_C0_2",
        "afsr0_el1" / "S3_5_C5_C1_0",
        "afsr1_el1" / "S3_5_C5_C1_1",
        "esr_el1" / "S3_5_C5_C2_0",
        "far_el1" / "S3_5_C6_C0_0",
        "mair_el1" / "S3_5_C10_C2_0",
        "amair_el1" / "S3_5_C10_C3_0",
        "vbar_el1" / "S3_5_C12_C0_0",
        "contextidr_el1" / "S3_5_C13_C0_1",
        "spsr_el1" / "S3_5_C4_C0_0",
        "elr_el1" / "S3_5_C4_C0_1",
    plain:
        "sp_el1",
        "sp_el0",
        "tpidr_el1",
        "tpidr_el0",
        "tpidrro_el0",
        "par_el1",
        "csselr_el1",
        "vmpidr_el2",
        "cntvoff_el2",
        "vpidr_el2",
}

/// `CNTx_CTL`: ENABLE set, nothing else: a timer that fires.
fn save_timers() -> Timers {
    let t = match scheme() {
        // SAFETY: reading the guest's timer registers has no side effects.
        Scheme::Vhe => unsafe {
            Timers {
                cntv_ctl: platform::mrs!("S3_5_C14_C3_1"),
                cntv_cval: platform::mrs!("S3_5_C14_C3_2"),
                cntp_ctl: platform::mrs!("S3_5_C14_C2_1"),
                cntp_cval: platform::mrs!("S3_5_C14_C2_2"),
                cntkctl: platform::mrs!("S3_5_C14_C1_0"),
            }
        },
        // SAFETY: as above.
        Scheme::Nvhe => unsafe {
            Timers {
                cntv_ctl: platform::mrs!("cntv_ctl_el0"),
                cntv_cval: platform::mrs!("cntv_cval_el0"),
                cntp_ctl: platform::mrs!("cntp_ctl_el0"),
                cntp_cval: platform::mrs!("cntp_cval_el0"),
                cntkctl: platform::mrs!("cntkctl_el1"),
            }
        },
    };
    crate::arch::sysregs::write(crate::arch::sysregs::GuestReg::CntvCtl, 0);
    crate::arch::sysregs::write(crate::arch::sysregs::GuestReg::CntpCtl, 0);
    t
}

fn load_timers(t: &Timers) {
    // Read-only ISTATUS is ignored on writes.
    match scheme() {
        // SAFETY: the guest's own timers; their interrupts are forwarded
        // to the vCPU being loaded.
        Scheme::Vhe => unsafe {
            platform::msr!("S3_5_C14_C1_0", t.cntkctl);
            platform::msr!("S3_5_C14_C3_2", t.cntv_cval);
            platform::msr!("S3_5_C14_C2_2", t.cntp_cval);
            platform::msr!("S3_5_C14_C3_1", t.cntv_ctl);
            platform::msr!("S3_5_C14_C2_1", t.cntp_ctl);
        },
        // SAFETY: as above.
        Scheme::Nvhe => unsafe {
            platform::msr!("cntkctl_el1", t.cntkctl);
            platform::msr!("cntv_cval_el0", t.cntv_cval);
            platform::msr!("cntp_cval_el0", t.cntp_cval);
            platform::msr!("cntv_ctl_el0", t.cntv_ctl);
            platform::msr!("cntp_ctl_el0", t.cntp_ctl);
        },
    }
}

fn save_keys(keys: &mut [u64; 10]) {
    // SAFETY: reading the key registers has no side effects (HCR_EL2.APK
    // is set, so EL2's accesses do not trap).
    unsafe {
        *keys = [
            platform::mrs!("S3_0_C2_C1_0"),
            platform::mrs!("S3_0_C2_C1_1"),
            platform::mrs!("S3_0_C2_C1_2"),
            platform::mrs!("S3_0_C2_C1_3"),
            platform::mrs!("S3_0_C2_C2_0"),
            platform::mrs!("S3_0_C2_C2_1"),
            platform::mrs!("S3_0_C2_C2_2"),
            platform::mrs!("S3_0_C2_C2_3"),
            platform::mrs!("S3_0_C2_C3_0"),
            platform::mrs!("S3_0_C2_C3_1"),
        ];
    }
}

fn load_keys(keys: &[u64; 10]) {
    let [ia_lo, ia_hi, ib_lo, ib_hi, da_lo, da_hi, db_lo, db_hi, ga_lo, ga_hi] = *keys;
    // SAFETY: EL2 code is built without pointer authentication, so these
    // keys are the guest's alone.
    unsafe {
        platform::msr!("S3_0_C2_C1_0", ia_lo);
        platform::msr!("S3_0_C2_C1_1", ia_hi);
        platform::msr!("S3_0_C2_C1_2", ib_lo);
        platform::msr!("S3_0_C2_C1_3", ib_hi);
        platform::msr!("S3_0_C2_C2_0", da_lo);
        platform::msr!("S3_0_C2_C2_1", da_hi);
        platform::msr!("S3_0_C2_C2_2", db_lo);
        platform::msr!("S3_0_C2_C2_3", db_hi);
        platform::msr!("S3_0_C2_C3_0", ga_lo);
        platform::msr!("S3_0_C2_C3_1", ga_hi);
    }
}

/// `read_dbg(kind, n)` / `write_dbg(kind, n, value)` over the sixteen
/// `DBG{B,W}{V,C}R<n>_EL1` of each kind (op0 2, op1 0, CRn 0, CRm n,
/// op2 4 to 7).
macro_rules! debug_registers {
    ($($n:literal),*) => {
        fn read_dbg(op2: u8, n: usize) -> u64 {
            // SAFETY: reading a breakpoint or watchpoint register has no
            // side effects.
            unsafe {
                match (op2, n) {
                    $(
                        (4, $n) => platform::mrs!(concat!("S2_0_C0_C", $n, "_4")),
                        (5, $n) => platform::mrs!(concat!("S2_0_C0_C", $n, "_5")),
                        (6, $n) => platform::mrs!(concat!("S2_0_C0_C", $n, "_6")),
                        (7, $n) => platform::mrs!(concat!("S2_0_C0_C", $n, "_7")),
                    )*
                    _ => 0,
                }
            }
        }

        fn write_dbg(op2: u8, n: usize, value: u64) {
            // SAFETY: the guest's own breakpoints and watchpoints; EL2 sets
            // none of its own.
            unsafe {
                match (op2, n) {
                    $(
                        (4, $n) => platform::msr!(concat!("S2_0_C0_C", $n, "_4"), value),
                        (5, $n) => platform::msr!(concat!("S2_0_C0_C", $n, "_5"), value),
                        (6, $n) => platform::msr!(concat!("S2_0_C0_C", $n, "_6"), value),
                        (7, $n) => platform::msr!(concat!("S2_0_C0_C", $n, "_7"), value),
                    )*
                    _ => {}
                }
            }
        }
    };
}

debug_registers!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

const BVR: u8 = 4;
const BCR: u8 = 5;
const WVR: u8 = 6;
const WCR: u8 = 7;
/// `OSLSR_EL1.OSLK` (bit 1), written back through `OSLAR_EL1` bit 0.
const OSLSR_OSLK_SHIFT: u32 = 1;

fn save_debug(d: &mut Debug, f: Features) {
    for n in 0..f.breakpoints {
        if let (Some(v), Some(c)) = (d.bvr.get_mut(n), d.bcr.get_mut(n)) {
            (*v, *c) = (read_dbg(BVR, n), read_dbg(BCR, n));
        }
    }
    for n in 0..f.watchpoints {
        if let (Some(v), Some(c)) = (d.wvr.get_mut(n), d.wcr.get_mut(n)) {
            (*v, *c) = (read_dbg(WVR, n), read_dbg(WCR, n));
        }
    }
    // SAFETY: reading debug state registers has no side effects.
    unsafe {
        d.os_lock = (platform::mrs!("oslsr_el1") >> OSLSR_OSLK_SHIFT) & 1;
        d.osdlr = platform::mrs!("osdlr_el1");
        d.claim = platform::mrs!("dbgclaimclr_el1");
    }
}

fn load_debug(d: &Debug, f: Features) {
    for n in 0..f.breakpoints {
        write_dbg(BVR, n, d.bvr.get(n).copied().unwrap_or(0));
        write_dbg(BCR, n, d.bcr.get(n).copied().unwrap_or(0));
    }
    for n in 0..f.watchpoints {
        write_dbg(WVR, n, d.wvr.get(n).copied().unwrap_or(0));
        write_dbg(WCR, n, d.wcr.get(n).copied().unwrap_or(0));
    }
    // SAFETY: the guest's own debug state (see `write_dbg`).
    unsafe {
        platform::msr!("oslar_el1", d.os_lock);
        platform::msr!("osdlr_el1", d.osdlr);
        platform::msr!("dbgclaimclr_el1", 0xffu64);
        platform::msr!("dbgclaimset_el1", d.claim);
    }
}

/// `PMCR_EL0.P` and `.C` (bits 1, 2) reset counters when written as 1.
const PMCR_RESET_BITS: u64 = 0b110;
/// `PMCNTENSET`/`PMINTENSET`/`PMOVSSET`: every counter, the cycle counter
/// (bit 31) included.
const ALL_COUNTERS: u64 = 0xffff_ffff;

fn save_pmu(p: &mut Pmu, f: Features) {
    // SAFETY: reading PMU registers at EL2 has no side effects.
    unsafe {
        p.pmcr = platform::mrs!("pmcr_el0");
        p.selr = platform::mrs!("pmselr_el0");
        p.cnten = platform::mrs!("pmcntenset_el0");
        p.inten = platform::mrs!("pmintenset_el1");
        p.ovs = platform::mrs!("pmovsset_el0");
        p.userenr = platform::mrs!("pmuserenr_el0");
        p.ccntr = platform::mrs!("pmccntr_el0");
        p.ccfiltr = platform::mrs!("pmccfiltr_el0");
        for n in 0..f.counters {
            platform::msr!("pmselr_el0", n as u64);
            aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
            if let (Some(c), Some(t)) = (p.evcntr.get_mut(n), p.evtyper.get_mut(n)) {
                *c = platform::mrs!("pmxevcntr_el0");
                *t = platform::mrs!("pmxevtyper_el0");
            }
        }
        // Stop counting for the next vCPU until it loads its own.
        platform::msr!("pmcntenclr_el0", ALL_COUNTERS);
    }
}

fn load_pmu(p: &Pmu, f: Features) {
    // SAFETY: the guest's own counters (`MDCR_EL2.HPMN` gives it all);
    // EL2 counts nothing itself.
    unsafe {
        platform::msr!("pmcntenclr_el0", ALL_COUNTERS);
        for n in 0..f.counters {
            platform::msr!("pmselr_el0", n as u64);
            aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
            platform::msr!("pmxevcntr_el0", p.evcntr.get(n).copied().unwrap_or(0));
            platform::msr!("pmxevtyper_el0", p.evtyper.get(n).copied().unwrap_or(0));
        }
        platform::msr!("pmselr_el0", p.selr);
        platform::msr!("pmccntr_el0", p.ccntr);
        platform::msr!("pmccfiltr_el0", p.ccfiltr);
        platform::msr!("pmuserenr_el0", p.userenr);
        platform::msr!("pmovsclr_el0", ALL_COUNTERS);
        platform::msr!("pmovsset_el0", p.ovs);
        platform::msr!("pmintenclr_el1", ALL_COUNTERS);
        platform::msr!("pmintenset_el1", p.inten);
        platform::msr!("pmcr_el0", p.pmcr & !PMCR_RESET_BITS);
        platform::msr!("pmcntenset_el0", p.cnten);
    }
}
