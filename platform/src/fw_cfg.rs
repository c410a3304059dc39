//! QEMU's firmware configuration device (`qemu,fw-cfg-mmio`): how the
//! hypervisor reads its command line (`opt/hv/cmdline`, set with
//! `-fw_cfg name=opt/hv/cmdline,string="..."`).
//!
//! This uses the traditional selector/data interface, which is enough for
//! small items. The directory format is parsed by pure functions that the
//! host tests check; the MMIO access is a thin layer over them.

/// Selector keys (QEMU docs/specs/fw_cfg.rst).
const FW_CFG_SIGNATURE: u16 = 0x0000;
const FW_CFG_FILE_DIR: u16 = 0x0019;
/// What the signature item reads as.
const SIGNATURE: [u8; 4] = *b"QEMU";
/// MMIO register offsets: data (read bytes in order), selector (big-endian).
const DATA: usize = 0x0;
const SELECTOR: usize = 0x8;
/// A directory entry: be32 size, be16 select, be16 reserved, name[56].
const DIR_ENTRY_SIZE: usize = 64;
const NAME_LEN: usize = 56;

/// A file in the fw_cfg directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub select: u16,
    pub size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwCfgError {
    /// The device did not answer with the QEMU signature.
    NoDevice,
    /// No file of that name.
    NotFound,
    /// The file is larger than the buffer given for it.
    TooLarge { size: u32, capacity: usize },
}

impl core::fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoDevice => write!(f, "fw_cfg device does not answer with the QEMU signature"),
            Self::NotFound => write!(f, "no such fw_cfg file"),
            Self::TooLarge { size, capacity } => {
                write!(f, "fw_cfg file is {size} bytes, more than the {capacity} expected")
            }
        }
    }
}

/// Looks `name` up in one directory entry's bytes.
pub fn match_dir_entry(entry: &[u8; DIR_ENTRY_SIZE], name: &str) -> Option<FileRef> {
    let (size, rest) = entry.split_first_chunk::<4>()?;
    let (select, rest) = rest.split_first_chunk::<2>()?;
    let raw_name = rest.get(2..)?;
    let len = raw_name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
    if raw_name.get(..len)? != name.as_bytes() {
        return None;
    }
    Some(FileRef { size: u32::from_be_bytes(*size), select: u16::from_be_bytes(*select) })
}

/// The fw_cfg device at an MMIO base.
pub struct FwCfg {
    base: usize,
}

impl FwCfg {
    /// # Safety
    ///
    /// `base` must be the address of a `qemu,fw-cfg-mmio` register window
    /// in the current translation regime, used by nothing else meanwhile.
    pub unsafe fn new(base: usize) -> Result<Self, FwCfgError> {
        let fw_cfg = Self { base };
        let mut signature = [0u8; 4];
        fw_cfg.select(FW_CFG_SIGNATURE);
        fw_cfg.read_into(&mut signature);
        if signature != SIGNATURE {
            return Err(FwCfgError::NoDevice);
        }
        Ok(fw_cfg)
    }

    fn select(&self, key: u16) {
        // SAFETY: `new`'s contract: base + SELECTOR is the selector register.
        unsafe { core::ptr::write_volatile(self.base.wrapping_add(SELECTOR) as *mut u16, key.to_be()) }
    }

    fn read_into(&self, buf: &mut [u8]) {
        for byte in buf {
            // SAFETY: `new`'s contract: base + DATA is the data register.
            *byte = unsafe { core::ptr::read_volatile(self.base.wrapping_add(DATA) as *const u8) };
        }
    }

    /// Finds a file in the directory.
    pub fn find(&self, name: &str) -> Result<FileRef, FwCfgError> {
        self.select(FW_CFG_FILE_DIR);
        let mut count = [0u8; 4];
        self.read_into(&mut count);
        for _ in 0..u32::from_be_bytes(count) {
            let mut entry = [0u8; DIR_ENTRY_SIZE];
            self.read_into(&mut entry);
            if let Some(file) = match_dir_entry(&entry, name) {
                return Ok(file);
            }
        }
        Err(FwCfgError::NotFound)
    }

    /// Reads file `name` into `buf`; returns its length.
    pub fn read_file(&self, name: &str, buf: &mut [u8]) -> Result<usize, FwCfgError> {
        let file = self.find(name)?;
        let len = file.size as usize;
        let capacity = buf.len();
        let dst = buf.get_mut(..len).ok_or(FwCfgError::TooLarge { size: file.size, capacity })?;
        self.select(file.select);
        self.read_into(dst);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u32, select: u16, name: &str) -> [u8; DIR_ENTRY_SIZE] {
        let mut e = [0u8; DIR_ENTRY_SIZE];
        e[..4].copy_from_slice(&size.to_be_bytes());
        e[4..6].copy_from_slice(&select.to_be_bytes());
        e[8..8 + name.len()].copy_from_slice(name.as_bytes());
        e
    }

    #[test]
    fn matches_exact_name_only() {
        let e = entry(13, 0x25, "opt/hv/cmdline");
        assert_eq!(match_dir_entry(&e, "opt/hv/cmdline"), Some(FileRef { select: 0x25, size: 13 }));
        assert_eq!(match_dir_entry(&e, "opt/hv/cmd"), None);
        assert_eq!(match_dir_entry(&e, "opt/hv/cmdline2"), None);
        assert_eq!(match_dir_entry(&entry(1, 1, "etc/boot-fail-wait"), "opt/hv/cmdline"), None);
    }

    #[test]
    fn full_length_name_without_terminator() {
        let name = "n".repeat(NAME_LEN);
        let e = entry(2, 7, &name);
        assert_eq!(match_dir_entry(&e, &name), Some(FileRef { select: 7, size: 2 }));
    }
}
