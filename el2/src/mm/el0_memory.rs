//! The memory of the deprivileged EL0 service (`crate::traps::el0`): its
//! pages and where its 39-bit address space puts them. Stage 1 maps them
//! (`crate::boot::tables`), the service's caller fills and drains them;
//! both need the layout, so it lives here, below both.

use spin::Mutex;

/// EL0 virtual addresses (39-bit space).
pub mod va {
    /// The image's code and read-only data, at their offsets from the
    /// image start.
    pub const TEXT: u64 = 0x10_0000_0000;
    /// One page of input; nothing is mapped after it.
    pub const INPUT: u64 = 0x20_0000_0000;
    pub const OUTPUT: u64 = 0x21_0000_0000;
    pub const STACK: u64 = 0x30_0000_0000;
}

pub const PAGE: usize = 4096;
pub const INPUT_PAGES: usize = 1;
/// Escaping turns a byte into at most four.
pub const OUTPUT_PAGES: usize = 4;
pub const STACK_PAGES: usize = 4;

/// The service's memory (in .bss; mapped into its space by stage 1).
#[repr(C, align(4096))]
pub struct El0Memory {
    pub input: [[u8; PAGE]; INPUT_PAGES],
    pub output: [[u8; PAGE]; OUTPUT_PAGES],
    pub stack: [[u8; PAGE]; STACK_PAGES],
}

/// One service call at a time, from any CPU.
pub static MEMORY: Mutex<El0Memory> = Mutex::new(El0Memory {
    input: [[0; PAGE]; INPUT_PAGES],
    output: [[0; PAGE]; OUTPUT_PAGES],
    stack: [[0; PAGE]; STACK_PAGES],
});

/// Backing-page physical addresses for stage 1: (input, output, stack).
pub fn pages_pa() -> (u64, u64, u64) {
    let memory = MEMORY.lock();
    (memory.input.as_ptr() as u64, memory.output.as_ptr() as u64, memory.stack.as_ptr() as u64)
}
