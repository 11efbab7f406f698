//! Residual connections and the roles they give layers.
//!
//! An `Add` (or `Sum`) whose inputs descend from one recent value merges a
//! branch back into the stream it forked from: a residual block, a
//! shortcut, an attention or MLP sub-block of a transformer. Several rules
//! judge a layer differently there: a branch that starts small (layer
//! scale, zero-init residual, GPT-2's scaled projections) is deliberate,
//! because the stream beside it carries the signal and the gradient; and
//! depth does not compound through a merge as it does through a plain stack.
//!
//! Computed once per graph, in time linear in nodes: each merge looks back
//! at most [`LOOK_BACK`] nodes from each of its inputs for the fork.

use super::{Graph, NodeId, TensorId};

/// How many nodes a merge looks back from each input for their common
/// ancestor. A transformer block's attention branch is about 40 nodes, a
/// ResNet bottleneck's under 20; a U-Net's outermost skip spans far more
/// and is not a residual block.
const LOOK_BACK: usize = 128;

/// Per node, its role around residual merges.
#[derive(Debug, Default)]
pub(crate) struct Residual {
    /// Between a fork and the merge that adds its branch back.
    on_branch: Vec<bool>,
    /// Its output reaches a merge through affine ops only (a bias, a
    /// constant scale, dropout, a normalization): it ends a branch.
    ends_branch: Vec<bool>,
    /// A merge lies downstream of it.
    before_merge: Vec<bool>,
    /// A weight layer lies downstream of it.
    before_layer: Vec<bool>,
}

impl<'m> Graph<'m> {
    fn residual(&self) -> &Residual {
        self.residual.get_or_init(|| self.compute_residual())
    }

    /// Whether node `id` lies on a residual branch: after a fork and before
    /// the `Add` that merges it back into the stream.
    pub fn on_residual_branch(&self, id: NodeId) -> bool {
        self.residual().on_branch.get(id).copied().unwrap_or(false)
    }

    /// Whether node `id`'s output is added back into a residual stream
    /// through affine ops only: the last layer of a branch.
    pub fn ends_residual_branch(&self, id: NodeId) -> bool {
        self.residual()
            .ends_branch
            .get(id)
            .copied()
            .unwrap_or(false)
    }

    /// Whether a residual merge lies downstream of node `id`.
    pub fn before_residual_merge(&self, id: NodeId) -> bool {
        self.residual()
            .before_merge
            .get(id)
            .copied()
            .unwrap_or(false)
    }

    /// Whether weight layer `id` is a head: no other weight layer reads what
    /// it computes, so its output goes to the graph's outputs or the loss.
    pub fn is_head(&self, id: NodeId) -> bool {
        self.weight_layer(id).is_some() && !self.before_weight_layer(id)
    }

    /// Whether a weight layer reads, directly or further on, what node `id`
    /// computes; `false` for the nodes of an output head (a detector's
    /// class sigmoids, a multi-label head).
    pub fn before_weight_layer(&self, id: NodeId) -> bool {
        self.residual()
            .before_layer
            .get(id)
            .copied()
            .unwrap_or(true)
    }

    /// The dynamic (not stored) inputs of a merge candidate.
    fn dynamic_inputs(&self, id: NodeId) -> Vec<TensorId> {
        let n = self.node(id);
        (0..n.inputs().len())
            .filter_map(|i| n.input_id(i))
            .filter(|&t| self.constant_through_of(t).is_none())
            .collect()
    }

    /// The nodes at most [`LOOK_BACK`] steps back from tensor `t`, its
    /// producer first, breadth first. `stamp` marks what this walk has seen
    /// with `mark` (a value no earlier walk used), so no walk allocates a set.
    fn look_back(&self, t: TensorId, stamp: &mut [u32], mark: u32, order: &mut Vec<NodeId>) {
        order.clear();
        if let Some((p, _)) = self.producer_of(t) {
            stamp[p.id()] = mark;
            order.push(p.id());
        }
        let mut next = 0;
        while next < order.len() && order.len() < LOOK_BACK {
            let n = self.node(order[next]);
            next += 1;
            for i in 0..n.inputs().len() {
                let Some((p, _)) = n.input_id(i).and_then(|t| self.producer_of(t)) else {
                    continue;
                };
                if stamp[p.id()] != mark && order.len() < LOOK_BACK {
                    stamp[p.id()] = mark;
                    order.push(p.id());
                }
            }
        }
    }

    fn compute_residual(&self) -> Residual {
        let count = self.node_count();
        let mut r = Residual {
            on_branch: vec![false; count],
            ends_branch: vec![false; count],
            before_merge: vec![false; count],
            before_layer: vec![false; count],
        };
        let mut merges = vec![false; count];
        // Per node, the last walk from a merge's first input (`stamp_a`) and
        // from its second (`stamp_b`) that saw it: walks allocate no set.
        let (mut stamp_a, mut stamp_b) = (vec![0u32; count], vec![0u32; count]);
        let (mut back_a, mut back_b) = (Vec::new(), Vec::new());
        let mut walk = 0u32;
        for n in self.nodes() {
            if !n.domain_is_default() || !matches!(n.op_type(), "Add" | "Sum") {
                continue;
            }
            let inputs = self.dynamic_inputs(n.id());
            let [a, b, ..] = inputs[..] else { continue };
            walk += 1;
            self.look_back(a, &mut stamp_a, walk, &mut back_a);
            self.look_back(b, &mut stamp_b, walk, &mut back_b);
            if !back_b.iter().any(|&id| stamp_a[id] == walk) {
                continue; // two separate inputs summed, not a branch rejoining
            }
            merges[n.id()] = true;
            for &id in back_a.iter().filter(|&&id| stamp_b[id] != walk) {
                r.on_branch[id] = true;
            }
            for &id in back_b.iter().filter(|&&id| stamp_a[id] != walk) {
                r.on_branch[id] = true;
            }
            for t in [a, b] {
                if let Some(end) = self.through_affine_back(t) {
                    r.ends_branch[end] = true;
                }
            }
        }
        // Downstream facts, from the outputs back, in one pass.
        if let Some(order) = self.topological_order() {
            for &id in order.iter().rev() {
                let n = self.node(id);
                let (mut merge, mut layer) = (false, false);
                for o in 0..n.outputs().len() {
                    let Some(t) = n.output_id(o) else { continue };
                    for &(c, slot) in self.io.reads(t) {
                        merge |= merges[c] || r.before_merge[c];
                        let reads_as_data =
                            self.weight_layer(c).is_some_and(|l| l.data_slot == slot);
                        layer |= reads_as_data || r.before_layer[c];
                    }
                }
                r.before_merge[id] = merge;
                r.before_layer[id] = layer;
            }
        }
        r
    }

    /// The node whose output reaches tensor `t` through affine ops with one
    /// reader each (bias, constant scale, dropout, BatchNorm, layout), the
    /// first node that is not one of them.
    fn through_affine_back(&self, mut t: TensorId) -> Option<NodeId> {
        for _ in 0..LOOK_BACK {
            let (p, _) = self.producer_of(t)?;
            if !self.is_affine_passthrough(&p) {
                return Some(p.id());
            }
            let data = (0..p.inputs().len())
                .filter_map(|i| p.input_id(i))
                .find(|&i| self.constant_through_of(i).is_none())?;
            if self.read_count(data) != 1 {
                return Some(p.id());
            }
            t = data;
        }
        None
    }
}
