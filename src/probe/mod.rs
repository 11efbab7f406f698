//! Probes: one seeded forward pass that measures what the graph alone cannot show.
//!
//! [`lower`] rewrites the training ops tract cannot run and makes every
//! BatchNorm normalize with batch statistics, [`inputs`] synthesizes the
//! inputs, [`engine`] runs the graph with tract while [`observe`] summarizes
//! each value as it is computed. Probe rules then read the [`Probe`].

pub mod backward;
pub mod budget;
pub mod engine;
pub mod inputs;
pub mod lower;
pub mod memory;
pub mod mixing;
pub mod normalize;
pub mod observe;
pub mod rectify;
pub mod segment;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rustc_hash::FxHashMap;

use crate::graph::{Form, Graph, NodeId, NodeRef};
use crate::onnx::Model;
pub use backward::fit::Fit;
pub use backward::{Gradients, ParamGrad, Target};
pub use engine::{Run, Skip};
pub use inputs::{Fill, Input};
pub use mixing::{Measured, Mixing};
pub use observe::{Head, Summary, UnitAxis, Units, Watch};

/// What the probe does; the command line's `--no-probe`, `--seed`, `--dim`, `--input`.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub enabled: bool,
    /// Run the backward pass too, for the rules that read gradients (`--no-grad`).
    pub gradients: bool,
    pub seed: u64,
    pub dims: BTreeMap<String, usize>,
    pub files: BTreeMap<String, PathBuf>,
    /// The value of a dynamic batch dimension, before the memory budget caps it.
    pub batch: usize,
    /// MiB the forward pass's values may take.
    pub memory_mib: usize,
    /// Seconds the probe's passes may take together, by estimate
    /// (`--probe-time`): the forward pass, the backward pass and the
    /// one-batch fit, each estimated before it runs.
    pub seconds: f64,
    pub progress: bool,
    /// Adam steps on one batch (`--overfit-steps`): `None` for the default
    /// number when its estimated time fits the budget, `Some(0)` for none,
    /// `Some(n)` for `n` whatever the budget.
    pub fit_steps: Option<usize>,
    /// The first optimizer step to predict (`--lr`, `--optimizer`).
    pub first_step: Option<FirstStep>,
    /// Nodes tract reads at once; a longer graph is read in pieces
    /// ([`segment::NODES`] unless a test asks for smaller ones).
    pub piece_nodes: usize,
}

/// The optimizer and learning rate of a predicted first step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FirstStep {
    pub optimizer: Optimizer,
    pub lr: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Adam,
}

impl Optimizer {
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Sgd => "SGD",
            Optimizer::Adam => "Adam",
        }
    }
}

/// The probe's parameters that rules own ([`Rule::tune`](crate::rules::Rule::tune)).
#[derive(Clone, Copy, Debug, Default)]
pub struct Plan {
    /// The pre-activation magnitude past which a Sigmoid or Tanh value counts
    /// as saturated; `None` counts none.
    pub saturation: Option<f32>,
    /// The one-batch fit, when a rule plans one (it runs when one asks for
    /// [`Backward::Fit`]).
    pub fit: Option<FitPlan>,
}

/// A pass of the probe that did not run, or stopped short: what the rules'
/// [`Rule::skipped`](crate::rules::Rule::skipped) report.
pub enum Skipped<'a> {
    /// The forward pass, and so everything.
    Probe(&'a Skip),
    /// The backward pass, after a forward pass that ran.
    Backward(&'a Skip),
    /// The one-batch fit, after a backward pass that ran.
    Fit(&'a Skip),
    /// A fit its time budget of `budget` seconds cut at fewer than the
    /// `asked` steps, before it fitted or failed.
    FitCut {
        fit: &'a Fit,
        asked: usize,
        budget: f64,
    },
}

/// What decides the one-batch fit: its steps and learning rate by default,
/// the loss that counts as fitted, and the time it may take when not forced
/// (`cannot-overfit`'s options).
#[derive(Clone, Copy, Debug)]
pub struct FitPlan {
    pub steps: usize,
    pub lr: f64,
    /// Fitted below `fraction` of the starting loss ...
    pub fraction: f64,
    /// ... or below `floor × ln C` for `C` classes.
    pub floor: f64,
    /// Estimated seconds the default fit may take.
    pub budget: f64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            enabled: true,
            gradients: true,
            seed: 0,
            dims: BTreeMap::new(),
            files: BTreeMap::new(),
            batch: 64,
            memory_mib: 2048,
            seconds: 20.0,
            progress: false,
            fit_steps: None,
            first_step: None,
            piece_nodes: segment::NODES,
        }
    }
}

