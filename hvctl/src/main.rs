//! `hvctl`: a Linux arm64 command that calls the hypervisor's backdoor
//! (`platform::hypercall`) with `BRK #HV_BRK_IMM` from EL0, the way any
//! unprivileged process of a guest can. It is built static for
//! `aarch64-unknown-linux-musl` and ships in the test initramfs.
//!
//! The hypervisor applies its EL0 policy to these calls: `INFO`,
//! `CONSOLE_WRITE` and a `SCAN` of the caller's own (`TTBR0`) range are
//! allowed; buffers are translated with EL0's permissions, so hvctl can
//! only show or print what it could read itself. A `SCAN` call scans one
//! bounded piece of the range; `hvctl scan` calls again from the cursor
//! each call returns until the range is done, and joins the pieces.
//! `SCHED` (ABI 1.2) reads the scheduler figures of this VM's vCPUs, one
//! item per call; `hvctl sched` checks with `FEATURES` that the
//! hypervisor has it, reads every item of every vCPU, and prints one line
//! per vCPU.
//!
//! `hvctl portal` does not use the backdoor: it finds the portal functions
//! (PCI) in sysfs and uses their registers, shared memory and interrupt
//! (`hvctl::device`, with the pure half in `hvctl::portal`).
//!
//! `hvctl vm` does not use it either: in a manager VM, it finds the VM
//! control function (PCI) in sysfs and lists, stops, restarts or starts the
//! VMs through its registers (`hvctl::device`, with the pure half in `hvctl::vm`).
//!
//! Exit status: 0 done, 1 the hypervisor refused or failed the call, 2
//! usage error or no hypervisor underneath; `hvctl portal` has its own
//! (`hvctl::portal::EXIT_*`: 2 refused, 3 peer down, 4 timeout), and so
//! has `hvctl vm` (`hvctl::vm::EXIT_*`: 3 wrong state, 4 the manager
//! itself, 5 permission denied, 6 no such VM, 7 failed).

use hvctl::{Command, SchedLine, SchedSummary, Touched, UsageError, MAPS_PREFIX, REGION_PREFIX, USAGE};
use platform::gvascan::{self, ENTRY_SIZE};
use platform::hypercall::{
    CallError, Function, HvError, Info, IntegrityOp, IntegrityStatus, Request, ScanRange, ScanReply, SchedItem,
    SchedReader, TraceReply, ABI_VERSION_MAJOR, SCAN_CAPACITY_MAX, TRACE_CLEAR, TRACE_COUNTS,
};
use std::process::ExitCode;

/// Entries one `SCAN` call may write: the hypervisor's own bound per call.
const SCAN_CAPACITY: usize = SCAN_CAPACITY_MAX as usize;

fn main() -> ExitCode {
    let command = match Command::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(error) => return usage_error(&error),
    };
    match command {
        Command::Portal(command) => return ExitCode::from(portal::run(&command)),
        Command::Vm(action) => return ExitCode::from(vm::run(&action)),
        _ => {}
    }
    conduit::install_trap_guard();
    let result = match command {
        Command::Info => info(),
        Command::Scan { with_maps, layout } => match layout.map(layout::build).transpose() {
            Ok(built) => {
                if let (Some(pages), Some(layout)) = (built, layout) {
                    println!("hvctl: built layout {layout:?}: {pages} pages touched");
                }
                // A layout's thousands of regions are summed up, not listed.
                scan(with_maps, built.is_none())
            }
            Err(e) => Err(e),
        },
        Command::Console { text } => console(&text),
        Command::Sched => sched(),
        Command::Integrity { lock } => integrity(lock),
        Command::Trace { clear } => trace(clear),
        // Handled above: they have exit statuses of their own.
        Command::Portal(_) | Command::Vm(_) => Ok(()),
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hvctl: {message}");
            ExitCode::from(1)
        }
    }
}

