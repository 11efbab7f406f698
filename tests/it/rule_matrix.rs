//! Which rules fire on which fixture: every rule fires on its planted case, in
//! every export mode where the pattern survives export, and stays silent on the
//! healthy variants. The ui tests pin the exact output; this pins the intent,
//! so a re-bless cannot quietly accept a rule that stopped firing.

use crate::common::{self, isolated, linted};

use std::collections::BTreeSet;
use std::path::Path;

use nnlint::diag::Severity;
use nnlint::lint_file;

/// Fixture name prefix, whether the finding needs a train-mode export, and the
/// rules expected at warning level or above.
const EXPECTED: &[(&str, bool, &[&str])] = &[
    ("bn_dropout_mlp", false, &[]),
    ("conv_bias_bn", false, &[]),
    ("conv_nobias_bn", false, &[]),
    ("dead_relu", false, &["dead-relu"]),
    ("deep_bn_mlp", false, &[]),
    // Twelve plain layers whose measured activations stay in range: the
    // probe refutes `missing-normalization` (tests/it/probe.rs shows it
    // firing without the probe).
    ("deep_plain_mlp", false, &[]),
    ("deep_residual_mlp", false, &[]),
    ("double_sigmoid_bce", false, &["double-sigmoid"]),
    ("double_softmax_ce", false, &["double-softmax"]),
    ("double_softmax_chain", false, &["double-softmax"]),
    ("dropout_bn_conv", true, &["dropout-before-batchnorm"]),
    ("dropout_bn_mlp", true, &["dropout-before-batchnorm"]),
    ("dropout_rate_high", true, &["dropout-rate"]),
    ("dropout_rate_one", true, &["dropout-rate"]),
    ("dropout_rate_zero", false, &[]),
    ("healthy_bce", false, &[]),
    ("healthy_ce", false, &[]),
    ("healthy_nll", false, &[]),
    ("healthy_softmax", false, &[]),
    // fc1 at 100x: the logits are huge, and so is the probe's initial loss.
    ("init_scale_large", false, &["init-scale", "initial-loss"]),
    ("init_scale_normalized", false, &[]),
    ("init_scale_small_tanh", false, &["init-scale"]),
    ("linear_bottleneck", false, &[]),
    ("linear_stack", false, &["linear-stack"]),
    ("multi_loss_balanced", false, &[]),
    // Weights the author wrote are a note with the number; the probe finds
    // the gap is theirs (unweighted, the terms are within 10x).
    ("multi_loss_scale", false, &[]),
    ("nll_logits", false, &["nll-without-log"]),
    ("nll_softmax", false, &["nll-without-log"]),
    ("non_finite", false, &["non-finite"]),
    ("pixels_scaled", false, &[]),
    (
        "pixels_unscaled",
        false,
        &["initial-loss", "unnormalized-input"],
    ),
    ("relu_on_logits", false, &["relu-on-logits"]),
    ("softmax_batch_axis", false, &["softmax-batch-axis"]),
    ("softmax_single_class", false, &["softmax-single-class"]),
    ("zero_weights", false, &["constant-weights"]),
];

/// The probe fixtures (batch 64): planted problems only a forward pass shows,
/// their healthy counterparts, and models trained for 300 steps.
const PROBE_EXPECTED: &[(&str, &[&str])] = &[
    ("aux_weight", &[]),
    (
        "deep_tanh",
        &["activation-scale", "init-scale", "missing-normalization"],
    ),
    ("healthy_cnn_ce", &[]),
    ("healthy_mlp_bce", &[]),
    ("healthy_mlp_ce", &[]),
    ("healthy_mlp_logits", &[]),
    ("healthy_mlp_nll", &[]),
    ("healthy_mlp_tanh", &[]),
    // A head's scale is judged by its effect, the initial loss.
    ("last_layer_scaled", &["initial-loss"]),
    ("log_relu", &["non-finite"]),
    ("negative_bias", &["dead-relu"]),
    ("penalty", &["multi-loss-scale"]),
    ("sigmoid_large", &["init-scale", "saturated-activation"]),
    ("trained_cnn_ce", &[]),
    ("trained_mlp_ce", &[]),
];

fn rules_at(path: &Path, min: Severity) -> BTreeSet<&'static str> {
    linted(path).files[0]
        .diagnostics
        .iter()
        .filter(|d| d.severity >= min)
        .map(|d| d.rule)
        .collect()
}

/// Every `.onnx` model in `dir` with the expectation of the longest prefix
/// of `expected` its file stem starts with; a model with none fails.
fn by_prefix<'a, T>(
    dir: &str,
    expected: &'a [(&str, T)],
) -> Vec<(std::path::PathBuf, String, &'a T)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "onnx") {
            continue;
        }
        let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
        let (_, want) = expected
            .iter()
            .filter(|(prefix, _)| stem.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .unwrap_or_else(|| panic!("{stem} has no expectation"));
        out.push((p, stem, want));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[test]
fn every_torch_fixture_fires_exactly_its_rules() {
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir("fixtures/torch")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
    {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let (prefix, train_only, rules) = EXPECTED
            .iter()
            .filter(|(p, _, _)| stem.starts_with(&format!("{p}_")))
            .max_by_key(|(p, _, _)| p.len())
            .unwrap_or_else(|| panic!("{stem} has no expectation in the matrix"));
        let fires = !train_only || stem.ends_with("_train");
        let expected: BTreeSet<&str> = if fires {
            rules.iter().copied().collect()
        } else {
            BTreeSet::new()
        };
        assert_eq!(
            rules_at(path, Severity::Warning),
            expected,
            "{stem} (matched `{prefix}`)"
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        EXPECTED.len() * 4,
        "every pattern in all four export modes"
    );
}

#[test]
fn every_probe_fixture_fires_exactly_its_rules() {
    let mut checked = 0;
    for e in std::fs::read_dir("fixtures/probe").unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "onnx") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let (_, rules) = PROBE_EXPECTED
            .iter()
            .find(|(p, _)| {
                stem.strip_prefix(p).is_some_and(|rest| {
                    rest.starts_with("_dynamo") || rest.starts_with("_torchscript")
                })
            })
            .unwrap_or_else(|| panic!("{stem} has no expectation in the matrix"));
        let expected: BTreeSet<&str> = rules.iter().copied().collect();
        assert_eq!(rules_at(&path, Severity::Warning), expected, "{stem}");
        checked += 1;
    }
    assert_eq!(
        checked,
        PROBE_EXPECTED.len() * 4,
        "every model in all four export modes"
    );
}

