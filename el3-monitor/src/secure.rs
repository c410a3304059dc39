//! The secure-world configuration each CPU gets before it leaves EL3.
//!
//! Lower ELs are Non-secure and AArch64; HVC works; SMC comes here; IRQs and
//! FIQs stay with the Non-secure side. External aborts and SErrors come here
//! (`SCR_EL3.EA`): the monitor serves its ECAM window's aborts, reflects the
//! other aborts to where they would have gone, and stops on an SError
//! (`crate::exceptions`). QEMU ignores `SCR_EL3.EA` for synchronous aborts,
//! so there nothing changes for them. Architecture features the CPU has are
//! handed down untrapped (FP/SIMD, SVE, SME, pointer authentication, MTE,
//! fine-grained traps, `HCRX_EL2`, enhanced counter virtualisation), each
//! only when the ID registers say the feature exists, because setting an
//! enable bit for an absent feature is not allowed. The GIC's interrupts all
//! become Non-secure Group 1, owned by the hypervisor.

use aarch64_cpu::registers::{
    Readable, ID_AA64DFR0_EL1, ID_AA64ISAR1_EL1, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, ID_AA64PFR0_EL1, ID_AA64PFR1_EL1,
};
use arm_gic::gicv3::registers::{Gicd, GicdCtlr, GicrSgi};
use arm_gic::gicv3::{GicV3, Group};
use arm_gic::{IntId, UniqueMmioPointer};
use core::ptr::NonNull;
use platform::arch::regs::*;
use platform::board::{Board, Gic, GicVersion};
use platform::gicv2;

/// What the ID registers say this CPU implements.
struct Features {
    pauth: bool,
    sve: bool,
    sme: bool,
    mte2: bool,
    fgt: bool,
    ecv: bool,
    hcx: bool,
    csv2_2: bool,
    spe: bool,
}

impl Features {
    fn read() -> Self {
        let isar1 = ID_AA64ISAR1_EL1.get();
        let isar2 = read_id_aa64isar2();
        let pfr0 = ID_AA64PFR0_EL1.get();
        let pfr1 = ID_AA64PFR1_EL1.get();
        let mmfr0 = ID_AA64MMFR0_EL1.get();
        let mmfr1 = ID_AA64MMFR1_EL1.get();
        let dfr0 = ID_AA64DFR0_EL1.get();
        Self {
            pauth: ID_AA64ISAR1_APA.present(isar1)
                || ID_AA64ISAR1_API.present(isar1)
                || ID_AA64ISAR1_GPA.present(isar1)
                || ID_AA64ISAR1_GPI.present(isar1)
                || ID_AA64ISAR2_APA3.present(isar2)
                || ID_AA64ISAR2_GPA3.present(isar2),
            sve: ID_AA64PFR0_SVE.present(pfr0),
            sme: ID_AA64PFR1_SME.present(pfr1),
            mte2: ID_AA64PFR1_MTE.get(pfr1) >= 2,
            fgt: ID_AA64MMFR0_FGT.present(mmfr0),
            ecv: ID_AA64MMFR0_ECV.present(mmfr0),
            hcx: ID_AA64MMFR1_HCX.present(mmfr1),
            csv2_2: ID_AA64PFR0_CSV2.get(pfr0) >= 2,
            spe: ID_AA64DFR0_PMSVER.present(dfr0),
        }
    }
}

fn read_id_aa64isar2() -> u64 {
    // SAFETY: ID_AA64ISAR2_EL1 is a read-only ID register (RAZ where the
    // CPU predates it); reading it has no side effects.
    unsafe { platform::mrs!("S3_0_C0_C6_2") }
}

/// A CPU the firmware cannot run on, named by its identification.
#[derive(Clone, Copy, Debug)]
pub struct UnsupportedCpu {
    pub mpidr: u64,
    pub midr: u64,
}

