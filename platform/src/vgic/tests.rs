//! Host tests for the virtual GIC: every register's reset value and
//! read-only / write-ignored behaviour, the set/clear register pairs,
//! access widths, routing, the redistributor frames, SGI decoding, and full
//! list-register cycles against a fake list-register file (pend, flush,
//! the guest acknowledges and EOIs, fold), including overflow, ordering,
//! re-pending while cached, HW forwarding and SPIs that change vCPU. Then
//! the same model as a GICv2: its distributor registers, banked per
//! accessing vCPU, `ITARGETSR` routing, `GICD_SGIR` and the SGI pending
//! registers, and the conversions to and from `GICH_LR<n>` words.

use super::*;

/// Four vCPUs with distinct affinities at every level, so that a route or
/// an SGI that ignored a level would hit the wrong one.
const MPIDRS: [u64; 4] = [0x0, 0x1, 0x1_0100, 0x2_0000_0003];

fn vgic() -> VGic {
    let mut g = VGic::new();
    g.configure(&MPIDRS, 64);
    g
}

/// A list-register file that refuses accesses beyond its count.
#[derive(Debug)]
struct Fake {
    regs: Vec<u64>,
    writes: usize,
}

impl Fake {
    fn new(count: usize) -> Self {
        Self { regs: vec![0; count], writes: 0 }
    }

    fn lr(&self, index: usize) -> Lr {
        Lr(self.regs[index])
    }

    fn valid(&self) -> Vec<Lr> {
        self.regs.iter().map(|&v| Lr(v)).filter(|lr| lr.pending() || lr.active()).collect()
    }

    /// The guest acknowledges the LR: pending -> active.
    fn ack(&mut self, index: usize) {
        let lr = self.lr(index);
        assert!(lr.pending(), "ack of a non-pending LR {lr:x?}");
        self.regs[index] = lr.with_pending(false).with_active(true).0;
    }

    /// The guest deactivates the LR's interrupt (EOI with EOImode 0).
    fn eoi(&mut self, index: usize) {
        let lr = self.lr(index);
        assert!(lr.active(), "EOI of a non-active LR {lr:x?}");
        self.regs[index] = lr.with_active(false).0;
    }

    fn find(&self, intid: u32) -> Option<usize> {
        self.regs.iter().position(|&v| {
            let lr = Lr(v);
            (lr.pending() || lr.active()) && lr.vintid() == intid
        })
    }
}

impl ListRegs for Fake {
    fn count(&self) -> usize {
        self.regs.len()
    }
    fn read(&self, index: usize) -> u64 {
        self.regs[index]
    }
    fn write(&mut self, index: usize, value: u64) {
        self.writes += 1;
        self.regs[index] = value;
    }
}

fn dr(g: &mut VGic, offset: u64) -> u64 {
    g.dist_read(0, offset, 4)
}

fn dw(g: &mut VGic, offset: u64, value: u64) -> u64 {
    g.dist_write(0, offset, 4, value).kick
}

fn rd(vcpu: usize, offset: u64) -> u64 {
    vcpu as u64 * GICR_STRIDE + offset
}

fn sgi(vcpu: usize, offset: u64) -> u64 {
    rd(vcpu, GICR_SGI_BASE + offset)
}

fn rr(g: &mut VGic, vcpu: usize, offset: u64) -> u64 {
    g.redist_read(sgi(vcpu, offset), 4)
}

fn rw(g: &mut VGic, vcpu: usize, offset: u64, value: u64) -> u64 {
    g.redist_write(sgi(vcpu, offset), 4, value).kick
}

/// Word and bit of a distributor bit register for `intid`.
fn word(base: u64, intid: u32) -> (u64, u64) {
    (base + u64::from(intid / 32) * 4, 1 << (intid % 32))
}

fn set_bit(g: &mut VGic, base: u64, intid: u32) -> u64 {
    let (offset, bit) = word(base, intid);
    dw(g, offset, bit)
}

fn has_bit(g: &mut VGic, base: u64, intid: u32) -> bool {
    let (offset, bit) = word(base, intid);
    dr(g, offset) & bit != 0
}

/// An SPI ready to deliver: group 1, enabled, priority, routed to `vcpu`.
fn spi(g: &mut VGic, intid: u32, priority: u8, vcpu: usize) {
    // IGROUPR is a plain register: read-modify-write.
    let (offset, bit) = word(gicd::IGROUPR, intid);
    let groups = dr(g, offset);
    dw(g, offset, groups | bit);
    set_bit(g, gicd::ISENABLER, intid);
    g.dist_write(0, gicd::IPRIORITYR + u64::from(intid), 1, priority.into());
    g.dist_write(0, gicd::IROUTER + 8 * u64::from(intid), 8, MPIDRS[vcpu] & affinity::ALL);
}

fn enable_groups(g: &mut VGic) {
    dw(g, gicd::CTLR, u64::from(gicd::CTLR_ENABLE_GRP0 | gicd::CTLR_ENABLE_GRP1));
}

/// A vGIC with groups enabled and SPIs 40 (prio 0xA0) and 41 (prio 0x80)
/// enabled, group 1, routed to vCPU 0.
fn ready() -> VGic {
    let mut g = vgic();
    enable_groups(&mut g);
    spi(&mut g, 40, 0xA0, 0);
    spi(&mut g, 41, 0x80, 0);
    g
}

const BIT_REGS: [u64; 7] =
    [gicd::IGROUPR, gicd::ISENABLER, gicd::ICENABLER, gicd::ISPENDR, gicd::ICPENDR, gicd::ISACTIVER, gicd::ICACTIVER];

// ---------------------------------------------------------------------------
// Distributor registers.

#[test]
fn dist_reset_values() {
    let mut g = vgic();
    assert_eq!(dr(&mut g, gicd::CTLR), 0x50, "ARE and DS set, groups off, RWP 0");
    assert_eq!(dr(&mut g, gicd::IIDR), 0x43B);
    assert_eq!(dr(&mut g, gicd::TYPER2), 0);
    assert_eq!(dr(&mut g, gicd::PIDR2), 0x3B);
    for base in BIT_REGS {
        for w in 0..32 {
            assert_eq!(dr(&mut g, base + 4 * w), 0, "{base:#x} word {w}");
        }
    }
    for intid in 0..1024 {
        assert_eq!(g.dist_read(0, gicd::IPRIORITYR + intid, 1), 0);
        assert_eq!(g.dist_read(0, gicd::IROUTER + 8 * intid, 8), 0);
    }
    for w in 0..64 {
        assert_eq!(dr(&mut g, gicd::ICFGR + 4 * w), 0, "SPIs reset level");
    }
}

#[test]
fn dist_typer() {
    let typer = |spis| {
        let mut g = VGic::new();
        g.configure(&MPIDRS, spis);
        dr(&mut g, gicd::TYPER)
    };
    // IDbits 9, A3V, RSS; CPUNumber, SecurityExtn, MBIS, LPIS all 0.
    let fixed = 9 << 19 | 1 << 24 | 1 << 26;
    assert_eq!(typer(256), fixed | 8);
    assert_eq!(typer(1000), fixed | 8, "capped at MAX_SPIS");
    assert_eq!(typer(64), fixed | 2);
    assert_eq!(typer(0), fixed);
    assert_eq!(typer(40), fixed | 2, "rounded up: SPI 71 must be visible");
}

#[test]
fn dist_ctlr_writable_bits() {
    let mut g = vgic();
    dw(&mut g, gicd::CTLR, 0xFFFF_FFFF);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x53);
    dw(&mut g, gicd::CTLR, 0);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x50, "ARE and DS are RAO/WI");
    dw(&mut g, gicd::CTLR, 2);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x52);
}

#[test]
fn dist_read_only_registers_ignore_writes() {
    let mut g = vgic();
    for offset in [gicd::TYPER, gicd::IIDR, gicd::TYPER2, gicd::PIDR2] {
        let before = dr(&mut g, offset);
        dw(&mut g, offset, 0xFFFF_FFFF);
        dw(&mut g, offset, 0);
        assert_eq!(dr(&mut g, offset), before, "{offset:#x}");
    }
}

#[test]
fn dist_private_intids_are_raz_wi() {
    let mut g = vgic();
    for base in BIT_REGS {
        dw(&mut g, base, 0xFFFF_FFFF);
        assert_eq!(dr(&mut g, base), 0, "{base:#x}");
    }
    dw(&mut g, gicd::IPRIORITYR, 0xFFFF_FFFF);
    dw(&mut g, gicd::IPRIORITYR + 28, 0xFFFF_FFFF);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR), 0);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR + 28), 0);
    dw(&mut g, gicd::ICFGR + 4, 0xFFFF_FFFF);
    assert_eq!(dr(&mut g, gicd::ICFGR), 0);
    assert_eq!(dr(&mut g, gicd::ICFGR + 4), 0);
    g.dist_write(0, gicd::IROUTER + 8 * 27, 8, 1);
    assert_eq!(g.dist_read(0, gicd::IROUTER + 8 * 27, 8), 0);
    // And none of that reached vCPU 0's private interrupts.
    assert_eq!(rr(&mut g, 0, gicr::ISENABLER0), 0);
    assert_eq!(rr(&mut g, 0, gicr::IPRIORITYR0), 0);
}

#[test]
fn dist_intids_beyond_configured_spis_are_raz_wi() {
    let mut g = VGic::new();
    g.configure(&MPIDRS, 40); // SPIs 32..71
    dw(&mut g, gicd::ISENABLER + 8, 0xFFFF_FFFF);
    assert_eq!(dr(&mut g, gicd::ISENABLER + 8), 0xFF, "INTIDs 64..71 only");
    dw(&mut g, gicd::ISENABLER + 12, 0xFFFF_FFFF);
    assert_eq!(dr(&mut g, gicd::ISENABLER + 12), 0);
    dw(&mut g, gicd::ICFGR + 16, 0xFFFF_FFFF);
    assert_eq!(dr(&mut g, gicd::ICFGR + 16), 0xAAAA, "INTIDs 64..71 edge");
    g.dist_write(0, gicd::IPRIORITYR + 71, 1, 0xFF);
    g.dist_write(0, gicd::IPRIORITYR + 72, 1, 0xFF);
    assert_eq!(g.dist_read(0, gicd::IPRIORITYR + 71, 1), 0xF8);
    assert_eq!(g.dist_read(0, gicd::IPRIORITYR + 72, 1), 0);
    g.dist_write(0, gicd::IROUTER + 8 * 72, 8, 1);
    assert_eq!(g.dist_read(0, gicd::IROUTER + 8 * 72, 8), 0);
    assert_eq!(g.set_pending(0, 72, false), 0);
    assert_eq!(g.spi_state(72), None);
    assert!(g.spi_state(71).is_some());
    assert_eq!(g.spi_state(31), None);
}

#[test]
fn dist_unknown_offsets_and_widths_are_raz_wi() {
    let mut g = vgic();
    // Unknown or reserved offsets.
    for offset in [0x10, 0x40, 0x48, 0x7FC, 0xE00, 0x5FFC, 0x8000, 0xFFD0, 0xFFFC, 0x1_0000] {
        dw(&mut g, offset, u64::MAX);
        assert_eq!(g.dist_read(0, offset, 4), 0, "{offset:#x}");
    }
    // Widths a register does not have.
    g.dist_write(0, gicd::ISENABLER + 4, 1, 0xFF);
    g.dist_write(0, gicd::ISENABLER + 4, 2, 0xFFFF);
    g.dist_write(0, gicd::ISENABLER + 4, 8, u64::MAX);
    assert_eq!(dr(&mut g, gicd::ISENABLER + 4), 0);
    dw(&mut g, gicd::ISENABLER + 4, 1);
    assert_eq!(g.dist_read(0, gicd::ISENABLER + 4, 1), 0);
    assert_eq!(g.dist_read(0, gicd::ISENABLER + 4, 2), 0);
    assert_eq!(g.dist_read(0, gicd::ISENABLER + 4, 8), 0);
    g.dist_write(0, gicd::IPRIORITYR + 32, 2, 0xFFFF);
    g.dist_write(0, gicd::IPRIORITYR + 32, 8, u64::MAX);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR + 32), 0);
    g.dist_write(0, gicd::CTLR, 8, 3);
    g.dist_write(0, gicd::CTLR, 1, 3);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x50);
    assert_eq!(g.dist_read(0, gicd::CTLR, 8), 0);
    assert_eq!(g.dist_read(0, gicd::TYPER, 2), 0);
    g.dist_write(0, gicd::IROUTER + 8 * 40, 1, 1);
    g.dist_write(0, gicd::IROUTER + 8 * 40, 2, 1);
    assert_eq!(g.dist_read(0, gicd::IROUTER + 8 * 40, 8), 0);
    // Sizes the bus cannot make, and misaligned accesses.
    for size in [0, 3, 5, 16, 255] {
        g.dist_write(0, gicd::CTLR, size, 3);
        assert_eq!(g.dist_read(0, gicd::TYPER, size), 0);
    }
    g.dist_write(0, gicd::IPRIORITYR + 33, 4, 0xFFFF_FFFF);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR + 32), 0);
    assert_eq!(g.dist_read(0, gicd::IPRIORITYR + 34, 4), 0);
    g.dist_write(0, gicd::IROUTER + 8 * 40 + 4, 8, 1);
    assert_eq!(g.dist_read(0, gicd::IROUTER + 8 * 40, 8), 0);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x50);
}

