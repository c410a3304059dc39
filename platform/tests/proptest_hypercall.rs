//! Property tests of the hypercall ABI (`platform::hypercall`): decoding
//! and policy for whatever a guest puts in `x0..x7`, and the validation of
//! its buffer arguments. Also the handoff record checks
//! (`platform::handoff`).
//!
//! Bounded: each property runs 256 cases (`common::config`; override with
//! `PROPTEST_CASES`; `PROPTEST_RNG_SEED` reproduces a run).
//!
//! Properties:
//! - `Call::decode` gives exactly the documented request or error for any
//!   registers and caller; EL0 never gets a request for a function outside
//!   the EL0 allow-list, and `SCAN` of the `TTBR1` range from EL0 is always
//!   `PERMISSION_DENIED`; every request round-trips through `Request::call`;
//!   `FEATURES` answers what the call itself would;
//! - `SCHED`'s items (`sched_item`) carry every field of any `Figures`, and
//!   `SchedReader` assembles them back, whatever the order of the calls;
//! - `validate_buffer` and `covers` accept exactly the buffers that lie
//!   within the union of the (non-empty, non-wrapping) RAM regions, no
//!   longer than the limit, without wrapping; `buffer_chunks` splits a
//!   buffer into per-page pieces that are contiguous, translated and in
//!   RAM, and agrees with `validate_buffer` for an identity translation;
//! - `Reply`, `ScanReply` (x4 written only by a successful `SCAN`), `Info`,
//!   `HvError`, `Function` and the DCC magic round-trip.

use platform::handoff::{DataEntries, Handoff, LoadedImage, PhysRange, HANDOFF_MAGIC, HANDOFF_VERSION};
use platform::hypercall::{
    allowed_from_el0, buffer_chunks, covers, dcc_call_function, features, sched_item, validate_buffer,
    validate_translated, Call, CallError, CallerEl, Function, GuestRange, HvError, HvMode, Identity, Info, IntegrityOp,
    Reply, Request, ScanRange, ScanReply, SchedItem, SchedReader, Translate, CONSOLE_WRITE_MAX, DCC_CALL_MAGIC,
    DCC_CALL_MAGIC_MASK, GUEST_PAGE_SIZE, SCHED_ITEMS, STATUS_OK,
};
use platform::mbec::Exec;
use platform::sched::{Figures, BUCKETS};
use proptest::prelude::*;

mod common;
use common::config;

fn caller_strategy() -> impl Strategy<Value = CallerEl> {
    prop_oneof![Just(CallerEl::El0), Just(CallerEl::El1)]
}

/// Function IDs: the defined ones, their neighbours, and anything.
fn function_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..10,
        1 => any::<u64>(),
        1 => (0u64..10).prop_map(|id| id | 1 << 32),
        1 => (0u64..10).prop_map(|id| id | DCC_CALL_MAGIC),
    ]
}

/// Argument registers with small values (range selectors, SCHED items)
/// often.
fn args_strategy() -> impl Strategy<Value = [u64; 7]> {
    prop::array::uniform7(prop_oneof![3 => 0u64..3, 2 => 0u64..10, 1 => any::<u64>()])
}

