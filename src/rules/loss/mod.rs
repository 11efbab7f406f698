//! NN1xx: the loss and the layers in front of it (the checklist's section 2).

// One module per rule file, declared by build.rs.
include!(concat!(env!("OUT_DIR"), "/rules_loss.rs"));
