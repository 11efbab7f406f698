//! The backward pass against torch: `fixtures/generate.py gradients` records,
//! for each model in `fixtures/gradients/reference`, torch's gradient of every
//! parameter (`<stem>/<name>.npy`), its loss (`<stem>.loss`) and the inputs
//! it used (`<stem>.<input>.npy`). nnlint runs on the same inputs and must
//! agree with torch on every parameter's gradient and on the loss, and its
//! backward pass must agree with its forward pass (tract) on the loss.
//! `fixtures/generate.py overfit` records torch's first SGD and Adam step
//! (`fixtures/overfit/steps`), which `update-ratio --lr` must predict.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use nnlint::onnx::printer::{print_model, Values};
use nnlint::probe::backward::{self, GradOptions};
use nnlint::probe::ProbeOptions;

fn read_npy(path: &Path) -> Vec<f64> {
    let t =
        candle_core::Tensor::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    t.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .unwrap()
}

#[test]
fn gradients_equal_torchs() {
    let (models, compared) = compare_with_torch(Path::new("fixtures/gradients/reference"));
    assert_eq!(models, 12, "six models, two exporters");
    assert!(compared > 100, "{compared} parameters compared");
}

/// The operators added for real architectures (`fixtures/gradient_ops.py`):
/// instance norm, resizes, GatherND, ScatterND, ScatterElements, CumSum,
/// Einsum, LSTM, GRU and RNN.
#[test]
fn gradients_through_indexing_and_resizing_equal_torchs() {
    let (models, compared) = compare_with_torch(Path::new("fixtures/gradients/ops"));
    assert_eq!(models, 8, "four models, two exporters");
    assert!(compared >= 50, "{compared} parameters compared");
}

/// Each model of `root` against torch's loss and gradients: the models
/// compared, and the parameters.
fn compare_with_torch(root: &Path) -> (usize, usize) {
    let mut models = 0;
    let mut compared = 0;
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().is_none_or(|x| x != "onnx") {
            continue;
        }
        let stem = path.with_extension("");
        let stem_s = stem.to_str().unwrap().to_string();
        let model = nnlint::onnx::load(&path).unwrap();
        let source = print_model(&model.proto, Values::Elide);
        let graphs = nnlint::graph::build(&model, &source);
        let graph = &graphs[0];
        let mut options = ProbeOptions::default();
        for input in graph.fed_inputs() {
            options
                .files
                .insert(input.to_string(), format!("{stem_s}.{input}.npy").into());
        }
        let probe = nnlint::probe::run(&model, graph, &options, &common::plan(), &[])
            .unwrap_or_else(|e| panic!("{stem_s}: the probe did not run: {e}"));
        let lowered = nnlint::probe::lower::lower_for_gradients(graph).unwrap();
        let grad = GradOptions {
            mixing: false,
            keep_values: true,
            ..Default::default()
        };
        let grads = backward::run(&model, graph, &lowered, &probe.run.inputs, 0, &grad)
            .unwrap_or_else(|e| panic!("{stem_s}: the backward pass did not run: {e}"));
        // The loss: torch's, and the forward probe's (tract).
        let torch_loss: f64 = std::fs::read_to_string(format!("{stem_s}.loss"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            (grads.loss - torch_loss).abs() <= 1e-4 * torch_loss.abs().max(1.0),
            "{stem_s}: loss {} where torch computed {torch_loss}",
            grads.loss
        );
        let output = graph.outputs()[0];
        let forward = probe.summary(output).expect("the loss is observed").mean();
        assert!(
            (grads.loss - forward).abs() <= 1e-4 * forward.abs().max(1.0),
            "{stem_s}: the backward pass's loss {} and the forward probe's {forward} differ",
            grads.loss
        );
        // Every parameter torch computed a gradient for.
        let folder = stem.clone();
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect();
        files.sort();
        // Gradients that are zero in exact arithmetic (a bias before
        // BatchNorm) are rounding noise in both: compared against the largest.
        let largest = files
            .iter()
            .map(|f| read_npy(f).iter().map(|x| x * x).sum::<f64>().sqrt())
            .fold(0.0f64, f64::max);
        for f in files {
            let name = f
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches(".npy")
                .to_string();
            let want = read_npy(&f);
            let got = grads
                .params
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| {
                    panic!(
                        "{stem_s}: `{name}` is not among the trainable tensors: {:?}",
                        grads.params.iter().map(|p| &p.name).collect::<Vec<_>>()
                    )
                });
            let values = got
                .values
                .as_ref()
                .unwrap_or_else(|| panic!("{stem_s}: `{name}` got no gradient"));
            assert_eq!(values.len(), want.len(), "{stem_s}: `{name}`");
            let dot: f64 = values.iter().zip(&want).map(|(a, b)| a * b).sum();
            let na = values.iter().map(|a| a * a).sum::<f64>().sqrt();
            let nb = want.iter().map(|b| b * b).sum::<f64>().sqrt();
            if nb < 1e-6 * largest {
                assert!(
                    na < 1e-5 * largest,
                    "{stem_s}: `{name}`: torch's gradient is zero, nnlint's norm is {na}"
                );
                continue;
            }
            let cosine = dot / (na * nb);
            assert!(
                (na - nb).abs() <= 1e-4 * nb,
                "{stem_s}: `{name}`: ||g|| = {na}, torch's {nb}"
            );
            assert!(
                cosine > 0.9999,
                "{stem_s}: `{name}`: cosine similarity {cosine}"
            );
            compared += 1;
        }
        // And every tensor nnlint trains is one of torch's parameters.
        for p in &grads.params {
            assert!(
                folder.join(format!("{}.npy", p.name)).exists(),
                "{stem_s}: `{}` is trained by nnlint but holds no torch parameter",
                p.name
            );
        }
        models += 1;
    }
    (models, compared)
}

