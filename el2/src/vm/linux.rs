//! A Linux guest: the kernel, initrd and command line a user gives QEMU
//! (`-kernel Image -initrd initrd -append "..."`), or the fw_cfg files a VM
//! description names, which reach firmware through fw_cfg, or the ones the
//! firmware package carries, which the monitor copied into the block it
//! reserved for us (where no guest reaches them, so a VM that restarts
//! gets them again); loaded into guest RAM by the arm64 boot protocol
//! (`platform::linux`).

use crate::arch::layout::{phys_to_virt, virt_to_phys};
use alloc::boxed::Box;
use alloc::string::String;
use platform::board::MemRegion;
use platform::fw_cfg::{self, DmaAccess, FwCfg, FwCfgError};
use platform::linux::{ImageHeader, LinuxError, Placement, HEADER_SIZE};

/// The longest command line we pass on.
const CMDLINE_MAX: usize = 4096;

/// Where a kernel and initrd come from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// QEMU's `-kernel`, `-initrd` and `-append` (fw_cfg's standard items).
    Qemu,
    /// fw_cfg files (`-fw_cfg name=opt/hv/a/kernel,file=Image`).
    Files { kernel: &'a str, initrd: Option<&'a str> },
    /// The firmware package's.
    Package(&'a Packaged),
}

/// The firmware package's Linux guest, as the monitor copied it
/// (`platform::handoff::DataEntries`).
#[derive(Clone, Debug)]
pub struct Packaged {
    /// The kernel `Image`'s bytes.
    pub kernel: MemRegion,
    pub initrd: Option<MemRegion>,
    /// Its command line ("" if the package has none).
    pub cmdline: String,
}

impl Packaged {
    /// The package's Linux guest from the handoff record, if it has a
    /// kernel.
    pub fn from_handoff(data: &platform::handoff::DataEntries) -> Option<Self> {
        let region = |r: platform::handoff::PhysRange| (r.size != 0).then(|| MemRegion::new(r.base, r.size));
        let cmdline = region(data.linux_cmdline).map_or(String::new(), |r| {
            // SAFETY: the copy lies in the block the monitor reserved for
            // us (`Handoff::validate`), in the direct map, never written.
            let bytes = unsafe { core::slice::from_raw_parts(phys_to_virt(r.base) as *const u8, r.size as usize) };
            String::from_utf8_lossy(bytes).into_owned()
        });
        Some(Self { kernel: region(data.linux_kernel)?, initrd: region(data.linux_initrd), cmdline })
    }
}

/// A kernel loaded into guest RAM.
pub struct Loaded {
    pub placement: Placement,
    /// The command line QEMU was given with `-append` (QEMU's items), or
    /// the package's; `None` for fw_cfg files.
    pub cmdline: Option<String>,
    pub kernel_size: u64,
}

#[derive(Debug)]
pub enum LoadError {
    FwCfg(FwCfgError),
    /// A named fw_cfg file is not there.
    Missing(String),
    Kernel(LinuxError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::FwCfg(e) => write!(f, "Linux guest: {e}"),
            Self::Missing(name) => {
                write!(f, "fw_cfg file `{name}` not found (was QEMU given -fw_cfg name={name},file=...?)")
            }
            Self::Kernel(e) => write!(f, "Linux guest refused: {e}"),
        }
    }
}

/// fw_cfg is one device, and VMs may restart at once on several CPUs.
static FW_CFG: spin::Mutex<()> = spin::Mutex::new(());

/// An item to read: its selector and size.
fn item(fw: &FwCfg, name: &str) -> Result<(u16, u64), LoadError> {
    match fw.find(name) {
        Ok(file) => Ok((file.select, u64::from(file.size))),
        Err(FwCfgError::NotFound) => Err(LoadError::Missing(String::from(name))),
        Err(e) => Err(LoadError::FwCfg(e)),
    }
}

/// Whether QEMU was given a `-kernel`.
pub fn qemu_has_kernel(fw_cfg_window: Option<MemRegion>) -> bool {
    let Some(window) = fw_cfg_window else { return false };
    let _only = FW_CFG.lock();
    // SAFETY: as in `load`.
    let Ok(fw) = (unsafe { FwCfg::new(phys_to_virt(window.base) as usize) }) else { return false };
    fw.read_u32(fw_cfg::FW_CFG_KERNEL_SIZE) != 0
}

