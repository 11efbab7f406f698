//! Collects the rules. Every file under `src/rules/<group>/` other than the
//! group's `mod.rs` is one rule, whose unit struct is the file's name in
//! CamelCase (`double_sigmoid.rs` declares `struct DoubleSigmoid;`). This
//! writes each group's module declarations (`rules_<group>.rs`, which the
//! group's `mod.rs` includes) and the registry (`rules.rs`, which
//! `src/rules/mod.rs` includes), so that adding a rule is adding its file
//! (`scripts/new-rule.py` writes one, with its page and a fixture).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=src/rules");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let rules = manifest.join("src").join("rules");
    let mut registry = String::from("static RULES: &[&dyn Rule] = &[\n");
    for group in sorted(&rules).into_iter().filter(|p| p.is_dir()) {
        let group_name = file_stem(&group);
        let mut modules = String::new();
        for file in sorted(&group) {
            let name = file_stem(&file);
            if file.extension().is_none_or(|x| x != "rs") || name == "mod" {
                continue;
            }
            let rule = camel_case(&name);
            let text = fs::read_to_string(&file).unwrap_or_default();
            if !text.contains(&format!("struct {rule};")) {
                panic!(
                    "{}: a rule's file declares its rule as `pub(crate) struct {rule};`",
                    file.display()
                );
            }
            let _ = writeln!(
                modules,
                "#[path = {:?}]\npub(crate) mod {name};",
                file.display().to_string()
            );
            let _ = writeln!(registry, "    &{group_name}::{name}::{rule},");
        }
        write(&out.join(format!("rules_{group_name}.rs")), &modules);
    }
    registry.push_str("];\n");
    write(&out.join("rules.rs"), &registry);
}

/// A folder's entries, sorted by name: the same registry on every machine.
fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    entries
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_else(|| panic!("{}: not a UTF-8 name", path.display()))
        .to_string()
}

/// `double_sigmoid` -> `DoubleSigmoid`.
fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes `text` to `path` unless it is there already, so that an unchanged
/// registry does not rebuild the crate.
fn write(path: &Path, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
