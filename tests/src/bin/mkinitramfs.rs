//! `mkinitramfs`: writes a Linux initramfs, an uncompressed cpio archive in
//! the "newc" format (magic `070701`), from a list of entries in the syntax of
//! the kernel's `usr/gen_init_cpio`. The host needs no `cpio`, and device
//! nodes need no root privileges. `tests/scripts/linux-guest.sh` uses it and
//! compresses the result with `gzip -n`.
//!
//! ```text
//! cargo run -p hvtests --bin mkinitramfs -- <LIST> -o <OUT.cpio>
//! ```
//!
//! One entry per line, fields separated by white space, `#` starts a comment:
//!
//! ```text
//! dir   <name> <mode> <uid> <gid>
//! file  <name> <host file> <mode> <uid> <gid>
//! slink <name> <target> <mode> <uid> <gid>
//! nod   <name> <mode> <uid> <gid> <b|c> <major> <minor>
//! ```
//!
//! `<mode>` is the octal permission bits. Names are absolute paths in the
//! archive; a name's parent directory must be listed before it (the kernel
//! does not create missing parents). Every time stamp is 0 and inode numbers
//! count from 1 in list order, so the same list and files give the same
//! archive byte for byte.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: mkinitramfs <LIST> -o <OUT.cpio>
  LIST lines (gen_init_cpio syntax; mode in octal):
    dir   <name> <mode> <uid> <gid>
    file  <name> <host file> <mode> <uid> <gid>
    slink <name> <target> <mode> <uid> <gid>
    nod   <name> <mode> <uid> <gid> <b|c> <major> <minor>";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;

/// What an archive entry is.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    /// A regular file with the contents of this host file.
    File(PathBuf),
    /// A symbolic link to this target.
    Symlink(String),
    /// A device node.
    Node {
        block: bool,
        major: u32,
        minor: u32,
    },
}

/// One line of the list.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// The path in the archive, without the leading `/`.
    name: String,
    kind: Kind,
    /// Permission bits (at most 0o7777).
    perm: u32,
    uid: u32,
    gid: u32,
}

impl Entry {
    fn mode(&self) -> u32 {
        let kind = match self.kind {
            Kind::Dir => S_IFDIR,
            Kind::File(_) => S_IFREG,
            Kind::Symlink(_) => S_IFLNK,
            Kind::Node { block: true, .. } => S_IFBLK,
            Kind::Node { block: false, .. } => S_IFCHR,
        };
        kind | self.perm
    }
}

fn number(field: &str, what: &str, radix: u32) -> Result<u32, String> {
    u32::from_str_radix(field, radix).map_err(|_| format!("bad {what} `{field}`"))
}

fn perm(field: &str) -> Result<u32, String> {
    match number(field, "mode", 8)? {
        p if p <= 0o7777 => Ok(p),
        _ => Err(format!("mode `{field}` is more than permission bits (0..=7777)")),
    }
}

/// The archive name of an absolute path: no leading `/`, no empty, `.` or
/// `..` component.
fn archive_name(path: &str) -> Result<String, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("name `{path}` is not an absolute path"));
    };
    if rest.is_empty() || rest.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("bad name `{path}`"));
    }
    Ok(rest.to_owned())
}

/// Parses one line: `None` for a blank or comment line.
fn parse_line(line: &str) -> Result<Option<Entry>, String> {
    let line = line.split('#').next().unwrap_or("");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let Some((&kind, args)) = fields.split_first() else {
        return Ok(None);
    };
    let want = match kind {
        "dir" => 4,
        "file" | "slink" => 5,
        "nod" => 7,
        _ => return Err(format!("unknown entry type `{kind}` (dir, file, slink, nod)")),
    };
    if args.len() != want {
        return Err(format!("`{kind}` takes {want} fields, found {}", args.len()));
    }
    let name = archive_name(args[0])?;
    let (kind, rest) = match kind {
        "dir" => (Kind::Dir, &args[1..]),
        "file" => (Kind::File(PathBuf::from(args[1])), &args[2..]),
        "slink" => (Kind::Symlink(args[1].to_owned()), &args[2..]),
        _ => {
            let block = match args[4] {
                "b" => true,
                "c" => false,
                other => return Err(format!("device type `{other}` is neither b nor c")),
            };
            let major = number(args[5], "major", 10)?;
            let minor = number(args[6], "minor", 10)?;
            (Kind::Node { block, major, minor }, &args[1..4])
        }
    };
    Ok(Some(Entry {
        name,
        kind,
        perm: perm(rest[0])?,
        uid: number(rest[1], "uid", 10)?,
        gid: number(rest[2], "gid", 10)?,
    }))
}

