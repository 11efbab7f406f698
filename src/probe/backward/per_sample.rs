//! A proof, from the graph and the shapes of one pass, that no sample's
//! output depends on another sample's input, so that `batch-mixing`'s
//! measurement (a second forward and backward pass) can be skipped.
//!
//! Axis 0 of every input with the batch leading is followed through the
//! nodes the measured outputs depend on. A node keeps samples apart when it
//! is elementwise, or works along other axes only (a convolution, a pooling,
//! a softmax over classes, a reshape that keeps the leading size, a
//! transpose that keeps axis 0 first, a reduction over other axes, ...).
//! Batch statistics are held constant by the measurement, so BatchNorm
//! counts as per-sample here too. Any other node, or a per-sample tensor
//! that loses its leading batch size, ends the proof: the measurement runs.

use candle_core::Tensor;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::onnx::proto::NodeProto;

const ELEMENTWISE: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Mod",
    "Neg",
    "Abs",
    "Sqrt",
    "Exp",
    "Log",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Erf",
    "Tanh",
    "Sin",
    "Cos",
    "Sigmoid",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Softplus",
    "Selu",
    "Celu",
    "Softsign",
    "Mish",
    "ThresholdedRelu",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Clip",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "IsNaN",
    "Cast",
    "CastLike",
    "Where",
    "Identity",
    "Dropout",
    "Expand",
];

fn ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    n.attribute.iter().find(|a| a.name == name).map(|a| {
        if a.ints.is_empty() {
            vec![a.i]
        } else {
            a.ints.clone()
        }
    })
}

/// A `Slice` whose axes are listed (attribute or a constant the lowering
/// knows) and leave axis 0 alone. Opset 10's axes input is read by the
/// caller into the `nnlint::axes` attribute.
fn slices_off_batch(n: &NodeProto) -> bool {
    ints(n, AXES).is_some_and(|a| a.iter().all(|&x| x != 0))
        || ints(n, "axes").is_some_and(|a| a.iter().all(|&x| x != 0))
}

/// Where [`proven`] records the axes of a `Slice` read from its input.
const AXES: &str = "nnlint::axes";

fn axis_attr(n: &NodeProto, default: i64) -> i64 {
    n.attribute
        .iter()
        .find(|a| a.name == "axis")
        .map_or(default, |a| a.i)
}

/// What [`proven`] knows of one pass: each tensor's shape, and the values of
/// small integer tensors (a `Slice`'s axes).
pub(super) struct Shapes<'a> {
    pub dims: &'a dyn Fn(&str) -> Option<Vec<usize>>,
    pub ints: &'a dyn Fn(&str) -> Option<Vec<i64>>,
}

/// The shape and integer lookups of a pass's values.
#[allow(clippy::type_complexity)]
pub(super) fn of_env(
    env: &FxHashMap<String, Tensor>,
) -> (
    impl Fn(&str) -> Option<Vec<usize>> + '_,
    impl Fn(&str) -> Option<Vec<i64>> + '_,
) {
    (
        move |t: &str| env.get(t).map(|v| v.dims().to_vec()),
        move |t: &str| env.get(t).and_then(|v| super::ops::ints(v).ok()),
    )
}

