//! Property tests of the virtual GICv3 model (`platform::vgic`): a guest
//! chooses every register access (offset, width, value), which interrupts
//! fire, which SGIs it sends, and what it does with its list registers
//! between a flush and a fold.
//!
//! Bounded: each property runs 256 cases (`common::config`; override with
//! `PROPTEST_CASES`; `PROPTEST_RNG_SEED` reproduces a run).
//!
//! Properties:
//! - no sequence of operations panics, and after each one no INTID sits in
//!   two valid list registers (an SPI in two vCPUs' or one vCPU's twice; an
//!   SGI or PPI twice in one vCPU's), a flush writes only list registers
//!   below `count()` and reports exactly the valid ones it wrote, and every
//!   valid list register names a presented INTID with an implemented
//!   priority and, if HW, pINTID = vINTID;
//! - a flush followed by a fold with the list registers untouched leaves
//!   everything the guest can read unchanged, and two flushes in a row
//!   write the same list registers;
//! - with a guest that acknowledges and EOIs everything it is given, every
//!   enabled interrupt made pending once is delivered exactly once, on the
//!   vCPU it belongs to, and then nothing is left.

use std::collections::{BTreeMap, BTreeSet};

use platform::vgic::{gicd, gicr, ListRegs, Lr, VGic, GICD_SIZE, GICR_SGI_BASE, GICR_STRIDE, PRIORITY_MASK, SPI_BASE};
use proptest::prelude::*;

mod common;
use common::config;

/// A list-register file that fails the test on any access beyond its
/// count.
#[derive(Clone, Debug)]
struct Fake {
    regs: Vec<u64>,
}

impl Fake {
    fn new(count: usize) -> Self {
        Self { regs: vec![0; count] }
    }

    fn valid(&self) -> impl Iterator<Item = (usize, Lr)> + '_ {
        self.regs.iter().map(|&v| Lr(v)).enumerate().filter(|(_, lr)| lr.pending() || lr.active())
    }

    /// What a guest can do to an LR: acknowledge (pending -> active), EOI
    /// (active -> inactive), both, or nothing.
    fn guest_step(&mut self, index: usize, step: u8) {
        let lr = Lr(self.regs[index]);
        let lr = match step % 4 {
            1 if lr.pending() && !lr.active() => lr.with_pending(false).with_active(true),
            2 if lr.active() => lr.with_active(false),
            3 if lr.pending() && !lr.active() => lr.with_pending(false),
            _ => lr,
        };
        self.regs[index] = if lr.pending() || lr.active() { lr.0 } else { 0 };
    }
}

impl ListRegs for Fake {
    fn count(&self) -> usize {
        self.regs.len()
    }
    fn read(&self, index: usize) -> u64 {
        assert!(index < self.regs.len(), "LR {index} read, count {}", self.regs.len());
        self.regs[index]
    }
    fn write(&mut self, index: usize, value: u64) {
        assert!(index < self.regs.len(), "LR {index} written, count {}", self.regs.len());
        self.regs[index] = value;
    }
}

#[derive(Clone, Debug)]
enum Op {
    DistRead(u64, u8),
    DistWrite(u64, u8, u64),
    RedistRead(u64, u8),
    RedistWrite(u64, u8, u64),
    SetPending(usize, u32, bool),
    SendSgi(usize, u64),
    /// Flush a vCPU and leave it "running" with its LRs loaded.
    Flush(usize),
    Fold(usize),
    /// The guest on a vCPU acts on its LRs, one step per LR.
    Guest(usize, Vec<u8>),
}

/// Offsets that hit registers often, and anything at all sometimes.
fn dist_offset() -> impl Strategy<Value = u64> {
    let registers = prop::sample::select(vec![
        gicd::CTLR,
        gicd::TYPER,
        gicd::IGROUPR,
        gicd::ISENABLER,
        gicd::ICENABLER,
        gicd::ISPENDR,
        gicd::ICPENDR,
        gicd::ISACTIVER,
        gicd::ICACTIVER,
        gicd::IPRIORITYR,
        gicd::ICFGR,
        gicd::IROUTER,
    ]);
    prop_oneof![
        4 => (registers, 0u64..0x140).prop_map(|(base, delta)| base + delta),
        1 => 0..GICD_SIZE,
        1 => any::<u64>(),
    ]
}

