//! The guest's PCI host bridge: an ECAM window in its IPA space, emulated
//! by forwarding each config access to the secure monitor with the Arm
//! DEN0115 calls, so that memory-mapped devices appear as PCI functions.
//! On QEMU a lower EL's access to an unbacked address is not routed to EL3
//! (QEMU takes it at the faulting EL whatever `SCR_EL3.EA` says), so EL2 takes the stage-2 fault and makes the call; the
//! monitor keeps the one config-space model.
//!
//! Devices from [`crate::vm::vpci::FIRST_DEVICE`] on are the
//! hypervisor's own functions (portals, the VM control function), which
//! EL2 emulates itself ([`crate::vm::vpci`]); in a VM without the shim
//! functions devices below that are absent and read all-ones.
//!
//! EL2's own enumeration uses the same calls: it finds the functions'
//! BAR0 windows, which stage 2 passes through so the guest's driver reaches
//! the real device registers.
//!
//! Stage 2 follows the BARs: after every config write to a function's
//! command register or BAR0/BAR1, EL2 reads where the function now decodes
//! and moves the window's mapping there (its IPA changes, the physical
//! device stays). A window is mapped only where `platform::stage2::
//! check_window` allows it: inside the IPA space and over a hole, never on
//! top of guest RAM, an emulated device or another window. What a window
//! reaches is always its own device, so a guest that points a BAR at the
//! physical address of the hypervisor's or the secure world's memory sees
//! the device there, and nothing else. A refused place leaves the window
//! unmapped (the guest's accesses there fault) and is logged.

use alloc::vec::Vec;
use platform::board::MemRegion;
use platform::mmio::{MmioDevice, MmioFault};
use platform::pci::config::{bar, command, offset};
use platform::pci::den0115::{Sbdf, PCI_READ, PCI_WRITE};
use platform::pci::{Bdf, DEVICES_PER_BUS};
use smccc::smc32;
use spin::Mutex;

/// Buses the window covers: 0 (the functions) and 1 (empty).
pub const BUSES: u64 = 2;
pub const BUS_SIZE: u64 = 1 << 20;
/// DEN0115's success status.
const SUCCESS: u32 = 0;

fn sbdf(bdf: Bdf) -> u32 {
    Sbdf { segment: 0, bdf }.to_u32()
}

/// A config read through the monitor; all-ones (as an absent function
/// reads) if the call refuses it.
fn read(bdf: Bdf, reg: u16, size: u8) -> u32 {
    let reply = smc32(PCI_READ, [sbdf(bdf), reg.into(), size.into(), 0, 0, 0, 0]);
    if reply[0] == SUCCESS {
        reply[1]
    } else {
        u32::MAX >> (32 - 8 * u32::from(size))
    }
}

fn write(bdf: Bdf, reg: u16, size: u8, value: u32) {
    // A refused write is ignored, as PCI drops an unsupported write.
    let _ = smc32(PCI_WRITE, [sbdf(bdf), reg.into(), size.into(), value, 0, 0, 0]);
}

/// Splits a window offset into function and register.
fn decode(offset: u64) -> Option<(Bdf, u16)> {
    let bus = u8::try_from(offset >> 20).ok()?;
    Bdf::new(bus, ((offset >> 15) & 0x1f) as u8, ((offset >> 12) & 0x7) as u8).map(|bdf| (bdf, (offset & 0xfff) as u16))
}

/// Who answers a config access.
enum Target {
    /// The monitor's shim functions (the VM that owns them).
    Monitor,
    /// One of the hypervisor's own functions (its device number).
    Own(u8),
    /// Nothing: the function is absent.
    Absent,
}

/// The ECAM window of VM `vm` as an emulated device.
pub struct Ecam {
    pub vm: usize,
}

impl Ecam {
    fn target(&self, bdf: Bdf) -> (Option<&'static crate::vm::Vm>, Target) {
        let vm = crate::vm::get(self.vm);
        let target = match vm {
            Some(_) if bdf.bus() == 0 && bdf.device() >= crate::vm::vpci::FIRST_DEVICE => Target::Own(bdf.device()),
            Some(vm) if vm.recipe.owns_shim => Target::Monitor,
            _ => Target::Absent,
        };
        (vm, target)
    }
}

