//! Property tests of the PCI shim (`platform::pci`): the DEN0115 calls a
//! Non-secure caller makes with arbitrary registers, the config-space model
//! behind them, and the ECAM address decoder.
//!
//! Bounded: each property runs 256 cases (`common::config`; override with
//! `PROPTEST_CASES`; `PROPTEST_RNG_SEED` reproduces a run).
//!
//! Properties:
//! - `den0115::dispatch` on random sequences of calls against a config
//!   space holding a PL031-like and a PL061-like function answers exactly
//!   what the module documentation and the header table of `config.rs`
//!   say, checked against a model written from those documents: x0 is a
//!   DEN0115 status (sign-extended; the version for `PCI_VERSION`), x1..x3
//!   are 0 on error, reads return the modelled register (all-ones for an
//!   absent function), writes change only writable bits. So vendor ID,
//!   device ID, class code and header type never change, whatever is
//!   written;
//! - `PciCall::decode` and `PciCall::args` are inverse;
//! - ECAM: `decode(address(bdf, offset)) == (bdf, offset)` inside the
//!   window, `address` inverts every successful `decode`, nothing outside
//!   the window decodes; SBDF and routing IDs round-trip;
//! - EL3's external-abort path (`pci::ea`) on any syndrome, address,
//!   `PAR_EL1`, `SPSR_EL3`, `HCR_EL2` and registers: nothing panics; a
//!   decoded access is at the address its call names, with SAS's size, and
//!   completing it changes only its transfer register and moves ELR by 4;
//!   a reflection enters one of the target's four synchronous vectors with
//!   D, A, I and F masked and the abort's ISS.

use platform::arch::regs::SPSR_DAIF;
use platform::arch::trap::TrapFrame;
use platform::arch::ExceptionLevel;
use platform::esr::{AbortIss, Esr, FaultStatus};
use platform::pci::config::{command, offset, HEADER_TYPE, VENDOR_ID_ARM};
use platform::pci::den0115::{self, PCI_FEATURES, PCI_GET_SEG_INFO, PCI_READ, PCI_VERSION, PCI_WRITE, VERSION};
use platform::pci::ea::{self, EcamAccess, LowerState, Translation};
use platform::pci::ecam::{BUS_SIZE, FUNCTION_SIZE};
use platform::pci::{
    ecam_decode, AccessSize, Bdf, ClassCode, ConfigSpace, EcamWindow, Intx, PciCall, Sbdf, SegmentInfo, ShimDevice,
    Status, CONFIG_SPACE_SIZE,
};
use proptest::prelude::*;

mod common;
use common::config;

/// The two shim functions: what `config.rs`'s table says they read at
/// handoff, and which bits of each header dword are writable.
struct ModelFunction {
    dwords: [u32; 1024],
    masks: [u32; 16],
    has_irq: bool,
    pending: bool,
}

impl ModelFunction {
    fn new(part: u16, class: ClassCode, base: u64, size: u64, intx: Intx) -> Self {
        let mut dwords = [0u32; 1024];
        dwords[0] = u32::from(VENDOR_ID_ARM) | u32::from(part) << 16;
        dwords[1] = u32::from(command::MEMORY_SPACE);
        dwords[2] = u32::from(class.base) << 24 | u32::from(class.sub) << 16 | u32::from(class.prog_if) << 8;
        dwords[3] = u32::from(HEADER_TYPE) << 16;
        dwords[4] = base as u32 | 0b0100; // 64-bit memory BAR
        dwords[5] = (base >> 32) as u32;
        dwords[15] = u32::from(intx.line) | u32::from(intx.pin) << 8;
        let address = !(size - 1);
        let mut masks = [0u32; 16];
        masks[1] = u32::from(command::MEMORY_SPACE | command::INTX_DISABLE);
        masks[3] = 0xff;
        masks[4] = address as u32 & !0xf;
        masks[5] = (address >> 32) as u32;
        masks[15] = 0xff;
        Self { dwords, masks, has_irq: true, pending: false }
    }

