//! The tests, on Linux arm64 (see the crate doc).

use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, Ordering};
use std::process::ExitCode;

core::arch::global_asm!(
    // dbgtest_loop(x0 = n): one `mov`, then n turns of three instructions;
    // returns the turns counted. Stepping from its first instruction to
    // `dbgtest_loop_end` takes 1 + 3n steps.
    ".global dbgtest_loop",
    ".global dbgtest_loop_end",
    "dbgtest_loop:",
    "    mov x1, #0",
    "1:  add x1, x1, #1",
    "    subs x0, x0, #1",
    "    b.ne 1b",
    "dbgtest_loop_end:",
    "    mov x0, x1",
    "    ret",
    // The breakpoint's target: does nothing.
    ".global dbgtest_target",
    "dbgtest_target:",
    "    ret",
    // dbgtest_brk(): `BRK #7` (not the hypervisor's backdoor immediate);
    // returns the BRK's address, which the SIGTRAP handler checks.
    ".global dbgtest_brk",
    ".global dbgtest_brk_insn",
    "dbgtest_brk:",
    "    adr x0, dbgtest_brk_insn",
    "dbgtest_brk_insn:",
    "    brk #7",
    "    ret",
);

extern "C" {
    fn dbgtest_loop(n: u64) -> u64;
    fn dbgtest_loop_end();
    fn dbgtest_target();
    fn dbgtest_brk() -> u64;
    static dbgtest_brk_insn: u8;
}

/// Turns of [`dbgtest_loop`] the single-step test walks.
const LOOP_TURNS: u64 = 50;
/// Calls of [`dbgtest_target`], and stores to [`WATCHED`], the child makes.
const HITS: u64 = 5;
/// Steps allowed before the child reaches the stepped loop.
const MAX_STEPS_BEFORE: u32 = 200_000;

/// `nobody`.
const NOBODY: u32 = 65534;

/// `NT_ARM_HW_BREAK` and `NT_ARM_HW_WATCH` (Linux `elf.h`).
const NT_ARM_HW_BREAK: i32 = 0x402;
const NT_ARM_HW_WATCH: i32 = 0x403;
/// `NT_PRSTATUS`.
const NT_PRSTATUS: i32 = 1;

/// A breakpoint's control word as Linux takes it (`DBGBCR` layout):
/// enabled, EL0 only, all four bytes of an A64 instruction.
const BP_CTRL: u32 = (0xf << 5) | (0b10 << 1) | 1;
/// A watchpoint's: enabled, EL0 only, stores, all eight bytes.
const WP_CTRL: u32 = (0xff << 5) | (0b10 << 3) | (0b10 << 1) | 1;

/// The word the watchpoint test watches.
#[repr(align(8))]
struct Watched(AtomicU64);
static WATCHED: Watched = Watched(AtomicU64::new(0));

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(("as-nobody", command)) = args.get(1).map(String::as_str).zip(args.get(2..)) {
        return as_nobody(command);
    }
    // The ELF for the AArch32 test is written while still root: /tmp in
    // the test initramfs is root's.
    let aarch32 = write_aarch32_program();
    if let Err(e) = become_nobody() {
        println!("dbgtest: cannot become nobody: {e}");
        return ExitCode::FAILURE;
    }
    // SAFETY: plain getters, no arguments.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    println!("dbgtest: uid {uid} gid {gid}");
    let mut failed = false;
    for (name, test) in [
        ("singlestep", singlestep as fn() -> Result<String, String>),
        ("breakpoint", breakpoint),
        ("watchpoint", watchpoint),
        ("brk", brk),
    ] {
        report(name, test(), &mut failed);
    }
    report("aarch32-bkpt", aarch32.and_then(|path| aarch32_bkpt(&path)), &mut failed);
    println!("dbgtest: done");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `dbgtest as-nobody COMMAND...`: runs a command as user nobody (the
/// initramfs has no `su`); returns its exit status.
fn as_nobody(command: &[String]) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        eprintln!("usage: dbgtest as-nobody COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    if let Err(e) = become_nobody() {
        eprintln!("dbgtest: cannot become nobody: {e}");
        return ExitCode::from(2);
    }
    match std::process::Command::new(program).args(args).status() {
        Ok(status) => ExitCode::from(status.code().map_or(128, |c| c as u8)),
        Err(e) => {
            eprintln!("dbgtest: {program}: {e}");
            ExitCode::from(127)
        }
    }
}

