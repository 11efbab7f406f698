//! The text a diagnostic points into, and where each node sits in it.
//!
//! For a binary `.onnx` file that text is the listing `nnlint print` writes;
//! for a text model it is the user's own file. Either way the reader that
//! produced the text records the byte ranges here, and the graph hands them
//! to rules, so no rule ever computes a position.

use rustc_hash::FxHashMap as HashMap;
use std::ops::Range;

/// One step from the main graph down to a nested graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeStep {
    /// The body of model-local function number `index`.
    Function(u32),
    /// Graph number `graph` of attribute number `attr` of node number `node`.
    Node { node: u32, attr: u32, graph: u32 },
}

/// Identifies one graph of a model: the main graph is the empty path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeId(pub Vec<ScopeStep>);

impl ScopeId {
    pub fn child(&self, step: ScopeStep) -> ScopeId {
        let mut v = self.0.clone();
        v.push(step);
        ScopeId(v)
    }
}

/// Where a node's statement is in the source text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpan {
    /// The whole statement, without indentation.
    pub stmt: Range<usize>,
    /// The op type, with its domain prefix.
    pub op: Range<usize>,
    /// From the op type to the closing parenthesis of the inputs.
    pub call: Range<usize>,
}

/// The text diagnostics point into, with the positions of what rules talk about.
#[derive(Clone, Debug, Default)]
pub struct Source {
    pub text: String,
    /// Per graph, its nodes' spans in node order.
    pub nodes: HashMap<ScopeId, Vec<NodeSpan>>,
    /// Graph inputs, outputs and initializers, by scope and tensor name.
    pub values: HashMap<ScopeId, HashMap<String, Range<usize>>>,
    /// Each graph's signature (its name up to its outputs).
    pub graphs: HashMap<ScopeId, Range<usize>>,
    /// The `opset_import` entry of the model header.
    pub opset: Range<usize>,
}

impl Source {
    pub fn node(&self, scope: &ScopeId, index: usize) -> Option<&NodeSpan> {
        self.nodes.get(scope)?.get(index)
    }

    pub fn value(&self, scope: &ScopeId, name: &str) -> Option<Range<usize>> {
        self.values.get(scope)?.get(name).cloned()
    }

    /// A span for something of a graph that has no place of its own: the graph's signature.
    pub fn graph(&self, scope: &ScopeId) -> Range<usize> {
        self.graphs.get(scope).cloned().unwrap_or(0..0)
    }
}
