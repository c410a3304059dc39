//! Memory: the physical memory
//! plan and heap ([`memory`]), stage-2 translation ([`stage2`]), each CPU's
//! private data area ([`prda`]), and the integrity report of the
//! hypervisor's own code ([`integrity`]).

pub mod el0_memory;
pub mod integrity;
pub mod memory;
pub mod prda;
pub mod stage2;
pub mod vmid;
