//! The probe: its lowering against onnxruntime, its options, and its determinism.
//!
//! `fixtures/probe/lowering/<model>.ort.json` holds what onnxruntime (or, for
//! an op form it refuses, onnx's reference evaluator) computed on
//! `<model>.onnx` with the inputs in `<model>.<input>.npy`, recorded by
//! `fixtures/generate.py`: the training ops and the integer products nnlint
//! lowers. Which rules fire on the probe fixtures is pinned in
//! tests/it/rule_matrix.rs and their full output in tests/it/ui.rs.

use crate::common::{self, isolated, nnlint, text};

use std::path::Path;

use nnlint::onnx::printer::{print_model, Values};
use nnlint::probe::ProbeOptions;

#[test]
fn lowered_training_ops_compute_what_onnxruntime_computes() {
    let refs = common::files(Path::new("fixtures/probe/lowering"), ".ort.json");
    assert!(refs.len() >= 16, "lowering references are missing");
    for r in &refs {
        let stem = r
            .to_str()
            .unwrap()
            .trim_end_matches(".ort.json")
            .to_string();
        let model = nnlint::onnx::load(Path::new(&format!("{stem}.onnx"))).unwrap();
        let source = print_model(&model.proto, Values::Elide);
        let graphs = nnlint::graph::build(&model, &source);
        let mut options = ProbeOptions::default();
        for &input in graphs[0].inputs() {
            options
                .files
                .insert(input.to_string(), format!("{stem}.{input}.npy").into());
        }
        let probe = nnlint::probe::run(&model, &graphs[0], &options, &common::plan(), &[])
            .unwrap_or_else(|e| panic!("{stem}: the probe did not run: {e}"));
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r).unwrap()).unwrap();
        for (output, want) in expected.as_object().unwrap() {
            let got = probe
                .summary(output)
                .unwrap_or_else(|| panic!("{stem}: `{output}` was not observed"));
            let shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(got.shape, shape, "{stem}: shape of `{output}`");
            for (what, value) in [("mean", got.mean()), ("min", got.min), ("max", got.max)] {
                let want = want[what].as_f64().unwrap();
                assert!(
                    (value - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{stem}: {what} of `{output}` is {value}, onnxruntime says {want}"
                );
            }
        }
    }
}

#[test]
fn the_same_model_and_seed_give_byte_identical_output() {
    let args = ["--isolated", "--format", "json", "fixtures/probe"];
    let first = nnlint(&args);
    let second = nnlint(&args);
    assert_eq!(first.stdout, second.stdout);
    assert!(text(&first.stdout).contains("never activate over 64 probe samples"));
    let seeded = |seed: &str| {
        nnlint(&[
            "--isolated",
            "--format",
            "short",
            "--seed",
            seed,
            "fixtures/probe/negative_bias_dynamo_train.onnx",
        ])
        .stdout
    };
    assert_eq!(seeded("7"), seeded("7"));
    assert_ne!(
        seeded("7"),
        seeded("8"),
        "the seed changes the probe's inputs"
    );
}

#[test]
fn output_does_not_depend_on_the_number_of_cores() {
    // Sums are split at fixed sizes and merged in order, whatever the cores.
    let run = |cores: &str| {
        std::process::Command::new("taskset")
            .args(["-c", cores, env!("CARGO_BIN_EXE_nnlint")])
            .args(["--isolated", "--format", "json", "fixtures/probe"])
            .output()
    };
    match (run("0"), run("0-1")) {
        (Ok(one), Ok(two)) if one.status.code() == Some(1) => assert_eq!(one.stdout, two.stdout),
        _ => eprintln!("taskset is not available or refused: nothing to compare"),
    }
}

#[test]
fn no_probe_runs_the_static_rules_only() {
    let path = "fixtures/probe/negative_bias_torchscript_train.onnx";
    let with = text(&nnlint(&["--isolated", "--format", "short", path]).stdout);
    let without = text(&nnlint(&["--isolated", "--format", "short", "--no-probe", path]).stdout);
    assert!(with.contains("warning[NN202]"), "{with}");
    assert!(!without.contains("NN202"), "{without}");
}

