//! Host tests of the PCI shim: the config-space model register by register,
//! the DEN0115 calls, and ECAM decoding. The fixture is QEMU `virt`'s PL031
//! RTC and PL061 GPIO as the monitor will present them.

use super::config::{bar, command, offset, status, Bar0, HEADER_DWORDS, VENDOR_ID_ARM};
use super::den0115::{
    dispatch, Sbdf, FUNCTIONS, PCI_FEATURES, PCI_GET_SEG_INFO, PCI_READ, PCI_VERSION, PCI_WRITE, VERSION,
};
use super::ecam::{BUS_SIZE, DEVICE_SIZE, FUNCTION_SIZE};
use super::*;
use crate::abi::{is_smc32, owner_of, Owner};
use AccessSize::{Byte, Half, Word};

const PL031_BASE: u64 = 0x0901_0000;
const PL061_BASE: u64 = 0x0903_0000;
const WINDOW: u64 = 0x1000;
/// QEMU virt: PL031 on SPI 2, PL061 on SPI 7 (GIC INTIDs 34 and 39).
const PL031_LINE: u8 = 34;
const PL061_LINE: u8 = 39;

fn pl031() -> ShimDevice {
    let irq = Some(Intx { pin: Intx::INTA, line: PL031_LINE });
    ShimDevice::new(0x031, ClassCode::for_primecell(0x031), PL031_BASE, WINDOW, irq).unwrap()
}

fn pl061() -> ShimDevice {
    let irq = Some(Intx { pin: Intx::INTA, line: PL061_LINE });
    ShimDevice::new(0x061, ClassCode::for_primecell(0x061), PL061_BASE, WINDOW, irq).unwrap()
}

/// QEMU virt's PL031 and PL061 as devices 0 and 1 on bus 0 (also the
/// fixture of `ea`'s tests).
pub(super) fn virt() -> ConfigSpace<8> {
    ConfigSpace::from_devices(&[pl031(), pl061()]).unwrap()
}

fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf::new(bus, device, function).unwrap()
}

const DEV0: Bdf = Bdf::from_routing_id(0x0000);
const DEV1: Bdf = Bdf::from_routing_id(0x0008);

/// The writable mask of each header dword for a 4 KiB window below 4 GiB:
/// the table in config.rs's documentation.
const EXPECTED_MASKS: [u32; HEADER_DWORDS] = [
    0x0000_0000, // 0x00 IDs
    0x0000_0402, // 0x04 command: memory space, INTx disable; status none
    0x0000_0000, // 0x08 revision, class
    0x0000_00ff, // 0x0c cache line size
    0xffff_f000, // 0x10 BAR0: address bits >= 4 KiB
    0xffff_ffff, // 0x14 BAR1
    0,           // 0x18 BAR2
    0,           // 0x1c BAR3
    0,           // 0x20 BAR4
    0,           // 0x24 BAR5
    0,           // 0x28 CardBus CIS
    0,           // 0x2c subsystem IDs
    0,           // 0x30 expansion ROM
    0,           // 0x34 capabilities pointer
    0,           // 0x38 reserved
    0x0000_00ff, // 0x3c interrupt line
];

// ---------------------------------------------------------------------------
// Config space: identity and layout

#[test]
fn identity_of_the_virt_devices() {
    let space = virt();
    assert_eq!(space.len(), 2);
    assert_eq!(space.bdf(0), Some(DEV0));
    assert_eq!(space.bdf(1), Some(DEV1));
    assert_eq!(space.bdf(2), None);

    assert_eq!(space.read(DEV0, offset::VENDOR_ID, Word), 0x0031_13b5);
    assert_eq!(space.read(DEV1, offset::VENDOR_ID, Word), 0x0061_13b5);
    assert_eq!(space.read(DEV0, offset::VENDOR_ID, Half), u32::from(VENDOR_ID_ARM));
    assert_eq!(space.read(DEV0, offset::DEVICE_ID, Half), 0x031);
    assert_eq!(space.read(DEV1, offset::DEVICE_ID, Byte), 0x61);
    assert_eq!(space.read(DEV1, offset::DEVICE_ID + 1, Byte), 0x00);

    // Revision 0; PL031: RTC 08/03/00; PL061: other system peripheral 08/80/00.
    assert_eq!(space.read(DEV0, offset::REVISION_ID, Word), 0x0803_0000);
    assert_eq!(space.read(DEV1, offset::REVISION_ID, Word), 0x0880_0000);
    assert_eq!(space.read(DEV0, offset::REVISION_ID, Byte), 0);
    assert_eq!(space.read(DEV0, offset::CLASS_CODE, Byte), 0x00);
    assert_eq!(space.read(DEV0, offset::CLASS_CODE + 1, Byte), 0x03);
    assert_eq!(space.read(DEV0, offset::CLASS_CODE + 2, Byte), 0x08);
    assert_eq!(ClassCode::RTC.to_string(), "080300");

    // Type-0 single-function header; no BIST, latency timer 0.
    assert_eq!(space.read(DEV0, 0x0c, Word), 0);
    assert_eq!(space.read(DEV0, offset::HEADER_TYPE, Byte), 0x00);

    // Command at handoff: memory space enabled. Status: nothing, no capabilities.
    assert_eq!(space.read(DEV0, offset::COMMAND, Half), u32::from(command::MEMORY_SPACE));
    assert_eq!(space.read(DEV0, offset::STATUS, Half), 0);
    assert_eq!(space.read(DEV0, offset::CAPABILITIES, Byte), 0);

    // BAR0: 64-bit non-prefetchable memory at the window; BAR1 its high half.
    assert_eq!(space.read(DEV0, offset::BAR0, Word), 0x0901_0004);
    assert_eq!(space.read(DEV1, offset::BAR0, Word), 0x0903_0004);
    assert_eq!(space.read(DEV0, offset::BAR1, Word), 0);
    for unimplemented in [offset::BAR2, 0x1c, 0x20, offset::BAR5, offset::CARDBUS_CIS, offset::EXPANSION_ROM] {
        assert_eq!(space.read(DEV0, unimplemented, Word), 0, "{unimplemented:#x}");
    }
    assert_eq!(space.read(DEV0, offset::SUBSYSTEM_VENDOR_ID, Word), 0);

    // Interrupt: line = the SPI's INTID at handoff, pin INTA; Min_Gnt/Max_Lat 0.
    assert_eq!(space.read(DEV0, offset::INTERRUPT_LINE, Word), 0x0000_0122);
    assert_eq!(space.read(DEV1, offset::INTERRUPT_PIN, Byte), 1);
    assert_eq!(space.read(DEV1, offset::INTERRUPT_LINE, Byte), u32::from(PL061_LINE));
    assert_eq!(space.read(DEV0, offset::MIN_GNT, Half), 0);
}

