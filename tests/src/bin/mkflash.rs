//! `mkflash`: builds the QEMU `-bios` image from the three firmware ELFs,
//! or with `--package-only` the firmware package alone (for a board that
//! loads the monitor's ELF and the package separately, e.g. zcu102).
//!
//! ```text
//! cargo run -p hvtests --bin mkflash -- \
//!     --monitor <ELF> --hypervisor <ELF> --guest-stub <ELF> -o build/flash.bin
//! cargo run -p hvtests --bin mkflash -- \
//!     --package-only --hypervisor <ELF> --guest-stub <ELF> -o build/zcu102/package.bin
//! ```
//!
//! Either may carry a Linux guest and the hypervisor's command line as
//! optional package entries: `--linux-kernel <Image>`, `--linux-initrd
//! <FILE>`, `--linux-cmdline <TEXT>`, `--hv-cmdline <TEXT>` (the monitor
//! hands them to the hypervisor; docs/linux-guest.md).
//!
//! The layout rules live in `hvtests::flash` and `hvtests::elf` (unit tested
//! there); this file only wires the command line to them and reports.

use std::process::ExitCode;

use hvtests::flash::{self, Command, USAGE};

fn main() -> ExitCode {
    let result = Command::parse(std::env::args_os().skip(1)).and_then(|cmd| match cmd {
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Command::Build(args) => {
            let image = flash::run(&args)?;
            println!("mkflash: wrote {}", args.output.display());
            print!("{}", image.summary());
            Ok(())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mkflash: error: {err}");
            ExitCode::FAILURE
        }
    }
}