impl MmioDevice for Ecam {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        let mask = if size >= 8 { u64::MAX } else { (1u64 << (8 * size)) - 1 };
        let Some((bdf, reg)) = decode(offset) else { return Ok(mask) };
        // Config space has no 8-byte accesses: they read all-ones.
        let Some(access) = platform::pci::AccessSize::from_bytes(u64::from(size)) else { return Ok(mask) };
        match self.target(bdf) {
            (_, Target::Monitor) => Ok(u64::from(read(bdf, reg, size)) & mask),
            (Some(vm), Target::Own(device)) if bdf.function() == 0 => {
                Ok(u64::from(crate::vm::vpci::config_read(vm, device, reg, access)) & mask)
            }
            _ => Ok(mask),
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        let Some((bdf, reg)) = decode(offset) else { return Ok(()) };
        let Some(access) = platform::pci::AccessSize::from_bytes(u64::from(size)) else { return Ok(()) };
        match self.target(bdf) {
            (_, Target::Monitor) => {}
            (Some(vm), Target::Own(device)) if bdf.function() == 0 => {
                crate::vm::vpci::config_write(vm, device, reg, access, value as u32);
                return Ok(());
            }
            _ => return Ok(()),
        }
        write(bdf, reg, size, value as u32);
        let written = u32::from(reg)..u32::from(reg) + u32::from(size);
        let decoding = [offset::COMMAND..offset::COMMAND + 2, offset::BAR0..offset::BAR1 + 4];
        if decoding.iter().any(|r| u32::from(r.start) < written.end && written.start < u32::from(r.end)) {
            follow_bar(bdf);
        }
        Ok(())
    }

    /// A misaligned config access is forwarded too: the monitor refuses it
    /// (`INVALID_PARAMETER`), so it reads all-ones and a write is dropped,
    /// as PCI answers an unsupported request.
    fn accepts_misaligned(&self) -> bool {
        true
    }
}

/// The functions on bus 0 and their BAR0 windows (base, size), found with
/// the same calls the guest's accesses become.
/// A function's legacy interrupt as the host bridge routes it: its device
/// number, its pin (1 = INTA) and the GIC INTID the monitor wrote into its
/// interrupt line register (the device's SPI, from the DTB).
#[derive(Clone, Copy, Debug)]
pub struct Intx {
    pub device: u8,
    pub pin: u8,
    pub intid: u32,
}

/// The shim functions' legacy interrupts (those with a pin and an SPI).
pub fn interrupts() -> Vec<Intx> {
    let mut found = Vec::new();
    for device in 0..DEVICES_PER_BUS {
        let Some(bdf) = Bdf::new(0, device, 0) else { continue };
        if read(bdf, offset::VENDOR_ID, 2) == 0xffff {
            continue;
        }
        let pin = read(bdf, offset::INTERRUPT_PIN, 1) as u8;
        let intid = read(bdf, offset::INTERRUPT_LINE, 1);
        if pin != 0 && intid >= platform::vgic::SPI_BASE {
            found.push(Intx { device, pin, intid });
        }
    }
    found
}

/// A function's BAR0 window: the device's registers, and where stage 2
/// shows them to the guest now (`None`: nowhere).
struct BarWindow {
    bdf: Bdf,
    device: MemRegion,
    mapped_at: Option<u64>,
    /// The last place refused, so that it is logged once.
    refused: Option<u64>,
}

/// The PCI view of the VM that has the host bridge (`crate::vm::Vm::pci`):
/// where each function's window is in its IPA space, and what a moved
/// window must not cover.
pub struct BarWindows {
    windows: Mutex<Vec<BarWindow>>,
    /// Guest RAM and the other windows the VM has (emulated devices, the
    /// console), fixed at boot.
    taken: Vec<MemRegion>,
    /// Refused BAR places so far (the first few are logged).
    refusals: core::sync::atomic::AtomicU64,
}

/// How many refused BAR places are logged.
const LOGGED_REFUSALS: u64 = 8;

/// Starts following, for `vm`, the BARs of `windows` (from [`enumerate`],
/// identity mapped by stage 2); `taken` is everything else in its IPA map.
pub fn follow_bars(vm: &crate::vm::Vm, windows: &[(Bdf, MemRegion)], taken: Vec<MemRegion>) {
    vm.pci.call_once(|| BarWindows {
        windows: Mutex::new(
            windows
                .iter()
                .map(|&(bdf, device)| BarWindow { bdf, device, mapped_at: Some(device.base), refused: None })
                .collect(),
        ),
        taken,
        refusals: core::sync::atomic::AtomicU64::new(0),
    });
}