#[test]
fn reserved_and_extended_space_read_zero_and_ignore_writes() {
    let mut space = virt();
    for at in [0x38, 0x40, 0x44, 0xfc, 0x100, 0x800, 0xffc] {
        space.write(DEV0, at, Word, u32::MAX);
        assert_eq!(space.read(DEV0, at, Word), 0, "{at:#x}");
        assert_eq!(space.read(DEV0, at + 3, Byte), 0, "{at:#x}");
    }
}

#[test]
fn enumeration_like_linux_finds_exactly_the_shim_functions() {
    let space = virt();
    let mut found = Vec::new();
    for device in 0..DEVICES_PER_BUS {
        let at = bdf(0, device, 0);
        let ids = space.read(at, offset::VENDOR_ID, Word);
        if ids & 0xffff == 0xffff {
            continue;
        }
        // Single-function: functions 1..7 need not (and do not) answer.
        assert_eq!(space.read(at, offset::HEADER_TYPE, Byte) & 0x80, 0);
        let class = space.read(at, offset::REVISION_ID, Word) >> 8;
        let pin = space.read(at, offset::INTERRUPT_PIN, Byte);
        found.push((device, ids >> 16, class, pin));
    }
    assert_eq!(found, [(0, 0x031, 0x08_0300, 1), (1, 0x061, 0x08_8000, 1)]);
}

// ---------------------------------------------------------------------------
// Writable masks

#[test]
fn write_mask_table_is_as_documented() {
    assert_eq!(pl031().write_masks(), EXPECTED_MASKS);
    assert_eq!(pl031().write_mask(0x3d), 0xff);
    assert_eq!(pl031().write_mask(0x40), 0);
    assert_eq!(pl031().write_mask(0xfff), 0);
}

/// Writes all-ones and then zeros to every dword of config space, checks
/// that exactly the writable bits change, and that the model's behaviour
/// agrees with its own table.
#[test]
fn every_register_keeps_its_read_only_bits() {
    for (index, mask) in
        (0..(CONFIG_SPACE_SIZE / 4)).map(|i| (i, EXPECTED_MASKS.get(usize::from(i)).copied().unwrap_or(0)))
    {
        let at = index * 4;
        let mut space = virt();
        let before = space.read(DEV0, at, Word);
        space.write(DEV0, at, Word, u32::MAX);
        let ones = space.read(DEV0, at, Word);
        assert_eq!(ones & !mask, before & !mask, "read-only bits of {at:#x} changed");
        assert_eq!(ones & mask, mask, "writable bits of {at:#x} did not take 1s");
        space.write(DEV0, at, Word, 0);
        let zeros = space.read(DEV0, at, Word);
        assert_eq!(zeros & !mask, before & !mask, "read-only bits of {at:#x} changed");
        assert_eq!(zeros & mask, 0, "writable bits of {at:#x} did not take 0s");
        // The other function is untouched.
        assert_eq!(space.read(DEV1, at, Word), virt().read(DEV1, at, Word));
    }
}

/// The same, one byte lane at a time: narrower writes touch only their bytes.
#[test]
fn byte_and_half_writes_touch_only_their_lanes() {
    for (index, mask) in EXPECTED_MASKS.iter().enumerate() {
        let at = u16::try_from(index * 4).unwrap();
        for lane in 0..4u16 {
            let mut space = virt();
            let before = space.read(DEV0, at, Word);
            space.write(DEV0, at + lane, Byte, 0xff);
            let lane_mask = 0xffu32 << (lane * 8) & mask;
            let after = space.read(DEV0, at, Word);
            assert_eq!(after, before | lane_mask, "byte {lane} of {at:#x}");
        }
        for half in [0u16, 2] {
            let mut space = virt();
            let before = space.read(DEV0, at, Word);
            space.write(DEV0, at + half, Half, 0);
            let half_mask = 0xffffu32 << (half * 8) & mask;
            assert_eq!(space.read(DEV0, at, Word), before & !half_mask, "half {half} of {at:#x}");
        }
    }
}

#[test]
fn identity_registers_are_read_only() {
    let mut space = virt();
    let header: Vec<u32> = (0..16).map(|i| space.read(DEV0, i * 4, Word)).collect();
    for at in [offset::VENDOR_ID, offset::REVISION_ID, offset::CAPABILITIES] {
        space.write(DEV0, at, Word, 0x1234_5678);
    }
    space.write(DEV0, offset::DEVICE_ID, Half, 0xbeef);
    space.write(DEV0, offset::HEADER_TYPE, Byte, 0x80);
    space.write(DEV0, offset::LATENCY_TIMER, Byte, 0x40);
    space.write(DEV0, offset::INTERRUPT_PIN, Byte, 2);
    space.write(DEV0, offset::EXPANSION_ROM, Word, u32::MAX);
    space.write(DEV0, offset::BAR2, Word, u32::MAX);
    let after: Vec<u32> = (0..16).map(|i| space.read(DEV0, i * 4, Word)).collect();
    assert_eq!(header, after);
}

// ---------------------------------------------------------------------------
// Command and status

#[test]
fn command_register_intx_disable_and_memory_enable() {
    let mut space = virt();
    space.write(DEV0, offset::COMMAND, Half, 0xffff);
    assert_eq!(space.read(DEV0, offset::COMMAND, Half), 0x0402);
    assert_eq!(space.command(0), Some(command::MEMORY_SPACE | command::INTX_DISABLE));

    // Linux's INTx-masking probe: flip INTx disable, read it back.
    space.write(DEV0, offset::COMMAND, Half, u32::from(command::MEMORY_SPACE));
    assert_eq!(space.read(DEV0, offset::COMMAND, Half), u32::from(command::MEMORY_SPACE));
    space.write(DEV0, offset::COMMAND + 1, Byte, 0x04);
    assert_eq!(space.read(DEV0, offset::COMMAND, Half), 0x0402);

    // I/O space and bus master stay 0.
    space.write(DEV0, offset::COMMAND, Half, u32::from(command::IO_SPACE | command::BUS_MASTER));
    assert_eq!(space.read(DEV0, offset::COMMAND, Half), 0);
    assert_eq!(space.bar0(0).unwrap().decoded(), None);
    assert_eq!(space.command(1), Some(command::AT_HANDOFF));
    assert_eq!(space.command(2), None);
}

