//! `hvvirtio`: the binary, Linux userspace of a service VM (the crate
//! documentation in `lib.rs` has the usage). This file is the Linux part
//! only: finding the backend function in sysfs and binding
//! `uio_pci_generic` to it, mapping its BARs, building the devices, and
//! the wait loop (`poll()` on the uio device and the console input) around
//! `hvvirtio::backend::Backend::service`, which holds the logic and is
//! host-tested.
//!
//! Status lines (start, faults, stats) go to standard error, so that
//! standard output is the client's console alone.

use hvvirtio::cli::{Options, USAGE};
use std::process::ExitCode;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("hvvirtio: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match linux::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hvvirtio: {error}");
            ExitCode::from(1)
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod linux {
    pub fn run(_options: &hvvirtio::cli::Options) -> Result<(), String> {
        Err("the backend runs in a Linux service VM".into())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use hvctl::device::{Regs, Uio};
    use hvctl::pci::{self, PciFunction, Registers};
    use hvctl::portal::Interrupt;
    use hvvirtio::backend::{Backend, ClientInfo, Note, Slot};
    use hvvirtio::blk::Block;
    use hvvirtio::cli::{plan, Options, Plan};
    use hvvirtio::console::Console;
    use hvvirtio::transport::Transport;
    use platform::forward::{reg, DEVICE_ID, ID_VALUE, REGS_SIZE, VENDOR_ID};
    use std::fs::{File, OpenOptions};
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// Where the driver lives once its module is loaded.
    const UIO_DRIVER: &str = "/sys/bus/pci/drivers/uio_pci_generic";
    /// How long binding may take to show a uio device.
    const BIND_WAIT: Duration = Duration::from_secs(2);

    /// Set by SIGTERM and SIGINT; the loop looks at it after each wake-up
    /// (`poll()` returns `EINTR` on a signal).
    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }

    fn install_signal_handlers() -> Result<(), String> {
        for signal in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
            // value; the handler only stores to an atomic, which is
            // async-signal-safe; `sigaction` gets valid pointers.
            let result = unsafe {
                let mut action: libc::sigaction = core::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, core::ptr::null_mut())
            };
            if result != 0 {
                return Err(format!("sigaction: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// A backend function, mapped, with its client.
    struct Found {
        function: PciFunction,
        uio: String,
        regs: Regs,
        client: ClientInfo,
    }

    pub fn run(options: &Options) -> Result<(), String> {
        let functions =
            pci::functions(Path::new(pci::SYSFS_PCI_DEVICES), VENDOR_ID, DEVICE_ID).map_err(|e| e.to_string())?;
        if functions.is_empty() {
            return Err(format!(
                "no backend function (PCI {VENDOR_ID:04x}:{DEVICE_ID:04x}): this VM serves no client's virtio devices"
            ));
        }
        let mut found = Vec::new();
        for function in functions {
            let uio = bind_uio(&function)?;
            let regs = Regs::map(&function.path, REGS_SIZE).map_err(|e| e.to_string())?;
            let id = regs.read32(reg::ID);
            if id != ID_VALUE {
                return Err(format!(
                    "{}: BAR0's ID reads {id:#010x}, not {ID_VALUE:#010x}: is the function's memory decoding on?",
                    function.address
                ));
            }
            let client = ClientInfo::read(&regs);
            found.push(Found { function, uio, regs, client });
        }
        let names = || found.iter().map(|f| f.client.name.as_str()).collect::<Vec<_>>().join(", ");
        let chosen = match &options.client {
            Some(name) => found
                .iter()
                .position(|f| f.client.name == *name)
                .ok_or_else(|| format!("no backend function serves client {name:?}; this VM serves: {}", names()))?,
            None if found.len() > 1 => {
                return Err(format!("this VM serves several clients ({}): choose one with --client NAME", names()))
            }
            None => 0,
        };
        let found = found.swap_remove(chosen);
        serve(found, options)
    }

    /// Makes sure `uio_pci_generic` drives `function`; returns its uio
    /// device's name (`uio0`).
    fn bind_uio(function: &PciFunction) -> Result<String, String> {
        let address = &function.address;
        let driver = std::fs::read_link(function.path.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        match driver.as_deref() {
            Some("uio_pci_generic") => {}
            Some(other) => return Err(format!("{address} is driven by {other}, not uio_pci_generic: unbind it first")),
            None => {
                let driver = Path::new(UIO_DRIVER);
                if !driver.exists() {
                    return Err(format!(
                        "{address} has no driver and uio_pci_generic is not loaded: modprobe uio_pci_generic (CONFIG_UIO_PCI_GENERIC)"
                    ));
                }
                // new_id binds every unbound function of the ID; it fails
                // if the ID was added before, and then `bind` does it.
                let ids = format!("{VENDOR_ID:04x} {DEVICE_ID:04x}");
                if std::fs::write(driver.join("new_id"), &ids).is_err() {
                    std::fs::write(driver.join("bind"), address)
                        .map_err(|e| format!("binding {address} to uio_pci_generic: {e}"))?;
                }
            }
        }
        let deadline = Instant::now() + BIND_WAIT;
        loop {
            let mut names: Vec<String> = std::fs::read_dir(function.path.join("uio"))
                .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            names.sort();
            if let Some(name) = names.into_iter().find(|n| n.starts_with("uio")) {
                return Ok(name);
            }
            if Instant::now() >= deadline {
                return Err(format!("{address}: no uio device appeared after binding uio_pci_generic"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client's RAM: BAR2, write-combining.
    fn map_ram(function: &PciFunction, client: &ClientInfo) -> Result<vm_memory::GuestMemoryMmap, String> {
        let resource = pci::resource(function).map_err(|e| e.to_string())?;
        let bar = pci::bar_size(&resource, 2).unwrap_or(0);
        if client.ram_size == 0 || client.ram_size > bar {
            return Err(format!(
                "{}: the client's RAM ({:#x} bytes) does not fit BAR2 ({bar:#x} bytes)",
                function.address, client.ram_size
            ));
        }
        let path = function.path.join("resource2_wc");
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| {
            format!("{}: {e} (BAR2 must be prefetchable for a write-combining mapping)", path.display())
        })?;
        hvvirtio::memory::from_file(file, client.ram_base, client.ram_size).map_err(|e| e.to_string())
    }

    /// `GET_ID`'s serial: the backing file's name.
    fn serial(path: &Path) -> String {
        path.file_name().map_or_else(|| "hvvirtio".into(), |n| n.to_string_lossy().into_owned())
    }

    fn open_output(path: Option<&PathBuf>) -> Result<Box<dyn Write>, String> {
        match path {
            None => Ok(Box::new(std::io::stdout())),
            Some(path) => OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map(|f| Box::new(f) as Box<dyn Write>)
                .map_err(|e| format!("--console-out {}: {e}", path.display())),
        }
    }

    /// The console's input. A FIFO is opened read-write: this process is
    /// then a writer too, so the FIFO never reads end-of-file when a
    /// writer goes, and the next writer's bytes still come.
    fn open_input(path: Option<&PathBuf>) -> Result<File, String> {
        match path {
            None => {
                let fd = std::os::fd::AsFd::as_fd(&std::io::stdin())
                    .try_clone_to_owned()
                    .map_err(|e| format!("standard input: {e}"))?;
                Ok(File::from(fd))
            }
            Some(path) => {
                let error = |e: std::io::Error| format!("--console-in {}: {e}", path.display());
                let fifo = std::fs::metadata(path).map_err(error)?.file_type().is_fifo();
                OpenOptions::new().read(true).write(fifo).open(path).map_err(error)
            }
        }
    }

    fn serve(found: Found, options: &Options) -> Result<(), String> {
        let Found { function, uio, regs, client } = found;
        let plans = plan(&client, options).map_err(|e| e.to_string())?;
        let mem = map_ram(&function, &client)?;
        let mut slots: Vec<Option<Slot>> = Vec::new();
        let mut described = Vec::new();
        let mut console_index = None;
        for (index, plan) in plans {
            if slots.len() <= index {
                slots.resize_with(index + 1, || None);
            }
            let slot = match plan {
                Plan::Block(arg) => {
                    let what = |e: std::io::Error| format!("--block {}: {e}", arg.path.display());
                    let file = OpenOptions::new().read(true).write(!arg.read_only).open(&arg.path).map_err(what)?;
                    let block = Block::new(file, arg.read_only, &serial(&arg.path)).map_err(what)?;
                    let ro = if arg.read_only { ", read-only" } else { "" };
                    described.push(format!(
                        "device {index} block {} ({} sectors{ro})",
                        arg.path.display(),
                        block.sectors()
                    ));
                    Slot::Block(Transport::new(block))
                }
                Plan::Console => {
                    console_index = Some(index);
                    described.push(format!("device {index} console"));
                    Slot::Console(Transport::new(Console::new(open_output(options.console_out.as_ref())?)))
                }
            };
            if let Some(at) = slots.get_mut(index) {
                *at = Some(slot);
            }
        }
        let mut input = match console_index {
            Some(_) => Some(open_input(options.console_in.as_ref())?),
            None => None,
        };
        let mut irq = Uio::open(&function.path, &uio).map_err(|e| e.to_string())?;
        install_signal_handlers()?;
        eprintln!("hvvirtio: serving client {} ({}, {uio}): {}", client.name, function.address, described.join(", "));
        let mut backend = Backend::new(mem, slots);
        let result = serve_loop(&mut backend, &regs, &mut irq, &mut input, console_index, options.verbose);
        eprintln!("{}", hvvirtio::stats_line(&backend));
        result
    }

    fn serve_loop(
        backend: &mut Backend,
        regs: &Regs,
        irq: &mut Uio,
        input: &mut Option<File>,
        console: Option<usize>,
        verbose: bool,
    ) -> Result<(), String> {
        let mut buf = [0u8; hvvirtio::console::INPUT_LIMIT];
        while !STOP.load(Ordering::Relaxed) {
            // Unmask first, then look: a request that comes after the
            // look fires the (level-triggered) interrupt again.
            irq.enable().map_err(|e| e.to_string())?;
            backend.service(regs);
            report(backend, verbose);
            let room = match console.and_then(|n| backend.slot(n)) {
                Some(Slot::Console(t)) => t.device().input_room(),
                _ => 0,
            };
            // The input only while the console has room: a fast producer
            // then waits in its pipe instead of growing this process.
            let input_fd = input.as_ref().filter(|_| room > 0).map(|f| f.as_raw_fd());
            let mut fds = [
                libc::pollfd { fd: irq.fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: input_fd.unwrap_or(-1), events: libc::POLLIN, revents: 0 },
            ];
            let count = if input_fd.is_some() { 2 } else { 1 };
            // SAFETY: `fds` holds `count` (at most 2) valid pollfds for the
            // duration of the call.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), count, -1) };
            if ready < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll: {error}"));
            }
            let [uio_fd, input_poll] = fds;
            if uio_fd.revents & libc::POLLIN != 0 {
                irq.acknowledge().map_err(|e| e.to_string())?;
            } else if uio_fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                return Err(format!("the uio device failed (poll revents {:#x})", uio_fd.revents));
            }
            if input_fd.is_some() && input_poll.revents != 0 {
                let want = buf.len().min(room);
                let read = match (input.as_mut(), buf.get_mut(..want)) {
                    (Some(file), Some(to)) => file.read(to),
                    _ => Ok(0),
                };
                match read {
                    // End of the input: no more, the backend goes on.
                    Ok(0) => *input = None,
                    Ok(n) => {
                        if let (Some(n_dev), Some(bytes)) = (console, buf.get(..n)) {
                            if let Some(Slot::Console(t)) = backend.slot_mut(n_dev) {
                                t.device_mut().push_input(bytes);
                            }
                            backend.kick(regs, n_dev);
                            report(backend, verbose);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("hvvirtio: console input: {e}; no more input");
                        *input = None;
                    }
                }
            }
        }
        Ok(())
    }

    fn report(backend: &mut Backend, verbose: bool) {
        for note in backend.take_notes() {
            match note {
                Note::ClientReset { state } if verbose => {
                    let state = platform::control::VmState::from_u32(state)
                        .map_or_else(|| format!("state {state}"), |s| format!("{s:?}").to_lowercase());
                    eprintln!("hvvirtio: the client was reset (now {state})");
                }
                Note::ClientReset { .. } => {}
                Note::Fault { device, fault } => eprintln!("hvvirtio: device {device} needs a reset: {fault}"),
            }
        }
    }
}
