//! The guest hypercall ABI in code, for the `BRK` backdoor and the DCC
//! conduit: function IDs, error codes, the register encoding of calls and
//! replies, the `INFO` layout, the EL0 policy and buffer validation. The
//! ABI itself is described once, in `docs/hypercalls.md`.
//!
//! Both sides build from this module: the hypervisor decodes and validates
//! calls with it; the guest-stub and `hvctl` encode calls and decode
//! replies with it. It is pure logic, host-tested; the hypervisor supplies
//! everything that touches hardware (register frame, address translation,
//! copying guest memory).
//!
//! Nothing here panics or does unchecked arithmetic on guest-supplied values,
//! which clippy enforces (the crate-wide lints in lib.rs).

use core::fmt;

use crate::esr::Esr;
use crate::sched::{Figures, BUCKETS};

/// The `BRK` comment that marks a hypercall: ASCII "HV" (why this value:
/// docs/hypercalls.md).
pub const HV_BRK_IMM: u16 = 0x4856;

/// The major version of this ABI: changes when a call changes meaning.
pub const ABI_VERSION_MAJOR: u16 = 1;
/// The minor version: changes when calls are added, or when a call gains an
/// argument whose value 0 keeps the old meaning or a result in a register
/// it used to preserve. 1.1: `SCAN` takes a resume cursor in `x4` and
/// returns the next one there, and stops after [`SCAN_PROBE_BUDGET`]
/// probes. 1.2: `SCHED`, the caller's own VM's scheduler figures. 1.3:
/// `INTEGRITY` and `TRACE`.
pub const ABI_VERSION_MINOR: u16 = 3;
/// What [`Function::Version`] returns in `x1`: `major << 16 | minor`.
pub const ABI_VERSION: u64 = ((ABI_VERSION_MAJOR as u64) << 16) | ABI_VERSION_MINOR as u64;

/// The longest buffer one [`Function::ConsoleWrite`] accepts, in bytes;
/// longer ones fail with [`HvError::TooLong`] (the guest splits them).
pub const CONSOLE_WRITE_MAX: u64 = 1024;

/// The most probes one [`Function::Scan`] call makes: one piece of a scan.
/// A piece that runs out of probes returns a resume cursor, and the caller
/// makes the next call from there (see [`ScanReply`]). At this budget one
/// call costs at most about 300,600 instructions, EL2's included, about
/// 0.3 ms under `-icount shift=0` (docs/benchmarks.md, row
/// `scan-worst-call`: every probe a mapped page of a four-level walk and a
/// region of its own).
pub const SCAN_PROBE_BUDGET: u64 = 512;

/// The most entries one [`Function::Scan`] call accepts as its buffer's
/// capacity; more answers [`HvError::TooLong`]. With a budget no larger,
/// a buffer this size never fills within a call.
pub const SCAN_CAPACITY_MAX: u64 = 1024;

/// The smallest translation granule a guest can use: a buffer that is
/// contiguous in the guest's virtual addresses is contiguous in IPA only
/// within one such page, so [`buffer_chunks`] splits at these boundaries.
pub const GUEST_PAGE_SIZE: u64 = 4096;

/// Whether a syndrome taken at EL2 is a hypercall: a `BRK` with
/// [`HV_BRK_IMM`]. Every other `BRK` is reflected to the guest.
pub const fn is_hypercall(esr: Esr) -> bool {
    matches!(esr.brk_comment(), Some(HV_BRK_IMM))
}

/// A hypercall function, named by its ID in `x0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// ID 0: the ABI version, `x1` = [`ABI_VERSION`].
    Version,
    /// ID 1: is function `x1` available to this caller?
    Features,
    /// ID 2: print `x2` bytes at guest address `x1` on the hypervisor
    /// console; `x1` (out) = bytes written.
    ConsoleWrite,
    /// ID 3: hypervisor information, see [`Info`].
    Info,
    /// ID 4: scan the caller's `TTBR0` or `TTBR1` range into a buffer of
    /// [`crate::gvascan`] entries, one piece of at most
    /// [`SCAN_PROBE_BUDGET`] probes per call, from a resume cursor.
    Scan,
    /// ID 5 (ABI 1.2): one [`SchedItem`] of the scheduler figures of vCPU
    /// `x1` of the caller's own VM, in `x1..x3` ([`sched_item`]).
    Sched,
    /// ID 6 (ABI 1.3): the caller's VM's kernel integrity, operation
    /// [`IntegrityOp`] in `x1` (`STATUS`, `LOCK`, `SET_EXEC`).
    Integrity,
    /// ID 7 (ABI 1.3): the caller's VM's trace of writes to its stage-1
    /// tables: record `x1` in `x1..x4` ([`TraceReply`]), or the counts
    /// ([`TRACE_COUNTS`]), or empty it ([`TRACE_CLEAR`]).
    Trace,
}

impl Function {
    /// Every function this ABI names, in ID order.
    pub const ALL: [Self; 8] = [
        Self::Version,
        Self::Features,
        Self::ConsoleWrite,
        Self::Info,
        Self::Scan,
        Self::Sched,
        Self::Integrity,
        Self::Trace,
    ];

    /// The ID the caller puts in `x0`.
    pub const fn id(self) -> u64 {
        match self {
            Self::Version => 0,
            Self::Features => 1,
            Self::ConsoleWrite => 2,
            Self::Info => 3,
            Self::Scan => 4,
            Self::Sched => 5,
            Self::Integrity => 6,
            Self::Trace => 7,
        }
    }

    /// The function with ID `id` (all 64 bits of `x0` count).
    pub const fn from_id(id: u64) -> Option<Self> {
        match id {
            0 => Some(Self::Version),
            1 => Some(Self::Features),
            2 => Some(Self::ConsoleWrite),
            3 => Some(Self::Info),
            4 => Some(Self::Scan),
            5 => Some(Self::Sched),
            6 => Some(Self::Integrity),
            7 => Some(Self::Trace),
            _ => None,
        }
    }

    /// Whether this hypervisor implements the function (a reserved ID
    /// answers [`HvError::NotSupported`]).
    pub const fn is_implemented(self) -> bool {
        true
    }

    /// The EL0 policy: the allow-list of calls the guest's EL0 may make
    /// (`SCAN` only of the `TTBR0` range, which [`Call::decode`] checks).
    /// `SCHED` reads figures of the caller's own VM only, as `/proc/stat`
    /// shows a process its own machine's. `INTEGRITY`'s `STATUS` and `LOCK`
    /// may come from EL0 (`hvctl integrity lock`: the lock only takes
    /// rights away, and cannot be undone), its `SET_EXEC` may not
    /// ([`Call::decode`] checks); `TRACE` shows the kernel's table updates
    /// to the VM's processes, which is what a VM whose owner turned
    /// tracing on asked for.
    pub const fn allowed_from_el0(self) -> bool {
        match self {
            Self::Version | Self::Features | Self::Info | Self::ConsoleWrite => true,
            Self::Scan => true,
            Self::Sched => true,
            Self::Integrity | Self::Trace => true,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Version => "VERSION",
            Self::Features => "FEATURES",
            Self::ConsoleWrite => "CONSOLE_WRITE",
            Self::Info => "INFO",
            Self::Scan => "SCAN",
            Self::Sched => "SCHED",
            Self::Integrity => "INTEGRITY",
            Self::Trace => "TRACE",
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The EL0 policy as a free function: [`Function::allowed_from_el0`].
pub const fn allowed_from_el0(function: Function) -> bool {
    function.allowed_from_el0()
}

/// The guest exception level a call was made from (`SPSR_EL2.M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerEl {
    El0,
    El1,
}

/// Whether `caller` may call `function`: `Ok`, or the error the call
/// returns ([`HvError::NotSupported`] for a reserved function,
/// [`HvError::PermissionDenied`] for an EL1-only one from EL0).
pub const fn check_access(function: Function, caller: CallerEl) -> Result<(), HvError> {
    // The policy comes first: what EL0 may not call is refused as such,
    // whether or not this build implements it.
    if let CallerEl::El0 = caller {
        if !function.allowed_from_el0() {
            return Err(HvError::PermissionDenied);
        }
    }
    if !function.is_implemented() {
        return Err(HvError::NotSupported);
    }
    Ok(())
}

/// The answer to [`Function::Features`] for function ID `function_id`
/// asked by `caller`: `Ok` if the caller may call it, else the error that
/// call would return.
pub const fn features(function_id: u64, caller: CallerEl) -> Result<(), HvError> {
    match Function::from_id(function_id) {
        Some(function) => check_access(function, caller),
        None => Err(HvError::NotSupported),
    }
}

/// Why a hypercall failed. The numeric codes ([`HvError::code`]) are part of
/// the ABI and never change; they are converted only at the register
/// boundary ([`Reply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvError {
    /// -1: unknown or unimplemented function.
    NotSupported,
    /// -2: an argument is malformed (a bad function ID given to `FEATURES`
    /// is not this: that answers `NOT_SUPPORTED`).
    InvalidArgument,
    /// -3: a buffer is not entirely in memory the caller may read (not
    /// mapped, outside guest RAM, or wrapping around the address space).
    BadAddress,
    /// -4: a length is over the call's limit.
    TooLong,
    /// -5: the caller's exception level may not make this call.
    PermissionDenied,
    /// -6: the result does not fit the buffer the caller gave.
    BufferTooSmall,
}

impl HvError {
    pub const ALL: [Self; 6] = [
        Self::NotSupported,
        Self::InvalidArgument,
        Self::BadAddress,
        Self::TooLong,
        Self::PermissionDenied,
        Self::BufferTooSmall,
    ];

    /// The stable status code returned in `x0`.
    pub const fn code(self) -> i64 {
        match self {
            Self::NotSupported => -1,
            Self::InvalidArgument => -2,
            Self::BadAddress => -3,
            Self::TooLong => -4,
            Self::PermissionDenied => -5,
            Self::BufferTooSmall => -6,
        }
    }

    /// The error a status code names, if any.
    pub const fn from_code(code: i64) -> Option<Self> {
        match code {
            -1 => Some(Self::NotSupported),
            -2 => Some(Self::InvalidArgument),
            -3 => Some(Self::BadAddress),
            -4 => Some(Self::TooLong),
            -5 => Some(Self::PermissionDenied),
            -6 => Some(Self::BufferTooSmall),
            _ => None,
        }
    }

