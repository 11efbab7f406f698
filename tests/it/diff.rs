//! `nnlint diff`: checkpoints of one torch model before and after a few
//! optimizer steps (fixtures/diff, made by fixtures/generate.py).
//!
//! Each case's full human output is kept in `fixtures/diff/<after>.expected`;
//! re-bless with [`crate::common::BLESS`].

use crate::common::{assert_snapshots, nnlint, snapshot};

use std::path::Path;
use std::process::Output;

fn steps() -> String {
    std::fs::read_to_string("fixtures/diff/STEPS.txt")
        .unwrap()
        .trim()
        .to_string()
}

fn diff(before: &str, after: &str, extra: &[&str]) -> Output {
    let (b, a) = (
        format!("fixtures/diff/{before}.onnx"),
        format!("fixtures/diff/{after}.onnx"),
    );
    let steps = steps();
    let mut args = vec!["diff", "--isolated", "--steps", &steps];
    args.extend_from_slice(extra);
    args.push(&b);
    args.push(&a);
    nnlint(&args)
}

fn rules(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (_, rest) = l.split_once(": ").unwrap();
            let (sev, msg) = rest.split_once(": ").unwrap();
            (sev.to_string(), msg.to_string())
        })
        .collect()
}

#[test]
fn a_layer_left_out_of_the_optimizer_is_frozen() {
    let out = diff("before", "after_frozen", &["--format", "short"]);
    assert_eq!(out.status.code(), Some(1));
    // One finding for the run of frozen weights, not one per tensor.
    assert_eq!(
        rules(&out),
        vec![(
            "warning[NN501]".into(),
            "2 weights from `fc2.weight` to `fc2.bias` did not change".into()
        )]
    );
}

#[test]
fn a_learning_rate_100x_too_high_is_above_the_band() {
    let out = diff("before", "after_high_lr", &["--format", "short"]);
    assert_eq!(out.status.code(), Some(1));
    let found = rules(&out);
    // Every weight matrix; biases are judged by the table, not the rule.
    assert_eq!(found.len(), 3, "{found:?}");
    for (sev, msg) in found {
        assert_eq!(sev, "warning[NN502]");
        assert!(msg.contains("above the 1.0e-4..3.0e-2 band"), "{msg}");
        assert!(!msg.contains(".bias"), "{msg}");
    }
}