/// `missing-normalization` predicts that a deep plain stack loses its scale;
/// where the probe measures the scale held and the fit works, the finding
/// is dropped, and without the probe it stands.
#[test]
fn the_probe_refutes_missing_normalization_where_the_scale_holds() {
    for path in [
        "fixtures/torch/deep_plain_mlp_dynamo_train.onnx",
        "fixtures/jax/jax_deep_plain.onnx",
    ] {
        let with = text(&nnlint(&["--isolated", "--format", "short", path]).stdout);
        let without =
            text(&nnlint(&["--isolated", "--format", "short", "--no-probe", path]).stdout);
        assert!(without.contains("warning[NN303]"), "{path}: {without}");
        assert!(!with.contains("NN303"), "{path}: {with}");
    }
    // A stack whose activations vanish keeps it, beside activation-scale.
    let tanh = "fixtures/probe/deep_tanh_dynamo_train.onnx";
    let with = text(&nnlint(&["--isolated", "--format", "short", tanh]).stdout);
    assert!(
        with.contains("warning[NN303]") && with.contains("warning[NN403]"),
        "{with}"
    );
}

#[test]
fn dynamic_dimensions_take_their_value_from_dim() {
    let path = "fixtures/text/probe_dynamic_batch.onnxtxt";
    let run = |extra: &[&str]| {
        let mut args = vec!["--isolated", "--format", "short", path];
        args.extend_from_slice(extra);
        text(&nnlint(&args).stdout)
    };
    assert!(run(&[]).contains("over 64 probe samples"));
    assert!(run(&["--dim", "N=32"]).contains("over 32 probe samples"));
    assert!(run(&["--batch", "20"]).contains("over 20 probe samples"));
    // Below `min-samples` values per unit, silence proves nothing.
    assert!(!run(&["--dim", "N=8"]).contains("NN202"));
}

#[test]
fn the_memory_budget_shrinks_a_dynamic_batch_or_skips_the_probe() {
    let run = |args: &[&str]| text(&nnlint(args).stdout);
    // No batch fits a budget of 0: the dynamic batch shrinks to 1, then the
    // probe is skipped with the reason.
    let dynamic = "fixtures/text/probe_dynamic_batch.onnxtxt";
    assert!(run(&["--isolated", "--format", "short", dynamic]).contains("over 64 probe samples"));
    let shrunk = run(&[
        "--isolated",
        "--format",
        "short",
        "--probe-memory",
        "0",
        dynamic,
    ]);
    assert!(
        shrunk.contains("note[NN400]") && shrunk.contains("budget"),
        "{shrunk}"
    );
    // A static shape cannot shrink: the probe is skipped, and says why.
    let fixed = run(&[
        "--isolated",
        "--format",
        "short",
        "--probe-memory",
        "0",
        "fixtures/probe/healthy_cnn_ce_dynamo_train.onnx",
    ]);
    assert!(
        fixed.contains("asks for 1.7 KiB, over the probe's budget of 0 MiB"),
        "{fixed}"
    );
}

/// `path` linted with `x.npy` as its input `x`, taking the model as `state`.
fn lint_with_input_as(path: &str, x: &Path, state: &str) -> String {
    let input = format!("x={}", x.display());
    let args = [
        "--isolated",
        "--format",
        "short",
        "--model-state",
        state,
        "--input",
        &input,
        path,
    ];
    text(&nnlint(&args).stdout)
}