/// Whether every tensor in `outputs` provably has sample `i` depend on
/// sample `i` of the inputs alone.
pub(super) fn proven(
    nodes: &[NodeProto],
    shapes: &Shapes<'_>,
    inputs: &[String],
    outputs: &[String],
    batch: usize,
    opset: i64,
) -> bool {
    let dims = |t: &str| (shapes.dims)(t);
    let leading = |t: &str| dims(t).is_some_and(|d| d.first() == Some(&batch));
    // The nodes the outputs depend on.
    let mut producer: FxHashMap<&str, usize> = FxHashMap::default();
    for (i, n) in nodes.iter().enumerate() {
        for o in &n.output {
            producer.insert(o.as_str(), i);
        }
    }
    let mut needed: FxHashSet<usize> = FxHashSet::default();
    let mut stack: Vec<&str> = outputs.iter().map(String::as_str).collect();
    while let Some(t) = stack.pop() {
        if let Some(&i) = producer.get(t) {
            if needed.insert(i) {
                stack.extend(nodes[i].input.iter().map(String::as_str));
            }
        }
    }
    // Tensors whose values depend on the batch's inputs.
    let mut batched: FxHashSet<&str> = inputs.iter().map(String::as_str).collect();
    for (i, n) in nodes.iter().enumerate() {
        let from: Vec<usize> = (0..n.input.len())
            .filter(|&k| batched.contains(n.input[k].as_str()))
            .collect();
        if from.is_empty() {
            continue;
        }
        let op = n.op_type.as_str();
        // Sizes only: the output does not depend on any value.
        if matches!(op, "Shape" | "Size") {
            continue;
        }
        if needed.contains(&i) {
            // A slice's axes input, known in this pass.
            let mut node = std::borrow::Cow::Borrowed(n);
            if op == "Slice" {
                if let Some(axes) = n.input.get(3).and_then(|a| (shapes.ints)(a)) {
                    let rank = dims(&n.input[0]).map_or(0, |d| d.len()) as i64;
                    let axes: Vec<i64> = axes
                        .iter()
                        .map(|&a| if a < 0 { a + rank } else { a })
                        .collect();
                    let mut owned = n.clone();
                    owned.attribute.push(crate::onnx::proto::AttributeProto {
                        name: AXES.into(),
                        ints: axes,
                        ..Default::default()
                    });
                    node = std::borrow::Cow::Owned(owned);
                }
            }
            let n = node.as_ref();
            let all_leading = from.iter().all(|&k| leading(&n.input[k]))
                && n.output
                    .iter()
                    .filter(|o| !o.is_empty())
                    .all(|o| leading(o));
            if !all_leading || !keeps_samples(n, &from, &dims, opset) {
                return false;
            }
        }
        batched.extend(n.output.iter().map(String::as_str));
    }
    true
}

/// Whether `n`, whose inputs `from` carry the batch on axis 0, keeps samples apart.
fn keeps_samples(
    n: &NodeProto,
    from: &[usize],
    dims: &dyn Fn(&str) -> Option<Vec<usize>>,
    opset: i64,
) -> bool {
    let op = n.op_type.as_str();
    let only = |slots: &[usize]| from.iter().all(|k| slots.contains(k));
    let rank = dims(&n.input[from[0]]).map_or(0, |d| d.len()) as i64;
    let not_zero = |a: i64| (if a < 0 { a + rank } else { a }) != 0;
    if ELEMENTWISE.contains(&op) || op == super::super::lower::DETACH {
        return true;
    }
    match op {
        "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "GlobalAveragePool"
        | "GlobalMaxPool" | "LpPool" => only(&[0]),
        "BatchNormalization" | "InstanceNormalization" => only(&[0]),
        "LayerNormalization" => only(&[0]) && not_zero(axis_attr(n, -1)),
        op if op == super::super::normalize::OP_TYPE => true,
        "Softmax" | "LogSoftmax" | "Hardmax" => {
            not_zero(axis_attr(n, if opset < 13 { 1 } else { -1 }))
        }
        "Gemm" => only(&[0]) && !n.attribute.iter().any(|a| a.name == "transA" && a.i == 1),
        "MatMul" => {
            // [N, ..] x W, or two batched operands of rank 3 and more.
            only(&[0]) || (rank >= 3 && from.len() == 2)
        }
        "Flatten" => only(&[0]) && axis_attr(n, 1) != 0,
        "Transpose" => only(&[0]) && ints(n, "perm").is_some_and(|p| p.first() == Some(&0)),
        // The leading size is checked by the caller: a reshape that keeps it
        // keeps each sample's elements in its own row.
        "Reshape" => only(&[0]),
        // Axis 0 squeezed or unsqueezed changes the leading size, which the caller checks.
        "Squeeze" | "Unsqueeze" => only(&[0]),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceSumSquare" | "ReduceL2"
        | "ReduceL1" | "ReduceLogSumExp" | "ReduceProd" => {
            // With the axes as an input the caller's leading-size check decides.
            only(&[0]) && ints(n, "axes").is_none_or(|a| a.iter().all(|&x| not_zero(x)))
        }
        "ArgMax" | "ArgMin" | "TopK" | "CumSum" => only(&[0]) && not_zero(axis_attr(n, 0)),
        "Concat" => not_zero(axis_attr(n, 0)),
        // Along axis 0 these change the leading size, which the caller checks;
        // a slice may keep it and still reorder the samples (a flip).
        "Split" | "Pad" | "Tile" | "Resize" | "Upsample" => only(&[0]),
        "Slice" => only(&[0]) && slices_off_batch(n),
        "Gather" | "GatherElements" => {
            let a = axis_attr(n, 0);
            // A table looked up by per-sample indices, or per-sample data indexed off axis 0.
            (from == [1] && a == 0) || (only(&[0]) && not_zero(a))
        }
        _ => false,
    }
}
