//! Host tests of EL3's external-abort path. Syndromes are built from the
//! ISS layout (Arm ARM, `ESR_EL3`, "ISS encoding for an exception from a
//! Data Abort"), field by field, since QEMU cannot produce them: EC 0x24 <<
//! 26 with IL, then ISV, SAS << 22, SSE, SRT << 16, SF, AR, FnV, EA, CM,
//! S1PTW, WnR and DFSC.

use super::*;
use crate::abi::par;
use crate::arch::regs::{HCR_VM, SPSR_A, SPSR_D, SPSR_F, SPSR_I};
use crate::esr::AbortIss;
use crate::mmio::AccessSize as MmioSize;
use crate::pci::config::{offset, VENDOR_ID_ARM};
use crate::pci::den0115::{handle, CallError};
use crate::pci::tests::virt;
use crate::pci::Bdf;

/// EC 0x24 (data abort from a lower EL) with IL.
const DATA_ABORT_LOWER: u64 = (0x24 << Esr::EC_SHIFT) | Esr::IL;
const SAS_SHIFT: u32 = 22;
const SRT_SHIFT: u32 = 16;
const SEA: u64 = FaultStatus::SYNC_EXTERNAL_CODE as u64;
/// `SAS` values.
const BYTE: u64 = 0;
const HALF: u64 = 1;
const WORD: u64 = 2;
const DOUBLE: u64 = 3;

/// The ECAM window the tests serve: buses 0 and 1 just past 4 GiB.
const BASE: u64 = 0x1_0000_0000;
fn window() -> EcamWindow {
    EcamWindow::new(BASE, 0, 1).unwrap()
}

/// A load of `sas` into `srt` (SF: `Xt`), sign-extending if `sse`.
fn load(sas: u64, srt: u64, sse: bool, sf: bool) -> Esr {
    let sse = if sse { AbortIss::SSE } else { 0 };
    let sf = if sf { AbortIss::SF } else { 0 };
    Esr(DATA_ABORT_LOWER | AbortIss::ISV | sas << SAS_SHIFT | sse | srt << SRT_SHIFT | sf | SEA)
}

/// A store of `sas` from `srt`.
fn store(sas: u64, srt: u64, sf: bool) -> Esr {
    Esr(load(sas, srt, false, sf).0 | AbortIss::WNR)
}

/// Registers x0..x30 holding `0x1000 + n`, and x`rt` = `value`.
fn regs_with(rt: usize, value: u64) -> [u64; 31] {
    let mut regs = core::array::from_fn(|n| 0x1000 + n as u64);
    if let Some(reg) = regs.get_mut(rt) {
        *reg = value;
    }
    regs
}

fn frame_with(regs: [u64; 31]) -> TrapFrame {
    TrapFrame { x: regs, elr: 0x4040_1000, spsr: SPSR_EL1H, _pad: 0 }
}

/// `PSTATE` of EL1h, EL1t, EL0, EL2h, EL2t, EL3h, with DAIF masked.
const SPSR_EL1H: u64 = 0x3c5;
const SPSR_EL1T: u64 = 0x3c4;
const SPSR_EL0: u64 = 0x3c0;
const SPSR_EL2H: u64 = 0x3c9;
const SPSR_EL2T: u64 = 0x3c8;
const SPSR_EL3H: u64 = 0x3cd;
/// AArch32 User and Supervisor modes (M[4] set).
const SPSR_A32_USR: u64 = 0x10;
const SPSR_A32_SVC: u64 = 0x13;

/// The PA of device `device`'s register `reg` on `bus`.
fn pa(bus: u8, device: u8, reg: u16) -> u64 {
    window().address(Bdf::new(bus, device, 0).unwrap(), reg).unwrap()
}

fn read_call(device: u8, reg: u16, size: AccessSize) -> PciCall {
    PciCall::Read { address: Sbdf { segment: 0, bdf: Bdf::new(0, device, 0).unwrap() }, offset: reg, size }
}

// --- the syndrome -----------------------------------------------------------