    /// The code as the `x0` register value (two's complement).
    pub const fn status(self) -> u64 {
        self.code().cast_unsigned()
    }

    /// The ABI's name for the code.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotSupported => "NOT_SUPPORTED",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::BadAddress => "BAD_ADDRESS",
            Self::TooLong => "TOO_LONG",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::BufferTooSmall => "BUFFER_TOO_SMALL",
        }
    }
}

impl fmt::Display for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// The status of a successful call.
pub const STATUS_OK: u64 = 0;

/// The DCC conduit's marker: an `MDCCSR_EL0` read is a hypercall when x0 is
/// `DCC_CALL_MAGIC | function` ("HVDC" in the upper half).
pub const DCC_CALL_MAGIC: u64 = 0x4856_4443 << 32;
/// The mask that selects the magic.
pub const DCC_CALL_MAGIC_MASK: u64 = 0xffff_ffff << 32;

/// The function of a DCC hypercall, if `x0` is one.
pub const fn dcc_call_function(x0: u64) -> Option<u64> {
    if x0 & DCC_CALL_MAGIC_MASK == DCC_CALL_MAGIC {
        Some(x0 & !DCC_CALL_MAGIC_MASK)
    } else {
        None
    }
}

/// A hypercall as it arrives in the guest's registers: the raw function ID
/// from `x0` and the arguments `x1..x7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub function: u64,
    pub args: [u64; 7],
}

impl Call {
    /// Reads `x0..x7` from a trap frame's general-purpose registers.
    pub const fn from_regs(regs: &[u64; 31]) -> Self {
        let [function, x1, x2, x3, x4, x5, x6, x7, ..] = *regs;
        Self { function, args: [x1, x2, x3, x4, x5, x6, x7] }
    }

    /// `x0..x7` as the caller loads them before the `BRK`.
    pub const fn regs(&self) -> [u64; 8] {
        let [x1, x2, x3, x4, x5, x6, x7] = self.args;
        [self.function, x1, x2, x3, x4, x5, x6, x7]
    }

    /// Decodes the call for `caller`, applying the EL0 policy: the typed
    /// request, or the error to reply with.
    pub const fn decode(&self, caller: CallerEl) -> Result<Request, HvError> {
        let Some(function) = Function::from_id(self.function) else {
            return Err(HvError::NotSupported);
        };
        if let Err(e) = check_access(function, caller) {
            return Err(e);
        }
        let [x1, x2, ..] = self.args;
        match function {
            Function::Version => Ok(Request::Version),
            Function::Features => Ok(Request::Features { function: x1 }),
            Function::ConsoleWrite => Ok(Request::ConsoleWrite { addr: x1, len: x2 }),
            Function::Info => Ok(Request::Info),
            Function::Scan => {
                let range = match x1 {
                    0 => ScanRange::Ttbr0,
                    1 => ScanRange::Ttbr1,
                    _ => return Err(HvError::InvalidArgument),
                };
                if let (ScanRange::Ttbr1, CallerEl::El0) = (range, caller) {
                    return Err(HvError::PermissionDenied);
                }
                let [_, _, x3, x4, ..] = self.args;
                Ok(Request::Scan { range, buffer: x2, capacity: x3, cursor: x4 })
            }
            // The vCPU index is checked at EL2, against the caller's VM.
            Function::Sched => match SchedItem::from_raw(x2) {
                Some(item) => Ok(Request::Sched { vcpu: x1, item }),
                None => Err(HvError::InvalidArgument),
            },
            Function::Integrity => {
                let [_, _, x3, x4, ..] = self.args;
                match IntegrityOp::decode(x1, x2, x3, x4) {
                    Some(IntegrityOp::SetExec { .. }) if matches!(caller, CallerEl::El0) => {
                        Err(HvError::PermissionDenied)
                    }
                    Some(op) => Ok(Request::Integrity(op)),
                    None => Err(HvError::InvalidArgument),
                }
            }
            Function::Trace => Ok(Request::Trace { index: x1 }),
        }
    }
}

/// `INTEGRITY`'s operations (`x1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntegrityOp {
    /// 0: `x1` = [`IntegrityStatus`] flags, `x2` = pages of locked kernel
    /// code, `x3` = refusals since the VM started (updates, writes and
    /// fetches; before the lock, fetches and stores it cannot perform).
    Status,
    /// 1: the lock point: the kernel's code is what its `TTBR1` tables map
    /// executable at EL1 now; `x1` = its pages. A second lock changes
    /// nothing and answers the same.
    Lock,
    /// 2 (EL1, before the lock): pages `ipa..ipa + pages * 4096` of the
    /// caller's RAM get execute permission `exec` at stage 2.
    SetExec { ipa: u64, pages: u64, exec: crate::mbec::Exec },
}

impl IntegrityOp {
    /// From `x1..x4`; `None` for an unknown operation or class.
    pub const fn decode(op: u64, x2: u64, x3: u64, x4: u64) -> Option<Self> {
        match op {
            0 => Some(Self::Status),
            1 => Some(Self::Lock),
            2 => match crate::mbec::Exec::from_code(x4) {
                Some(exec) => Some(Self::SetExec { ipa: x2, pages: x3, exec }),
                None => None,
            },
            _ => None,
        }
    }

    /// `x1..x4`.
    pub const fn args(&self) -> [u64; 4] {
        match *self {
            Self::Status => [0, 0, 0, 0],
            Self::Lock => [1, 0, 0, 0],
            Self::SetExec { ipa, pages, exec } => [2, ipa, pages, exec.code()],
        }
    }
}

/// `INTEGRITY STATUS`'s `x1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntegrityStatus {
    /// The VM's kernel's code is locked.
    pub locked: bool,
    /// Stage 2 uses FEAT_XNX (else the emulation's trees).
    pub xnx: bool,
    /// Its stage-1 table writes are traced.
    pub tracing: bool,
}

impl IntegrityStatus {
    const LOCKED: u64 = 1 << 0;
    const XNX: u64 = 1 << 1;
    const TRACING: u64 = 1 << 2;

    pub const fn bits(&self) -> u64 {
        (if self.locked { Self::LOCKED } else { 0 })
            | (if self.xnx { Self::XNX } else { 0 })
            | (if self.tracing { Self::TRACING } else { 0 })
    }

    pub const fn from_bits(bits: u64) -> Self {
        Self { locked: bits & Self::LOCKED != 0, xnx: bits & Self::XNX != 0, tracing: bits & Self::TRACING != 0 }
    }
}

/// `TRACE` with this index: `x1` = records kept, `x2` = records dropped
/// for want of room, `x3` = the log's capacity.
pub const TRACE_COUNTS: u64 = u64::MAX;
/// `TRACE` with this index: empties the log (`x1` = records it held).
pub const TRACE_CLEAR: u64 = u64::MAX - 1;

/// One record as `TRACE` returns it: `x1` = the table's IPA with its
/// level in bits \[1:0\] and the entry's index in bits \[11:2\], `x2` =
/// the old descriptor, `x3` = the new one, `x4` = the first VA the entry
/// translates (the last follows from the level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceReply(pub crate::s1trace::Record);

impl TraceReply {
    pub const fn regs(&self) -> [u64; 4] {
        let r = &self.0;
        [r.table | ((r.index as u64 & 0x3ff) << 2) | (r.level as u64 & 3), r.old, r.new, r.first_va]
    }

    pub const fn from_regs(regs: [u64; 4]) -> Self {
        let [where_, old, new, first_va] = regs;
        let level = (where_ & 3) as u8;
        let span = crate::s1trace::entry_span(level);
        Self(crate::s1trace::Record {
            table: where_ & !0xfff,
            level,
            index: ((where_ >> 2) & 0x3ff) as u16,
            old,
            new,
            first_va,
            last_va: first_va.wrapping_add(span).wrapping_sub(1),
        })
    }
}

/// A decoded, permitted hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Version,
    /// Is the function with this ID available to the caller?
    Features {
        function: u64,
    },
    /// Print `len` bytes at guest address `addr`, an address in the
    /// caller's own translation regime ([`buffer_chunks`] splits it).
    ConsoleWrite {
        addr: u64,
        len: u64,
    },
    Info,
    /// Scan the caller's `range` of its address space into `capacity`
    /// entries at guest address `buffer`, from `cursor`: 0 for the start of
    /// the range ([`crate::gvascan::CURSOR_START`]), otherwise the cursor a
    /// previous call returned ([`ScanReply::next`]).
    Scan {
        range: ScanRange,
        buffer: u64,
        capacity: u64,
        cursor: u64,
    },
    /// Item `item` of the scheduler figures of vCPU `vcpu` of the caller's
    /// own VM (an index there; one past the last is
    /// [`HvError::InvalidArgument`], which EL2 checks).
    Sched {
        vcpu: u64,
        item: SchedItem,
    },
    /// An operation on the caller's VM's kernel integrity.
    Integrity(IntegrityOp),
    /// Record `index` of the caller's VM's trace, or [`TRACE_COUNTS`], or
    /// [`TRACE_CLEAR`].
    Trace {
        index: u64,
    },
}

/// Which half of the caller's address space `SCAN` walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanRange {
    /// The `TTBR0_EL1` (user) range.
    Ttbr0,
    /// The `TTBR1_EL1` (kernel) range: EL1 only.
    Ttbr1,
}

impl Request {
    pub const fn function(&self) -> Function {
        match self {
            Self::Version => Function::Version,
            Self::Features { .. } => Function::Features,
            Self::ConsoleWrite { .. } => Function::ConsoleWrite,
            Self::Info => Function::Info,
            Self::Scan { .. } => Function::Scan,
            Self::Sched { .. } => Function::Sched,
            Self::Integrity(_) => Function::Integrity,
            Self::Trace { .. } => Function::Trace,
        }
    }

    /// The registers a guest loads to make this request.
    pub const fn call(&self) -> Call {
        let args = match *self {
            Self::Version | Self::Info => [0; 7],
            Self::Features { function } => [function, 0, 0, 0, 0, 0, 0],
            Self::ConsoleWrite { addr, len } => [addr, len, 0, 0, 0, 0, 0],
            Self::Scan { range, buffer, capacity, cursor } => {
                let range = match range {
                    ScanRange::Ttbr0 => 0,
                    ScanRange::Ttbr1 => 1,
                };
                [range, buffer, capacity, cursor, 0, 0, 0]
            }
            Self::Sched { vcpu, item } => [vcpu, item.raw(), 0, 0, 0, 0, 0],
            Self::Integrity(op) => {
                let [x1, x2, x3, x4] = op.args();
                [x1, x2, x3, x4, 0, 0, 0]
            }
            Self::Trace { index } => [index, 0, 0, 0, 0, 0, 0],
        };
        Call { function: self.function().id(), args }
    }
}

