//! No model file, however broken, makes nnlint panic.
//!
//! Every model in the onnx package's backend test data is linted or refused,
//! and so is every deterministic corruption of the fixtures: truncation at
//! many offsets, flipped bytes, and an empty file.

use crate::common::{self, isolated};

use std::path::{Path, PathBuf};

use nnlint::lint_file;

#[test]
fn every_onnx_backend_test_model_is_linted_or_refused() {
    let mut models = Vec::new();
    models.extend(common::files(
        Path::new("fixtures/third_party/onnx-backend"),
        ".onnx",
    ));
    assert!(models.len() >= 140, "third-party models are missing");
    let mut linted = 0;
    for m in &models {
        // A panic here fails the test; an Err is a clean refusal.
        if lint_file(m, &isolated()).is_ok() {
            linted += 1;
        }
    }
    // They are all valid models: every one must load.
    assert_eq!(linted, models.len());
}

/// A test's name as the harness lists it, for running it alone in a child
/// process (`--exact`): a name that matches nothing would run no test, and pass.
fn in_this_module(test: &str) -> String {
    let (_crate, module) = module_path!()
        .split_once("::")
        .expect("a module of the test crate");
    format!("{module}::{test}")
}

/// A small deterministic generator, so corruptions are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn corrupted_fixtures_never_panic() {
    let mut torch = Vec::new();
    torch.extend(common::files(Path::new("fixtures/torch"), ".onnx"));
    // Every third export: both exporters, both modes, most patterns, in a few seconds.
    let mut sources: Vec<PathBuf> = torch.into_iter().step_by(3).collect();
    sources.extend(common::files(Path::new("fixtures/invalid"), ".onnx"));
    sources.extend(common::files(Path::new("fixtures/handmade"), ".onnx"));
    sources.push("fixtures/third_party/onnx-backend/light/light_squeezenet.onnx".into());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(0x5eed);
    // Three Adam steps reach every line of the one-batch fit a corrupted
    // weight can reach; its default 200 would only repeat them, 5,000 times.
    let mut fit_few = isolated();
    fit_few.probe.fit_steps = Some(3);
    let mut runs = 0;
    let mut refused = 0;
    for src in &sources {
        let bytes = std::fs::read(src).unwrap();
        // Keep the external data beside the corrupted copy, so corruptions reach it too.
        let data = src.with_extension("onnx.data");
        let name = src.file_name().unwrap();
        if data.exists() {
            std::fs::copy(&data, dir.path().join(data.file_name().unwrap())).unwrap();
        }
        let target = dir.path().join(name);
        let mut variants: Vec<Vec<u8>> = vec![Vec::new()];
        for i in 0..64 {
            variants.push(bytes[..bytes.len() * i / 64].to_vec());
        }
        for _ in 0..200 {
            let mut b = bytes.clone();
            for _ in 0..=(rng.next() % 4) {
                let at = (rng.next() as usize) % b.len();
                b[at] ^= 1 << (rng.next() % 8);
            }
            variants.push(b);
        }
        for _ in 0..40 {
            let mut b = bytes.clone();
            let at = (rng.next() as usize) % b.len();
            b[at] = [0x00, 0xff, 0x7f, 0x80][(rng.next() % 4) as usize];
            variants.push(b);
        }
        for v in variants {
            std::fs::write(&target, &v).unwrap();
            runs += 1;
            if let Ok(report) = lint_file(&target, &fit_few) {
                let report = nnlint::report(Default::default(), vec![report]);
                // Rendering must not panic either, whatever the spans are.
                for f in [
                    nnlint::diag::render::Format::Human,
                    nnlint::diag::render::Format::Json,
                    nnlint::diag::render::Format::Html,
                ] {
                    nnlint::diag::render::render(f, &report, &Default::default(), &mut Vec::new())
                        .unwrap();
                }
            } else {
                refused += 1;
            }
        }
    }
    assert!(runs > 5000, "{runs}");
    assert!(
        refused > 0,
        "no corruption was refused: the corruptions are not reaching the decoder"
    );
}