fn redist_offset() -> impl Strategy<Value = u64> {
    let registers = prop::sample::select(vec![
        gicr::WAKER,
        gicr::TYPER,
        GICR_SGI_BASE + gicr::IGROUPR0,
        GICR_SGI_BASE + gicr::ISENABLER0,
        GICR_SGI_BASE + gicr::ICENABLER0,
        GICR_SGI_BASE + gicr::ISPENDR0,
        GICR_SGI_BASE + gicr::ICPENDR0,
        GICR_SGI_BASE + gicr::ISACTIVER0,
        GICR_SGI_BASE + gicr::ICACTIVER0,
        GICR_SGI_BASE + gicr::IPRIORITYR0,
        GICR_SGI_BASE + gicr::ICFGR0,
    ]);
    prop_oneof![
        4 => (0u64..5, registers, 0u64..0x24).prop_map(|(v, reg, delta)| v * GICR_STRIDE + reg + delta),
        1 => 0..5 * GICR_STRIDE,
        1 => any::<u64>(),
    ]
}

fn size() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(4u8), 2 => prop::sample::select(vec![1u8, 8]), 1 => any::<u8>()]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), Just(u64::MAX), Just(0), (0u32..64).prop_map(|b| 1 << b)]
}

fn intid() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..SPI_BASE + 80, 1 => any::<u32>()]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (dist_offset(), size()).prop_map(|(o, s)| Op::DistRead(o, s)),
        4 => (dist_offset(), size(), value()).prop_map(|(o, s, v)| Op::DistWrite(o, s, v)),
        1 => (redist_offset(), size()).prop_map(|(o, s)| Op::RedistRead(o, s)),
        3 => (redist_offset(), size(), value()).prop_map(|(o, s, v)| Op::RedistWrite(o, s, v)),
        4 => (0usize..5, intid(), any::<bool>()).prop_map(|(v, i, hw)| Op::SetPending(v, i, hw)),
        2 => (0usize..5, any::<u64>()).prop_map(|(v, r)| Op::SendSgi(v, r)),
        3 => (0usize..5).prop_map(Op::Flush),
        3 => (0usize..5).prop_map(Op::Fold),
        3 => (0usize..5, prop::collection::vec(any::<u8>(), 16)).prop_map(|(v, s)| Op::Guest(v, s)),
    ]
}

/// Affinities at several levels, some sharing Aff0.
const MPIDRS: [u64; 4] = [0x0, 0x1, 0x100, 0x1_0000_0001];

/// A model as Linux leaves it after boot: groups enabled, SPIs group 1 and
/// enabled, routed round-robin; SGIs and PPIs group 1 and enabled.
fn linux_like(vcpus: usize, spis: usize) -> VGic {
    let mut g = VGic::new();
    g.configure(&MPIDRS[..vcpus], spis);
    g.dist_write(0, gicd::CTLR, 4, 3);
    for word in 1..=8 {
        g.dist_write(0, gicd::IGROUPR + 4 * word, 4, u64::MAX);
        g.dist_write(0, gicd::ISENABLER + 4 * word, 4, u64::MAX);
    }
    for intid in 32..288u64 {
        let route = MPIDRS[(intid as usize) % vcpus];
        g.dist_write(0, gicd::IROUTER + 8 * intid, 8, route);
    }
    for vcpu in 0..vcpus as u64 {
        let sgi = vcpu * GICR_STRIDE + GICR_SGI_BASE;
        g.redist_write(sgi + gicr::IGROUPR0, 4, u64::MAX);
        g.redist_write(sgi + gicr::ISENABLER0, 4, u64::MAX);
        g.redist_write(vcpu * GICR_STRIDE + gicr::WAKER, 4, 0);
    }
    g
}

fn setup() -> impl Strategy<Value = (VGic, usize)> {
    (1usize..=4, prop::sample::select(vec![0usize, 32, 40, 64, 256, 300]), any::<bool>()).prop_map(
        |(vcpus, spis, linux)| {
            let g = if linux {
                linux_like(vcpus, spis)
            } else {
                let mut g = VGic::new();
                g.configure(&MPIDRS[..vcpus], spis);
                g
            };
            (g, vcpus)
        },
    )
}

