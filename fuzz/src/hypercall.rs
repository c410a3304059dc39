//! Hypercall argument validation (`platform::hypercall`): registers and
//! buffer addresses come from the guest, at EL1 or EL0; and the entries the
//! guest reads back from a scan buffer (`platform::gvascan`).

use arbitrary::Unstructured;
use platform::gvascan;
use platform::hypercall::{
    buffer_chunks, covers, dcc_call_function, features, validate_buffer, validate_translated, Call, CallerEl, Function,
    HvError, Info, Reply, Request, ScanRange, Translate, GUEST_PAGE_SIZE,
};

use crate::{below, pick_or_any, take};

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let ids: Vec<u64> = Function::ALL.iter().map(|f| f.id()).collect();
    let call = Call { function: pick_or_any(&mut u, &ids), args: take(&mut u) };
    decode(&call);
    if let Some(function) = dcc_call_function(take(&mut u)) {
        decode(&Call { function, args: call.args });
    }
    codes(&mut u);
    buffers(&mut u);
    let entry: [u8; gvascan::ENTRY_SIZE] = take(&mut u);
    if let Some(region) = gvascan::decode(&entry) {
        assert_eq!(gvascan::encode(&region), entry, "scan entries round-trip");
        let _ = (region.size(), region.va_end(), region.ipa_of(region.va_start));
    }
}

fn decode(call: &Call) {
    for caller in [CallerEl::El0, CallerEl::El1] {
        let result = call.decode(caller);
        let function = Function::from_id(call.function);
        match result {
            Ok(request) => {
                assert_eq!(Some(request.function()), function);
                assert_eq!(request.call().decode(caller), Ok(request), "call() inverts decode");
                assert_eq!(features(call.function, caller), Ok(()));
                if caller == CallerEl::El0 {
                    assert!(request.function().allowed_from_el0());
                    assert!(!matches!(request, Request::Scan { range: ScanRange::Ttbr1, .. }), "EL0 scans TTBR1");
                }
            }
            Err(e) => {
                if function.is_none() {
                    assert_eq!(e, HvError::NotSupported);
                }
                if features(call.function, caller).is_err() {
                    assert_eq!(features(call.function, caller), Err(e));
                }
            }
        }
        let reply = Reply::features(call.function, caller);
        assert_eq!(reply.result().is_ok(), features(call.function, caller).is_ok());
    }
}

fn codes(u: &mut Unstructured<'_>) {
    let regs: [u64; 4] = take(u);
    let reply = Reply::from_regs(&regs);
    match reply.result() {
        Ok(values) => assert_eq!(Reply::ok(values[0], values[1], values[2]), reply),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(e) = HvError::from_code(regs[0] as i64) {
        assert_eq!(e.status(), regs[0]);
        assert_eq!(Reply::error(e).result(), Err(e.into()));
    }
    if let Some(info) = Info::decode([regs[1], regs[2], regs[3]]) {
        assert_eq!(info.encode(), [regs[1], regs[2], regs[3]]);
        assert_eq!(info.reply().result(), Ok(info.encode()));
    }
}

/// A guest's stage 1 as a table: page i of the buffer maps wherever the
/// input says, faults, or (a broken walker) moves the page offset.
struct Table {
    pages: Vec<Option<u64>>,
    base: u64,
}

impl Translate for Table {
    fn translate(&mut self, addr: u64) -> Result<u64, HvError> {
        let page = (addr.wrapping_sub(self.base) / GUEST_PAGE_SIZE) as usize;
        match self.pages.get(page % self.pages.len().max(1)).copied().flatten() {
            Some(ipa) => Ok(ipa | addr & (GUEST_PAGE_SIZE - 1)),
            None => Err(HvError::BadAddress),
        }
    }
}

fn buffers(u: &mut Unstructured<'_>) {
    let regions: Vec<(u64, u64)> = (0..below(u, 4))
        .map(|_| {
            let base: u64 = if take(u) { u64::from(take::<u16>(u)) << 12 } else { take(u) };
            let size: u64 = if take(u) { u64::from(take::<u16>(u)) << 8 } else { take(u) };
            (base, size)
        })
        .collect();
    let near = regions.first().map_or(0, |r| r.0);
    let addr: u64 = if take(u) { near.wrapping_add(take::<u16>(u).into()) } else { take(u) };
    let len: u64 = if take(u) { take::<u16>(u).into() } else { take(u) };
    // The hypervisor's limits are small (CONSOLE_WRITE_MAX, a scan buffer's
    // capacity); a huge one would only make the page loop below slow.
    let max: u64 = if take(u) { 1024 } else { (take::<u32>(u) >> 8).into() };

    match validate_buffer(addr, len, max, &regions) {
        Ok(range) => {
            assert_eq!((range.ipa, range.len), (addr, len));
            assert!(len <= max || len == 0);
            if len > 0 {
                assert!(covers(&regions, addr, len));
                // The first and last byte each lie in some region.
                for byte in [addr, addr + (len - 1)] {
                    assert!(regions.iter().any(|&(b, s)| byte >= b && byte - b < s), "{byte:#x} outside RAM");
                }
            }
        }
        Err(e) => assert!(len > max && e == HvError::TooLong || e == HvError::BadAddress, "{e:?}"),
    }

    let mut table = Table {
        pages: (0..below(u, 6)).map(|_| take::<bool>(u).then(|| take::<u64>(u) & !0xfff)).collect(),
        base: addr & !0xfff,
    };
    if take(u) {
        // A walker that gets the page offset wrong must be caught.
        if let Some(Some(p)) = table.pages.first_mut() {
            *p |= 8;
        }
    }
    let whole = validate_translated(addr, len, max, &regions, &mut table);
    let Ok(chunks) = buffer_chunks(addr, len, max, &regions, &mut table) else {
        assert!(whole.is_err());
        return;
    };
    let mut total = 0u64;
    let mut next = addr;
    let mut failed = false;
    for piece in chunks {
        assert!(!failed, "a piece after an error");
        match piece {
            Ok(range) => {
                assert!(range.len > 0 && range.len <= GUEST_PAGE_SIZE);
                assert_eq!(range.ipa & (GUEST_PAGE_SIZE - 1), next & (GUEST_PAGE_SIZE - 1), "page offset moved");
                assert!((range.ipa & (GUEST_PAGE_SIZE - 1)) + range.len <= GUEST_PAGE_SIZE, "a piece crosses a page");
                assert!(covers(&regions, range.ipa, range.len));
                total += range.len;
                next = next.wrapping_add(range.len);
            }
            Err(_) => failed = true,
        }
    }
    assert_eq!(whole.is_ok(), !failed);
    if !failed {
        assert_eq!(total, len, "the pieces are the whole buffer");
    }
}
