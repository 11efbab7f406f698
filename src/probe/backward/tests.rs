//! The engine's gradients against central differences, in f64, on small
//! graphs that use the operators with hand-written backward paths (pooling
//! with padding and strides other than the kernel, grouped and strided
//! convolution, batch statistics, layer norm, softmax, the written-out losses).

use super::{run, GradOptions};
use crate::onnx::printer::{print_model, Values};
use crate::onnx::proto::ModelProto;
use crate::onnx::Model;
use crate::probe::inputs::{Fill, Input};
use crate::probe::lower::lower_for_gradients;
use candle_core::DType;

/// `n` values in [-1, 1) from a fixed sequence, as a text-format list.
fn values(n: usize, salt: u64) -> String {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:.6}", (x % 2000) as f64 / 1000.0 - 1.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn options(params: bool) -> GradOptions {
    GradOptions {
        params,
        mixing: false,
        float: DType::F64,
        keep_values: true,
        samples: None,
    }
}

fn loss_and_grads(proto: &ModelProto, batch: &[Input]) -> super::Gradients {
    let model = Model::from_proto(std::path::Path::new("fd.onnx"), proto.clone()).unwrap();
    let source = print_model(&model.proto, Values::Elide);
    let graphs = crate::graph::build(&model, &source);
    let lowered = lower_for_gradients(&graphs[0]).unwrap();
    run(&model, &graphs[0], &lowered, batch, 3, &options(true)).unwrap()
}

