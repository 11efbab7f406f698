//! NN0xx: the model file itself: whether it reads and is a valid graph, and leftovers that do no harm.

// One module per rule file, declared by build.rs.
include!(concat!(env!("OUT_DIR"), "/rules_file.rs"));
