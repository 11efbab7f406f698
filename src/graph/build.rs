//! Building [`Graph`]s from a model, and the structural problems found on the way.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use super::{
    Dim, Edge, Graph, Listing, NodeId, NodeTensors, Op, Ops, Tensor, TensorId, Vertex, NO_TENSOR,
};
use crate::onnx::proto::{
    tensor_shape_proto::dimension::Value as DimValue, type_proto::Value as Ty, GraphProto,
    NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
};
use crate::onnx::source::{ScopeId, ScopeStep, Source};
use crate::onnx::Model;

/// A structural error in one graph: the graph still builds, and `invalid-graph` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Input `slot` of `node` names a tensor that nothing produces.
    Undefined {
        node: NodeId,
        slot: usize,
        tensor: String,
    },
    /// `node` writes a tensor that something earlier already defines.
    ProducedTwice {
        node: NodeId,
        tensor: String,
        first: Option<NodeId>,
    },
    /// These nodes depend on each other in a cycle.
    Cycle { nodes: Vec<NodeId> },
    /// A graph output that nothing produces.
    OutputUndefined { tensor: String },
    /// `node` uses a domain that the model does not import.
    MissingOpset { node: NodeId, domain: String },
    /// `node` is not an operator of the default domain at the imported opset.
    UnknownOp { node: NodeId, opset: i64 },
}

/// The input slot recorded for a name a node's subgraph reads from this graph.
pub const IMPLICIT_SLOT: usize = usize::MAX;

/// A name looked up before the graph's outer and undefined names are known.
const NOT_FOUND: TensorId = NO_TENSOR - 1;

/// Every graph of the model: the main graph first, then nested and function bodies.
pub fn build<'m>(model: &'m Model, source: &'m Source) -> Vec<Graph<'m>> {
    build_with(model, Listing::Ready(source))
}

/// [`build`], while another thread is still printing the listing into `source`.
/// Nothing reads a span before the listing is done.
pub(crate) fn build_listing<'m>(
    model: &'m Model,
    source: &'m std::sync::OnceLock<Source>,
) -> Vec<Graph<'m>> {
    build_with(model, Listing::Later(source))
}

fn build_with<'m>(model: &'m Model, source: Listing<'m>) -> Vec<Graph<'m>> {
    let mut out = Vec::new();
    let opsets = domains(&model.proto.opset_import);
    let version = default_version(&model.proto.opset_import);
    let body = Body::graph(model.graph());
    build_body(
        model,
        source,
        body,
        ScopeId::default(),
        "main graph".into(),
        &HashSet::default(),
        (&opsets, version),
        &mut out,
    );
    for (i, f) in model.proto.functions.iter().enumerate() {
        let body = Body {
            nodes: f.node.iter().collect(),
            inputs: f.input.iter().map(String::as_str).collect(),
            outputs: f.output.iter().map(String::as_str).collect(),
            initializers: Vec::new(),
            infos: f.value_info.iter().collect(),
        };
        let fopsets = domains(&f.opset_import);
        let fversion = default_version(&f.opset_import).or(version);
        build_body(
            model,
            source,
            body,
            ScopeId(vec![ScopeStep::Function(i as u32)]),
            format!("function `{}`", f.name),
            &HashSet::default(),
            (&fopsets, fversion),
            &mut out,
        );
    }
    out
}

struct Body<'m> {
    nodes: Vec<&'m NodeProto>,
    inputs: Vec<&'m str>,
    outputs: Vec<&'m str>,
    initializers: Vec<&'m TensorProto>,
    infos: Vec<&'m ValueInfoProto>,
}

impl<'m> Body<'m> {
    fn graph(g: &'m GraphProto) -> Self {
        Body {
            nodes: g.node.iter().collect(),
            inputs: g.input.iter().map(|v| v.name.as_str()).collect(),
            outputs: g.output.iter().map(|v| v.name.as_str()).collect(),
            initializers: g.initializer.iter().collect(),
            infos: g
                .input
                .iter()
                .chain(&g.output)
                .chain(&g.value_info)
                .collect(),
        }
    }
}