    fn read(&self, offset: u16, size: u32) -> u32 {
        let mut dword = self.dwords[usize::from(offset >> 2)];
        if offset >> 2 == 1 && self.pending && self.has_irq {
            dword |= 1 << (16 + 3); // status: interrupt
        }
        let mask = if size == 4 { u32::MAX } else { (1 << (size * 8)) - 1 };
        (dword >> ((offset & 3) * 8)) & mask
    }

    fn write(&mut self, offset: u16, size: u32, value: u32) {
        let index = usize::from(offset >> 2);
        let shift = u32::from(offset & 3) * 8;
        let lanes = if size == 4 { u32::MAX } else { ((1 << (size * 8)) - 1) << shift };
        let writable = self.masks.get(index).copied().unwrap_or(0) & lanes;
        self.dwords[index] = (self.dwords[index] & !writable) | ((value << shift) & writable);
    }
}

const PL031: (u16, ClassCode, u64, u64, Intx) = (0x031, ClassCode::RTC, 0x0901_0000, 0x1000, Intx { pin: 1, line: 2 });
const PL061: (u16, ClassCode, u64, u64, Intx) =
    (0x061, ClassCode::OTHER_SYSTEM_PERIPHERAL, 0x0903_0000, 0x1000, Intx { pin: 1, line: 7 });

fn shim(d: (u16, ClassCode, u64, u64, Intx)) -> ShimDevice {
    ShimDevice::new(d.0, d.1, d.2, d.3, Some(d.4)).expect("a valid shim device")
}

fn model(d: (u16, ClassCode, u64, u64, Intx)) -> ModelFunction {
    ModelFunction::new(d.0, d.1, d.2, d.3, d.4)
}

/// One step of a guest (or EL2) talking to the monitor.
#[derive(Clone, Debug)]
enum Op {
    Call { function: u32, args: [u64; 4] },
    SetPending { index: usize, pending: bool },
}

fn function_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => prop::sample::select(&den0115::FUNCTIONS[..]),
        4 => Just(PCI_READ),
        4 => Just(PCI_WRITE),
        1 => any::<u32>(),
        1 => prop::sample::select(&den0115::FUNCTIONS[..]).prop_map(|f| f | 1 << 30),
    ]
}

fn sbdf_strategy() -> impl Strategy<Value = u32> {
    let segment = prop_oneof![6 => Just(0u32), 1 => Just(1u32), 1 => any::<u16>().prop_map(u32::from)];
    let bus = prop_oneof![6 => Just(0u32), 1 => 1u32..3, 1 => any::<u8>().prop_map(u32::from)];
    let device = prop_oneof![6 => 0u32..2, 1 => 2u32..32];
    let function = prop_oneof![6 => Just(0u32), 1 => 1u32..8];
    (segment, bus, device, function).prop_map(|(s, b, d, f)| s << 16 | b << 8 | d << 3 | f)
}

fn offset_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 0u32..0x40,
        2 => 0u32..0x1000,
        1 => prop::sample::select(&[0xffc_u32, 0xffe, 0xfff, 0x1000, 0x1004, 0xffff, 0x1_0000][..]),
        1 => any::<u32>(),
    ]
}

fn size_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => prop::sample::select(&[1u32, 2, 4][..]),
        1 => prop::sample::select(&[0u32, 3, 8, 16][..]),
        1 => any::<u32>(),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let value = prop_oneof![any::<u32>(), Just(u32::MAX), Just(0u32)];
    let high = prop_oneof![4 => Just(0u64), 1 => any::<u64>()];
    prop_oneof![
        12 => (function_strategy(), sbdf_strategy(), offset_strategy(), size_strategy(), value, prop::array::uniform4(high), any::<bool>())
            .prop_map(|(function, sbdf, offset, size, value, high, zero_w4)| {
                let w4 = if function == PCI_READ && zero_w4 { 0 } else { value };
                let low = [sbdf, offset, size, w4];
                let mut args = [0u64; 4];
                for (arg, (l, h)) in args.iter_mut().zip(low.iter().zip(high)) {
                    // SMC32: only the low halves count.
                    *arg = u64::from(*l) | h << 32;
                }
                Op::Call { function, args }
            }),
        1 => (0usize..3, any::<bool>()).prop_map(|(index, pending)| Op::SetPending { index, pending }),
    ]
}

