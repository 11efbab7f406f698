//! The petgraph view of a model that rules query.
//!
//! ONNX nodes are vertices and tensors are edges. Graph inputs, initializers,
//! names from an enclosing scope and names nothing defines are source
//! vertices, graph outputs are sinks. Every graph of a model (the main graph,
//! each If/Loop/Scan body, each local function) becomes its own [`Graph`],
//! and rules see them only through the queries below, never the protobuf.
//!
//! Every tensor name is resolved to a [`TensorId`] once, while building. Each
//! query takes a name (`producer("h3")`) or, in its `_of` form, an id
//! (`producer_of(t)`, with `t` from [`NodeRef::input_id`]); walks over large
//! graphs use the ids, which costs no hashing.

mod build;
mod gradient;
mod inputs;
mod layers;
mod loss;
mod node;
pub(crate) mod onnx_ops;
mod origin;
mod patterns;
mod residual;
mod shapes;
pub mod state;
mod stats;

use rustc_hash::FxHashMap as HashMap;

use petgraph::graph::{DiGraph, NodeIndex};

pub(crate) use build::build_listing;
pub use build::{build, is_known_op, Problem, ProblemKind, IMPLICIT_SLOT};
pub use gradient::{Block, GradientFlow, ParamKind, Trainable};
pub use inputs::InputNames;
pub use layers::{activation, Activation, LayerKind, WeightLayer, NORMALIZATION_OPS};
pub use loss::{Form, LogArgument, Loss, Reduction, Term};
pub use node::{Attr, NodeRef};
pub use origin::PyOrigin;
pub use patterns::{BinaryCrossEntropy, Softmax};
pub use shapes::broadcast;
pub use state::{ModelState, Premise, StateDecision};
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

/// The tensor id of an omitted optional input or output.
pub(crate) const NO_TENSOR: TensorId = TensorId::MAX;

/// Each node's op, as an index into the graph's distinct ops: asking what a
/// node is reads four bytes per node and a short table, not the node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ops<'m> {
    pub(crate) of_node: Vec<u32>,
    pub(crate) names: Vec<Op<'m>>,
}

/// One of a graph's distinct ops.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op<'m> {
    pub(crate) op_type: &'m str,
    /// Whether its domain is the default one (`""` or `ai.onnx`).
    pub(crate) default: bool,
}

/// Which tensors each node reads and writes, and who reads each tensor,
/// resolved once while building so that queries do not look names up.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeTensors {
    /// Node `i`'s explicit inputs are `inputs[input_start[i]..input_start[i + 1]]`.
    inputs: Vec<TensorId>,
    input_start: Vec<u32>,
    outputs: Vec<TensorId>,
    output_start: Vec<u32>,
    /// Tensor `t`'s readers are `reads[read_start[t]..read_start[t + 1]]`:
    /// `(node, input slot)` in file order, subgraph reads included.
    reads: Vec<(NodeId, usize)>,
    read_start: Vec<u32>,
}

impl NodeTensors {
    pub(crate) fn with_capacity(nodes: usize, inputs: usize, outputs: usize) -> Self {
        let mut input_start = Vec::with_capacity(nodes + 1);
        input_start.push(0);
        let mut output_start = Vec::with_capacity(nodes + 1);
        output_start.push(0);
        NodeTensors {
            inputs: Vec::with_capacity(inputs),
            input_start,
            outputs: Vec::with_capacity(outputs),
            output_start,
            ..Default::default()
        }
    }

    /// Groups `(tensor, node, slot)` reads, given in file order, by tensor.
    pub(crate) fn index_reads(&mut self, tensors: usize, reads: Vec<(TensorId, NodeId, usize)>) {
        let mut start = vec![0u32; tensors + 1];
        for &(t, _, _) in &reads {
            start[t + 1] += 1;
        }
        for i in 0..tensors {
            start[i + 1] += start[i];
        }
        let mut next = start.clone();
        let mut out = vec![(0, 0); reads.len()];
        for (t, node, slot) in reads {
            out[next[t] as usize] = (node, slot);
            next[t] += 1;
        }
        self.reads = out;
        self.read_start = start;
    }

    fn inputs(&self, node: NodeId) -> &[TensorId] {
        &self.inputs[self.input_start[node] as usize..self.input_start[node + 1] as usize]
    }

