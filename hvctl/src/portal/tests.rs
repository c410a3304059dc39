//! Host tests of `hvctl portal`'s pure half: the command line, sysfs
//! discovery in a fake directory tree, the list line, and the request and
//! wait protocols against the register model the hypervisor serves
//! (`platform::portal::PortalModel`).

use super::*;
use crate::Command;
use platform::portal::PortalModel;
use std::cell::{Cell, RefCell};

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn parse(text: &str) -> Result<PortalCommand, UsageError> {
    match Command::parse(words(text)) {
        Ok(Command::Portal(p)) => Ok(p),
        Ok(other) => panic!("{text:?} parsed as {other:?}"),
        Err(e) => Err(e),
    }
}

fn action(text: &str) -> Action {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}")).action
}

#[test]
fn command_lines_parse() {
    assert_eq!(parse("portal list"), Ok(PortalCommand { portal: None, action: Action::List }));
    assert_eq!(action("portal send 1"), Action::Send { op: 1, arg: None });
    assert_eq!(action("portal send 0x1f 0x10"), Action::Send { op: 31, arg: Some(16) });
    // Not an operation, but a request the portal answers (no such
    // operation): hvctl lets it through.
    assert_eq!(action("portal send 40"), Action::Send { op: 40, arg: None });
    assert_eq!(action("portal wait"), Action::Wait { op: None, timeout_ms: DEFAULT_WAIT_MS, poll: false });
    assert_eq!(
        action("portal wait --timeout-ms 250 --poll 3"),
        Action::Wait { op: Some(3), timeout_ms: 250, poll: true }
    );
    assert_eq!(action("portal read 4096 0x10"), Action::Read { offset: 4096, len: 16 });
    assert_eq!(action("portal write 0 hello"), Action::Write { offset: 0, data: Data::Text("hello".into()) });
    assert_eq!(action("portal write 8 -"), Action::Write { offset: 8, data: Data::Stdin });
    assert_eq!(action("portal write 8 -- --text"), Action::Write { offset: 8, data: Data::Text("--text".into()) });
    assert_eq!(parse("portal send --portal 1 0").map(|p| p.portal), Ok(Some(Selector::Position(1))));
    assert_eq!(
        parse("portal read 0 1 --portal 0000:00:02.0").map(|p| p.portal),
        Ok(Some(Selector::Address("0000:00:02.0".into())))
    );
    assert!(crate::USAGE.contains("hvctl portal wait"));
}

#[test]
fn bad_portal_command_lines_are_usage_errors() {
    let bad = |text: &str| parse(text).expect_err(text);
    assert_eq!(bad("portal"), UsageError::MissingArgument("a portal command"));
    assert_eq!(bad("portal open"), UsageError::UnknownCommand("portal open".into()));
    assert_eq!(bad("portal send"), UsageError::MissingArgument("the operation"));
    assert!(matches!(bad("portal send one"), UsageError::BadNumber { what: "operation", .. }));
    assert!(matches!(bad("portal send 0x100000000"), UsageError::BadNumber { what: "operation", .. }));
    assert!(matches!(bad("portal send 1 2 3"), UsageError::UnexpectedArgument(w) if w == "3"));
    assert!(matches!(bad("portal wait 32"), UsageError::BadNumber { .. }));
    assert!(matches!(bad("portal wait --timeout-ms"), UsageError::MissingArgument(_)));
    assert!(matches!(bad("portal wait --timeout-ms soon"), UsageError::BadNumber { what: "timeout", .. }));
    assert!(matches!(bad("portal send --poll 1"), UsageError::UnexpectedArgument(_)));
    assert!(matches!(bad("portal send --portal"), UsageError::MissingArgument(_)));
    assert!(matches!(bad("portal send --portal 0 --portal 1 1"), UsageError::UnexpectedArgument(_)));
    assert!(matches!(bad("portal list --portal 0"), UsageError::UnexpectedArgument(_)));
    assert!(matches!(bad("portal read 0"), UsageError::MissingArgument("the length")));
    assert!(matches!(bad("portal write 0"), UsageError::MissingArgument(_)));
    assert!(matches!(bad("portal write 0 a b"), UsageError::UnexpectedArgument(w) if w == "b"));
}

/// A fake `/sys/bus/pci/devices`, removed when dropped.
struct FakeSysfs(PathBuf);

