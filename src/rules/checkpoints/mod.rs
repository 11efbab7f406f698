//! NN5xx: `nnlint diff`, on two checkpoints of one model.

pub mod frozen_weights;
pub mod graph_mismatch;
pub mod update_ratio;