/// Checks the list registers of all vCPUs: no INTID twice, every entry
/// well-formed.
fn check_lrs(g: &VGic, lrs: &[Fake]) -> Result<(), TestCaseError> {
    let mut spis = BTreeSet::new();
    for (vcpu, file) in lrs.iter().enumerate() {
        let mut own = BTreeSet::new();
        for (index, lr) in file.valid() {
            let intid = lr.vintid();
            prop_assert!(own.insert(intid), "vCPU {vcpu}: INTID {intid} twice (LR {index})");
            if intid >= SPI_BASE {
                prop_assert!(spis.insert(intid), "SPI {intid} in two vCPUs' LRs");
                prop_assert!(g.spi_state(intid).is_some(), "SPI {intid} not presented");
            }
            prop_assert!(vcpu < g.vcpus(), "LRs filled for vCPU {vcpu} of {}", g.vcpus());
            prop_assert_eq!(lr.priority() & !PRIORITY_MASK, 0);
            prop_assert!(!lr.hw() || lr.pintid() == intid);
        }
    }
    Ok(())
}

/// Everything the guest can read that the list-register cache could
/// disturb.
fn snapshot(g: &mut VGic, vcpus: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for base in [gicd::ISPENDR, gicd::ISACTIVER, gicd::ISENABLER, gicd::IGROUPR] {
        for word in 0..10 {
            out.push(g.dist_read(0, base + 4 * word, 4));
        }
    }
    for vcpu in 0..vcpus as u64 {
        let sgi = vcpu * GICR_STRIDE + GICR_SGI_BASE;
        for reg in [gicr::ISPENDR0, gicr::ISACTIVER0, gicr::ISENABLER0] {
            out.push(g.redist_read(sgi + reg, 4));
        }
    }
    out.extend((0..vcpus).map(|vcpu| u64::from(g.has_work(vcpu))));
    out
}