impl core::fmt::Display for UnsupportedCpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "CPU MPIDR {:#x} (MIDR {:#x}) implements no EL2, where the hypervisor runs; \
             supported: AArch64 CPUs with EL3 and EL2 (on QEMU: -M ...,virtualization=on)",
            self.mpidr & platform::board::MPIDR_AFFINITY_MASK,
            self.midr
        )
    }
}

/// Whether this CPU has what the firmware needs below EL3: an EL2 (a CPU
/// without one would take the monitor's `ERET` to EL2 as an illegal
/// return, and nothing would say why).
pub fn check_cpu() -> Result<(), UnsupportedCpu> {
    use aarch64_cpu::registers::{MIDR_EL1, MPIDR_EL1};
    if ID_AA64PFR0_EL2.present(ID_AA64PFR0_EL1.get()) {
        Ok(())
    } else {
        Err(UnsupportedCpu { mpidr: MPIDR_EL1.get(), midr: MIDR_EL1.get() })
    }
}

macro_rules! write_sysreg {
    ($reg:literal, $value:expr) => {
        // SAFETY: the EL3 configuration registers written here only change
        // how lower ELs are trapped and which world they run in; the caller
        // has not yet entered any lower EL on this CPU.
        unsafe {
            platform::msr!($reg, $value);
        }
    };
}

/// Configures this CPU's EL3 controls for a Non-secure EL2 below us.
pub fn init_cpu(board: &Board) {
    let f = Features::read();

    let mut scr = SCR_NS | SCR_RW | SCR_HCE | SCR_EA;
    if f.pauth {
        scr |= SCR_APK | SCR_API;
    }
    if f.mte2 {
        scr |= SCR_ATA;
    }
    if f.fgt {
        scr |= SCR_FGTEN;
    }
    if f.ecv {
        scr |= SCR_ECVEN;
    }
    if f.hcx {
        scr |= SCR_HXEN;
    }
    if f.csv2_2 {
        scr |= SCR_ENSCXT;
    }
    write_sysreg!("scr_el3", scr);

    // FP/SIMD untrapped (TFP = 0); SVE and SME untrapped where present.
    let mut cptr = 0;
    if f.sve {
        cptr |= CPTR_EL3_EZ;
    }
    if f.sme {
        cptr |= CPTR_EL3_ESM;
    }
    write_sysreg!("cptr_el3", cptr);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    if f.sve {
        // ZCR_EL3: let lower ELs use every vector length the CPU has.
        write_sysreg!("S3_6_C1_C2_0", ZCR_LEN_MAX);
    }
    if f.sme {
        // SAFETY: ID_AA64SMFR0_EL1 is a read-only ID register.
        let smfr0 = unsafe { platform::mrs!("S3_0_C0_C4_5") };
        let fa64 = if smfr0 & ID_AA64SMFR0_FA64 != 0 { SMCR_FA64 } else { 0 };
        // SMCR_EL3: every streaming vector length, full A64 where offered.
        write_sysreg!("S3_6_C1_C2_6", ZCR_LEN_MAX | fa64);
    }

    // Secure self-hosted debug off; the PMU and debug registers untrapped;
    // the profiling buffer owned by the Non-secure side where it exists.
    let mut mdcr = MDCR_EL3_SDD | MDCR_EL3_SPD32_DISABLED;
    if f.spe {
        mdcr |= MDCR_EL3_NSPB_NS;
    }
    write_sysreg!("mdcr_el3", mdcr);

    // Firmware owns the counter frequency: take the DTB's word for it where
    // it gives one, else keep what the platform programmed at reset.
    if let Some(freq) = board.timer.clock_frequency {
        write_sysreg!("cntfrq_el0", u64::from(freq));
    }

    if board.gic.version == GicVersion::V3 {
        // System-register access to the GIC CPU interface for EL3 and EL2,
        // and for EL2 to grant it to EL1.
        write_sysreg!("icc_sre_el3", ICC_SRE_SRE | ICC_SRE_DFB | ICC_SRE_DIB | ICC_SRE_ENABLE);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    }
    // SCTLR_EL2 starts UNKNOWN: give EL2 a defined one with its MMU off.
    write_sysreg!("sctlr_el2", SCTLR_EL23_RES1);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Why the GIC could not be handed to the Non-secure world.
#[derive(Debug)]
pub enum GicSetupError {
    /// The GIC description lacks a usable register frame.
    Missing,
    /// The redistributor for this CPU could not be reached.
    Redistributor(arm_gic::gicv3::GicError),
    /// No GIC of the DTB's version answers at a frame the DTB names: `found`
    /// is its `PIDR2`, `None` if the read aborted.
    NotAGic { version: GicVersion, frame: &'static str, base: u64, found: Option<u32> },
}

impl core::fmt::Display for GicSetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing => write!(f, "the DTB gives the GIC no usable register frames"),
            Self::Redistributor(e) => write!(f, "GIC redistributor: {e:?}"),
            Self::NotAGic { version, frame, base, found } => {
                let (name, revisions) = match version {
                    GicVersion::V2 => ("GICv2", "ArchRev 2"),
                    GicVersion::V3 => ("GICv3", "ArchRev 3 or 4"),
                };
                write!(f, "no {name} {frame} at {base:#x}, where the DTB puts it: ")?;
                match found {
                    Some(pidr2) => write!(f, "its PIDR2 reads {pidr2:#x}, not {revisions}"),
                    None => write!(f, "reading it aborts"),
                }
            }
        }
    }
}