/// Every trainable tensor's gradient, at up to five elements, against
/// `(L(w + h) - L(w - h)) / 2h`.
fn check(text: &str, batch: &[Input]) {
    let (proto, _) = crate::onnx::text::parse_model(text).unwrap();
    let base = loss_and_grads(&proto, batch);
    assert!(!base.params.is_empty());
    let h = 1e-6;
    let mut checked = 0;
    for p in &base.params {
        let grad = p.values.as_ref().expect("a gradient");
        let index = proto
            .graph
            .as_ref()
            .unwrap()
            .initializer
            .iter()
            .position(|t| t.name == p.name)
            .unwrap();
        let n = grad.len();
        for k in [0, n / 3, n / 2, 2 * n / 3, n - 1] {
            let at = |delta: f64| {
                let mut q = proto.clone();
                let t = &mut q.graph.as_mut().unwrap().initializer[index];
                assert!(!t.double_data.is_empty(), "{} is stored as doubles", t.name);
                t.double_data[k] += delta;
                loss_and_grads(&q, batch).loss
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            let analytic = grad[k];
            assert!(
                (numeric - analytic).abs() <= 1e-6 + 1e-5 * numeric.abs().max(analytic.abs()),
                "`{}`[{k}]: backward {analytic}, central differences {numeric}",
                p.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 5 * base.params.len());
}

/// A batch of normal `x` of `shape` and labels `y` of three classes, one per
/// sample, drawn from the scores `scores`.
fn classified(shape: &[usize], scores: &str) -> [Input; 2] {
    let labels = Fill::Labels {
        classes: 3,
        scores: scores.into(),
    };
    [
        input("x", 11, shape, Fill::Normal),
        input("y", 7, &shape[..1], labels),
    ]
}

fn input(name: &str, elem_type: i32, shape: &[usize], fill: Fill) -> Input {
    Input {
        name: name.into(),
        elem_type,
        shape: shape.to_vec(),
        fill,
    }
}

#[test]
fn convolutions_pooling_and_batch_statistics_match_central_differences() {
    let text = format!(
        r#"<ir_version: 10, opset_import: ["" : 20]>
g (double[4,3,6,6] x, int64[4] y) => (double loss)
<double[4,3,3,3] w1 = {{{}}}, double[4] s1 = {{{}}}, double[4] b1 = {{{}}},
 double[4] m1 = {{0, 0, 0, 0}}, double[4] v1 = {{1, 1, 1, 1}},
 double[4,1,2,2] w2 = {{{}}}, double[4] c2 = {{{}}}, double[5,4] w3 = {{{}}}, double[5] b3 = {{{}}},
 double[5] g = {{{}}}, double[5] be = {{{}}}, double[3,5] w4 = {{{}}}>
{{
    h1 = Conv <pads: ints = [1, 1, 1, 1], strides: ints = [2, 2]> (x, w1)
    h2, rm, rv = BatchNormalization <training_mode: int = 1> (h1, s1, b1, m1, v1)
    h3 = Tanh (h2)
    h4 = MaxPool <kernel_shape: ints = [2, 2], strides: ints = [1, 1], pads: ints = [0, 0, 1, 1]> (h3)
    h5 = AveragePool <kernel_shape: ints = [3, 3], strides: ints = [2, 2], pads: ints = [1, 1, 1, 1]> (h4)
    h6 = Conv <group: int = 4> (h5, w2, c2)
    h7 = Flatten (h6)
    h8 = Gemm <transB: int = 1> (h7, w3, b3)
    h9 = LayerNormalization (h8, g, be)
    h10 = Sigmoid (h9)
    h11 = Gemm <transB: int = 1> (h10, w4)
    loss = SoftmaxCrossEntropyLoss (h11, y)
}}"#,
        values(108, 1),
        values(4, 2),
        values(4, 3),
        values(16, 4),
        values(4, 5),
        values(20, 6),
        values(5, 7),
        values(5, 8),
        values(5, 9),
        values(15, 10),
    );
    check(&text, &classified(&[4, 3, 6, 6], "h11"));
}

#[test]
fn attention_padding_layer_norm_and_weighted_nll_match_central_differences() {
    let text = format!(
        r#"<ir_version: 10, opset_import: ["" : 20]>
g (double[2,3,4] x, int64[2,3] ids, int64[10] y) => (double loss)
<double[7,4] emb = {{{}}}, double[4,4] wq = {{{}}}, double[4,4] wk = {{{}}}, double[4] bias = {{{}}},
 double[4,3] wo = {{{}}}, double[3] cw = {{0.5, 1, 1.5}}, double[1] eps = {{0.00001}},
 double[1] half = {{0.5}}, int64[1] last = {{-1}}, int64[2] rows = {{10, 4}},
 int64[6] pads = {{0, 1, 0, 0, 1, 0}}>
{{
    e = Gather (emb, ids)
    a0 = Add (e, x)
    a = Pad <mode: string = "reflect"> (a0, pads)
    q = MatMul (a, wq)
    k = MatMul (a, wk)
    kt = Transpose <perm: ints = [0, 2, 1]> (k)
    s = MatMul (q, kt)
    p = Softmax <axis: int = -1> (s)
    o = MatMul (p, a)
    ob = Add (o, bias)
    mu = ReduceMean <keepdims: int = 1> (ob, last)
    d = Sub (ob, mu)
    d2 = Mul (d, d)
    v = ReduceMean <keepdims: int = 1> (d2, last)
    ve = Add (v, eps)
    r = Sqrt (ve)
    nrm = Div (d, r)
    left, right = Split <axis: int = 2, num_outputs: int = 2> (nrm)
    sw = Concat <axis: int = 2> (right, left)
    pos = Greater (sw, half)
    sh = Mul (sw, half)
    gated = Where (pos, sw, sh)
    act = Gelu (gated)
    flat = Reshape (act, rows)
    logits = MatMul (flat, wo)
    lp = LogSoftmax <axis: int = 1> (logits)
    loss = NegativeLogLikelihoodLoss <ignore_index: int = 1> (lp, y, cw)
}}"#,
        values(28, 11),
        values(16, 12),
        values(16, 13),
        values(4, 14),
        values(12, 15),
    );
    let batch = [
        input("x", 11, &[2, 3, 4], Fill::Normal),
        input("ids", 7, &[2, 3], Fill::Tokens { vocab: 7 }),
        input(
            "y",
            7,
            &[10],
            Fill::Labels {
                classes: 3,
                scores: "lp".into(),
            },
        ),
    ];
    check(&text, &batch);
}

#[test]
fn normalizations_resizes_index_writes_and_sums_match_central_differences() {
    let text = format!(
        r#"<ir_version: 10, opset_import: ["" : 21]>
g (double[2,4,3,3] x, int64[2] y) => (double loss)
<double[4] s1 = {{{}}}, double[4] b1 = {{{}}}, double[4] s2 = {{{}}}, double[4] b2 = {{{}}},
 float[4] up = {{1, 1, 2, 2}}, int64[4] down = {{2, 4, 3, 3}},
 int64[2,3,2] at = {{0, 0, 1, 2, 2, 1, 2, 2, 0, 1, 1, 0}},
 int64[2,2] rows = {{0, 1, 1, 2}}, double[2,4] upd = {{{}}},
 int64[2,3,2] cols = {{0, 3, 1, 2, 2, 0, 3, 1, 0, 2, 1, 3}}, double[2,3,2] upd2 = {{{}}},
 int64[2] flat = {{2, 12}}, int64[] two = {{2}}, double[3,12] w = {{{}}}>
{{
    h1 = InstanceNormalization (x, s1, b1)
    h2 = GroupNormalization <num_groups: int = 2> (h1, s2, b2)
    h3 = Resize <mode: string = "linear"> (h2, "", up)
    h4 = Resize <mode: string = "nearest", coordinate_transformation_mode: string = "asymmetric"> (h3, "", "", down)
    h5 = Tanh (h4)
    t = Transpose <perm: ints = [0, 2, 3, 1]> (h5)
    g1 = GatherND <batch_dims: int = 1> (t, at)
    g2 = ScatterND (g1, rows, upd)
    g3 = ScatterElements <axis: int = 2> (g2, cols, upd2)
    g4 = CumSum <reverse: int = 1, exclusive: int = 1> (g3, two)
    f = Reshape (g4, flat)
    logits = Gemm <transB: int = 1> (f, w)
    loss = SoftmaxCrossEntropyLoss (logits, y)
}}"#,
        values(4, 21),
        values(4, 22),
        values(4, 23),
        values(4, 24),
        values(8, 25),
        values(12, 26),
        values(36, 27),
    );
    check(&text, &classified(&[2, 4, 3, 3], "logits"));
}

#[test]
fn selu_celu_softsign_mish_thresholded_relu_sum_and_mean_match_central_differences() {
    let text = format!(
        r#"<ir_version: 10, opset_import: ["" : 20]>
g (double[4,6] x, int64[4] y) => (double loss)
<double[5,6] w1 = {{{}}}, double[5,5] w2 = {{{}}}, double[3,5] w3 = {{{}}}>
{{
    h1 = Gemm <transB: int = 1, alpha: float = 2.0> (x, w1)
    h2 = Selu (h1)
    h3 = Celu <alpha: float = 0.7> (h2)
    h4 = Softsign (h3)
    s4 = Sum (h4, h3, h2)
    m4 = Mean (s4, h1)
    h5 = Gemm <transB: int = 1, alpha: float = 3.0> (m4, w2)
    h6 = Mish (h5)
    h7 = ThresholdedRelu <alpha: float = -0.05> (h6)
    h8 = Gemm <transB: int = 1> (h7, w3)
    loss = SoftmaxCrossEntropyLoss (h8, y)
}}"#,
        values(30, 21),
        values(25, 22),
        values(15, 23),
    );
    check(&text, &classified(&[4, 6], "h8"));
}

/// [`super::ops::OPERATORS`] is exactly the default-domain operators
/// `eval` has an arm for: every other one is refused by name.
#[test]
fn the_operator_list_is_what_eval_computes() {
    use super::ops::{eval, Cx, OPERATORS};
    use crate::graph::onnx_ops::DEFAULT_DOMAIN_OPS;
    use crate::onnx::proto::NodeProto;
    assert!(
        OPERATORS.windows(2).all(|w| w[0] < w[1]),
        "sorted, no repeats"
    );
    for op in OPERATORS {
        assert!(DEFAULT_DOMAIN_OPS.iter().any(|(o, _)| o == op), "{op}");
    }
    let cx = Cx::new(20, DType::F32, false);
    for (op, _) in DEFAULT_DOMAIN_OPS {
        let node = NodeProto {
            op_type: op.to_string(),
            ..Default::default()
        };
        // No inputs: a computed operator fails on them, or panics inside
        // candle (the engine's guard catches that); it does not refuse.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eval(&node, &[], &cx).err()));
        let refused = matches!(result, Ok(Some(e)) if e == format!("the gradient engine has no `{op}` operator"));
        assert_eq!(refused, !OPERATORS.contains(op), "{op}");
    }
}

/// The new activations' values, against their ONNX definitions written out.
#[test]
fn selu_celu_softsign_mish_and_thresholded_relu_compute_their_definitions() {
    use super::ops::{eval, Cx};
    use crate::onnx::proto::{AttributeProto, AttributeType, NodeProto};
    let xs = [-2.0f64, -0.5, 0.0, 0.3, 2.0];
    let x = candle_core::Tensor::new(&xs, &candle_core::Device::Cpu).unwrap();
    let cx = Cx::new(20, DType::F64, false);
    type Definition = fn(f64) -> f64;
    let cases: [(&str, Option<f32>, Definition); 5] = [
        ("Selu", None, |x| {
            1.050_701
                * if x > 0.0 {
                    x
                } else {
                    1.673_263_2 * (x.exp() - 1.0)
                }
        }),
        ("Celu", Some(0.7), |x| {
            x.max(0.0) + (0.7 * ((x / 0.7).exp() - 1.0)).min(0.0)
        }),
        ("Softsign", None, |x| x / (1.0 + x.abs())),
        ("Mish", None, |x| x * (1.0 + x.exp()).ln().tanh()),
        (
            "ThresholdedRelu",
            Some(0.2),
            |x| if x > 0.2 { x } else { 0.0 },
        ),
    ];
    for (op, alpha, f) in cases {
        let node = NodeProto {
            op_type: op.into(),
            attribute: alpha
                .map(|a| AttributeProto {
                    name: "alpha".into(),
                    r#type: AttributeType::Float as i32,
                    f: a,
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let y: Vec<f64> = eval(&node, &[Some(x.clone())], &cx).unwrap()[0]
            .to_vec1()
            .unwrap();
        for (&x, y) in xs.iter().zip(y) {
            assert!((y - f(x)).abs() < 1e-6, "{op}({x}) = {y}, not {}", f(x));
        }
    }
}

#[test]
fn conv_transpose_matches_central_differences() {
    let text = format!(
        r#"<ir_version: 10, opset_import: ["" : 20]>
g (double[2,4,3,3] x, int64[2] y) => (double loss)
<double[4,3,3,3] w1 = {{{}}}, double[6] b1 = {{{}}}, double[6,2,2] w2 = {{{}}}, double[3,2] w3 = {{{}}}>
{{
    h1 = ConvTranspose <group: int = 2, strides: ints = [2, 2], pads: ints = [1, 0, 1, 1], output_padding: ints = [1, 0]> (x, w1, b1)
    h2 = Tanh (h1)
    s = Constant <value_ints: ints = [2, 6, 36]> ()
    h3 = Reshape (h2, s)
    h4 = ConvTranspose <strides: ints = [3], dilations: ints = [2], pads: ints = [2, 0]> (h3, w2)
    h5 = ReduceMean <axes: ints = [2], keepdims: int = 0> (h4)
    h6 = Gemm <transB: int = 1> (h5, w3)
    loss = SoftmaxCrossEntropyLoss (h6, y)
}}"#,
        values(108, 31),
        values(6, 32),
        values(24, 33),
        values(6, 34),
    );
    check(&text, &classified(&[2, 4, 3, 3], "h6"));
}

/// `ConvTranspose` computed as a convolution gives what its definition
/// gives: every input element adds its kernel, scaled, at `i s - pad + k d`.
#[test]
fn conv_transpose_computes_its_definition() {
    use super::ops::{eval, Cx};
    use crate::onnx::proto::{AttributeProto, AttributeType, NodeProto};
    let ints = |name: &str, v: &[i64]| AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    };
    let (n, cin, cout_g, g, h, w, kh, kw) = (2, 4, 3, 2, 3, 4, 3, 2);
    let (s, d, pads, extra) = ([2i64, 3], [2i64, 1], [1i64, 0, 0, 2], [1i64, 0]);
    let xs: Vec<f64> = (0..n * cin * h * w)
        .map(|i| ((i * 7) % 11) as f64 - 5.0)
        .collect();
    let ws: Vec<f64> = (0..cin * cout_g * kh * kw)
        .map(|i| ((i * 5) % 9) as f64 - 4.0)
        .collect();
    let cpu = candle_core::Device::Cpu;
    let x = candle_core::Tensor::from_vec(xs.clone(), (n, cin, h, w), &cpu).unwrap();
    let wt = candle_core::Tensor::from_vec(ws.clone(), (cin, cout_g, kh, kw), &cpu).unwrap();
    let node = NodeProto {
        op_type: "ConvTranspose".into(),
        attribute: vec![
            ints("strides", &s),
            ints("dilations", &[d[0], d[0]]),
            ints("pads", &pads),
            ints("output_padding", &extra),
            AttributeProto {
                name: "group".into(),
                r#type: AttributeType::Int as i32,
                i: g as i64,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let cx = Cx::new(20, DType::F64, false);
    let y = eval(&node, &[Some(x), Some(wt)], &cx).unwrap().remove(0);
    let size = |i: usize, len: usize, k: usize| {
        s[i] * (len as i64 - 1) + extra[i] + d[0] * (k as i64 - 1) + 1 - pads[i] - pads[2 + i]
    };
    let (oh, ow) = (size(0, h, kh) as usize, size(1, w, kw) as usize);
    assert_eq!(y.dims(), &[n, cout_g * g, oh, ow]);
    let mut want = vec![0.0; n * cout_g * g * oh * ow];
    let cin_g = cin / g;
    for b in 0..n {
        for ci in 0..cin {
            let group = ci / cin_g;
            for i in 0..h {
                for j in 0..w {
                    let v = xs[((b * cin + ci) * h + i) * w + j];
                    for o in 0..cout_g {
                        let co = group * cout_g + o;
                        for p in 0..kh {
                            for q in 0..kw {
                                let r = i as i64 * s[0] - pads[0] + p as i64 * d[0];
                                let t = j as i64 * s[1] - pads[1] + q as i64 * d[0];
                                if (0..oh as i64).contains(&r) && (0..ow as i64).contains(&t) {
                                    let k = ws[((ci * cout_g + o) * kh + p) * kw + q];
                                    want[((b * cout_g * g + co) * oh + r as usize) * ow
                                        + t as usize] += v * k;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let got: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!((a - b).abs() < 1e-9, "element {k}: {a} vs {b}");
    }
}

/// A graph exported for a static batch spells it in its shapes, and may
/// hold constants folded for it (a class token expanded to every sample):
/// the pass cut to the batch's first two samples must compute what the same
/// graph exported for two computes, on the same two samples.
#[test]
fn a_static_batch_cut_to_its_first_samples_has_the_gradients_of_a_batch_of_that_size() {
    let text = |b: usize| {
        format!(
            r#"<ir_version: 10, opset_import: ["" : 20]>
g (double[{b},4,6] x, int64[{b}] y) => (double loss)
<double[6,5] w1 = {{{}}}, double[3,25] w2 = {{{}}}, double[3] b2 = {{{}}},
 double[{b},1,6] token = {{{}}},
 int64[2] rows = {{{}, 6}}, int64[2] flat = {{{b}, 25}}, int64[2] ones = {{{b}, 3}}>
{{
    h0 = Concat <axis: int = 1> (x, token)
    h1 = Reshape (h0, rows)
    h2 = MatMul (h1, w1)
    h3 = Tanh (h2)
    h4 = Reshape (h3, flat)
    h5 = Gemm <transB: int = 1> (h4, w2, b2)
    m = ConstantOfShape <value: tensor = double[1] {{0.5}}> (ones)
    h6 = Mul (h5, m)
    loss = SoftmaxCrossEntropyLoss (h6, y)
}}"#,
            values(30, 1),
            values(75, 2),
            values(3, 3),
            values(b * 6, 4),
            b * 5,
        )
    };
    let grads = |b: usize, samples: Option<usize>| {
        let (proto, _) = crate::onnx::text::parse_model(&text(b)).unwrap();
        let model = Model::from_proto(std::path::Path::new("fd.onnx"), proto).unwrap();
        let source = print_model(&model.proto, Values::Elide);
        let graphs = crate::graph::build(&model, &source);
        let lowered = lower_for_gradients(&graphs[0]).unwrap();
        let batch = classified(&[b, 4, 6], "h6");
        let options = GradOptions {
            samples,
            ..options(true)
        };
        run(&model, &graphs[0], &lowered, &batch, 3, &options).unwrap()
    };
    let cut = grads(8, Some(2));
    let two = grads(2, None);
    assert_eq!((cut.batch, cut.cut_from), (2, Some(8)));
    assert_eq!(two.cut_from, None);
    assert!(
        (cut.loss - two.loss).abs() <= 1e-12,
        "{} against {}",
        cut.loss,
        two.loss
    );
    assert_eq!(cut.params.len(), 4);
    for (a, b) in cut.params.iter().zip(&two.params) {
        let (a, b) = (a.values.as_ref().unwrap(), b.values.as_ref().unwrap());
        assert!(
            a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-12),
            "{a:?} against {b:?}"
        );
    }
}

/// candle orders the tensors for the backward pass by a recursive walk: a
/// graph 40 000 nodes deep overflows a test thread's 2 MiB stack unless the
/// engine runs on a stack sized for the graph.
#[test]
fn a_graph_tens_of_thousands_of_nodes_deep_runs_on_a_stack_sized_for_it() {
    const DEPTH: usize = 40_000;
    let mut text = String::from(
        "<ir_version: 10, opset_import: [\"\" : 20]>\ng (double[2,4] x) => (double y)\n\
         <double[4,4] w = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}>\n{\n    h0 = Identity (x)\n",
    );
    for i in 0..DEPTH {
        text.push_str(&format!("    h{} = MatMul (h{i}, w)\n", i + 1));
    }
    text.push_str(&format!(
        "    y = ReduceSum <keepdims: int = 0> (h{DEPTH})\n}}\n"
    ));
    let (proto, _) = crate::onnx::text::parse_model(&text).unwrap();
    let model = Model::from_proto(std::path::Path::new("deep.onnx"), proto).unwrap();
    let source = print_model(&model.proto, Values::Elide);
    let graphs = crate::graph::build(&model, &source);
    let lowered = lower_for_gradients(&graphs[0]).unwrap();
    let batch = [input("x", 11, &[2, 4], Fill::Normal)];
    let grads = crate::probe::engine::guarded_deep(lowered.nodes.len(), || {
        run(&model, &graphs[0], &lowered, &batch, 3, &options(true))
    })
    .unwrap();
    assert_eq!(grads.params.len(), 1);
    assert!(grads.params[0].norm > 0.0);
}
