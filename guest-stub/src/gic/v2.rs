//! The GICv2 half of [`super`]: the distributor (emulated by the
//! hypervisor: one security state, `GICD_ITARGETSR0..7` read as the
//! reading CPU's own bit) and the CPU interface, both memory-mapped (under
//! the hypervisor the CPU interface is the hardware's virtual one, GICV, at
//! the DTB's GICC address). Offsets and bits are IHI 0048B's.
//!
//! Everything is Group 0, acknowledged with `GICC_IAR` and ended with
//! `GICC_EOIR`, as Linux drives a GICv2: with one security state Group 0 is
//! the group `GICC_CTLR.EnableGrp0` and plain `IAR`/`EOIR` serve, and with
//! `GICC_CTLR.FIQEn` = 0 it is signalled as IRQ. `EOImode` = 0: the `EOIR`
//! write also deactivates, so `GICC_DIR` is never used.
//!
//! Own accessors rather than `arm-gic`'s `gicv2` module, whose `GicV2`
//! does not fit: it owns distributor and CPU interface as one instance, so
//! behind the GIC lock the IRQ handler could not reach `IAR`/`EOIR`; its
//! `set_interrupt_priority` writes a whole `IPRIORITYR` word, zeroing the
//! three neighbouring interrupts' priorities; it has no accessor for
//! `ITARGETSR`, `BPR` or `RPR`; and its constructor unwraps.
//!
//! Only 32-bit accesses: the byte-wide fields (`IPRIORITYR`, `ITARGETSR`)
//! are read-modified-written as words. Every GICv2 distributor takes word
//! accesses, while byte ones, which the architecture also allows, are a
//! path an emulation may lack (this hypervisor's GICv3 model takes bytes
//! for priorities only). The read-modify-writes are safe because every
//! distributor access but `GICD_SGIR` goes through [`Distributor`], which
//! [`super`] keeps behind its lock.
//!
//! Banking: `IGROUPR0`, `I[SC]ENABLER0`, `IPRIORITYR0..7` and
//! `ITARGETSR0..7` (SGIs and PPIs) are banked per CPU interface, so a vCPU
//! reaches only its own SGIs' and PPIs' state: [`super::configure`] runs
//! on the vCPU it configures. The CPU interface registers are banked the
//! same way: every vCPU reaches its own at the one address.

use super::Unavailable;
use arm_gic::IntId;
use core::sync::atomic::{AtomicU8, Ordering};
use platform::board::{GicCompatible, MAX_CPUS};
use platform::gicv2::{gicc, gicd as gicd_v2};
use platform::vgic::gicd;

/// The DTB `compatible`s of a GICv2.
pub const COMPATIBLES: [&str; 2] = [GicCompatible::CortexA15.as_str(), GicCompatible::Gic400.as_str()];

/// The part of each frame the stub touches: the distributor's registers
/// up to `GICD_SGIR`, the CPU interface's first page (`GICC_DIR`, on the
/// second, is not used).
const GICD_FRAME: usize = 0x1000;
const GICC_USED: usize = 0x1000;

// Distributor registers (offsets in the GICD frame), named once in
// `platform` for the hypervisor's model and its physical driver too.
const GICD_CTLR: usize = gicd::CTLR as usize;
const GICD_TYPER: usize = gicd::TYPER as usize;
const GICD_IGROUPR: usize = gicd::IGROUPR as usize;
const GICD_ISENABLER: usize = gicd::ISENABLER as usize;
const GICD_ICENABLER: usize = gicd::ICENABLER as usize;
const GICD_IPRIORITYR: usize = gicd::IPRIORITYR as usize;
const GICD_ITARGETSR: usize = gicd_v2::ITARGETSR as usize;
const GICD_ICFGR: usize = gicd::ICFGR as usize;
const GICD_SGIR: usize = gicd_v2::SGIR as usize;

/// `GICD_CTLR.EnableGrp0` (one security state: bit 1 would be Group 1).
const GICD_CTLR_ENABLE_GRP0: u32 = gicd::CTLR_ENABLE_GRP0;
/// `GICD_TYPER.CPUNumber`: implemented CPU interfaces minus one.
const GICD_TYPER_CPU_NUMBER_SHIFT: u32 = gicd_v2::TYPER_CPU_NUMBER_SHIFT;
const GICD_TYPER_CPU_NUMBER_MASK: u32 = gicd_v2::TYPER_CPU_NUMBER_MASK;
/// `GICD_SGIR.CPUTargetList` (the filter, bits 25:24, left 0: "the CPUs
/// in the list").
const GICD_SGIR_TARGETS_SHIFT: u32 = gicd_v2::SGIR_TARGET_LIST_SHIFT;
const GICD_SGIR_INTID_MASK: u32 = gicd_v2::SGIR_INTID_MASK;
/// `GICD_ICFGR`: two bits per interrupt, the upper one (`Int_config[1]`)
/// set for edge; the lower one is reserved in a GICv2 and kept.
const ICFGR_BITS_PER_INTID: u32 = 2;
const ICFGR_EDGE_BIT: u32 = 1;

