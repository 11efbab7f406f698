//! Fitting one batch: Adam steps on the probe's synthesized batch, the
//! checklist's first sanity check ("overfit a few points").
//!
//! The graph is the one the backward pass runs (the same lowering: Dropout
//! at its expectation, random ops at their median, BatchNorm on batch
//! statistics), so every step is deterministic. The loss is the one the
//! backward pass differentiates; a graph whose only target would be its
//! outputs' magnitude has nothing to fit.

use candle_core::{DType, Tensor};

use super::adam::Adam;
use super::ops::c;
use super::{narrowed, synthesized, Pass, Target};
use crate::graph::{Dim, Graph};
use crate::onnx::Model;
use crate::probe::engine::{Progress, Skip};
use crate::probe::inputs::Input;
use crate::probe::lower::Lowered;

/// The samples a batch is cut to when its size is the probe's choice: the
/// checklist's "one or two", and the fewest that train-mode BatchNorm can
/// normalize after global pooling.
pub const MAX_SAMPLES: usize = 2;
/// The fit gives up when its lowest loss has not fallen by [`MIN_GAIN`]
/// (relative) over this many steps: a plateau it will not leave.
pub const PATIENCE: usize = 50;
pub const MIN_GAIN: f64 = 0.01;
/// After a fit that was learning spiked and stalled, it starts again from
/// the initial weights at its learning rate divided by this ...
pub const RETRY_DIVISOR: f64 = 3.0;
/// ... and after one that stalled without a spike, divided by this: the
/// rate a user lowers first when a model will not fit (MobileBERT stalls
/// at lr 1e-2 on two of three batches in torch too, and fits at 1e-3 in
/// 11 or 12 steps).
pub const STALL_DIVISOR: f64 = 10.0;

/// How the fit runs.
#[derive(Clone, Debug)]
pub struct FitOptions {
    pub steps: usize,
    /// The steps asked for, when the budget cut them to `steps`.
    pub cut_from: Option<usize>,
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
    /// The steps allowed: those asked for, or fewer when the budget
    /// affords fewer (see [`Fit::cut_from`]).
    pub steps: usize,
    /// The steps asked for, when the budget cut them to `steps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_from: Option<usize>,
    /// Whether the fit ran all its steps without fitting, stalling or
    /// diverging: a loss still falling when they ran out.
    #[serde(skip)]
    pub ran_out: bool,
    pub lr: f64,
    pub samples: usize,
    #[serde(skip)]
    pub target: Target,
    /// The loss that counts as fitted: `max(fraction × start, floor)`.
    pub goal: f64,
    pub floor: f64,
    /// A first attempt that stalled (after a spike, or without one), at a
    /// higher learning rate: the fit then restarted from the initial weights
    /// (the losses above are the second attempt's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unstable: Option<Attempt>,
}

/// One attempt of the fit, given up.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Attempt {
    pub lr: f64,
    pub losses: Vec<f64>,
    /// Whether it was learning before it jumped and stalled; otherwise it
    /// stalled without a spike.
    #[serde(skip)]
    pub spiked: bool,
}

impl Attempt {
    /// The lowest finite loss along the attempt.
    pub fn lowest(&self) -> f64 {
        lowest_finite(&self.losses)
    }
}

