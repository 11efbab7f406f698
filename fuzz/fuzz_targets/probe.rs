//! Small graphs of real ops through lowering and the probe, under a small
//! memory budget. The input is a structure ([`Spec`]) that is written out as
//! a text model, so nearly every case parses and reaches tract; the shape
//! operands are arbitrary integers, so the data-dependent size of `Range`,
//! `ConstantOfShape`, `Expand`, `Tile`, `Pad`, `OneHot` and `Reshape` is the
//! fuzzer's to choose.
#![no_main]

use std::fmt::Write;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Spec {
    /// The input's dimensions, each 1 to 4; the first is the batch.
    dims: Vec<u8>,
    dynamic_batch: bool,
    training: bool,
    ops: Vec<Op>,
    /// Ends with a cross-entropy loss against integer labels.
    loss: bool,
}

#[derive(Arbitrary, Debug)]
enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Abs,
    Neg,
    Softplus,
    Erf,
    Identity,
}

#[derive(Arbitrary, Debug)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Unary(Unary),
    /// With a scalar constant, or with an earlier value.
    Binary(Binary, f32, Option<u8>),
    Softmax(i8),
    LogSoftmax(i8),
    /// A weight `[last, out]` filled with `scale`, `scale * 2`, ...
    MatMul(u8, f32),
    Gemm(u8, f32),
    BatchNorm(f32),
    LayerNorm,
    Dropout(u8),
    ReduceMean(i8, bool),
    ReduceSum(i8, bool),
    Transpose,
    Flatten(i8),
    Concat(u8, i8),
    Reshape(Vec<i64>),
    Expand(Vec<i64>),
    Tile(Vec<i64>),
    Pad(Vec<i64>),
    /// `ConstantOfShape` of a constant shape, or of `Shape(x) * factor`.
    ConstantOfShape(Vec<i64>, Option<i64>),
    /// `Range(0, limit, delta)`, the limit constant or `ReduceSum(x) * factor`.
    Range(i64, i64, bool),
    OneHot(i64),
    NonZero,
    Clip(f32, f32),
}

struct Builder {
    text: String,
    /// Each value's name and, where known, its shape.
    values: Vec<(String, Option<Vec<i64>>)>,
    consts: usize,
}

impl Builder {
    fn fresh(&mut self, shape: Option<Vec<i64>>) -> String {
        let name = format!("v{}", self.values.len());
        self.values.push((name.clone(), shape));
        name
    }

    fn last(&self) -> (String, Option<Vec<i64>>) {
        self.values.last().cloned().expect("the input is a value")
    }

    fn ints(&mut self, v: &[i64]) -> String {
        self.consts += 1;
        let name = format!("c{}", self.consts);
        let list: Vec<String> = v.iter().map(i64::to_string).collect();
        let _ = writeln!(
            self.text,
            "    {name} = Constant <value = int64[{}] {{{}}}> ()",
            v.len(),
            list.join(",")
        );
        name
    }

    fn floats(&mut self, shape: &[i64], first: f32) -> String {
        self.consts += 1;
        let name = format!("c{}", self.consts);
        let count: i64 = shape.iter().product();
        let list: Vec<String> = (0..count)
            .map(|i| format!("{:?}", first * (1.0 + i as f32 * 0.5)))
            .collect();
        let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
        let _ = writeln!(
            self.text,
            "    {name} = Constant <value = float[{}] {{{}}}> ()",
            dims.join(","),
            list.join(",")
        );
        name
    }

    fn node(&mut self, out_shape: Option<Vec<i64>>, call: &str) -> String {
        let out = self.fresh(out_shape);
        let _ = writeln!(self.text, "    {out} = {call}");
        out
    }
}

fn short(v: &[i64]) -> &[i64] {
    &v[..v.len().min(4)]
}

