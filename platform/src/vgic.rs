//! The guest's virtual GIC, a GICv3 or a GICv2 ([`Version`]): an emulated
//! distributor (and, for a GICv3, redistributors), and the list-register
//! cache that feeds the hardware's virtual CPU interface. Pure logic,
//! host-tested; the hypervisor owns one [`VGic`] behind a lock and calls
//! it from its traps. One model serves both versions: the interrupt state,
//! the routing rules and the list-register cache are the same, only the
//! register views differ.
//!
//! # Why a model
//!
//! The hypervisor never maps the GIC's MMIO into the guest: every guest
//! access to the distributor (GICD) or a redistributor (GICR) frame traps
//! and lands in [`VGic::dist_read`], [`VGic::dist_write`],
//! [`VGic::redist_read`] or [`VGic::redist_write`]. The guest's CPU
//! interface (`ICC_*` system registers; a GICv2's `GICC` frame) is
//! virtualised by hardware (`ICV_*`; the `GICV` frame) from the list
//! registers `ICH_LR<n>_EL2` (`GICH_LR<n>`), which the hypervisor fills
//! from this model. So the model is the single source of truth for every
//! interrupt's enable, pending, active, group, priority, trigger and route;
//! the list registers only cache a few interrupts while a vCPU runs.
//!
//! What a GICv3 guest sees ([`VGic::configure`]): one security state
//! (`GICD_CTLR.DS` = 1, as KVM presents it), affinity routing always on
//! (`ARE` RAO/WI), no LPIs or ITS, no GICv2 compatibility, [`MAX_VCPUS`]
//! redistributors at most and up to [`MAX_SPIS`] SPIs. Priorities keep the
//! [`PRIORITY_BITS`] high bits every GICv3 virtual CPU interface
//! implements. Anything else (unknown offsets, INTIDs beyond the configured
//! SPIs, widths a register does not have, misaligned accesses) reads as
//! zero and ignores writes; nothing panics.
//!
//! # GICv2
//!
//! On a GICv2 host (GIC-400, QEMU's `virt` with `gic-version=2`) the guest
//! sees a GICv2 (`arm,cortex-a15-gic`, [`VGic::configure_v2`]): a 4 KiB
//! distributor frame ([`GICD_V2_SIZE`], IHI 0048B 4.3) and, as its CPU
//! interface, the hardware's `GICV` frame, which the hypervisor feeds
//! through the 32-bit `GICH_LR<n>` list registers. The model keeps its
//! list-register values in the GICv3 format ([`Lr`]); [`Lr::to_v2`] and
//! [`Lr::from_v2`] convert, so [`VGic::flush`] and [`VGic::fold`] are the
//! same for both. A GICv2 list register keeps 5 priority bits, as many as
//! the model ([`PRIORITY_BITS`]).
//!
//! The distributor has no Security Extensions as the guest sees it:
//! `GICD_CTLR` holds EnableGrp0 and EnableGrp1, `GICD_TYPER.SecurityExtn`
//! is 0, and `IGROUPR` is read-write. Linux's GICv2 driver writes
//! `GICD_CTLR` = 1 and leaves every interrupt in Group 0, which a GICv2
//! virtual CPU interface signals as an IRQ (`GICV_CTLR.FIQEn` = 0): Group
//! 0 is delivered like Group 1. Registers of INTIDs 0..31 are banked per
//! accessing CPU, so [`VGic::dist_read`] and [`VGic::dist_write`] take the
//! accessing vCPU; vCPU *i* is CPU interface *i*. Per register:
//!
//! - `GICD_TYPER`: ITLinesNumber as for a GICv3, CPUNumber = vCPUs - 1.
//!   `GICD_IIDR`: Arm. The ID registers (`0xFD0`..`0xFFC`): QEMU's GICv2's,
//!   `GICD_PIDR2` = `0x2B` (ArchRev 2).
//! - The bit registers, `IPRIORITYR` (byte or word) and `ICFGR`: as for a
//!   GICv3, with INTIDs 0..31 the accessing vCPU's own. SGIs are always
//!   enabled (`ISENABLER0` bits RAO, `ICENABLER0` bits WI), as on GIC-400
//!   and QEMU's GICv2; their `ISPENDR0` / `ICPENDR0` bits are read-only
//!   (IHI 0048B: SGIs pend through `SPENDSGIR`).
//! - `ITARGETSR` (byte or word): for INTIDs 0..31 read-only, each byte the
//!   accessing vCPU's own bit `1 << vcpu`; for an SPI its 8-bit target
//!   mask, the bits of CPUs that do not exist RAZ/WI, reset 0. The SPI
//!   goes to the *lowest-numbered* vCPU of its mask (a GICv2 may pick any
//!   one); with mask 0 it goes nowhere and stays pending in the model.
//! - `GICD_SGIR` (write-only): TargetListFilter 0 (the list), 1 (all but
//!   the sender) or 2 (the sender); 3 is reserved and ignored; NSATT is
//!   ignored. Its [`Effects::kick`] is the targets, as
//!   [`VGic::send_sgi`]'s result for `ICC_SGI1R_EL1`.
//! - `CPENDSGIR` / `SPENDSGIR` (byte or word): see the limitations.
//!
//! A GICv2 has no redistributors (their accessors read 0) and no
//! `ICC_SGI1R_EL1` ([`VGic::send_sgi`] does nothing). It serves at most
//! [`MAX_VCPUS_V2`] = 8 CPUs: [`VGic::configure_v2`] clamps, and a vCPU
//! beyond them has no CPU interface (its distributor accesses are RAZ/WI).
//!
//! # The list-register cache
//!
//! [`VGic::flush`] runs right before a vCPU enters the guest: it picks that
//! vCPU's interrupts that are active, or pending, enabled and in an enabled
//! group, the active ones first (an active interrupt must sit in a list
//! register, or the guest's EOI of it would be lost), then by priority and
//! INTID, and *moves* their pending and active state into the list
//! registers. [`VGic::fold`] runs right after the vCPU exits: it moves the
//! state back (pending ORs into the model, active replaces it) and empties
//! the list registers. An interrupt made pending again while it sat in a
//! list register therefore comes back pending and active, never doubled and
//! never lost. While an interrupt is cached, no other vCPU's flush takes it.
//!
//! An SPI that is active stays with the vCPU it became active on (it must
//! be deactivated there) even if the guest re-routes it meanwhile; only an
//! inactive SPI follows `GICD_IROUTER` (a GICv2's `GICD_ITARGETSR`). This
//! is KVM's "target oracle".
//!
//! # Limitations
//!
//! - A guest write that changes the state of an interrupt cached in
//!   *another* running vCPU's list registers (`ICPENDR`, `ICACTIVER`,
//!   `ICENABLER`, `IGROUPR`, `IPRIORITYR` from another vCPU) changes the
//!   model copy only: at that vCPU's next fold the list register's pending
//!   bit ORs back in and its active bit wins. Likewise `ISPENDR` and
//!   `ISACTIVER` reads do not show state that sits in a list register. (The
//!   writing vCPU's own list registers are always folded before its trap is
//!   handled, so a vCPU acting on its own interrupts is exact.)
//! - A guest that clears the pending and active state of an interrupt
//!   forwarded with the list register's HW bit drops the HW flag with it;
//!   deactivating the physical interrupt then is the hypervisor's business
//!   ([`VGic::spi_state`] tells it what the guest did).
//! - `GICR_WAKER.ProcessorSleep` is only a register: a sleeping
//!   redistributor still delivers.
//! - Trigger mode (`ICFGR`) is stored and reported, but every injection is
//!   a pending latch, as for an edge: a level-sensitive source is expected
//!   to be forwarded with the HW bit, whose line the hardware tracks.
//! - GICv2 SGIs do not record their source CPU: an SGI is pending at most
//!   once per target vCPU, however many CPUs sent it (a real GICv2 keeps
//!   one pending bit per source, and delivers each). So the guest reads
//!   source CPU 0 from `GICV_IAR` for every SGI (the list register's
//!   `CPUID` is 0); `SPENDSGIR` / `CPENDSGIR` show a pending SGI as the
//!   bit of source CPU 0, a write setting any source's bit makes the SGI
//!   pending, and one clearing any source's bit clears it. Linux ignores
//!   an SGI's source.
// Beyond the crate-wide no-panic lints (lib.rs):
#![deny(clippy::as_conversions)]

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]
mod tests;

use crate::mmio::AccessSize;
use core::mem::MaybeUninit;

/// One 64 KiB distributor frame (GICv3).
pub const GICD_SIZE: u64 = 0x1_0000;
/// A GICv2 distributor's frame: 4 KiB.
pub const GICD_V2_SIZE: u64 = crate::board::GICD_V2_WINDOW;
/// The redistributor region per vCPU: an `RD_base` frame, then an
/// `SGI_base` frame (no `VLPI_base`: no GICv4).
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Offset of a redistributor's `SGI_base` frame from its `RD_base`.
pub const GICR_SGI_BASE: u64 = 0x1_0000;
/// Most vCPUs (redistributors) the model presents.
pub const MAX_VCPUS: usize = crate::board::MAX_CPUS;
/// Most vCPUs a GICv2 distributor serves: `GICD_ITARGETSR` and
/// `GICD_SGIR` name CPU interfaces with 8-bit masks.
pub const MAX_VCPUS_V2: usize = if MAX_VCPUS < 8 { MAX_VCPUS } else { 8 };
/// Most SPIs the model presents: INTIDs [`SPI_BASE`] to
/// `SPI_BASE + MAX_SPIS - 1`.
pub const MAX_SPIS: usize = 256;
/// Most list registers a CPU interface has (`ICH_VTR_EL2.ListRegs` is 4
/// bits).
pub const MAX_LRS: usize = 16;
/// The first SPI; INTIDs below are SGIs (0..16) and PPIs (16..32), one copy
/// per vCPU.
pub const SPI_BASE: u32 = 32;
/// INTIDs below this are SGIs.
pub const SGIS: u32 = 16;
/// A vCPU's SGIs and PPIs within its 32 private INTIDs.
const SGI_BITS: u32 = (1 << SGIS) - 1;
const PPI_BITS: u32 = !SGI_BITS;
/// Priority bits kept (the high ones): the 5 that every GICv3 virtual CPU
/// interface implements (`ICH_VTR_EL2.PRIbits` >= 4, i.e. 5 bits), so that
/// the order [`VGic::flush`] picks is the order the hardware honours.
pub const PRIORITY_BITS: u32 = 5;
/// The priority bits [`PRIORITY_BITS`] keeps.
pub const PRIORITY_MASK: u8 = !(u8::MAX >> PRIORITY_BITS);

/// `GICD_IIDR` and `GICR_IIDR`: implementer Arm (JEP106 0x43B), product,
/// variant and revision 0.
pub const IIDR_ARM: u32 = 0x43B;
/// `GICD_PIDR2` and `GICR_PIDR2`: ArchRev \[7:4\] = 3 (GICv3), JEP106 bits.
pub const PIDR2_GICV3: u32 = 0x3B;
/// A GICv2 `GICD_PIDR2`: ArchRev = 2, as QEMU's GICv2 presents it.
pub const PIDR2_GICV2: u32 = 0x2B;

