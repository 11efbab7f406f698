//! Batch mixing: whether one sample's output depends on the input of another.
//!
//! The backward pass measures it with gradients ([`super::backward`]). Where
//! that pass cannot run (an operator the gradient engine lacks, or a model
//! over its budgets), two forward passes measure it here: one on the
//! probe's batch, one with the middle sample's inputs moved (a recurrence
//! along the batch carries it into the later samples, a reversed one into
//! the earlier), the second normalizing with the first's batch statistics.
//! Every other sample's output must come out bit for bit the same.

use rustc_hash::FxHashSet;

use super::engine::{self, Comparison, Observed, Run, Skip};
use super::inputs;
use super::lower;
use super::ProbeOptions;
use crate::graph::{Dim, Graph};
use crate::onnx::proto::data_type as dt;
use crate::onnx::Model;

/// How a [`Mixing`] was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measured {
    /// The gradient of the first and last samples' outputs at sample
    /// `from`'s input, against the largest at their own inputs; `to` is the
    /// other sample whose output moved most when sample `from`'s input did.
    Gradient,
    /// `|Δ out[to]|` against `|Δ out[from]|` when sample `from`'s inputs
    /// move by 1.
    Perturbation,
}

/// One sample's output depends on another sample's input.
#[derive(Clone, Debug, PartialEq)]
pub struct Mixing {
    /// The input whose sample moved (or the first of them).
    pub input: String,
    pub output: String,
    /// What a sample's input moves of its own output, and of another's.
    pub own: f64,
    pub other: f64,
    /// The sample whose input reaches another's output, and that other.
    pub from: usize,
    pub to: usize,
    /// The node where the samples first meet.
    pub node: Option<String>,
    pub by: Measured,
}

impl Mixing {
    pub fn ratio(&self) -> f64 {
        if self.own > 0.0 {
            self.other / self.own
        } else {
            f64::INFINITY
        }
    }
}

/// Whether `input`'s leading axis is its batch: it is not when its declared
/// name calls it a sequence (`sequence_length`, `time`, `frames`, `steps`),
/// as in a model that streams chunks through a recurrent state by design.
pub fn batched(graph: &Graph<'_>, input: &str) -> bool {
    const SEQUENCE: &[&str] = &["seq", "time", "frame", "len", "step"];
    match graph.shape(input).and_then(|s| s.first()) {
        Some(Dim::Named(name)) => {
            let name = name.to_ascii_lowercase();
            !SEQUENCE.iter().any(|w| name.contains(w))
        }
        _ => true,
    }
}

/// The tensors whose sample 0 is "sample 0's output": what the losses
/// read, or the graph outputs with the batch leading.
pub fn per_sample_outputs(
    graph: &Graph<'_>,
    dims: &dyn Fn(&str) -> Option<Vec<usize>>,
    batch: usize,
) -> Vec<String> {
    let leading = |name: &str| dims(name).is_some_and(|d| d.first() == Some(&batch));
    let loss = graph.loss();
    let mut out: Vec<String> = if !loss.found() {
        graph.outputs().iter().map(|s| s.to_string()).collect()
    } else {
        // A contrastive loss's scores compare every sample with every other by design.
        loss.data_terms()
            .filter(|t| t.form != crate::graph::Form::Contrastive)
            .filter_map(|t| t.scores)
            .map(|t| graph.tensor_name(t).to_string())
            .collect()
    };
    out.retain(|o| leading(o));
    out.dedup();
    out
}

/// Batch mixing measured by two forward passes, after the forward pass
/// `run`: `Ok(None)` when every other sample's output stayed the same, or
/// when there is nothing to measure (a batch of 1, no float input or output
/// with the batch leading, shapes that prove samples stay apart).
pub fn forward(
    model: &Model,
    graph: &Graph<'_>,
    run: &Run,
    options: &ProbeOptions,
) -> Result<Option<Mixing>, Skip> {
    let batch = inputs::batch_size(&run.inputs);
    let dims = |t: &str| -> Option<Vec<usize>> {
        if let Some(i) = run.inputs.iter().find(|i| i.name == t) {
            return Some(i.shape.clone());
        }
        run.summaries.get(t).map(|s| s.shape.clone())
    };
    let outputs = per_sample_outputs(graph, &dims, batch);
    let moved: FxHashSet<String> = run
        .inputs
        .iter()
        .filter(|i| i.shape.first() == Some(&batch) && batched(graph, &i.name))
        .filter(|i| matches!(i.elem_type, dt::FLOAT | dt::DOUBLE))
        .map(|i| i.name.clone())
        .collect();
    if batch < 2 || outputs.is_empty() || moved.is_empty() {
        return Ok(None);
    }
    let lowered = lower::lower(graph)?;
    if lowered.statistics_ops > 0 {
        return Err(
            "a BatchNorm whose scale or shift the graph computes cannot hold its batch statistics for the check"
                .into(),
        );
    }
    if super::backward::proven_per_sample(graph, &lowered, run) {
        return Ok(None);
    }
    // Two more passes like the first.
    let seconds = 2.0 * run.seconds;
    let left = options.seconds - run.seconds;
    if seconds > left {
        return Err(format!(
            "its two forward passes would take about {}, over the {} the first left of the probe's time budget of {} s; `--probe-time {:.0}` runs them",
            engine::secs(seconds),
            engine::secs(left),
            options.seconds,
            (run.seconds + seconds).ceil() + 1.0
        )
        .into());
    }
    let mut run_options =
        super::run_options(options, super::typing_seconds(graph, &lowered, options));
    run_options.inputs.batch = batch;
    run_options.seconds = run_options.typing_seconds + left / 2.0;
    let keep: FxHashSet<String> = outputs.iter().cloned().collect();
    // The middle sample: a recurrence along the batch carries it into the
    // later samples, a reversed one into the earlier.
    let compared = engine::compare(
        model,
        graph,
        &lowered,
        &run_options,
        &moved,
        batch / 2,
        &keep,
    )?;
    Ok(measure(&compared, &outputs))
}