/// Loads the kernel (and initrd) `source` names into guest RAM `ram`;
/// `None` if QEMU was given no `-kernel` (for [`Source::Qemu`]).
pub fn load(fw_cfg_window: Option<MemRegion>, ram: MemRegion, source: Source) -> Result<Option<Loaded>, LoadError> {
    // The package's needs no fw_cfg (nor its lock).
    if let Source::Package(packaged) = source {
        return load_packaged(ram, packaged).map(Some);
    }
    let Some(window) = fw_cfg_window else {
        return match source {
            Source::Qemu => Ok(None),
            Source::Files { kernel, .. } => Err(LoadError::Missing(String::from(kernel))),
            Source::Package(packaged) => load_packaged(ram, packaged).map(Some),
        };
    };
    let _only = FW_CFG.lock();
    // SAFETY: the fw_cfg window from the DTB, mapped as Device memory in
    // the direct map (`tables.rs`); `FW_CFG` keeps its users one at a time.
    let fw = unsafe { FwCfg::new(phys_to_virt(window.base) as usize) }.map_err(LoadError::FwCfg)?;
    let ((kernel_key, kernel_size), initrd) = match source {
        Source::Qemu => {
            let kernel_size = u64::from(fw.read_u32(fw_cfg::FW_CFG_KERNEL_SIZE));
            if kernel_size == 0 {
                return Ok(None);
            }
            let initrd_size = u64::from(fw.read_u32(fw_cfg::FW_CFG_INITRD_SIZE));
            (
                (fw_cfg::FW_CFG_KERNEL_DATA, kernel_size),
                (initrd_size != 0).then_some((fw_cfg::FW_CFG_INITRD_DATA, initrd_size)),
            )
        }
        Source::Files { kernel, initrd } => (item(&fw, kernel)?, initrd.map(|name| item(&fw, name)).transpose()?),
        Source::Package(packaged) => return load_packaged(ram, packaged).map(Some),
    };
    let mut header = [0u8; HEADER_SIZE];
    fw.read_item(kernel_key, &mut header);
    let image = ImageHeader::parse(&header, kernel_size).map_err(LoadError::Kernel)?;
    let placement = platform::linux::place(ram, &image, initrd.map(|(_, size)| size)).map_err(LoadError::Kernel)?;

    let mut descriptor = Box::new(DmaAccess::default());
    let descriptor_pa = virt_to_phys(&*descriptor as *const DmaAccess as u64);
    // SAFETY: both destinations lie in guest RAM (checked by `place`),
    // which nothing runs in yet; the descriptor is ours, at the PA given.
    unsafe {
        fw.dma_read(kernel_key, kernel_size as u32, placement.kernel.base, &mut descriptor, descriptor_pa)
            .map_err(LoadError::FwCfg)?;
        if let (Some(region), Some((key, _))) = (placement.initrd, initrd) {
            fw.dma_read(key, region.size as u32, region.base, &mut descriptor, descriptor_pa)
                .map_err(LoadError::FwCfg)?;
        }
        core::arch::asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack));
    }
    let cmdline = match source {
        Source::Qemu => {
            let cmdline_size = (fw.read_u32(fw_cfg::FW_CFG_CMDLINE_SIZE) as usize).min(CMDLINE_MAX);
            let mut bytes = alloc::vec![0u8; cmdline_size];
            fw.read_item(fw_cfg::FW_CFG_CMDLINE_DATA, &mut bytes);
            let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
            Some(String::from_utf8_lossy(text).into_owned())
        }
        Source::Files { .. } | Source::Package(_) => None,
    };
    Ok(Some(Loaded { placement, cmdline, kernel_size }))
}

/// Loads the package's kernel and initrd into guest RAM `ram` from the
/// monitor's copies, as [`load`] does from fw_cfg.
fn load_packaged(ram: MemRegion, packaged: &Packaged) -> Result<Loaded, LoadError> {
    let bytes = |r: MemRegion| {
        // SAFETY: the copies lie in the block the monitor reserved for us
        // (`Handoff::validate`), in the direct map; nothing writes them,
        // and no guest RAM overlaps them (free RAM excludes the block).
        unsafe { core::slice::from_raw_parts(phys_to_virt(r.base) as *const u8, r.size as usize) }
    };
    let kernel = bytes(packaged.kernel);
    let image = ImageHeader::parse(kernel, packaged.kernel.size).map_err(LoadError::Kernel)?;
    let placement = platform::linux::place(ram, &image, packaged.initrd.map(|r| r.size)).map_err(LoadError::Kernel)?;
    // SAFETY: both destinations lie in guest RAM (checked by `place`),
    // reached through the direct map, and nothing runs in that VM yet;
    // the sources are the copies above, outside guest RAM.
    unsafe {
        core::ptr::copy_nonoverlapping(kernel.as_ptr(), phys_to_virt(placement.kernel.base) as *mut u8, kernel.len());
        if let (Some(to), Some(from)) = (placement.initrd, packaged.initrd) {
            let initrd = bytes(from);
            core::ptr::copy_nonoverlapping(initrd.as_ptr(), phys_to_virt(to.base) as *mut u8, initrd.len());
        }
        core::arch::asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack));
    }
    Ok(Loaded { placement, cmdline: Some(packaged.cmdline.clone()), kernel_size: packaged.kernel.size })
}
