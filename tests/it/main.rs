//! The integration tests, in one binary: tract and candle are linked once,
//! and the test threads share the fixtures between the groups.
//!
//! Run one group with its module path, for example
//! `cargo test --locked --test it -- ui::` or `-- rule_matrix::`.

mod common;

mod cli;
mod coverage;
mod diff;
mod gradients;
mod hostile;
mod html;
mod integrations;
mod printer;
mod probe;
mod robustness;
mod rule_matrix;
mod rules;
mod text;
mod ui;
mod workflow;
