//! A Linux guest: the kernel, initrd and command line a user gives QEMU
//! (`-kernel Image -initrd initrd -append "..."`), which reach firmware
//! through fw_cfg, loaded into guest RAM by the arm64 boot protocol
//! (`platform::linux`). Without `-kernel` the built-in guest-stub runs.

use crate::mm::layout::{phys_to_virt, virt_to_phys};
use alloc::boxed::Box;
use alloc::string::String;
use platform::board::MemRegion;
use platform::fw_cfg::{self, DmaAccess, FwCfg, FwCfgError};
use platform::linux::{ImageHeader, LinuxError, Placement, HEADER_SIZE};

/// The longest command line we pass on.
const CMDLINE_MAX: usize = 4096;

/// A kernel loaded into guest RAM.
pub struct Loaded {
    pub placement: Placement,
    pub cmdline: String,
    pub kernel_size: u64,
}

#[derive(Debug)]
pub enum LoadError {
    FwCfg(FwCfgError),
    Kernel(LinuxError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::FwCfg(e) => write!(f, "Linux guest: {e}"),
            Self::Kernel(e) => write!(f, "Linux guest refused: {e}"),
        }
    }
}

/// Loads the `-kernel` QEMU was given into guest RAM `ram`, with its
/// initrd; `None` if there is no kernel.
pub fn load(fw_cfg_window: Option<MemRegion>, ram: MemRegion) -> Result<Option<Loaded>, LoadError> {
    let Some(window) = fw_cfg_window else { return Ok(None) };
    // SAFETY: the fw_cfg window from the DTB, mapped as Device memory in
    // the direct map (`tables.rs`); the boot CPU alone uses it, now.
    let fw = unsafe { FwCfg::new(phys_to_virt(window.base) as usize) }.map_err(LoadError::FwCfg)?;
    let kernel_size = u64::from(fw.read_u32(fw_cfg::FW_CFG_KERNEL_SIZE));
    if kernel_size == 0 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_SIZE];
    fw.read_item(fw_cfg::FW_CFG_KERNEL_DATA, &mut header);
    let image = ImageHeader::parse(&header, kernel_size).map_err(LoadError::Kernel)?;
    let initrd_size = u64::from(fw.read_u32(fw_cfg::FW_CFG_INITRD_SIZE));
    let placement =
        platform::linux::place(ram, &image, (initrd_size != 0).then_some(initrd_size)).map_err(LoadError::Kernel)?;

    let mut descriptor = Box::new(DmaAccess::default());
    let descriptor_pa = virt_to_phys(&*descriptor as *const DmaAccess as u64);
    // SAFETY: both destinations lie in guest RAM (checked by `place`),
    // which nothing runs in yet; the descriptor is ours, at the PA given.
    unsafe {
        fw.dma_read(
            fw_cfg::FW_CFG_KERNEL_DATA,
            kernel_size as u32,
            placement.kernel.base,
            &mut descriptor,
            descriptor_pa,
        )
        .map_err(LoadError::FwCfg)?;
        if let Some(initrd) = placement.initrd {
            fw.dma_read(fw_cfg::FW_CFG_INITRD_DATA, initrd.size as u32, initrd.base, &mut descriptor, descriptor_pa)
                .map_err(LoadError::FwCfg)?;
        }
        core::arch::asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack));
    }
    let cmdline_size = (fw.read_u32(fw_cfg::FW_CFG_CMDLINE_SIZE) as usize).min(CMDLINE_MAX);
    let mut bytes = alloc::vec![0u8; cmdline_size];
    fw.read_item(fw_cfg::FW_CFG_CMDLINE_DATA, &mut bytes);
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    let cmdline = String::from_utf8_lossy(text).into_owned();
    Ok(Some(Loaded { placement, cmdline, kernel_size }))
}