/// A hypercall's results as they go back in `x0..x3`, and `x4` for a
/// successful `SCAN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub x0: u64,
    pub x1: u64,
    pub x2: u64,
    pub x3: u64,
    /// `x4`: `Some` when the reply sets it (a successful `SCAN`'s next
    /// cursor, a `TRACE` record's first VA); `None` leaves the caller's `x4` as it was, as every other
    /// call and every error does. On the guest's side, [`brk`] reads `x4`
    /// back after every call (the caller's own value when the call
    /// preserved it).
    pub x4: Option<u64>,
}

impl Reply {
    /// Success with results `x1..x3`.
    pub const fn ok(x1: u64, x2: u64, x3: u64) -> Self {
        Self { x0: STATUS_OK, x1, x2, x3, x4: None }
    }

    /// Failure: `x0` = the error's code, `x1..x3` zeroed so that no stale
    /// value leaks back to the guest; `x4` is left as the caller set it.
    pub const fn error(error: HvError) -> Self {
        Self { x0: error.status(), x1: 0, x2: 0, x3: 0, x4: None }
    }

    /// The reply to [`Function::Scan`].
    pub const fn from_scan(result: Result<ScanReply, HvError>) -> Self {
        match result {
            Ok(scan) => {
                let [x1, x2, x3, x4] = scan.regs();
                Self { x0: STATUS_OK, x1, x2, x3, x4: Some(x4) }
            }
            Err(e) => Self::error(e),
        }
    }

    /// The results of a `SCAN` call (guest side): `x1..x3` and the cursor
    /// in `x4`. A reply without `x4` reads as cursor 0, done: what a
    /// hypervisor of ABI 1.0, which preserved `x4`, gives a caller that
    /// passed 0.
    pub const fn scan(&self) -> Result<ScanReply, CallError> {
        match self.result() {
            Ok([x1, x2, x3]) => Ok(ScanReply::from_regs([
                x1,
                x2,
                x3,
                match self.x4 {
                    Some(x4) => x4,
                    None => crate::gvascan::CURSOR_DONE,
                },
            ])),
            Err(e) => Err(e),
        }
    }

    pub const fn from_result(result: Result<[u64; 3], HvError>) -> Self {
        match result {
            Ok([x1, x2, x3]) => Self::ok(x1, x2, x3),
            Err(e) => Self::error(e),
        }
    }

    /// A successful `TRACE` record: `x1..x4`.
    pub const fn trace(record: TraceReply) -> Self {
        let [x1, x2, x3, x4] = record.regs();
        Self { x0: STATUS_OK, x1, x2, x3, x4: Some(x4) }
    }

    /// The reply to [`Function::Version`].
    pub const fn version() -> Self {
        Self::ok(ABI_VERSION, 0, 0)
    }

    /// The reply to [`Function::Features`].
    pub const fn features(function_id: u64, caller: CallerEl) -> Self {
        match features(function_id, caller) {
            Ok(()) => Self::ok(0, 0, 0),
            Err(e) => Self::error(e),
        }
    }

    /// Stores the reply in `x0..x3` of a trap frame, and in `x4` if it
    /// sets it; other registers are left as they are.
    pub fn write_to(&self, regs: &mut [u64; 31]) {
        let [x0, x1, x2, x3, x4, ..] = regs;
        (*x0, *x1, *x2, *x3) = (self.x0, self.x1, self.x2, self.x3);
        if let Some(value) = self.x4 {
            *x4 = value;
        }
    }

    /// Reads `x0..x3` after the `BRK` (guest side); `x4` unknown.
    pub const fn from_regs(regs: &[u64; 4]) -> Self {
        let [x0, x1, x2, x3] = *regs;
        Self { x0, x1, x2, x3, x4: None }
    }

    /// Reads `x0..x4` after the `BRK` (guest side).
    pub const fn from_regs_with_x4(regs: &[u64; 5]) -> Self {
        let [x0, x1, x2, x3, x4] = *regs;
        Self { x0, x1, x2, x3, x4: Some(x4) }
    }

    /// The results, or the error the status names (guest side).
    pub const fn result(&self) -> Result<[u64; 3], CallError> {
        if self.x0 == STATUS_OK {
            return Ok([self.x1, self.x2, self.x3]);
        }
        match HvError::from_code(self.x0.cast_signed()) {
            Some(e) => Err(CallError::Hv(e)),
            None => Err(CallError::UnknownStatus(self.x0)),
        }
    }
}

/// What one successful `SCAN` call returns: `x1..x3` and the cursor in
/// `x4`.
///
/// A call scans one piece of the range, at most [`SCAN_PROBE_BUDGET`]
/// probes, and returns the cursor to pass in `x4` to the next call
/// ([`crate::gvascan::scan_chunk`] is the piece). The caller loops until
/// the cursor is 0, appending each call's entries with
/// [`crate::gvascan::Region::join`]: a region that continues past the end
/// of one piece is written as far as that piece got, and the next call's
/// first entry continues it (VA- and IPA-contiguous, same flags); no two
/// entries of one unbounded scan would join. The counts add up over the
/// calls (`regions` counts entries written, so a joined region counts
/// once per piece).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanReply {
    /// `x1`: entries written to the buffer by this call.
    pub regions: u64,
    /// `x2`: translations probed by this call (at most
    /// [`SCAN_PROBE_BUDGET`]).
    pub probes: u64,
    /// `x3`: holes met by this call: probes that faulted, each an unmapped
    /// table entry whose span was skipped whole.
    pub holes: u64,
    /// `x4`: the cursor for the next call, or 0
    /// ([`crate::gvascan::CURSOR_DONE`]) when the range is done.
    pub next: u64,
}

impl ScanReply {
    /// Whether the range is done (no cursor to resume from).
    pub const fn done(&self) -> bool {
        self.next == crate::gvascan::CURSOR_DONE
    }

    /// `x1..x4`.
    pub const fn regs(&self) -> [u64; 4] {
        [self.regions, self.probes, self.holes, self.next]
    }

    /// From `x1..x4`.
    pub const fn from_regs(regs: [u64; 4]) -> Self {
        let [regions, probes, holes, next] = regs;
        Self { regions, probes, holes, next }
    }
}

/// A failed call as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// A status this ABI names.
    Hv(HvError),
    /// A non-zero status this ABI version does not name (a newer or broken
    /// hypervisor); the raw `x0`.
    UnknownStatus(u64),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hv(e) => write!(f, "hypercall failed: {e}"),
            Self::UnknownStatus(x0) => write!(f, "hypercall failed with unknown status {x0:#x}"),
        }
    }
}

impl From<HvError> for CallError {
    fn from(e: HvError) -> Self {
        Self::Hv(e)
    }
}

// --- INFO --------------------------------------------------------------

/// The hypervisor's translation scheme, as [`Function::Info`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvMode {
    /// 0: split (non-VHE) scheme, hypervisor MMU off.
    NvheMmuOff,
    /// 1: split (non-VHE) scheme: EL2 runs its own `TTBR0_EL2` regime.
    Nvhe,
    /// 2: VHE (`HCR_EL2.E2H`): EL2 runs the EL2&0 regime.
    Vhe,
}

impl HvMode {
    pub const fn code(self) -> u64 {
        match self {
            Self::NvheMmuOff => 0,
            Self::Nvhe => 1,
            Self::Vhe => 2,
        }
    }

    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Self::NvheMmuOff),
            1 => Some(Self::Nvhe),
            2 => Some(Self::Vhe),
            _ => None,
        }
    }
}

impl fmt::Display for HvMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NvheMmuOff => "nvhe with MMU off",
            Self::Nvhe => "nvhe",
            Self::Vhe => "vhe",
        })
    }
}

/// The results of [`Function::Info`], packed into `x1..x3` by
/// [`Info::encode`] (the layout is in docs/hypercalls.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    pub mode: HvMode,
    pub el2_va_bits: u8,
    pub el0_va_bits: u8,
    pub cpus: u32,
}

impl Info {
    /// `[x1, x2, x3]`.
    pub const fn encode(&self) -> [u64; 3] {
        [self.mode.code(), (self.el2_va_bits as u64) | ((self.el0_va_bits as u64) << 8), self.cpus as u64]
    }

    /// Decodes `[x1, x2, x3]` (guest side); `None` if a reserved bit is set
    /// or the mode is unknown.
    pub const fn decode(regs: [u64; 3]) -> Option<Self> {
        let [x1, x2, x3] = regs;
        let Some(mode) = HvMode::from_code(x1) else {
            return None;
        };
        if x2 >> 16 != 0 || x3 >> 32 != 0 {
            return None;
        }
        Some(Self {
            mode,
            el2_va_bits: (x2 & 0xff) as u8,
            el0_va_bits: ((x2 >> 8) & 0xff) as u8,
            cpus: (x3 & 0xffff_ffff) as u32,
        })
    }

    /// The reply to [`Function::Info`].
    pub const fn reply(&self) -> Reply {
        let [x1, x2, x3] = self.encode();
        Reply::ok(x1, x2, x3)
    }
}

// --- SCHED -------------------------------------------------------------

/// How many items [`Function::Sched`] has: [`SchedItem::TIMES`],
/// [`SchedItem::WAKEUPS`], then the wake-up latency buckets, three to an
/// item (items 2..=7 for [`BUCKETS`] = 16: item 7 holds bucket 15 in `x1`,
/// and its `x2` and `x3` are 0).
pub const SCHED_ITEMS: u64 = 8;

/// The first item of latency buckets.
const FIRST_LATENCY_ITEM: u8 = 2;
/// Latency buckets per item: one per result register.
const BUCKETS_PER_ITEM: usize = 3;

// The item count is part of the ABI: more buckets need more items, and a
// new minor version.
const _: () = assert!(FIRST_LATENCY_ITEM as usize + BUCKETS.div_ceil(BUCKETS_PER_ITEM) == SCHED_ITEMS as usize);

