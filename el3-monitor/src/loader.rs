//! Verifying the firmware package and placing the hypervisor in
//! Non-secure RAM.
//!
//! The package is where the board's memory file says (`boot::package_start`):
//! on virt it follows the monitor in the Secure flash, on zcu102 QEMU's
//! loader put it in DDR. Either way it must lie in memory the DTB describes
//! (flash or RAM), which bounds what is read. Its header, table and every
//! payload are checked (`platform::package`) before a byte is copied. The
//! hypervisor goes near the top of the highest RAM region, so it moves when
//! the RAM size does; next to it go a copy of the guest-stub and the
//! [`Handoff`] record. Nothing is placed over the DTB or a reserved range.

use platform::board::Board;
use platform::handoff::{Handoff, LoadedImage, PhysRange};
use platform::package::{EntryKind, Package, PackageError, PACKAGE_ALIGN};

/// Why the hypervisor could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The package's address is in no flash or RAM region of the DTB.
    NoPackageMemory {
        at: u64,
    },
    Package(PackageError),
    /// The DTB describes no Non-secure RAM.
    NoRam,
    /// RAM is smaller than the hypervisor's block (image, guest-stub copy,
    /// handoff record).
    RamTooSmall {
        need: u64,
        ram: PhysRange,
    },
    /// The images do not fit below the top of RAM without overlapping
    /// something.
    NoRoom {
        need: u64,
        what: &'static str,
    },
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoPackageMemory { at } => {
                write!(f, "the firmware package at {at:#x} is in no flash or RAM region of the DTB")
            }
            Self::Package(e) => write!(f, "{e}"),
            Self::NoRam => write!(f, "the DTB describes no Non-secure RAM"),
            Self::RamTooSmall { need, ram } => write!(
                f,
                "RAM too small for the hypervisor: it needs {need:#x} bytes at the top of RAM, which is only [{:#x}, {:#x})",
                ram.base,
                ram.end()
            ),
            Self::NoRoom { need, what } => {
                write!(f, "no room for the hypervisor: {need:#x} bytes at the top of RAM would overlap {what}")
            }
        }
    }
}

impl From<PackageError> for LoadError {
    fn from(e: PackageError) -> Self {
        Self::Package(e)
    }
}

const PAGE: u64 = 4096;
const BLOCK_ALIGN: u64 = 2 * 1024 * 1024;

const fn align_up(value: u64, align: u64) -> u64 {
    (value + align - 1) & !(align - 1)
}

const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Where things went.
pub struct Loaded {
    pub entry: u64,
    pub handoff: u64,
    pub hypervisor: PhysRange,
}

/// Verifies the package at the first `PACKAGE_ALIGN` boundary at or after
/// `start`, reading no further than the end of the DTB's flash or RAM
/// region that holds it.
pub fn find_package(board: &Board, start: u64) -> Result<Package<'static>, LoadError> {
    let offset = align_up(start, PACKAGE_ALIGN as u64);
    let memory = [&board.secure_flash, &board.flash, &board.secure_ram, &board.ram];
    let region = memory
        .into_iter()
        .flat_map(|list| list.iter())
        .find(|r| r.contains(offset))
        .ok_or(LoadError::NoPackageMemory { at: offset })?;
    let end = region.end();
    // SAFETY: [offset, end) lies in flash or RAM the DTB names, which EL3
    // reads directly (MMU off); nothing writes it while the monitor reads
    // the package (the other CPUs wait in the pen, no lower EL runs yet).
    let bytes = unsafe { core::slice::from_raw_parts(offset as usize as *const u8, (end - offset) as usize) };
    let package = Package::parse(bytes)?;
    package.require(EntryKind::Hypervisor)?;
    package.require(EntryKind::GuestStub)?;
    Ok(package)
}

/// Places the hypervisor, the guest-stub copy and the handoff record at the
/// top of RAM, clear of the DTB, reserved memory and the package itself
/// (which may be in RAM).
pub fn load(board: &Board, package: &Package, dtb: PhysRange) -> Result<Loaded, LoadError> {
    let hv = package.require(EntryKind::Hypervisor)?;
    let stub = package.require(EntryKind::GuestStub)?;
    let ram = board.ram.iter().max_by_key(|r| r.end()).ok_or(LoadError::NoRam)?;

    let top = align_down(ram.end(), PAGE);
    let handoff_base = top - PAGE;
    let stub_len = stub.payload.len() as u64;
    let stub_base = align_down(handoff_base.saturating_sub(stub_len), PAGE);
    let hv_align = hv.load.align.max(BLOCK_ALIGN);
    let hv_base = align_down(stub_base.saturating_sub(hv.load.mem_size), hv_align);
    let reserved = PhysRange { base: hv_base, size: top - hv_base };

    let overlaps = |base: u64, size: u64| base < reserved.end() && reserved.base < base + size;
    if hv_base < ram.base {
        return Err(LoadError::RamTooSmall { need: reserved.size, ram: PhysRange { base: ram.base, size: ram.size } });
    }
    if overlaps(dtb.base, dtb.size) {
        return Err(LoadError::NoRoom { need: reserved.size, what: "the DTB" });
    }
    if board.reserved.iter().any(|r| overlaps(r.base, r.size)) {
        return Err(LoadError::NoRoom { need: reserved.size, what: "a reserved-memory range" });
    }
    let source = package.as_bytes();
    if overlaps(source.as_ptr() as usize as u64, source.len() as u64) {
        return Err(LoadError::NoRoom { need: reserved.size, what: "the firmware package" });
    }

    // SAFETY: [hv_base, top) is Non-secure RAM that nothing else uses yet
    // (checked above against the DTB and reserved ranges); EL3 writes it
    // with its MMU off, so the writes reach memory directly.
    unsafe {
        let dst = hv_base as usize as *mut u8;
        core::ptr::copy_nonoverlapping(hv.payload.as_ptr(), dst, hv.payload.len());
        core::ptr::write_bytes(dst.add(hv.payload.len()), 0, (hv.load.mem_size - hv.payload.len() as u64) as usize);
        core::ptr::copy_nonoverlapping(stub.payload.as_ptr(), stub_base as usize as *mut u8, stub.payload.len());
    }
    let image = |bytes: PhysRange, load: platform::package::LoadHints| LoadedImage {
        bytes,
        mem_size: load.mem_size,
        entry_offset: load.entry_offset,
        align: load.align,
    };
    let hypervisor = image(PhysRange { base: hv_base, size: hv.payload.len() as u64 }, hv.load);
    let guest_stub = image(PhysRange { base: stub_base, size: stub_len }, stub.load);
    let handoff = Handoff::new(dtb, reserved, hypervisor, guest_stub);
    // SAFETY: handoff_base is the last page of the block reserved above.
    unsafe { core::ptr::write_volatile(handoff_base as usize as *mut Handoff, handoff) };

    // The hypervisor's code was written as data: make sure no stale
    // instructions are fetched for it.
    // SAFETY: instruction-cache invalidation has no memory-safety effect.
    unsafe { core::arch::asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack)) };

    Ok(Loaded {
        entry: hv_base + hv.load.entry_offset,
        handoff: handoff_base,
        hypervisor: PhysRange { base: hv_base, size: hv.load.mem_size },
    })
}
