//! `stub=bench`: the guest-stub times the hypervisor's trap paths instead of
//! running its checks.
//!
//! Under QEMU with `-icount shift=0,sleep=off` the virtual clock advances
//! one nanosecond per instruction, so the PMU's cycle counter counts
//! instructions; with `PMCCFILTR_EL0.NSH` it counts those executed at EL2
//! too. Each path is timed on its own, 101 times after a warm-up, and the
//! median reported; the floor is the same measurement around an `SVC` to
//! the stub's own EL1 vector, the cheapest exception round trip the guest
//! can make, and `empty` is the cost of the measurement itself.
//!
//! Virtual-interrupt latency is timed to the first instruction of the
//! guest's handler: during those rows `VBAR_EL1` points at a `bench.S`
//! table (the one for the GIC found), whose IRQ vector reads the cycle
//! counter before anything else.
//! The same rows run on bare QEMU (no EL2; `make bench` boots the stub with
//! `-kernel`), where the physical GIC delivers straight to EL1: that is
//! their floor. The hypervisor's rows are skipped there (`BRK` would reach
//! the stub's own vector).
//!
//! With kernel integrity (`integrity` or `integrity=emulate` on the
//! hypervisor's command line) two costs of it are timed as well
//! ([`integrity_rows`]): a store to a traced stage-1 table, and a change of
//! stage-2 tree.
//!
//! Output, one line per path, for `make bench` to parse:
//! `guest-stub: bench <name> median=<n> min=<n> max=<n>`.

use crate::checks::{reply_ok, Failure};
use crate::el0;
use crate::gic::{self, SgiWrite};
use crate::gvascan::Layout;
use crate::Env;
use arm_gic::IntId;
use platform::gvascan::{Region, CURSOR_DONE, CURSOR_START, ENTRY_SIZE};
use platform::hypercall::{Function, DCC_CALL_MAGIC, HV_BRK_IMM, SCAN_CAPACITY_MAX, SCAN_PROBE_BUDGET};
use platform::println;

core::arch::global_asm!(
    include_str!("bench.S"),
    PSR_I = const PSR_I,
    GICC_IAR = const gic::GICC_IAR,
    GICC_EOIR = const gic::GICC_EOIR,
);

extern "C" {
    /// `bench.S`: the IRQ vector timestamps; the others are the stub's.
    /// For a GICv3 (system registers) and a GICv2 (the CPU interface's
    /// address in `x11`).
    static bench_vectors: [u8; 2048];
    static bench_vectors_v2: [u8; 2048];
    /// The stub's own table (`exceptions.rs`).
    static stub_vectors: [u8; 2048];
}

/// `DAIF.I` / `SPSR_EL1.I`: IRQs masked.
const PSR_I: u64 = 1 << 7;
/// `CNTV_CTL_EL0.ENABLE`.
const CNTV_CTL_ENABLE: u64 = 1 << 0;
/// The SGI the latency row sends itself (the kick SGI stays free).
const LATENCY_SGI: u32 = 9;
/// Priority of the interrupts the latency rows take.
const LATENCY_PRIORITY: u8 = 0x80;
/// How far ahead the timer is armed: long enough that arming is done, in
/// counter ticks at 1 GHz (QEMU virt's counter since 9.0), 20 us.
const TIMER_LEAD_NS: u64 = 20_000;
const NS_PER_S: u64 = 1_000_000_000;
/// Samples per latency row (each takes a real interrupt, so fewer).
const LATENCY_SAMPLES: usize = 21;

const SAMPLES: usize = 101;

/// `PMCR_EL0.E` (enable), `.C` (reset the cycle counter).
const PMCR_E: u64 = 1 << 0;
const PMCR_C: u64 = 1 << 2;
/// `PMCCFILTR_EL0.NSH`: count at EL2 as well.
const PMCCFILTR_NSH: u64 = 1 << 27;
/// `PMCNTENSET_EL0.C`: the cycle counter.
const PMCNTENSET_C: u64 = 1 << 31;

fn pmu_init() {
    cycle_counter_start(PMCCFILTR_NSH);
}