// CPU interface registers (offsets in the GICC frame).
const GICC_CTLR: usize = gicc::CTLR as usize;
const GICC_PMR: usize = gicc::PMR as usize;
const GICC_BPR: usize = gicc::BPR as usize;
pub const GICC_IAR: usize = gicc::IAR as usize;
pub const GICC_EOIR: usize = gicc::EOIR as usize;
const GICC_RPR: usize = gicc::RPR as usize;

/// `GICC_CTLR` as the stub sets it: Group 0 on; Group 1, `AckCtl`,
/// `FIQEn` (Group 0 stays IRQ), `CBPR` and `EOImode` (an EOI also
/// deactivates) all 0.
const GICC_CTLR_ENABLE_GRP0: u32 = 1 << 0;
/// `GICC_IAR.InterruptID`; bits 12:10 (`CPUID`) name an SGI's source,
/// which the `EOIR` write must repeat, so the whole value is kept.
pub const IAR_INTID_MASK: u32 = gicc::IAR_INTID_MASK;
/// `GICC_RPR.Priority`.
const RPR_PRIORITY_MASK: u32 = 0xff;
/// The lowest priority: a mask that lets every interrupt through (a
/// virtual CPU interface with 5 priority bits reads it back as 0xf8).
const PRIORITY_MASK_ALL: u32 = 0xff;
/// `GICC_BPR` = 0 asks for no subpriority bits. A CPU interface raises a
/// binary point below its minimum to that minimum: 2 for Group 0 on a
/// virtual interface with 5 priority bits, where the group priority (what
/// decides preemption) is bits 7:3, every implemented bit. The stub's
/// priorities (0x80, 0xa0, 0xc0, 0xe0) differ in bits 7:5 already, so each
/// preempts the ones below it at any binary point up to 4.
const BINARY_POINT_ALL_PREEMPT: u32 = 0;

/// Why the DTB's GICv2 node cannot be used: its `reg` lacks a frame, or
/// one is smaller than what the stub touches.
fn frame(region: Option<fdt::standard_nodes::MemoryRegion>, needed: usize) -> Result<usize, Unavailable> {
    let region = region.ok_or(Unavailable::NoRegs(super::Version::V2))?;
    let base = region.starting_address as usize;
    if base == 0 || region.size.unwrap_or(0) < needed {
        return Err(Unavailable::NoRegs(super::Version::V2));
    }
    Ok(base)
}

/// The distributor and CPU interface frames of `node` (`reg`: GICD, then
/// GICC; a GICH and GICV may follow, unused).
pub fn setup(node: &fdt::node::FdtNode) -> Result<(Distributor, CpuInterface), Unavailable> {
    let mut reg = node.reg().ok_or(Unavailable::NoRegs(super::Version::V2))?;
    let gicd = frame(reg.next(), GICD_FRAME)?;
    let gicc = frame(reg.next(), GICC_USED)?;
    // SAFETY: both are the frames the DTB gives for this GICv2, large
    // enough for every register the stub touches (checked above). The MMU
    // is off, so they are accessed as Device memory; the distributor
    // handle is kept behind the GIC lock, and the CPU interface handle
    // touches only the CPU interface and `GICD_SGIR` (write-only).
    Ok(unsafe { (Distributor::new(gicd), CpuInterface::new(gicc, gicd)) })
}

/// The GICv2 distributor, but for `GICD_SGIR`: one instance, behind the
/// GIC lock, so that its read-modify-writes do not interleave.
pub struct Distributor {
    base: usize,
}