/// What the module documentation says `decode` returns.
fn expected_decode(function: u64, args: [u64; 7], caller: CallerEl) -> Result<Request, HvError> {
    let [x1, x2, x3, x4, ..] = args;
    let el0 = caller == CallerEl::El0;
    let request = match function {
        0 => Request::Version,
        1 => Request::Features { function: x1 },
        2 => Request::ConsoleWrite { addr: x1, len: x2 },
        3 => Request::Info,
        4 => {
            // SCAN is on the EL0 allow-list, for the TTBR0 range only.
            let range = match x1 {
                0 => ScanRange::Ttbr0,
                1 if el0 => return Err(HvError::PermissionDenied),
                1 => ScanRange::Ttbr1,
                _ => return Err(HvError::InvalidArgument),
            };
            // x4: the resume cursor (0 = the start), checked at EL2.
            Request::Scan { range, buffer: x2, capacity: x3, cursor: x4 }
        }
        // SCHED is on the EL0 allow-list; items 0..=7, any vCPU index
        // (checked at EL2 against the caller's VM).
        5 if x2 < SCHED_ITEMS => Request::Sched { vcpu: x1, item: SchedItem::from_raw(x2).unwrap() },
        5 => return Err(HvError::InvalidArgument),
        // INTEGRITY: STATUS (0) and LOCK (1) for anyone, SET_EXEC (2) at
        // EL1 only with an execute class 0..=3; anything else malformed.
        6 => match x1 {
            0 => Request::Integrity(IntegrityOp::Status),
            1 => Request::Integrity(IntegrityOp::Lock),
            2 if x4 > 3 => return Err(HvError::InvalidArgument),
            2 if el0 => return Err(HvError::PermissionDenied),
            2 => Request::Integrity(IntegrityOp::SetExec { ipa: x2, pages: x3, exec: Exec::from_code(x4).unwrap() }),
            _ => return Err(HvError::InvalidArgument),
        },
        // TRACE: any index (a record, the counts, or the clear), checked at EL2.
        7 => Request::Trace { index: x1 },
        _ => return Err(HvError::NotSupported),
    };
    Ok(request)
}

/// The bytes the regions cover, merged: `[start, end)` in u128, sorted.
fn merged(regions: &[(u64, u64)]) -> Vec<(u128, u128)> {
    let mut spans: Vec<(u128, u128)> = regions
        .iter()
        .filter(|&&(base, size)| size > 0 && base.checked_add(size - 1).is_some())
        .map(|&(base, size)| (u128::from(base), u128::from(base) + u128::from(size)))
        .collect();
    spans.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::new();
    for (start, end) in spans {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// Whether every byte of `[addr, addr + len)` is in some region.
fn reference_covers(regions: &[(u64, u64)], addr: u64, len: u64) -> bool {
    let (start, end) = (u128::from(addr), u128::from(addr) + u128::from(len));
    len > 0 && end <= 1 << 64 && merged(regions).iter().any(|&(s, e)| s <= start && end <= e)
}

fn region_strategy() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        4 => (0u64..64, 0u64..24).prop_map(|(b, s)| (b * 0x400, s * 0x400)),
        1 => (0u64..8, 0u64..16).prop_map(|(b, s)| (u64::MAX - b * 0x400, s * 0x400)),
        1 => (any::<u64>(), any::<u64>()),
    ]
}

fn addr_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..0x11000,
        1 => (0u64..0x4000).prop_map(|k| u64::MAX - k),
        1 => any::<u64>(),
    ]
}

fn len_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..0x400,
        2 => 0u64..0x1800,
        1 => Just(CONSOLE_WRITE_MAX),
        1 => Just(CONSOLE_WRITE_MAX + 1),
        1 => any::<u64>(),
    ]
}

/// A guest stage-1 map for `buffer_chunks`: VA page -> IPA page for a few
/// pages, faults elsewhere (and, for some pages, a broken translation that
/// moves the page offset).
#[derive(Debug)]
struct PageMap {
    pages: Vec<(u64, u64)>,
    broken: Option<u64>,
}

impl Translate for PageMap {
    fn translate(&mut self, addr: u64) -> Result<u64, HvError> {
        let page = addr & !(GUEST_PAGE_SIZE - 1);
        let ipa_page =
            self.pages.iter().find(|&&(va, _)| va == page).map(|&(_, ipa)| ipa).ok_or(HvError::BadAddress)?;
        if self.broken == Some(page) {
            return Ok(ipa_page | ((addr + 1) & (GUEST_PAGE_SIZE - 1)));
        }
        Ok(ipa_page | (addr & (GUEST_PAGE_SIZE - 1)))
    }
}