/// Resets and starts the PMU's cycle counter with `PMCCFILTR_EL0` =
/// `filter` (0: EL1 and EL0 only; [`PMCCFILTR_NSH`]: EL2 too).
pub fn cycle_counter_start(filter: u64) {
    // SAFETY: programs the guest's own PMU (the hypervisor lets it); no
    // memory is affected.
    unsafe {
        core::arch::asm!(
            "mrs {t}, pmcr_el0", "orr {t}, {t}, {ec}", "msr pmcr_el0, {t}",
            "msr pmccfiltr_el0, {f}", "msr pmcntenset_el0, {c}", "isb",
            t = out(reg) _, ec = in(reg) PMCR_E | PMCR_C, f = in(reg) filter, c = in(reg) PMCNTENSET_C,
            options(nostack),
        );
    }
}

/// The PMU's cycle counter.
pub fn counter() -> u64 {
    let value;
    // SAFETY: reads the guest's cycle counter.
    unsafe { core::arch::asm!("isb", "mrs {}, pmccntr_el0", out(reg) value, options(nomem, nostack)) };
    value
}

struct Stats {
    median: u64,
    min: u64,
    max: u64,
}

fn measure(mut op: impl FnMut()) -> Stats {
    op();
    let mut samples = [0u64; SAMPLES];
    for sample in &mut samples {
        let start = counter();
        op();
        *sample = counter().wrapping_sub(start);
    }
    samples.sort_unstable();
    Stats { median: samples[SAMPLES / 2], min: samples[0], max: samples[SAMPLES - 1] }
}

fn report(name: &str, op: impl FnMut()) {
    let s = measure(op);
    println!("bench {name} median={} min={} max={}", s.median, s.min, s.max);
}

/// Runs every measurement; returns the exit status (0). `under_hypervisor`
/// is false on bare QEMU, where only the rows without EL2 run.
pub fn run(env: &Env, under_hypervisor: bool) -> u32 {
    pmu_init();
    report("empty", || {});
    report("floor-svc", || {
        // SAFETY: the stub's vector returns from an EL1 SVC at once.
        unsafe { core::arch::asm!("svc #0", options(nostack)) };
    });
    interrupt_latency(env);
    if !under_hypervisor {
        return 0;
    }
    report("brk-version", || {
        // SAFETY: the backdoor's VERSION writes x0..x3 only.
        unsafe {
            core::arch::asm!("brk #{imm}", imm = const HV_BRK_IMM,
                inout("x0") Function::Version.id() => _, out("x1") _, out("x2") _, out("x3") _, options(nostack));
        }
    });
    report("dcc-version", || {
        // SAFETY: the DCC hypercall writes x0..x3 and the MRS target only.
        unsafe {
            core::arch::asm!("mrs x8, mdccsr_el0",
                inout("x0") DCC_CALL_MAGIC | Function::Version.id() => _, out("x1") _, out("x2") _, out("x3") _,
                out("x8") _, options(nostack));
        }
    });
    report("hvc-psci-version", || {
        let _ = smccc::hvc32(smccc::psci::PSCI_VERSION, [0; 7]);
    });
    report("smc-psci-version", || {
        let _ = smccc::smc32(smccc::psci::PSCI_VERSION, [0; 7]);
    });
    if let Some((base, _)) = env.test_mmio {
        report("mmio-read", || {
            // SAFETY: the emulated test device's ID register.
            unsafe { core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) base, v = out(reg) _, options(nostack)) };
        });
    }
    if let Ok(ecam) = &env.ecam {
        let base = ecam.base;
        report("ecam-read", || {
            // SAFETY: the vendor ID of 00:00.0 in the emulated ECAM window.
            unsafe { core::arch::asm!("ldrh {v:w}, [{a}]", a = in(reg) base, v = out(reg) _, options(nostack)) };
        });
    }
    scan(env);
    pnmi_latency();
    integrity_rows(env);
    0
}

/// A page a kernel map of [`integrity_rows`] maps (never accessed through
/// it).
static INTEGRITY_TARGET: spin::Mutex<platform::paging::Table> = spin::Mutex::new(platform::paging::Table::ZERO);