#[test]
fn status_interrupt_bit_follows_the_device() {
    let mut space = virt();
    assert_eq!(space.intx_asserted(0), Some(false));
    space.set_irq_pending(0, true).unwrap();
    assert_eq!(space.read(DEV0, offset::STATUS, Half), u32::from(status::INTERRUPT));
    assert_eq!(space.read(DEV0, offset::COMMAND, Word), 0x0008_0002);
    assert_eq!(space.intx_asserted(0), Some(true));
    // The other device's status is its own.
    assert_eq!(space.read(DEV1, offset::STATUS, Half), 0);

    // INTx disable masks the assertion, not the status bit.
    space.write(DEV0, offset::COMMAND, Half, u32::from(command::MEMORY_SPACE | command::INTX_DISABLE));
    assert_eq!(space.read(DEV0, offset::STATUS, Half), u32::from(status::INTERRUPT));
    assert_eq!(space.intx_asserted(0), Some(false));

    // Status has no RW1C bits: writing 1s clears nothing.
    space.write(DEV0, offset::STATUS, Half, 0xffff);
    assert_eq!(space.read(DEV0, offset::STATUS, Half), u32::from(status::INTERRUPT));

    space.set_irq_pending(0, false).unwrap();
    assert_eq!(space.read(DEV0, offset::STATUS, Half), 0);
    assert_eq!(space.set_irq_pending(5, true), Err(ConfigError::NoFunction { index: 5 }));
}

#[test]
fn device_without_interrupt_has_pin_0_and_never_interrupts() {
    let quiet = ShimDevice::new(0x041, ClassCode::OTHER_SYSTEM_PERIPHERAL, 0x0a00_0000, WINDOW, None).unwrap();
    let mut space = ConfigSpace::<1>::from_devices(&[quiet]).unwrap();
    assert_eq!(space.read(DEV0, offset::INTERRUPT_LINE, Half), 0);
    space.set_irq_pending(0, true).unwrap();
    assert_eq!(space.read(DEV0, offset::STATUS, Half), 0);
    assert_eq!(space.intx_asserted(0), Some(false));
}

#[test]
fn interrupt_line_is_read_write_and_pin_read_only() {
    let mut space = virt();
    space.write(DEV0, offset::INTERRUPT_LINE, Byte, 0x5a);
    assert_eq!(space.read(DEV0, offset::INTERRUPT_LINE, Byte), 0x5a);
    space.write(DEV0, offset::INTERRUPT_PIN, Byte, 0x03);
    assert_eq!(space.read(DEV0, offset::INTERRUPT_PIN, Byte), 1);
    // A dword write changes only the line.
    space.write(DEV0, offset::INTERRUPT_LINE, Word, 0xffff_ff11);
    assert_eq!(space.read(DEV0, offset::INTERRUPT_LINE, Word), 0x0000_0111);
    space.write(DEV0, offset::INTERRUPT_LINE, Half, 0x0400);
    assert_eq!(space.read(DEV0, offset::INTERRUPT_LINE, Word), 0x0000_0100);
}

#[test]
fn cache_line_size_is_read_write() {
    let mut space = virt();
    space.write(DEV0, offset::CACHE_LINE_SIZE, Word, 0xffff_ff10);
    assert_eq!(space.read(DEV0, offset::CACHE_LINE_SIZE, Word), 0x10);
}

// ---------------------------------------------------------------------------
// BAR0/BAR1

#[test]
fn bar_sizing_reads_back_the_size_mask_with_type_bits() {
    let mut space = virt();
    let original = space.read(DEV0, offset::BAR0, Word);
    let original_high = space.read(DEV0, offset::BAR1, Word);
    // Linux: memory decode off, all-ones to each half, read, restore.
    space.write(DEV0, offset::COMMAND, Half, 0);
    space.write(DEV0, offset::BAR0, Word, u32::MAX);
    assert_eq!(space.read(DEV0, offset::BAR0, Word), 0xffff_f004);
    assert_eq!(space.read(DEV0, offset::BAR0, Word) & bar::TYPE_MASK, bar::MEMORY_64);
    space.write(DEV0, offset::BAR1, Word, u32::MAX);
    assert_eq!(space.read(DEV0, offset::BAR1, Word), 0xffff_ffff);
    let size_mask = u64::from(space.read(DEV0, offset::BAR1, Word)) << 32
        | u64::from(space.read(DEV0, offset::BAR0, Word) & !bar::TYPE_MASK);
    assert_eq!(size_mask.wrapping_neg(), WINDOW);
    assert_eq!(space.bar0(0).unwrap().decoded(), None, "decoding is off while sizing");

    space.write(DEV0, offset::BAR0, Word, original);
    space.write(DEV0, offset::BAR1, Word, original_high);
    space.write(DEV0, offset::COMMAND, Half, u32::from(command::MEMORY_SPACE));
    assert_eq!(space.read(DEV0, offset::BAR0, Word), 0x0901_0004);
    assert_eq!(space.read(DEV0, offset::BAR1, Word), 0);
    assert_eq!(space.bar0(0).unwrap().decoded(), Some((PL031_BASE, WINDOW)));
}

#[test]
fn bar_type_bits_and_low_address_bits_are_hardwired() {
    let mut space = virt();
    space.write(DEV0, offset::BAR0, Word, 0x0901_0fff);
    assert_eq!(space.read(DEV0, offset::BAR0, Word), 0x0901_0004);
    space.write(DEV0, offset::BAR0, Byte, 0x0b);
    assert_eq!(space.read(DEV0, offset::BAR0, Word), 0x0901_0004);
}

#[test]
fn bar_above_4gib_uses_the_high_half() {
    let base = 0x80_4000_0000;
    let size = 0x10_0000;
    let device = ShimDevice::new(0x061, ClassCode::OTHER_SYSTEM_PERIPHERAL, base, size, None).unwrap();
    let mut space = ConfigSpace::<2>::from_devices(&[device]).unwrap();
    assert_eq!(space.read(DEV0, offset::BAR0, Word), 0x4000_0004);
    assert_eq!(space.read(DEV0, offset::BAR1, Word), 0x80);
    assert_eq!(device.write_masks()[4], 0xfff0_0000);
    assert_eq!(device.write_masks()[5], 0xffff_ffff);
    space.write(DEV0, offset::BAR0, Word, u32::MAX);
    space.write(DEV0, offset::BAR1, Word, u32::MAX);
    assert_eq!(space.read(DEV0, offset::BAR0, Word), 0xfff0_0004);
    assert_eq!(space.read(DEV0, offset::BAR1, Word), 0xffff_ffff);
    space.write(DEV0, offset::BAR0, Word, 0x4000_0000);
    space.write(DEV0, offset::BAR1, Word, 0x80);
    assert_eq!(space.bar0(0).unwrap().address, base);
}

#[test]
fn bar_of_a_window_of_4gib_or_more_has_no_writable_low_bits() {
    let size = 1 << 33;
    let device = ShimDevice::new(0x999, ClassCode::OTHER_SYSTEM_PERIPHERAL, 1 << 34, size, None).unwrap();
    assert_eq!(device.write_masks()[4], 0);
    assert_eq!(device.write_masks()[5], 0xffff_fffe);
    let mut space = ConfigSpace::<1>::from_devices(&[device]).unwrap();
    space.write(DEV0, offset::BAR0, Word, u32::MAX);
    space.write(DEV0, offset::BAR1, Word, u32::MAX);
    assert_eq!(space.read(DEV0, offset::BAR0, Word), 0x0000_0004);
    assert_eq!(space.read(DEV0, offset::BAR1, Word), 0xffff_fffe);
}

