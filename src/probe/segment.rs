//! Long graphs cut into consecutive pieces that tract reads, types and runs
//! one after another.
//!
//! tract's reader and typed model grow with the square of the graph: its
//! parser compares each constant with every one before it, and its typed
//! model checks each node it wires against the names of all before it, and
//! its plan orders the nodes to save memory at a cost that grows faster
//! still. A 20,000-node transformer-like graph took 29.7 s whole and 5.9 s in
//! pieces of 2,000. Cut into pieces of at most
//! [`NODES`] nodes, the same work is linear in the graph. Each piece reads
//! the graph's inputs it needs and the values earlier pieces computed for it
//! (they become its inputs, typed with what the earlier piece's typing knew,
//! constant values included), and hands on the values later pieces read.
//! Nodes that reach no output of the graph are dropped first, as tract's
//! plan drops them, so a cut graph computes what the whole one does.

use rustc_hash::{FxHashMap, FxHashSet};
use tract_onnx::pb;

/// Nodes a piece holds at most. On a 100,000-node chain, pieces of 2,000,
/// 1,000 and 500 took 19.3 s, 15.3 s and 14.5 s for the whole run: below
/// this, the pieces' own overhead takes back what their size saves.
pub const NODES: usize = 1_000;

/// One piece of a cut graph.
#[derive(Debug)]
pub struct Piece {
    /// The piece as a model of its own: its nodes, the initializers they
    /// read, and as inputs the graph's inputs they read, then the values
    /// earlier pieces computed for it. Its outputs are the values it computes
    /// for later pieces, then the graph's outputs it computes.
    pub proto: pb::ModelProto,
    /// The values earlier pieces computed that later pieces read and this
    /// one does not: what stays alive while it runs.
    pub kept: Vec<String>,
}

impl Piece {
    /// Its outputs' names, in order.
    pub fn outputs(&self) -> Vec<String> {
        self.proto
            .graph
            .as_ref()
            .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
            .unwrap_or_default()
    }
}

