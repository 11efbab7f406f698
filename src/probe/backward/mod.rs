//! The backward pass: one forward and backward pass through the lowered
//! training graph with candle, on the forward probe's batch.
//!
//! tract, the forward engine, has no autodiff. candle does, over its own ops,
//! so [`ops`] writes each ONNX operator with candle ops, and this module runs
//! the graph [`super::lower::lower_for_gradients`] lowered: the same
//! lowering as the forward probe (losses written out, Dropout as its
//! expectation, random ops at their median), with BatchNorm on batch
//! statistics whose scale and shift are the model's own tensors.
//!
//! Two measurements come out:
//! - each trainable tensor's gradient of the loss, or that the loss never
//!   reaches it ([`ParamGrad`]);
//! - whether sample 0's output depends on the other samples' inputs
//!   ([`Mixing`]), with the batch statistics of BatchNorm held constant,
//!   and the node where it starts, found by a forward pass with one other
//!   sample changed.

mod adam;
mod conv;
mod einsum;
pub mod fit;
pub mod ops;
mod per_sample;
mod product;
mod rebatch;
mod recurrent;
mod resize;
mod scatter;

use candle_core::{DType, Device, Tensor, Var};
use rustc_hash::{FxHashMap, FxHashSet};
use tract_onnx::prelude::{DatumType, Tensor as TractTensor};

use super::engine::Skip;
use super::inputs::{self, Input};
use super::lower::Lowered;
use super::mixing::{batched, most_moved, per_sample_outputs, Measured, Mixing};
use crate::graph::{Graph, ParamKind};
use crate::onnx::proto::data_type as dt;
use crate::onnx::Model;
use ops::{c, Cx, R};

/// What the backward pass measures, and how.
#[derive(Clone, Debug)]
pub struct GradOptions {
    /// The gradient of the loss for every trainable tensor.
    pub params: bool,
    /// Whether samples are mixed across the batch.
    pub mixing: bool,
    /// The dtype the pass computes in: f32, or f64 for gradient checks.
    pub float: DType,
    /// Keep every gradient's values (tests compare them to torch's).
    pub keep_values: bool,
    /// The samples to run on, fewer than the batch's when the budget cannot
    /// hold them all: the first of the batch (see `backward/rebatch.rs`).
    pub samples: Option<usize>,
}

impl Default for GradOptions {
    fn default() -> Self {
        GradOptions {
            params: true,
            mixing: true,
            float: DType::F32,
            keep_values: false,
            samples: None,
        }
    }
}

/// What the backward pass measured.
#[derive(Clone, Debug, Default)]
pub struct Gradients {
    /// The loss it differentiated, and what it was.
    pub loss: f64,
    pub target: Target,
    /// Every trainable tensor, in the order the graph first reads it.
    pub params: Vec<ParamGrad>,
    pub mixing: Option<Mixing>,
    /// The samples it ran on ...
    pub batch: usize,
    /// ... when they are fewer than the forward pass's batch, which this is.
    pub cut_from: Option<usize>,
    /// The pass's estimated seconds, which the fit's time budget is what
    /// is left of.
    pub seconds: f64,
    /// The pass's estimated bytes on the whole batch (see [`Gradients::cut_from`]),
    /// which the fit adds its own to.
    pub bytes: usize,
}

/// What the pass differentiated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The graph's own loss.
    #[default]
    Loss,
    /// Cross-entropy of a classifier head the graph outputs, against labels
    /// `i mod C` for sample `i`.
    Head(String),
    /// Half the mean square of the float outputs, for graphs without a loss or head.
    Outputs,
}

impl Target {
    /// What the loss is, in words, lowercase.
    pub fn describe(&self) -> String {
        match self {
            Target::Loss => "the graph's loss".into(),
            Target::Head(h) => format!("cross-entropy on the head `{h}`"),
            Target::Outputs => "half the mean square of the outputs".into(),
        }
    }
}

/// The gradient of one trainable tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGrad {
    pub name: String,
    pub kind: ParamKind,
    /// The node that reads it.
    pub node: String,
    /// ‖g‖ and ‖w‖ (Frobenius).
    pub norm: f64,
    pub weight_norm: f64,
    /// ‖g / (|g| + 1e-8)‖: the norm of Adam's first step per unit of
    /// learning rate (its moments are `g` and `g²` after bias correction).
    pub adam_norm: f64,
    /// The loss reaches it at all.
    pub reached: bool,
    /// Its values, when [`GradOptions::keep_values`].
    pub values: Option<Vec<f64>>,
}