/// The kernel-integrity rows, where the hypervisor runs with it (nothing
/// is printed without: `INTEGRITY` answers `NOT_SUPPORTED`):
///
/// - `integrity-table-write`: one `STR` to a level-3 table reachable from
///   `TTBR1_EL1` (stage 2 keeps it read-only: the hypervisor decodes the
///   store, performs it and records it), alternately a page descriptor and
///   an invalid one, so that each is a change the trace records;
///   `integrity-store` is the same `STR` to an ordinary page, its floor.
///   With the stub's MMU on, a `TTBR0_EL1` identity map and a `TTBR1_EL1`
///   map of one page ([`crate::integrity::mmu_on`]).
/// - `integrity-el0-call`: an EL0 call ([`el0::call_code`]) of a `RET` in
///   a page both modes may execute; `integrity-el0-call-user-page`: the
///   same with the page user-only (`INTEGRITY SET_EXEC`). The stub's own
///   code is in pages of both, so under the emulation (one stage-2 tree per
///   class) the call enters the user-only page and returns to the stub's
///   page, each a fetch outside the loaded tree: two exits that switch
///   tree, which the difference of the two rows is. With FEAT_XNX it is 0.
fn integrity_rows(env: &Env) {
    use crate::integrity::{self, code};
    use platform::mbec::Exec;
    match integrity::status_or_skip() {
        Ok(status) if !status.flags.locked => {}
        Ok(_) => {
            println!("bench integrity skipped: the VM's kernel is locked");
            return;
        }
        Err(Failure::Skip(_)) => return,
        Err(e) => {
            println!("bench integrity failed: {e}");
            return;
        }
    }
    let target = INTEGRITY_TARGET.lock();
    let target_ipa = &*target as *const _ as u64;
    let built = integrity::with_tables(
        |pool| {
            let ttbr0 = integrity::identity(env, pool)?;
            let ttbr1 = integrity::new_root(pool)?;
            integrity::map(pool, ttbr1, integrity::KERNEL_BASE, target_ipa, integrity::PAGE, integrity::DATA)?;
            Ok((ttbr0, ttbr1))
        },
        |(ttbr0, ttbr1)| {
            // The entry after the one mapping the target: in the same
            // traced level-3 table, and unused.
            let Some(entry) = integrity::leaf_entry(ttbr1, integrity::KERNEL_BASE + integrity::PAGE) else {
                return println!("bench integrity-table-write failed: no level-3 table");
            };
            let descriptor = integrity::page_descriptor(target_ipa, integrity::DATA);
            let saved = integrity::mmu_on(ttbr0, ttbr1);
            let mut valid = false;
            let mut store = |at: u64| {
                valid = !valid;
                // SAFETY: `at` is an unused level-3 entry of the stub's own
                // kernel map (no VA through it is ever accessed, so it
                // needs no TLB maintenance) or a word of the target page.
                unsafe { core::ptr::write_volatile(at as *mut u64, if valid { descriptor } else { 0 }) };
            };
            report("integrity-store", || store(target_ipa));
            report("integrity-table-write", || store(entry));
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(entry as *mut u64, 0) };
            integrity::mmu_off(&saved);
        },
    );
    drop(target);
    if let Err(e) = built {
        println!("bench integrity-table-write failed: {e}");
    }
    code::prepare();
    let page = code::page(0);
    let call = move || {
        // SAFETY: `page` holds one `RET` (`code::prepare`), safe at EL0;
        // if EL0 may not run it, the call ends with the abort.
        let _ = unsafe { el0::call_code(page) };
    };
    report("integrity-el0-call", call);
    let set_exec = |exec| integrity::set_exec(page, 1, exec).and_then(|reply| reply_ok("INTEGRITY SET_EXEC", reply));
    match set_exec(Exec::UserOnly) {
        Ok(_) => report("integrity-el0-call-user-page", call),
        Err(e) => println!("bench integrity-el0-call-user-page failed: {e}"),
    }
    if let Err(e) = set_exec(Exec::Both) {
        println!("bench integrity-el0-call-user-page failed: back to both: {e}");
    }
}

