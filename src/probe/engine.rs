//! Running the lowered graph once with tract, summarizing each value as it is computed.
//!
//! The pipeline is the same for every graph size: parse, type, plan, run,
//! with tract's matrix kernels on every core; a graph longer than
//! [`segment::NODES`] nodes goes through it in pieces, one after another.
//! tract's optimizer is never used: it fuses and renames the nodes whose
//! outputs the probe observes, it does not scale linearly (90 s on a
//! 10,000-node chain, where typing and running the plain typed plan take
//! about 3 s), and on ResNet-50 at batch 8 it saves nothing once BatchNorm runs as nnlint's own operator (1.17 s
//! against 1.20 s for the whole process, measured with benches/probe.py).
//!
//! Weights are not copied into the model tract parses: an inline tensor is
//! handed to tract as external data at its offset in the model file, so
//! tract reads it straight from the file into its own tensor.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use prost::Message;
use rustc_hash::{FxHashMap, FxHashSet};
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{SimplePlan, SimpleState};
use tract_onnx::tract_hir::infer::{InferenceNode, InferenceOp};

use super::budget;
use super::inputs::{self, Input, InputOptions};
use super::lower::{Lowered, PREFIX};
use super::normalize::{Affine, BatchStatisticsNorm};
use super::observe::{summarize, Summary, Watch};
use super::segment;
use crate::graph::Graph;
use crate::onnx::external::is_external;
use crate::onnx::proto::{data_type as dt, TensorProto};
use crate::onnx::Model;

/// How the probe runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub inputs: InputOptions,
    /// Bytes the forward pass's values may take.
    pub budget: usize,
    /// Seconds the forward pass may take, by estimate (`--probe-time`).
    pub seconds: f64,
    /// Of which reading and typing the graph takes, by [`typing_seconds`].
    pub typing_seconds: f64,
    /// Show a progress bar on stderr when the run is slow.
    pub progress: bool,
    /// Nodes tract reads at once: a longer graph is cut into pieces of this
    /// many ([`segment`]).
    pub piece_nodes: usize,
}

/// What one forward pass saw.
#[derive(Debug, Default)]
pub struct Run {
    /// Every float tensor of the model that was computed, by name.
    pub summaries: FxHashMap<String, Summary>,
    /// The same names, in the order they were computed.
    pub order: Vec<String>,
    pub inputs: Vec<Input>,
    /// The pass's estimated seconds (typing and running), which the later
    /// passes' time budget is what is left of.
    pub seconds: f64,
    /// How many pieces tract read the graph in ([`segment`]).
    pub pieces: usize,
    /// Each name's first place in `order`.
    positions: FxHashMap<String, usize>,
}

impl Run {
    /// Keeps what the observer summarized of `name`, in the order computed.
    pub fn record(&mut self, name: &str, summary: Summary) {
        self.positions
            .entry(name.to_string())
            .or_insert(self.order.len());
        self.order.push(name.to_string());
        self.summaries.insert(name.to_string(), summary);
    }

    /// Where `tensor` was first computed in the run, by its place in `order`.
    pub fn position(&self, tensor: &str) -> Option<usize> {
        self.positions.get(tensor).copied()
    }
}

/// Why the probe did not run, and the node that stopped it, when one did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub reason: String,
    /// The node's name (or its first output's, when it has none).
    pub node: Option<String>,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<String> for Skip {
    fn from(reason: String) -> Skip {
        Skip { reason, node: None }
    }
}

impl From<&str> for Skip {
    fn from(reason: &str) -> Skip {
        Skip::from(reason.to_string())
    }
}

impl From<&budget::OverBudget> for Skip {
    fn from(refused: &budget::OverBudget) -> Skip {
        Skip {
            reason: refused.to_string(),
            node: refused.node.clone(),
        }
    }
}

/// Runs `lowered` with tract. An `Err` is the reason the probe could not run.
pub fn run(
    model: &Model,
    graph: &Graph<'_>,
    lowered: &Lowered,
    watch: &FxHashMap<String, Watch>,
    options: &RunOptions,
) -> Result<Run, Skip> {
    guarded("tract", || run_inner(model, graph, lowered, watch, options))
}

/// What one pass of [`compare`] saw.
#[derive(Debug, Default)]
pub struct Observed {
    /// For each float value whose leading dimension is the batch, a hash of
    /// each sample's values, by the value's name.
    pub samples: FxHashMap<String, Vec<u64>>,
    /// The names of `samples`, in the order they were computed.
    pub order: Vec<String>,
    /// The values of the tensors [`compare`] was asked to keep.
    pub kept: FxHashMap<String, Vec<f32>>,
}

impl Observed {
    fn observe(&mut self, name: &str, value: &Tensor, batch: usize, keep: &FxHashSet<String>) {
        use std::hash::Hasher;
        let float = matches!(
            value.datum_type(),
            DatumType::F32 | DatumType::F64 | DatumType::F16
        );
        if !float || value.shape().first() != Some(&batch) {
            return;
        }
        let Ok(v) = value.cast_to::<f32>() else {
            return;
        };
        let Ok(view) = v.try_as_plain_ram() else {
            return;
        };
        let Ok(values) = view.as_slice::<f32>() else {
            return;
        };
        let row = values.len() / batch.max(1);
        let hashes = values
            .chunks(row.max(1))
            .map(|sample| {
                let mut h = rustc_hash::FxHasher::default();
                for x in sample {
                    h.write_u32(x.to_bits());
                }
                h.finish()
            })
            .collect();
        if self.samples.insert(name.to_string(), hashes).is_none() {
            self.order.push(name.to_string());
        }
        if keep.contains(name) {
            self.kept.insert(name.to_string(), values.to_vec());
        }
    }
}

