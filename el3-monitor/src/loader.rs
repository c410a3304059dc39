//! Verifying the firmware package and placing the hypervisor in
//! Non-secure RAM.
//!
//! The package is where the board's memory file says (`boot::package_start`):
//! on virt it follows the monitor in the Secure flash, on zcu102 QEMU's
//! loader put it in DDR. Either way it must lie in memory the DTB describes
//! (flash or RAM), which bounds what is read. Its header, table and every
//! payload are checked (`platform::package`) before a byte is copied.
//!
//! Everything the hypervisor keeps goes into one block at the top of the
//! highest RAM region, so it moves when the RAM size does. From the top
//! down: the [`Handoff`] record (a page), then a copy of each of the
//! guest-stub, the hypervisor's command line, the Linux command line, the
//! initrd and the Linux kernel that the package has (each at a page
//! boundary), then the hypervisor image (its `mem_size`, at its alignment
//! and at least 2 MiB). The hypervisor takes the whole block out of the RAM
//! it hands to its heap and its guests, so none of it is ever given away.
//! Nothing is placed over the DTB, a reserved range or the package itself,
//! and a block that does not fit in that region is refused, naming what it
//! holds.
//!
//! The data entries are copied even where the package already lies in
//! Non-secure RAM (zcu102): the package's RAM is free once the monitor has
//! read it (the hypervisor gives it to its guest), while the hypervisor
//! needs the kernel and initrd for as long as it runs, since a VM that
//! restarts is loaded again from them after its RAM was cleared. One block
//! that the hypervisor reserves, the same on every board, is simpler and
//! safer than a second reservation wherever a board's loader happened to
//! put the package (and on virt the package is in Secure flash, which EL2
//! cannot read at all).

use platform::board::Board;
use platform::handoff::{DataEntries, Handoff, LoadedImage, PhysRange};
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
    /// The highest RAM region is smaller than the hypervisor's block
    /// (image, copies, handoff record).
    RamTooSmall {
        need: u64,
        ram: PhysRange,
        /// What the block holds: bytes per kind, in `EntryKind::ALL`
        /// order (0: not in the package).
        parts: [u64; EntryKind::ALL.len()],
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
            Self::RamTooSmall { need, ram, parts } => {
                write!(f, "RAM too small for the hypervisor: it needs {need:#x} bytes at the top of RAM (")?;
                for (kind, bytes) in EntryKind::ALL.iter().zip(parts).filter(|(_, &b)| b != 0) {
                    write!(f, "{kind} {bytes:#x}, ")?;
                }
                write!(f, "handoff record {PAGE:#x}), which is only [{:#x}, {:#x})", ram.base, ram.end())
            }
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
    /// The data entries' copies.
    pub data: DataEntries,
}

/// The copies below the handoff record, top down.
const COPIES: [EntryKind; 5] = [
    EntryKind::GuestStub,
    EntryKind::HvCmdline,
    EntryKind::LinuxCmdline,
    EntryKind::LinuxInitrd,
    EntryKind::LinuxKernel,
];

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

/// Places the hypervisor, the copies and the handoff record at the top of
/// RAM (the module's layout), clear of the DTB, reserved memory and the
/// package itself (which may be in RAM).
pub fn load(board: &Board, package: &Package, dtb: PhysRange) -> Result<Loaded, LoadError> {
    let hv = package.require(EntryKind::Hypervisor)?;
    package.require(EntryKind::GuestStub)?;
    let ram = board.ram.iter().max_by_key(|r| r.end()).ok_or(LoadError::NoRam)?;
    let ram = PhysRange { base: ram.base, size: ram.size };

    // What the block holds, for the refusal: page-rounded copies, the
    // hypervisor's memory size.
    let mut parts = [0u64; EntryKind::ALL.len()];
    for (kind, part) in EntryKind::ALL.iter().zip(parts.iter_mut()) {
        if let Some(e) = package.entry(*kind) {
            *part =
                if *kind == EntryKind::Hypervisor { e.load.mem_size } else { align_up(e.payload.len() as u64, PAGE) };
        }
    }
    let too_small =
        || LoadError::RamTooSmall { need: parts.iter().fold(PAGE, |sum, p| sum.saturating_add(*p)), ram, parts };

    // Top down, each step checked against the bottom of the region.
    let below = |cursor: u64, size: u64, align: u64| {
        cursor.checked_sub(size).map(|base| align_down(base, align)).filter(|&base| base >= ram.base)
    };
    let top = align_down(ram.end(), PAGE);
    let handoff_base = below(top, PAGE, PAGE).ok_or_else(too_small)?;
    let mut copies = [PhysRange::default(); COPIES.len()];
    let mut cursor = handoff_base;
    for (kind, copy) in COPIES.iter().zip(copies.iter_mut()) {
        if let Some(e) = package.entry(*kind) {
            let size = e.payload.len() as u64;
            cursor = below(cursor, size, PAGE).ok_or_else(too_small)?;
            *copy = PhysRange { base: cursor, size };
        }
    }
    let hv_base = below(cursor, hv.load.mem_size, hv.load.align.max(BLOCK_ALIGN)).ok_or_else(too_small)?;
    let reserved = PhysRange { base: hv_base, size: top - hv_base };

    let overlaps = |base: u64, size: u64| base < reserved.end() && reserved.base < base.saturating_add(size);
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
    // (checked above against the DTB, reserved ranges and the package);
    // the copies lie in it, apart, each as long as its payload; EL3 writes
    // it with its MMU off, so the writes reach memory directly.
    unsafe {
        let dst = hv_base as usize as *mut u8;
        core::ptr::copy_nonoverlapping(hv.payload.as_ptr(), dst, hv.payload.len());
        core::ptr::write_bytes(dst.add(hv.payload.len()), 0, (hv.load.mem_size - hv.payload.len() as u64) as usize);
        for (kind, copy) in COPIES.iter().zip(copies) {
            if let Some(e) = package.entry(*kind) {
                core::ptr::copy_nonoverlapping(e.payload.as_ptr(), copy.base as usize as *mut u8, e.payload.len());
            }
        }
    }
    let [stub_copy, hv_cmdline, linux_cmdline, linux_initrd, linux_kernel] = copies;
    let image = |bytes: PhysRange, load: platform::package::LoadHints| LoadedImage {
        bytes,
        mem_size: load.mem_size,
        entry_offset: load.entry_offset,
        align: load.align,
    };
    let hypervisor = image(PhysRange { base: hv_base, size: hv.payload.len() as u64 }, hv.load);
    let guest_stub = image(stub_copy, package.require(EntryKind::GuestStub)?.load);
    let data = DataEntries { linux_kernel, linux_initrd, linux_cmdline, hv_cmdline };
    let handoff = Handoff::new(dtb, reserved, hypervisor, guest_stub, data);
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
        data,
    })
}