/// torch's first optimizer step, as `fixtures/generate.py overfit` recorded
/// it: `name sgd adam` per initializer, `||w1 - w0|| / ||w0||`.
fn torch_steps(path: &Path) -> std::collections::BTreeMap<String, (f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect()
}

/// `update-ratio` from one file predicts torch's first SGD and Adam step on
/// every weight layer, and flags exactly the layers torch's step puts outside
/// the band.
#[test]
fn first_step_predictions_match_torchs_step() {
    use nnlint::probe::{FirstStep, Optimizer};
    let root = Path::new("fixtures/overfit/steps");
    let mut models = 0;
    let mut compared = 0;
    let mut flagged_somewhere = 0;
    for e in std::fs::read_dir(root).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "onnx") {
            continue;
        }
        let stem = path.with_extension("").to_str().unwrap().to_string();
        let torch = torch_steps(Path::new(&format!("{stem}.steps")));
        for (optimizer, lr, column) in [(Optimizer::Sgd, 0.1, 0), (Optimizer::Adam, 1e-3, 1)] {
            let model = nnlint::onnx::load(&path).unwrap();
            let source = print_model(&model.proto, Values::Elide);
            let graphs = nnlint::graph::build(&model, &source);
            let mut options = common::isolated();
            options.select = vec!["update-ratio".into()];
            // The batch torch stepped on, by position: TorchScript renames `x`.
            let fed: Vec<&str> = graphs[0].fed_inputs().collect();
            assert_eq!(fed.len(), 2, "{stem}: {fed:?}");
            for (input, file) in fed.iter().zip(["x", "y"]) {
                options
                    .probe
                    .files
                    .insert(input.to_string(), format!("{stem}.{file}.npy").into());
            }
            options.probe.first_step = Some(FirstStep { optimizer, lr });
            let report = nnlint::lint_file(&path, &options).unwrap();
            let flagged: BTreeSet<String> = report
                .diagnostics
                .iter()
                .filter(|d| d.rule == "update-ratio")
                .map(|d| d.message.split('`').nth(1).unwrap().to_string())
                .collect();
            // The same prediction through the library, number by number.
            let probe = nnlint::probe::run(
                &model,
                &graphs[0],
                &options.probe,
                &common::plan(),
                &[nnlint::probe::Backward::Params],
            )
            .unwrap();
            let grads = probe.gradients.unwrap().unwrap();
            let mut expected = BTreeSet::new();
            for p in grads
                .params
                .iter()
                .filter(|p| p.kind == nnlint::graph::ParamKind::Weight)
            {
                let want = [torch[&p.name].0, torch[&p.name].1][column];
                let moved = if column == 0 { p.norm } else { p.adam_norm };
                let got = lr * moved / p.weight_norm;
                // Below 1e-4 of the weights, torch's f32 step rounds away.
                if want >= 1e-4 {
                    assert!(
                        (got - want).abs() <= 1e-2 * want,
                        "{stem} {optimizer:?}: `{}` predicted {got}, torch moved {want}",
                        p.name
                    );
                    compared += 1;
                } else {
                    assert!(got < 1e-4, "{stem} {optimizer:?}: `{}` {got}", p.name);
                }
                if !(1e-4..=3e-2).contains(&want) {
                    expected.insert(p.name.clone());
                }
            }
            assert_eq!(flagged, expected, "{stem} {optimizer:?} at lr {lr}");
            flagged_somewhere += usize::from(!flagged.is_empty());
        }
        models += 1;
    }
    assert_eq!(models, 4, "two models, two exporters");
    assert!(compared > 20, "{compared} predictions compared");
    assert!(flagged_somewhere >= 2);
}

/// The healthy MLP at a sound learning rate: no layer out of the band.
#[test]
fn a_sound_first_step_flags_no_layer() {
    for kind in ["dynamo", "torchscript"] {
        let stem = format!("fixtures/overfit/steps/step_mlp_{kind}_train");
        let mut options = common::isolated();
        options.probe.first_step = Some(nnlint::probe::FirstStep {
            optimizer: nnlint::probe::Optimizer::Adam,
            lr: 1e-3,
        });
        let report = nnlint::lint_file(Path::new(&format!("{stem}.onnx")), &options).unwrap();
        let fired: Vec<&str> = report.diagnostics.iter().map(|d| d.rule).collect();
        assert!(!fired.contains(&"update-ratio"), "{stem}: {fired:?}");
    }
}
