//! NN5xx: `nnlint diff`, on two checkpoints of one model.

// One module per rule file, declared by build.rs.
include!(concat!(env!("OUT_DIR"), "/rules_checkpoints.rs"));
