//! The trap frame and the exception-vector template shared by every image.
//!
//! Each image instantiates [`exception_vectors!`] once with its exception
//! level and a handler `extern "C" fn(&mut TrapFrame, ExceptionKind)`. Every
//! vector saves the general-purpose registers, `ELR_ELx` and `SPSR_ELx` into a
//! [`TrapFrame`] on the current stack, calls the handler, and restores the
//! (possibly modified) frame before `eret`. A handler therefore answers a
//! trap by editing the frame: results in `x0..x3`, a new `elr` to skip an
//! instruction or to enter a lower EL's vector.

/// The state an exception vector saves. Layout is shared with the vector asm:
/// `x0..x30` at offset 0, then `elr`, then `spsr`.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    /// Keeps the frame a multiple of 16 bytes, as the stack pointer must stay.
    pub _pad: u64,
}

/// Size of [`TrapFrame`] as the asm sees it.
pub const TRAP_FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(TRAP_FRAME_SIZE.is_multiple_of(16));
const _: () = assert!(core::mem::offset_of!(TrapFrame, elr) == 31 * 8);

/// Where an exception came from, in vector-table order: the vector's index
/// is `source * 4 + type`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionKind(pub u64);

/// Which group of four vectors took the exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionSource {
    /// Same EL, on `SP_EL0`.
    CurrentSp0,
    /// Same EL, on `SP_ELx`.
    CurrentSpx,
    /// A lower EL in AArch64.
    LowerA64,
    /// A lower EL in AArch32.
    LowerA32,
}

/// Which of the four vectors in a group took the exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionType {
    Sync,
    Irq,
    Fiq,
    SError,
}

/// Bytes of vector table per [`ExceptionSource`] group (four 128-byte entries).
pub const VECTOR_GROUP_SIZE: u64 = 0x200;
/// Bytes of vector table per entry ([`ExceptionType`]).
pub const VECTOR_ENTRY_SIZE: u64 = 0x80;

impl ExceptionSource {
    /// Offset of this group's first (synchronous) entry from `VBAR_ELx`:
    /// 0x000, 0x200, 0x400, 0x600 in declaration order.
    pub const fn vector_offset(self) -> u64 {
        match self {
            Self::CurrentSp0 => 0,
            Self::CurrentSpx => VECTOR_GROUP_SIZE,
            Self::LowerA64 => 2 * VECTOR_GROUP_SIZE,
            Self::LowerA32 => 3 * VECTOR_GROUP_SIZE,
        }
    }
}

impl ExceptionType {
    /// Offset of this entry within its group: 0x000, 0x080, 0x100, 0x180.
    pub const fn vector_offset(self) -> u64 {
        match self {
            Self::Sync => 0,
            Self::Irq => VECTOR_ENTRY_SIZE,
            Self::Fiq => 2 * VECTOR_ENTRY_SIZE,
            Self::SError => 3 * VECTOR_ENTRY_SIZE,
        }
    }
}

impl ExceptionKind {
    pub const fn source(self) -> ExceptionSource {
        match (self.0 >> 2) & 3 {
            0 => ExceptionSource::CurrentSp0,
            1 => ExceptionSource::CurrentSpx,
            2 => ExceptionSource::LowerA64,
            _ => ExceptionSource::LowerA32,
        }
    }

    pub const fn kind(self) -> ExceptionType {
        match self.0 & 3 {
            0 => ExceptionType::Sync,
            1 => ExceptionType::Irq,
            2 => ExceptionType::Fiq,
            _ => ExceptionType::SError,
        }
    }

    /// Whether the exception came from a lower exception level.
    pub const fn from_lower_el(self) -> bool {
        matches!(self.source(), ExceptionSource::LowerA64 | ExceptionSource::LowerA32)
    }
}

impl core::fmt::Display for ExceptionKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?} from {:?}", self.kind(), self.source())
    }
}

