//! Whether a model's weights are still at initialization, decided once from
//! its stored values, before any rule runs.
//!
//! Several rules only make sense at one point of a model's life: an init
//! scale is judged against an initializer, an initial loss against chance.
//! A trained model shipped inside a package is a different thing, and
//! judging it as a fresh one is the commonest false alarm a linter for
//! models can raise. The evidence, strongest first:
//!
//! - **Quantized weights.** Nobody quantizes a model before training it.
//! - **Normalization layers.** Every framework initializes their scales to 1
//!   and their shifts to 0 (or another single value), and training gives
//!   every channel its own.
//! - **Weight-layer weights.** A fresh weight is a draw from one of the
//!   frameworks' initializers: uniform or (truncated) normal, mean zero, its
//!   spread set by the fan-in or fan-out. Trained weights keep neither the
//!   scale nor the light tails: a uniform draw has `max|w| = sqrt(3) std`, a
//!   normal one about `sqrt(2 ln 2n) std`, a trained one typically 10x its
//!   std or more.
//!
//! Weights are read from initializers and from `Constant` nodes alike, in
//! every graph of the model (the branches of an `If` included).

use super::{Graph, LayerKind, WeightLayer, NORMALIZATION_OPS};

/// Where a model is in its life, as its weights tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelState {
    /// Weights as an initializer drew them.
    Untrained,
    /// Weights moved by training (or quantized after it).
    Trained,
    /// Too few weights to tell.
    Unknown,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Untrained => "untrained",
            ModelState::Trained => "trained",
            ModelState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ModelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state and the evidence that decided it, in one line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StateDecision {
    pub state: ModelState,
    /// Lowercase, no trailing period: `all 20 normalization layers ...`.
    pub evidence: String,
    /// Set by `--model-state` or the `model-state` key rather than decided.
    pub forced: bool,
}

/// Weights with fewer elements say too little about how they were drawn.
const MIN_ELEMENTS: usize = 64;

/// From this many elements a uniform shape alone marks a fresh draw.
const SHAPE_ELEMENTS: usize = 256;

/// How far a fresh weight's spread may stray from the scheme it matches,
/// in standard errors of a sample standard deviation (`1 / sqrt(2n)`
/// relative), and at least.
const SCALE_ERRORS: f64 = 2.5;
const SCALE_TOLERANCE: f64 = 0.05;

/// Ops that only quantized models contain.
const QUANTIZED_OPS: &[&str] = &[
    "ConvInteger",
    "MatMulInteger",
    "QLinearConv",
    "QLinearMatMul",
    "DynamicQuantizeLinear",
    "DequantizeLinear",
    "QuantizeLinear",
];