fn report(name: &str, result: Result<String, String>, failed: &mut bool) {
    match result {
        Ok(what) => println!("dbgtest: {name}: {what}"),
        Err(why) => {
            *failed = true;
            println!("dbgtest: {name}: error: {why}");
        }
    }
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn become_nobody() -> Result<(), std::io::Error> {
    // SAFETY: plain system calls.
    unsafe {
        if libc::getuid() == 0 && (libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0) {
            return Err(errno());
        }
    }
    Ok(())
}

/// `user_pt_regs`.
#[repr(C)]
#[derive(Default)]
struct Regs {
    x: [u64; 31],
    sp: u64,
    pc: u64,
    pstate: u64,
}

/// `user_hwdebug_state` with one register pair in use.
#[repr(C)]
#[derive(Default)]
struct HwDebug {
    info: u32,
    pad: u32,
    addr: u64,
    ctrl: u32,
    pad2: u32,
}

/// A child under ptrace, stopped: it runs `body` after stopping itself
/// with `SIGSTOP`, then exits 0. Killed when dropped.
struct Child {
    pid: libc::pid_t,
}

impl Child {
    fn start(body: fn()) -> Result<Self, String> {
        // SAFETY: the child only makes system calls and runs `body`, which
        // touches its own copy of memory; it never returns into the
        // parent's code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", errno()));
        }
        if pid == 0 {
            // SAFETY: PTRACE_TRACEME takes no other arguments; raise stops
            // this process for the parent.
            unsafe {
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                libc::raise(libc::SIGSTOP);
            }
            body();
            // SAFETY: ends the child without running the parent's atexit.
            unsafe { libc::_exit(0) };
        }
        let child = Self { pid };
        match child.wait()? {
            Stop::Signal(libc::SIGSTOP) => Ok(child),
            other => Err(format!("the child did not stop: {other:?}")),
        }
    }

    fn wait(&self) -> Result<Stop, String> {
        let mut status = 0;
        // SAFETY: waits for our own child.
        if unsafe { libc::waitpid(self.pid, &mut status, 0) } != self.pid {
            return Err(format!("waitpid: {}", errno()));
        }
        Ok(if libc::WIFSTOPPED(status) {
            Stop::Signal(libc::WSTOPSIG(status))
        } else if libc::WIFEXITED(status) {
            Stop::Exited(libc::WEXITSTATUS(status))
        } else {
            Stop::Killed(libc::WTERMSIG(status))
        })
    }

    fn request(&self, request: libc::c_int, data: usize) -> Result<(), String> {
        // SAFETY: a request on our stopped tracee with no address argument.
        if unsafe { libc::ptrace(request, self.pid, 0, data) } != 0 {
            return Err(format!("ptrace {request}: {}", errno()));
        }
        Ok(())
    }

    fn step(&self) -> Result<Stop, String> {
        self.request(libc::PTRACE_SINGLESTEP, 0)?;
        self.wait()
    }

    fn cont(&self) -> Result<Stop, String> {
        self.request(libc::PTRACE_CONT, 0)?;
        self.wait()
    }

    fn pc(&self) -> Result<u64, String> {
        let mut regs = Regs::default();
        let mut iov = libc::iovec { iov_base: &mut regs as *mut Regs as *mut c_void, iov_len: size_of::<Regs>() };
        // SAFETY: the kernel writes at most `iov_len` bytes into `regs`.
        if unsafe { libc::ptrace(libc::PTRACE_GETREGSET, self.pid, NT_PRSTATUS, &mut iov) } != 0 {
            return Err(format!("PTRACE_GETREGSET: {}", errno()));
        }
        Ok(regs.pc)
    }

    /// Sets hardware breakpoint or watchpoint 0 (`set` = `NT_ARM_HW_*`).
    fn set_hw(&self, set: i32, addr: u64, ctrl: u32) -> Result<(), String> {
        let mut state = HwDebug { addr, ctrl, ..Default::default() };
        let mut iov =
            libc::iovec { iov_base: &mut state as *mut HwDebug as *mut c_void, iov_len: size_of::<HwDebug>() };
        // SAFETY: the kernel reads at most `iov_len` bytes from `state`.
        if unsafe { libc::ptrace(libc::PTRACE_SETREGSET, self.pid, set, &mut iov) } != 0 {
            return Err(format!("PTRACE_SETREGSET {set:#x}: {}", errno()));
        }
        Ok(())
    }

    /// Continues until the child exits, counting `SIGTRAP` stops at a
    /// hardware breakpoint or watchpoint (`set`) at `addr`, stepping past
    /// each with it disabled. Returns the stops' PCs.
    fn count_hw_hits(&self, set: i32, addr: u64, ctrl: u32) -> Result<Vec<u64>, String> {
        self.set_hw(set, addr, ctrl)?;
        let mut pcs = Vec::new();
        loop {
            match self.cont()? {
                Stop::Exited(0) => return Ok(pcs),
                Stop::Signal(libc::SIGTRAP) => {
                    pcs.push(self.pc()?);
                    if pcs.len() > 1000 {
                        return Err("more than 1000 stops".into());
                    }
                    self.set_hw(set, addr, 0)?;
                    match self.step()? {
                        Stop::Signal(libc::SIGTRAP) => {}
                        other => return Err(format!("stepping past a hit: {other:?}")),
                    }
                    self.set_hw(set, addr, ctrl)?;
                }
                other => return Err(format!("unexpected stop: {other:?}")),
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: kills and reaps our own child (harmless if it has exited).
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, core::ptr::null_mut(), 0);
        }
    }
}

