//! Layer-level queries: weight layers, activations, normalization.
//!
//! These are the words the checklist speaks in ("a weight layer", "the
//! activation after it", "is this normalized"), answered once here so that
//! every rule answers them the same way.

use super::{Graph, NodeId, NodeRef, Stored, TensorId};

/// What kind of weight layer a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    Gemm,
    MatMul,
    Conv,
}

/// A node that multiplies its input by a stored weight.
#[derive(Clone, Debug)]
pub struct WeightLayer<'m> {
    pub node: NodeId,
    pub kind: LayerKind,
    /// The input slot of the activation.
    pub data_slot: usize,
    pub weight_name: &'m str,
    pub weight_id: TensorId,
    pub weight: Stored<'m>,
    pub bias_name: Option<&'m str>,
    pub bias_id: Option<TensorId>,
    /// Inputs each output unit sums over (`C/groups * kH * kW` for a conv).
    pub fan_in: Option<usize>,
    /// Output units: features of a dense layer, channels of a conv.
    pub units: Option<usize>,
    /// Input features or channels.
    pub in_width: Option<usize>,
    /// Whether the weight is stored `[units, inputs]` (Gemm transB, Conv) or `[inputs, units]`.
    pub units_first: bool,
}

/// Activation families, by what initialization suits them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Relu and its relatives (He initialization).
    ReluLike,
    /// Sigmoid and Tanh (Glorot/LeCun).
    Saturating,
}

/// Normalization ops a rule treats as "this value is normalized".
pub const NORMALIZATION_OPS: &[&str] = &[
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "RMSNormalization",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
    "LRN",
];

fn dims(t: &Stored<'_>) -> Option<Vec<usize>> {
    t.dims().iter().map(|&d| usize::try_from(d).ok()).collect()
}

impl<'m> Graph<'m> {
    /// The stored tensor behind `tensor`, looking back through layout ops, and
    /// whether a 2-D transpose sits on the way.
    pub fn constant_through(&self, tensor: &str) -> Option<(&'m str, Stored<'m>, bool)> {
        let (t, stored, transposed) = self.constant_through_of(self.tensor_id(tensor)?)?;
        Some((self.tensor_name(t), stored, transposed))
    }

    /// [`Graph::constant_through`] for tensor `t`, giving the stored tensor's id.
    pub fn constant_through_of(&self, tensor: TensorId) -> Option<(TensorId, Stored<'m>, bool)> {
        let mut t = tensor;
        let mut transposed = false;
        for _ in 0..=self.node_count() {
            if let Some(s) = self.stored_of(t) {
                return Some((t, s, transposed));
            }
            let (n, slot) = self.producer_of(t)?;
            if slot != 0 || !self.is_value_preserving(&n) {
                return None;
            }
            if n.is("Transpose") {
                transposed = !transposed;
            }
            t = n.input_id(0)?;
        }
        None
    }