fn build(spec: &Spec) -> Option<String> {
    let mut dims: Vec<i64> = spec
        .dims
        .iter()
        .take(4)
        .map(|d| i64::from(d % 4 + 1))
        .collect();
    if dims.is_empty() {
        dims.push(2);
    }
    let declared: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if i == 0 && spec.dynamic_batch {
                "N".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    let mut b = Builder {
        text: String::new(),
        values: vec![("x".into(), Some(dims.clone()))],
        consts: 0,
    };
    for op in spec.ops.iter().take(12) {
        let (x, shape) = b.last();
        let rank = shape.as_ref().map(Vec::len);
        let axis = |a: i8| rank.map(|r| i64::from(a).rem_euclid(r.max(1) as i64));
        match op {
            Op::Unary(u) => {
                b.node(shape, &format!("{u:?}({x})"));
            }
            Op::Binary(op, value, other) => {
                let rhs = match other {
                    Some(i) => b.values[*i as usize % b.values.len()].0.clone(),
                    None => b.floats(&[], *value),
                };
                b.node(None, &format!("{op:?}({x}, {rhs})"));
            }
            Op::Softmax(a) | Op::LogSoftmax(a) => {
                let name = if matches!(op, Op::Softmax(_)) {
                    "Softmax"
                } else {
                    "LogSoftmax"
                };
                let a = axis(*a).unwrap_or(-1);
                b.node(shape, &format!("{name} <axis: int = {a}> ({x})"));
            }
            Op::MatMul(out, scale) | Op::Gemm(out, scale) => {
                let last = *shape.as_ref()?.last()?;
                let out = i64::from(out % 8 + 1);
                let w = b.floats(&[last, out], *scale);
                let mut s = shape.clone()?;
                *s.last_mut()? = out;
                if matches!(op, Op::Gemm(..)) && s.len() == 2 {
                    let bias = b.floats(&[out], *scale);
                    b.node(Some(s), &format!("Gemm({x}, {w}, {bias})"));
                } else {
                    b.node(Some(s), &format!("MatMul({x}, {w})"));
                }
            }
            Op::BatchNorm(eps) => {
                let s = shape.clone()?;
                let c = *s.get(1)?;
                let (scale, shift) = (b.floats(&[c], 1.0), b.floats(&[c], 0.0));
                let (mean, var) = (b.floats(&[c], 0.0), b.floats(&[c], 1.0));
                let mode = i32::from(spec.training);
                if spec.training {
                    let out = b.fresh(Some(s));
                    let _ = writeln!(
                        b.text,
                        "    {out}, rm{n}, rv{n} = BatchNormalization <epsilon: float = {eps:?}, training_mode: int = {mode}> ({x}, {scale}, {shift}, {mean}, {var})",
                        n = b.values.len()
                    );
                } else {
                    b.node(
                        Some(s),
                        &format!("BatchNormalization <epsilon: float = {eps:?}> ({x}, {scale}, {shift}, {mean}, {var})"),
                    );
                }
            }
            Op::LayerNorm => {
                let last = *shape.as_ref()?.last()?;
                let (scale, shift) = (b.floats(&[last], 1.0), b.floats(&[last], 0.0));
                b.node(
                    shape,
                    &format!("LayerNormalization <axis: int = -1> ({x}, {scale}, {shift})"),
                );
            }
            Op::Dropout(ratio) => {
                let r = b.floats(&[], f32::from(*ratio) / 256.0);
                let t = format!("t{}", b.values.len());
                let _ = writeln!(
                    b.text,
                    "    {t} = Constant <value = bool {{{}}}> ()",
                    i32::from(spec.training)
                );
                b.node(shape, &format!("Dropout({x}, {r}, {t})"));
            }
            Op::ReduceMean(a, keep) | Op::ReduceSum(a, keep) => {
                let name = if matches!(op, Op::ReduceMean(..)) {
                    "ReduceMean"
                } else {
                    "ReduceSum"
                };
                let axes = b.ints(&[axis(*a).unwrap_or(0)]);
                let keep = i32::from(*keep);
                b.node(
                    None,
                    &format!("{name} <keepdims: int = {keep}> ({x}, {axes})"),
                );
            }
            Op::Transpose => {
                let s = shape.as_ref().map(|s| s.iter().rev().copied().collect());
                b.node(s, &format!("Transpose({x})"));
            }
            Op::Flatten(a) => {
                let a = axis(*a).unwrap_or(1);
                b.node(None, &format!("Flatten <axis: int = {a}> ({x})"));
            }
            Op::Concat(other, a) => {
                let y = b.values[*other as usize % b.values.len()].0.clone();
                let a = axis(*a).unwrap_or(0);
                b.node(None, &format!("Concat <axis: int = {a}> ({x}, {y})"));
            }
            Op::Reshape(to) => {
                let c = b.ints(short(to));
                b.node(None, &format!("Reshape({x}, {c})"));
            }
            Op::Expand(to) => {
                let c = b.ints(short(to));
                b.node(None, &format!("Expand({x}, {c})"));
            }
            Op::Tile(reps) => {
                let c = b.ints(short(reps));
                b.node(None, &format!("Tile({x}, {c})"));
            }
            Op::Pad(pads) => {
                let c = b.ints(&pads[..pads.len().min(8)]);
                b.node(None, &format!("Pad({x}, {c})"));
            }
            Op::ConstantOfShape(to, factor) => {
                let s = match factor {
                    None => b.ints(short(to)),
                    Some(f) => {
                        let sh = b.node(None, &format!("Shape({x})"));
                        let f = b.ints(&[*f]);
                        b.node(None, &format!("Mul({sh}, {f})"))
                    }
                };
                b.node(None, &format!("ConstantOfShape({s})"));
            }
            Op::Range(limit, delta, from_input) => {
                let start = b.floats(&[], 0.0);
                let delta = b.floats(&[], *delta as f32);
                let limit = if *from_input {
                    let sum = b.node(None, &format!("ReduceSum <keepdims: int = 0> ({x})"));
                    let f = b.floats(&[], *limit as f32);
                    b.node(None, &format!("Mul({sum}, {f})"))
                } else {
                    b.floats(&[], *limit as f32)
                };
                b.node(None, &format!("Range({start}, {limit}, {delta})"));
            }
            Op::OneHot(depth) => {
                let idx = b.node(None, &format!("Cast <to: int = 7> ({x})"));
                let d = b.ints(&[*depth]);
                let v = b.floats(&[2], 0.0);
                b.node(None, &format!("OneHot({idx}, {d}, {v})"));
            }
            Op::NonZero => {
                let nz = b.node(None, &format!("NonZero({x})"));
                b.node(None, &format!("Cast <to: int = 1> ({nz})"));
            }
            Op::Clip(lo, hi) => {
                let (lo, hi) = (b.floats(&[], *lo), b.floats(&[], *hi));
                b.node(shape, &format!("Clip({x}, {lo}, {hi})"));
            }
        }
    }
    let (mut y, _) = b.last();
    let mut inputs = format!("float[{}] x", declared.join(","));
    if spec.loss {
        inputs.push_str(", int64[N] labels");
        let loss = format!("loss{}", b.values.len());
        let _ = writeln!(b.text, "    {loss} = SoftmaxCrossEntropyLoss({y}, labels)");
        y = loss;
    }
    Some(format!(
        "<ir_version: 10, opset_import: [\"\" : 18]>\ng ({inputs}) => (float {y})\n{{\n{}}}\n",
        b.text
    ))
}

fuzz_target!(|spec: Spec| {
    let Some(text) = build(&spec) else { return };
    // To turn an input into a regression fixture: print the model it builds.
    if std::env::var_os("NNLINT_FUZZ_PRINT").is_some() {
        eprintln!("{text}");
    }
    if let Ok((proto, source)) = nnlint::onnx::text::parse_model(&text) {
        nnlint_fuzz::lint(proto, Some(source), true);
    }
});