#[test]
fn deeply_nested_subgraphs_are_refused_not_overflowed() {
    // A chain of If nodes nested far past prost's recursion limit.
    use nnlint::onnx::proto::*;
    use prost::Message;
    let mut g = GraphProto {
        name: "leaf".into(),
        ..Default::default()
    };
    for _ in 0..2000 {
        g = GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                op_type: "If".into(),
                attribute: vec![AttributeProto {
                    name: "then_branch".into(),
                    r#type: AttributeType::Graph as i32,
                    g: Some(Box::new(g)),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
    }
    let model = ModelProto {
        ir_version: 10,
        graph: Some(g),
        ..Default::default()
    };
    // Encoding is iterative-safe for prost only up to the stack; run it on a big stack.
    let bytes = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || model.encode_to_vec())
        .unwrap()
        .join()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.onnx");
    std::fs::write(&path, bytes).unwrap();
    let err = lint_file(&path, &isolated())
        .err()
        .expect("must be refused");
    assert!(err.to_string().contains("recursion limit"), "{err}");
}

#[test]
fn a_100k_node_chain_does_not_overflow_the_stack() {
    use nnlint::onnx::proto::*;
    use prost::Message;
    let n = 100_000;
    let node = |i: usize| NodeProto {
        op_type: "Relu".into(),
        name: Some(format!("relu{i}")),
        input: vec![if i == 0 {
            "x".into()
        } else {
            format!("t{}", i - 1)
        }],
        output: vec![format!("t{i}")],
        ..Default::default()
    };
    let value = |name: String| ValueInfoProto {
        name,
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 10,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 20,
        }],
        graph: Some(GraphProto {
            name: "chain".into(),
            node: (0..n).map(node).collect(),
            input: vec![value("x".into())],
            output: vec![value(format!("t{}", n - 1))],
            ..Default::default()
        }),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    // Run on a thread with a small stack, as deep recursion would need far more.
    let report = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            lint_file(&path, &isolated())
                .map(|r| r.diagnostics.iter().map(|d| d.rule).collect::<Vec<_>>())
        })
        .unwrap()
        .join()
        .expect("linting a long chain must not overflow the stack");
    // The untyped input leaves nothing to probe; the static rules find nothing.
    assert_eq!(report.unwrap(), ["probe-skipped"]);
}

/// A model of `values` float weights stored inline: one `Relu` of one initializer.
fn big_model(values: usize) -> Vec<u8> {
    use prost::Message;
    let raw: Vec<u8> = (0..values)
        .flat_map(|i| ((i % 97) as f32 * 0.01 - 0.4).to_le_bytes())
        .collect();
    common::relu_of(nnlint::onnx::proto::TensorProto {
        dims: vec![values as i64],
        raw_data: Some(raw.into()),
        ..Default::default()
    })
    .encode_to_vec()
}