impl ParamGrad {
    /// ‖g‖ / ‖w‖, the gradient relative to the weights.
    pub fn relative(&self) -> f64 {
        self.norm / self.weight_norm
    }

    /// No gradient at all: never reached, or exactly zero everywhere.
    pub fn none(&self) -> bool {
        !self.reached || self.norm == 0.0
    }
}

/// Runs the backward pass on `lowered` with the forward probe's inputs.
pub fn run(
    model: &Model,
    graph: &Graph<'_>,
    lowered: &Lowered,
    batch: &[Input],
    seed: u64,
    options: &GradOptions,
) -> Result<Gradients, Skip> {
    let mut pass = Pass::new(model, graph, lowered, options.float)?;
    let mut values = synthesized(batch, seed, options.float)?;
    let mut batch_size = inputs::batch_size(batch);
    let mut cut_from = None;
    if let Some(k) = options.samples.filter(|&k| k >= 1 && k < batch_size) {
        values = narrowed(values, batch_size, k)?;
        if !fit::batch_is_free(graph, batch, batch_size) {
            pass.rebatch(batch_size, k)?;
        }
        cut_from = Some(batch_size);
        batch_size = k;
    }
    let mut out = Gradients {
        batch: batch_size,
        cut_from,
        ..Default::default()
    };
    let mut proven_per_sample = false;
    if options.params {
        let env = pass.forward(&values, false, &[])?;
        proven_per_sample = pass.per_sample(&env, &values, batch_size);
        let (loss, target) = pass.loss(&env)?;
        out.loss = loss
            .to_dtype(DType::F64)
            .and_then(|l| l.to_scalar::<f64>())
            .map_err(|e| Skip::from(c(e)))?;
        out.target = target;
        let grads = loss
            .backward()
            .map_err(|e| Skip::from(format!("the backward pass failed: {}", c(e))))?;
        for p in &pass.params {
            let w = p.var.as_tensor();
            let g = grads.get(w);
            let (norm, adam_norm) = g.map(norms).transpose()?.unwrap_or((0.0, 0.0));
            out.params.push(ParamGrad {
                name: p.name.clone(),
                kind: p.kind,
                node: p.node.clone(),
                norm,
                weight_norm: norms(w)?.0,
                adam_norm,
                reached: g.is_some(),
                values: match (options.keep_values, g) {
                    (true, Some(g)) => Some(
                        g.flatten_all()
                            .and_then(|g| g.to_dtype(DType::F64))
                            .and_then(|g| g.to_vec1::<f64>())
                            .map_err(c)?,
                    ),
                    _ => None,
                },
            });
        }
    }
    if options.mixing && batch_size >= 2 && !proven_per_sample {
        out.mixing = pass.mixing(&values, batch_size)?;
    }
    Ok(out)
}

/// `‖t‖` and `‖t / (|t| + 1e-8)‖` (Adam's first step per unit of learning
/// rate), summed in f64 in one pass over `t`'s storage. Written out as
/// tensor ops they held four copies of `t` at once, two of them in f64:
/// 2.5 GB beside VGG-11's 25088 x 4096 layer. The step's quotient is
/// rounded to `t`'s type before it is squared, as the ops computed it.
fn norms(t: &Tensor) -> R<(f64, f64)> {
    fn sums<T: Copy>(v: &[T], f64_of: impl Fn(T) -> f64, step: impl Fn(T) -> f64) -> (f64, f64) {
        v.iter().fold((0.0, 0.0), |(n, a), &x| {
            let (x2, s) = (f64_of(x), step(x));
            (n + x2 * x2, a + s * s)
        })
    }
    let t = t.contiguous().map_err(c)?;
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or("a gradient the engine cannot read")?;
    let (n, a) = match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => {
            sums(&v[start..end], f64::from, |x| {
                f64::from(x / (x.abs() + 1e-8))
            })
        }
        candle_core::Storage::Cpu(candle_core::CpuStorage::F64(v)) => {
            sums(&v[start..end], |x| x, |x| x / (x.abs() + 1e-8))
        }
        _ => return Err("a gradient that is neither f32 nor f64".into()),
    };
    Ok((n.sqrt(), a.sqrt()))
}

/// The probe's inputs as candle tensors.
fn synthesized(batch: &[Input], seed: u64, float: DType) -> Result<Vec<(String, Tensor)>, Skip> {
    batch
        .iter()
        .map(|i| {
            let t = inputs::make(i, seed).map_err(Skip::from)?;
            Ok((i.name.clone(), from_tract(&t, float)?))
        })
        .collect()
}