#[test]
fn dist_set_clear_enable() {
    let mut g = vgic();
    let w = gicd::ISENABLER + 4; // INTIDs 32..63
    dw(&mut g, w, 0x8000_0101);
    assert_eq!(dr(&mut g, w), 0x8000_0101);
    assert_eq!(dr(&mut g, gicd::ICENABLER + 4), 0x8000_0101, "both views read enables");
    dw(&mut g, w, 0);
    assert_eq!(dr(&mut g, w), 0x8000_0101, "writing 0 has no effect");
    dw(&mut g, w, 0x10);
    assert_eq!(dr(&mut g, w), 0x8000_0111, "set ORs in");
    dw(&mut g, gicd::ICENABLER + 4, 0x8000_0001);
    assert_eq!(dr(&mut g, w), 0x110, "clear removes only the ones");
    assert_eq!(dr(&mut g, gicd::ISENABLER + 8), 0, "other words untouched");
    assert!(g.spi_state(36).unwrap().enabled);
    assert!(!g.spi_state(32).unwrap().enabled);
}

#[test]
fn dist_set_clear_pending_and_active() {
    let mut g = vgic();
    dw(&mut g, gicd::ISPENDR + 8, 0x0000_F00F);
    assert_eq!(dr(&mut g, gicd::ICPENDR + 8), 0xF00F);
    dw(&mut g, gicd::ICPENDR + 8, 0x0000_0FF0);
    assert_eq!(dr(&mut g, gicd::ISPENDR + 8), 0xF00F);
    dw(&mut g, gicd::ICPENDR + 8, 0x0000_000F);
    assert_eq!(dr(&mut g, gicd::ISPENDR + 8), 0xF000);
    assert!(g.spi_state(64 + 12).unwrap().pending);
    assert!(!g.spi_state(64).unwrap().pending);

    dw(&mut g, gicd::ISACTIVER + 4, 0x3);
    assert_eq!(dr(&mut g, gicd::ICACTIVER + 4), 0x3);
    dw(&mut g, gicd::ICACTIVER + 4, 0x1);
    assert_eq!(dr(&mut g, gicd::ISACTIVER + 4), 0x2);
    assert_eq!(dr(&mut g, gicd::ISPENDR + 4), 0, "pending and active are separate");
}

#[test]
fn dist_group_is_read_write() {
    let mut g = vgic();
    dw(&mut g, gicd::IGROUPR + 4, 0xDEAD_BEEF);
    assert_eq!(dr(&mut g, gicd::IGROUPR + 4), 0xDEAD_BEEF);
    dw(&mut g, gicd::IGROUPR + 4, 0x1);
    assert_eq!(dr(&mut g, gicd::IGROUPR + 4), 0x1, "IGROUPR is a plain register");
    assert!(g.spi_state(32).unwrap().group1);
    assert!(!g.spi_state(33).unwrap().group1);
}

#[test]
fn dist_priority_byte_and_word_access() {
    let mut g = vgic();
    dw(&mut g, gicd::IPRIORITYR + 40, 0x4838_2818);
    assert_eq!(g.dist_read(0, gicd::IPRIORITYR + 40, 1), 0x18);
    assert_eq!(g.dist_read(0, gicd::IPRIORITYR + 41, 1), 0x28);
    assert_eq!(g.dist_read(0, gicd::IPRIORITYR + 43, 1), 0x48);
    g.dist_write(0, gicd::IPRIORITYR + 42, 1, 0xA0);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR + 40), 0x48A0_2818);
    // Only the top five bits are kept.
    g.dist_write(0, gicd::IPRIORITYR + 41, 1, 0xFF);
    assert_eq!(g.dist_read(0, gicd::IPRIORITYR + 41, 1), 0xF8);
    dw(&mut g, gicd::IPRIORITYR + 44, 0x0107_0F1F);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR + 44), 0x0000_0818);
    assert_eq!(g.spi_state(41).unwrap().priority, 0xF8);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR + 36), 0, "neighbours untouched");
}

#[test]
fn dist_config() {
    let mut g = vgic();
    let w = gicd::ICFGR + 8; // INTIDs 32..47
    dw(&mut g, w, 0xFFFF_FFFF);
    assert_eq!(dr(&mut g, w), 0xAAAA_AAAA, "bit 0 of each pair is RES0");
    dw(&mut g, w, 0x5555_5555);
    assert_eq!(dr(&mut g, w), 0);
    dw(&mut g, w, 0x8000_0002);
    assert_eq!(dr(&mut g, w), 0x8000_0002, "INTIDs 32 and 47 edge");
    dw(&mut g, gicd::ICFGR + 12, 0x2);
    assert_eq!(dr(&mut g, gicd::ICFGR + 12), 0x2, "INTID 48");
    assert_eq!(dr(&mut g, w), 0x8000_0002, "other half untouched");
}

#[test]
fn dist_igrpmodr_raz_wi() {
    let mut g = vgic();
    for n in 0..32 {
        dw(&mut g, gicd::IGRPMODR + 4 * n, 0xFFFF_FFFF);
        assert_eq!(dr(&mut g, gicd::IGRPMODR + 4 * n), 0);
    }
    assert_eq!(dr(&mut g, gicd::IGROUPR + 4), 0);
}

#[test]
fn dist_irouter_access() {
    let mut g = vgic();
    let r = gicd::IROUTER + 8 * 45;
    g.dist_write(0, r, 8, 0xFFFF_FFFF_FFFF_FFFF);
    assert_eq!(g.dist_read(0, r, 8), 0xFF_80FF_FFFF, "Aff3, IRM, Aff2..0 only");
    assert_eq!(g.dist_read(0, r, 4), 0x80FF_FFFF);
    assert_eq!(g.dist_read(0, r + 4, 4), 0xFF);
    g.dist_write(0, r + 4, 4, 0x2);
    assert_eq!(g.dist_read(0, r, 8), 0x2_80FF_FFFF, "high half alone");
    g.dist_write(0, r, 4, 0x0000_0003);
    assert_eq!(g.dist_read(0, r, 8), 0x2_0000_0003, "low half alone");
    assert_eq!(g.spi_state(45).unwrap().target, Some(3));
    assert_eq!(g.dist_read(0, r - 8, 8), 0, "neighbour untouched");
}

#[test]
fn irouter_routing() {
    let mut g = vgic();
    let r = |intid: u64| gicd::IROUTER + 8 * intid;
    // Reset route 0 is affinity 0.0.0.0: vCPU 0.
    assert_eq!(g.spi_state(50).unwrap().target, Some(0));
    for (vcpu, mpidr) in MPIDRS.iter().enumerate() {
        g.dist_write(0, r(50), 8, *mpidr);
        assert_eq!(g.spi_state(50).unwrap().target, Some(vcpu), "{mpidr:#x}");
    }
    // Each level must match: these are one field off a real vCPU.
    for wrong in [0x3, 0x1_0000, 0x100, 0x1_0000_0000, 0x2_0000_0000, 0x2_0001_0003] {
        g.dist_write(0, r(50), 8, wrong);
        assert_eq!(g.spi_state(50).unwrap().target, None, "{wrong:#x}");
    }
    // IRM = 1: any vCPU, the model picks vCPU 0, whatever the affinity.
    g.dist_write(0, r(50), 8, gicd::IROUTER_IRM | 0x1);
    assert_eq!(g.spi_state(50).unwrap().target, Some(0));
}

#[test]
fn unrouted_spi_stays_pending_undelivered() {
    let mut g = ready();
    g.dist_write(0, gicd::IROUTER + 8 * 40, 8, 0x7);
    assert_eq!(g.set_pending(0, 40, false), 0);
    for vcpu in 0..4 {
        assert!(!g.has_work(vcpu));
        let mut lrs = Fake::new(4);
        assert_eq!(g.flush(vcpu, &mut lrs).used, 0);
    }
    assert!(has_bit(&mut g, gicd::ISPENDR, 40));
    // Routing it to a vCPU delivers it there, and says so.
    let kick = g.dist_write(0, gicd::IROUTER + 8 * 40, 8, 0x1_0100).kick;
    assert_eq!(kick, 1 << 2);
    assert!(g.has_work(2));
}

// ---------------------------------------------------------------------------
// Redistributors.

#[test]
fn redist_typer() {
    let mut g = vgic();
    let expected = [
        0x0000_0000_0000_0000u64,
        0x0000_0001_0000_0100,
        0x0001_0100_0000_0200,
        0x0200_0003_0000_0310, // Aff3 2 -> bits [63:56]; Last
    ];
    for (vcpu, &typer) in expected.iter().enumerate() {
        let at = rd(vcpu, gicr::TYPER);
        assert_eq!(g.redist_read(at, 8), typer, "vCPU {vcpu}");
        assert_eq!(g.redist_read(at, 4), typer & 0xFFFF_FFFF);
        assert_eq!(g.redist_read(at + 4, 4), typer >> 32);
        g.redist_write(at, 8, 0);
        assert_eq!(g.redist_read(at, 8), typer, "read-only");
    }
    // One vCPU: it is the last.
    g.configure(&[0x5], 32);
    assert_eq!(g.redist_read(gicr::TYPER, 8), 0x5_0000_0010);
}

#[test]
fn redist_id_registers() {
    let mut g = vgic();
    for vcpu in 0..4 {
        assert_eq!(g.redist_read(rd(vcpu, gicr::IIDR), 4), 0x43B);
        assert_eq!(g.redist_read(rd(vcpu, gicr::PIDR2), 4), 0x3B);
        assert_eq!(g.redist_read(rd(vcpu, gicr::CTLR), 4), 0);
        g.redist_write(rd(vcpu, gicr::CTLR), 4, 0xFFFF_FFFF);
        assert_eq!(g.redist_read(rd(vcpu, gicr::CTLR), 4), 0, "writes ignored");
        g.redist_write(rd(vcpu, gicr::PIDR2), 4, 0);
        assert_eq!(g.redist_read(rd(vcpu, gicr::PIDR2), 4), 0x3B);
        assert_eq!(g.redist_read(rd(vcpu, gicr::PIDR2), 8), 0, "32-bit only");
        // The SGI frame has no ID registers of its own here.
        assert_eq!(g.redist_read(sgi(vcpu, gicr::PIDR2), 4), 0);
    }
}

#[test]
fn redist_waker_handshake() {
    let mut g = vgic();
    let waker = rd(1, gicr::WAKER);
    assert_eq!(g.redist_read(waker, 4), 0x6, "reset asleep");
    // Linux: clear ProcessorSleep, poll until ChildrenAsleep is 0.
    g.redist_write(waker, 4, 0);
    assert_eq!(g.redist_read(waker, 4), 0);
    assert_eq!(g.redist_read(rd(0, gicr::WAKER), 4), 0x6, "per vCPU");
    g.redist_write(waker, 4, 0x4);
    assert_eq!(g.redist_read(waker, 4), 0, "ChildrenAsleep is read-only");
    g.redist_write(waker, 4, 0xFFFF_FFFF);
    assert_eq!(g.redist_read(waker, 4), 0x6);
    g.redist_write(waker, 1, 0);
    assert_eq!(g.redist_read(waker, 4), 0x6, "32-bit only");
}

#[test]
fn redist_beyond_last_vcpu_is_raz_wi() {
    let mut g = vgic();
    for offset in [rd(4, gicr::TYPER), rd(4, gicr::PIDR2), sgi(4, gicr::ISENABLER0), u64::MAX - 7] {
        g.redist_write(offset, 4, u64::MAX);
        assert_eq!(g.redist_read(offset, 4), 0, "{offset:#x}");
        assert_eq!(g.redist_read(offset, 8), 0, "{offset:#x}");
    }
    // Unknown offsets within a frame.
    for offset in [0x10, 0x70, 0x1000, 0xFFFC, GICR_SGI_BASE + 0x420, GICR_SGI_BASE + 0x6000] {
        g.redist_write(rd(0, offset), 4, u64::MAX);
        assert_eq!(g.redist_read(rd(0, offset), 4), 0, "{offset:#x}");
    }
    assert_eq!(rr(&mut g, 0, gicr::IPRIORITYR0 + 28), 0);
}