fn gic(board: &Board) -> Result<GicV3<'static>, GicSetupError> {
    let gic = &board.gic;
    let redist = gic.redistributors.first().ok_or(GicSetupError::Missing)?;
    let gicd = NonNull::new(gic.distributor.base as *mut Gicd).ok_or(GicSetupError::Missing)?;
    let gicr = NonNull::new(redist.base as *mut GicrSgi).ok_or(GicSetupError::Missing)?;
    // SAFETY: the addresses are the GIC's register frames from the DTB; EL3
    // runs with its MMU off, so they are accessed as Device memory, and this
    // driver instance is the only one touching them while it lives.
    unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, board.cpus.len()).map_err(GicSetupError::Redistributor) }
}

/// A GICv2's distributor and this CPU's interface.
fn gicv2(board: &Board) -> Result<(gicv2::Distributor, gicv2::CpuInterface), GicSetupError> {
    let gic = &board.gic;
    let cpu_interface = gic.cpu_interface.ok_or(GicSetupError::Missing)?;
    if gic.distributor.base == 0 || cpu_interface.base == 0 {
        return Err(GicSetupError::Missing);
    }
    // SAFETY: the GICv2 frames the DTB names (`check_gic_answers` found a
    // GICv2 there), reached with the MMU off, so as Device memory.
    unsafe {
        Ok((
            gicv2::Distributor::new(gic.distributor.base as usize),
            gicv2::CpuInterface::new(cpu_interface.base as usize),
        ))
    }
}

/// Checks that a GIC of the DTB's version answers at the frames the DTB
/// names (the distributor, and a GICv3's first redistributor), before the
/// driver polls registers there (a wrong address would leave it waiting
/// forever for a bit to clear).
fn check_gic_answers(board: &Board) -> Result<(), GicSetupError> {
    let gic = &board.gic;
    let version = gic.version;
    let frames = match version {
        GicVersion::V3 => {
            let redistributor = gic.redistributors.first().ok_or(GicSetupError::Missing)?;
            [
                ("distributor", gic.distributor.base, Gic::PIDR2_OFFSET),
                ("redistributor", redistributor.base, Gic::PIDR2_OFFSET),
            ]
        }
        // The CPU interface has no PIDR2; the distributor says enough.
        GicVersion::V2 => [("distributor", gic.distributor.base, gicv2::gicd::PIDR2); 2],
    };
    for (frame, base, offset) in frames {
        let pidr2 = base.checked_add(offset).ok_or(GicSetupError::Missing)?;
        // SAFETY: PIDR2 is a read-only ID register inside the frame the DTB
        // names (`platform::board` checks its window holds it), reached
        // with the MMU off; the monitor's vector recovers an abort.
        let found = unsafe { platform::arch::probe::read_u32(pidr2 as usize) };
        let answers = match version {
            GicVersion::V3 => found.is_some_and(Gic::pidr2_is_v3_or_v4),
            GicVersion::V2 => found.is_some_and(gicv2::pidr2_is_v2),
        };
        if !answers {
            return Err(GicSetupError::NotAGic { version, frame, base, found });
        }
    }
    Ok(())
}

