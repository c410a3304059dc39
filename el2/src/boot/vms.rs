//! Where the VM descriptions come from: QEMU's fw_cfg file
//! `opt/hv/vms.dtb` (a small DTB whose `/chosen` holds the `hv,vm` nodes,
//! so a QEMU user needs no DTB editing), else the host DTB's own `/chosen`
//! (how a board's boot loader passes them). `platform::board::vms` reads
//! them.

use alloc::vec::Vec;
use platform::board::MemRegion;
use platform::fw_cfg::{FwCfg, FwCfgError};

const FW_CFG_FILE: &str = "opt/hv/vms.dtb";
/// Largest VM-description DTB read from fw_cfg.
const MAX_SIZE: u32 = 64 * 1024;

/// Where the descriptions were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    FwCfg,
    HostDtb,
}

impl Source {
    pub const fn describe(self) -> &'static str {
        match self {
            Self::FwCfg => "fw_cfg opt/hv/vms.dtb",
            Self::HostDtb => "the device tree's /chosen",
        }
    }
}

#[derive(Debug)]
pub enum VmsError {
    FwCfg(FwCfgError),
    TooLarge(u32),
}

impl core::fmt::Display for VmsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::FwCfg(e) => write!(f, "{FW_CFG_FILE}: {e}"),
            Self::TooLarge(size) => write!(f, "{FW_CFG_FILE} is {size} bytes, over {MAX_SIZE}"),
        }
    }
}

/// The bytes of the DTB holding the VM descriptions: fw_cfg's file if
/// QEMU was given one, else the host DTB (`host`, in the direct map).
/// They live for the whole run (a VM restarting reads its description's
/// strings again).
pub fn source(fw_cfg: Option<MemRegion>, host: MemRegion) -> Result<(&'static [u8], Source), VmsError> {
    if let Some(window) = fw_cfg {
        // SAFETY: the fw_cfg window from the DTB, mapped as Device memory
        // in the direct map; only the boot CPU uses it, now.
        if let Ok(fw) = unsafe { FwCfg::new(crate::arch::layout::phys_to_virt(window.base) as usize) } {
            match fw.find(FW_CFG_FILE) {
                Ok(file) if file.size > MAX_SIZE => return Err(VmsError::TooLarge(file.size)),
                Ok(file) => {
                    let mut bytes: Vec<u8> = alloc::vec![0; file.size as usize];
                    fw.read_file(FW_CFG_FILE, &mut bytes).map_err(VmsError::FwCfg)?;
                    return Ok((bytes.leak(), Source::FwCfg));
                }
                Err(FwCfgError::NotFound) => {}
                Err(e) => return Err(VmsError::FwCfg(e)),
            }
        }
    }
    // SAFETY: the host DTB, which the monitor placed in RAM that stays
    // reserved (the memory plan keeps it out of every VM), in the direct
    // map; nothing writes it.
    let bytes = unsafe {
        core::slice::from_raw_parts(crate::arch::layout::phys_to_virt(host.base) as *const u8, host.size as usize)
    };
    Ok((bytes, Source::HostDtb))
}