/// The documented choice: a BAR write of another address is accepted, and
/// the model reports where the function now decodes, so the hypervisor can
/// move (or withhold) the stage-2 mapping of the device's real window.
#[test]
fn bar_write_of_another_address_is_accepted_and_reported() {
    let mut space = virt();
    assert_eq!(
        space.bar0(1),
        Some(Bar0 { address: PL061_BASE, device_base: PL061_BASE, size: WINDOW, memory_enabled: true })
    );
    space.write(DEV1, offset::BAR0, Word, 0x1000_0000);
    assert_eq!(space.read(DEV1, offset::BAR0, Word), 0x1000_0004);
    let moved = space.bar0(1).unwrap();
    assert_eq!(moved.address, 0x1000_0000);
    assert_eq!(moved.device_base, PL061_BASE, "the device itself does not move");
    assert_eq!(moved.decoded(), Some((0x1000_0000, WINDOW)));
    // The first device's BAR is untouched.
    assert_eq!(space.bar0(0).unwrap().address, PL031_BASE);
    assert_eq!(space.bar0(2), None);
}

// ---------------------------------------------------------------------------
// Absent functions and bad raw accesses

#[test]
fn absent_functions_read_all_ones_and_ignore_writes() {
    let mut space = virt();
    let pristine = virt();
    let absent = [
        bdf(0, 2, 0),  // past the last device
        bdf(0, 31, 0), // last device number
        bdf(0, 0, 1),  // function 1 of a present device
        bdf(0, 1, 7),
        bdf(1, 0, 0), // another bus
        bdf(255, 31, 7),
    ];
    for at in absent {
        assert_eq!(space.read(at, 0, Word), 0xffff_ffff, "{at}");
        assert_eq!(space.read(at, offset::DEVICE_ID, Half), 0xffff, "{at}");
        assert_eq!(space.read(at, offset::INTERRUPT_PIN, Byte), 0xff, "{at}");
        for index in 0..16 {
            space.write(at, index * 4, Word, 0);
        }
        assert_eq!(space.read(at, offset::COMMAND, Word), 0xffff_ffff, "{at}");
    }
    for at in [DEV0, DEV1] {
        for index in 0..16 {
            assert_eq!(space.read(at, index * 4, Word), pristine.read(at, index * 4, Word));
        }
    }
}

#[test]
fn misaligned_and_out_of_range_raw_accesses_read_all_ones_and_are_dropped() {
    let mut space = virt();
    assert_eq!(space.read(DEV0, 1, Half), 0xffff);
    assert_eq!(space.read(DEV0, 2, Word), 0xffff_ffff);
    assert_eq!(space.read(DEV0, 0x3d, Half), 0xffff);
    assert_eq!(space.read(DEV0, CONFIG_SPACE_SIZE, Byte), 0xff);
    assert_eq!(space.read(DEV0, u16::MAX, Byte), 0xff);
    // A misaligned write that would reach the interrupt line does nothing.
    space.write(DEV0, 0x3b, Half, 0xffff);
    space.write(DEV0, 0x3e, Word, 0);
    space.write(DEV0, CONFIG_SPACE_SIZE, Byte, 0);
    assert_eq!(space.read(DEV0, offset::INTERRUPT_LINE, Byte), u32::from(PL031_LINE));
    // Naturally aligned reads just below the end are fine.
    assert_eq!(space.read(DEV0, 0xffc, Word), 0);
    assert_eq!(space.read(DEV0, 0xfff, Byte), 0);
}

// ---------------------------------------------------------------------------
// Construction

#[test]
fn device_windows_and_pins_are_validated() {
    let class = ClassCode::OTHER_SYSTEM_PERIPHERAL;
    assert_eq!(ShimDevice::new(1, class, 0x1000, 0x1800, None), Err(ConfigError::WindowSize { size: 0x1800 }));
    assert_eq!(ShimDevice::new(1, class, 0x1000, 0, None), Err(ConfigError::WindowSize { size: 0 }));
    assert_eq!(ShimDevice::new(1, class, 0x1000, 8, None), Err(ConfigError::WindowSize { size: 8 }));
    assert_eq!(
        ShimDevice::new(1, class, 0x1800, 0x1000, None),
        Err(ConfigError::WindowAlignment { base: 0x1800, size: 0x1000 })
    );
    assert_eq!(
        ShimDevice::new(1, class, 0xffff_ffff_ffff_f000, 0x1000, None),
        Err(ConfigError::WindowOverflow { base: 0xffff_ffff_ffff_f000, size: 0x1000 })
    );
    assert!(ShimDevice::new(1, class, 0x10, 16, None).is_ok());
    for pin in [0, 5, 0xff] {
        let irq = Some(Intx { pin, line: 0 });
        assert_eq!(ShimDevice::new(1, class, 0x1000, 0x1000, irq), Err(ConfigError::InterruptPin { pin }));
    }
    let intd = Some(Intx { pin: Intx::INTD, line: 0 });
    assert_eq!(ShimDevice::new(1, class, 0x1000, 0x1000, intd).unwrap().interrupt_pin(), 4);
    assert_eq!(pl031().window(), (PL031_BASE, WINDOW));
    assert_eq!(pl031().device_id(), 0x031);
    assert_eq!(pl061().class(), ClassCode::OTHER_SYSTEM_PERIPHERAL);
}

#[test]
fn capacity_is_bounded_by_n_and_by_one_bus() {
    let mut two = ConfigSpace::<2>::new();
    assert!(two.is_empty());
    assert_eq!(two.add(pl031()), Ok(DEV0));
    assert_eq!(two.add(pl061()), Ok(DEV1));
    assert_eq!(two.add(pl061()), Err(ConfigError::Full { capacity: 2 }));
    assert_eq!(ConfigSpace::<0>::new().add(pl031()), Err(ConfigError::Full { capacity: 0 }));

    let mut big = ConfigSpace::<40>::new();
    assert_eq!(ConfigSpace::<40>::CAPACITY, 32);
    for device in 0..32 {
        assert_eq!(big.add(pl031()), Ok(bdf(0, device, 0)));
    }
    assert_eq!(big.add(pl031()), Err(ConfigError::Full { capacity: 32 }));
    assert_eq!(big.read(bdf(0, 31, 0), 0, Word), 0x0031_13b5);
    assert_eq!(big.device(31), Some(&pl031()));
    assert_eq!(big.device(32), None);
}