/// The low half of a 64-bit register a 32-bit access may hit alone.
const LOW_WORD: u64 = 0xFFFF_FFFF;
/// INTIDs per 32-bit register word of the one-bit-per-INTID registers.
const WORD_INTIDS: u32 = 32;
const WORD_INTIDS_USIZE: usize = 32;
/// Groups of 32 INTIDs the SPIs occupy.
const SPI_BANKS: usize = MAX_SPIS / 32;

/// Distributor (`GICD_*`) register offsets from `GICD_base`, and fields.
pub mod gicd {
    pub const CTLR: u64 = 0x0000;
    pub const TYPER: u64 = 0x0004;
    pub const IIDR: u64 = 0x0008;
    pub const TYPER2: u64 = 0x000C;
    /// The seven one-bit-per-INTID blocks, 0x80 bytes (1024 INTIDs) each.
    pub const IGROUPR: u64 = 0x0080;
    pub const ISENABLER: u64 = 0x0100;
    pub const ICENABLER: u64 = 0x0180;
    pub const ISPENDR: u64 = 0x0200;
    pub const ICPENDR: u64 = 0x0280;
    pub const ISACTIVER: u64 = 0x0300;
    pub const ICACTIVER: u64 = 0x0380;
    /// One byte per INTID.
    pub const IPRIORITYR: u64 = 0x0400;
    pub const IPRIORITYR_END: u64 = 0x0800;
    /// Two bits per INTID.
    pub const ICFGR: u64 = 0x0C00;
    pub const IGRPMODR: u64 = 0x0D00;
    /// 64 bits per INTID.
    pub const IROUTER: u64 = 0x6000;
    pub const IROUTER_END: u64 = 0x8000;
    pub const PIDR2: u64 = 0xFFE8;

    pub const CTLR_ENABLE_GRP0: u32 = 1 << 0;
    pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
    /// Affinity routing: always on (RAO/WI).
    pub const CTLR_ARE: u32 = 1 << 4;
    /// Disable Security: one security state (RAO/WI).
    pub const CTLR_DS: u32 = 1 << 6;
    /// Register Write Pending: writes take effect at once, so always 0.
    pub const CTLR_RWP: u32 = 1 << 31;

    /// ITLinesNumber: INTIDs up to `32 * (N + 1) - 1`.
    pub const TYPER_ITLINES_MASK: u32 = 0x1F;
    /// IDbits \[23:19\]: INTID bits minus one.
    pub const TYPER_IDBITS_SHIFT: u32 = 19;
    /// 10 INTID bits (0..1023): no LPIs.
    pub const TYPER_IDBITS: u32 = 9;
    /// A3V: nonzero Aff3 routes (the model matches all four levels).
    pub const TYPER_A3V: u32 = 1 << 24;
    /// RSS: IROUTER Aff0 and SGI targets take the whole 0..255 range.
    pub const TYPER_RSS: u32 = 1 << 26;

    /// Interrupt_Routing_Mode: 1 = any PE (the model picks vCPU 0).
    pub const IROUTER_IRM: u64 = 1 << 31;
}

/// GICv2 distributor registers (IHI 0048B 4.3) that a GICv3 distributor
/// does not share (with affinity routing), and fields. The shared ones
/// (`CTLR`, `TYPER`, `IIDR`, the bit registers, `IPRIORITYR`, `ICFGR`, the
/// group enables, `ITLinesNumber`) are in [`gicd`].
pub mod gicd_v2 {
    /// One byte per INTID: the CPU interfaces (vCPUs) an SPI targets.
    /// INTIDs 0..31 are read-only, the accessing CPU's own bit.
    pub const ITARGETSR: u64 = 0x0800;
    pub const ITARGETSR_END: u64 = 0x0C00;
    /// Software Generated Interrupt Register (write-only).
    pub const SGIR: u64 = 0x0F00;
    /// One byte per SGI (0..15), one bit per source CPU.
    pub const CPENDSGIR: u64 = 0x0F10;
    pub const SPENDSGIR: u64 = 0x0F20;
    pub const SPENDSGIR_END: u64 = 0x0F30;
    /// The identification registers, one word each from `ID_BASE`:
    /// `PIDR4`..`PIDR7`, `PIDR0`..`PIDR3`, `CIDR0`..`CIDR3`.
    pub const ID_BASE: u64 = 0x0FD0;
    pub const ID_END: u64 = 0x1000;
    pub const PIDR2: u64 = 0x0FE8;
    /// Their values, QEMU's GICv2's: Arm's JEP106 code, ArchRev 2 in
    /// `PIDR2`, and the PrimeCell component ID `0xB105F00D`.
    pub const IDS: [u32; 12] = [0x04, 0, 0, 0, 0x90, 0xB4, super::PIDR2_GICV2, 0, 0x0D, 0xF0, 0x05, 0xB1];

    /// CPUNumber \[7:5\]: CPU interfaces minus one.
    pub const TYPER_CPU_NUMBER_SHIFT: u32 = 5;
    pub const TYPER_CPU_NUMBER_MASK: u32 = 0x7;

    /// `GICD_SGIR`: SGIINTID \[3:0\].
    pub const SGIR_INTID_MASK: u32 = 0xF;
    /// NSATT (bit 15): a Secure write sends the SGI only if it is Group 1
    /// (one security state, as the guest sees it: ignored).
    pub const SGIR_NSATT: u32 = 1 << 15;
    /// CPUTargetList \[23:16\]: bit *i* = CPU interface (vCPU) *i*.
    pub const SGIR_TARGET_LIST_SHIFT: u32 = 16;
    pub const SGIR_TARGET_LIST_MASK: u32 = 0xFF;
    /// TargetListFilter \[25:24\].
    pub const SGIR_FILTER_SHIFT: u32 = 24;
    pub const SGIR_FILTER_MASK: u32 = 0x3;
    /// The CPUs in CPUTargetList.
    pub const SGIR_FILTER_LIST: u32 = 0;
    /// Every CPU but the sender.
    pub const SGIR_FILTER_OTHERS: u32 = 1;
    /// The sender only. (3 is reserved: the write is ignored.)
    pub const SGIR_FILTER_SELF: u32 = 2;
}

/// Redistributor (`GICR_*`) register offsets: `RD_base` frame, then the
/// `SGI_base` frame's (relative to that frame), and fields.
pub mod gicr {
    pub const CTLR: u64 = 0x0000;
    pub const IIDR: u64 = 0x0004;
    pub const TYPER: u64 = 0x0008;
    pub const WAKER: u64 = 0x0014;
    pub const PIDR2: u64 = 0xFFE8;

    // SGI_base frame: the distributor's layout for INTIDs 0..31.
    pub const IGROUPR0: u64 = 0x0080;
    pub const ISENABLER0: u64 = 0x0100;
    pub const ICENABLER0: u64 = 0x0180;
    pub const ISPENDR0: u64 = 0x0200;
    pub const ICPENDR0: u64 = 0x0280;
    pub const ISACTIVER0: u64 = 0x0300;
    pub const ICACTIVER0: u64 = 0x0380;
    pub const IPRIORITYR0: u64 = 0x0400;
    /// SGIs: always edge (reads 0xAAAA_AAAA, WI).
    pub const ICFGR0: u64 = 0x0C00;
    /// PPIs.
    pub const ICFGR1: u64 = 0x0C04;
    pub const IGRPMODR0: u64 = 0x0D00;
    pub const NSACR: u64 = 0x0E00;

    /// This is the last redistributor of the region.
    pub const TYPER_LAST: u64 = 1 << 4;
    /// Processor_Number \[23:8\]: the vCPU index.
    pub const TYPER_PROCESSOR_NUMBER_SHIFT: u32 = 8;
    /// Affinity_Value \[63:32\]: Aff3.Aff2.Aff1.Aff0.
    pub const TYPER_AFFINITY_SHIFT: u32 = 32;
    /// Where Aff3 sits within Affinity_Value.
    pub const TYPER_AFF3_SHIFT: u32 = 24;

    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    /// Reads as `ProcessorSleep`: the model's "children" sleep at once.
    pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
}

/// Affinity fields, laid out as in `MPIDR_EL1` and `GICD_IROUTER`.
pub mod affinity {
    pub const AFF0: u64 = 0xFF;
    pub const AFF1: u64 = 0xFF << AFF1_SHIFT;
    pub const AFF2: u64 = 0xFF << AFF2_SHIFT;
    pub const AFF3: u64 = 0xFF << AFF3_SHIFT;
    pub const AFF1_SHIFT: u32 = 8;
    pub const AFF2_SHIFT: u32 = 16;
    /// Aff2..Aff0 \[23:0\].
    pub const AFF2_TO_0: u64 = AFF2 | AFF1 | AFF0;
    pub const ALL: u64 = AFF3 | AFF2_TO_0;
    pub const AFF3_SHIFT: u32 = 32;
}

/// `ICC_SGI1R_EL1` fields.
pub mod sgi1r {
    pub const TARGET_LIST: u64 = 0xFFFF;
    pub const AFF1_SHIFT: u32 = 16;
    pub const INTID_SHIFT: u32 = 24;
    pub const INTID_MASK: u64 = 0xF;
    pub const AFF2_SHIFT: u32 = 32;
    /// Interrupt Routing Mode: 1 = every PE but the sender.
    pub const IRM: u64 = 1 << 40;
    /// Range Selector \[47:44\]: the target list covers Aff0 16*RS..16*RS+15.
    pub const RS_SHIFT: u32 = 44;
    pub const RS_MASK: u64 = 0xF;
    /// A target's Aff0 is `RS << RANGE_SHIFT | bit`, `bit` < 16.
    pub const RANGE_SHIFT: u32 = 4;
    pub const RANGE_MASK: u64 = 0xF;
    pub const AFF3_SHIFT: u32 = 48;
    /// Each affinity field is 8 bits.
    pub const AFF_MASK: u64 = 0xFF;

    /// The value that sends SGI `intid` (0..16) to the one PE whose MPIDR
    /// is `mpidr` (with the range selector, so any Aff0 works).
    pub fn to_one(mpidr: u64, intid: u32) -> u64 {
        use super::affinity;
        let field = |shift: u32| (mpidr >> shift) & AFF_MASK;
        let aff0 = mpidr & affinity::AFF0;
        (field(affinity::AFF3_SHIFT) << AFF3_SHIFT)
            | (field(affinity::AFF2_SHIFT) << AFF2_SHIFT)
            | (field(affinity::AFF1_SHIFT) << AFF1_SHIFT)
            | (((aff0 >> RANGE_SHIFT) & RS_MASK) << RS_SHIFT)
            | (1 << (aff0 & RANGE_MASK))
            | ((u64::from(intid) & INTID_MASK) << INTID_SHIFT)
    }
}

/// `ICH_LR<n>_EL2` fields.
pub mod lr {
    pub const VINTID_MASK: u64 = 0xFFFF_FFFF;
    /// pINTID \[44:32\], meaningful when [`HW`] is set.
    pub const PINTID_SHIFT: u32 = 32;
    pub const PINTID_MASK: u64 = 0x1FFF;
    pub const PRIORITY_SHIFT: u32 = 48;
    pub const GROUP1: u64 = 1 << 60;
    /// The virtual interrupt is a physical one: the guest's deactivation
    /// deactivates pINTID.
    pub const HW: u64 = 1 << 61;
    pub const PENDING: u64 = 1 << 62;
    pub const ACTIVE: u64 = 1 << 63;
    /// With HW = 0 (where pINTID would be): a maintenance interrupt when
    /// the guest deactivates the interrupt. The model never sets it; it is
    /// here so that a GICv2 list register's `EOI` bit survives the trip.
    pub const EOI: u64 = 1 << 41;
}

