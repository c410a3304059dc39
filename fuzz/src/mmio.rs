//! Syndrome decoders (`platform::esr`) and MMIO emulation
//! (`platform::mmio`): a guest chooses the instruction that faults (so the
//! ISS), the address and every register.

use std::sync::{Arc, Mutex};

use arbitrary::Unstructured;
use platform::esr::{Direction, Esr, ExceptionClass, FaultStatus, Origin, SysRegIss};
use platform::hypercall::{is_hypercall, HV_BRK_IMM};
use platform::mmio::{fault_ipa, AccessSize, MmioAccess, MmioBus, MmioDevice, MmioFault};

use crate::{below, take};

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let raw: u64 = take(&mut u);
    decoders(Esr(raw));

    let hpfar: u64 = take(&mut u);
    let far: u64 = take(&mut u);
    let ipa = fault_ipa(hpfar, far);
    assert_eq!(ipa & 0xfff, far & 0xfff, "the page offset comes from FAR");

    // Mostly a guest data abort with a valid syndrome, so that the
    // emulation path sees what the decoder accepts.
    let esr = if take::<u8>(&mut u) < 200 {
        Esr((raw & !(0x3f << Esr::EC_SHIFT)) | (0x24 << Esr::EC_SHIFT) | (1 << 24))
    } else {
        Esr(raw)
    };
    let ipa = if take(&mut u) { ipa } else { take(&mut u) };
    let Ok(access) = MmioAccess::decode(esr, ipa) else {
        return;
    };
    let abort = esr.abort().expect("an emulatable access is an abort");
    assert!(matches!(esr.class(), ExceptionClass::DataAbortLower));
    assert!(abort.isv() && !abort.s1ptw() && !abort.cm() && !abort.fnv());
    assert!(matches!(access.size.bytes(), 1 | 2 | 4 | 8), "{access:?}");
    assert_eq!(u64::from(access.size.bytes()), 1 << ((esr.iss() >> 22) & 3));
    assert!(access.rt <= 31);
    assert_eq!(access.ipa, ipa);
    let _ = access.to_string();

    bus(&mut u, &access);
}

fn decoders(esr: Esr) {
    let class = esr.class();
    assert_eq!(ExceptionClass::from_ec(class.ec()), class);
    assert_eq!(u64::from(class.ec()), (esr.0 >> Esr::EC_SHIFT) & 0x3f);
    // EC, IL and ISS are the low 32 bits; ISS2 is not part of `new`.
    assert_eq!(Esr::new(class, esr.il(), esr.iss()).0, esr.0 & 0xffff_ffff);
    if let Some(origin) = class.origin() {
        assert_eq!(class.with_origin(origin), class);
        for o in [Origin::LowerEl, Origin::SameEl] {
            let moved = esr.with_origin(o);
            assert_eq!(moved.class().origin(), Some(o));
            assert_eq!(moved.0 & !(0x3f << Esr::EC_SHIFT), esr.0 & !(0x3f << Esr::EC_SHIFT));
        }
    } else {
        assert_eq!(esr.with_origin(Origin::LowerEl), esr);
    }
    if let Some(abort) = esr.abort() {
        let fault = abort.fault();
        assert_eq!(FaultStatus::from_code(fault.code()), fault);
        let _ = (fault.level(), fault.to_string(), abort.direction(), abort.far_valid());
    }
    if let Some(sys) = esr.sys_reg() {
        assert_eq!(SysRegIss::from_iss(sys.iss()), sys);
        assert_eq!(sys.iss(), esr.iss() & 0x3f_ffff, "ISS[21:0] are all fields");
        let reg = sys.reg();
        let _ = (reg.display(sys.direction).to_string(), reg.breakpoint_reg(), sys.to_string());
        assert_eq!(SysRegIss::new(reg, sys.rt, sys.direction), sys);
    }
    for imm in [esr.brk_comment(), esr.hvc_imm(), esr.smc_imm(), esr.svc_imm()].into_iter().flatten() {
        assert_eq!(imm, esr.imm16());
    }
    assert_eq!(is_hypercall(esr), esr.brk_comment() == Some(HV_BRK_IMM));
    assert!(!esr.to_string().is_empty());
}

/// What reached a device: offset, size, and the value of a write.
type Seen = (u64, u8, Option<u64>);

