//! VM consoles: an emulated PL011 per VM with `hv,console`
//! (`platform::vpl011`, good enough for Linux's `amba-pl011` driver), all
//! of them sharing the one physical UART through `platform::console_mux`.
//!
//! Output: after every access of a guest to its PL011, the bytes it sent
//! go to the multiplexer, which prints them a line at a time as
//! `name| text`. The hypervisor's own lines (`el2: ...`) go straight to the
//! UART, so the two stay apart. A line without its newline yet (a shell
//! prompt) is printed once its VM has been quiet for 100 ms or so; if
//! anything else prints before the line ends, its rest follows `name+ `.
//!
//! Input: the physical UART's receive interrupt is the hypervisor's (its
//! SPI stays with EL2 in a run with VM descriptions). Each byte goes to the
//! VM in focus; `Ctrl-\` then a digit moves the focus (see
//! `platform::console_mux::HELP`).
//!
//! Interrupts: a VM's PL011 interrupt is a virtual SPI, the host UART's
//! INTID, made pending whenever the model's output is high after an access
//! or a received byte (the model is the level; an access that lowers it
//! leaves at worst one spurious interrupt, which the driver tolerates).

use crate::vm::Vm;
use core::sync::atomic::{AtomicU64, Ordering};
use platform::console_mux::{ConsoleMux, Input};
use platform::mmio::{MmioDevice, MmioFault};
use platform::serial::Serial;
use platform::vpl011::VirtPl011;
use spin::{Mutex, Once};

static MUX: Mutex<ConsoleMux> = Mutex::new(ConsoleMux::new());
/// Which CPU holds [`MUX`] (its MPIDR affinity + 1; 0: none), so that a
/// line the hypervisor logs while this CPU holds it does not wait for
/// itself.
static MUX_HOLDER: AtomicU64 = AtomicU64::new(0);

/// [`MUX`], held by this CPU.
struct Held(spin::MutexGuard<'static, ConsoleMux>);

impl core::ops::Deref for Held {
    type Target = ConsoleMux;
    fn deref(&self) -> &ConsoleMux {
        &self.0
    }
}

impl core::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut ConsoleMux {
        &mut self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        MUX_HOLDER.store(0, Ordering::Release);
    }
}

fn this_cpu() -> u64 {
    platform::arch::mpidr_affinity(platform::arch::this_cpu_mpidr()) + 1
}

/// Takes [`MUX`], waiting for another CPU to let it go.
fn lock_mux() -> Held {
    let guard = MUX.lock();
    MUX_HOLDER.store(this_cpu(), Ordering::Release);
    Held(guard)
}

/// Takes [`MUX`] if it is free now.
fn try_lock_mux() -> Option<Held> {
    let guard = MUX.try_lock()?;
    MUX_HOLDER.store(this_cpu(), Ordering::Release);
    Some(Held(guard))
}
/// The physical UART, for input (output goes through `platform::console`).
static UART: Once<Serial> = Once::new();
/// The virtual INTID of every VM's PL011 (the host UART's SPI).
static INTID: Once<Option<u32>> = Once::new();

/// Prints bytes a VM's line produced, as they are.
fn emit(bytes: &[u8]) {
    platform::console::write_bytes(bytes);
}

/// Boot CPU, once VMs are installed: names the VMs with consoles, takes the
/// physical UART's input for them, and says how to move between them.
pub fn init(vms: &[Vm], uart: Option<Serial>, intid: Option<u32>) {
    INTID.call_once(|| intid);
    let mut mux = lock_mux();
    let mut any = false;
    for vm in vms.iter().filter(|vm| vm.console == crate::vm::Console::Emulated) {
        if let Err(e) = mux.set_name(vm.index, &vm.name) {
            log::warn!("VM {}: console name: {e:?}", vm.name);
        }
        any = true;
    }
    drop(mux);
    if any {
        platform::console::around_each_line(around_line);
    }
    if let (true, Some(uart)) = (any, uart) {
        UART.call_once(|| uart);
        log::info!("{}", platform::console_mux::HELP);
    }
}

/// Once the VMs started at boot run (so that a VM has the focus): the
/// physical UART's input starts to reach them. What was typed before waits
/// in the UART until then.
pub fn start_input() {
    if let Some(uart) = UART.get() {
        uart.enable_rx_interrupts();
    }
}

/// Around each of the hypervisor's own lines (`write` prints it): a VM's
/// line left open (a prompt) is ended first, and the multiplexer is held
/// while the line is written, so that no VM's line, which the multiplexer
/// writes in pieces, can be cut by it. A line logged by a CPU that holds
/// the multiplexer itself is simply written.
pub fn around_line(write: &mut dyn FnMut()) {
    let me = this_cpu();
    loop {
        if let Some(mut mux) = try_lock_mux() {
            mux.break_line(&mut emit);
            write();
            return;
        }
        if MUX_HOLDER.load(Ordering::Acquire) == me {
            write();
            return;
        }
        core::hint::spin_loop();
    }
}

