//! The client's RAM as `vm-memory` sees it: one region at the client's
//! guest-physical base. In the service VM it is BAR2 of the backend
//! function, mapped from its sysfs `resource2_wc` file (write-combining,
//! which arm64 maps Normal non-cacheable: unaligned accesses and `memcpy`
//! work there, where `resource2`'s Device memory would fault on them). The
//! mapping belongs to the region (`MmapRegion::from_file`), so no raw
//! pointer is handed around and it is unmapped when the memory is dropped.

use core::fmt;
use std::fs::File;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// Why the client's RAM could not be set up.
#[derive(Debug)]
pub enum MemoryError {
    /// The size does not fit the address space, or base + size overflows.
    BadRange { base: u64, size: u64 },
    /// `mmap` (or the region collection) refused.
    Map(String),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange { base, size } => write!(f, "client RAM of {size:#x} bytes at {base:#x} cannot be mapped"),
            Self::Map(e) => write!(f, "mapping the client's RAM: {e}"),
        }
    }
}

impl std::error::Error for MemoryError {}

/// Maps `size` bytes of `file` from offset 0 as the client's RAM at `base`.
pub fn from_file(file: File, base: u64, size: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let bad = || MemoryError::BadRange { base, size };
    let len = usize::try_from(size).ok().filter(|&l| l > 0).ok_or_else(bad)?;
    // Checked before mapping: a region past the top of the address space
    // is refused either way, and the mapping is not made for nothing.
    base.checked_add(size).ok_or_else(bad)?;
    let region = MmapRegion::from_file(FileOffset::new(file, 0), len).map_err(|e| MemoryError::Map(e.to_string()))?;
    let region = GuestRegionMmap::new(region, GuestAddress(base)).ok_or_else(bad)?;
    GuestMemoryMmap::from_regions(vec![region]).map_err(|e| MemoryError::Map(e.to_string()))
}

/// Anonymous memory standing for the client's RAM (the host tests).
pub fn anonymous(base: u64, size: usize) -> Result<GuestMemoryMmap, MemoryError> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(base), size)]).map_err(|e| MemoryError::Map(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn a_file_maps_at_the_client_base_and_writes_reach_the_file() {
        let path = std::env::temp_dir().join(format!("hvvirtio-mem-{}", std::process::id()));
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.write_all(&[0u8; 8192]).unwrap();
        let mem = from_file(file, 0x4000_0000, 8192).unwrap();
        assert!(GuestMemoryBackend::check_range(&mem, GuestAddress(0x4000_0000), 8192));
        assert!(!GuestMemoryBackend::check_range(&mem, GuestAddress(0x4000_0000), 8193));
        assert!(!mem.address_in_range(GuestAddress(0x3fff_ffff)));
        // Unaligned, across the page boundary.
        mem.write_slice(b"hello", GuestAddress(0x4000_0ffe)).unwrap();
        drop(mem);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[0xffe..0x1003], b"hello");
        std::fs::remove_file(&path).unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(matches!(from_file(file, u64::MAX - 10, 4096), Err(MemoryError::BadRange { .. })));
    }
}