/// `hvctl integrity status|lock`.
fn integrity(lock: bool) -> Result<(), String> {
    if lock {
        let [pages, ..] = call(Request::Integrity(IntegrityOp::Lock))?;
        println!("hvctl: integrity locked: {pages} pages of kernel code");
    }
    let [bits, pages, refusals] = call(Request::Integrity(IntegrityOp::Status))?;
    let status = IntegrityStatus::from_bits(bits);
    println!(
        "hvctl: integrity {}, {}, tracing {}, {pages} locked pages, {refusals} refused",
        if status.locked { "locked" } else { "not locked" },
        if status.xnx { "FEAT_XNX" } else { "emulated execute control" },
        if status.tracing { "on" } else { "off" },
    );
    Ok(())
}

/// `hvctl trace [--clear]`.
fn trace(clear: bool) -> Result<(), String> {
    let [kept, dropped, capacity] = call(Request::Trace { index: TRACE_COUNTS })?;
    for index in 0..kept {
        // SAFETY: TRACE carries no pointers.
        let reply = unsafe { conduit::brk(&Request::Trace { index }.call()) };
        let [x1, x2, x3] = reply.result().map_err(|e| describe(Function::Trace, e))?;
        let x4 = reply.x4.ok_or("TRACE: no record in x4")?;
        println!("{}", hvctl::TraceLine(TraceReply::from_regs([x1, x2, x3, x4]).0));
    }
    println!("hvctl: trace: {kept} records, {dropped} dropped, capacity {capacity}");
    if clear {
        call(Request::Trace { index: TRACE_CLEAR })?;
    }
    Ok(())
}

fn usage_error(error: &UsageError) -> ExitCode {
    eprintln!("hvctl: {error}\n{USAGE}");
    ExitCode::from(2)
}

/// Makes a call that passes no pointers.
fn call(request: Request) -> Result<[u64; 3], String> {
    // SAFETY: VERSION, FEATURES, INFO, SCHED, INTEGRITY and TRACE carry no
    // pointers.
    let reply = unsafe { conduit::brk(&request.call()) };
    reply.result().map_err(|e| describe(request.function(), e))
}

fn describe(function: Function, error: CallError) -> String {
    format!("{}: {error}", function.name())
}

fn info() -> Result<(), String> {
    let [version, ..] = call(Request::Version)?;
    let major = version >> 16;
    if major != u64::from(ABI_VERSION_MAJOR) {
        return Err(format!("hypervisor ABI {major}.{}, hvctl speaks {ABI_VERSION_MAJOR}.x", version & 0xffff));
    }
    let info = Info::decode(call(Request::Info)?).ok_or("INFO: malformed reply")?;
    println!(
        "hvctl: hypervisor ABI {major}.{}, mode {}, {} CPUs, EL2 VA {} bits, EL0 service VA {} bits",
        version & 0xffff,
        info.mode,
        info.cpus,
        info.el2_va_bits,
        info.el0_va_bits
    );
    Ok(())
}