#[test]
fn errors_display() {
    assert_eq!(
        ConfigError::WindowAlignment { base: 0x1800, size: 0x1000 }.to_string(),
        "window base 0x1800 is not aligned to its size 0x1000"
    );
    assert_eq!(ConfigError::Full { capacity: 2 }.to_string(), "config space is full (2 functions)");
    assert_eq!(
        CallError::BusOutOfRange { bus: 1, start: 0, end: 0 }.to_string(),
        "bus 0x01 is outside the segment's buses 0x00..=0x00"
    );
    assert_eq!(
        CallError::Misaligned { offset: 2, size: Word }.to_string(),
        "register offset 0x2 is not aligned for a 4-byte access"
    );
    assert_eq!(Status::InvalidParameter.to_string(), "INVALID_PARAMETER (-2)");
    assert_eq!(bdf(0, 1, 0).to_string(), "00:01.0");
    assert_eq!(Sbdf::from_u32(0x0001_ff0b).to_string(), "0001:ff:01.3");
}

// ---------------------------------------------------------------------------
// Shared addressing

#[test]
fn bdf_and_access_size_rules() {
    assert_eq!(Bdf::new(0, 32, 0), None);
    assert_eq!(Bdf::new(0, 0, 8), None);
    for id in [0u16, 0x0008, 0x00ff, 0x1234, 0xffff] {
        assert_eq!(Bdf::from_routing_id(id).routing_id(), id);
    }
    let b = Bdf::from_routing_id(0x030b);
    assert_eq!((b.bus(), b.device(), b.function()), (3, 1, 3));

    assert_eq!(AccessSize::from_bytes(1), Some(Byte));
    assert_eq!(AccessSize::from_bytes(2), Some(Half));
    assert_eq!(AccessSize::from_bytes(4), Some(Word));
    for bad in [0, 3, 5, 8, u64::MAX] {
        assert_eq!(AccessSize::from_bytes(bad), None);
    }
    assert!(Word.is_aligned(0xffc) && !Word.is_aligned(2) && !Word.is_aligned(1));
    assert!(Half.is_aligned(2) && !Half.is_aligned(3));
    assert!(Byte.is_aligned(0xfff));
}

// ---------------------------------------------------------------------------
// DEN0115

const SEG: SegmentInfo = SegmentInfo::new(0);

fn call(space: &mut ConfigSpace<8>, function_id: u32, args: [u64; 4]) -> [u64; 4] {
    dispatch(function_id, args, space, &SEG)
}

const SUCCESS: u64 = 0;
const NOT_SUPPORTED: u64 = -1i64 as u64;
const INVALID_PARAMETER: u64 = -2i64 as u64;
const NOT_IMPLEMENTED: u64 = -3i64 as u64;

#[test]
fn function_ids_are_den0115s() {
    assert_eq!(PCI_VERSION, 0x8400_0130);
    assert_eq!(PCI_FEATURES, 0x8400_0131);
    assert_eq!(PCI_READ, 0x8400_0132);
    assert_eq!(PCI_WRITE, 0x8400_0133);
    assert_eq!(PCI_GET_SEG_INFO, 0x8400_0134);
    for id in FUNCTIONS {
        assert!(is_smc32(id));
        assert_eq!(owner_of(id), Owner::StandardSecure as u32);
        assert!(den0115::is_pci_call(id));
    }
    assert!(!den0115::is_pci_call(0x8400_0135));
    assert!(!den0115::is_pci_call(0xc400_0132), "there is no SMC64 variant");
}

#[test]
fn status_codes_are_den0115s() {
    assert_eq!(Status::Success.code(), 0);
    assert_eq!(Status::NotSupported.code(), -1);
    assert_eq!(Status::InvalidParameter.code(), -2);
    assert_eq!(Status::NotImplemented.code(), -3);
    assert_eq!(Status::InvalidParameter.x0(), 0xffff_ffff_ffff_fffe);
    for status in [Status::Success, Status::NotSupported, Status::InvalidParameter, Status::NotImplemented] {
        assert_eq!(Status::from_x0(status.x0()), Some(status));
        // An SMC32 result: only w0 counts.
        assert_eq!(Status::from_x0(status.x0() & 0xffff_ffff), Some(status));
    }
    assert_eq!(Status::from_x0(1), None);
    assert_eq!(Status::from_x0(-4i64 as u64), None);
}

#[test]
fn pci_version_is_1_0() {
    let mut space = virt();
    assert_eq!(VERSION, 0x0001_0000);
    let [x0, x1, x2, x3] = call(&mut space, PCI_VERSION, [7, 7, 7, 7]);
    assert_eq!([x0, x1, x2, x3], [0x0001_0000, 0, 0, 0]);
    assert_eq!(x0 >> 31, 0, "bit 31 clear: not an error");
    assert_eq!((x0 >> 16) & 0x7fff, 1);
    assert_eq!(x0 & 0xffff, 0);
}

#[test]
fn pci_features_answers_for_exactly_the_five_calls() {
    let mut space = virt();
    for id in FUNCTIONS {
        assert_eq!(call(&mut space, PCI_FEATURES, [u64::from(id), 0, 0, 0]), [SUCCESS, 0, 0, 0], "{id:#x}");
    }
    for id in [0x8400_0135, 0x8400_012f, 0xc400_0132, 0x8000_0000, 0x8400_0000, 0] {
        assert_eq!(call(&mut space, PCI_FEATURES, [id, 0, 0, 0]), [NOT_SUPPORTED, 0, 0, 0], "{id:#x}");
    }
    // SMC32: the upper half of x1 is not part of the function ID.
    let id = u64::from(PCI_READ) | 0xdead_0000_0000_0000;
    assert_eq!(call(&mut space, PCI_FEATURES, [id, 0, 0, 0]), [SUCCESS, 0, 0, 0]);
}

#[test]
fn unknown_function_ids_are_not_supported() {
    let mut space = virt();
    for id in [0x8400_0135, 0xc400_0130, 0x8400_0000, 0x8600_0130] {
        assert_eq!(call(&mut space, id, [0; 4]), [NOT_SUPPORTED, 0, 0, 0], "{id:#x}");
    }
    assert_eq!(PciCall::decode(0x8400_0135, [0; 4]), Err(CallError::UnknownFunction(0x8400_0135)));
}

#[test]
fn pci_read_reads_the_model() {
    let mut space = virt();
    assert_eq!(call(&mut space, PCI_READ, [0x0000, 0, 4, 0]), [SUCCESS, 0x0031_13b5, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0008, 0, 4, 0]), [SUCCESS, 0x0061_13b5, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0008, 0x10, 4, 0]), [SUCCESS, 0x0903_0004, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0000, 0x0b, 1, 0]), [SUCCESS, 0x08, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0000, 0x3d, 1, 0]), [SUCCESS, 1, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0000, 0x02, 2, 0]), [SUCCESS, 0x031, 0, 0]);
    // Upper halves of x1..x4 are ignored (SMC32).
    let junk = 0xffff_ffff_0000_0000;
    assert_eq!(call(&mut space, PCI_READ, [junk | 0x0008, junk, junk | 4, junk]), [SUCCESS, 0x0061_13b5, 0, 0]);
}

