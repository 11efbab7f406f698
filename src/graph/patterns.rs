//! Patterns exporters write in more than one way.
//!
//! torch writes `Softmax` and `LayerNormalization`; tf2onnx, magika's
//! exporter and hand-built graphs write the same computations out as
//! elementwise ops (`Exp`/`ReduceSum`/`Div`, `ReduceMean`/`Sub`/`Pow`/
//! `Sqrt`/`Div`). And a sigmoid is not always an activation: in SiLU,
//! hard-swish, GLU, squeeze-and-excitation and LSTM/GRU cells it is a gate
//! that multiplies another value. Rules ask these questions here, so that
//! every exporter's spelling gets the same answer.

use super::{Graph, NodeRef, TensorId};

/// A softmax or log-softmax, fused or written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax {
    /// `LogSoftmax`, or `z - log(sum(exp(z)))` written out.
    pub log: bool,
    /// The scores it normalizes (before any max subtraction).
    pub scores: TensorId,
    /// Written out as elementwise ops rather than one op.
    pub decomposed: bool,
}

/// Binary cross-entropy as torch writes `F.binary_cross_entropy(p, t)`.
#[derive(Clone, Copy)]
pub struct BinaryCrossEntropy<'g, 'm> {
    /// The clamped `Log` of the probabilities.
    pub log: NodeRef<'g, 'm>,
    /// The clamped `Log` of one minus them, when found.
    pub complement: Option<NodeRef<'g, 'm>>,
    pub probabilities: TensorId,
}

impl<'m> Graph<'m> {
    /// The node as a softmax: `Softmax`, `LogSoftmax`, or the final op of
    /// one written out: `Div(Exp(z), ReduceSum(Exp(z)))` (softmax) or
    /// `Sub(z, Log(ReduceSum(Exp(z))))` (log-softmax), `z` possibly shifted
    /// by its `ReduceMax` first.
    pub fn softmax(&self, n: &NodeRef<'_, 'm>) -> Option<Softmax> {
        if !n.domain_is_default() {
            return None;
        }
        match n.op_type() {
            "Softmax" | "LogSoftmax" => Some(Softmax {
                log: n.is("LogSoftmax"),
                scores: n.input_id(0)?,
                decomposed: false,
            }),
            "Div" => {
                let (num, den) = (n.input_id(0)?, n.input_id(1)?);
                let (exp, _) = self.producer_of(num)?;
                if !exp.is("Exp") || self.summed(den)? != num {
                    return None;
                }
                Some(Softmax {
                    log: false,
                    scores: self.unshifted(exp.input_id(0)?),
                    decomposed: true,
                })
            }
            "Sub" => {
                let (z, lse) = (n.input_id(0)?, n.input_id(1)?);
                let (log, _) = self.producer_of(lse)?;
                if !log.is("Log") {
                    return None;
                }
                let (exp, _) = self.producer_of(self.summed(log.input_id(0)?)?)?;
                if !exp.is("Exp") || exp.input_id(0)? != z {
                    return None;
                }
                Some(Softmax {
                    log: true,
                    scores: self.unshifted(z),
                    decomposed: true,
                })
            }
            _ => None,
        }
    }

    /// How many classes a softmax normalizes over (the size of its axis),
    /// when the declared shapes say.
    pub fn softmax_classes(&self, n: &NodeRef<'_, 'm>) -> Option<i64> {
        let scores = self.softmax(n)?.scores;
        let shape = self.shape_of(scores)?;
        let axis = self.softmax_axis(n, shape.len())?;
        match shape.get(axis)? {
            super::Dim::Known(c) => Some(*c),
            _ => None,
        }
    }

    /// The axes a written-out softmax sums over (its `ReduceSum`'s), as given.
    pub fn softmax_sum_axes(&self, n: &NodeRef<'_, 'm>) -> Option<Vec<i64>> {
        let sum = match n.op_type() {
            "Div" => self.producer_of(n.input_id(1)?)?.0,
            "Sub" => {
                let (log, _) = self.producer_of(n.input_id(1)?)?;
                self.producer_of(log.input_id(0)?)?.0
            }
            _ => return None,
        };
        self.reduce_axes(&sum)
    }

    /// The axes of a `Reduce*` node: the attribute (before opset 18, and
    /// ReduceSum before 13) or the constant second input.
    pub fn reduce_axes(&self, n: &NodeRef<'_, 'm>) -> Option<Vec<i64>> {
        if let Some(a) = n.attr("axes").and_then(|a| a.ints()) {
            return Some(a.to_vec());
        }
        let axes = n.input(1).filter(|a| !a.is_empty())?;
        let values = self.values(axes)?.ok()?;
        Some(values.into_iter().map(|v| v as i64).collect())
    }