/// Two passes of [`compare`]: on the probe's inputs, and with one sample
/// of some inputs moved.
#[derive(Debug)]
pub struct Comparison {
    pub batch: usize,
    /// The sample moved.
    pub moved_sample: usize,
    /// The inputs whose sample `moved_sample` was moved.
    pub moved_inputs: Vec<String>,
    pub base: Observed,
    pub moved: Observed,
}

/// Runs `lowered` twice with tract: once on the probe's inputs, once with 1
/// added to sample `sample` of each float input `moved` names whose leading
/// dimension is the batch. The second pass normalizes with the
/// first pass's batch statistics, so that BatchNorm, which couples samples
/// by design, does not carry the change to the others. `keep` names the
/// values kept whole.
pub fn compare(
    model: &Model,
    graph: &Graph<'_>,
    lowered: &Lowered,
    options: &RunOptions,
    moved: &FxHashSet<String>,
    sample: usize,
    keep: &FxHashSet<String>,
) -> Result<Comparison, Skip> {
    guarded("tract", || {
        let prepared = prepare(model, graph, lowered, options)?;
        let batch = prepared.batch();
        let moved_inputs = prepared
            .plan
            .iter()
            .filter(|i| moved.contains(&i.name) && i.shape.first() == Some(&batch))
            .map(|i| i.name.clone())
            .collect();
        let mut norms = Norms::Record(FxHashMap::default());
        let mut base = Observed::default();
        let none = FxHashSet::default();
        prepared.execute(graph, prepared.values(&none, 0)?, &mut norms, |n, v| {
            base.observe(n, v, batch, keep)
        })?;
        let Norms::Record(statistics) = norms else {
            return Err("the batch statistics were not recorded".into());
        };
        let mut after = Observed::default();
        prepared.execute(
            graph,
            prepared.values(moved, sample)?,
            &mut Norms::Replay(statistics),
            |n, v| after.observe(n, v, batch, keep),
        )?;
        Ok(Comparison {
            batch,
            moved_sample: sample,
            moved_inputs,
            base,
            moved: after,
        })
    })
}

/// Runs `f`, turning a panic of the engine it drives (`engine` names it)
/// into a reason the probe did not run, without printing the panic.
pub fn guarded<T>(engine: &str, f: impl FnOnce() -> Result<T, Skip>) -> Result<T, Skip> {
    quiet_panics();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        PROBING.with(|p| p.set(true));
        let r = f();
        PROBING.with(|p| p.set(false));
        r
    }));
    PROBING.with(|p| p.set(false));
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown error");
        Err(format!("{engine} failed: {}", first_line(what)).into())
    })
}

/// Stack bytes per node of the graph the gradient engine differentiates:
/// candle orders a graph's tensors for the backward pass by a recursive
/// walk, and frees a chain of them recursively, one frame per node on the
/// way. A 100 000-node Gemm/Relu chain overflowed the main thread's 8 MiB.
const GRADIENT_STACK_PER_NODE: usize = 4 << 10;
const GRADIENT_STACK_BASE: usize = 16 << 20;

/// [`guarded`], for the gradient engine on a graph of `nodes` nodes: on a
/// thread whose stack its recursion fits in (reserved, and only touched as
/// deep as the graph goes).
pub fn guarded_deep<T: Send>(
    nodes: usize,
    f: impl FnOnce() -> Result<T, Skip> + Send,
) -> Result<T, Skip> {
    let stack = nodes
        .saturating_mul(GRADIENT_STACK_PER_NODE)
        .saturating_add(GRADIENT_STACK_BASE);
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("gradients".into())
            .stack_size(stack)
            .spawn_scoped(s, || guarded("the gradient engine", f))
            .map_err(|e| Skip::from(format!("the gradient engine could not start: {e}")))?
            .join()
            .unwrap_or_else(|_| Err("the gradient engine failed".into()))
    })
}

thread_local! {
    static PROBING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// tract panics on a few inputs it does not support; the probe reports those
/// as a skipped probe, so the panic message must not reach stderr.
fn quiet_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PROBING.with(|p| p.get()) {
                default(info);
            }
        }));
    });
}

fn run_inner(
    model: &Model,
    graph: &Graph<'_>,
    lowered: &Lowered,
    watch: &FxHashMap<String, Watch>,
    options: &RunOptions,
) -> Result<Run, Skip> {
    let prepared = prepare(model, graph, lowered, options)?;
    let mut run = Run {
        inputs: prepared.plan.clone(),
        pieces: prepared.runnables.len(),
        seconds: options.typing_seconds + prepared.cost.seconds(),
        ..Default::default()
    };
    let seed = prepared.seed;
    let values = prepared.values(&FxHashSet::default(), 0)?;
    // Graph inputs are summarized too: activation scale starts there.
    for i in &prepared.plan {
        if let Some(s) = values
            .get(&i.name)
            .and_then(|v| summary_of(v, watch.get(&i.name), seed))
        {
            run.record(&i.name, s);
        }
    }
    prepared.execute(graph, values, &mut Norms::Compute, |name, value| {
        if let Some(s) = summary_of(value, watch.get(name), seed) {
            run.record(name, s);
        }
    })?;
    Ok(run)
}

/// The lowered graph read, typed and planned by tract, with the inputs it
/// runs on: what one or more passes share.
struct Prepared {
    runnables: Vec<Arc<SimplePlan<TypedFact, Box<dyn TypedOp>>>>,
    /// Each piece's outputs' names, in tract's order.
    outputs: Vec<Vec<String>>,
    plan: Vec<Input>,
    cost: Cost,
    seed: u64,
    /// Bytes a value whose size only the run knows may take.
    left: usize,
    budget: usize,
    progress: bool,
}

/// What a pass does at the batch-statistics normalizations.
enum Norms {
    /// Normalizes with the batch's statistics, as tract's own op would.
    Compute,
    /// The same, and keeps each node's map, by node name.
    Record(FxHashMap<String, Affine>),
    /// Normalizes with the maps an earlier pass recorded.
    Replay(FxHashMap<String, Affine>),
}

