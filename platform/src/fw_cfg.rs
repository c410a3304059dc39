//! QEMU's firmware configuration device (`qemu,fw-cfg-mmio`): how the
//! hypervisor reads its command line (`opt/hv/cmdline`, set with
//! `-fw_cfg name=opt/hv/cmdline,string="..."`).
//!
//! Small items go through the traditional selector/data interface; the
//! kernel and initrd a user passes with `-kernel`/`-initrd` (tens of MiB)
//! go through the DMA interface, which QEMU copies in one go. The
//! directory format and the DMA descriptor are built by pure functions
//! that the host tests check; the MMIO access is a thin layer over them.

/// Selector keys (QEMU docs/specs/fw_cfg.rst).
const FW_CFG_SIGNATURE: u16 = 0x0000;
const FW_CFG_ID: u16 = 0x0001;
const FW_CFG_FILE_DIR: u16 = 0x0019;
/// The `-kernel`, `-initrd` and `-append` items: a little-endian 32-bit
/// size item and a data item each.
pub const FW_CFG_KERNEL_SIZE: u16 = 0x0008;
pub const FW_CFG_KERNEL_DATA: u16 = 0x0011;
pub const FW_CFG_INITRD_SIZE: u16 = 0x000b;
pub const FW_CFG_INITRD_DATA: u16 = 0x0012;
pub const FW_CFG_CMDLINE_SIZE: u16 = 0x0014;
pub const FW_CFG_CMDLINE_DATA: u16 = 0x0015;
/// `FW_CFG_ID` bit 1: the DMA interface exists.
const ID_DMA: u32 = 1 << 1;
/// The DMA address register (big-endian 64-bit; writing its low half
/// starts the transfer).
const DMA_ADDRESS: usize = 0x10;
/// DMA control bits.
const DMA_CTL_ERROR: u32 = 1 << 0;
const DMA_CTL_READ: u32 = 1 << 1;
const DMA_CTL_SELECT: u32 = 1 << 3;
const DMA_CTL_SELECTOR_SHIFT: u32 = 16;
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
    /// The device has no DMA interface.
    NoDma,
    /// The device reported a DMA error.
    DmaFailed,
}

impl core::fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoDevice => write!(f, "fw_cfg device does not answer with the QEMU signature"),
            Self::NotFound => write!(f, "no such fw_cfg file"),
            Self::TooLarge { size, capacity } => {
                write!(f, "fw_cfg file is {size} bytes, more than the {capacity} expected")
            }
            Self::NoDma => write!(f, "fw_cfg device has no DMA interface"),
            Self::DmaFailed => write!(f, "fw_cfg DMA transfer failed"),
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

/// A DMA descriptor as the device reads it: big-endian control, length,
/// address.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaAccess {
    control: u32,
    length: u32,
    address: u64,
}

impl DmaAccess {
    /// "Select `key` and read `length` bytes to physical `address`".
    pub const fn read(key: u16, length: u32, address: u64) -> Self {
        Self {
            control: ((key as u32) << DMA_CTL_SELECTOR_SHIFT | DMA_CTL_SELECT | DMA_CTL_READ).to_be(),
            length: length.to_be(),
            address: address.to_be(),
        }
    }

    /// The control word as the device left it: 0 when done, the error bit
    /// on failure.
    pub const fn status(&self) -> Result<bool, FwCfgError> {
        let control = u32::from_be(self.control);
        if control & DMA_CTL_ERROR != 0 {
            Err(FwCfgError::DmaFailed)
        } else {
            Ok(control == 0)
        }
    }
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

    /// Reads a 32-bit little-endian item (the `*_SIZE` keys).
    pub fn read_u32(&self, key: u16) -> u32 {
        let mut bytes = [0u8; 4];
        self.select(key);
        self.read_into(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    /// Reads a small item into `buf`, whose length is the item's.
    pub fn read_item(&self, key: u16, buf: &mut [u8]) {
        self.select(key);
        self.read_into(buf);
    }

    /// Whether the DMA interface exists.
    pub fn has_dma(&self) -> bool {
        self.read_u32(FW_CFG_ID) & ID_DMA != 0
    }

    /// Reads item `key` (`length` bytes) to physical address `dest` with
    /// DMA. `descriptor` is a descriptor the caller owns, at virtual
    /// address `descriptor` and physical address `descriptor_pa`.
    ///
    /// # Safety
    ///
    /// `[dest, dest + length)` must be memory nothing else uses, and the
    /// descriptor's two addresses must name the same memory.
    pub unsafe fn dma_read(
        &self,
        key: u16,
        length: u32,
        dest: u64,
        descriptor: &mut DmaAccess,
        descriptor_pa: u64,
    ) -> Result<(), FwCfgError> {
        if !self.has_dma() {
            return Err(FwCfgError::NoDma);
        }
        *descriptor = DmaAccess::read(key, length, dest);
        let register = self.base.wrapping_add(DMA_ADDRESS) as *mut u64;
        // SAFETY: `new`'s contract: base + DMA_ADDRESS is the DMA register;
        // the device reads the descriptor and writes `dest`, both the
        // caller's (this function's contract). QEMU finishes the transfer
        // before the write returns; the status read below confirms it.
        unsafe {
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            core::ptr::write_volatile(register, descriptor_pa.to_be());
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        }
        loop {
            // SAFETY: the descriptor is the caller's, updated by the device.
            let current = unsafe { core::ptr::read_volatile(descriptor) };
            if current.status()? {
                return Ok(());
            }
            core::hint::spin_loop();
        }
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
    fn dma_descriptor_is_big_endian_select_and_read() {
        let d = DmaAccess::read(FW_CFG_KERNEL_DATA, 0x1234, 0x4040_0000);
        assert_eq!(u32::from_be(d.control), 0x0011_000a);
        assert_eq!(u32::from_be(d.length), 0x1234);
        assert_eq!(u64::from_be(d.address), 0x4040_0000);
        assert_eq!(d.status(), Ok(false), "not done while the request is pending");
        assert_eq!(DmaAccess::default().status(), Ok(true));
        let failed = DmaAccess { control: DMA_CTL_ERROR.to_be(), ..DmaAccess::default() };
        assert_eq!(failed.status(), Err(FwCfgError::DmaFailed));
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