proptest! {
    #![proptest_config(config())]

    /// `decode` is exactly the documented table, with the EL0 policy.
    #[test]
    fn decode_follows_the_abi_and_the_el0_policy(
        function in function_id(),
        args in args_strategy(),
        caller in caller_strategy(),
    ) {
        let call = Call { function, args };
        let mut regs = [0u64; 31];
        regs[..8].copy_from_slice(&call.regs());
        prop_assert_eq!(Call::from_regs(&regs), call);
        let decoded = call.decode(caller);
        prop_assert_eq!(decoded, expected_decode(function, args, caller));
        match decoded {
            Ok(request) => {
                prop_assert_eq!(request.function().id(), function);
                if caller == CallerEl::El0 {
                    prop_assert!(allowed_from_el0(request.function()));
                    let ttbr1 = matches!(request, Request::Scan { range: ScanRange::Ttbr1, .. });
                    prop_assert!(!ttbr1, "EL0 got {:?}", request);
                }
                // The registers a guest loads for this request decode to it.
                prop_assert_eq!(request.call().decode(caller), Ok(request));
                // FEATURES of the function agrees that the caller may call it.
                prop_assert_eq!(features(function, caller), Ok(()));
            }
            Err(error) => {
                let reply = Reply::error(error);
                prop_assert_eq!((reply.x1, reply.x2, reply.x3), (0, 0, 0));
                prop_assert_eq!(reply.result(), Err(CallError::Hv(error)));
                if Function::from_id(function).is_none() {
                    prop_assert_eq!(error, HvError::NotSupported);
                    prop_assert_eq!(features(function, caller), Err(HvError::NotSupported));
                }
            }
        }
    }

    /// `SCAN` of the kernel's (`TTBR1`) range is never granted to EL0,
    /// whatever the other registers hold.
    #[test]
    fn el0_never_scans_ttbr1(args in prop::array::uniform7(any::<u64>())) {
        let mut args = args;
        args[0] = 1;
        let call = Call { function: Function::Scan.id(), args };
        prop_assert_eq!(call.decode(CallerEl::El0), Err(HvError::PermissionDenied));
        let el1 = call.decode(CallerEl::El1);
        let granted = matches!(el1, Ok(Request::Scan { range: ScanRange::Ttbr1, .. }));
        prop_assert!(granted, "{:?}", el1);
    }

    /// `FEATURES` answers what calling the function would: success exactly
    /// for the functions this caller may call.
    #[test]
    fn features_matches_the_policy(function in function_id(), caller in caller_strategy()) {
        let expected = match Function::from_id(function) {
            None => Err(HvError::NotSupported),
            Some(f) if caller == CallerEl::El0 && !f.allowed_from_el0() => Err(HvError::PermissionDenied),
            Some(_) => Ok(()),
        };
        prop_assert_eq!(features(function, caller), expected);
        let reply = Reply::features(function, caller);
        prop_assert_eq!(reply.result().map(|_| ()), expected.map_err(CallError::Hv));
    }

    /// `validate_buffer`: Ok exactly for a buffer inside the union of the
    /// regions, at most `max` long, not wrapping; an empty buffer is always
    /// fine. `covers` is the same coverage test.
    #[test]
    fn validate_buffer_accepts_exactly_buffers_in_ram(
        addr in addr_strategy(),
        len in len_strategy(),
        max in prop_oneof![Just(CONSOLE_WRITE_MAX), any::<u64>()],
        regions in prop::collection::vec(region_strategy(), 0..6),
    ) {
        let covered = reference_covers(&regions, addr, len);
        prop_assert_eq!(covers(&regions, addr, len), covered);
        let expected = if len == 0 {
            Ok(GuestRange { ipa: addr, len: 0 })
        } else if len > max {
            Err(HvError::TooLong)
        } else if !covered {
            Err(HvError::BadAddress)
        } else {
            Ok(GuestRange { ipa: addr, len })
        };
        let got = validate_buffer(addr, len, max, &regions);
        prop_assert_eq!(got, expected);
        if let Ok(range) = got {
            if range.len > 0 {
                prop_assert!(range.len <= max);
                prop_assert!(range.ipa.checked_add(range.len - 1).is_some());
            }
        }
        // The identity translation validates the same way (page by page:
        // only for lengths a hypercall can have, the cost is len / 4 KiB).
        if len <= 1 << 20 {
            prop_assert_eq!(
                validate_translated(addr, len, max, &regions, Identity),
                got.map(drop)
            );
        }
    }

    /// `buffer_chunks`: pieces are contiguous in VA, each inside one guest
    /// page, translated with the page offset kept, and in RAM; the whole
    /// buffer validates exactly when every page translates and every byte
    /// of the translation is in RAM.
    #[test]
    fn buffer_chunks_are_translated_page_pieces(
        start_page in 0u64..6,
        offset in 0u64..GUEST_PAGE_SIZE,
        len in prop_oneof![0u64..0x3000, Just(CONSOLE_WRITE_MAX)],
        mapping in prop::collection::vec((0u64..8, 0u64..8), 0..12),
        broken in prop::option::weighted(0.1, 0u64..8),
        regions in prop::collection::vec((0u64..0x9000, 0u64..0x4000), 0..4),
        all_ram in any::<bool>(),
    ) {
        let mut regions = regions;
        if all_ram {
            regions.push((0, 0x8000));
        }
        let va_base = 0x40_0000u64;
        let pages: Vec<(u64, u64)> = mapping
            .iter()
            .map(|&(va, ipa)| (va_base + va * GUEST_PAGE_SIZE, ipa * GUEST_PAGE_SIZE))
            .collect();
        let broken = broken.map(|p| va_base + p * GUEST_PAGE_SIZE);
        let mut map = PageMap { pages: pages.clone(), broken };
        let addr = va_base + start_page * GUEST_PAGE_SIZE + offset;
        let max = 0x2000;
        let chunks = buffer_chunks(addr, len, max, &regions, &mut map);
        if len > max {
            prop_assert_eq!(chunks.err(), Some(HvError::TooLong));
            return Ok(());
        }
        let mut next = addr;
        let mut all_ok = true;
        let mut total = 0;
        for piece in chunks.expect("a buffer within the limit") {
            let Ok(piece) = piece else {
                all_ok = false;
                break;
            };
            prop_assert!(piece.len > 0);
            prop_assert_eq!(piece.ipa & (GUEST_PAGE_SIZE - 1), next & (GUEST_PAGE_SIZE - 1));
            prop_assert!((piece.ipa & (GUEST_PAGE_SIZE - 1)) + piece.len <= GUEST_PAGE_SIZE, "{:?} crosses a page", piece);
            prop_assert!(reference_covers(&regions, piece.ipa, piece.len));
            let mut reference = PageMap { pages: pages.clone(), broken };
            prop_assert_eq!(reference.translate(next), Ok(piece.ipa));
            next += piece.len;
            total += piece.len;
        }
        if all_ok {
            prop_assert_eq!(total, len);
        }
        // The verdict, page by page, from the reference translation.
        let mut expected = true;
        let mut at = addr;
        while at < addr + len {
            let piece = (GUEST_PAGE_SIZE - (at & (GUEST_PAGE_SIZE - 1))).min(addr + len - at);
            let mut reference = PageMap { pages: pages.clone(), broken };
            match reference.translate(at) {
                Ok(ipa) if (ipa ^ at) & (GUEST_PAGE_SIZE - 1) == 0 && reference_covers(&regions, ipa, piece) => {}
                _ => {
                    expected = false;
                    break;
                }
            }
            at += piece;
        }
        prop_assert_eq!(all_ok, expected);
        prop_assert_eq!(validate_translated(addr, len, max, &regions, &mut map).is_ok(), expected);
    }

    /// Replies: what the hypervisor writes is what the guest reads back;
    /// only `x0..x3` change; the status decodes to the error or success.
    #[test]
    fn replies_round_trip(
        result in prop_oneof![
            prop::array::uniform3(any::<u64>()).prop_map(Ok),
            prop::sample::select(&HvError::ALL[..]).prop_map(Err),
        ],
        regs in prop::array::uniform31(any::<u64>()),
        raw in prop::array::uniform4(any::<u64>()),
    ) {
        let reply = Reply::from_result(result);
        let mut frame = regs;
        reply.write_to(&mut frame);
        prop_assert_eq!(&frame[4..], &regs[4..]);
        let back = Reply::from_regs(&[frame[0], frame[1], frame[2], frame[3]]);
        prop_assert_eq!(back, reply);
        prop_assert_eq!(back.result(), result.map_err(CallError::Hv));
        if result.is_err() {
            prop_assert_eq!((back.x1, back.x2, back.x3), (0, 0, 0));
        }
        // Any x0..x3 a (newer or broken) hypervisor could return.
        let any = Reply::from_regs(&raw);
        match any.result() {
            Ok(values) => prop_assert!(raw[0] == STATUS_OK && values == [raw[1], raw[2], raw[3]]),
            Err(CallError::Hv(e)) => prop_assert_eq!(e.status(), raw[0]),
            Err(CallError::UnknownStatus(x0)) => {
                prop_assert!(x0 == raw[0] && x0 != STATUS_OK && HvError::from_code(x0 as i64).is_none());
            }
        }
        if let Err(e) = any.result() {
            let _ = e.to_string();
        }
    }

    /// `SCAN` replies: a success writes x0..x4 (x4 = the cursor) and reads
    /// back as the same `ScanReply`; an error writes x0..x3 only, leaving
    /// the caller's cursor in x4.
    #[test]
    fn scan_replies_round_trip(
        result in prop_oneof![
            prop::array::uniform4(any::<u64>()).prop_map(|r| Ok(ScanReply::from_regs(r))),
            prop::sample::select(&HvError::ALL[..]).prop_map(Err),
        ],
        regs in prop::array::uniform31(any::<u64>()),
    ) {
        let reply = Reply::from_scan(result);
        let mut frame = regs;
        reply.write_to(&mut frame);
        prop_assert_eq!(&frame[5..], &regs[5..]);
        let back = Reply::from_regs_with_x4(&[frame[0], frame[1], frame[2], frame[3], frame[4]]);
        match result {
            Ok(scan) => {
                prop_assert_eq!(back, reply);
                prop_assert_eq!(back.scan(), Ok(scan));
                prop_assert_eq!(scan.done(), scan.next == 0);
            }
            Err(e) => {
                prop_assert_eq!(frame[4], regs[4]);
                prop_assert_eq!(back.scan(), Err(CallError::Hv(e)));
                prop_assert_eq!((back.x1, back.x2, back.x3), (0, 0, 0));
            }
        }
    }

    /// `Info` encodes into the documented bit fields and decodes back;
    /// decoding refuses reserved bits and unknown modes.
    #[test]
    fn info_round_trips(
        mode in 0u64..3,
        el2_va_bits in any::<u8>(),
        el0_va_bits in any::<u8>(),
        cpus in any::<u32>(),
        raw in prop::array::uniform3(prop_oneof![0u64..4, any::<u64>()]),
    ) {
        let info = Info { mode: HvMode::from_code(mode).unwrap(), el2_va_bits, el0_va_bits, cpus };
        let regs = info.encode();
        prop_assert_eq!(regs, [mode, u64::from(el2_va_bits) | u64::from(el0_va_bits) << 8, u64::from(cpus)]);
        prop_assert_eq!(Info::decode(regs), Some(info));
        prop_assert_eq!(info.reply().result(), Ok(regs));
        match Info::decode(raw) {
            Some(decoded) => prop_assert_eq!(decoded.encode(), raw),
            None => prop_assert!(raw[0] > 2 || raw[1] >> 16 != 0 || raw[2] >> 32 != 0),
        }
    }

    /// `SCHED`: every field of any figures comes back through the items,
    /// whatever order the calls are made in; item 1 carries the vCPU
    /// count, and nothing but a bucket is in a latency item.
    #[test]
    fn sched_items_round_trip(
        counts in prop::array::uniform5(prop_oneof![0u64..1000, any::<u64>()]),
        latency in prop::array::uniform16(prop_oneof![0u64..1000, any::<u64>()]),
        vcpus in 1u64..=64,
        vcpu in 0u64..64,
        order in Just(SchedItem::ALL).prop_shuffle(),
    ) {
        const { assert!(BUCKETS == 16) };
        let [run_us, wait_us, switches, wakeups, worst_us] = counts;
        let figures = Figures { run_us, wait_us, switches, wakeups, latency, worst_us };
        let vcpu = vcpu % vcpus;
        let mut reader = SchedReader::new(vcpu);
        for item in order {
            prop_assert_eq!(reader.figures(), None);
            let regs = sched_item(&figures, vcpus, item);
            let request = reader.request(item);
            prop_assert_eq!(request.call().decode(CallerEl::El0), Ok(request));
            prop_assert_eq!(reader.accept(item, Reply::from_result(Ok(regs)).result().unwrap()), Ok(()));
        }
        prop_assert_eq!(reader.figures(), Some(figures));
        prop_assert_eq!(reader.vcpus(), Some(vcpus));
        prop_assert_eq!(Figures::parse(&figures.to_string()), Some(figures));
    }

    /// Codes and IDs round-trip; the DCC magic selects exactly the upper
    /// half.
    #[test]
    fn codes_round_trip(code in any::<i64>(), id in any::<u64>(), x0 in any::<u64>()) {
        if let Some(e) = HvError::from_code(code) {
            prop_assert_eq!(e.code(), code);
            prop_assert!(code < 0);
        }
        for e in HvError::ALL {
            prop_assert_eq!(HvError::from_code(e.code()), Some(e));
            prop_assert_eq!(e.status(), e.code() as u64);
        }
        match Function::from_id(id) {
            Some(f) => prop_assert_eq!(f.id(), id),
            None => prop_assert!(id > 5),
        }
        match dcc_call_function(x0) {
            Some(f) => prop_assert!(x0 & DCC_CALL_MAGIC_MASK == DCC_CALL_MAGIC && f == x0 & !DCC_CALL_MAGIC_MASK),
            None => prop_assert!(x0 & DCC_CALL_MAGIC_MASK != DCC_CALL_MAGIC),
        }
    }

    /// Handoff records: `PhysRange::contains` is range inclusion (in exact
    /// arithmetic), and `validate` accepts a record only when both images,
    /// and a data entry's copy if there is one (its size not 0), lie
    /// inside the reserved block.
    #[test]
    fn handoff_ranges_are_checked(
        ranges in prop::array::uniform4((region_strategy(), any::<bool>())),
        header in prop_oneof![4 => Just(None), 1 => any::<(u64, u32, u32)>().prop_map(Some)],
    ) {
        let [(reserved, _), (hv, _), (stub, _), (kernel, absent)] = ranges;
        let range = |(base, size): (u64, u64)| PhysRange { base, size };
        let (reserved, hv, stub) = (range(reserved), range(hv), range(stub));
        let kernel = if absent { PhysRange { size: 0, ..range(kernel) } } else { range(kernel) };
        let inside = |outer: &PhysRange, inner: &PhysRange| {
            let end = |r: &PhysRange| u128::from(r.base) + u128::from(r.size);
            inner.base >= outer.base && end(inner) <= end(outer)
        };
        prop_assert_eq!(reserved.contains(&hv), inside(&reserved, &hv), "{:?} in {:?}", hv, reserved);
        let image = |bytes: PhysRange| LoadedImage { bytes, mem_size: bytes.size, entry_offset: 0, align: 4096 };
        let data = DataEntries { linux_kernel: kernel, ..DataEntries::default() };
        let mut record = Handoff::new(range((0, 0)), reserved, image(hv), image(stub), data);
        if let Some((magic, version, size)) = header {
            record.magic = magic;
            record.version = version;
            record.size = size;
        }
        let header_ok = record.magic == HANDOFF_MAGIC
            && record.version == HANDOFF_VERSION
            && record.size as usize == core::mem::size_of::<Handoff>();
        let result = record.validate();
        let kernel_ok = kernel.size == 0 || inside(&reserved, &kernel);
        let images_ok = inside(&reserved, &hv) && inside(&reserved, &stub);
        prop_assert_eq!(result.is_ok(), header_ok && images_ok && kernel_ok, "{:?}", result);
        if let Err(e) = result {
            let _ = e.to_string();
        }
    }
}