fn prepare(
    model: &Model,
    graph: &Graph<'_>,
    lowered: &Lowered,
    options: &RunOptions,
) -> Result<Prepared, Skip> {
    let (proto, stored) = to_tract(model, lowered, options.budget)?;
    let dir = model
        .path
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut onnx = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true);
    onnx.op_register
        .insert(super::normalize::OP_TYPE, super::normalize::build);
    onnx.op_register
        .insert(super::rectify::OP_TYPE, super::rectify::build);
    budget::guard(&mut onnx);
    onnx.provider = std::sync::Arc::new(ReadFile);
    let mut pieces = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for piece in segment::split(proto, options.piece_nodes) {
        let parsed = onnx
            .parse(&piece.proto, Some(&dir))
            .map_err(|e| format!("tract cannot read the model: {}", cause(&e)))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(format!(
                "tract cannot resolve `{}`",
                parsed.unresolved_inputs.join("`, `")
            )
            .into());
        }
        let base = parsed.model;
        missing.extend(
            base.nodes()
                .iter()
                .filter(|n| n.op_is::<tract_onnx::tract_hir::ops::unimpl::UnimplementedOp>())
                .map(|n| {
                    let name = n.op().name();
                    name.trim_start_matches("Unimplemented(")
                        .trim_end_matches(')')
                        .to_string()
                }),
        );
        let outputs = piece.outputs();
        pieces.push(Parsed {
            base,
            outputs,
            kept: piece.kept,
        });
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        let noun = if missing.len() == 1 {
            "operator"
        } else {
            "operators"
        };
        return Err(format!("tract has no `{}` {noun}", missing.join("`, `")).into());
    }

    let mut input_options = options.inputs.clone();
    let mut typed = None;
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    for _ in 0..3 {
        let plan = inputs::plan(graph, &input_options)?;
        let (t, cost) = {
            // What tract computes while typing comes out of what the weights left.
            let _allowance = budget::allow(options.budget.saturating_sub(stored), options.budget);
            typed_pieces(&pieces, &plan)?
        };
        let need = cost
            .consts
            .saturating_add(cost.values_peak())
            .saturating_add(reserve(options.budget));
        let seconds = cost.seconds();
        let time_left = options.seconds - options.typing_seconds;
        let dynamic = plan
            .iter()
            .any(|i| i.shape.first() == Some(&input_options.batch));
        if need <= options.budget && seconds <= time_left {
            typed = Some((t, plan, cost));
            break;
        }
        if !dynamic || input_options.batch <= 1 {
            return Err(if need > options.budget {
                format!(
                    "the forward pass needs about {:.1} MiB, over the probe's budget of {:.1} MiB (--probe-memory)",
                    mib(need),
                    mib(options.budget)
                )
            } else {
                format!(
                    "the forward pass would take about {}, over the probe's time budget of {} s; `--probe-time {:.0}` runs it",
                    secs(seconds + options.typing_seconds),
                    options.seconds,
                    (seconds + options.typing_seconds).ceil() + 1.0
                )
            }
            .into());
        }
        // The weights stay whatever the batch: only the values and the time
        // shrink with it, about in proportion.
        let batch = input_options.batch as f64;
        let room = options
            .budget
            .saturating_sub(cost.consts)
            .saturating_sub(reserve(options.budget));
        let by_memory = batch * room as f64 / cost.values_peak().max(1) as f64;
        let by_time = batch * time_left.max(0.0) / seconds.max(f64::MIN_POSITIVE);
        let scaled = by_memory.min(by_time).floor() as usize;
        input_options.batch = scaled.clamp(1, input_options.batch - 1);
    }
    let (typed, mut plan, cost) =
        typed.ok_or("the forward pass does not fit the probe's budgets")?;
    // What a value whose size only the run knows may take.
    let left = options.budget.saturating_sub(cost.consts);
    // Labels whose class count the declared shapes did not give: the typed model knows.
    for input in &mut plan {
        if let inputs::Fill::Labels { classes, scores } = &mut input.fill {
            if *classes == 0 {
                *classes = typed
                    .iter()
                    .find_map(|t| {
                        let o = t.find_outlet_label(scores)?;
                        let fact = t.outlet_fact(o).ok()?;
                        fact.shape.as_concrete().and_then(|s| s.get(1).copied())
                    })
                    .filter(|&c| c > 0)
                    .ok_or_else(|| {
                        format!(
                            "the number of classes for labels `{}` is unknown; pass --input {}=FILE.npy",
                            input.name, input.name
                        )
                    })?;
            }
        }
    }
    let outputs: Vec<Vec<String>> = pieces.into_iter().map(|p| p.outputs).collect();
    // tract orders the plan to keep few values alive at once, at a cost that
    // grows with the square of the graph (seconds at 30k nodes); past
    // ORDER_FOR_MEMORY_NODES its plain topological order is taken instead.
    let runnables = typed
        .into_iter()
        .map(|t| {
            let plan_options = tract_onnx::tract_core::runtime::RunOptions {
                executor: executor(),
                skip_order_opt_ram: t.nodes().len() > ORDER_FOR_MEMORY_NODES,
                ..Default::default()
            };
            SimplePlan::new_with_options(t, &plan_options)
                .map_err(|e| format!("tract cannot plan: {}", cause(&e)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        runnables,
        outputs,
        plan,
        cost,
        seed: input_options.seed,
        left,
        budget: options.budget,
        progress: options.progress,
    })
}

impl Prepared {
    /// The batch: the leading dimension of the first input.
    fn batch(&self) -> usize {
        inputs::batch_size(&self.plan)
    }

    /// The inputs of a pass, by name, with 1 added to sample `sample` of
    /// each float input `moved` names.
    fn values(
        &self,
        moved: &FxHashSet<String>,
        sample: usize,
    ) -> Result<FxHashMap<String, TValue>, Skip> {
        let batch = self.batch();
        self.plan
            .iter()
            .map(|i| {
                let mut t = inputs::make(i, self.seed)?;
                if moved.contains(&i.name) && i.shape.first() == Some(&batch) && sample < batch {
                    let row = t.len() / batch.max(1);
                    let dt = t.datum_type();
                    let mut view = t.try_as_plain_ram_mut().map_err(|e| cause(&e))?;
                    match dt {
                        DatumType::F32 => add_one(
                            view.as_slice_mut::<f32>().map_err(|e| cause(&e))?,
                            row * sample..row * (sample + 1),
                            1.0,
                        ),
                        DatumType::F64 => add_one(
                            view.as_slice_mut::<f64>().map_err(|e| cause(&e))?,
                            row * sample..row * (sample + 1),
                            1.0,
                        ),
                        _ => {}
                    }
                }
                Ok((i.name.clone(), t.into_tvalue()))
            })
            .collect()
    }

    /// One pass over every piece, handing each value the model names to
    /// `seen` as it is computed.
    fn execute(
        &self,
        graph: &Graph<'_>,
        mut values: FxHashMap<String, TValue>,
        norms: &mut Norms,
        mut seen: impl FnMut(&str, &Tensor),
    ) -> Result<(), Skip> {
        let steps = self
            .runnables
            .iter()
            .map(|r| r.order_without_consts().len() as u64)
            .sum();
        let progress = Progress::new(
            self.progress,
            steps,
            "probing {bar:30} {pos}/{len} nodes, {elapsed}",
        );
        // The last piece that reads each value: there it is handed over, not
        // shared, so that tract frees it after its last reader as in a whole run.
        let mut last_use: FxHashMap<String, usize> = FxHashMap::default();
        for (k, runnable) in self.runnables.iter().enumerate() {
            let model = runnable.model();
            for o in model.input_outlets().map_err(|e| cause(&e))? {
                last_use.insert(model.node(o.node).name.clone(), k);
            }
        }
        let (left, budget) = (self.left, self.budget);
        for (k, (runnable, outputs)) in self.runnables.iter().zip(&self.outputs).enumerate() {
            let model = runnable.model();
            let feed: TVec<TValue> = model
                .input_outlets()
                .map_err(|e| cause(&e))?
                .iter()
                .map(|o| {
                    let name = &model.node(o.node).name;
                    let value = if last_use.get(name) == Some(&k) {
                        values.remove(name)
                    } else {
                        values.get(name).cloned()
                    };
                    value.ok_or_else(|| format!("no value for the input `{name}`"))
                })
                .collect::<Result<_, _>>()?;
            let sources: FxHashSet<usize> = model
                .input_outlets()
                .map_err(|e| cause(&e))?
                .iter()
                .map(|o| o.node)
                .collect();
            let labels: FxHashMap<(usize, usize), String> = model
                .outlet_labels
                .iter()
                .filter(|(o, l)| !l.starts_with(PREFIX) && !sources.contains(&o.node))
                .map(|(o, l)| ((o.node, o.slot), l.clone()))
                .collect();
            let mut state = SimpleState::new(runnable)
                .map_err(|e| format!("tract cannot plan: {}", cause(&e)))?;
            let outcome = state.run_plan_with_eval(feed, |ctx, op_state, node, mut node_inputs| {
                budget::check_node(node, &node_inputs, ctx.symbols, left, budget)?;
                let norm = node.op_as::<BatchStatisticsNorm>();
                let out = match (norm, &mut *norms) {
                    (Some(op), Norms::Record(kept)) => {
                        let (y, affine) = op.normalize(node_inputs.remove(0), None)?;
                        kept.insert(node.name.clone(), affine);
                        tvec![y]
                    }
                    (Some(op), Norms::Replay(kept)) => {
                        let affine = kept.get(&node.name).ok_or_else(|| {
                            TractError::msg(format!(
                                "no batch statistics recorded for `{}`",
                                node.name
                            ))
                        })?;
                        tvec![op.normalize(node_inputs.remove(0), Some(affine))?.0]
                    }
                    _ => tract_onnx::tract_core::plan::eval(ctx, op_state, node, node_inputs)?,
                };
                for (slot, value) in out.iter().enumerate() {
                    if let Some(name) = labels.get(&(node.id, slot)) {
                        seen(name, value);
                    }
                }
                progress.step();
                Ok::<_, TractError>(out)
            });
            let computed = outcome.map_err(|e| {
                progress.finish();
                match budget::refusal(&e) {
                    // Named by the ONNX op, not the tract operator it runs as.
                    Some(refused) => {
                        let mut refused = refused.clone();
                        let node = refused.node.as_deref().unwrap_or("");
                        if let Some(n) = graph.find_node(node) {
                            refused.what = budget::node_named(node, n.op_type());
                        }
                        Skip::from(&refused)
                    }
                    None => Skip::from(format!("tract failed: {}", cause(&e))),
                }
            })?;
            // Only what later pieces read stays alive.
            values.extend(
                outputs
                    .iter()
                    .cloned()
                    .zip(computed)
                    .filter(|(name, _)| last_use.get(name).is_some_and(|&last| last > k)),
            );
        }
        progress.finish();
        Ok(())
    }
}

/// Adds `one` to the values of `range`: one sample of a batch.
fn add_one<T: Copy + std::ops::Add<Output = T>>(
    values: &mut [T],
    range: std::ops::Range<usize>,
    one: T,
) {
    if let Some(sample) = values.get_mut(range) {
        for v in sample {
            *v = *v + one;
        }
    }
}

/// A piece of the graph as tract read it, and what it hands on.
struct Parsed {
    base: InferenceModel,
    /// Its outputs' names, in tract's order.
    outputs: Vec<String>,
    /// Values computed before it, read after it, and alive while it runs.
    kept: Vec<String>,
}

/// Every piece typed in order, each carried value typed as the piece that
/// computes it typed it, and what running them all would cost: the
/// constants of all, the work of all, and at the worst piece its values
/// with the carried values kept alive across it.
fn typed_pieces(pieces: &[Parsed], plan: &[Input]) -> Result<(Vec<TypedModel>, Cost), Skip> {
    let mut facts: FxHashMap<&str, TypedFact> = FxHashMap::default();
    let mut typed = Vec::with_capacity(pieces.len());
    let mut total = Cost::default();
    for piece in pieces {
        let t = typed_model(piece.base.clone(), |name| {
            if let Some(f) = facts.get(name) {
                return Ok(InferenceFact::from(f));
            }
            let input = plan.iter().find(|i| i.name == name).ok_or_else(|| {
                format!("tract sees an input `{name}` the graph does not declare")
            })?;
            Ok(InferenceFact::dt_shape(
                inputs::datum_type(input.elem_type)?,
                input.shape.clone(),
            ))
        })?;
        let c = cost(&t);
        let kept: usize = piece
            .kept
            .iter()
            .filter_map(|name| facts.get(name.as_str()))
            .map(bytes)
            .fold(0, usize::saturating_add);
        total.consts = total.consts.saturating_add(c.consts);
        total.peak = total.peak.max(c.peak.saturating_add(kept));
        total.macs += c.macs;
        total.values += c.values;
        let outlets = t.output_outlets().map_err(|e| cause(&e))?;
        for (name, outlet) in piece.outputs.iter().zip(outlets) {
            let fact = t.outlet_fact(*outlet).map_err(|e| cause(&e))?.clone();
            facts.insert(name, fact);
        }
        typed.push(t);
    }
    Ok((typed, total))
}

fn summary_of(value: &Tensor, watch: Option<&Watch>, seed: u64) -> Option<Summary> {
    let shape = value.shape().to_vec();
    match value.datum_type() {
        DatumType::F32 => {
            let view = value.try_as_plain_ram().ok()?;
            Some(summarize(view.as_slice::<f32>().ok()?, &shape, watch, seed))
        }
        DatumType::F64 | DatumType::F16 => {
            let v = value.cast_to::<f32>().ok()?;
            let view = v.try_as_plain_ram().ok()?;
            Some(summarize(view.as_slice::<f32>().ok()?, &shape, watch, seed))
        }
        _ => None,
    }
}

/// The model typed with every input's concrete shape.
/// The model typed with every input's fact, by its name.
fn typed_model(
    mut model: InferenceModel,
    fact_of: impl Fn(&str) -> Result<InferenceFact, String>,
) -> Result<TypedModel, Skip> {
    let outlets = model.input_outlets().map_err(|e| cause(&e))?.to_vec();
    for (ix, outlet) in outlets.iter().enumerate() {
        let name = model.node(outlet.node).name.clone();
        let fact = fact_of(&name)?;
        model
            .set_input_fact(ix, fact)
            .map_err(|e| format!("input `{name}`: {}", cause(&e)))?;
    }
    into_typed(model).map_err(|e| match budget::refusal(&e) {
        Some(refused) => Skip::from(refused),
        None => format!(
            "tract cannot infer the model's types: {}{}",
            node_of(&e),
            cause(&e)
        )
        .into(),
    })
}

/// tract's `into_typed`, but linear in the graph's constants: tract adds
/// each value inference made concrete (every weight) with `add_const`, which
/// compares it with every node already typed to share an equal one, so a
/// graph of thousands of weights took seconds in comparisons alone. Here an
/// index by type, shape and a hash of the bytes finds the equal constants,
/// and tract's own equality confirms them. Everything else is tract's.
fn into_typed(mut model: InferenceModel) -> TractResult<TypedModel> {
    use tract_onnx::tract_core::internal::translator::Translate;
    model.analyse(false)?;
    let model = model.incorporate()?;
    Typing::default().translate_model(&model)
}

#[derive(Debug, Default)]
struct Typing {
    /// Constants added so far, by [`Typing::key`].
    constants: std::cell::RefCell<FxHashMap<u64, Vec<usize>>>,
    /// The typed model's node names, and how many of its nodes they cover
    /// (ops wire nodes of their own between two calls).
    names: std::cell::RefCell<(rustc_hash::FxHashSet<String>, usize)>,
}

impl Typing {
    /// Type, shape and bytes, hashed; `None` for a tensor whose bytes are not
    /// plain values in memory (tract's `add_const` takes those).
    fn key(v: &Tensor) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        if !v.is_plain_ram() || !v.datum_type().is_copy() {
            return None;
        }
        let mut h = rustc_hash::FxHasher::default();
        v.datum_type().hash(&mut h);
        v.shape().hash(&mut h);
        v.as_bytes().hash(&mut h);
        Some(h.finish())
    }

    fn add_const(
        &self,
        target: &mut TypedModel,
        name: String,
        v: Arc<Tensor>,
    ) -> TractResult<OutletId> {
        use tract_onnx::tract_core::ops::konst::Const;
        let Some(key) = Self::key(&v) else {
            return target.add_const(name, v);
        };
        let mut constants = self.constants.borrow_mut();
        let same = constants.entry(key).or_default();
        for &id in same.iter() {
            if target
                .node(id)
                .op_as::<Const>()
                .is_some_and(|c| c.val() == &v)
            {
                return Ok(id.into());
            }
        }
        let fact = TypedFact::try_from(v.clone())?;
        if fact.exotic_fact.is_some() {
            return target.add_const(name, v);
        }
        // A name no node has yet, as tract's `unique_name` gives, from a set
        // kept up to date instead of a scan of every node.
        let mut names = self.names.borrow_mut();
        let (known, covered) = &mut *names;
        for node in &target.nodes()[*covered..] {
            known.insert(node.name.clone());
        }
        let mut unique = name.clone();
        let mut i = 1;
        while known.contains(&unique) {
            unique = format!("{name}.{i}");
            i += 1;
        }
        let id = target.add_node(unique.clone(), Const::new(v)?, tvec!(fact))?;
        known.insert(unique);
        *covered = target.nodes().len();
        same.push(id);
        Ok(id.into())
    }
}