/// Emits an exception vector table named `$table` for exception level `$el`
/// (1, 2 or 3) whose every entry saves a [`TrapFrame`], calls
/// `$handler(&mut TrapFrame, ExceptionKind)` and returns with `eret`.
#[macro_export]
macro_rules! exception_vectors {
    ($table:literal, $el:literal, $handler:path) => {
        core::arch::global_asm!(
            concat!(".section .text.vectors, \"ax\"\n",
                    ".balign 2048\n",
                    ".global ", $table, "\n",
                    $table, ":\n"),
            r#"
            .set vector_index, 0
            .rept 16
            .balign 128
                sub     sp, sp, #{frame_size}
                stp     x0, x1, [sp, #0]
                mov     x1, #vector_index
                b       9f
            .set vector_index, vector_index + 1
            .endr
        9:
                stp     x2, x3, [sp, #16 * 1]
                stp     x4, x5, [sp, #16 * 2]
                stp     x6, x7, [sp, #16 * 3]
                stp     x8, x9, [sp, #16 * 4]
                stp     x10, x11, [sp, #16 * 5]
                stp     x12, x13, [sp, #16 * 6]
                stp     x14, x15, [sp, #16 * 7]
                stp     x16, x17, [sp, #16 * 8]
                stp     x18, x19, [sp, #16 * 9]
                stp     x20, x21, [sp, #16 * 10]
                stp     x22, x23, [sp, #16 * 11]
                stp     x24, x25, [sp, #16 * 12]
                stp     x26, x27, [sp, #16 * 13]
                stp     x28, x29, [sp, #16 * 14]
                mrs     x2, elr_el{el}
                stp     x30, x2, [sp, #16 * 15]
                mrs     x3, spsr_el{el}
                str     x3, [sp, #16 * 16]
                mov     x0, sp
                bl      {handler}
                ldr     x3, [sp, #16 * 16]
                msr     spsr_el{el}, x3
                ldp     x30, x2, [sp, #16 * 15]
                msr     elr_el{el}, x2
                ldp     x28, x29, [sp, #16 * 14]
                ldp     x26, x27, [sp, #16 * 13]
                ldp     x24, x25, [sp, #16 * 12]
                ldp     x22, x23, [sp, #16 * 11]
                ldp     x20, x21, [sp, #16 * 10]
                ldp     x18, x19, [sp, #16 * 9]
                ldp     x16, x17, [sp, #16 * 8]
                ldp     x14, x15, [sp, #16 * 7]
                ldp     x12, x13, [sp, #16 * 6]
                ldp     x10, x11, [sp, #16 * 5]
                ldp     x8, x9, [sp, #16 * 4]
                ldp     x6, x7, [sp, #16 * 3]
                ldp     x4, x5, [sp, #16 * 2]
                ldp     x2, x3, [sp, #16 * 1]
                ldp     x0, x1, [sp, #16 * 0]
                add     sp, sp, #{frame_size}
                eret
            "#,
            el = const $el,
            frame_size = const $crate::arch::trap::TRAP_FRAME_SIZE,
            handler = sym $handler,
        );
    };
}

/// Everything a handler knows about an exception it cannot answer, printed
/// as one line: what was taken, from which EL, the decoded syndrome, and
/// the addresses.
#[derive(Clone, Copy, Debug)]
pub struct ExceptionReport {
    pub kind: ExceptionKind,
    pub esr: crate::esr::Esr,
    pub far: u64,
    pub elr: u64,
    pub spsr: u64,
}

impl core::fmt::Display for ExceptionReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} taken from {}: ESR {}, FAR {:#x}, ELR {:#x}, SPSR {:#x}",
            self.kind,
            super::ExceptionLevel::from_spsr(self.spsr),
            self.esr,
            self.far,
            self.elr,
            self.spsr
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_index_decodes_source_and_type() {
        let k = ExceptionKind(8); // first vector of the lower-EL AArch64 group
        assert_eq!(k.source(), ExceptionSource::LowerA64);
        assert_eq!(k.kind(), ExceptionType::Sync);
        assert!(k.from_lower_el());
        let k = ExceptionKind(5);
        assert_eq!(k.source(), ExceptionSource::CurrentSpx);
        assert_eq!(k.kind(), ExceptionType::Irq);
        assert!(!k.from_lower_el());
        assert_eq!(ExceptionKind(15).kind(), ExceptionType::SError);
        assert_eq!(ExceptionKind(15).source(), ExceptionSource::LowerA32);
    }

    #[test]
    fn vector_offsets_match_the_vector_index() {
        for index in 0..16u64 {
            let k = ExceptionKind(index);
            assert_eq!(k.source().vector_offset() + k.kind().vector_offset(), index * VECTOR_ENTRY_SIZE);
        }
        assert_eq!(ExceptionSource::LowerA64.vector_offset(), 0x400);
        assert_eq!(ExceptionType::SError.vector_offset(), 0x180);
    }

    #[test]
    fn report_names_class_level_and_addresses() {
        let report = ExceptionReport {
            kind: ExceptionKind(8),
            esr: crate::esr::Esr(0x9600_0010),
            far: 0x1234_0000,
            elr: 0x4008_0000,
            spsr: 0x3c5,
        };
        let text = std::format!("{report}");
        assert!(text.contains("Sync from LowerA64 taken from EL1"), "{text}");
        assert!(text.contains("DataAbortSame, synchronous external abort"), "{text}");
        assert!(text.contains("FAR 0x12340000"), "{text}");
        assert!(text.contains("ELR 0x40080000"), "{text}");
    }
}
