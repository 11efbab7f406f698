//! A rule's premises: what it takes for granted about a model, declared as
//! data next to its name and code, and the one place that decides whether
//! they hold for a model.
//!
//! A warning on a trained model must be something its owner would want to
//! fix now. So a rule that judges weights against an initializer, or
//! activations against the data a model was designed for, declares so, and
//! [`Facts::verdict`] turns its findings off (or down to notes) where the
//! premise fails. Premises about what the graph shows (a loss, a training
//! export) do not stop a rule; they make the summary say what it could not
//! see, so that silence is never mistaken for a clean bill.

pub use crate::diag::report::Coverage;
pub use crate::graph::Premise;
use crate::graph::{Graph, ModelState, StateDecision};

/// The half of a rule a premise concerns: its static check, its measurement
/// by the probe, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Half {
    Static,
    Measured,
    Both,
}

impl Half {
    fn covers(self, half: Half) -> bool {
        self == Half::Both || self == half
    }
}

/// What becomes of a rule's findings when its premise does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unmet {
    /// It runs, but sees only part of what it looks for; the summary says so.
    Blind,
    /// It runs, and reports at note level.
    Note,
    /// It does not run; the summary counts it.
    Skip,
}

/// One premise of a rule, with the half it concerns and what its failure does.
#[derive(Debug)]
pub struct Requirement {
    pub premise: Premise,
    pub half: Half,
    pub unmet: Unmet,
}

/// Shorthand for the rules' metadata.
pub const fn requires(premise: Premise, half: Half, unmet: Unmet) -> Requirement {
    Requirement {
        premise,
        half,
        unmet,
    }
}

/// What is known about a model that premises are decided from, gathered once.
#[derive(Clone, Debug)]
pub struct Facts {
    pub state: StateDecision,
    /// Every float input of the main graph is given as real data (`--input`).
    pub real_inputs: bool,
    pub loss: bool,
    pub training: bool,
}

impl Facts {
    /// Gathers the facts from a model's graphs (the main graph first).
    pub fn gather(graphs: &[Graph<'_>], forced: Option<ModelState>, real_inputs: bool) -> Facts {
        let state = match forced {
            Some(state) => StateDecision {
                state,
                evidence: "set by `--model-state` or the `model-state` key".into(),
                forced: true,
            },
            None => crate::graph::state::decide(graphs),
        };
        let main = graphs.first();
        Facts {
            state,
            real_inputs,
            loss: main.is_some_and(|g| g.loss().found()),
            training: graphs.iter().any(training_export),
        }
    }

    /// Whether the premise holds for this model.
    pub fn holds(&self, premise: Premise) -> bool {
        let fresh = self.state.state != ModelState::Trained;
        match premise {
            Premise::Untrained | Premise::InDesign => fresh,
            Premise::Trained => !fresh,
            Premise::RepresentativeInputs => fresh || self.real_inputs,
            Premise::LossInGraph => self.loss,
            Premise::TrainingExport => self.training,
        }
    }

    /// What becomes of `half` of a rule here: `None` when every premise of
    /// that half holds, otherwise the strongest consequence of those that fail.
    pub fn verdict(&self, requirements: &[Requirement], half: Half) -> Option<Unmet> {
        requirements
            .iter()
            .filter(|r| r.half.covers(half) && !self.holds(r.premise))
            .map(|r| r.unmet)
            .max()
    }

    /// The premises of `requirements` that fail here with `unmet`.
    pub fn failing(&self, requirements: &[Requirement], unmet: Unmet) -> Vec<Premise> {
        let mut v: Vec<Premise> = requirements
            .iter()
            .filter(|r| r.unmet == unmet && !self.holds(r.premise))
            .map(|r| r.premise)
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Whether a graph was exported in training mode: it keeps a Dropout, a
/// BatchNormalization with its training outputs, or (dynamo, which folds
/// BatchNorm into the layer before) torch's training-mode batch norm in a
/// node's metadata.
fn training_export(g: &Graph<'_>) -> bool {
    g.nodes().any(|n| {
        if !n.domain_is_default() {
            return false;
        }
        match n.op_type() {
            "Dropout" => true,
            "BatchNormalization" => {
                n.outputs().len() > 1 || n.attr_i64("training_mode").unwrap_or(0) != 0
            }
            _ => n
                .metadata("namespace")
                .is_some_and(|m| m.contains("_native_batch_norm_legit_functional")),
        }
    })
}

impl Coverage {
    /// Nothing turned off yet, for a model in `state`.
    pub fn new(state: StateDecision) -> Coverage {
        Coverage {
            state,
            skipped: Vec::new(),
            demoted: Vec::new(),
            blind: Vec::new(),
        }
    }

    /// Records what `facts` make of a selected rule's premises; `probe` says
    /// whether its measured half would run at all.
    pub fn account(&mut self, facts: &Facts, meta: &super::RuleMeta, probe: bool) {
        let halves: &[Half] = match (meta.pass, probe) {
            (super::Pass::Probe, true) => &[Half::Measured],
            (super::Pass::Probe, false) => &[],
            (super::Pass::Graph, true) => &[Half::Static, Half::Measured],
            (super::Pass::Graph, false) => &[Half::Static],
            _ => &[],
        };
        let verdicts: Vec<Option<Unmet>> = halves
            .iter()
            .map(|&h| facts.verdict(meta.premises, h))
            .collect();
        // The count is of rules that assume an untrained model; a rule
        // about trained checkpoints, off on a fresh one, is not among them.
        let about_training = meta.premises.iter().all(|r| r.premise == Premise::Trained);
        if verdicts.contains(&Some(Unmet::Skip)) && !about_training {
            self.skipped.push(meta.name);
        } else if verdicts.contains(&Some(Unmet::Note)) {
            self.demoted.push(meta.name);
        }
        for premise in facts.failing(meta.premises, Unmet::Blind) {
            match self.blind.iter_mut().find(|(p, _)| *p == premise) {
                Some((_, rules)) => rules.push(meta.name),
                None => self.blind.push((premise, vec![meta.name])),
            }
        }
    }
}