/// Cuts `proto` into pieces of at most `nodes` nodes. A graph no longer than
/// that, one with a subgraph (whose outer references a cut could split), or
/// one whose nodes are not in topological order stays whole: one piece with
/// nothing carried.
pub fn split(proto: pb::ModelProto, nodes: usize) -> Vec<Piece> {
    let whole = |proto| {
        vec![Piece {
            proto,
            kept: Vec::new(),
        }]
    };
    let Some(graph) = proto.graph.as_ref() else {
        return whole(proto);
    };
    if graph.node.len() <= nodes.max(1)
        || graph
            .node
            .iter()
            .flat_map(|n| &n.attribute)
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    {
        return whole(proto);
    }
    let Some(order) = live_nodes(graph) else {
        return whole(proto);
    };
    let chunks: Vec<&[usize]> = order.chunks(nodes.max(1)).collect();
    if chunks.len() < 2 {
        return whole(proto);
    }
    // Which piece computes each value, and the last piece that reads it.
    let mut made_in: FxHashMap<&str, usize> = FxHashMap::default();
    let mut last_read: FxHashMap<&str, usize> = FxHashMap::default();
    for (k, chunk) in chunks.iter().enumerate() {
        for &i in *chunk {
            let n = &graph.node[i];
            for input in n.input.iter().filter(|s| !s.is_empty()) {
                last_read.insert(input, k);
            }
            for output in n.output.iter().filter(|s| !s.is_empty()) {
                made_in.insert(output, k);
            }
        }
    }
    let initializers: FxHashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let inputs: FxHashMap<&str, &pb::ValueInfoProto> =
        graph.input.iter().map(|i| (i.name.as_str(), i)).collect();

    // What each piece reads from before it, in the order first read.
    let mut carried_in: Vec<Vec<&str>> = vec![Vec::new(); chunks.len()];
    let mut carried_out: Vec<Vec<&str>> = vec![Vec::new(); chunks.len()];
    let mut carried: FxHashSet<&str> = FxHashSet::default();
    for (k, chunk) in chunks.iter().enumerate() {
        let mut seen: FxHashSet<&str> = FxHashSet::default();
        for &i in *chunk {
            for input in graph.node[i].input.iter().filter(|s| !s.is_empty()) {
                let input = input.as_str();
                if let Some(&from) = made_in.get(input) {
                    if from < k && seen.insert(input) {
                        carried_in[k].push(input);
                        if carried.insert(input) {
                            carried_out[from].push(input);
                        }
                    }
                }
            }
        }
    }
    let carried_input = |name: &str| pb::ValueInfoProto {
        name: name.to_string(),
        // tract reads no input without a type; this placeholder is replaced
        // by what the typing of the piece that computes the value knows.
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pieces = Vec::with_capacity(chunks.len());
    let mut alive: Vec<&str> = Vec::new();
    for (k, chunk) in chunks.iter().enumerate() {
        let mut read: Vec<&str> = Vec::new();
        let mut seen: FxHashSet<&str> = FxHashSet::default();
        for &i in *chunk {
            for input in graph.node[i].input.iter().filter(|s| !s.is_empty()) {
                if !made_in.contains_key(input.as_str()) && seen.insert(input) {
                    read.push(input);
                }
            }
        }
        let mut piece_inputs: Vec<pb::ValueInfoProto> = read
            .iter()
            .filter_map(|name| inputs.get(name).map(|&i| i.clone()))
            .collect();
        piece_inputs.extend(carried_in[k].iter().map(|name| carried_input(name)));
        // Outputs take no type: tract types them from the nodes.
        let mut piece_outputs: Vec<pb::ValueInfoProto> = carried_out[k]
            .iter()
            .map(|name| pb::ValueInfoProto {
                name: name.to_string(),
                ..Default::default()
            })
            .collect();
        piece_outputs.extend(
            graph
                .output
                .iter()
                .filter(|o| made_in.get(o.name.as_str()) == Some(&k))
                .filter(|o| !carried_out[k].contains(&o.name.as_str()))
                .cloned(),
        );
        let piece_graph = pb::GraphProto {
            name: format!("{}#{k}", graph.name),
            node: chunk.iter().map(|&i| graph.node[i].clone()).collect(),
            initializer: read
                .iter()
                .filter_map(|name| initializers.get(name).map(|&t| t.clone()))
                .collect(),
            input: piece_inputs,
            output: piece_outputs,
            ..Default::default()
        };
        // Values computed before this piece, read after it and not by it.
        alive.retain(|name| last_read.get(name).is_some_and(|&last| last > k));
        let read_here: FxHashSet<&str> = carried_in[k].iter().copied().collect();
        let kept = alive
            .iter()
            .filter(|name| !read_here.contains(*name))
            .map(|name| name.to_string())
            .collect();
        alive.extend(carried_out[k].iter().copied());
        pieces.push(Piece {
            proto: pb::ModelProto {
                ir_version: proto.ir_version,
                opset_import: proto.opset_import.clone(),
                graph: Some(piece_graph),
                ..Default::default()
            },
            kept,
        });
    }
    pieces
}

/// The nodes that reach an output of the graph, in the graph's order; `None`
/// when that order is not topological (a node reads a value a later node
/// computes).
fn live_nodes(graph: &pb::GraphProto) -> Option<Vec<usize>> {
    let mut maker: FxHashMap<&str, usize> = FxHashMap::default();
    for (i, n) in graph.node.iter().enumerate() {
        for output in n.output.iter().filter(|s| !s.is_empty()) {
            maker.insert(output, i);
        }
    }
    for (i, n) in graph.node.iter().enumerate() {
        let late = n
            .input
            .iter()
            .filter_map(|s| maker.get(s.as_str()))
            .any(|&m| m >= i);
        if late {
            return None;
        }
    }
    let mut live = vec![false; graph.node.len()];
    let mut stack: Vec<usize> = graph
        .output
        .iter()
        .filter_map(|o| maker.get(o.name.as_str()).copied())
        .collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut live[i], true) {
            continue;
        }
        stack.extend(
            graph.node[i]
                .input
                .iter()
                .filter_map(|s| maker.get(s.as_str()).copied()),
        );
    }
    Some((0..graph.node.len()).filter(|&i| live[i]).collect())
}

/// How many pieces [`split`] makes of a graph of these nodes, as the time
/// budget estimates it before the graph is handed to tract.
pub fn pieces(nodes: &[crate::onnx::proto::NodeProto], piece_nodes: usize) -> usize {
    let subgraph = nodes
        .iter()
        .flat_map(|n| &n.attribute)
        .any(|a| a.subgraphs().next().is_some());
    if subgraph {
        1
    } else {
        nodes.len().div_ceil(piece_nodes.max(1)).max(1)
    }
}