/// With real inputs on a trained model, an output head's sigmoids sitting
/// near 0 (a detector's class scores, a multi-label head) are what it
/// learned; a hidden sigmoid that saturates is still found. On an untrained
/// model both are.
#[test]
fn a_trained_output_heads_sigmoids_near_zero_are_not_saturation() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    common::write_npy(&x, "<f4", &[64, 4], |i| {
        ((i * 37 % 101) as f64 / 50.0 - 1.0) * 3.0
    });
    let path = "fixtures/text/sigmoid_head.onnxtxt";
    let run = |state: &str| lint_with_input_as(path, &x, state);
    let (hidden, head) = (
        "sigmoid_head.onnxtxt:6:9: warning[NN402]",
        "sigmoid_head.onnxtxt:8:14: warning[NN402]",
    );
    let trained = run("trained");
    assert!(
        trained.contains(hidden) && !trained.contains(head),
        "{trained}"
    );
    let untrained = run("untrained");
    assert!(
        untrained.contains(hidden) && untrained.contains(head),
        "{untrained}"
    );
}

/// Two towers on two inputs of different real scales: the second tower is
/// not deeper than the first, so its spread is not compared with the
/// first's (`activation-scale` read 9.2e-4x "vanishing" here before).
#[test]
fn a_spread_is_compared_only_with_the_layers_that_feed_it() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    let wave = |i: usize| ((i * 37 % 101) as f64 / 50.0 - 1.0) * 1.7;
    common::write_npy(&x, "<f4", &[64, 8], wave);
    common::write_npy(&y, "<f4", &[64, 8], |i| wave(i) * 1e-3);
    let (x, y) = (format!("x={}", x.display()), format!("y={}", y.display()));
    let args = [
        "--isolated",
        "--format",
        "short",
        "--input",
        &x,
        "--input",
        &y,
        "fixtures/text/two_towers.onnxtxt",
    ];
    let out = nnlint(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        !text(&out.stdout).contains("NN403"),
        "{}",
        text(&out.stdout)
    );
}

/// A sum of two outputs of one sample (a batch of one) is not a loss of two
/// terms: `multi-loss-scale` read it as one before.
#[test]
fn a_single_samples_sum_is_not_a_summed_loss() {
    let path = "fixtures/text/single_sample_sum.onnxtxt";
    let out = nnlint(&["--isolated", "--format", "short", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        !text(&out.stdout).contains("NN107"),
        "{}",
        text(&out.stdout)
    );
}

/// On a trained model the weights were trained on the data's scale, so
/// neither the data's scale (`unnormalized-input`, measured half) nor the
/// spread's growth with depth (`activation-scale`) is judged. The same data
/// on the same graph taken as untrained fires the first.
#[test]
fn a_trained_model_is_not_judged_by_its_datas_scale() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    common::write_npy(&x, "<f4", &[64, 16], |i| {
        ((i * 37 % 101) as f64 - 50.0) * 0.8
    });
    let path = "fixtures/probe/trained_mlp_ce_dynamo_eval.onnx";
    let run = |state: &str| lint_with_input_as(path, &x, state);
    let trained = run("trained");
    assert!(
        !trained.contains("NN304") && !trained.contains("NN403"),
        "{trained}"
    );
    let untrained = run("untrained");
    assert!(untrained.contains("warning[NN304]"), "{untrained}");
}

/// Two forms tract 0.23 cannot read as exported, which the probe writes out
/// before it runs: an opset-9 `Squeeze` without axes (TorchScript's
/// `x.squeeze()`), and a `ConstantOfShape` without a value (float32 zeros,
/// which tract reads as float64: torchvision's Swin stopped on it).
#[test]
fn the_probe_runs_where_tract_reads_an_export_differently() {
    for path in [
        "fixtures/text/squeeze_without_axes.onnxtxt",
        "fixtures/text/zeros_of_shape.onnxtxt",
    ] {
        let out = text(&nnlint(&["--isolated", "--format", "short", path]).stdout);
        assert!(!out.contains("NN400"), "{path}: {out}");
        let report = text(&nnlint(&["--isolated", "--format", "json-report", path]).stdout);
        assert!(
            !report.contains("\"measurements\": null"),
            "{path}: the probe measured nothing"
        );
    }
}

