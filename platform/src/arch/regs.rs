//! Named bits of the system registers the images program directly.
//!
//! `aarch64-cpu` names many fields; where it lacks one (most of `SCR_EL3`,
//! `CPTR_EL3`, `MDCR_EL3`, the RES1 masks, ID-register feature fields) it is
//! named here, once, with the Arm ARM's spelling, so that no image writes a
//! bare number into a system register.

/// Bit `n` as a `u64` mask.
const fn bit(n: u32) -> u64 {
    1 << n
}

// ---- MPIDR_EL1 ---------------------------------------------------------
/// Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0 [7:0].
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

// ---- SPSR_ELx (AArch64 state) -----------------------------------------
pub const SPSR_M_EL_SHIFT: u32 = 2;
/// M[3:0] for "EL1 using SP_EL1".
pub const SPSR_M_EL1H: u64 = 0b0101;
/// M[3:0] for "EL2 using SP_EL2".
pub const SPSR_M_EL2H: u64 = 0b1001;
/// M[0]: the exception used SP_ELx rather than SP_EL0.
pub const SPSR_M_SP_ELX: u64 = bit(0);
/// M[4]: the exception came from AArch32.
pub const SPSR_M_AARCH32: u64 = bit(4);
pub const SPSR_F: u64 = bit(6);
pub const SPSR_I: u64 = bit(7);
pub const SPSR_A: u64 = bit(8);
pub const SPSR_D: u64 = bit(9);
/// SSBS, bit 12: speculative store bypass safe (FEAT_SSBS).
pub const SPSR_SSBS: u64 = bit(12);
/// PAN, bit 22: privileged access never (FEAT_PAN).
pub const SPSR_PAN: u64 = bit(22);
/// All of D, A, I and F masked: how every lower EL is first entered.
pub const SPSR_DAIF: u64 = SPSR_D | SPSR_A | SPSR_I | SPSR_F;

// ---- SCTLR_ELx ---------------------------------------------------------
pub const SCTLR_M: u64 = bit(0);
pub const SCTLR_A: u64 = bit(1);
pub const SCTLR_C: u64 = bit(2);
pub const SCTLR_SA: u64 = bit(3);
pub const SCTLR_I: u64 = bit(12);
/// SPAN, bit 23: 0 sets `PSTATE.PAN` on taking an exception to this EL
/// (RES1 without FEAT_PAN, and for `SCTLR_EL2` unless `HCR_EL2.{E2H,TGE}`
/// are both set).
pub const SCTLR_SPAN: u64 = bit(23);
/// DSSBS, bit 44: the value `PSTATE.SSBS` takes on taking an exception to
/// this EL (RES0 without FEAT_SSBS).
pub const SCTLR_DSSBS: u64 = bit(44);
/// RES1 bits of `SCTLR_EL3` and of `SCTLR_EL2` with `HCR_EL2.E2H == 0`
/// (bits 4, 5, 11, 16, 18, 22, 23, 28, 29).
pub const SCTLR_EL23_RES1: u64 = bit(4) | bit(5) | bit(11) | bit(16) | bit(18) | bit(22) | bit(23) | bit(28) | bit(29);
/// `SCTLR_EL1` bits that are RES1 on Armv8.0 and keep their v8.0 behaviour
/// when set on later CPUs: LSMAOE, nTLSMD, EIS, TSCXT, EOS.
pub const SCTLR_EL1_RES1: u64 = bit(29) | bit(28) | bit(22) | bit(20) | bit(11);

// ---- SCR_EL3 -----------------------------------------------------------
/// Lower ELs are Non-secure.
pub const SCR_NS: u64 = bit(0);
pub const SCR_IRQ: u64 = bit(1);
pub const SCR_FIQ: u64 = bit(2);
/// External aborts and SError go to EL3.
pub const SCR_EA: u64 = bit(3);
/// SMC disabled (we keep it enabled: 0).
pub const SCR_SMD: u64 = bit(7);
/// HVC enabled at EL1 and above.
pub const SCR_HCE: u64 = bit(8);
/// The next lower EL is AArch64.
pub const SCR_RW: u64 = bit(10);
/// Pointer-authentication key registers are not trapped (FEAT_PAuth).
pub const SCR_APK: u64 = bit(16);
/// Pointer-authentication instructions are not trapped (FEAT_PAuth).
pub const SCR_API: u64 = bit(17);
/// SCXTNUM_ELx accesses are not trapped (FEAT_CSV2_2).
pub const SCR_ENSCXT: u64 = bit(25);
/// Allocation-tag access is not trapped (FEAT_MTE2).
pub const SCR_ATA: u64 = bit(26);
/// The fine-grained trap registers are usable at EL2 (FEAT_FGT).
pub const SCR_FGTEN: u64 = bit(27);
/// The enhanced counter-virtualisation registers are usable (FEAT_ECV).
pub const SCR_ECVEN: u64 = bit(28);
/// `HCRX_EL2` is usable (FEAT_HCX).
pub const SCR_HXEN: u64 = bit(38);