/// `|x|` above which a sigmoid or tanh unit counts as saturated, unless configured.
pub const SATURATION: f32 = 5.0;

/// What the forward pass measured.
#[derive(Debug)]
pub struct Probe {
    pub run: Run,
    pub seed: u64,
    /// BatchNorm nodes, and layers with a folded BatchNorm, normalized with
    /// batch statistics.
    pub batch_norms: usize,
    pub folded_norms: usize,
    /// What the backward pass measured, or why it did not run; `None` when
    /// no selected rule reads gradients.
    pub gradients: Option<Result<Gradients, Skip>>,
    /// Batch mixing measured by two forward passes where the backward pass
    /// did not run ([`mixing::forward`]): `Ok(None)` when no other sample
    /// moved, or why it was not measured; `None` when the backward pass ran
    /// or was not asked for.
    pub mixing: Option<Result<Option<Mixing>, Skip>>,
    /// The one-batch fit, or why it did not run; `None` when no selected
    /// rule reads it, the backward pass did not run, `--overfit-steps 0`,
    /// or the graph has nothing to fit.
    pub fit: Option<Result<Fit, Skip>>,
    /// The first optimizer step to predict from the gradients (`--lr`).
    pub first_step: Option<FirstStep>,
    /// Nodes downstream of a weight layer whose weights all hold one value.
    constant_downstream: std::sync::OnceLock<rustc_hash::FxHashSet<NodeId>>,
}

impl Probe {
    /// Whether a weight layer whose weights all hold one value lies upstream
    /// of `n`. What the probe measures behind it (identical units, a spread
    /// set by the fill value) follows from that, and `constant-weights`
    /// reports it once.
    pub fn after_constant_weights(&self, graph: &Graph<'_>, n: &NodeRef<'_, '_>) -> bool {
        self.constant_downstream
            .get_or_init(|| {
                let mut seen = rustc_hash::FxHashSet::default();
                let mut stack: Vec<NodeId> = graph
                    .weight_layers()
                    .filter(|l| {
                        graph
                            .stats(l.weight_name)
                            .is_some_and(|s| s.all_equal && s.count > 1)
                    })
                    .map(|l| l.node)
                    .collect();
                while let Some(id) = stack.pop() {
                    if !seen.insert(id) {
                        continue;
                    }
                    for o in graph.node(id).outputs() {
                        stack.extend(graph.consumers(o).iter().map(|(c, _)| c.id()));
                    }
                }
                seen
            })
            .contains(&n.id())
    }

    pub fn summary(&self, tensor: &str) -> Option<&Summary> {
        self.run.summaries.get(tensor)
    }

    /// The batch: the leading dimension of the first input.
    pub fn batch(&self) -> usize {
        inputs::batch_size(&self.run.inputs)
    }

    /// Where in the computation a tensor was produced (for "first" questions).
    pub fn position(&self, tensor: &str) -> Option<usize> {
        self.run.position(tensor)
    }
}

/// What the rules that read gradients need from the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Backward {
    /// The loss's gradient for each trainable tensor.
    Params,
    /// Sample 0's output against every sample's input.
    Mixing,
    /// Adam steps on the batch, for the loss along them.
    Fit,
}