/// Decides the state of a model from all of its graphs (the main graph first).
pub fn decide(graphs: &[Graph<'_>]) -> StateDecision {
    let decided = |state, evidence: String| StateDecision {
        state,
        evidence,
        forced: false,
    };
    if let Some(op) = graphs
        .iter()
        .flat_map(|g| g.nodes())
        .find(|n| n.domain_is_default() && QUANTIZED_OPS.contains(&n.op_type()))
        .map(|n| n.op_type())
    {
        return decided(
            ModelState::Trained,
            format!("its weights are quantized (`{op}`), which follows training"),
        );
    }
    let (mut norms, mut fresh_norms) = (0usize, 0usize);
    // Tensors, and their elements: a large layer says more than a small one.
    let (mut weights, mut fresh_weights) = (0usize, 0usize);
    let (mut values, mut fresh_values) = (0usize, 0usize);
    for g in graphs {
        let (n, f) = normalization_layers(g);
        norms += n;
        fresh_norms += f;
        let layers = g.weight_layers().filter_map(|l| fresh_weight(g, l));
        for (fresh, count) in layers.chain(recurrent_weights(g)) {
            weights += 1;
            values += count;
            if fresh {
                fresh_weights += 1;
                fresh_values += count;
            }
        }
    }
    if norms > 0 {
        let moved = norms - fresh_norms;
        let layers = |n: usize| match (n, norms) {
            (_, 1) => "its normalization layer has".to_string(),
            (n, _) if n == norms => format!("all {norms} normalization layers have"),
            (n, _) => format!("{n} of {norms} normalization layers have"),
        };
        return if moved == 0 {
            decided(
                ModelState::Untrained,
                format!(
                    "{} one scale and one shift for every channel, as initialized",
                    layers(norms)
                ),
            )
        } else {
            decided(
                ModelState::Trained,
                format!("{} learned a scale or shift per channel", layers(moved)),
            )
        };
    }
    if weights == 0 {
        return decided(
            ModelState::Unknown,
            format!("no weight layer has {MIN_ELEMENTS} or more float weights to judge"),
        );
    }
    let share = 100.0 * fresh_values as f64 / values as f64;
    let of = format!("{fresh_weights} of {weights} weight tensors ({share:.0}% of their values)");
    if 2 * fresh_values >= values {
        decided(
            ModelState::Untrained,
            format!("{of} look as an initializer draws them"),
        )
    } else {
        decided(
            ModelState::Trained,
            format!("only {of} look as an initializer draws them"),
        )
    }
}

/// Counts the normalization layers whose scale and shift are stored, and of
/// those the ones still as initialized: one value across all channels
/// (frameworks use 1 and 0; ResNet's `zero_init_residual` a scale of 0).
/// Training gives every channel its own.
fn normalization_layers(g: &Graph<'_>) -> (usize, usize) {
    let at = |t: Option<&str>| {
        t.filter(|t| !t.is_empty())
            .and_then(|t| g.stats(t))
            .map(|s| s.count <= 1 || s.all_equal)
    };
    let (mut norms, mut fresh) = (0, 0);
    for n in g.nodes() {
        if !n.domain_is_default() || !NORMALIZATION_OPS.contains(&n.op_type()) {
            continue;
        }
        let (scale, shift) = (at(n.input(1)), at(n.input(2)));
        if scale.is_none() && shift.is_none() {
            continue;
        }
        norms += 1;
        fresh += (scale.unwrap_or(true) && shift.unwrap_or(true)) as usize;
    }
    (norms, fresh)
}

/// Whether a weight layer's weight (and bias) looks freshly initialized, and
/// its element count; `None` when it is too small, constant or not finite
/// (other rules speak to those).
fn fresh_weight(g: &Graph<'_>, l: &WeightLayer<'_>) -> Option<(bool, usize)> {
    let s = g.stats_of(l.weight_id)?;
    let fan_in = l.fan_in.filter(|&f| f > 0)? as f64;
    // Glorot counts a conv's receptive field on both sides.
    let receptive = match (l.kind, l.in_width) {
        (LayerKind::Conv, Some(w)) if w > 0 => {
            let groups = g.node(l.node).attr_i64("group").unwrap_or(1).max(1) as f64;
            (fan_in / (w as f64 / groups)).max(1.0)
        }
        _ => 1.0,
    };
    let fan_out = l.units.unwrap_or(1).max(1) as f64 * receptive;
    let fresh = drawn(s, fan_in, fan_out, &[])? && fresh_bias(g, l, fan_in)?;
    Some((fresh, s.count))
}

/// The weights of the recurrent ops (`LSTM`, `GRU`, `RNN`): the input
/// weights `W` `[directions, gates * hidden, input]` and the recurrent
/// weights `R` `[directions, gates * hidden, hidden]`. torch draws both
/// uniformly within `1/sqrt(hidden)`; Keras draws `R` orthogonal, entries
/// of spread `1/sqrt(hidden)`.
fn recurrent_weights(g: &Graph<'_>) -> Vec<(bool, usize)> {
    let mut out = Vec::new();
    for n in g.nodes() {
        if !n.domain_is_default() || !matches!(n.op_type(), "LSTM" | "GRU" | "RNN") {
            continue;
        }
        let Some(hidden) = n.attr_i64("hidden_size").filter(|&h| h > 0) else {
            continue;
        };
        let hidden = hidden as f64;
        for slot in [1, 2] {
            let Some(t) = n.input_id(slot) else { continue };
            let (Some(s), Some(stored)) = (g.stats_of(t), g.stored_of(t)) else {
                continue;
            };
            let d = stored.dims();
            let (Some(&rows), Some(&cols)) = (d.get(d.len().saturating_sub(2)), d.last()) else {
                continue;
            };
            if d.len() != 3 || rows <= 0 || cols <= 0 {
                continue;
            }
            let scheme = 1.0 / hidden.sqrt();
            if let Some(fresh) = drawn(s, cols as f64, rows as f64, &[scheme]) {
                out.push((fresh, s.count));
            }
        }
    }
    out
}

/// Whether a tensor's values look as an initializer draws them, for its fan-in
/// and fan-out, or at one of `extra` spreads; `None` when it says too little.
fn drawn(s: &super::TensorStats, fan_in: f64, fan_out: f64, extra: &[f64]) -> Option<bool> {
    if s.count < MIN_ELEMENTS || s.all_equal || s.nan + s.inf > 0 || s.std <= 0.0 {
        return None;
    }
    let n = s.count as f64;
    // A draw has mean zero up to its sampling error.
    if s.mean.abs() > 6.0 * s.std / n.sqrt() + 1e-3 * s.std {
        return Some(false);
    }
    let tails = s.max_abs / s.std;
    let tolerance = (SCALE_ERRORS / (2.0 * n).sqrt()).max(SCALE_TOLERANCE);
    let near = |expected: f64| (s.std / expected - 1.0).abs() <= tolerance;
    let mut scales = vec![
        1.0 / fan_in,
        2.0 / fan_in,
        3.0 / fan_in,
        1.0 / fan_out,
        2.0 / fan_out,
        2.0 / (fan_in + fan_out),
    ];
    scales.iter_mut().for_each(|v| *v = v.sqrt());
    scales.extend_from_slice(extra);
    let matches_scheme =
        |extra_scales: &[f64]| scales.iter().chain(extra_scales).any(|&std| near(std));
    // Uniform draws reach their bound, sqrt(3) std, and no further; training
    // does not keep that shape. With enough values the shape alone tells, at
    // any scale (a weight scaled at init is still a fresh one); a small
    // tensor must match a scheme's scale as well. torch's default draws
    // within 1/sqrt(fan_in), a spread of 1/sqrt(3 fan_in).
    let uniform = (1.6..=3f64.sqrt() * 1.02).contains(&tails)
        && (s.count >= SHAPE_ELEMENTS
            || matches_scheme(&[1.0 / (3.0 * fan_in).sqrt(), 1.0 / (3.0 * fan_out).sqrt()]));
    // Truncated normal draws (Keras' and flax's variance scaling) stop at two
    // standard deviations of the untruncated normal: 2 / 0.8796 std.
    let truncated = (2.05..=2.3).contains(&tails) && matches_scheme(&[]);
    // A normal draw's largest of n magnitudes sits near its expected value.
    let normal = {
        let l = (2.0 * (2.0 * n).ln()).sqrt();
        let expected = l - ((2.0 * n).ln().ln() + (4.0 * std::f64::consts::PI).ln()) / (2.0 * l);
        (expected - 0.7..=expected + 1.0).contains(&tails)
            // fixed scales: torchvision's heads, GPT-2 and BERT
            && matches_scheme(&[0.01, 0.02])
    };
    Some(uniform || truncated || normal)
}

/// Whether a weight layer's bias is as frameworks initialize it: within
/// torch's default bound `1/sqrt(fan_in)`, or zero (Keras, flax, a BatchNorm
/// folded at init). Values outside the bound count as an init too when they
/// all hold one value: an author's `bias.fill_(v)`, of all or some units. A
/// layer without a stored bias passes; `None` for a non-finite bias.
fn fresh_bias(g: &Graph<'_>, l: &WeightLayer<'_>, fan_in: f64) -> Option<bool> {
    let Some(b) = l.bias_id.and_then(|b| g.stats_of(b)) else {
        return Some(true);
    };
    if b.nan + b.inf > 0 {
        return None;
    }
    let bound = 1.001 / fan_in.sqrt();
    if b.all_equal || b.max_abs <= bound {
        return Some(true);
    }
    let Some(values) = &b.values else {
        return Some(false);
    };
    let mut outside = values.iter().filter(|v| v.abs() > bound);
    let first = outside.next();
    Some(outside.all(|v| Some(v) == first))
}

/// Something a rule takes for granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Premise {
    /// The weights are at initialization.
    Untrained,
    /// The probe's inputs resemble the data the model is (or will be) trained on.
    RepresentativeInputs,
    /// The architecture is still being built, so a design choice can still change.
    InDesign,
    /// The loss is part of the exported graph.
    LossInGraph,
    /// The graph was exported in training mode (Dropout and training BatchNorm kept).
    TrainingExport,
}

impl Premise {
    /// The premise in words, lowercase.
    pub fn describe(self) -> &'static str {
        match self {
            Premise::Untrained => "the weights are at initialization",
            Premise::RepresentativeInputs => "the probe's inputs resemble the training data",
            Premise::InDesign => "the architecture is still being built",
            Premise::LossInGraph => "the loss is part of the exported graph",
            Premise::TrainingExport => "the graph was exported in training mode",
        }
    }

    /// When nnlint takes the premise to hold, lowercase.
    pub fn holds_when(self) -> &'static str {
        match self {
            Premise::Untrained | Premise::InDesign => {
                "the model state is untrained or unknown (decided from the weights, or `--model-state`)"
            }
            Premise::RepresentativeInputs => {
                "the model is untrained or unknown (its design assumes standardized inputs), or every float input is given with `--input`"
            }
            Premise::LossInGraph => {
                "the graph contains a loss (`SoftmaxCrossEntropyLoss`, `NegativeLogLikelihoodLoss`, a decomposed binary cross-entropy)"
            }
            Premise::TrainingExport => {
                "the graph has a Dropout, a training-mode BatchNormalization, or torch's training-mode metadata"
            }
        }
    }
}