// ---- HCR_EL2 -----------------------------------------------------------
/// Stage 2 translation of EL1&0 is on.
pub const HCR_VM: u64 = bit(0);
/// Trap general exceptions: EL0 runs under EL2 (the host's EL0 with VHE),
/// and its exceptions go to EL2.
pub const HCR_TGE: u64 = bit(27);
/// EL1 is AArch64.
pub const HCR_RW: u64 = bit(31);
/// The EL2 host (VHE) scheme.
pub const HCR_E2H: u64 = bit(34);
/// Synchronous external aborts from EL0/EL1 go to EL2 (FEAT_RAS).
pub const HCR_TEA: u64 = bit(37);

// ---- CPTR_EL3 ----------------------------------------------------------
/// SVE is not trapped.
pub const CPTR_EL3_EZ: u64 = bit(8);
/// FP/SIMD is trapped (we leave it 0).
pub const CPTR_EL3_TFP: u64 = bit(10);
/// SME is not trapped.
pub const CPTR_EL3_ESM: u64 = bit(12);

// ---- CPTR_EL2 with HCR_EL2.E2H == 0 ------------------------------------
/// RES1 bits: [7:0], 9, 12 (TSM without SME) and 13.
pub const CPTR_EL2_RES1: u64 = 0xff | bit(9) | bit(12) | bit(13);

// ---- ZCR_EL3 / SMCR_EL3 ------------------------------------------------
/// LEN field: the largest vector length the hardware offers.
pub const ZCR_LEN_MAX: u64 = 0xf;
/// Full A64 instruction set in streaming mode (FEAT_SME_FA64).
pub const SMCR_FA64: u64 = bit(31);

// ---- MDCR_EL3 ----------------------------------------------------------
/// SPD32 = 0b10: secure privileged AArch32 debug disabled.
pub const MDCR_EL3_SPD32_DISABLED: u64 = 0b10 << 14;
/// NSPB = 0b11: the statistical-profiling buffer is owned by Non-secure EL1/EL2.
pub const MDCR_EL3_NSPB_NS: u64 = 0b11 << 12;
/// Secure self-hosted debug disabled.
pub const MDCR_EL3_SDD: u64 = bit(16);

// ---- ICC_SRE_ELx ---------------------------------------------------------
pub const ICC_SRE_SRE: u64 = bit(0);
pub const ICC_SRE_DFB: u64 = bit(1);
pub const ICC_SRE_DIB: u64 = bit(2);
/// Lower ELs may access their own `ICC_SRE_ELx`.
pub const ICC_SRE_ENABLE: u64 = bit(3);

// ---- ID registers ------------------------------------------------------
/// A 4-bit ID-register field.
#[derive(Clone, Copy, Debug)]
pub struct IdField {
    pub shift: u32,
}

impl IdField {
    /// The field's value in `id`.
    pub const fn get(self, id: u64) -> u64 {
        (id >> self.shift) & 0xf
    }

    /// Whether the feature is implemented at all (field non-zero).
    pub const fn present(self, id: u64) -> bool {
        self.get(id) != 0
    }
}

pub const ID_AA64PFR0_SVE: IdField = IdField { shift: 32 };
/// EL2: 0 not implemented, 1 AArch64 only, 2 AArch64 and AArch32.
pub const ID_AA64PFR0_EL2: IdField = IdField { shift: 8 };
pub const ID_AA64PFR0_GIC: IdField = IdField { shift: 24 };
pub const ID_AA64PFR0_CSV2: IdField = IdField { shift: 56 };
pub const ID_AA64PFR1_MTE: IdField = IdField { shift: 8 };
pub const ID_AA64PFR1_SME: IdField = IdField { shift: 24 };
pub const ID_AA64ISAR1_APA: IdField = IdField { shift: 4 };
pub const ID_AA64ISAR1_API: IdField = IdField { shift: 8 };
pub const ID_AA64ISAR1_GPA: IdField = IdField { shift: 24 };
pub const ID_AA64ISAR1_GPI: IdField = IdField { shift: 28 };
pub const ID_AA64ISAR2_GPA3: IdField = IdField { shift: 8 };
pub const ID_AA64ISAR2_APA3: IdField = IdField { shift: 12 };
pub const ID_AA64MMFR0_PARANGE: IdField = IdField { shift: 0 };
pub const ID_AA64MMFR0_FGT: IdField = IdField { shift: 56 };
pub const ID_AA64MMFR0_ECV: IdField = IdField { shift: 60 };
pub const ID_AA64MMFR1_VH: IdField = IdField { shift: 8 };
pub const ID_AA64MMFR1_HCX: IdField = IdField { shift: 40 };
/// FEAT_XNX: stage 2's `XN[1:0]` sets execute permission per EL.
pub const ID_AA64MMFR1_XNX: IdField = IdField { shift: 28 };
pub const ID_AA64DFR0_PMUVER: IdField = IdField { shift: 8 };
pub const ID_AA64DFR0_PMSVER: IdField = IdField { shift: 32 };
/// `ID_AA64SMFR0_EL1.FA64`: full A64 in streaming mode (FEAT_SME_FA64).
pub const ID_AA64SMFR0_FA64: u64 = bit(63);

/// Physical-address size in bits for an `ID_AA64MMFR0_EL1.PARange` value.
pub const fn pa_range_bits(parange: u64) -> u32 {
    match parange {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

// ---- PMCR_EL0 ----------------------------------------------------------
/// N [15:11]: number of event counters.
pub const PMCR_N_SHIFT: u32 = 11;
pub const PMCR_N_MASK: u64 = 0x1f;