/// GICv2 `GICH_LR<n>` fields (IHI 0048B 5.3.11), the 32-bit list registers
/// of a GICv2 virtual CPU interface. [`Lr::to_v2`] and [`Lr::from_v2`]
/// convert to and from the model's [`Lr`].
pub mod gich_lr {
    /// VirtualID \[9:0\].
    pub const VIRTUAL_ID_MASK: u32 = 0x3FF;
    /// PhysicalID \[19:10\], when [`HW`] is set.
    pub const PHYSICAL_ID_SHIFT: u32 = 10;
    pub const PHYSICAL_ID_MASK: u32 = 0x3FF;
    /// With HW = 0, an SGI's source CPU \[12:10\], which the guest reads
    /// back from `GICV_IAR`.
    pub const CPUID_SHIFT: u32 = 10;
    pub const CPUID_MASK: u32 = 0x7;
    /// With HW = 0: a maintenance interrupt when the guest deactivates it.
    pub const EOI: u32 = 1 << 19;
    /// Priority \[27:23\]: the top [`PRIORITY_BITS`] bits of the priority.
    pub const PRIORITY_SHIFT: u32 = 23;
    pub const PRIORITY_BITS: u32 = 5;
    pub const PRIORITY_MASK: u32 = 0x1F;
    /// The priority byte's bits below the kept ones.
    pub const PRIORITY_LOW_BITS: u32 = u8::BITS - PRIORITY_BITS;
    /// State \[29:28\]: pending = 01, active = 10, both = 11.
    pub const PENDING: u32 = 1 << 28;
    pub const ACTIVE: u32 = 1 << 29;
    pub const GROUP1: u32 = 1 << 30;
    pub const HW: u32 = 1 << 31;
}

// A GICv2 list register holds 5 priority bits: the model must keep no
// more, or a GICv2 host would reorder what `VGic::flush` ordered.
const _: () = assert!(PRIORITY_BITS <= gich_lr::PRIORITY_BITS);

/// A list-register file (the hardware's `ICH_LR<n>_EL2`, or a fake in
/// tests).
pub trait ListRegs {
    /// `ICH_VTR_EL2.ListRegs + 1`; the model uses at most [`MAX_LRS`].
    fn count(&self) -> usize;
    fn read(&self, index: usize) -> u64;
    fn write(&mut self, index: usize, value: u64);
}

/// One `ICH_LR<n>_EL2` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lr(pub u64);

impl Lr {
    /// State 0: the list register holds nothing.
    pub const INVALID: Self = Self(0);

    /// An inactive entry for `vintid` (set a state with
    /// [`with_pending`](Self::with_pending) / [`with_active`](Self::with_active)).
    pub fn new(vintid: u32, priority: u8, group1: bool) -> Self {
        let group = if group1 { lr::GROUP1 } else { 0 };
        Self(u64::from(vintid) | u64::from(priority) << lr::PRIORITY_SHIFT | group)
    }

    pub fn with_pending(self, pending: bool) -> Self {
        self.with_flag(lr::PENDING, pending)
    }

    pub fn with_active(self, active: bool) -> Self {
        self.with_flag(lr::ACTIVE, active)
    }

    /// Marks the entry as the physical interrupt `pintid` (HW = 1).
    pub fn with_hw(self, pintid: u32) -> Self {
        let pintid = (u64::from(pintid) & lr::PINTID_MASK) << lr::PINTID_SHIFT;
        let cleared = self.0 & !(lr::PINTID_MASK << lr::PINTID_SHIFT);
        Self(cleared | pintid | lr::HW)
    }

    fn with_flag(self, flag: u64, on: bool) -> Self {
        Self(if on { self.0 | flag } else { self.0 & !flag })
    }

    pub fn vintid(self) -> u32 {
        low32(self.0 & lr::VINTID_MASK)
    }

    pub fn priority(self) -> u8 {
        low8(self.0 >> lr::PRIORITY_SHIFT)
    }

    pub fn group1(self) -> bool {
        self.0 & lr::GROUP1 != 0
    }

    pub fn hw(self) -> bool {
        self.0 & lr::HW != 0
    }

    /// pINTID (meaningful only with [`hw`](Self::hw)).
    pub fn pintid(self) -> u32 {
        low32((self.0 >> lr::PINTID_SHIFT) & lr::PINTID_MASK)
    }

    pub fn pending(self) -> bool {
        self.0 & lr::PENDING != 0
    }

    pub fn active(self) -> bool {
        self.0 & lr::ACTIVE != 0
    }

    /// Whether the guest's deactivation raises a maintenance interrupt
    /// (`EOI`, meaningful only without [`hw`](Self::hw)).
    pub fn eoi(self) -> bool {
        !self.hw() && self.0 & lr::EOI != 0
    }

    /// This entry as a GICv2 `GICH_LR<n>` word, for a host whose virtual
    /// CPU interface is a GICv2's. What that format has no room for is
    /// dropped: vINTID and pINTID bits above 9 (the model's INTIDs are all
    /// below 1020) and priority bits below the top five (the model keeps
    /// [`PRIORITY_BITS`] = 5). An SGI's source CPU (`CPUID`) is 0: the
    /// model does not track sources (see the module documentation).
    pub fn to_v2(self) -> u32 {
        let priority = u32::from(self.priority()) >> gich_lr::PRIORITY_LOW_BITS;
        let mut word = (self.vintid() & gich_lr::VIRTUAL_ID_MASK) | priority << gich_lr::PRIORITY_SHIFT;
        if self.hw() {
            word |= gich_lr::HW | (self.pintid() & gich_lr::PHYSICAL_ID_MASK) << gich_lr::PHYSICAL_ID_SHIFT;
        } else if self.eoi() {
            word |= gich_lr::EOI;
        }
        let flag = |on: bool, bit: u32| if on { bit } else { 0 };
        word | flag(self.group1(), gich_lr::GROUP1)
            | flag(self.pending(), gich_lr::PENDING)
            | flag(self.active(), gich_lr::ACTIVE)
    }

    /// A GICv2 `GICH_LR<n>` word as the model's entry: the inverse of
    /// [`to_v2`](Self::to_v2) for every word it makes. An SGI's `CPUID`
    /// and the reserved bits are dropped.
    pub fn from_v2(word: u32) -> Self {
        let has = |bit: u32| word & bit != 0;
        let priority = (word >> gich_lr::PRIORITY_SHIFT & gich_lr::PRIORITY_MASK) << gich_lr::PRIORITY_LOW_BITS;
        let lr = Self::new(word & gich_lr::VIRTUAL_ID_MASK, low8(priority.into()), has(gich_lr::GROUP1))
            .with_pending(has(gich_lr::PENDING))
            .with_active(has(gich_lr::ACTIVE));
        if has(gich_lr::HW) {
            lr.with_hw(word >> gich_lr::PHYSICAL_ID_SHIFT & gich_lr::PHYSICAL_ID_MASK)
        } else {
            lr.with_flag(lr::EOI, has(gich_lr::EOI))
        }
    }

    /// [`to_v2`](Self::to_v2) for a host whose hardware interrupts EL2
    /// deactivates itself: a hardware interrupt forwarded as the same
    /// INTID goes in as a plain one that asks for a maintenance interrupt
    /// when the guest ends it (`EOI`), instead of with the `HW` bit. (QEMU's
    /// GICv2 deactivates a physical interrupt through the `HW` bit without
    /// looking at it again, so a level that is still high is not signalled
    /// until some other access to the GIC: a guest timer that stays behind
    /// its deadlines got one interrupt per hypervisor tick, not one per
    /// deadline.)
    pub fn to_v2_ended_by_el2(self) -> u32 {
        if self.hw() && self.pintid() == self.vintid() {
            Self(self.0 & !(lr::HW | lr::PINTID_MASK << lr::PINTID_SHIFT) | lr::EOI).to_v2()
        } else {
            self.to_v2()
        }
    }

    /// The way back from [`to_v2_ended_by_el2`](Self::to_v2_ended_by_el2):
    /// an entry with `EOI` is the hardware interrupt of its INTID again.
    /// Once it is neither pending nor active, the guest has ended it and
    /// the physical interrupt is EL2's to deactivate ([`ended_hw`](Self::ended_hw)).
    pub fn from_v2_ended_by_el2(word: u32) -> Self {
        let lr = Self::from_v2(word);
        if lr.eoi() {
            Self(lr.0 & !lr::EOI).with_hw(lr.vintid())
        } else {
            lr
        }
    }

    /// A hardware interrupt the guest has ended: its physical interrupt,
    /// [`pintid`](Self::pintid), is to be deactivated.
    pub fn ended_hw(self) -> bool {
        self.hw() && !self.pending() && !self.active()
    }
}

/// What a guest register write asks of the hypervisor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// vCPUs (bit *i* = vCPU *i*) whose deliverable set may have grown:
    /// the hypervisor should make them exit (or wake) and flush again.
    pub kick: u64,
}

/// What [`VGic::flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flush {
    /// List registers written with an interrupt (indices `0..used`).
    pub used: usize,
    /// Deliverable interrupts were left out for lack of list registers: the
    /// caller asks for an underflow maintenance interrupt
    /// (`ICH_HCR_EL2.UIE`) to flush again once the guest has drained some.
    pub overflow: bool,
}

/// An SPI as the hypervisor's passthrough bookkeeping sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpiState {
    pub enabled: bool,
    /// The vCPU `GICD_IROUTER` names (`None`: no vCPU has that affinity).
    pub target: Option<usize>,
    pub priority: u8,
    pub group1: bool,
    /// Pending in the model (not counting a copy in a list register).
    pub pending: bool,
}

/// State of 32 consecutive INTIDs, one bit each: the SGIs and PPIs of one
/// vCPU, or 32 SPIs. Words of the guest's bit registers map onto these
/// directly.
#[derive(Clone, Copy, Debug)]
struct Bank {
    group1: u32,
    enabled: u32,
    pending: u32,
    active: u32,
    /// Edge-triggered (`ICFGR` bit 1 of the pair).
    edge: u32,
    /// Forwarded physical interrupts: flushed with HW = 1, pINTID = INTID.
    hw: u32,
    /// Cached in a list register; pending and active then live there.
    in_lr: u32,
    priority: [u8; WORD_INTIDS_USIZE],
}

impl Bank {
    /// SGIs are edge-triggered; PPIs level, as the hardware's.
    const PRIVATE_RESET: Self = Self::reset(SGI_BITS);
    const SPI_RESET: Self = Self::reset(0);

    const fn reset(edge: u32) -> Self {
        Self { group1: 0, enabled: 0, pending: 0, active: 0, edge, hw: 0, in_lr: 0, priority: [0; WORD_INTIDS_USIZE] }
    }

    /// Interrupts that want a list register (ignoring whether one holds
    /// them already): active, or pending, enabled and in an enabled group.
    fn live(&self, ctlr: u32) -> u32 {
        self.active | self.deliverable(ctlr)
    }

    /// Pending, enabled and in a group `ctlr` enables.
    fn deliverable(&self, ctlr: u32) -> u32 {
        self.pending & self.enabled & self.groups_enabled(ctlr)
    }

