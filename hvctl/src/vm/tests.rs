//! Host tests of `hvctl vm`'s pure half: the command line, finding the
//! control function in a fake sysfs tree, the list line, and the list and
//! command protocols against the register model the hypervisor serves
//! (`platform::control::ControlModel`), with the hypervisor's part (the
//! VMs' states, carrying a command out) played by [`FakeHypervisor`].

use super::*;
use crate::Command;
use platform::control::{ControlModel, VmInfo};
use std::cell::RefCell;

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn parse(text: &str) -> Result<VmAction, UsageError> {
    match Command::parse(words(text)) {
        Ok(Command::Vm(action)) => Ok(action),
        Ok(other) => panic!("{text:?} parsed as {other:?}"),
        Err(e) => Err(e),
    }
}

#[test]
fn command_lines_parse() {
    assert_eq!(parse("vm list"), Ok(VmAction::List));
    for (word, code) in [("stop", CommandCode::Stop), ("restart", CommandCode::Restart), ("start", CommandCode::Start)]
    {
        assert_eq!(parse(&format!("vm {word} worker")), Ok(VmAction::Command { code, name: "worker".into() }));
    }
    assert!(crate::USAGE.contains("hvctl vm stop|restart|start NAME"));
    // The usage text documents every exit status.
    for status in [EXIT_WRONG_STATE, EXIT_SELF, EXIT_PERMISSION, EXIT_NO_SUCH_VM, EXIT_FAILED] {
        assert!(crate::USAGE.contains(&format!("{status} ")), "exit status {status} undocumented");
    }
}

#[test]
fn bad_vm_command_lines_are_usage_errors() {
    let bad = |text: &str| parse(text).expect_err(text);
    assert!(matches!(bad("vm"), UsageError::MissingArgument(_)));
    assert_eq!(bad("vm kill worker"), UsageError::UnknownCommand("vm kill".into()));
    assert_eq!(bad("vm stop"), UsageError::MissingArgument("the VM's name"));
    assert_eq!(bad("vm stop a b"), UsageError::UnexpectedArgument("b".into()));
    assert_eq!(bad("vm list all"), UsageError::UnexpectedArgument("all".into()));
}

// --- sysfs -------------------------------------------------------------------

/// A fake `/sys/bus/pci/devices`, removed when dropped.
struct FakeSysfs(PathBuf);