impl FakeSysfs {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hvctl-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A function with these IDs and `resource` text; `uio` names the
    /// entries of its `uio/` directory (`None`: no directory).
    fn function(&self, address: &str, ids: (&str, &str), resource: Option<&str>, uio: Option<&[&str]>) {
        let dir = self.0.join(address);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vendor"), format!("{}\n", ids.0)).unwrap();
        std::fs::write(dir.join("device"), format!("{}\n", ids.1)).unwrap();
        if let Some(resource) = resource {
            std::fs::write(dir.join("resource"), resource).unwrap();
        }
        for name in uio.into_iter().flatten() {
            std::fs::create_dir_all(dir.join("uio").join(name)).unwrap();
        }
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PORTAL: (&str, &str) = ("0x1234", "0x7a11");
/// BAR0 4 KiB, BAR1 unused, BAR2 64 KiB, then the other resources.
const RESOURCE: &str = "\
0x0000000010040000 0x0000000010040fff 0x0000000000040200
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000008000000000 0x000000800000ffff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
";

#[test]
fn portals_are_found_in_sysfs() {
    let sysfs = FakeSysfs::new("discover");
    sysfs.function("0000:00:00.0", ("0x13b5", "0x0031"), Some(RESOURCE), Some(&["uio0"]));
    sysfs.function("0000:00:02.0", PORTAL, Some(RESOURCE), None);
    sysfs.function("0000:00:01.0", PORTAL, Some(RESOURCE), Some(&["uio3"]));
    // Same device ID, another vendor: not a portal.
    sysfs.function("0000:00:03.0", ("0x1af4", "0x7a11"), None, None);
    let found = discover(&sysfs.0).unwrap();
    assert_eq!(
        found,
        [
            PortalDevice {
                address: "0000:00:01.0".into(),
                path: sysfs.0.join("0000:00:01.0"),
                memory: 0x10000,
                uio: Some("uio3".into())
            },
            PortalDevice {
                address: "0000:00:02.0".into(),
                path: sysfs.0.join("0000:00:02.0"),
                memory: 0x10000,
                uio: None
            },
        ]
    );
    assert!(matches!(discover(&sysfs.0.join("missing")), Err(PortalError::Sysfs { .. })));
}

#[test]
fn a_portal_without_shared_memory_is_an_error() {
    let sysfs = FakeSysfs::new("no-bar2");
    sysfs.function("0000:00:01.0", PORTAL, Some(&RESOURCE.replace("0x000000800000ffff", "0x0")), None);
    let error = discover(&sysfs.0).unwrap_err();
    assert!(matches!(error, PortalError::NoSharedMemory { .. }), "{error}");
    let sysfs = FakeSysfs::new("no-resource");
    sysfs.function("0000:00:01.0", PORTAL, None, None);
    let error = discover(&sysfs.0).unwrap_err();
    assert!(error.to_string().contains("0000:00:01.0/resource"), "{error}");
}

#[test]
fn bar_sizes_come_from_the_resource_file() {
    assert_eq!(bar_size(RESOURCE, 0), Some(0x1000));
    assert_eq!(bar_size(RESOURCE, 1), None);
    assert_eq!(bar_size(RESOURCE, 2), Some(0x10000));
    assert_eq!(bar_size(RESOURCE, 9), None);
    assert_eq!(bar_size("0x10 garbage 0x0", 0), None);
}

fn device(address: &str) -> PortalDevice {
    PortalDevice { address: address.into(), path: PathBuf::new(), memory: 0x10000, uio: None }
}

#[test]
fn a_portal_is_selected_by_position_or_address() {
    let one = [device("0000:00:01.0")];
    let two = [device("0000:00:01.0"), device("0000:00:02.0")];
    assert_eq!(select(&one, None).unwrap().0, 0);
    assert!(matches!(select(&[], None), Err(PortalError::NoPortal)));
    assert!(matches!(select(&two, None), Err(PortalError::Several(2))));
    assert_eq!(select(&two, Some(&Selector::Position(1))).unwrap().1.address, "0000:00:02.0");
    assert_eq!(select(&two, Some(&Selector::Address("00:02.0".into()))).unwrap().0, 1);
    assert_eq!(select(&two, Some(&Selector::Address("0000:00:01.0".into()))).unwrap().0, 0);
    let error = select(&two, Some(&Selector::Position(2))).unwrap_err();
    assert_eq!(error.to_string(), "no portal 2: there are 2 (positions 0 to 1)");
    assert!(matches!(select(&two, Some(&Selector::Address("00:05.0".into()))), Err(PortalError::NoSuchPortal { .. })));
    assert!(matches!(select(&[], Some(&Selector::Position(0))), Err(PortalError::NoPortal)));
}

#[test]
fn shared_memory_accesses_are_bounds_checked() {
    assert_eq!(check_bounds(0, 16, 0x10000).unwrap(), 0..16);
    assert_eq!(check_bounds(0xfff0, 16, 0x10000).unwrap(), 0xfff0..0x10000);
    assert_eq!(check_bounds(0x10000, 0, 0x10000).unwrap(), 0x10000..0x10000);
    let error = check_bounds(0xfff1, 16, 0x10000).unwrap_err();
    assert_eq!(error.to_string(), "16 bytes at offset 0xfff1 do not fit in the shared memory (BAR2) of 0x10000 bytes");
    assert!(check_bounds(u64::MAX, 2, 0x10000).is_err());
}

#[test]
fn list_lines_round_trip() {
    let line = PortalLine {
        position: 0,
        address: "0000:00:01.0".into(),
        index: 0,
        end: 1,
        peer: PeerWord(PeerState::Running as u32),
        allowed: 1,
        peer_allowed: 3,
        memory: 0x10000,
        uio: Some("uio0".into()),
        counters: Counters { sent: 1, refused: 1, peer_down: 0, received: 1 },
    };
    let text = line.to_string();
    assert_eq!(
        text,
        "portal 0: 0000:00:01.0, index 0, end 1, peer running, allowed 0x1, peer allowed 0x3, memory 0x10000 bytes, uio0, sent 1, refused 1, peer down 0, received 1"
    );
    assert_eq!(PortalLine::parse(&text), Some(line.clone()));
    let odd = PortalLine { uio: None, peer: PeerWord(7), ..line };
    let text = odd.to_string();
    assert!(text.contains(", peer unknown-7, ") && text.contains(", no uio, "), "{text}");
    assert_eq!(PortalLine::parse(&text), Some(odd));
    assert_eq!(PortalLine::parse(&text.replace(", received 1", "")), None);
    assert_eq!(PortalLine::parse(&text.replace("end 1", "end one")), None);
    assert_eq!(PortalLine::parse("no portal"), None);
}

/// One end of a portal, served by the hypervisor's own model.
struct ModelEnd<'a> {
    model: &'a RefCell<PortalModel>,
    end: usize,
    peer_running: bool,
    /// Every access, for checking what was written and in which width.
    log: RefCell<Vec<(char, u64, u8)>>,
}

impl<'a> ModelEnd<'a> {
    fn new(model: &'a RefCell<PortalModel>, end: usize) -> Self {
        Self { model, end, peer_running: true, log: RefCell::new(Vec::new()) }
    }