    fn groups_enabled(&self, ctlr: u32) -> u32 {
        let grp1 = if ctlr & gicd::CTLR_ENABLE_GRP1 != 0 { self.group1 } else { 0 };
        let grp0 = if ctlr & gicd::CTLR_ENABLE_GRP0 != 0 { !self.group1 } else { 0 };
        grp0 | grp1
    }

    /// Drops the HW flag of interrupts that are neither pending nor active
    /// nor cached: the physical interrupt has been dealt with.
    fn settle_hw(&mut self) {
        self.hw &= self.pending | self.active | self.in_lr;
    }
}

/// Per-SPI routing.
#[derive(Clone, Copy, Debug)]
struct Spi {
    /// `GICD_IROUTER`, valid bits only (GICv3).
    route: u64,
    /// `GICD_ITARGETSR`, bits of presented vCPUs only (GICv2).
    targets: u8,
    /// The vCPU `route` (v3) or `targets` (v2) names, kept in step with
    /// it.
    target: Option<u8>,
    /// The vCPU whose list registers hold the SPI or on which it is
    /// active; meaningful only while it is one of those.
    home: Option<u8>,
}

impl Spi {
    const RESET: Self = Self { route: 0, targets: 0, target: None, home: None };
}

/// One vCPU: its redistributor and its list-register slots.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    /// `MPIDR_EL1` affinity fields ([`affinity::ALL`]).
    affinity: u64,
    /// `GICR_WAKER.ProcessorSleep`.
    asleep: bool,
    private: Bank,
    /// The INTID each list register holds since the last flush.
    slots: [Option<u32>; MAX_LRS],
    /// Which of `slots` are `Some` (bit n = slot n): a fold visits only
    /// those, usually none or one.
    slots_used: u16,
}

impl Cpu {
    const RESET: Self =
        Self { affinity: 0, asleep: true, private: Bank::PRIVATE_RESET, slots: [None; MAX_LRS], slots_used: 0 };
}

/// Which 32 INTIDs: a vCPU's private ones, or the `n`th group of SPIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BankId {
    Private(usize),
    Spi(usize),
}

/// Whose view of the INTID space a register has: the GICv3 distributor's
/// (SPIs only, with ARE on), one redistributor's (that vCPU's SGIs and
/// PPIs), or one vCPU's whole (its SGIs and PPIs, and the SPIs: what a
/// GICv2 distributor shows the vCPU that accesses it).
#[derive(Clone, Copy, Debug)]
enum Scope {
    Dist,
    Redist(usize),
    Vcpu(usize),
}

/// The one-bit-per-INTID registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

/// A decoded register.
#[derive(Clone, Copy, Debug)]
enum Reg {
    /// Unknown, reserved or not presented: reads 0, writes ignored.
    RazWi,
    /// A read-only 32-bit value.
    Const(u32),
    DistCtlr,
    DistTyper,
    /// A bit register word; the INTID of bit 0.
    Bits(BitReg, u32),
    /// `IPRIORITYR`; the INTID of byte 0.
    Priority(u32),
    /// `ICFGR`; the INTID of bits \[1:0\].
    Config(u32),
    /// `IROUTER` of an INTID; `true` for the high word.
    Router(u32, bool),
    /// `GICR_TYPER`; `true` for the high word.
    RedistTyper(bool),
    Waker,
    /// GICv2 `ITARGETSR`; the INTID of byte 0.
    Targets(u32),
    /// GICv2 `SGIR`.
    Sgir,
    /// GICv2 `SPENDSGIR` (`true`) or `CPENDSGIR`; the SGI of byte 0.
    SgiPending(bool, u32),
}

impl Reg {
    /// Decodes an offset into a distributor frame, or (with ARE the same
    /// layout, for INTIDs 0..31) into a redistributor's `SGI_base` frame.
    fn interrupt_frame(offset: u64) -> Self {
        // Blocks of the frame: bits [9:7] pick the bit register, [6:2] the
        // word; the other registers take the INTID from the low bits.
        const BIT_BLOCK_SHIFT: u32 = 7;
        const BIT_BLOCK_MASK: u64 = 7;
        const BIT_WORD_MASK: u64 = 0x7C;
        const PRIORITY_INTID_MASK: u64 = 0x3FF;
        const CONFIG_WORD_MASK: u64 = 0xFC;
        const ROUTER_INTID_SHIFT: u32 = 3;
        const ROUTER_INTID_MASK: u64 = 0x3FF;
        const ROUTER_HIGH: u64 = 4;
        match offset {
            gicd::IGROUPR..gicd::IPRIORITYR => {
                let reg = match (offset >> BIT_BLOCK_SHIFT) & BIT_BLOCK_MASK {
                    1 => BitReg::Group,
                    2 => BitReg::SetEnable,
                    3 => BitReg::ClearEnable,
                    4 => BitReg::SetPending,
                    5 => BitReg::ClearPending,
                    6 => BitReg::SetActive,
                    _ => BitReg::ClearActive,
                };
                // 4 bytes per 32 INTIDs: the byte offset * 8.
                Self::Bits(reg, low32(offset & BIT_WORD_MASK) << 3)
            }
            gicd::IPRIORITYR..gicd::IPRIORITYR_END => Self::Priority(low32(offset & PRIORITY_INTID_MASK)),
            // 4 bytes per 16 INTIDs: the byte offset * 4.
            gicd::ICFGR..gicd::IGRPMODR => Self::Config(low32(offset & CONFIG_WORD_MASK) << 2),
            gicd::IROUTER..gicd::IROUTER_END => {
                Self::Router(low32((offset >> ROUTER_INTID_SHIFT) & ROUTER_INTID_MASK), offset & ROUTER_HIGH != 0)
            }
            _ => Self::RazWi,
        }
    }

    fn distributor(offset: u64) -> Self {
        match offset {
            gicd::CTLR => Self::DistCtlr,
            gicd::TYPER => Self::DistTyper,
            gicd::IIDR => Self::Const(IIDR_ARM),
            gicd::TYPER2 => Self::Const(0),
            gicd::PIDR2 => Self::Const(PIDR2_GICV3),
            _ => Self::interrupt_frame(offset),
        }
    }

    /// Decodes an offset into a GICv2 distributor frame.
    fn distributor_v2(offset: u64) -> Self {
        const TARGETS_INTID_MASK: u64 = 0x3FF;
        const SGI_MASK: u64 = 0xF;
        const ID_INDEX_SHIFT: u32 = 2;
        match offset {
            gicd::CTLR => Self::DistCtlr,
            gicd::TYPER => Self::DistTyper,
            gicd::IIDR => Self::Const(IIDR_ARM),
            gicd_v2::ITARGETSR..gicd_v2::ITARGETSR_END => Self::Targets(low32(offset & TARGETS_INTID_MASK)),
            gicd_v2::SGIR => Self::Sgir,
            gicd_v2::CPENDSGIR..gicd_v2::SPENDSGIR => Self::SgiPending(false, low32(offset & SGI_MASK)),
            gicd_v2::SPENDSGIR..gicd_v2::SPENDSGIR_END => Self::SgiPending(true, low32(offset & SGI_MASK)),
            gicd_v2::ID_BASE..gicd_v2::ID_END => {
                let index = (offset.saturating_sub(gicd_v2::ID_BASE) >> ID_INDEX_SHIFT).try_into().ok();
                index.and_then(|index: usize| gicd_v2::IDS.get(index)).map_or(Self::RazWi, |&id| Self::Const(id))
            }
            gicd_v2::ID_END.. => Self::RazWi,
            // The bit registers, IPRIORITYR and ICFGR sit where a GICv3's
            // do; nothing else of its frame (IGRPMODR, IROUTER) exists.
            _ => match Self::interrupt_frame(offset) {
                reg @ (Self::Bits(..) | Self::Priority(_) | Self::Config(_)) => reg,
                _ => Self::RazWi,
            },
        }
    }

    /// Decodes an offset within one vCPU's redistributor (both frames).
    fn redistributor(offset: u64) -> Self {
        const TYPER_HIGH: u64 = gicr::TYPER + 4;
        match offset {
            gicr::CTLR => Self::Const(0),
            gicr::IIDR => Self::Const(IIDR_ARM),
            gicr::TYPER => Self::RedistTyper(false),
            TYPER_HIGH => Self::RedistTyper(true),
            gicr::WAKER => Self::Waker,
            gicr::PIDR2 => Self::Const(PIDR2_GICV3),
            GICR_SGI_BASE..GICR_STRIDE => match Self::interrupt_frame(offset & !GICR_SGI_BASE) {
                // The SGI_base frame has no routing registers.
                reg @ (Self::Bits(..) | Self::Priority(_) | Self::Config(_)) => reg,
                _ => Self::RazWi,
            },
            _ => Self::RazWi,
        }
    }

    /// Whether an access of `size` is one this register has. Others (and
    /// misaligned ones, refused before) are RAZ/WI.
    fn accepts(self, size: AccessSize) -> bool {
        match self {
            Self::Priority(_) | Self::Targets(_) | Self::SgiPending(..) => {
                matches!(size, AccessSize::Byte | AccessSize::Word)
            }
            Self::Router(..) | Self::RedistTyper(_) => {
                matches!(size, AccessSize::Word | AccessSize::Double)
            }
            _ => size == AccessSize::Word,
        }
    }
}

/// Which GIC architecture the guest sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Version {
    /// A GICv3: distributor, redistributors, `ICC_*` system registers
    /// ([`VGic::configure`]).
    #[default]
    V3,
    /// A GICv2 (`arm,cortex-a15-gic`): a 4 KiB distributor with banked
    /// private registers, and the hardware's `GICV` frame as the CPU
    /// interface ([`VGic::configure_v2`]).
    V2,
}

/// The virtual GIC: see the module documentation.
///
/// Plain data, no allocation: it can sit in a `static` behind a
/// `spin::Mutex`. [`VGic::new`] presents no vCPUs until
/// [`configure`](VGic::configure) or [`configure_v2`](VGic::configure_v2).
#[derive(Clone, Debug)]
pub struct VGic {
    version: Version,
    vcpus: usize,
    spis: usize,
    /// `GICD_CTLR` group enables.
    ctlr: u32,
    cpus: [Cpu; MAX_VCPUS],
    banks: [Bank; SPI_BANKS],
    routes: [Spi; MAX_SPIS],
}

impl Default for VGic {
    fn default() -> Self {
        Self::new()
    }
}

impl VGic {
    pub const fn new() -> Self {
        Self {
            version: Version::V3,
            vcpus: 0,
            spis: 0,
            ctlr: 0,
            cpus: [Cpu::RESET; MAX_VCPUS],
            banks: [Bank::SPI_RESET; SPI_BANKS],
            routes: [Spi::RESET; MAX_SPIS],
        }
    }

    /// Presents `mpidrs.len()` vCPUs (at most [`MAX_VCPUS`]; vCPU *i* has
    /// the affinity of `mpidrs[i]`) and `spis` SPIs (at most [`MAX_SPIS`]),
    /// all in their reset state. If two vCPUs share an affinity, routes
    /// and SGIs naming it reach the first.
    pub fn configure(&mut self, mpidrs: &[u64], spis: usize) {
        self.reset(Version::V3, mpidrs.len().min(MAX_VCPUS), spis);
        for (cpu, mpidr) in self.cpus.iter_mut().zip(mpidrs) {
            cpu.affinity = mpidr & affinity::ALL;
        }
        // IROUTER resets to 0: affinity 0.0.0.0, which may be a vCPU.
        let target = self.route_target(0);
        self.routes.fill(Spi { target, ..Spi::RESET });
    }

