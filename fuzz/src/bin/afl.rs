//! The stable driver: AFL++ (through `cargo afl`) runs this binary with the
//! target's name; inputs arrive in persistent mode.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let target = hv_fuzz::target(&name).unwrap_or_else(|| panic!("no fuzz target {name:?}"));
    afl::fuzz!(|data: &[u8]| target(data));
}
