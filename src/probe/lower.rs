//! Lowering a graph into one tract runs the way training would run it.
//!
//! tract cannot run the training ops torch exports (`SoftmaxCrossEntropyLoss`,
//! `NegativeLogLikelihoodLoss`, training-mode `BatchNormalization` and
//! `Dropout`), and an exported BatchNorm computes with running statistics,
//! which at init make the network run unnormalized. Before the probe, every
//! such node is replaced by plain ONNX ops:
//!
//! - the two losses become `LogSoftmax`, `GatherElements` and a reduction, with
//!   class weights and `ignore_index` honoured;
//! - every BatchNorm, and every Conv/Gemm into which the exporter folded one,
//!   normalizes with the statistics of the probe batch, as training does;
//! - Dropout is the identity, its expectation, and random ops take their median;
//! - LogSoftmax subtracts the maximum first, so large logits stay finite;
//! - `ConvInteger` and `MatMulInteger` compute in floats and cast back to
//!   `int32`, as the probe's batch runs them at the speed of float products
//!   (tract's integer kernels ran a dynamically quantized detector about seven
//!   times slower than its float twin on an AVX2 machine).
//!
//! The node producing each original output keeps that output's name, so what
//! the probe observes maps back to the model's own tensors.

use super::normalize::{Norm, OP_TYPE};
use crate::graph::{Dim, Graph, NodeRef};
use crate::onnx::proto::{data_type as dt, AttributeProto, AttributeType, NodeProto, TensorProto};

/// Names nnlint gives the tensors it adds start with this.
pub const PREFIX: &str = "nnlint::";

/// The main graph as the probe runs it.
#[derive(Debug, Default)]
pub struct Lowered {
    pub nodes: Vec<NodeProto>,
    /// Small constants the lowering needs (axes, shapes, fill values).
    pub initializers: Vec<TensorProto>,
    /// How many nodes of each kind were replaced, for notes.
    pub batch_norms: usize,
    pub folded_norms: usize,
    /// Of the BatchNorms, those normalized by ONNX ops (their scale or shift
    /// is computed): a later pass cannot replay their batch statistics.
    pub statistics_ops: usize,
}

/// The op type of the node that stops gradients ([`lower_for_gradients`]).
pub const DETACH: &str = "nnlint::Detach";

/// Lowers the main graph. Fails when a node cannot be lowered, with the reason.
pub fn lower(graph: &Graph<'_>) -> Result<Lowered, String> {
    lower_with(graph, false)
}

/// Lowers the main graph for the backward pass. As [`lower`], except that
/// every BatchNorm stays a `BatchNormalization` in training mode, so that its
/// scale and shift are the model's own tensors and get gradients, and the
/// detached half of each straight-through estimator is marked with a
/// [`DETACH`] node, as torch computes it.
pub fn lower_for_gradients(graph: &Graph<'_>) -> Result<Lowered, String> {
    lower_with(graph, true)
}

fn lower_with(graph: &Graph<'_>, gradients: bool) -> Result<Lowered, String> {
    let mut b = Builder {
        opset: graph.opset().unwrap_or(17),
        out: Lowered::default(),
        counter: 0,
    };
    for n in graph.nodes() {
        let plain = !n.domain_is_default();
        match n.op_type() {
            _ if plain => b.keep(&n),
            "BatchNormalization" if gradients => b.training_batch_norm(&n),
            "Sub" if gradients && graph.straight_through(&n) => b.detached(&n),
            "SoftmaxCrossEntropyLoss" => b.softmax_cross_entropy(&n)?,
            "NegativeLogLikelihoodLoss" => {
                let target = n
                    .input(1)
                    .ok_or("NegativeLogLikelihoodLoss without target")?;
                let lp = n
                    .input(0)
                    .ok_or("NegativeLogLikelihoodLoss without input")?;
                let loss = n.output(0).unwrap_or_default().to_string();
                b.nll(&n, lp, target, n.input(2), &loss)?;
            }
            "BatchNormalization" => b.batch_norm(graph, &n)?,
            "LogSoftmax" if b.opset >= 13 => {
                let (Some(x), Some(out)) = (n.input(0), n.output(0)) else {
                    b.keep(&n);
                    continue;
                };
                let axis = n.attr_i64("axis").unwrap_or(-1);
                b.log_softmax(x, axis, Some(out));
            }
            "Dropout" => b.dropout(&n),
            "RandomUniformLike" | "RandomNormalLike" => b.random_like(&n),
            "Squeeze" if b.squeezes_all(&n) => b.squeeze_ones(graph, &n),
            "ConstantOfShape" if !n.proto.attribute.iter().any(|a| a.name == "value") => {
                b.zeros_of_shape(&n)
            }
            "CumSum" if int64_input(graph, &n) => b.integer_cumsum(&n),
            "Conv" | "Gemm" | "MatMul" if graph.normalizes(&n) => b.folded_norm(graph, &n)?,
            "ConvInteger" | "MatMulInteger" if !gradients => b.integer_product(graph, &n),
            _ => b.keep(&n),
        }
    }
    Ok(b.out)
}