#[cfg(unix)]
#[test]
fn a_model_truncated_while_mapped_is_an_error_for_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.onnx");
    // Above the size from which files are mapped rather than read.
    let values = (nnlint::onnx::external::MAP_FROM as usize) / 4 + (1 << 20);
    std::fs::write(&path, big_model(values)).unwrap();
    let model = nnlint::onnx::load(&path).unwrap();
    assert!(model.changed().is_none());
    // Another process rewrites the file after nnlint mapped it, before it reads the weights.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let settings = nnlint::Settings::new(&isolated(), None, &path).unwrap();
    // Without the handler, this read of the weight past the new end is a SIGBUS.
    let _ = nnlint::lint_model(&model, &settings);
    let why = model.changed().expect("the truncation is noticed");
    assert!(why.contains("changed while nnlint read it"), "{why}");
    // The whole file through the library's entry point: read again, it is a short file.
    let err = lint_file(&path, &isolated()).err().expect("refused");
    assert!(err.to_string().contains("big.onnx"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_fault_outside_nnlint_s_maps_still_kills_the_process() {
    // The handler only claims faults inside the maps it watches: a SIGBUS
    // anywhere else keeps its default action. Run in a child process.
    if std::env::var_os("NNLINT_SIGBUS_CHILD").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.onnx");
        let values = (nnlint::onnx::external::MAP_FROM as usize) / 4 + (1 << 20);
        std::fs::write(&path, big_model(values)).unwrap();
        // Installs the handler.
        let _model = nnlint::onnx::load(&path).unwrap();
        let other = dir.path().join("other.bin");
        std::fs::write(&other, vec![1u8; 1 << 16]).unwrap();
        let file = std::fs::File::open(&other).unwrap();
        // SAFETY: this test faults this map on purpose.
        let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
        std::fs::OpenOptions::new()
            .write(true)
            .open(&other)
            .unwrap()
            .set_len(0)
            .unwrap();
        std::hint::black_box(map[1 << 15]);
        unreachable!("the read faults");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &in_this_module("a_fault_outside_nnlint_s_maps_still_kills_the_process"),
            "--nocapture",
        ])
        .env("NNLINT_SIGBUS_CHILD", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{out:?}");
}

/// What coverage-guided fuzzing found (`fuzz/`), each input kept in
/// `fixtures/fuzz/` and linted here without the fuzzer: no panic, and a
/// peak RSS that stays far from what the input once made nnlint ask for.
#[cfg(unix)]
#[test]
fn fuzzer_findings_stay_fixed() {
    let mut found = common::files(Path::new("fixtures/fuzz"), ".onnx");
    found.extend(common::files(Path::new("fixtures/fuzz"), ".onnxtxt"));
    assert!(found.len() >= 2);
    for f in &found {
        // The budget set well under the bound below, so that a fill the
        // guards let through would show (with the default of 2048 MiB,
        // `constant_of_shape_wired`'s float32 fill of 1.75 GiB is allowed).
        let args = ["--isolated", "--probe-memory", "200", "--format", "short"];
        let path = f.to_str().unwrap();
        let (out, peak) = common::nnlint_peak(&[&args[..], &[path]].concat());
        let code = out.status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "{}: {:?}",
            f.display(),
            out.status
        );
        assert!(
            !common::text(&out.stderr).contains("panicked"),
            "{}",
            f.display()
        );
        // stats_units_of_a_fill.onnx: a fill weight's declared shape of 8.6e9
        // values made the static pass allocate per-unit sums for 134M units (1 GiB).
        // stats_zero_units.onnxtxt: a weight declared [5, 0] that stores 16
        // values divided by its 0 units (a panic).
        // float_range.onnxtxt: a float Range tract's rules sized as small,
        // whose evaluation while typing allocated 9.5 GB.
        // expand_of_nonzero.onnxtxt: an Expand whose output shape stays
        // symbolic until the run, which allocated 6.8 GB.
        // constant_of_shape_wired.onnxtxt: a ConstantOfShape whose shape became
        // constant only in the typed model, filled (3.7 GB) as tract wired it.
        // empty_one_hot_units.onnxtxt: per-unit counters sized by an empty
        // tensor's unit axis of 9.4e16 (an abort).
        assert!(peak < 300.0, "{}: peak RSS {peak:.0} MiB", f.display());
    }
}

/// The probe's thread pool is made once per process, not once per model.
/// Found by the fuzzer's leak check, which caught a probe's pool still
/// shutting down after the probe returned: every probed file started and
/// stopped a thread per core.
#[cfg(target_os = "linux")]
#[test]
fn probing_many_models_keeps_one_thread_pool() {
    if std::env::var_os("NNLINT_POOL_CHILD").is_some() {
        // The threads alive now, by id, once the short-lived ones have ended.
        let threads = || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let mut ids: Vec<String> = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            ids.sort();
            ids
        };
        let model = Path::new("fixtures/probe/healthy_cnn_ce_dynamo_train.onnx");
        let before = threads();
        lint_file(model, &isolated()).unwrap();
        let after_first = threads();
        // One core: no pool at all.
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
            assert!(
                after_first.len() > before.len(),
                "the probe's pool did not outlive the probe"
            );
        }
        for _ in 0..3 {
            lint_file(model, &isolated()).unwrap();
        }
        assert_eq!(
            threads(),
            after_first,
            "the probe's threads changed between models"
        );
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &in_this_module("probing_many_models_keeps_one_thread_pool"),
            "--test-threads",
            "1",
        ])
        .env("NNLINT_POOL_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(" 1 passed"),
        "the child ran no test: {stdout}"
    );
}
