//! NaN or infinity stored in the model.

use super::{Category, Check, Pass, Rule, RuleMeta};
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NORMALIZATION_OPS};

pub static META: RuleMeta = RuleMeta {
    name: "non-finite",
    code: "NN203",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Connections,
    summary: "an initializer or constant holds NaN or infinity",
    options: &[],
    explanation: include_str!("../../rules/non-finite.md"),
};

pub struct NonFinite;

impl Rule for NonFinite {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let stored = graph
            .initializers()
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    graph.source().value(graph.scope(), &t.name),
                    None,
                )
            })
            .chain(
                graph
                    .nodes_of("Constant")
                    .filter_map(|n| Some((n.output(0)?, Some(n.span().call), Some(n.name())))),
            );
        for (name, span, node) in stored {
            let Some(st) = graph.stats(name) else {
                continue;
            };
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
            let span = span.unwrap_or_else(|| graph.source().graph(graph.scope()));
            let mut d = Diagnostic::new(&META, format!("`{name}` holds {what}"))
                .primary(span, format!("first at flat index {}", first.unwrap_or(0)))
                .note(format!("{} of {} elements are not finite; every output they touch becomes NaN", nan + inf, st.count))
                .help("re-export from a checkpoint saved before the values diverged, or find what wrote them");
            if let Some(n) = node {
                d = d.with_node(n);
            }
            out.push(d);
        }
    }
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