/// Runs the probe on the main graph with the rules' `plan`; the backward
/// pass too when `backward` names what to measure.
pub fn run(
    model: &Model,
    graph: &Graph<'_>,
    options: &ProbeOptions,
    plan: &Plan,
    backward: &[Backward],
) -> Result<Probe, Skip> {
    if !graph.problems().is_empty() {
        return Err("the graph is not valid (see `invalid-graph`)".into());
    }
    let lowered = lower::lower(graph)?;
    let (batch_norms, folded_norms) = (lowered.batch_norms, lowered.folded_norms);
    // Reading and typing the graph comes first.
    let typing_seconds = typing_seconds(graph, &lowered, options);
    if typing_seconds > options.seconds {
        return Err(format!(
            "preparing the forward pass of {} nodes would take about {}, over the probe's time budget of {} s; `--probe-time {:.0}` runs it",
            lowered.nodes.len(),
            engine::secs(typing_seconds),
            options.seconds,
            typing_seconds.ceil() + 1.0
        )
        .into());
    }
    let watch = watch_plan(graph, plan.saturation);
    let run_options = run_options(options, typing_seconds);
    let run = engine::run(model, graph, &lowered, &watch, &run_options).map_err(|mut e| {
        // A pass on shapes the probe guessed may fail for the guess: say which.
        let guessed = inputs::guessed(graph, &run_options.inputs);
        if !guessed.is_empty() && !e.reason.starts_with("tract has no") {
            e.reason = format!("{}; the probe sized {}", e.reason, guessed.join(", "));
        }
        e
    })?;
    drop(lowered);
    // What the backward pass and the fit hold for the weights, read once,
    // and only when they run.
    let weights = (options.gradients && !backward.is_empty()).then(|| WeightSizes::of(graph));
    let weight_bytes = weights.as_ref().map_or(0, WeightSizes::bytes);
    memory::give_back(weight_bytes);
    let gradients = weights.as_ref().map(|weights| {
        let grad = backward::GradOptions {
            params: backward.contains(&Backward::Params) || backward.contains(&Backward::Fit),
            mixing: backward.contains(&Backward::Mixing),
            ..Default::default()
        };
        backward_pass(model, graph, &run, options, &grad, weights)
    });
    // Without the backward pass, two forward passes measure batch mixing.
    let mixing = match &gradients {
        Some(Err(_)) if backward.contains(&Backward::Mixing) => {
            Some(mixing::forward(model, graph, &run, options))
        }
        _ => None,
    };
    memory::give_back(weight_bytes);
    let fit = match (&gradients, &weights, &plan.fit) {
        (Some(Ok(g)), Some(weights), Some(fit)) if backward.contains(&Backward::Fit) => {
            fit_pass(model, graph, &run, options, fit, g, weights).transpose()
        }
        _ => None,
    };
    Ok(Probe {
        run,
        seed: options.seed,
        batch_norms,
        folded_norms,
        gradients,
        mixing,
        fit,
        first_step: options.first_step,
        constant_downstream: Default::default(),
    })
}

/// The estimated seconds tract takes to read and type `lowered`: in pieces
/// it is linear in the graph; a graph that cannot be cut (a subgraph) is
/// typed whole, with the square of its size.
fn typing_seconds(graph: &Graph<'_>, lowered: &lower::Lowered, options: &ProbeOptions) -> f64 {
    engine::typing_seconds(
        lowered.nodes.len() + graph.initializers().len(),
        segment::pieces(&lowered.nodes, options.piece_nodes),
    )
}

/// How a forward pass runs under `options`.
fn run_options(options: &ProbeOptions, typing_seconds: f64) -> engine::RunOptions {
    engine::RunOptions {
        inputs: inputs::InputOptions {
            seed: options.seed,
            dims: options.dims.clone(),
            files: options.files.clone(),
            batch: options.batch.max(1),
        },
        budget: options.memory_mib.saturating_mul(1 << 20),
        seconds: options.seconds,
        typing_seconds,
        progress: options.progress,
        piece_nodes: options.piece_nodes,
    }
}

/// The rates of one fitting step (forward, backward and Adam) on 2 cores:
/// multiply-accumulates per second of matrix products (one gemm call each)
/// and of convolutions (unfolded, then a product per sample and group),
/// the per-group products per second a convolution makes (a depthwise one
/// makes one per channel, each small), values per second of every other
/// node, the time each node of the lowered graph costs a step whatever its
/// size (candle's dispatch, the gradient store), and Adam's time per
/// weight. Fitted to the seconds per step of 29 models of the
/// real-architecture corpus (`benches/real_architectures.py`, 2 cores),
/// each timed as `(t(10 steps) - t(2 steps)) / 8` at a learning rate of
/// 1e-12 so that none stops early, so that every estimate is 1.3 to 3.5
/// times the measured step: ResNet-50 0.59 s (estimated 1.00), DenseNet-121
/// 0.54 (0.77), ConvNeXt-T 0.45 (1.02), EfficientNet-B0 0.25 (0.72),
/// Swin-T 0.58 (1.41), GPT-2 small 1.11 (1.91), BERT-base 0.49 (1.28),
/// with [`FIT_SECONDS_PER_LARGEST`].
/// The time per node stays at 5e-5 s: the corpus cannot tell it from the
/// values' rate, and a smaller one would let deep narrow graphs through
/// on the strength of that fit alone (a 20 000-node Gemm chain takes 0.02 s
/// a step, far under it).
const FIT_MATMUL_MACS_PER_SECOND: f64 = 1.5e10;
const FIT_CONV_MACS_PER_SECOND: f64 = 5.0e9;
const FIT_CONV_PRODUCTS_PER_SECOND: f64 = 2.0e5;
const FIT_VALUES_PER_SECOND: f64 = 2.5e8;
const FIT_SECONDS_PER_NODE: f64 = 5e-5;
const FIT_SECONDS_PER_WEIGHT: f64 = 5e-9;
/// ... and per value of the largest weight, which the corpus above cannot
/// show: the fresh pages of its gradient and of candle's transposed copies,
/// and Adam's pass over it. VGG-11, whose 25088 x 4096 layer holds 103 M of
/// its 133 M weights, takes 2.0 s a step, measured as above with
/// `--probe-memory 8192`; without this term it is estimated at 1.15 s.
const FIT_SECONDS_PER_LARGEST: f64 = 1e-8;

