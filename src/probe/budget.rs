//! The probe's memory budget, checked before tract materializes a tensor.
//!
//! A model can ask for far more memory than its file size suggests: a
//! `ConstantOfShape` or `Range` whose size is computed from the input, or a
//! stored shape with one corrupted byte, asks for terabytes from a file of
//! under 1 KB. The budget is checked where each tensor comes into being, as
//! its size becomes known, never by waiting for the allocation to fail:
//!
//! - stored tensors (weights, `Constant` values) by their declared size, before
//!   tract reads them ([`Stored`]);
//! - what tract computes while it types the model, for the operators whose
//!   output size depends on their inputs' values ([`Guarded`], around the
//!   builders of [`DATA_DEPENDENT`]): when tract analyses them with constant
//!   inputs and when it wires them into the typed model, sized by tract's
//!   rules and by the ONNX definition (`formula`), the larger of the two;
//! - every value of the run whose shape typing left symbolic, by the output
//!   facts of its node for the concrete inputs and the dimensions the run has
//!   bound, before the node runs ([`check_node`]).
//!
//! A refusal is an [`OverBudget`] error that names the node and the size it
//! asked for; the probe reports it as a skipped probe.

use std::cell::Cell;
use std::fmt;

use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_hir::infer::*;

use crate::onnx::proto::{data_type as dt, TensorProto};

/// ONNX operators whose output size is set by their inputs' values, which
/// tract evaluates while it types the model when those values are constant.
pub const DATA_DEPENDENT: &[&str] = &[
    "ConstantOfShape",
    "Expand",
    "NonZero",
    "OneHot",
    "Pad",
    "Range",
    "Reshape",
    "Resize",
    "Tile",
    "Upsample",
];

/// A tensor the budget does not allow, by what asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverBudget {
    /// `node `fill`` or `initializer `w``.
    pub what: String,
    /// The node that asked, by its name (or its first output's when it has
    /// none), for pointing at it.
    pub node: Option<String>,
    pub bytes: u128,
    pub budget: usize,
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let asked = if self.bytes == u128::MAX {
            "an amount only computing it would tell".to_string()
        } else {
            size(self.bytes)
        };
        write!(
            f,
            "{} asks for {asked}, over the probe's budget of {} MiB (--probe-memory)",
            self.what,
            self.budget >> 20
        )
    }
}

impl std::error::Error for OverBudget {}

/// How messages name a node: ``node `fill` (ConstantOfShape)``.
pub fn node_named(name: &str, op: &str) -> String {
    format!("node `{name}` ({op})")
}

/// A byte count for messages, in binary units like `--probe-memory`'s MiB:
/// `120 bytes`, `1.7 KiB`, `3.0 MiB`, `12.0 GiB`, `58.2 TiB`.
pub fn size(bytes: u128) -> String {
    let (unit, shift) = match bytes {
        b if b >= 1 << 40 => ("TiB", 40),
        b if b >= 1 << 30 => ("GiB", 30),
        b if b >= 1 << 20 => ("MiB", 20),
        b if b >= 1 << 10 => ("KiB", 10),
        b => return format!("{b} bytes"),
    };
    format!("{:.1} {unit}", bytes as f64 / (1u64 << shift) as f64)
}

/// The stored tensors tract will read, counted against the budget.
pub struct Stored {
    total: u128,
    budget: usize,
}

impl Stored {
    pub fn new(budget: usize) -> Stored {
        Stored { total: 0, budget }
    }

    /// Counts `t` (`what` names it: ``initializer `w` ``), whose external data,
    /// if any, is `length` bytes long.
    pub fn add(
        &mut self,
        what: String,
        t: &TensorProto,
        length: Option<u64>,
    ) -> Result<(), String> {
        let bytes = stored(t, length).map_err(|e| format!("{what} {e}"))?;
        self.total = self.total.saturating_add(bytes);
        if self.total <= self.budget as u128 {
            return Ok(());
        }
        // Named by the tensor that crossed the budget, with what all of them ask for.
        let what = if self.total == bytes {
            what
        } else {
            format!("the stored tensors up to {what}")
        };
        Err(OverBudget {
            what,
            node: None,
            bytes: self.total,
            budget: self.budget,
        }
        .to_string())
    }

    /// Bytes counted so far (within the budget, so within `usize`).
    pub fn total(&self) -> usize {
        self.total as usize
    }
}