/// The gradient fixtures (`fixtures/generate.py gradients`, training-mode
/// exports by both exporters): the problems only a backward pass shows, and
/// their healthy counterparts.
const GRADIENT_EXPECTED: &[(&str, &[&str])] = &[
    ("grad_aux_zero", &["zero-gradient"]),
    // Every sample sees the batch's mean: mixed, and it cannot fit the batch.
    ("grad_batch_mean", &["batch-mixing", "cannot-overfit"]),
    ("grad_deep_bn", &["gradient-scale"]),
    ("grad_gate", &["zero-gradient"]),
    ("grad_healthy_bn", &[]),
    ("grad_ln_sigmoid", &["gradient-scale"]),
    ("grad_mix_reshape", &["batch-mixing"]),
    // Plain depth is also what `missing-normalization` looks for.
    (
        "grad_plain_relu",
        &["gradient-scale", "missing-normalization"],
    ),
    ("grad_preln_residual", &[]),
    ("grad_round", &["zero-gradient"]),
    ("grad_straight_through", &[]),
];

/// `fixtures/overfit`: fixture name prefix and its rules at warning level or above.
const OVERFIT_EXPECTED: &[(&str, &[&str])] = &[("overfit_tanh_logits", &["cannot-overfit"])];

#[test]
fn every_overfit_fixture_fires_exactly_its_rules() {
    let models = by_prefix("fixtures/overfit", OVERFIT_EXPECTED);
    assert_eq!(models.len(), OVERFIT_EXPECTED.len() * 2, "both exporters");
    for (path, stem, rules) in &models {
        let expected: BTreeSet<&str> = rules.iter().copied().collect();
        assert_eq!(rules_at(path, Severity::Warning), expected, "{stem}");
        // `--overfit-steps 0` turns the fit off.
        let mut options = isolated();
        options.probe.fit_steps = Some(0);
        let report = lint_file(path, &options).unwrap();
        assert!(
            report
                .diagnostics
                .iter()
                .all(|d| d.rule != "cannot-overfit"),
            "{stem} with --overfit-steps 0"
        );
    }
    // The healthy models fit: an MLP with BatchNorm, a CNN, a 40-block
    // residual MLP, and the fixed wrong reshape, which mixes samples but
    // can still fit them.
    for stem in [
        "gradients/grad_healthy_bn",
        "gradients/reference/ref_cnn",
        "gradients/grad_preln_residual",
        "gradients/grad_mix_reshape",
        "overfit/steps/step_mlp",
    ] {
        for kind in ["dynamo", "torchscript"] {
            let path = format!("fixtures/{stem}_{kind}_train.onnx");
            let report = &linted(Path::new(&path)).files[0];
            assert!(
                report
                    .diagnostics
                    .iter()
                    .all(|d| d.rule != "cannot-overfit" && !d.message.contains("one-batch fit")),
                "{path}: {:?}",
                report
                    .diagnostics
                    .iter()
                    .map(|d| &d.message)
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// The budget's cut: a fit it affords a few steps of is run and, while its
/// loss still falls, is a note and not a verdict; one it cannot afford 8
/// steps of does not run. Both on the tanh-capped model, which cannot fit
/// (67 steps find its plateau).
#[test]
fn a_fit_the_budget_cuts_is_a_note_and_not_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let with_budget = |seconds: &str| {
        let path = dir.path().join(format!("budget_{seconds}.toml"));
        std::fs::write(
            &path,
            format!("[rules.cannot-overfit]\nbudget = {seconds}\n"),
        )
        .unwrap();
        let mut options = isolated();
        options.config =
            nnlint::ConfigSource::Fixed(std::sync::Arc::new(nnlint::config::load(&path).unwrap()));
        let model = Path::new("fixtures/overfit/overfit_tanh_logits_dynamo_train.onnx");
        lint_file(model, &options).unwrap().diagnostics
    };
    // The tiny MLP's steps are estimated at about 1.4 ms each, so 40 ms
    // afford more than 8 and fewer than the 67 its plateau takes.
    let cut = with_budget("0.04");
    assert!(cut.iter().all(|d| d.rule != "cannot-overfit"), "{cut:?}");
    let note = cut
        .iter()
        .find(|d| d.rule == "probe-skipped")
        .map(|d| d.message.clone())
        .unwrap_or_default();
    let taken: usize = regex::Regex::new(r"^the one-batch fit stopped after (\d+) of its 200 steps, what its budget of 0.04 s affords, with the loss above its goal: 2.124 -> ")
        .unwrap()
        .captures(&note)
        .unwrap_or_else(|| panic!("{note}"))[1]
        .parse()
        .unwrap();
    assert!((8..67).contains(&taken), "{note}");
    // Nothing: not even 8 steps fit.
    let none = with_budget("0.000001");
    assert!(none.iter().all(|d| d.rule != "cannot-overfit"));
    assert!(
        none.iter().any(|d| d.rule == "probe-skipped"
            && d.message.starts_with(
                "the one-batch fit did not run: even 8 of its 200 steps would take about"
            )),
        "{none:?}"
    );
}

/// `fixtures/recurrent` (`fixtures/recurrent.py`): recurrent layers fed the
/// batch first, which carry each sample into the later ones.
const RECURRENT_EXPECTED: &[(&str, &[&str])] = &[
    ("rnn_gru_time_first", &["batch-mixing"]),
    ("rnn_lstm_batch_first", &[]),
    ("rnn_lstm_time_first", &["batch-mixing"]),
    // BatchNorm's batch statistics couple samples by design.
    ("rnn_normed_lstm", &[]),
];

#[test]
fn every_recurrent_fixture_fires_exactly_its_rules() {
    let models = by_prefix("fixtures/recurrent", RECURRENT_EXPECTED);
    // Both exporters, and the planted LSTM in eval mode too.
    assert_eq!(models.len(), RECURRENT_EXPECTED.len() * 2 + 2);
    for (path, stem, rules) in &models {
        let expected: BTreeSet<&str> = rules.iter().copied().collect();
        assert_eq!(rules_at(path, Severity::Warning), expected, "{stem}");
        // `--no-grad` turns batch mixing off, its forward stand-in included.
        let mut options = isolated();
        options.probe.gradients = false;
        let report = lint_file(path, &options).unwrap();
        assert!(
            report.diagnostics.iter().all(|d| d.rule != "batch-mixing"),
            "{stem} with --no-grad"
        );
    }
}

/// `fixtures/report`, the html report's models: a clean residual network
/// (no finding at all, not even a note) and the markup-named dead relu.
#[test]
fn report_fixtures_fire_exactly_their_rules() {
    for kind in ["dynamo", "torchscript"] {
        let path = format!("fixtures/report/small_resnet_{kind}_train.onnx");
        assert_eq!(
            rules_at(Path::new(&path), Severity::Note),
            BTreeSet::new(),
            "{path}"
        );
    }
    assert_eq!(
        rules_at(
            Path::new("fixtures/report/hostile_names.onnx"),
            Severity::Warning
        ),
        BTreeSet::from(["dead-relu", "zero-gradient"])
    );
}

#[test]
fn every_gradient_fixture_fires_exactly_its_rules() {
    let models = by_prefix("fixtures/gradients", GRADIENT_EXPECTED);
    for (path, stem, rules) in &models {
        let expected: BTreeSet<&str> = rules.iter().copied().collect();
        assert_eq!(rules_at(path, Severity::Warning), expected, "{stem}");
    }
    assert_eq!(
        models.len(),
        GRADIENT_EXPECTED.len() * 2,
        "every model from both exporters"
    );
    // An inference graph that outputs only an ArgMax has nothing to differentiate.
    assert_eq!(
        rules_at(
            Path::new("fixtures/text/argmax_only.onnxtxt"),
            Severity::Warning
        ),
        BTreeSet::new()
    );
    // Without the backward pass, only the static half of `zero-gradient` is left.
    for (path, stem, rules) in &models {
        let mut options = isolated();
        options.probe.gradients = false;
        let report = lint_file(path, &options).unwrap();
        let fired: BTreeSet<&str> = report
            .diagnostics
            .iter()
            .filter(|d| d.severity >= Severity::Warning)
            .map(|d| d.rule)
            .collect();
        assert!(
            !fired.contains("gradient-scale") && !fired.contains("batch-mixing"),
            "{stem} with --no-grad: {fired:?}"
        );
        let static_zero = ["grad_gate", "grad_round", "grad_aux_zero"]
            .iter()
            .any(|p| stem.starts_with(p));
        assert_eq!(
            fired.contains("zero-gradient"),
            static_zero && rules.contains(&"zero-gradient"),
            "{stem} with --no-grad"
        );
    }
}

#[test]
fn every_rule_fires_somewhere_in_the_fixtures() {
    let mut fired = BTreeSet::new();
    for dir in [
        "fixtures/torch",
        "fixtures/invalid",
        "fixtures/handmade",
        "fixtures/python",
        "fixtures/text",
        "fixtures/probe",
        "fixtures/losses",
        "fixtures/published",
        "fixtures/gradients",
        "fixtures/overfit",
        "fixtures/left_random",
        "fixtures/loss_forms",
    ] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "onnx" || x == "onnxtxt") {
                fired.extend(rules_at(&p, Severity::Note));
            }
        }
    }
    // The rules of `nnlint diff` fire in tests/it/diff.rs.
    let lint_rules = nnlint::rules::all().filter(|r| r.meta().pass != nnlint::rules::Pass::Diff);
    for r in lint_rules {
        assert!(
            fired.contains(r.meta().name),
            "no fixture fires {}",
            r.meta().name
        );
    }
}