#[test]
fn real_inputs_replace_synthesized_ones() {
    let dir = tempfile::tempdir().unwrap();
    let npy = |name: &str, value: f32| {
        let p = dir.path().join(name);
        common::write_npy(&p, "<f4", &[64, 4], |i| {
            f64::from(value * (1.0 + (i % 7) as f32))
        });
        p
    };
    let path = "fixtures/text/probe_dynamic_batch.onnxtxt";
    let run = |file: &Path| {
        let input = format!("x={}", file.display());
        text(&nnlint(&["--isolated", "--format", "short", "--input", &input, path]).stdout)
    };
    // Large positive inputs switch every unit on, and are far from standardized.
    let out = run(&npy("big.npy", 30.0));
    assert!(!out.contains("NN202"), "{out}");
    assert!(
        out.contains("warning[NN304]") && out.contains("big.npy"),
        "{out}"
    );
    let out = run(&npy("small.npy", 0.1));
    assert!(!out.contains("NN304"), "{out}");
    // A missing file is a usage error, not a skipped probe.
    let absent = format!("x={}", dir.path().join("absent.npy").display());
    let out = nnlint(&["--isolated", "--input", &absent, path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("absent.npy`: no such file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_trained_model_does_not_fire_initial_loss_unless_forced() {
    let path = "fixtures/probe/trained_mlp_ce_dynamo_train.onnx";
    let default = text(&nnlint(&["--isolated", path]).stdout);
    assert!(!default.contains("NN401"), "{default}");
    assert!(default.contains("the model looks trained"), "{default}");
    // Its measured loss is far above -ln(1/10): the decided state is what
    // keeps it silent, so assuming an untrained model must fire it, from the
    // command line and from the configuration alike.
    let flag = text(
        &nnlint(&[
            "--isolated",
            "--model-state",
            "untrained",
            "--format",
            "short",
            path,
        ])
        .stdout,
    );
    assert!(flag.contains("warning[NN401]: initial loss"), "{flag}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nnlint.toml");
    std::fs::write(&config, "model-state = \"untrained\"\n").unwrap();
    let forced = text(
        &nnlint(&[
            "--config",
            config.to_str().unwrap(),
            "--format",
            "short",
            path,
        ])
        .stdout,
    );
    assert!(forced.contains("warning[NN401]: initial loss"), "{forced}");
    // The command line wins over the configuration.
    let auto = text(
        &nnlint(&[
            "--config",
            config.to_str().unwrap(),
            "--model-state",
            "auto",
            "--format",
            "short",
            path,
        ])
        .stdout,
    );
    assert!(!auto.contains("NN401"), "{auto}");
}

#[test]
fn a_measurement_of_a_statically_reported_problem_becomes_its_note() {
    // ce + 1000 * aux: the static half sees the weights, the probe the values.
    let report = nnlint::lint_file(
        Path::new("fixtures/torch/multi_loss_scale_dynamo_train.onnx"),
        &isolated(),
    )
    .unwrap();
    let found: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.rule == "multi-loss-scale")
        .collect();
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .notes
            .iter()
            .any(|n| n.starts_with("the probe measured it: loss term")),
        "{:?}",
        found[0].notes
    );
}

#[test]
fn absurd_declared_shapes_are_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.onnxtxt");
    std::fs::write(
        &path,
        "<ir_version: 10, opset_import: [\"\" : 17]>\n\
         g (float[4000000000,4000000000,4000000000] x) => (float[4000000000,4000000000,4000000000] y)\n\
         {\n    y = Relu (x)\n}\n",
    )
    .unwrap();
    let out = nnlint(&["--isolated", "--format", "short", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("over the probe's budget"), "{stdout}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_model_tract_cannot_run_gets_one_note_and_keeps_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnxtxt");
    std::fs::write(
        &path,
        "<ir_version: 10, opset_import: [\"\" : 17]>\n\
         g (float[4,4] x) => (float[4,4] y)\n\
         {\n    y = Det (x)\n}\n",
    )
    .unwrap();
    let out = nnlint(&["--isolated", "--format", "short", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("note[NN400]: the probe did not run"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

/// A pass on a dimension the probe sized itself fails; the note names the
/// input, the axis and the `--dim` that sets it, and that `--dim` works.
#[test]
fn a_guessed_dimension_is_named_with_the_dim_that_sets_it() {
    let model = "fixtures/text/probe_guessed_dim.onnxtxt";
    let guessed = text(&nnlint(&["--isolated", "--format", "short", model]).stdout);
    assert!(
        guessed.contains("the probe sized input `x` axis 1 = 32 (`--dim x:1=N`)"),
        "{guessed}"
    );
    let set = text(&nnlint(&["--isolated", "--format", "short", "--dim", "x:1=48", model]).stdout);
    assert!(!set.contains("NN400"), "{set}");
}

/// A sigmoid that only multiplies another value is a gate (SiLU here):
/// saturating is how it closes. The same sigmoid as an activation fires.
#[test]
fn a_saturated_gate_is_not_a_saturated_activation() {
    let report = nnlint::lint_file(
        Path::new("fixtures/text/silu_gate_saturated.onnxtxt"),
        &isolated(),
    )
    .unwrap();
    let saturated: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.rule == "saturated-activation")
        .map(|d| d.node.as_deref())
        .collect();
    assert_eq!(saturated, [Some("squash")]);
}

/// The probe's passes share one time budget, estimated from the graph
/// before each runs: a pass over it is a note that names the `--probe-time`
/// that runs it, and the forward pass first shrinks a dynamic batch.
#[test]
fn a_pass_over_the_time_budget_is_a_note_naming_the_budget_that_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::large_conv(dir.path());
    let model = path.to_str().unwrap();
    let out = nnlint(&[
        "--isolated",
        "--format",
        "short",
        "--probe-time",
        "0.01",
        model,
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("note[NN400]: the probe did not run: the forward pass would take about")
            && stdout.contains("over the probe's time budget of 0.01 s; `--probe-time"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // The note's own budget runs the forward pass.
    let asked = stdout
        .split("`--probe-time ")
        .nth(1)
        .and_then(|r| r.split('`').next())
        .unwrap_or_default()
        .to_string();
    let out = nnlint(&[
        "--isolated",
        "--format",
        "short",
        "--probe-time",
        &asked,
        model,
    ]);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("the probe did not run"), "{stdout}");
    // A budget of no time is a usage error, not a skipped probe.
    let out = nnlint(&["--isolated", "--probe-time", "0", model]);
    assert_eq!(out.status.code(), Some(2));
}

/// A graph tract reads in pieces (`src/probe/segment.rs`) measures what the
/// whole graph measures: every value, with the same statistics. Pieces of
/// 5 nodes cut these exports everywhere: through residual additions,
/// attention's shape arithmetic (TorchScript's `Shape`/`Gather`/`Reshape`
/// chains, whose constant values the next piece must still see), a shipped
/// Keras and a shipped Paddle model, and a weighted loss.
#[test]
fn a_graph_read_in_pieces_measures_what_the_whole_graph_measures() {
    let mut cut = 0;
    for model in [
        "fixtures/gradients/reference/ref_transformer_torchscript_train.onnx",
        "fixtures/gradients/reference/ref_transformer_dynamo_train.onnx",
        "fixtures/gradients/grad_preln_residual_dynamo_train.onnx",
        "fixtures/left_random/left_random_linear_torchscript_eval.onnx",
        "fixtures/keras/keras_deep_layernorm.onnx",
        "fixtures/third_party/shipped/magika_model.onnx",
        "fixtures/third_party/shipped/rapidocr-onnxruntime_ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "fixtures/loss_forms/weighted_terms_dynamo_train.onnx",
    ] {
        let loaded = nnlint::onnx::load(Path::new(model)).unwrap();
        let source = print_model(&loaded.proto, Values::Elide);
        let graphs = nnlint::graph::build(&loaded, &source);
        let probe = |piece_nodes: usize| {
            let options = ProbeOptions {
                batch: 2,
                piece_nodes,
                ..ProbeOptions::default()
            };
            nnlint::probe::run(&loaded, &graphs[0], &options, &common::plan(), &[])
                .unwrap_or_else(|e| panic!("{model} in pieces of {piece_nodes}: {e}"))
        };
        let whole = probe(usize::MAX);
        let pieces = probe(5);
        let nodes = graphs[0].nodes().count();
        assert!(nodes > 5 * 3, "{model} is too small to be cut");
        cut += 1;
        let mut names: Vec<&String> = whole.run.summaries.keys().collect();
        names.sort();
        let mut cut_names: Vec<&String> = pieces.run.summaries.keys().collect();
        cut_names.sort();
        assert_eq!(names, cut_names, "{model}: the values observed differ");
        assert!(names.len() > 10, "{model}: only {} values", names.len());
        assert_eq!(whole.run.pieces, 1, "{model}");
        assert!(
            pieces.run.pieces >= 3,
            "{model}: {} pieces",
            pieces.run.pieces
        );
        for name in names {
            let (a, b) = (&whole.run.summaries[name], &pieces.run.summaries[name]);
            assert_eq!(a.shape, b.shape, "{model}: shape of `{name}`");
            assert_eq!(a.count, b.count, "{model}: finite values of `{name}`");
            assert_eq!(a.zeros, b.zeros, "{model}: zeros of `{name}`");
            for (what, x, y) in [
                ("sum", a.sum, b.sum),
                ("min", a.min, b.min),
                ("max", a.max, b.max),
            ] {
                assert!(
                    (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                    "{model}: {what} of `{name}` is {x} whole and {y} in pieces"
                );
            }
        }
    }
    assert_eq!(cut, 8);
}

/// Batch mixing through a recurrence along the batch: a time-first LSTM fed
/// the batch first carries sample 0 into every later sample. The backward
/// pass measures it (the other samples' outputs against sample 0's input),
/// and so do the two forward passes that stand in where the backward pass
/// cannot run. Neither fires on the batch-first LSTM, nor on BatchNorm's
/// batch statistics, which both hold (without the replay, every sample
/// would move).
#[test]
fn a_recurrence_along_the_batch_is_batch_mixing_by_gradient_and_by_forward_passes() {
    use nnlint::probe::{mixing, Backward, Measured};
    for kind in ["dynamo", "torchscript"] {
        for (stem, planted) in [
            ("rnn_lstm_time_first", true),
            ("rnn_gru_time_first", true),
            ("rnn_lstm_batch_first", false),
            ("rnn_normed_lstm", false),
        ] {
            let path = format!("fixtures/recurrent/{stem}_{kind}_train.onnx");
            let model = nnlint::onnx::load(Path::new(&path)).unwrap();
            let source = print_model(&model.proto, Values::Elide);
            let graphs = nnlint::graph::build(&model, &source);
            let options = ProbeOptions::default();
            let probe = nnlint::probe::run(
                &model,
                &graphs[0],
                &options,
                &common::plan(),
                &[Backward::Mixing],
            )
            .unwrap_or_else(|e| panic!("{path}: {e}"));
            let by_gradient = match &probe.gradients {
                Some(Ok(g)) => g.mixing.clone(),
                other => panic!("{path}: {other:?}"),
            };
            assert!(probe.mixing.is_none(), "{path}: the backward pass ran");
            let by_forward = mixing::forward(&model, &graphs[0], &probe.run, &options)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            for (m, by) in [
                (by_gradient, Measured::Gradient),
                (by_forward, Measured::Perturbation),
            ] {
                match m {
                    Some(m) => {
                        assert!(planted, "{path}: {m:?}");
                        assert_eq!(m.by, by);
                        assert!(m.from != m.to && m.ratio() > 1e-3, "{path}: {m:?}");
                        assert!(m.node.is_some(), "{path}: where the samples meet");
                    }
                    None => assert!(!planted, "{path}: {by:?} measured no mixing"),
                }
            }
        }
    }
}