    fn outputs(&self, node: NodeId) -> &[TensorId] {
        &self.outputs[self.output_start[node] as usize..self.output_start[node + 1] as usize]
    }

    fn reads(&self, t: TensorId) -> &[(NodeId, usize)] {
        match (self.read_start.get(t), self.read_start.get(t + 1)) {
            (Some(&a), Some(&b)) => &self.reads[a as usize..b as usize],
            _ => &[],
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Tensor<'m> {
    name: &'m str,
    producer: NodeIndex,
    slot: usize,
    elem_type: Option<i32>,
    dims: Option<Vec<Dim>>,
}

/// The listing a graph's spans point into.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Listing<'m> {
    Ready(&'m Source),
    /// Being printed while the graph is built; set before any rule runs.
    Later(&'m std::sync::OnceLock<Source>),
}

impl<'m> Listing<'m> {
    fn get(self) -> &'m Source {
        static EMPTY: std::sync::OnceLock<Source> = std::sync::OnceLock::new();
        match self {
            Listing::Ready(s) => s,
            Listing::Later(cell) => cell
                .get()
                .unwrap_or_else(|| EMPTY.get_or_init(Source::default)),
        }
    }
}

/// A dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Known(i64),
    Named(std::sync::Arc<str>),
    Unknown,
}

/// One graph of a model, ready for queries.
pub struct Graph<'m> {
    pub(crate) model: &'m Model,
    pub(crate) source: Listing<'m>,
    pub(crate) scope: ScopeId,
    /// What this graph is, for messages: `main graph`, `then_branch of If node ...`.
    pub(crate) title: String,
    pub(crate) nodes: Vec<&'m crate::onnx::proto::NodeProto>,
    pub(crate) ops: Ops<'m>,
    pub(crate) initializers: Vec<&'m TensorProto>,
    pub(crate) inputs: Vec<&'m str>,
    pub(crate) outputs: Vec<&'m str>,
    pub(crate) g: DiGraph<Vertex, Edge>,
    pub(crate) node_vertex: Vec<NodeIndex>,
    pub(crate) tensors: Vec<Tensor<'m>>,
    pub(crate) by_name: HashMap<&'m str, TensorId>,
    pub(crate) io: NodeTensors,
    pub(crate) problems: Vec<Problem>,
    pub(crate) opset: Option<i64>,
    /// Per initializer, its tensor; `None` for a second initializer of one name.
    pub(crate) initializer_ids: Vec<Option<TensorId>>,
    pub(crate) topo: Option<Vec<NodeId>>,
    pub(crate) stats: std::sync::OnceLock<stats::StatsTable>,
    /// Per node, the node as a weight layer: boxed, so that walking the
    /// nodes to find the layers reads 8 bytes per node, not the whole layer.
    pub(crate) layers: std::sync::OnceLock<Vec<Option<Box<WeightLayer<'m>>>>>,
    pub(crate) residual: std::sync::OnceLock<residual::Residual>,
    /// Node ids by name, built on the first [`Graph::find_node`].
    pub(crate) node_names: std::sync::OnceLock<HashMap<&'m str, NodeId>>,
    pub(crate) loss: std::sync::OnceLock<loss::Loss>,
    pub(crate) flow: std::sync::OnceLock<loss::Flow>,
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
        self.source.get()
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
        let axis = match self.softmax(n) {
            Some(s) if s.decomposed => match self.softmax_sum_axes(n)?.as_slice() {
                &[a] => a,
                _ => return None,
            },
            _ => n.attr_i64("axis").unwrap_or(default),
        };
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

    /// The id of the tensor called `name`, for the queries that take ids.
    pub fn tensor_id(&self, name: &str) -> Option<TensorId> {
        self.by_name.get(name).copied()
    }