fn apply(g: &mut VGic, lrs: &mut [Fake], op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::DistRead(offset, size) => {
            let value = g.dist_read(0, *offset, *size);
            if *size < 8 && size.is_power_of_two() {
                prop_assert_eq!(value >> (8 * u32::from(*size)), 0, "read wider than its size");
            }
        }
        Op::DistWrite(offset, size, value) => {
            let kick = g.dist_write(0, *offset, *size, *value).kick;
            prop_assert_eq!(kick >> g.vcpus(), 0, "kick of a vCPU that does not exist");
        }
        Op::RedistRead(offset, size) => {
            let value = g.redist_read(*offset, *size);
            if *size < 8 && size.is_power_of_two() {
                prop_assert_eq!(value >> (8 * u32::from(*size)), 0, "read wider than its size");
            }
        }
        Op::RedistWrite(offset, size, value) => {
            let kick = g.redist_write(*offset, *size, *value).kick;
            prop_assert_eq!(kick >> g.vcpus(), 0);
        }
        Op::SetPending(vcpu, intid, hw) => {
            let kick = g.set_pending(*vcpu, *intid, *hw);
            prop_assert_eq!(kick >> g.vcpus(), 0);
            prop_assert!(kick.count_ones() <= 1);
        }
        Op::SendSgi(sender, sgi1r) => {
            let targets = g.send_sgi(*sender, *sgi1r);
            prop_assert_eq!(targets >> g.vcpus(), 0);
        }
        Op::Flush(vcpu) => {
            if let Some(file) = lrs.get_mut(*vcpu) {
                let flush = g.flush(*vcpu, file);
                prop_assert!(flush.used <= file.count());
                let valid: Vec<usize> = file.valid().map(|(i, _)| i).collect();
                prop_assert_eq!(valid, (0..flush.used).collect::<Vec<_>>());
                prop_assert!(file.regs[flush.used..].iter().all(|&v| v == 0));
            }
        }
        Op::Fold(vcpu) => {
            if let Some(file) = lrs.get_mut(*vcpu) {
                let kick = g.fold(*vcpu, file);
                prop_assert_eq!(kick & (1 << vcpu), 0, "fold kicks only others");
                prop_assert_eq!(kick >> g.vcpus(), 0);
                prop_assert_eq!(file.valid().count(), 0, "fold leaves no valid LR");
            }
        }
        Op::Guest(vcpu, steps) => {
            if let Some(file) = lrs.get_mut(*vcpu) {
                for (index, step) in steps.iter().enumerate().take(file.count()) {
                    file.guest_step(index, *step);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn operations_never_panic_and_keep_lrs_consistent(
        (mut g, vcpus) in setup(),
        count in 1usize..=17,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut lrs: Vec<Fake> = (0..vcpus).map(|_| Fake::new(count)).collect();
        for op in &ops {
            apply(&mut g, &mut lrs, op)?;
            check_lrs(&g, &lrs)?;
        }
    }

    #[test]
    fn untouched_flush_and_fold_change_nothing(
        (mut g, vcpus) in setup(),
        count in 1usize..=16,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut lrs: Vec<Fake> = (0..vcpus).map(|_| Fake::new(count)).collect();
        for op in &ops {
            apply(&mut g, &mut lrs, op)?;
        }
        for (vcpu, file) in lrs.iter_mut().enumerate() {
            g.fold(vcpu, file);
        }
        for (vcpu, file) in lrs.iter_mut().enumerate() {
            let before = snapshot(&mut g, vcpus);
            let first = g.flush(vcpu, file);
            let loaded = file.regs.clone();
            let again = g.flush(vcpu, file);
            prop_assert_eq!(first, again);
            prop_assert_eq!(&loaded, &file.regs, "a second flush picks the same");
            g.fold(vcpu, file);
            prop_assert_eq!(before, snapshot(&mut g, vcpus));
        }
    }

    #[test]
    fn cooperative_guest_gets_each_interrupt_once(
        vcpus in 1usize..=4,
        spis in prop::sample::select(vec![32usize, 64, 256]),
        count in 1usize..=6,
        priorities in prop::collection::vec(any::<u8>(), 288),
        pends in prop::collection::btree_set((0usize..4, 0u32..288), 0..60),
        hw in any::<bool>(),
    ) {
        let mut g = linux_like(vcpus, spis);
        for (intid, priority) in priorities.iter().enumerate() {
            g.dist_write(0, gicd::IPRIORITYR + intid as u64, 1, u64::from(*priority));
            if intid < 32 {
                for vcpu in 0..vcpus as u64 {
                    let sgi = vcpu * GICR_STRIDE + GICR_SGI_BASE;
                    g.redist_write(sgi + gicr::IPRIORITYR0 + intid as u64, 1, u64::from(*priority));
                }
            }
        }
        // Whom each pended interrupt belongs to.
        let mut expected = BTreeMap::new();
        for &(vcpu, intid) in &pends {
            let owner = if intid < SPI_BASE {
                (vcpu < vcpus).then_some(vcpu)
            } else {
                g.spi_state(intid).and_then(|s| s.target)
            };
            g.set_pending(vcpu, intid, hw);
            if let Some(owner) = owner {
                *expected.entry((owner, intid)).or_insert(0) += 1;
            }
        }
        // SPIs pended from several vCPUs are still one interrupt.
        for count in expected.values_mut() {
            *count = 1;
        }

        let mut lrs: Vec<Fake> = (0..vcpus).map(|_| Fake::new(count)).collect();
        let mut delivered = BTreeMap::new();
        let mut rounds = 0;
        while (0..vcpus).any(|vcpu| g.has_work(vcpu)) {
            rounds += 1;
            prop_assert!(rounds <= 300, "no progress");
            for (vcpu, file) in lrs.iter_mut().enumerate() {
                let flush = g.flush(vcpu, file);
                let mut last: Option<u8> = None;
                for (index, lr) in file.valid().collect::<Vec<_>>() {
                    prop_assert!(lr.pending() && !lr.active());
                    prop_assert_eq!(lr.hw(), hw);
                    // Highest priority first.
                    prop_assert!(last.is_none_or(|p| p <= lr.priority()));
                    last = Some(lr.priority());
                    *delivered.entry((vcpu, lr.vintid())).or_insert(0) += 1;
                    file.guest_step(index, 1); // acknowledge
                    file.guest_step(index, 2); // EOI
                }
                prop_assert_eq!(flush.overflow, g.has_work(vcpu) && flush.used == count);
                g.fold(vcpu, file);
            }
        }
        prop_assert_eq!(delivered, expected);
    }
}
