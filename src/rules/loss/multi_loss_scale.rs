//! A summed loss whose terms carry constant weights orders of magnitude apart.

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Form, Graph, NodeId, Origin};
use crate::probe::Probe;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const RATIO: RuleOption = RuleOption {
    name: "ratio",
    default: 100.0,
    summary: "largest over smallest constant weight that fires",
};

const MEASURED_RATIO: RuleOption = RuleOption {
    name: "measured-ratio",
    default: 10.0,
    summary: "largest over smallest term value at the probe that fires",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "multi-loss-scale",
    code: "NN107",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Both, Unmet::Blind)],
    absorbs: &["cannot-overfit"],
    summary: "the terms of a summed loss are weighted 100x or more apart",
    options: &[RATIO, MEASURED_RATIO],
    explanation: include_str!("../../../rules/multi-loss-scale.md"),
};

const LOSS_OPS: &[&str] = &[
    "SoftmaxCrossEntropyLoss",
    "NegativeLogLikelihoodLoss",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
];

pub(crate) struct MultiLossScale;

struct Term {
    weight: f64,
    /// The Mul/Div that applies the weight, if any.
    scaled_by: Option<NodeId>,
    /// Where the unweighted term is computed.
    source: NodeId,
}

impl Rule for MultiLossScale {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let threshold = cx.option(&RATIO);
        for (output, sum) in summed_outputs(graph) {
            let mut terms = Vec::new();
            if !collect(graph, output, &mut terms, 0) || terms.len() < 2 {
                continue;
            }
            let Some((lo, hi)) = extremes(&terms, |t| t.weight) else {
                continue;
            };
            if lo.weight <= 0.0 || hi.weight / lo.weight < threshold {
                continue;
            }
            let ratio = hi.weight / lo.weight;
            let span = |t: &Term| graph.node(t.scaled_by.unwrap_or(t.source)).span().call;
            out.push(
                Diagnostic::new(
                    &META,
                    format!("loss terms are weighted {} apart", format_ratio(ratio)),
                )
                .with_node(sum.name())
                .primary(span(hi), format!("weighted {}", trim(hi.weight)))
                .secondary(span(lo), format!("weighted {}", trim(lo.weight)))
                .secondary(sum.op_span(), "summed here")
                .note(format!(
                    "the gradient of the larger term dominates; the smaller one barely trains (threshold: {threshold}x)"
                ))
                .note("the weights are constants the author wrote (a KL weight, a published multitask weighting): a note, not a mistake by itself; the probe judges the values they give")
                .help("scale the terms so their contributions are of the same order at initialization")
                .with_severity(Severity::Note),
            );
        }
    }

    fn measures(&self) -> bool {
        true
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        self.measured(cx, probe, out);
    }
}

impl MultiLossScale {
    /// The measured half: the value of each term of a summed loss at the probe,
    /// constant-folded penalties included.
    fn measured(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let threshold = cx.option(&MEASURED_RATIO);
        for (output, sum) in summed_outputs(graph) {
            let mut terms = Vec::new();
            if !values(graph, probe, output, &mut terms) || terms.len() < 2 {
                continue;
            }
            terms.retain(|(_, v)| *v != 0.0);
            let Some((lo, hi)) = extremes(&terms, |t| t.1.abs()) else {
                continue;
            };
            let ratio = hi.1.abs() / lo.1.abs();
            if !ratio.is_finite() || ratio < threshold {
                continue;
            }
            // What kind of term each extreme is decides whether the gap is
            // a mistake: a penalty swamping the data loss is (the
            // checklist's part 4); a term comparing two of the model's own
            // outputs is near zero at initialization by construction; a gap
            // the author's constant weights make is their choice.
            let (lo_kind, hi_kind) = (kind(graph, lo.0), kind(graph, hi.0));
            let unweighted = |t: &(&str, f64)| unweighted(graph, probe, t.0).unwrap_or(t.1).abs();
            let (lo_raw, hi_raw) = (unweighted(lo), unweighted(hi));
            let (severity, why) = if hi_kind == TermKind::Penalty {
                (Severity::Warning, "a penalty computed from the weights alone swamps the data loss: the optimizer mostly shrinks the weights".to_string())
            } else if lo_kind == TermKind::SelfComparison {
                (Severity::Note, format!("`{}` reads no label, only the model's own outputs (a consistency, distillation or KL term), and is near zero at initialization by construction", lo.0))
            } else if lo_raw > 0.0 && hi_raw / lo_raw < threshold {
                (Severity::Note, format!("unweighted, the terms are {} and {}: the gap is the constant weights the author wrote", short(hi_raw), short(lo_raw)))
            } else {
                (
                    Severity::Warning,
                    "the larger term dominates the gradient; terms should be of the same order"
                        .to_string(),
                )
            };
            let span = |t: &str| {
                graph
                    .producer(t)
                    .map_or_else(|| sum.op_span(), |(n, _)| n.span().call)
            };
            let listing: Vec<String> = terms
                .iter()
                .map(|(t, v)| format!("`{t}` = {}", short(*v)))
                .collect();
            out.push(
                Diagnostic::new(
                    &META,
                    format!(
                        "loss term `{}` is {} the term `{}` at the probe",
                        hi.0,
                        format_ratio(ratio),
                        lo.0
                    ),
                )
                .with_node(sum.name())
                .primary(span(hi.0), format!("{} here", short(hi.1)))
                .secondary(span(lo.0), short(lo.1))
                .secondary(sum.op_span(), "summed here")
                .note(format!("terms at the probe: {}", listing.join(", ")))
                .note(format!("{why} (threshold: {threshold}x)"))
                .help("rescale the terms so their values at initialization are within an order of magnitude")
                .with_severity(severity),
            );
        }
    }
}

