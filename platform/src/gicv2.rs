//! The physical GICv2 (GIC-400, QEMU's `arm,cortex-a15-gic`): its register
//! map and a thin driver for its three memory-mapped frames, shared by the
//! monitor (secure set-up) and the hypervisor (its own interrupts and the
//! guests' virtual CPU interface).
//!
//! - [`Distributor`]: `GICD_*`, one per system; the registers of INTIDs
//!   0..31 are banked per CPU (each CPU sees its own SGIs and PPIs).
//! - [`CpuInterface`]: `GICC_*`, banked per CPU at one address: what a
//!   GICv3 reaches through its `ICC_*` system registers.
//! - [`HypInterface`]: `GICH_*`, the virtualisation extensions' control
//!   frame, banked per CPU: list registers and the virtual interface's
//!   state. Its sibling, `GICV`, is mapped into a guest as that guest's
//!   `GICC` and needs no driver.
//!
//! # Two security states
//!
//! With the Security Extensions (GIC-400, QEMU with `secure=on`), Group 0
//! is Secure and Group 1 Non-secure. The monitor makes every interrupt
//! Group 1 and enables Group 1 at the CPU interface, with a Secure priority
//! mask of [`PMR_ALL`]; a Non-secure write of a priority `p`, to
//! `GICD_IPRIORITYR` or `GICC_PMR`, is then stored as `0x80 | p >> 1` and
//! read back as written, the same view the hypervisor's GICv3 code has of
//! its priorities. The Non-secure `GICC_CTLR` has its own layout:
//! [`GICC_CTLR_NS_ENABLE_GRP1`], [`GICC_CTLR_NS_EOIMODE`].
//!
//! # Why not the `arm-gic` crate's GICv2 driver
//!
//! Its `set_interrupt_priority` writes a whole `GICD_IPRIORITYR` word, so
//! setting one interrupt's priority zeroes its three neighbours'; it has no
//! access to `GICD_ITARGETSR` (SPI routing, and how a CPU learns its own
//! interface number), `GICC_DIR` or `GICC_RPR`, none of the virtualisation
//! frame, and it panics on bad arguments. What a GICv2 needs here is a
//! register map and volatile accesses, which this module is.

/// Distributor (`GICD_*`) offsets that a GICv3 does not have, or lays out
/// differently (the emulated GICv2 distributor's too); the rest
/// ([`crate::vgic::gicd`]) are common to both.
pub use crate::vgic::gicd_v2 as gicd;

/// CPU interface (`GICC_*`) offsets.
pub mod gicc {
    pub const CTLR: u64 = 0x0000;
    pub const PMR: u64 = 0x0004;
    pub const BPR: u64 = 0x0008;
    pub const IAR: u64 = 0x000C;
    pub const EOIR: u64 = 0x0010;
    pub const RPR: u64 = 0x0014;
    pub const HPPIR: u64 = 0x0018;
    pub const APR0: u64 = 0x00D0;
    pub const DIR: u64 = 0x1000;
    pub const IIDR: u64 = 0x00FC;
    /// The frame's size: `GICC_DIR` sits in its second 4 KiB page.
    pub const SIZE: u64 = 0x2000;
    /// `GICC_IAR`: INTID \[9:0\]; for an SGI, the sender's CPU interface
    /// number in \[12:10\]. `EOIR` and `DIR` take the value `IAR` gave,
    /// sender included.
    pub const IAR_INTID_MASK: u32 = 0x3FF;
    pub const IAR_ACK_MASK: u32 = 0x1FFF;
}

/// Virtual interface control (`GICH_*`) offsets and fields.
pub mod gich {
    pub const HCR: u64 = 0x0000;
    pub const VTR: u64 = 0x0004;
    pub const VMCR: u64 = 0x0008;
    pub const MISR: u64 = 0x0010;
    pub const ELRSR0: u64 = 0x0030;
    pub const ELRSR1: u64 = 0x0034;
    pub const APR: u64 = 0x00F0;
    pub const LR0: u64 = 0x0100;
    /// `GICH_HCR.En` and `.UIE` (underflow maintenance interrupt).
    pub const HCR_EN: u32 = 1 << 0;
    pub const HCR_UIE: u32 = 1 << 1;
    /// `GICH_VTR.ListRegs` \[5:0\]: list registers minus one.
    pub const VTR_LIST_REGS_MASK: u32 = 0x3F;
    /// At most 64 list registers.
    pub const MAX_LRS: usize = 64;
    /// The frame's size (the list registers end at 0x200).
    pub const SIZE: u64 = 0x1000;
}