/// The healthy run of the trained-models issue: a 32-64-64-10 ReLU MLP, SGD
/// at lr 0.05 with momentum 0.9, 5 steps, both checkpoints exported with
/// TorchScript in eval mode.
#[test]
fn a_healthy_sgd_run_with_momentum_exits_0() {
    let out = nnlint(&[
        "diff",
        "--isolated",
        "--steps",
        "5",
        "fixtures/diff/sgd_before.onnx",
        "fixtures/diff/sgd_after.onnx",
    ]);
    let human = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{human}");
    assert!(!human.contains("warning"), "{human}");
    // Every row that moved carries its mark.
    for row in human.lines().filter(|l| l.starts_with("net.")) {
        assert!(row.contains('#'), "{row}");
    }
    // Without --steps the message says what it assumed and how to say otherwise.
    let one = nnlint(&[
        "diff",
        "--isolated",
        "--format",
        "short",
        "fixtures/diff/sgd_before.onnx",
        "fixtures/diff/sgd_after.onnx",
    ]);
    let json = nnlint(&[
        "diff",
        "--isolated",
        "--format",
        "json",
        "fixtures/diff/sgd_before.onnx",
        "fixtures/diff/sgd_after.onnx",
    ]);
    assert_eq!(one.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    for f in v["findings"].as_array().unwrap() {
        let notes = f["notes"].to_string();
        assert!(
            notes.contains("`--steps N` says they are N apart"),
            "{notes}"
        );
    }
}

#[test]
fn fine_tuning_a_head_on_a_frozen_backbone_is_one_note() {
    let out = nnlint(&[
        "diff",
        "--isolated",
        "--steps",
        "5",
        "--format",
        "short",
        "fixtures/diff/finetune_before.onnx",
        "fixtures/diff/finetune_after.onnx",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        rules(&out),
        vec![(
            "note[NN501]".into(),
            "12 weights from `backbone.0.weight` to `backbone.10.bias` did not change".into()
        )]
    );
}

#[test]
fn identical_checkpoints_say_so() {
    let out = diff("before", "before", &["--format", "short"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        rules(&out),
        vec![(
            "warning[NN501]".into(),
            "no weight changed between the two checkpoints".into()
        )]
    );
}

/// A finding points at the node that reads the weight, not at the
/// initializer list, which is one line of thousands of characters.
#[test]
fn findings_do_not_print_the_initializer_list() {
    let human = String::from_utf8(diff("before", "after_high_lr", &[]).stdout).unwrap();
    assert!(human.contains("reads `fc1.weight`"), "{human}");
    assert!(!human.contains("<float[64,16] fc1.weight"), "{human}");
}

#[test]
fn a_healthy_learning_rate_gives_no_warning_with_either_exporter() {
    for (before, after) in [
        ("before", "after_healthy"),
        ("before_dynamo", "after_healthy_dynamo"),
    ] {
        let out = diff(before, after, &["--format", "short"]);
        assert_eq!(out.status.code(), Some(0), "{after}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn json_carries_every_number_and_the_table_agrees() {
    let out = diff("before", "after_frozen", &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
            "fc3.weight",
            "fc3.bias"
        ]
    );
    for key in [
        "shape",
        "elements",
        "norm_a",
        "norm_b",
        "relative_update",
        "unchanged",
        "non_finite_b",
        "trainable",
    ] {
        assert!(layers[0].get(key).is_some(), "{key}");
    }
    assert_eq!(layers[2]["unchanged"], layers[2]["elements"]);
    assert_eq!(layers[2]["relative_update"], 0.0);
    assert_eq!(v["findings"].as_array().unwrap().len(), 1);
    let human = String::from_utf8(diff("before", "after_frozen", &[]).stdout).unwrap();
    assert!(human.contains("fc2.weight  [64,64]"));
    assert!(human.contains("100.0%  frozen"));
}

#[test]
fn different_architectures_are_an_error_with_exit_2() {
    let out = nnlint(&[
        "diff",
        "fixtures/diff/before.onnx",
        "fixtures/torch/linear_stack_torchscript_eval.onnx",
        "--format",
        "short",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("error[NN503]: the two checkpoints are not the same architecture"));
}

#[test]
fn bad_input_and_bad_steps_exit_2() {
    let out = nnlint(&[
        "diff",
        "fixtures/diff/before.onnx",
        "fixtures/diff/missing.onnx",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("error: fixtures/diff/missing.onnx: no such file"));
    let out = nnlint(&[
        "diff",
        "--steps",
        "0",
        "fixtures/diff/before.onnx",
        "fixtures/diff/after_frozen.onnx",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn human_output_matches_its_snapshot() {
    let mut failures = Vec::new();
    for (before, after) in [
        ("before", "after_frozen"),
        ("before", "after_high_lr"),
        ("before", "after_healthy"),
        ("before_dynamo", "after_healthy_dynamo"),
        ("sgd_before", "sgd_after"),
        ("finetune_before", "finetune_after"),
    ] {
        let actual = String::from_utf8(diff(before, after, &[]).stdout).unwrap();
        let path = format!("fixtures/diff/{after}.expected");
        failures.extend(snapshot(Path::new(&path), &actual));
    }
    assert_snapshots(&failures);
}

#[test]
fn text_checkpoints_diff_like_binary_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in ["before", "after_frozen"] {
        let text = nnlint(&["print", "--values", &format!("fixtures/diff/{name}.onnx")]).stdout;
        let path = dir.path().join(format!("{name}.onnxtxt"));
        std::fs::write(&path, text).unwrap();
        paths.push(path.to_str().unwrap().to_string());
    }
    let out = nnlint(&[
        "diff",
        "--isolated",
        "--format",
        "short",
        &paths[0],
        &paths[1],
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout
        .lines()
        .all(|l| l.starts_with(&paths[1]) && l.contains("warning[NN501]")));
}