/// How a child changed state; the fields are read through `Debug` in
/// error messages.
#[derive(Debug)]
#[allow(dead_code)]
enum Stop {
    Signal(i32),
    Exited(i32),
    Killed(i32),
}

fn singlestep() -> Result<String, String> {
    fn body() {
        // SAFETY: the loop only counts in registers.
        unsafe { dbgtest_loop(LOOP_TURNS) };
    }
    let child = Child::start(body)?;
    let (start, end) = (dbgtest_loop as *const () as u64, dbgtest_loop_end as *const () as u64);
    let mut before = 0;
    while child.pc()? != start {
        before += 1;
        if before > MAX_STEPS_BEFORE {
            return Err(format!("never reached the loop in {MAX_STEPS_BEFORE} steps"));
        }
        match child.step()? {
            Stop::Signal(libc::SIGTRAP) => {}
            other => return Err(format!("step {before}: {other:?}")),
        }
    }
    let mut steps = 0u64;
    while child.pc()? != end {
        steps += 1;
        if steps > 10 * (1 + 3 * LOOP_TURNS) {
            return Err(format!("not at the loop's end after {steps} steps"));
        }
        match child.step()? {
            Stop::Signal(libc::SIGTRAP) => {}
            other => return Err(format!("step {steps} in the loop: {other:?}")),
        }
    }
    match child.cont()? {
        Stop::Exited(0) => Ok(format!("{steps} steps through a loop of {LOOP_TURNS} turns")),
        other => Err(format!("after stepping: {other:?}")),
    }
}

fn breakpoint() -> Result<String, String> {
    fn body() {
        for _ in 0..HITS {
            // SAFETY: returns at once.
            unsafe { dbgtest_target() };
        }
    }
    let child = Child::start(body)?;
    let target = dbgtest_target as *const () as u64;
    let pcs = child.count_hw_hits(NT_ARM_HW_BREAK, target, BP_CTRL)?;
    let at_target = pcs.iter().filter(|&&pc| pc == target).count();
    Ok(format!("{} hits, {at_target} at the target", pcs.len()))
}

fn watchpoint() -> Result<String, String> {
    fn body() {
        for n in 0..HITS {
            WATCHED.0.store(n, Ordering::SeqCst);
        }
        // Then the kernel stores to the watched word for us: read(2) from
        // a pipe into it.
        let mut fds = [0; 2];
        let word = n_bytes();
        // SAFETY: a pipe of our own; read writes 8 bytes into WATCHED.
        unsafe {
            if libc::pipe(fds.as_mut_ptr()) == 0 {
                libc::write(fds[1], word.as_ptr() as *const c_void, word.len());
                libc::read(fds[0], WATCHED.0.as_ptr() as *mut c_void, word.len());
            }
        }
    }
    fn n_bytes() -> [u8; 8] {
        0x5a5a_5a5a_5a5a_5a5a_u64.to_le_bytes()
    }
    let child = Child::start(body)?;
    let pcs = child.count_hw_hits(NT_ARM_HW_WATCH, WATCHED.0.as_ptr() as u64, WP_CTRL)?;
    Ok(format!("{} hits for {HITS} stores of the child's and one read(2) into the word", pcs.len()))
}

