//! One sample's output depends on another sample's input (measured by the
//! backward pass, or by two forward passes where it cannot run).

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::probe::{Backward, Measured, Probe, ProbeOptions};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const MIN_RATIO: RuleOption = RuleOption {
    name: "min-ratio",
    default: 1e-6,
    summary: "the largest gradient of the first and last samples' outputs at another sample's input, relative to the largest at their own (or, measured by forward passes, another sample's move relative to the moved sample's), that fires",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "batch-mixing",
    code: "NN207",
    severity: Severity::Warning,
    pass: Pass::Probe,
    category: Category::Connections,
    premises: &[],
    absorbs: &[],
    summary: "one sample's output depends on the inputs of other samples in the batch",
    options: &[MIN_RATIO],
    explanation: include_str!("../../../rules/batch-mixing.md"),
};

pub(crate) struct BatchMixing;

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
        let (m, batch) = match (&probe.gradients, &probe.mixing) {
            (Some(Ok(grads)), _) => match &grads.mixing {
                Some(m) => (m, grads.batch),
                None => return,
            },
            (_, Some(Ok(Some(m)))) => (m, probe.batch()),
            _ => return,
        };
        if m.ratio() < cx.option(&MIN_RATIO) {
            return;
        }
        let graph = cx.graph;
        let at = m
            .node
            .as_deref()
            .and_then(|n| {
                graph
                    .find_node(n)
                    .or_else(|| graph.producer(n).map(|(p, _)| p))
            })
            .or_else(|| graph.producer(&m.output).map(|(p, _)| p));
        // The samples whose outputs the backward pass differentiated.
        let ends = if batch >= 3 {
            format!("0, {}", batch - 1)
        } else {
            "0".to_string()
        };
        let (from, to) = (m.from, m.to);
        let (out_name, in_name) = (&m.output, &m.input);
        let message = match m.by {
            Measured::Gradient => format!(
                "sample {to}'s output depends on the input of sample {from}: |d {out_name}[{ends}] / d {in_name}[{from}]| is {}x |d {out_name}[{ends}] / d {in_name}[{ends}]|",
                short(m.ratio()),
            ),
            Measured::Perturbation => format!(
                "sample {to}'s output depends on the input of sample {from}: adding 1 to sample {from}'s `{in_name}` moved `{out_name}[{to}]` by {}, and `{out_name}[{from}]` by {}",
                short(m.other),
                short(m.own)
            ),
        };
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
        let how = match m.by {
            Measured::Gradient => format!(
                "measured by one backward pass from samples {ends} of `{out_name}` on {batch} synthesized samples"
            ),
            Measured::Perturbation => format!(
                "measured by two forward passes on {batch} synthesized samples, the second with sample {from}'s inputs moved (the backward pass did not run)"
            ),
        };
        let recurrent = at.is_some_and(|n| matches!(n.op_type(), "LSTM" | "GRU" | "RNN"));
        let help = if recurrent {
            "the recurrent layer reads its input as (time, batch, features): build it with `batch_first=True`, or permute the input to that order"
        } else {
            "swap axes with `permute`/`transpose`, not `reshape`/`view`, and reduce over the batch axis only in the loss"
        };
        if probe.batch_norms + probe.folded_norms > 0 {
            d = d.note("training-mode BatchNorm couples samples by design; its batch statistics were held constant for this check");
        }
        out.push(d.note(how).help(help));
    }
}
