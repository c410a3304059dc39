//! The hypervisor's virtual address layout, in both translation schemes.
//!
//! The EL2 kernel lives in a 48-bit VA space; its deprivileged EL0 service
//! in a 39-bit one. Under VHE (`HCR_EL2.E2H = 1`) the kernel is in the
//! upper range (`TTBR1_EL2`, addresses `0xffff_....`) and EL0 in the lower
//! (`TTBR0_EL2`). Under the split scheme EL2 has one range (`TTBR0_EL2`,
//! 0 .. 2^48) and EL0 runs in the EL1&0 regime. Both schemes use the same
//! kernel layout, offset by [`Scheme::kernel_base`]: the image is linked at
//! [`LINK_VA`] and, under the split scheme, relocated to the same address
//! with the upper 16 bits clear.
//!
//! | kernel offset | what |
//! |---------------|------|
//! | `0x0000_7f80_0000_0000` | EL0's 39-bit range, as a subtree of the kernel's hierarchy |
//! | `0x0000_8000_0000_0000 + PA` | direct map of RAM and device windows |
//! | `0x0000_ff00_0000_0000` | this CPU's private data area (a different page on each CPU) |
//! | `0x0000_ff80_0000_0000` | the hypervisor image (text, rodata, data, bss, stacks) |

use core::sync::atomic::{AtomicU8, Ordering};

/// VA width of the EL2 kernel.
pub const EL2_VA_BITS: u32 = 48;
/// VA width of the deprivileged EL0 service.
pub const EL0_VA_BITS: u32 = 39;
/// Where the image is linked (upper range); must match linker/el2.ld.
pub const LINK_VA: u64 = 0xffff_ff80_0000_0000;
/// Offsets inside the 48-bit kernel space.
const DIRECT_MAP_OFFSET: u64 = 0x0000_8000_0000_0000;
const IMAGE_OFFSET: u64 = LINK_VA & KERNEL_OFFSET_MASK;
const PRDA_OFFSET: u64 = 0x0000_ff00_0000_0000;
/// Where EL0's range sits inside the kernel's hierarchy (512 GiB aligned).
pub const USER_ALIAS_OFFSET: u64 = 0x0000_7f80_0000_0000;
const KERNEL_OFFSET_MASK: u64 = (1 << EL2_VA_BITS) - 1;

/// Which translation scheme EL2 runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `HCR_EL2.E2H = 1`: the EL2&0 regime with two VA ranges.
    Vhe,
    /// `HCR_EL2.E2H = 0`: EL2's own single-range regime.
    Nvhe,
}

impl Scheme {
    /// The name the command line and the boot log use.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Vhe => "vhe",
            Self::Nvhe => "nvhe",
        }
    }

    /// Where the kernel's 48-bit space starts.
    pub const fn kernel_base(self) -> u64 {
        match self {
            Self::Vhe => !KERNEL_OFFSET_MASK,
            Self::Nvhe => 0,
        }
    }

    /// The VA the image runs at.
    pub const fn image_va(self) -> u64 {
        self.kernel_base() | IMAGE_OFFSET
    }

    /// The VA at which the direct map shows physical address `pa`.
    pub const fn direct_map(self, pa: u64) -> u64 {
        self.kernel_base() | (DIRECT_MAP_OFFSET + pa)
    }
}

/// Kernel offsets as the table builder sees them: the 48 bits a table walk
/// indexes with, whichever range the address is in.
pub const fn table_va(va: u64) -> u64 {
    va & KERNEL_OFFSET_MASK
}

/// The direct-map offset, for building the tables.
pub const fn direct_map_offset(pa: u64) -> u64 {
    DIRECT_MAP_OFFSET + pa
}

pub const fn image_offset() -> u64 {
    IMAGE_OFFSET
}

pub const fn prda_offset() -> u64 {
    PRDA_OFFSET
}

/// The fixed VA of this CPU's private data area.
pub fn prda_va() -> u64 {
    scheme().kernel_base() | PRDA_OFFSET
}

const SCHEME_UNSET: u8 = 0;
static SCHEME: AtomicU8 = AtomicU8::new(SCHEME_UNSET);

/// Records the scheme (boot CPU, before the switch).
pub fn set_scheme(scheme: Scheme) {
    SCHEME.store(scheme as u8 + 1, Ordering::Relaxed);
}

/// The scheme EL2 runs with.
pub fn scheme() -> Scheme {
    match SCHEME.load(Ordering::Relaxed) {
        x if x == Scheme::Vhe as u8 + 1 => Scheme::Vhe,
        _ => Scheme::Nvhe,
    }
}

/// The direct-map VA of `pa` in the running scheme.
pub fn phys_to_virt(pa: u64) -> u64 {
    scheme().direct_map(pa)
}

/// The physical address of a direct-map VA in the running scheme.
pub fn virt_to_phys(va: u64) -> u64 {
    table_va(va) - DIRECT_MAP_OFFSET
}