impl FakeSysfs {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hvctl-vm-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn function(&self, address: &str, ids: (&str, &str), resource: Option<&str>) {
        let dir = self.0.join(address);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vendor"), format!("{}\n", ids.0)).unwrap();
        std::fs::write(dir.join("device"), format!("{}\n", ids.1)).unwrap();
        if let Some(resource) = resource {
            std::fs::write(dir.join("resource"), resource).unwrap();
        }
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CONTROL: (&str, &str) = ("0x1234", "0x7a12");
const PORTAL: (&str, &str) = ("0x1234", "0x7a11");
/// BAR0 4 KiB (64-bit: BAR1 is its upper half), nothing else.
const RESOURCE: &str = "\
0x0000000010041000 0x0000000010041fff 0x0000000000140204
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
";

#[test]
fn the_control_function_is_found_in_sysfs() {
    let sysfs = FakeSysfs::new("discover");
    sysfs.function("0000:00:00.0", ("0x13b5", "0x0031"), Some(RESOURCE));
    sysfs.function("0000:00:10.0", PORTAL, Some(RESOURCE));
    sysfs.function("0000:00:11.0", CONTROL, Some(RESOURCE));
    let found = discover(&sysfs.0).unwrap();
    assert_eq!(found, PciFunction { address: "0000:00:11.0".into(), path: sysfs.0.join("0000:00:11.0") });
    // The portal's discovery, on the same shared code, still finds only the
    // portal (which has no BAR2 here).
    assert!(matches!(crate::portal::discover(&sysfs.0), Err(crate::portal::PortalError::NoSharedMemory { .. })));
}

#[test]
fn a_vm_without_the_control_function_is_not_a_manager() {
    let sysfs = FakeSysfs::new("unmanaged");
    sysfs.function("0000:00:10.0", PORTAL, Some(RESOURCE));
    // Same device ID, another vendor: not the control function.
    sysfs.function("0000:00:11.0", ("0x1af4", "0x7a12"), Some(RESOURCE));
    let error = discover(&sysfs.0).unwrap_err();
    assert!(matches!(error, VmError::NotManager), "{error}");
    assert_eq!(
        format!("hvctl: vm: {error}"),
        "hvctl: vm: permission denied: this VM is not a manager (no VM control function 1234:7a12)"
    );
    assert_eq!(error.exit_status(), EXIT_PERMISSION);
    // No PCI bus at all (no host bridge): the directory is empty.
    let empty = FakeSysfs::new("empty");
    assert!(matches!(discover(&empty.0), Err(VmError::NotManager)));
    // An unreadable directory is an error, not a verdict.
    let error = discover(&empty.0.join("missing")).unwrap_err();
    assert!(matches!(error, VmError::Sysfs(_)), "{error}");
    assert_eq!(error.exit_status(), EXIT_ERROR);
}

#[test]
fn a_control_function_without_registers_is_an_error() {
    let sysfs = FakeSysfs::new("no-bar0");
    sysfs.function("0000:00:10.0", CONTROL, Some(&RESOURCE.replace("0x0000000010041fff", "0x0000000010041000")));
    let error = discover(&sysfs.0).unwrap_err();
    assert!(matches!(error, VmError::NoRegisters { .. }), "{error}");
    let sysfs = FakeSysfs::new("no-resource");
    sysfs.function("0000:00:10.0", CONTROL, None);
    let error = discover(&sysfs.0).unwrap_err();
    assert!(error.to_string().contains("0000:00:10.0/resource"), "{error}");
}

#[test]
fn not_root_is_a_permission_error() {
    let denied = DeviceError {
        what: "open /sys/bus/pci/devices/0000:00:10.0/resource0".into(),
        error: std::io::Error::from_raw_os_error(13), // EACCES
    };
    let error = VmError::from(denied);
    assert!(matches!(error, VmError::NotPermitted(_)));
    assert_eq!(error.exit_status(), EXIT_PERMISSION);
    let text = error.to_string();
    assert!(text.starts_with("permission denied: open /sys/") && text.contains("only root"), "{text}");
    let eperm = DeviceError { what: "mmap".into(), error: std::io::Error::from_raw_os_error(1) };
    assert_eq!(VmError::from(eperm).exit_status(), EXIT_PERMISSION);
    let busy = DeviceError { what: "mmap".into(), error: std::io::Error::from_raw_os_error(12) }; // ENOMEM
    assert!(matches!(VmError::from(busy), VmError::Device(_)));
}

// --- the list line -------------------------------------------------------------

fn line(index: u32, name: &str, state: VmState, memory_kib: u32, flags: u32) -> VmLine {
    VmLine {
        index,
        name: name.into(),
        state: StateWord(state as u32),
        vcpus: 1,
        memory_kib,
        exit_status: 0,
        starts: 1,
        flags,
    }
}

#[test]
fn list_lines_round_trip() {
    let svc = line(0, "svc", VmState::Running, 512 * 1024, FLAG_MANAGER | FLAG_AUTOSTART | FLAG_SELF);
    let text = svc.to_string();
    assert_eq!(text, "vm 0: svc, running, 1 vCPU, 512 MiB, exit status 0, starts 1, flags manager,autostart,self");
    assert_eq!(VmLine::parse(&text), Some(svc));
    let later = VmLine { vcpus: 2, exit_status: 7, starts: 0, ..line(3, "later", VmState::Off, 64 * 1024, 0) };
    let text = later.to_string();
    assert_eq!(text, "vm 3: later, off, 2 vCPUs, 64 MiB, exit status 7, starts 0, flags -");
    assert_eq!(VmLine::parse(&text), Some(later));
    // Odd values still make a line that parses back.
    let odd = VmLine {
        state: StateWord(9),
        vcpus: 0,
        exit_status: u32::MAX,
        ..line(7, &name_text(b"a, b\xff\0junk"), VmState::Off, 3000, FLAG_SELF | 1 << 8)
    };
    let text = odd.to_string();
    assert_eq!(
        text,
        "vm 7: a\\x2c\\x20b\\xff, unknown-9, 0 vCPUs, 3000 KiB, exit status 4294967295, starts 1, flags self,0x100"
    );
    assert_eq!(VmLine::parse(&text), Some(odd));
    assert!(VmLine::parse(&text).unwrap().has(FLAG_SELF));
}

#[test]
fn malformed_list_lines_do_not_parse() {
    let good = "vm 1: user, running, 1 vCPU, 512 MiB, exit status 0, starts 2, flags autostart";
    assert!(VmLine::parse(good).is_some());
    for bad in [
        "vm 1: user, running, 1 vCPU, 512 MiB, exit status 0, starts 2",
        "vm 1: user, running, 1 vCPUs, 512 MiB, exit status 0, starts 2, flags autostart",
        "vm 1: user, running, 2 vCPU, 512 MiB, exit status 0, starts 2, flags autostart",
        "vm 1: user, asleep, 1 vCPU, 512 MiB, exit status 0, starts 2, flags autostart",
        "vm 1: user, running, 1 vCPU, 2048 KiB, exit status 0, starts 2, flags autostart",
        "vm 1: user, running, 1 vCPU, 512 MiB, exit status -1, starts 2, flags autostart",
        "vm 1: user, running, 1 vCPU, 512 MiB, exit status 0, starts 2, flags self,manager",
        "vm 1: user, running, 1 vCPU, 512 MiB, exit status 0, starts 2, flags autostart,autostart",
        "vm 1: user, running, 1 vCPU, 512 MiB, exit status 0, starts 2, flags 0x2",
        "vm 1: user, running, 1 vCPU, 512 MiB, exit status 0, starts 2, flags ",
        "vm x: user, running, 1 vCPU, 512 MiB, exit status 0, starts 2, flags autostart",
        "portal 1: user, running, 1 vCPU, 512 MiB, exit status 0, starts 2, flags autostart",
    ] {
        assert_eq!(VmLine::parse(bad), None, "{bad}");
    }
}

// --- the protocols -------------------------------------------------------------

/// The hypervisor's side of one manager's control function: the VMs, the
/// manager's index, and the register model; a command is carried out
/// before the write returns, as the hypervisor does.
struct FakeHypervisor {
    vms: RefCell<Vec<VmInfo>>,
    caller: u32,
    model: RefCell<ControlModel>,
    /// What `Start` and `Restart` give (`Failed`: the kernel is gone).
    start_result: CommandResult,
    /// Every write, in order: (offset, value).
    writes: RefCell<Vec<(u64, u32)>>,
}

fn info(name: &str, state: VmState, flags: u32) -> VmInfo {
    VmInfo {
        name: VmInfo::name_bytes(name),
        state: state as u32,
        vcpus: 1,
        exit_status: 0,
        memory_kib: 64 * 1024,
        flags,
        starts: u32::from(state == VmState::Running),
    }
}

impl FakeHypervisor {
    /// The scenario's four VMs, seen from `svc` (index 0).
    fn scenario() -> Self {
        let vms = vec![
            info("svc", VmState::Running, FLAG_MANAGER | FLAG_AUTOSTART),
            info("user", VmState::Running, FLAG_AUTOSTART),
            info("worker", VmState::Running, FLAG_AUTOSTART),
            info("later", VmState::Off, 0),
        ];
        Self {
            vms: RefCell::new(vms),
            caller: 0,
            model: RefCell::new(ControlModel::new()),
            start_result: CommandResult::Done,
            writes: RefCell::new(Vec::new()),
        }
    }

