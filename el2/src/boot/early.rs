//! Stage 1 of the boot: what the hypervisor does at its load PA, with the
//! MMU off, before it switches to its virtual addresses.
//!
//! The image is relocated for the PA here, so ordinary Rust works; but
//! nothing this stage leaves behind may hold a pointer, because the switch
//! relocates the image again for its VA and abandons this stack. What it
//! produces is plain data ([`BootInfo`], the command line's bytes, the
//! translation tables, the switch plan). It does not start the `log`
//! backend (whose registration would keep a PA pointer); the few errors it
//! can meet it prints straight to the console's physical address.

use crate::arch::layout::{self, Scheme};
use crate::arch::power;
use crate::boot::{cmdline, switch, tables};
use crate::mm::memory::{self, MemoryPlan};
use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1};
use core::fmt::Write;
use core::sync::atomic::Ordering;
use platform::arch::regs::{
    ID_AA64MMFR0_PARANGE, ID_AA64MMFR1_VH, SCTLR_C, SCTLR_EL23_RES1, SCTLR_I, SCTLR_M, SCTLR_SA,
};
use platform::board::{Board, Uart};
use platform::cmdline::{Mode, Remap};
use platform::handoff::Handoff;
use platform::serial::Serial;
use spin::Once;

/// What stage 1 learned, for the rest of the boot.
pub struct BootInfo {
    pub board: Board,
    pub handoff: Handoff,
    pub plan: MemoryPlan,
    pub scheme: Scheme,
    pub remap: Remap,
    /// `mode=vhe` was asked for on a CPU without VHE.
    pub vhe_unavailable: bool,
    /// The root of EL0's 39-bit range (a table inside the kernel's hierarchy).
    pub user_root: u64,
    /// The console's interrupt (its DTB node's first), for the guest.
    pub console_irq: Option<platform::board::Irq>,
}

static BOOT: Once<BootInfo> = Once::new();

/// Stage 1's results (after the switch).
pub fn boot_info() -> &'static BootInfo {
    match BOOT.get() {
        Some(info) => info,
        None => power::fatal(format_args!("boot information used before stage 1 produced it")),
    }
}

/// Prints a stage-1 error on the console's physical address and stops.
fn fatal(console: Option<Uart>, args: core::fmt::Arguments) -> ! {
    struct Raw(Serial);
    impl Write for Raw {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            self.0.write_str(s);
            Ok(())
        }
    }
    if let Some(console) = console {
        // SAFETY: the Non-secure console from the DTB, at its PA (MMU off).
        let mut uart = Raw(unsafe { Serial::new(console.kind, console.base as usize) });
        let _ =
            writeln!(uart, "el2: ERROR: {args} (fatal: stopping with exit status {})", power::EXIT_HYPERVISOR_FATAL);
    }
    power::power_off(power::EXIT_HYPERVISOR_FATAL)
}

/// Boot CPU entry from `boot.S`, at the load PA.
#[no_mangle]
extern "C" fn hv_boot(dtb: usize, handoff: usize) -> ! {
    // SAFETY: the monitor passes the DTB it verified; `from_ptr` bounds
    // every read by the header's size.
    let board = match unsafe { Board::from_ptr(dtb as *const u8) } {
        Ok(board) => board,
        Err(e) => fatal(None, format_args!("cannot read the device tree at {dtb:#x}: {e}")),
    };
    let console = board.console;
    // SAFETY: the monitor placed the record at `handoff` in the block it
    // reserved for us; it is read once, by value.
    let handoff: Handoff = unsafe { core::ptr::read_volatile(handoff as *const Handoff) };
    if let Err(e) = handoff.validate() {
        fatal(console, format_args!("{e}"));
    }

    // SAFETY: `from_ptr` above read the same DTB and its `totalsize`.
    let dtb_bytes = unsafe { core::slice::from_raw_parts(dtb as *const u8, board.dtb_size()) };
    let package_cmdline = (handoff.data.hv_cmdline.size != 0).then(|| {
        // SAFETY: `validate` checked that the copy lies in the block the
        // monitor reserved for us, which nothing else writes; MMU off, so
        // its PA is its address.
        unsafe {
            core::slice::from_raw_parts(
                handoff.data.hv_cmdline.base as usize as *const u8,
                handoff.data.hv_cmdline.size as usize,
            )
        }
    });
    cmdline::load(&board, dtb_bytes, package_cmdline);
    let cmdline = cmdline::parse(false);
    let has_vhe = ID_AA64MMFR1_VH.present(ID_AA64MMFR1_EL1.get());
    let scheme = match cmdline.mode {
        Mode::Auto | Mode::Vhe if has_vhe => Scheme::Vhe,
        _ => Scheme::Nvhe,
    };
    let plan = match memory::plan(&board, &handoff) {
        Ok(plan) => plan,
        Err(e) => fatal(console, format_args!("{e}")),
    };
    let (slots, cpus) = crate::boot::smp::slots(board.cpus.as_slice(), platform::arch::this_cpu_mpidr());
    crate::mm::prda::init(slots.get(..cpus).unwrap_or_default());
    let roots = match tables::build(&board, &handoff, scheme, cpus) {
        Ok(roots) => roots,
        Err(e) => fatal(console, format_args!("building the EL2 translation tables: {e}")),
    };

    let image_pa = handoff.hypervisor.bytes.base;
    let parange = ID_AA64MMFR0_PARANGE.get(ID_AA64MMFR0_EL1.get()).min(MAX_PARANGE);
    let p = &switch::SWITCH_PLAN;
    let store = |field: &core::sync::atomic::AtomicU64, value: u64| field.store(value, Ordering::Relaxed);
    store(&p.vhe, u64::from(scheme == Scheme::Vhe));
    store(&p.remap_fault, u64::from(cmdline.remap == Remap::Fault));
    store(&p.ttbr_intermediate, roots.intermediate);
    for (field, root) in p.ttbr_kernel.iter().zip(roots.per_cpu) {
        store(field, root);
    }
    store(&p.ttbr_user, roots.user);
    store(&p.tcr_switch, tcr(scheme, parange, false));
    store(&p.tcr_final, tcr(scheme, parange, true));
    store(&p.mair, platform::paging::MAIR_EL2_VALUE);
    store(&p.sctlr, SCTLR_EL23_RES1 | SCTLR_M | SCTLR_C | SCTLR_I | SCTLR_SA);
    store(&p.hcr, hcr_for_switch(scheme));
    store(&p.cptr, crate::arch::cpu::cptr_no_traps(scheme));
    store(&p.pa_displacement, image_pa.wrapping_sub(layout::LINK_VA));
    store(&p.va_displacement, scheme.image_va().wrapping_sub(layout::LINK_VA));

    let console_irq = board
        .console
        .and_then(|u| platform::board::find_device_at(dtb_bytes, u.kind.compatibles(), u.base).ok().flatten())
        .and_then(|d| d.irq);
    BOOT.call_once(|| BootInfo {
        console_irq,
        board,
        handoff,
        plan,
        scheme,
        remap: cmdline.remap,
        vhe_unavailable: cmdline.mode == Mode::Vhe && !has_vhe,
        user_root: roots.user,
    });
    layout::set_scheme(scheme);
    // SAFETY: the plan is complete and the tables map the image at its VA
    // (and the trampoline twice); nothing on this stack is used again.
    unsafe { switch::switch_boot_cpu() }
}

