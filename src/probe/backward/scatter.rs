//! Indexing by tuples and writing by index: `GatherND`, `ScatterND`,
//! `ScatterElements`, built from candle's `index_select` and `index_add`,
//! which candle differentiates.
//!
//! The indices are data, never differentiated: they are read once to plain
//! integers, checked against the shape, and turned into row numbers of the
//! tensor seen as a matrix (the indexed leading axes flattened into rows,
//! the rest into columns).

use candle_core::{Device, Tensor};

use super::ops::{axis, c, i64_tensor, indices_in, ints, R};

/// The rows of `dims[lead..lead + k]` flattened, that each index tuple of
/// `indices` (last axis `k`) names, offset per batch of the first `lead`
/// axes. `op` names the operator in errors.
fn rows(dims: &[usize], indices: &Tensor, lead: usize, op: &str) -> R<Vec<i64>> {
    let idims = indices.dims();
    let k = *idims
        .last()
        .ok_or_else(|| format!("{op} with scalar indices"))?;
    if idims.len() <= lead || lead + k > dims.len() {
        return Err(format!(
            "{op} indices of shape {idims:?} do not fit data of shape {dims:?}"
        ));
    }
    if idims[..lead] != dims[..lead] {
        return Err(format!(
            "{op} indices of shape {idims:?} do not share the batch axes of data of shape {dims:?}"
        ));
    }
    let indexed = &dims[lead..lead + k];
    let per_batch: usize = indexed.iter().product();
    let tuples = ints(indices)?;
    let count: usize = idims[..idims.len() - 1].iter().product();
    let per_batch_tuples: usize = idims[lead..idims.len() - 1].iter().product();
    let mut out = Vec::with_capacity(count);
    for t in 0..count {
        let batch = t / per_batch_tuples.max(1);
        let mut row = 0i64;
        for (&i, &d) in tuples[t * k..(t + 1) * k].iter().zip(indexed) {
            let d = d as i64;
            let i = if i < 0 { i + d } else { i };
            if i < 0 || i >= d {
                return Err(format!("{op} index out of range 0..{d}"));
            }
            row = row * d + i;
        }
        out.push(batch as i64 * per_batch as i64 + row);
    }
    Ok(out)
}

/// `GatherND`: the slices of `x` that the index tuples of `indices` name,
/// the first `batch_dims` axes shared by both.
pub(super) fn gather_nd(x: &Tensor, indices: &Tensor, batch_dims: i64) -> R<Tensor> {
    let lead = usize::try_from(batch_dims).map_err(|_| "GatherND with negative batch_dims")?;
    let dims = x.dims();
    let picked = rows(dims, indices, lead, "GatherND")?;
    let k = indices.dims().last().copied().unwrap_or(0);
    let rest = &dims[lead + k..];
    let flat = x
        .reshape((picked_rows(dims, lead + k), rest.iter().product::<usize>()))
        .map_err(c)?;
    let out = flat.index_select(&i64_tensor(&picked)?, 0).map_err(c)?;
    let mut shape = indices.dims()[..indices.rank() - 1].to_vec();
    shape.extend_from_slice(rest);
    out.reshape(shape).map_err(c)
}

/// The number of rows of `dims` seen as a matrix of its first `n` axes.
fn picked_rows(dims: &[usize], n: usize) -> usize {
    dims[..n].iter().product()
}

/// `ScatterND`: `x` with the slices the index tuples name replaced by (or,
/// with `reduction = "add"`, increased by) `updates`. The replaced slices
/// pass no gradient back to `x`.
pub(super) fn scatter_nd(
    x: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    reduction: &str,
) -> R<Tensor> {
    let dims = x.dims();
    let written = rows(dims, indices, 0, "ScatterND")?;
    let k = indices.dims().last().copied().unwrap_or(0);
    let (m, width) = (picked_rows(dims, k), dims[k..].iter().product::<usize>());
    let flat = x.reshape((m, width)).map_err(c)?;
    let updates = updates
        .to_dtype(x.dtype())
        .and_then(|u| u.reshape((written.len(), width)))
        .map_err(c)?;
    write_rows(&flat, &written, &updates, reduction, "ScatterND")?
        .reshape(dims)
        .map_err(c)
}

/// `flat` (rows of equal width) with the rows `written` names replaced by
/// (`reduction = "none"`) or increased by (`"add"`) the rows of `updates`:
/// an `index_add` over a copy whose written rows are zeroed, so that they
/// pass no gradient back to `flat`.
fn write_rows(
    flat: &Tensor,
    written: &[i64],
    updates: &Tensor,
    reduction: &str,
    op: &str,
) -> R<Tensor> {
    let base = match reduction {
        "none" => {
            let rows = flat.dims()[0];
            let mut keep = vec![1f64; rows];
            for &r in written {
                keep[r as usize] = 0.0;
            }
            let mut shape = vec![1; flat.rank()];
            shape[0] = rows;
            let keep = Tensor::from_vec(keep, shape, &Device::Cpu)
                .and_then(|k| k.to_dtype(flat.dtype()))
                .map_err(c)?;
            flat.broadcast_mul(&keep).map_err(c)?
        }
        "add" => flat.clone(),
        other => {
            return Err(format!(
                "the gradient engine has no `{op}` with reduction `{other}`"
            ))
        }
    };
    base.index_add(&i64_tensor(written)?, updates, 0).map_err(c)
}

/// `ScatterElements`: `x` with the elements `indices` names along `axis`
/// replaced by (or increased by) `updates`. Written as an `index_add` on
/// the flattened tensor: candle's own `scatter_add` masks the gradient of
/// the tensor it adds into, and fails on indices smaller than it.
pub(super) fn scatter_elements(
    x: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    a: i64,
    reduction: &str,
) -> R<Tensor> {
    let a = axis(a, x.rank())?;
    let (dims, idims) = (x.dims(), indices.dims());
    if idims.len() != dims.len()
        || updates.dims() != idims
        || idims
            .iter()
            .zip(dims)
            .enumerate()
            .any(|(d, (i, x))| d != a && i > x)
    {
        return Err(format!(
            "ScatterElements indices of shape {idims:?} and updates of shape {:?} do not fit data of shape {dims:?}",
            updates.dims()
        ));
    }
    let idx = indices_in(indices, dims[a], "ScatterElements")?;
    let mut strides = vec![1usize; dims.len()];
    for d in (0..dims.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * dims[d + 1];
    }
    let written: Vec<i64> = idx
        .iter()
        .enumerate()
        .map(|(p, &i)| {
            let (mut rest, mut at) = (p, 0usize);
            for d in (0..idims.len()).rev() {
                let coord = if d == a { i as usize } else { rest % idims[d] };
                rest /= idims[d].max(1);
                at += coord * strides[d];
            }
            at as i64
        })
        .collect();
    let flat = x.flatten_all().map_err(c)?;
    let updates = updates
        .to_dtype(x.dtype())
        .and_then(|u| u.flatten_all())
        .map_err(c)?;
    write_rows(&flat, &written, &updates, reduction, "ScatterElements")?
        .reshape(dims)
        .map_err(c)
}