/// The first `to` samples of every input whose leading axis holds the
/// batch's `from`; other inputs whole.
fn narrowed(
    values: Vec<(String, Tensor)>,
    from: usize,
    to: usize,
) -> Result<Vec<(String, Tensor)>, Skip> {
    values
        .into_iter()
        .map(|(name, t)| {
            let t = if t.rank() >= 1 && t.dims()[0] == from {
                t.narrow(0, 0, to).map_err(|e| Skip::from(c(e)))?
            } else {
                t
            };
            Ok((name, t))
        })
        .collect()
}

/// Whether a forward pass's weights are differentiated for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Weights {
    Trained,
    Fixed,
}

struct Param {
    name: String,
    kind: ParamKind,
    node: String,
    var: Var,
}

/// The lowered graph, its constants and trainable tensors, ready to run.
struct Pass<'a, 'm> {
    graph: &'a Graph<'m>,
    lowered: &'a Lowered,
    opset: i64,
    float: DType,
    constants: FxHashMap<String, Tensor>,
    params: Vec<Param>,
    /// Trainable tensors that `Constant` nodes hold, by output name.
    constant_params: FxHashMap<String, usize>,
}

impl<'a, 'm> Pass<'a, 'm> {
    fn new(
        model: &Model,
        graph: &'a Graph<'m>,
        lowered: &'a Lowered,
        float: DType,
    ) -> Result<Pass<'a, 'm>, Skip> {
        let used: FxHashSet<&str> = lowered
            .nodes
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .collect();
        for n in &lowered.nodes {
            if n.attribute.iter().any(|a| a.subgraphs().next().is_some()) {
                return Err(Skip {
                    reason: format!(
                        "the gradient engine has no `{}` operator with a subgraph",
                        n.op_type
                    ),
                    node: n.name.clone(),
                });
            }
        }
        let trainable = graph.trainable();
        let by_name: FxHashMap<&str, &crate::graph::Trainable<'_>> =
            trainable.iter().map(|t| (t.name, t)).collect();
        let mut constants = FxHashMap::default();
        let mut params = Vec::new();
        let mut param_index: FxHashMap<&str, usize> = FxHashMap::default();
        let fed: FxHashSet<&str> = graph.fed_inputs().collect();
        let stored = model
            .graph()
            .initializer
            .iter()
            .chain(lowered.initializers.iter());
        for t in stored {
            if !used.contains(t.name.as_str())
                || fed.contains(t.name.as_str())
                || constants.contains_key(&t.name)
            {
                continue;
            }
            if let Some(p) = by_name.get(t.name.as_str()) {
                let var = read_var(model, t, float, "initializer", &t.name)?;
                constants.insert(t.name.clone(), var.as_tensor().clone());
                param_index.insert(p.name, params.len());
                params.push(Param {
                    name: t.name.clone(),
                    kind: p.kind,
                    node: graph.node(p.node).name().to_string(),
                    var,
                });
            } else {
                let tensor = read(model, t, float, "initializer", &t.name)?;
                constants.insert(t.name.clone(), tensor);
            }
        }
        // `Constant` nodes with a tensor are read once, here.
        for n in &lowered.nodes {
            let Some(t) = (n.op_type == "Constant")
                .then(|| n.attribute.iter().find(|a| a.name == "value"))
                .flatten()
                .and_then(|a| a.t.as_deref())
            else {
                continue;
            };
            let Some(out) = n.output.first() else {
                continue;
            };
            constants.insert(out.clone(), read(model, t, float, "constant", out)?);
        }
        // Trainable tensors held by `Constant` nodes (paddle2onnx writes every weight so).
        let mut constant_params = FxHashMap::default();
        for p in &trainable {
            if param_index.contains_key(p.name) {
                continue;
            }
            let Some(t) = graph.constant(p.name) else {
                continue;
            };
            let var = read_var(model, t, float, "constant", p.name)?;
            constant_params.insert(p.name.to_string(), params.len());
            param_index.insert(p.name, params.len());
            params.push(Param {
                name: p.name.to_string(),
                kind: p.kind,
                node: graph.node(p.node).name().to_string(),
                var,
            });
        }
        // Graph order: the order the graph first reads them.
        let order: FxHashMap<&str, usize> = trainable
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name, i))
            .collect();
        let mut indexed: Vec<(usize, Param)> = params
            .into_iter()
            .map(|p| (order.get(p.name.as_str()).copied().unwrap_or(usize::MAX), p))
            .collect();
        indexed.sort_by_key(|(i, _)| *i);
        let params: Vec<Param> = indexed.into_iter().map(|(_, p)| p).collect();
        let constant_params = constant_params
            .into_keys()
            .filter_map(|k| {
                let i = params.iter().position(|p| p.name == k)?;
                Some((k, i))
            })
            .collect();
        Ok(Pass {
            graph,
            lowered,
            opset: graph.opset().unwrap_or(17),
            float,
            constants,
            params,
            constant_params,
        })
    }

    /// Runs every node. `vars` are inputs to differentiate for; `replace`
    /// overrides input values.
    fn forward(
        &self,
        inputs: &[(String, Tensor)],
        detach_statistics: bool,
        vars: &[(String, Tensor)],
    ) -> Result<FxHashMap<String, Tensor>, Skip> {
        self.forward_with(
            inputs,
            vars,
            Cx::new(self.opset, self.float, detach_statistics),
            Weights::Trained,
        )
        .map(|(env, _)| env)
    }

    /// [`Pass::forward`] with the weights held fixed: a backward pass from
    /// its values differentiates for `vars` only, and builds no weight's
    /// gradient (VGG-11's largest is 412 MB, three times over while it is
    /// summed into candle's store).
    fn forward_fixed(
        &self,
        inputs: &[(String, Tensor)],
        vars: &[(String, Tensor)],
    ) -> Result<FxHashMap<String, Tensor>, Skip> {
        let cx = Cx::new(self.opset, self.float, true);
        self.forward_with(inputs, vars, cx, Weights::Fixed)
            .map(|(env, _)| env)
    }

    /// The value a forward pass with `weights` reads for trainable tensor `i`.
    fn param(&self, i: usize, weights: Weights) -> Tensor {
        let t = self.params[i].var.as_tensor();
        match weights {
            Weights::Trained => t.clone(),
            Weights::Fixed => t.detach(),
        }
    }

    /// [`Pass::forward`] in `cx`, which is returned with the batch statistics it recorded.
    fn forward_with(
        &self,
        inputs: &[(String, Tensor)],
        vars: &[(String, Tensor)],
        cx: Cx,
        weights: Weights,
    ) -> Result<(FxHashMap<String, Tensor>, Cx), Skip> {
        let mut env: FxHashMap<String, Tensor> = self.constants.clone();
        if weights == Weights::Fixed {
            for (i, p) in self.params.iter().enumerate() {
                env.insert(p.name.clone(), self.param(i, weights));
            }
        }
        for (name, t) in inputs {
            env.insert(name.clone(), t.clone());
        }
        for (name, t) in vars {
            env.insert(name.clone(), t.clone());
        }
        for n in &self.lowered.nodes {
            if n.op_type == "Constant"
                && self
                    .constants
                    .contains_key(n.output.first().map_or("", String::as_str))
            {
                if let Some(&i) = n.output.first().and_then(|o| self.constant_params.get(o)) {
                    env.insert(n.output[0].clone(), self.param(i, weights));
                }
                continue;
            }
            let args: Vec<Option<Tensor>> = n
                .input
                .iter()
                .map(|i| {
                    if i.is_empty() {
                        return Ok(None);
                    }
                    env.get(i).cloned().map(Some).ok_or_else(|| Skip {
                        reason: format!("the backward pass has no value for `{i}`"),
                        node: n.name.clone(),
                    })
                })
                .collect::<Result<_, Skip>>()?;
            let outs = ops::eval(n, &args, &cx).map_err(|reason| {
                let node = n
                    .name
                    .clone()
                    .filter(|s| !s.starts_with(super::lower::PREFIX));
                Skip { reason, node }
            })?;
            for (name, value) in n.output.iter().zip(outs) {
                if name.is_empty() {
                    continue;
                }
                let value = match self.constant_params.get(name) {
                    Some(&i) => self.param(i, weights),
                    None => value,
                };
                env.insert(name.clone(), value);
            }
        }
        Ok((env, cx))
    }

    /// The scalar to differentiate, and what it is.
    fn loss(&self, env: &FxHashMap<String, Tensor>) -> Result<(Tensor, Target), Skip> {
        let graph = self.graph;
        let get = |name: &str| -> Result<&Tensor, Skip> {
            env.get(name)
                .ok_or_else(|| Skip::from(format!("the backward pass did not compute `{name}`")))
        };
        let float = |t: &str| {
            graph.elem_type(t).is_none_or(dt::is_float)
                && env.get(t).is_some_and(|v| v.dtype().is_float())
        };
        let sum = |ts: Vec<Tensor>| -> R<Option<Tensor>> {
            let mut acc: Option<Tensor> = None;
            for t in ts {
                let s = if t.elem_count() == 1 {
                    t.flatten_all().and_then(|t| t.sum_all())
                } else {
                    t.mean_all()
                }
                .map_err(c)?;
                acc = Some(match acc {
                    Some(a) => a.add(&s).map_err(c)?,
                    None => s,
                });
            }
            Ok(acc)
        };
        let loss = graph.loss();
        if loss.found() {
            // The graph's scalar outputs combine its losses; else the losses themselves.
            let scalars: Vec<Tensor> = graph
                .outputs()
                .iter()
                .filter(|t| float(t))
                .filter_map(|o| env.get(*o))
                .filter(|t| t.elem_count() == 1)
                .cloned()
                .collect();
            let chosen = if scalars.is_empty() {
                loss.data_terms()
                    .map(|t| get(graph.tensor_name(t.value)).cloned())
                    .collect::<Result<Vec<_>, Skip>>()?
            } else {
                scalars
            };
            if let Some(l) = sum(chosen)? {
                return Ok((l, Target::Loss));
            }
        }
        if let Some((head, kind)) = super::heads(graph).into_iter().next() {
            let t = get(head)?;
            let classes = *t.dims().last().unwrap_or(&1);
            let rows = t.elem_count() / classes.max(1);
            let x = t.reshape((rows, classes)).map_err(|e| Skip::from(c(e)))?;
            let lp = match kind {
                super::Head::LogProbabilities => x,
                super::Head::Probabilities => x.log().map_err(|e| Skip::from(c(e)))?,
                super::Head::Logits => {
                    let m = x.max_keepdim(1).map_err(|e| Skip::from(c(e)))?.detach();
                    let s = x.broadcast_sub(&m).map_err(|e| Skip::from(c(e)))?;
                    let lse = s
                        .exp()
                        .and_then(|e| e.sum_keepdim(1))
                        .and_then(|e| e.log())
                        .map_err(|e| Skip::from(c(e)))?;
                    s.broadcast_sub(&lse).map_err(|e| Skip::from(c(e)))?
                }
            };
            let labels: Vec<i64> = (0..rows).map(|i| (i % classes.max(1)) as i64).collect();
            let labels =
                Tensor::from_vec(labels, (rows, 1), &Device::Cpu).map_err(|e| Skip::from(c(e)))?;
            let loss = lp
                .gather(&labels, 1)
                .and_then(|p| p.mean_all())
                .and_then(|m| m.neg())
                .map_err(|e| Skip::from(c(e)))?;
            return Ok((loss, Target::Head(head.to_string())));
        }
        let outs: Vec<Tensor> = graph
            .outputs()
            .iter()
            .filter(|t| float(t))
            .filter_map(|o| env.get(*o))
            .map(|t| t.sqr().and_then(|s| s.affine(0.5, 0.0)).map_err(c))
            .collect::<R<_>>()?;
        match sum(outs)? {
            Some(l) => Ok((l, Target::Outputs)),
            None => Err("the graph has no float output to differentiate".into()),
        }
    }

    /// The first and last samples' outputs against every sample's input.
    fn mixing(&self, values: &[(String, Tensor)], batch: usize) -> Result<Option<Mixing>, Skip> {
        let leading = |t: &Tensor| t.dtype().is_float() && t.rank() >= 1 && t.dims()[0] == batch;
        let vars: Vec<(String, Var)> = values
            .iter()
            .filter(|(n, t)| leading(t) && batched(self.graph, n))
            .map(|(n, t)| {
                Ok((
                    n.clone(),
                    Var::from_tensor(t).map_err(|e| Skip::from(c(e)))?,
                ))
            })
            .collect::<Result<_, Skip>>()?;
        if vars.is_empty() {
            return Ok(None);
        }
        let as_tensors: Vec<(String, Tensor)> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let env = self.forward_fixed(values, &as_tensors)?;
        if self.per_sample(&env, values, batch) {
            return Ok(None);
        }
        let (dims, _) = per_sample::of_env(&env);
        let outputs = per_sample_outputs(self.graph, &dims, batch);
        let Some(first) = outputs.first() else {
            return Ok(None);
        };
        let mut target: Option<Tensor> = None;
        for o in &outputs {
            let t = &env[o.as_str()];
            // The first and the last sample's outputs: between them, no
            // middle sample's input has a gradient unless samples mix. A
            // recurrence along the batch (a time-first LSTM fed the batch
            // first) carries the earlier samples into the last one, and
            // leaves the first sample's output alone.
            let s = ends(batch)
                .iter()
                .map(|&k| t.narrow(0, k, 1))
                .collect::<candle_core::Result<Vec<_>>>()
                .and_then(|rows| Tensor::cat(&rows, 0))
                .and_then(|t| t.to_dtype(DType::F64))
                .and_then(|t| t.sum_all())
                .map_err(|e| Skip::from(c(e)))?;
            target = Some(match target {
                Some(a) => a.add(&s).map_err(|e| Skip::from(c(e)))?,
                None => s,
            });
        }
        let Some(target) = target else {
            return Ok(None);
        };
        let grads = target
            .backward()
            .map_err(|e| Skip::from(format!("the backward pass failed: {}", c(e))))?;
        let mut best: Option<Mixing> = None;
        for (name, var) in &vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let rows = g
                .abs()
                .and_then(|a| a.flatten_from(1))
                .and_then(|a| a.max_keepdim(1))
                .and_then(|a| a.flatten_all())
                .and_then(|a| a.to_dtype(DType::F64))
                .and_then(|a| a.to_vec1::<f64>())
                .map_err(|e| Skip::from(c(e)))?;
            // The ends' rows hold their own dependence; any other row is
            // what the ends read of another sample.
            let ends = ends(batch);
            let own = ends.iter().map(|&k| rows[k]).fold(0.0f64, f64::max);
            let (from, other) = rows
                .iter()
                .enumerate()
                .filter(|(j, _)| !ends.contains(j))
                .fold(
                    (0, 0.0f64),
                    |(bj, bv), (j, &v)| if v > bv { (j, v) } else { (bj, bv) },
                );
            if other > 0.0 && best.as_ref().is_none_or(|b| other > b.other) {
                best = Some(Mixing {
                    input: name.clone(),
                    output: first.clone(),
                    own,
                    other,
                    from,
                    to: 0,
                    node: None,
                    by: Measured::Gradient,
                });
            }
        }
        if let Some(m) = &mut best {
            (m.node, m.to) = self.where_mixed(values, batch, m)?;
        }
        Ok(best)
    }

    /// Whether the graph provably keeps samples apart ([`per_sample::proven`]),
    /// from the shapes of a pass.
    fn per_sample(
        &self,
        env: &FxHashMap<String, Tensor>,
        values: &[(String, Tensor)],
        batch: usize,
    ) -> bool {
        let inputs: Vec<String> = values
            .iter()
            .filter(|(_, t)| t.rank() >= 1 && t.dims()[0] == batch)
            .map(|(n, _)| n.clone())
            .collect();
        let (dims, ints) = per_sample::of_env(env);
        let shapes = per_sample::Shapes {
            dims: &dims,
            ints: &ints,
        };
        let outputs = per_sample_outputs(self.graph, &dims, batch);
        per_sample::proven(
            &self.lowered.nodes,
            &shapes,
            &inputs,
            &outputs,
            batch,
            self.opset,
        )
    }

    /// The first node, in graph order, whose other samples' values change
    /// when sample `m.from`'s input does, while none of its per-sample
    /// inputs' other samples change; and the other sample whose output
    /// moved most.
    /// Behind a node whose output has no batch axis (a reduction over it, a
    /// reshape that moves it), the node that consumed the last per-sample
    /// tensor is reported.
    fn where_mixed(
        &self,
        values: &[(String, Tensor)],
        batch: usize,
        m: &Mixing,
    ) -> Result<(Option<String>, usize), Skip> {
        let err = |e: candle_core::Error| Skip::from(c(e));
        let cx = Cx::new(self.opset, self.float, true);
        let (base, recorded) = self.forward_with(values, &[], cx, Weights::Fixed)?;
        let mut changed: Vec<(String, Tensor)> = values.to_vec();
        let j = m.from;
        for (name, t) in &mut changed {
            if *name == m.input {
                let mut parts = Vec::new();
                if j > 0 {
                    parts.push(t.narrow(0, 0, j).map_err(err)?);
                }
                parts.push(
                    t.narrow(0, j, 1)
                        .and_then(|r| r.affine(1.0, 1.0))
                        .map_err(err)?,
                );
                if j + 1 < batch {
                    parts.push(t.narrow(0, j + 1, batch - j - 1).map_err(err)?);
                }
                *t = Tensor::cat(&parts, 0).map_err(err)?;
            }
        }
        // The same batch statistics: BatchNorm couples samples by design.
        let mut replay = Cx::new(self.opset, self.float, true);
        replay.statistics = recorded.statistics;
        replay.replay = true;
        let (other, _) = self.forward_with(&changed, &[], replay, Weights::Fixed)?;
        let per_sample = |name: &str| {
            base.get(name)
                .is_some_and(|t| t.rank() >= 1 && t.dims()[0] == batch && t.dtype().is_float())
        };
        let differs = |name: &str| -> Result<bool, Skip> {
            let (Some(a), Some(b)) = (base.get(name), other.get(name)) else {
                return Ok(false);
            };
            Ok(moves(a, b)?
                .iter()
                .enumerate()
                .any(|(k, &d)| k != j && d > 0.0))
        };
        // How far each sample moved between two values of a tensor.
        fn moves(a: &Tensor, b: &Tensor) -> Result<Vec<f64>, Skip> {
            a.sub(b)
                .and_then(|d| d.abs())
                .and_then(|d| d.flatten_from(1))
                .and_then(|d| d.max(1))
                .and_then(|d| d.to_dtype(DType::F64))
                .and_then(|d| d.to_vec1::<f64>())
                .map_err(|e| Skip::from(c(e)))
        }
        // The other sample whose output moved most.
        let sample = match (base.get(m.output.as_str()), other.get(m.output.as_str())) {
            (Some(a), Some(b)) => most_moved(&moves(a, b)?, j).0,
            _ => usize::from(j == 0),
        };
        // The producer of each tensor, to walk back past tensors without a batch axis.
        let mut producer: FxHashMap<&str, usize> = FxHashMap::default();
        for (i, n) in self.lowered.nodes.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), i);
            }
        }
        for n in &self.lowered.nodes {
            let outs: Vec<&String> = n.output.iter().filter(|o| per_sample(o)).collect();
            let mut moved = false;
            for o in &outs {
                if differs(o)? {
                    moved = true;
                    break;
                }
            }
            if !moved {
                continue;
            }
            let mut inputs_moved = false;
            for i in n.input.iter().filter(|i| per_sample(i)) {
                if differs(i)? {
                    inputs_moved = true;
                    break;
                }
            }
            if inputs_moved {
                continue;
            }
            // Walk back through inputs without a batch axis to where they left it.
            let mut node = n;
            for _ in 0..64 {
                let back = node
                    .input
                    .iter()
                    .filter(|i| !i.is_empty() && !per_sample(i) && !self.constants.contains_key(*i))
                    .filter_map(|i| producer.get(i.as_str()).map(|&p| &self.lowered.nodes[p]))
                    .find(|p| p.input.iter().any(|i| !self.constants.contains_key(i)));
                match back {
                    Some(p) if p.input.iter().any(|i| per_sample(i)) => {
                        node = p;
                        break;
                    }
                    Some(p) => node = p,
                    None => break,
                }
            }
            let name = node
                .name
                .clone()
                .filter(|s| !s.is_empty() && !s.starts_with(super::lower::PREFIX))
                .or_else(|| node.output.first().cloned());
            return Ok((name, sample));
        }
        Ok((None, sample))
    }
}