/// The scheduler figures of every vCPU of this VM: all of them are read
/// before anything is printed, so that a failure prints no partial table.
fn sched() -> Result<(), String> {
    // FEATURES first: a hypervisor of ABI 1.1 or older has no SCHED.
    let features = Request::Features { function: Function::Sched.id() };
    // SAFETY: FEATURES carries no pointers.
    match unsafe { conduit::brk(&features.call()) }.result() {
        Ok(_) => {}
        Err(CallError::Hv(HvError::NotSupported)) => {
            let version = call(Request::Version)
                .map(|[v, ..]| format!(" (it speaks ABI {}.{})", v >> 16, v & 0xffff))
                .unwrap_or_default();
            return Err(format!("the hypervisor does not implement SCHED{version}; it needs ABI 1.2 or later"));
        }
        Err(e) => return Err(format!("FEATURES says SCHED is not available to this process: {e}")),
    }
    let mut lines: Vec<SchedLine> = Vec::new();
    // vCPU 0 tells how many there are (item 1, x3).
    let mut vcpus = 1;
    while (lines.len() as u64) < vcpus {
        let mut reader = SchedReader::new(lines.len() as u64);
        for item in SchedItem::ALL {
            let regs = call(reader.request(item)).map_err(|e| format!("vCPU {}, {item}: {e}", reader.vcpu()))?;
            reader.accept(item, regs).map_err(|e| format!("SCHED: {e}"))?;
        }
        let count = reader.vcpus().ok_or("SCHED: no vCPU count")?;
        if !lines.is_empty() && count != vcpus {
            return Err(format!("SCHED: the VM's vCPU count changed from {vcpus} to {count}"));
        }
        vcpus = count;
        let figures = reader.figures().ok_or("SCHED: an item is missing")?;
        lines.push(SchedLine { vcpu: reader.vcpu(), figures });
    }
    for line in &lines {
        println!("{line}");
    }
    let figures: Vec<_> = lines.iter().map(|l| l.figures).collect();
    println!("{}", SchedSummary::new(&figures));
    Ok(())
}

fn console(text: &str) -> Result<(), String> {
    let request = Request::ConsoleWrite { addr: text.as_ptr() as u64, len: text.len() as u64 };
    // SAFETY: the hypervisor reads `text`, which lives until the call returns.
    let reply = unsafe { conduit::brk(&request.call()) };
    let [written, ..] = reply.result().map_err(|e| describe(Function::ConsoleWrite, e))?;
    if written != text.len() as u64 {
        return Err(format!("CONSOLE_WRITE: {written} of {} bytes written", text.len()));
    }
    Ok(())
}

fn scan(with_maps: bool, list_regions: bool) -> Result<(), String> {
    // Pages to look for in the scan: this function's text, a stack slot
    // and a heap byte, each written or executed so that the kernel has
    // really mapped it (it maps on first touch).
    let stack_byte = std::hint::black_box(0x5au8);
    let heap_byte = std::hint::black_box(Box::new(0xa5u8));
    let touched = Touched {
        text: scan as fn(bool, bool) -> Result<(), String> as usize as u64,
        stack: &stack_byte as *const u8 as u64,
        heap: &*heap_byte as *const u8 as u64,
    };
    // The hypervisor translates the buffer with EL0 write permission, so
    // every page must be present and writable now: fill it (a fresh
    // allocation may still be the kernel's shared zero page).
    let mut buffer = vec![[0xffu8; ENTRY_SIZE]; SCAN_CAPACITY];
    std::hint::black_box(&mut buffer);
    // One call per piece, from the cursor the previous one returned, until
    // the range is done; a region cut at a piece's end is joined with its
    // continuation, so `regions` is what one unbounded scan reports.
    let mut regions: Vec<gvascan::Region> = Vec::new();
    let mut total = ScanReply::default();
    let mut cursor = gvascan::CURSOR_START;
    loop {
        let request = Request::Scan {
            range: ScanRange::Ttbr0,
            buffer: buffer.as_mut_ptr() as u64,
            capacity: SCAN_CAPACITY as u64,
            cursor,
        };
        // SAFETY: the hypervisor writes at most `capacity` entries into
        // `buffer`, which is that large and lives until after the call.
        let reply = unsafe { conduit::brk(&request.call()) };
        let piece = reply.scan().map_err(|e| describe(Function::Scan, e))?;
        let entries =
            buffer.get(..piece.regions as usize).ok_or("SCAN: reply counts more regions than the buffer holds")?;
        for entry in entries {
            let region = gvascan::decode(entry).ok_or("SCAN: the hypervisor wrote a malformed entry")?;
            if regions.last().is_some_and(|last| region.va_start <= last.va_last) {
                return Err("SCAN: a piece reported a region out of order".into());
            }
            if !regions.last_mut().is_some_and(|last| last.join(&region)) {
                regions.push(region);
            }
        }
        total.probes = total.probes.saturating_add(piece.probes);
        total.holes = total.holes.saturating_add(piece.holes);
        if piece.done() {
            break;
        }
        if piece.next <= cursor {
            return Err(format!("SCAN: cursor {:#x} does not move past {cursor:#x}", piece.next));
        }
        cursor = piece.next;
    }
    let (written, probes, holes) = (regions.len(), total.probes, total.holes);

    // Read after the scan: every mapping the scan saw still exists (nothing
    // is unmapped in between), so the maps are a fair reference.
    let maps_text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let maps = hvctl::parse_maps(&maps_text);
    println!("hvctl: scan of this process (TTBR0 range): {written} regions, {probes} probes, {holes} holes");
    for region in regions.iter().filter(|_| list_regions) {
        let name =
            hvctl::containing(&maps, region.va_start, region.va_last).map_or("(spans several mappings)", |entry| {
                match entry.name.as_str() {
                    "" => "(anonymous)",
                    name => name,
                }
            });
        println!("{REGION_PREFIX}{region}  {name}");
    }
    if with_maps {
        println!("{touched}");
        for line in maps_text.lines() {
            println!("{MAPS_PREFIX}{line}");
        }
    }
    drop(heap_byte);
    Ok(())
}

