//! The lowest layer: the CPU as EL2 sees it. The two translation schemes
//! and the virtual address layout ([`layout`]), the guest's EL1 registers
//! in either scheme ([`sysregs`]), the per-CPU trap configuration
//! ([`cpu`]), and the way out of the run ([`power`]), which every layer
//! above may call and which calls nothing above it.
//!
//! The layers of `el2`, each using only those below it (the unit test
//! `hvtests::layers` checks every `crate::` path; what a lower layer needs
//! done above it, the layer above registers with it):
//!
//! ```text
//! traps/   exception dispatch, HVC/SMC, backdoor, debug, EL0 service
//! vm/      VMs and vCPUs, vGIC, consoles, MMIO devices, PCI view, idle CPUs
//! irq/     the physical GIC, pseudo-NMIs, ticks, the kick lock
//! boot/    entry, stage 1, the remap switch, EL2 tables, bringing CPUs up
//! mm/      memory plan, heap, stage 2, VMIDs, per-CPU data (PRDA)
//! arch/    VA layout, system registers, per-CPU traps, power-off, fatal stop
//! ```

pub mod context;
pub mod cpu;
pub mod layout;
pub mod power;
pub mod sysregs;