#[test]
fn sizes_map_to_config_access_sizes() {
    let regs = regs_with(0, 0);
    for (sas, size) in [(BYTE, AccessSize::Byte), (HALF, AccessSize::Half), (WORD, AccessSize::Word)] {
        let access = decode(load(sas, 3, false, false), pa(0, 1, 0x3c), &window(), &regs).unwrap();
        assert_eq!(access.call, read_call(1, 0x3c, size));
        assert_eq!(access.access.size.bytes() as u16, size.bytes());
        assert_eq!((access.access.rt, access.access.ipa), (3, pa(0, 1, 0x3c)));
    }
    // Config space has no 8-byte accesses: an unsupported request, which
    // the monitor completes rather than reflects.
    let error = decode(load(DOUBLE, 3, false, true), pa(0, 1, 0x10), &window(), &regs).unwrap_err();
    let EaError::AccessSize { access } = error else { panic!("{error:?}") };
    assert_eq!(access.size, MmioSize::Double);
    assert_eq!(error.unsupported_request(), Some(access));
}

#[test]
fn every_field_of_the_instruction_syndrome_is_decoded() {
    let regs = regs_with(0, 0);
    let at = pa(0, 0, 0x08);
    // SRT: every register number, 31 included.
    for srt in 0..32 {
        let access = decode(load(WORD, srt, false, true), at, &window(), &regs).unwrap();
        assert_eq!(u64::from(access.access.rt), srt);
    }
    // SSE, SF, AR, WnR.
    let access = decode(load(HALF, 4, true, false), at, &window(), &regs).unwrap().access;
    assert!(access.sign_extend && !access.sf && !access.is_write());
    let access = decode(load(HALF, 4, false, true), at, &window(), &regs).unwrap().access;
    assert!(!access.sign_extend && access.sf);
    let acquire = Esr(load(WORD, 4, false, false).0 | AbortIss::AR);
    assert!(decode(acquire, at, &window(), &regs).unwrap().access.acquire_release);
    let access = decode(store(WORD, 4, false), at, &window(), &regs).unwrap();
    assert!(access.access.is_write());
    assert!(matches!(access.call, PciCall::Write { .. }));
    // EA (implementation-defined error type) and SET do not matter.
    let flagged = Esr(load(WORD, 4, false, false).0 | AbortIss::EA | (0b10 << 11));
    assert!(decode(flagged, at, &window(), &regs).is_ok());
}

#[test]
fn syndromes_that_are_not_a_config_access_are_refused() {
    let regs = regs_with(0, 0);
    let at = pa(0, 0, 0);
    let good = load(WORD, 1, false, false).0;
    let class = |ec: u64| Esr((good & !(0x3f << Esr::EC_SHIFT)) | ec << Esr::EC_SHIFT);
    let cases = [
        // The same abort from EL3 itself (EC 0x25), an instruction abort, an SMC.
        (class(0x25), EaError::NotLowerDataAbort(ExceptionClass::DataAbortSame)),
        (class(0x20), EaError::NotLowerDataAbort(ExceptionClass::InstructionAbortLower)),
        (class(0x17), EaError::NotLowerDataAbort(ExceptionClass::Smc64)),
        // DFSC other than a synchronous external abort on the access.
        (Esr(good & !0x3f | 0x05), EaError::NotExternalAbort(FaultStatus::Translation { level: 1 })),
        (Esr(good & !0x3f | 0x15), EaError::NotExternalAbort(FaultStatus::SyncExternalOnWalk { level: 1 })),
        (Esr(good & !0x3f | 0x18), EaError::NotExternalAbort(FaultStatus::SyncParityOrEcc)),
        (Esr(good & !0x3f | 0x21), EaError::NotExternalAbort(FaultStatus::Alignment)),
        // ISV, S1PTW, CM, FnV.
        (Esr(good & !AbortIss::ISV), EaError::NotEmulatable(NotEmulatable::NoSyndrome)),
        (Esr(good | AbortIss::S1PTW), EaError::NotEmulatable(NotEmulatable::StageOneWalk)),
        (Esr(good | AbortIss::CM), EaError::NotEmulatable(NotEmulatable::CacheMaintenance)),
        (Esr(good | AbortIss::FNV), EaError::NotEmulatable(NotEmulatable::FarNotValid)),
    ];
    for (esr, expected) in cases {
        assert_eq!(decode(esr, at, &window(), &regs), Err(expected), "{esr}");
        // The same checks come first when choosing the translation, so the
        // monitor never translates an abort it cannot serve.
        assert_eq!(Translation::for_fault(esr, SPSR_EL1H), Err(expected), "{esr}");
        assert_eq!(expected.unsupported_request(), None);
    }
}

