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
//! - **Weight-layer weights**, judged by what random weights are, not by
//!   which initializer drew them: a fresh tensor is i.i.d. at whatever
//!   spread its author chose (std 3 and std 0.01 included). Its kurtosis and
//!   largest value match a uniform, normal or truncated normal draw; its
//!   units' square norms spread no more than independent draws give; the top
//!   singular value of a leading block stays inside the Marchenko-Pastur
//!   edge (Martin & Mahoney's random-matrix view of trained layers, and
//!   WeightWatcher's). Training leaves structure: heavy tails, spread unit
//!   norms, singular values above the edge. Each layer is judged
//!   ([`layer_states`]), then the model by the share of weight values in
//!   layers that look random.
//!
//! Weights are read from initializers and from `Constant` nodes alike, in
//! every graph of the model (the branches of an `If` included).

use super::{Graph, WeightLayer, NORMALIZATION_OPS};

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

/// How far a random draw's sample kurtosis may stray from its shape's, in
/// standard errors of a normal sample's kurtosis (`sqrt(24 / n)`), plus a
/// floor for the shapes' own variants.
const KURTOSIS_ERRORS: f64 = 4.0;
const KURTOSIS_FLOOR: f64 = 0.08;

/// How far the spread of units' square norms may exceed what independent
/// draws give, in standard errors of a spread measured over `R` units
/// (`1 / sqrt(2R)`), plus a floor.
const ROW_ERRORS: f64 = 4.0;
const ROW_FLOOR: f64 = 0.05;

/// The largest top singular value, over the random-matrix edge, that a
/// random block reaches: 1.07 in 40 draws of every size from 8 x 27 to
/// 512 x 512, normal and uniform (`SPECTRAL_ROWS`-bounded blocks).
const SPECTRAL_RANDOM: f64 = 1.12;

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
    // The largest weight that shows training, and what it shows.
    let mut witness: Option<(usize, String)> = None;
    for g in graphs {
        let (n, f) = normalization_layers(g);
        norms += n;
        fresh_norms += f;
        let layers = layer_states(g);
        if let Some(l) = layers
            .iter()
            .filter(|l| !l.random())
            .max_by_key(|l| l.evidence.elements)
            .filter(|l| {
                witness
                    .as_ref()
                    .is_none_or(|(n, _)| *n < l.evidence.elements)
            })
        {
            let why = l.evidence.structure().into_iter().next();
            let why =
                why.unwrap_or_else(|| "its bias moved from where initializers leave it".into());
            witness = Some((
                l.evidence.elements,
                format!("`{}`: {why}", g.tensor_name(l.weight)),
            ));
        }
        let judged = layers.iter().map(|l| (l.random(), l.evidence.elements));
        for (fresh, count) in judged.chain(recurrent_weights(g)) {
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
            format!("{of} look like independent draws, as an initializer leaves them"),
        )
    } else {
        let why = witness.map(|(_, w)| format!("; {w}")).unwrap_or_default();
        decided(
            ModelState::Trained,
            format!("only {of} look like independent draws{why}"),
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

/// The shapes initializers draw from, by their kurtosis and the largest
/// magnitude a draw of `n` values reaches, in standard deviations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Draw {
    /// `uniform_`, Kaiming and Glorot uniform, torch's default: kurtosis 1.8,
    /// bounded by `sqrt(3)` standard deviations.
    Uniform,
    /// Truncated at two standard deviations of the untruncated normal
    /// (Keras', flax's, `trunc_normal_(a=-2 std)`): kurtosis 2.37.
    TruncatedNormal,
    /// `normal_`, Kaiming and Glorot normal, orthogonal: kurtosis 3.
    Normal,
}

impl Draw {
    pub fn as_str(self) -> &'static str {
        match self {
            Draw::Uniform => "uniform",
            Draw::TruncatedNormal => "truncated normal",
            Draw::Normal => "normal",
        }
    }

    fn kurtosis(self) -> f64 {
        match self {
            Draw::Uniform => 1.8,
            Draw::TruncatedNormal => 2.37,
            Draw::Normal => 3.0,
        }
    }

    /// The largest magnitude a draw of `n` values reaches, in standard
    /// deviations, with room for chance.
    fn tail_bound(self, n: f64) -> f64 {
        match self {
            Draw::Uniform => 3f64.sqrt() * 1.02,
            Draw::TruncatedNormal => 2.0 / 0.8796 * 1.02,
            Draw::Normal => {
                // The expected largest of n normal magnitudes, plus a margin.
                let l = (2.0 * (2.0 * n).ln()).sqrt();
                l - ((2.0 * n).ln().ln() + (4.0 * std::f64::consts::PI).ln()) / (2.0 * l) + 1.0
            }
        }
    }
}