/// What a term of a summed loss computes, by what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TermKind {
    /// It reads a graph input without a weight layer between: a label.
    Data,
    /// It reads the graph's inputs only through weight layers: two of the
    /// model's outputs compared (distillation, consistency), a KL term on
    /// its latent, or a penalty on activations.
    SelfComparison,
    /// It reads no graph input at all: a penalty on the weights.
    Penalty,
}

/// The kind of the term `tensor`: what the graph's loss ([`Graph::loss`])
/// says that term computes; for an addend it did not split out, one walk
/// back over what it reads.
fn kind(graph: &Graph<'_>, tensor: &str) -> TermKind {
    let id = graph.tensor_id(tensor);
    let term = graph.loss().terms.iter().find(|t| {
        Some(t.value) == id || t.scaled_by.and_then(|s| graph.node(s).output_id(0)) == id
    });
    if let Some(t) = term {
        return match t.form {
            Form::Penalty => TermKind::Penalty,
            Form::SelfComparison => TermKind::SelfComparison,
            _ => TermKind::Data,
        };
    }
    let mut seen = rustc_hash::FxHashSet::default();
    // (tensor, whether a weight layer lies between it and the term)
    let mut stack = vec![(tensor, false)];
    let (mut label, mut input) = (false, false);
    while let Some((t, behind)) = stack.pop() {
        if !seen.insert((t, behind)) {
            continue;
        }
        let Some((n, _)) = graph.producer(t) else {
            if graph.inputs().contains(&t) && !graph.is_constant(t) {
                input = true;
                label |= !behind;
            }
            continue;
        };
        let behind = behind || graph.weight_layer(n.id()).is_some();
        stack.extend(
            n.inputs()
                .iter()
                .filter(|i| !i.is_empty())
                .map(|i| (i.as_str(), behind)),
        );
    }
    match (input, label) {
        (_, true) => TermKind::Data,
        (true, false) => TermKind::SelfComparison,
        (false, _) => TermKind::Penalty,
    }
}

/// A term's value before a constant scalar weight multiplies (or divides) it.
fn unweighted(graph: &Graph<'_>, probe: &Probe, tensor: &str) -> Option<f64> {
    let (n, _) = graph.producer(tensor)?;
    if !(n.is("Mul") || n.is("Div")) {
        return None;
    }
    let (a, b) = (n.input(0)?, n.input(1)?);
    let core = match (graph.scalar(a), graph.scalar(b)) {
        (None, Some(_)) => a,
        (Some(_), None) if n.is("Mul") => b,
        _ => return None,
    };
    probe
        .summary(core)
        .filter(|s| s.elements() == 1)
        .map(|s| s.mean())
}