impl Distributor {
    /// # Safety
    ///
    /// `base` is a GICv2 distributor frame of at least [`GICD_FRAME`]
    /// bytes, accessible as Device memory, and no other `Distributor` is
    /// made for it.
    unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    fn read(&self, offset: usize) -> u32 {
        debug_assert!(offset < GICD_FRAME && offset.is_multiple_of(4));
        // SAFETY: an aligned register of the distributor frame (the
        // contract of `new`): offsets are constants or come from the INTIDs
        // of SGIs, PPIs and SPIs (below 1020, checked by the public
        // methods), which stay inside it. Reads have no side effect on
        // these registers.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&mut self, offset: usize, value: u32) {
        debug_assert!(offset < GICD_FRAME && offset.is_multiple_of(4));
        // SAFETY: as in `read`; `&mut self` (held under the GIC lock)
        // keeps this guest's writes from interleaving.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Sets `width` bits of `intid`'s field in the bank at `bank`
    /// (`32 / width` interrupts a word) to `value`, keeping its
    /// neighbours'.
    fn set_field(&mut self, bank: usize, intid: u32, width: u32, value: u32) {
        let per_word = 32 / width;
        let offset = bank + (intid / per_word) as usize * 4;
        let shift = (intid % per_word) * width;
        let mask = (u32::MAX >> (32 - width)) << shift;
        let word = self.read(offset);
        self.write(offset, (word & !mask) | ((value << shift) & mask));
    }

    /// `I[SC]ENABLER`: a 1 bit sets or clears, a 0 leaves alone, so no
    /// read-modify-write. A disable is read back: once this returns, the
    /// write has reached the distributor (Device accesses to one
    /// peripheral stay in order), so the interrupt is no longer forwarded.
    fn enable(&mut self, intid: u32, enable: bool) {
        let offset = (intid / 32) as usize * 4;
        let bit = 1 << (intid % 32);
        if enable {
            self.write(GICD_ISENABLER + offset, bit);
        } else {
            self.write(GICD_ICENABLER + offset, bit);
            let _ = self.read(GICD_ICENABLER + offset);
        }
    }

    /// Turns the distributor on for Group 0.
    pub fn enable_group0(&mut self) {
        self.write(GICD_CTLR, GICD_CTLR_ENABLE_GRP0);
    }

    /// This vCPU's banked part (run on it): its SGIs and PPIs in Group 0
    /// and disabled. Returns its CPU interface's bit for `ITARGETSR` and
    /// `GICD_SGIR`, which its `GICD_ITARGETSR0` reads as.
    pub fn setup_cpu(&mut self) -> Result<u8, Unavailable> {
        self.write(GICD_IGROUPR, 0);
        self.write(GICD_ICENABLER, u32::MAX);
        let byte = self.read(GICD_ITARGETSR).to_le_bytes()[0];
        let interfaces = ((self.read(GICD_TYPER) >> GICD_TYPER_CPU_NUMBER_SHIFT) & GICD_TYPER_CPU_NUMBER_MASK) + 1;
        match byte.count_ones() {
            1 => Ok(byte),
            // A uniprocessor GIC's ITARGETSR are RAZ/WI (IHI 0048B,
            // GICD_ITARGETSRn): interface 0 is the only one.
            0 if interfaces == 1 => Ok(1),
            _ => Err(Unavailable::NoCpuInterfaceNumber { byte }),
        }
    }

    /// SGI or PPI `intid` of this vCPU (run on it): its priority, enabled
    /// or disabled. Its group, 0, was set by [`Self::setup_cpu`].
    pub fn configure_private(&mut self, intid: IntId, priority: u8, enable: bool) -> Result<(), Unavailable> {
        if !(intid.is_sgi() || intid.is_ppi()) {
            return Err(Unavailable::WrongIntId { intid: intid.into(), expected: "an SGI or PPI" });
        }
        let intid = u32::from(intid);
        self.set_field(GICD_IPRIORITYR, intid, 8, priority.into());
        self.enable(intid, enable);
        Ok(())
    }

    /// SPI `intid`: a level-triggered Group 0 interrupt of `priority`
    /// targeting the CPU interface `target` (a bit), enabled; or disabled.
    pub fn configure_spi(&mut self, intid: IntId, priority: u8, target: u8, enable: bool) -> Result<(), Unavailable> {
        if !intid.is_spi() {
            return Err(Unavailable::WrongIntId { intid: intid.into(), expected: "an SPI" });
        }
        let intid = u32::from(intid);
        if enable {
            self.set_field(GICD_IGROUPR, intid, 1, 0);
            self.set_field(GICD_IPRIORITYR, intid, 8, priority.into());
            // The edge bit alone, as a 1-bit field: level (0).
            self.set_field(GICD_ICFGR, intid * ICFGR_BITS_PER_INTID + ICFGR_EDGE_BIT, 1, 0);
            self.set_field(GICD_ITARGETSR, intid, 8, target.into());
        }
        self.enable(intid, enable);
        Ok(())
    }
}

/// What interrupt handlers use, without the GIC lock: this vCPU's CPU
/// interface (banked: each vCPU reaches its own), and `GICD_SGIR`, which
/// is write-only and takes effect in one write, so concurrent senders
/// need no mutual exclusion.
#[derive(Clone, Copy)]
pub struct CpuInterface {
    gicc: usize,
    gicd: usize,
}

impl CpuInterface {
    /// # Safety
    ///
    /// `gicc` is a GICv2 CPU interface frame of at least [`GICC_USED`]
    /// bytes and `gicd` the distributor frame of the same GIC, accessible
    /// as Device memory; of the distributor, copies of this touch only
    /// `GICD_SGIR`.
    unsafe fn new(gicc: usize, gicd: usize) -> Self {
        Self { gicc, gicd }
    }

