//! Edits of device-tree source as `dtc -I dtb -O dts` prints it (one
//! statement a line, a tab per level), for the scenarios that boot QEMU
//! with a damaged copy of its own device tree (`-dtb`).
//!
//! Nodes are named by path (`/cpus/cpu@1`). Every edit panics if what it
//! should change is not there: a scenario whose damage silently did not
//! happen would pass for the wrong reason.

/// Where a node's lines are: its opening line and its closing `};` line.
fn node_lines(lines: &[String], path: &str) -> (usize, usize) {
    let wanted: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut stack: Vec<&str> = Vec::new();
    let mut open = None;
    for (i, line) in lines.iter().enumerate() {
        let text = line.trim_start_matches('\t');
        if let Some(name) = text.strip_suffix(" {") {
            // The root is `/ {`; it is not part of a path.
            if name != "/" {
                stack.push(name.rsplit(": ").next().unwrap_or(name));
            }
            if open.is_none() && stack == wanted {
                open = Some((i, stack.len()));
            }
        } else if text == "};" {
            if let Some((start, depth)) = open {
                if stack.len() == depth {
                    return (start, i);
                }
            }
            stack.pop();
        }
    }
    panic!("no node {path} in the device tree source");
}

fn edit(dts: &str, path: &str, change: impl FnOnce(&mut Vec<String>, usize, usize)) -> String {
    let mut lines: Vec<String> = dts.lines().map(String::from).collect();
    let (open, close) = node_lines(&lines, path);
    change(&mut lines, open, close);
    lines.join("\n") + "\n"
}

/// The index of `property`'s line among the node's own lines, if any.
fn property_line(lines: &[String], open: usize, close: usize, property: &str) -> Option<usize> {
    let depth = lines[open].len() - lines[open].trim_start_matches('\t').len() + 1;
    (open + 1..close).find(|&i| {
        let line = &lines[i];
        let text = line.trim_start_matches('\t');
        line.len() - text.len() == depth
            && (text == format!("{property};") || text.starts_with(&format!("{property} = ")))
    })
}

/// Removes the node at `path` with everything in it.
pub fn remove_node(dts: &str, path: &str) -> String {
    edit(dts, path, |lines, open, close| {
        lines.drain(open..=close);
    })
}

/// Removes `property` from the node at `path`.
pub fn remove_property(dts: &str, path: &str, property: &str) -> String {
    edit(dts, path, |lines, open, close| {
        let at = property_line(lines, open, close, property).unwrap_or_else(|| panic!("{path} has no {property}"));
        lines.remove(at);
    })
}

/// Sets `property` of the node at `path` to `value` (DTS syntax, e.g.
/// `<0x00 0x9000000 0x00 0x1000>` or `"ns16550a"`), adding it if absent.
pub fn set_property(dts: &str, path: &str, property: &str, value: &str) -> String {
    edit(dts, path, |lines, open, close| {
        let indent = "\t".repeat(lines[open].len() - lines[open].trim_start_matches('\t').len() + 1);
        let line = format!("{indent}{property} = {value};");
        match property_line(lines, open, close, property) {
            Some(at) => lines[at] = line,
            None => lines.insert(open + 1, line),
        }
    })
}

/// Adds `child` (a node's source, without indentation: `name {`, its
/// properties, `};`) at the end of the node at `path`.
pub fn add_node(dts: &str, path: &str, child: &str) -> String {
    edit(dts, path, |lines, open, close| {
        let indent = "\t".repeat(lines[open].len() - lines[open].trim_start_matches('\t').len() + 1);
        let child: Vec<String> = child.lines().map(|l| format!("{indent}{}", l.trim())).collect();
        for (offset, line) in child.into_iter().enumerate() {
            lines.insert(close + offset, line);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DTS: &str = "/dts-v1/;\n\n/ {\n\tintc@8000000 {\n\t\treg = <0x00 0x8000000>;\n\n\t\tits@8080000 {\n\t\t\treg = <0x01>;\n\t\t};\n\t};\n\n\tcpus {\n\t\tcpu@0 {\n\t\t\treg = <0x00>;\n\t\t};\n\t};\n\n\tchosen {\n\t\tstdout-path = \"/pl011@9000000\";\n\t};\n};\n";

    #[test]
    fn removes_a_node_with_its_children() {
        let out = remove_node(DTS, "/intc@8000000");
        assert!(!out.contains("intc@") && !out.contains("its@"), "{out}");
        assert!(out.contains("cpu@0 {") && out.contains("chosen {"), "{out}");
    }

    #[test]
    fn edits_properties_of_nested_nodes_only() {
        let out = set_property(DTS, "/cpus/cpu@0", "reg", "<0x02>");
        assert!(out.contains("\t\t\treg = <0x02>;\n") && out.contains("reg = <0x00 0x8000000>;"), "{out}");
        let out = remove_property(DTS, "/intc@8000000", "reg");
        assert!(!out.contains("0x8000000>") && out.contains("\t\t\treg = <0x01>;"), "the child keeps its reg: {out}");
        let out = set_property(DTS, "/chosen", "hv,bootargs", "\"log=debug\"");
        assert!(out.contains("\tchosen {\n\t\thv,bootargs = \"log=debug\";\n\t\tstdout-path"), "{out}");
    }

    #[test]
    fn adds_a_node_at_the_end_of_another() {
        let out = add_node(DTS, "/chosen", "vm-a {\ncompatible = \"hv,vm\";\n};");
        assert!(
            out.contains(
                "\t\tstdout-path = \"/pl011@9000000\";\n\t\tvm-a {\n\t\tcompatible = \"hv,vm\";\n\t\t};\n\t};"
            ),
            "{out}"
        );
    }

    #[test]
    #[should_panic(expected = "no node /cpus/cpu@1")]
    fn a_missing_node_is_an_error() {
        remove_node(DTS, "/cpus/cpu@1");
    }

    #[test]
    #[should_panic(expected = "has no stdout-path")]
    fn a_missing_property_is_an_error() {
        remove_property(DTS, "/cpus", "stdout-path");
    }
}
