//! The petgraph view of a model that rules query.
//!
//! ONNX nodes are vertices and tensors are edges. Graph inputs, initializers,
//! names from an enclosing scope and names nothing defines are source
//! vertices, graph outputs are sinks. Every graph of a model (the main graph,
//! each If/Loop/Scan body, each local function) becomes its own [`Graph`],
//! and rules see them only through the queries below, never the protobuf.

mod build;
mod layers;
mod node;
mod onnx_ops;
mod origin;
mod shapes;
mod stats;

use rustc_hash::FxHashMap as HashMap;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

pub use build::{build, is_known_op, Problem, ProblemKind, IMPLICIT_SLOT};
pub use layers::{activation, Activation, LayerKind, WeightLayer, NORMALIZATION_OPS};
pub use node::{Attr, NodeRef};
pub use origin::PyOrigin;
pub use stats::TensorStats;

use crate::onnx::proto::{data_type as dt, TensorProto};
use crate::onnx::source::{ScopeId, Source};
use crate::onnx::{Model, ValueError};

/// Index of an ONNX node within its graph, in file order.
pub type NodeId = usize;

/// A vertex of the petgraph graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vertex {
    Node(NodeId),
    Input(usize),
    Initializer(usize),
    Output(usize),
    /// A name defined by an enclosing graph.
    Outer,
    /// A name that nothing defines (an `invalid-graph` error).
    Undefined,
}

/// An edge: tensor `tensor` leaves its producer's output `from` and enters input `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub tensor: TensorId,
    pub from: usize,
    pub to: usize,
}

pub type TensorId = usize;

#[derive(Clone, Debug)]
pub(crate) struct Tensor<'m> {
    name: &'m str,
    producer: NodeIndex,
    slot: usize,
    elem_type: Option<i32>,
    dims: Option<Vec<Dim>>,
}

/// A dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Known(i64),
    Named(String),
    Unknown,
}

/// One graph of a model, ready for queries.
pub struct Graph<'m> {
    pub(crate) model: &'m Model,
    pub(crate) source: &'m Source,
    pub(crate) scope: ScopeId,
    /// What this graph is, for messages: `main graph`, `then_branch of If node ...`.
    pub(crate) title: String,
    pub(crate) nodes: Vec<&'m crate::onnx::proto::NodeProto>,
    pub(crate) initializers: Vec<&'m TensorProto>,
    pub(crate) inputs: Vec<&'m str>,
    pub(crate) outputs: Vec<&'m str>,
    pub(crate) g: DiGraph<Vertex, Edge>,
    pub(crate) node_vertex: Vec<NodeIndex>,
    pub(crate) tensors: Vec<Tensor<'m>>,
    pub(crate) by_name: HashMap<&'m str, TensorId>,
    pub(crate) problems: Vec<Problem>,
    pub(crate) opset: Option<i64>,
    pub(crate) stats: std::sync::OnceLock<HashMap<&'m str, TensorStats>>,
    pub(crate) layers: std::sync::OnceLock<Vec<Option<WeightLayer<'m>>>>,
}

/// A value fixed at export time.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored<'m> {
    Tensor(&'m TensorProto),
    /// `ConstantOfShape`: `value` repeated over `dims`.
    Fill {
        dims: Vec<i64>,
        value: f64,
        elem_type: i32,
    },
}