/// The hypervisor's PNMI latency while one of its regular handlers runs
/// (`HV_PNMI_TEST`, which times it with the same cycle counter).
fn pnmi_latency() {
    let mut samples = [0u64; LATENCY_SAMPLES];
    for sample in &mut samples {
        let reply = smccc::hvc64(platform::abi::HV_PNMI_TEST, [0; 17]);
        *sample = reply[platform::abi::pnmi_test::X_PNMI_LATENCY];
    }
    report_samples("pnmi-latency", &mut samples, format_args!(""));
}

/// Room for the most entries one SCAN call takes.
static WORST_BUFFER: spin::Mutex<[u8; SCAN_CAPACITY_MAX as usize * ENTRY_SIZE]> =
    spin::Mutex::new([0; SCAN_CAPACITY_MAX as usize * ENTRY_SIZE]);

/// The scan rows: `scan`, a whole scan of the stub's own known map (every
/// call from cursor 0 until done: their instructions, probes, holes, the
/// regions joined and the calls), and `scan-worst-call`, the most one call
/// can cost (see [`scan_worst_call`]).
fn scan(env: &Env) {
    let Ok(map) = crate::gvascan::build(env, Layout::Known) else {
        println!("bench scan skipped: the stub's map could not be built");
        return;
    };
    let mut buffer = [0u8; 16 * ENTRY_SIZE];
    let (instructions, whole) = crate::gvascan::with_mmu(&map, || {
        let start = counter();
        let whole = scan_whole(&mut buffer);
        (counter().wrapping_sub(start), whole)
    });
    match whole {
        Some([regions, probes, holes, calls]) => println!(
            "bench scan median={instructions} min={instructions} max={instructions} probes={probes} regions={regions} holes={holes} calls={calls}"
        ),
        None => println!("bench scan failed"),
    }
    // The scan's floor: what one of its probes costs the guest itself, an
    // `AT S1E1R` and the `PAR_EL1` read, in the same regime (`make bench`
    // multiplies it by the probes).
    let probe_at = buffer.as_ptr() as u64;
    crate::gvascan::with_mmu(&map, || {
        report("floor-at-probe", || {
            // SAFETY: AT only translates; PAR_EL1 is the stub's own.
            unsafe {
                core::arch::asm!("at s1e1r, {a}", "isb", "mrs {p}, par_el1", a = in(reg) probe_at, p = out(reg) _, options(nostack))
            };
        });
    });
    scan_worst_call(env);
}

/// Every SCAN call of the TTBR0 range from cursor 0 until done, 16 entries
/// a call; [regions (joined), probes, holes, calls], or `None` on an error.
fn scan_whole(buffer: &mut [u8; 16 * ENTRY_SIZE]) -> Option<[u64; 4]> {
    let (mut cursor, mut totals, mut last) = (CURSOR_START, [0u64; 4], None::<Region>);
    loop {
        let reply =
            crate::backdoor::brk_call_x4(Function::Scan.id(), [0, buffer.as_mut_ptr() as u64, 16, cursor, 0, 0, 0]);
        let Ok([0, written, probes, holes, next]) = reply else { return None };
        for entry in buffer.chunks_exact(ENTRY_SIZE).take(written as usize) {
            let region = platform::gvascan::decode(entry.try_into().ok()?)?;
            if !last.as_mut().is_some_and(|l| l.join(&region)) {
                totals[0] += 1;
                last = Some(region);
            }
        }
        totals[1] += probes;
        totals[2] += holes;
        totals[3] += 1;
        if next == CURSOR_DONE {
            return Some(totals);
        }
        cursor = next;
    }
}

