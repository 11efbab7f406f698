//! One layer still at its initializer among trained ones.

use crate::diag::{Diagnostic, Severity};
use crate::graph::state::layer_states;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const TRAINED_SHARE: RuleOption = RuleOption {
    name: "trained-share",
    default: 0.75,
    summary: "the share of the other judged layers that must show training",
};

const MIN_ELEMENTS: RuleOption = RuleOption {
        name: "min-elements",
        default: 2048.0,
        summary: "weights with fewer elements are not judged random: their statistics are too noisy to single one out",
};

const MIN_TRAINED: RuleOption = RuleOption {
    name: "min-trained",
    default: 3.0,
    summary: "layers that must show training before one random layer stands out",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "layer-left-random",
    code: "NN309",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Parameters,
    premises: &[requires(Premise::Trained, Half::Static, Unmet::Skip)],
    absorbs: &[],
    summary: "a layer of a trained model still looks like one random draw, as a checkpoint that missed its keys leaves it",
    options: &[TRAINED_SHARE, MIN_ELEMENTS, MIN_TRAINED],
    explanation: include_str!("../../../rules/layer-left-random.md"),
};

pub(crate) struct LayerLeftRandom;

impl Rule for LayerLeftRandom {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let layers = layer_states(graph);
        let trained: Vec<_> = layers.iter().filter(|l| !l.random()).collect();
        let random: Vec<_> = layers
            .iter()
            .filter(|l| l.random())
            // Every statistic measured, so "random" is a finding, not a
            // lack of evidence, and each as one i.i.d. draw gives it; a head
            // is what a fine-tune replaces.
            .filter(|l| l.evidence.spectral.is_some() && l.evidence.rows_independent())
            .filter(|l| l.evidence.elements as f64 >= cx.option(&MIN_ELEMENTS))
            .filter(|l| !graph.is_head(l.node))
            .collect();
        let judged = trained.len() + random.len();
        if random.is_empty()
            || (trained.len() as f64) < cx.option(&MIN_TRAINED)
            || (trained.len() as f64) < cx.option(&TRAINED_SHARE) * judged as f64
        {
            return;
        }
        // The largest trained layer is the clearest contrast.
        let witness = trained.iter().max_by_key(|l| l.evidence.elements);
        for l in random {
            let n = graph.node(l.node);
            let weight = graph.tensor_name(l.weight);
            let mut d = Diagnostic::new(
                &META,
                format!("weight `{weight}` looks left at its initializer in a trained model"),
            )
            .with_node(n.name())
            .primary(
                n.span().call,
                format!("one i.i.d. draw: {}", l.evidence.describe()),
            )
            .note(format!(
                "{} of the model's {judged} judged weight layers show training",
                trained.len()
            ));
            if let Some(w) = witness {
                let why = w.evidence.structure().into_iter().next();
                if let Some(why) = why {
                    d = d.secondary(graph.node(w.node).op_span(), format!("trained: {why}"));
                }
            }
            out.push(d.help(
                "check that the checkpoint loaded this layer: `load_state_dict(..., strict=True)` reports keys a rename left unmatched",
            ));
        }
    }
}