    fn state(&self) -> PeerState {
        if self.peer_running {
            PeerState::Running
        } else {
            PeerState::Off
        }
    }
}

impl Registers for ModelEnd<'_> {
    fn read32(&self, offset: u64) -> u32 {
        self.log.borrow_mut().push(('r', offset, 4));
        self.model.borrow().read(self.end, offset, 4, self.state()) as u32
    }
    fn write32(&self, offset: u64, value: u32) {
        self.log.borrow_mut().push(('w', offset, 4));
        self.model.borrow_mut().write(self.end, offset, 4, u64::from(value), self.peer_running);
    }
    fn read64(&self, offset: u64) -> u64 {
        self.log.borrow_mut().push(('r', offset, 8));
        self.model.borrow().read(self.end, offset, 8, self.state())
    }
    fn write64(&self, offset: u64, value: u64) {
        self.log.borrow_mut().push(('w', offset, 8));
        self.model.borrow_mut().write(self.end, offset, 8, value, self.peer_running);
    }
}

/// The `hv,portal` of the Linux scenario: end 0 may request 0 and 1, end
/// 1 only 0.
fn model() -> RefCell<PortalModel> {
    RefCell::new(PortalModel::new(0, [0b11, 0b01]))
}

#[test]
fn send_writes_argument_then_request_and_reads_the_outcome() {
    let model = model();
    let a = ModelEnd::new(&model, 0);
    assert_eq!(send(&a, 1, Some(16)).unwrap(), Outcome::Delivered);
    assert_eq!(*a.log.borrow(), [('w', reg::ARGUMENT, 8), ('w', reg::REQUEST, 4), ('r', reg::RESULT, 4)]);
    assert_eq!(send(&a, 5, None).unwrap(), Outcome::Refused);
    assert_eq!(send(&a, 40, None).unwrap(), Outcome::NoSuchOperation);
    let b = ModelEnd { peer_running: false, ..ModelEnd::new(&model, 1) };
    assert_eq!(send(&b, 0, None).unwrap(), Outcome::PeerDown);
    assert_eq!(model.borrow().counters(0), Counters { sent: 1, refused: 2, peer_down: 0, received: 0 });
    assert_eq!(model.borrow().counters(1), Counters { sent: 0, refused: 0, peer_down: 1, received: 1 });
    assert_eq!(
        [Outcome::Delivered, Outcome::Refused, Outcome::NoSuchOperation, Outcome::PeerDown, Outcome::None]
            .map(send_exit_status),
        [0, 2, 2, 3, 1]
    );
    let line = read_line(&b, 0, &device("0000:00:01.0")).unwrap();
    assert_eq!((line.index, line.end, line.allowed, line.peer_allowed), (0, 1, 1, 3));
    assert_eq!(line.peer.state(), Some(PeerState::Off));
}