#[test]
fn redist_sgi_frame_registers() {
    let mut g = vgic();
    for reg in [gicr::IGROUPR0, gicr::ISENABLER0, gicr::ISPENDR0, gicr::ISACTIVER0] {
        assert_eq!(rr(&mut g, 2, reg), 0, "{reg:#x} resets to 0");
    }
    rw(&mut g, 2, gicr::IGROUPR0, 0xFFFF_FFFF);
    rw(&mut g, 2, gicr::ISENABLER0, 0x0800_0003);
    rw(&mut g, 2, gicr::ICENABLER0, 0x1);
    assert_eq!(rr(&mut g, 2, gicr::ISENABLER0), 0x0800_0002);
    assert_eq!(rr(&mut g, 2, gicr::ICENABLER0), 0x0800_0002);
    rw(&mut g, 2, gicr::ISPENDR0, 0x30);
    rw(&mut g, 2, gicr::ICPENDR0, 0x10);
    assert_eq!(rr(&mut g, 2, gicr::ISPENDR0), 0x20);
    rw(&mut g, 2, gicr::ISACTIVER0, 0x0001_0000);
    assert_eq!(rr(&mut g, 2, gicr::ICACTIVER0), 0x0001_0000);
    rw(&mut g, 2, gicr::ICACTIVER0, 0xFFFF_FFFF);
    assert_eq!(rr(&mut g, 2, gicr::ISACTIVER0), 0);
    assert_eq!(rr(&mut g, 2, gicr::IGROUPR0), 0xFFFF_FFFF);
    // Other vCPUs' copies are separate.
    for vcpu in [0, 1, 3] {
        assert_eq!(rr(&mut g, vcpu, gicr::ISENABLER0), 0);
        assert_eq!(rr(&mut g, vcpu, gicr::IGROUPR0), 0);
    }
    // Priorities: byte and word, INTIDs 0..31.
    rw(&mut g, 2, gicr::IPRIORITYR0 + 24, 0xA0A0_A0A0);
    g.redist_write(sgi(2, gicr::IPRIORITYR0 + 1), 1, 0x80);
    assert_eq!(g.redist_read(sgi(2, gicr::IPRIORITYR0 + 27), 1), 0xA0);
    assert_eq!(rr(&mut g, 2, gicr::IPRIORITYR0), 0x8000);
    assert_eq!(rr(&mut g, 1, gicr::IPRIORITYR0 + 24), 0);
    // ICFGR0: SGIs always edge; ICFGR1: PPIs configurable, reset level.
    assert_eq!(rr(&mut g, 2, gicr::ICFGR0), 0xAAAA_AAAA);
    rw(&mut g, 2, gicr::ICFGR0, 0);
    assert_eq!(rr(&mut g, 2, gicr::ICFGR0), 0xAAAA_AAAA);
    assert_eq!(rr(&mut g, 2, gicr::ICFGR1), 0);
    rw(&mut g, 2, gicr::ICFGR1, 0xFFFF_FFFF);
    assert_eq!(rr(&mut g, 2, gicr::ICFGR1), 0xAAAA_AAAA);
    assert_eq!(rr(&mut g, 2, gicr::ICFGR0), 0xAAAA_AAAA);
    // RAZ/WI.
    for reg in [gicr::IGRPMODR0, gicr::NSACR, gicr::ICFGR1 + 4, gicr::ISENABLER0 + 4] {
        rw(&mut g, 2, reg, 0xFFFF_FFFF);
        assert_eq!(rr(&mut g, 2, reg), 0, "{reg:#x}");
    }
    // Widths.
    g.redist_write(sgi(2, gicr::ISENABLER0), 1, 0x4);
    assert_eq!(g.redist_read(sgi(2, gicr::ISENABLER0), 1), 0);
    assert_eq!(rr(&mut g, 2, gicr::ISENABLER0), 0x0800_0002);
}

#[test]
fn redist_writes_do_not_reach_the_distributor() {
    let mut g = vgic();
    rw(&mut g, 0, gicr::ISENABLER0 + 4, 0xFFFF_FFFF);
    g.redist_write(GICR_SGI_BASE + gicd::IROUTER + 8 * 40, 8, 1);
    assert_eq!(dr(&mut g, gicd::ISENABLER + 4), 0);
    assert_eq!(g.spi_state(40).unwrap().target, Some(0));
}

// ---------------------------------------------------------------------------
// Injection and SGIs.

#[test]
fn set_pending_reports_deliverable_targets() {
    let mut g = vgic();
    spi(&mut g, 40, 0, 2);
    assert_eq!(g.set_pending(0, 40, false), 0, "groups disabled");
    dw(&mut g, gicd::CTLR, u64::from(gicd::CTLR_ENABLE_GRP0));
    assert_eq!(g.set_pending(0, 40, false), 0, "group 1 disabled");
    enable_groups(&mut g);
    assert_eq!(g.set_pending(0, 40, false), 1 << 2, "the routed vCPU, not the caller");
    dw(&mut g, gicd::ICENABLER + 4, 1 << 8);
    assert_eq!(g.set_pending(0, 40, false), 0, "disabled");
    // Private: the named vCPU's copy.
    assert_eq!(g.set_pending(3, 27, false), 0);
    assert_eq!(rr(&mut g, 3, gicr::ISPENDR0), 1 << 27);
    assert_eq!(rr(&mut g, 0, gicr::ISPENDR0), 0);
    rw(&mut g, 3, gicr::ISENABLER0, 1 << 27);
    assert_eq!(g.set_pending(3, 27, false), 1 << 3, "enabled, group 0 enabled");
    assert!(g.has_work(3));
    // Nonexistent vCPUs and INTIDs.
    assert_eq!(g.set_pending(4, 27, false), 0);
    assert_eq!(g.set_pending(0, 96, false), 0);
    assert_eq!(g.set_pending(0, 1023, false), 0);
    assert_eq!(g.set_pending(0, u32::MAX, true), 0);
}

#[test]
fn set_pending_private_kicks_its_vcpu() {
    let mut g = vgic();
    enable_groups(&mut g);
    rw(&mut g, 1, gicr::ISENABLER0, 1 << 30);
    assert_eq!(g.set_pending(1, 30, false), 1 << 1);
    assert!(g.has_work(1));
    assert!(!g.has_work(0));
}

#[test]
fn sgi1r_to_one_reaches_exactly_that_vcpu() {
    for (vcpu, &mpidr) in MPIDRS.iter().enumerate() {
        let mut g = vgic();
        let value = sgi1r::to_one(mpidr, 9);
        assert_eq!(g.send_sgi(0, value), 1 << vcpu, "MPIDR {mpidr:#x}: {value:#x}");
        assert_eq!(rr(&mut g, vcpu, gicr::ISPENDR0), 1 << 9);
    }
    // Aff0 beyond the first 16 goes through the range selector.
    assert_eq!(sgi1r::to_one(0x23, 1), 2 << sgi1r::RS_SHIFT | 1 << 3 | 1 << sgi1r::INTID_SHIFT);
}

#[test]
fn sgi1r_target_list_with_affinity() {
    let mut g = vgic();
    let intid = |sgi: u64| sgi << 24;
    // Aff3.Aff2.Aff1 = 0.0.0, target list {0, 1}: vCPUs 0 and 1.
    assert_eq!(g.send_sgi(0, intid(5) | 0b11), 0b11);
    assert_eq!(rr(&mut g, 0, gicr::ISPENDR0), 1 << 5);
    assert_eq!(rr(&mut g, 1, gicr::ISPENDR0), 1 << 5);
    assert_eq!(rr(&mut g, 2, gicr::ISPENDR0), 0);
    // Aff2.Aff1 = 1.1, Aff0 0: vCPU 2 (0x1_0100).
    assert_eq!(g.send_sgi(0, intid(7) | 1 << 32 | 1 << 16 | 0b1), 1 << 2);
    assert_eq!(rr(&mut g, 2, gicr::ISPENDR0), 1 << 7);
    // Aff3 2, Aff0 3: vCPU 3.
    assert_eq!(g.send_sgi(1, intid(15) | 2 << 48 | 1 << 3), 1 << 3);
    assert_eq!(rr(&mut g, 3, gicr::ISPENDR0), 1 << 15);
    // Non-matching affinity: nobody.
    assert_eq!(g.send_sgi(0, intid(1) | 5 << 16 | 0xFFFF), 0);
    assert_eq!(g.send_sgi(0, intid(1) | 1 << 48 | 0xFFFF), 0);
    // Only Aff0 values in the list: vCPU 3's Aff3.Aff2.Aff1 with bit 0.
    assert_eq!(g.send_sgi(0, intid(1) | 2 << 48 | 0b1), 0);
    // The sender may target itself.
    assert_eq!(g.send_sgi(1, intid(2) | 0b10), 1 << 1);
    assert_eq!(rr(&mut g, 1, gicr::ISPENDR0), 1 << 5 | 1 << 2);
}

#[test]
fn sgi1r_range_selector() {
    let mut g = VGic::new();
    g.configure(&[0x0, 0x11, 0x1F], 0);
    // RS 1 covers Aff0 16..31.
    assert_eq!(g.send_sgi(0, 1 << 44 | 1 << 1 | 1 << 15), 0b110);
    assert_eq!(g.send_sgi(0, 1 << 1 | 1 << 15), 0, "RS 0: Aff0 1 and 15 do not exist");
    assert_eq!(g.send_sgi(0, 0b1), 0b1);
}

#[test]
fn sgi1r_broadcast() {
    let mut g = vgic();
    // IRM: everyone but the sender, whatever the target list says.
    assert_eq!(g.send_sgi(2, 1 << 40 | 3 << 24 | 0b1), 0b1011);
    for vcpu in [0, 1, 3] {
        assert_eq!(rr(&mut g, vcpu, gicr::ISPENDR0), 1 << 3);
    }
    assert_eq!(rr(&mut g, 2, gicr::ISPENDR0), 0);
    let mut one = VGic::new();
    one.configure(&[0], 0);
    assert_eq!(one.send_sgi(0, 1 << 40), 0);
    assert_eq!(VGic::new().send_sgi(0, 1 << 40 | 0xFFFF), 0);
}

// ---------------------------------------------------------------------------
// Effects of register writes.

#[test]
fn writes_kick_the_vcpus_whose_work_grew() {
    let mut g = vgic();
    spi(&mut g, 40, 0x10, 1);
    set_bit(&mut g, gicd::ISPENDR, 40);
    // Enabling group 1 makes SPI 40 deliverable on vCPU 1.
    assert_eq!(dw(&mut g, gicd::CTLR, 2), 1 << 1);
    assert_eq!(dw(&mut g, gicd::CTLR, 3), 0, "nothing new");
    assert_eq!(set_bit(&mut g, gicd::ISPENDR, 40), 0, "already pending");
    assert_eq!(set_bit(&mut g, gicd::ICENABLER, 40), 0);
    assert_eq!(set_bit(&mut g, gicd::ISENABLER, 40), 1 << 1);
    assert_eq!(set_bit(&mut g, gicd::ICPENDR, 40), 0);
    assert_eq!(set_bit(&mut g, gicd::ISPENDR, 40), 1 << 1);
    // Re-routing a deliverable SPI kicks its new target.
    assert_eq!(g.dist_write(0, gicd::IROUTER + 8 * 40, 8, 0x2_0000_0003).kick, 1 << 3);
    assert_eq!(g.dist_write(0, gicd::IROUTER + 8 * 40, 8, 0x2_0000_0003).kick, 0);
    // A new priority for a pending SPI may reorder its vCPU's LRs.
    assert_eq!(g.dist_write(0, gicd::IPRIORITYR + 40, 1, 0x20).kick, 1 << 3);
    assert_eq!(g.dist_write(0, gicd::IPRIORITYR + 40, 1, 0x20).kick, 0);
    // Moving it to group 0 keeps it deliverable (group 0 is enabled).
    assert_eq!(dw(&mut g, gicd::IGROUPR + 4, 0), 0);
    // Activating an SPI gives its vCPU something to hold.
    spi(&mut g, 41, 0, 2);
    assert_eq!(set_bit(&mut g, gicd::ISACTIVER, 41), 1 << 2);
    // Redistributor writes kick their own vCPU.
    g.set_pending(1, 20, false);
    assert_eq!(rw(&mut g, 1, gicr::ISENABLER0, 1 << 20), 1 << 1);
    assert_eq!(rw(&mut g, 1, gicr::ISENABLER0, 1 << 20), 0);
    assert_eq!(rw(&mut g, 0, gicr::ISPENDR0, 1 << 20), 0, "vCPU 0's copy is disabled");
    // Disabling groups never kicks.
    assert_eq!(dw(&mut g, gicd::CTLR, 0), 0);
}

// ---------------------------------------------------------------------------
// The list-register cache.

#[test]
fn flush_writes_exact_list_registers() {
    let mut g = ready();
    assert_eq!(g.set_pending(0, 40, false), 1);
    let mut lrs = Fake::new(4);
    lrs.regs = vec![0xDEAD; 4];
    let flush = g.flush(0, &mut lrs);
    assert_eq!(flush, Flush { used: 1, overflow: false });
    // vINTID 40, priority 0xA0, group 1, pending.
    assert_eq!(lrs.regs, vec![0x50A0_0000_0000_0028, 0, 0, 0], "unused LRs zeroed");
    assert_eq!(lrs.lr(0), Lr::new(40, 0xA0, true).with_pending(true));
    // The pending state moved into the LR.
    assert!(!has_bit(&mut g, gicd::ISPENDR, 40));
    assert!(!g.has_work(0));
}

#[test]
fn full_cycle_ack_and_eoi() {
    let mut g = ready();
    g.set_pending(0, 40, false);
    let mut lrs = Fake::new(4);
    g.flush(0, &mut lrs);
    // The guest acknowledges: the LR goes pending -> active.
    lrs.ack(0);
    assert_eq!(g.fold(0, &mut lrs), 0);
    assert_eq!(lrs.regs, vec![0; 4], "fold empties the LRs");
    assert!(has_bit(&mut g, gicd::ISACTIVER, 40));
    assert!(!has_bit(&mut g, gicd::ISPENDR, 40));
    assert!(g.has_work(0), "active must go back into an LR");
    // It goes back as active only.
    assert_eq!(g.flush(0, &mut lrs).used, 1);
    assert_eq!(lrs.lr(0), Lr::new(40, 0xA0, true).with_active(true));
    assert!(!has_bit(&mut g, gicd::ISACTIVER, 40), "the LR holds the active state");
    // The guest EOIs: the LR becomes invalid.
    lrs.eoi(0);
    g.fold(0, &mut lrs);
    assert!(!has_bit(&mut g, gicd::ISACTIVER, 40));
    assert!(!g.has_work(0));
    assert_eq!(g.flush(0, &mut lrs), Flush { used: 0, overflow: false });
    assert_eq!(lrs.regs, vec![0; 4]);
}