/// Parses the list and checks that names are unique and that each parent
/// directory comes first.
fn parse_list(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut names = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", i + 1);
        let Some(entry) = parse_line(line).map_err(at)? else {
            continue;
        };
        if let Some((parent, _)) = entry.name.rsplit_once('/') {
            if !dirs.contains(parent) {
                return Err(at(format!("/{parent} is not a directory listed before /{}", entry.name)));
            }
        }
        if !names.insert(entry.name.clone()) {
            return Err(at(format!("/{} is listed twice", entry.name)));
        }
        if entry.kind == Kind::Dir {
            dirs.insert(entry.name.clone());
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Appends one newc header, the name and the data, each padded to 4 bytes.
fn push_record(out: &mut Vec<u8>, ino: u32, entry: Option<&Entry>, name: &str, data: &[u8]) -> Result<(), String> {
    let (mode, uid, gid, nlink, rdev) = match entry {
        Some(e) => {
            let rdev = match e.kind {
                Kind::Node { major, minor, .. } => (major, minor),
                _ => (0, 0),
            };
            (e.mode(), e.uid, e.gid, if e.kind == Kind::Dir { 2 } else { 1 }, rdev)
        }
        None => (0, 0, 0, 1, (0, 0)),
    };
    let size = u32::try_from(data.len()).map_err(|_| format!("/{name} is 4 GiB or more"))?;
    let namesize = u32::try_from(name.len() + 1).map_err(|_| format!("name /{name} too long"))?;
    out.extend_from_slice(b"070701");
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    for field in [ino, mode, uid, gid, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0] {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

/// The archive: the entries in order, then the `TRAILER!!!` record.
/// `read` gives the contents of a `file` entry's host file.
fn archive(entries: &[Entry], read: impl Fn(&Path) -> Result<Vec<u8>, String>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (ino, entry) in (1..).zip(entries) {
        let data = match &entry.kind {
            Kind::File(path) => read(path)?,
            Kind::Symlink(target) => target.as_bytes().to_vec(),
            Kind::Dir | Kind::Node { .. } => Vec::new(),
        };
        push_record(&mut out, ino, Some(entry), &entry.name, &data)?;
    }
    push_record(&mut out, 0, None, "TRAILER!!!", &[])?;
    Ok(out)
}

fn run(args: &[String]) -> Result<String, String> {
    let (list, output) = match args {
        [list, o, out] if o == "-o" => (list, out),
        [o, out, list] if o == "-o" => (list, out),
        _ => return Err(USAGE.to_owned()),
    };
    let text = std::fs::read_to_string(list).map_err(|e| format!("{list}: {e}"))?;
    let entries = parse_list(&text).map_err(|e| format!("{list}: {e}"))?;
    let bytes = archive(&entries, |path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())))?;
    std::fs::write(output, &bytes).map_err(|e| format!("{output}: {e}"))?;
    Ok(format!("mkinitramfs: wrote {output}: {} entries, {} bytes", entries.len(), bytes.len()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.as_slice(), [h] if h == "-h" || h == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("mkinitramfs: error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record read back: (name, mode, nlink, rdev, data).
    type Record = (String, u32, u32, (u32, u32), Vec<u8>);

    /// A minimal newc reader, independent of the writer.
    fn read_back(mut bytes: &[u8]) -> Vec<Record> {
        let mut records = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(offset % 4, 0);
            assert_eq!(&bytes[..6], b"070701");
            let field = |i: usize| {
                let hex = std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(hex, 16).unwrap()
            };
            let (mode, nlink, mtime, size, rdev, namesize) =
                (field(1), field(4), field(5), field(6) as usize, (field(9), field(10)), field(11) as usize);
            assert_eq!(mtime, 0);
            let name = std::str::from_utf8(&bytes[110..110 + namesize - 1]).unwrap().to_owned();
            assert_eq!(bytes[110 + namesize - 1], 0);
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = bytes[data_at..data_at + size].to_vec();
            let next = (data_at + size).next_multiple_of(4);
            let done = name == "TRAILER!!!";
            records.push((name, mode, nlink, rdev, data));
            if done {
                assert_eq!(next, bytes.len());
                return records;
            }
            bytes = &bytes[next..];
            offset += next;
        }
    }

    const LIST: &str = "# a comment\n\
        dir /bin 755 0 0\n\
        file /bin/busybox /host/busybox 755 0 0\n\
        slink /bin/sh busybox 777 0 0   # trailing comment\n\
        \n\
        dir /dev 755 0 0\n\
        nod /dev/console 600 0 0 c 5 1\n\
        nod /dev/ram0 660 0 6 b 1 0\n";

    #[test]
    fn writes_what_the_list_says() {
        let entries = parse_list(LIST).unwrap();
        let bytes = archive(&entries, |path| {
            assert_eq!(path, Path::new("/host/busybox"));
            Ok(b"ELF!x".to_vec())
        })
        .unwrap();
        let rec = |name: &str, mode, nlink, rdev, data: &[u8]| (name.to_owned(), mode, nlink, rdev, data.to_vec());
        assert_eq!(
            read_back(&bytes),
            [
                rec("bin", 0o040_755, 2, (0, 0), b""),
                rec("bin/busybox", 0o100_755, 1, (0, 0), b"ELF!x"),
                rec("bin/sh", 0o120_777, 1, (0, 0), b"busybox"),
                rec("dev", 0o040_755, 2, (0, 0), b""),
                rec("dev/console", 0o020_600, 1, (5, 1), b""),
                rec("dev/ram0", 0o060_660, 1, (1, 0), b""),
                rec("TRAILER!!!", 0, 1, (0, 0), b""),
            ]
        );
        assert_eq!(entries[5].gid, 6);
    }

    #[test]
    fn header_is_110_bytes_then_padded_name() {
        let entries = parse_list("dir /a 700 1 2\n").unwrap();
        let bytes = archive(&entries, |_| unreachable!()).unwrap();
        let expected = concat!(
            "070701", "00000001", "000041c0", "00000001", "00000002", "00000002", "00000000", "00000000", "00000000",
            "00000000", "00000000", "00000000", "00000002", "00000000", "a\0",
        );
        assert_eq!(expected.len(), 112);
        assert_eq!(&bytes[..112], expected.as_bytes());
    }

    #[test]
    fn refuses_bad_lists() {
        for (list, message) in [
            ("file /init 755 0 0\n", "`file` takes 5 fields"),
            ("fifo /x 644 0 0\n", "unknown entry type `fifo`"),
            ("dir bin 755 0 0\n", "not an absolute path"),
            ("dir /a/../b 755 0 0\n", "bad name"),
            ("dir / 755 0 0\n", "bad name"),
            ("dir /a 758 0 0\n", "bad mode `758`"),
            ("dir /a 17777 0 0\n", "more than permission bits"),
            ("nod /c 600 0 0 x 5 1\n", "neither b nor c"),
            ("slink /bin/sh busybox 777 0 0\n", "/bin is not a directory listed before /bin/sh"),
            ("slink /a b 777 0 0\ndir /a/b 755 0 0\n", "line 2: /a is not a directory"),
            ("dir /a 755 0 0\ndir /a 755 0 0\n", "line 2: /a is listed twice"),
        ] {
            let err = parse_list(list).unwrap_err();
            assert!(err.contains(message), "{list:?}: {err}");
        }
    }
}
