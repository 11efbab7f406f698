//! NN0xx: the model file itself: whether it reads and is a valid graph, and leftovers that do no harm.

pub mod dead_node;
pub mod duplicate_node_name;
pub mod invalid_graph;
pub mod syntax_error;
pub mod unused_initializer;
pub mod unused_input;
pub mod unused_suppression;