/// `GICC_CTLR` as a Non-secure access sees it: bit 0 enables Group 1,
/// bit 9 splits priority drop (`EOIR`) from deactivation (`DIR`).
pub const GICC_CTLR_NS_ENABLE_GRP1: u32 = 1 << 0;
pub const GICC_CTLR_NS_EOIMODE: u32 = 1 << 9;
/// `GICC_CTLR` as the Secure side sees it: Group 1 enable is bit 1.
pub const GICC_CTLR_S_ENABLE_GRP1: u32 = 1 << 1;
/// `GICD_CTLR` (Secure view): enable Group 0 and Group 1 forwarding.
pub const GICD_CTLR_S_ENABLE_GRP0: u32 = 1 << 0;
pub const GICD_CTLR_S_ENABLE_GRP1: u32 = 1 << 1;
/// The lowest priority: a mask that lets every interrupt through.
pub const PMR_ALL: u32 = 0xFF;
/// `GICC_IAR` when nothing is pending (and 1020..1022, also special).
pub const INTID_SPECIAL_FIRST: u32 = 1020;

/// A CPU interface region this large may be a GIC-400 integrated with
/// each 4 KiB page repeated over 64 KiB (the ZynqMP's is): its two pages
/// are then contiguous only at [`ALIASED_OFFSET`].
pub const ALIASED_REGION: u64 = 0x2_0000;
pub const ALIASED_OFFSET: u64 = 0xF000;

/// Where the 8 KiB CPU interface (or virtual CPU interface, which the same
/// integration lays out alike) starts in its `region_size` bytes: 0, or
/// [`ALIASED_OFFSET`] when the region is large enough to be aliased and
/// `iidr_at` (a read of the region at an offset) finds the same non-zero
/// `GICC_IIDR` at the start and 60 KiB on, as Linux's GICv2 driver checks.
/// Without it, `GICC_DIR` at 0x1000 would be an alias of `GICC_CTLR`.
pub fn contiguous_offset(region_size: u64, iidr_at: impl Fn(u64) -> u32) -> u64 {
    if region_size < ALIASED_REGION {
        return 0;
    }
    let low = iidr_at(gicc::IIDR);
    let high = iidr_at(ALIASED_OFFSET.wrapping_add(gicc::IIDR));
    if low != 0 && low == high {
        ALIASED_OFFSET
    } else {
        0
    }
}

/// `PIDR2.ArchRev` (bits 7:4) of a GICv2.
pub const fn pidr2_is_v2(pidr2: u32) -> bool {
    (pidr2 >> 4) & 0xF == 2
}

/// One memory-mapped frame, accessed with volatile 32- and 8-bit accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Frame {
    base: usize,
}

impl Frame {
    fn read(self, offset: u64) -> u32 {
        // SAFETY: the owning driver's constructor contract makes every
        // offset it passes a register of this frame, mapped as Device
        // memory.
        unsafe { core::ptr::read_volatile(self.base.wrapping_add(offset as usize) as *const u32) }
    }

    fn write(self, offset: u64, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(self.base.wrapping_add(offset as usize) as *mut u32, value) }
    }

    fn read_u8(self, offset: u64) -> u8 {
        // SAFETY: as in `read`; the byte-accessible registers
        // (`IPRIORITYR`, `ITARGETSR`) are the only ones read this way.
        unsafe { core::ptr::read_volatile(self.base.wrapping_add(offset as usize) as *const u8) }
    }

    fn write_u8(self, offset: u64, value: u8) {
        // SAFETY: as in `read_u8`.
        unsafe { core::ptr::write_volatile(self.base.wrapping_add(offset as usize) as *mut u8, value) }
    }
}

/// Bit `intid % 32` of the one-bit-per-INTID block at `block`: (register
/// offset, bit).
fn bit_of(block: u64, intid: u32) -> (u64, u32) {
    (block.wrapping_add(u64::from(intid / 32).wrapping_mul(4)), 1 << (intid % 32))
}

/// The distributor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Distributor {
    frame: Frame,
}

impl Distributor {
    /// # Safety
    ///
    /// `base` must be the address, valid in the current translation regime
    /// and mapped as Device memory, of a GICv2 distributor's 4 KiB frame.
    pub const unsafe fn new(base: usize) -> Self {
        Self { frame: Frame { base } }
    }