#[test]
fn pci_read_of_an_absent_function_in_range_succeeds_with_all_ones() {
    let mut space = virt();
    assert_eq!(call(&mut space, PCI_READ, [0x0010, 0, 4, 0]), [SUCCESS, 0xffff_ffff, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0001, 0, 2, 0]), [SUCCESS, 0xffff, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x00ff, 0, 1, 0]), [SUCCESS, 0xff, 0, 0]);
    let wide = SegmentInfo::new(3);
    assert_eq!(dispatch(PCI_READ, [0x0300, 0, 4, 0], &mut space, &wide), [SUCCESS, 0xffff_ffff, 0, 0]);
}

#[test]
fn pci_write_writes_the_model() {
    let mut space = virt();
    assert_eq!(call(&mut space, PCI_WRITE, [0x0000, 0x3c, 1, 0x42]), [SUCCESS, 0, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0000, 0x3c, 4, 0]), [SUCCESS, 0x0000_0142, 0, 0]);
    // Only the low `size` bytes of w4 are written.
    assert_eq!(call(&mut space, PCI_WRITE, [0x0000, 0x3c, 1, 0xffff_ff07]), [SUCCESS, 0, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0000, 0x3c, 4, 0]), [SUCCESS, 0x0000_0107, 0, 0]);
    // BAR sizing through the calls.
    assert_eq!(call(&mut space, PCI_WRITE, [0x0008, 0x10, 4, 0xffff_ffff]), [SUCCESS, 0, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0008, 0x10, 4, 0]), [SUCCESS, 0xffff_f004, 0, 0]);
    // Read-only fields stay.
    assert_eq!(call(&mut space, PCI_WRITE, [0x0008, 0, 4, 0]), [SUCCESS, 0, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0008, 0, 4, 0]), [SUCCESS, 0x0061_13b5, 0, 0]);
    // A write to an absent function succeeds and does nothing.
    assert_eq!(call(&mut space, PCI_WRITE, [0x0018, 0x04, 2, 0x0002]), [SUCCESS, 0, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0x0018, 0x04, 2, 0]), [SUCCESS, 0xffff, 0, 0]);
}

#[test]
fn bad_sizes_are_invalid_parameters() {
    let mut space = virt();
    for size in [0, 3, 5, 6, 8, 16, 0xffff_ffff] {
        assert_eq!(call(&mut space, PCI_READ, [0, 0, size, 0]), [INVALID_PARAMETER, 0, 0, 0], "read {size}");
        assert_eq!(call(&mut space, PCI_WRITE, [0, 0x3c, size, 1]), [INVALID_PARAMETER, 0, 0, 0], "write {size}");
    }
    assert_eq!(space.read(DEV0, offset::INTERRUPT_LINE, Byte), u32::from(PL031_LINE));
    assert_eq!(PciCall::decode(PCI_READ, [0, 0, 3, 0]), Err(CallError::AccessSize(3)));
}

#[test]
fn unaligned_accesses_are_invalid_parameters() {
    let mut space = virt();
    for (offset, size) in [(1, 2), (3, 2), (0x3d, 2), (1, 4), (2, 4), (3, 4), (0x3e, 4), (0xffe, 4), (0xfff, 2)] {
        assert_eq!(
            call(&mut space, PCI_READ, [0, offset, size, 0]),
            [INVALID_PARAMETER, 0, 0, 0],
            "{offset:#x}/{size}"
        );
        assert_eq!(
            call(&mut space, PCI_WRITE, [0, offset, size, 0]),
            [INVALID_PARAMETER, 0, 0, 0],
            "{offset:#x}/{size}"
        );
    }
    assert_eq!(PciCall::decode(PCI_READ, [0, 2, 4, 0]), Err(CallError::Misaligned { offset: 2, size: Word }));
    // The last naturally aligned slots are valid.
    assert_eq!(call(&mut space, PCI_READ, [0, 0xffc, 4, 0]), [SUCCESS, 0, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0, 0xffe, 2, 0]), [SUCCESS, 0, 0, 0]);
    assert_eq!(call(&mut space, PCI_READ, [0, 0xfff, 1, 0]), [SUCCESS, 0, 0, 0]);
}

#[test]
fn offsets_at_or_past_4096_are_invalid_parameters() {
    let mut space = virt();
    for offset in [0x1000, 0x1004, 0xffff, 0x1_0000, 0xffff_fffc] {
        assert_eq!(call(&mut space, PCI_READ, [0, offset, 4, 0]), [INVALID_PARAMETER, 0, 0, 0], "{offset:#x}");
        assert_eq!(call(&mut space, PCI_WRITE, [0, offset, 1, 0]), [INVALID_PARAMETER, 0, 0, 0], "{offset:#x}");
    }
    assert_eq!(PciCall::decode(PCI_READ, [0, 0x1000, 4, 0]), Err(CallError::Offset(0x1000)));
}

#[test]
fn buses_beyond_the_segment_are_invalid_parameters() {
    let mut space = virt();
    for bus in [1u64, 2, 0xff] {
        let sbdf = bus << 8;
        assert_eq!(call(&mut space, PCI_READ, [sbdf, 0, 4, 0]), [INVALID_PARAMETER, 0, 0, 0], "bus {bus}");
        assert_eq!(call(&mut space, PCI_WRITE, [sbdf, 4, 2, 0]), [INVALID_PARAMETER, 0, 0, 0], "bus {bus}");
    }
    let wide = SegmentInfo::new(3);
    assert_eq!(dispatch(PCI_READ, [0x0400, 0, 4, 0], &mut space, &wide), [INVALID_PARAMETER, 0, 0, 0]);
    let sbdf = Sbdf::from_u32(0x0400);
    assert_eq!(wide.check(sbdf), Err(CallError::BusOutOfRange { bus: 4, start: 0, end: 3 }));
}

#[test]
fn sbdf_decoding_and_other_segments() {
    let sbdf = Sbdf::from_u32(0x0001_030a);
    assert_eq!(sbdf.segment, 1);
    assert_eq!(sbdf.bdf, bdf(3, 1, 2));
    for raw in [0u32, 0x0000_0008, 0x0001_0000, 0x1234_5678, u32::MAX] {
        assert_eq!(Sbdf::from_u32(raw).to_u32(), raw);
    }
    let mut space = virt();
    for segment in [1u64, 2, 0xffff] {
        let sbdf = segment << 16;
        assert_eq!(call(&mut space, PCI_READ, [sbdf, 0, 4, 0]), [INVALID_PARAMETER, 0, 0, 0], "seg {segment}");
        assert_eq!(call(&mut space, PCI_WRITE, [sbdf, 0x3c, 1, 0]), [INVALID_PARAMETER, 0, 0, 0], "seg {segment}");
    }
    assert_eq!(SEG.check(Sbdf::from_u32(0x0001_0000)), Err(CallError::NoSuchSegment(1)));
    assert_eq!(SEG.check(Sbdf::from_u32(0x0000_0008)), Ok(DEV1));
}