/// The graph outputs computed by an `Add`: the sums whose terms both halves split.
fn summed_outputs<'g, 'm>(
    graph: &'g Graph<'m>,
) -> impl Iterator<Item = (&'m str, crate::graph::NodeRef<'g, 'm>)> + 'g {
    graph.outputs().iter().filter_map(|&output| {
        let (sum, _) = graph.producer(output)?;
        sum.is("Add").then_some((output, sum))
    })
}

/// The items with the smallest and the largest `key`.
fn extremes<T>(items: &[T], key: impl Fn(&T) -> f64) -> Option<(&T, &T)> {
    let lo = items.iter().min_by(|a, b| key(a).total_cmp(&key(b)))?;
    let hi = items.iter().max_by(|a, b| key(a).total_cmp(&key(b)))?;
    Some((lo, hi))
}

/// The terms of a measured sum: each addend's value, from the probe or a
/// constant. tract folds a term computed from weights alone (a penalty) into
/// a constant it never evaluates; one such term is the total minus the others.
fn values<'m>(
    graph: &Graph<'m>,
    probe: &Probe,
    total: &'m str,
    terms: &mut Vec<(&'m str, f64)>,
) -> bool {
    let mut found: Vec<(&'m str, Option<f64>)> = Vec::new();
    if !addends(graph, probe, total, &mut found, 0) {
        return false;
    }
    let unknown = found.iter().filter(|(_, v)| v.is_none()).count();
    if unknown > 0 {
        let Some(sum) = probe.summary(total).filter(|s| s.elements() == 1) else {
            return false;
        };
        if unknown > 1 {
            return false;
        }
        let known: f64 = found.iter().filter_map(|(_, v)| *v).sum();
        for (_, v) in &mut found {
            v.get_or_insert(sum.mean() - known);
        }
    }
    terms.extend(found.into_iter().map(|(t, v)| (t, v.unwrap_or(f64::NAN))));
    true
}

fn addends<'m>(
    graph: &Graph<'m>,
    probe: &Probe,
    tensor: &'m str,
    terms: &mut Vec<(&'m str, Option<f64>)>,
    depth: usize,
) -> bool {
    if depth > 64 {
        return false;
    }
    if let Some((n, _)) = graph.producer(tensor) {
        if n.is("Add") && n.inputs().len() == 2 {
            return n
                .inputs()
                .iter()
                .all(|t| addends(graph, probe, t, terms, depth + 1));
        }
    }
    // A loss term is a scalar: a value of one element with a batch axis is
    // one sample's output (a model probed with a single-sample batch), not a
    // term of a loss.
    let value = match probe.summary(tensor) {
        Some(s) if s.elements() == 1 && s.shape.is_empty() => Some(s.mean()),
        Some(_) => return false,
        None => graph.scalar(tensor),
    };
    terms.push((tensor, value));
    true
}

/// Splits a sum into weighted terms. Fails when a term is not loss-like.
fn collect(graph: &Graph<'_>, tensor: &str, terms: &mut Vec<Term>, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    let Some((n, _)) = graph.producer(tensor) else {
        return false;
    };
    if n.is("Add") && (0..2).all(|i| n.input(i).is_some_and(|t| !graph.is_constant(t))) {
        return (0..2).all(|i| {
            n.input(i)
                .is_some_and(|t| collect(graph, t, terms, depth + 1))
        });
    }
    let (weight, scaled_by, core) = if n.is("Mul") || n.is("Div") {
        let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
            return false;
        };
        match (graph.scalar(a), graph.scalar(b)) {
            (None, Some(w)) if n.is("Mul") => (w.abs(), Some(n.id()), a),
            (Some(w), None) if n.is("Mul") => (w.abs(), Some(n.id()), b),
            (None, Some(w)) if w != 0.0 => (1.0 / w.abs(), Some(n.id()), a),
            _ => return false,
        }
    } else {
        (1.0, None, tensor)
    };
    let Origin::Node(source) = graph.origin(core) else {
        return false;
    };
    if !LOSS_OPS.iter().any(|op| graph.node(source).is(op)) {
        return false;
    }
    terms.push(Term {
        weight,
        scaled_by,
        source,
    });
    true
}

fn trim(v: f64) -> String {
    crate::onnx::printer::format_f64(v)
}

fn format_ratio(r: f64) -> String {
    if r >= 1e4 {
        format!("{r:.0e}x")
    } else {
        format!("{r:.0}x")
    }
}