impl
    tract_onnx::tract_core::internal::translator::Translate<
        InferenceFact,
        Box<dyn InferenceOp>,
        TypedFact,
        Box<dyn TypedOp>,
    > for Typing
{
    fn translate_node(
        &self,
        source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &std::collections::HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        use tract_onnx::tract_core::internal::EvalContext;
        use tract_onnx::tract_hir::infer::Factoid;
        // As tract: a source and a stateful node stay nodes even when
        // inference knows their value; any other known value is a constant.
        if !InferenceModel::is_source(&node.op)
            && node.op.state(&EvalContext::out_of_plan())?.is_none()
            && source
                .node_output_facts(node.id)?
                .iter()
                .all(|f| f.value.is_concrete())
        {
            return (0..node.outputs.len())
                .map(|ix| {
                    let value = node.outputs[ix].fact.value.concretize().ok_or_else(|| {
                        tract_onnx::tract_core::internal::format_err!(
                            "a concrete value without a value"
                        )
                    })?;
                    self.add_const(target, format!("{}.{}", node.name, ix), value)
                })
                .collect();
        }
        let outputs = node.op.to_typed(source, node, target, mapping)?;
        for output in &outputs {
            target.outlet_fact(*output)?.consistent()?;
        }
        Ok(outputs)
    }
}