/// The worst case of one SCAN call under arguments a hostile guest can
/// choose: the whole budget spent on mapped pages of a 48-bit space (four
/// table levels walked per probe), each page a region of its own (the
/// attributes alternate) written to a buffer of the largest capacity. The
/// cursor points at the first of those pages.
fn scan_worst_call(env: &Env) {
    let Ok(map) = crate::gvascan::build(env, Layout::Dense) else {
        println!("bench scan-worst-call skipped: the stub's map could not be built");
        return;
    };
    let mut buffer = WORST_BUFFER.lock();
    let args = [0, buffer.as_mut_ptr() as u64, SCAN_CAPACITY_MAX, crate::gvascan::TEST_BASE, 0, 0, 0];
    let mut samples = [0u64; 11];
    let mut reply = None;
    for sample in &mut samples {
        let (instructions, r) = crate::gvascan::with_mmu(&map, || {
            let start = counter();
            let r = crate::backdoor::brk_call_x4(Function::Scan.id(), args);
            (counter().wrapping_sub(start), r)
        });
        *sample = instructions;
        reply = Some(r);
    }
    match reply {
        Some(Ok([0, regions, probes, _, next])) if probes == SCAN_PROBE_BUDGET && next != CURSOR_DONE => {
            report_samples(
                "scan-worst-call",
                &mut samples,
                format_args!(" probes={probes} regions={regions} budget={SCAN_PROBE_BUDGET}"),
            );
        }
        other => println!("bench scan-worst-call failed: {other:x?}"),
    }
}

/// Reports a row from `samples` (sorted here).
fn report_samples(name: &str, samples: &mut [u64], extra: core::fmt::Arguments) {
    samples.sort_unstable();
    let (Some(&min), Some(&median), Some(&max)) = (samples.first(), samples.get(samples.len() / 2), samples.last())
    else {
        return;
    };
    println!("bench {name} median={median} min={min} max={max}{extra}");
}

/// `vtimer-latency`: from the moment the virtual timer's condition is met
/// to the guest handler's first instruction. `sgi-latency`: from just
/// before the `ICC_SGI1R_EL1` (GICv3) or `GICD_SGIR` (GICv2) write that
/// sends this vCPU an SGI to the handler's first instruction (under the
/// hypervisor, the write traps).
fn interrupt_latency(env: &Env) {
    if gic::status().is_err() {
        println!("bench interrupt latency skipped: no usable GIC");
        return;
    }
    // The GICv2 table's IRQ vector finds the CPU interface in x11, which
    // the wait loops below hand it (0, unused, for the GICv3 one).
    let gicc = gic::cpu_interface_frame();
    // SAFETY: all three are 2 KiB-aligned vector tables in the image;
    // bench.S's differ from the stub's only in the IRQ vector, whose
    // registers the wait loops below leave to it.
    let (bench, stub) = unsafe {
        let bench = if gicc.is_some() { bench_vectors_v2.as_ptr() } else { bench_vectors.as_ptr() };
        (bench as u64, stub_vectors.as_ptr() as u64)
    };
    let gicc = gicc.unwrap_or(0);
    set_vbar(bench);
    if let Ok(ppi) = env.virtual_timer {
        let mhz = crate::timer::frequency() / 1_000_000;
        latency_row("vtimer-latency", ppi, format_args!(" counter_mhz={mhz}"), || timer_sample(ppi, gicc));
    }
    match gic::sgi_write(LATENCY_SGI, 0) {
        Some(write) => {
            latency_row("sgi-latency", IntId::sgi(LATENCY_SGI), format_args!(""), || sgi_sample(write, gicc))
        }
        None => println!("bench sgi-latency skipped: this vCPU's GIC CPU interface is not set up"),
    }
    set_vbar(stub);
}

/// One latency row: `intid` enabled, [`LATENCY_SAMPLES`] samples taken
/// with `sample` (`None`: the vector took another INTID), reported.
fn latency_row(name: &str, intid: IntId, extra: core::fmt::Arguments, mut sample: impl FnMut() -> Option<u64>) {
    let _ = crate::gic::configure(0, intid, LATENCY_PRIORITY, true);
    let mut samples = [0u64; LATENCY_SAMPLES];
    let taken = samples.iter_mut().all(|slot| sample().map(|latency| *slot = latency).is_some());
    let _ = crate::gic::configure(0, intid, LATENCY_PRIORITY, false);
    if taken {
        report_samples(name, &mut samples, extra);
    } else {
        println!("bench {name} failed: another interrupt arrived");
    }
}