    /// Presents a GICv2 distributor with `vcpus` CPU interfaces (vCPU *i*
    /// is CPU interface *i*) and `spis` SPIs (at most [`MAX_SPIS`]), all
    /// in a GICv2's reset state: groups disabled, every interrupt in Group
    /// 0 at priority 0, SGIs enabled (permanently, as on GIC-400 and
    /// QEMU's GICv2) and the rest disabled, SPIs level-triggered and
    /// targeting no CPU (`ITARGETSR` = 0: none is delivered until the
    /// guest targets it).
    ///
    /// A GICv2 serves at most 8 CPUs ([`MAX_VCPUS_V2`]): more are clamped
    /// away, as [`configure`](Self::configure) clamps to [`MAX_VCPUS`].
    /// [`vcpus`](Self::vcpus) tells how many are presented; a vCPU beyond
    /// them has no CPU interface: its distributor accesses read 0 and do
    /// nothing, and no interrupt reaches it. (A hypervisor should refuse
    /// to build such a VM rather than run it.)
    pub fn configure_v2(&mut self, vcpus: usize, spis: usize) {
        self.reset(Version::V2, vcpus.min(MAX_VCPUS_V2), spis);
        for cpu in &mut self.cpus {
            cpu.private.enabled = SGI_BITS;
        }
        self.routes.fill(Spi::RESET);
    }

    /// Everything back to reset for `version`, with `vcpus` and `spis`;
    /// the caller sets what differs between the versions. Field by field
    /// rather than `*self = Self::new()`: no 7 KiB temporary on a
    /// hypervisor stack.
    fn reset(&mut self, version: Version, vcpus: usize, spis: usize) {
        self.version = version;
        self.ctlr = 0;
        self.cpus.fill(Cpu::RESET);
        self.banks.fill(Bank::SPI_RESET);
        self.vcpus = vcpus;
        self.spis = spis.min(MAX_SPIS);
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn vcpus(&self) -> usize {
        self.vcpus
    }

    pub fn spis(&self) -> usize {
        self.spis
    }

    /// A guest read of `size` bytes at `offset` in the distributor frame
    /// by vCPU `vcpu` (its index in the VM). A GICv2 distributor banks
    /// INTIDs 0..31 per accessing CPU; a GICv3's does not, and ignores
    /// `vcpu`.
    pub fn dist_read(&mut self, vcpu: usize, offset: u64, size: u8) -> u64 {
        match self.dist_decode(vcpu, offset) {
            Some((scope, reg)) => self.read(scope, reg, offset, size),
            None => 0,
        }
    }

    /// A guest write of `size` bytes at `offset` in the distributor frame
    /// by vCPU `vcpu` (see [`dist_read`](Self::dist_read)).
    pub fn dist_write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) -> Effects {
        match self.dist_decode(vcpu, offset) {
            Some((scope, reg)) => self.write(scope, reg, offset, size, value),
            None => Effects::default(),
        }
    }

    /// A guest read at `offset` in the redistributor region (vCPU *i*'s
    /// frames start at `i * GICR_STRIDE`). A GICv2 has none: RAZ/WI.
    pub fn redist_read(&mut self, offset: u64, size: u8) -> u64 {
        match self.redist_decode(offset) {
            Some((vcpu, reg)) => self.read(Scope::Redist(vcpu), reg, offset, size),
            None => 0,
        }
    }

    /// A guest write at `offset` in the redistributor region.
    pub fn redist_write(&mut self, offset: u64, size: u8, value: u64) -> Effects {
        match self.redist_decode(offset) {
            Some((vcpu, reg)) => self.write(Scope::Redist(vcpu), reg, offset, size, value),
            None => Effects::default(),
        }
    }

    /// Makes `intid` pending: `vcpu`'s own copy of an SGI or PPI, or the SPI
    /// (`vcpu` ignored). With `hw` the interrupt is a forwarded physical
    /// one: it is flushed with HW = 1 and pINTID = `intid`, so that the
    /// guest's deactivation deactivates the physical interrupt; the flag
    /// stays until the interrupt is neither pending nor active.
    ///
    /// Returns the vCPU that may now have a new deliverable interrupt (as a
    /// bitmask; 0 if the interrupt is disabled, its group is disabled, an
    /// SPI routes nowhere, or `intid`/`vcpu` does not exist).
    pub fn set_pending(&mut self, vcpu: usize, intid: u32, hw: bool) -> u64 {
        let Some((id, bit)) = self.locate(Scope::Vcpu(vcpu), intid) else {
            return 0;
        };
        let ctlr = self.ctlr;
        let Some(bank) = self.bank_mut(id) else {
            return 0;
        };
        bank.pending |= bit_mask(bit);
        if hw {
            bank.hw |= bit_mask(bit);
        }
        if bank.deliverable(ctlr) & bit_mask(bit) != 0 {
            self.owner(id, bit).map_or(0, vcpu_bit)
        } else {
            0
        }
    }

    /// A trapped guest write of `ICC_SGI1R_EL1` by `sender`: makes the SGI
    /// pending on each target vCPU. Returns the targets as a bitmask.
    ///
    /// GICv3 only: a GICv2 has no such register (its guests write
    /// `GICD_SGIR`, whose [`Effects::kick`] is the same mask), so under
    /// [`Version::V2`] this does nothing and returns 0.
    pub fn send_sgi(&mut self, sender: usize, sgi1r: u64) -> u64 {
        if self.version != Version::V3 {
            return 0;
        }
        let intid = low32((sgi1r >> sgi1r::INTID_SHIFT) & sgi1r::INTID_MASK);
        let targets =
            if sgi1r & sgi1r::IRM != 0 { self.present() & !vcpu_bit(sender) } else { self.sgi_targets(sgi1r) };
        self.pend_sgi(intid, targets)
    }

    /// Makes SGI `intid` pending on each vCPU in `targets` (a bitmask of
    /// presented vCPUs); returns `targets`, the vCPUs to kick.
    fn pend_sgi(&mut self, intid: u32, targets: u64) -> u64 {
        for vcpu in self.cpus_present() {
            if targets & vcpu_bit(vcpu) != 0 {
                self.set_pending(vcpu, intid, false);
            }
        }
        targets
    }

    /// Moves the list registers' state back into the model and empties
    /// them; the hypervisor calls it on `vcpu`'s physical CPU right after
    /// the vCPU exits. For each list register the last
    /// [`flush`](Self::flush) filled, its pending bit ORs into the model's
    /// and its active bit replaces the model's.
    ///
    /// Returns the *other* vCPUs that may now have a new deliverable
    /// interrupt: an SPI re-routed while this vCPU held it, back pending
    /// and no longer active here. (The caller may ignore it at the cost of
    /// that SPI waiting for its new target's next exit.)
    pub fn fold(&mut self, vcpu: usize, lrs: &mut impl ListRegs) -> u64 {
        let mut kick = 0;
        // Only the slots in use, in place: this runs on every exit that
        // changed anything.
        let used = self.cpus.get_mut(vcpu).map_or(0, |cpu| core::mem::take(&mut cpu.slots_used));
        for index in Bits(u32::from(used)) {
            let index = to_usize(index);
            let slot = self.cpus.get_mut(vcpu).and_then(|cpu| cpu.slots.get_mut(index));
            let Some(intid) = slot.and_then(Option::take) else { continue };
            let value = Lr(lrs.read(index));
            lrs.write(index, Lr::INVALID.0);
            kick |= self.fold_one(vcpu, intid, value);
        }
        kick & !vcpu_bit(vcpu)
    }

    /// Fills `vcpu`'s list registers right before it enters the guest (on
    /// its physical CPU): the interrupts it should see, active ones first,
    /// then by priority and INTID, at most `lrs.count()` (and
    /// [`MAX_LRS`]). Their pending and active state moves into the list
    /// registers; the unused ones are written 0. Anything a previous flush
    /// left there is folded back first.
    pub fn flush(&mut self, vcpu: usize, lrs: &mut impl ListRegs) -> Flush {
        self.fold(vcpu, lrs);
        self.fill(vcpu, lrs)
    }

    /// [`flush`](Self::flush) for a caller that has just folded `lrs`
    /// itself (with nothing run in between): fills them without folding
    /// again.
    pub fn fill(&mut self, vcpu: usize, lrs: &mut impl ListRegs) -> Flush {
        let count = lrs.count().min(MAX_LRS);
        let mut chosen = Chosen::new(count);
        let mut candidates: usize = 0;
        self.for_each_candidate(vcpu, |id, bits| {
            let Some(bank) = self.bank(id) else { return true };
            for bit in Bits(bits) {
                candidates = candidates.saturating_add(1);
                let active = bank.active & bit_mask(bit) != 0;
                let priority = bank.priority.get(to_usize(bit)).copied().unwrap_or(0);
                if let Some(intid) = intid_of(id, bit) {
                    chosen.offer((!active, priority, intid));
                }
            }
            true
        });
        let mut used = 0;
        for index in 0..count {
            let entry = chosen.get(index).and_then(|(_, _, intid)| self.take(vcpu, intid));
            lrs.write(index, entry.map_or(Lr::INVALID.0, |lr| lr.0));
            if let (Some(lr), Some(cpu)) = (entry, self.cpus.get_mut(vcpu)) {
                if let Some(slot) = cpu.slots.get_mut(index) {
                    *slot = Some(lr.vintid());
                    cpu.slots_used |= 1 << index;
                }
                used = index.saturating_add(1);
            }
        }
        Flush { used, overflow: candidates > used }
    }

    /// Whether `vcpu` has an interrupt to take (pending, enabled and in an
    /// enabled group) or to finish (active), not counting what its list
    /// registers hold: ask after [`fold`](Self::fold).
    pub fn has_work(&self, vcpu: usize) -> bool {
        let mut any = false;
        self.for_each_candidate(vcpu, |_, _| {
            any = true;
            false
        });
        any
    }

    /// Whether private interrupt `intid` of `vcpu` is pending and not
    /// active in the model (after [`fold`](Self::fold)).
    pub fn private_pending_only(&self, vcpu: usize, intid: u32) -> bool {
        let Some((id, bit)) = self.locate(Scope::Redist(vcpu), intid) else {
            return false;
        };
        self.bank(id).is_some_and(|bank| (bank.pending & !bank.active) & bit_mask(bit) != 0)
    }

    /// Clears the pending state of private interrupt `intid` of `vcpu`: a
    /// level source (a timer) stopped asserting before the guest took it.
    pub fn withdraw_private(&mut self, vcpu: usize, intid: u32) {
        if let Some((id, bit)) = self.locate(Scope::Redist(vcpu), intid) {
            if let Some(bank) = self.bank_mut(id) {
                bank.pending &= !bit_mask(bit);
                // A HW-forwarded one no longer holds its physical
                // interrupt (the caller deactivates that).
                bank.settle_hw();
            }
        }
    }