/// The bytes a stored tensor (a weight, a `Constant`'s value) takes once read,
/// from its declared shape; `length` is its external data's length. A tensor
/// whose shape and stored values disagree is refused: tract would read the
/// shape and allocate for it.
pub fn stored(t: &TensorProto, length: Option<u64>) -> Result<u128, String> {
    let declared = t
        .dims
        .iter()
        .try_fold(1u128, |acc, &d| {
            u128::try_from(d).ok().map(|d| acc.saturating_mul(d))
        })
        .ok_or_else(|| "has a negative dimension".to_string())?;
    let Some(width) = dt::byte_width(t.data_type) else {
        // Strings and packed 2- and 4-bit types: their size is not checked here.
        return Ok(declared);
    };
    let width = width as u128;
    let held = match (length, &t.raw_data) {
        (Some(len), _) => Some(u128::from(len) / width),
        (None, Some(raw)) => Some(raw.len() as u128 / width),
        (None, None) => match t.data_type {
            dt::FLOAT => Some(t.float_data.len()),
            dt::INT32 => Some(t.int32_data.len()),
            dt::INT64 => Some(t.int64_data.len()),
            dt::DOUBLE => Some(t.double_data.len()),
            dt::UINT64 => Some(t.uint64_data.len()),
            _ => None,
        }
        .map(|n| n as u128),
    };
    match held {
        Some(held) if held != declared => {
            Err(format!("declares {declared} values but stores {held}"))
        }
        _ => Ok(declared.saturating_mul(width)),
    }
}

thread_local! {
    /// Bytes the current typing may still compute, while the probe types a model.
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
    static BUDGET: Cell<usize> = const { Cell::new(0) };
}

/// Lets [`Guarded`] operators compute at most `left` bytes on this thread
/// (of `budget` in all) until the returned value is dropped.
pub fn allow(left: usize, budget: usize) -> Allowance {
    LEFT.with(|l| l.set(Some(left)));
    BUDGET.with(|b| b.set(budget));
    Allowance
}

pub struct Allowance;

impl Drop for Allowance {
    fn drop(&mut self) {
        LEFT.with(|l| l.set(None));
    }
}

/// Takes `bytes` from the allowance, or says who asked for too much
/// (`what` gives its description and its node's name).
fn take(what: impl FnOnce() -> (String, String), bytes: u128) -> Result<(), OverBudget> {
    LEFT.with(|l| match l.get() {
        None => Ok(()),
        Some(left) if bytes <= left as u128 => {
            l.set(Some(left - bytes as usize));
            Ok(())
        }
        Some(_) => {
            let (what, node) = what();
            Err(OverBudget {
                what,
                node: Some(node),
                bytes,
                budget: BUDGET.with(Cell::get),
            })
        }
    })
}

/// A data-dependent operator whose eager evaluation during typing is checked
/// against the allowance first. Everything else is the wrapped operator's.
#[derive(Clone, Debug)]
pub struct Guarded {
    inner: Box<dyn InferenceOp>,
    /// The node, for messages: `node `fill` (ConstantOfShape)`.
    what: String,
    /// Its name, or its first output's when it has none.
    node: String,
    /// The ONNX op type, for [`formula`].
    op: String,
}

impl PartialEq for Guarded {
    fn eq(&self, _other: &Self) -> bool {
        false
    }
}
impl Eq for Guarded {}

/// The builders tract's ONNX parser had for [`DATA_DEPENDENT`], by op type.
fn originals() -> &'static std::collections::HashMap<String, OpBuilderFn> {
    static ORIGINALS: std::sync::OnceLock<std::collections::HashMap<String, OpBuilderFn>> =
        std::sync::OnceLock::new();
    ORIGINALS.get_or_init(|| {
        let onnx = tract_onnx::onnx();
        DATA_DEPENDENT
            .iter()
            .filter_map(|op| Some((op.to_string(), *onnx.op_register.0.get(*op)?)))
            .collect()
    })
}

