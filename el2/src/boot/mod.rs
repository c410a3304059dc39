//! Getting the hypervisor running: the entry and self-relocation
//! ([`entry`]), stage 1 at the load PA ([`early`]), the EL2 translation
//! tables ([`tables`]) and the switch to the virtual addresses through the
//! chosen remap path ([`switch`]); then the command line ([`cmdline`]), the
//! VM descriptions' source ([`vms`]) and the other CPUs ([`smp`]).

pub mod cmdline;
pub mod early;
pub mod entry;
pub mod smp;
pub mod switch;
pub mod tables;
pub mod vms;
