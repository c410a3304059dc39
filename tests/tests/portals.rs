//! Portals between VMs (`docs/portals.md`): the QEMU scenarios.

#[path = "portals/linux.rs"]
mod linux;