/// The fewest steps the budget may cut the default fit to: most healthy
/// models of the real-architecture corpus fit their batch in 2 to 11 steps.
const FIT_MIN_STEPS: usize = 8;

/// The one-batch fit: the default steps, or as many of them as the
/// estimated time affords within the budget (at least [`FIT_MIN_STEPS`]),
/// or as many as `--overfit-steps` asks for.
fn fit_pass(
    model: &Model,
    graph: &Graph<'_>,
    run: &Run,
    options: &ProbeOptions,
    plan: &FitPlan,
    gradients: &Gradients,
    weights: &WeightSizes,
) -> Result<Option<Fit>, Skip> {
    // The time the passes before it left, and the memory the backward pass holds.
    let left = options.seconds - run.seconds - gradients.seconds;
    let asked = options.fit_steps.unwrap_or(plan.steps);
    if asked == 0 {
        return Ok(None);
    }
    let samples = inputs::batch_size(&run.inputs);
    // The estimate is computed from shapes, not timed: the same model gives
    // the same decision on any machine and under any load.
    let lowered = lower::lower_for_gradients(graph)?;
    // The fit cuts a batch whose size is the probe's choice; a fixed one runs whole.
    let scale = if backward::fit::batch_is_free(graph, &run.inputs, samples) {
        backward::fit::MAX_SAMPLES.min(samples) as f64 / samples.max(1) as f64
    } else {
        1.0
    };
    let per_step = step_seconds(graph, run, FIT_CONV_MACS_PER_SECOND) * scale
        + lowered.nodes.len() as f64 * FIT_SECONDS_PER_NODE
        + weights.total as f64 * FIT_SECONDS_PER_WEIGHT
        + weights.largest as f64 * FIT_SECONDS_PER_LARGEST;
    let need = gradients.bytes.saturating_add(weights.fit_bytes());
    let budget = options.memory_mib.saturating_mul(1 << 20);
    if options.fit_steps.is_none() && need > budget {
        return Err(format!(
            "{}; `--overfit-steps {asked}` runs it",
            over_memory(need, budget)
        )
        .into());
    }
    let steps = match options.fit_steps {
        Some(steps) => steps,
        None => {
            let affordable = |seconds: f64| (seconds / per_step).floor().max(0.0) as usize;
            let least = FIT_MIN_STEPS.min(asked);
            let least_seconds = per_step * least as f64;
            if affordable(plan.budget) < least {
                return Err(format!(
                    "even {least} of its {asked} steps would take about {}, over the budget of {} s; `--overfit-steps {asked}` runs them",
                    engine::secs(least_seconds),
                    plan.budget
                )
                .into());
            }
            if affordable(left) < least {
                return Err(format!(
                    "even {least} of its {asked} steps would take about {}, over the {} the earlier passes left of the probe's time budget of {} s; `--overfit-steps {asked}` runs them",
                    engine::secs(least_seconds),
                    engine::secs(left.max(0.0)),
                    options.seconds
                )
                .into());
            }
            asked.min(affordable(plan.budget.min(left)))
        }
    };
    let floor = classes(graph).map_or(0.0, |c| plan.floor * (c.max(2) as f64).ln());
    let fit = backward::fit::FitOptions {
        steps,
        cut_from: (steps < asked).then_some(asked),
        lr: plan.lr,
        fraction: plan.fraction,
        floor,
        progress: options.progress,
    };
    engine::guarded_deep(lowered.nodes.len(), || {
        backward::fit::run(model, graph, &lowered, &run.inputs, options.seed, &fit)
    })
}