/// The lowest finite value of `losses`, infinity when there is none.
fn lowest_finite(losses: &[f64]) -> f64 {
    losses
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f64::INFINITY, f64::min)
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
        lowest_finite(&self.losses)
    }

    /// The lowest finite loss of both attempts.
    pub fn lowest_of_all(&self) -> f64 {
        self.unstable
            .as_ref()
            .map_or(f64::INFINITY, Attempt::lowest)
            .min(self.lowest())
    }

    /// Steps taken by both attempts.
    pub fn taken_in_all(&self) -> usize {
        let first = self
            .unstable
            .as_ref()
            .map_or(0, |a| a.losses.len().saturating_sub(1));
        first + self.taken()
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

    /// Whether the fit says the model cannot fit: it diverged, or it failed
    /// at both rates (stalled at the first, then stalled or used every
    /// step asked for at the lower one). A fit the budget cut before that
    /// says nothing ([`Fit::cut_short`]): with its steps it would have
    /// retried, or gone on.
    pub fn stuck(&self) -> bool {
        if self.fitted() {
            return false;
        }
        if self.diverged().is_some() {
            return true;
        }
        let cut = self.cut_from.is_some();
        match &self.unstable {
            Some(_) => self.stalled() || (self.ran_out && !cut),
            None => self.stalled() && !cut,
        }
    }

    /// The steps asked for, when the budget cut the fit short of them
    /// before it fitted or could tell that it cannot.
    pub fn cut_short(&self) -> Option<usize> {
        self.cut_from.filter(|_| !self.fitted() && !self.stuck())
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
        values = narrowed(values, samples, MAX_SAMPLES)?;
        samples = MAX_SAMPLES;
    }
    let progress = Progress::new(
        options.progress,
        options.steps as u64,
        "fitting one batch {bar:30} {pos}/{len} steps, loss {msg}, {elapsed}",
    );
    let mut fit = Fit {
        losses: Vec::with_capacity(options.steps + 1),
        steps: options.steps,
        cut_from: options.cut_from,
        ran_out: false,
        lr: options.lr,
        samples,
        target: Target::Loss,
        goal: f64::NAN,
        floor: options.floor,
        unstable: None,
    };
    if !attempt(&pass, &values, options, options.steps, &mut fit, &progress)? {
        return Ok(None);
    }
    // Adam at a rate too high for this model: the loss fell, then jumped
    // and never came back, or it stalled above the goal. Before calling
    // that a model that cannot fit, the steps left start again from the
    // initial weights at a lower rate, as a user would.
    let left = options.steps.saturating_sub(fit.taken());
    if !fit.fitted() && fit.stalled() && left > PATIENCE {
        // The initial weights, read again from the model rather than kept
        // as a copy through the first attempt.
        drop(pass);
        let pass = Pass::new(model, graph, lowered, DType::F32)?;
        let spiked = spiked(&fit.losses);
        fit.unstable = Some(Attempt {
            lr: fit.lr,
            losses: std::mem::take(&mut fit.losses),
            spiked,
        });
        fit.lr /= if spiked { RETRY_DIVISOR } else { STALL_DIVISOR };
        let retry = FitOptions {
            lr: fit.lr,
            ..options.clone()
        };
        attempt(&pass, &values, &retry, left, &mut fit, &progress)?;
    }
    progress.finish();
    Ok(Some(fit))
}

/// Adam from the current weights for up to `steps` steps, the losses into
/// `fit`; false when the graph's only target is its outputs' magnitude.
fn attempt(
    pass: &Pass<'_, '_>,
    values: &[(String, Tensor)],
    options: &FitOptions,
    steps: usize,
    fit: &mut Fit,
    progress: &Progress,
) -> Result<bool, Skip> {
    let vars = pass.params.iter().map(|p| p.var.clone()).collect();
    let mut adam = Adam::new(vars, options.lr);
    for step in 0..=steps {
        let env = pass.forward(values, false, &[])?;
        let (loss, target) = pass.loss(&env)?;
        if target == Target::Outputs {
            return Ok(false);
        }
        let value = loss
            .to_dtype(DType::F64)
            .and_then(|l| l.to_scalar::<f64>())
            .map_err(|e| Skip::from(c(e)))?;
        if fit.losses.is_empty() && fit.unstable.is_none() {
            fit.target = target;
            fit.goal = (options.fraction * value).max(options.floor);
        }
        fit.losses.push(value);
        if !value.is_finite() || value < fit.goal || plateau(&fit.losses) {
            break;
        }
        if step == steps {
            fit.ran_out = true;
            break;
        }
        step_once(&mut adam, &loss)?;
        progress.message(format!("{value:.3}"));
        progress.step();
    }
    Ok(true)
}