/// A VM's console starts or stops taking input (and its focus moves).
pub fn set_available(vm: &Vm, available: bool) {
    if vm.console != crate::vm::Console::Emulated {
        return;
    }
    let mut mux = lock_mux();
    if !available {
        mux.end_line(vm.index, &mut emit);
    }
    let moved = mux.set_available(vm.index, available).then(|| mux.focus()).flatten();
    drop(mux);
    if let Some(focus) = moved.and_then(crate::vm::get) {
        log::info!("console input goes to VM {}", focus.name);
    }
}

/// A VM's emulated PL011: the register model, and what was typed for it
/// that its receive FIFO (16 bytes) had no room for yet, handed over as the
/// guest reads (a paste is not cut short; a real UART would overrun).
pub struct Port {
    pub model: VirtPl011,
    waiting: [u8; WAITING_MAX],
    head: usize,
    len: usize,
}

/// Input held back per VM; beyond it, bytes are dropped.
const WAITING_MAX: usize = 1024;

impl Port {
    pub const fn new() -> Self {
        Self { model: VirtPl011::new(), waiting: [0; WAITING_MAX], head: 0, len: 0 }
    }

    /// Takes a typed byte: into the FIFO if it has room and nothing waits
    /// before it, else into the waiting queue (dropped when that is full).
    fn type_byte(&mut self, byte: u8) {
        if self.len == 0 && self.model.rx_room() > 0 {
            let _ = self.model.push_rx(byte);
        } else if self.len < WAITING_MAX {
            if let Some(slot) = self.waiting.get_mut((self.head + self.len) % WAITING_MAX) {
                *slot = byte;
                self.len += 1;
            }
        }
    }

    /// Moves waiting bytes into the FIFO as far as it has room.
    fn refill(&mut self) {
        while self.len > 0 && self.model.rx_room() > 0 {
            let byte = self.waiting.get(self.head).copied().unwrap_or(0);
            let _ = self.model.push_rx(byte);
            self.head = (self.head + 1) % WAITING_MAX;
            self.len -= 1;
        }
    }
}

/// Drains what `vm`'s PL011 sent into the multiplexer, hands it waiting
/// input the guest made room for, and raises its interrupt if the model's
/// output is high.
fn after_access(vm: &Vm, port: &mut Port) {
    port.refill();
    let uart = &mut port.model;
    let mut mux = lock_mux();
    uart.drain_tx(|byte| mux.output(vm.index, byte, &mut emit));
    drop(mux);
    if uart.irq_level() {
        if let Some(Some(intid)) = INTID.get() {
            let mask = vm.vgic.lock().set_pending(0, *intid, false);
            crate::vm::vgic::kick_vcpus(vm, mask);
        }
    }
}

/// The physical UART's receive interrupt: every byte waiting goes to the
/// VM in focus (or moves the focus).
pub fn receive() {
    let Some(uart) = UART.get() else { return };
    // Clear first, then drain: a byte that arrives after the last read
    // raises the interrupt again (cleared after the drain, it was lost
    // until the next byte came; seen as typed input stuck half-way).
    uart.clear_rx_interrupts();
    while let Some(byte) = uart.read_byte() {
        let input = lock_mux().input(byte);
        match input {
            Input::ToVm(index, byte) => {
                let Some(vm) = crate::vm::get(index) else { continue };
                let mut port = vm.uart.lock();
                port.type_byte(byte);
                after_access(vm, &mut port);
            }
            Input::FocusChanged(index) => {
                if let Some(vm) = crate::vm::get(index) {
                    log::info!("console input goes to VM {}", vm.name);
                }
            }
            Input::Nothing => {}
        }
    }
}

/// Ticks between two looks for quiet VMs: a prompt appears 100 to 200 ms
/// after its last byte, and a line a busy guest writes slowly is rarely cut.
const TICKS_PER_IDLE_CHECK: u32 = 10;

/// Every tick (boot CPU): now and then, prints the partial lines of VMs
/// that went quiet.
pub fn tick() {
    static TICKS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    if !TICKS.fetch_add(1, core::sync::atomic::Ordering::Relaxed).is_multiple_of(TICKS_PER_IDLE_CHECK) {
        return;
    }
    if let Some(mut mux) = try_lock_mux() {
        mux.tick(&mut emit);
    }
}

/// The device on a VM's bus: its PL011 model.
pub struct Device {
    pub vm: usize,
}

impl MmioDevice for Device {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        let vm = crate::vm::get(self.vm).ok_or(MmioFault::DeviceError { offset })?;
        let mut port = vm.uart.lock();
        let value = port.model.read(offset, size)?;
        after_access(vm, &mut port);
        Ok(value)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        let vm = crate::vm::get(self.vm).ok_or(MmioFault::DeviceError { offset })?;
        let mut port = vm.uart.lock();
        port.model.write(offset, size, value)?;
        after_access(vm, &mut port);
        Ok(())
    }
}