    /// `GICD_TYPER.ITLinesNumber`: the SPIs implemented, 32 per line past
    /// the first.
    pub fn spis(&self) -> usize {
        let lines = self.frame.read(crate::vgic::gicd::TYPER) & crate::vgic::gicd::TYPER_ITLINES_MASK;
        (lines as usize).wrapping_mul(32)
    }

    pub fn set_control(&self, value: u32) {
        self.frame.write(crate::vgic::gicd::CTLR, value);
    }

    /// Puts all 32 INTIDs of block `index` (0: this CPU's SGIs and PPIs)
    /// in Group 1 (`true`) or Group 0.
    pub fn set_groups(&self, index: u32, group1: bool) {
        let offset = crate::vgic::gicd::IGROUPR.wrapping_add(u64::from(index).wrapping_mul(4));
        self.frame.write(offset, if group1 { u32::MAX } else { 0 });
    }

    /// Enables or disables `intid` (banked for INTIDs 0..31).
    pub fn enable(&self, intid: u32, enable: bool) {
        let block = if enable { crate::vgic::gicd::ISENABLER } else { crate::vgic::gicd::ICENABLER };
        let (offset, bit) = bit_of(block, intid);
        self.frame.write(offset, bit);
    }

    /// Sets `intid`'s priority, alone (the register is byte-accessible).
    pub fn set_priority(&self, intid: u32, priority: u8) {
        self.frame.write_u8(crate::vgic::gicd::IPRIORITYR.wrapping_add(u64::from(intid)), priority);
    }

    /// Level-sensitive (`false`) or edge-triggered SPI `intid`.
    pub fn set_edge(&self, intid: u32, edge: bool) {
        let offset = crate::vgic::gicd::ICFGR.wrapping_add(u64::from(intid / 16).wrapping_mul(4));
        let bit = 2u32.wrapping_shl((intid % 16).wrapping_mul(2));
        let value = self.frame.read(offset);
        self.frame.write(offset, if edge { value | bit } else { value & !bit });
    }

    /// The CPU interfaces (one bit each) SPI `intid` goes to.
    pub fn set_targets(&self, intid: u32, targets: u8) {
        self.frame.write_u8(gicd::ITARGETSR.wrapping_add(u64::from(intid)), targets);
    }

    /// The calling CPU's own CPU interface bit (`GICD_ITARGETSR0`'s first
    /// byte, banked): the target a GICv2 knows a CPU by.
    pub fn own_target(&self) -> u8 {
        self.frame.read_u8(gicd::ITARGETSR)
    }

    /// Sends SGI `sgi` to the CPU interfaces in `targets` (one bit each).
    /// `nsatt`: a Secure sender's Group 1 SGI (a Non-secure sender's SGIs
    /// are Group 1 whatever it says).
    pub fn send_sgi(&self, sgi: u32, targets: u8, nsatt: bool) {
        let mut value = (sgi & gicd::SGIR_INTID_MASK) | u32::from(targets) << gicd::SGIR_TARGET_LIST_SHIFT;
        if nsatt {
            value |= gicd::SGIR_NSATT;
        }
        self.frame.write(gicd::SGIR, value);
    }
}

/// The calling CPU's CPU interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInterface {
    frame: Frame,
}

impl CpuInterface {
    /// # Safety
    ///
    /// `base` must be the address, valid in the current translation regime
    /// and mapped as Device memory, of a GICv2 CPU interface's 8 KiB frame.
    pub const unsafe fn new(base: usize) -> Self {
        Self { frame: Frame { base } }
    }

    pub fn set_control(&self, value: u32) {
        self.frame.write(gicc::CTLR, value);
    }

    pub fn pmr(&self) -> u8 {
        self.frame.read(gicc::PMR) as u8
    }

    pub fn set_pmr(&self, value: u8) {
        self.frame.write(gicc::PMR, u32::from(value));
    }

    pub fn set_binary_point(&self, value: u32) {
        self.frame.write(gicc::BPR, value);
    }

    /// Acknowledges the most urgent pending interrupt: `GICC_IAR` with its
    /// sender field ([`gicc::IAR_ACK_MASK`]), or `None` for a special INTID.
    pub fn acknowledge(&self) -> Option<u32> {
        let iar = self.frame.read(gicc::IAR) & gicc::IAR_ACK_MASK;
        ((iar & gicc::IAR_INTID_MASK) < INTID_SPECIAL_FIRST).then_some(iar)
    }