/// The thread pool of tract's matrix kernels, one per process: a pool per
/// probed file would start and stop a thread per core for every file.
fn executor() -> Option<tract_linalg::multithread::Executor> {
    static POOL: std::sync::OnceLock<Option<tract_linalg::multithread::Executor>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads))
    })
    .clone()
}

/// tract's reader of weights from files, with `pread` instead of a memory
/// map: a file that another process truncates meanwhile gives a short read,
/// which tract refuses, instead of a SIGBUS.
struct ReadFile;

impl tract_onnx::data_resolver::ModelDataResolver for ReadFile {
    fn read_bytes_from_path(
        &self,
        buf: &mut Vec<u8>,
        p: &std::path::Path,
        offset: usize,
        length: Option<usize>,
    ) -> TractResult<()> {
        use std::io::{Read, Seek};
        let mut file = std::fs::File::open(p)?;
        file.seek(std::io::SeekFrom::Start(offset as u64))?;
        let want = match length {
            Some(l) => {
                // Read into place: without a size hint, read_to_end grows by doubling.
                buf.reserve_exact(l);
                l as u64
            }
            None => u64::MAX,
        };
        let read = file.take(want).read_to_end(buf)?;
        if length.is_some_and(|l| read != l) {
            return Err(TractError::msg(format!(
                "`{}` is shorter than when the model was loaded",
                p.display()
            )));
        }
        Ok(())
    }
}

