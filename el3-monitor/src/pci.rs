//! The PCI shim, which exposes memory-mapped devices to drivers by
//! emulating a PCI bus and its configuration space: MMIO devices the DTB
//! describes, presented as PCI functions whose BAR0 is the device's real
//! register window, served through Arm DEN0115 (`PCI_READ`, `PCI_WRITE`,
//! ...) SMCs.
//!
//! The config-space model and the call handling are `platform::pci`. This
//! module picks the devices the DTB has (the PL031 RTC and the Non-secure
//! PL061 GPIO; QEMU's virt board has the latter only with `acpi=off`, since
//! with firmware and ACPI it builds an ACPI event device in its place),
//! reads each one's PrimeCell part number from its own peripheral ID
//! registers (that is the function's device ID), and keeps the model.
//!
//! The same model answers a lower EL's access to the monitor's physical
//! ECAM window when the hardware routes its external abort to EL3
//! (`SCR_EL3.EA`, [`crate::ea`]); QEMU does not route it, so there EL2 makes
//! the DEN0115 calls instead.

use platform::board::{find_device, Board, Device};
use platform::pci::config::{ClassCode, ConfigSpace, Intx, ShimDevice};
use platform::pci::den0115::{self, PciCall, SegmentInfo};
use platform::pci::ecam::{EcamWindow, BUS_SIZE};
use spin::{Mutex, Once};

/// Devices presented as PCI functions, by DT `compatible`, in device order.
const SHIMMED: [&str; 2] = ["arm,pl031", "arm,pl061"];
/// Buses the segment has: 0 (the functions) and 1 (empty), so that a
/// bus past the functions' one is answered, not refused.
const LAST_BUS: u8 = 1;
/// PrimeCell peripheral ID registers 0 and 1, from the window's start.
const PERIPH_ID0: u64 = 0xfe0;
const PERIPH_ID1: u64 = 0xfe4;
/// The PrimeCell component ID registers, and what every PrimeCell's read.
const COMPONENT_ID: [u64; 4] = [0xff0, 0xff4, 0xff8, 0xffc];
const PRIMECELL_ID: [u32; 4] = [0x0d, 0xf0, 0x05, 0xb1];

static SPACE: Mutex<ConfigSpace<4>> = Mutex::new(ConfigSpace::new());
/// The physical ECAM window of the external-abort path.
static EA_WINDOW: Once<EcamWindow> = Once::new();

/// The physical window whose external aborts EL3 serves: buses 0 to
/// [`LAST_BUS`] at the first boundary of the window's size past the highest
/// RAM. The DTB names no such hole, so this picks one that is unbacked on
/// QEMU `virt` (its RAM region runs on to 256 GiB, backed only as far as
/// `-m`) and past every RAM region on any board; a board whose CPU does
/// route the abort should name its window in its device tree instead.
/// `None` if the window would not fit below the top of the address space.
fn ea_window_for(board: &Board) -> Option<EcamWindow> {
    let size = (u64::from(LAST_BUS) + 1) * BUS_SIZE;
    let ram_end = board.ram.as_slice().iter().map(|region| region.end()).max()?;
    EcamWindow::new(ram_end.checked_next_multiple_of(size)?, 0, LAST_BUS)
}

/// The physical ECAM window whose external aborts EL3 serves, once
/// [`init`] has chosen it.
pub fn ea_window() -> Option<EcamWindow> {
    EA_WINDOW.get().copied()
}

/// A PrimeCell's part number (PeriphID0 [7:0], PeriphID1 [3:0]), if the
/// device answers and identifies as a PrimeCell. A DTB may name a device
/// the machine lacks: the reads are probes that survive the abort.
fn part_number(device: &Device) -> Option<u16> {
    let read = |offset: u64| {
        // SAFETY: an ID register of a device the DTB describes (reading it
        // has no side effects), with EL3's MMU off (the Secure address space
        // includes the Non-secure devices); the monitor's vector recovers
        // the probe if nothing is there.
        unsafe { platform::arch::probe::read_u32((device.window.base + offset) as usize) }
    };
    for (offset, expected) in COMPONENT_ID.iter().zip(PRIMECELL_ID) {
        if read(*offset)? & 0xff != expected {
            return None;
        }
    }
    Some(((read(PERIPH_ID0)? & 0xff) | ((read(PERIPH_ID1)? & 0xf) << 8)) as u16)
}

/// Builds the functions from the DTB. Devices that are absent or do not fit
/// the model are logged and left out. Chooses the external-abort window.
pub fn init(dtb: &[u8], board: &Board) {
    if let Some(window) = ea_window_for(board) {
        let window = EA_WINDOW.call_once(|| window);
        log::info!(
            "PCI: external aborts in [{:#x}, {:#x}) are served at EL3 (SCR_EL3.EA) as ECAM buses 0..={LAST_BUS}",
            window.base(),
            window.base() + window.size()
        );
    }
    let mut space = SPACE.lock();
    for compatible in SHIMMED {
        let device = match find_device(dtb, compatible) {
            Ok(Some(device)) => device,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("PCI shim: {compatible}: {e}");
                continue;
            }
        };
        let Some(part) = part_number(&device) else {
            log::warn!("PCI shim: {compatible} at {}: no PrimeCell answers there, left out", device.window);
            continue;
        };
        // INTx A, routed (as the guest's interrupt-map will say) to the
        // device's own SPI; the line register carries its INTID.
        let irq = device.irq.map(|irq| Intx { pin: 1, line: irq.intid as u8 });
        let added = ShimDevice::new(part, ClassCode::for_primecell(part), device.window.base, device.window.size, irq)
            .and_then(|shim| space.add(shim));
        match added {
            Ok(bdf) => log::info!("PCI shim: {compatible} at {} as {bdf}, device ID {part:#06x}", device.window),
            Err(e) => log::warn!("PCI shim: {compatible}: {e}"),
        }
    }
}

/// Answers a DEN0115 call; the results for x0..x3.
pub fn smc(function: u32, args: [u64; 4]) -> [u64; 4] {
    den0115::dispatch(function, args, &mut SPACE.lock(), &SegmentInfo::new(LAST_BUS))
}

/// Serves a config access decoded from an external abort: the same model
/// and checks as the `PCI_READ`/`PCI_WRITE` SMC; the results for x0..x3.
pub fn serve(call: PciCall) -> [u64; 4] {
    den0115::handle(call, &mut SPACE.lock(), &SegmentInfo::new(LAST_BUS))
}