/// A device that records what reached it.
struct Recorder {
    base: u64,
    len: u64,
    misaligned: bool,
    value: u64,
    fail_at: Option<u64>,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn check(&self, offset: u64, size: u8) {
        assert!(matches!(size, 1 | 2 | 4 | 8), "size {size}");
        let end = offset.checked_add(u64::from(size)).expect("offset + size wraps");
        assert!(end <= self.len, "access {offset:#x}+{size} outside a {:#x} window", self.len);
        // The bus checks the IPA's alignment, as the architecture does for
        // Device memory; the offset is aligned only if the window base is.
        if !self.misaligned {
            assert_eq!(self.base.wrapping_add(offset) % u64::from(size), 0, "misaligned access reached the device");
        }
    }
}

impl MmioDevice for Recorder {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        self.check(offset, size);
        self.log.lock().unwrap().push((offset, size, None));
        if self.fail_at == Some(offset) {
            return Err(MmioFault::DeviceError { offset });
        }
        // High bits on purpose: the bus must mask them.
        Ok(self.value.rotate_left(offset as u32))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        self.check(offset, size);
        self.log.lock().unwrap().push((offset, size, Some(value)));
        match self.fail_at == Some(offset) {
            true => Err(MmioFault::Unsupported { offset, size }),
            false => Ok(()),
        }
    }

    fn accepts_misaligned(&self) -> bool {
        self.misaligned
    }
}

fn bus(u: &mut Unstructured<'_>, access: &MmioAccess) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut devices: Vec<Recorder> = (0..1 + below(u, 4))
        .map(|_| Recorder {
            base: 0,
            len: 0,
            misaligned: take(u),
            value: take(u),
            fail_at: take::<bool>(u).then(|| take::<u8>(u).into()),
            log: log.clone(),
        })
        .collect();
    let mut bus: MmioBus<'_, 4> = MmioBus::new();
    let mut windows = Vec::new();
    for device in devices.iter_mut() {
        // Near the access most of the time, so that it hits a window, an
        // edge of one, or the gap between two.
        let base = if take(u) { access.ipa.wrapping_sub(take::<u8>(u).into()) } else { take(u) };
        let len: u64 = if take(u) { take::<u16>(u).into() } else { take(u) };
        (device.base, device.len) = (base, len);
        if bus.register(base, len, device).is_ok() {
            windows.push((base, len));
        }
    }
    assert_eq!(bus.len(), windows.len());
    assert_eq!(bus.windows().collect::<Vec<_>>(), windows);
    for (i, &(base, len)) in windows.iter().enumerate() {
        // Registered windows never wrap and never overlap.
        let last = base.checked_add(len - 1).expect("a registered window wraps");
        for &(b, l) in &windows[..i] {
            assert!(last < b || b + (l - 1) < base, "windows overlap");
        }
    }

    let regs: [u64; 31] = take(u);
    let mut after = regs;
    let result = bus.dispatch(access, &mut after);
    let log = log.lock().unwrap();
    assert!(log.len() <= 1, "one access, {} device calls", log.len());
    let reached = log.first().copied();
    match (access.direction, result) {
        (_, Err(fault)) => {
            assert_eq!(after, regs, "a fault must leave the registers alone");
            let _ = (fault.guest_fault(), fault.to_string());
            if reached.is_none() {
                assert!(matches!(
                    fault,
                    MmioFault::Unmapped { .. } | MmioFault::CrossesEnd { .. } | MmioFault::Misaligned { .. }
                ));
            }
        }
        (Direction::Write, Ok(())) => {
            assert_eq!(after, regs, "a store changes no register");
            let (_, size, value) = reached.expect("a completed store reached a device");
            assert_eq!(size, access.size.bytes());
            assert_eq!(value, Some(access.write_value(&regs)));
            assert_eq!(access.write_value(&regs) & !access.size.mask(), 0);
        }
        (Direction::Read, Ok(())) => {
            let (_, size, value) = reached.expect("a completed load reached a device");
            assert_eq!((size, value), (access.size.bytes(), None));
            for (i, (a, b)) in regs.iter().zip(after.iter()).enumerate() {
                if i != usize::from(access.rt) {
                    assert_eq!(a, b, "x{i} changed by a load to x{}", access.rt);
                }
            }
            if let Some(&rt) = after.get(usize::from(access.rt)) {
                if !access.sf {
                    assert_eq!(rt >> 32, 0, "a W register load sets bits [63:32]");
                }
                if !access.sign_extend {
                    assert_eq!(rt & !access.size.mask(), 0, "zero extension");
                }
            }
        }
    }
    let _ = AccessSize::from_bytes(access.size.bytes());
}