/// What DEN0115 (as `den0115.rs` documents it) answers, and the model's
/// side effect.
fn expected(function: u32, args: [u64; 4], models: &mut [ModelFunction], bus_end: u8) -> [u64; 4] {
    let [w1, w2, w3, w4] = args.map(|a| a as u32);
    let status = |s: Status| [s.x0(), 0, 0, 0];
    let invalid = status(Status::InvalidParameter);
    let success = Status::Success.x0();
    match function {
        PCI_VERSION => [u64::from(VERSION), 0, 0, 0],
        PCI_FEATURES if den0115::FUNCTIONS.contains(&w1) => [success, 0, 0, 0],
        PCI_FEATURES => status(Status::NotSupported),
        PCI_READ | PCI_WRITE => {
            if !matches!(w3, 1 | 2 | 4) || w2 >= 4096 || w2 % w3 != 0 {
                return invalid;
            }
            if function == PCI_READ && w4 != 0 {
                return invalid;
            }
            let (segment, bus, device, func) = (w1 >> 16, (w1 >> 8) & 0xff, (w1 >> 3) & 0x1f, w1 & 7);
            if segment != 0 || bus > u32::from(bus_end) {
                return invalid;
            }
            let present = bus == 0 && func == 0 && (device as usize) < models.len();
            let offset = w2 as u16;
            if function == PCI_READ {
                let value = if present {
                    models[device as usize].read(offset, w3)
                } else if w3 == 4 {
                    u32::MAX
                } else {
                    (1 << (w3 * 8)) - 1
                };
                [success, u64::from(value), 0, 0]
            } else {
                if present {
                    models[device as usize].write(offset, w3, w4);
                }
                [success, 0, 0, 0]
            }
        }
        PCI_GET_SEG_INFO => {
            if w2 != 0 || w3 != 0 || w4 != 0 || w1 > 0xffff {
                invalid
            } else if w1 == 0 {
                [success, u64::from(bus_end) << 8, 0, 0]
            } else {
                status(Status::NotImplemented)
            }
        }
        _ => status(Status::NotSupported),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random DEN0115 traffic against the two-function config space
    /// matches the documented model, step by step.
    #[test]
    fn den0115_dispatch_matches_the_documented_model(
        ops in prop::collection::vec(op_strategy(), 1..48),
        bus_end in prop_oneof![Just(0u8), any::<u8>()],
    ) {
        let mut space: ConfigSpace<4> = ConfigSpace::from_devices(&[shim(PL031), shim(PL061)]).unwrap();
        let segment = SegmentInfo::new(bus_end);
        let mut models = [model(PL031), model(PL061)];
        for (i, m) in models.iter().enumerate() {
            prop_assert_eq!(space.device(i).unwrap().write_masks(), m.masks);
        }
        for op in &ops {
            match *op {
                Op::SetPending { index, pending } => {
                    let result = space.set_irq_pending(index, pending);
                    prop_assert_eq!(result.is_ok(), index < models.len());
                    if let Some(m) = models.get_mut(index) {
                        m.pending = pending;
                    }
                }
                Op::Call { function, args } => {
                    let got = den0115::dispatch(function, args, &mut space, &segment);
                    let want = expected(function, args, &mut models, bus_end);
                    prop_assert_eq!(got, want, "{:#x} {:x?}", function, args);
                    // x0 is a DEN0115 status, sign-extended (or the version).
                    if function != PCI_VERSION {
                        let status = Status::from_x0(got[0]).expect("a DEN0115 status");
                        prop_assert_eq!(got[0], status.x0());
                        if status != Status::Success {
                            prop_assert_eq!(&got[1..], &[0, 0, 0]);
                        }
                    }
                }
            }
            // The model's view of each function, as the typed accessors see it.
            for (i, m) in models.iter().enumerate() {
                let bar = space.bar0(i).unwrap();
                prop_assert_eq!(bar.address, u64::from(m.dwords[5]) << 32 | u64::from(m.dwords[4] & !0xf));
                prop_assert_eq!(bar.address % bar.size, 0);
                prop_assert_eq!(bar.memory_enabled, m.dwords[1] & u32::from(command::MEMORY_SPACE) != 0);
                prop_assert_eq!(space.command(i), Some(m.dwords[1] as u16));
                prop_assert_eq!(
                    space.intx_asserted(i),
                    Some(m.pending && m.dwords[1] & u32::from(command::INTX_DISABLE) == 0)
                );
            }
        }
        // Whatever was written: the read-only identification never changed.
        for (i, (part, class)) in [(PL031.0, PL031.1), (PL061.0, PL061.1)].into_iter().enumerate() {
            let bdf = Bdf::new(0, i as u8, 0).unwrap();
            prop_assert_eq!(space.read(bdf, offset::VENDOR_ID, AccessSize::Half), u32::from(VENDOR_ID_ARM));
            prop_assert_eq!(space.read(bdf, offset::DEVICE_ID, AccessSize::Half), u32::from(part));
            prop_assert_eq!(space.read(bdf, offset::CLASS_CODE - 1, AccessSize::Word), class.register());
            prop_assert_eq!(space.read(bdf, offset::HEADER_TYPE, AccessSize::Byte), u32::from(HEADER_TYPE));
            prop_assert_eq!(space.read(bdf, offset::BAR0, AccessSize::Byte) & 0xf, 0b0100);
        }
    }

    /// Direct config accesses of any alignment and offset: misaligned or
    /// out-of-range ones read all-ones and write nothing.
    #[test]
    fn raw_config_accesses_follow_the_model(
        accesses in prop::collection::vec((0u8..3, 0usize..3, any::<u16>(), prop_oneof![1 => any::<u16>(), 4 => 0u16..0x44], any::<bool>(), any::<u32>()), 1..32),
    ) {
        let mut space: ConfigSpace<4> = ConfigSpace::from_devices(&[shim(PL031), shim(PL061)]).unwrap();
        let mut models = [model(PL031), model(PL061)];
        for &(size, device, bus_fn, offset, write, value) in &accesses {
            let size = [AccessSize::Byte, AccessSize::Half, AccessSize::Word][usize::from(size)];
            let bytes = u32::from(size.bytes());
            // Mostly function 0 on bus 0.
            let bdf = if bus_fn % 4 == 0 {
                Bdf::from_routing_id(bus_fn)
            } else {
                Bdf::new(0, device as u8, 0).unwrap()
            };
            let valid = offset < CONFIG_SPACE_SIZE && offset % bytes as u16 == 0;
            let model = (bdf.bus() == 0 && bdf.function() == 0).then(|| models.get_mut(usize::from(bdf.device()))).flatten();
            if write {
                space.write(bdf, offset, size, value);
                if let (true, Some(m)) = (valid, model) {
                    m.write(offset, bytes, value & size.value_mask());
                }
            } else {
                let got = space.read(bdf, offset, size);
                let want = match (valid, model) {
                    (true, Some(m)) => m.read(offset, bytes),
                    _ => size.value_mask(),
                };
                prop_assert_eq!(got, want, "{}-byte read at {:#x} of {}", bytes, offset, bdf);
            }
        }
    }

    /// Every call `decode` accepts is re-encoded by `args` to the same call.
    #[test]
    fn pci_call_decode_and_args_are_inverse(function in function_strategy(), args in prop::array::uniform4(any::<u64>())) {
        if let Ok(call) = PciCall::decode(function, args) {
            prop_assert_eq!(call.function_id(), function);
            prop_assert_eq!(PciCall::decode(function, call.args()), Ok(call));
        } else if let Err(e) = PciCall::decode(function, args) {
            let _ = (e.to_string(), e.status().to_string());
        }
    }

    /// ECAM decoding and addressing are inverse inside the window, and
    /// nothing outside it decodes.
    #[test]
    fn ecam_decode_and_address_are_inverse(
        base in prop_oneof![any::<u64>().prop_map(|b| b & !(BUS_SIZE - 1)), any::<u64>(), (0u64..4).prop_map(|k| u64::MAX - k * BUS_SIZE)],
        bus_start in any::<u8>(),
        bus_end in any::<u8>(),
        routing in any::<u16>(),
        offset in any::<u16>(),
        addr_offset in prop_oneof![any::<u64>(), (0u64..(3 * BUS_SIZE))],
        below in any::<bool>(),
    ) {
        let Some(window) = EcamWindow::new(base, bus_start, bus_end) else {
            let size = (u128::from(bus_end) + 1).saturating_sub(u128::from(bus_start)) << 20;
            prop_assert!(bus_start > bus_end || u128::from(base) + size > 1 << 64);
            return Ok(());
        };
        let size = (u64::from(bus_end) - u64::from(bus_start) + 1) * BUS_SIZE;
        prop_assert_eq!(window.size(), size);
        let bdf = Bdf::from_routing_id(routing);
        match window.address(bdf, offset) {
            Some(addr) => {
                prop_assert!((bus_start..=bus_end).contains(&bdf.bus()) && offset < CONFIG_SPACE_SIZE);
                prop_assert!(addr >= base && addr - base < size);
                prop_assert_eq!(window.decode(addr), Some((bdf, offset)));
            }
            None => prop_assert!(!(bus_start..=bus_end).contains(&bdf.bus()) || offset >= CONFIG_SPACE_SIZE),
        }
        let addr = if below { base.wrapping_sub(addr_offset % (1 << 24) + 1) } else { base.wrapping_add(addr_offset) };
        let inside = addr >= base && addr - base < size;
        match window.decode(addr) {
            Some((bdf, off)) => {
                prop_assert!(inside);
                prop_assert!(off < FUNCTION_SIZE as u16);
                prop_assert_eq!(window.address(bdf, off), Some(addr));
            }
            None => prop_assert!(!inside),
        }
        if bus_end == u8::MAX {
            prop_assert_eq!(ecam_decode(base, bus_start, addr), window.decode(addr));
        }
    }

    /// SBDF and routing IDs: every value is one, and back.
    #[test]
    fn sbdf_round_trips(sbdf in any::<u32>(), bus in any::<u8>(), device in any::<u8>(), function in any::<u8>()) {
        let decoded = Sbdf::from_u32(sbdf);
        prop_assert_eq!(decoded.to_u32(), sbdf);
        prop_assert_eq!(decoded.segment, (sbdf >> 16) as u16);
        prop_assert_eq!(Bdf::from_routing_id(decoded.bdf.routing_id()), decoded.bdf);
        let _ = decoded.to_string();
        match Bdf::new(bus, device, function) {
            Some(bdf) => {
                prop_assert!(device < 32 && function < 8);
                prop_assert_eq!((bdf.bus(), bdf.device(), bdf.function()), (bus, device, function));
                prop_assert_eq!(Bdf::from_routing_id(bdf.routing_id()), bdf);
            }
            None => prop_assert!(device >= 32 || function >= 8),
        }
    }

    /// The external-abort path on anything a lower EL can make EL3 see.
    #[test]
    fn external_abort_path_never_panics_and_stays_in_bounds(
        raw_esr in any::<u64>(),
        shaped in any::<bool>(),
        pa_offset in any::<u64>(),
        near in any::<bool>(),
        bus_end in 0u8..4,
        par in any::<u64>(),
        far in any::<u64>(),
        spsr in any::<u64>(),
        hcr_el2 in any::<u64>(),
        regs in prop::array::uniform31(any::<u64>()),
        reply in prop::array::uniform4(any::<u64>()),
    ) {
        // Half the cases are a lower EL's external abort with a syndrome
        // (random SAS, SSE, SRT, SF, AR, WnR), the rest any 64 bits.
        let esr = if shaped {
            let fields = 0x00ef_c040; // SAS, SSE, SRT, SF, AR, WnR
            Esr((0x24 << Esr::EC_SHIFT) | Esr::IL | AbortIss::ISV | (raw_esr & fields)
                | u64::from(FaultStatus::SYNC_EXTERNAL_CODE))
        } else {
            Esr(raw_esr)
        };
        let window = EcamWindow::new(0x1_0000_0000, 0, bus_end).unwrap();
        let pa = if near { window.base() + pa_offset % (window.size() + 0x1_0000) } else { pa_offset };

        let translation = Translation::for_fault(esr, spsr);
        if let Ok(pa) = ea::fault_pa(par, far) {
            prop_assert_eq!(pa & 0xfff, far & 0xfff);
        }
        match ea::decode(esr, pa, &window, &regs) {
            Ok(EcamAccess { access, call }) => {
                let (address, offset, size) = match call {
                    PciCall::Read { address, offset, size } => (address, offset, size),
                    PciCall::Write { address, offset, size, value } => {
                        prop_assert_eq!(u64::from(value), access.write_value(&regs));
                        (address, offset, size)
                    }
                    other => return Err(TestCaseError::fail(format!("decoded into {other:?}"))),
                };
                prop_assert_eq!(window.address(address.bdf, offset), Some(pa));
                prop_assert_eq!(u32::from(size.bytes()), 1 << ((esr.0 >> 22) & 3));
                prop_assert!(size.is_aligned(offset));
                // The translation was chosen for the same syndrome, unless
                // the context is not a lower AArch64 EL.
                prop_assert!(translation.is_ok() || spsr & 0x10 != 0 || (spsr >> 2) & 3 == 3);
                let mut frame = TrapFrame { x: regs, elr: far, spsr, _pad: 0 };
                EcamAccess { access, call }.complete(reply, &mut frame);
                prop_assert_eq!(frame.elr, far.wrapping_add(4));
                for (n, (after, before)) in frame.x.iter().zip(regs.iter()).enumerate() {
                    prop_assert!(after == before || (n == usize::from(access.rt) && !access.is_write()));
                }
            }
            Err(error) => {
                let _ = error.to_string();
                if let Some(access) = error.unsupported_request() {
                    prop_assert!(window.decode(pa).is_some());
                    let mut frame = TrapFrame { x: regs, elr: far, spsr, _pad: 0 };
                    ea::complete_unsupported(&access, &mut frame);
                    prop_assert_eq!(frame.elr, far.wrapping_add(4));
                }
            }
        }

        let vbar_el1 = 0x4040_0000;
        let vbar_el2 = 0x7fe0_0000;
        let state = LowerState { spsr, elr: far, far, hcr_el2, sctlr_el1: par, sctlr_el2: !par, vbar_el1, vbar_el2 };
        match ea::reflect(esr, &state) {
            Ok(reflection) => {
                let vbar = match reflection.target {
                    ExceptionLevel::El1 => vbar_el1,
                    ExceptionLevel::El2 => vbar_el2,
                    other => return Err(TestCaseError::fail(format!("reflected to {other}"))),
                };
                prop_assert!([0, 0x200, 0x400, 0x600].contains(&(reflection.vector - vbar)));
                prop_assert_eq!(reflection.pstate & SPSR_DAIF, SPSR_DAIF);
                prop_assert_eq!(ExceptionLevel::from_spsr(reflection.pstate), reflection.target);
                prop_assert_eq!(reflection.esr.iss(), esr.iss());
                prop_assert_eq!((reflection.elr, reflection.spsr, reflection.far), (far, spsr, far));
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
}
