//! One sample's output depends on another sample's input (measured by the backward pass).

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::probe::{Backward, Probe, ProbeOptions};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

pub static META: RuleMeta = RuleMeta {
    name: "batch-mixing",
    code: "NN207",
    severity: Severity::Warning,
    pass: Pass::Probe,
    category: Category::Connections,
    premises: &[],
    absorbs: &[],
    summary: "one sample's output depends on the inputs of other samples in the batch",
    options: &[RuleOption {
        name: "min-ratio",
        default: 1e-6,
        summary:
            "the largest |d out[0] / d x[j]|, j > 0, relative to |d out[0] / d x[0]|, that fires",
    }],
    explanation: include_str!("../../../rules/batch-mixing.md"),
};

pub struct BatchMixing;

impl Rule for BatchMixing {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn measures(&self) -> bool {
        true
    }

    fn backward(&self, _: &ProbeOptions) -> &'static [Backward] {
        &[Backward::Mixing]
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let Some(Ok(grads)) = &probe.gradients else {
            return;
        };
        let Some(m) = &grads.mixing else { return };
        if m.ratio() < cx.option("min-ratio") {
            return;
        }
        let graph = cx.graph;
        let at = m
            .node
            .as_deref()
            .and_then(|n| graph.find_node(n))
            .or_else(|| graph.producer(&m.output).map(|(p, _)| p));
        let message = format!(
            "sample 0's output depends on the input of sample {}: |d {}[0] / d {}[{}]| is {}x |d {}[0] / d {}[0]|",
            m.sample,
            m.output,
            m.input,
            m.sample,
            short(m.ratio()),
            m.output,
            m.input
        );
        let mut d = Diagnostic::new(&META, message);
        d = match at {
            Some(n) => d
                .with_node(n.name())
                .primary(n.span().call, "samples of the batch meet here"),
            None => d.primary(
                graph.source().graph(graph.scope()),
                "samples of the batch meet",
            ),
        };
        out.push(
            d.note("training-mode BatchNorm couples samples by design; its batch statistics were held constant for this check")
                .note(format!("measured by one backward pass from sample 0's `{}` on {} synthesized samples", m.output, grads.batch))
                .help("swap axes with `permute`/`transpose`, not `reshape`/`view`, and reduce over the batch axis only in the loss"),
        );
    }
}