/// The samples whose outputs the backward pass differentiates: the first
/// and the last (the first alone in a batch of 2, whose other sample is
/// then the one measured).
fn ends(batch: usize) -> Vec<usize> {
    if batch >= 3 {
        vec![0, batch - 1]
    } else {
        vec![0]
    }
}

/// Whether the forward pass's shapes alone prove that samples stay apart
/// (`per_sample::proven`), so that `batch-mixing` needs no backward pass.
/// The forward pass records the shapes of float values only, so a graph
/// that computes on integers on the way is not proven here.
pub fn proven_per_sample(graph: &Graph<'_>, lowered: &Lowered, run: &super::Run) -> bool {
    let batch = inputs::batch_size(&run.inputs);
    let consts: FxHashMap<&str, &crate::onnx::proto::TensorProto> = lowered
        .initializers
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let dims = |t: &str| -> Option<Vec<usize>> {
        if let Some(i) = run.inputs.iter().find(|i| i.name == t) {
            return Some(i.shape.clone());
        }
        run.summaries.get(t).map(|s| s.shape.clone())
    };
    let ints = |t: &str| -> Option<Vec<i64>> {
        match consts.get(t) {
            Some(c) => Some(c.int64_data.clone()),
            None => Some(
                graph
                    .values(t)?
                    .ok()?
                    .into_iter()
                    .map(|x| x as i64)
                    .collect(),
            ),
        }
    };
    let shapes = per_sample::Shapes {
        dims: &dims,
        ints: &ints,
    };
    let inputs: Vec<String> = run
        .inputs
        .iter()
        .filter(|i| i.shape.first() == Some(&batch))
        .map(|i| i.name.clone())
        .collect();
    let outputs = per_sample_outputs(graph, &dims, batch);
    batch < 2
        || per_sample::proven(
            &lowered.nodes,
            &shapes,
            &inputs,
            &outputs,
            batch,
            graph.opset().unwrap_or(17),
        )
}