/// The largest move of another sample's output against the moved sample's
/// own, over `outputs`, and the first value where another sample moved.
fn measure(c: &Comparison, outputs: &[String]) -> Option<Mixing> {
    let j = c.moved_sample;
    let mut best: Option<Mixing> = None;
    for o in outputs {
        let (Some(a), Some(b)) = (c.base.kept.get(o), c.moved.kept.get(o)) else {
            continue;
        };
        if a.len() != b.len() || a.len() < c.batch || j >= c.batch {
            continue;
        }
        let row = a.len() / c.batch;
        let moves: Vec<f64> = a
            .chunks(row.max(1))
            .zip(b.chunks(row.max(1)))
            .map(|(x, y)| {
                x.iter()
                    .zip(y)
                    .map(|(p, q)| (f64::from(*q) - f64::from(*p)).abs())
                    .filter(|d| !d.is_nan())
                    .fold(0.0, f64::max)
            })
            .collect();
        let own = moves[j];
        let (to, other) = most_moved(&moves, j);
        if other > 0.0 && best.as_ref().is_none_or(|m| other > m.other) {
            best = Some(Mixing {
                input: c.moved_inputs.first().cloned().unwrap_or_default(),
                output: o.clone(),
                own,
                other,
                from: j,
                to,
                node: None,
                by: Measured::Perturbation,
            });
        }
    }
    if let Some(m) = &mut best {
        m.node = first_met(&c.base, &c.moved, j);
    }
    best
}

/// Of the samples other than `moved`, the one with the largest entry of
/// `moves` (one per sample), and that entry.
pub(super) fn most_moved(moves: &[f64], moved: usize) -> (usize, f64) {
    let first = usize::from(moved == 0);
    moves.iter().enumerate().filter(|(k, _)| *k != moved).fold(
        (first, 0.0f64),
        |(bk, bv), (k, &v)| if v > bv { (k, v) } else { (bk, bv) },
    )
}

/// The first value, in the order computed, where a sample other than
/// `moved` changed.
fn first_met(base: &Observed, after: &Observed, moved: usize) -> Option<String> {
    base.order
        .iter()
        .find(|name| {
            let (Some(a), Some(b)) = (base.samples.get(*name), after.samples.get(*name)) else {
                return false;
            };
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .enumerate()
                    .any(|(k, (x, y))| k != moved && x != y)
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(samples: &[(&str, Vec<u64>)], kept: &[(&str, Vec<f32>)]) -> Observed {
        Observed {
            samples: samples
                .iter()
                .map(|(n, h)| (n.to_string(), h.clone()))
                .collect(),
            order: samples.iter().map(|(n, _)| n.to_string()).collect(),
            kept: kept
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
        }
    }

    /// Two passes with sample 0 moved.
    fn compared(batch: usize, base: Observed, moved: Observed) -> Comparison {
        Comparison {
            batch,
            moved_sample: 0,
            moved_inputs: vec!["x".into()],
            base,
            moved,
        }
    }

    #[test]
    fn another_sample_that_moves_is_mixing_and_names_where_it_first_moved() {
        let base = observed(
            &[("h", vec![1, 2, 3]), ("y", vec![4, 5, 6])],
            &[("y", vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0])],
        );
        let moved = observed(
            &[("h", vec![9, 2, 3]), ("y", vec![7, 5, 8])],
            &[("y", vec![0.5, 0.0, 1.0, 1.0, 2.0, 2.25])],
        );
        let m = measure(&compared(3, base, moved), &["y".into()]).unwrap();
        assert_eq!((m.from, m.to, m.own, m.other), (0, 2, 0.5, 0.25));
        assert_eq!(m.ratio(), 0.5);
        assert_eq!(m.node.as_deref(), Some("y"), "h moved in sample 0 only");
        assert_eq!(m.by, Measured::Perturbation);
    }

    #[test]
    fn samples_that_stay_bit_for_bit_are_no_mixing() {
        let base = observed(&[("y", vec![4, 5])], &[("y", vec![0.0, 1.0])]);
        let moved = observed(&[("y", vec![7, 5])], &[("y", vec![3.0, 1.0])]);
        assert_eq!(measure(&compared(2, base, moved), &["y".into()]), None);
    }
}