/// One item of a vCPU's scheduler [`Figures`] as [`Function::Sched`]
/// returns it in `x1..x3` (`x2` of the call, below [`SCHED_ITEMS`]):
///
/// | item | `x1` | `x2` | `x3` |
/// |-----:|------|------|------|
/// | 0 | `run_us` | `wait_us` | `switches` |
/// | 1 | `wakeups` | `worst_us` | vCPUs in the caller's VM |
/// | 2..=7 | `latency[3(item-2)]` | `latency[3(item-2)+1]` | `latency[3(item-2)+2]` |
///
/// A bucket past the last ([`BUCKETS`]) reads 0: item 7's `x2` and `x3`.
/// [`sched_item`] packs an item, [`SchedReader`] unpacks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchedItem(u8);

impl SchedItem {
    /// Item 0: run time, wait time (microseconds), switches.
    pub const TIMES: Self = Self(0);
    /// Item 1: wake-ups, the worst wake-up latency (microseconds), and the
    /// number of vCPUs in the caller's VM.
    pub const WAKEUPS: Self = Self(1);
    /// Every item, in order.
    pub const ALL: [Self; SCHED_ITEMS as usize] =
        [Self(0), Self(1), Self(2), Self(3), Self(4), Self(5), Self(6), Self(7)];

    /// The item `x2` names, or `None` (the call answers
    /// [`HvError::InvalidArgument`]).
    pub const fn from_raw(raw: u64) -> Option<Self> {
        if raw < SCHED_ITEMS {
            Some(Self(raw as u8))
        } else {
            None
        }
    }

    /// The value the caller puts in `x2`.
    pub const fn raw(self) -> u64 {
        self.0 as u64
    }

    /// The latency buckets the item holds in `x1..`, in order (empty for
    /// items 0 and 1; one bucket only for item 7).
    pub fn buckets(self) -> core::ops::Range<usize> {
        let Some(index) = self.0.checked_sub(FIRST_LATENCY_ITEM) else {
            return 0..0;
        };
        let first = usize::from(index).saturating_mul(BUCKETS_PER_ITEM).min(BUCKETS);
        first..first.saturating_add(BUCKETS_PER_ITEM).min(BUCKETS)
    }
}

impl fmt::Display for SchedItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item {}", self.0)
    }
}

/// `x1..x3` of `item` for a vCPU with `figures` in a VM of `vcpus` vCPUs:
/// the hypervisor's side of [`Function::Sched`] (the layout is
/// [`SchedItem`]'s).
pub fn sched_item(figures: &Figures, vcpus: u64, item: SchedItem) -> [u64; 3] {
    match item {
        SchedItem::TIMES => [figures.run_us, figures.wait_us, figures.switches],
        SchedItem::WAKEUPS => [figures.wakeups, figures.worst_us, vcpus],
        _ => {
            let mut regs = [0; 3];
            for (reg, count) in regs.iter_mut().zip(figures.latency.get(item.buckets()).unwrap_or_default()) {
                *reg = *count;
            }
            regs
        }
    }
}

/// A [`Function::Sched`] reply that cannot be right (guest side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedReplyError {
    /// A register past the last latency bucket is not 0.
    Reserved { item: SchedItem, regs: [u64; 3] },
    /// Item 1's vCPU count does not include the vCPU asked about.
    VcpuCount { vcpu: u64, vcpus: u64 },
    /// Item 1 gave a different vCPU count than before.
    CountChanged { before: u64, now: u64 },
}

impl fmt::Display for SchedReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reserved { item, regs: [x1, x2, x3] } => {
                write!(f, "{item} is x1..x3 = {x1:#x}, {x2:#x}, {x3:#x}: a register past the last bucket is not 0")
            }
            Self::VcpuCount { vcpu, vcpus } => write!(f, "vCPU {vcpu} answered, but its VM has {vcpus} vCPUs"),
            Self::CountChanged { before, now } => write!(f, "the VM's vCPU count changed from {before} to {now}"),
        }
    }
}

/// Assembles one vCPU's [`Figures`] from [`Function::Sched`] replies: the
/// guest's side of [`sched_item`]. Make [`SchedReader::request`] for each
/// of [`SchedItem::ALL`] and give each reply's `x1..x3` to
/// [`SchedReader::accept`], in any order; [`SchedReader::figures`] is the
/// result once every item is in.
///
/// Each call reads the figures as they are at that moment: the items of
/// one vCPU are not one snapshot (a switch between two calls may show in
/// one item and not in another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedReader {
    vcpu: u64,
    figures: Figures,
    vcpus: Option<u64>,
    /// Bit n: item n is in.
    seen: u8,
}

impl SchedReader {
    /// A reader for vCPU `vcpu` (an index in the caller's VM).
    pub const fn new(vcpu: u64) -> Self {
        Self { vcpu, figures: ZERO_FIGURES, vcpus: None, seen: 0 }
    }

    pub const fn vcpu(&self) -> u64 {
        self.vcpu
    }

    /// The call that reads `item` of this reader's vCPU.
    pub const fn request(&self, item: SchedItem) -> Request {
        Request::Sched { vcpu: self.vcpu, item }
    }

    /// Takes the results `x1..x3` of the call for `item`.
    pub fn accept(&mut self, item: SchedItem, regs: [u64; 3]) -> Result<(), SchedReplyError> {
        let f = &mut self.figures;
        match item {
            SchedItem::TIMES => [f.run_us, f.wait_us, f.switches] = regs,
            SchedItem::WAKEUPS => {
                let [wakeups, worst_us, vcpus] = regs;
                if vcpus <= self.vcpu {
                    return Err(SchedReplyError::VcpuCount { vcpu: self.vcpu, vcpus });
                }
                if let Some(before) = self.vcpus.filter(|&before| before != vcpus) {
                    return Err(SchedReplyError::CountChanged { before, now: vcpus });
                }
                (f.wakeups, f.worst_us, self.vcpus) = (wakeups, worst_us, Some(vcpus));
            }
            _ => {
                let buckets = item.buckets();
                let used = buckets.len();
                if regs.get(used..).unwrap_or_default().iter().any(|&r| r != 0) {
                    return Err(SchedReplyError::Reserved { item, regs });
                }
                for (slot, count) in f.latency.get_mut(buckets).unwrap_or_default().iter_mut().zip(regs) {
                    *slot = count;
                }
            }
        }
        self.seen |= 1u8.checked_shl(u32::from(item.0)).unwrap_or(0);
        Ok(())
    }

    /// The items not accepted yet.
    pub fn missing(&self) -> impl Iterator<Item = SchedItem> + '_ {
        SchedItem::ALL.into_iter().filter(|item| self.seen & 1u8.checked_shl(u32::from(item.0)).unwrap_or(0) == 0)
    }

    /// The number of vCPUs in the caller's VM, once item 1 is in.
    pub const fn vcpus(&self) -> Option<u64> {
        self.vcpus
    }

    /// The vCPU's figures, once every item is in.
    pub fn figures(&self) -> Option<Figures> {
        self.missing().next().is_none().then_some(self.figures)
    }
}

const ZERO_FIGURES: Figures =
    Figures { run_us: 0, wait_us: 0, switches: 0, wakeups: 0, latency: [0; BUCKETS], worst_us: 0 };

// --- buffer validation -------------------------------------------------

/// A validated range of guest IPA space, entirely inside guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRange {
    pub ipa: u64,
    pub len: u64,
}

/// The inclusive last address of `[base, base + size)`, or `None` for an
/// empty range or one that wraps past the top of the address space.
const fn last_of(base: u64, size: u64) -> Option<u64> {
    match size.checked_sub(1) {
        Some(extent) => base.checked_add(extent),
        None => None,
    }
}

/// Whether every byte of `[start, start + len)` lies in some region of
/// `regions` (`(base, size)` pairs). Regions may be adjacent, overlap or come
/// in any order; a buffer may span several. Empty and wrapping regions cover
/// nothing. An empty or wrapping range is not covered.
pub fn covers(regions: &[(u64, u64)], start: u64, len: u64) -> bool {
    let Some(last) = last_of(start, len) else {
        return false;
    };
    let mut cursor = start;
    // Each step moves `cursor` past the end of a region containing it, and
    // never uses a region twice (the region picked has the greatest end of
    // those containing the cursor), so `regions.len()` steps suffice.
    for _ in 0..regions.len() {
        let reach = regions
            .iter()
            .filter_map(|&(base, size)| {
                let end = last_of(base, size)?;
                (base <= cursor && cursor <= end).then_some(end)
            })
            .max();
        match reach {
            None => return false,
            Some(end) if end >= last => return true,
            // `end < last <= u64::MAX`, so this cannot overflow.
            Some(end) => cursor = end.saturating_add(1),
        }
    }
    false
}

/// Checks a buffer argument whose address is an IPA (the guest's MMU is off,
/// or the caller has translated it): `len` bytes at `addr`, at most
/// `max_len`, inside guest RAM `regions` (`(base, size)` pairs of IPA).
///
/// - `len == 0`: `Ok` with an empty range, and the address is not looked at
///   (like `write(fd, p, 0)`): an empty write is no mistake;
/// - `len > max_len`: [`HvError::TooLong`];
/// - `addr + len` wraps past the top of the address space, or any byte is
///   outside `regions`: [`HvError::BadAddress`].
pub fn validate_buffer(addr: u64, len: u64, max_len: u64, regions: &[(u64, u64)]) -> Result<GuestRange, HvError> {
    if len == 0 {
        return Ok(GuestRange { ipa: addr, len: 0 });
    }
    if len > max_len {
        return Err(HvError::TooLong);
    }
    if last_of(addr, len).is_none() || !covers(regions, addr, len) {
        return Err(HvError::BadAddress);
    }
    Ok(GuestRange { ipa: addr, len })
}

/// How the hypervisor turns a guest buffer address into an IPA, supplied by
/// the caller of [`buffer_chunks`]: the hypervisor implements it with
/// `AT S1E0R`/`AT S1E1R` (the caller's EL) and `PAR_EL1`; tests with a
/// table.
pub trait Translate {
    /// The IPA of the byte at guest address `addr`, as a read at the
    /// caller's EL would reach it, or the error to return
    /// ([`HvError::BadAddress`] for a translation or permission fault). The
    /// page offset must be preserved (all granules are multiples of
    /// [`GUEST_PAGE_SIZE`]).
    fn translate(&mut self, addr: u64) -> Result<u64, HvError>;
}