#[test]
fn notes_fire_where_planted() {
    let notes = |p: &str| rules_at(Path::new(p), Severity::Note);
    assert!(notes("fixtures/torch/conv_bias_bn_torchscript_train.onnx")
        .contains("bias-before-batchnorm"));
    assert!(
        !notes("fixtures/torch/conv_nobias_bn_torchscript_train.onnx")
            .contains("bias-before-batchnorm")
    );
    assert!(
        notes("fixtures/torch/dropout_rate_zero_torchscript_train.onnx").contains("dropout-rate")
    );
    let hygiene = notes("fixtures/handmade/hygiene.onnx");
    for r in [
        "unused-initializer",
        "unused-input",
        "dead-node",
        "duplicate-node-name",
    ] {
        assert!(hygiene.contains(r), "{r}");
    }
    assert_eq!(
        rules_at(
            Path::new("fixtures/handmade/batchnorm_train_batch1.onnx"),
            Severity::Warning
        ),
        BTreeSet::from(["batchnorm-batch-size-one"])
    );
    assert!(rules_at(
        Path::new("fixtures/handmade/batchnorm_train_batch4.onnx"),
        Severity::Note
    )
    .is_empty());
    assert_eq!(
        rules_at(
            Path::new("fixtures/handmade/unknown_op.onnx"),
            Severity::Warning
        ),
        BTreeSet::from(["invalid-graph"])
    );
}