impl Stored<'_> {
    pub fn dims(&self) -> &[i64] {
        match self {
            Stored::Tensor(t) => &t.dims,
            Stored::Fill { dims, .. } => dims,
        }
    }

    pub fn elem_type(&self) -> i32 {
        match self {
            Stored::Tensor(t) => t.data_type,
            Stored::Fill { elem_type, .. } => *elem_type,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> Result<usize, ValueError> {
        self.dims().iter().try_fold(1usize, |acc, &d| {
            usize::try_from(d)
                .ok()
                .and_then(|d| acc.checked_mul(d))
                .ok_or_else(|| ValueError(format!("invalid dims {:?}", self.dims())))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len().map_or(true, |n| n == 0)
    }

    /// The single value every element holds, when that is known without reading.
    pub fn fill_value(&self) -> Option<f64> {
        match self {
            Stored::Fill { value, .. } => Some(*value),
            Stored::Tensor(_) => None,
        }
    }
}

/// Where a value comes from once value-preserving ops are looked through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Node(NodeId),
    Input(usize),
    Initializer(usize),
    /// An enclosing graph's value, or one nothing defines.
    Unknown,
}

/// A use of a value reached by [`Graph::follow`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Use {
    pub node: NodeId,
    pub slot: usize,
    /// The value-preserving nodes walked through on the way, in order.
    pub via: Vec<NodeId>,
}

/// Ops that do not change what a value means, only its layout.
const LAYOUT_OPS: &[&str] = &[
    "Identity",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
];

impl<'m> Graph<'m> {
    pub fn model(&self) -> &'m Model {
        self.model
    }

    pub fn source(&self) -> &'m Source {
        self.source
    }

    pub fn scope(&self) -> &ScopeId {
        &self.scope
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// The underlying petgraph graph, for walks the named queries do not cover.
    pub fn petgraph(&self) -> &DiGraph<Vertex, Edge> {
        &self.g
    }

    /// The default-domain opset version this graph is written against.
    pub fn opset(&self) -> Option<i64> {
        self.opset
    }

    /// A Softmax-family node's normalized axis, given the rank of its input.
    /// Opset 13 changed the default from 1 to -1.
    pub fn softmax_axis(&self, n: &NodeRef<'_, 'm>, rank: usize) -> Option<usize> {
        let default = if self.opset.unwrap_or(13) >= 13 {
            -1
        } else {
            1
        };
        let axis = n.attr_i64("axis").unwrap_or(default);
        let rank = i64::try_from(rank).ok()?;
        let a = if axis < 0 { axis + rank } else { axis };
        (0..rank).contains(&a).then_some(a as usize)
    }

    /// Structural errors found while building this graph.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The petgraph vertex of a node.
    pub fn vertex(&self, id: NodeId) -> NodeIndex {
        self.node_vertex[id]
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every node, in file order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeRef<'_, 'm>> + '_ {
        (0..self.nodes.len()).map(move |id| self.node(id))
    }

    pub fn node(&self, id: NodeId) -> NodeRef<'_, 'm> {
        NodeRef {
            graph: self,
            id,
            proto: self.nodes[id],
        }
    }

    /// Nodes of one op type in the default domain, in file order.
    pub fn nodes_of<'a>(&'a self, op: &'a str) -> impl Iterator<Item = NodeRef<'a, 'm>> + 'a {
        self.nodes().filter(move |n| n.is(op))
    }

    fn tensor(&self, name: &str) -> Option<&Tensor<'m>> {
        self.by_name.get(name).map(|&t| &self.tensors[t])
    }

    /// The node that produces `tensor`, with the output slot.
    pub fn producer(&self, tensor: &str) -> Option<(NodeRef<'_, 'm>, usize)> {
        let t = self.tensor(tensor)?;
        match self.g[t.producer] {
            Vertex::Node(id) => Some((self.node(id), t.slot)),
            _ => None,
        }
    }

    /// The nodes that read `tensor`, with the input slot, in file order.
    pub fn consumers(&self, tensor: &str) -> Vec<(NodeRef<'_, 'm>, usize)> {
        let Some(&tid) = self.by_name.get(tensor) else {
            return Vec::new();
        };
        let from = self.tensors[tid].producer;
        let mut uses: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(from, Direction::Outgoing)
            .filter(|e| e.weight().tensor == tid)
            .filter_map(|e| match self.g[e.target()] {
                Vertex::Node(id) => Some((id, e.weight().to)),
                _ => None,
            })
            .collect();
        uses.sort_unstable();
        uses.into_iter().map(|(id, s)| (self.node(id), s)).collect()
    }

    /// Whether `tensor` is one of the graph's outputs.
    pub fn is_output(&self, tensor: &str) -> bool {
        self.outputs.contains(&tensor)
    }

    /// Whether a node passes its first input to its first output without changing
    /// what the values mean: layout ops, and a Cast from one float type to another.
    pub fn is_value_preserving(&self, n: &NodeRef<'_, 'm>) -> bool {
        if !n.domain_is_default() {
            return false;
        }
        if LAYOUT_OPS.contains(&n.op_type()) {
            return true;
        }
        if n.op_type() == "Cast" {
            let to_float = n.attr_i64("to").is_some_and(|t| dt::is_float(t as i32));
            let from_float = n
                .input(0)
                .and_then(|i| self.elem_type(i))
                .is_none_or(dt::is_float);
            return to_float && from_float;
        }
        false
    }

    /// The uses of `tensor`, looking through value-preserving ops: a Reshape of
    /// the value is followed to its own uses. Sorted by node.
    pub fn follow(&self, tensor: &str) -> Vec<Use> {
        let mut out = Vec::new();
        let mut stack = vec![(tensor, Vec::new())];
        let mut seen = rustc_hash::FxHashSet::default();
        while let Some((t, via)) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            for (n, slot) in self.consumers(t) {
                if slot == 0 && self.is_value_preserving(&n) {
                    if let Some(next) = n.output(0) {
                        let mut v = via.clone();
                        v.push(n.id());
                        stack.push((next, v));
                    }
                } else {
                    out.push(Use {
                        node: n.id(),
                        slot,
                        via: via.clone(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.node, a.slot, &a.via).cmp(&(b.node, b.slot, &b.via)));
        out.dedup();
        out
    }

    /// Where `tensor` comes from, looking back through value-preserving ops.
    pub fn origin(&self, tensor: &str) -> Origin {
        let mut name = tensor;
        for _ in 0..=self.nodes.len() {
            let Some(t) = self.tensor(name) else {
                return Origin::Unknown;
            };
            match self.g[t.producer] {
                Vertex::Node(id) => {
                    let n = self.node(id);
                    match n.input(0) {
                        Some(prev) if t.slot == 0 && self.is_value_preserving(&n) => name = prev,
                        _ => return Origin::Node(id),
                    }
                }
                Vertex::Input(i) => return Origin::Input(i),
                Vertex::Initializer(i) => return Origin::Initializer(i),
                _ => return Origin::Unknown,
            }
        }
        Origin::Unknown
    }

    /// The stored tensor behind a constant value: an initializer that is not also a
    /// graph input (which a caller could override), or a `Constant` node's `value`.
    pub fn constant(&self, tensor: &str) -> Option<&'m TensorProto> {
        let t = self.tensor(tensor)?;
        match self.g[t.producer] {
            Vertex::Initializer(i) => Some(self.initializers[i]),
            Vertex::Node(id) => {
                let n = self.node(id);
                if n.is("Constant") {
                    n.attr("value").and_then(|a| a.tensor())
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// A value fixed at export time: a stored tensor, or a `ConstantOfShape` fill
    /// of a constant shape (how model-zoo graphs without weights spell them).
    pub fn stored(&self, tensor: &str) -> Option<Stored<'m>> {
        if let Some(t) = self.constant(tensor) {
            return Some(Stored::Tensor(t));
        }
        let (n, 0) = self.producer(tensor)? else {
            return None;
        };
        if !n.is("ConstantOfShape") {
            return None;
        }
        let dims: Vec<i64> = self
            .values(n.input(0)?)?
            .ok()?
            .into_iter()
            .map(|d| d as i64)
            .collect();
        let (value, elem_type) = match n.attr("value").and_then(|a| a.tensor()) {
            Some(t) => (*self.model.values_f64(t).ok()?.first()?, t.data_type),
            None => (0.0, dt::FLOAT),
        };
        Some(Stored::Fill {
            dims,
            value,
            elem_type,
        })
    }

    pub fn is_constant(&self, tensor: &str) -> bool {
        self.stored(tensor).is_some()
    }

    /// Calls `f` with every element of a stored value, in order, without collecting them.
    pub fn for_each_value(&self, s: &Stored<'m>, mut f: impl FnMut(f64)) -> Result<(), ValueError> {
        match s {
            Stored::Tensor(t) => self.model.for_each_value(t, f),
            Stored::Fill { value, .. } => {
                (0..s.len()?).for_each(|_| f(*value));
                Ok(())
            }
        }
    }

    /// A constant's values as f64, read on demand (external data included).
    /// `None` when the value is not a constant.
    pub fn values(&self, tensor: &str) -> Option<Result<Vec<f64>, ValueError>> {
        let s = self.stored(tensor)?;
        let mut out = Vec::new();
        Some(self.for_each_value(&s, |v| out.push(v)).map(|_| out))
    }

    /// A constant scalar (one element), as f64.
    pub fn scalar(&self, tensor: &str) -> Option<f64> {
        match self.values(tensor)? {
            Ok(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }

    /// The declared element type of a value, when the model states it.
    pub fn elem_type(&self, tensor: &str) -> Option<i32> {
        self.tensor(tensor)?.elem_type
    }

    /// The declared shape of a value, when the model states it.
    pub fn shape(&self, tensor: &str) -> Option<&[Dim]> {
        self.tensor(tensor)?.dims.as_deref()
    }

    /// The name of graph input `i`.
    pub fn input_name(&self, i: usize) -> &'m str {
        self.inputs[i]
    }

    pub fn initializer(&self, i: usize) -> &'m TensorProto {
        self.initializers[i]
    }

    /// The graph's input names, in order.
    pub fn inputs(&self) -> &[&'m str] {
        &self.inputs
    }

    /// The graph's output names, in order.
    pub fn outputs(&self) -> &[&'m str] {
        &self.outputs
    }

    /// The graph's initializers, in order.
    pub fn initializers(&self) -> &[&'m TensorProto] {
        &self.initializers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::printer::{print_model, Values};
    use crate::onnx::proto::{
        type_proto, AttributeProto, AttributeType, GraphProto, ModelProto, NodeProto,
        OperatorSetIdProto, TypeProto, ValueInfoProto,
    };

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: Some(format!("{op}_{}", outputs[0])),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn input(name: &str, elem_type: i32) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn model(nodes: Vec<NodeProto>) -> Model {
        let proto = ModelProto {
            ir_version: 10,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 20,
            }],
            graph: Some(GraphProto {
                name: "g".into(),
                node: nodes,
                input: vec![input("x", dt::FLOAT), input("ids", dt::INT64)],
                initializer: vec![TensorProto {
                    name: "shape".into(),
                    dims: vec![1],
                    data_type: dt::INT64,
                    int64_data: vec![-1],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        Model::from_proto(std::path::Path::new("mem.onnx"), proto).unwrap()
    }

    fn cast(input: &str, output: &str, to: i32) -> NodeProto {
        let mut n = node("Cast", &[input], &[output]);
        n.attribute.push(AttributeProto {
            name: "to".into(),
            r#type: AttributeType::Int as i32,
            i: to as i64,
            ..Default::default()
        });
        n
    }

    #[test]
    fn follow_and_origin_look_through_layout_ops_only() {
        let m = model(vec![
            node("Dropout", &["x"], &["d"]),
            node("Reshape", &["d", "shape"], &["r"]),
            cast("r", "c", dt::FLOAT16),
            node("Relu", &["c"], &["a"]),
            node("BatchNormalization", &["c", "s", "b", "m", "v"], &["bn"]),
            cast("ids", "f", dt::FLOAT),
            node("Relu", &["f"], &["g"]),
        ]);
        let src = print_model(&m.proto, Values::Elide);
        let graphs = build(&m, &src);
        let g = &graphs[0];
        let uses: Vec<(NodeId, usize, Vec<NodeId>)> = g
            .follow("d")
            .into_iter()
            .map(|u| (u.node, u.slot, u.via))
            .collect();
        assert_eq!(uses, vec![(3, 0, vec![1, 2]), (4, 0, vec![1, 2])]);
        assert_eq!(g.origin("c"), Origin::Node(0));
        assert_eq!(g.origin("d"), Origin::Node(0));
        // A cast from integers changes what the values mean.
        assert_eq!(g.origin("f"), Origin::Node(5));
        assert_eq!(g.follow("ids").len(), 1);
        assert_eq!(g.producer("r").map(|(n, s)| (n.id(), s)), Some((1, 0)));
        let consumers: Vec<NodeId> = g.consumers("c").iter().map(|(n, _)| n.id()).collect();
        assert_eq!(consumers, vec![3, 4]);
        assert!(g.is_constant("shape") && !g.is_constant("x"));
        assert_eq!(g.values("shape").unwrap().unwrap(), vec![-1.0]);
        // `s`, `b`, `m`, `v` are undefined: reported, not a panic.
        assert_eq!(g.problems().len(), 4);
    }

    #[test]
    fn subgraphs_see_outer_names_and_are_built_too() {
        let branch = GraphProto {
            name: "then".into(),
            node: vec![node("Relu", &["x"], &["t"])],
            output: vec![input("t", dt::FLOAT)],
            ..Default::default()
        };
        let mut iff = node("If", &["x"], &["y"]);
        iff.attribute.push(AttributeProto {
            name: "then_branch".into(),
            r#type: AttributeType::Graph as i32,
            g: Some(branch),
            ..Default::default()
        });
        let m = model(vec![iff]);
        let src = print_model(&m.proto, Values::Elide);
        let graphs = build(&m, &src);
        assert_eq!(graphs.len(), 2);
        assert!(graphs.iter().all(|g| g.problems().is_empty()));
        assert_eq!(graphs[1].title(), "`then_branch` of If node `If_y`");
        assert_eq!(graphs[1].origin("x"), Origin::Unknown);
        // The branch's node has its own place in the listing.
        let span = graphs[1].node(0).span();
        assert_eq!(&src.text[span.op], "Relu");
    }
}
