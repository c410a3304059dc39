//! The VMs' VMIDs: tags on their TLB entries, so that switching a CPU from
//! one VM to another needs no TLB flush. `platform::stage2::VmidSpace` is
//! the policy (unique tags per VM, recycled with a TLB purge when they run
//! out, like shadow ASIDs); this module holds the one space and does the
//! purges it asks for.
//!
//! The width is 8 bits, which every CPU implements (16 would need
//! `VTCR_EL2.VS`, and the space tracks at most
//! `platform::stage2::MAX_OWNERS` VMs anyway), or fewer with the debug
//! word `vmid-bits=N`, which makes recycling happen with a handful of VMs.

use aarch64_cpu::registers::{Readable, Writeable, VTTBR_EL2};
use platform::stage2::{Grant, OwnerId, Vmid, VmidError, VmidSpace};
use spin::Mutex;

/// The split scheme's EL0 service runs its own EL1&0 translations under
/// this VMID (`crate::traps::el0`); no VM gets it.
pub const SERVICE_VMID: u16 = 0xff;

/// The VMID width every CPU has.
const VMID_BITS: u8 = 8;

static SPACE: Mutex<VmidSpace> = Mutex::new(VmidSpace::new(8));

/// Boot CPU, before any VM runs: the space's width, and no stale entry
/// under any VMID (the TLB may hold the firmware's).
pub fn init(requested_bits: Option<u8>) {
    let bits = VmidSpace::width(VMID_BITS, requested_bits);
    let mut space = SPACE.lock();
    *space = VmidSpace::new(bits);
    // Out of a narrowed space it needs no reservation; in it, it must not
    // go to a VM.
    let _ = space.reserve(Vmid(SERVICE_VMID));
    // SAFETY: invalidating all EL1&0 TLB entries only drops cached
    // translations; no VM runs yet.
    unsafe { core::arch::asm!("dsb ishst", "tlbi alle1is", "dsb ish", "isb", options(nostack)) };
    log::info!(
        "VMIDs: {bits} bits{} ({} usable)",
        if bits < VMID_BITS { " (narrowed by vmid-bits)" } else { "" },
        space.usable()
    );
}

/// A vCPU of VM `vm` is about to run on this CPU: loads `VTTBR_EL2` with
/// `root` and the VM's VMID, purging that VMID's TLB entries first when
/// the VMID was someone else's. Returns the grant (for the log).
pub fn enter(vm: usize, root: u64) -> Result<Grant, VmidError> {
    let owner = OwnerId(vm as u32);
    let mut space = SPACE.lock();
    let grant = space.acquire(owner)?;
    VTTBR_EL2.set(root | grant.vmid.vttbr_bits());
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    if grant.flush {
        // SAFETY: invalidating the current VMID's stage-1 and stage-2
        // entries on every CPU only drops cached translations (another
        // VM's, left under this tag).
        unsafe { core::arch::asm!("tlbi vmalls12e1is", "dsb ish", "isb", options(nostack)) };
        space.purged(owner, grant.vmid);
    }
    Ok(grant)
}

/// The vCPU on this CPU changes stage-2 trees (emulated per-mode execute
/// control): `VTTBR_EL2` gets `root` with the same VMID, and this CPU's
/// entries of that VMID go, since they may come from the other tree. Other
/// CPUs keep theirs: each flushes when its own vCPU changes tree or is
/// loaded.
pub fn switch_root(root: u64) {
    let vmid_bits = VTTBR_EL2.get() & !((1u64 << Vmid::VTTBR_SHIFT) - 1);
    VTTBR_EL2.set(root | vmid_bits);
    flush_this_cpu();
}

/// Drops this CPU's stage-1+2 TLB entries of the current VMID.
pub fn flush_this_cpu() {
    // SAFETY: TLB invalidation only drops cached translations.
    unsafe { core::arch::asm!("isb", "tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
}

/// The vCPU of VM `vm` on this CPU stopped: this CPU stops translating
/// with its VMID (VMID 0, which no VM has), and the VM's VMID may be taken
/// once none of its vCPUs runs.
pub fn leave(vm: usize) {
    VTTBR_EL2.set(0);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    if let Err(e) = SPACE.lock().release(OwnerId(vm as u32)) {
        log::error!("VMID of VM {vm}: {e}");
    }
}

/// How many times a VM has lost its VMID to another.
pub fn generation() -> u64 {
    SPACE.lock().generation()
}
