//! What the probe measured on one model, as values: the json report carries
//! them and the html page draws them. They are filled where the probe's
//! summaries are read; no renderer computes a statistic.

use serde::Serialize;

/// One model's measurements. A non-finite number is written as `null`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Measurements {
    /// Samples in the probe's batch.
    pub batch: usize,
    /// Samples the backward pass ran on, when it ran: the batch's first,
    /// fewer than the batch when the budget could not hold it all.
    pub gradient_samples: Option<usize>,
    /// The layers the pass computed, in the order it computed them.
    pub layers: Vec<LayerMeasure>,
    /// The data losses, or the classifier heads' cross-entropy on random labels.
    pub losses: Vec<LossMeasure>,
    /// The one-batch fit, when it ran.
    pub fit: Option<FitCurve>,
    /// The thresholds the rules judge these numbers by.
    pub bands: Bands,
}

/// One layer: a weight layer, an activation, or a normalization.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerMeasure {
    pub node: String,
    pub op: String,
    /// The tensor measured: the node's first output.
    pub tensor: String,
    pub mean: f64,
    /// The standard deviation of its values (the activation spread).
    pub std: f64,
    /// NaN and infinite values in it.
    pub non_finite: u64,
    /// For a ReLU: the fraction of its units never positive over the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_fraction: Option<f64>,
    /// For a sigmoid or tanh: the fraction of its units saturated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturated_fraction: Option<f64>,
    /// For a weight layer: its weight, and the norm of the loss's gradient
    /// for it when the backward pass ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gradient_norm: Option<f64>,
}

/// The initial loss against the value an untrained model scores.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LossMeasure {
    pub node: String,
    /// What was measured, in words.
    pub what: &'static str,
    pub value: f64,
    pub classes: usize,
    /// -ln(1/C), or ln 2 for a binary loss.
    pub expected: f64,
    /// Outside `initial-loss`'s ratio of `expected`, either way.
    pub off: bool,
}

/// The loss at each step of the one-batch fit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FitCurve {
    pub losses: Vec<f64>,
    /// The loss that counts as fitted.
    pub goal: f64,
    pub lr: f64,
    pub samples: usize,
    /// A first attempt at a higher rate that spiked and stalled; the fit
    /// then restarted from the initial weights at `lr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unstable: Option<FitAttempt>,
}

/// An attempt of the fit that was given up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FitAttempt {
    pub lr: f64,
    pub losses: Vec<f64>,
}

/// The rules' thresholds, as configured for the model.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Bands {
    /// `activation-scale`: the spread the first weight layer receives, and
    /// the range around it (times `low` and `high`) the rule accepts.
    pub reference_spread: Option<f64>,
    pub spread: (f64, f64),
    /// `dead-relu`'s `measured-fraction`.
    pub dead_fraction: f64,
    /// `saturated-activation`'s `unit-fraction`.
    pub saturated_fraction: f64,
    /// `initial-loss`'s `ratio`: how far from -ln(1/C), either way, it fires.
    pub loss_ratio: f64,
}
