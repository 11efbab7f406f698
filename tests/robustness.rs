//! No model file, however broken, makes nnlint panic.
//!
//! Every model in the onnx package's backend test data is linted or refused,
//! and so is every deterministic corruption of the fixtures: truncation at
//! many offsets, flipped bytes, and an empty file.

mod common;

use common::isolated;

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
            if let Ok(report) = lint_file(&target, &isolated()) {
                // Rendering must not panic either, whatever the spans are.
                for f in [
                    nnlint::diag::render::Format::Human,
                    nnlint::diag::render::Format::Json,
                ] {
                    nnlint::diag::render::render(
                        f,
                        std::slice::from_ref(&report),
                        &Default::default(),
                        &mut Vec::new(),
                    )
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