    fn count(&self) -> u32 {
        self.vms.borrow().len() as u32
    }

    fn selected(&self) -> Option<VmInfo> {
        let index = self.model.borrow().selected();
        let mut info = *self.vms.borrow().get(index as usize)?;
        if index == self.caller {
            info.flags |= FLAG_SELF;
        }
        Some(info)
    }

    fn state(&self, index: usize) -> VmState {
        VmState::from_u32(self.vms.borrow()[index].state).unwrap()
    }

    fn carry_out(&self, command: platform::control::Command) -> CommandResult {
        let mut vms = self.vms.borrow_mut();
        let vm = &mut vms[command.vm as usize];
        let running = vm.state == VmState::Running as u32;
        match command.code {
            CommandCode::Stop if running => vm.state = VmState::Off as u32,
            CommandCode::Start if !running => {
                if self.start_result != CommandResult::Done {
                    return self.start_result;
                }
                vm.state = VmState::Running as u32;
                vm.starts += 1;
            }
            CommandCode::Restart => {
                if self.start_result != CommandResult::Done {
                    vm.state = VmState::Off as u32;
                    return self.start_result;
                }
                vm.state = VmState::Running as u32;
                vm.starts += 1;
            }
            _ => return CommandResult::WrongState,
        }
        CommandResult::Done
    }
}

impl Registers for FakeHypervisor {
    fn read32(&self, offset: u64) -> u32 {
        let info = self.selected();
        self.model.borrow().read(offset, 4, self.count(), info.as_ref()) as u32
    }