/// Where `bdf` decodes memory now, as its config space says.
fn decoded_window(bdf: Bdf) -> Option<u64> {
    let decoding = read(bdf, offset::COMMAND, 2) & u32::from(command::MEMORY_SPACE) != 0;
    let low = read(bdf, offset::BAR0, 4) & !bar::TYPE_MASK;
    let high = read(bdf, offset::BAR1, 4);
    decoding.then_some((u64::from(high) << 32) | u64::from(low))
}

/// Moves `bdf`'s window in stage 2 to where its BAR and command register
/// now put it (module documentation).
fn follow_bar(bdf: Bdf) {
    // Only the VM that owns the host bridge has the window on its bus.
    let Some((vm, _)) = crate::vm::current() else { return };
    let Some(view) = vm.pci.get() else { return };
    let mut bars = view.windows.lock();
    let Some(index) = bars.iter().position(|w| w.bdf == bdf) else { return };
    let wanted = decoded_window(bdf);
    let Some(window) = bars.get(index) else { return };
    if window.mapped_at == wanted
        || (window.mapped_at.is_none() && window.refused.is_some() && window.refused == wanted)
    {
        return;
    }
    let (device, old) = (window.device, window.mapped_at);
    if let Some(old) = old {
        if let Err(e) = vm.stage2.lock().unmap(old, old + device.size) {
            log::error!("PCI {bdf}: BAR0 window at IPA {old:#x} not unmapped: {e}");
            return;
        }
    }
    let others =
        bars.iter().filter(|w| w.bdf != bdf).filter_map(|w| w.mapped_at.map(|at| MemRegion::new(at, w.device.size)));
    let taken: Vec<MemRegion> = view.taken.iter().copied().chain(others).collect();
    let mut refused = None;
    let ipa_end = vm.stage2.lock().ipa_end();
    let mapped_at = wanted.and_then(|ipa| {
        let place = MemRegion::new(ipa, device.size);
        match platform::stage2::check_window(place, ipa_end, &taken) {
            Ok(()) => match vm.stage2.lock().map_device(ipa, device.base, device.size) {
                Ok(()) => Some(ipa),
                Err(e) => {
                    log::error!("PCI {bdf}: BAR0 window not mapped at IPA {ipa:#x}: {e}");
                    None
                }
            },
            Err(why) => {
                // A guest can refuse-loop forever: the first few are
                // logged, the rest counted.
                let refusals = view.refusals.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                if refusals < LOGGED_REFUSALS {
                    log::warn!("PCI {bdf}: BAR0 set to {place}: not mapped there ({why})");
                } else if refusals == LOGGED_REFUSALS {
                    log::warn!("PCI: further BAR0 places not mapped are not logged");
                }
                refused = Some(ipa);
                None
            }
        }
    });
    match mapped_at {
        Some(ipa) if ipa != device.base => log::info!("PCI {bdf}: BAR0 window (device {device}) now at IPA {ipa:#x}"),
        _ => log::debug!(
            "PCI {bdf}: BAR0 window {}",
            if mapped_at.is_some() { "back at the device" } else { "not decoded" }
        ),
    }
    if let Some(window) = bars.get_mut(index) {
        window.mapped_at = mapped_at;
        window.refused = refused;
    }
}

pub fn enumerate() -> Vec<(Bdf, MemRegion)> {
    let mut windows = Vec::new();
    for device in 0..DEVICES_PER_BUS {
        let Some(bdf) = Bdf::new(0, device, 0) else { continue };
        if read(bdf, offset::VENDOR_ID, 2) == 0xffff {
            continue;
        }
        let low = read(bdf, offset::BAR0, 4);
        let high = read(bdf, offset::BAR1, 4);
        // Size the BAR the way any PCI enumerator does, then restore it.
        write(bdf, offset::BAR0, 4, u32::MAX);
        let mask = read(bdf, offset::BAR0, 4);
        write(bdf, offset::BAR0, 4, low);
        let base = (u64::from(high) << 32) | u64::from(low & !bar::TYPE_MASK);
        let size = u64::from(!(mask & !bar::TYPE_MASK)).wrapping_add(1) & 0xffff_ffff;
        if size != 0 {
            windows.push((bdf, MemRegion::new(base, size)));
        }
    }
    windows
}
