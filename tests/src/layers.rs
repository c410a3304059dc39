//! The hypervisor's layering, checked: `el2/src` is split into layers
//! (`arch`, `mm`, `boot`, `irq`, `vm`, `traps`, bottom to top; see
//! `el2/src/arch/mod.rs`), and a module may name only its own layer and
//! those below it. What a lower layer needs from a higher one, the higher
//! one registers with it (a function pointer), so the arrows stay
//! downwards. `main.rs` and `selftest.rs` sit above every layer.

/// The layers, bottom first.
pub const LAYERS: [&str; 6] = ["arch", "mm", "boot", "irq", "vm", "traps"];

/// Every `crate::<layer>` a line of Rust names, comments left out.
pub fn named_layers(line: &str) -> Vec<&'static str> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(layer) = LAYERS.iter().find(|layer| {
            rest.strip_prefix(*layer).is_some_and(|after| {
                after.starts_with("::") || after.starts_with(|c: char| !c.is_alphanumeric() && c != '_')
            })
        }) {
            found.push(*layer);
        }
    }
    found
}

/// The upward references in `source`, a file of layer `layer`: `(line
/// number, layer named)`.
pub fn upward(layer: &str, source: &str) -> Vec<(usize, &'static str)> {
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let Some(own) = rank(layer) else { return Vec::new() };
    source
        .lines()
        .enumerate()
        .flat_map(|(n, line)| named_layers(line).into_iter().map(move |named| (n + 1, named)))
        .filter(|(_, named)| rank(named).is_some_and(|r| r > own))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read el2/src") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    #[test]
    fn every_el2_module_names_only_its_layer_and_those_below() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../el2/src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut checked = 0;
        let mut problems = Vec::new();
        for file in files {
            let relative = file.strip_prefix(&src).expect("under el2/src");
            let Some(layer) = relative.components().next().and_then(|c| c.as_os_str().to_str()) else { continue };
            if !LAYERS.contains(&layer) {
                continue;
            }
            checked += 1;
            let source = std::fs::read_to_string(&file).expect("read a source file");
            for (line, named) in upward(layer, &source) {
                problems.push(format!("el2/src/{}:{line}: layer `{layer}` names `crate::{named}`", relative.display()));
            }
        }
        assert!(checked >= 30, "only {checked} files found in the layers: has el2/src moved?");
        assert!(problems.is_empty(), "upward references:\n  {}", problems.join("\n  "));
    }

    #[test]
    fn the_check_sees_paths_uses_and_skips_comments() {
        assert_eq!(named_layers("    crate::vm::vgic::sync(vm, vcpu);"), ["vm"]);
        assert_eq!(named_layers("use crate::boot::{cmdline, switch};"), ["boot"]);
        assert_eq!(named_layers("let x = crate::mm::prda::slot(); // crate::traps"), ["mm"]);
        assert!(named_layers("//! see crate::traps::el0").is_empty());
        assert!(named_layers("crate::vmid_like_name").is_empty());
        assert_eq!(upward("irq", "fn f() { crate::vm::get(0); crate::mm::prda::slot(); }"), [(1, "vm")]);
        assert!(upward("traps", "crate::vm::current(); crate::arch::power::fatal()").is_empty());
    }
}
