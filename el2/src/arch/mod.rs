//! The lowest layer: the CPU as EL2 sees it. The guest's EL1 registers in
//! either translation scheme ([`sysregs`]), the per-CPU trap configuration
//! ([`cpu`]), and the way out of the run ([`power`]), which every layer
//! above may call and which calls nothing above it.
//!
//! The layers of `el2`, each using only those below it:
//!
//! ```text
//! traps/   exception dispatch, HVC/SMC, backdoor, debug, EL0 service
//! vm/      VMs and vCPUs, vGIC, MMIO devices, PCI view, guest loading
//! irq/     the physical GIC, pseudo-NMIs, ticks, the kick lock
//! mm/      address layout, heap, stage 2, per-CPU data (PRDA)
//! boot/    entry, stage 1, the remap switch, EL2 tables, secondaries
//! arch/    system registers, per-CPU trap setup, power-off and fatal stop
//! ```

pub mod cpu;
pub mod power;
pub mod sysregs;