    /// Priority drop (and deactivation unless EOImode is split) of what
    /// [`acknowledge`](Self::acknowledge) returned.
    pub fn end(&self, iar: u32) {
        self.frame.write(gicc::EOIR, iar);
    }

    /// Deactivates what [`acknowledge`](Self::acknowledge) returned.
    pub fn deactivate(&self, iar: u32) {
        self.frame.write(gicc::DIR, iar);
    }

    /// `GICC_RPR`: the running priority.
    pub fn running_priority(&self) -> u8 {
        self.frame.read(gicc::RPR) as u8
    }

    /// `GICC_HPPIR`'s INTID: the most urgent pending interrupt.
    pub fn highest_pending(&self) -> u32 {
        self.frame.read(gicc::HPPIR) & gicc::IAR_INTID_MASK
    }

    /// `GICC_IIDR` at `offset` from this frame's base (see
    /// [`contiguous_offset`]).
    pub fn iidr_at(&self, offset: u64) -> u32 {
        self.frame.read(offset)
    }

    /// `GICC_APR0`: the active priorities.
    pub fn active_priorities(&self) -> u32 {
        self.frame.read(gicc::APR0)
    }
}

/// The calling CPU's virtual interface control frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypInterface {
    frame: Frame,
}

impl HypInterface {
    /// # Safety
    ///
    /// `base` must be the address, valid in the current translation regime
    /// and mapped as Device memory, of a GICv2's `GICH` frame.
    pub const unsafe fn new(base: usize) -> Self {
        Self { frame: Frame { base } }
    }

    /// How many list registers it has.
    pub fn list_registers(&self) -> usize {
        ((self.frame.read(gich::VTR) & gich::VTR_LIST_REGS_MASK) as usize).wrapping_add(1).min(gich::MAX_LRS)
    }

    pub fn read_lr(&self, index: usize) -> u32 {
        self.frame.read(gich::LR0.wrapping_add((index as u64).wrapping_mul(4)))
    }

    pub fn write_lr(&self, index: usize, value: u32) {
        self.frame.write(gich::LR0.wrapping_add((index as u64).wrapping_mul(4)), value);
    }

    /// `GICH_ELRSR0/1`: bit n set when list register n holds no interrupt,
    /// for the `count` list registers there are (`GICH_ELRSR1` is read only
    /// for more than 32: every device access costs, and this one is on
    /// every exit).
    pub fn empty_list_registers(&self, count: usize) -> u64 {
        let low = u64::from(self.frame.read(gich::ELRSR0));
        if count > 32 {
            low | u64::from(self.frame.read(gich::ELRSR1)) << 32
        } else {
            low
        }
    }

    pub fn control(&self) -> u32 {
        self.frame.read(gich::HCR)
    }

    pub fn set_control(&self, value: u32) {
        self.frame.write(gich::HCR, value);
    }

    /// `GICH_VMCR`: the guest's view of its CPU interface's control, mask
    /// and binary points.
    pub fn vmcr(&self) -> u32 {
        self.frame.read(gich::VMCR)
    }

    pub fn set_vmcr(&self, value: u32) {
        self.frame.write(gich::VMCR, value);
    }

    /// `GICH_APR`: the virtual interface's active priorities.
    pub fn apr(&self) -> u32 {
        self.frame.read(gich::APR)
    }

    pub fn set_apr(&self, value: u32) {
        self.frame.write(gich::APR, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aliased_cpu_interface_is_used_at_60_kib() {
        // ZynqMP: 128 KiB, page 0 repeated up to 0x10000, IIDR 0x0202043B.
        let aliased = |offset: u64| if offset % 0x1000 == gicc::IIDR && offset < 0x10000 { 0x0202_043B } else { 0 };
        assert_eq!(contiguous_offset(0x2_0000, aliased), ALIASED_OFFSET);
        // The same region size without the aliasing (page 0 once).
        let once = |offset: u64| if offset == gicc::IIDR { 0x0202_043B } else { 0 };
        assert_eq!(contiguous_offset(0x2_0000, once), 0);
        // QEMU virt's 64 KiB and a plain 8 KiB region are never aliased.
        assert_eq!(contiguous_offset(0x1_0000, aliased), 0);
        assert_eq!(contiguous_offset(0x2000, aliased), 0);
        // Nothing answering is not an alias either.
        assert_eq!(contiguous_offset(0x2_0000, |_| 0), 0);
    }
}