    /// An SPI's configuration and pending state; `None` if `intid` is not
    /// a presented SPI.
    pub fn spi_state(&self, intid: u32) -> Option<SpiState> {
        let (id, bit) = self.locate(Scope::Dist, intid)?;
        let bank = self.bank(id)?;
        let spi = self.routes.get(spi_index(id, bit)?)?;
        let has = |bits: u32| bits & bit_mask(bit) != 0;
        Some(SpiState {
            enabled: has(bank.enabled),
            target: spi.target.map(usize::from),
            priority: bank.priority.get(to_usize(bit)).copied().unwrap_or(0),
            group1: has(bank.group1),
            pending: has(bank.pending),
        })
    }

    // -----------------------------------------------------------------
    // Register access.

    /// The scope and register of a distributor access by `vcpu`; `None`
    /// for a GICv2 access by a vCPU without a CPU interface.
    fn dist_decode(&self, vcpu: usize, offset: u64) -> Option<(Scope, Reg)> {
        match self.version {
            Version::V3 => Some((Scope::Dist, Reg::distributor(offset))),
            Version::V2 => (vcpu < self.vcpus).then(|| (Scope::Vcpu(vcpu), Reg::distributor_v2(offset))),
        }
    }

    fn redist_decode(&self, offset: u64) -> Option<(usize, Reg)> {
        if self.version != Version::V3 {
            return None;
        }
        let vcpu = usize::try_from(offset / GICR_STRIDE).ok()?;
        (vcpu < self.vcpus).then(|| (vcpu, Reg::redistributor(offset % GICR_STRIDE)))
    }

    fn read(&self, scope: Scope, reg: Reg, offset: u64, size: u8) -> u64 {
        let Some(size) = access_size(offset, size) else {
            return 0;
        };
        if !reg.accepts(size) {
            return 0;
        }
        match reg {
            Reg::RazWi => 0,
            Reg::Const(value) => value.into(),
            Reg::DistCtlr => match self.version {
                Version::V3 => (self.ctlr | gicd::CTLR_ARE | gicd::CTLR_DS).into(),
                // EnableGrp0 and EnableGrp1 only: no Security Extensions.
                Version::V2 => self.ctlr.into(),
            },
            Reg::DistTyper => self.dist_typer().into(),
            Reg::Bits(which, intid) => self.read_bits(scope, which, intid).into(),
            Reg::Priority(intid) => self.read_priority(scope, intid, size),
            Reg::Config(intid) => self.read_config(scope, intid).into(),
            Reg::Router(intid, high) => {
                let route = self.spi(intid).map_or(0, |spi| spi.route);
                if high {
                    route >> 32
                } else {
                    route & size.mask()
                }
            }
            Reg::RedistTyper(high) => {
                let typer = self.redist_typer(scope);
                if high {
                    typer >> 32
                } else {
                    typer & size.mask()
                }
            }
            Reg::Waker => {
                let asleep = self.scope_cpu(scope).is_some_and(|cpu| cpu.asleep);
                let bits = gicr::WAKER_PROCESSOR_SLEEP | gicr::WAKER_CHILDREN_ASLEEP;
                if asleep {
                    bits.into()
                } else {
                    0
                }
            }
            Reg::Targets(intid) => {
                let bytes = byte_lanes(intid, size).map(|(_, intid)| self.targets(scope, intid));
                bytes.rev().fold(0, |acc, targets| acc << 8 | u64::from(targets))
            }
            // Write-only.
            Reg::Sgir => 0,
            // Both views read the pending SGIs: one byte per SGI, the bit
            // of source CPU 0 (sources are not tracked).
            Reg::SgiPending(_, sgi) => {
                let pending = self.scope_private(scope).map_or(0, |bank| bank.pending);
                let bytes = byte_lanes(sgi, size).map(|(_, sgi)| u64::from(pending & bit_mask(sgi) != 0));
                bytes.rev().fold(0, |acc, byte| acc << 8 | byte)
            }
        }
    }

    fn write(&mut self, scope: Scope, reg: Reg, offset: u64, size: u8, value: u64) -> Effects {
        let Some(size) = access_size(offset, size) else {
            return Effects::default();
        };
        if !reg.accepts(size) {
            return Effects::default();
        }
        let value = value & size.mask();
        let kick = match reg {
            Reg::RazWi | Reg::Const(_) | Reg::DistTyper | Reg::RedistTyper(_) => 0,
            Reg::DistCtlr => self.write_ctlr(low32(value)),
            Reg::Bits(which, intid) => self.write_bits(scope, which, intid, low32(value)),
            Reg::Priority(intid) => self.write_priority(scope, intid, size, value),
            Reg::Config(intid) => {
                self.write_config(scope, intid, low32(value));
                0
            }
            Reg::Router(intid, high) => self.write_router(intid, size, high, value),
            Reg::Waker => {
                if let Some(cpu) = self.scope_cpu_mut(scope) {
                    cpu.asleep = low32(value) & gicr::WAKER_PROCESSOR_SLEEP != 0;
                }
                0
            }
            Reg::Targets(intid) => self.write_targets(intid, size, value),
            Reg::Sgir => self.write_sgir(scope, low32(value)),
            Reg::SgiPending(set, sgi) => {
                // Sources are not tracked: any source bit of an SGI's byte
                // sets, or clears, its one pending state.
                let sgis = byte_lanes(sgi, size)
                    .filter(|&(byte, _)| low8(value.checked_shr(byte.saturating_mul(8)).unwrap_or(0)) != 0)
                    .fold(0, |acc, (_, sgi)| acc | bit_mask(sgi));
                let which = if set { BitReg::SetPending } else { BitReg::ClearPending };
                match scope {
                    Scope::Vcpu(vcpu) => self.change_bits(BankId::Private(vcpu), which, sgis & SGI_BITS),
                    _ => 0,
                }
            }
        };
        Effects { kick }
    }

    fn dist_typer(&self) -> u32 {
        // ceil((32 + spis) / 32) - 1, so that a count that is not a
        // multiple of 32 still shows every SPI (the rest are RAZ/WI).
        let lines = u32::try_from(self.spis.div_ceil(WORD_INTIDS_USIZE)).unwrap_or(0) & gicd::TYPER_ITLINES_MASK;
        match self.version {
            Version::V3 => lines | gicd::TYPER_IDBITS << gicd::TYPER_IDBITS_SHIFT | gicd::TYPER_A3V | gicd::TYPER_RSS,
            // SecurityExtn and LSPI 0: one security state.
            Version::V2 => {
                let cpus = u32::try_from(self.vcpus.saturating_sub(1)).unwrap_or(0) & gicd_v2::TYPER_CPU_NUMBER_MASK;
                lines | cpus << gicd_v2::TYPER_CPU_NUMBER_SHIFT
            }
        }
    }

    fn redist_typer(&self, scope: Scope) -> u64 {
        let Scope::Redist(vcpu) = scope else { return 0 };
        let Some(cpu) = self.cpus.get(vcpu) else {
            return 0;
        };
        let aff3 = (cpu.affinity & affinity::AFF3) >> affinity::AFF3_SHIFT;
        let value = aff3 << gicr::TYPER_AFF3_SHIFT | (cpu.affinity & affinity::AFF2_TO_0);
        let number = u64::try_from(vcpu).unwrap_or(0);
        let last = if vcpu.saturating_add(1) == self.vcpus { gicr::TYPER_LAST } else { 0 };
        value << gicr::TYPER_AFFINITY_SHIFT | number << gicr::TYPER_PROCESSOR_NUMBER_SHIFT | last
    }

    fn write_ctlr(&mut self, value: u32) -> u64 {
        let old = self.ctlr;
        self.ctlr = value & (gicd::CTLR_ENABLE_GRP0 | gicd::CTLR_ENABLE_GRP1);
        let new = self.ctlr;
        let ids = self.cpus_present().map(BankId::Private).chain((0..SPI_BANKS).map(BankId::Spi));
        ids.fold(0, |kick, id| {
            let grown = self.bank(id).map_or(0, |bank| bank.live(new) & !bank.live(old));
            kick | self.kicks(id, grown)
        })
    }

    fn read_bits(&self, scope: Scope, which: BitReg, intid: u32) -> u32 {
        let Some((id, _)) = self.locate(scope, intid) else {
            return 0;
        };
        let Some(bank) = self.bank(id) else { return 0 };
        let bits = match which {
            BitReg::Group => bank.group1,
            BitReg::SetEnable | BitReg::ClearEnable => bank.enabled,
            BitReg::SetPending | BitReg::ClearPending => bank.pending,
            BitReg::SetActive | BitReg::ClearActive => bank.active,
        };
        bits & self.implemented(id)
    }

    fn write_bits(&mut self, scope: Scope, which: BitReg, intid: u32, value: u32) -> u64 {
        let Some((id, _)) = self.locate(scope, intid) else {
            return 0;
        };
        let value = value & self.writable_bits(id, which);
        self.change_bits(id, which, value)
    }

    /// The bits of a bank a guest's write to a `which` register changes.
    fn writable_bits(&self, id: BankId, which: BitReg) -> u32 {
        let fixed = match (self.version, id, which) {
            // GICv2: SGIs are always enabled (as on GIC-400 and QEMU's
            // GICv2, which Linux expects), and their pending state is set
            // and cleared through SPENDSGIR / CPENDSGIR only (IHI 0048B
            // 4.3.7, 4.3.8: the ISPENDR0 / ICPENDR0 SGI bits are WI).
            (
                Version::V2,
                BankId::Private(_),
                BitReg::SetEnable | BitReg::ClearEnable | BitReg::SetPending | BitReg::ClearPending,
            ) => SGI_BITS,
            _ => 0,
        };
        self.implemented(id) & !fixed
    }

    /// Applies a bit-register write of `value` (writable bits only) to a
    /// bank; returns the vCPUs to kick.
    fn change_bits(&mut self, id: BankId, which: BitReg, value: u32) -> u64 {
        let ctlr = self.ctlr;
        let Some(bank) = self.bank_mut(id) else {
            return 0;
        };
        let before = bank.live(ctlr);
        let activated = match which {
            BitReg::Group => {
                bank.group1 = value;
                0
            }
            BitReg::SetEnable => {
                bank.enabled |= value;
                0
            }
            BitReg::ClearEnable => {
                bank.enabled &= !value;
                0
            }
            BitReg::SetPending => {
                bank.pending |= value;
                0
            }
            BitReg::ClearPending => {
                bank.pending &= !value;
                0
            }
            BitReg::SetActive => {
                let activated = value & !bank.active & !bank.in_lr;
                bank.active |= value;
                activated
            }
            BitReg::ClearActive => {
                bank.active &= !value;
                0
            }
        };
        bank.settle_hw();
        let grown = bank.live(ctlr) & !before;
        // An SPI the guest activates here becomes active on its current
        // target. (One it deactivates keeps a stale home, which nothing
        // reads: see `owner`.)
        for bit in Bits(activated) {
            let target = self.spi_at(id, bit).and_then(|spi| spi.target);
            self.set_home(id, bit, target);
        }
        self.kicks(id, grown)
    }

    fn read_priority(&self, scope: Scope, intid: u32, size: AccessSize) -> u64 {
        let bytes = byte_lanes(intid, size).map(|(_, intid)| self.priority(scope, intid));
        bytes.rev().fold(0, |acc, priority| acc << 8 | u64::from(priority))
    }