#[test]
fn untouched_lrs_fold_back_unchanged() {
    let mut g = ready();
    g.set_pending(0, 40, false);
    g.set_pending(0, 41, false);
    dw(&mut g, gicd::ISACTIVER + 4, 1 << 9); // 41 active too
    let mut lrs = Fake::new(4);
    g.flush(0, &mut lrs);
    assert_eq!(dr(&mut g, gicd::ISPENDR + 4), 0);
    assert_eq!(dr(&mut g, gicd::ISACTIVER + 4), 0);
    g.fold(0, &mut lrs);
    assert_eq!(dr(&mut g, gicd::ISPENDR + 4), 3 << 8);
    assert_eq!(dr(&mut g, gicd::ISACTIVER + 4), 1 << 9);
}

#[test]
fn repend_while_in_lr_comes_back_once() {
    let mut g = ready();
    let mut lrs = Fake::new(4);
    // Pending in the LR, pended again: still one pending.
    g.set_pending(0, 40, false);
    g.flush(0, &mut lrs);
    assert_eq!(g.set_pending(0, 40, false), 1, "kick: the LR must be refreshed");
    g.fold(0, &mut lrs);
    g.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![Lr::new(40, 0xA0, true).with_pending(true)]);
    // Acknowledged (active in the LR), pended again: pending + active.
    lrs.ack(0);
    g.set_pending(0, 40, false);
    g.fold(0, &mut lrs);
    assert!(has_bit(&mut g, gicd::ISPENDR, 40));
    assert!(has_bit(&mut g, gicd::ISACTIVER, 40));
    assert_eq!(g.flush(0, &mut lrs).used, 1);
    assert_eq!(lrs.valid(), vec![Lr::new(40, 0xA0, true).with_pending(true).with_active(true)]);
    // Same through ISPENDR and through an SGI.
    lrs.eoi(0); // the hardware would then present the pending part
    g.fold(0, &mut lrs);
    g.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![Lr::new(40, 0xA0, true).with_pending(true)]);
    lrs.ack(0);
    set_bit(&mut g, gicd::ISPENDR, 40);
    g.fold(0, &mut lrs);
    g.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![Lr::new(40, 0xA0, true).with_pending(true).with_active(true)]);

    rw(&mut g, 0, gicr::ISENABLER0, 1 << 3);
    g.fold(0, &mut lrs);
    g.send_sgi(0, 3 << 24 | 1);
    g.flush(0, &mut lrs);
    let sgi = lrs.find(3).unwrap();
    lrs.ack(sgi);
    g.send_sgi(0, 3 << 24 | 1);
    g.fold(0, &mut lrs);
    g.flush(0, &mut lrs);
    let sgis: Vec<_> = lrs.valid().into_iter().filter(|lr| lr.vintid() == 3).collect();
    assert_eq!(sgis, vec![Lr::new(3, 0, false).with_pending(true).with_active(true)]);
}

#[test]
fn overflow_keeps_the_best_by_priority_then_intid() {
    let mut g = vgic();
    enable_groups(&mut g);
    // INTID: priority.
    let spis = [(40, 0x80), (41, 0x40), (42, 0x80), (43, 0xC0), (44, 0x40), (45, 0x10)];
    for (intid, priority) in spis {
        spi(&mut g, intid, priority, 0);
        g.set_pending(0, intid, false);
    }
    let mut lrs = Fake::new(4);
    assert_eq!(g.flush(0, &mut lrs), Flush { used: 4, overflow: true });
    let order: Vec<_> = lrs.regs.iter().map(|&v| Lr(v).vintid()).collect();
    assert_eq!(order, vec![45, 41, 44, 40]);
    assert!(lrs.valid().iter().all(|lr| lr.pending() && !lr.active()));
    // The ones left out stay pending in the model.
    assert_eq!(dr(&mut g, gicd::ISPENDR + 4), 1 << 10 | 1 << 11);
    assert!(g.has_work(0), "the two left out are still deliverable");
    // The guest takes and finishes all four; the rest follows.
    for i in 0..4 {
        lrs.ack(i);
        lrs.eoi(i);
    }
    g.fold(0, &mut lrs);
    assert_eq!(g.flush(0, &mut lrs), Flush { used: 2, overflow: false });
    let order: Vec<_> = lrs.valid().iter().map(|lr| lr.vintid()).collect();
    assert_eq!(order, vec![42, 43]);
}

#[test]
fn active_interrupts_come_first() {
    let mut g = vgic();
    enable_groups(&mut g);
    for intid in 40..45 {
        spi(&mut g, intid, 0x10, 0);
        g.set_pending(0, intid, false);
    }
    spi(&mut g, 50, 0xF0, 0);
    set_bit(&mut g, gicd::ISACTIVER, 50);
    let mut lrs = Fake::new(4);
    assert_eq!(g.flush(0, &mut lrs), Flush { used: 4, overflow: true });
    assert_eq!(lrs.lr(0), Lr::new(50, 0xF0, true).with_active(true));
    let rest: Vec<_> = lrs.regs[1..].iter().map(|&v| Lr(v).vintid()).collect();
    assert_eq!(rest, vec![40, 41, 42]);
}

#[test]
fn more_actives_than_lrs_overflow() {
    let mut g = vgic();
    dw(&mut g, gicd::ISACTIVER + 4, 0x7);
    let mut lrs = Fake::new(2);
    assert_eq!(g.flush(0, &mut lrs), Flush { used: 2, overflow: true });
    assert_eq!(dr(&mut g, gicd::ISACTIVER + 4), 0x4);
    g.fold(0, &mut lrs);
    assert_eq!(dr(&mut g, gicd::ISACTIVER + 4), 0x7);
}

#[test]
fn hw_interrupts_carry_pintid() {
    let mut g = ready();
    let mut lrs = Fake::new(4);
    assert_eq!(g.set_pending(0, 41, true), 1);
    g.flush(0, &mut lrs);
    let lr = lrs.lr(0);
    assert_eq!(lr, Lr::new(41, 0x80, true).with_pending(true).with_hw(41));
    assert_eq!(lr.0, 0x7080_0029_0000_0029);
    assert!(lr.hw());
    assert_eq!(lr.pintid(), 41);
    // Still HW while active.
    lrs.ack(0);
    g.fold(0, &mut lrs);
    g.flush(0, &mut lrs);
    assert_eq!(lrs.lr(0), Lr::new(41, 0x80, true).with_active(true).with_hw(41));
    // The guest's EOI deactivates it (the hardware then deactivates the
    // physical one); the HW flag goes with it.
    lrs.eoi(0);
    g.fold(0, &mut lrs);
    g.set_pending(0, 41, false);
    g.flush(0, &mut lrs);
    assert_eq!(lrs.lr(0), Lr::new(41, 0x80, true).with_pending(true));
    // A private HW interrupt (a timer PPI).
    rw(&mut g, 0, gicr::ISENABLER0, 1 << 27);
    rw(&mut g, 0, gicr::IGROUPR0, 1 << 27);
    g.set_pending(0, 27, true);
    g.fold(0, &mut lrs);
    g.flush(0, &mut lrs);
    let timer = lrs.find(27).unwrap();
    assert_eq!(lrs.lr(timer), Lr::new(27, 0, true).with_pending(true).with_hw(27));
}

#[test]
fn hw_flag_dropped_when_guest_clears_state() {
    let mut g = ready();
    g.set_pending(0, 40, true);
    set_bit(&mut g, gicd::ICPENDR, 40);
    g.set_pending(0, 40, false);
    let mut lrs = Fake::new(4);
    g.flush(0, &mut lrs);
    assert!(!lrs.lr(0).hw());
}

#[test]
fn disabled_interrupts_stay_but_actives_go() {
    let mut g = ready();
    let mut lrs = Fake::new(4);
    // Disabled: not flushed, stays pending.
    set_bit(&mut g, gicd::ICENABLER, 40);
    g.set_pending(0, 40, false);
    assert!(!g.has_work(0));
    assert_eq!(g.flush(0, &mut lrs).used, 0);
    assert!(has_bit(&mut g, gicd::ISPENDR, 40));
    // Group disabled: the same.
    dw(&mut g, gicd::CTLR, u64::from(gicd::CTLR_ENABLE_GRP0));
    g.set_pending(0, 41, false);
    assert_eq!(g.flush(0, &mut lrs).used, 0);
    assert!(has_bit(&mut g, gicd::ISPENDR, 41));
    // Active but disabled (group off): still flushed, as active only; the
    // pending part waits in the model.
    set_bit(&mut g, gicd::ISACTIVER, 41);
    assert!(g.has_work(0));
    assert_eq!(g.flush(0, &mut lrs).used, 1);
    assert_eq!(lrs.valid(), vec![Lr::new(41, 0x80, true).with_active(true)]);
    assert!(has_bit(&mut g, gicd::ISPENDR, 41));
    lrs.eoi(0);
    g.fold(0, &mut lrs);
    // Group 1 back on: the pending part goes now.
    assert_eq!(dw(&mut g, gicd::CTLR, 3), 1);
    g.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![Lr::new(41, 0x80, true).with_pending(true)]);
}

#[test]
fn group0_interrupts_need_group0_enabled() {
    let mut g = vgic();
    spi(&mut g, 40, 0, 0);
    dw(&mut g, gicd::IGROUPR + 4, 0); // group 0
    dw(&mut g, gicd::CTLR, u64::from(gicd::CTLR_ENABLE_GRP1));
    g.set_pending(0, 40, false);
    assert!(!g.has_work(0));
    dw(&mut g, gicd::CTLR, u64::from(gicd::CTLR_ENABLE_GRP0));
    let mut lrs = Fake::new(4);
    g.flush(0, &mut lrs);
    assert_eq!(lrs.valid(), vec![Lr::new(40, 0, false).with_pending(true)]);
    assert!(!lrs.lr(0).group1());
}

#[test]
fn private_interrupts_flush_on_their_own_vcpu() {
    let mut g = vgic();
    enable_groups(&mut g);
    rw(&mut g, 1, gicr::ISENABLER0, 1 << 27);
    rw(&mut g, 0, gicr::ISENABLER0, 1 << 27);
    g.set_pending(1, 27, false);
    assert!(!g.has_work(0));
    let mut lrs0 = Fake::new(4);
    let mut lrs1 = Fake::new(4);
    assert_eq!(g.flush(0, &mut lrs0).used, 0);
    assert_eq!(g.flush(1, &mut lrs1).used, 1);
    assert_eq!(lrs1.lr(0).vintid(), 27);
    // vCPU 0's copy is independent even while vCPU 1's is cached.
    g.set_pending(0, 27, false);
    assert_eq!(g.flush(0, &mut lrs0).used, 1);
    assert_eq!(lrs0.lr(0).vintid(), 27);
}

#[test]
fn spis_flush_on_their_target_only() {
    let mut g = ready();
    spi(&mut g, 42, 0, 1);
    g.set_pending(0, 42, false);
    let mut lrs = Fake::new(4);
    assert_eq!(g.flush(0, &mut lrs).used, 0);
    assert_eq!(g.flush(2, &mut lrs).used, 0);
    assert_eq!(g.flush(1, &mut lrs).used, 1);
    assert_eq!(lrs.lr(0).vintid(), 42);
}

#[test]
fn active_spi_stays_on_its_vcpu_when_rerouted() {
    let mut g = ready();
    let mut lrs0 = Fake::new(4);
    let mut lrs1 = Fake::new(4);
    g.set_pending(0, 40, false);
    g.flush(0, &mut lrs0);
    lrs0.ack(0);
    g.fold(0, &mut lrs0);
    // Re-routed to vCPU 1 while active on vCPU 0, and pended again.
    assert_eq!(g.dist_write(0, gicd::IROUTER + 8 * 40, 8, 0x1).kick, 0, "it stays on vCPU 0");
    assert_eq!(g.set_pending(0, 40, false), 1, "pending + active: vCPU 0 has it");
    assert!(!g.has_work(1));
    assert_eq!(g.flush(1, &mut lrs1).used, 0);
    g.flush(0, &mut lrs0);
    assert_eq!(lrs0.valid(), vec![Lr::new(40, 0xA0, true).with_pending(true).with_active(true)]);
    // The guest EOIs, the pending part stays in the LR (vCPU 0 took it).
    lrs0.eoi(0);
    g.fold(0, &mut lrs0);
    assert_eq!(g.flush(1, &mut lrs1).used, 1, "inactive now: it follows the route");
    assert_eq!(g.flush(0, &mut lrs0).used, 0);
}

#[test]
fn cached_spi_is_not_taken_twice() {
    let mut g = ready();
    let mut lrs0 = Fake::new(4);
    let mut lrs1 = Fake::new(4);
    g.set_pending(0, 40, false);
    g.flush(0, &mut lrs0);
    // While vCPU 0 holds it, the guest re-routes it and it fires again.
    assert_eq!(g.dist_write(0, gicd::IROUTER + 8 * 40, 8, 0x1).kick, 0);
    assert_eq!(g.set_pending(0, 40, false), 1, "its LR is on vCPU 0");
    assert!(!g.has_work(1));
    assert_eq!(g.flush(1, &mut lrs1).used, 0);
    // vCPU 0 exits without taking it: back pending, now for vCPU 1.
    assert_eq!(g.fold(0, &mut lrs0), 1 << 1);
    assert_eq!(g.flush(0, &mut lrs0).used, 0);
    assert_eq!(g.flush(1, &mut lrs1).used, 1);
    assert_eq!(lrs1.valid(), vec![Lr::new(40, 0xA0, true).with_pending(true)]);
}