// --- the translation ----------------------------------------------------------

#[test]
fn translation_follows_the_faulting_el_and_the_direction() {
    let read = load(WORD, 0, false, false);
    let write = store(WORD, 0, false);
    let cases = [
        (SPSR_EL0, Translation::S12E0R, Translation::S12E0W),
        (SPSR_EL1T, Translation::S12E1R, Translation::S12E1W),
        (SPSR_EL1H, Translation::S12E1R, Translation::S12E1W),
        (SPSR_EL2T, Translation::S1E2R, Translation::S1E2W),
        (SPSR_EL2H, Translation::S1E2R, Translation::S1E2W),
    ];
    for (spsr, for_read, for_write) in cases {
        assert_eq!(Translation::for_fault(read, spsr), Ok(for_read));
        assert_eq!(Translation::for_fault(write, spsr), Ok(for_write));
    }
    assert_eq!(Translation::for_fault(read, SPSR_EL3H), Err(EaError::NotLowerEl));
    assert_eq!(Translation::for_fault(read, SPSR_A32_USR), Err(EaError::Aarch32));
    assert_eq!(Translation::for_fault(write, SPSR_A32_SVC), Err(EaError::Aarch32));
    assert_eq!(Translation::S12E1W.mnemonic(), "AT S12E1W");
    assert_eq!(Translation::S1E2R.mnemonic(), "AT S1E2R");
}

#[test]
fn the_pa_is_the_par_page_plus_the_far_offset() {
    // PAR_EL1 success: ATTR 0x00 (Device-nGnRnE) in [63:56], PA[51:12],
    // NS (bit 9); FAR's low 12 bits are the offset in the page.
    let par = 0x0000_0001_0000_8000 | 1 << 9;
    assert_eq!(fault_pa(par, 0xffff_0000_dead_a014), Ok(0x1_0000_8014));
    assert_eq!(fault_pa(0xff00_000f_ffff_f000, 0xfff), Ok(0xf_ffff_ffff));
    // F set: FST (a DFSC) in [6:1], S (stage 2) in bit 9.
    let stage1 = par::F | 0x07 << 1;
    assert_eq!(
        fault_pa(stage1, 0x14),
        Err(EaError::NoTranslation { status: FaultStatus::Translation { level: 3 }, stage2: false })
    );
    let stage2 = par::F | 0x0d << 1 | Par::S;
    assert_eq!(
        fault_pa(stage2, 0x14),
        Err(EaError::NoTranslation { status: FaultStatus::Permission { level: 1 }, stage2: true })
    );
}

// --- the window ---------------------------------------------------------------

#[test]
fn the_pa_names_bus_device_function_and_register() {
    let regs = regs_with(0, 0);
    let esr = load(BYTE, 0, false, false);
    let cases = [
        (BASE, (0, 0, 0, 0x000)),
        (BASE + 0xfff, (0, 0, 0, 0xfff)),
        (BASE + 0x8000 + 0x3d, (0, 1, 0, 0x03d)),
        (BASE + 0x7000 + 0x100, (0, 0, 7, 0x100)),
        (BASE + 0xf_8000 + 0x7000, (0, 31, 7, 0x000)),
        (BASE + 0x10_0000 + 0x3c, (1, 0, 0, 0x03c)),
        (BASE + 0x1f_ffff, (1, 31, 7, 0xfff)),
    ];
    for (at, (bus, device, function, reg)) in cases {
        let access = decode(esr, at, &window(), &regs).unwrap();
        let bdf = Bdf::new(bus, device, function).unwrap();
        let expected = PciCall::Read { address: Sbdf { segment: 0, bdf }, offset: reg, size: AccessSize::Byte };
        assert_eq!(access.call, expected, "{at:#x}");
    }
    // A window whose first bus is not 0: its first MiB is that bus.
    let high = EcamWindow::new(BASE, 0x20, 0x21).unwrap();
    let access = decode(esr, BASE + 0x10_0000, &high, &regs).unwrap();
    let PciCall::Read { address, .. } = access.call else { panic!() };
    assert_eq!(address.bdf.bus(), 0x21);
}

