//! The guest's virtual GIC (`platform::vgic`), as a GICv3 or a GICv2: an
//! MMIO device model whose every register access, SGI and list-register
//! state the guest chooses.

use arbitrary::Unstructured;
use platform::vgic::{
    gicd, gicd_v2, gicr, ListRegs, Lr, VGic, GICD_SIZE, GICR_SGI_BASE, GICR_STRIDE, MAX_LRS, MAX_VCPUS, SPI_BASE,
};

use crate::{below, pick_or_any, take};

/// A list-register file that fails on any access beyond its count.
struct Lrs(Vec<u64>);

impl ListRegs for Lrs {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn read(&self, index: usize) -> u64 {
        *self.0.get(index).unwrap_or_else(|| panic!("LR {index} read, count {}", self.0.len()))
    }
    fn write(&mut self, index: usize, value: u64) {
        let count = self.0.len();
        *self.0.get_mut(index).unwrap_or_else(|| panic!("LR {index} written, count {count}")) = value;
    }
}

const DIST: &[u64] = &[
    gicd::CTLR,
    gicd::TYPER,
    gicd::IIDR,
    gicd::IGROUPR,
    gicd::ISENABLER,
    gicd::ICENABLER,
    gicd::ISPENDR,
    gicd::ICPENDR,
    gicd::ISACTIVER,
    gicd::ICACTIVER,
    gicd::IPRIORITYR,
    gicd::ICFGR,
    gicd::IGRPMODR,
    gicd::IROUTER,
    gicd_v2::ITARGETSR,
    gicd_v2::SGIR,
    gicd_v2::CPENDSGIR,
    gicd_v2::SPENDSGIR,
    gicd_v2::ID_BASE,
];
const REDIST: &[u64] = &[
    gicr::CTLR,
    gicr::TYPER,
    gicr::WAKER,
    gicr::PIDR2,
    GICR_SGI_BASE + gicr::IGROUPR0,
    GICR_SGI_BASE + gicr::ISENABLER0,
    GICR_SGI_BASE + gicr::ICENABLER0,
    GICR_SGI_BASE + gicr::ISPENDR0,
    GICR_SGI_BASE + gicr::ICPENDR0,
    GICR_SGI_BASE + gicr::ISACTIVER0,
    GICR_SGI_BASE + gicr::ICACTIVER0,
    GICR_SGI_BASE + gicr::IPRIORITYR0,
    GICR_SGI_BASE + gicr::ICFGR1,
];

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let vcpus = 1 + below(&mut u, 4);
    let mpidrs: Vec<u64> = (0..vcpus).map(|i| if take::<u8>(&mut u) < 240 { i as u64 } else { take(&mut u) }).collect();
    let spis = below(&mut u, 70);
    let mut gic = VGic::new();
    if take(&mut u) {
        gic.configure_v2(vcpus, spis);
    } else {
        gic.configure(&mpidrs, spis);
    }
    assert_eq!((gic.vcpus(), gic.spis()), (vcpus.min(MAX_VCPUS), spis));
    let mut lrs: Vec<Lrs> = (0..vcpus).map(|_| Lrs(vec![0; 1 + below(&mut u, MAX_LRS + 2)])).collect();

    for _ in 0..128 {
        if u.is_empty() {
            break;
        }
        let size = [1u8, 2, 4, 8, take(&mut u)][below(&mut u, 5)];
        let vcpu = below(&mut u, vcpus + 1);
        match take::<u8>(&mut u) % 9 {
            0 => {
                let offset =
                    pick_or_any(&mut u, DIST).wrapping_add(if take(&mut u) { below(&mut u, 0x100) as u64 } else { 0 });
                let _ = gic.dist_read(vcpu, offset % if take(&mut u) { GICD_SIZE } else { u64::MAX }, size);
            }
            1 | 2 => {
                let offset = pick_or_any(&mut u, DIST).wrapping_add(below(&mut u, 0x100) as u64);
                kicks(gic.dist_write(vcpu, offset, size, take(&mut u)).kick, vcpus);
            }
            3 => {
                let offset = pick_or_any(&mut u, REDIST).wrapping_add(vcpu as u64 * GICR_STRIDE);
                let _ = gic.redist_read(offset, size);
            }
            4 => {
                let offset =
                    pick_or_any(&mut u, REDIST).wrapping_add(vcpu as u64 * GICR_STRIDE + below(&mut u, 0x40) as u64);
                kicks(gic.redist_write(offset, size, take(&mut u)).kick, vcpus);
            }
            5 => {
                let intid = below(&mut u, SPI_BASE as usize + spis + 4) as u32;
                kicks(gic.set_pending(vcpu, intid, take(&mut u)), vcpus);
            }
            6 => kicks(gic.send_sgi(vcpu, take(&mut u)), vcpus),
            7 => {
                if let Some(file) = lrs.get_mut(vcpu) {
                    let flush = gic.flush(vcpu, file);
                    check_flush(file, flush.used, spis);
                }
            }
            _ => {
                if let Some(file) = lrs.get_mut(vcpu) {
                    // The guest acknowledges, completes or drops what it holds.
                    for lr in file.0.iter_mut() {
                        let l = Lr(*lr);
                        *lr = match take::<u8>(&mut u) % 4 {
                            1 if l.pending() => l.with_pending(false).with_active(true).0,
                            2 => l.with_active(false).0,
                            _ => *lr,
                        };
                    }
                    kicks(gic.fold(vcpu, file), vcpus);
                    let _ = gic.has_work(vcpu);
                }
            }
        }
        // No INTID is in flight twice: an SPI in one list register of one
        // vCPU at most, an SGI or PPI once per vCPU.
        let mut spis_held = Vec::new();
        for file in &lrs {
            let mut held = Vec::new();
            for lr in file.0.iter().map(|&v| Lr(v)).filter(|lr| lr.pending() || lr.active()) {
                assert!(!held.contains(&lr.vintid()), "vINTID {} twice in one vCPU", lr.vintid());
                held.push(lr.vintid());
                if lr.vintid() >= SPI_BASE {
                    assert!(!spis_held.contains(&lr.vintid()), "SPI {} in two vCPUs", lr.vintid());
                    spis_held.push(lr.vintid());
                }
            }
        }
        for intid in SPI_BASE..SPI_BASE + spis as u32 + 2 {
            if let Some(state) = gic.spi_state(intid) {
                assert!(intid < SPI_BASE + spis as u32);
                assert!(state.target.is_none_or(|t| t < vcpus));
            }
        }
    }
}

fn kicks(mask: u64, vcpus: usize) {
    assert_eq!(mask >> vcpus, 0, "kick {mask:#x} names a vCPU that does not exist ({vcpus})");
}

fn check_flush(file: &Lrs, used: usize, spis: usize) {
    assert!(used <= file.0.len().min(MAX_LRS));
    for (i, lr) in file.0.iter().map(|&v| Lr(v)).enumerate() {
        let valid = lr.pending() || lr.active();
        assert_eq!(valid, i < used, "LR {i} of {used} used: {lr:?}");
        if valid {
            assert!(lr.vintid() < SPI_BASE + spis as u32, "{lr:?}");
            if lr.hw() {
                assert_eq!(lr.pintid(), lr.vintid());
            }
            // What a GICv2 host's list registers would hold comes back the same.
            assert_eq!(Lr::from_v2(lr.to_v2()), lr, "{lr:?} as GICH_LR {:#x}", lr.to_v2());
        }
    }
}
