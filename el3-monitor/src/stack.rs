//! Stack guards. The monitor runs with its MMU off, so nothing stops a
//! stack that outgrows its `STACK_SIZE` from writing over the stack below
//! it or, for slot 0, over `.noinit` and `.bss` (it happened: the boot path
//! inlined into `monitor_main` took 11.6 KiB of the 16, `pci::init` went
//! past the end, and the cleared board description surfaced much later as
//! "the firmware package ... is in no flash or RAM region"). Each slot's
//! lowest word holds [`CANARY`], set at boot and checked wherever a CPU
//! leaves the monitor for a lower EL; a damaged one stops the system with a
//! line that says what happened.

use core::sync::atomic::{AtomicU64, Ordering};

/// "STACK!!!" in ASCII: what the lowest word of every slot's stack holds.
const CANARY: u64 = 0x2121_214b_4341_5453;

/// The canary word of slot `slot`, if the image has a stack for it.
fn canary(slot: usize) -> Option<&'static AtomicU64> {
    let bottom = platform::arch::stack_bottom(slot)?;
    // SAFETY: the lowest, 8-byte aligned word of that slot's stack, in the
    // image's `.stacks` (MMU off: plain memory); only this module reads or
    // writes it as a word, atomically, and the slot's own code reaches it
    // only by overflowing, which is what the check detects.
    Some(unsafe { AtomicU64::from_ptr(bottom as *mut u64) })
}

/// Boot CPU, at start: sets every slot's canary (the other CPUs, waiting
/// in the pen, use only the top of their stacks).
pub fn arm() {
    for slot in 0..platform::arch::stack_count() {
        if let Some(word) = canary(slot) {
            word.store(CANARY, Ordering::Relaxed);
        }
    }
}

/// Stops the system if slot `slot`'s stack has overflowed.
pub fn check(slot: usize) {
    if canary(slot).is_some_and(|word| word.load(Ordering::Relaxed) != CANARY) {
        crate::power::fatal(format_args!(
            "the monitor's stack of CPU slot {slot} overflowed (its lowest word was overwritten): \
             what lies below it may be damaged"
        ));
    }
}
