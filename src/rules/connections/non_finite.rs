//! NaN or infinity stored in the model.

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NORMALIZATION_OPS};
use crate::probe::Probe;
use crate::rules::{Category, Check, Checkpoints, DiffFindings, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "non-finite",
    code: "NN203",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Connections,
    premises: &[],
    absorbs: &["cannot-overfit"],
    summary: "an initializer or constant holds NaN or infinity",
    options: &[],
    explanation: include_str!("../../../rules/non-finite.md"),
};

pub(crate) struct NonFinite;

impl Rule for NonFinite {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        // An initializer, or a Constant node's output.
        let stored = (0..graph.initializers().len())
            .filter_map(|i| Some((graph.initializer_id(i)?, None)))
            .chain(
                graph
                    .nodes_of("Constant")
                    .filter_map(|n| Some((n.output_id(0)?, Some(n)))),
            );
        for (id, node) in stored {
            let Some(st) = graph.stats_of(id) else {
                continue;
            };
            let name = graph.tensor_name(id);
            let (nan, inf, first) = (st.nan, st.inf, st.first_non_finite);
            if nan + inf == 0 {
                continue;
            }
            // An infinity is a legitimate fill value (attention masks, clamps) unless it
            // sits in a parameter that multiplies or shifts activations.
            if nan == 0 && !is_parameter(graph, name) {
                continue;
            }
            let what = match (nan, inf) {
                (0, n) => format!("{n} infinite value{}", plural(n)),
                (n, 0) => format!("{n} NaN value{}", plural(n)),
                (n, m) => format!("{n} NaN and {m} infinite values"),
            };
            let span = match &node {
                Some(n) => Some(n.span().call),
                None => graph.source().value(graph.scope(), name),
            }
            .unwrap_or_else(|| graph.source().graph(graph.scope()));
            let mut d = Diagnostic::new(&META, format!("`{name}` holds {what}"))
                .primary(span, format!("first at flat index {}", first.unwrap_or(0)))
                .note(format!("{} of {} elements are not finite; every output they touch becomes NaN", nan + inf, st.count))
                .help("re-export from a checkpoint saved before the values diverged, or find what wrote them");
            if let Some(n) = node {
                d = d.with_node(n.name());
            }
            out.push(d);
        }
    }

    /// A weight finite in the first checkpoint and not in the second.
    fn diff(&self, cx: &Checkpoints<'_>, out: &mut DiffFindings) {
        for (i, l) in cx.layers.iter().enumerate() {
            if l.non_finite_b > 0 && l.non_finite_a == 0 {
                let d = Diagnostic::new(&META, format!("weight `{}` became non-finite", l.name))
                    .with_severity(Severity::Error)
                    .note(format!(
                        "{} of {} values are NaN or infinite after training, none before",
                        l.non_finite_b, l.elements
                    ))
                    .help("training diverged between the checkpoints: lower the learning rate, clip gradients, look for log(0) or division by zero");
                out.found.push((Some(i), d));
            }
        }
    }

    fn measures(&self) -> bool {
        true
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        self.measured(cx, probe, out);
    }
}

impl NonFinite {
    /// The measured half: the first node whose output holds NaN or infinity
    /// while its inputs are finite, or NaN while its inputs hold none. An
    /// infinity a mask stores (`-inf` above a causal diagonal) is a fill
    /// value, and flows on: a softmax with a finite entry left in every row
    /// turns it into zeros. A row with none left is a NaN, found there.
    fn measured(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let finite = |t: &str| match probe.summary(t) {
            Some(s) => s.is_finite(),
            None => graph.stats(t).is_none_or(|st| st.nan + st.inf == 0),
        };
        let nan_free = |t: &str| match probe.summary(t) {
            Some(s) => s.nan == 0,
            None => graph.stats(t).is_none_or(|st| st.nan == 0),
        };
        for t in &probe.run.order {
            let Some(s) = probe.summary(t) else { continue };
            if s.is_finite() {
                continue;
            }
            let Some((n, _)) = graph.producer(t) else {
                return; // a graph input: the data given with --input
            };
            let inputs = || n.inputs().iter().filter(|i| !i.is_empty());
            let from_finite = inputs().all(|i| finite(i));
            let nan_from_infinities = s.nan > 0 && inputs().all(|i| nan_free(i));
            if !(from_finite || nan_from_infinities) {
                if inputs().all(|i| nan_free(i)) {
                    continue; // infinities flowing from a mask or a clamp
                }
                return; // it comes from a stored NaN, which the static half reports
            }
            if !behind_weights(graph, &n) && probe.run.inputs.iter().all(|i| !i.is_file()) {
                // `sqrt(x)` of N(0, 1) inputs: the synthesized data, not the model.
                return;
            }
            let mut d = Diagnostic::new(
                &META,
                format!(
                    "the probe's first NaN or infinity appears here: {} of {} values of `{t}`",
                    s.non_finite,
                    s.elements()
                ),
            )
            .with_node(n.name())
            .primary(n.span().call, "first non-finite output");
            for i in n.inputs().iter().filter(|i| !i.is_empty()) {
                if let Some(x) = probe.summary(i) {
                    d = d.note(format!(
                        "input `{i}` ranges over [{}, {}] with {} zeros",
                        short(x.min),
                        short(x.max),
                        x.zeros
                    ));
                }
            }
            let help = match n.op_type() {
                "Log" => "the log of zero or a negative value: clamp the input (`log(x + eps)`), or use log_softmax / logsigmoid",
                "Div" | "Reciprocal" => "a division by zero: add an epsilon to the denominator",
                "Sqrt" | "Pow" => "a root of a negative value or an overflow: clamp the input",
                "Exp" | "Softplus" => "an overflow: subtract the maximum first (log-sum-exp), or clamp the input",
                _ => "check the values entering this node",
            };
            out.push(d.help(help));
            return;
        }
    }
}

/// Whether a weight layer lies upstream of `n`: its values depend on what
/// the model learns, not on the input data alone.
fn behind_weights(graph: &Graph<'_>, n: &crate::graph::NodeRef<'_, '_>) -> bool {
    let mut seen = rustc_hash::FxHashSet::default();
    let mut stack: Vec<&str> = n.inputs().iter().map(String::as_str).collect();
    while let Some(t) = stack.pop() {
        let Some((p, _)) = graph.producer(t) else {
            continue;
        };
        if !seen.insert(p.id()) {
            continue;
        }
        if graph.weight_layer(p.id()).is_some() {
            return true;
        }
        stack.extend(p.inputs().iter().map(String::as_str));
    }
    false
}

/// Whether the value is a weight, bias or normalization parameter.
fn is_parameter(graph: &Graph<'_>, name: &str) -> bool {
    graph.consumers(name).iter().any(|(n, slot)| {
        graph.weight_layer(n.id()).is_some_and(|l| {
            l.weight_name == name || l.bias_name == Some(name) || *slot > 0 && *slot < 3
        }) || (*slot > 0 && NORMALIZATION_OPS.iter().any(|op| n.is(op)))
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