/// `PARange` values above this (52-bit) need descriptor formats we do not
/// use; 48 bits is what we program.
const MAX_PARANGE: u64 = 5;

/// `HCR_EL2` while switching: EL1 is AArch64; under VHE, E2H selects the
/// EL2&0 regime (TGE stays 0: EL0 is not a host EL0).
fn hcr_for_switch(scheme: Scheme) -> u64 {
    use aarch64_cpu::registers::HCR_EL2;
    let mut hcr = HCR_EL2::RW::EL1IsAarch64.value;
    if scheme == Scheme::Vhe {
        hcr |= HCR_EL2::E2H::EnableOsAtEl2.value;
    }
    hcr
}

/// `TCR_EL2` bit positions (the split layout, and the EL1-like layout E2H
/// selects).
mod tcr {
    pub const T0SZ_SHIFT: u32 = 0;
    pub const IRGN0_WBWA: u64 = 0b01 << 8;
    pub const ORGN0_WBWA: u64 = 0b01 << 10;
    pub const SH0_INNER: u64 = 0b11 << 12;
    pub const TG0_4K: u64 = 0b00 << 14;
    /// Split scheme: PS at [18:16]; bits 23 and 31 are RES1.
    pub const PS_SHIFT: u32 = 16;
    pub const NVHE_RES1: u64 = (1 << 23) | (1 << 31);
    /// VHE: T1SZ, the TTBR1 walk attributes, TG1 (0b10 = 4 KiB), IPS.
    pub const T1SZ_SHIFT: u32 = 16;
    pub const IRGN1_WBWA: u64 = 0b01 << 24;
    pub const ORGN1_WBWA: u64 = 0b01 << 26;
    pub const SH1_INNER: u64 = 0b11 << 28;
    pub const TG1_4K: u64 = 0b10 << 30;
    pub const IPS_SHIFT: u32 = 32;
}

/// `TCR_EL2` for the scheme. While switching under VHE the lower range is
/// 48 bits wide (the intermediate root serves both ranges); afterwards it is
/// EL0's narrow range.
fn tcr(scheme: Scheme, parange: u64, final_tables: bool) -> u64 {
    let walk0 = tcr::IRGN0_WBWA | tcr::ORGN0_WBWA | tcr::SH0_INNER | tcr::TG0_4K;
    let t0sz = |bits: u32| platform::paging::txsz(bits) << tcr::T0SZ_SHIFT;
    match scheme {
        Scheme::Nvhe => tcr::NVHE_RES1 | walk0 | t0sz(layout::EL2_VA_BITS) | (parange << tcr::PS_SHIFT),
        Scheme::Vhe => {
            let low_bits = if final_tables { layout::EL0_VA_BITS } else { layout::EL2_VA_BITS };
            walk0
                | t0sz(low_bits)
                | (platform::paging::txsz(layout::EL2_VA_BITS) << tcr::T1SZ_SHIFT)
                | tcr::IRGN1_WBWA
                | tcr::ORGN1_WBWA
                | tcr::SH1_INNER
                | tcr::TG1_4K
                | (parange << tcr::IPS_SHIFT)
        }
    }
}
