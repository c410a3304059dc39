//! Virtual machines: the vCPUs ([`vcpu`]), the virtual GIC ([`vgic`]), the
//! emulated MMIO devices ([`mmio`]) and PCI view ([`ecam`]), and what a guest
//! boots with: its image, device tree and first registers ([`guest`],
//! [`linux`]).

pub mod ecam;
pub mod guest;
pub mod linux;
pub mod mmio;
pub mod vcpu;
pub mod vgic;