fn set_vbar(table: u64) {
    // SAFETY: `table` is one of the image's two vector tables, each able
    // to take every exception the stub meets.
    unsafe {
        platform::msr!("vbar_el1", table);
        core::arch::asm!("isb", options(nostack));
    }
}

/// One timer interrupt; its latency in instructions, or `None` if the
/// vector took another INTID. `gicc`: for the GICv2 vector, in `x11`.
fn timer_sample(ppi: IntId, gicc: u64) -> Option<u64> {
    let frequency = crate::timer::frequency();
    if frequency == 0 {
        return None;
    }
    let (cycles, ticks): (u64, u64);
    // SAFETY: reads two counters; back to back, one instruction apart.
    unsafe {
        core::arch::asm!("isb", "mrs {c}, pmccntr_el0", "mrs {t}, cntvct_el0",
            c = out(reg) cycles, t = out(reg) ticks, options(nomem, nostack));
    }
    let ns_of = |ticks: u64| (u128::from(ticks) * u128::from(NS_PER_S) / u128::from(frequency)) as u64;
    // Cycles (= ns under -icount shift=0) minus counter ns, at one instant.
    let offset = cycles.wrapping_add(1).wrapping_sub(ns_of(ticks));
    let deadline = ticks + TIMER_LEAD_NS * frequency / NS_PER_S;
    let (stamp, intid): (u64, u64);
    // SAFETY: arms this vCPU's virtual timer and waits, IRQs unmasked, for
    // bench.S's IRQ vector, which writes x9 and x10 (and x11, which holds
    // the GICv2 CPU interface's address for it) and returns with IRQs
    // masked again; the timer is left disabled.
    unsafe {
        core::arch::asm!(
            "msr cntv_cval_el0, {deadline}",
            "msr cntv_ctl_el0, {enable}",
            "isb",
            "msr daifclr, #2",
            "1: cbz x10, 1b",
            deadline = in(reg) deadline,
            enable = in(reg) CNTV_CTL_ENABLE,
            inout("x10") 0u64 => intid,
            out("x9") stamp,
            inout("x11") gicc => _,
            options(nostack),
        );
    }
    (gic::acknowledged_intid(intid) == u32::from(ppi)).then(|| stamp.wrapping_sub(ns_of(deadline).wrapping_add(offset)))
}

/// One SGI to this vCPU, sent with `write`; its latency in instructions,
/// or `None` if the vector took another INTID. `gicc`: for the GICv2
/// vector, in `x11`.
fn sgi_sample(write: SgiWrite, gicc: u64) -> Option<u64> {
    let (start, stamp, intid): (u64, u64, u64);
    match write {
        // SAFETY: sends this vCPU an enabled SGI and waits, IRQs unmasked,
        // for bench.S's IRQ vector, which writes x9..x11 and returns with
        // IRQs masked again.
        SgiWrite::SystemRegister(value) => unsafe {
            core::arch::asm!(
                "msr daifclr, #2",
                "mrs {start}, pmccntr_el0",
                "msr icc_sgi1r_el1, {value}",
                "isb",
                "1: cbz x10, 1b",
                start = out(reg) start,
                value = in(reg) value,
                inout("x10") 0u64 => intid,
                out("x9") stamp,
                inout("x11") gicc => _,
                options(nostack),
            );
        },
        // SAFETY: as above, the SGI sent with a store to `GICD_SGIR`,
        // the GIC's own register for it (`gic::sgi_write`).
        SgiWrite::Mmio { address, value } => unsafe {
            core::arch::asm!(
                "msr daifclr, #2",
                "mrs {start}, pmccntr_el0",
                "str {value:w}, [{address}]",
                "isb",
                "1: cbz x10, 1b",
                start = out(reg) start,
                address = in(reg) address,
                value = in(reg) value,
                inout("x10") 0u64 => intid,
                out("x9") stamp,
                inout("x11") gicc => _,
                options(nostack),
            );
        },
    }
    (gic::acknowledged_intid(intid) == LATENCY_SGI).then(|| stamp.wrapping_sub(start))
}