#[test]
fn flush_folds_leftovers_first() {
    let mut g = ready();
    g.set_pending(0, 40, false);
    let mut lrs = Fake::new(4);
    g.flush(0, &mut lrs);
    lrs.ack(0);
    g.set_pending(0, 41, false);
    // No fold in between: nothing may be lost or doubled.
    g.flush(0, &mut lrs);
    let mut got = lrs.valid();
    got.sort_by_key(|lr| lr.vintid());
    assert_eq!(got, vec![Lr::new(40, 0xA0, true).with_active(true), Lr::new(41, 0x80, true).with_pending(true),]);
    assert_eq!(lrs.lr(0).vintid(), 40, "active first");
}

#[test]
fn fold_touches_only_filled_lrs() {
    let mut g = ready();
    let mut lrs = Fake::new(4);
    lrs.regs = vec![7; 4];
    assert_eq!(g.fold(0, &mut lrs), 0);
    assert_eq!(lrs.writes, 0);
    g.set_pending(0, 40, false);
    g.flush(0, &mut lrs);
    lrs.writes = 0;
    lrs.regs[3] = 0xFFFF;
    g.fold(0, &mut lrs);
    assert_eq!(lrs.writes, 1);
    assert_eq!(lrs.regs, vec![0, 0, 0, 0xFFFF]);
    assert!(has_bit(&mut g, gicd::ISPENDR, 40));
    // Out-of-range vCPUs: no LR access at all.
    assert_eq!(g.fold(9, &mut lrs), 0);
    assert_eq!(lrs.writes, 1);
}

#[test]
fn lr_counts() {
    let mut g = vgic();
    dw(&mut g, gicd::ISACTIVER + 4, 0xFFFF_FFFF);
    dw(&mut g, gicd::ISACTIVER + 8, 0xFFFF_FFFF);
    // More LRs than MAX_LRS: only MAX_LRS are used.
    let mut big = Fake::new(20);
    big.regs = vec![1; 20];
    assert_eq!(g.flush(0, &mut big), Flush { used: MAX_LRS, overflow: true });
    assert_eq!(big.regs[MAX_LRS..], [1; 4]);
    let intids: Vec<_> = big.regs[..MAX_LRS].iter().map(|&v| Lr(v).vintid()).collect();
    assert_eq!(intids, (32..48).collect::<Vec<_>>());
    g.fold(0, &mut big);
    // No LRs at all.
    let mut none = Fake::new(0);
    assert_eq!(g.flush(0, &mut none), Flush { used: 0, overflow: true });
    assert_eq!(dr(&mut g, gicd::ISACTIVER + 4), 0xFFFF_FFFF);
}

#[test]
fn icpendr_of_model_copy() {
    let mut g = ready();
    g.set_pending(0, 40, false);
    set_bit(&mut g, gicd::ICPENDR, 40);
    assert!(!g.has_work(0));
    let mut lrs = Fake::new(4);
    assert_eq!(g.flush(0, &mut lrs).used, 0);
}

// ---------------------------------------------------------------------------
// Configuration.

#[test]
fn configure_resets_and_caps() {
    let mut g = ready();
    g.set_pending(0, 40, false);
    rw(&mut g, 1, gicr::ISENABLER0, 1);
    g.redist_write(rd(1, gicr::WAKER), 4, 0);
    let mut lrs = Fake::new(4);
    g.flush(0, &mut lrs);
    g.configure(&MPIDRS, 64);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x50);
    assert_eq!(dr(&mut g, gicd::ISENABLER + 4), 0);
    assert_eq!(dr(&mut g, gicd::IGROUPR + 4), 0);
    assert_eq!(dr(&mut g, gicd::IPRIORITYR + 40), 0);
    assert_eq!(g.dist_read(0, gicd::IROUTER + 8 * 40, 8), 0);
    assert_eq!(rr(&mut g, 1, gicr::ISENABLER0), 0);
    assert_eq!(g.redist_read(rd(1, gicr::WAKER), 4), 6);
    assert!(!g.has_work(0));
    assert_eq!(g.fold(0, &mut lrs), 0);

    let many: Vec<u64> = (0..40).collect();
    g.configure(&many, 10_000);
    assert_eq!(g.vcpus(), MAX_VCPUS);
    assert_eq!(g.spis(), MAX_SPIS);
    let last = rd(MAX_VCPUS - 1, gicr::TYPER);
    assert_eq!(g.redist_read(last, 8) & gicr::TYPER_LAST, gicr::TYPER_LAST);
    assert_eq!(g.redist_read(rd(MAX_VCPUS, gicr::TYPER), 8), 0);
}

#[test]
fn unconfigured_model_is_inert() {
    let mut g = VGic::new();
    assert_eq!(g.vcpus(), 0);
    assert_eq!(g.spis(), 0);
    assert_eq!(g.redist_read(gicr::TYPER, 8), 0);
    assert_eq!(g.set_pending(0, 40, false), 0);
    assert_eq!(g.set_pending(0, 1, false), 0);
    assert!(!g.has_work(0));
    let mut lrs = Fake::new(4);
    lrs.regs = vec![5; 4];
    assert_eq!(g.flush(0, &mut lrs), Flush { used: 0, overflow: false });
    assert_eq!(lrs.regs, vec![0; 4]);
    assert_eq!(dr(&mut g, gicd::TYPER) & 0x1F, 0);
}

#[test]
fn lr_fields() {
    let lr = Lr::new(0x1234, 0xA8, true).with_pending(true).with_active(true).with_hw(0x1FFF);
    assert_eq!(lr.0, 0xF0A8_1FFF_0000_1234);
    assert_eq!(lr.vintid(), 0x1234);
    assert_eq!(lr.priority(), 0xA8);
    assert!(lr.group1() && lr.hw() && lr.pending() && lr.active());
    assert_eq!(lr.pintid(), 0x1FFF);
    assert_eq!(lr.with_hw(0x2_0005).pintid(), 5, "pINTID is 13 bits");
    assert_eq!(lr.with_pending(false).with_active(false).0 >> 62, 0);
    assert_eq!(Lr::INVALID.0, 0);
}

#[test]
fn edge_bit_helpers_are_inverse() {
    for edges in [0u32, 1, 0x8000, 0xFFFF, 0xA5A5, 0x1234] {
        let icfgr = spread_edges(edges);
        assert_eq!(icfgr & 0x5555_5555, 0);
        assert_eq!(gather_edges(icfgr), edges);
        for i in 0..16 {
            assert_eq!(icfgr >> (2 * i + 1) & 1, edges >> i & 1);
        }
    }
}

#[test]
fn guest_activated_spi_is_active_on_its_target() {
    let mut g = ready();
    spi(&mut g, 42, 0, 1);
    let mut lrs1 = Fake::new(4);
    let mut lrs2 = Fake::new(4);
    assert_eq!(set_bit(&mut g, gicd::ISACTIVER, 42), 1 << 1);
    g.dist_write(0, gicd::IROUTER + 8 * 42, 8, 0x1_0100); // now vCPU 2
    assert!(g.has_work(1) && !g.has_work(2), "active where it was activated");
    // Deactivated by the guest, re-routed, activated again: on vCPU 2.
    set_bit(&mut g, gicd::ICACTIVER, 42);
    assert!(!g.has_work(1));
    assert_eq!(set_bit(&mut g, gicd::ISACTIVER, 42), 1 << 2);
    assert_eq!(g.flush(1, &mut lrs1).used, 0);
    assert_eq!(g.flush(2, &mut lrs2).used, 1);
    assert_eq!(lrs2.valid(), vec![Lr::new(42, 0, true).with_active(true)]);
    // Folded back still active, then re-routed: it stays on vCPU 2.
    g.fold(2, &mut lrs2);
    g.dist_write(0, gicd::IROUTER + 8 * 42, 8, 0x1);
    assert!(g.has_work(2) && !g.has_work(1));
}

#[test]
fn withdrawing_a_private_interrupt_clears_only_a_pending_inactive_one() {
    let mut g = ready();
    rw(&mut g, 1, gicr::IGROUPR0, 1 << 27);
    rw(&mut g, 1, gicr::ISENABLER0, 1 << 27);
    assert!(!g.private_pending_only(1, 27));
    g.set_pending(1, 27, true);
    assert!(g.private_pending_only(1, 27));
    assert!(!g.private_pending_only(0, 27), "another vCPU's copy is its own");
    g.withdraw_private(1, 27);
    assert!(!g.private_pending_only(1, 27));
    assert!(!g.has_work(1));
    // Active (the guest is handling it): not pending-only.
    g.set_pending(1, 27, true);
    rw(&mut g, 1, gicr::ISACTIVER0, 1 << 27);
    assert!(!g.private_pending_only(1, 27));
    // Out of range: nothing, no panic.
    assert!(!g.private_pending_only(9, 27));
    assert!(!g.private_pending_only(0, 40));
    g.withdraw_private(9, 27);
}

// ---------------------------------------------------------------------------
// GICv2.

/// A GICv2 distributor for four vCPUs with 64 SPIs (INTIDs 32..95).
fn v2() -> VGic {
    let mut g = VGic::new();
    g.configure_v2(4, 64);
    g
}

/// A word read of the GICv2 distributor by `vcpu`.
fn r2(g: &mut VGic, vcpu: usize, offset: u64) -> u64 {
    g.dist_read(vcpu, offset, 4)
}

/// A word write of the GICv2 distributor by `vcpu`; the kick mask.
fn w2(g: &mut VGic, vcpu: usize, offset: u64, value: u64) -> u64 {
    g.dist_write(vcpu, offset, 4, value).kick
}

/// A `GICD_SGIR` value.
fn sgir(filter: u64, list: u64, intid: u64) -> u64 {
    filter << 24 | list << 16 | intid
}

/// SPI `intid` as Linux's GICv2 driver leaves it: Group 0, enabled,
/// `priority`, targeting the CPUs in `targets`; the distributor enabled
/// with `GICD_CTLR` = 1.
fn v2_spi(g: &mut VGic, intid: u32, priority: u8, targets: u8) {
    w2(g, 0, gicd::CTLR, 1);
    let (offset, bit) = word(gicd::ISENABLER, intid);
    w2(g, 0, offset, bit);
    g.dist_write(0, gicd::IPRIORITYR + u64::from(intid), 1, priority.into());
    g.dist_write(0, gicd_v2::ITARGETSR + u64::from(intid), 1, targets.into());
}

#[test]
fn v2_reset_values() {
    let mut g = v2();
    assert_eq!(g.version(), Version::V2);
    assert_eq!((g.vcpus(), g.spis()), (4, 64));
    for vcpu in 0..4 {
        assert_eq!(r2(&mut g, vcpu, gicd::CTLR), 0, "no ARE, no DS: groups off");
        assert_eq!(r2(&mut g, vcpu, gicd::TYPER), 2 | 3 << 5, "ITLinesNumber 2, CPUNumber 3");
        assert_eq!(r2(&mut g, vcpu, gicd::IIDR), 0x43B);
        assert_eq!(r2(&mut g, vcpu, gicd_v2::PIDR2), 0x2B);
        // SGIs enabled, nothing else; nothing pending, active or Group 1.
        assert_eq!(r2(&mut g, vcpu, gicd::ISENABLER), 0xFFFF);
        assert_eq!(r2(&mut g, vcpu, gicd::ICENABLER), 0xFFFF);
        for base in BIT_REGS {
            for w in 0..32 {
                let expected = if matches!(base, gicd::ISENABLER | gicd::ICENABLER) && w == 0 { 0xFFFF } else { 0 };
                assert_eq!(r2(&mut g, vcpu, base + 4 * w), expected, "{base:#x} word {w}");
            }
        }
        for intid in 0..1024 {
            assert_eq!(g.dist_read(vcpu, gicd::IPRIORITYR + intid, 1), 0);
        }
        // ITARGETSR: INTIDs 0..31 read as the vCPU's own bit, SPIs 0.
        for n in 0..8 {
            assert_eq!(r2(&mut g, vcpu, gicd_v2::ITARGETSR + 4 * n), 0x0101_0101 << vcpu);
        }
        for n in 8..256 {
            assert_eq!(r2(&mut g, vcpu, gicd_v2::ITARGETSR + 4 * n), 0, "ITARGETSR{n}");
        }
        // SGIs edge (read-only), PPIs and SPIs level.
        assert_eq!(r2(&mut g, vcpu, gicd::ICFGR), 0xAAAA_AAAA);
        for w in 1..64 {
            assert_eq!(r2(&mut g, vcpu, gicd::ICFGR + 4 * w), 0, "ICFGR{w}");
        }
        for offset in [gicd_v2::SGIR, gicd_v2::CPENDSGIR, gicd_v2::SPENDSGIR + 12] {
            assert_eq!(r2(&mut g, vcpu, offset), 0, "{offset:#x}");
        }
    }
    for intid in 32..96 {
        let state = g.spi_state(intid).unwrap();
        assert_eq!(state, SpiState { enabled: false, target: None, priority: 0, group1: false, pending: false });
    }
    assert_eq!(g.spi_state(96), None);
    // No redistributors.
    assert_eq!(g.redist_read(rd(0, gicr::TYPER), 8), 0);
    assert_eq!(g.redist_read(rd(1, gicr::PIDR2), 4), 0);
    assert_eq!(g.redist_write(sgi(0, gicr::ISENABLER0), 4, u64::MAX), Effects::default());
    assert_eq!(r2(&mut g, 0, gicd::ISENABLER), 0xFFFF);
    assert!(!g.has_work(0));
}

