//! Address types: physical addresses, virtual addresses and intermediate
//! physical addresses (IPAs), kept apart by the type system.
//!
//! The hypervisor juggles three address spaces at once: the physical one
//! (where its image was loaded, where the device tree and the table pool
//! are), its own virtual one (where it is linked and, with the MMU on, runs)
//! and each guest's IPA space (what stage 2 translates). Mixing them up is
//! the classic bug of a boot path that moves from one address space to
//! another, so every address that crosses a module boundary carries its space
//! in its type: [`PhysAddr`], [`VirtAddr`], [`Ipa`]. Converting between them
//! is always explicit (`PhysAddr(va.0)` reads as the identity-map assumption
//! it is).
//!
//! The helpers are the few that table building needs, and none of them can
//! panic: alignment arithmetic is bit masking, and anything that can overflow
//! returns an `Option`.
// Beyond the crate-wide no-panic lints (lib.rs):
#![deny(clippy::as_conversions)]

use core::fmt;

/// The translation granule this project uses everywhere (4 KiB).
pub const PAGE_SIZE: u64 = 4096;

macro_rules! address_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The address as a plain integer.
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// Whether the address is a multiple of `align`. `align` must be
            /// a power of two; for any other value (including 0) the answer
            /// is `false`.
            pub const fn is_aligned(self, align: u64) -> bool {
                align.is_power_of_two() && self.0 & align.wrapping_sub(1) == 0
            }

            /// Whether the address is a multiple of [`PAGE_SIZE`].
            pub const fn is_page_aligned(self) -> bool {
                self.is_aligned(PAGE_SIZE)
            }

            /// The address rounded down to a multiple of `align`, a power of
            /// two. For an `align` that is not a power of two the result is
            /// the address with the bits of `align - 1` cleared (no panic,
            /// but no meaning either); an `align` of 0 gives 0.
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !align.wrapping_sub(1))
            }

            /// The address rounded up to a multiple of `align`, a power of
            /// two; `None` if `align` is not a power of two or the result
            /// does not fit in 64 bits.
            pub const fn align_up(self, align: u64) -> Option<Self> {
                if !align.is_power_of_two() {
                    return None;
                }
                match self.0.checked_add(align.wrapping_sub(1)) {
                    Some(sum) => Some(Self(sum & !align.wrapping_sub(1))),
                    None => None,
                }
            }

            /// `self + offset`, or `None` on overflow.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(sum) => Some(Self(sum)),
                    None => None,
                }
            }

            /// `self - offset`, or `None` on underflow.
            pub const fn checked_sub(self, offset: u64) -> Option<Self> {
                match self.0.checked_sub(offset) {
                    Some(diff) => Some(Self(diff)),
                    None => None,
                }
            }

            /// How far `self` lies above `base` (`self - base`), or `None`
            /// if it lies below.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl From<$name> for u64 {
            fn from(addr: $name) -> u64 {
                addr.0
            }
        }
    };
}

address_type!(
    /// A physical address: what the CPU puts on the bus with the MMU off,
    /// and what translation tables contain.
    PhysAddr
);

address_type!(
    /// A virtual address in one of the hypervisor's own stage-1 spaces (EL2,
    /// EL2&0, or the EL1&0 space of the deprivileged service).
    VirtAddr
);

address_type!(
    /// An intermediate physical address: a guest's "physical" address, the
    /// input of stage-2 translation.
    Ipa
);

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn display_is_hex_with_prefix() {
        assert_eq!(format!("{}", PhysAddr(0x4000_0000)), "0x40000000");
        assert_eq!(format!("{}", VirtAddr(0)), "0x0");
        assert_eq!(format!("{}", Ipa(0xffff_ffff_ffff_ffff)), "0xffffffffffffffff");
        assert_eq!(format!("{:x}", PhysAddr(0xabc)), "abc");
    }

    #[test]
    fn alignment() {
        let a = PhysAddr(0x4020_1234);
        assert!(!a.is_page_aligned());
        assert_eq!(a.align_down(PAGE_SIZE), PhysAddr(0x4020_1000));
        assert_eq!(a.align_up(PAGE_SIZE), Some(PhysAddr(0x4020_2000)));
        assert_eq!(a.align_down(0x20_0000), PhysAddr(0x4020_0000));
        assert_eq!(a.align_up(0x20_0000), Some(PhysAddr(0x4040_0000)));
        assert!(PhysAddr(0x4020_0000).is_aligned(0x20_0000));
        assert_eq!(PhysAddr(0x1000).align_up(PAGE_SIZE), Some(PhysAddr(0x1000)));
        // Bad alignments never panic.
        assert!(!a.is_aligned(0));
        assert!(!PhysAddr(0).is_aligned(3));
        assert_eq!(a.align_up(0), None);
        assert_eq!(a.align_up(3), None);
        assert_eq!(a.align_down(0), PhysAddr(0));
        // Overflow at the top of the space.
        assert_eq!(VirtAddr(u64::MAX).align_up(PAGE_SIZE), None);
        assert_eq!(VirtAddr(u64::MAX).align_down(PAGE_SIZE), VirtAddr(0xffff_ffff_ffff_f000));
        assert_eq!(VirtAddr(u64::MAX).align_up(1), Some(VirtAddr(u64::MAX)));
    }

    #[test]
    fn checked_arithmetic() {
        let a = VirtAddr(0x1000);
        assert_eq!(a.checked_add(0x1000), Some(VirtAddr(0x2000)));
        assert_eq!(VirtAddr(u64::MAX).checked_add(1), None);
        assert_eq!(a.checked_sub(0x1001), None);
        assert_eq!(a.checked_sub(0x1000), Some(VirtAddr(0)));
        assert_eq!(VirtAddr(0x3000).offset_from(a), Some(0x2000));
        assert_eq!(a.offset_from(VirtAddr(0x3000)), None);
        assert_eq!(u64::from(Ipa(7)), 7);
        assert!(PhysAddr(1) < PhysAddr(2));
    }
}