/// `hvctl portal`: the portal functions' registers, shared memory and
/// interrupt.
mod portal {
    use hvctl::portal::{PortalCommand, EXIT_ERROR};

    /// Runs `command`; returns the exit status.
    #[cfg(target_os = "linux")]
    pub fn run(command: &PortalCommand) -> u8 {
        match linux::run(command) {
            Ok(status) => status,
            Err(error) => {
                eprintln!("hvctl: portal: {error}");
                EXIT_ERROR
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn run(_command: &PortalCommand) -> u8 {
        eprintln!("hvctl: portal: portals are PCI functions of a Linux guest");
        EXIT_ERROR
    }

    #[cfg(target_os = "linux")]
    mod linux {
        use hvctl::device::{Bar, Regs, Uio};
        use hvctl::portal::{
            self, check_bounds, discover, format_got, read_line, select, send_exit_status, Action, Data, Polling,
            PortalCommand, PortalDevice, PortalError, EXIT_OK, EXIT_TIMEOUT, NO_PORTAL, SYSFS_PCI_DEVICES,
        };
        use std::io::{Read, Write};
        use std::path::Path;
        use std::time::Duration;

        pub fn run(command: &PortalCommand) -> Result<u8, PortalError> {
            let portals = discover(Path::new(SYSFS_PCI_DEVICES))?;
            if command.action == Action::List {
                return list(&portals);
            }
            let (_, device) = select(&portals, command.portal.as_ref())?;
            match &command.action {
                Action::List => list(&portals),
                Action::Send { op, arg } => {
                    let regs = Regs::map(&device.path, platform::portal::REGS_SIZE)?;
                    let outcome = portal::send(&regs, *op, *arg)?;
                    println!("{outcome}");
                    Ok(send_exit_status(outcome))
                }
                Action::Wait { op, timeout_ms, poll } => wait(device, *op, Duration::from_millis(*timeout_ms), *poll),
                Action::Read { offset, len } => {
                    let range = check_bounds(*offset, *len, device.memory)?;
                    let memory = Bar::map(&device.path.join("resource2"), device.memory)?;
                    let mut buffer = vec![0; range.len()];
                    memory.read_bytes(range.start, &mut buffer);
                    let mut out = std::io::stdout().lock();
                    out.write_all(&buffer)
                        .and_then(|()| out.flush())
                        .map_err(|error| PortalError::Device { what: "write to standard output".into(), error })?;
                    Ok(EXIT_OK)
                }
                Action::Write { offset, data } => {
                    let bytes = match data {
                        Data::Text(text) => text.as_bytes().to_vec(),
                        Data::Stdin => {
                            let mut bytes = Vec::new();
                            std::io::stdin()
                                .lock()
                                .read_to_end(&mut bytes)
                                .map_err(|error| PortalError::Device { what: "read standard input".into(), error })?;
                            bytes
                        }
                    };
                    let range = check_bounds(*offset, bytes.len() as u64, device.memory)?;
                    let memory = Bar::map(&device.path.join("resource2"), device.memory)?;
                    memory.write_bytes(range.start, &bytes);
                    Ok(EXIT_OK)
                }
            }
        }

        /// Every line is read before anything is printed.
        fn list(portals: &[PortalDevice]) -> Result<u8, PortalError> {
            if portals.is_empty() {
                println!("{NO_PORTAL}");
                return Ok(EXIT_OK);
            }
            let mut lines = Vec::new();
            for (position, device) in portals.iter().enumerate() {
                let regs = Regs::map(&device.path, platform::portal::REGS_SIZE)?;
                lines.push(read_line(&regs, position, device)?);
            }
            for line in &lines {
                println!("{line}");
            }
            Ok(EXIT_OK)
        }

        fn wait(device: &PortalDevice, op: Option<u32>, timeout: Duration, poll: bool) -> Result<u8, PortalError> {
            let regs = Regs::map(&device.path, platform::portal::REGS_SIZE)?;
            let waited = if poll {
                portal::wait(&regs, &mut Polling, op, timeout)?
            } else {
                let name =
                    device.uio.as_deref().ok_or_else(|| PortalError::NoUio { address: device.address.clone() })?;
                portal::wait(&regs, &mut Uio::open(&device.path, name)?, op, timeout)?
            };
            if let Some(peer) = waited.peer_changes {
                eprintln!("hvctl: portal {}: the peer's state changed (now {peer})", device.address);
            }
            match waited.got {
                Some((op, arg)) => {
                    println!("{}", format_got(op, arg));
                    Ok(EXIT_OK)
                }
                None => {
                    let what = op.map_or("any operation".to_string(), |op| format!("operation {op}"));
                    println!(
                        "hvctl: portal {}: timeout: no request of {what} in {} ms",
                        device.address,
                        timeout.as_millis()
                    );
                    Ok(EXIT_TIMEOUT)
                }
            }
        }
    }
}

/// `hvctl vm`: the VM control function's registers.
mod vm {
    use hvctl::vm::{VmAction, VmError};

    /// Runs `action`; returns the exit status. Errors go to standard error
    /// as `hvctl: vm: ...`.
    pub fn run(action: &VmAction) -> u8 {
        match linux::run(action) {
            Ok(status) => status,
            Err(error) => {
                eprintln!("hvctl: vm: {error}");
                error.exit_status()
            }
        }
    }

    #[cfg(target_os = "linux")]
    mod linux {
        use super::{VmAction, VmError};
        use hvctl::device::{Lock, Regs};
        use hvctl::pci::SYSFS_PCI_DEVICES;
        use hvctl::vm::{self, EXIT_OK};
        use platform::control::REGS_SIZE;
        use std::path::Path;
        use std::time::Duration;

        /// How long `hvctl vm` waits for another one in this VM to finish.
        const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

        pub fn run(action: &VmAction) -> Result<u8, VmError> {
            let function = vm::discover(Path::new(SYSFS_PCI_DEVICES))?;
            // The lock first: opening resource0 is also where a process
            // that is not root is refused.
            let _lock = Lock::take(&function.path, LOCK_TIMEOUT)?;
            let regs = Regs::map(&function.path, REGS_SIZE)?;
            vm::check_id(&regs, &function.address)?;
            match action {
                VmAction::List => {
                    // Every line is read before anything is printed.
                    let lines = vm::list(&regs)?;
                    for line in &lines {
                        println!("{line}");
                    }
                    Ok(EXIT_OK)
                }
                VmAction::Command { code, name } => {
                    let result = vm::command(&regs, name, *code)?;
                    println!("{result}");
                    Ok(vm::command_exit_status(result))
                }
            }
        }
    }

    /// Elsewhere there is no PCI function to find: every VM is as one
    /// without the control function.
    #[cfg(not(target_os = "linux"))]
    mod linux {
        use super::{VmAction, VmError};

        pub fn run(_action: &VmAction) -> Result<u8, VmError> {
            Err(VmError::NotManager)
        }
    }
}

/// `scan --layout`: the mappings, made in this process and kept until it
/// exits.
mod layout {
    use hvctl::Layout;

    /// Maps and touches `layout`; returns the pages touched.
    #[cfg(target_os = "linux")]
    pub fn build(layout: Layout) -> Result<u64, String> {
        let (count, size, stride) = layout.shape();
        let mut touched = 0;
        for _ in 0..count {
            // SAFETY: a fresh anonymous private mapping, placed by the
            // kernel; nothing else refers to it. NORESERVE: only the pages
            // touched below take memory.
            let base = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    size as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(format!("mmap of {size:#x} bytes: {}", std::io::Error::last_os_error()));
            }
            // One 4 KiB page per touch: with transparent huge pages each
            // touch would take 2 MiB (16 GiB for the wide layout).
            // SAFETY: advice on the mapping just made.
            unsafe { libc::madvise(base, size as usize, libc::MADV_NOHUGEPAGE) };
            for offset in (0..size).step_by(stride as usize) {
                // SAFETY: inside the mapping just made, readable and
                // writable.
                unsafe { core::ptr::write_volatile((base as *mut u8).add(offset as usize), 1) };
                touched += 1;
            }
        }
        Ok(touched)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn build(_layout: Layout) -> Result<u64, String> {
        Err("layouts are built on Linux only".into())
    }
}

/// The `BRK` itself, and what happens when no hypervisor takes it.
mod conduit {
    use platform::hypercall::{Call, Reply};

    /// Makes `call` through the backdoor.
    ///
    /// # Safety
    ///
    /// As [`platform::hypercall::brk`]: pointers in the call's arguments
    /// must be memory the caller owns.
    #[cfg(target_arch = "aarch64")]
    pub unsafe fn brk(call: &Call) -> Reply {
        // SAFETY: forwarded from this function's contract; without a
        // hypervisor, the breakpoint's SIGTRAP ends the process through
        // `install_trap_guard`'s handler.
        unsafe { platform::hypercall::brk(call) }
    }

    /// Everywhere else there is no backdoor: the call fails as an unknown
    /// function would (this build exists for host-side unit tests).
    ///
    /// # Safety
    ///
    /// None needed; `unsafe` to match the aarch64 signature.
    #[cfg(not(target_arch = "aarch64"))]
    pub unsafe fn brk(_call: &Call) -> Reply {
        Reply::error(platform::hypercall::HvError::NotSupported)
    }

    /// Turns the SIGTRAP a `BRK` raises without the hypervisor into a
    /// message and exit status 2, instead of a silent "Trace/breakpoint
    /// trap".
    #[cfg(target_os = "linux")]
    pub fn install_trap_guard() {
        extern "C" fn on_sigtrap(_signal: libc::c_int) {
            const MESSAGE: &[u8] =
                b"hvctl: the backdoor's BRK reached the kernel (SIGTRAP): no hypervisor with this backdoor underneath\n";
            // SAFETY: write(2) and _exit(2) are async-signal-safe; MESSAGE
            // is a static buffer of the given length.
            unsafe {
                libc::write(libc::STDERR_FILENO, MESSAGE.as_ptr().cast(), MESSAGE.len());
                libc::_exit(2);
            }
        }
        let handler: extern "C" fn(libc::c_int) = on_sigtrap;
        // SAFETY: the handler only makes async-signal-safe calls.
        unsafe {
            libc::signal(libc::SIGTRAP, handler as libc::sighandler_t);
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn install_trap_guard() {}
}