#[test]
fn outside_the_window_or_past_its_last_bus_is_not_ours() {
    let regs = regs_with(0, 0);
    let esr = load(WORD, 0, false, false);
    for at in [0, BASE - 4, BASE + 0x20_0000, BASE + 0x20_0000 + 0x8000, BASE + 0x1000_0000, u64::MAX - 3] {
        let error = decode(esr, at, &window(), &regs).unwrap_err();
        assert_eq!(error, EaError::OutsideWindow { pa: at });
        assert_eq!(error.unsupported_request(), None);
    }
    // The same address is inside a window with more buses.
    let wider = EcamWindow::new(BASE, 0, 2).unwrap();
    assert!(decode(esr, BASE + 0x20_0000, &wider, &regs).is_ok());
}

#[test]
fn misaligned_accesses_are_unsupported_requests() {
    let regs = regs_with(0, 0);
    for (sas, at) in [(HALF, pa(0, 0, 1)), (WORD, pa(0, 0, 2)), (WORD, pa(0, 0, 0xffd)), (HALF, pa(0, 1, 0xfff))] {
        let error = decode(load(sas, 0, false, false), at, &window(), &regs).unwrap_err();
        let EaError::Misaligned { access } = error else { panic!("{error:?}") };
        assert_eq!(access.ipa, at);
        assert_eq!(error.unsupported_request(), Some(access));
    }
    // Bytes are never misaligned.
    assert!(decode(load(BYTE, 0, false, false), pa(0, 0, 0xfff), &window(), &regs).is_ok());
}

// --- stores: the value comes from the register, at the access's width ---------

#[test]
fn a_store_takes_its_value_from_the_transfer_register() {
    let value = 0x8877_6655_4433_2211;
    let cases = [
        (BYTE, false, AccessSize::Byte, 0x11),
        (HALF, false, AccessSize::Half, 0x2211),
        (WORD, false, AccessSize::Word, 0x4433_2211),
        // The register width does not widen a narrow store.
        (BYTE, true, AccessSize::Byte, 0x11),
        (WORD, true, AccessSize::Word, 0x4433_2211),
    ];
    for (sas, sf, size, expected) in cases {
        let access = decode(store(sas, 9, sf), pa(0, 0, 0x3c), &window(), &regs_with(9, value)).unwrap();
        let address = Sbdf { segment: 0, bdf: Bdf::new(0, 0, 0).unwrap() };
        assert_eq!(access.call, PciCall::Write { address, offset: 0x3c, size, value: expected });
    }
    // x30 is the last register; SRT 31 stores zero (wzr/xzr), not SP.
    let access = decode(store(WORD, 30, false), pa(0, 0, 0x3c), &window(), &regs_with(30, 0xabcd)).unwrap();
    assert!(matches!(access.call, PciCall::Write { value: 0xabcd, .. }));
    let access = decode(store(WORD, 31, false), pa(0, 0, 0x3c), &window(), &regs_with(0, u64::MAX)).unwrap();
    assert!(matches!(access.call, PciCall::Write { value: 0, .. }));
}

// --- completion -----------------------------------------------------------------

