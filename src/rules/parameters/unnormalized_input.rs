//! Integer inputs cast to float and fed to a weight layer unscaled.

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::onnx::proto::data_type;
use crate::probe::{Fill, Probe};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const MAX_MEAN: RuleOption = RuleOption {
    name: "max-mean",
    default: 10.0,
    summary: "with --input data, a mean of larger magnitude fires",
};

const MAX_STD: RuleOption = RuleOption {
    name: "max-std",
    default: 10.0,
    summary: "with --input data, a larger standard deviation fires",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "unnormalized-input",
    code: "NN304",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Parameters,
    // The measured half judges the data against weights drawn for unit
    // variance; trained weights have adapted to the data's scale (a wake-word
    // head trained on embeddings of std 18).
    premises: &[requires(Premise::Untrained, Half::Measured, Unmet::Skip)],
    absorbs: &[],
    summary:
        "an integer input is cast to float and reaches a weight layer without scaling or centring",
    options: &[MAX_MEAN, MAX_STD],
    explanation: include_str!("../../../rules/unnormalized-input.md"),
};

pub(crate) struct UnnormalizedInput;

impl Rule for UnnormalizedInput {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn measures(&self) -> bool {
        true
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        self.measured(cx, probe, out);
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for &input in graph.inputs() {
            let Some(ty) = graph.elem_type(input) else {
                continue;
            };
            if !data_type::is_integer(ty) {
                continue;
            }
            for cast_use in graph.follow(input) {
                let cast = graph.node(cast_use.node);
                let to_float = cast
                    .attr_i64("to")
                    .is_some_and(|t| data_type::is_float(t as i32));
                if !cast.is("Cast") || !to_float {
                    continue;
                }
                let Some(floats) = cast.output(0) else {
                    continue;
                };
                for u in graph.follow(floats) {
                    let Some(layer) = graph.weight_layer(u.node) else {
                        continue;
                    };
                    if layer.data_slot != u.slot {
                        continue;
                    }
                    let l = graph.node(u.node);
                    let name = format!("`{input}`");
                    out.push(
                        Diagnostic::new(
                            &META,
                            format!("{} input {name} reaches a weight layer unscaled", data_type::name(ty)),
                        )
                        .with_node(cast.name())
                        .primary(cast.span().call, "cast to float here ...")
                        .secondary(l.op_span(), "... and multiplied by weights with nothing scaling it in between")
                        .note("raw integer ranges (0..255 for pixels) make the first layer's pre-activations hundreds of times too large")
                        .help("divide by the range (or subtract the mean and divide by the std) before the first layer"),
                    );
                }
            }
        }
    }
}

impl UnnormalizedInput {
    /// The measured half, with real data: a float input whose values are far
    /// from standardized reaches a weight layer as they are.
    fn measured(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let (max_mean, max_std) = (cx.option(&MAX_MEAN), cx.option(&MAX_STD));
        for input in &probe.run.inputs {
            let Fill::File(path) = &input.fill else {
                continue;
            };
            let Some(s) = probe.summary(&input.name) else {
                continue;
            };
            let (mean, std) = (s.mean(), s.std());
            if mean.abs() <= max_mean && std <= max_std {
                continue;
            }
            let Some(layer) = graph.follow(&input.name).into_iter().find(|u| {
                graph
                    .weight_layer(u.node)
                    .is_some_and(|l| l.data_slot == u.slot)
            }) else {
                continue;
            };
            let l = graph.node(layer.node);
            out.push(
                Diagnostic::new(
                    &META,
                    format!(
                        "input `{}` from `{}` has mean {} and standard deviation {}, and reaches a weight layer as it is",
                        input.name,
                        path.display(),
                        short(mean),
                        short(std)
                    ),
                )
                .with_node(l.name())
                .primary(l.span().call, "multiplied by weights here")
                .note(format!("inputs are expected standardized: |mean| up to {max_mean}, std up to {max_std}"))
                .help("standardize the data (subtract the mean, divide by the std) before the first layer"),
            );
        }
    }
}