/// The onnx package's model-zoo graphs (`light_*`) replace weights by constant
/// fills, so `constant-weights` fires on them. Three of them are deep plain
/// networks (VGG-19, SqueezeNet, GoogLeNet) that `missing-normalization`
/// reports by its definition; nothing else may fire at warning level.
#[test]
fn light_model_zoo_graphs_warn_only_about_constant_weights_and_plain_depth_unless_trained() {
    for e in std::fs::read_dir("fixtures/third_party/onnx-backend/light").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "onnx") {
            continue;
        }
        // The fills replaced trained weights: where the model keeps its
        // trained normalization layers, it looks trained and the constant
        // fills are notes.
        let rules = rules_at(&p, Severity::Warning);
        assert!(
            rules_at(&p, Severity::Note).contains("constant-weights"),
            "{}",
            p.display()
        );
        let trained = ["light_resnet50", "light_shufflenet"]
            .iter()
            .any(|n| p.file_stem().unwrap() == *n);
        // GoogLeNet's inception blocks concatenate branches of different
        // depth, which counts as a skip connection, as DenseNet's do.
        let plain = ["light_vgg19", "light_squeezenet"]
            .iter()
            .any(|n| p.file_stem().unwrap() == *n);
        let allowed: BTreeSet<&str> = if trained {
            BTreeSet::new()
        } else if plain {
            BTreeSet::from(["constant-weights", "missing-normalization"])
        } else {
            BTreeSet::from(["constant-weights"])
        };
        assert_eq!(rules, allowed, "{}", p.display());
    }
}

/// The onnx package's operator and converted-model tests, probe included: no
/// warning. Their inputs are arbitrary, so `sqrt(x)` of the probe's N(0, 1)
/// data must not count as the model's NaN.
#[test]
fn onnx_backend_operator_models_raise_no_warning() {
    let mut count = 0;
    for dir in ["pytorch-converted", "pytorch-operator", "simple"] {
        let root = Path::new("fixtures/third_party/onnx-backend").join(dir);
        for p in common::files(&root, ".onnx") {
            assert_eq!(
                rules_at(&p, Severity::Warning),
                BTreeSet::new(),
                "{}",
                p.display()
            );
            count += 1;
        }
    }
    assert!(count > 100, "{count} models");
}

/// torchvision resnet18, mobilenet_v2, vgg11_bn and efficientnet_b0, a
/// TransformerEncoder LM and GPT-2 small, exported by both exporters in train
/// and eval mode (the torchvision ones with and without `F.cross_entropy`),
/// with their weights stripped (see benches/no_false_alarms.py): no warning.
#[test]
fn clean_architectures_raise_no_warning() {
    let mut count = 0;
    for e in std::fs::read_dir("fixtures/architectures").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "onnx") {
            assert_eq!(
                rules_at(&p, Severity::Warning),
                BTreeSet::new(),
                "{}",
                p.display()
            );
            count += 1;
        }
    }
    assert_eq!(count, 38);
    // The run with full weights, recorded when the fixtures were made.
    let full = std::fs::read_to_string("fixtures/architectures/full-weights.txt").unwrap();
    assert!(full.starts_with("# nnlint --format short on 38 full-weight exports"));
    let mut states = 0;
    for line in full.lines().skip(1) {
        // Each model's decided state: random-init exports are untrained.
        if let Some(state) = line.strip_prefix("# ") {
            assert!(state.contains(": the model looks untrained: "), "{state}");
            states += 1;
            continue;
        }
        assert!(line.contains(": note["), "recorded false alarm: {line}");
    }
    assert_eq!(states, 38, "every full-weight export's state is recorded");
}

/// Bugs planted in trained models (`fixtures/generate.py trained`): each
/// model looks trained, and what it computes wrongly still fires, at its
/// default severity, with nothing else at warning level.
#[test]
fn bugs_planted_in_trained_models_still_fire() {
    let expected: &[(&str, &str)] = &[
        ("trained_nan_weight", "non-finite"),
        ("trained_double_softmax", "double-softmax"),
        ("trained_relu_logits", "relu-on-logits"),
    ];
    let mut seen = 0;
    for (p, stem, rule) in by_prefix("fixtures/trained", expected) {
        let report = &linted(&p).files[0];
        let state = &report.coverage.as_ref().unwrap().state;
        assert_eq!(
            state.state,
            nnlint::graph::ModelState::Trained,
            "{stem}: {}",
            state.evidence
        );
        assert_eq!(
            rules_at(&p, Severity::Warning),
            BTreeSet::from([*rule]),
            "{stem}"
        );
        seen += 1;
    }
    assert_eq!(seen, 12, "three bugs, two exporters, train and eval");
}

