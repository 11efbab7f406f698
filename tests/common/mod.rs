//! Helpers the integration tests share.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the nnlint binary from the repository root, without colour.
pub fn nnlint(args: &[&str]) -> Output {
    nnlint_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Runs the nnlint binary in `dir`, without colour.
pub fn nnlint_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnlint"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the nnlint binary runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("output is UTF-8")
}

/// Defaults only: a configuration file above the checkout must not change results.
pub fn isolated() -> nnlint::Options {
    nnlint::Options {
        config: nnlint::ConfigSource::None,
        ..Default::default()
    }
}

/// Files under `dir` whose names end with `suffix`, recursively, sorted.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("fixture folder exists") {
            let p = e.expect("readable entry").path();
            if p.is_dir() {
                walk(&p, suffix, out);
            } else if p.to_str().is_some_and(|s| s.ends_with(suffix)) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, suffix, &mut out);
    out.sort();
    out
}