type OpBuilderFn = fn(
    &tract_onnx::model::ParsingContext,
    &pb::NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// Replaces the builders of [`DATA_DEPENDENT`] in `onnx` by guarded ones.
pub fn guard(onnx: &mut tract_onnx::model::Onnx) {
    for op in DATA_DEPENDENT {
        if originals().contains_key(*op) {
            onnx.op_register.insert(op, build);
        }
    }
}

fn build(
    ctx: &tract_onnx::model::ParsingContext,
    node: &pb::NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let original = originals()
        .get(&node.op_type)
        .ok_or_else(|| format_err!("no builder for {}", node.op_type))?;
    let (inner, closures) = original(ctx, node)?;
    let name = if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    };
    let what = node_named(&name, &node.op_type);
    Ok((
        Box::new(Guarded {
            inner,
            what,
            node: name,
            op: node.op_type.clone(),
        }),
        closures,
    ))
}

impl Op for Guarded {
    fn name(&self) -> StaticName {
        self.inner.name()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.inner.info()
    }

    not_a_typed_op!();
}

impl EvalOp for Guarded {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        self.inner.eval_out_of_plan(inputs)
    }

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.inner.eval(ctx, inputs)
    }
}

impl InferenceOp for Guarded {
    fn infer(
        &mut self,
        inputs: TVec<&InferenceFact>,
        outputs: TVec<&InferenceFact>,
        observed: TVec<&InferenceFact>,
    ) -> TractResult<(
        TVec<InferenceFact>,
        TVec<InferenceFact>,
        TVec<InferenceFact>,
    )> {
        let values: Vec<_> = inputs.iter().map(|i| i.value.concretize()).collect();
        if values.is_empty() || values.iter().any(Option::is_none) {
            return self.inner.infer(inputs, outputs, observed);
        }
        // tract is about to compute this node's value.
        let (_, outs, _) =
            self.inner
                .infer_facts(inputs.clone(), outputs.clone(), observed.clone())?;
        self.check(&values, &outs)?;
        self.inner.infer(inputs, outputs, observed)
    }

    fn infer_facts(
        &mut self,
        inputs: TVec<&InferenceFact>,
        outputs: TVec<&InferenceFact>,
        observed: TVec<&InferenceFact>,
    ) -> TractResult<(
        TVec<InferenceFact>,
        TVec<InferenceFact>,
        TVec<InferenceFact>,
    )> {
        self.inner.infer_facts(inputs, outputs, observed)
    }

    fn observe_outlets(
        &self,
        model: &InferenceModel,
        node: &InferenceNode,
    ) -> TractResult<Vec<OutletId>> {
        self.inner.observe_outlets(model, node)
    }

    fn incorporate(
        &self,
        model: &InferenceModel,
        node: &InferenceNode,
    ) -> TractResult<Option<InferenceModelPatch>> {
        self.inner.incorporate(model, node)
    }

    fn nboutputs(&self) -> TractResult<usize> {
        self.inner.nboutputs()
    }

    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn to_typed(
        &self,
        source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        // Inputs that only became constant in the typed model (a Shape of a
        // shape typing made concrete): wiring the node computes it.
        let values = node
            .inputs
            .iter()
            .map(|i| {
                let outlet = mapping.get(i)?;
                target.outlet_fact(*outlet).ok()?.konst.clone()
            })
            .collect::<Vec<_>>();
        if !values.is_empty() && values.iter().all(Option::is_some) {
            let outs: Vec<InferenceFact> = node.outputs.iter().map(|o| o.fact.clone()).collect();
            self.check(&values, &outs)?;
        }
        self.inner.to_typed(source, node, target, mapping)
    }
}

impl Guarded {
    /// Takes from the allowance what computing the node's value for these
    /// constant inputs allocates: its size by tract's inference rules (`outs`)
    /// and by the operator's definition, the larger of the two. The rules
    /// alone are not enough: they read a float Range's operands as integers,
    /// and an evaluation that disagrees with them allocates what the
    /// evaluation computes. When neither knows the size, it is refused.
    fn check(&self, values: &[Option<Arc<Tensor>>], outs: &[InferenceFact]) -> TractResult<()> {
        let width = outs
            .first()
            .and_then(|o| o.datum_type.concretize())
            .map_or(4, |t| t.size_of() as u128);
        let by_rules = outs.iter().try_fold(0u128, |acc, o| {
            let t = o.datum_type.concretize()?;
            let count = o.shape.concretize()?.iter().try_fold(1u128, |acc, d| {
                let d = u128::try_from(d.to_i64().ok()?).ok()?;
                Some(acc.saturating_mul(d))
            })?;
            Some(acc.saturating_add(count.saturating_mul(t.size_of() as u128)))
        });
        let by_definition = formula(&self.op, values).map(|n| n.saturating_mul(width));
        let bytes = match (by_rules, by_definition) {
            (None, None) => u128::MAX,
            (a, b) => a.unwrap_or(0).max(b.unwrap_or(0)),
        };
        take(|| (self.what.clone(), self.node.clone()), bytes)?;
        Ok(())
    }
}