/// A stored tensor as an engine tensor; f32 values are read as f32, with no
/// wider copy of the weights on the way.
fn read(
    model: &Model,
    t: &crate::onnx::proto::TensorProto,
    float: DType,
    what: &str,
    name: &str,
) -> Result<Tensor, Skip> {
    let tensor = match read_f32(model, t, float, what, name)? {
        Some((v, dims)) => Tensor::from_vec(v, dims, &Device::Cpu).map_err(|e| Skip::from(c(e)))?,
        None => ops::from_values(
            t,
            model.values_f64(t).map_err(value_error(what, name))?,
            float,
        )?,
    };
    model.release(t);
    Ok(tensor)
}

/// [`read`] for a trainable tensor: a variable made from the values read,
/// rather than a copy of them (VGG-11's 133 M weights were two copies at once).
fn read_var(
    model: &Model,
    t: &crate::onnx::proto::TensorProto,
    float: DType,
    what: &str,
    name: &str,
) -> Result<Var, Skip> {
    let var = match read_f32(model, t, float, what, name)? {
        Some((v, dims)) => {
            model.release(t);
            Var::from_vec(v, dims, &Device::Cpu)
        }
        // `read` gives the pages back.
        None => Var::from_tensor(&read(model, t, float, what, name)?),
    };
    var.map_err(|e| Skip::from(c(e)))
}