#[test]
fn v2_typer() {
    let typer = |vcpus, spis| {
        let mut g = VGic::new();
        g.configure_v2(vcpus, spis);
        r2(&mut g, 0, gicd::TYPER)
    };
    assert_eq!(typer(1, 0), 0);
    assert_eq!(typer(2, 40), 2 | 1 << 5, "rounded up: SPI 71 must be visible");
    assert_eq!(typer(8, 256), 8 | 7 << 5);
    assert_eq!(typer(8, 1000), 8 | 7 << 5, "capped at MAX_SPIS");
    assert_eq!(typer(3, 32), 1 | 2 << 5);
    // SecurityExtn (bit 10) and LSPI stay 0; writes are ignored.
    let mut g = v2();
    w2(&mut g, 0, gicd::TYPER, 0xFFFF_FFFF);
    assert_eq!(r2(&mut g, 0, gicd::TYPER), 0x62);
}

#[test]
fn v2_ctlr() {
    let mut g = v2();
    w2(&mut g, 0, gicd::CTLR, 0xFFFF_FFFF);
    assert_eq!(r2(&mut g, 0, gicd::CTLR), 0x3, "EnableGrp0 and EnableGrp1 only");
    assert_eq!(r2(&mut g, 3, gicd::CTLR), 0x3, "not banked");
    w2(&mut g, 2, gicd::CTLR, 1);
    assert_eq!(r2(&mut g, 0, gicd::CTLR), 0x1);
    w2(&mut g, 0, gicd::CTLR, 2);
    assert_eq!(r2(&mut g, 0, gicd::CTLR), 0x2);
    w2(&mut g, 0, gicd::CTLR, 0);
    assert_eq!(r2(&mut g, 0, gicd::CTLR), 0);
    g.dist_write(0, gicd::CTLR, 1, 3);
    assert_eq!(r2(&mut g, 0, gicd::CTLR), 0, "32-bit only");
}

#[test]
fn v2_id_registers() {
    let mut g = v2();
    let expected: [u32; 12] = [0x04, 0, 0, 0, 0x90, 0xB4, 0x2B, 0, 0x0D, 0xF0, 0x05, 0xB1];
    for (n, &id) in expected.iter().enumerate() {
        let id = u64::from(id);
        let offset = 0xFD0 + 4 * n as u64;
        assert_eq!(r2(&mut g, 1, offset), id, "{offset:#x}");
        w2(&mut g, 1, offset, 0xFFFF_FFFF);
        assert_eq!(r2(&mut g, 1, offset), id, "{offset:#x} is read-only");
        assert_eq!(g.dist_read(1, offset, 1), 0, "32-bit only");
        assert_eq!(g.dist_read(1, offset + 1, 4), 0, "misaligned");
    }
    assert_eq!(gicd_v2::IDS, expected);
    // Nothing of a GICv3's ID space.
    assert_eq!(r2(&mut g, 0, gicd::PIDR2), 0);
    assert_eq!(r2(&mut g, 0, gicd::TYPER2), 0);
}

#[test]
fn v2_private_registers_are_banked_per_vcpu() {
    let mut g = v2();
    w2(&mut g, 1, gicd::IGROUPR, 1 << 27 | 1 << 3);
    w2(&mut g, 1, gicd::ISENABLER, 1 << 27);
    w2(&mut g, 1, gicd::ISACTIVER, 1 << 26);
    w2(&mut g, 1, gicd::ISPENDR, 1 << 25);
    w2(&mut g, 1, gicd::IPRIORITYR + 24, 0x1828_3848);
    g.dist_write(1, gicd::IPRIORITYR + 2, 1, 0x90);
    w2(&mut g, 1, gicd::ICFGR + 4, 0xFFFF_FFFF);
    assert_eq!(r2(&mut g, 1, gicd::IGROUPR), 1 << 27 | 1 << 3);
    assert_eq!(r2(&mut g, 1, gicd::ISENABLER), 1 << 27 | 0xFFFF);
    assert_eq!(r2(&mut g, 1, gicd::ISACTIVER), 1 << 26);
    assert_eq!(r2(&mut g, 1, gicd::ISPENDR), 1 << 25);
    assert_eq!(r2(&mut g, 1, gicd::IPRIORITYR + 24), 0x1828_3848);
    assert_eq!(r2(&mut g, 1, gicd::IPRIORITYR), 0x0090_0000);
    assert_eq!(r2(&mut g, 1, gicd::ICFGR + 4), 0xAAAA_AAAA, "PPIs configurable");
    assert_eq!(r2(&mut g, 1, gicd::ICFGR), 0xAAAA_AAAA);
    for vcpu in [0, 2, 3] {
        assert_eq!(r2(&mut g, vcpu, gicd::IGROUPR), 0, "vCPU {vcpu}");
        assert_eq!(r2(&mut g, vcpu, gicd::ISENABLER), 0xFFFF);
        assert_eq!(r2(&mut g, vcpu, gicd::ISACTIVER), 0);
        assert_eq!(r2(&mut g, vcpu, gicd::ISPENDR), 0);
        assert_eq!(r2(&mut g, vcpu, gicd::IPRIORITYR + 24), 0);
        assert_eq!(r2(&mut g, vcpu, gicd::IPRIORITYR), 0);
        assert_eq!(r2(&mut g, vcpu, gicd::ICFGR + 4), 0);
    }
    // The model's private state is the one set_pending and the LRs use.
    assert!(g.private_pending_only(1, 25));
    assert!(!g.private_pending_only(0, 25));
    // SPI registers are shared: one vCPU writes, another reads.
    w2(&mut g, 2, gicd::ISENABLER + 4, 0x8000_0001);
    w2(&mut g, 3, gicd::IGROUPR + 8, 0x10);
    assert_eq!(r2(&mut g, 0, gicd::ISENABLER + 4), 0x8000_0001);
    assert_eq!(r2(&mut g, 1, gicd::IGROUPR + 8), 0x10);
    assert!(g.spi_state(32).unwrap().enabled && g.spi_state(63).unwrap().enabled);
    assert!(g.spi_state(68).unwrap().group1);
}

#[test]
fn v2_sgis_are_always_enabled() {
    let mut g = v2();
    w2(&mut g, 0, gicd::ICENABLER, 0xFFFF_FFFF);
    assert_eq!(r2(&mut g, 0, gicd::ISENABLER), 0xFFFF, "SGI enables are RAO/WI");
    w2(&mut g, 0, gicd::ISENABLER, 0xFFFF_FFFF);
    assert_eq!(r2(&mut g, 0, gicd::ISENABLER), 0xFFFF_FFFF);
    w2(&mut g, 0, gicd::ICENABLER, 0xFFFF_0000);
    assert_eq!(r2(&mut g, 0, gicd::ICENABLER), 0xFFFF);
}

#[test]
fn v2_ispendr_sgi_bits_are_wi() {
    let mut g = v2();
    w2(&mut g, 2, gicd::ISPENDR, 0xFFFF_FFFF);
    assert_eq!(r2(&mut g, 2, gicd::ISPENDR), 0xFFFF_0000, "SGIs pend through SPENDSGIR only");
    // Pending SGIs show in ISPENDR0, but ICPENDR0 does not clear them.
    g.dist_write(2, gicd_v2::SPENDSGIR + 5, 1, 1);
    assert_eq!(r2(&mut g, 2, gicd::ISPENDR), 0xFFFF_0020);
    w2(&mut g, 2, gicd::ICPENDR, 0xFFFF_FFFF);
    assert_eq!(r2(&mut g, 2, gicd::ICPENDR), 0x20);
    // Active state: SGIs included.
    w2(&mut g, 2, gicd::ISACTIVER, 0x3);
    assert_eq!(r2(&mut g, 2, gicd::ISACTIVER), 0x3);
    w2(&mut g, 2, gicd::ICACTIVER, 0x1);
    assert_eq!(r2(&mut g, 2, gicd::ISACTIVER), 0x2);
}

#[test]
fn v2_itargetsr_private_bytes_are_the_readers_own_bit() {
    let mut g = v2();
    for vcpu in 0..4 {
        for n in 0..8u64 {
            let offset = gicd_v2::ITARGETSR + 4 * n;
            w2(&mut g, vcpu, offset, 0xFFFF_FFFF);
            assert_eq!(r2(&mut g, vcpu, offset), 0x0101_0101 << vcpu, "read-only");
        }
        for intid in 0..32 {
            g.dist_write(vcpu, gicd_v2::ITARGETSR + intid, 1, 0xFF);
            assert_eq!(g.dist_read(vcpu, gicd_v2::ITARGETSR + intid, 1), 1 << vcpu);
        }
    }
    // What Linux's gic_get_cpumask ORs together: one bit, the reader's.
    let mut g = VGic::new();
    g.configure_v2(8, 32);
    assert_eq!(r2(&mut g, 7, gicd_v2::ITARGETSR + 28), 0x8080_8080);
}

#[test]
fn v2_itargetsr_spi_routing() {
    let mut g = v2();
    let t = |intid: u64| gicd_v2::ITARGETSR + intid;
    g.dist_write(0, t(40), 1, 0b0110);
    assert_eq!(g.dist_read(0, t(40), 1), 0b0110);
    assert_eq!(g.dist_read(3, t(40), 1), 0b0110, "SPI targets are not banked");
    assert_eq!(g.spi_state(40).unwrap().target, Some(1), "the lowest vCPU of the mask");
    // Word access: four SPIs at once.
    w2(&mut g, 1, t(44), 0x0008_0401);
    assert_eq!(r2(&mut g, 0, t(44)), 0x0008_0401);
    let targets: Vec<_> = (44..48).map(|i| g.spi_state(i).unwrap().target).collect();
    assert_eq!(targets, vec![Some(0), Some(2), Some(3), None]);
    assert_eq!(r2(&mut g, 0, t(40)), 0b0110, "neighbours untouched");
    // Bits of CPUs that do not exist are RAZ/WI.
    g.dist_write(0, t(41), 1, 0xF8);
    assert_eq!(g.dist_read(0, t(41), 1), 0x08);
    assert_eq!(g.spi_state(41).unwrap().target, Some(3));
    g.dist_write(0, t(41), 1, 0xF0);
    assert_eq!(g.dist_read(0, t(41), 1), 0);
    assert_eq!(g.spi_state(41).unwrap().target, None);
    // Re-targeting.
    g.dist_write(0, t(40), 1, 0b1000);
    assert_eq!(g.spi_state(40).unwrap().target, Some(3));
    // Half-word accesses and SPIs beyond the configured ones: RAZ/WI.
    g.dist_write(0, t(48), 2, 0x0101);
    assert_eq!(r2(&mut g, 0, t(48)), 0);
    assert_eq!(g.dist_read(0, t(44), 2), 0);
    w2(&mut g, 0, t(96), 0x0101_0101);
    assert_eq!(r2(&mut g, 0, t(96)), 0);
    assert_eq!(g.spi_state(96), None);
}

#[test]
fn v2_spi_goes_to_its_target_and_follows_retargeting() {
    let mut g = v2();
    v2_spi(&mut g, 40, 0xA0, 0b0100);
    assert_eq!(g.set_pending(0, 40, false), 1 << 2);
    let mut lrs = [Fake::new(4), Fake::new(4), Fake::new(4), Fake::new(4)];
    for vcpu in [0, 1, 3] {
        assert_eq!(g.flush(vcpu, &mut lrs[vcpu]).used, 0, "vCPU {vcpu}");
    }
    // Re-targeted while pending (not taken): it moves, the new target is kicked.
    assert_eq!(g.dist_write(0, gicd_v2::ITARGETSR + 40, 1, 0b1010).kick, 1 << 1);
    assert_eq!(g.dist_write(0, gicd_v2::ITARGETSR + 40, 1, 0b0010).kick, 0, "same owner");
    assert!(!g.has_work(2));
    assert_eq!(g.flush(1, &mut lrs[1]).used, 1);
    assert_eq!(lrs[1].valid(), vec![Lr::new(40, 0xA0, false).with_pending(true)]);
}

#[test]
fn v2_spi_with_no_target_stays_pending() {
    let mut g = v2();
    v2_spi(&mut g, 50, 0x10, 0);
    assert_eq!(g.set_pending(0, 50, false), 0, "targets no CPU");
    for vcpu in 0..4 {
        assert!(!g.has_work(vcpu));
        let mut lrs = Fake::new(4);
        assert_eq!(g.flush(vcpu, &mut lrs).used, 0);
    }
    assert_eq!(r2(&mut g, 0, gicd::ISPENDR + 4), 1 << 18);
    assert!(g.spi_state(50).unwrap().pending);
    // Targeting a vCPU delivers it there, and says so.
    assert_eq!(g.dist_write(2, gicd_v2::ITARGETSR + 50, 1, 0b1000).kick, 1 << 3);
    assert!(g.has_work(3));
    // A passthrough SPI with no target is one el2 leaves disabled.
    let mut g = v2();
    v2_spi(&mut g, 50, 0x10, 0);
    assert_eq!(
        g.spi_state(50).unwrap(),
        SpiState { enabled: true, target: None, priority: 0x10, group1: false, pending: false }
    );
}