    fn write_priority(&mut self, scope: Scope, intid: u32, size: AccessSize, value: u64) -> u64 {
        let ctlr = self.ctlr;
        let mut kick = 0;
        for (byte, intid) in byte_lanes(intid, size) {
            let Some((id, bit)) = self.locate(scope, intid) else {
                continue;
            };
            let Some(bank) = self.bank_mut(id) else {
                continue;
            };
            let Some(priority) = bank.priority.get_mut(to_usize(bit)) else {
                continue;
            };
            let new = low8(value.checked_shr(byte.saturating_mul(8)).unwrap_or(0)) & PRIORITY_MASK;
            let changed = core::mem::replace(priority, new) != new;
            // A pending interrupt's new priority may reorder what its vCPU
            // should hold in its list registers.
            if changed && bank.deliverable(ctlr) & bit_mask(bit) != 0 {
                kick |= self.owner(id, bit).map_or(0, vcpu_bit);
            }
        }
        kick
    }

    fn priority(&self, scope: Scope, intid: u32) -> u8 {
        self.locate(scope, intid).and_then(|(id, bit)| self.bank(id)?.priority.get(to_usize(bit)).copied()).unwrap_or(0)
    }

    /// The 16 INTIDs of one `ICFGR` word start at `intid`, in the low or
    /// the high half of their bank.
    fn read_config(&self, scope: Scope, intid: u32) -> u32 {
        let Some((id, bit)) = self.locate(scope, intid) else {
            return 0;
        };
        let Some(bank) = self.bank(id) else { return 0 };
        let edge = (bank.edge & self.implemented(id)).checked_shr(bit).unwrap_or(0);
        spread_edges(edge)
    }

    fn write_config(&mut self, scope: Scope, intid: u32, value: u32) {
        let Some((id, bit)) = self.locate(scope, intid) else {
            return;
        };
        // SGIs are always edge-triggered; PPIs and SPIs are configurable.
        let writable = match id {
            BankId::Private(_) => PPI_BITS,
            BankId::Spi(_) => self.implemented(id),
        };
        // One ICFGR word covers 16 INTIDs: half a bank.
        const HALF_BANK: u32 = 0xFFFF;
        let half = HALF_BANK.checked_shl(bit).unwrap_or(0) & writable;
        let new = gather_edges(value).checked_shl(bit).unwrap_or(0);
        if let Some(bank) = self.bank_mut(id) {
            bank.edge = (bank.edge & !half) | (new & half);
        }
    }

    fn write_router(&mut self, intid: u32, size: AccessSize, high: bool, value: u64) -> u64 {
        let Some(spi) = self.spi(intid) else { return 0 };
        let route = match (size, high) {
            (AccessSize::Double, _) => value,
            (_, true) => (spi.route & LOW_WORD) | value << 32,
            (_, false) => (spi.route & !LOW_WORD) | value,
        };
        let route = route & (affinity::ALL | gicd::IROUTER_IRM);
        let target = self.route_target(route);
        self.reroute(intid, |spi| (spi.route, spi.target) = (route, target))
    }

    /// A GICv2 `ITARGETSR` write: each SPI byte is the SPI's new CPU
    /// target mask (the bits of CPUs that do not exist are RAZ/WI); the
    /// bytes of INTIDs 0..31 are read-only.
    fn write_targets(&mut self, intid: u32, size: AccessSize, value: u64) -> u64 {
        let present = low8(self.present());
        let mut kick = 0;
        for (byte, intid) in byte_lanes(intid, size) {
            let targets = low8(value.checked_shr(byte.saturating_mul(8)).unwrap_or(0)) & present;
            // The lowest-numbered vCPU of the mask takes the SPI: a GICv2
            // may give it to any one of them.
            let target = (targets != 0).then(|| low8(targets.trailing_zeros().into()));
            kick |= self.reroute(intid, |spi| (spi.targets, spi.target) = (targets, target));
        }
        kick
    }

    /// Changes the route of SPI `intid` (nothing for another INTID);
    /// returns its new owner to kick if it changed owner and has something
    /// to deliver or finish.
    fn reroute(&mut self, intid: u32, change: impl FnOnce(&mut Spi)) -> u64 {
        let Some((id, bit)) = self.locate(Scope::Dist, intid) else {
            return 0;
        };
        let owner_before = self.owner(id, bit);
        let Some(spi) = self.spi_mut(intid) else { return 0 };
        change(spi);
        let owner = self.owner(id, bit);
        let live = self.bank(id).is_some_and(|bank| bank.live(self.ctlr) & bit_mask(bit) != 0);
        if live && owner != owner_before {
            owner.map_or(0, vcpu_bit)
        } else {
            0
        }
    }

    /// A GICv2 `GICD_SGIR` write by the vCPU of `scope`: the SGI becomes
    /// pending on the vCPUs the filter and list name (NSATT ignored: one
    /// security state). The kick is the targets, as for
    /// [`send_sgi`](Self::send_sgi).
    fn write_sgir(&mut self, scope: Scope, value: u32) -> u64 {
        let Scope::Vcpu(sender) = scope else { return 0 };
        let intid = value & gicd_v2::SGIR_INTID_MASK;
        let list = (value >> gicd_v2::SGIR_TARGET_LIST_SHIFT) & gicd_v2::SGIR_TARGET_LIST_MASK;
        let present = self.present();
        let targets = match (value >> gicd_v2::SGIR_FILTER_SHIFT) & gicd_v2::SGIR_FILTER_MASK {
            gicd_v2::SGIR_FILTER_LIST => u64::from(list) & present,
            gicd_v2::SGIR_FILTER_OTHERS => present & !vcpu_bit(sender),
            gicd_v2::SGIR_FILTER_SELF => present & vcpu_bit(sender),
            // Reserved.
            _ => 0,
        };
        self.pend_sgi(intid, targets)
    }

    /// A GICv2 `ITARGETSR` byte as the vCPU of `scope` reads it: its own
    /// bit for INTIDs 0..31, an SPI's target mask, 0 for the rest.
    fn targets(&self, scope: Scope, intid: u32) -> u8 {
        match scope {
            Scope::Vcpu(vcpu) if intid < SPI_BASE => low8(vcpu_bit(vcpu)),
            _ => self.spi(intid).map_or(0, |spi| spi.targets),
        }
    }

    // -----------------------------------------------------------------
    // The list-register cache.

    /// Calls `f` with each bank holding `vcpu`'s candidates for its list
    /// registers, and the candidates' bits: live, not cached already, and
    /// (SPIs) owned by it; stops when `f` returns `false`. A plain loop
    /// over the presented banks only: this runs on every fill, and most
    /// banks are quiet.
    fn for_each_candidate(&self, vcpu: usize, mut f: impl FnMut(BankId, u32) -> bool) {
        // Most banks have nothing pending or active: leave them first.
        let quiet = |bank: &Bank| (bank.pending | bank.active) & !bank.in_lr == 0;
        if let Some(bank) = self.cpus.get(vcpu).filter(|_| vcpu < self.vcpus).map(|cpu| &cpu.private) {
            let bits = bank.live(self.ctlr) & !bank.in_lr;
            if !quiet(bank) && bits != 0 && !f(BankId::Private(vcpu), bits) {
                return;
            }
        }
        let spi_banks = self.spis.div_ceil(WORD_INTIDS_USIZE);
        for (n, bank) in self.banks.iter().enumerate().take(spi_banks) {
            if quiet(bank) {
                continue;
            }
            let id = BankId::Spi(n);
            let bits = Bits(bank.live(self.ctlr) & !bank.in_lr & self.implemented(id))
                .filter(|&bit| self.owner(id, bit) == Some(vcpu))
                .fold(0, |acc, bit| acc | bit_mask(bit));
            if bits != 0 && !f(id, bits) {
                return;
            }
        }
    }

    /// Moves `intid`'s state from the model into a list-register value
    /// for `vcpu`, and marks it cached there.
    fn take(&mut self, vcpu: usize, intid: u32) -> Option<Lr> {
        let (id, bit) = self.locate(Scope::Vcpu(vcpu), intid)?;
        let ctlr = self.ctlr;
        let bank = self.bank_mut(id)?;
        let mask = bit_mask(bit);
        // An active interrupt that is also pending but not deliverable
        // (disabled meanwhile) takes only its active state along.
        let pending = bank.deliverable(ctlr) & mask != 0;
        let active = bank.active & mask != 0;
        let priority = bank.priority.get(to_usize(bit)).copied().unwrap_or(0);
        let mut lr = Lr::new(intid, priority, bank.group1 & mask != 0).with_pending(pending).with_active(active);
        if bank.hw & mask != 0 {
            lr = lr.with_hw(intid);
        }
        if pending {
            bank.pending &= !mask;
        }
        bank.active &= !mask;
        bank.in_lr |= mask;
        self.set_home(id, bit, u8::try_from(vcpu).ok());
        Some(lr)
    }

    /// Folds one list register `vcpu` held `intid` in; returns the vCPU to
    /// kick if an SPI came back for another vCPU.
    fn fold_one(&mut self, vcpu: usize, intid: u32, value: Lr) -> u64 {
        let Some((id, bit)) = self.locate(Scope::Vcpu(vcpu), intid) else {
            return 0;
        };
        let ctlr = self.ctlr;
        let Some(bank) = self.bank_mut(id) else {
            return 0;
        };
        let mask = bit_mask(bit);
        if value.pending() {
            bank.pending |= mask;
        }
        if value.active() {
            bank.active |= mask;
        } else {
            bank.active &= !mask;
        }
        bank.in_lr &= !mask;
        bank.settle_hw();
        let live = bank.live(ctlr) & mask != 0;
        // Still active: it stays on this vCPU whatever its route says.
        self.set_home(id, bit, u8::try_from(vcpu).ok());
        if live {
            self.owner(id, bit).map_or(0, vcpu_bit)
        } else {
            0
        }
    }

    // -----------------------------------------------------------------
    // Lookups.

    fn cpus_present(&self) -> core::ops::Range<usize> {
        0..self.vcpus
    }

    /// The presented vCPUs as a bitmask.
    fn present(&self) -> u64 {
        self.cpus_present().fold(0, |acc, vcpu| acc | vcpu_bit(vcpu))
    }

    /// The private bank of the vCPU a GICv2 distributor access comes from.
    fn scope_private(&self, scope: Scope) -> Option<&Bank> {
        let Scope::Vcpu(vcpu) = scope else { return None };
        self.bank(BankId::Private(vcpu))
    }

    fn scope_cpu(&self, scope: Scope) -> Option<&Cpu> {
        let Scope::Redist(vcpu) = scope else {
            return None;
        };
        self.cpus.get(vcpu).filter(|_| vcpu < self.vcpus)
    }

    fn scope_cpu_mut(&mut self, scope: Scope) -> Option<&mut Cpu> {
        let Scope::Redist(vcpu) = scope else {
            return None;
        };
        if vcpu >= self.vcpus {
            return None;
        }
        self.cpus.get_mut(vcpu)
    }

