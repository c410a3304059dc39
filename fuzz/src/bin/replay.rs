//! Runs a target once on each file given (or each file in each directory):
//! reproduces a crash, or re-checks a corpus, on any toolchain.
//!
//! `cargo run --release --no-default-features --bin replay -- dtb fuzz/corpus/dtb`

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let Some(target) = hv_fuzz::target(&name) else {
        let names: Vec<_> = hv_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: replay TARGET FILE|DIR...; targets: {}", names.join(" "));
        return ExitCode::from(2);
    };
    let mut runs = 0;
    for arg in args {
        let path = Path::new(&arg);
        let files: Vec<_> = if path.is_dir() {
            std::fs::read_dir(path).expect("readable directory").map(|e| e.expect("directory entry").path()).collect()
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            eprintln!("replay {name}: {}", file.display());
            target(&data);
            runs += 1;
        }
    }
    eprintln!("replay {name}: {runs} input(s), no failure");
    ExitCode::SUCCESS
}
