use super::*;

fn info() -> VmInfo {
    VmInfo {
        name: VmInfo::name_bytes("linux-b"),
        state: VmState::Running as u32,
        vcpus: 2,
        exit_status: 3,
        memory_kib: 512 * 1024,
        flags: FLAG_AUTOSTART,
        starts: 1,
    }
}

#[test]
fn registers_describe_the_selected_vm() {
    let mut m = ControlModel::new();
    let i = info();
    assert_eq!(m.read(reg::ID, 4, 3, Some(&i)), u64::from(ID_VALUE));
    assert_eq!(m.read(reg::VM_COUNT, 4, 3, Some(&i)), 3);
    assert_eq!(m.write(reg::SELECT, 4, 2, 3, 0), None);
    assert_eq!(m.selected(), 2);
    assert_eq!(m.read(reg::SELECT, 4, 3, Some(&i)), 2);
    assert_eq!(m.read(reg::STATE, 4, 3, Some(&i)), 1);
    assert_eq!(m.read(reg::VCPUS, 4, 3, Some(&i)), 2);
    assert_eq!(m.read(reg::EXIT_STATUS, 4, 3, Some(&i)), 3);
    assert_eq!(m.read(reg::MEMORY_KIB, 4, 3, Some(&i)), 512 * 1024);
    assert_eq!(m.read(reg::FLAGS, 4, 3, Some(&i)), u64::from(FLAG_AUTOSTART));
    assert_eq!(m.read(reg::STARTS, 4, 3, Some(&i)), 1);
    // The name, a word at a time or a byte at a time.
    assert_eq!(m.read(reg::NAME, 4, 3, Some(&i)), u64::from(u32::from_le_bytes(*b"linu")));
    assert_eq!(m.read(reg::NAME + 4, 4, 3, Some(&i)), u64::from(u32::from_le_bytes(*b"x-b\0")));
    assert_eq!(m.read(reg::NAME + 5, 1, 3, Some(&i)), u64::from(b'-'));
    assert_eq!(m.read(reg::NAME + 12, 4, 3, Some(&i)), 0);
    // Nothing selected: the VM's registers read 0.
    assert_eq!(m.read(reg::VCPUS, 4, 3, None), 0);
    assert_eq!(m.read(reg::NAME, 4, 3, None), 0);
    // Unused offsets, and reads across a register, read 0.
    assert_eq!(m.read(0x30, 4, 3, Some(&i)), 0);
    assert_eq!(m.read(reg::VCPUS + 2, 4, 3, Some(&i)), 0);
    assert_eq!(m.read(reg::RESULT, 4, 3, Some(&i)), CommandResult::None as u64);
}

#[test]
fn commands_are_checked_before_the_hypervisor_sees_them() {
    let mut m = ControlModel::new();
    m.write(reg::SELECT, 4, 1, 3, 0);
    assert_eq!(m.write(reg::COMMAND, 4, 1, 3, 0), Some(Command { code: CommandCode::Stop, vm: 1 }));
    m.finish(CommandResult::Done);
    assert_eq!(m.read(reg::RESULT, 4, 3, None), CommandResult::Done as u64);
    for (select, command, result) in [
        (1, 9, CommandResult::BadCommand),
        (1, 0, CommandResult::BadCommand),
        (3, 1, CommandResult::NoSuchVm),
        (u64::from(u32::MAX), 3, CommandResult::NoSuchVm),
        (0, 2, CommandResult::IsSelf),
    ] {
        m.write(reg::SELECT, 4, select, 3, 0);
        assert_eq!(m.write(reg::COMMAND, 4, command, 3, 0), None, "command {command} on {select}");
        assert_eq!(m.read(reg::RESULT, 4, 3, None), result as u64, "command {command} on {select}");
    }
    // Only 32-bit writes count.
    m.write(reg::SELECT, 4, 2, 3, 0);
    assert_eq!(m.write(reg::COMMAND, 2, 3, 3, 0), None);
    assert_eq!(m.write(reg::SELECT, 1, 1, 3, 0), None);
    assert_eq!(m.selected(), 2);
    assert_eq!(m.write(reg::COMMAND, 4, 3, 3, 0), Some(Command { code: CommandCode::Start, vm: 2 }));
}

#[test]
fn codes_round_trip() {
    for code in [CommandCode::Stop, CommandCode::Restart, CommandCode::Start] {
        assert_eq!(CommandCode::from_u32(code as u32), Some(code));
    }
    for value in 0..7 {
        assert_eq!(CommandResult::from_u32(value).map(|r| r as u32), Some(value));
    }
    assert_eq!(CommandResult::from_u32(7), None);
    for state in [VmState::Off, VmState::Running, VmState::Stopping] {
        assert_eq!(VmState::from_u32(state as u32), Some(state));
    }
}