/// How many values `op` outputs for these constant inputs, by the ONNX
/// definition of the operator (an upper bound where the exact count needs
/// more than the operands: `NonZero`, `Reshape`).
fn formula(op: &str, inputs: &[Option<Arc<Tensor>>]) -> Option<u128> {
    let value = |i: usize| inputs.get(i)?.clone();
    let ints = |i: usize| -> Option<Vec<i64>> {
        let t = value(i)?.cast_to::<i64>().ok()?.into_owned();
        let view = t.try_as_plain_ram().ok()?;
        Some(view.as_slice::<i64>().ok()?.to_vec())
    };
    let floats = |i: usize| -> Option<Vec<f64>> {
        let t = value(i)?.cast_to::<f64>().ok()?.into_owned();
        let view = t.try_as_plain_ram().ok()?;
        Some(view.as_slice::<f64>().ok()?.to_vec())
    };
    let scalar = |i: usize| -> Option<f64> { floats(i)?.first().copied() };
    let dims = |i: usize| -> Option<Vec<u128>> {
        Some(value(i)?.shape().iter().map(|&d| d as u128).collect())
    };
    let product = |v: &[u128]| v.iter().fold(1u128, |acc, &d| acc.saturating_mul(d));
    let count = |v: i64| v.max(0) as u128;
    // A float count, where NaN or infinity is unbounded.
    let whole = |v: f64| {
        if v.is_finite() {
            v.max(0.0) as u128
        } else {
            u128::MAX
        }
    };
    match op {
        "Range" => {
            let (start, limit, delta) = (scalar(0)?, scalar(1)?, scalar(2)?);
            Some(whole(((limit - start) / delta).ceil()))
        }
        "ConstantOfShape" => Some(product(
            &ints(0)?.into_iter().map(count).collect::<Vec<_>>(),
        )),
        "Tile" => {
            let reps = ints(1)?;
            let d = dims(0)?;
            let tiled: Vec<u128> = d
                .iter()
                .zip(&reps)
                .map(|(&n, &r)| n.saturating_mul(count(r)))
                .collect();
            // Tiling copies one block per repeat, even an empty one, and
            // tract reads a negative repeat as a huge one.
            let repeats = reps
                .into_iter()
                .map(tract_repeats)
                .fold(0u128, u128::saturating_add);
            Some(product(&tiled).max(repeats))
        }
        "Expand" => {
            // Broadcast, the shapes aligned on their last axis.
            let mut d = dims(0)?;
            let to: Vec<u128> = ints(1)?.into_iter().map(count).collect();
            while d.len() < to.len() {
                d.insert(0, 1);
            }
            let offset = d.len() - to.len();
            for (i, t) in to.iter().enumerate() {
                d[offset + i] = d[offset + i].max(*t);
            }
            Some(product(&d))
        }
        "OneHot" => Some(product(&dims(0)?).saturating_mul(whole(scalar(1)?.abs()))),
        "Pad" => {
            let d = dims(0)?;
            let pads = ints(1)?;
            let rank = d.len();
            let grown: Vec<u128> = d
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let before = pads.get(i).copied().unwrap_or(0) as i128;
                    let after = pads.get(i + rank).copied().unwrap_or(0) as i128;
                    (n as i128)
                        .saturating_add(before)
                        .saturating_add(after)
                        .max(0) as u128
                })
                .collect();
            Some(product(&grown))
        }
        "Resize" | "Upsample" => {
            let d = dims(0)?;
            if let Some(sizes) = ints(3).filter(|s| !s.is_empty()) {
                return Some(product(&sizes.into_iter().map(count).collect::<Vec<_>>()));
            }
            // Resize(X, scales) before opset 11, Resize(X, roi, scales, sizes) since.
            let at = if op == "Upsample" || inputs.len() == 2 {
                1
            } else {
                2
            };
            let scales = floats(at)?;
            let scaled: Vec<u128> = d
                .iter()
                .zip(scales)
                .map(|(&n, s)| whole((n as f64 * s).floor()))
                .collect();
            Some(product(&scaled))
        }
        // At most one index per value and axis.
        "NonZero" => {
            let d = dims(0)?;
            Some(product(&d).saturating_mul(d.len() as u128))
        }
        "Reshape" => Some(product(&dims(0)?)),
        _ => None,
    }
}