fn default_version(opsets: &[OperatorSetIdProto]) -> Option<i64> {
    opsets
        .iter()
        .find(|o| canonical_domain(&o.domain).is_empty())
        .map(|o| o.version)
}

/// Whether `op` is a default-domain operator at opset `version`.
pub fn is_known_op(op: &str, version: i64) -> bool {
    match super::onnx_ops::DEFAULT_DOMAIN_OPS.binary_search_by(|(name, _)| (*name).cmp(op)) {
        Ok(i) => super::onnx_ops::DEFAULT_DOMAIN_OPS[i].1 <= version,
        Err(_) => false,
    }
}

/// Names a nested graph (and the graphs nested in it) reads without defining.
fn outer_refs<'m>(g: &'m GraphProto, out: &mut HashSet<&'m str>) {
    let mut defined: HashSet<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
    defined.extend(g.initializer.iter().map(|t| t.name.as_str()));
    defined.extend(
        g.node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str)),
    );
    let mut used = HashSet::default();
    for n in &g.node {
        used.extend(n.input.iter().map(String::as_str).filter(|s| !s.is_empty()));
        for a in &n.attribute {
            for sub in a.subgraphs() {
                outer_refs(sub, &mut used);
            }
        }
    }
    used.extend(g.output.iter().map(|v| v.name.as_str()));
    out.extend(used.into_iter().filter(|u| !defined.contains(u)));
}

fn domains(opsets: &[OperatorSetIdProto]) -> HashSet<String> {
    opsets.iter().map(|o| canonical_domain(&o.domain)).collect()
}

fn canonical_domain(d: &str) -> String {
    if d == "ai.onnx" {
        String::new()
    } else {
        d.to_string()
    }
}