/// A tensor's float32 values and its dimensions.
type Values32 = (Vec<f32>, Vec<usize>);

/// A float tensor's values as f32 with its dimensions, when the engine
/// computes in f32; `None` otherwise. The engine then holds its own copy:
/// the caller gives back the file's pages that reading them made resident.
fn read_f32(
    model: &Model,
    t: &crate::onnx::proto::TensorProto,
    float: DType,
    what: &str,
    name: &str,
) -> Result<Option<Values32>, Skip> {
    if !(dt::is_float(t.data_type) && float == DType::F32) {
        return Ok(None);
    }
    let v = model.values_f32(t).map_err(value_error(what, name))?;
    let dims = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    Ok(Some((v, dims)))
}

/// The note for a stored tensor whose values cannot be read.
fn value_error<'a>(
    what: &'a str,
    name: &'a str,
) -> impl Fn(crate::onnx::values::ValueError) -> Skip + 'a {
    move |e| Skip::from(format!("{what} `{name}`: {}", e.0))
}

/// A tract tensor (the forward probe's input) as an engine tensor.
fn from_tract(t: &TractTensor, float: DType) -> Result<Tensor, Skip> {
    let shape = t.shape().to_vec();
    let err = |e: String| Skip::from(format!("the backward pass cannot read an input: {e}"));
    let tensor = if t.datum_type().is_float() {
        let v = t.cast_to::<f64>().map_err(|e| err(e.to_string()))?;
        let plain = v.try_as_plain_ram().map_err(|e| err(e.to_string()))?;
        let s = plain.as_slice::<f64>().map_err(|e| err(e.to_string()))?;
        Tensor::from_slice(s, shape, &Device::Cpu).and_then(|t| t.to_dtype(float))
    } else if t.datum_type() == DatumType::Bool {
        let v = t.cast_to::<u8>().map_err(|e| err(e.to_string()))?;
        let plain = v.try_as_plain_ram().map_err(|e| err(e.to_string()))?;
        let s = plain.as_slice::<u8>().map_err(|e| err(e.to_string()))?;
        Tensor::from_slice(s, shape, &Device::Cpu)
    } else {
        let v = t.cast_to::<i64>().map_err(|e| err(e.to_string()))?;
        let plain = v.try_as_plain_ram().map_err(|e| err(e.to_string()))?;
        let s = plain.as_slice::<i64>().map_err(|e| err(e.to_string()))?;
        Tensor::from_slice(s, shape, &Device::Cpu)
    };
    tensor.map_err(|e| err(c(e)))
}

#[cfg(test)]
mod tests;
