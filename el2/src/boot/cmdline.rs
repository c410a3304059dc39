//! The hypervisor command line (see `platform::cmdline` for the words),
//! from the first of these that has one:
//!
//! 1. QEMU's fw_cfg file `opt/hv/cmdline`, where the board has fw_cfg: what
//!    the QEMU command line says for this one run;
//! 2. the firmware package's `hv-cmdline` entry (`mkflash --hv-cmdline`),
//!    which the monitor copied next to us: what this firmware image was
//!    built with;
//! 3. the DTB's `/chosen/hv,bootargs` (how other boards' boot loaders pass
//!    it): a board description, which may come from elsewhere (the ZCU102's
//!    is Debian's, unmodified) and be shared by images built differently.
//!
//! The most specific source wins, and only one is used: words are not
//! merged across sources. Stage 1 reads its bytes once into a static
//! buffer; after the switch it is parsed again and its skipped words are
//! reported.

use platform::board::Board;
use platform::cmdline::Cmdline;
use platform::fw_cfg::{FwCfg, FwCfgError};
use spin::Once;

const FW_CFG_FILE: &str = "opt/hv/cmdline";
/// The longest command line read: what a package may carry, too.
const MAX_LEN: usize = platform::package::HV_CMDLINE_MAX;

/// Where the command line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    None,
    FwCfg,
    Package,
    DeviceTree,
}

impl Source {
    pub const fn describe(self) -> &'static str {
        match self {
            Self::None => "none given",
            Self::FwCfg => "fw_cfg opt/hv/cmdline",
            Self::Package => "firmware package hv-cmdline",
            Self::DeviceTree => "DT /chosen/hv,bootargs",
        }
    }
}

/// The bytes read, where from, and why none were if a read failed.
struct Text {
    bytes: [u8; MAX_LEN],
    len: usize,
    source: Source,
    error: Option<FwCfgError>,
}

static TEXT: Once<Text> = Once::new();

/// Stage 1: reads the command line from fw_cfg (MMU off: the window is
/// reached at its physical address) or, failing that, takes the package's
/// (`package`, the bytes the monitor copied) or `dtb`'s.
pub fn load(board: &Board, dtb: &[u8], package: Option<&[u8]>) {
    TEXT.call_once(|| {
        let mut text = Text { bytes: [0; MAX_LEN], len: 0, source: Source::None, error: None };
        if let Some(window) = board.fw_cfg {
            // SAFETY: the fw_cfg window from the DTB, reached with EL2's MMU
            // off; only the boot CPU uses it, once.
            match unsafe { FwCfg::new(window.base as usize) }.and_then(|f| f.read_file(FW_CFG_FILE, &mut text.bytes)) {
                Ok(len) => {
                    text.len = len;
                    text.source = Source::FwCfg;
                    return text;
                }
                Err(FwCfgError::NotFound) => {}
                Err(e) => text.error = Some(e),
            }
        }
        let (value, source) = match package {
            Some(value) => (Some(value), Source::Package),
            None => (platform::board::chosen_property(dtb, "hv,bootargs").ok().flatten(), Source::DeviceTree),
        };
        if let Some(value) = value {
            let len = value.len().min(MAX_LEN);
            text.bytes[..len].copy_from_slice(&value[..len]);
            text.len = len;
            text.source = source;
        }
        text
    });
}

/// Where the command line came from.
pub fn source() -> Source {
    TEXT.get().map_or(Source::None, |t| t.source)
}

/// The command line's text ("" if there is none or it is not UTF-8).
pub fn text() -> &'static str {
    let Some(text) = TEXT.get() else { return "" };
    let bytes = text.bytes.get(..text.len).unwrap_or_default();
    core::str::from_utf8(bytes).map_or("", |t| t.trim_end_matches('\0').trim())
}

/// Parses the command line; `report` says so about every word skipped.
pub fn parse(report: bool) -> Cmdline<'static> {
    if report {
        if let Some(e) = TEXT.get().and_then(|t| t.error) {
            log::warn!("command line not read: {e}");
        }
        if TEXT.get().is_some_and(|t| core::str::from_utf8(t.bytes.get(..t.len).unwrap_or_default()).is_err()) {
            log::warn!("command line is not UTF-8: ignored");
        }
    }
    Cmdline::parse(text(), |bad| {
        if report {
            log::warn!("{bad}");
        }
    })
}