/// The seconds of one fitting step's work: three times the forward pass's
/// (the backward pass computes two products per product), counting the
/// products of convolutions (at `conv_rate`) and matrix products at their rates, the
/// per-group products of convolutions, and one value of every other node at
/// [`FIT_VALUES_PER_SECOND`].
fn step_seconds(graph: &Graph<'_>, run: &Run, conv_rate: f64) -> f64 {
    let shape = |t: &str| -> Option<Vec<usize>> {
        if let Some(s) = run.summaries.get(t) {
            return Some(s.shape.clone());
        }
        graph
            .shape(t)?
            .iter()
            .map(|d| match d {
                crate::graph::Dim::Known(n) => usize::try_from(*n).ok(),
                _ => None,
            })
            .collect()
    };
    let elems = |s: &[usize]| s.iter().map(|&d| d as f64).product::<f64>();
    let mut seconds = 0.0;
    for n in graph.nodes() {
        let Some(out) = n.output(0).and_then(|o| run.summaries.get(o)) else {
            continue;
        };
        let outputs = elems(&out.shape);
        // The products per output value, and the rate they run at.
        let (per_output, rate) = match n.op_type() {
            // The weight's elements per output channel: its shape, or the
            // input's channels per group times the kernel.
            "Conv" => (
                match n.input(1).and_then(shape) {
                    Some(w) => elems(w.get(1..).unwrap_or(&[])),
                    None => {
                        let channels = n
                            .input(0)
                            .and_then(shape)
                            .and_then(|s| s.get(1).copied())
                            .unwrap_or(1);
                        let group = n.attr_i64("group").unwrap_or(1).max(1) as f64;
                        let kernel = n
                            .attr("kernel_shape")
                            .and_then(|a| a.ints())
                            .map_or(1.0, |k| k.iter().map(|&d| d.max(1) as f64).product::<f64>());
                        channels as f64 / group * kernel
                    }
                },
                conv_rate,
            ),
            "ConvTranspose" => (
                n.input(1).and_then(shape).map_or(1.0, |w| {
                    elems(w.get(2..).unwrap_or(&[])) * w.first().copied().unwrap_or(1) as f64
                        / w.get(1).copied().unwrap_or(1).max(1) as f64
                }),
                conv_rate,
            ),
            // The contracted dimension.
            "MatMul" | "Gemm" => (
                n.input(0)
                    .and_then(shape)
                    .and_then(|a| {
                        let trans = n.is("Gemm") && n.attr_i64("transA").unwrap_or(0) != 0;
                        if trans {
                            a.first().copied()
                        } else {
                            a.last().copied()
                        }
                    })
                    .map_or(1.0, |k| k as f64),
                FIT_MATMUL_MACS_PER_SECOND,
            ),
            _ => (1.0, FIT_VALUES_PER_SECOND),
        };
        seconds += outputs * per_output / rate;
        if n.is("Conv") {
            // A product per sample and group, in each of the three passes.
            let samples = out.shape.first().copied().unwrap_or(1) as f64;
            let groups = n.attr_i64("group").unwrap_or(1).max(1) as f64;
            seconds += samples * groups / FIT_CONV_PRODUCTS_PER_SECOND;
        }
    }
    3.0 * seconds
}

/// Bytes of the largest input a convolution unfolds (`im2col`) at the run's
/// batch: the backward pass's convolution holds those columns and their
/// gradient while it computes one layer (`backward/conv.rs`), one layer at a
/// time.
fn conv_columns(graph: &Graph<'_>, run: &Run) -> usize {
    let known = |d: &crate::graph::Dim| match d {
        crate::graph::Dim::Known(n) => usize::try_from(*n).ok(),
        _ => None,
    };
    graph
        .nodes_of("Conv")
        .filter_map(|n| {
            let input = &run.summaries.get(n.input(0)?)?.shape;
            let output = &run.summaries.get(n.output(0)?)?.shape;
            let kernel = graph.shape(n.input(1)?)?;
            let window: usize = kernel
                .get(2..)?
                .iter()
                .map(known)
                .product::<Option<usize>>()?;
            let positions: usize = output.get(2..)?.iter().product();
            let (batch, channels) = (*input.first()?, *input.get(1)?);
            Some(
                batch
                    .saturating_mul(channels)
                    .saturating_mul(window)
                    .saturating_mul(positions)
                    .saturating_mul(std::mem::size_of::<f32>()),
            )
        })
        .max()
        .unwrap_or(0)
}

/// The classes of the graph's loss or head: the class axis of a
/// cross-entropy's scores, 2 for binary cross-entropy, the last axis of a head.
fn classes(graph: &Graph<'_>) -> Option<usize> {
    let known = |t: &str, axis: Option<usize>| -> Option<usize> {
        let s = graph.shape(t)?;
        let d = match axis {
            Some(a) => s.get(a)?,
            None => s.last()?,
        };
        match d {
            crate::graph::Dim::Known(c) => usize::try_from(*c).ok(),
            _ => None,
        }
    };
    if let Some(term) = graph
        .loss()
        .data_terms()
        .find(|t| t.form.is_classification())
    {
        return match term.form {
            Form::BinaryCrossEntropy => Some(2),
            _ => term
                .scores
                .and_then(|t| known(graph.tensor_name(t), Some(1))),
        };
    }
    heads(graph).first().and_then(|(t, _)| known(t, None))
}