/// What a weight tensor's values say about how it came to be, measured
/// without reference to any initializer's scale: a fresh tensor is i.i.d.
/// at whatever spread its author chose; training leaves structure.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WeightEvidence {
    pub elements: usize,
    pub std: f64,
    pub kurtosis: f64,
    /// The initializer shape the kurtosis and tails match, if any.
    pub draw: Option<Draw>,
    /// The spread of the units' square norms over what independent draws
    /// give (1 for i.i.d. values), and the units measured; `None` without units.
    pub rows: Option<(f64, usize)>,
    /// The largest singular value over the random-matrix edge (see
    /// [`super::TensorStats::spectral`]).
    pub spectral: Option<f64>,
}

impl WeightEvidence {
    /// The top singular value, over the edge, when it is above what a
    /// random block reaches.
    fn spectral_beyond(&self) -> Option<f64> {
        self.spectral.filter(|&s| s > SPECTRAL_RANDOM)
    }

    /// The units' norm spread, and the units, when it is above what
    /// independent draws give.
    fn rows_beyond(&self) -> Option<(f64, usize)> {
        self.rows.filter(|&(r, u)| r > row_bound(u))
    }

    /// The structure random draws do not have, strongest first, in words;
    /// empty when the tensor looks like one draw.
    pub fn structure(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = self.spectral_beyond() {
            out.push(format!(
                "its top singular value is {s:.2}x the random-matrix edge"
            ));
        }
        if let Some((r, units)) = self.rows_beyond() {
            out.push(format!(
                "its {units} units' norms are {r:.2}x as spread as independent draws give"
            ));
        }
        if self.draw.is_none() {
            let n = self.elements as f64;
            let heavy = self.kurtosis > Draw::Normal.kurtosis() + kurtosis_tolerance(n);
            out.push(if heavy {
                format!(
                    "its values are heavy-tailed (kurtosis {:.2})",
                    self.kurtosis
                )
            } else {
                format!(
                    "its values have a shape no initializer draws (kurtosis {:.2})",
                    self.kurtosis
                )
            });
        }
        out
    }

    /// Whether the tensor looks like one draw: [`WeightEvidence::structure`]
    /// would be empty, decided without writing its words.
    pub fn random(&self) -> bool {
        self.draw.is_some() && self.spectral_beyond().is_none() && self.rows_beyond().is_none()
    }

    /// Whether the units' norms are as spread as independent draws give,
    /// not only no more: norms far more alike than that (an orthogonal
    /// initializer's, or a layer trained under a norm constraint) are not
    /// one i.i.d. draw, whatever they say of training.
    pub fn rows_independent(&self) -> bool {
        self.rows
            .is_some_and(|(r, u)| r <= row_bound(u) && r >= 2.0 - row_bound(u))
    }

    /// The measurements in one phrase: `std 0.02, kurtosis 3.02, unit-norm spread 1.01x, ...`.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("std {}", crate::diag::short_number(self.std)),
            format!("kurtosis {:.2}", self.kurtosis),
        ];
        if let Some((r, _)) = self.rows {
            parts.push(format!("unit-norm spread {r:.2}x"));
        }
        if let Some(s) = self.spectral {
            parts.push(format!("top singular value {s:.2}x the edge"));
        }
        parts.join(", ")
    }
}

fn kurtosis_tolerance(n: f64) -> f64 {
    KURTOSIS_ERRORS * (24.0 / n).sqrt() + KURTOSIS_FLOOR
}

fn row_bound(units: usize) -> f64 {
    1.0 + ROW_ERRORS / (2.0 * units as f64).sqrt() + ROW_FLOOR
}

/// The evidence of a stored float tensor with `units` output units (its
/// square norms per unit in the summary); `None` when it says too little:
/// too small, constant, or not finite (other rules speak to those).
pub fn weight_evidence(s: &super::TensorStats, units: Option<usize>) -> Option<WeightEvidence> {
    if s.count < MIN_ELEMENTS || s.all_equal || s.nan + s.inf > 0 || s.std <= 0.0 {
        return None;
    }
    let n = s.count as f64;
    let tails = (s.max_abs - s.mean.abs()).max(0.0) / s.std;
    let draw = [Draw::Uniform, Draw::TruncatedNormal, Draw::Normal]
        .into_iter()
        .find(|d| {
            (s.kurtosis - d.kurtosis()).abs() <= kurtosis_tolerance(n) && tails <= d.tail_bound(n)
        });
    let rows = units.zip(s.unit_sq.as_ref()).and_then(|(units, sq)| {
        let fan = s.count / units.max(1);
        if units < 4 || fan < 2 || sq.len() != units {
            return None;
        }
        let e2 = s.std * s.std + s.mean * s.mean;
        let expected = ((s.mean4 - e2 * e2).max(0.0) / fan as f64).sqrt() / e2;
        let mean = sq.iter().sum::<f64>() / units as f64;
        let var = sq.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / units as f64;
        (expected > 0.0 && mean > 0.0).then(|| ((var.sqrt() / mean) / expected, units))
    });
    Some(WeightEvidence {
        elements: s.count,
        std: s.std,
        kurtosis: s.kurtosis,
        draw,
        rows,
        spectral: s.spectral,
    })
}

