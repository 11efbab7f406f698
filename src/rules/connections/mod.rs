//! NN2xx: intermediate outputs and connections (section 3).

// One module per rule file, declared by build.rs.
include!(concat!(env!("OUT_DIR"), "/rules_connections.rs"));