/// The fewest samples the backward pass is cut to when the budget cannot
/// hold the batch: batch mixing compares two.
const MIN_GRADIENT_SAMPLES: usize = 2;

/// Bytes the backward pass takes per byte of the forward pass's values:
/// candle keeps every value and the intermediates of the ops written out for
/// it, and each gets a gradient. Measured: 3.97 GB peak on ResNet-50 at
/// batch 8, whose forward values take 812 MB (`/usr/bin/time -f %M`).
const BACKWARD_MEMORY_FACTOR: usize = 5;
/// ... and per byte of weights: the weights and their gradients. The
/// engine's variables are made from the values read, with no second copy,
/// and the file's pages are given back once read (`backward::read_var`).
const BACKWARD_WEIGHT_FACTOR: usize = 2;
/// ... and per byte of the largest weight, for the temporaries of its size
/// that candle allocates at once (its gradient, and the zero tensor candle
/// sums the first gradient into), and the seconds per value they take
/// (fresh pages, cleared by the kernel). Measured with `/usr/bin/time -f
/// %M`, `--overfit-steps 0` against `--no-grad`, both budgets lifted:
/// VGG-11, whose 25088 x 4096 layer holds 103 of its 133 M weights, peaks
/// at 1.69 GB against 1.31 GB and takes 1.6 s more (the backward pass
/// reaches 1.65 GB resident, of which 0.53 GB are the weights and 0.53 GB
/// their gradients); GPT-2 small (a tied 50257 x 768 embedding, a batch
/// of 2) peaks at 2.70 GB against 0.89 GB and takes 2.7 s more, most of
/// it its values'.
const BACKWARD_LARGEST_FACTOR: usize = 2;
const BACKWARD_SECONDS_PER_LARGEST: f64 = 2e-8;
/// The convolutions' rate in the backward pass's estimate, twice the fit's:
/// the fit multiplies an underestimate by its 200 steps and keeps every
/// estimate over 1.3 times the measured step, where the backward pass runs
/// once. Measured as `t(--overfit-steps 0) - t(--no-grad)` (whole runs,
/// forced past both budgets, 2 cores) on 36 models of the real-architecture
/// corpus and ResNet-50 at batch 8 and 224 x 224: estimates from 0.54 times
/// the measured pass (PoolFormer-S12, whose pooling and group norms the
/// values' rate undercounts) to 4.0 (EfficientNet-B0, its depthwise
/// products); ResNet-50 at batch 8 is 2.4 (9.5 s measured), where the
/// fit's rate put it at 4.5.
const BACKWARD_CONV_MACS_PER_SECOND: f64 = 1.0e10;
/// A fitting step's own: Adam's two moments per weight, which it updates in
/// place (`backward/adam.rs`), and a contiguous copy of a gradient that
/// candle leaves transposed (a tied embedding's), at most the largest
/// weight's size. Measured with `/usr/bin/time -f %M`, 4 steps against
/// `--overfit-steps 0`: ResNet-50 adds 210 MiB for its 25.5 M weights,
/// ViT-S 195 MiB for 21.9 M.
const FIT_WEIGHT_FACTOR: usize = 2;
const FIT_LARGEST_FACTOR: usize = 1;

/// A pass's estimated bytes over the memory budget, in words.
fn over_memory(need: usize, budget: usize) -> String {
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    format!(
        "it needs about {:.0} MiB, over the probe's budget of {:.0} MiB (--probe-memory)",
        mib(need),
        mib(budget)
    )
}

/// The elements of the trainable tensors, and of the weights of layers
/// that a `ConstantOfShape` computes (model-zoo graphs without weights
/// spell them so): in all, and of the largest.
struct WeightSizes {
    total: usize,
    largest: usize,
}

impl WeightSizes {
    fn of(graph: &Graph<'_>) -> WeightSizes {
        let trainable = graph.trainable();
        let mut counted: rustc_hash::FxHashSet<crate::graph::TensorId> =
            trainable.iter().map(|t| t.tensor).collect();
        let sizes = trainable
            .iter()
            .filter_map(|t| graph.stored_of(t.tensor))
            .chain(
                graph
                    .weight_layers()
                    .filter(|l| counted.insert(l.weight_id))
                    .map(|l| l.weight.clone()),
            )
            .map(|s| s.len().unwrap_or(usize::MAX));
        let (mut total, mut largest) = (0usize, 0usize);
        for n in sizes {
            total = total.saturating_add(n);
            largest = largest.max(n);
        }
        WeightSizes { total, largest }
    }

