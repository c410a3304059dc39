//! What the monitor tells the hypervisor when it enters EL2.
//!
//! The monitor places the hypervisor near the top of Non-secure RAM, next to
//! a copy of the guest-stub, copies of the package's data entries (a Linux
//! kernel, its initrd and command line, the hypervisor's command line) and
//! this record, and enters EL2 with `x0` = the DTB and `x1` = the record's
//! physical address. Everything in the reserved block belongs to the
//! hypervisor; it must not hand any of it to a guest. The copies stay there
//! for as long as the hypervisor runs: a VM that restarts loads its kernel
//! again from them.

/// "HVHANDOF" in little-endian ASCII.
pub const HANDOFF_MAGIC: u64 = u64::from_le_bytes(*b"HVHANDOF");
/// 2: the data entries' copies.
pub const HANDOFF_VERSION: u32 = 2;

/// A physical range `[base, base + size)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysRange {
    pub base: u64,
    pub size: u64,
}

impl PhysRange {
    /// One past the last byte (saturating: a record is trusted data, but
    /// arithmetic on it still must not wrap).
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    pub const fn contains(&self, other: &PhysRange) -> bool {
        other.base >= self.base
            && other.size <= self.size
            && other.base.wrapping_sub(self.base) <= self.size.wrapping_sub(other.size)
    }
}

/// A payload image as placed in memory, with its package load hints.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadedImage {
    /// Where its bytes are.
    pub bytes: PhysRange,
    /// Memory it needs once loaded, bss included.
    pub mem_size: u64,
    /// Offset of its entry point from its load address.
    pub entry_offset: u64,
    /// Alignment its load address needs.
    pub align: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub magic: u64,
    pub version: u32,
    pub size: u32,
    /// The DTB the hypervisor was given, and its size.
    pub dtb: PhysRange,
    /// The block the monitor carved from Non-secure RAM: hypervisor image,
    /// guest-stub copy, the data entries' copies and this record.
    pub reserved: PhysRange,
    /// The hypervisor as loaded (running) image.
    pub hypervisor: LoadedImage,
    /// The guest-stub's bytes, still to be loaded into guest memory.
    pub guest_stub: LoadedImage,
    /// The package's data entries as copied into the reserved block; a
    /// size of 0 means the package had none.
    pub data: DataEntries,
}

/// Where the monitor copied the package's data entries (each `size` 0 when
/// absent). The bytes are the payloads, unchanged (their digests were
/// checked), so the command lines are UTF-8 without a NUL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataEntries {
    /// A Linux kernel `Image`, still to be loaded into a guest's RAM.
    pub linux_kernel: PhysRange,
    /// Its initrd.
    pub linux_initrd: PhysRange,
    /// Its command line.
    pub linux_cmdline: PhysRange,
    /// The hypervisor's command line.
    pub hv_cmdline: PhysRange,
}

impl DataEntries {
    /// Each entry with a name for messages.
    pub const fn named(&self) -> [(&'static str, PhysRange); 4] {
        [
            ("Linux kernel", self.linux_kernel),
            ("Linux initrd", self.linux_initrd),
            ("Linux command line", self.linux_cmdline),
            ("hypervisor command line", self.hv_cmdline),
        ]
    }
}

/// Why a handoff record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffError {
    BadMagic(u64),
    UnsupportedVersion(u32),
    BadSize(u32),
    /// A range named in the record lies outside the reserved block.
    OutsideReserved(&'static str),
}

impl core::fmt::Display for HandoffError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "handoff record has bad magic {m:#x}"),
            Self::UnsupportedVersion(v) => write!(f, "handoff record version {v} is not supported"),
            Self::BadSize(s) => write!(f, "handoff record size {s} does not match"),
            Self::OutsideReserved(what) => write!(f, "handoff {what} lies outside the reserved block"),
        }
    }
}

impl Handoff {
    pub const fn new(
        dtb: PhysRange,
        reserved: PhysRange,
        hypervisor: LoadedImage,
        guest_stub: LoadedImage,
        data: DataEntries,
    ) -> Self {
        Self {
            magic: HANDOFF_MAGIC,
            version: HANDOFF_VERSION,
            size: core::mem::size_of::<Self>() as u32,
            dtb,
            reserved,
            hypervisor,
            guest_stub,
            data,
        }
    }

    /// Checks that the record is one this build understands and is
    /// self-consistent.
    pub fn validate(&self) -> Result<(), HandoffError> {
        if self.magic != HANDOFF_MAGIC {
            return Err(HandoffError::BadMagic(self.magic));
        }
        if self.version != HANDOFF_VERSION {
            return Err(HandoffError::UnsupportedVersion(self.version));
        }
        if self.size as usize != core::mem::size_of::<Self>() {
            return Err(HandoffError::BadSize(self.size));
        }
        let hv = PhysRange { base: self.hypervisor.bytes.base, size: self.hypervisor.mem_size };
        if !self.reserved.contains(&hv) {
            return Err(HandoffError::OutsideReserved("hypervisor image"));
        }
        if !self.reserved.contains(&self.guest_stub.bytes) {
            return Err(HandoffError::OutsideReserved("guest-stub image"));
        }
        for (what, range) in self.data.named() {
            if range.size != 0 && !self.reserved.contains(&range) {
                return Err(HandoffError::OutsideReserved(what));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handoff {
        let reserved = PhysRange { base: 0x7fe0_0000, size: 0x20_0000 };
        let hv = LoadedImage {
            bytes: PhysRange { base: 0x7fe0_0000, size: 0x1_0000 },
            mem_size: 0x10_0000,
            entry_offset: 0,
            align: 0x1000,
        };
        let stub = LoadedImage { bytes: PhysRange { base: 0x7ff0_0000, size: 0x8000 }, ..hv };
        let data = DataEntries {
            linux_kernel: PhysRange { base: 0x7ff0_8000, size: 0x2000 },
            hv_cmdline: PhysRange { base: 0x7ff0_a000, size: 12 },
            ..DataEntries::default()
        };
        Handoff::new(PhysRange { base: 0x4000_0000, size: 0x10_0000 }, reserved, hv, stub, data)
    }

    #[test]
    fn accepts_consistent_record() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_records() {
        let mut h = sample();
        h.magic = 0;
        assert_eq!(h.validate(), Err(HandoffError::BadMagic(0)));
        let mut h = sample();
        h.version = 9;
        assert_eq!(h.validate(), Err(HandoffError::UnsupportedVersion(9)));
        let mut h = sample();
        h.size = 8;
        assert_eq!(h.validate(), Err(HandoffError::BadSize(8)));
        let mut h = sample();
        h.guest_stub.bytes.base = 0x8000_0000;
        assert_eq!(h.validate(), Err(HandoffError::OutsideReserved("guest-stub image")));
        let mut h = sample();
        h.hypervisor.mem_size = u64::MAX;
        assert_eq!(h.validate(), Err(HandoffError::OutsideReserved("hypervisor image")));
        let mut h = sample();
        h.data.linux_kernel.size = 0x20_0000;
        assert_eq!(h.validate(), Err(HandoffError::OutsideReserved("Linux kernel")));
        let mut h = sample();
        h.data.linux_initrd.base = 0x1000;
        assert_eq!(h.validate(), Ok(()), "an absent entry's base does not matter");
        h.data.linux_initrd.size = 1;
        assert_eq!(h.validate(), Err(HandoffError::OutsideReserved("Linux initrd")));
    }
}