/// A fit that was learning (its lowest loss under half its start) whose
/// loss later rose above twice that lowest.
fn spiked(losses: &[f64]) -> bool {
    let Some((at, lowest)) = losses
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return false;
    };
    let start = losses.first().copied().unwrap_or(f64::NAN);
    lowest < 0.5 * start && losses[at..].iter().any(|&l| l > 2.0 * lowest)
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

fn step_once(adam: &mut Adam, loss: &Tensor) -> Result<(), Skip> {
    let grads = loss
        .backward()
        .map_err(|e| Skip::from(format!("the backward pass failed: {}", c(e))))?;
    adam.step(&grads).map_err(|e| Skip::from(c(e)))
}

/// Whether the batch size is the probe's choice: every input of `samples`
/// rows has a symbolic leading dimension, so a smaller batch is as valid.
pub(crate) fn batch_is_free(graph: &Graph<'_>, batch: &[Input], samples: usize) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fit of `losses` with a goal of 0.1, run to its last step.
    fn ran(losses: Vec<f64>, cut_from: Option<usize>, unstable: Option<Attempt>) -> Fit {
        Fit {
            steps: losses.len() - 1,
            losses,
            cut_from,
            ran_out: true,
            lr: 1e-3,
            samples: 2,
            target: Target::Loss,
            goal: 0.1,
            floor: 0.0,
            unstable,
        }
    }

    #[test]
    fn only_a_fit_stuck_at_both_rates_and_not_cut_cannot_fit() {
        let stalled = Attempt {
            lr: 1e-2,
            losses: vec![2.0; PATIENCE + 2],
            spiked: false,
        };
        let falling: Vec<f64> = (0..20).map(|i| 2.0 - 0.05 * i as f64).collect();
        // Falling when the steps ran out, at the only rate tried: slow.
        let slow = ran(falling.clone(), None, None);
        assert!(!slow.stuck() && slow.cut_short().is_none());
        // The same after a first attempt that stalled: stuck at both rates.
        let both = ran(falling.clone(), None, Some(stalled.clone()));
        assert!(both.stuck());
        assert_eq!(both.taken_in_all(), PATIENCE + 1 + 19);
        // The same, with the steps cut by the budget: no verdict, a note.
        let cut = ran(falling, Some(200), Some(stalled));
        assert!(!cut.stuck());
        assert_eq!(cut.cut_short(), Some(200));
        // A stall at the first rate, in steps the budget cut: no retry was
        // left, so no verdict; uncut, it is one.
        let first = ran(vec![2.0; PATIENCE + 2], Some(200), None);
        assert!(!first.stuck() && first.cut_short() == Some(200));
        assert!(ran(vec![2.0; PATIENCE + 2], None, None).stuck());
        // A fit that reached its goal is neither.
        let fitted = ran(vec![2.0, 1.0, 0.05], Some(200), None);
        assert!(!fitted.stuck() && fitted.cut_short().is_none());
    }

    #[test]
    fn a_fit_that_learned_then_jumped_has_spiked() {
        // ALBERT's first attempt, cut: down to 1.09, then up to 4.8.
        assert!(spiked(&[6.9, 4.3, 2.1, 1.09, 1.24, 3.84, 4.82, 4.2]));
        // Stuck from the start (a tanh on the logits): no spike.
        assert!(!spiked(&[2.08, 1.4, 1.1, 1.0, 1.02, 0.99, 1.01]));
        // Learning, and a bump below twice the lowest: no spike.
        assert!(!spiked(&[6.9, 2.0, 1.0, 1.5, 1.2]));
        // Not finite: `diverged`, not a spike to retry.
        assert!(!spiked(&[f64::NAN]));
    }
}
