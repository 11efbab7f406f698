//! The operator census: which operators the models under some folders use,
//! as the gradient engine sees them (each main graph lowered for gradients,
//! as the backward pass lowers it), and which of those have no backward.
//! A node of another domain, or one holding a subgraph (`If`, `Loop`,
//! `Scan`), has none; nnlint's own operators (the lowering's) have one.
//!
//!     cargo build --release --example op_census
//!     target/release/examples/op_census FOLDER [FOLDER ...]
//!
//! Prints one row per operator (models using it, nodes, whether it has a
//! backward), then a summary line; exits 1 when some operator has none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nnlint::onnx::printer::{print_model, Values};
use nnlint::probe::backward::ops::OPERATORS;
use nnlint::probe::lower::{lower_for_gradients, DETACH};
use nnlint::probe::normalize::OP_TYPE;

fn models(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            models(&p, out);
        } else if p.extension().is_some_and(|e| e == "onnx") {
            out.push(p);
        }
    }
}

#[derive(Default)]
struct Count {
    models: usize,
    nodes: usize,
    /// The first model (in path order) that uses it.
    example: String,
}

fn main() {
    let folders: Vec<String> = std::env::args().skip(1).collect();
    if folders.is_empty() {
        eprintln!("usage: op_census FOLDER [FOLDER ...]");
        std::process::exit(2);
    }
    let mut paths = Vec::new();
    for f in &folders {
        models(Path::new(f), &mut paths);
    }
    let mut census: BTreeMap<String, Count> = BTreeMap::new();
    let (mut read, mut unread) = (0usize, Vec::new());
    for path in &paths {
        let model = match nnlint::onnx::load::load(path) {
            Ok(m) => m,
            Err(e) => {
                unread.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let source = print_model(&model.proto, Values::Elide);
        let graphs = nnlint::graph::build(&model, &source);
        let Some(main) = graphs.first() else {
            continue;
        };
        let lowered = match lower_for_gradients(main) {
            Ok(l) => l,
            Err(e) => {
                unread.push(format!("{}: cannot lower: {e}", path.display()));
                continue;
            }
        };
        read += 1;
        let mut here: BTreeMap<String, usize> = BTreeMap::new();
        for n in &lowered.nodes {
            let domain = n.domain.as_str();
            let name = if domain.is_empty() || domain == "ai.onnx" {
                n.op_type.clone()
            } else {
                format!("{domain}.{}", n.op_type)
            };
            let name = if n.attribute.iter().any(|a| a.subgraphs().next().is_some()) {
                format!("{name} (subgraph)")
            } else {
                name
            };
            *here.entry(name).or_default() += 1;
        }
        for (op, nodes) in here {
            let c = census.entry(op).or_default();
            c.models += 1;
            c.nodes += nodes;
            if c.example.is_empty() {
                c.example = path.display().to_string();
            }
        }
    }
    // nnlint's own operators, which the lowering writes and the engine computes.
    let own = [OP_TYPE, DETACH];
    let covered = |op: &str| OPERATORS.binary_search(&op).is_ok() || own.contains(&op);
    println!(
        "{:<36} {:>6} {:>8}  backward",
        "operator", "models", "nodes"
    );
    for (op, c) in &census {
        let mark = if covered(op) { "yes" } else { "NO" };
        println!("{op:<36} {:>6} {:>8}  {mark}", c.models, c.nodes);
    }
    for u in &unread {
        println!("not read: {u}");
    }
    let missing: Vec<String> = census
        .iter()
        .filter(|(op, _)| !covered(op))
        .map(|(op, c)| format!("{op} ({} models, e.g. {})", c.models, c.example))
        .collect();
    println!(
        "op census: {} operators in {read} models ({} not read); {} without a backward{}{}",
        census.len(),
        unread.len(),
        missing.len(),
        if missing.is_empty() { "" } else { ": " },
        missing.join(", ")
    );
    if !missing.is_empty() {
        std::process::exit(1);
    }
}