/// One layer re-drawn by its own initializer after 600 training steps
/// (`fixtures/generate.py left-random`): a conv, a linear layer and an
/// attention's query projection are each named by `layer-left-random`, and
/// nothing else warns; the fully trained model and a fine-tune's fresh head
/// raise nothing at warning level.
#[test]
fn a_layer_left_at_initialization_in_a_trained_model_is_named() {
    let expected: &[(&str, (&str, Option<&str>))] = &[
        (
            "left_random_conv",
            ("conv2.weight", Some("layer-left-random")),
        ),
        (
            "left_random_linear",
            ("fc1.weight", Some("layer-left-random")),
        ),
        // dynamo names the query projection's lifted weight `val_7`
        (
            "left_random_attention_q",
            ("val_7", Some("layer-left-random")),
        ),
        ("left_random_none", ("", None)),
        ("finetune_fresh_head", ("", None)),
    ];
    let mut seen = 0;
    for (p, stem, (weight, rule)) in by_prefix("fixtures/left_random", expected) {
        let report = &linted(&p).files[0];
        let state = &report.coverage.as_ref().unwrap().state;
        assert_eq!(state.state, nnlint::graph::ModelState::Trained, "{stem}");
        let want: BTreeSet<&str> = rule.iter().copied().collect();
        assert_eq!(rules_at(&p, Severity::Warning), want, "{stem}");
        let named: Vec<_> = report
            .diagnostics
            .iter()
            .filter(|d| d.rule == "layer-left-random")
            .map(|d| d.message.clone())
            .collect();
        match rule {
            Some(_) => {
                assert_eq!(named.len(), 1, "{stem}: {named:?}");
                assert!(
                    named[0].contains(&format!("`{weight}`")),
                    "{stem}: {named:?}"
                );
            }
            None => assert!(named.is_empty(), "{stem}: {named:?}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 6, "five models, one also through TorchScript");
}

/// Summed losses as people write them (`fixtures/generate.py loss-terms`):
/// a gap the reductions make (a batch-summed term beside a mean) is a
/// warning; a KL term weighted 1e-6 as published and a consistency term
/// between two of the model's outputs read no label and are notes with the
/// numbers. The weighted
/// fixtures of the other folders (`multi_loss_scale`, `aux_weight`) are notes
/// too, and a penalty swamping the data loss stays a warning (`penalty`).
#[test]
fn loss_terms_are_judged_by_what_makes_their_gap() {
    let expected: &[(&str, (Severity, &str))] = &[
        (
            "sum_reduced_aux",
            (Severity::Warning, "the larger term dominates"),
        ),
        (
            "consistency_term",
            (
                Severity::Note,
                "reads no label, only the model's own outputs",
            ),
        ),
        // Unweighted, the KL term is 20x below the reconstruction: at
        // initialization the posterior is the prior, by construction.
        (
            "weighted_kl",
            (
                Severity::Note,
                "reads no label, only the model's own outputs",
            ),
        ),
    ];
    let mut seen = 0;
    for (p, stem, (severity, why)) in by_prefix("fixtures/loss_terms", expected) {
        let report = &linted(&p).files[0];
        let found: Vec<_> = report
            .diagnostics
            .iter()
            .filter(|d| d.rule == "multi-loss-scale")
            .collect();
        assert_eq!(found.len(), 1, "{stem}: {found:?}");
        assert_eq!(found[0].severity, *severity, "{stem}");
        assert!(
            found[0].notes.iter().any(|n| n.contains(why)),
            "{stem}: {:?}",
            found[0].notes
        );
        seen += 1;
    }
    assert_eq!(seen, 6, "three losses, two exporters");
    for (path, severity) in [
        (
            "fixtures/torch/multi_loss_scale_dynamo_train.onnx",
            Severity::Note,
        ),
        (
            "fixtures/probe/aux_weight_dynamo_train.onnx",
            Severity::Note,
        ),
        (
            "fixtures/probe/penalty_dynamo_train.onnx",
            Severity::Warning,
        ),
    ] {
        let report = &linted(Path::new(path)).files[0];
        let found: Vec<_> = report
            .diagnostics
            .iter()
            .filter(|d| d.rule == "multi-loss-scale")
            .map(|d| d.severity)
            .collect();
        assert_eq!(found, vec![severity], "{path}");
    }
}

/// Graphs torch did not write: Keras through tf2onnx, flax through jax2onnx
/// (`fixtures/keras/generate.py`, `fixtures/jax/generate.py`). Each fires
/// what its torch counterpart fires, wherever the pattern survives the
/// conversion, and nothing else at warning level.
#[test]
fn keras_and_jax_exports_fire_what_their_torch_counterparts_fire() {
    let expected: &[(&str, &[&str])] = &[
        // torch: probe/healthy_*, architectures/*: clean
        ("keras/keras_clean_cnn", &[]),
        ("keras/keras_silu_cnn", &[]),
        ("jax/jax_healthy_mlp", &[]),
        // torch: torch/double_softmax_chain_*
        ("keras/keras_double_softmax", &["double-softmax"]),
        ("jax/jax_double_softmax", &["double-softmax"]),
        // torch: trained/trained_relu_logits_*
        ("keras/keras_relu_logits", &["relu-on-logits"]),
        ("keras/keras_trained_relu_logits", &["relu-on-logits"]),
        ("jax/jax_relu_logits", &["relu-on-logits"]),
        ("jax/jax_trained_relu_logits", &["relu-on-logits"]),
        // torch: torch/linear_stack_*
        ("keras/keras_linear_stack", &["linear-stack"]),
        // torch: torch/deep_plain_mlp_*, torch/deep_bn_mlp_*. Each plain
        // stack keeps its activations in range and fits one batch, so the
        // probe refutes the static finding. Keras' spikes at lr 1e-2 (down
        // to 0.28, up to 1.14) and fits once the fit restarts at 3.3e-3.
        ("keras/keras_deep_plain", &[]),
        ("jax/jax_deep_plain", &[]),
        ("keras/keras_deep_layernorm", &[]),
        ("jax/jax_deep_layernorm", &[]),
        // torch: torch/init_scale_large_*; the probe measures the same
        // layer's loss (`initial-loss`), as on the torch fixture
        (
            "keras/keras_init_scale_large",
            &["init-scale", "initial-loss"],
        ),
        // torch: torch/dropout_bn_mlp_*; tf2onnx drops inference-mode
        // Dropout, so the pattern does not survive: the expected output's
        // last line says the dropout rules could not look
        ("keras/keras_dropout_bn", &[]),
        // torch: probe/trained_*: trained, clean
        ("keras/keras_trained_mlp", &[]),
        ("keras/keras_trained_cnn", &[]),
        ("jax/jax_trained_mlp", &[]),
    ];
    let mut seen = 0;
    for dir in ["fixtures/keras", "fixtures/jax"] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "onnx") {
                continue;
            }
            let key = format!(
                "{}/{}",
                p.parent().unwrap().file_name().unwrap().to_str().unwrap(),
                p.file_stem().unwrap().to_str().unwrap()
            );
            let (_, want) = expected
                .iter()
                .find(|(k, _)| *k == key)
                .unwrap_or_else(|| panic!("{key} has no expectation"));
            let want: BTreeSet<&str> = want.iter().copied().collect();
            assert_eq!(rules_at(&p, Severity::Warning), want, "{key}");
            let report = &linted(&p).files[0];
            let state = report.coverage.as_ref().unwrap().state.state;
            let trained = key.contains("trained");
            assert_eq!(
                state == nnlint::graph::ModelState::Trained,
                trained,
                "{key}: {state}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len());
}

/// Trained models copied out of registry packages (fixtures/third_party/shipped):
/// each looks trained, and nothing at warning level fires, probe included.
#[test]
fn shipped_trained_models_raise_no_warning() {
    let mut seen = 0;
    for e in std::fs::read_dir("fixtures/third_party/shipped").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "onnx") {
            continue;
        }
        let report = &linted(&p).files[0];
        let state = &report.coverage.as_ref().unwrap().state;
        assert_eq!(
            state.state,
            nnlint::graph::ModelState::Trained,
            "{}: {}",
            p.display(),
            state.evidence
        );
        let loud: Vec<_> = report
            .diagnostics
            .iter()
            .filter(|d| d.severity >= Severity::Warning)
            .map(|d| format!("{}: {}", d.rule, d.message))
            .collect();
        assert!(loud.is_empty(), "{}: {loud:?}", p.display());
        seen += 1;
    }
    assert_eq!(seen, 3);
}

/// Binary losses on the wrong inputs and their healthy forms
/// (`fixtures/generate.py losses`), in every export that exists: the
/// TorchScript exporter cannot export `F.binary_cross_entropy`.
#[test]
fn binary_losses_on_the_wrong_inputs_fire_and_their_healthy_forms_do_not() {
    let expected: &[(&str, &[&str])] = &[
        ("bce_on_softmax_", &["binary-loss-on-softmax"]),
        ("bce_logits_on_softmax_", &["binary-loss-on-softmax"]),
        // The probe's NaN at either log is a note on the finding, not a second one.
        ("bce_on_scores_", &["bce-without-sigmoid"]),
        ("bce_on_sigmoid_", &[]),
        ("bce_logits_", &[]),
        // Redundant, not wrong: a note (checked below).
        ("ce_on_log_softmax_", &[]),
        ("mse_on_softmax_", &["regression-loss-on-probabilities"]),
        ("l1_on_softmax_", &["regression-loss-on-probabilities"]),
        (
            "mse_on_sigmoid_classes_",
            &["regression-loss-on-probabilities"],
        ),
        // One sigmoid unit onto [0, 1] with MSE: a deliberate regression.
        ("sigmoid_regression_", &[]),
        ("label_smoothing_", &[]),
        // Knowledge distillation: KL between temperature-scaled softmaxes.
        ("distillation_kl_", &[]),
        ("hidden_softmax_", &["hidden-softmax"]),
    ];
    let mut seen = 0;
    for (p, stem, want) in by_prefix("fixtures/losses", expected) {
        let want: BTreeSet<&str> = want.iter().copied().collect();
        assert_eq!(rules_at(&p, Severity::Warning), want, "{stem}");
        seen += 1;
    }
    assert_eq!(seen, 42, "what both exporters could export");
}

/// `F.cross_entropy(F.log_softmax(z), y)` equals `F.cross_entropy(z, y)`:
/// a note that the second normalization is redundant, and exit 0.
#[test]
fn log_softmax_into_cross_entropy_is_a_note() {
    let mut models = vec!["fixtures/text/log_softmax_into_cross_entropy.onnxtxt".to_string()];
    for exporter in ["dynamo", "torchscript"] {
        for mode in ["train", "eval"] {
            models.push(format!(
                "fixtures/losses/ce_on_log_softmax_{exporter}_{mode}.onnx"
            ));
        }
    }
    for m in &models {
        let p = Path::new(m);
        assert!(rules_at(p, Severity::Warning).is_empty(), "{m}");
        assert_eq!(
            rules_at(p, Severity::Note),
            BTreeSet::from(["double-softmax"]),
            "{m}"
        );
    }
    let out = common::nnlint(&["--isolated", &models[1]]);
    assert_eq!(out.status.code(), Some(0));
}

/// A softmax read by a layer with one output unit takes an expectation over
/// bins (YOLOv8's distribution focal loss head): not a hidden activation.
#[test]
fn a_softmax_weighed_into_one_value_is_not_a_hidden_activation() {
    let p = Path::new("fixtures/text/softmax_expectation.onnxtxt");
    assert!(rules_at(p, Severity::Note).is_empty());
}

/// Published bugs re-created in PyTorch (`fixtures/generate.py published`;
/// each class there names its source program and commit): each fires its
/// rule in every export that exists.
#[test]
fn published_bugs_fire_their_rules() {
    let expected: &[(&str, &str)] = &[
        ("minitutorials_softmax_ce_", "double-softmax"),
        ("acgan_aux_softmax_ce_", "double-softmax"),
        ("distiller_softmax_wrapped_", "double-softmax"),
        ("deepchecker_redundant_softmax_", "double-softmax"),
        (
            "deepchecker_mse_classification_",
            "regression-loss-on-probabilities",
        ),
        ("deepchecker_wrong_activation_", "hidden-softmax"),
        ("defects4ml_092_", "binary-loss-on-softmax"),
        ("neuralint_so44322611_", "binary-loss-on-softmax"),
    ];
    let mut seen = 0;
    for (p, stem, rule) in by_prefix("fixtures/published", expected) {
        let found = rules_at(&p, Severity::Warning);
        assert!(found.contains(*rule), "{stem}: {found:?}");
        seen += 1;
    }
    // TorchScript cannot export `F.binary_cross_entropy` (Defects4ML 092, NeuraLint 44322611).
    assert_eq!(seen, 8 * 4 - 2 * 2);
}

/// The static pass only: the loss rules need no probe.
fn static_only() -> nnlint::Options {
    let mut o = isolated();
    o.probe.enabled = false;
    o
}

/// Every loss form of `fixtures/generate.py loss-forms` is recognized in
/// both exporters' output, with the form the loss computes and its target:
/// the loss the rules read, as `--verbose` and the json report name it.
#[test]
fn losses_are_recognized_from_what_they_compute() {
    use nnlint::graph::Form::*;
    // Each fixture's forms, in the order the terms are found; `Some` target
    // names the input holding the labels, which every data term finds.
    let expected: &[(&str, &[nnlint::graph::Form])] = &[
        ("mse_", &[Squared]),
        ("mse_none_mean_", &[Squared]),
        ("l1_", &[Absolute]),
        ("huber_", &[Huber]),
        ("bce_logits_", &[BinaryCrossEntropy]),
        ("bce_probabilities_", &[BinaryCrossEntropy]),
        ("bce_written_", &[BinaryCrossEntropy]),
        ("bce_written_clip_", &[BinaryCrossEntropy]),
        ("ce_written_", &[CrossEntropyWritten]),
        ("ce_gather_", &[CrossEntropyWritten]),
        ("ce_label_smoothing_", &[CrossEntropy]),
        ("ce_label_smoothing_written_", &[CrossEntropyWritten]),
        ("kl_div_", &[KlDivergence]),
        ("focal_", &[Focal]),
        ("clip_contrastive_", &[Contrastive, Contrastive]),
        ("noise_prediction_", &[NoisePrediction]),
        ("weighted_terms_", &[CrossEntropy, Squared, SelfComparison]),
        ("bug_mse_broadcast_", &[Squared]),
        ("fixed_mse_broadcast_", &[Squared]),
        ("bug_l1_broadcast_", &[Absolute]),
        ("fixed_l1_broadcast_", &[Absolute]),
        ("bug_log_clip_logits_", &[CrossEntropyWritten]),
        ("fixed_log_clip_probabilities_", &[CrossEntropyWritten]),
        ("bug_log_relu_", &[CrossEntropyWritten]),
        ("bug_log_softmax_by_hand_", &[CrossEntropyWritten]),
        ("bug_kl_div_on_probabilities_", &[KlDivergence]),
    ];
    let mut seen = 0;
    for (p, stem, forms) in by_prefix("fixtures/loss_forms", expected) {
        let report = lint_file(&p, &static_only()).unwrap();
        let loss = report.loss.expect("a model was read");
        let found: Vec<_> = loss.terms.iter().map(|t| t.form).collect();
        assert_eq!(&found, forms, "{stem}: {}", loss.describe());
        assert!(
            loss.output.is_some(),
            "{stem}: the total is the graph's output"
        );
        for t in loss
            .terms
            .iter()
            .filter(|t| t.form.is_data() && t.form != Contrastive)
        {
            assert!(
                t.target.is_some(),
                "{stem}: no target in {}",
                loss.describe()
            );
        }
        seen += 1;
    }
    // TorchScript cannot export `l1_loss`, `smooth_l1_loss`, `binary_cross_entropy`
    // or label smoothing (fixtures/loss_forms/VERSIONS.txt).
    assert_eq!(seen, 26 * 2 - 4);
}

/// The four loss rules fire on their bugs in both exporters and stay
/// silent on the fixed twins and on every other loss form.
#[test]
fn loss_bugs_fire_and_their_fixed_twins_stay_silent() {
    let expected: &[(&str, &[&str])] = &[
        ("bug_mse_broadcast_", &["loss-broadcast"]),
        ("bug_l1_broadcast_", &["loss-broadcast"]),
        ("bug_log_clip_logits_", &["log-of-unbounded"]),
        ("bug_log_relu_", &["log-of-unbounded"]),
        ("bug_log_softmax_by_hand_", &["log-softmax-by-hand"]),
        ("bug_kl_div_on_probabilities_", &["kl-div-on-probabilities"]),
        ("", &[]),
    ];
    let ours = [
        "loss-broadcast",
        "log-of-unbounded",
        "log-softmax-by-hand",
        "kl-div-on-probabilities",
    ];
    for (p, stem, want) in by_prefix("fixtures/loss_forms", expected) {
        let report = lint_file(&p, &static_only()).unwrap();
        let fired: BTreeSet<&str> = report
            .diagnostics
            .iter()
            .filter(|d| d.severity >= Severity::Warning && ours.contains(&d.rule))
            .map(|d| d.rule)
            .collect();
        let want: BTreeSet<&str> = want.iter().copied().collect();
        assert_eq!(fired, want, "{stem}");
    }
}

/// Published loss bugs (`fixtures/generate.py published-losses`; each class
/// there cites its source and the fix): each bug fires its rule in every
/// export that exists, and its fixed twin does not.
#[test]
fn published_loss_bugs_fire_and_their_fixes_do_not() {
    let expected: &[(&str, &str)] = &[
        ("so33712178_", "log-softmax-by-hand"),
        ("tfmodels181_", "log-softmax-by-hand"),
        ("pytorch19699_", "loss-broadcast"),
        ("pytorch4938_", "loss-broadcast"),
        ("conet3_", "loss-broadcast"),
        ("proda20_", "kl-div-on-probabilities"),
        ("forum_kl_negative_", "kl-div-on-probabilities"),
        ("focalloss5_", "double-sigmoid"),
        ("daisyrec15_", "double-sigmoid"),
        ("lightning7096_", "double-sigmoid"),
        ("textcls9_", "nll-without-log"),
        ("acgan4_", "nll-without-log"),
        ("pytorch12703_", "nll-without-log"),
    ];
    let (mut bugs, mut fixes) = (0, 0);
    for e in std::fs::read_dir("fixtures/published_losses").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "onnx") {
            continue;
        }
        let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
        let (bug, name) = match (stem.strip_prefix("bug_"), stem.strip_prefix("fixed_")) {
            (Some(n), _) => (true, n),
            (_, Some(n)) => (false, n),
            _ => panic!("{stem}: neither a bug nor a fix"),
        };
        let (_, rule) = expected
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .unwrap_or_else(|| panic!("{stem} has no expectation"));
        let report = lint_file(&p, &static_only()).unwrap();
        let fired = report
            .diagnostics
            .iter()
            .any(|d| d.rule == *rule && d.severity >= Severity::Warning);
        assert_eq!(fired, bug, "{stem}: {rule}");
        if bug {
            bugs += 1;
        } else {
            fixes += 1;
        }
    }
    // 13 bugs in two exporters; TorchScript cannot export `smooth_l1_loss`
    // (CoNet) or `binary_cross_entropy` (AC-GAN).
    assert_eq!((bugs, fixes), (24, 24));
}