/// Completes a load of `sas` (SSE, SF) into x5 with the reply value `raw`;
/// x5 and ELR afterwards.
fn complete_load(sas: u64, sse: bool, sf: bool, raw: u64) -> (u64, u64) {
    let access = decode(load(sas, 5, sse, sf), pa(0, 0, 0), &window(), &regs_with(0, 0)).unwrap();
    let mut frame = frame_with(regs_with(5, 0x5555_5555_5555_5555));
    access.complete([Status::Success.x0(), raw, 0, 0], &mut frame);
    (frame.x[5], frame.elr)
}

#[test]
fn loads_zero_or_sign_extend_into_xt_or_wt() {
    let cases = [
        // LDRB Wt / LDRH Wt / LDR Wt: zero-extended, bits [63:32] cleared.
        (BYTE, false, false, 0x80, 0x80),
        (HALF, false, false, 0x8000, 0x8000),
        (WORD, false, false, 0x8000_0000, 0x8000_0000),
        // LDRSB/LDRSH Xt, LDRSW Xt: sign-extended to 64 bits.
        (BYTE, true, true, 0x80, 0xffff_ffff_ffff_ff80),
        (HALF, true, true, 0x8000, 0xffff_ffff_ffff_8000),
        (WORD, true, true, 0x8000_0000, 0xffff_ffff_8000_0000),
        // LDRSB/LDRSH Wt: sign-extended to 32 bits, bits [63:32] cleared.
        (BYTE, true, false, 0x80, 0xffff_ff80),
        (HALF, true, false, 0x8000, 0xffff_8000),
        // A positive value is the same either way.
        (BYTE, true, true, 0x7f, 0x7f),
        (HALF, true, false, 0x7fff, 0x7fff),
        // Reply bits beyond the access size are dropped.
        (BYTE, false, true, 0xffff_ff12, 0x12),
        (HALF, true, true, 0x1_7fff, 0x7fff),
    ];
    for (sas, sse, sf, raw, expected) in cases {
        let (x5, elr) = complete_load(sas, sse, sf, raw);
        assert_eq!(x5, expected, "SAS {sas} SSE {sse} SF {sf} raw {raw:#x}");
        assert_eq!(elr, 0x4040_1000 + INSTRUCTION_BYTES);
    }
}

#[test]
fn a_load_into_xzr_is_discarded_and_a_refused_read_reads_all_ones() {
    let access = decode(load(WORD, 31, false, true), pa(0, 0, 0), &window(), &regs_with(0, 0)).unwrap();
    let before = regs_with(0, 0);
    let mut frame = frame_with(before);
    access.complete([Status::Success.x0(), 0x1234, 0, 0], &mut frame);
    assert_eq!(frame.x, before);
    assert_eq!(frame.elr, 0x4040_1000 + 4);

    let access = decode(load(HALF, 2, false, true), pa(0, 0, 0), &window(), &regs_with(0, 0)).unwrap();
    let refused = Status::InvalidParameter.x0();
    let mut frame = frame_with(regs_with(0, 0));
    access.complete([refused, 0, 0, 0], &mut frame);
    assert_eq!(frame.x[2], 0xffff);
}

#[test]
fn a_store_changes_no_register_and_steps_over() {
    let access = decode(store(WORD, 7, false), pa(0, 0, 0x3c), &window(), &regs_with(7, 0x22)).unwrap();
    let before = regs_with(7, 0x22);
    let mut frame = frame_with(before);
    access.complete([Status::Success.x0(), 0xdead, 0xbeef, 0], &mut frame);
    assert_eq!(frame.x, before);
    assert_eq!(frame.elr, 0x4040_1000 + 4);
}

#[test]
fn unsupported_requests_read_all_ones_and_drop_writes() {
    let regs = regs_with(0, 0);
    let error = decode(load(DOUBLE, 6, false, true), pa(0, 0, 0x10), &window(), &regs).unwrap_err();
    let mut frame = frame_with(regs);
    complete_unsupported(&error.unsupported_request().unwrap(), &mut frame);
    assert_eq!(frame.x[6], u64::MAX);
    assert_eq!(frame.elr, 0x4040_1000 + 4);

    let error = decode(load(WORD, 6, false, false), pa(0, 0, 0x12), &window(), &regs).unwrap_err();
    let mut frame = frame_with(regs);
    complete_unsupported(&error.unsupported_request().unwrap(), &mut frame);
    assert_eq!(frame.x[6], 0xffff_ffff);

    let error = decode(store(DOUBLE, 6, true), pa(0, 0, 0x10), &window(), &regs).unwrap_err();
    let mut frame = frame_with(regs);
    complete_unsupported(&error.unsupported_request().unwrap(), &mut frame);
    assert_eq!(frame.x, regs);
    assert_eq!(frame.elr, 0x4040_1000 + 4);
}

