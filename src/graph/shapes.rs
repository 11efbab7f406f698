//! Shapes the model does not declare, inferred for the ops rules reason about.
//!
//! TorchScript exports declare shapes for graph inputs and outputs only, so a
//! rule that asks "which axis does this Softmax normalize, and how large is it"
//! needs the shapes in between. This is deliberately small: the ops that carry
//! a classifier's shape from its input to its softmax, nothing more. Anything
//! else stays unknown, and rules that need a shape then stay silent.

use super::{Dim, Graph, NodeRef, TensorId};

const SAME_SHAPE: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softplus",
    "Softsign",
    "Softmax",
    "LogSoftmax",
    "Identity",
    "Cast",
    "Dropout",
    "Abs",
    "Neg",
    "Exp",
    "Log",
    "Sqrt",
    "Erf",
    "Clip",
    "BatchNormalization",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "LRN",
    "Mish",
];

const BROADCAST: &[&str] = &["Add", "Sub", "Mul", "Div", "Pow", "Where", "Max", "Min"];

/// Fills in missing shapes of node outputs, in file order, twice to cover out-of-order nodes.
pub(super) fn infer(graph: &mut Graph<'_>) {
    for _ in 0..2 {
        for id in 0..graph.node_count() {
            let Some(out) = graph.node(id).output_id(0) else {
                continue;
            };
            if graph.shape_of(out).is_some() {
                continue;
            }
            let n = graph.node(id);
            if let Some(shape) = infer_node(graph, &n) {
                graph.tensors[out].dims = Some(shape);
            }
        }
    }
}

fn infer_node(graph: &Graph<'_>, n: &NodeRef<'_, '_>) -> Option<Vec<Dim>> {
    if !n.domain_is_default() {
        return None;
    }
    let input = |i: usize| n.input_id(i).and_then(|t| shape_of(graph, t));
    let op = n.op_type();
    if SAME_SHAPE.contains(&op) {
        return input(0);
    }
    if BROADCAST.contains(&op) {
        let shapes: Vec<Vec<Dim>> = (0..n.inputs().len()).map(input).collect::<Option<_>>()?;
        return shapes
            .into_iter()
            .try_fold(Vec::new(), |acc, s| broadcast(&acc, &s));
    }
    match op {
        "Gemm" => {
            let (a, b) = (input(0)?, input(1)?);
            if a.len() != 2 || b.len() != 2 {
                return None;
            }
            let m = if n.attr_i64("transA").unwrap_or(0) != 0 {
                &a[1]
            } else {
                &a[0]
            };
            let k = if n.attr_i64("transB").unwrap_or(0) != 0 {
                &b[0]
            } else {
                &b[1]
            };
            Some(vec![m.clone(), k.clone()])
        }
        "MatMul" => {
            let (a, b) = (input(0)?, input(1)?);
            if a.len() < 2 || b.len() < 2 {
                return None;
            }
            let mut out = if a.len() >= b.len() {
                a[..a.len() - 1].to_vec()
            } else {
                b[..b.len() - 2]
                    .iter()
                    .cloned()
                    .chain([a[a.len() - 2].clone()])
                    .collect()
            };
            out.push(b[b.len() - 1].clone());
            Some(out)
        }
        "Conv" => {
            let (x, w) = (input(0)?, input(1)?);
            let mut out = vec![x.first()?.clone(), w.first()?.clone()];
            out.extend(std::iter::repeat_n(Dim::Unknown, x.len().saturating_sub(2)));
            Some(out)
        }
        "Flatten" => {
            let x = input(0)?;
            let axis = usize::try_from(n.attr_i64("axis").unwrap_or(1))
                .ok()?
                .min(x.len());
            Some(vec![product(&x[..axis]), product(&x[axis..])])
        }
        "Transpose" => {
            let x = input(0)?;
            match n.attr("perm").and_then(|a| a.ints()) {
                Some(perm) => perm
                    .iter()
                    .map(|&p| x.get(usize::try_from(p).ok()?).cloned())
                    .collect(),
                None => Some(x.into_iter().rev().collect()),
            }
        }
        "Reshape" => {
            let x = input(0)?;
            let target = graph.values(n.input(1)?)?.ok()?;
            let mut out: Vec<Dim> = target
                .iter()
                .enumerate()
                .map(|(i, &d)| match d as i64 {
                    0 => x.get(i).cloned().unwrap_or(Dim::Unknown),
                    d if d > 0 => Dim::Known(d),
                    _ => Dim::Unknown,
                })
                .collect();
            // One -1 takes what is left, when every size is known.
            if let (Some(pos), Dim::Known(total)) =
                (target.iter().position(|&d| d == -1.0), product(&x))
            {
                let rest: Option<i64> = out
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != pos)
                    .map(|(_, d)| match d {
                        Dim::Known(v) => Some(*v),
                        _ => None,
                    })
                    .product();
                if let Some(r) = rest.filter(|&r| r > 0) {
                    out[pos] = Dim::Known(total / r);
                }
            }
            Some(out)
        }
        _ => None,
    }
}

fn shape_of(graph: &Graph<'_>, tensor: TensorId) -> Option<Vec<Dim>> {
    if let Some(s) = graph.shape_of(tensor) {
        return Some(s.to_vec());
    }
    graph
        .stored_of(tensor)
        .map(|s| s.dims().iter().map(|&d| Dim::Known(d)).collect())
}

fn product(dims: &[Dim]) -> Dim {
    dims.iter()
        .try_fold(1i64, |acc, d| match d {
            Dim::Known(v) => acc.checked_mul(*v),
            _ => None,
        })
        .map_or(Dim::Unknown, Dim::Known)
}

/// Numpy broadcasting; a pair of different symbolic sizes is unknown.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let rank = a.len().max(b.len());
    let at = |s: &[Dim], i: usize| -> Dim {
        (i + s.len())
            .checked_sub(rank)
            .map_or(Dim::Known(1), |j| s[j].clone())
    };
    Some(
        (0..rank)
            .map(|i| match (at(a, i), at(b, i)) {
                (Dim::Known(1), d) | (d, Dim::Known(1)) => d,
                (x, y) if x == y => x,
                _ => Dim::Unknown,
            })
            .collect(),
    )
}
