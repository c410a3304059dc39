//! DEN0115 (the PCI configuration access SMCCC calls): any SMC a lower EL
//! makes with a PCI function ID reaches `den0115::dispatch` at EL3.

use arbitrary::Unstructured;
use platform::pci::den0115::{self, PciCall, SegmentInfo, Status, FUNCTIONS, PCI_READ, PCI_VERSION, PCI_WRITE};
use platform::pci::AccessSize;

use crate::pci::{self, check_fixed_fields, check_write, snapshot};
use crate::{pick_or_any, take};

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut space = pci::space(&mut u);
    let segment = SegmentInfo::new(take(&mut u));
    let ids: Vec<u64> = FUNCTIONS.iter().map(|&f| u64::from(f)).collect();
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        // w0 is 32 bits: the SMC dispatch passes only its low half.
        let function = pick_or_any(&mut u, &ids) as u32;
        let args: [u64; 4] = if take(&mut u) { take(&mut u) } else { plausible(&mut u, function) };
        call(&mut space, &segment, function, args);
        check_fixed_fields(&space);
    }
}

/// Arguments a caller that knows the ABI would pass, give or take a field.
fn plausible(u: &mut Unstructured<'_>, function: u32) -> [u64; 4] {
    let bdf = pci::bdf(u);
    let sbdf = if take::<u8>(u) < 240 { u64::from(bdf.routing_id()) } else { take::<u32>(u).into() };
    let offset: u64 = if take(u) { take::<u8>(u).into() } else { take::<u16>(u).into() };
    let size = [1, 2, 4, take::<u8>(u).into()][take::<u8>(u) as usize % 4];
    match function {
        PCI_READ => [sbdf, offset, size, 0],
        PCI_WRITE => [sbdf, offset, size, take(u)],
        _ => [take::<u16>(u).into(), 0, 0, 0],
    }
}

fn call(space: &mut pci::Space, segment: &SegmentInfo, function: u32, args: [u64; 4]) {
    let before = snapshot(space);
    let decoded = PciCall::decode(function, args);
    if let Ok(call) = decoded {
        assert_eq!(PciCall::decode(call.function_id(), call.args()), Ok(call), "args() inverts decode");
    }
    let expected_read = match decoded {
        Ok(PciCall::Read { address, offset, size }) => {
            segment.check(address).ok().map(|bdf| space.read(bdf, offset, size))
        }
        _ => None,
    };
    let reply = den0115::dispatch(function, args, space, segment);
    if function == PCI_VERSION {
        assert_eq!(reply, [den0115::VERSION.into(), 0, 0, 0]);
        return;
    }
    let status =
        Status::from_x0(reply[0]).unwrap_or_else(|| panic!("undefined status {:#x} for {function:#x}", reply[0]));
    assert_eq!(reply[0], status.x0(), "status not sign-extended");
    if let Err(error) = decoded {
        assert_eq!(status, error.status(), "{error}");
        let _ = error.to_string();
    }
    if !den0115::is_pci_call(function) {
        assert_eq!(status, Status::NotSupported);
    }
    if status != Status::Success {
        assert_eq!(reply[1..], [0; 3], "an error returns nothing else");
        assert_eq!(snapshot(space), before, "a failed call changed config space");
        return;
    }
    match decoded.expect("success means the call decoded") {
        PciCall::Read { size, .. } => {
            assert_eq!(reply[1] & !u64::from(size.value_mask()), 0);
            assert_eq!(Some(reply[1] as u32), expected_read);
            assert_eq!(reply[2..], [0; 2]);
        }
        PciCall::Write { address, offset, size, .. } => {
            assert_eq!(reply[1..], [0; 3]);
            check_write(space, &before, address.bdf, offset, size);
        }
        PciCall::GetSegInfo { segment: 0 } => {
            assert_eq!(reply[1], u64::from(segment.bus_range()));
            assert_eq!(reply[2..], [0; 2]);
        }
        PciCall::Features { function_id } => {
            assert!(den0115::is_pci_call(function_id));
            assert_eq!(reply[1..], [0; 3]);
        }
        other => panic!("{other:?} succeeded"),
    }
    if !matches!(decoded, Ok(PciCall::Write { .. })) {
        assert_eq!(snapshot(space), before, "only PCI_WRITE changes config space");
    }
    let _ = AccessSize::from_bytes(args[2]);
}