#[test]
fn the_same_model_serves_both_paths() {
    // Decode, serve with den0115::handle (what PCI_READ/PCI_WRITE run),
    // complete: the vendor and device ID of 00:00.0, then a BAR sizing.
    let mut space = virt();
    let segment = SegmentInfo::new(1);
    let mut frame = frame_with(regs_with(0, 0));
    let id = decode(load(WORD, 0, false, false), pa(0, 0, offset::VENDOR_ID), &window(), &frame.x).unwrap();
    id.complete(handle(id.call, &mut space, &segment), &mut frame);
    assert_eq!(frame.x[0], u64::from(VENDOR_ID_ARM) | 0x031 << 16);

    frame.x[1] = u64::MAX;
    let sizing = decode(store(WORD, 1, false), pa(0, 1, offset::BAR0), &window(), &frame.x).unwrap();
    sizing.complete(handle(sizing.call, &mut space, &segment), &mut frame);
    let bar = decode(load(WORD, 2, false, true), pa(0, 1, offset::BAR0), &window(), &frame.x).unwrap();
    bar.complete(handle(bar.call, &mut space, &segment), &mut frame);
    // A 4 KiB, 64-bit memory BAR: address bits from 12 up, type 0b100.
    assert_eq!(frame.x[2], 0xffff_f004);
    assert_eq!(frame.elr, 0x4040_1000 + 3 * 4);

    // An absent function reads all-ones, as on the SMC path; bus 1 is in
    // the segment but empty.
    let absent = decode(load(HALF, 3, false, false), pa(1, 0, 0), &window(), &frame.x).unwrap();
    absent.complete(handle(absent.call, &mut space, &segment), &mut frame);
    assert_eq!(frame.x[3], 0xffff);
    // A window wider than the segment: the call is refused (bus out of
    // range) and the read answers all-ones too.
    let wider = EcamWindow::new(BASE, 0, 3).unwrap();
    let past = decode(load(HALF, 4, false, false), BASE + 0x30_0000, &wider, &frame.x).unwrap();
    let reply = handle(past.call, &mut space, &segment);
    assert_eq!(reply[0], CallError::BusOutOfRange { bus: 3, start: 0, end: 1 }.status().x0());
    past.complete(reply, &mut frame);
    assert_eq!(frame.x[4], 0xffff);
}

// --- reflection -------------------------------------------------------------------

const VBAR_EL1: u64 = 0x4040_0000;
const VBAR_EL2: u64 = 0xffff_ff80_0000_0000;

fn state(spsr: u64, hcr_el2: u64) -> LowerState {
    LowerState {
        spsr,
        elr: 0x4040_2468,
        far: 0x1_0000_0010,
        hcr_el2,
        sctlr_el1: SCTLR_SPAN,
        sctlr_el2: SCTLR_SPAN,
        vbar_el1: VBAR_EL1,
        vbar_el2: VBAR_EL2,
    }
}

/// A guest's HCR_EL2: stage 2 on, EL1 AArch64.
const GUEST_HCR: u64 = HCR_VM | HCR_RW;

