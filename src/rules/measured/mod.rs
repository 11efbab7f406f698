//! NN4xx: what only the probe's forward and backward passes measure.

// One module per rule file, declared by build.rs.
include!(concat!(env!("OUT_DIR"), "/rules_measured.rs"));
