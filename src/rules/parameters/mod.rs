//! NN3xx: parameters, initialization and normalization (section 4).

// One module per rule file, declared by build.rs.
include!(concat!(env!("OUT_DIR"), "/rules_parameters.rs"));