    fn read(self, offset: usize) -> u32 {
        // SAFETY: an aligned register of this vCPU's (banked) CPU
        // interface (the contract of `new`). Only `GICC_IAR` has a side
        // effect, which its caller wants.
        unsafe { core::ptr::read_volatile((self.gicc + offset) as *const u32) }
    }

    fn write(self, offset: usize, value: u32) {
        // SAFETY: as in `read`; the registers are this vCPU's own, and a
        // handler that writes one (the priority mask) does so between the
        // thread's accesses, never inside one.
        unsafe { core::ptr::write_volatile((self.gicc + offset) as *mut u32, value) }
    }

    /// The guest-physical address of the CPU interface, for code that
    /// drives it itself (`bench.S`).
    pub fn base(self) -> u64 {
        self.gicc as u64
    }

    /// Turns this vCPU's CPU interface on: all priorities through, no
    /// subpriority, Group 0 as IRQ, EOI deactivating. Whether it took it.
    pub fn enable(self) -> Result<(), Unavailable> {
        self.write(GICC_PMR, PRIORITY_MASK_ALL);
        self.write(GICC_BPR, BINARY_POINT_ALL_PREEMPT);
        self.write(GICC_CTLR, GICC_CTLR_ENABLE_GRP0);
        let ctlr = self.read(GICC_CTLR);
        if ctlr & GICC_CTLR_ENABLE_GRP0 == 0 {
            return Err(Unavailable::CpuInterfaceOff { ctlr });
        }
        Ok(())
    }

    /// `GICC_IAR`, whole: the INTID in bits 9:0 (1023: none), an SGI's
    /// source CPU in 12:10.
    pub fn acknowledge(self) -> u32 {
        self.read(GICC_IAR)
    }

    /// Ends the interrupt `iar` (as [`Self::acknowledge`] returned it):
    /// priority drop and deactivation.
    pub fn end(self, iar: u32) {
        self.write(GICC_EOIR, iar);
    }

    pub fn running_priority(self) -> u8 {
        (self.read(GICC_RPR) & RPR_PRIORITY_MASK) as u8
    }

    pub fn set_priority_mask(self, mask: u8) {
        self.write(GICC_PMR, mask.into());
    }

    /// The `GICD_SGIR` write that sends SGI `sgi` to the CPU interfaces in
    /// `targets`: its address and value.
    pub fn sgir(self, sgi: u32, targets: u8) -> (u64, u32) {
        let value = (u32::from(targets) << GICD_SGIR_TARGETS_SHIFT) | (sgi & GICD_SGIR_INTID_MASK);
        ((self.gicd + GICD_SGIR) as u64, value)
    }

    /// Sends SGI `sgi` to the CPU interfaces in `targets`.
    pub fn send_sgi(self, sgi: u32, targets: u8) {
        let (address, value) = self.sgir(sgi, targets);
        // SAFETY: `GICD_SGIR` of the distributor frame (the contract of
        // `new`), write-only: one write is the whole operation, so it
        // needs no lock.
        unsafe { core::ptr::write_volatile(address as *mut u32, value) }
    }
}

/// Per vCPU slot: its CPU interface's bit (0 = not known yet), learned by
/// the vCPU itself in [`super::init_cpu`] and read by any sender.
static TARGETS: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

pub fn set_target(slot: usize, bit: u8) {
    if let Some(target) = TARGETS.get(slot) {
        target.store(bit, Ordering::SeqCst);
    }
}

/// vCPU `slot`'s CPU interface bit, once it has run [`super::init_cpu`].
pub fn target(slot: usize) -> Option<u8> {
    TARGETS.get(slot).map(|t| t.load(Ordering::SeqCst)).filter(|&bit| bit != 0)
}