#[test]
fn pci_read_reserved_argument_must_be_zero() {
    let mut space = virt();
    assert_eq!(call(&mut space, PCI_READ, [0, 0, 4, 1]), [INVALID_PARAMETER, 0, 0, 0]);
    assert_eq!(PciCall::decode(PCI_READ, [0, 0, 4, 9]), Err(CallError::Reserved { register: 4, value: 9 }));
    // Only w4 counts: a junk upper half is not a reserved-bit violation.
    assert_eq!(call(&mut space, PCI_READ, [0, 0, 4, 1 << 32]), [SUCCESS, 0x0031_13b5, 0, 0]);
}

#[test]
fn pci_get_seg_info_reports_segment_0() {
    let mut space = virt();
    assert_eq!(call(&mut space, PCI_GET_SEG_INFO, [0, 0, 0, 0]), [SUCCESS, 0x0000, 0, 0]);
    let wide = SegmentInfo::new(0x0f);
    assert_eq!(wide.bus_range(), 0x0f00);
    assert_eq!((wide.bus_start(), wide.bus_end()), (0, 0x0f));
    assert_eq!(dispatch(PCI_GET_SEG_INFO, [0, 0, 0, 0], &mut space, &wide), [SUCCESS, 0x0f00, 0, 0]);
    let [_, range, next, _] = dispatch(PCI_GET_SEG_INFO, [0, 0, 0, 0], &mut space, &SegmentInfo::new(0xff));
    assert_eq!((range & 0xff, (range >> 8) & 0xff, next), (0, 0xff, 0));
}

#[test]
fn pci_get_seg_info_rejects_other_segments_and_reserved_arguments() {
    let mut space = virt();
    for segment in [1u64, 2, 0xffff] {
        assert_eq!(call(&mut space, PCI_GET_SEG_INFO, [segment, 0, 0, 0]), [NOT_IMPLEMENTED, 0, 0, 0]);
    }
    assert_eq!(call(&mut space, PCI_GET_SEG_INFO, [0x1_0000, 0, 0, 0]), [INVALID_PARAMETER, 0, 0, 0]);
    assert_eq!(PciCall::decode(PCI_GET_SEG_INFO, [0x1_0000, 0, 0, 0]), Err(CallError::SegmentNumber(0x1_0000)));
    for reserved in [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]] {
        assert_eq!(call(&mut space, PCI_GET_SEG_INFO, reserved), [INVALID_PARAMETER, 0, 0, 0]);
    }
    // SMC32: x1's upper half does not make segment 0 another segment.
    assert_eq!(call(&mut space, PCI_GET_SEG_INFO, [1 << 40, 0, 0, 0]), [SUCCESS, 0, 0, 0]);
}

#[test]
fn calls_round_trip_through_their_registers() {
    let calls = [
        PciCall::Version,
        PciCall::Features { function_id: PCI_WRITE },
        PciCall::Read { address: Sbdf::from_u32(0x0000_0108), offset: 0x3c, size: Byte },
        PciCall::Write { address: Sbdf::from_u32(0x0000_0008), offset: 0x10, size: Word, value: 0xffff_ffff },
        PciCall::Write { address: Sbdf::from_u32(0x0002_0000), offset: 0x06, size: Half, value: 0xffff },
        PciCall::GetSegInfo { segment: 7 },
    ];
    for call in calls {
        assert_eq!(PciCall::decode(call.function_id(), call.args()), Ok(call), "{call:?}");
    }
    assert_eq!(
        PciCall::Read { address: Sbdf::from_u32(0x0000_0108), offset: 0x3c, size: Byte }.args(),
        [0x0108, 0x3c, 1, 0]
    );
}

#[test]
fn handle_serves_decoded_calls() {
    let mut space = virt();
    let read = PciCall::Read { address: Sbdf::from_u32(0x0008), offset: 0x3d, size: Byte };
    assert_eq!(handle(read, &mut space, &SEG), [SUCCESS, 1, 0, 0]);
    let elsewhere = PciCall::Read { address: Sbdf::from_u32(0x0001_0008), offset: 0, size: Word };
    assert_eq!(handle(elsewhere, &mut space, &SEG), [INVALID_PARAMETER, 0, 0, 0]);
    let features = PciCall::Features { function_id: 0x8400_0140 };
    assert_eq!(handle(features, &mut space, &SEG), [NOT_SUPPORTED, 0, 0, 0]);
}

#[test]
fn every_call_error_has_its_status() {
    use CallError::*;
    let cases = [
        (UnknownFunction(0), Status::NotSupported),
        (AccessSize(3), Status::InvalidParameter),
        (Offset(0x1000), Status::InvalidParameter),
        (Misaligned { offset: 1, size: Half }, Status::InvalidParameter),
        (Reserved { register: 4, value: 1 }, Status::InvalidParameter),
        (SegmentNumber(0x1_0000), Status::InvalidParameter),
        (NoSuchSegment(1), Status::InvalidParameter),
        (BusOutOfRange { bus: 1, start: 0, end: 0 }, Status::InvalidParameter),
        (SegmentNotImplemented(1), Status::NotImplemented),
    ];
    for (error, status) in cases {
        assert_eq!(error.status(), status, "{error}");
    }
}

// ---------------------------------------------------------------------------
// ECAM decoding

#[test]
fn ecam_geometry() {
    assert_eq!(BUS_SIZE, 1 << 20);
    assert_eq!(DEVICE_SIZE, 32 << 10);
    assert_eq!(FUNCTION_SIZE, 4 << 10);
    assert_eq!(EcamWindow::new(0x40_1000_0000, 0, 0).unwrap().size(), 1 << 20);
    assert_eq!(EcamWindow::new(0x40_1000_0000, 0, 255).unwrap().size(), 256 << 20);
    assert_eq!(EcamWindow::new(0x40_1000_0000, 16, 31).unwrap().size(), 16 << 20);
}

#[test]
fn ecam_decode_round_trips() {
    let base = 0x40_1000_0000;
    let window = EcamWindow::new(base, 0, 3).unwrap();
    for bus in 0..=3u8 {
        for device in [0u8, 1, 17, 31] {
            for function in [0u8, 3, 7] {
                for offset in [0u16, 1, 0x3c, 0x100, 0xfff] {
                    let at = bdf(bus, device, function);
                    let addr = window.address(at, offset).unwrap();
                    assert_eq!(
                        addr,
                        base + (u64::from(bus) << 20)
                            + (u64::from(device) << 15)
                            + (u64::from(function) << 12)
                            + u64::from(offset)
                    );
                    assert_eq!(window.decode(addr), Some((at, offset)));
                    assert_eq!(ecam_decode(base, 0, addr), Some((at, offset)));
                }
            }
        }
    }
    assert_eq!(window.decode(base), Some((DEV0, 0)));
    assert_eq!(window.decode(base + 0x8000 + 0x10), Some((DEV1, 0x10)));
}