/// The same reader on tf2onnx's output (`fixtures/tf_losses/generate.py`):
/// TensorFlow's cross-entropies, Keras's KL (`t * log(t / p)`, which takes
/// probabilities), the bugs and their fixed forms.
#[test]
fn tf2onnx_losses_are_recognized_and_judged() {
    use nnlint::graph::Form::*;
    let expected: &[(&str, (nnlint::graph::Form, Option<&str>))] = &[
        ("bce_written", (BinaryCrossEntropy, None)),
        (
            "bug_ce_log_softmax_by_hand",
            (CrossEntropyWritten, Some("log-softmax-by-hand")),
        ),
        ("bug_mse_broadcast", (Squared, Some("loss-broadcast"))),
        ("ce_keras_from_logits", (CrossEntropyWritten, None)),
        ("ce_with_logits", (CrossEntropyWritten, None)),
        ("ce_written_log_softmax", (CrossEntropyWritten, None)),
        ("fixed_ce_log_clipped_softmax", (CrossEntropyWritten, None)),
        ("fixed_mse_broadcast", (Squared, None)),
        ("kl_keras", (KlDivergence, None)),
        ("mse", (Squared, None)),
    ];
    let ours = [
        "loss-broadcast",
        "log-of-unbounded",
        "log-softmax-by-hand",
        "kl-div-on-probabilities",
    ];
    let mut seen = 0;
    for (p, stem, (form, rule)) in by_prefix("fixtures/tf_losses", expected) {
        let report = lint_file(&p, &static_only()).unwrap();
        let loss = report.loss.as_ref().expect("a model was read");
        let forms: Vec<_> = loss.terms.iter().map(|t| t.form).collect();
        assert_eq!(forms, [*form], "{stem}: {}", loss.describe());
        let fired: Vec<&str> = report
            .diagnostics
            .iter()
            .filter(|d| d.severity >= Severity::Warning && ours.contains(&d.rule))
            .map(|d| d.rule)
            .collect();
        assert_eq!(fired, rule.iter().copied().collect::<Vec<_>>(), "{stem}");
        seen += 1;
    }
    assert_eq!(seen, expected.len());
}

