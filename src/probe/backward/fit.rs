//! Fitting one batch: Adam steps on the probe's synthesized batch, the
//! checklist's first sanity check ("overfit a few points").
//!
//! The graph is the one the backward pass runs (the same lowering: Dropout
//! at its expectation, random ops at their median, BatchNorm on batch
//! statistics), so every step is deterministic. The loss is the one the
//! backward pass differentiates; a graph whose only target would be its
//! outputs' magnitude has nothing to fit.

use candle_core::{DType, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

use super::ops::c;
use super::{synthesized, Pass, Target};
use crate::graph::{Dim, Graph};
use crate::onnx::Model;
use crate::probe::engine::{Progress, Skip};
use crate::probe::inputs::Input;
use crate::probe::lower::Lowered;

/// The samples a batch is cut to when its size is the probe's choice.
pub const MAX_SAMPLES: usize = 16;
/// The fit gives up when its lowest loss has not fallen by [`MIN_GAIN`]
/// (relative) over this many steps: a plateau it will not leave.
pub const PATIENCE: usize = 50;
pub const MIN_GAIN: f64 = 0.01;

/// How the fit runs.
#[derive(Clone, Debug)]
pub struct FitOptions {
    pub steps: usize,
    /// Adam's learning rate; β = (0.9, 0.999), ε = 1e-8, no weight decay.
    pub lr: f64,
    /// The fit stops early below `max(fraction × start, floor)`.
    pub fraction: f64,
    pub floor: f64,
    pub progress: bool,
}

/// The loss along the fit.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Fit {
    /// The loss before each step: `losses[0]` at initialization, the last
    /// after the last step taken.
    pub losses: Vec<f64>,
    /// The steps asked for.
    pub steps: usize,
    pub lr: f64,
    pub samples: usize,
    #[serde(skip)]
    pub target: Target,
    /// The loss that counts as fitted: `max(fraction × start, floor)`.
    pub goal: f64,
    pub floor: f64,
}

impl Fit {
    pub fn start(&self) -> f64 {
        self.losses.first().copied().unwrap_or(f64::NAN)
    }

    pub fn end(&self) -> f64 {
        self.losses.last().copied().unwrap_or(f64::NAN)
    }

    /// The lowest finite loss along the way.
    pub fn lowest(&self) -> f64 {
        self.losses
            .iter()
            .copied()
            .filter(|l| l.is_finite())
            .fold(f64::INFINITY, f64::min)
    }

    /// Steps taken.
    pub fn taken(&self) -> usize {
        self.losses.len().saturating_sub(1)
    }

    /// Whether the fit stopped on a plateau: no progress of [`MIN_GAIN`]
    /// over the last [`PATIENCE`] steps.
    pub fn stalled(&self) -> bool {
        plateau(&self.losses)
    }

    /// The first step whose loss is not finite.
    pub fn diverged(&self) -> Option<usize> {
        self.losses.iter().position(|l| !l.is_finite())
    }

    pub fn fitted(&self) -> bool {
        self.lowest() < self.goal
    }
}

/// Fits the batch; `None` when the graph has nothing to fit: no trainable
/// tensor, or no loss and no classifier head.
pub fn run(
    model: &Model,
    graph: &Graph<'_>,
    lowered: &Lowered,
    batch: &[Input],
    seed: u64,
    options: &FitOptions,
) -> Result<Option<Fit>, Skip> {
    let pass = Pass::new(model, graph, lowered, DType::F32)?;
    if pass.params.is_empty() {
        return Ok(None);
    }
    let mut values = synthesized(batch, seed, DType::F32)?;
    let mut samples = crate::probe::inputs::batch_size(batch);
    if samples > MAX_SAMPLES && batch_is_free(graph, batch, samples) {
        for (_, t) in &mut values {
            *t = t.narrow(0, 0, MAX_SAMPLES).map_err(|e| Skip::from(c(e)))?;
        }
        samples = MAX_SAMPLES;
    }
    let vars = pass.params.iter().map(|p| p.var.clone()).collect();
    let mut adam = AdamW::new(
        vars,
        ParamsAdamW {
            lr: options.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )
    .map_err(|e| Skip::from(c(e)))?;
    let progress = Progress::new(
        options.progress,
        options.steps as u64,
        "fitting one batch {bar:30} {pos}/{len} steps, loss {msg}, {elapsed}",
    );
    let mut fit = Fit {
        losses: Vec::with_capacity(options.steps + 1),
        steps: options.steps,
        lr: options.lr,
        samples,
        target: Target::Loss,
        goal: f64::NAN,
        floor: options.floor,
    };
    for step in 0..=options.steps {
        let env = pass.forward(&values, false, &[])?;
        let (loss, target) = pass.loss(&env)?;
        if target == Target::Outputs {
            return Ok(None);
        }
        let value = loss
            .to_dtype(DType::F64)
            .and_then(|l| l.to_scalar::<f64>())
            .map_err(|e| Skip::from(c(e)))?;
        if step == 0 {
            fit.target = target;
            fit.goal = (options.fraction * value).max(options.floor);
        }
        fit.losses.push(value);
        if !value.is_finite() || value < fit.goal || step == options.steps || plateau(&fit.losses) {
            break;
        }
        step_once(&mut adam, &loss)?;
        progress.message(format!("{value:.3}"));
        progress.step();
    }
    progress.finish();
    Ok(Some(fit))
}

/// The lowest of `losses` is not [`MIN_GAIN`] below the lowest of all but
/// the last [`PATIENCE`].
fn plateau(losses: &[f64]) -> bool {
    if losses.len() <= PATIENCE {
        return false;
    }
    let lowest = |l: &[f64]| l.iter().copied().fold(f64::INFINITY, f64::min);
    let before = lowest(&losses[..losses.len() - PATIENCE]);
    lowest(losses) > before * (1.0 - MIN_GAIN)
}

fn step_once(adam: &mut AdamW, loss: &Tensor) -> Result<(), Skip> {
    let grads = loss
        .backward()
        .map_err(|e| Skip::from(format!("the backward pass failed: {}", c(e))))?;
    adam.step(&grads).map_err(|e| Skip::from(c(e)))
}

/// Whether the batch size is the probe's choice: every input of `samples`
/// rows has a symbolic leading dimension, so a smaller batch is as valid.
fn batch_is_free(graph: &Graph<'_>, batch: &[Input], samples: usize) -> bool {
    batch
        .iter()
        .filter(|i| i.shape.first() == Some(&samples))
        .all(|i| {
            !i.is_file()
                && graph
                    .shape(&i.name)
                    .and_then(|s| s.first())
                    .is_some_and(|d| !matches!(d, Dim::Known(_)))
        })
}
