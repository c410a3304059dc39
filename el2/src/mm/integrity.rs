//! The hypervisor's integrity report: a SHA-256 of its own code and
//! read-only data, taken at boot and again when the guest powers off.
//! Stage 1 maps both read-only, so nothing should change them; the report
//! shows it held (a hostile guest run ends with it), and says so loudly if
//! it did not.

use core::fmt;
use platform::package::{sha256, Sha256Digest};
use spin::Once;

extern "C" {
    static __image_base: u8;
    static __data_start: u8;
}

static AT_BOOT: Once<Sha256Digest> = Once::new();

/// The code and read-only data, as mapped now.
fn text_and_rodata() -> &'static [u8] {
    // SAFETY: linker-defined symbols bounding the image's code and
    // read-only data, which stay mapped readable at these addresses for
    // the hypervisor's lifetime and which nothing writes.
    unsafe {
        let start = core::ptr::addr_of!(__image_base);
        let end = core::ptr::addr_of!(__data_start);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// Takes the boot-time digest (once, at the hypervisor's VA).
pub fn record() {
    let bytes = text_and_rodata();
    let digest = AT_BOOT.call_once(|| sha256(bytes));
    log::info!("integrity: text+rodata {} KiB, sha256 {}", bytes.len() / 1024, Hex(digest));
}

/// Hashes again and reports against the boot-time digest.
pub fn report() {
    let Some(at_boot) = AT_BOOT.get() else { return };
    let now = sha256(text_and_rodata());
    if now == *at_boot {
        log::info!("integrity: text+rodata sha256 {} unchanged since boot", Hex(&now));
    } else {
        log::error!("integrity: text+rodata CHANGED since boot: sha256 {} (was {})", Hex(&now), Hex(at_boot));
    }
}