    /// The name of tensor `t`.
    pub fn tensor_name(&self, t: TensorId) -> &'m str {
        self.tensors[t].name
    }

    /// The node that produces `tensor`, with the output slot.
    pub fn producer(&self, tensor: &str) -> Option<(NodeRef<'_, 'm>, usize)> {
        self.producer_of(self.tensor_id(tensor)?)
    }

    /// The node named `name`, or, for a node without a name, the one whose
    /// first output is `name` (how tract and the probe name such nodes).
    pub fn find_node(&self, name: &str) -> Option<NodeRef<'_, 'm>> {
        if name.is_empty() {
            return None;
        }
        let index = self.node_names.get_or_init(|| {
            let mut index = HashMap::default();
            for n in self.nodes() {
                // The first node of a name, as a scan in node order finds it.
                index.entry(n.name()).or_insert(n.id());
            }
            index
        });
        match index.get(name) {
            Some(&id) => Some(self.node(id)),
            None => self.producer(name).map(|(n, _)| n),
        }
    }

    /// The node that produces tensor `t`, with the output slot.
    pub fn producer_of(&self, t: TensorId) -> Option<(NodeRef<'_, 'm>, usize)> {
        let t = self.tensors.get(t)?;
        match self.g[t.producer] {
            Vertex::Node(id) => Some((self.node(id), t.slot)),
            _ => None,
        }
    }

    /// The nodes that read `tensor`, with the input slot, in file order.
    pub fn consumers(&self, tensor: &str) -> Vec<(NodeRef<'_, 'm>, usize)> {
        self.tensor_id(tensor)
            .map(|t| self.consumers_of(t))
            .unwrap_or_default()
    }

    /// The nodes that read tensor `t`, with the input slot, in file order.
    pub fn consumers_of(&self, t: TensorId) -> Vec<(NodeRef<'_, 'm>, usize)> {
        self.io
            .reads(t)
            .iter()
            .map(|&(id, slot)| (self.node(id), slot))
            .collect()
    }

    /// How many input slots, of any node, read tensor `t`.
    pub fn read_count(&self, t: TensorId) -> usize {
        self.io.reads(t).len()
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
        self.tensor_id(tensor)
            .map(|t| self.uses_of(t))
            .unwrap_or_default()
    }

    /// [`Graph::follow`] for tensor `t`.
    pub fn uses_of(&self, tensor: TensorId) -> Vec<Use> {
        let mut out = Vec::new();
        let mut stack = vec![(tensor, Vec::new())];
        let mut seen = rustc_hash::FxHashSet::default();
        while let Some((t, via)) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            for &(id, slot) in self.io.reads(t) {
                let n = self.node(id);
                if slot == 0 && self.is_value_preserving(&n) {
                    if let Some(next) = n.output_id(0) {
                        let mut v = via.clone();
                        v.push(id);
                        stack.push((next, v));
                    }
                } else {
                    out.push(Use {
                        node: id,
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
        self.tensor_id(tensor)
            .map_or(Origin::Unknown, |t| self.origin_of(t))
    }

    /// [`Graph::origin`] for tensor `t`.
    pub fn origin_of(&self, tensor: TensorId) -> Origin {
        let mut tid = tensor;
        for _ in 0..=self.nodes.len() {
            let Some(t) = self.tensors.get(tid) else {
                return Origin::Unknown;
            };
            match self.g[t.producer] {
                Vertex::Node(id) => {
                    let n = self.node(id);
                    match n.input_id(0) {
                        Some(prev) if t.slot == 0 && self.is_value_preserving(&n) => tid = prev,
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
        self.constant_of(self.tensor_id(tensor)?)
    }

    /// [`Graph::constant`] for tensor `t`.
    pub fn constant_of(&self, t: TensorId) -> Option<&'m TensorProto> {
        let t = self.tensors.get(t)?;
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
        self.stored_of(self.tensor_id(tensor)?)
    }

    /// [`Graph::stored`] for tensor `t`.
    pub fn stored_of(&self, tensor: TensorId) -> Option<Stored<'m>> {
        if let Some(t) = self.constant_of(tensor) {
            return Some(Stored::Tensor(t));
        }
        let (n, 0) = self.producer_of(tensor)? else {
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

    /// [`Graph::shape`] for tensor `t`.
    pub fn shape_of(&self, t: TensorId) -> Option<&[Dim]> {
        self.tensors.get(t)?.dims.as_deref()
    }

    /// The name of graph input `i`.
    pub fn input_name(&self, i: usize) -> &'m str {
        self.inputs[i]
    }

    pub fn initializer(&self, i: usize) -> &'m TensorProto {
        self.initializers[i]
    }

    /// The tensor initializer `i` defines; `None` when an earlier one has its name.
    pub fn initializer_id(&self, i: usize) -> Option<TensorId> {
        self.initializer_ids.get(i).copied().flatten()
    }

    /// Every node in an order where producers come before their readers;
    /// `None` when the graph has a cycle.
    pub fn topological_order(&self) -> Option<&[NodeId]> {
        self.topo.as_deref()
    }

    /// The graph's input names, in order.
    pub fn inputs(&self) -> &[&'m str] {
        &self.inputs
    }

    /// The inputs a caller feeds, in order: before IR 4, initializers were
    /// listed among the inputs too.
    pub fn fed_inputs(&self) -> impl Iterator<Item = &'m str> + '_ {
        // The build already made an initializer listed as an input a constant.
        self.inputs.iter().copied().filter(move |n| {
            !self
                .tensor(n)
                .is_some_and(|t| matches!(self.g[t.producer], Vertex::Initializer(_)))
        })
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
    fn id_queries_agree_with_name_queries() {
        let mut clip = node("Clip", &["x", "", "hi"], &["c"]);
        clip.input[2] = "shape".into();
        let m = model(vec![
            node("Relu", &["x"], &["a"]),
            clip,
            node("Add", &["a", "c"], &["s"]),
            node("Mul", &["a", "a"], &["m"]),
            // Writes `a` a second time: an `invalid-graph` error, and no id.
            node("Neg", &["x"], &["a"]),
        ]);
        let src = print_model(&m.proto, Values::Elide);
        let graphs = build(&m, &src);
        let g = &graphs[0];
        for n in g.nodes() {
            for i in 0..n.inputs().len() {
                assert_eq!(n.input_id(i), n.input(i).and_then(|t| g.tensor_id(t)));
            }
        }
        let clip = g.node(1);
        assert_eq!(clip.input_id(1), None);
        assert_eq!(g.tensor_name(clip.input_id(2).unwrap()), "shape");
        assert_eq!(g.node(0).output_id(0), g.tensor_id("a"));
        assert_eq!(g.node(4).output_id(0), None);
        let a = g.tensor_id("a").unwrap();
        let by_id: Vec<(NodeId, usize)> = g
            .consumers_of(a)
            .iter()
            .map(|(n, s)| (n.id(), *s))
            .collect();
        assert_eq!(by_id, vec![(2, 0), (3, 0), (3, 1)]);
        assert_eq!(g.read_count(a), 3);
        assert_eq!(g.producer_of(a).map(|(n, s)| (n.id(), s)), Some((0, 0)));
        assert!(g.constant_of(clip.input_id(2).unwrap()).is_some());
        assert_eq!(g.initializer_id(0), g.tensor_id("shape"));
        assert_eq!(g.topological_order().map(<[_]>::len), Some(5));
    }

    #[test]
    fn gradient_flow_marks_what_reaches_the_loss_and_where_the_rest_stops() {
        let m = model(vec![
            node("Relu", &["x"], &["a"]),
            node("Floor", &["a"], &["f"]),
            node("Neg", &["x"], &["n"]),
            node("Add", &["f", "n"], &["y"]),
            node("Sign", &["a"], &["g"]),
            node("Relu", &["x"], &["c"]),
            node("Exp", &["c"], &["e"]),
            node("Round", &["e"], &["r"]),
            node("Add", &["y", "r"], &["z"]),
        ]);
        let src = print_model(&m.proto, Values::Elide);
        let graphs = build(&m, &src);
        let g = &graphs[0];
        let id = |t: &str| g.tensor_id(t).unwrap();
        let mut flow = g.gradient_flow(&[id("z")]);
        for open in ["z", "y", "r", "f", "n", "x"] {
            assert!(flow.open(id(open)), "{open} reaches the loss");
        }
        for closed in ["a", "c", "e", "g"] {
            assert!(!flow.open(id(closed)), "{closed} does not");
        }
        // The first reader that blocks, in file order: Floor, not Sign.
        assert_eq!(g.first_block(&mut flow, id("a")), Some((1, Block::Step)));
        // Past a reader that passes (Exp), to the Round beyond it.
        assert_eq!(g.first_block(&mut flow, id("c")), Some((7, Block::Step)));
        assert_eq!(g.first_block(&mut flow, id("e")), Some((7, Block::Step)));
        // Open, or read by nothing: no block to name.
        assert_eq!(g.first_block(&mut flow, id("x")), None);
        assert_eq!(g.first_block(&mut flow, id("g")), None);
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
            g: Some(Box::new(branch)),
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