/// One weight layer's state, as its weight and bias tell.
#[derive(Clone, Debug)]
pub struct LayerState {
    pub node: super::NodeId,
    pub weight: super::TensorId,
    pub evidence: WeightEvidence,
    /// Whether the bias is as initializers leave it (see `fresh_bias`).
    pub fresh_bias: bool,
}

impl LayerState {
    /// Whether the layer looks as an initializer left it.
    pub fn random(&self) -> bool {
        self.fresh_bias && self.evidence.random()
    }
}

/// The state of every weight layer of a graph that has enough float values
/// to judge, in node order.
pub fn layer_states(g: &Graph<'_>) -> Vec<LayerState> {
    let state = |l: &WeightLayer<'_>| {
        let s = g.stats_of(l.weight_id)?;
        let fan_in = l.fan_in.filter(|&f| f > 0)? as f64;
        Some(LayerState {
            node: l.node,
            weight: l.weight_id,
            evidence: weight_evidence(s, l.units)?,
            fresh_bias: fresh_bias(g, l, fan_in)?,
        })
    };
    crate::parallel::ranges(g.node_count(), |nodes| {
        nodes
            .filter_map(|id| g.weight_layer(id))
            .filter_map(state)
            .collect()
    })
}

/// The weights of the recurrent ops (`LSTM`, `GRU`, `RNN`): the input
/// weights `W` `[directions, gates * hidden, input]` and the recurrent
/// weights `R` `[directions, gates * hidden, hidden]`, judged by their
/// values' shape alone (no units are summarized for them).
fn recurrent_weights(g: &Graph<'_>) -> Vec<(bool, usize)> {
    let mut out = Vec::new();
    for n in g.nodes() {
        if !n.domain_is_default() || !matches!(n.op_type(), "LSTM" | "GRU" | "RNN") {
            continue;
        }
        for slot in [1, 2] {
            let Some(t) = n.input_id(slot) else { continue };
            if let Some(e) = g.stats_of(t).and_then(|s| weight_evidence(s, None)) {
                out.push((e.random(), e.elements));
            }
        }
    }
    out
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
    /// The weights were trained (for rules about checkpoints).
    Trained,
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
            Premise::Trained => "the weights were trained",
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
            Premise::Trained => {
                "the model state is trained (decided from the weights, or `--model-state`)"
            }
            Premise::RepresentativeInputs => {
                "the model is untrained or unknown (its design assumes standardized inputs), or every float input is given with `--input`"
            }
            Premise::LossInGraph => {
                "the graph computes a loss against labels or targets: a loss op, or a cross-entropy, binary cross-entropy, KL, focal, contrastive, squared, absolute or Huber loss written out"
            }
            Premise::TrainingExport => {
                "the graph has a Dropout, a training-mode BatchNormalization, or torch's training-mode metadata"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(rows: Option<(f64, usize)>) -> WeightEvidence {
        WeightEvidence {
            elements: 6400,
            std: 0.2,
            kurtosis: 3.0,
            draw: Some(Draw::Normal),
            rows,
            spectral: Some(0.95),
        }
    }

    /// Norms far more alike than independent draws give still count as
    /// untrained for the model's state, but not as one i.i.d. draw.
    #[test]
    fn units_norms_must_spread_as_draws_do_on_both_sides() {
        // 200 units: independent draws give 1 +- 4 / sqrt(400) + 0.05.
        for (spread, random, independent) in [
            (1.0, true, true),
            (0.8, true, true),
            (0.7, true, false),
            (0.19, true, false),
            (1.2, true, true),
            (1.3, false, false),
        ] {
            let e = evidence(Some((spread, 200)));
            assert_eq!(e.random(), random, "{spread}");
            assert_eq!(e.rows_independent(), independent, "{spread}");
        }
        assert!(!evidence(None).rows_independent());
    }
}