/// What a typed model will cost to run, from its facts alone: estimated
/// before it runs, so that the same model gives the same decision on any
/// machine and under any load.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    /// Bytes of its constants (the weights, read once whatever the batch).
    consts: usize,
    /// Bytes of the values alive at once at the worst point of a run in
    /// evaluation order, a convolution's im2col buffer included: tract's
    /// plain convolution unfolds its whole batch before the product.
    peak: usize,
    /// Multiply-accumulates of its convolutions and products.
    macs: f64,
    /// Values it computes, each summarized once by the observer.
    values: f64,
}

/// What the budget keeps for the rest of the process when it sizes the
/// forward pass's batch: the binary, the graph, the observer's counters and
/// tract's buffers beyond the values (32 MiB on a trivial model), or an
/// eighth of a small budget.
fn reserve(budget: usize) -> usize {
    (128usize << 20).min(budget / 8)
}

/// Multiply-accumulates per second of the probe's forward pass (tract's
/// unoptimized plan and the observer, on 2 cores): measured on a VGG-like
/// detector at 928x928 (7.7 GMACs a sample, 2.7 s a sample), rounded down.
const FORWARD_MACS_PER_SECOND: f64 = 2.5e9;
/// Seconds per computed value beyond the products: the elementwise ops and
/// the observer's statistics.
const FORWARD_SECONDS_PER_VALUE: f64 = 2e-9;

/// Typed graphs up to this many nodes are run in tract's memory-saving
/// order; larger ones in plain topological order (see `run_inner`).
const ORDER_FOR_MEMORY_NODES: usize = 10_000;

impl Cost {
    /// The peak with the margin the estimate needs: a 928x928 VGG detector
    /// at batch 3, estimated at 1892 MiB of values, peaked at 2082 MiB above
    /// the process's own (tract's packed operands and copies the walk does
    /// not see).
    fn values_peak(&self) -> usize {
        self.peak.saturating_add(self.peak / 10)
    }

    fn seconds(&self) -> f64 {
        self.macs / FORWARD_MACS_PER_SECOND + self.values * FORWARD_SECONDS_PER_VALUE
    }
}

/// A duration for the time budget's messages: one decimal under 10 s, where
/// an estimate just over what is left would otherwise read as equal to it.
pub fn secs(x: f64) -> String {
    if x < 0.1 {
        format!("{} s", crate::diag::short_number(x.max(0.0)))
    } else if x < 100.0 {
        // One decimal up to 100 s, so that an estimate just over a budget
        // of 10 s does not read as the budget itself.
        format!("{:.1} s", x.max(0.0))
    } else {
        format!("{x:.0} s")
    }
}