#[test]
fn ecam_decode_with_a_first_bus_other_than_0() {
    let base = 0x3f00_0000;
    let window = EcamWindow::new(base, 0x10, 0x1f).unwrap();
    assert_eq!(window.decode(base), Some((bdf(0x10, 0, 0), 0)));
    assert_eq!(window.decode(base + (2 << 20) + 0x8004), Some((bdf(0x12, 1, 0), 4)));
    assert_eq!(window.address(bdf(0x1f, 31, 7), 0xfff), Some(base + (16 << 20) - 1));
    assert_eq!(window.address(bdf(0x0f, 0, 0), 0), None);
    assert_eq!(window.address(bdf(0x20, 0, 0), 0), None);
    assert_eq!(window.address(DEV0, 0x1000), None);
    assert_eq!(ecam_decode(base, 0x10, base + (0xef << 20)), Some((bdf(0xff, 0, 0), 0)));
    assert_eq!(ecam_decode(base, 0x10, base + (0xf0 << 20)), None, "past bus 255");
}

#[test]
fn ecam_decode_rejects_addresses_outside_the_window() {
    let base = 0x40_1000_0000;
    let window = EcamWindow::new(base, 0, 0).unwrap();
    assert_eq!(window.decode(base - 1), None);
    assert_eq!(window.decode(0), None);
    assert_eq!(window.decode(base + (1 << 20)), None);
    assert_eq!(window.decode(base + (1 << 20) - 1), Some((bdf(0, 31, 7), 0xfff)));
    assert_eq!(window.decode(u64::MAX), None);
    assert_eq!(ecam_decode(base, 0, base - 4), None);
    assert_eq!(ecam_decode(base, 0, base + (256 << 20)), None);
    assert_eq!(window.address(bdf(1, 0, 0), 0), None);
}

#[test]
fn ecam_window_construction_is_checked() {
    assert_eq!(EcamWindow::new(0, 2, 1), None);
    // The window's end must be representable.
    assert_eq!(EcamWindow::new(u64::MAX - (1 << 20) + 1, 0, 0), None);
    let high = 0xffff_ffff_ffe0_0000;
    let top = EcamWindow::new(high, 0, 0).unwrap();
    assert_eq!(top.decode(high + (1 << 20) - 1), Some((bdf(0, 31, 7), 0xfff)));
    assert_eq!(top.decode(u64::MAX), None);
    assert_eq!(ecam_decode(u64::MAX - 0xfff, 0, u64::MAX), None, "window would wrap");
    let window = EcamWindow::new(0x1000_0000, 1, 2).unwrap();
    assert_eq!((window.base(), window.bus_start(), window.bus_end()), (0x1000_0000, 1, 2));
}

/// The EL2 forwarding path end to end: a guest access in the window becomes
/// a DEN0115 call and is answered from the model.
#[test]
fn ecam_access_forwarded_as_den0115() {
    let base = 0x40_1000_0000;
    let window = EcamWindow::new(base, 0, 0).unwrap();
    let segment = SegmentInfo::new(window.bus_end());
    let mut space = virt();
    let (at, reg) = window.decode(base + 0x8000 + u64::from(offset::BAR0)).unwrap();
    let forwarded = PciCall::Read { address: Sbdf { segment: SegmentInfo::SEGMENT, bdf: at }, offset: reg, size: Word };
    let [x0, x1, _, _] = dispatch(forwarded.function_id(), forwarded.args(), &mut space, &segment);
    assert_eq!(Status::from_x0(x0), Some(Status::Success));
    assert_eq!(x1, 0x0903_0004);
}

/// A function with its own identity and a second, prefetchable window (a
/// portal): BAR2/BAR3 size, move and read back like BAR0, and functions
/// without one keep BAR2 at 0.
#[test]
fn a_second_window_behind_bar2() {
    const REGS: u64 = 0x1_0000_0000;
    const MEMORY: u64 = 0x1_0100_0000;
    let portal = ShimDevice::new(0x7a11, ClassCode { base: 5, sub: 0x80, prog_if: 0 }, REGS, WINDOW, None)
        .unwrap()
        .with_identity(0x1234, 0x7a11)
        .with_bar2(MEMORY, 0x1_0000)
        .unwrap();
    assert_eq!(
        ShimDevice::new(0, ClassCode::RTC, 0, WINDOW, None).unwrap().with_bar2(0x1000, 0x3000),
        Err(ConfigError::WindowSize { size: 0x3000 })
    );
    assert_eq!(
        ShimDevice::new(0, ClassCode::RTC, 0, WINDOW, None).unwrap().with_bar2(0x1000, 0x2000),
        Err(ConfigError::WindowAlignment { base: 0x1000, size: 0x2000 })
    );
    let mut space: ConfigSpace<4> = ConfigSpace::from_devices(&[pl031(), portal]).unwrap();
    let f = bdf(0, 1, 0);
    assert_eq!(space.read(f, offset::VENDOR_ID, Half), 0x1234);
    assert_eq!(space.read(f, offset::DEVICE_ID, Half), 0x7a11);
    assert_eq!(space.read(f, offset::BAR2, Word), 0x0100_0000 | bar::TYPE | bar::PREFETCHABLE);
    assert_eq!(space.read(f, offset::BAR2 + 4, Word), 1);
    // Sizing: all-ones reads back the size mask with the type bits.
    space.write(f, offset::BAR2, Word, u32::MAX);
    space.write(f, offset::BAR2 + 4, Word, u32::MAX);
    assert_eq!(space.read(f, offset::BAR2, Word), 0xffff_0000 | bar::TYPE | bar::PREFETCHABLE);
    assert_eq!(space.read(f, offset::BAR2 + 4, Word), u32::MAX);
    space.write(f, offset::BAR2, Word, 0x0200_0000);
    space.write(f, offset::BAR2 + 4, Word, 2);
    let expected = Bar0 { address: 0x2_0200_0000, device_base: MEMORY, size: 0x1_0000, memory_enabled: true };
    assert_eq!(space.bar2(1), Some(expected));
    // BAR0 is unaffected, and BAR4 still reads 0.
    assert_eq!(space.bar0(1).map(|b| b.address), Some(REGS));
    assert_eq!(space.read(f, offset::BAR2 + 8, Word), 0);
    // The PL031 has no second window: BAR2 reads 0 and ignores writes.
    space.write(bdf(0, 0, 0), offset::BAR2, Word, u32::MAX);
    assert_eq!(space.read(bdf(0, 0, 0), offset::BAR2, Word), 0);
    assert_eq!(space.bar2(0), None);
    space.write(f, offset::COMMAND, Half, 0);
    assert_eq!(space.bar2(1).map(|b| b.memory_enabled), Some(false));
}