/// The translation of a guest running with its MMU off: address = IPA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity;

impl Translate for Identity {
    fn translate(&mut self, addr: u64) -> Result<u64, HvError> {
        Ok(addr)
    }
}

impl<T: Translate + ?Sized> Translate for &mut T {
    fn translate(&mut self, addr: u64) -> Result<u64, HvError> {
        (**self).translate(addr)
    }
}

/// The pieces of a guest buffer, each inside one guest page and translated
/// to a [`GuestRange`] in guest RAM; see [`buffer_chunks`].
#[derive(Debug)]
pub struct BufferChunks<'r, T> {
    /// Guest address of the next piece.
    next: u64,
    /// Bytes still to yield.
    remaining: u64,
    regions: &'r [(u64, u64)],
    translate: T,
}

/// Checks a buffer argument given as a guest virtual address and splits it
/// into per-page IPA ranges.
///
/// The length checks happen here, at once: `len > max_len` is
/// [`HvError::TooLong`], a range wrapping past the top of the address space
/// is [`HvError::BadAddress`], and `len == 0` gives no pieces. Each piece
/// is then translated and checked against guest RAM `regions` as the
/// iterator reaches it; the first error ends the iteration. Validate the
/// whole buffer (run the iterator to the end) before acting on any of it,
/// or act piece by piece where a partial result is acceptable.
pub fn buffer_chunks<T: Translate>(
    addr: u64,
    len: u64,
    max_len: u64,
    regions: &[(u64, u64)],
    translate: T,
) -> Result<BufferChunks<'_, T>, HvError> {
    if len > max_len {
        return Err(HvError::TooLong);
    }
    if len != 0 && last_of(addr, len).is_none() {
        return Err(HvError::BadAddress);
    }
    Ok(BufferChunks { next: addr, remaining: len, regions, translate })
}

impl<T: Translate> Iterator for BufferChunks<'_, T> {
    type Item = Result<GuestRange, HvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let offset = self.next & (GUEST_PAGE_SIZE - 1);
        // `offset < GUEST_PAGE_SIZE`, so this is at least 1.
        let to_page_end = GUEST_PAGE_SIZE.saturating_sub(offset);
        let len = to_page_end.min(self.remaining);
        let result = self.piece(len);
        if result.is_ok() {
            // `len <= remaining`, and `next + remaining` does not wrap
            // (checked in `buffer_chunks`).
            self.remaining = self.remaining.saturating_sub(len);
            self.next = self.next.wrapping_add(len);
        } else {
            self.remaining = 0;
        }
        Some(result)
    }
}

impl<T: Translate> BufferChunks<'_, T> {
    fn piece(&mut self, len: u64) -> Result<GuestRange, HvError> {
        let ipa = self.translate.translate(self.next)?;
        if (ipa ^ self.next) & (GUEST_PAGE_SIZE - 1) != 0 {
            // A translation that moves the page offset is broken; refuse
            // rather than read across an IPA page boundary.
            return Err(HvError::BadAddress);
        }
        if !covers(self.regions, ipa, len) {
            return Err(HvError::BadAddress);
        }
        Ok(GuestRange { ipa, len })
    }
}

/// Runs [`buffer_chunks`] to the end: `Ok` if every byte of the buffer is
/// readable by the caller and in guest RAM.
pub fn validate_translated<T: Translate>(
    addr: u64,
    len: u64,
    max_len: u64,
    regions: &[(u64, u64)],
    translate: T,
) -> Result<(), HvError> {
    buffer_chunks(addr, len, max_len, regions, translate)?.try_for_each(|piece| piece.map(drop))
}

// --- the guest's side of the conduit ----------------------------------