    /// Bytes of the weights themselves, in float32.
    fn bytes(&self) -> usize {
        self.total.saturating_mul(std::mem::size_of::<f32>())
    }

    /// Bytes the backward pass holds for the weights.
    fn backward_bytes(&self) -> usize {
        let f32 = std::mem::size_of::<f32>();
        self.total
            .saturating_mul(f32 * BACKWARD_WEIGHT_FACTOR)
            .saturating_add(self.largest.saturating_mul(f32 * BACKWARD_LARGEST_FACTOR))
    }

    /// Bytes a fitting step holds beyond the backward pass's.
    fn fit_bytes(&self) -> usize {
        let f32 = std::mem::size_of::<f32>();
        self.total
            .saturating_mul(f32 * FIT_WEIGHT_FACTOR)
            .saturating_add(self.largest.saturating_mul(f32 * FIT_LARGEST_FACTOR))
    }
}

/// The backward pass on the forward pass's batch, when it fits the budget.
fn backward_pass(
    model: &Model,
    graph: &Graph<'_>,
    run: &Run,
    options: &ProbeOptions,
    grad: &backward::GradOptions,
    weights: &WeightSizes,
) -> Result<Gradients, Skip> {
    let lowered = lower::lower_for_gradients(graph)?;
    let mut grad = grad.clone();
    // The forward pass's shapes may already prove that samples stay apart.
    if grad.mixing && backward::proven_per_sample(graph, &lowered, run) {
        grad.mixing = false;
    }
    if !grad.params && !grad.mixing {
        return Ok(Gradients {
            batch: inputs::batch_size(&run.inputs),
            ..Default::default()
        });
    }
    // The estimate's terms: some grow with the samples (the values that
    // lead with the batch, the convolutions' columns, the products), the
    // rest do not (the weights, the nodes).
    let batch = inputs::batch_size(&run.inputs);
    let (batched, other) = run.summaries.values().fold((0usize, 0usize), |(b, o), s| {
        let n = s.shape.iter().product::<usize>();
        if s.shape.first() == Some(&batch) {
            (b.saturating_add(n), o)
        } else {
            (b, o.saturating_add(n))
        }
    });
    let per_value = std::mem::size_of::<f32>() * BACKWARD_MEMORY_FACTOR;
    let fixed = other
        .saturating_mul(per_value)
        .saturating_add(weights.backward_bytes());
    let per_batch = batched
        .saturating_mul(per_value)
        .saturating_add(conv_columns(graph, run).saturating_mul(2));
    let need = |k: usize| {
        fixed.saturating_add((per_batch as f64 * k as f64 / batch.max(1) as f64) as usize)
    };
    // One step of the fit's cost: a forward and a backward pass, and a second
    // backward for batch mixing.
    let passes = if grad.params && grad.mixing { 2.0 } else { 1.0 };
    let products = step_seconds(graph, run, BACKWARD_CONV_MACS_PER_SECOND);
    let seconds = |k: usize| {
        passes
            * (products * k as f64 / batch.max(1) as f64
                + lowered.nodes.len() as f64 * FIT_SECONDS_PER_NODE
                + weights.largest as f64 * BACKWARD_SECONDS_PER_LARGEST)
    };
    let budget = options.memory_mib.saturating_mul(1 << 20);
    let left = options.seconds - run.seconds;
    let fits = |k: usize| need(k) <= budget && seconds(k) <= left;
    // Gradient scale and batch mixing need a few samples, not the batch: when
    // the batch is over the budget, the pass runs on as many of its first
    // samples as the budget holds, and at least two.
    let cut = run.inputs.iter().any(|i| i.shape.first() == Some(&batch));
    let samples = if fits(batch) || !cut || batch <= MIN_GRADIENT_SAMPLES {
        batch
    } else {
        (MIN_GRADIENT_SAMPLES..batch)
            .rev()
            .find(|&k| fits(k))
            .unwrap_or(MIN_GRADIENT_SAMPLES)
    };
    let on = if samples < batch {
        format!("on {samples} of the batch's {batch} samples ")
    } else {
        String::new()
    };
    if need(samples) > budget {
        return Err(format!("{on}{}", over_memory(need(samples), budget)).into());
    }
    // What would run the whole batch, should the cut fail.
    let whole = {
        let mut flags = Vec::new();
        if need(batch) > budget {
            flags.push(format!("--probe-memory {}", need(batch).div_ceil(1 << 20)));
        }
        if seconds(batch) > left {
            flags.push(format!(
                "--probe-time {:.0}",
                (options.seconds - left + seconds(batch)).ceil() + 1.0
            ));
        }
        flags.join(" ")
    };
    let seconds = seconds(samples);
    if seconds > left {
        return Err(format!(
            "{on}it would take about {}, over the {} the forward pass left of the probe's time budget of {} s; `--probe-time {:.0}` runs it",
            engine::secs(seconds),
            engine::secs(left),
            options.seconds,
            (options.seconds - left + seconds).ceil() + 1.0
        )
        .into());
    }
    grad.samples = (samples < batch).then_some(samples);
    engine::guarded_deep(lowered.nodes.len(), || {
        backward::run(model, graph, &lowered, &run.inputs, options.seed, &grad)
    })
    .map_err(|mut e| {
        if samples < batch {
            e.reason = format!(
                "{}: {}, where the graph fixes its batch of {batch} in a way the cut cannot follow; `{whole}` runs the whole batch",
                on.trim_end(),
                e.reason
            );
        }
        e
    })
    .map(|mut g| {
        // The time it took, and the bytes of the whole batch, which a fit
        // on a fixed batch runs on whatever the pass was cut to.
        g.seconds = seconds;
        g.bytes = need(batch);
        g
    })
}