    /// The bank and bit holding `intid` as `scope` sees it: with ARE on,
    /// the distributor sees only the presented SPIs and a redistributor
    /// only its vCPU's SGIs and PPIs; a vCPU sees both.
    fn locate(&self, scope: Scope, intid: u32) -> Option<(BankId, u32)> {
        match scope {
            Scope::Redist(vcpu) => (vcpu < self.vcpus && intid < SPI_BASE).then_some((BankId::Private(vcpu), intid)),
            Scope::Vcpu(vcpu) if intid < SPI_BASE => self.locate(Scope::Redist(vcpu), intid),
            Scope::Vcpu(_) => self.locate(Scope::Dist, intid),
            Scope::Dist => {
                let spi = intid.checked_sub(SPI_BASE)?;
                if to_usize(spi) >= self.spis {
                    return None;
                }
                Some((BankId::Spi(to_usize(spi / WORD_INTIDS)), spi % WORD_INTIDS))
            }
        }
    }

    fn bank(&self, id: BankId) -> Option<&Bank> {
        match id {
            BankId::Private(vcpu) if vcpu < self.vcpus => self.cpus.get(vcpu).map(|cpu| &cpu.private),
            BankId::Private(_) => None,
            BankId::Spi(n) => self.banks.get(n),
        }
    }

    fn bank_mut(&mut self, id: BankId) -> Option<&mut Bank> {
        match id {
            BankId::Private(vcpu) if vcpu < self.vcpus => self.cpus.get_mut(vcpu).map(|cpu| &mut cpu.private),
            BankId::Private(_) => None,
            BankId::Spi(n) => self.banks.get_mut(n),
        }
    }

    /// The bits of a bank that are presented INTIDs.
    fn implemented(&self, id: BankId) -> u32 {
        match id {
            BankId::Private(_) => u32::MAX,
            BankId::Spi(n) => {
                let first = n.saturating_mul(WORD_INTIDS_USIZE);
                let count = self.spis.saturating_sub(first).min(WORD_INTIDS_USIZE);
                let count = u32::try_from(count).unwrap_or(0);
                u32::MAX.checked_shr(WORD_INTIDS.saturating_sub(count)).unwrap_or(0)
            }
        }
    }

    fn spi(&self, intid: u32) -> Option<&Spi> {
        let (id, bit) = self.locate(Scope::Dist, intid)?;
        self.spi_at(id, bit)
    }

    fn spi_mut(&mut self, intid: u32) -> Option<&mut Spi> {
        let (id, bit) = self.locate(Scope::Dist, intid)?;
        self.routes.get_mut(spi_index(id, bit)?)
    }

    fn spi_at(&self, id: BankId, bit: u32) -> Option<&Spi> {
        self.routes.get(spi_index(id, bit)?)
    }

    fn set_home(&mut self, id: BankId, bit: u32, home: Option<u8>) {
        if let Some(spi) = spi_index(id, bit).and_then(|index| self.routes.get_mut(index)) {
            spi.home = home;
        }
    }

    /// The vCPU an interrupt belongs to: a private one's own; an SPI's
    /// home while it is cached or active there, else its route's target.
    fn owner(&self, id: BankId, bit: u32) -> Option<usize> {
        match id {
            BankId::Private(vcpu) => Some(vcpu),
            BankId::Spi(_) => {
                let bank = self.bank(id)?;
                let spi = self.spi_at(id, bit)?;
                let held = (bank.in_lr | bank.active) & bit_mask(bit) != 0;
                let home = if held { spi.home } else { None };
                home.or(spi.target).map(usize::from)
            }
        }
    }

    /// The owners of `bits` of a bank, as a vCPU bitmask.
    fn kicks(&self, id: BankId, bits: u32) -> u64 {
        Bits(bits).fold(0, |kick, bit| kick | self.owner(id, bit).map_or(0, vcpu_bit))
    }

    /// The vCPU a `GICD_IROUTER` value names: vCPU 0 for "any", else the
    /// first with that affinity.
    fn route_target(&self, route: u64) -> Option<u8> {
        let vcpu = if route & gicd::IROUTER_IRM != 0 {
            self.cpus_present().next()
        } else {
            let wanted = route & affinity::ALL;
            self.cpus_present().find(|&vcpu| self.cpus.get(vcpu).is_some_and(|cpu| cpu.affinity == wanted))
        };
        vcpu.and_then(|vcpu| u8::try_from(vcpu).ok())
    }

    /// The vCPUs an `ICC_SGI1R_EL1` value with IRM = 0 names.
    fn sgi_targets(&self, sgi1r: u64) -> u64 {
        let field = |shift: u32| (sgi1r >> shift) & sgi1r::AFF_MASK;
        let upper = field(sgi1r::AFF3_SHIFT) << affinity::AFF3_SHIFT
            | field(sgi1r::AFF2_SHIFT) << affinity::AFF2_SHIFT
            | field(sgi1r::AFF1_SHIFT) << affinity::AFF1_SHIFT;
        let range = (sgi1r >> sgi1r::RS_SHIFT) & sgi1r::RS_MASK;
        let targets = sgi1r & sgi1r::TARGET_LIST;
        self.cpus_present()
            .filter(|&vcpu| {
                self.cpus.get(vcpu).is_some_and(|cpu| {
                    let aff0 = cpu.affinity & affinity::AFF0;
                    // Aff0 = 16 * RS + (the target list's bit number).
                    cpu.affinity & !affinity::AFF0 == upper
                        && aff0 >> sgi1r::RANGE_SHIFT == range
                        && targets & u64::from(bit_mask(low32(aff0 & sgi1r::RANGE_MASK))) != 0
                })
            })
            .fold(0, |acc, vcpu| acc | vcpu_bit(vcpu))
    }
}

/// The list registers' contents in the making: the best `capacity`
/// candidates seen so far, ordered by key (inactive after active, then
/// priority, then INTID).
struct Chosen {
    /// The kept keys, best first: entries below `len` are initialised.
    /// The rest is left uninitialised: clearing the array on every fill
    /// was a `memset` call of some 50 to 70 instructions.
    keys: [MaybeUninit<u32>; MAX_LRS],
    len: usize,
    capacity: usize,
}

/// `(not active, priority, INTID)`: smaller goes first.
type Key = (bool, u8, u32);

/// A [`Key`] packed so that comparing the words compares the keys. The
/// model's INTIDs are SGIs, PPIs and SPIs, all below 1024 (10 bits).
fn pack(key: Key) -> u32 {
    let (inactive, priority, intid) = key;
    u32::from(inactive) << KEY_INACTIVE_SHIFT | u32::from(priority) << KEY_PRIORITY_SHIFT | (intid & KEY_INTID_MASK)
}

fn unpack(word: u32) -> Key {
    let priority = u8::try_from(word >> KEY_PRIORITY_SHIFT & 0xff).unwrap_or(u8::MAX);
    (word >> KEY_INACTIVE_SHIFT & 1 != 0, priority, word & KEY_INTID_MASK)
}

const KEY_INTID_MASK: u32 = 0x3ff;
const KEY_PRIORITY_SHIFT: u32 = 10;
const KEY_INACTIVE_SHIFT: u32 = 18;

impl Chosen {
    // Inlined so that the key array is built where it lives: a call
    // returning it by value costs a copy on every fill.
    #[inline(always)]
    fn new(capacity: usize) -> Self {
        Self { keys: [MaybeUninit::uninit(); MAX_LRS], len: 0, capacity: capacity.min(MAX_LRS) }
    }

    /// The kept keys.
    fn kept(&self) -> &[u32] {
        let kept = self.keys.get(..self.len).unwrap_or_default();
        // SAFETY: entries below `len` are initialised (`offer` writes the
        // entry it grows `len` over); `MaybeUninit<u32>` has `u32`'s layout.
        unsafe { &*core::ptr::slice_from_raw_parts(kept.as_ptr().cast::<u32>(), kept.len()) }
    }

    fn offer(&mut self, key: Key) {
        let key = pack(key);
        let position = self.kept().iter().position(|k| key < *k).unwrap_or(self.len);
        if position >= self.capacity {
            return;
        }
        let len = self.len.saturating_add(1).min(self.capacity);
        // Shift the worse keys up one (dropping the last when full); the
        // entry at `position` is then written, so every entry below the
        // new `len` is initialised.
        if let Some(window) = self.keys.get_mut(position..len) {
            window.rotate_right(1);
            if let Some(first) = window.first_mut() {
                first.write(key);
                self.len = len;
            }
        }
    }

    fn get(&self, index: usize) -> Option<Key> {
        self.kept().get(index).copied().map(unpack)
    }
}

/// The set bits of a word, lowest first.
struct Bits(u32);

impl Iterator for Bits {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros();
        self.0 &= self.0.wrapping_sub(1);
        Some(bit)
    }
}

/// Validates an access: a size the bus can make, naturally aligned.
fn access_size(offset: u64, size: u8) -> Option<AccessSize> {
    let size = AccessSize::from_bytes(size)?;
    let align = u64::from(size.bytes()).saturating_sub(1);
    (offset & align == 0).then_some(size)
}

/// The (byte number, INTID) pairs of a byte or word access to a register
/// with one byte per INTID (`IPRIORITYR`, `ITARGETSR`, and per SGI
/// `SPENDSGIR` / `CPENDSGIR`).
fn byte_lanes(intid: u32, size: AccessSize) -> impl DoubleEndedIterator<Item = (u32, u32)> {
    let bytes = match size {
        AccessSize::Byte => 1,
        _ => 4,
    };
    (0..bytes).filter_map(move |byte| Some((byte, intid.checked_add(byte)?)))
}

/// `ICFGR` from 16 edge bits: bit *i* becomes bit 2*i*+1 (bit 2*i*, once
/// the 1-N model bit, is RES0).
fn spread_edges(edges: u32) -> u32 {
    let mut x = edges & 0xFFFF;
    x = (x | x << 8) & 0x00FF_00FF;
    x = (x | x << 4) & 0x0F0F_0F0F;
    x = (x | x << 2) & 0x3333_3333;
    x = (x | x << 1) & 0x5555_5555;
    x << 1
}

/// The 16 edge bits of an `ICFGR` value: the inverse of [`spread_edges`].
fn gather_edges(icfgr: u32) -> u32 {
    let mut x = (icfgr >> 1) & 0x5555_5555;
    x = (x | x >> 1) & 0x3333_3333;
    x = (x | x >> 2) & 0x0F0F_0F0F;
    x = (x | x >> 4) & 0x00FF_00FF;
    (x | x >> 8) & 0x0000_FFFF
}

fn bit_mask(bit: u32) -> u32 {
    1u32.checked_shl(bit).unwrap_or(0)
}

fn vcpu_bit(vcpu: usize) -> u64 {
    u32::try_from(vcpu).ok().and_then(|vcpu| 1u64.checked_shl(vcpu)).unwrap_or(0)
}

fn intid_of(id: BankId, bit: u32) -> Option<u32> {
    match id {
        BankId::Private(_) => Some(bit),
        BankId::Spi(_) => u32::try_from(spi_index(id, bit)?).ok()?.checked_add(SPI_BASE),
    }
}

/// The index into the per-SPI arrays of an SPI bank's bit.
fn spi_index(id: BankId, bit: u32) -> Option<usize> {
    let BankId::Spi(n) = id else { return None };
    n.checked_mul(WORD_INTIDS_USIZE)?.checked_add(to_usize(bit))
}

/// Widening; `usize` has at least 32 bits on every target this runs on.
fn to_usize(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

fn low32(value: u64) -> u32 {
    let [a, b, c, d, ..] = value.to_le_bytes();
    u32::from_le_bytes([a, b, c, d])
}

fn low8(value: u64) -> u8 {
    let [a, ..] = value.to_le_bytes();
    a
}