    /// The tensor `t` is the `ReduceSum` of, looking through layout ops.
    fn summed(&self, t: TensorId) -> Option<TensorId> {
        let (sum, _) = self.producer_of(self.through_layout(t))?;
        sum.is("ReduceSum").then(|| sum.input_id(0)).flatten()
    }

    /// `z` for `z - ReduceMax(z)`, the max subtraction a stable softmax does first.
    fn unshifted(&self, t: TensorId) -> TensorId {
        let shifted = self.producer_of(t).and_then(|(sub, _)| {
            if !sub.is("Sub") {
                return None;
            }
            let (z, m) = (sub.input_id(0)?, sub.input_id(1)?);
            let (max, _) = self.producer_of(self.through_layout(m))?;
            (max.is("ReduceMax") && max.input_id(0)? == z).then_some(z)
        });
        shifted.unwrap_or(t)
    }

    /// `t` before the value-preserving ops that produced it.
    pub(crate) fn through_layout(&self, t: TensorId) -> TensorId {
        let mut t = t;
        for _ in 0..=self.node_count() {
            match self.producer_of(t) {
                Some((p, 0)) if self.is_value_preserving(&p) => match p.input_id(0) {
                    Some(i) => t = i,
                    None => break,
                },
                _ => break,
            }
        }
        t
    }

    /// Whether the node scales a value by the inverse of a spread computed
    /// in the graph, `1 / sqrt(mean(d * d) + eps)`: a normalization written
    /// out as elementwise ops. tf2onnx writes LayerNorm as
    /// `x * (gamma * rsqrt(var + eps)) + (-mean) * (...)`, others as
    /// `(x - mean) / sqrt(var + eps)`; RMSNorm is `x * rsqrt(mean(x^2) + eps)`.
    pub fn is_decomposed_normalization(&self, n: &NodeRef<'_, 'm>) -> bool {
        if !n.domain_is_default() || !(n.is("Div") || n.is("Mul")) || n.inputs().len() != 2 {
            return false;
        }
        let (Some(a), Some(b)) = (n.input_id(0), n.input_id(1)) else {
            return false;
        };
        // A Div divides by the spread itself; a Mul multiplies by its inverse.
        let spread = |t: TensorId, inverted: bool| self.spread(t, inverted);
        if n.is("Div") {
            spread(b, false)
        } else {
            spread(a, true) || spread(b, true)
        }
    }

    /// Whether `t` is a standard deviation (`inverted`: its reciprocal)
    /// computed from a `ReduceMean`, through an epsilon's `Add`, a clamp, a
    /// `Sqrt`, a `Reciprocal` or `Pow`, scalings by stored values, and the
    /// second moment minus the squared mean (jax2onnx's variance).
    fn spread(&self, t: TensorId, inverted: bool) -> bool {
        let (mut t, mut rooted, mut reciprocal) = (t, false, false);
        for _ in 0..8 {
            let Some((p, _)) = self.producer_of(self.through_layout(t)) else {
                return false;
            };
            if !p.domain_is_default() {
                return false;
            }
            match p.op_type() {
                "Sqrt" => rooted = true,
                "Reciprocal" => reciprocal = !reciprocal,
                // `Pow(v, -0.5)` is rsqrt; other powers are not a spread.
                "Pow" => {
                    let e = p.input(1).and_then(|e| self.scalar(e));
                    match e {
                        Some(e) if (e + 0.5).abs() < 1e-6 => {
                            rooted = true;
                            reciprocal = !reciprocal;
                        }
                        Some(e) if (e - 0.5).abs() < 1e-6 => rooted = true,
                        _ => return false,
                    }
                }
                "ReduceMean" => return rooted && reciprocal == inverted,
                // Clamping at zero, as `E[x^2] - E[x]^2` needs, keeps a spread one.
                "Add" | "Mul" | "Div" | "Max" | "Clip" => {}
                // `E[x^2] - E[x]^2`: the variance from the second moment.
                "Sub" => {
                    t = match p.input_id(0) {
                        Some(m) => m,
                        None => return false,
                    };
                    continue;
                }
                _ => return false,
            }
            // Follow the one operand that is computed, not stored.
            let computed: Vec<TensorId> = (0..p.inputs().len())
                .filter_map(|i| p.input_id(i))
                .filter(|&i| self.constant_through_of(i).is_none())
                .collect();
            match computed.as_slice() {
                &[only] => {
                    // `1 / sqrt(v)`: dividing by the computed operand inverts it.
                    if p.is("Div") && p.input_id(1) == Some(only) {
                        reciprocal = !reciprocal;
                    }
                    t = only
                }
                _ => return false,
            }
        }
        false
    }

