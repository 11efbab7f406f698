//! The backward pass against torch: `fixtures/generate.py gradients` records,
//! for each model in `fixtures/gradients/reference`, torch's gradient of every
//! parameter (`<stem>/<name>.npy`), its loss (`<stem>.loss`) and the inputs
//! it used (`<stem>.<input>.npy`). nnlint runs on the same inputs and must
//! agree with torch on every parameter's gradient and on the loss, and its
//! backward pass must agree with its forward pass (tract) on the loss.

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
    let root = Path::new("fixtures/gradients/reference");
    let mut models = 0;
    let mut compared = 0;
    for e in std::fs::read_dir(root).unwrap() {
        let path = e.unwrap().path();
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
        let probe = nnlint::probe::run(&model, graph, &options, 5.0, &[])
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
    assert_eq!(models, 12, "six models, two exporters");
    assert!(compared > 100, "{compared} parameters compared");
}