#[test]
fn v2_active_spi_stays_on_its_vcpu_when_retargeted() {
    let mut g = v2();
    v2_spi(&mut g, 40, 0xA0, 0b0001);
    let mut lrs0 = Fake::new(4);
    let mut lrs1 = Fake::new(4);
    g.set_pending(0, 40, false);
    g.flush(0, &mut lrs0);
    lrs0.ack(0);
    g.fold(0, &mut lrs0);
    assert_eq!(g.dist_write(0, gicd_v2::ITARGETSR + 40, 1, 0b0010).kick, 0, "it stays on vCPU 0");
    assert_eq!(g.spi_state(40).unwrap().target, Some(1));
    assert_eq!(g.set_pending(0, 40, false), 1, "pending + active: vCPU 0 has it");
    assert_eq!(g.flush(1, &mut lrs1).used, 0);
    g.flush(0, &mut lrs0);
    assert_eq!(lrs0.valid(), vec![Lr::new(40, 0xA0, false).with_pending(true).with_active(true)]);
    lrs0.eoi(0);
    g.fold(0, &mut lrs0);
    assert_eq!(g.flush(1, &mut lrs1).used, 1, "inactive now: it follows ITARGETSR");
    assert_eq!(g.flush(0, &mut lrs0).used, 0);
    // Activated by the guest through ISACTIVER: active on its target.
    let mut g = v2();
    v2_spi(&mut g, 42, 0, 0b0100);
    assert_eq!(w2(&mut g, 0, gicd::ISACTIVER + 4, 1 << 10), 1 << 2);
    g.dist_write(0, gicd_v2::ITARGETSR + 42, 1, 0b0001);
    assert!(g.has_work(2) && !g.has_work(0));
}

#[test]
fn v2_sgir_filters() {
    let mut g = v2();
    // Filter 0: the list (CPUs that do not exist are left out).
    assert_eq!(w2(&mut g, 1, gicd_v2::SGIR, sgir(0, 0b1111_0101, 3)), 0b0101);
    assert_eq!(r2(&mut g, 0, gicd::ISPENDR), 1 << 3);
    assert_eq!(r2(&mut g, 2, gicd::ISPENDR), 1 << 3);
    assert_eq!(r2(&mut g, 1, gicd::ISPENDR), 0);
    assert_eq!(r2(&mut g, 3, gicd::ISPENDR), 0);
    assert_eq!(w2(&mut g, 1, gicd_v2::SGIR, sgir(0, 0, 4)), 0, "empty list");
    // Filter 1: everyone but the sender, whatever the list says.
    assert_eq!(w2(&mut g, 2, gicd_v2::SGIR, sgir(1, 0b0100, 7)), 0b1011);
    for vcpu in [0, 1, 3] {
        assert_eq!(r2(&mut g, vcpu, gicd::ISPENDR) & 1 << 7, 1 << 7, "vCPU {vcpu}");
    }
    assert_eq!(r2(&mut g, 2, gicd::ISPENDR) & 1 << 7, 0);
    // Filter 2: the sender only.
    assert_eq!(w2(&mut g, 3, gicd_v2::SGIR, sgir(2, 0b0001, 15)), 0b1000);
    assert_eq!(r2(&mut g, 3, gicd::ISPENDR), 1 << 15 | 1 << 7);
    assert_eq!(r2(&mut g, 0, gicd::ISPENDR), 1 << 3 | 1 << 7);
    // Filter 3 is reserved: ignored.
    let before: Vec<_> = (0..4).map(|v| r2(&mut g, v, gicd::ISPENDR)).collect();
    assert_eq!(w2(&mut g, 0, gicd_v2::SGIR, sgir(3, 0xFF, 9)), 0);
    let after: Vec<_> = (0..4).map(|v| r2(&mut g, v, gicd::ISPENDR)).collect();
    assert_eq!(before, after);
    // NSATT (bit 15) and the reserved bits are ignored; SGIINTID is 4 bits.
    assert_eq!(w2(&mut g, 0, gicd_v2::SGIR, 0xFC02_FFF1), 0b0010, "list {{1}}, SGI 1");
    assert_eq!(r2(&mut g, 1, gicd::ISPENDR) & 0xFFFF, 1 << 1 | 1 << 7);
    // Write-only, 32-bit only.
    assert_eq!(r2(&mut g, 0, gicd_v2::SGIR), 0);
    assert_eq!(g.dist_write(0, gicd_v2::SGIR, 1, 0x5).kick, 0);
    assert_eq!(r2(&mut g, 0, gicd::ISPENDR) & 1 << 5, 0);
}

#[test]
fn v2_sgir_kicks_match_send_sgi() {
    let mut g3 = VGic::new();
    g3.configure(&[0, 1, 2, 3], 32);
    let mut g2 = VGic::new();
    g2.configure_v2(4, 32);
    for sender in 0..4 {
        for list in 0..16u64 {
            let v3 = g3.send_sgi(sender, 6 << 24 | list);
            let v2 = w2(&mut g2, sender, gicd_v2::SGIR, sgir(0, list, 6));
            assert_eq!(v2, v3, "sender {sender}, list {list:#b}");
            assert_eq!(v2, list);
        }
        let v3 = g3.send_sgi(sender, 1 << 40 | 6 << 24);
        let v2 = w2(&mut g2, sender, gicd_v2::SGIR, sgir(1, 0, 6));
        assert_eq!(v2, v3, "sender {sender}: all but self");
        assert_eq!(v2, 0b1111 & !(1 << sender));
    }
    // Both made the same SGIs pending.
    for vcpu in 0..4 {
        assert_eq!(r2(&mut g2, vcpu, gicd::ISPENDR), g3.redist_read(sgi(vcpu, gicr::ISPENDR0), 4));
        assert_eq!(r2(&mut g2, vcpu, gicd::ISPENDR), 1 << 6);
    }
    // ICC_SGI1R_EL1 does not exist on a GICv2: send_sgi does nothing.
    let mut g = v2();
    assert_eq!(g.send_sgi(0, 1 << 40 | 2 << 24), 0);
    assert_eq!(g.send_sgi(0, 2 << 24 | 0xF), 0);
    for vcpu in 0..4 {
        assert_eq!(r2(&mut g, vcpu, gicd::ISPENDR), 0);
    }
}

#[test]
fn v2_sgir_kicks_even_when_not_deliverable() {
    // As send_sgi: the targets, whether or not their groups are enabled.
    let mut g = v2();
    assert_eq!(w2(&mut g, 0, gicd_v2::SGIR, sgir(0, 0b10, 1)), 0b10);
    assert!(!g.has_work(1), "GICD_CTLR is 0");
    assert_eq!(w2(&mut g, 0, gicd::CTLR, 1), 0b10, "enabling Group 0 delivers it");
    assert!(g.has_work(1));
}

#[test]
fn v2_spendsgir_and_cpendsgir() {
    let mut g = v2();
    w2(&mut g, 0, gicd::CTLR, 1);
    // Byte writes: any source bit makes the SGI pending on the writer.
    assert_eq!(g.dist_write(1, gicd_v2::SPENDSGIR + 2, 1, 0x80).kick, 1 << 1);
    assert_eq!(g.dist_read(1, gicd_v2::SPENDSGIR + 2, 1), 0x01, "shown as from CPU 0");
    assert_eq!(g.dist_read(1, gicd_v2::CPENDSGIR + 2, 1), 0x01, "both views read it");
    assert_eq!(r2(&mut g, 1, gicd_v2::SPENDSGIR), 0x0001_0000);
    assert_eq!(r2(&mut g, 1, gicd::ISPENDR), 1 << 2);
    assert_eq!(r2(&mut g, 0, gicd_v2::SPENDSGIR), 0, "banked");
    // Word writes: one byte per SGI; zero bytes change nothing.
    assert_eq!(w2(&mut g, 1, gicd_v2::SPENDSGIR + 12, 0x0100_0300), 1 << 1);
    assert_eq!(r2(&mut g, 1, gicd_v2::SPENDSGIR + 12), 0x0100_0100);
    assert_eq!(r2(&mut g, 1, gicd::ISPENDR), 1 << 2 | 1 << 13 | 1 << 15);
    assert_eq!(w2(&mut g, 1, gicd_v2::SPENDSGIR + 12, 0x0100_0100), 0, "already pending");
    // Clearing: any source bit clears the one pending state.
    w2(&mut g, 1, gicd_v2::CPENDSGIR + 12, 0x0400_0000);
    assert_eq!(r2(&mut g, 1, gicd_v2::SPENDSGIR + 12), 0x0000_0100);
    g.dist_write(1, gicd_v2::CPENDSGIR + 2, 1, 0x01);
    assert_eq!(r2(&mut g, 1, gicd::ISPENDR), 1 << 13);
    assert_eq!(w2(&mut g, 1, gicd_v2::CPENDSGIR + 12, 0), 0);
    assert_eq!(r2(&mut g, 1, gicd::ISPENDR), 1 << 13, "zero bytes clear nothing");
    // An SGI sent through GICD_SGIR shows in the target's SPENDSGIR.
    w2(&mut g, 3, gicd_v2::SGIR, sgir(0, 0b1, 9));
    assert_eq!(r2(&mut g, 0, gicd_v2::SPENDSGIR + 8), 0x0000_0100);
    assert_eq!(r2(&mut g, 0, gicd_v2::CPENDSGIR + 8), 0x0000_0100);
    // Half-word and misaligned accesses: RAZ/WI.
    g.dist_write(2, gicd_v2::SPENDSGIR, 2, 0x0101);
    assert_eq!(g.dist_read(1, gicd_v2::SPENDSGIR + 12, 2), 0);
    g.dist_write(2, gicd_v2::SPENDSGIR + 1, 4, 0x0101_0101);
    assert_eq!(r2(&mut g, 2, gicd::ISPENDR), 0);
}

#[test]
fn v2_group0_is_delivered_through_flush() {
    // Linux's GICv2 driver: GICD_CTLR = 1, every IGROUPR 0, SPIs targeted
    // at the boot CPU, the SGIs enabled.
    let mut g = v2();
    v2_spi(&mut g, 40, 0xA0, 0b0001);
    w2(&mut g, 0, gicd::ISENABLER, 0x0000_FFFF);
    g.set_pending(0, 40, false);
    let mut lrs = Fake::new(4);
    assert_eq!(g.flush(0, &mut lrs), Flush { used: 1, overflow: false });
    let lr = lrs.lr(0);
    assert_eq!(lr, Lr::new(40, 0xA0, false).with_pending(true));
    assert!(!lr.group1());
    assert_eq!(lr.to_v2(), 0x1A00_0028, "pending, priority 0xA0 >> 3, Group 0, vINTID 40");
    lrs.ack(0);
    lrs.eoi(0);
    g.fold(0, &mut lrs);
    // An IPI from vCPU 2 to vCPU 0.
    assert_eq!(w2(&mut g, 2, gicd_v2::SGIR, sgir(0, 0b1, 1)), 1);
    assert_eq!(g.flush(0, &mut lrs).used, 1);
    assert_eq!(lrs.lr(0), Lr::new(1, 0, false).with_pending(true));
    assert_eq!(lrs.lr(0).to_v2(), 0x1000_0001, "CPUID 0: sources are not tracked");
    lrs.ack(0);
    lrs.eoi(0);
    g.fold(0, &mut lrs);
    // With Group 0 disabled nothing goes.
    w2(&mut g, 0, gicd::CTLR, 2);
    g.set_pending(0, 40, false);
    w2(&mut g, 1, gicd_v2::SGIR, sgir(0, 0b1, 2));
    assert!(!g.has_work(0));
    assert_eq!(g.flush(0, &mut lrs).used, 0);
    assert_eq!(w2(&mut g, 0, gicd::CTLR, 1), 1, "back on: vCPU 0 has work");
    assert_eq!(g.flush(0, &mut lrs).used, 2);
}

#[test]
fn v2_more_than_eight_vcpus_are_clamped() {
    assert_eq!(MAX_VCPUS_V2, 8);
    let mut g = VGic::new();
    g.configure_v2(12, 32);
    assert_eq!(g.vcpus(), 8);
    assert_eq!(r2(&mut g, 0, gicd::TYPER), 1 | 7 << 5);
    // vCPUs without a CPU interface: their accesses read 0 and do nothing.
    for vcpu in [8, 9, 11, usize::MAX] {
        assert_eq!(r2(&mut g, vcpu, gicd::TYPER), 0);
        assert_eq!(r2(&mut g, vcpu, gicd::ISENABLER), 0);
        assert_eq!(r2(&mut g, vcpu, gicd_v2::ITARGETSR), 0);
        assert_eq!(w2(&mut g, vcpu, gicd::CTLR, 3), 0);
        assert_eq!(w2(&mut g, vcpu, gicd_v2::SGIR, sgir(1, 0, 1)), 0);
        assert_eq!(w2(&mut g, vcpu, gicd::ISENABLER + 4, 1), 0);
        assert_eq!(g.set_pending(vcpu, 27, false), 0);
        assert!(!g.has_work(vcpu));
    }
    assert_eq!(r2(&mut g, 0, gicd::CTLR), 0);
    assert_eq!(r2(&mut g, 0, gicd::ISENABLER + 4), 0);
    assert_eq!(r2(&mut g, 7, gicd::ISPENDR), 0);
    // The eight that exist are all reachable.
    assert_eq!(w2(&mut g, 0, gicd_v2::SGIR, sgir(1, 0, 1)), 0xFE);
    g.dist_write(0, gicd_v2::ITARGETSR + 32, 1, 0xFF);
    assert_eq!(g.dist_read(7, gicd_v2::ITARGETSR + 32, 1), 0xFF);
    g.dist_write(0, gicd_v2::ITARGETSR + 32, 1, 0x80);
    assert_eq!(g.spi_state(32).unwrap().target, Some(7));
    // Fewer vCPUs leave the rest of a target mask out.
    g.configure_v2(2, 32);
    g.dist_write(0, gicd_v2::ITARGETSR + 32, 1, 0xFF);
    assert_eq!(g.dist_read(0, gicd_v2::ITARGETSR + 32, 1), 0x03);
    assert_eq!(w2(&mut g, 1, gicd_v2::SGIR, sgir(0, 0xFF, 1)), 0x03);
    // None at all.
    g.configure_v2(0, 32);
    assert_eq!(g.vcpus(), 0);
    assert_eq!(r2(&mut g, 0, gicd::TYPER), 0);
}