#[allow(clippy::too_many_arguments)]
fn build_body<'m>(
    model: &'m Model,
    source: Listing<'m>,
    body: Body<'m>,
    scope: ScopeId,
    title: String,
    outer: &HashSet<&'m str>,
    (opsets, version): (&HashSet<String>, Option<i64>),
    out: &mut Vec<Graph<'m>>,
) {
    let mut problems = Vec::new();
    // Sized up front: rehashing and regrowing dominate on 100k-node graphs.
    let names = body.initializers.len()
        + body.inputs.len()
        + body.nodes.iter().map(|n| n.output.len()).sum::<usize>();
    let edges = body.nodes.iter().map(|n| n.input.len()).sum::<usize>() + body.outputs.len();
    let mut g: DiGraph<Vertex, Edge> =
        DiGraph::with_capacity(names + body.nodes.len() + body.outputs.len() + 2, edges);
    let mut tensors: Vec<Tensor<'m>> = Vec::with_capacity(names);
    let mut by_name: HashMap<&'m str, usize> =
        HashMap::with_capacity_and_hasher(names, Default::default());

    // Declared types, taken (not copied) by the tensor they describe.
    let mut types: HashMap<&str, (Option<i32>, Option<Vec<Dim>>)> =
        HashMap::with_capacity_and_hasher(body.infos.len(), Default::default());
    for vi in &body.infos {
        types
            .entry(vi.name.as_str())
            .or_insert_with(|| value_type(vi));
    }

    // Defines `name` unless something already does; `Err` carries the earlier definition.
    let mut define = |name: &'m str,
                      vertex: NodeIndex,
                      slot: usize,
                      declared: Option<(Option<i32>, Option<Vec<Dim>>)>,
                      tensors: &mut Vec<Tensor<'m>>,
                      by_name: &mut HashMap<&'m str, usize>|
     -> Result<TensorId, NodeIndex> {
        use std::collections::hash_map::Entry;
        match by_name.entry(name) {
            Entry::Occupied(e) => Err(tensors[*e.get()].producer),
            Entry::Vacant(e) => {
                let (elem_type, dims) = declared
                    .or_else(|| types.remove(name))
                    .unwrap_or((None, None));
                e.insert(tensors.len());
                tensors.push(Tensor {
                    name,
                    producer: vertex,
                    slot,
                    elem_type,
                    dims,
                });
                Ok(tensors.len() - 1)
            }
        }
    };

    let mut initializer_ids = Vec::with_capacity(body.initializers.len());
    for (i, t) in body.initializers.iter().enumerate() {
        let v = g.add_node(Vertex::Initializer(i));
        // An initializer's own type wins over a declared one.
        let dims = t.dims.iter().map(|&d| Dim::Known(d)).collect();
        let id = define(
            &t.name,
            v,
            0,
            Some((Some(t.data_type), Some(dims))),
            &mut tensors,
            &mut by_name,
        );
        initializer_ids.push(id.ok());
    }
    for (i, name) in body.inputs.iter().enumerate() {
        if by_name.contains_key(name) {
            // An initializer listed as an input too (IR < 4, or torch's
            // keep_initializers_as_inputs): it stays a constant.
            continue;
        }
        let v = g.add_node(Vertex::Input(i));
        let _ = define(name, v, 0, None, &mut tensors, &mut by_name);
    }
    let node_vertex: Vec<NodeIndex> = (0..body.nodes.len())
        .map(|i| g.add_node(Vertex::Node(i)))
        .collect();
    let mut io = NodeTensors::with_capacity(body.nodes.len(), edges, names);
    for (i, n) in body.nodes.iter().enumerate() {
        for (slot, o) in n.output.iter().enumerate() {
            if o.is_empty() {
                io.outputs.push(NO_TENSOR);
                continue;
            }
            match define(o, node_vertex[i], slot, None, &mut tensors, &mut by_name) {
                Ok(t) => io.outputs.push(t),
                Err(prev) => {
                    io.outputs.push(NO_TENSOR);
                    let first = match g[prev] {
                        Vertex::Node(id) => Some(id),
                        _ => None,
                    };
                    problems.push(Problem {
                        kind: ProblemKind::ProducedTwice {
                            node: i,
                            tensor: o.clone(),
                            first,
                        },
                    });
                }
            }
        }
        io.output_start.push(io.outputs.len() as u32);
    }

    let mut outer_vertex = None;
    let mut undefined_vertex = None;
    let mut source_of = |name: &'m str,
                         g: &mut DiGraph<Vertex, Edge>,
                         tensors: &mut Vec<Tensor<'m>>,
                         by_name: &mut HashMap<&'m str, usize>|
     -> (usize, bool) {
        if let Some(&t) = by_name.get(name) {
            return (t, true);
        }
        let known = outer.contains(name);
        let slot = if known {
            &mut outer_vertex
        } else {
            &mut undefined_vertex
        };
        let v = *slot.get_or_insert_with(|| {
            g.add_node(if known {
                Vertex::Outer
            } else {
                Vertex::Undefined
            })
        });
        by_name.insert(name, tensors.len());
        tensors.push(Tensor {
            name,
            producer: v,
            slot: 0,
            elem_type: None,
            dims: None,
        });
        (tensors.len() - 1, known)
    };

    // Every name the nodes read, looked up on every core: `NO_TENSOR` for an
    // omitted input, `NOT_FOUND` for a name the graph does not define (an
    // outer or undefined name), resolved below in file order as it comes.
    let found: Vec<TensorId> = {
        let by_name = &by_name;
        let nodes = &body.nodes;
        crate::parallel::ranges(nodes.len(), |run| {
            let mut ids =
                Vec::with_capacity(nodes[run.clone()].iter().map(|n| n.input.len()).sum());
            for n in &nodes[run] {
                ids.extend(n.input.iter().map(|name| match name.as_str() {
                    "" => NO_TENSOR,
                    name => by_name.get(name).copied().unwrap_or(NOT_FOUND),
                }));
            }
            ids
        })
    };
    let mut found = found.into_iter();
    let mut reads: Vec<(TensorId, NodeId, usize)> = Vec::with_capacity(edges);
    let mut known_ops = KnownOps {
        default_imported: opsets.contains(""),
        seen: Vec::new(),
    };
    let mut has_subgraphs = false;
    let mut ops = Ops {
        of_node: Vec::with_capacity(body.nodes.len()),
        names: Vec::new(),
    };
    let mut op_index: HashMap<(&'m str, bool), u32> = HashMap::default();
    for (i, n) in body.nodes.iter().enumerate() {
        let default = matches!(n.domain.as_str(), "" | "ai.onnx");
        let op = *op_index
            .entry((n.op_type.as_str(), default))
            .or_insert_with(|| {
                ops.names.push(Op {
                    op_type: &n.op_type,
                    default,
                });
                ops.names.len() as u32 - 1
            });
        ops.of_node.push(op);
        let mut implicit = HashSet::default();
        for a in &n.attribute {
            for sub in a.subgraphs() {
                has_subgraphs = true;
                outer_refs(sub, &mut implicit);
            }
        }
        let mut implicit: Vec<&'m str> = implicit.into_iter().collect();
        implicit.sort_unstable();
        // A name is read again only where the lookup above did not find it.
        let explicit = (0..n.input.len()).map(|slot| {
            let known = found.next().unwrap_or(NOT_FOUND);
            (
                slot,
                known,
                (known == NOT_FOUND).then(|| n.input[slot].as_str()),
            )
        });
        let implicit = implicit.into_iter().map(|name| {
            let known = if name.is_empty() {
                NO_TENSOR
            } else {
                NOT_FOUND
            };
            (IMPLICIT_SLOT, known, Some(name))
        });
        for (slot, known, name) in explicit.chain(implicit) {
            let (t, defined, name) = match (known, name) {
                (NO_TENSOR, _) => {
                    if slot != IMPLICIT_SLOT {
                        io.inputs.push(NO_TENSOR);
                    }
                    continue;
                }
                (NOT_FOUND, Some(name)) => {
                    let (t, defined) = source_of(name, &mut g, &mut tensors, &mut by_name);
                    (t, defined, name)
                }
                (t, _) => (t, true, ""),
            };
            if slot != IMPLICIT_SLOT {
                io.inputs.push(t);
            }
            if !defined && g[tensors[t].producer] == Vertex::Undefined && slot != IMPLICIT_SLOT {
                problems.push(Problem {
                    kind: ProblemKind::Undefined {
                        node: i,
                        slot,
                        tensor: name.to_string(),
                    },
                });
            }
            reads.push((t, i, slot));
            let from = tensors[t].slot;
            g.add_edge(
                tensors[t].producer,
                node_vertex[i],
                Edge {
                    tensor: t,
                    from,
                    to: slot,
                },
            );
        }
        io.input_start.push(io.inputs.len() as u32);
        if let Some(p) = node_problem(n, (i, op), opsets, version, &mut known_ops) {
            problems.push(p);
        }
    }
    io.index_reads(tensors.len(), reads);
    for (i, name) in body.outputs.iter().enumerate() {
        let v = g.add_node(Vertex::Output(i));
        match by_name.get(name) {
            Some(&t) if !matches!(g[tensors[t].producer], Vertex::Undefined) => {
                let from = tensors[t].slot;
                g.add_edge(
                    tensors[t].producer,
                    v,
                    Edge {
                        tensor: t,
                        from,
                        to: 0,
                    },
                );
            }
            _ if outer.contains(name) => {}
            _ => problems.push(Problem {
                kind: ProblemKind::OutputUndefined {
                    tensor: name.to_string(),
                },
            }),
        }
    }
    // Both algorithms are iterative: a 100,000-node chain must not overflow the stack.
    let (topo, sccs) = match toposort(&g, None) {
        Ok(order) => {
            let nodes = order.into_iter().filter_map(|v| match g[v] {
                Vertex::Node(id) => Some(id),
                _ => None,
            });
            (Some(nodes.collect()), Vec::new())
        }
        Err(_) => (None, kosaraju_scc(&g)),
    };
    for scc in sccs {
        let cyclic = scc.len() > 1 || g.contains_edge(scc[0], scc[0]);
        if cyclic {
            let mut nodes: Vec<NodeId> = scc
                .iter()
                .filter_map(|&v| match g[v] {
                    Vertex::Node(id) => Some(id),
                    _ => None,
                })
                .collect();
            nodes.sort_unstable();
            problems.push(Problem {
                kind: ProblemKind::Cycle { nodes },
            });
        }
    }

    // Names this graph defines are visible to the graphs nested in its nodes.
    let visible: HashSet<&'m str> = if has_subgraphs {
        let mut v = outer.clone();
        v.extend(
            tensors
                .iter()
                .filter(|t| !matches!(g[t.producer], Vertex::Undefined | Vertex::Outer))
                .map(|t| t.name),
        );
        v
    } else {
        HashSet::default()
    };

    let nodes = body.nodes.clone();
    let mut graph = Graph {
        model,
        source,
        scope: scope.clone(),
        title: title.clone(),
        nodes: body.nodes,
        ops,
        initializers: body.initializers,
        inputs: body.inputs,
        outputs: body.outputs,
        g,
        node_vertex,
        tensors,
        by_name,
        io,
        initializer_ids,
        topo,
        problems,
        opset: version,
        stats: Default::default(),
        layers: Default::default(),
        residual: Default::default(),
        node_names: Default::default(),
        loss: Default::default(),
        flow: Default::default(),
    };
    super::shapes::infer(&mut graph);
    out.push(graph);
    if !has_subgraphs {
        return;
    }

    for (ni, n) in nodes.iter().enumerate() {
        for (ai, a) in n.attribute.iter().enumerate() {
            for (gi, sub) in a.subgraphs().enumerate() {
                let step = ScopeStep::Node {
                    node: ni as u32,
                    attr: ai as u32,
                    graph: gi as u32,
                };
                let who = match n.name.as_deref() {
                    Some(name) if !name.is_empty() => format!("{} node `{name}`", n.op_type),
                    _ => format!("{} node", n.op_type),
                };
                build_body(
                    model,
                    source,
                    Body::graph(sub),
                    scope.child(step),
                    format!("`{}` of {who}", a.name),
                    &visible,
                    (opsets, version),
                    out,
                );
            }
        }
    }
}