    /// The node as a weight layer: Gemm, Conv, or MatMul with one stored operand.
    pub fn weight_layer(&self, id: NodeId) -> Option<&WeightLayer<'m>> {
        self.layers
            .get_or_init(|| {
                crate::parallel::ranges(self.node_count(), |ids| {
                    ids.map(|id| self.find_weight_layer(id).map(Box::new))
                        .collect()
                })
            })
            .get(id)?
            .as_deref()
    }

    fn find_weight_layer(&self, id: NodeId) -> Option<WeightLayer<'m>> {
        let n = self.node(id);
        if !n.domain_is_default() {
            return None;
        }
        match n.op_type() {
            "Gemm" => {
                let (weight_id, weight, transposed) = self.constant_through_of(n.input_id(1)?)?;
                let d = dims(&weight)?;
                if d.len() != 2 {
                    return None;
                }
                let trans_b = (n.attr_i64("transB").unwrap_or(0) != 0) ^ transposed;
                let (inputs, units) = if trans_b { (d[1], d[0]) } else { (d[0], d[1]) };
                Some(WeightLayer {
                    node: id,
                    kind: LayerKind::Gemm,
                    data_slot: 0,
                    weight_name: self.tensor_name(weight_id),
                    weight_id,
                    weight,
                    bias_name: n.input(2),
                    bias_id: n.input_id(2),
                    fan_in: Some(inputs),
                    units: Some(units),
                    in_width: Some(inputs),
                    units_first: trans_b,
                })
            }
            "Conv" => {
                let (weight_id, weight, _) = self.constant_through_of(n.input_id(1)?)?;
                let d = dims(&weight)?;
                if d.len() < 3 {
                    return None;
                }
                let groups = n.attr_i64("group").unwrap_or(1).max(1) as usize;
                let receptive: usize = d[2..].iter().product();
                Some(WeightLayer {
                    node: id,
                    kind: LayerKind::Conv,
                    data_slot: 0,
                    weight_name: self.tensor_name(weight_id),
                    weight_id,
                    weight,
                    bias_name: n.input(2),
                    bias_id: n.input_id(2),
                    fan_in: d[1].checked_mul(receptive),
                    units: Some(d[0]),
                    in_width: d[1].checked_mul(groups),
                    units_first: true,
                })
            }
            "MatMul" => {
                let a = n.input_id(0)?;
                let b = n.input_id(1)?;
                let (data_slot, (weight_id, weight, transposed)) =
                    match (self.constant_through_of(a), self.constant_through_of(b)) {
                        (None, Some(w)) => (0, w),
                        (Some(w), None) => (1, w),
                        _ => return None,
                    };
                let d = dims(&weight)?;
                if d.len() < 2 || data_slot != 0 {
                    // A stored left operand: too unusual to reason about units.
                    return None;
                }
                let (k, units) = (d[d.len() - 2], d[d.len() - 1]);
                let (inputs, units) = if transposed { (units, k) } else { (k, units) };
                // The bias of a decomposed Linear is the Add right after.
                let bias_id = n.output_id(0).and_then(|o| match self.io.reads(o) {
                    &[(add, _)] if self.node(add).is("Add") => {
                        let add = self.node(add);
                        (0..2)
                            .filter_map(|i| add.input_id(i))
                            .find(|&i| i != o && self.stored_of(i).is_some())
                    }
                    _ => None,
                });
                Some(WeightLayer {
                    node: id,
                    kind: LayerKind::MatMul,
                    data_slot,
                    weight_name: self.tensor_name(weight_id),
                    weight_id,
                    weight,
                    bias_name: bias_id.map(|b| self.tensor_name(b)),
                    bias_id,
                    fan_in: Some(inputs),
                    units: Some(units),
                    in_width: Some(inputs),
                    units_first: transposed,
                })
            }
            _ => None,
        }
    }

    /// Every weight layer, in file order.
    pub fn weight_layers(&self) -> impl Iterator<Item = &WeightLayer<'m>> + '_ {
        (0..self.node_count()).filter_map(|id| self.weight_layer(id))
    }

    /// Whether the node normalizes its output: a normalization op, or a weight
    /// layer into which the exporter folded a BatchNorm.
    ///
    /// torch's dynamo exporter keeps the folded BatchNorm module in the node's
    /// `namespace` metadata. The TorchScript exporter records no metadata; when it
    /// folds a BatchNorm (eval mode, constant folding on) it replaces the conv's
    /// parameters by new initializers named `onnx::Conv_*`, which is the trace we use.
    pub fn normalizes(&self, n: &NodeRef<'_, 'm>) -> bool {
        if n.domain_is_default() && NORMALIZATION_OPS.contains(&n.op_type()) {
            return true;
        }
        if self.is_decomposed_normalization(n) {
            return true;
        }
        if !matches!(n.op_type(), "Conv" | "Gemm" | "MatMul") {
            return false;
        }
        let meta = |key: &str| n.metadata(key).unwrap_or("").to_ascii_lowercase();
        if meta("namespace").contains("batchnorm")
            || meta("pkg.torch.onnx.class_hierarchy").contains("batchnorm")
        {
            return true;
        }
        n.is("Conv") && n.input(1).is_some_and(|w| w.starts_with("onnx::Conv_"))
    }

    /// The activation a weight layer's output meets, looking through ops that keep
    /// it affine (bias adds, BatchNorm, dropout, layout). `None` when it meets
    /// something else first (another layer, a residual add, the output).
    pub fn activation_after(&self, id: NodeId) -> Option<(NodeId, Activation)> {
        let mut current = self.node(id).output_id(0)?;
        for _ in 0..=self.node_count() {
            let &[(next, slot)] = self.io.reads(current) else {
                return None;
            };
            let next = self.node(next);
            if let Some(a) = activation(&next) {
                return Some((next.id(), a));
            }
            if slot != 0 || !self.is_affine_passthrough(&next) {
                return None;
            }
            current = next.output_id(0)?;
        }
        None
    }

    /// Whether the node's output is normalized before the next nonlinearity:
    /// the node itself folds a BatchNorm, or a normalization op follows through
    /// affine ops only.
    pub fn normalized_before_activation(&self, id: NodeId) -> bool {
        let n = self.node(id);
        if self.normalizes(&n) {
            return true;
        }
        let mut current = match n.output_id(0) {
            Some(o) => o,
            None => return false,
        };
        for _ in 0..=self.node_count() {
            let &[(next, slot)] = self.io.reads(current) else {
                return false;
            };
            let next = self.node(next);
            if slot == 0
                && self.normalizes(&next)
                && !matches!(next.op_type(), "Conv" | "Gemm" | "MatMul")
            {
                return true;
            }
            if slot != 0 || !self.is_affine_passthrough(&next) || next.is("BatchNormalization") {
                return false;
            }
            current = match next.output_id(0) {
                Some(o) => o,
                None => return false,
            };
        }
        false
    }

    /// The factor by which constants the graph holds scale node `id`'s output
    /// before anything but affine ops reads it (`Mul` or `Div` by a stored
    /// value, its root mean square for a per-channel one), and the last node
    /// that applied one; `(1, None)` when none does.
    pub fn constant_gain_after(&self, id: NodeId) -> (f64, Option<NodeId>) {
        let (mut gain, mut last) = (1.0, None);
        let Some(mut t) = self.node(id).output_id(0) else {
            return (gain, last);
        };
        // Each step moves one node forward; a chain of affine ops is short.
        for _ in 0..64 {
            let [(c, slot)] = self.io.reads(t)[..] else {
                break;
            };
            let n = self.node(c);
            if !self.is_affine_passthrough(&n) {
                break;
            }
            if n.is("Mul") || (n.is("Div") && slot == 0) {
                let other = n.input_id(1 - slot.min(1));
                let factor = other
                    .and_then(|o| self.constant_through_of(o))
                    .and_then(|(o, _, _)| self.stats_of(o))
                    .map(|s| (s.std * s.std + s.mean * s.mean).sqrt())
                    .filter(|f| f.is_finite() && *f > 0.0);
                if let Some(f) = factor {
                    gain = if n.is("Mul") { gain * f } else { gain / f };
                    last = Some(c);
                }
            }
            match n.output_id(0) {
                Some(o) => t = o,
                None => break,
            }
        }
        (gain, last)
    }

    /// Ops that keep a value an affine function of their first input: layout ops,
    /// adding or multiplying by a constant, dropout, BatchNorm.
    pub fn is_affine_passthrough(&self, n: &NodeRef<'_, 'm>) -> bool {
        if self.is_value_preserving(n) {
            return true;
        }
        if !n.domain_is_default() {
            return false;
        }
        match n.op_type() {
            "Dropout" | "BatchNormalization" => true,
            "Add" | "Sub" | "Mul" | "Div" => {
                let stored = |i| {
                    n.input_id(i)
                        .is_some_and(|t| self.constant_through_of(t).is_some())
                };
                n.inputs().len() == 2 && stored(0) != stored(1)
            }
            _ => false,
        }
    }
}

/// The activation family of a node, if it is an activation.
pub fn activation(n: &NodeRef<'_, '_>) -> Option<Activation> {
    if !n.domain_is_default() {
        return None;
    }
    match n.op_type() {
        "Relu" | "LeakyRelu" | "PRelu" | "Elu" | "Selu" | "Celu" | "Gelu" | "HardSwish"
        | "Mish" | "Softplus" | "ThresholdedRelu" | "Clip" => Some(Activation::ReluLike),
        "Sigmoid" | "Tanh" | "HardSigmoid" | "Softsign" => Some(Activation::Saturating),
        _ => None,
    }
}
