//! Weights initialized far from the scale their fan-in and activation call for.

use crate::diag::{Diagnostic, Severity};
use crate::graph::Activation;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const FACTOR: RuleOption = RuleOption {
    name: "factor",
    default: 10.0,
    summary: "how far the std may stray from the expected scale, either way",
};

const MIN_ELEMENTS: RuleOption = RuleOption {
    name: "min-elements",
    default: 64.0,
    summary: "weights with fewer elements are skipped",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "init-scale",
    code: "NN306",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Parameters,
    premises: &[requires(Premise::Untrained, Half::Static, Unmet::Skip)],
    absorbs: &["cannot-overfit"],
    summary: "a weight's standard deviation is 10x or more off the scale its fan-in and activation call for",
    options: &[FACTOR, MIN_ELEMENTS],
    explanation: include_str!("../../../rules/init-scale.md"),
};

pub(crate) struct InitScale;

impl Rule for InitScale {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let factor = cx.option(&FACTOR);
        // Fewer elements give too noisy a standard deviation to judge.
        let min_elements = cx.option(&MIN_ELEMENTS);
        for layer in graph.weight_layers() {
            let Some(fan_in) = layer.fan_in.filter(|&f| f > 0) else {
                continue;
            };
            if graph.normalized_before_activation(layer.node) {
                continue; // normalization undoes the weight's scale
            }
            // A head has no depth after it to vanish or explode through:
            // its scale shows in the initial loss, which `initial-loss`
            // measures against chance.
            if graph.is_head(layer.node) {
                continue;
            }
            let Some(st) = graph.stats_of(layer.weight_id) else {
                continue;
            };
            if (st.count as f64) < min_elements
                || st.all_equal
                || st.nan + st.inf > 0
                || st.std == 0.0
            {
                continue; // `constant-weights` and `non-finite` speak to those
            }
            // What the layer passes on: a constant the graph multiplies its
            // output by (T5's `d_model ** -0.5` before its LM head, a layer
            // scale) is part of its scale.
            let (gain, scaled_by) = graph.constant_gain_after(layer.node);
            let std = st.std * gain;
            let activation = graph.activation_after(layer.node);
            let fan_in = fan_in as f64;
            let fan_out = layer.units.unwrap_or(1) as f64;
            // The schemes a careful author might have used for this activation.
            let (scheme, candidates): (&str, Vec<f64>) = match activation.map(|(_, a)| a) {
                Some(Activation::ReluLike) => ("He", vec![(2.0 / fan_in).sqrt()]),
                Some(Activation::Saturating) => (
                    "Glorot/LeCun",
                    vec![(2.0 / (fan_in + fan_out)).sqrt(), (1.0 / fan_in).sqrt()],
                ),
                None => ("LeCun", vec![(1.0 / fan_in).sqrt()]),
            };
            let ratio = |e: f64| std / e;
            let Some(expected) = candidates
                .iter()
                .copied()
                .min_by(|a, b| ratio(*a).ln().abs().total_cmp(&ratio(*b).ln().abs()))
            else {
                continue;
            };
            let r = ratio(expected);
            if (1.0 / factor..factor).contains(&r) {
                continue;
            }
            // A branch added back into a residual stream may start small
            // (GPT-2's scaled projections, std 0.02 on a narrow MLP, layer
            // scale): the stream beside it holds the signal's scale.
            let on_branch =
                graph.on_residual_branch(layer.node) || graph.ends_residual_branch(layer.node);
            if r < 1.0 && on_branch {
                continue;
            }
            let n = graph.node(layer.node);
            let (how, word) = if r >= factor {
                (r, "above")
            } else {
                (1.0 / r, "below")
            };
            let fmt = crate::onnx::printer::format_f64;
            let mut d = Diagnostic::new(
                &META,
                format!(
                    "weight `{}` starts {how:.0}x {word} {scheme} scale",
                    layer.weight_name
                ),
            )
            .with_node(n.name())
            .primary(
                n.span().call,
                match scaled_by {
                    Some(_) => format!(
                        "std {} for fan-in {fan_in} after the constant scale {}, expected about {}",
                        fmt(round3(std)),
                        fmt(round3(gain)),
                        fmt(round3(expected))
                    ),
                    None => format!(
                        "std {} for fan-in {fan_in}, expected about {}",
                        fmt(round3(std)),
                        fmt(round3(expected))
                    ),
                },
            );
            if let Some(m) = scaled_by {
                d = d.secondary(graph.node(m).op_span(), "the constant scale");
            }
            if let Some((act, _)) = activation {
                d = d.secondary(
                    graph.node(act).op_span(),
                    "the activation that sets the expected scale",
                );
            }
            out.push(
                d.note(if r >= factor {
                    "too large a scale saturates the activation or makes activations explode with depth"
                } else {
                    "too small a scale makes activations and gradients vanish with depth"
                })
                .help("use the framework's default initializer, or He (kaiming) for ReLU and Glorot (xavier) for tanh/sigmoid"),
            );
        }
    }
}

fn round3(v: f64) -> f64 {
    if v == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(2 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}