/// Which tensors get per-unit counts or a head's cross-entropy.
fn watch_plan(graph: &Graph<'_>, saturation: Option<f32>) -> FxHashMap<String, Watch> {
    let mut watch: FxHashMap<String, Watch> = FxHashMap::default();
    for n in graph.nodes() {
        if !n.domain_is_default() {
            continue;
        }
        match n.op_type() {
            "Relu" => {
                if let Some(o) = n.output(0) {
                    let w = watch.entry(o.to_string()).or_default();
                    w.unit_axis = Some(unit_axis(graph, &n));
                    w.positive = true;
                }
            }
            "Sigmoid" | "Tanh" => {
                if let Some(i) = n.input(0) {
                    let w = watch.entry(i.to_string()).or_default();
                    w.unit_axis = Some(unit_axis(graph, &n));
                    w.saturation = saturation;
                }
            }
            _ => {}
        }
    }
    if !graph.loss().found() {
        for (tensor, head) in heads(graph) {
            watch.entry(tensor.to_string()).or_default().head = Some(head);
        }
    }
    watch
}

/// The axis whose entries are a tensor's units: channels (axis 1) behind a
/// convolution, features (the last axis) behind a dense layer.
fn unit_axis(graph: &Graph<'_>, n: &NodeRef<'_, '_>) -> UnitAxis {
    let mut t = n.input(0);
    for _ in 0..16 {
        let Some((p, _)) = t.and_then(|t| graph.producer(t)) else {
            break;
        };
        match p.op_type() {
            "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" => return UnitAxis::Channels,
            "Gemm" | "MatMul" | "Gather" | "Flatten" | "Reshape" => return UnitAxis::Features,
            _ => t = p.input(0),
        }
    }
    UnitAxis::Features
}

/// Graph outputs that are a classifier's head: softmax or log-softmax over the
/// last axis, or the logits of a weight layer with at least two classes.
pub fn heads<'m>(graph: &Graph<'m>) -> Vec<(&'m str, Head)> {
    let mut out = Vec::new();
    for &o in graph.outputs() {
        let Some((p, _)) = graph.producer(o) else {
            continue;
        };
        let rank = graph.shape(o).map(|s| s.len());
        let last_axis =
            |p: &NodeRef<'_, 'm>| rank.is_some_and(|r| graph.softmax_axis(p, r) == Some(r - 1));
        let softmax = graph.softmax(&p).filter(|_| last_axis(&p));
        let head = match p.op_type() {
            _ if softmax.is_some_and(|s| s.log) => Some(Head::LogProbabilities),
            _ if softmax.is_some() => Some(Head::Probabilities),
            "Gemm" | "MatMul" | "Add" if rank.is_some_and(|r| r >= 2) => {
                let layer = graph.weight_layer(p.id()).is_some()
                    || (p.is("Add")
                        && p.inputs().iter().any(|i| {
                            graph
                                .producer(i)
                                .is_some_and(|(q, _)| graph.weight_layer(q.id()).is_some())
                        }));
                let classes = graph.shape(o).and_then(|s| match s.last() {
                    Some(crate::graph::Dim::Known(c)) => Some(*c),
                    _ => None,
                });
                (layer && classes.is_some_and(|c| c >= 2)).then_some(Head::Logits)
            }
            _ => None,
        };
        if let Some(h) = head {
            out.push((o, h));
        }
    }
    out
}