    fn write32(&self, offset: u64, value: u32) {
        self.writes.borrow_mut().push((offset, value));
        let command = self.model.borrow_mut().write(offset, 4, u64::from(value), self.count(), self.caller);
        if let Some(command) = command {
            let result = self.carry_out(command);
            self.model.borrow_mut().finish(result);
        }
    }

    fn read64(&self, _offset: u64) -> u64 {
        panic!("the control function has no 64-bit registers")
    }

    fn write64(&self, _offset: u64, _value: u64) {
        panic!("the control function has no 64-bit registers")
    }
}

#[test]
fn list_reads_every_vm_in_index_order() {
    let hv = FakeHypervisor::scenario();
    check_id(&hv, "0000:00:10.0").unwrap();
    let lines = list(&hv).unwrap();
    let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "vm 0: svc, running, 1 vCPU, 64 MiB, exit status 0, starts 1, flags manager,autostart,self",
            "vm 1: user, running, 1 vCPU, 64 MiB, exit status 0, starts 1, flags autostart",
            "vm 2: worker, running, 1 vCPU, 64 MiB, exit status 0, starts 1, flags autostart",
            "vm 3: later, off, 1 vCPU, 64 MiB, exit status 0, starts 0, flags -",
        ]
    );
    for (line, text) in lines.iter().zip(&text) {
        assert_eq!(VmLine::parse(text).as_ref(), Some(line));
    }
}

#[test]
fn commands_select_the_vm_by_name_then_write_command() {
    let hv = FakeHypervisor::scenario();
    assert_eq!(command(&hv, "worker", CommandCode::Stop).unwrap(), CommandResult::Done);
    assert_eq!(hv.state(2), VmState::Off);
    // The last two writes: SELECT the VM, then COMMAND.
    let writes = hv.writes.borrow().clone();
    assert_eq!(writes[writes.len() - 2..], [(reg::SELECT, 2), (reg::COMMAND, CommandCode::Stop as u32)]);
    // A second stop: refused, wrong state.
    let result = command(&hv, "worker", CommandCode::Stop).unwrap();
    assert_eq!((result, command_exit_status(result)), (CommandResult::WrongState, EXIT_WRONG_STATE));
    // Start a VM that never ran, then restart one.
    assert_eq!(command(&hv, "later", CommandCode::Start).unwrap(), CommandResult::Done);
    assert_eq!((hv.state(3), hv.vms.borrow()[3].starts), (VmState::Running, 1));
    assert_eq!(command(&hv, "later", CommandCode::Start).unwrap(), CommandResult::WrongState);
    assert_eq!(command(&hv, "user", CommandCode::Restart).unwrap(), CommandResult::Done);
    assert_eq!(hv.vms.borrow()[1].starts, 2);
    // The manager itself.
    let result = command(&hv, "svc", CommandCode::Stop).unwrap();
    assert_eq!((result, command_exit_status(result)), (CommandResult::IsSelf, EXIT_SELF));
    assert_eq!(result.to_string(), "refused: the manager itself");
    assert_eq!(hv.state(0), VmState::Running);
}