/// A loss that reuses a value at every step (`l = l + l`, 60 times, inside
/// the split's depth) is split once per tensor, not once per path (2^60 of
/// them): a hostile graph must not hang the loss reader.
#[test]
fn a_loss_reusing_its_values_is_read_once_per_tensor() {
    let dir = std::env::temp_dir().join(format!("nnlint-diamond-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut body = String::from(
        "    z = Gemm <transB: int = 1> (x, w)\n    d = Sub (z, y)\n    q = Mul (d, d)\n    l0 = ReduceMean <keepdims: int = 0> (q)\n",
    );
    for i in 0..60 {
        body += &format!("    l{} = Add (l{i}, l{i})\n", i + 1);
    }
    body += "    loss = Identity (l60)\n";
    let text = format!(
        "<ir_version: 10, opset_import: [\"\" : 17]>\ndiamond (float[8,4] x, float[8,2] y) => (float loss)\n<float[2,4] w = {{0.1, -0.2, 0.3, 0.1, 0.2, -0.1, 0.05, 0.3}}>\n{{\n{body}}}\n"
    );
    let path = dir.join("diamond.onnxtxt");
    std::fs::write(&path, text).unwrap();
    let report = lint_file(&path, &static_only()).unwrap();
    let loss = report.loss.expect("a model was read");
    assert_eq!(
        loss.terms.iter().map(|t| t.form).collect::<Vec<_>>(),
        [nnlint::graph::Form::Squared],
        "{}",
        loss.describe()
    );
    std::fs::remove_dir_all(&dir).ok();
}