    /// Whether a sigmoid-like node is a gate: its output only ever
    /// multiplies another value (SiLU's `x * sigmoid(x)`, hard-swish, GLU,
    /// squeeze-and-excitation, the gates of an LSTM or GRU cell written out).
    /// Saturating a gate is how it closes, not a dead unit.
    pub fn is_gate(&self, n: &NodeRef<'_, 'm>) -> bool {
        let Some(out) = n.output_id(0) else {
            return false;
        };
        let uses = self.uses_of(out);
        !uses.is_empty()
            && uses.iter().all(|u| {
                let c = self.node(u.node);
                c.domain_is_default() && c.is("Mul")
                    || c.is("Div") && u.slot == 0 && self.multiplies_only(&c)
            })
    }

    /// Whether every use of `n`'s output is a `Mul` (hard-swish's
    /// `x * clip(x + 3, 0, 6) / 6` divides before it multiplies).
    fn multiplies_only(&self, n: &NodeRef<'_, 'm>) -> bool {
        n.output_id(0).is_some_and(|o| {
            let uses = self.uses_of(o);
            !uses.is_empty() && uses.iter().all(|u| self.node(u.node).is("Mul"))
        })
    }

    /// The probabilities binary cross-entropy is taken of, as torch writes
    /// `F.binary_cross_entropy(p, t)`: `Log(p)` clamped from below by a
    /// constant (`Max(log(p), -100)`), next to the same for `1 - p`. Each
    /// item is the `Log` of `p` itself and `p`.
    pub fn binary_cross_entropy_inputs(&self) -> Vec<BinaryCrossEntropy<'_, 'm>> {
        let clamped: Vec<(NodeRef<'_, 'm>, TensorId)> = self
            .nodes_of("Log")
            .filter_map(|log| {
                let (p, o) = (log.input_id(0)?, log.output_id(0)?);
                self.uses_of(o)
                    .iter()
                    .any(|u| {
                        let c = self.node(u.node);
                        c.is("Max")
                            && (0..2)
                                .filter_map(|i| c.input_id(i))
                                .filter(|&i| i != o)
                                .any(|i| self.is_log_clamp(i))
                    })
                    .then_some((log, p))
            })
            .collect();
        let mut out = Vec::new();
        for &(log, p) in &clamped {
            if self.one_minus(p).is_some() {
                continue;
            }
            let complement = clamped
                .iter()
                .find(|(_, q)| self.one_minus(*q) == Some(p))
                .map(|&(l, _)| l);
            out.push(BinaryCrossEntropy {
                log,
                complement,
                probabilities: p,
            });
        }
        out
    }

    /// A stored value that holds one large negative number: torch clamps
    /// the logs of binary cross-entropy at -100.
    fn is_log_clamp(&self, t: TensorId) -> bool {
        self.fill_of(t).is_some_and(|v| v <= -10.0)
    }

    /// The one value every element of a stored tensor holds, looking back
    /// through layout ops: a scalar, or a fill like torch's `new_full`.
    fn fill_of(&self, t: TensorId) -> Option<f64> {
        let (stored, _, _) = self.constant_through_of(t)?;
        let s = self.stats_of(stored)?;
        if s.all_equal {
            s.first
        } else {
            None
        }
    }

    /// `y` when `t` is `1 - y`: `Sub(1, y)`, or `Add(Neg(y), 1)` as dynamo writes it.
    pub(crate) fn one_minus(&self, t: TensorId) -> Option<TensorId> {
        let (n, _) = self.producer_of(t)?;
        let one = |i: Option<TensorId>| i.and_then(|i| self.fill_of(i)) == Some(1.0);
        let negated = |i: Option<TensorId>| {
            let (neg, _) = self.producer_of(i?)?;
            if neg.is("Neg") {
                neg.input_id(0)
            } else {
                None
            }
        };
        match n.op_type() {
            "Sub" if one(n.input_id(0)) => n.input_id(1),
            "Add" if one(n.input_id(1)) => negated(n.input_id(0)),
            "Add" if one(n.input_id(0)) => negated(n.input_id(1)),
            _ => None,
        }
    }
}
