//! Helpers the integration tests share.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{LazyLock, Mutex, OnceLock};

use nnlint::diag::report::Report;

/// The probe's parameters for [`nnlint::probe::run`]: the rules' defaults.
pub(crate) fn plan() -> nnlint::probe::Plan {
    nnlint::rules::plan(None)
}

/// Runs the nnlint binary from the repository root, without colour.
pub(crate) fn nnlint(args: &[&str]) -> Output {
    nnlint_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Runs the nnlint binary in `dir`, without colour.
pub(crate) fn nnlint_in(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("the nnlint binary runs")
}

/// The nnlint binary with `args`, to run in `dir` without colour.
pub(crate) fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nnlint"));
    command.args(args).current_dir(dir).env("NO_COLOR", "1");
    command
}

/// Runs the nnlint binary like [`nnlint`], held to one of the cores this
/// process may use: tract's pool and candle's threads are sized from that.
pub(crate) fn nnlint_on_one_core(args: &[&str]) -> Output {
    let mut command = command(Path::new(env!("CARGO_MANIFEST_DIR")), args);
    command.env("RAYON_NUM_THREADS", "1");
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a zeroed cpu_set_t is an empty set; the calls only read
        // and write the set they are given.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::sched_getaffinity(0, size, &mut set) }, 0);
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .expect("this process may run on some core");
        // SAFETY: as above.
        let mut only: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(first, &mut only) };
        // SAFETY: the child only makes one system call before exec.
        unsafe {
            command.pre_exec(move || {
                if libc::sched_setaffinity(0, size, &only) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    command.output().expect("the nnlint binary runs")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("output is UTF-8")
}

/// Defaults only: a configuration file above the checkout must not change results.
pub(crate) fn isolated() -> nnlint::Options {
    nnlint::Options {
        config: nnlint::ConfigSource::None,
        ..Default::default()
    }
}

/// The report on one fixture, linted with [`isolated`] options once for the
/// whole test binary: the UI test, the rule matrix and the other checks that
/// read the same fixture share it. A thread that asks while another lints
/// the file waits for that result. The reports live as long as the binary.
pub(crate) fn linted(path: &Path) -> &'static Report {
    static LINTED: LazyLock<Mutex<HashMap<PathBuf, &'static OnceLock<Report>>>> =
        LazyLock::new(Default::default);
    let cell: &'static OnceLock<Report> = LINTED
        .lock()
        .expect("no thread panics holding the map")
        .entry(path.to_path_buf())
        .or_insert_with(|| Box::leak(Box::default()));
    cell.get_or_init(|| {
        let file = nnlint::lint_file(path, &isolated())
            .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
        nnlint::report(Default::default(), vec![file])
    })
}

/// How to re-bless the snapshots (`.expected` outputs, the pinned html
/// page and the rules' table in docs/rules.md) after an intended change;
/// review the diff of what it writes.
pub(crate) const BLESS: &str =
    "NNLINT_BLESS=1 cargo test --locked --test it -- ui:: html:: diff:: rules::the_user_guide";

/// Compares `actual` with the snapshot in `expected`, or writes it there
/// when `NNLINT_BLESS` is set. The difference, if any, as a failure message.
pub(crate) fn snapshot(expected: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("NNLINT_BLESS").is_some() {
        std::fs::write(expected, actual).expect("the snapshot is writable");
        return None;
    }
    match std::fs::read_to_string(expected) {
        Ok(want) if want == actual => None,
        Ok(want) => Some(format!(
            "{} differs from the output now\n--- expected\n{want}\n+++ actual\n{actual}",
            expected.display()
        )),
        Err(_) => Some(format!(
            "{} is missing; the output now:\n{actual}",
            expected.display()
        )),
    }
}

/// Fails with every snapshot that differs, and how to re-bless them.
pub(crate) fn assert_snapshots(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{}\n\nif the change is intended, re-bless with: {BLESS}",
        failures.join("\n\n")
    );
}

/// Files under `dir` whose names end with `suffix`, recursively, sorted.
pub(crate) fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
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
/// memory in MiB, as GNU time reports it (`.ci/run` installs it).
///
/// Not by `wait4` on our own child: on Linux a spawned process starts from
/// the spawner's memory high-water mark, which in a test binary that has
/// linted a thousand models is itself hundreds of MiB. GNU time is a small
/// process, and forks nnlint from there.
///
/// Under `timeout`, so that a hostile model that hangs nnlint fails its
/// test (exit code 124) instead of stalling the suite: a bound on liveness
/// far above any healthy run, not a speed target.
#[cfg(unix)]
pub(crate) fn nnlint_peak(args: &[&str]) -> (Output, f64) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let report = dir.path().join("peak");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .args(["timeout", "300"])
        .arg(env!("CARGO_BIN_EXE_nnlint"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("GNU time runs (Debian's `time` package; .ci/run installs it)");
    let kib: f64 = std::fs::read_to_string(&report)
        .expect("GNU time wrote its report")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("the report ends with the peak in KiB");
    (out, kib / 1024.0)
}

/// A model whose one node is a `Relu` of its one initializer `w`, a float
/// vector of `values` values: the smallest model that stores a weight.
pub(crate) fn relu_of(w: nnlint::onnx::proto::TensorProto) -> nnlint::onnx::proto::ModelProto {
    use nnlint::onnx::proto::{data_type, GraphProto, ModelProto, NodeProto, OperatorSetIdProto};
    ModelProto {
        ir_version: 10,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 20,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                input: vec!["w".into()],
                output: vec!["y".into()],
                op_type: "Relu".into(),
                ..Default::default()
            }],
            initializer: vec![nnlint::onnx::proto::TensorProto {
                name: "w".into(),
                data_type: data_type::FLOAT,
                ..w
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes a `.npy` file (format 1.0) of `shape` holding `descr` values
/// (`<f4` or `<f8`), value `i` being `value(i)`.
pub(crate) fn write_npy(path: &Path, descr: &str, shape: &[usize], value: impl Fn(usize) -> f64) {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let mut h = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((h.len() as u16).to_le_bytes());
    bytes.extend(h.as_bytes());
    for i in 0..shape.iter().product() {
        match descr {
            "<f8" => bytes.extend(value(i).to_le_bytes()),
            _ => bytes.extend((value(i) as f32).to_le_bytes()),
        }
    }
    std::fs::write(path, bytes).expect("the .npy file is written");
}

/// Writes, into `dir`, a 3x3 convolution over 8 channels of 512x512 with a
/// dynamic batch: 8 MiB a sample, and nine times that in the columns the
/// convolution unfolds. Returns its path.
pub(crate) fn large_conv(dir: &Path) -> PathBuf {
    let path = dir.join("conv.onnxtxt");
    std::fs::write(
        &path,
        "<ir_version: 10, opset_import: [\"\" : 17]>\n\
         g (float[N,8,512,512] x, float[8,8,3,3] w) => (float[N,8,512,512] y)\n\
         {\n    h = Conv <pads = [1,1,1,1]> (x, w)\n    y = Relu (h)\n}\n",
    )
    .unwrap();
    path
}