/// An interrupt source that, on its n-th wait, has the peer do something.
struct Scripted<'a> {
    peer: ModelEnd<'a>,
    /// What the peer does at each wait: (operation, argument) to request.
    script: Vec<Option<(u32, u64)>>,
    enables: Cell<u32>,
    waits: usize,
}

impl Interrupt for Scripted<'_> {
    fn enable(&mut self) -> Result<(), PortalError> {
        self.enables.set(self.enables.get() + 1);
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool, PortalError> {
        let step = self.script.get(self.waits).copied();
        self.waits += 1;
        match step {
            Some(Some((op, arg))) => {
                send(&self.peer, op, Some(arg))?;
                Ok(true)
            }
            Some(None) => Ok(false),
            None => {
                std::thread::sleep(timeout.min(Duration::from_millis(5)));
                Ok(false)
            }
        }
    }
}

#[test]
fn wait_takes_a_request_made_before_it_started() {
    let model = model();
    let (a, b) = (ModelEnd::new(&model, 0), ModelEnd::new(&model, 1));
    assert_eq!(send(&a, 1, Some(16)).unwrap(), Outcome::Delivered);
    let mut irq = Scripted { peer: ModelEnd::new(&model, 0), script: vec![], enables: Cell::new(0), waits: 0 };
    let waited = wait(&b, &mut irq, Some(1), Duration::from_secs(5)).unwrap();
    assert_eq!(waited.got, Some((1, 16)));
    assert_eq!(format_got(1, 16), "op 1 arg 0x10");
    assert_eq!((irq.enables.get(), irq.waits), (1, 0), "enabled once, never waited");
    // Acknowledged: the level is down.
    assert!(!model.borrow().level(1));
    assert_eq!(model.borrow().read(1, reg::INT_STATUS, 4, PeerState::Running), 0);
}

#[test]
fn wait_sleeps_until_the_operation_it_wants_and_leaves_others_pending() {
    let model = model();
    let a = ModelEnd::new(&model, 0);
    // End 1 waits for op 1. Its peer's state changed before (acknowledged
    // and reported); the first wait ends with no interrupt, at the second
    // end 0 requests op 0 (not wanted: it stays pending), at the third op 1.
    model.borrow_mut().peer_changed(0);
    let peer = ModelEnd::new(&model, 0);
    let mut irq = Scripted { peer, script: vec![None, Some((0, 7)), Some((1, 0x2a))], enables: Cell::new(0), waits: 0 };
    let b = ModelEnd::new(&model, 1);
    let waited = wait(&b, &mut irq, Some(1), Duration::from_secs(5)).unwrap();
    assert_eq!(waited.got, Some((1, 0x2a)));
    assert_eq!(waited.peer_changes, Some(PeerWord(PeerState::Running as u32)));
    assert_eq!((irq.enables.get(), irq.waits), (4, 3), "re-enabled before each look");
    // Op 0 is still there for whoever waits for it, with its argument.
    let mut idle = Scripted { peer: a, script: vec![], enables: Cell::new(0), waits: 0 };
    assert_eq!(wait(&b, &mut idle, None, Duration::from_secs(5)).unwrap().got, Some((0, 7)));
    assert!(!model.borrow().level(1));
}

#[test]
fn wait_times_out() {
    let model = model();
    let b = ModelEnd::new(&model, 1);
    let mut irq = Scripted { peer: ModelEnd::new(&model, 0), script: vec![], enables: Cell::new(0), waits: 0 };
    let start = Instant::now();
    let waited = wait(&b, &mut irq, Some(0), Duration::from_millis(60)).unwrap();
    assert_eq!(waited, Waited { got: None, peer_changes: None });
    assert!(start.elapsed() >= Duration::from_millis(60) && start.elapsed() < Duration::from_secs(5));
    let mut polling = Polling;
    let waited = wait(&b, &mut polling, None, Duration::from_millis(30)).unwrap();
    assert_eq!(waited.got, None);
}

#[test]
fn the_interrupt_is_enabled_in_the_command_register() {
    assert_eq!((COMMAND_HIGH, INTX_DISABLE_HIGH), (5, 0x04));
    assert_eq!(intx_enable(0x04), Some(0x00));
    assert_eq!(intx_enable(0x06), Some(0x02));
    assert_eq!(intx_enable(0x02), None);
}

#[test]
fn errors_say_what_to_do() {
    let text = PortalError::NoUio { address: "0000:00:01.0".into() }.to_string();
    assert!(text.contains("uio_pci_generic") && text.contains("--poll"), "{text}");
    assert_eq!(PortalError::NoPortal.to_string(), "no portal: no PCI function 0x1234:0x7a11");
    assert!(PortalError::Several(2).to_string().contains("--portal"));
    let text = PortalError::NotAPortal { address: "0000:00:01.0".into(), id: 0 }.to_string();
    assert!(text.contains("0x00000000"), "{text}");
}
