//! A node as rules see it.

use std::ops::Range;

use super::{Graph, NodeId};
use crate::onnx::printer::attribute_type;
use crate::onnx::proto::{AttributeProto, AttributeType, NodeProto, TensorProto};
use crate::onnx::source::NodeSpan;

#[derive(Clone, Copy)]
pub struct NodeRef<'g, 'm> {
    pub(crate) graph: &'g Graph<'m>,
    pub(crate) id: NodeId,
    pub(crate) proto: &'m NodeProto,
}

/// A node attribute's value.
#[derive(Clone, Copy, Debug)]
pub struct Attr<'m>(&'m AttributeProto);

impl<'m> Attr<'m> {
    pub fn kind(&self) -> AttributeType {
        attribute_type(self.0)
    }

    pub fn f32(&self) -> Option<f32> {
        (self.kind() == AttributeType::Float).then_some(self.0.f)
    }

    pub fn i64(&self) -> Option<i64> {
        (self.kind() == AttributeType::Int).then_some(self.0.i)
    }

    pub fn ints(&self) -> Option<&'m [i64]> {
        (self.kind() == AttributeType::Ints).then_some(&self.0.ints[..])
    }

    pub fn floats(&self) -> Option<&'m [f32]> {
        (self.kind() == AttributeType::Floats).then_some(&self.0.floats[..])
    }

    pub fn string(&self) -> Option<String> {
        (self.kind() == AttributeType::String).then(|| String::from_utf8_lossy(&self.0.s).into())
    }

    pub fn tensor(&self) -> Option<&'m TensorProto> {
        self.0.t.as_deref()
    }
}

impl<'g, 'm> NodeRef<'g, 'm> {
    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn graph(&self) -> &'g Graph<'m> {
        self.graph
    }

    /// The node's name; empty when it has none.
    pub fn name(&self) -> &'m str {
        self.proto.name.as_deref().unwrap_or("")
    }

    /// The node's op, from the graph's table of ops.
    fn op(&self) -> super::Op<'m> {
        let ops = &self.graph.ops;
        ops.names[ops.of_node[self.id] as usize]
    }

    pub fn op_type(&self) -> &'m str {
        self.op().op_type
    }

    pub fn domain(&self) -> &'m str {
        &self.proto.domain
    }

    pub fn domain_is_default(&self) -> bool {
        self.op().default
    }

    /// Whether this is the default-domain op `op`.
    pub fn is(&self, op: &str) -> bool {
        let own = self.op();
        own.default && own.op_type == op
    }

    /// Input `i`, `None` when absent or left empty (an omitted optional input).
    pub fn input(&self, i: usize) -> Option<&'m str> {
        self.proto
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn output(&self, i: usize) -> Option<&'m str> {
        self.proto
            .output
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The tensor read by input `i`, `None` when absent or left empty.
    pub fn input_id(&self, i: usize) -> Option<super::TensorId> {
        let t = *self.graph.io.inputs(self.id).get(i)?;
        (t != super::NO_TENSOR).then_some(t)
    }

    /// The tensor of each input slot, `None` where it is absent or left empty.
    pub fn input_ids(&self) -> impl ExactSizeIterator<Item = Option<super::TensorId>> + 'g {
        let ids = self.graph.io.inputs(self.id);
        ids.iter().map(|&t| (t != super::NO_TENSOR).then_some(t))
    }

    /// The tensor written by output `i`, `None` when absent, left empty or
    /// already written by an earlier node (an `invalid-graph` error).
    pub fn output_id(&self, i: usize) -> Option<super::TensorId> {
        let t = *self.graph.io.outputs(self.id).get(i)?;
        (t != super::NO_TENSOR).then_some(t)
    }

    pub fn inputs(&self) -> &'m [String] {
        &self.proto.input
    }

    pub fn outputs(&self) -> &'m [String] {
        &self.proto.output
    }

    pub fn attr(&self, name: &str) -> Option<Attr<'m>> {
        self.proto
            .attribute
            .iter()
            .find(|a| a.name == name)
            .map(Attr)
    }

    pub fn attr_f32(&self, name: &str) -> Option<f32> {
        self.attr(name)?.f32()
    }

    pub fn attr_i64(&self, name: &str) -> Option<i64> {
        self.attr(name)?.i64()
    }

    /// A `metadata_props` entry, such as torch's `namespace` or `pkg.torch.onnx.stack_trace`.
    pub fn metadata(&self, key: &str) -> Option<&'m str> {
        self.proto
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    pub fn doc_string(&self) -> &'m str {
        &self.proto.doc_string
    }

    /// Where the node is in the source text.
    pub fn span(&self) -> NodeSpan {
        self.graph
            .source()
            .node(&self.graph.scope, self.id)
            .cloned()
            .unwrap_or_else(|| {
                let r = self.graph.source().graph(&self.graph.scope);
                NodeSpan {
                    stmt: r.clone(),
                    op: r.clone(),
                    call: r,
                }
            })
    }

    /// The op type's span, for secondary labels.
    pub fn op_span(&self) -> Range<usize> {
        self.span().op
    }

    /// How messages name the node: `Dropout node `drop``, or its op and first output.
    pub fn describe(&self) -> String {
        if self.name().is_empty() {
            match self.output(0) {
                Some(o) => format!("{} node producing `{o}`", self.op_type()),
                None => format!("{} node", self.op_type()),
            }
        } else {
            format!("{} node `{}`", self.op_type(), self.name())
        }
    }
}
