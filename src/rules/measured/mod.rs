//! NN4xx: what only the probe's forward and backward passes measure.

pub mod activation_scale;
pub mod cannot_overfit;
pub mod initial_loss;
pub mod probe_skipped;
pub mod saturated_activation;
