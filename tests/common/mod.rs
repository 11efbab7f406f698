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

/// Runs the nnlint binary like [`nnlint`], and measures its peak resident
/// memory in MiB (the child's own `ru_maxrss`, from `wait4`).
#[cfg(unix)]
pub fn nnlint_peak(args: &[&str]) -> (Output, f64) {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    // Reaped by `wait4` below, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_nnlint"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("the nnlint binary runs");
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid, and the pid is our own child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: std::fs::read(&out).expect("stdout"),
        stderr: std::fs::read(&err).expect("stderr"),
    };
    // Linux reports kilobytes.
    (output, usage.ru_maxrss as f64 / 1024.0)
}