#[test]
fn reflection_vectors_for_each_source_el_and_state() {
    let esr = load(WORD, 0, false, false);
    let cases = [
        // (SPSR, HCR_EL2, target, vector offset, "same EL")
        (SPSR_EL1H, GUEST_HCR, ExceptionLevel::El1, 0x200, true),
        (SPSR_EL1T, GUEST_HCR, ExceptionLevel::El1, 0x000, true),
        (SPSR_EL0, GUEST_HCR, ExceptionLevel::El1, 0x400, false),
        (SPSR_A32_USR, GUEST_HCR, ExceptionLevel::El1, 0x600, false),
        // The EL2 host's EL0 (TGE) and external aborts routed to EL2 (TEA).
        (SPSR_EL0, GUEST_HCR | HCR_TGE | HCR_E2H, ExceptionLevel::El2, 0x400, false),
        (SPSR_A32_USR, HCR_TGE | HCR_RW, ExceptionLevel::El2, 0x600, false),
        (SPSR_EL1H, GUEST_HCR | HCR_TEA, ExceptionLevel::El2, 0x400, false),
        (SPSR_EL0, GUEST_HCR | HCR_TEA, ExceptionLevel::El2, 0x400, false),
        // EL2 itself, whatever HCR_EL2 routes for EL0/EL1.
        (SPSR_EL2H, GUEST_HCR, ExceptionLevel::El2, 0x200, true),
        (SPSR_EL2T, 0, ExceptionLevel::El2, 0x000, true),
    ];
    for (spsr, hcr, target, offset, same) in cases {
        let reflection = reflect(esr, &state(spsr, hcr)).unwrap();
        let vbar = if target == ExceptionLevel::El2 { VBAR_EL2 } else { VBAR_EL1 };
        assert_eq!(reflection.target, target, "SPSR {spsr:#x} HCR {hcr:#x}");
        assert_eq!(reflection.vector, vbar + offset, "SPSR {spsr:#x} HCR {hcr:#x}");
        assert_eq!(vector_offset(spsr, target), offset);
        let class = if same { ExceptionClass::DataAbortSame } else { ExceptionClass::DataAbortLower };
        assert_eq!(reflection.esr.class(), class);
        // The ISS is the abort's; FAR, ELR and SPSR are the interrupted context's.
        assert_eq!(reflection.esr.iss(), esr.iss());
        assert_eq!((reflection.far, reflection.elr, reflection.spsr), (0x1_0000_0010, 0x4040_2468, spsr));
        let mode = if target == ExceptionLevel::El2 { SPSR_M_EL2H } else { SPSR_M_EL1H };
        assert_eq!(reflection.pstate, mode | SPSR_D | SPSR_A | SPSR_I | SPSR_F);
    }
}

#[test]
fn instruction_aborts_and_walk_aborts_are_reflected_too() {
    // An instruction fetch from the window (EC 0x20, IFSC 0x10) from EL1.
    let fetch = Esr((0x20 << Esr::EC_SHIFT) | Esr::IL | SEA);
    let reflection = reflect(fetch, &state(SPSR_EL1H, GUEST_HCR)).unwrap();
    assert_eq!(reflection.esr, Esr((0x21 << Esr::EC_SHIFT) | Esr::IL | SEA));
    assert_eq!(reflection.vector, VBAR_EL1 + 0x200);
    // An abort on the stage-2 translation of a stage-1 walk belongs to EL2.
    let walk = Esr(DATA_ABORT_LOWER | AbortIss::S1PTW | 0x15);
    let reflection = reflect(walk, &state(SPSR_EL1H, GUEST_HCR)).unwrap();
    assert_eq!((reflection.target, reflection.vector), (ExceptionLevel::El2, VBAR_EL2 + 0x400));
    assert_eq!(reflection.esr, walk);
    // Without a valid FAR the syndrome keeps FnV.
    let no_far = Esr(DATA_ABORT_LOWER | AbortIss::FNV | SEA);
    assert!(reflect(no_far, &state(SPSR_EL0, GUEST_HCR)).unwrap().esr.abort().unwrap().fnv());
}