/// Seconds tract takes to read and type a graph of `nodes` nodes and
/// constants, read in `pieces` pieces ([`segment`]), before anything runs.
/// Its parser compares each initializer with every constant before it, and
/// its typed model checks each node it wires against the names of all
/// before it, so a piece's cost grows with the square of the piece: fitted
/// on whole Gemm/Relu chains of 20k and 40k nodes (40k and 80k with their
/// weights: 5.1 s and 16.5 s for the whole run at batch 1).
pub fn typing_seconds(nodes: usize, pieces: usize) -> f64 {
    let n = nodes as f64;
    n * 5e-5 + n * n * 2e-9 / pieces.max(1) as f64
}

/// The values of a value whose shape typing made concrete, saturating: an
/// absurd declared shape must read as too large, never wrap to small.
fn volume(fact: &TypedFact) -> Option<usize> {
    Some(
        fact.shape
            .as_concrete()?
            .iter()
            .fold(1usize, |acc, &d| acc.saturating_mul(d)),
    )
}

fn bytes(fact: &TypedFact) -> usize {
    volume(fact).map_or(0, |v| v.saturating_mul(fact.datum_type.size_of()))
}

/// One pass over the model in evaluation order: values come alive when
/// their node runs and die after their last reader.
fn cost(model: &TypedModel) -> Cost {
    use tract_onnx::tract_core::ops::cnn::Conv;
    use tract_onnx::tract_core::ops::einsum::EinSum;
    use tract_onnx::tract_core::ops::konst::Const;
    let mut cost = Cost::default();
    let Ok(order) = model.eval_order() else {
        return cost;
    };
    let mut last_read = vec![0usize; model.nodes().len()];
    for (at, &id) in order.iter().enumerate() {
        for input in &model.nodes()[id].inputs {
            last_read[input.node] = at;
        }
    }
    let outputs: rustc_hash::FxHashSet<usize> = model.output_outlets().map_or_else(
        |_| Default::default(),
        |o| o.iter().map(|o| o.node).collect(),
    );
    let fact = |o: &OutletId| model.outlet_fact(*o).ok();
    let mut live = 0usize;
    let mut alive: Vec<usize> = vec![0; model.nodes().len()];
    for (at, &id) in order.iter().enumerate() {
        let node = &model.nodes()[id];
        let made: usize = node.outputs.iter().map(|o| bytes(&o.fact)).sum();
        if node.op_is::<Const>() {
            cost.consts = cost.consts.saturating_add(made);
            continue;
        }
        cost.values += node
            .outputs
            .iter()
            .filter_map(|o| volume(&o.fact))
            .map(|v| v as f64)
            .sum::<f64>();
        let out = node
            .outputs
            .first()
            .and_then(|o| volume(&o.fact))
            .unwrap_or(0) as f64;
        let mut workspace = 0usize;
        if let Some(conv) = node.op_as::<Conv>() {
            let kernel = node.inputs.get(1).and_then(fact).and_then(volume);
            let data = node.inputs.first().and_then(fact);
            let channels = conv.output_channels().max(1) as f64;
            if let (Some(kernel), Some(data)) = (kernel, data) {
                // Per output value, the kernel's slice of one group.
                let per_value = kernel as f64 / channels;
                cost.macs += out * per_value;
                let columns = out / channels * conv.group as f64 * per_value;
                // The unfolded columns, and the product's output before the
                // bias is added into the value the node returns: a 928x928
                // VGG block peaked at 692 MiB a sample, where its values and
                // columns come to 616 MiB and one more output to 671.
                let unfolded = columns * data.datum_type.size_of() as f64;
                let element = node
                    .outputs
                    .first()
                    .map_or(4, |o| o.fact.datum_type.size_of());
                let product = out * element as f64;
                workspace = (unfolded + product).min(usize::MAX as f64) as usize;
            }
        } else if node.op_is::<EinSum>() {
            // m·k·n is the square root of the three operands' sizes' product
            // for a matrix product, and a bound for the batched ones.
            let a = node.inputs.first().and_then(fact).and_then(volume);
            let b = node.inputs.get(1).and_then(fact).and_then(volume);
            if let (Some(a), Some(b)) = (a, b) {
                cost.macs += (a as f64 * b as f64 * out).sqrt();
            }
        }
        live = live.saturating_add(made);
        alive[id] = made;
        cost.peak = cost.peak.max(live.saturating_add(workspace));
        // What this node was the last to read, and what nothing reads.
        let mut freed: Vec<usize> = node
            .inputs
            .iter()
            .map(|i| i.node)
            .filter(|&n| last_read[n] == at && !outputs.contains(&n))
            .collect();
        if node.outputs.iter().all(|o| o.successors.is_empty()) && !outputs.contains(&id) {
            freed.push(id);
        }
        freed.sort_unstable();
        freed.dedup();
        for n in freed {
            live = live.saturating_sub(std::mem::take(&mut alive[n]));
        }
    }
    cost
}

fn convert<A: Message, B: Message + Default>(a: &A) -> Result<B, String> {
    B::decode(a.encode_to_vec().as_slice())
        .map_err(|e| format!("cannot hand the model to tract: {e}"))
}