#[test]
fn an_unknown_name_is_refused_with_the_names_there_are() {
    let hv = FakeHypervisor::scenario();
    let error = command(&hv, "nobody", CommandCode::Stop).unwrap_err();
    assert_eq!(error.exit_status(), EXIT_NO_SUCH_VM);
    assert_eq!(error.to_string(), "refused: no VM named \"nobody\" (the VMs: svc, user, worker, later)");
    // Nothing was commanded.
    assert!(hv.writes.borrow().iter().all(|&(offset, _)| offset == reg::SELECT));
    // A prefix of a name is not the name.
    assert!(matches!(command(&hv, "work", CommandCode::Stop), Err(VmError::NoSuchVm { .. })));
}

#[test]
fn a_start_the_hypervisor_fails_is_reported() {
    let hv = FakeHypervisor { start_result: CommandResult::Failed, ..FakeHypervisor::scenario() };
    let result = command(&hv, "later", CommandCode::Start).unwrap();
    assert_eq!((result, command_exit_status(result)), (CommandResult::Failed, EXIT_FAILED));
}

/// Registers that read what they are told, for the checks of nonsense.
struct Fixed {
    id: u32,
    count: u32,
    result: u32,
}

impl Registers for Fixed {
    fn read32(&self, offset: u64) -> u32 {
        match offset {
            reg::ID => self.id,
            reg::VM_COUNT => self.count,
            reg::RESULT => self.result,
            reg::NAME => u32::from_le_bytes(*b"a\0\0\0"),
            _ => 0,
        }
    }

    fn write32(&self, _offset: u64, _value: u32) {}

    fn read64(&self, _offset: u64) -> u64 {
        0
    }

    fn write64(&self, _offset: u64, _value: u64) {}
}

#[test]
fn registers_that_read_nonsense_are_errors() {
    let ok = Fixed { id: ID_VALUE, count: 1, result: CommandResult::Done as u32 };
    check_id(&ok, "0000:00:10.0").unwrap();
    assert_eq!(command(&ok, "a", CommandCode::Stop).unwrap(), CommandResult::Done);
    // Memory decoding off, or not the function at all.
    let error = check_id(&Fixed { id: 0xffff_ffff, ..ok }, "0000:00:10.0").unwrap_err();
    assert_eq!(error.exit_status(), EXIT_ERROR);
    assert!(error.to_string().contains("0xffffffff") && error.to_string().contains("0x48430001"), "{error}");
    // A count no machine has: not a loop of 4 billion selects.
    assert!(matches!(list(&Fixed { count: u32::MAX, ..ok }), Err(VmError::BadCount(u32::MAX))));
    assert!(matches!(command(&Fixed { result: 99, ..ok }, "a", CommandCode::Stop), Err(VmError::BadResult(99))));
    let error = command(&Fixed { result: 0, ..ok }, "a", CommandCode::Stop).unwrap_err();
    assert!(matches!(error, VmError::NotCarriedOut), "{error}");
    assert_eq!(command_exit_status(CommandResult::BadCommand), EXIT_ERROR);
    assert_eq!(command_exit_status(CommandResult::NoSuchVm), EXIT_NO_SUCH_VM);
}
