//! Reading the hypervisor command line (see `platform::cmdline` for the
//! words): from QEMU's fw_cfg file `opt/hv/cmdline` when the board has a
//! fw_cfg device. It is read once, at boot, into a static buffer, and the
//! log level it names takes effect at once.

use platform::board::Board;
use platform::cmdline::Cmdline;
use platform::fw_cfg::{FwCfg, FwCfgError};
use spin::Once;

const FW_CFG_FILE: &str = "opt/hv/cmdline";
const MAX_LEN: usize = 1024;

static TEXT: Once<([u8; MAX_LEN], usize)> = Once::new();

fn read_text(board: &Board) -> &'static str {
    let (bytes, len) = TEXT.call_once(|| {
        let mut buf = [0u8; MAX_LEN];
        let Some(window) = board.fw_cfg else { return (buf, 0) };
        // SAFETY: the fw_cfg window from the DTB, reached with EL2's MMU off;
        // only the boot CPU uses it, once.
        let len = match unsafe { FwCfg::new(window.base as usize) }.and_then(|f| f.read_file(FW_CFG_FILE, &mut buf)) {
            Ok(len) => len,
            Err(FwCfgError::NotFound) => 0,
            Err(e) => {
                log::warn!("command line not read: {e}");
                0
            }
        };
        (buf, len)
    });
    let text = bytes.get(..*len).unwrap_or_default();
    match core::str::from_utf8(text) {
        Ok(text) => text.trim_end_matches('\0').trim(),
        Err(_) => {
            log::warn!("command line is not UTF-8: ignored");
            ""
        }
    }
}

/// Reads and parses the command line, applies its log level, and warns
/// about words it skipped.
pub fn read(board: &Board) -> Cmdline<'static> {
    let cmdline = Cmdline::parse(read_text(board), |bad| log::warn!("{bad}"));
    log::set_max_level(cmdline.log.filter());
    cmdline
}