/// Inputs with at most this many values are handed to an operator's output
/// facts as constants: enough for every shape, length and count operand.
const KNOWN_VALUES: usize = 64;

/// Checks the outputs of a node whose output shape typing left symbolic,
/// for the values it is about to run on, against `left` bytes.
pub fn check_node(
    node: &TypedNode,
    inputs: &[TValue],
    symbols: &SymbolValues,
    left: usize,
    budget: usize,
) -> TractResult<()> {
    let over = |bytes: u128| OverBudget {
        what: node_named(&node.name, &node.op.name()),
        node: Some(node.name.clone()),
        bytes,
        budget,
    };
    // Tiling copies one block per repeat, however small the output: an empty
    // tensor repeated 10^18 times is no memory and centuries of work. Each
    // repeat counts as one value, so the memory budget bounds the work too.
    if let Some(repeats) = tile_repeats(node, inputs, symbols) {
        let width = node
            .outputs
            .first()
            .map_or(4, |o| o.fact.datum_type.size_of()) as u128;
        let bytes = repeats.saturating_mul(width);
        if bytes > left as u128 {
            return Err(over(bytes).into());
        }
    }
    if node.outputs.iter().all(|o| o.fact.shape.is_concrete()) {
        return Ok(());
    }
    let facts: TVec<TypedFact> = inputs
        .iter()
        .map(|v| {
            if v.len() <= KNOWN_VALUES {
                TypedFact::try_from(v.clone().into_arc_tensor())
            } else {
                Ok(TypedFact::shape_and_dt_of(v))
            }
        })
        .collect::<TractResult<_>>()?;
    let refs: TVec<&TypedFact> = facts.iter().collect();
    let Ok(outs) = node.op.output_facts(&refs) else {
        return Ok(());
    };
    // A dimension still symbolic (the count of an earlier NonZero, the length
    // of an earlier Range) has its value by now: the run bound it when the
    // node that defines it ran.
    let mut bytes = 0u128;
    for (o, planned) in outs.iter().zip(&node.outputs) {
        let resolve = |d: &TDim| u128::try_from(d.eval(symbols).to_i64().ok()?).ok();
        let count = o
            .shape
            .iter()
            .map(resolve)
            .collect::<Option<Vec<_>>>()
            .or_else(|| planned.fact.shape.iter().map(resolve).collect());
        let Some(count) = count else {
            // Known only once it is computed: NonZero's own count, bounded by its input.
            continue;
        };
        let count = count.iter().fold(1u128, |acc, &d| acc.saturating_mul(d));
        bytes = bytes.saturating_add(count.saturating_mul(o.datum_type.size_of() as u128));
    }
    if bytes > left as u128 {
        return Err(over(bytes).into());
    }
    Ok(())
}

/// How many blocks a tiling node is about to copy: the sum of its
/// multipliers, from the op or, for a dynamic tiling, from its input.
fn tile_repeats(node: &TypedNode, inputs: &[TValue], symbols: &SymbolValues) -> Option<u128> {
    use tract_onnx::tract_core::ops::array::{DynTile, Tile};
    let count = |d: &TDim| Some(tract_repeats(d.eval(symbols).to_i64().ok()?));
    let multipliers: Vec<TDim> = if let Some(tile) = node.op_as::<Tile>() {
        tile.multipliers.to_vec()
    } else if node.op_as::<DynTile>().is_some() {
        let m = inputs.get(1)?.cast_to::<TDim>().ok()?;
        let view = m.try_as_plain_ram().ok()?;
        view.as_slice::<TDim>().ok()?.to_vec()
    } else {
        return None;
    };
    multipliers
        .iter()
        .map(count)
        .try_fold(0u128, |acc, m| Some(acc.saturating_add(m?)))
}

/// The blocks tract copies for a tiling multiplier: it reads the multiplier
/// as a `usize`, so a negative one (invalid ONNX) wraps to about 1.8e19.
fn tract_repeats(multiplier: i64) -> u128 {
    multiplier as u64 as u128
}

/// The refusal behind a tract error, if the budget refused.
pub fn refusal(e: &TractError) -> Option<&OverBudget> {
    e.chain().find_map(|c| c.downcast_ref::<OverBudget>())
}