struct Builder {
    opset: i64,
    out: Lowered,
    counter: usize,
}

impl Builder {
    fn keep(&mut self, n: &NodeRef<'_, '_>) {
        self.out.nodes.push(n.proto.clone());
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{PREFIX}{hint}::{}", self.counter)
    }

    fn push(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) {
        self.counter += 1;
        self.out.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(format!("{PREFIX}{op}::{}", self.counter)),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// `op(inputs)` into a fresh tensor.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.push(op, inputs, &out, attrs);
        out
    }

    fn const_i64(&mut self, values: &[i64], scalar: bool) -> String {
        let name = self.fresh("const");
        self.out.initializers.push(TensorProto {
            name: name.clone(),
            dims: if scalar {
                vec![]
            } else {
                vec![values.len() as i64]
            },
            data_type: dt::INT64,
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name
    }

    fn const_f32(&mut self, value: f32) -> String {
        let name = self.fresh("const");
        self.out.initializers.push(TensorProto {
            name: name.clone(),
            data_type: dt::FLOAT,
            float_data: vec![value],
            ..Default::default()
        });
        name
    }

    /// `ReduceMean` over `axes`, with the axes where the opset wants them.
    fn reduce_mean(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        self.reduce("ReduceMean", x, axes, keepdims)
    }

    /// A reduction over `axes`: an input from opset 18 (13 for `ReduceSum`),
    /// an attribute before.
    fn reduce(&mut self, op: &str, x: &str, axes: &[i64], keepdims: bool) -> String {
        let keep = int("keepdims", keepdims as i64);
        let as_input = self.opset >= 18 || (op == "ReduceSum" && self.opset >= 13);
        if as_input {
            let axes = self.const_i64(axes, false);
            self.op(op, &[x, &axes], vec![keep])
        } else {
            self.op(op, &[x], vec![ints("axes", axes), keep])
        }
    }

    /// `x - max - log(sum(exp(x - max)))` along `axis`: log-softmax that stays
    /// finite for large logits (tract's own takes the log of an underflowed softmax).
    fn log_softmax(&mut self, x: &str, axis: i64, out: Option<&str>) -> String {
        let max = self.reduce("ReduceMax", x, &[axis], true);
        let shifted = self.op("Sub", &[x, &max], vec![]);
        let exp = self.op("Exp", &[&shifted], vec![]);
        let sum = self.reduce("ReduceSum", &exp, &[axis], true);
        let log = self.op("Log", &[&sum], vec![]);
        match out {
            Some(o) => {
                self.push("Sub", &[&shifted, &log], o, vec![]);
                o.to_string()
            }
            None => self.op("Sub", &[&shifted, &log], vec![]),
        }
    }

    /// `Unsqueeze` or `Squeeze` with the axes where the opset wants them.
    fn squeeze_op(&mut self, op: &str, x: &str, axes: &[i64]) -> String {
        if self.opset >= 13 {
            let axes = self.const_i64(axes, false);
            self.op(op, &[x, &axes], vec![])
        } else {
            self.op(op, &[x], vec![ints("axes", axes)])
        }
    }

    fn softmax_cross_entropy(&mut self, n: &NodeRef<'_, '_>) -> Result<(), String> {
        let scores = n.input(0).ok_or("SoftmaxCrossEntropyLoss without scores")?;
        let labels = n.input(1).ok_or("SoftmaxCrossEntropyLoss without labels")?;
        let lp = self.log_softmax(scores, 1, n.output(1));
        let loss = n.output(0).unwrap_or_default().to_string();
        self.nll(n, &lp, labels, n.input(2), &loss)
    }

    /// `NegativeLogLikelihoodLoss(lp, target, weight)` into `loss`.
    fn nll(
        &mut self,
        n: &NodeRef<'_, '_>,
        lp: &str,
        target: &str,
        weight: Option<&str>,
        loss: &str,
    ) -> Result<(), String> {
        let reduction = n
            .attr("reduction")
            .and_then(|a| a.string())
            .unwrap_or_else(|| "mean".into());
        let ignore = n.attr_i64("ignore_index");
        // An ignored label may be out of range (torch uses -100): pick class 0
        // for it, then mask its term out.
        let (index, mask) = match ignore {
            Some(ii) => {
                let ii = self.const_i64(&[ii], true);
                let hit = self.op("Equal", &[target, &ii], vec![]);
                let zero = self.const_i64(&[0], true);
                let index = self.op("Where", &[&hit, &zero, target], vec![]);
                let keep = self.op("Not", &[&hit], vec![]);
                let keep = self.op("Cast", &[&keep], vec![cast_to(dt::FLOAT)]);
                (index, Some(keep))
            }
            None => (target.to_string(), None),
        };
        let idx = self.squeeze_op("Unsqueeze", &index, &[1]);
        let picked = self.op("GatherElements", &[lp, &idx], vec![int("axis", 1)]);
        let picked = self.squeeze_op("Squeeze", &picked, &[1]);
        let mut term = self.op("Neg", &[&picked], vec![]);
        let mut w = weight.map(|w| self.op("Gather", &[w, &index], vec![]));
        if let Some(m) = mask {
            w = Some(match w {
                Some(w) => self.op("Mul", &[&w, &m], vec![]),
                None => m,
            });
        }
        if let Some(w) = &w {
            term = self.op("Mul", &[&term, w], vec![]);
        }
        let keep0 = vec![int("keepdims", 0)];
        match (reduction.as_str(), &w) {
            ("none", _) => self.push("Identity", &[&term], loss, vec![]),
            ("sum", _) => self.push("ReduceSum", &[&term], loss, keep0),
            ("mean", None) => self.push("ReduceMean", &[&term], loss, keep0),
            ("mean", Some(w)) => {
                let total = self.op("ReduceSum", &[&term], keep0.clone());
                let weights = self.op("ReduceSum", &[w], keep0);
                self.push("Div", &[&total, &weights], loss, vec![]);
            }
            (other, _) => return Err(format!("{} has unknown reduction `{other}`", n.describe())),
        }
        Ok(())
    }

    /// Per-channel `(a, b)` with `x * a + b` = `(x - mean) / sqrt(var + eps)`,
    /// statistics of the batch over every axis but 1, shaped `[1, C, 1, ...]`.
    /// The variance is `E[x²] - E[x]²`, so only one product of the full tensor
    /// is computed before the affine map itself.
    fn batch_statistics(&mut self, x: &str, rank: usize, eps: f32) -> (String, String) {
        let axes: Vec<i64> = (0..rank as i64).filter(|&a| a != 1).collect();
        let mean = self.reduce_mean(x, &axes, true);
        let sq = self.op("Mul", &[x, x], vec![]);
        let mean_sq = self.reduce_mean(&sq, &axes, true);
        let mean2 = self.op("Mul", &[&mean, &mean], vec![]);
        let var = self.op("Sub", &[&mean_sq, &mean2], vec![]);
        let var = self.op("Relu", &[&var], vec![]);
        let eps = self.const_f32(eps);
        let var = self.op("Add", &[&var, &eps], vec![]);
        let std = self.op("Sqrt", &[&var], vec![]);
        let a = self.op("Reciprocal", &[&std], vec![]);
        let shift = self.op("Mul", &[&mean, &a], vec![]);
        let b = self.op("Neg", &[&shift], vec![]);
        (a, b)
    }

    fn batch_norm(&mut self, graph: &Graph<'_>, n: &NodeRef<'_, '_>) -> Result<(), String> {
        let x = n.input(0).ok_or("BatchNormalization without input")?;
        let eps = n.attr_f32("epsilon").unwrap_or(1e-5);
        let out = n.output(0).ok_or("BatchNormalization without output")?;
        let stored = |i: usize| {
            n.input(i)
                .and_then(|t| graph.values(t))
                .and_then(|v| v.ok())
                .map(|v| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>())
        };
        if let (Some(scale), Some(bias)) = (stored(1), stored(2)) {
            let norm = Norm {
                eps,
                scale: Some(scale),
                bias: Some(bias),
            };
            self.marker(x, out, norm);
        } else {
            // Written as ONNX ops, the statistics' axes need the rank; the
            // marker's own kernel reads it from the tensor.
            let rank = rank_of(graph, x)
                .ok_or_else(|| format!("the rank of {}'s input is unknown", n.describe()))?;
            self.batch_norm_ops(n, x, out, rank, eps)?;
        }
        // Training-mode outputs: the running statistics, passed through.
        for (slot, input) in [(1, 3), (2, 4)] {
            if let (Some(o), Some(i)) = (n.output(slot), n.input(input)) {
                self.push("Identity", &[i], o, vec![]);
            }
        }
        self.out.batch_norms += 1;
        Ok(())
    }

    /// The BatchNorm as ONNX's own op in training mode: batch statistics.
    fn training_batch_norm(&mut self, n: &NodeRef<'_, '_>) {
        let mut node = n.proto.clone();
        node.attribute.retain(|a| a.name != "training_mode");
        node.attribute.push(int("training_mode", 1));
        self.out.nodes.push(node);
        self.out.batch_norms += 1;
    }

    /// The node, with its output passed through [`DETACH`].
    fn detached(&mut self, n: &NodeRef<'_, '_>) {
        let Some(out) = n.output(0) else {
            return self.keep(n);
        };
        let raw = self.fresh("straight_through");
        let mut node = n.proto.clone();
        node.output[0] = raw.clone();
        self.out.nodes.push(node);
        self.push(DETACH, &[&raw], out, vec![]);
    }

    /// The normalization as nnlint's own operator (see [`super::normalize`]).
    fn marker(&mut self, x: &str, out: &str, norm: Norm) {
        let mut attrs = vec![float("epsilon", norm.eps)];
        attrs.extend(norm.scale.map(|v| floats("scale", &v)));
        attrs.extend(norm.bias.map(|v| floats("bias", &v)));
        self.push(OP_TYPE, &[x], out, attrs);
    }

    /// The same normalization as ONNX ops, for scales and shifts computed by the graph.
    fn batch_norm_ops(
        &mut self,
        n: &NodeRef<'_, '_>,
        x: &str,
        out: &str,
        rank: usize,
        eps: f32,
    ) -> Result<(), String> {
        self.out.statistics_ops += 1;
        let (a, b) = self.batch_statistics(x, rank, eps);
        // scale and bias are [C]; they broadcast against [1, C, 1, ...] once reshaped.
        let shape: Vec<i64> = [1, -1].into_iter().chain((2..rank).map(|_| 1)).collect();
        let shape = self.const_i64(&shape, false);
        let scale = n.input(1).ok_or("BatchNormalization without scale")?;
        let bias = n.input(2).ok_or("BatchNormalization without bias")?;
        let scale = self.op("Reshape", &[scale, &shape], vec![]);
        let bias = self.op("Reshape", &[bias, &shape], vec![]);
        // y = (x * a + b) * scale + bias = x * (a * scale) + (b * scale + bias)
        let a = self.op("Mul", &[&a, &scale], vec![]);
        let b = self.op("Mul", &[&b, &scale], vec![]);
        let b = self.op("Add", &[&b, &bias], vec![]);
        let scaled = self.op("Mul", &[x, &a], vec![]);
        self.push("Add", &[&scaled, &b], out, vec![]);
        Ok(())
    }

    /// A random tensor shaped like the input, at the distribution's median:
    /// stochastic depth and hand-written dropout keep every path, scaled as
    /// their expectation.
    fn random_like(&mut self, n: &NodeRef<'_, '_>) {
        let (Some(x), Some(out)) = (n.input(0), n.output(0)) else {
            return self.keep(n);
        };
        let median = if n.is("RandomUniformLike") {
            let (lo, hi) = (
                n.attr_f32("low").unwrap_or(0.0),
                n.attr_f32("high").unwrap_or(1.0),
            );
            (lo + hi) / 2.0
        } else {
            n.attr_f32("mean").unwrap_or(0.0)
        };
        let value = self.const_f32(median);
        let shape = self.op("Shape", &[x], vec![]);
        self.push("Expand", &[&value, &shape], out, vec![]);
    }

    /// A `Squeeze` without axes, which removes every axis of length 1.
    fn squeezes_all(&self, n: &NodeRef<'_, '_>) -> bool {
        if self.opset >= 13 {
            n.input(1).is_none_or(str::is_empty)
        } else {
            !n.proto.attribute.iter().any(|a| a.name == "axes")
        }
    }

    /// A `Squeeze` without axes with the axes written out, from the shape the
    /// graph gives its input: tract 0.23 requires them ("expected attribute
    /// 'axes'" on opset-9 exports). A named dimension is taken as not 1 (the
    /// probe sizes it); an unknown one keeps the node as it is.
    fn squeeze_ones(&mut self, graph: &Graph<'_>, n: &NodeRef<'_, '_>) {
        let (Some(x), Some(out)) = (n.input(0), n.output(0)) else {
            return self.keep(n);
        };
        let Some(shape) = graph.shape(x) else {
            return self.keep(n);
        };
        if shape.iter().any(|d| matches!(d, Dim::Unknown)) {
            return self.keep(n);
        }
        let axes: Vec<i64> = (0..shape.len() as i64)
            .filter(|&i| matches!(shape[i as usize], Dim::Known(1)))
            .collect();
        if axes.is_empty() {
            self.push("Identity", &[x], out, vec![]);
        } else if self.opset >= 13 {
            let axes = self.const_i64(&axes, false);
            self.push("Squeeze", &[x, &axes], out, vec![]);
        } else {
            self.push("Squeeze", &[x], out, vec![ints("axes", &axes)]);
        }
    }

    /// `ConstantOfShape` without a `value` fills with float32 zeros (the
    /// operator's default), which tract 0.23 reads as float64 zeros: in
    /// torchvision's Swin the shifted-window mask built from them met the
    /// float32 attention scores ("Impossible to unify F64 with F32"). The
    /// default is written out.
    fn zeros_of_shape(&mut self, n: &NodeRef<'_, '_>) {
        let mut node = n.proto.clone();
        node.attribute.push(AttributeProto {
            name: "value".into(),
            r#type: AttributeType::Tensor as i32,
            t: Some(Box::new(TensorProto {
                dims: vec![1],
                data_type: dt::FLOAT,
                float_data: vec![0.0],
                ..Default::default()
            })),
            ..Default::default()
        });
        self.out.nodes.push(node);
    }

    /// `CumSum` of int64 values in float64, then cast back: tract 0.23 reads
    /// every `Cast` to int64 as its symbolic dimension type, which its
    /// `CumSum` cannot sum ("TDim is not a number"). RoBERTa's position ids
    /// are such a sum (`cumsum(input_ids != pad) * mask`). Exact for sums
    /// under 2^53.
    fn integer_cumsum(&mut self, n: &NodeRef<'_, '_>) {
        let (Some(x), Some(axis), Some(out)) = (n.input(0), n.input(1), n.output(0)) else {
            return self.keep(n);
        };
        let wide = self.op("Cast", &[x], vec![cast_to(dt::DOUBLE)]);
        let mut sum = n.proto.clone();
        let summed = self.fresh("cumsum");
        sum.input = vec![wide, axis.to_string()];
        sum.output = vec![summed.clone()];
        self.out.nodes.push(sum);
        self.push("Cast", &[&summed], out, vec![cast_to(dt::INT64)]);
    }

    fn dropout(&mut self, n: &NodeRef<'_, '_>) {
        let (Some(x), Some(out)) = (n.input(0), n.output(0)) else {
            return self.keep(n);
        };
        self.push("Identity", &[x], out, vec![]);
        if let Some(mask) = n.output(1) {
            // All kept: the mask of the identity.
            self.push("Equal", &[x, x], mask, vec![]);
        }
    }

    /// `ConvInteger` or `MatMulInteger` as its float product: each operand cast
    /// to float less its zero point, the float op, and a cast back to the
    /// `int32` the node returns. Exact while the sums stay under 2^24, and
    /// within float rounding beyond, which the probe's statistics cannot see.
    /// A per-channel zero point of unknown rank keeps the node as it is.
    fn integer_product(&mut self, graph: &Graph<'_>, n: &NodeRef<'_, '_>) {
        let conv = n.op_type() == "ConvInteger";
        let (Some(a), Some(b), Some(out)) = (n.input(0), n.input(1), n.output(0)) else {
            return self.keep(n);
        };
        let rank = |t: &str| {
            graph
                .stored(t)
                .map(|s| s.dims().len())
                .or_else(|| graph.shape(t).map(|s| s.len()))
        };
        // Where each operand's zero point sits: a vector of them is per
        // output channel for a kernel (axis 0), per row for a matrix product's
        // left operand (axis -2) and per column for its right one (the last
        // axis, where it broadcasts as it is).
        // `DynamicQuantizeLinear` returns one zero point for its tensor, and
        // `ConvInteger` takes one for its input.
        let per_channel = |zp: &str, i: usize| {
            let dynamic = graph
                .producer(zp)
                .is_some_and(|(p, _)| p.op_type() == "DynamicQuantizeLinear");
            graph
                .stored(zp)
                .map(|s| s.dims().iter().product::<i64>() > 1)
                .or_else(|| graph.shape(zp).map(|s| !s.is_empty()))
                .or((dynamic || (conv && i == 0)).then_some(false))
        };
        let mut unsqueeze = [None, None];
        for (i, zp) in [n.input(2), n.input(3)].into_iter().enumerate() {
            let Some(zp) = zp.filter(|z| !z.is_empty()) else {
                continue;
            };
            match (per_channel(zp, i), conv, i) {
                (Some(false), ..) | (Some(true), false, 1) => {}
                (Some(true), true, 1) => match rank(b) {
                    Some(r) if r >= 2 => unsqueeze[1] = Some((1..r as i64).collect::<Vec<_>>()),
                    _ => return self.keep(n),
                },
                (Some(true), false, 0) => unsqueeze[0] = Some(vec![1]),
                _ => return self.keep(n),
            }
        }
        let float = |b: &mut Self, x: &str, zp: Option<&str>, axes: Option<Vec<i64>>| {
            let xf = b.op("Cast", &[x], vec![cast_to(dt::FLOAT)]);
            match zp.filter(|z| !z.is_empty()) {
                None => xf,
                Some(zp) => {
                    let mut zf = b.op("Cast", &[zp], vec![cast_to(dt::FLOAT)]);
                    if let Some(axes) = axes {
                        zf = b.squeeze_op("Unsqueeze", &zf, &axes);
                    }
                    b.op("Sub", &[&xf, &zf], vec![])
                }
            }
        };
        let [ua, ub] = unsqueeze;
        let af = float(self, a, n.input(2), ua);
        let bf = float(self, b, n.input(3), ub);
        let product = if conv {
            self.op("Conv", &[&af, &bf], n.proto.attribute.clone())
        } else {
            self.op("MatMul", &[&af, &bf], vec![])
        };
        self.push("Cast", &[&product], out, vec![cast_to(dt::INT32)]);
    }

    /// A Conv or Gemm with a BatchNorm folded in: the layer, then batch
    /// normalization with the folded affine left at its init (scale 1, shift 0).
    fn folded_norm(&mut self, graph: &Graph<'_>, n: &NodeRef<'_, '_>) -> Result<(), String> {
        let Some(out) = n.output(0) else {
            self.keep(n);
            return Ok(());
        };
        let rank = match n.op_type() {
            "Gemm" => Some(2),
            "Conv" => n
                .input(1)
                .and_then(|w| graph.stored(w))
                .map(|s| s.dims().len())
                .or_else(|| rank_of(graph, out)),
            _ => rank_of(graph, out),
        }
        .ok_or_else(|| format!("the rank of {}'s output is unknown", n.describe()))?;
        let raw = self.fresh("folded");
        let mut layer = n.proto.clone();
        layer.output[0] = raw.clone();
        self.out.nodes.push(layer);
        let _ = rank;
        self.marker(
            &raw,
            out,
            Norm {
                eps: 1e-5,
                scale: None,
                bias: None,
            },
        );
        self.out.folded_norms += 1;
        Ok(())
    }
}

/// Whether a node's first input holds int64 values: declared so, or cast to it.
fn int64_input(graph: &Graph<'_>, n: &NodeRef<'_, '_>) -> bool {
    let Some(x) = n.input(0) else {
        return false;
    };
    graph.elem_type(x) == Some(dt::INT64)
        || graph
            .producer(x)
            .is_some_and(|(p, _)| p.is("Cast") && p.attr_i64("to") == Some(i64::from(dt::INT64)))
}

fn rank_of(graph: &Graph<'_>, tensor: &str) -> Option<usize> {
    if let Some(shape) = graph.shape(tensor) {
        return Some(shape.len());
    }
    let (producer, _) = graph.producer(tensor)?;
    match producer.op_type() {
        "Conv" => producer
            .input(1)
            .and_then(|w| graph.stored(w))
            .map(|s| s.dims().len()),
        "Gemm" => Some(2),
        "Relu" | "Dropout" | "Identity" | "BatchNormalization" | "Sigmoid" | "Tanh" => {
            rank_of(graph, producer.input(0)?)
        }
        _ => None,
    }
}

/// `Cast`'s `to` attribute.
fn cast_to(data_type: i32) -> AttributeProto {
    int("to", i64::from(data_type))
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

fn floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Floats as i32,
        floats: v.to_vec(),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}