/// What [`node_problem`] learned so far about a graph's op types.
struct KnownOps {
    default_imported: bool,
    /// By op index ([`Ops`]), whether the imported opset has the op.
    seen: Vec<Option<bool>>,
}

/// A node whose domain is not imported, or whose op the imported opset lacks.
fn node_problem(
    n: &NodeProto,
    (i, op): (NodeId, u32),
    opsets: &HashSet<String>,
    version: Option<i64>,
    known: &mut KnownOps,
) -> Option<Problem> {
    let default = matches!(n.domain.as_str(), "" | "ai.onnx");
    let imported = if default {
        known.default_imported
    } else {
        opsets.contains(n.domain.as_str())
    };
    if !imported {
        return Some(Problem {
            kind: ProblemKind::MissingOpset {
                node: i,
                domain: n.domain.clone(),
            },
        });
    }
    let mut is_known = |v| {
        let op = op as usize;
        if known.seen.len() <= op {
            known.seen.resize(op + 1, None);
        }
        *known.seen[op].get_or_insert_with(|| is_known_op(&n.op_type, v))
    };
    match version {
        Some(v) if default && !is_known(v) => Some(Problem {
            kind: ProblemKind::UnknownOp { node: i, opset: v },
        }),
        _ => None,
    }
}

fn value_type(vi: &ValueInfoProto) -> (Option<i32>, Option<Vec<Dim>>) {
    match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Ty::TensorType(tt)) => {
            let dims = tt.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(DimValue::DimValue(v)) => Dim::Known(*v),
                        Some(DimValue::DimParam(p)) => Dim::Named(p.as_str().into()),
                        None => Dim::Unknown,
                    })
                    .collect()
            });
            (Some(tt.elem_type), dims)
        }
        _ => (None, None),
    }
}