static BRK_PC: AtomicU64 = AtomicU64::new(0);
static BRK_CODE: AtomicU64 = AtomicU64::new(u64::MAX);

extern "C" fn on_sigtrap(_: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler.
    unsafe {
        let context = &mut *(context as *mut libc::ucontext_t);
        BRK_PC.store(context.uc_mcontext.pc, Ordering::SeqCst);
        BRK_CODE.store((*info).si_code as u64, Ordering::SeqCst);
        // Past the BRK.
        context.uc_mcontext.pc += 4;
    }
}

fn brk() -> Result<String, String> {
    // SAFETY: installs a handler that only stores atomics and moves the PC
    // past the BRK; the old handler is put back.
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        let mut old: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = on_sigtrap as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        if libc::sigaction(libc::SIGTRAP, &action, &mut old) != 0 {
            return Err(format!("sigaction: {}", errno()));
        }
        let at = dbgtest_brk();
        libc::sigaction(libc::SIGTRAP, &old, core::ptr::null_mut());
        let expected = core::ptr::addr_of!(dbgtest_brk_insn) as u64;
        let (pc, code) = (BRK_PC.load(Ordering::SeqCst), BRK_CODE.load(Ordering::SeqCst));
        if pc == 0 {
            return Err("no SIGTRAP".into());
        }
        let place = if pc == expected && at == expected { "at the BRK" } else { "elsewhere" };
        Ok(format!("SIGTRAP (si_code {code}) {place}"))
    }
}

/// A static 32-bit ARM ELF that executes `BKPT #0x32`, then exits 0.
fn aarch32_elf() -> Vec<u8> {
    const BASE: u32 = 0x1_0000;
    const HEADERS: u32 = 52 + 2 * 32;
    let code: [u32; 4] = [
        0xe120_0372, // bkpt #0x32
        0xe3a0_7001, // mov r7, #1 (exit)
        0xe3a0_0000, // mov r0, #0
        0xef00_0000, // svc #0
    ];
    let size = HEADERS + 4 * code.len() as u32;
    let mut elf = Vec::new();
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    for half in [2u16, 40] {
        elf.extend_from_slice(&half.to_le_bytes()); // ET_EXEC, EM_ARM
    }
    // e_version, e_entry, e_phoff, e_shoff, e_flags (EABI 5)
    for word in [1u32, BASE + HEADERS, 52, 0, 0x0500_0000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    for half in [52u16, 32, 2, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    // PT_LOAD of the whole file, read and execute; PT_GNU_STACK, read and
    // write (a stack that is not executable, as a toolchain would ask).
    for word in [1u32, 0, BASE, BASE, size, size, 5, 0x1000, 0x6474_e551, 0, 0, 0, 0, 0, 6, 16] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    for word in code {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf
}

fn write_aarch32_program() -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = "/tmp/dbgtest-bkpt32";
    std::fs::write(path, aarch32_elf()).map_err(|e| format!("{path}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|e| format!("{path}: {e}"))?;
    Ok(path.to_string())
}

fn aarch32_bkpt(path: &str) -> Result<String, String> {
    let program = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: the child only execs (or exits).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", errno()));
    }
    if pid == 0 {
        let argv = [program.as_ptr(), core::ptr::null()];
        let envp = [core::ptr::null()];
        // SAFETY: null-terminated argv and envp of valid C strings.
        unsafe {
            libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            // Exec failed: say why through the exit status.
            libc::_exit(100 + *libc::__errno_location() % 100);
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: {}", errno()));
    }
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        let name = match signal {
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGILL => "SIGILL",
            _ => "another signal",
        };
        Ok(format!("killed by {name} ({signal})"))
    } else if libc::WEXITSTATUS(status) >= 100 {
        Ok(format!("not run: exec failed with errno {} (no AArch32 support)", libc::WEXITSTATUS(status) - 100))
    } else {
        Ok(format!("exited {}", libc::WEXITSTATUS(status)))
    }
}
