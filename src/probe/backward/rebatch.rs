//! The backward pass on the first samples of a batch the graph was
//! exported for: the shapes and constants that spell the batch, read for
//! the cut one.

use candle_core::{Device, Tensor, Var};
use rustc_hash::FxHashSet;

use super::ops::{self, c};
use super::Pass;
use crate::graph::Dim;
use crate::probe::engine::Skip;

impl Pass<'_, '_> {
    /// Readies the pass for the first `to` samples of a batch of `from` that
    /// the graph was exported for. Such a graph spells the shapes it builds
    /// as constants that lead with the batch: `Reshape` to `[8, 2048]`, or
    /// to `[96, 128, 64]` with the batch merged into 12 heads, an `Expand`
    /// or `ConstantOfShape` to `[8, 1, 128, 128]`. A leading entry that is a
    /// multiple of `from` is scaled to `to`, where the `Reshape`'s data is
    /// computed (not a weight) and leads with a multiple of `from` too, or
    /// with a size typing did not tell. A shape the graph computes with
    /// `Shape` follows the cut batch itself; one it computes from constants
    /// otherwise does not, and the pass then fails on mismatched shapes
    /// rather than running on a wrong one.
    ///
    /// The exporter may also have folded what the batch's size made into
    /// constants, which are cut to their first `to` rows where the graph
    /// says they lead with the batch: a class token expanded to every sample
    /// (a `Concat` joins it to the patches along a later axis, so it leads
    /// with the batch as they do), the `[8, 1, 1, 1]` tensor that stochastic
    /// depth draws like (a random op's `*Like` input, or what the lowering
    /// takes the `Shape` of to draw its median), the `[8, 320, 1, 1]`
    /// indices a `Gather` reads from the flattened batch, an attention mask
    /// or position table that an elementwise op combines with a computed
    /// tensor of its rank (so that their leading axes align). A constant
    /// that merely has as many rows as the batch has samples (a weight,
    /// eight heads' `[8, 1, 1]` temperatures scaling `[8, 8, 64, 64]`
    /// scores) is left whole.
    pub(super) fn rebatch(&mut self, from: usize, to: usize) -> Result<(), Skip> {
        for name in self.folded_for_batch(from) {
            let Some(t) = self.constants.get(&name) else {
                continue;
            };
            let mut t = t.narrow(0, 0, to).map_err(|e| Skip::from(c(e)))?;
            if let Some(i) = self.params.iter().position(|p| p.name == name) {
                let var = Var::from_tensor(&t).map_err(|e| Skip::from(c(e)))?;
                t = var.as_tensor().clone();
                self.params[i].var = var;
            }
            self.constants.insert(name, t);
        }
        let (from, to) = (from as i64, to as i64);
        let batched = |d: i64| d > 0 && d % from == 0;
        let leads_batched = |t: &str| {
            !self.constants.contains_key(t)
                && self
                    .graph
                    .shape(t)
                    .and_then(|s| s.first())
                    .is_none_or(|d| !matches!(d, Dim::Known(k) if !batched(*k)))
        };
        let mut shapes: Vec<&str> = Vec::new();
        for n in &self.lowered.nodes {
            let operand = match n.op_type.as_str() {
                "Reshape" if n.input.first().is_some_and(|x| leads_batched(x)) => 1,
                "Expand" => 1,
                "ConstantOfShape" => 0,
                _ => continue,
            };
            if let Some(name) = n.input.get(operand) {
                shapes.push(name);
            }
        }
        shapes.sort_unstable();
        shapes.dedup();
        for name in shapes {
            let Some(t) = self.constants.get(name) else {
                continue;
            };
            let mut dims = ops::ints(t).map_err(Skip::from)?;
            match dims.first_mut() {
                Some(d) if batched(*d) => *d = *d / from * to,
                _ => continue,
            }
            let t = Tensor::new(dims, &Device::Cpu).map_err(|e| Skip::from(c(e)))?;
            self.constants.insert(name.to_string(), t);
        }
        Ok(())
    }

    /// The constants that lead with a batch of `from` by the graph's say
    /// (see [`Pass::rebatch`]), in name order.
    fn folded_for_batch(&self, from: usize) -> Vec<String> {
        let computed = |t: &str| !self.constants.contains_key(t);
        let rank = |t: &str| match self.constants.get(t) {
            Some(t) => Some(t.rank()),
            None => self.graph.shape(t).map(|s| s.len()),
        };
        let trained: FxHashSet<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        let mut folded: Vec<&str> = Vec::new();
        for n in &self.lowered.nodes {
            let input = |i: usize| n.input.get(i).map(String::as_str);
            match n.op_type.as_str() {
                "Concat" => {
                    let axis = n
                        .attribute
                        .iter()
                        .find(|a| a.name == "axis")
                        .map_or(0, |a| a.i);
                    let later = axis > 0
                        || n.input
                            .iter()
                            .find_map(|i| rank(i))
                            .is_some_and(|r| axis + r as i64 > 0);
                    // Joined to a computed tensor, whose batch it must have.
                    if later && n.input.iter().any(|i| computed(i)) {
                        folded.extend(n.input.iter().map(String::as_str));
                    }
                }
                // The lowering draws a random op's median as the shape of
                // its `*Like` input.
                "RandomUniformLike" | "RandomNormalLike" | "Bernoulli" | "Shape" => {
                    folded.extend(input(0).filter(|i| !trained.contains(i)))
                }
                "Gather" | "GatherElements" | "GatherND" => folded.extend(input(1)),
                // An attention mask or position table folded for the batch:
                // an operand of an elementwise op whose other operand has its
                // rank, so that their leading axes align.
                "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Where" | "Equal"
                | "Less" | "Greater" | "And" | "Or" => {
                    let ranks: Vec<Option<usize>> = n.input.iter().map(|i| rank(i)).collect();
                    for (k, i) in n.input.iter().enumerate() {
                        let r = ranks[k];
                        let aligned = ranks
                            .iter()
                            .enumerate()
                            .any(|(j, o)| j != k && computed(&n.input[j]) && *o == r);
                        if r.is_some() && aligned && !trained.contains(i.as_str()) {
                            folded.push(i);
                        }
                    }
                }
                _ => {}
            }
        }
        folded.sort_unstable();
        folded.dedup();
        folded
            .into_iter()
            .filter(|name| {
                self.constants
                    .get(*name)
                    .is_some_and(|t| t.rank() >= 2 && t.dims()[0] == from)
            })
            .map(str::to_string)
            .collect()
    }
}