#[test]
fn v2_unknown_offsets_and_widths_are_raz_wi() {
    let mut g = v2();
    // Reserved, implementation defined, NSACR, GICv3-only, beyond 4 KiB.
    for offset in [
        0xC,
        0x10,
        0x40,
        0x7C,
        0xD00,
        0xDFC,
        0xE00,
        0xEFC,
        0xF04,
        0xF0C,
        0xF30,
        0xFCC,
        0x1000,
        0x6000 + 8 * 40,
        0xFFE8,
        0x1_0000,
    ] {
        w2(&mut g, 0, offset, u64::MAX);
        g.dist_write(0, offset, 8, u64::MAX);
        assert_eq!(r2(&mut g, 0, offset), 0, "{offset:#x}");
        assert_eq!(g.dist_read(0, offset, 8), 0, "{offset:#x}");
    }
    // Widths a register does not have.
    g.dist_write(0, gicd::ISENABLER + 4, 1, 0xFF);
    g.dist_write(0, gicd::ISENABLER + 4, 2, 0xFFFF);
    g.dist_write(0, gicd::ISENABLER + 4, 8, u64::MAX);
    assert_eq!(r2(&mut g, 0, gicd::ISENABLER + 4), 0);
    g.dist_write(0, gicd::IPRIORITYR + 32, 2, 0xFFFF);
    assert_eq!(r2(&mut g, 0, gicd::IPRIORITYR + 32), 0);
    g.dist_write(0, gicd_v2::ITARGETSR + 32, 8, u64::MAX);
    assert_eq!(r2(&mut g, 0, gicd_v2::ITARGETSR + 32), 0);
    assert_eq!(g.dist_read(0, gicd::TYPER, 8), 0);
    // Misaligned.
    g.dist_write(0, gicd_v2::ITARGETSR + 33, 4, 0xFFFF_FFFF);
    assert_eq!(r2(&mut g, 0, gicd_v2::ITARGETSR + 32), 0);
    assert_eq!(g.dist_read(0, gicd::TYPER + 1, 4), 0);
    // Nothing of the above changed anything.
    assert_eq!(r2(&mut g, 0, gicd::CTLR), 0);
    for intid in 32..96 {
        let state = g.spi_state(intid).unwrap();
        assert_eq!(state, SpiState { enabled: false, target: None, priority: 0, group1: false, pending: false });
    }
}

#[test]
fn v2_hostile_accesses_never_panic() {
    let mut g = v2();
    let sizes = [0u8, 1, 2, 3, 4, 5, 8, 16, 255];
    let offsets = (0..0x1100u64).chain([0xFFFF_FFFF, u64::MAX - 3, u64::MAX, 1 << 63]);
    for offset in offsets {
        for &size in &sizes {
            for vcpu in [0, 3, 4, 8, usize::MAX] {
                let _ = g.dist_read(vcpu, offset, size);
                let kick = g.dist_write(vcpu, offset, size, u64::MAX).kick;
                assert_eq!(kick >> 4, 0, "{offset:#x}/{size}: kick {kick:#x} names no vCPU");
                let _ = g.dist_write(vcpu, offset, size, 0x5A5A_5A5A_5A5A_5A5A);
            }
        }
    }
    // Still a working distributor.
    let mut lrs = Fake::new(4);
    for vcpu in 0..4 {
        g.flush(vcpu, &mut lrs);
        g.fold(vcpu, &mut lrs);
    }
    g.configure_v2(4, 64);
    assert_eq!(r2(&mut g, 0, gicd::TYPER), 0x62);
}

#[test]
fn v2_configure_resets_and_switches_versions() {
    let mut g = v2();
    v2_spi(&mut g, 40, 0x80, 0b10);
    w2(&mut g, 1, gicd::IGROUPR, 0xFF);
    g.set_pending(1, 40, false);
    let mut lrs = Fake::new(4);
    g.flush(1, &mut lrs);
    g.configure_v2(4, 64);
    assert_eq!(r2(&mut g, 0, gicd::CTLR), 0);
    assert_eq!(r2(&mut g, 1, gicd::IGROUPR), 0);
    assert_eq!(r2(&mut g, 0, gicd::ISENABLER + 4), 0);
    assert_eq!(r2(&mut g, 0, gicd::ISENABLER), 0xFFFF);
    assert_eq!(g.dist_read(0, gicd_v2::ITARGETSR + 40, 1), 0);
    assert_eq!(g.fold(1, &mut lrs), 0);
    assert!(!g.has_work(1));
    // Back to a GICv3: its reset state, redistributors, no GICv2 registers.
    g.configure(&MPIDRS, 64);
    assert_eq!(g.version(), Version::V3);
    assert_eq!(dr(&mut g, gicd::CTLR), 0x50);
    assert_eq!(rr(&mut g, 0, gicr::ISENABLER0), 0, "SGIs not enabled at reset");
    assert_eq!(g.redist_read(rd(1, gicr::WAKER), 4), 6);
    assert_eq!(g.dist_read(2, gicd_v2::ITARGETSR, 4), 0, "RES0 with affinity routing");
    assert_eq!(g.dist_read(0, gicd_v2::PIDR2, 4), 0);
    assert_eq!(g.spi_state(40).unwrap().target, Some(0), "IROUTER 0 is vCPU 0");
    // A GICv3 ignores the accessing vCPU.
    dw(&mut g, gicd::ISENABLER + 4, 1);
    assert_eq!(g.dist_read(3, gicd::ISENABLER + 4, 4), 1);
    assert_eq!(g.dist_read(usize::MAX, gicd::ISENABLER + 4, 4), 1);
    assert_eq!(VGic::new().version(), Version::V3);
}

// ---------------------------------------------------------------------------
// GICv2 list registers.

#[test]
fn lr_to_v2_exact_words() {
    assert_eq!(Lr::INVALID.to_v2(), 0);
    assert_eq!(Lr::new(40, 0xA0, false).with_pending(true).to_v2(), 0x1A00_0028);
    assert_eq!(Lr::new(40, 0xA0, false).with_active(true).to_v2(), 0x2A00_0028);
    assert_eq!(Lr::new(40, 0xA0, true).with_pending(true).with_active(true).to_v2(), 0x7A00_0028);
    // HW: PhysicalID [19:10].
    assert_eq!(Lr::new(27, 0xF8, true).with_active(true).with_hw(27).to_v2(), 0xEF80_6C1B);
    assert_eq!(Lr::new(1019, 0x08, false).with_pending(true).with_hw(1019).to_v2(), 0x908F_EFFB);
    // Priority [27:23] is priority[7:3].
    assert_eq!(Lr::new(0, 0xFF, false).to_v2(), 0x0F80_0000);
    assert_eq!(Lr::new(0, 0x07, false).to_v2(), 0);
    // vINTID is 10 bits; the EOI bit (HW = 0) maps to bit 19.
    assert_eq!(Lr::new(0x7FF, 0, false).to_v2(), 0x3FF);
    assert_eq!(Lr(lr::EOI | 5).to_v2(), 1 << 19 | 5);
}

#[test]
fn lr_from_v2_exact_values() {
    assert_eq!(Lr::from_v2(0), Lr::INVALID);
    let lr = Lr::from_v2(0x1A00_0028);
    assert_eq!(lr, Lr::new(40, 0xA0, false).with_pending(true));
    assert_eq!(
        (lr.vintid(), lr.priority(), lr.group1(), lr.pending(), lr.active(), lr.hw()),
        (40, 0xA0, false, true, false, false)
    );
    let lr = Lr::from_v2(0xEF80_6C1B);
    assert_eq!(lr, Lr::new(27, 0xF8, true).with_active(true).with_hw(27));
    assert_eq!(lr.pintid(), 27);
    assert!(!lr.eoi());
    let lr = Lr::from_v2(0x3000_0000 | 1 << 19 | 3);
    assert!(lr.eoi() && lr.pending() && lr.active() && !lr.hw());
    assert_eq!(lr.0, lr::ACTIVE | lr::PENDING | lr::EOI | 3);
    // An SGI's CPUID [12:10] and the reserved bits are dropped.
    assert_eq!(Lr::from_v2(0x1000_0000 | 5 << 10 | 2), Lr::new(2, 0, false).with_pending(true));
    assert_eq!(Lr::from_v2(0x1070_0000 | 0x3F << 13 | 2), Lr::new(2, 0, false).with_pending(true));
}

#[test]
fn lr_v2_round_trips() {
    let mut count = 0;
    for vintid in [0, 1, 15, 16, 27, 31, 32, 287, 1019] {
        for priority in [0, 0x08, 0x80, 0xA0, 0xF8] {
            for group1 in [false, true] {
                for (pending, active) in [(false, false), (true, false), (false, true), (true, true)] {
                    for hw in [None, Some(vintid), Some(1019)] {
                        let mut lr = Lr::new(vintid, priority, group1).with_pending(pending).with_active(active);
                        if let Some(pintid) = hw {
                            lr = lr.with_hw(pintid);
                        }
                        let word = lr.to_v2();
                        assert_eq!(Lr::from_v2(word), lr, "{lr:x?} -> {word:#x}");
                        assert_eq!(Lr::from_v2(word).to_v2(), word);
                        count += 1;
                    }
                }
            }
        }
    }
    assert_eq!(count, 9 * 5 * 2 * 4 * 3);
    // Every word without reserved bits or a CPUID comes back the same.
    for state in 0..4u32 {
        for flags in 0..4u32 {
            for priority in [0u32, 1, 0x14, 0x1F] {
                for (id, eoi) in [(0u32, false), (40, true), (1019, false), (0x3FF, true)] {
                    let hw = flags & 2 != 0;
                    let middle = if hw {
                        id << 10
                    } else if eoi {
                        1 << 19
                    } else {
                        0
                    };
                    let word = flags << 30 | state << 28 | priority << 23 | middle | id;
                    assert_eq!(Lr::from_v2(word).to_v2(), word, "{word:#x}");
                }
            }
        }
    }
    // The model's priorities survive: it keeps as many bits as GICH_LR.
    assert_eq!(PRIORITY_BITS, gich_lr::PRIORITY_BITS);
    for priority in 0..=255u8 {
        let kept = priority & PRIORITY_MASK;
        assert_eq!(Lr::from_v2(Lr::new(32, kept, true).to_v2()).priority(), kept);
    }
}

#[test]
fn flushed_lrs_survive_the_v2_format() {
    // Whatever the model puts in a list register, a GICv2 host writes and
    // reads back unchanged: el2's GICH list registers convert both ways.
    let mut g = v2();
    v2_spi(&mut g, 40, 0xA0, 0b1);
    v2_spi(&mut g, 41, 0x38, 0b1);
    w2(&mut g, 0, gicd::IGROUPR + 4, 1 << 9);
    w2(&mut g, 0, gicd::CTLR, 3);
    g.set_pending(0, 40, false);
    g.set_pending(0, 41, true);
    w2(&mut g, 1, gicd_v2::SGIR, sgir(0, 0b1, 3));
    w2(&mut g, 0, gicd::ISENABLER, 1 << 27);
    g.set_pending(0, 27, true);
    let mut lrs = Fake::new(8);
    assert_eq!(g.flush(0, &mut lrs).used, 4);
    for index in 0..4 {
        let lr = lrs.lr(index);
        assert_eq!(Lr::from_v2(lr.to_v2()), lr, "{lr:x?}");
        // As el2 does: the hardware holds the v2 word.
        lrs.regs[index] = Lr::from_v2(lr.to_v2()).0;
    }
    let words: Vec<u32> = lrs.regs[..4].iter().map(|&v| Lr(v).to_v2()).collect();
    assert_eq!(words, vec![0x1000_0003, 0x9000_6C1B, 0xD380_A429, 0x1A00_0028]);
    lrs.ack(1);
    g.fold(0, &mut lrs);
    assert_eq!(r2(&mut g, 0, gicd::ISACTIVER), 1 << 27);
}

#[test]
fn hardware_interrupts_ended_by_el2_on_a_gicv2() {
    // The virtual timer's PPI, forwarded as itself, pending.
    let timer = Lr::new(27, 0xA0, false).with_pending(true).with_hw(27);
    let word = timer.to_v2_ended_by_el2();
    assert_eq!(word, 0x1A08_001B, "pending, priority 0xA0 >> 3, EOI, no HW, vINTID 27");
    assert_eq!(Lr::from_v2_ended_by_el2(word), timer, "the model gets its hardware interrupt back");
    assert!(!Lr::from_v2_ended_by_el2(word).ended_hw());
    // Active, then ended by the guest (state 0, EOI still set).
    let active = Lr::from_v2_ended_by_el2(0x2A08_001B);
    assert!(active.hw() && active.active() && !active.ended_hw());
    let ended = Lr::from_v2_ended_by_el2(0x0A08_001B);
    assert!(ended.ended_hw());
    assert_eq!(ended.pintid(), 27);
    // Anything else converts as before: a software interrupt, and a
    // hardware one forwarded under another INTID (which keeps its HW bit).
    let sgi = Lr::new(3, 0x80, true).with_pending(true);
    assert_eq!(sgi.to_v2_ended_by_el2(), sgi.to_v2());
    assert_eq!(Lr::from_v2_ended_by_el2(sgi.to_v2()), sgi);
    let moved = Lr::new(40, 0xA0, false).with_pending(true).with_hw(41);
    assert_eq!(moved.to_v2_ended_by_el2(), moved.to_v2());
    assert!(!Lr::from_v2_ended_by_el2(Lr::new(40, 0xA0, false).to_v2()).ended_hw());
}