/// tract's protobuf model for the lowered graph, and the bytes its stored
/// tensors take once tract reads them.
fn to_tract(
    model: &Model,
    lowered: &Lowered,
    budget: usize,
) -> Result<(pb::ModelProto, usize), String> {
    let g = model.graph();
    let file_name = model
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    // Only what the lowered graph reads: tract loads every initializer it is given.
    let mut used: rustc_hash::FxHashSet<&str> = rustc_hash::FxHashSet::default();
    for n in &lowered.nodes {
        used.extend(n.input.iter().map(String::as_str));
        for a in &n.attribute {
            for sub in a.subgraphs() {
                names_in(sub, &mut used);
            }
        }
    }
    used.extend(g.output.iter().map(|o| o.name.as_str()));
    // Initializers listed as inputs (before IR 4) must stay constants for tract.
    used.extend(g.input.iter().map(|i| i.name.as_str()));
    let mut initializer = Vec::with_capacity(g.initializer.len() + lowered.initializers.len());
    // Every tensor tract will read, by its declared size, before it reads any.
    let mut stored = budget::Stored::new(budget);
    let mut count = |what: String, t: &TensorProto| -> Result<(), String> {
        stored.add(what, t, model.external_length(t)?)
    };
    for n in &lowered.nodes {
        for a in &n.attribute {
            if let Some(t) = a.t.as_deref() {
                let name = n.name.as_deref().filter(|s| !s.is_empty());
                let name = name.or(n.output.first().map(String::as_str)).unwrap_or("");
                count(format!("the `{}` of node `{name}`", a.name), t)?;
            }
        }
    }
    for t in g
        .initializer
        .iter()
        .filter(|t| used.contains(t.name.as_str()))
    {
        if inputs::datum_type(t.data_type).is_err() {
            return Err(format!(
                "tract cannot load initializer `{}` of type {}",
                t.name,
                dt::name(t.data_type)
            ));
        }
        let has_values = is_external(t)
            || t.raw_data.is_some()
            || !t.float_data.is_empty()
            || !t.int32_data.is_empty()
            || !t.int64_data.is_empty()
            || !t.double_data.is_empty()
            || !t.uint64_data.is_empty();
        let values: i64 = t.dims.iter().product();
        if !has_values && values != 0 {
            return Err(format!("initializer `{}` has no values", t.name));
        }
        count(format!("initializer `{}`", t.name), t)?;
        let in_file = match (&t.raw_data, &file_name) {
            (Some(raw), Some(file)) if !is_external(t) => model
                .file_offset(raw)
                .map(|offset| (file, offset, raw.len())),
            _ => None,
        };
        initializer.push(match in_file {
            Some((file, offset, length)) => {
                let entry = |k: &str, v: String| pb::StringStringEntryProto {
                    key: k.into(),
                    value: v,
                };
                pb::TensorProto {
                    name: t.name.clone(),
                    dims: t.dims.clone(),
                    data_type: t.data_type,
                    data_location: Some(pb::tensor_proto::DataLocation::External as i32),
                    external_data: vec![
                        entry("location", file.clone()),
                        entry("offset", offset.to_string()),
                        entry("length", length.to_string()),
                    ],
                    ..Default::default()
                }
            }
            None => convert(t)?,
        });
    }
    for t in &lowered.initializers {
        count(format!("initializer `{}`", t.name), t)?;
        initializer.push(convert(t)?);
    }
    let graph = pb::GraphProto {
        name: g.name.clone(),
        node: lowered
            .nodes
            .iter()
            .map(convert)
            .collect::<Result<_, _>>()?,
        initializer,
        input: g.input.iter().map(convert).collect::<Result<_, _>>()?,
        output: g.output.iter().map(convert).collect::<Result<_, _>>()?,
        ..Default::default()
    };
    let proto = pb::ModelProto {
        ir_version: model.proto.ir_version,
        opset_import: model
            .proto
            .opset_import
            .iter()
            .map(convert)
            .collect::<Result<_, _>>()?,
        graph: Some(graph),
        ..Default::default()
    };
    Ok((proto, stored.total()))
}

/// Every tensor name a subgraph's nodes read, at any depth: their outer references.
fn names_in<'a>(g: &'a crate::onnx::proto::GraphProto, out: &mut rustc_hash::FxHashSet<&'a str>) {
    for n in &g.node {
        out.extend(n.input.iter().map(String::as_str));
        for a in &n.attribute {
            for sub in a.subgraphs() {
                names_in(sub, out);
            }
        }
    }
}

/// `node `name` (Op): ` for the node a typing error is about, from tract's
/// context (`Translating node #9 "name" Op ...`), or nothing.
fn node_of(e: &TractError) -> String {
    e.chain()
        .filter_map(|c| {
            let c = c.to_string();
            let rest = c
                .strip_prefix("Translating node ")
                .or_else(|| c.strip_prefix("Failed analyse for node "))?
                .to_string();
            let (_, rest) = rest.split_once('"')?;
            let (name, rest) = rest.split_once('"')?;
            // A node the probe wrote itself means nothing to the user.
            if name.starts_with(PREFIX) {
                return None;
            }
            let op = rest.split_whitespace().next().unwrap_or("");
            Some(format!("{}: ", budget::node_named(name, op)))
        })
        .last()
        .unwrap_or_default()
}

/// The innermost cause of a tract error, on one line.
fn cause(e: &TractError) -> String {
    first_line(&e.root_cause().to_string())
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line.to_string()
    }
}

/// A progress bar on stderr, shown only when a terminal is watching and the
/// run has already taken a second.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
    shown: std::cell::Cell<bool>,
}

impl Progress {
    /// `template` is indicatif's, for example `probing {bar:30} {pos}/{len} nodes, {elapsed}`.
    pub(super) fn new(enabled: bool, steps: u64, template: &str) -> Progress {
        Progress {
            bar: enabled.then(|| {
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(steps),
                    indicatif::ProgressDrawTarget::hidden(),
                );
                if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                    bar.set_style(style);
                }
                bar
            }),
            start: Instant::now(),
            shown: std::cell::Cell::new(false),
        }
    }

    /// The text of `{msg}` in the template.
    pub(super) fn message(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    pub(super) fn step(&self) {
        let Some(bar) = &self.bar else { return };
        bar.inc(1);
        if !self.shown.get() && self.start.elapsed() > Duration::from_secs(1) {
            self.shown.set(true);
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
