//! The monitor's global state: the board description and the CPU slots,
//! both written once by the boot CPU before any other CPU or any lower EL
//! runs, read-only afterwards.

use platform::board::{Board, MAX_CPUS};
use spin::Once;

static BOARD: Once<Board> = Once::new();

/// CPU slots: slot 0 is the boot CPU, then the DTB's other CPUs in order.
struct Slots {
    mpidr: [u64; MAX_CPUS],
    count: usize,
}

static SLOTS: Once<Slots> = Once::new();

pub fn set_board(board: Board) -> &'static Board {
    BOARD.call_once(|| board)
}

/// The board, once the boot CPU has parsed it.
pub fn try_board() -> Option<&'static Board> {
    BOARD.get()
}

/// The board. Every path that reaches here (SMC handling, secondary CPUs)
/// starts after the boot CPU has set it.
pub fn board() -> &'static Board {
    match BOARD.get() {
        Some(board) => board,
        None => crate::power::fatal(format_args!("board description used before it was parsed")),
    }
}

/// Assigns slots, the boot CPU first; returns them in slot order.
pub fn set_slots(boot_mpidr: u64, dtb_cpus: &[u64]) -> &'static [u64] {
    let slots = SLOTS.call_once(|| {
        let mut slots = Slots { mpidr: [0; MAX_CPUS], count: 1 };
        slots.mpidr[0] = boot_mpidr;
        for &mpidr in dtb_cpus.iter().filter(|&&m| m != boot_mpidr) {
            if slots.count < MAX_CPUS {
                slots.mpidr[slots.count] = mpidr;
                slots.count += 1;
            }
        }
        slots
    });
    &slots.mpidr[..slots.count]
}

/// The slot of the CPU with affinity `mpidr`.
pub fn slot_of(mpidr: u64) -> Option<usize> {
    let slots = SLOTS.get()?;
    slots.mpidr[..slots.count].iter().position(|&m| m == mpidr)
}

/// The affinity of the CPU in `slot`.
pub fn mpidr_of(slot: usize) -> Option<u64> {
    let slots = SLOTS.get()?;
    slots.mpidr[..slots.count].get(slot).copied()
}