/// Makes `call` with `BRK #HV_BRK_IMM` from the current EL (EL1 or EL0 of a
/// guest) and returns the reply in `x0..x4` (`x4` is `SCAN`'s cursor; other
/// calls preserve it).
///
/// # Safety
///
/// The hypervisor reads and writes guest memory where the call's arguments
/// point (`CONSOLE_WRITE` reads its buffer, `SCAN` writes its buffer): such
/// pointers must be memory the caller owns, writable where the call writes.
/// Without this hypervisor underneath, the `BRK` is an ordinary breakpoint
/// exception taken at the caller's own EL, which the caller must be ready
/// for (a handler that steps over it leaves `x0..x3` as they were).
#[cfg(target_arch = "aarch64")]
pub unsafe fn brk(call: &Call) -> Reply {
    let [x0, x1, x2, x3, x4, x5, x6, x7] = call.regs();
    let reply: [u64; 5];
    // SAFETY: the ABI writes only x0..x4 and preserves x5..x30 and sp;
    // memory the call touches is the caller's per this function's contract.
    unsafe {
        let (r0, r1, r2, r3, r4);
        core::arch::asm!(
            "brk #{imm}",
            imm = const HV_BRK_IMM,
            inout("x0") x0 => r0,
            inout("x1") x1 => r1,
            inout("x2") x2 => r2,
            inout("x3") x3 => r3,
            inout("x4") x4 => r4,
            in("x5") x5,
            in("x6") x6,
            in("x7") x7,
            options(nostack),
        );
        reply = [r0, r1, r2, r3, r4];
    }
    Reply::from_regs_with_x4(&reply)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// QEMU virt's guest RAM as the hypervisor gives it today.
    const RAM: [(u64, u64); 1] = [(0x4020_0000, 0x3ec0_0000)];

    #[test]
    fn immediate_is_outside_known_brk_ranges() {
        let taken: [(u16, u16); 12] = [
            (0x000, 0x001),   // GDB/Go, llvm.trap/Xen BUG
            (0x002, 0x002),   // Xen fault-on-purpose
            (0x004, 0x008),   // Linux kprobes/uprobes/DTrace
            (0x100, 0x100),   // Linux FAULT_BRK_IMM
            (0x3e8, 0x3e8),   // GCC __builtin_trap
            (0x400, 0x7ff),   // Linux KGDB
            (0x800, 0x800),   // Linux BUG()/WARN()
            (0x900, 0x9ff),   // Linux tag-based KASAN
            (0x5500, 0x55ff), // Linux/clang UBSAN
            (0x8000, 0x83ff), // Linux KCFI
            (0xc470, 0xc473), // clang ptrauth traps
            (0xf000, 0xf0ff), // Windows
        ];
        for (lo, hi) in taken {
            assert!(!(lo..=hi).contains(&HV_BRK_IMM), "{lo:#x}..={hi:#x}");
        }
        assert_eq!(HV_BRK_IMM.to_be_bytes(), *b"HV");
    }

    #[test]
    fn hypercall_is_recognised_by_class_and_immediate() {
        assert!(is_hypercall(Esr(0xf200_4856)));
        assert!(is_hypercall(Esr::brk(HV_BRK_IMM)));
        assert!(!is_hypercall(Esr::brk(0x800)));
        assert!(!is_hypercall(Esr::brk(HV_BRK_IMM + 1)));
        // HVC/SMC/SVC with the same immediate are not the backdoor.
        assert!(!is_hypercall(Esr(0x5a00_4856)));
        assert!(!is_hypercall(Esr(0x5e00_4856)));
        assert!(!is_hypercall(Esr(0x5600_4856)));
    }

    #[test]
    fn version_packs_major_and_minor() {
        assert_eq!(ABI_VERSION, 0x1_0003);
        assert_eq!(ABI_VERSION >> 16, u64::from(ABI_VERSION_MAJOR));
        assert_eq!(ABI_VERSION & 0xffff, u64::from(ABI_VERSION_MINOR));
        assert_eq!(Reply::version(), Reply { x0: 0, x1: 0x1_0003, x2: 0, x3: 0, x4: None });
    }

    #[test]
    fn function_ids_round_trip_and_are_stable() {
        for (i, f) in Function::ALL.into_iter().enumerate() {
            assert_eq!(f.id(), i as u64);
            assert_eq!(Function::from_id(f.id()), Some(f));
        }
        assert_eq!(Function::from_id(5), Some(Function::Sched));
        assert_eq!(Function::from_id(6), Some(Function::Integrity));
        assert_eq!(Function::from_id(7), Some(Function::Trace));
        assert_eq!(Function::from_id(8), None);
        assert_eq!(Function::from_id(u64::MAX), None);
        // High bits count: no aliasing of ID 0.
        assert_eq!(Function::from_id(1 << 32), None);
        assert_eq!(Function::ConsoleWrite.to_string(), "CONSOLE_WRITE");
        assert_eq!(Function::Sched.to_string(), "SCHED");
    }

    #[test]
    fn error_codes_are_stable_negative_and_distinct() {
        let codes: Vec<i64> = HvError::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [-1, -2, -3, -4, -5, -6]);
        for e in HvError::ALL {
            assert!(e.code() < 0);
            assert_eq!(HvError::from_code(e.code()), Some(e));
            assert_eq!(e.status(), e.code() as u64);
        }
        assert_eq!(HvError::from_code(0), None);
        assert_eq!(HvError::from_code(-7), None);
        assert_eq!(HvError::from_code(i64::MIN), None);
        assert_eq!(HvError::BadAddress.status(), 0xffff_ffff_ffff_fffd);
        assert_eq!(HvError::TooLong.to_string(), "TOO_LONG (-4)");
    }

    #[test]
    fn el0_policy() {
        assert!(allowed_from_el0(Function::Version));
        assert!(allowed_from_el0(Function::Features));
        assert!(allowed_from_el0(Function::Info));
        assert!(allowed_from_el0(Function::ConsoleWrite));
        // SCAN is allowed from EL0 as a function; its TTBR1 range is not
        // (decode refuses that argument: see `scan_decodes_and_polices_its_range`).
        assert!(allowed_from_el0(Function::Scan));
        // SCHED reads the caller's own VM's figures only.
        assert!(allowed_from_el0(Function::Sched));
        for f in Function::ALL {
            let el1 = if f.is_implemented() { Ok(()) } else { Err(HvError::NotSupported) };
            assert_eq!(check_access(f, CallerEl::El1), el1);
            // EL0 is refused what it may not call before anything else.
            let el0 = if f.allowed_from_el0() { el1 } else { Err(HvError::PermissionDenied) };
            assert_eq!(check_access(f, CallerEl::El0), el0);
        }
    }

    #[test]
    fn integrity_operations_decode_and_set_exec_is_el1_only() {
        let call = |op: IntegrityOp| Request::Integrity(op).call();
        let set = IntegrityOp::SetExec { ipa: 0x4000_0000, pages: 3, exec: crate::mbec::Exec::UserOnly };
        for op in [IntegrityOp::Status, IntegrityOp::Lock, set] {
            assert_eq!(call(op).decode(CallerEl::El1), Ok(Request::Integrity(op)));
        }
        assert_eq!(call(IntegrityOp::Lock).decode(CallerEl::El0), Ok(Request::Integrity(IntegrityOp::Lock)));
        assert_eq!(call(set).decode(CallerEl::El0), Err(HvError::PermissionDenied));
        assert_eq!(call(set).args, [2, 0x4000_0000, 3, 2, 0, 0, 0]);
        // An unknown operation or execute class.
        let mut bad = call(IntegrityOp::Status);
        bad.args[0] = 3;
        assert_eq!(bad.decode(CallerEl::El1), Err(HvError::InvalidArgument));
        let mut bad = call(set);
        bad.args[3] = 4;
        assert_eq!(bad.decode(CallerEl::El1), Err(HvError::InvalidArgument));
        let status = IntegrityStatus { locked: true, xnx: false, tracing: true };
        assert_eq!(status.bits(), 0b101);
        assert_eq!(IntegrityStatus::from_bits(status.bits()), status);
    }

    #[test]
    fn a_trace_record_round_trips_through_the_registers() {
        let record = crate::s1trace::Record {
            table: 0x4123_4000,
            level: 3,
            index: 511,
            old: 0,
            new: 0x0060_0000_4000_0f43,
            first_va: 0xffff_8000_001f_f000,
            last_va: 0xffff_8000_001f_ffff,
        };
        let reply = Reply::trace(TraceReply(record));
        assert_eq!(reply.x1, 0x4123_4000 | (511 << 2) | 3);
        assert_eq!(reply.x4, Some(record.first_va));
        assert_eq!(TraceReply::from_regs([reply.x1, reply.x2, reply.x3, 0xffff_8000_001f_f000]).0, record);
        let level1 = crate::s1trace::Record { level: 1, index: 2, first_va: 2 << 30, last_va: (3 << 30) - 1, ..record };
        assert_eq!(TraceReply::from_regs(TraceReply(level1).regs()).0, level1);
        assert_eq!(
            Request::Trace { index: TRACE_COUNTS }.call().decode(CallerEl::El0),
            Ok(Request::Trace { index: u64::MAX })
        );
    }

    #[test]
    fn features_answers_for_the_caller() {
        assert_eq!(features(0, CallerEl::El1), Ok(()));
        assert_eq!(features(2, CallerEl::El0), Ok(()));
        assert_eq!(features(4, CallerEl::El1), Ok(()));
        assert_eq!(features(5, CallerEl::El1), Ok(()));
        assert_eq!(features(5, CallerEl::El0), Ok(()));
        assert_eq!(features(6, CallerEl::El0), Ok(()));
        assert_eq!(features(7, CallerEl::El0), Ok(()));
        assert_eq!(features(8, CallerEl::El1), Err(HvError::NotSupported));
        assert_eq!(features(99, CallerEl::El1), Err(HvError::NotSupported));
        assert_eq!(features(u64::MAX, CallerEl::El0), Err(HvError::NotSupported));
        assert_eq!(Reply::features(1, CallerEl::El0), Reply::ok(0, 0, 0));
        assert_eq!(Reply::features(8, CallerEl::El0), Reply::error(HvError::NotSupported));
    }

    fn frame(x: &[u64]) -> [u64; 31] {
        let mut regs = [0xdead_0000; 31];
        regs[..x.len()].copy_from_slice(x);
        regs
    }

    #[test]
    fn call_decodes_from_the_register_frame() {
        let regs = frame(&[2, 0x4040_0000, 12, 3, 4, 5, 6, 7, 8]);
        let call = Call::from_regs(&regs);
        assert_eq!(call.function, 2);
        assert_eq!(call.args, [0x4040_0000, 12, 3, 4, 5, 6, 7]);
        assert_eq!(call.regs(), [2, 0x4040_0000, 12, 3, 4, 5, 6, 7]);
        assert_eq!(call.decode(CallerEl::El1), Ok(Request::ConsoleWrite { addr: 0x4040_0000, len: 12 }));
        assert_eq!(Call::from_regs(&frame(&[1, 3])).decode(CallerEl::El0), Ok(Request::Features { function: 3 }));
        assert_eq!(Call::from_regs(&frame(&[0])).decode(CallerEl::El0), Ok(Request::Version));
        assert_eq!(Call::from_regs(&frame(&[3])).decode(CallerEl::El1), Ok(Request::Info));
    }

    #[test]
    fn scan_decodes_and_polices_its_range() {
        let ttbr0 = Call::from_regs(&frame(&[4, 0, 0x4000_0000, 16, 0]));
        let expected = Request::Scan { range: ScanRange::Ttbr0, buffer: 0x4000_0000, capacity: 16, cursor: 0 };
        assert_eq!(ttbr0.decode(CallerEl::El0), Ok(expected));
        assert_eq!(ttbr0.decode(CallerEl::El1), Ok(expected));
        // The frame helper fills unused registers with a pattern.
        assert_eq!(expected.call().function, ttbr0.function);
        assert_eq!(expected.call().args[..4], ttbr0.args[..4]);
        let ttbr1 = Call::from_regs(&frame(&[4, 1, 0x4000_0000, 16, 0xffff_0000_0040_0000]));
        assert_eq!(ttbr1.decode(CallerEl::El0), Err(HvError::PermissionDenied));
        assert_eq!(
            ttbr1.decode(CallerEl::El1),
            Ok(Request::Scan {
                range: ScanRange::Ttbr1,
                buffer: 0x4000_0000,
                capacity: 16,
                cursor: 0xffff_0000_0040_0000
            })
        );
        assert_eq!(HvError::from_code(-6), Some(HvError::BufferTooSmall));
        assert_eq!(HvError::BufferTooSmall.code(), -6);
    }

    #[test]
    fn scan_replies_carry_the_cursor_in_x4() {
        let scan = ScanReply { regions: 3, probes: 1024, holes: 1000, next: 0x7f00_0000_0000 };
        let reply = Reply::from_scan(Ok(scan));
        assert_eq!(reply, Reply { x0: 0, x1: 3, x2: 1024, x3: 1000, x4: Some(0x7f00_0000_0000) });
        assert_eq!(reply.scan(), Ok(scan));
        assert!(!scan.done());
        let mut regs = frame(&[4, 0, 0x4000_0000, 16, 0x1000]);
        reply.write_to(&mut regs);
        assert_eq!(regs[..6], [0, 3, 1024, 1000, 0x7f00_0000_0000, 0xdead_0000]);
        assert_eq!(Reply::from_regs_with_x4(&[0, 3, 1024, 1000, 0x7f00_0000_0000]), reply);
        // An error zeroes x1..x3 and leaves the caller's cursor in x4.
        let mut regs = frame(&[4, 0, 0x4000_0000, 16, 0x1000]);
        let error = Reply::from_scan(Err(HvError::InvalidArgument));
        error.write_to(&mut regs);
        assert_eq!(regs[..5], [HvError::InvalidArgument.status(), 0, 0, 0, 0x1000]);
        assert_eq!(error.scan(), Err(CallError::Hv(HvError::InvalidArgument)));
        // Other calls leave x4 alone.
        let mut regs = frame(&[0, 0, 0, 0, 0x1234]);
        Reply::version().write_to(&mut regs);
        assert_eq!(regs[4], 0x1234);
        // Without x4 (a 1.0 hypervisor preserved the caller's 0): done.
        let old = Reply::ok(2, 9, 4);
        assert_eq!(old.scan(), Ok(ScanReply { regions: 2, probes: 9, holes: 4, next: 0 }));
        assert!(old.scan().unwrap().done());
        assert_eq!(ScanReply::from_regs(scan.regs()), scan);
        const { assert!(SCAN_PROBE_BUDGET <= SCAN_CAPACITY_MAX) };
    }

    #[test]
    fn sched_decodes_from_el0_and_el1_and_bounds_its_item() {
        for caller in [CallerEl::El0, CallerEl::El1] {
            for item in 0..SCHED_ITEMS {
                let call = Call::from_regs(&frame(&[5, 1, item]));
                let expected = Request::Sched { vcpu: 1, item: SchedItem::from_raw(item).unwrap() };
                assert_eq!(call.decode(caller), Ok(expected));
                assert_eq!(expected.call().regs()[..3], [5, 1, item]);
            }
            // An item past the last, or one with high bits, is malformed.
            for item in [SCHED_ITEMS, 9, 0x100, 1 << 32, u64::MAX] {
                assert_eq!(Call::from_regs(&frame(&[5, 0, item])).decode(caller), Err(HvError::InvalidArgument));
            }
            // Any vCPU index decodes: EL2 checks it against the caller's VM.
            for vcpu in [0, 7, 1 << 32, u64::MAX] {
                let call = Call::from_regs(&frame(&[5, vcpu, 1]));
                assert_eq!(call.decode(caller), Ok(Request::Sched { vcpu, item: SchedItem::WAKEUPS }));
            }
            assert_eq!(features(Function::Sched.id(), caller), Ok(()));
        }
        // x3..x7 are not looked at.
        let noisy = Call { function: 5, args: [2, 3, u64::MAX, 4, 5, 6, 7] };
        let sched = Request::Sched { vcpu: 2, item: SchedItem::from_raw(3).unwrap() };
        assert_eq!(noisy.decode(CallerEl::El0), Ok(sched));
        assert_eq!(SchedItem::from_raw(SCHED_ITEMS), None);
        assert_eq!(SchedItem::ALL.map(SchedItem::raw), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(SchedItem::ALL[7].to_string(), "item 7");
    }

    /// Figures with a distinct value in every field.
    fn distinct_figures() -> Figures {
        Figures {
            run_us: 1_000_001,
            wait_us: 2_000_002,
            switches: 3003,
            wakeups: 4004,
            latency: core::array::from_fn(|i| 100 + i as u64),
            worst_us: u64::MAX - 5,
        }
    }

    #[test]
    fn sched_items_hold_the_documented_fields() {
        let f = distinct_figures();
        let items: Vec<[u64; 3]> = SchedItem::ALL.iter().map(|&item| sched_item(&f, 4, item)).collect();
        assert_eq!(
            items,
            [
                [1_000_001, 2_000_002, 3003],
                [4004, u64::MAX - 5, 4],
                [100, 101, 102],
                [103, 104, 105],
                [106, 107, 108],
                [109, 110, 111],
                [112, 113, 114],
                // Bucket 15, then nothing.
                [115, 0, 0],
            ]
        );
        for (n, item) in SchedItem::ALL.into_iter().enumerate() {
            let expected = match n {
                0 | 1 => 0..0,
                n => 3 * (n - 2)..(3 * (n - 2) + 3).min(BUCKETS),
            };
            assert_eq!(item.buckets(), expected);
        }
        // Every bucket is in exactly one item.
        let covered: Vec<usize> = SchedItem::ALL.iter().flat_map(|i| i.buckets()).collect();
        assert_eq!(covered, (0..BUCKETS).collect::<Vec<_>>());
        assert_eq!(Reply::from_result(Ok(items[1])).result(), Ok([4004, u64::MAX - 5, 4]));
    }

    #[test]
    fn sched_reader_round_trips_every_field() {
        let f = distinct_figures();
        let mut reversed = SchedItem::ALL;
        reversed.reverse();
        // In order, and in reverse: the order of the calls does not matter.
        for order in [SchedItem::ALL, reversed] {
            let mut reader = SchedReader::new(3);
            assert_eq!(reader.vcpu(), 3);
            assert_eq!(reader.missing().count(), SCHED_ITEMS as usize);
            for (n, item) in order.into_iter().enumerate() {
                assert_eq!(reader.figures(), None, "incomplete after {n} items");
                let request = reader.request(item);
                assert_eq!(request, Request::Sched { vcpu: 3, item });
                // Through the registers and back, as a call goes.
                let call = Call::from_regs(&frame(&request.call().regs()));
                let Ok(Request::Sched { vcpu, item: asked }) = call.decode(CallerEl::El0) else { panic!("{call:?}") };
                let mut regs = frame(&call.regs());
                Reply::from_result(Ok(sched_item(&f, 4, asked))).write_to(&mut regs);
                let reply = Reply::from_regs(&[regs[0], regs[1], regs[2], regs[3]]);
                assert_eq!(vcpu, 3);
                assert_eq!(reader.accept(asked, reply.result().unwrap()), Ok(()));
            }
            assert_eq!(reader.missing().next(), None);
            assert_eq!(reader.figures(), Some(f));
            assert_eq!(reader.vcpus(), Some(4));
        }
        // All zeros, and all ones where a register carries a field.
        for f in [Figures::default(), Figures { latency: [u64::MAX; BUCKETS], ..distinct_figures() }] {
            let mut reader = SchedReader::new(0);
            for item in SchedItem::ALL {
                reader.accept(item, sched_item(&f, 1, item)).unwrap();
            }
            assert_eq!(reader.figures(), Some(f));
            assert_eq!(reader.figures().unwrap().to_string(), f.to_string());
        }
    }

    #[test]
    fn sched_reader_refuses_replies_that_cannot_be_right() {
        let last = SchedItem::ALL[7];
        let mut reader = SchedReader::new(1);
        for regs in [[9, 1, 0], [9, 0, 1], [0, u64::MAX, u64::MAX]] {
            assert_eq!(reader.accept(last, regs), Err(SchedReplyError::Reserved { item: last, regs }));
        }
        assert_eq!(reader.accept(last, [9, 0, 0]), Ok(()));
        // vCPU 1 of a VM of one vCPU, or of none.
        assert_eq!(reader.accept(SchedItem::WAKEUPS, [5, 6, 1]), Err(SchedReplyError::VcpuCount { vcpu: 1, vcpus: 1 }));
        assert_eq!(reader.accept(SchedItem::WAKEUPS, [5, 6, 0]), Err(SchedReplyError::VcpuCount { vcpu: 1, vcpus: 0 }));
        assert_eq!(reader.vcpus(), None);
        assert_eq!(reader.accept(SchedItem::WAKEUPS, [5, 6, 2]), Ok(()));
        assert_eq!(
            reader.accept(SchedItem::WAKEUPS, [5, 6, 3]),
            Err(SchedReplyError::CountChanged { before: 2, now: 3 })
        );
        assert_eq!(reader.vcpus(), Some(2));
        let missing: Vec<u64> = reader.missing().map(SchedItem::raw).collect();
        assert_eq!(missing, [0, 2, 3, 4, 5, 6]);
        assert_eq!(
            SchedReplyError::VcpuCount { vcpu: 1, vcpus: 1 }.to_string(),
            "vCPU 1 answered, but its VM has 1 vCPUs"
        );
        assert_eq!(
            SchedReplyError::Reserved { item: last, regs: [9, 0, 1] }.to_string(),
            "item 7 is x1..x3 = 0x9, 0x0, 0x1: a register past the last bucket is not 0"
        );
    }

    #[test]
    fn call_decode_errors() {
        let unknown = Call::from_regs(&frame(&[0x8600_0001]));
        assert_eq!(unknown.decode(CallerEl::El1), Err(HvError::NotSupported));
        let scan = Call::from_regs(&frame(&[4, 2, 0x1000, 8]));
        assert_eq!(scan.decode(CallerEl::El1), Err(HvError::InvalidArgument));
        assert_eq!(scan.decode(CallerEl::El0), Err(HvError::InvalidArgument));
        let top = Call::from_regs(&frame(&[u64::MAX]));
        assert_eq!(top.decode(CallerEl::El0), Err(HvError::NotSupported));
    }

    #[test]
    fn requests_encode_to_the_calls_they_decode_from() {
        let requests = [
            Request::Version,
            Request::Features { function: 2 },
            Request::ConsoleWrite { addr: 0x4100_0000, len: 5 },
            Request::Info,
            Request::Scan { range: ScanRange::Ttbr1, buffer: 0x4100_0000, capacity: 7, cursor: 0xffff_8000_0000_0000 },
            Request::Sched { vcpu: 0, item: SchedItem::TIMES },
            Request::Sched { vcpu: u64::MAX, item: SchedItem::ALL[7] },
        ];
        for r in requests {
            let call = r.call();
            assert_eq!(call.function, r.function().id());
            assert_eq!(call.decode(CallerEl::El1), Ok(r));
            let mut regs = [0; 31];
            regs[..8].copy_from_slice(&call.regs());
            assert_eq!(Call::from_regs(&regs), call);
        }
    }

    #[test]
    fn reply_writes_x0_to_x3_only() {
        let mut regs = frame(&[9, 9, 9, 9, 9]);
        Reply::ok(1, 2, 3).write_to(&mut regs);
        assert_eq!(regs[..5], [0, 1, 2, 3, 9]);
        assert_eq!(regs[30], 0xdead_0000);
        Reply::error(HvError::PermissionDenied).write_to(&mut regs);
        assert_eq!(regs[..5], [(-5i64) as u64, 0, 0, 0, 9]);
        assert_eq!(Reply::from_result(Err(HvError::BadAddress)), Reply::error(HvError::BadAddress));
        assert_eq!(Reply::from_result(Ok([4, 5, 6])), Reply::ok(4, 5, 6));
    }

    #[test]
    fn reply_decodes_on_the_guest_side() {
        assert_eq!(Reply::from_regs(&[0, 7, 8, 9]).result(), Ok([7, 8, 9]));
        assert_eq!(Reply::from_regs(&[(-3i64) as u64, 0, 0, 0]).result(), Err(CallError::Hv(HvError::BadAddress)));
        assert_eq!(Reply::from_regs(&[5, 0, 0, 0]).result(), Err(CallError::UnknownStatus(5)));
        assert_eq!(
            Reply::from_regs(&[(-99i64) as u64, 0, 0, 0]).result(),
            Err(CallError::UnknownStatus((-99i64) as u64))
        );
        for e in HvError::ALL {
            assert_eq!(Reply::error(e).result(), Err(CallError::Hv(e)));
        }
        assert_eq!(CallError::Hv(HvError::NotSupported).to_string(), "hypercall failed: NOT_SUPPORTED (-1)");
    }

    #[test]
    fn info_layout() {
        let info = Info { mode: HvMode::Vhe, el2_va_bits: 48, el0_va_bits: 39, cpus: 4 };
        assert_eq!(info.encode(), [2, 48 | (39 << 8), 4]);
        assert_eq!(info.reply(), Reply::ok(2, 0x2730, 4));
        assert_eq!(Info::decode(info.encode()), Some(info));
        let off = Info { mode: HvMode::NvheMmuOff, el2_va_bits: 0, el0_va_bits: 0, cpus: 16 };
        assert_eq!(off.encode(), [0, 0, 16]);
        assert_eq!(Info::decode(off.encode()), Some(off));
        assert_eq!(Info::decode([3, 0, 1]), None);
        assert_eq!(Info::decode([1, 1 << 16, 1]), None);
        assert_eq!(Info::decode([1, 0, 1 << 32]), None);
        assert_eq!(HvMode::NvheMmuOff.to_string(), "nvhe with MMU off");
    }

    // --- validate_buffer ----------------------------------------------

    #[test]
    fn buffer_inside_ram_is_accepted() {
        assert_eq!(
            validate_buffer(0x4040_0000, 12, CONSOLE_WRITE_MAX, &RAM),
            Ok(GuestRange { ipa: 0x4040_0000, len: 12 })
        );
        // First and last byte of RAM.
        assert!(validate_buffer(0x4020_0000, 1, 16, &RAM).is_ok());
        assert!(validate_buffer(0x7edf_ffff, 1, 16, &RAM).is_ok());
        // Exactly filling the tail of RAM.
        assert!(validate_buffer(0x7edf_fff0, 16, 16, &RAM).is_ok());
        // Exactly at the limit.
        assert!(validate_buffer(0x4040_0000, CONSOLE_WRITE_MAX, CONSOLE_WRITE_MAX, &RAM).is_ok());
    }

    #[test]
    fn buffer_outside_or_crossing_out_of_ram_is_bad_address() {
        let bad = Err(HvError::BadAddress);
        assert_eq!(validate_buffer(0, 1, 16, &RAM), bad);
        assert_eq!(validate_buffer(0x0900_0000, 4, 16, &RAM), bad); // the UART
        assert_eq!(validate_buffer(0x4000_0000, 4, 16, &RAM), bad); // below RAM
        assert_eq!(validate_buffer(0x401f_fffe, 4, 16, &RAM), bad); // starts below
        assert_eq!(validate_buffer(0x7edf_fffe, 4, 16, &RAM), bad); // runs off the end
        assert_eq!(validate_buffer(0x7ee0_0000, 1, 16, &RAM), bad); // one past the end
        assert_eq!(validate_buffer(0x4040_0000, 4, 16, &[]), bad); // no RAM at all
    }

    #[test]
    fn buffer_length_limits() {
        assert_eq!(validate_buffer(0x4040_0000, CONSOLE_WRITE_MAX + 1, CONSOLE_WRITE_MAX, &RAM), Err(HvError::TooLong));
        assert_eq!(validate_buffer(0x4040_0000, u64::MAX, CONSOLE_WRITE_MAX, &RAM), Err(HvError::TooLong));
        // Zero length: accepted without looking at the address.
        assert_eq!(validate_buffer(u64::MAX, 0, CONSOLE_WRITE_MAX, &RAM), Ok(GuestRange { ipa: u64::MAX, len: 0 }));
        assert_eq!(validate_buffer(0, 0, 0, &[]), Ok(GuestRange { ipa: 0, len: 0 }));
        // max_len 0 refuses every non-empty buffer.
        assert_eq!(validate_buffer(0x4040_0000, 1, 0, &RAM), Err(HvError::TooLong));
    }

    #[test]
    fn buffer_wraparound_is_bad_address() {
        let everything = [(0, u64::MAX)]; // [0, 2^64 - 1)
        let bad = Err(HvError::BadAddress);
        assert_eq!(validate_buffer(u64::MAX, 2, u64::MAX, &everything), bad);
        assert_eq!(validate_buffer(u64::MAX - 3, 8, u64::MAX, &everything), bad);
        assert_eq!(validate_buffer(1, u64::MAX, u64::MAX, &everything), bad);
        assert_eq!(validate_buffer(u64::MAX, u64::MAX, u64::MAX, &everything), bad);
        // The top byte is outside [0, 2^64 - 1).
        assert_eq!(validate_buffer(u64::MAX, 1, 16, &everything), bad);
        // A region that ends exactly at 2^64 covers the top byte.
        let top = [(u64::MAX - 0xfff, 0x1000)];
        assert!(validate_buffer(u64::MAX, 1, 16, &top).is_ok());
        assert!(validate_buffer(u64::MAX - 0xfff, 0x1000, 0x1000, &top).is_ok());
        assert_eq!(validate_buffer(u64::MAX - 0xfff, 0x1001, 0x2000, &top), bad);
        // The largest buffer there is: all but the top byte.
        assert!(validate_buffer(0, u64::MAX, u64::MAX, &everything).is_ok());
    }

    #[test]
    fn malformed_regions_cover_nothing() {
        let bad = Err(HvError::BadAddress);
        // Empty region.
        assert_eq!(validate_buffer(0x1000, 1, 16, &[(0x1000, 0)]), bad);
        // Wrapping region (base + size > 2^64).
        assert_eq!(validate_buffer(u64::MAX, 1, 16, &[(u64::MAX - 1, 4)]), bad);
        assert_eq!(validate_buffer(0, 1, 16, &[(u64::MAX - 1, 4)]), bad);
        // ... and does not hide a good one.
        assert!(validate_buffer(0x1000, 1, 16, &[(u64::MAX, 2), (0x1000, 1)]).is_ok());
    }

    #[test]
    fn adjacent_and_overlapping_regions() {
        let adjacent = [(0x1000, 0x1000), (0x2000, 0x1000)];
        assert!(validate_buffer(0x1ff0, 0x20, 0x1000, &adjacent).is_ok());
        assert!(validate_buffer(0x1000, 0x2000, 0x2000, &adjacent).is_ok());
        assert_eq!(validate_buffer(0x1000, 0x2001, 0x3000, &adjacent), Err(HvError::BadAddress));
        // Out of order.
        let reversed = [(0x2000, 0x1000), (0x1000, 0x1000)];
        assert!(validate_buffer(0x1000, 0x2000, 0x2000, &reversed).is_ok());
        // A gap of one byte.
        let gap = [(0x1000, 0xfff), (0x2000, 0x1000)];
        assert_eq!(validate_buffer(0x1ff0, 0x20, 0x1000, &gap), Err(HvError::BadAddress));
        assert!(validate_buffer(0x1ff0, 0xf, 0x1000, &gap).is_ok());
        // Overlapping, nested, duplicated.
        let overlapping = [(0x1000, 0x800), (0x1400, 0x1000), (0x1100, 0x10), (0x1000, 0x800)];
        assert!(validate_buffer(0x1000, 0x1400, 0x2000, &overlapping).is_ok());
        assert_eq!(validate_buffer(0x1000, 0x1401, 0x2000, &overlapping), Err(HvError::BadAddress));
        // A chain of many regions.
        let chain: Vec<(u64, u64)> = (0..64).map(|i| (0x10_0000 + i * 0x100, 0x100)).collect();
        assert!(validate_buffer(0x10_0000, 64 * 0x100, u64::MAX, &chain).is_ok());
        assert!(covers(&chain, 0x10_0080, 0x3f00));
        assert!(!covers(&chain, 0x10_0080, 64 * 0x100));
        assert!(!covers(&chain, 0x10_0000, 0));
    }

    // --- translated buffers ---------------------------------------------

    /// A guest stage 1 as a list of (VA page, IPA page) mappings.
    struct Pages(Vec<(u64, u64)>);

    impl Translate for Pages {
        fn translate(&mut self, va: u64) -> Result<u64, HvError> {
            let page = va & !(GUEST_PAGE_SIZE - 1);
            self.0
                .iter()
                .find(|&&(v, _)| v == page)
                .map(|&(_, ipa)| ipa | (va & (GUEST_PAGE_SIZE - 1)))
                .ok_or(HvError::BadAddress)
        }
    }

    fn collect<T: Translate>(addr: u64, len: u64, t: T) -> Result<Vec<Result<GuestRange, HvError>>, HvError> {
        Ok(buffer_chunks(addr, len, 0x10_0000, &RAM, t)?.collect())
    }

    #[test]
    fn identity_chunks_split_at_pages() {
        let pieces = collect(0x4040_0ff0, 0x1020, Identity).unwrap();
        assert_eq!(
            pieces,
            [
                Ok(GuestRange { ipa: 0x4040_0ff0, len: 0x10 }),
                Ok(GuestRange { ipa: 0x4040_1000, len: 0x1000 }),
                Ok(GuestRange { ipa: 0x4040_2000, len: 0x10 }),
            ]
        );
        assert_eq!(collect(0x4040_0000, 0, Identity).unwrap(), []);
        assert_eq!(validate_translated(0x4040_0000, 12, 16, &RAM, Identity), Ok(()));
    }

    #[test]
    fn scattered_pages_translate_piece_by_piece() {
        // VA 0xffff_0000_0000_1000.. maps to two non-adjacent RAM pages.
        let mut stage1 = Pages(std::vec![(0xffff_0000_0000_1000, 0x4100_5000), (0xffff_0000_0000_2000, 0x4100_3000),]);
        let pieces = collect(0xffff_0000_0000_1ffe, 4, &mut stage1).unwrap();
        assert_eq!(pieces, [Ok(GuestRange { ipa: 0x4100_5ffe, len: 2 }), Ok(GuestRange { ipa: 0x4100_3000, len: 2 }),]);
        // Running into an unmapped page stops at the first error.
        let pieces = collect(0xffff_0000_0000_2ffe, 0x10, &mut stage1).unwrap();
        assert_eq!(pieces, [Ok(GuestRange { ipa: 0x4100_3ffe, len: 2 }), Err(HvError::BadAddress)]);
        assert_eq!(
            validate_translated(0xffff_0000_0000_2ffe, 0x10, 0x100, &RAM, &mut stage1),
            Err(HvError::BadAddress)
        );
    }

    #[test]
    fn translated_outside_ram_is_bad_address() {
        // A mapping the guest made to its UART: not RAM, not printable.
        let mut stage1 = Pages(std::vec![(0x1000, 0x0900_0000)]);
        assert_eq!(validate_translated(0x1000, 4, 16, &RAM, &mut stage1), Err(HvError::BadAddress));
    }

    #[test]
    fn broken_translation_that_moves_the_offset_is_refused() {
        struct Shift;
        impl Translate for Shift {
            fn translate(&mut self, va: u64) -> Result<u64, HvError> {
                Ok(va + 1)
            }
        }
        assert_eq!(validate_translated(0x4040_0000, 4, 16, &RAM, Shift), Err(HvError::BadAddress));
    }

    #[test]
    fn translation_errors_pass_through() {
        struct Denied;
        impl Translate for Denied {
            fn translate(&mut self, _: u64) -> Result<u64, HvError> {
                Err(HvError::PermissionDenied)
            }
        }
        assert_eq!(validate_translated(0x4040_0000, 4, 16, &RAM, Denied), Err(HvError::PermissionDenied));
        // Length checks come first and need no translation.
        assert_eq!(validate_translated(0, 17, 16, &RAM, Denied), Err(HvError::TooLong));
        assert_eq!(validate_translated(0, 0, 16, &RAM, Denied), Ok(()));
    }

    #[test]
    fn translated_wraparound_is_bad_address() {
        assert_eq!(buffer_chunks(u64::MAX - 1, 4, 16, &RAM, Identity).map(|_| ()), Err(HvError::BadAddress));
        assert_eq!(buffer_chunks(0, u64::MAX, u64::MAX, &RAM, Identity).map(|_| ()), Ok(()));
        // The last page of the address space: one piece, then done.
        let everything = [(0, u64::MAX)];
        let pieces: Vec<_> = buffer_chunks(u64::MAX - 0xf, 0xf, 16, &everything, Identity).unwrap().collect();
        assert_eq!(pieces, [Ok(GuestRange { ipa: u64::MAX - 0xf, len: 0xf })]);
    }
}