/// Boot CPU, once: every SPI in Non-secure Group 1 and Group 1 forwarded;
/// on a GICv3 with affinity routing on for both worlds.
pub fn init_gic_distributor(board: &Board) -> Result<(), GicSetupError> {
    check_gic_answers(board)?;
    if board.gic.version == GicVersion::V2 {
        let (distributor, _) = gicv2(board)?;
        let blocks = distributor.spis() / 32;
        for block in 1..=blocks as u32 {
            distributor.set_groups(block, true);
        }
        distributor.set_control(gicv2::GICD_CTLR_S_ENABLE_GRP0 | gicv2::GICD_CTLR_S_ENABLE_GRP1);
        return Ok(());
    }
    let mut gic = gic(board)?;
    gic.gicd_set_control(GicdCtlr::ARE_S | GicdCtlr::ARE_NS);
    let spis = gic.typer().num_spis();
    for spi in 0..spis {
        let _ = gic.set_group(IntId::spi(spi), None, Group::Group1NS);
    }
    gic.gicd_set_control(GicdCtlr::EnableGrp1NS);
    Ok(())
}

/// Each CPU: give its SGIs and PPIs to Non-secure Group 1; a GICv3's
/// redistributor is woken first, a GICv2's CPU interface gets Group 1 on
/// and a Secure priority mask that lets the Non-secure side set its own
/// (a Non-secure write of `GICC_PMR` is ignored while the Secure value is
/// below 0x80).
pub fn init_gic_cpu(board: &Board, cpu: usize) -> Result<(), GicSetupError> {
    if board.gic.version == GicVersion::V2 {
        let (distributor, cpu_interface) = gicv2(board)?;
        distributor.set_groups(0, true);
        cpu_interface.set_pmr(gicv2::PMR_ALL as u8);
        cpu_interface.set_control(gicv2::GICC_CTLR_S_ENABLE_GRP1);
        return Ok(());
    }
    let mut gic = gic(board)?;
    // Awake already is fine: the CPU may not have gone through CPU_OFF.
    match gic.redistributor_mark_core_awake(cpu) {
        Ok(()) | Err(arm_gic::gicv3::GicError::AlreadyAwake) => {}
        Err(e) => return Err(GicSetupError::Redistributor(e)),
    }
    for sgi in 0..IntId::SGI_COUNT {
        gic.set_group(IntId::sgi(sgi), Some(cpu), Group::Group1NS).map_err(GicSetupError::Redistributor)?;
    }
    for ppi in 0..IntId::PPI_COUNT {
        gic.set_group(IntId::ppi(ppi), Some(cpu), Group::Group1NS).map_err(GicSetupError::Redistributor)?;
    }
    Ok(())
}

/// PSCI `CPU_OFF` of the CPU with redistributor `cpu`: tells a GICv3's
/// redistributor the core is going to sleep, so that it stops forwarding
/// interrupts and the next `CPU_ON` wakes it cleanly. A GICv2 has no such
/// state: the CPU's interface is set up again when it comes back.
pub fn gic_cpu_off(board: &Board, cpu: usize) -> Result<(), GicSetupError> {
    if board.gic.version == GicVersion::V2 {
        return Ok(());
    }
    let mut gic = gic(board)?;
    match gic.redistributor_mark_core_asleep(cpu) {
        Ok(()) | Err(arm_gic::gicv3::GicError::AlreadyAsleep) => Ok(()),
        Err(e) => Err(GicSetupError::Redistributor(e)),
    }
}