#[test]
fn what_cannot_be_reflected() {
    let esr = load(WORD, 0, false, false);
    assert_eq!(reflect(esr, &state(SPSR_EL3H, GUEST_HCR)), Err(ReflectError::FromEl3));
    // EL1 in AArch32 (HCR_EL2.RW clear) would take it in AArch32.
    assert_eq!(reflect(esr, &state(SPSR_A32_SVC, HCR_VM)), Err(ReflectError::Aarch32Target(ExceptionLevel::El1)));
    assert_eq!(reflect(esr, &state(SPSR_EL0, 0)), Err(ReflectError::Aarch32Target(ExceptionLevel::El1)));
    // Classes without a lower/same pair.
    let smc = Esr((0x17 << Esr::EC_SHIFT) | Esr::IL);
    assert_eq!(reflect(smc, &state(SPSR_EL1H, GUEST_HCR)), Err(ReflectError::NotAnAbort(ExceptionClass::Smc64)));
    let serror = Esr((0x2f << Esr::EC_SHIFT) | Esr::IL);
    assert_eq!(reflect(serror, &state(SPSR_EL1H, GUEST_HCR)), Err(ReflectError::NotAnAbort(ExceptionClass::SError)));
}

#[test]
fn entry_pstate_sets_pan_and_ssbs_as_the_target_asks() {
    let el1h_daif = SPSR_M_EL1H | SPSR_DAIF;
    let el2h_daif = SPSR_M_EL2H | SPSR_DAIF;
    // SPAN = 0 sets PAN on entry to EL1; SPAN = 1 keeps the context's PAN.
    assert_eq!(entry_pstate(SPSR_EL0, ExceptionLevel::El1, 0, GUEST_HCR), el1h_daif | SPSR_PAN);
    assert_eq!(entry_pstate(SPSR_EL0, ExceptionLevel::El1, SCTLR_SPAN, GUEST_HCR), el1h_daif);
    assert_eq!(entry_pstate(SPSR_EL1H | SPSR_PAN, ExceptionLevel::El1, SCTLR_SPAN, 0), el1h_daif | SPSR_PAN);
    // At EL2, SPAN means something only for the VHE host (E2H and TGE).
    assert_eq!(entry_pstate(SPSR_EL1H, ExceptionLevel::El2, 0, GUEST_HCR | HCR_E2H), el2h_daif);
    assert_eq!(entry_pstate(SPSR_EL0, ExceptionLevel::El2, 0, HCR_E2H | HCR_TGE), el2h_daif | SPSR_PAN);
    // DSSBS gives SSBS.
    assert_eq!(entry_pstate(SPSR_EL0, ExceptionLevel::El1, SCTLR_SPAN | SCTLR_DSSBS, GUEST_HCR), el1h_daif | SPSR_SSBS);
    // The context's other bits (NZCV, SSBS) are not carried over.
    assert_eq!(entry_pstate(0xf000_13c5, ExceptionLevel::El1, SCTLR_SPAN, GUEST_HCR), el1h_daif);
    // The reflection uses the target's SCTLR.
    let mut lower = state(SPSR_EL0, GUEST_HCR);
    lower.sctlr_el1 = 0;
    assert_eq!(reflect(load(WORD, 0, false, false), &lower).unwrap().pstate, el1h_daif | SPSR_PAN);
}

#[test]
fn errors_say_what_went_wrong() {
    let access = decode(load(WORD, 0, false, false), pa(0, 0, 0), &window(), &regs_with(0, 0)).unwrap().access;
    let texts = [
        (EaError::OutsideWindow { pa: 0x1234 }.to_string(), "PA 0x1234 is outside the ECAM window"),
        (EaError::AccessSize { access: MmioAccess { size: MmioSize::Double, ..access } }.to_string(), "8-byte access"),
        (EaError::Misaligned { access }.to_string(), "misaligned 4-byte access at PA 0x100000000"),
        (EaError::NotEmulatable(NotEmulatable::NoSyndrome).to_string(), "ISV=0"),
        (
            EaError::NoTranslation { status: FaultStatus::Translation { level: 2 }, stage2: true }.to_string(),
            "stage 2: translation fault, level 2",
        ),
        (ReflectError::Aarch32Target(ExceptionLevel::El1).to_string(), "EL1 is AArch32"),
    ];
    for (text, expected) in texts {
        assert!(text.contains(expected), "{text:?} lacks {expected:?}");
    }
}
