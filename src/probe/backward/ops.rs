//! ONNX operators as candle ops, so that candle's autodiff differentiates them.
//!
//! Each operator is written with candle ops whose backward candle defines,
//! with ONNX's semantics (broadcasting, negative axes, attribute and input
//! forms across opsets). Where candle's own op has no backward for a case
//! ONNX needs (pooling with a stride other than its kernel, or with
//! padding), the op is built from ops that do: windows picked with
//! `index_select`, then a maximum or a sum.

use candle_core::{DType, Device, Tensor};

use super::product::Product;
use crate::onnx::proto::{data_type as dt, AttributeProto, NodeProto, TensorProto};

pub type R<T> = Result<T, String>;

/// candle's error, on one line.
pub fn c(e: candle_core::Error) -> String {
    let s = e.to_string();
    s.lines().next().unwrap_or("").trim().to_string()
}

/// What every op needs besides its inputs.
pub struct Cx {
    pub opset: i64,
    /// The dtype of every float tensor (f32, or f64 for gradient checks).
    pub float: DType,
    /// Batch statistics are constants to the backward pass: a sample's
    /// output then depends on the other samples only through the model.
    pub detach_statistics: bool,
    /// Batch statistics (mean, variance) in the order they were computed;
    /// replayed instead of computed when `replay` is set, so that a second
    /// pass on changed inputs normalizes exactly as the first.
    pub statistics: std::cell::RefCell<Vec<(Tensor, Tensor)>>,
    pub replay: bool,
    pub next: std::cell::Cell<usize>,
}

impl Cx {
    pub fn new(opset: i64, float: DType, detach_statistics: bool) -> Cx {
        Cx {
            opset,
            float,
            detach_statistics,
            statistics: Default::default(),
            replay: false,
            next: Default::default(),
        }
    }
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn attr_i(n: &NodeProto, name: &str) -> Option<i64> {
    attr(n, name).map(|a| a.i)
}

fn attr_f(n: &NodeProto, name: &str) -> Option<f32> {
    attr(n, name).map(|a| a.f)
}

fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// The integers a small tensor holds (shapes, axes, indices).
pub fn ints(t: &Tensor) -> R<Vec<i64>> {
    let t = t.flatten_all().map_err(c)?;
    match t.dtype() {
        DType::I64 => t.to_vec1::<i64>().map_err(c),
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => Ok(t
            .to_dtype(DType::F64)
            .and_then(|t| t.to_vec1::<f64>())
            .map_err(c)?
            .into_iter()
            .map(|v| v as i64)
            .collect()),
        _ => t
            .to_dtype(DType::I64)
            .and_then(|t| t.to_vec1::<i64>())
            .map_err(c),
    }
}

pub(super) fn floats(t: &Tensor) -> R<Vec<f64>> {
    t.flatten_all()
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(c)
}

fn scalar_f(t: &Tensor) -> R<f64> {
    floats(t)?
        .first()
        .copied()
        .ok_or_else(|| "an empty tensor where a scalar was expected".to_string())
}

pub(super) fn i64_tensor(v: &[i64]) -> R<Tensor> {
    Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).map_err(c)
}

pub(super) fn axis(a: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    if a < 0 || a >= r.max(1) {
        return Err(format!("axis {a} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// The dtype of ONNX element type `t` in the engine.
pub fn dtype_of(t: i32, float: DType) -> R<DType> {
    Ok(match t {
        _ if dt::is_float(t) => float,
        dt::BOOL | dt::UINT8 => DType::U8,
        dt::INT8 | dt::INT16 | dt::INT32 | dt::INT64 | dt::UINT16 | dt::UINT32 | dt::UINT64 => {
            DType::I64
        }
        other => {
            return Err(format!(
                "the gradient engine has no {} tensors",
                dt::name(other)
            ))
        }
    })
}

/// A stored tensor as an engine tensor, from its values.
pub fn from_values(t: &TensorProto, values: Vec<f64>, float: DType) -> R<Tensor> {
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let dtype = dtype_of(t.data_type, float)?;
    let tensor = match dtype {
        DType::U8 => {
            let v: Vec<u8> = values.iter().map(|&x| x as u8).collect();
            Tensor::from_vec(v, dims, &Device::Cpu)
        }
        DType::I64 => {
            let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
            Tensor::from_vec(v, dims, &Device::Cpu)
        }
        _ => Tensor::from_vec(values, dims, &Device::Cpu).and_then(|t| t.to_dtype(float)),
    };
    tensor.map_err(c)
}

/// The broadcast shape of two shapes, numpy style.
fn broadcast(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let x = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let y = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        *o = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

fn to(t: &Tensor, shape: &[usize]) -> R<Tensor> {
    if t.dims() == shape {
        return Ok(t.clone());
    }
    t.broadcast_as(shape).map_err(c)
}

fn bin(
    a: &Tensor,
    b: &Tensor,
    f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> R<Tensor> {
    let shape = broadcast(a.dims(), b.dims())?;
    let (a, b) = (to(a, &shape)?, to(b, &shape)?);
    f(&a, &b).map_err(c)
}

fn same_dtype(a: &Tensor, b: &Tensor) -> R<(Tensor, Tensor)> {
    if a.dtype() == b.dtype() {
        return Ok((a.clone(), b.clone()));
    }
    // Integer and float operands meet in shape arithmetic written by exporters.
    let target = if a.dtype().is_float() {
        a.dtype()
    } else {
        b.dtype()
    };
    Ok((
        a.to_dtype(target).map_err(c)?,
        b.to_dtype(target).map_err(c)?,
    ))
}

pub(super) fn sigmoid(x: &Tensor) -> R<Tensor> {
    // 0.5 * (tanh(x / 2) + 1): finite gradients for any x, where
    // 1 / (1 + exp(-x)) overflows for large negative x.
    x.affine(0.5, 0.0)
        .and_then(|h| h.tanh())
        .and_then(|t| t.affine(0.5, 0.5))
        .map_err(c)
}

/// Reduction axes of a node: the `axes` input (opset 18, 13 for `ReduceSum`)
/// or attribute; `None` for all.
fn reduce_axes(n: &NodeProto, inputs: &[Option<Tensor>], rank: usize) -> R<Option<Vec<usize>>> {
    let listed = match inputs.get(1).and_then(|t| t.as_ref()) {
        Some(t) => Some(ints(t)?),
        None => attr_ints(n, "axes"),
    };
    match listed {
        Some(a) if !a.is_empty() => {
            let mut v = a
                .into_iter()
                .map(|a| axis(a, rank))
                .collect::<R<Vec<_>>>()?;
            v.sort_unstable();
            v.dedup();
            Ok(Some(v))
        }
        _ if attr_i(n, "noop_with_empty_axes") == Some(1) => Ok(Some(vec![])),
        _ => Ok(None),
    }
}

fn reduce(n: &NodeProto, x: &Tensor, inputs: &[Option<Tensor>]) -> R<Tensor> {
    let rank = x.rank();
    let axes = reduce_axes(n, inputs, rank)?.unwrap_or_else(|| (0..rank).collect());
    let keep = attr_i(n, "keepdims").unwrap_or(1) == 1;
    let op = n.op_type.as_str();
    let mut y = match op {
        "ReduceSumSquare" | "ReduceL2" => x.sqr().map_err(c)?,
        "ReduceL1" => x.abs().map_err(c)?,
        _ => x.clone(),
    };
    if !axes.is_empty() {
        y = match op {
            "ReduceMean" => y.mean_keepdim(axes.clone()),
            "ReduceSum" | "ReduceSumSquare" | "ReduceL2" | "ReduceL1" => {
                y.sum_keepdim(axes.clone())
            }
            "ReduceMax" | "ReduceMin" => {
                let mut t = y;
                for &a in &axes {
                    t = if op == "ReduceMax" {
                        t.max_keepdim(a)
                    } else {
                        t.min_keepdim(a)
                    }
                    .map_err(c)?;
                }
                Ok(t)
            }
            "ReduceLogSumExp" => {
                let m = y.max_keepdim(axes[0]).map_err(c)?.detach();
                let mut m2 = m;
                for &a in &axes[1..] {
                    m2 = m2.max_keepdim(a).map_err(c)?;
                }
                y.broadcast_sub(&m2)
                    .and_then(|s| s.exp())
                    .and_then(|e| e.sum_keepdim(axes.clone()))
                    .and_then(|s| s.log())
                    .and_then(|l| l.broadcast_add(&m2))
            }
            other => return Err(format!("the gradient engine has no `{other}` operator")),
        }
        .map_err(c)?;
    }
    if op == "ReduceL2" {
        y = y.sqrt().map_err(c)?;
    }
    if !keep {
        for &a in axes.iter().rev() {
            y = y.squeeze(a).map_err(c)?;
        }
    }
    Ok(y)
}

/// Softmax (or log-softmax) over `axis`, with opset 1-12's flattening to 2-D.
fn softmax(n: &NodeProto, x: &Tensor, cx: &Cx, log: bool) -> R<Tensor> {
    let rank = x.rank();
    let legacy = cx.opset < 13;
    let a = axis(
        attr_i(n, "axis").unwrap_or(if legacy { 1 } else { -1 }),
        rank,
    )?;
    let shape = x.dims().to_vec();
    let (x2, dim) = if legacy {
        let outer: usize = shape[..a].iter().product();
        (x.reshape((outer, ())).map_err(c)?, 1)
    } else {
        (x.clone(), a)
    };
    // Subtracting the maximum changes no derivative: it is a constant here.
    let m = x2.max_keepdim(dim).map_err(c)?.detach();
    let s = x2.broadcast_sub(&m).map_err(c)?;
    let e = s.exp().map_err(c)?;
    let sum = e.sum_keepdim(dim).map_err(c)?;
    let y = if log {
        s.broadcast_sub(&sum.log().map_err(c)?)
    } else {
        e.broadcast_div(&sum)
    }
    .map_err(c)?;
    y.reshape(shape).map_err(c)
}

/// Pads `x` along `dim` with `before` and `after` copies of `value`.
fn pad(x: &Tensor, dim: usize, before: usize, after: usize, value: f64) -> R<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    let mut parts = Vec::new();
    let side = |k: usize| -> R<Tensor> {
        let mut s = x.dims().to_vec();
        s[dim] = k;
        Tensor::full(value, s, &Device::Cpu)
            .and_then(|t| t.to_dtype(x.dtype()))
            .map_err(c)
    };
    if before > 0 {
        parts.push(side(before)?);
    }
    parts.push(x.clone());
    if after > 0 {
        parts.push(side(after)?);
    }
    Tensor::cat(&parts, dim).map_err(c)
}

/// Spatial geometry of a convolution or pooling: kernel, strides,
/// dilations, and pads (begin, end) per spatial axis.
struct Window {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<(usize, usize)>,
}

impl Window {
    fn of(n: &NodeProto, spatial: &[usize], kernel: Vec<usize>) -> R<Window> {
        let k = kernel.len();
        if k != spatial.len() {
            return Err(format!(
                "{} has a {k}-d kernel for {} spatial axes",
                n.op_type,
                spatial.len()
            ));
        }
        let get = |name: &str| {
            attr_ints(n, name)
                .filter(|v| !v.is_empty())
                .map(|v| v.into_iter().map(|x| x.max(1) as usize).collect::<Vec<_>>())
                .unwrap_or_else(|| vec![1; k])
        };
        let strides = get("strides");
        let dilations = get("dilations");
        let ceil = attr_i(n, "ceil_mode") == Some(1);
        let auto = attr_s(n, "auto_pad").unwrap_or_default();
        let mut pads = Vec::with_capacity(k);
        let listed = attr_ints(n, "pads").unwrap_or_default();
        for i in 0..k {
            let extent = (kernel[i] - 1) * dilations[i] + 1;
            let (b, mut e) = match auto.as_str() {
                "SAME_UPPER" | "SAME_LOWER" => {
                    let out = spatial[i].div_ceil(strides[i]);
                    let total = ((out - 1) * strides[i] + extent).saturating_sub(spatial[i]);
                    let half = total / 2;
                    if auto == "SAME_UPPER" {
                        (half, total - half)
                    } else {
                        (total - half, half)
                    }
                }
                "VALID" => (0, 0),
                _ => (
                    listed.get(i).copied().unwrap_or(0).max(0) as usize,
                    listed.get(i + k).copied().unwrap_or(0).max(0) as usize,
                ),
            };
            if ceil {
                // Room for a last window that starts inside the input or its
                // leading padding.
                let padded = spatial[i] + b + e;
                let mut out = padded.saturating_sub(extent).div_ceil(strides[i]) + 1;
                if out > 1 && (out - 1) * strides[i] >= spatial[i] + b {
                    out -= 1;
                }
                e += ((out - 1) * strides[i] + extent).saturating_sub(padded);
            }
            pads.push((b, e));
        }
        Ok(Window {
            kernel,
            strides,
            dilations,
            pads,
        })
    }

    fn output(&self, padded: &[usize]) -> R<Vec<usize>> {
        (0..self.kernel.len())
            .map(|i| {
                let extent = (self.kernel[i] - 1) * self.dilations[i] + 1;
                if padded[i] < extent {
                    return Err("the window is larger than the padded input".to_string());
                }
                Ok((padded[i] - extent) / self.strides[i] + 1)
            })
            .collect()
    }
}

/// Every window position of a padded `[N, C, ...]` tensor: one tensor per
/// kernel offset, each shaped like the output.
fn windows(x: &Tensor, w: &Window) -> R<Vec<Tensor>> {
    let spatial = &x.dims()[2..];
    let out = w.output(spatial)?;
    let mut parts = vec![x.clone()];
    for (i, (&k, &o)) in w.kernel.iter().zip(&out).enumerate() {
        let mut next = Vec::with_capacity(parts.len() * k);
        for p in &parts {
            for ki in 0..k {
                let start = ki * w.dilations[i];
                let idx: Vec<i64> = (0..o).map(|j| (start + j * w.strides[i]) as i64).collect();
                let picked = if w.strides[i] == 1 {
                    p.narrow(2 + i, start, o).map_err(c)?
                } else {
                    p.index_select(&i64_tensor(&idx)?, 2 + i).map_err(c)?
                };
                next.push(picked);
            }
        }
        parts = next;
    }
    Ok(parts)
}

fn pad_spatial(x: &Tensor, w: &Window, value: f64) -> R<Tensor> {
    let mut t = x.clone();
    for (i, &(b, e)) in w.pads.iter().enumerate() {
        t = pad(&t, 2 + i, b, e, value)?;
    }
    Ok(t)
}

fn pool(n: &NodeProto, x: &Tensor, max: bool) -> R<Tensor> {
    if x.rank() < 3 {
        return Err(format!("{} needs an input of rank 3 or more", n.op_type));
    }
    let kernel: Vec<usize> = attr_ints(n, "kernel_shape")
        .ok_or_else(|| format!("{} without kernel_shape", n.op_type))?
        .into_iter()
        .map(|k| k.max(1) as usize)
        .collect();
    let w = Window::of(n, &x.dims()[2..], kernel)?;
    let padded = pad_spatial(x, &w, if max { f64::NEG_INFINITY } else { 0.0 })?;
    let parts = windows(&padded, &w)?;
    let mut acc = parts[0].clone();
    for p in &parts[1..] {
        acc = if max { acc.maximum(p) } else { acc.add(p) }.map_err(c)?;
    }
    if max {
        return Ok(acc);
    }
    let include = attr_i(n, "count_include_pad") == Some(1);
    let padding = w.pads.iter().any(|&(b, e)| b > 0 || e > 0);
    if include || !padding {
        let k: usize = w.kernel.iter().product();
        return acc.affine(1.0 / k as f64, 0.0).map_err(c);
    }
    // Divided by the count of real elements in each window.
    let ones = Tensor::ones(x.dims(), x.dtype(), &Device::Cpu).map_err(c)?;
    let ones = pad_spatial(&ones, &w, 0.0)?;
    let counts = windows(&ones, &w)?;
    let mut count = counts[0].clone();
    for p in &counts[1..] {
        count = count.add(p).map_err(c)?;
    }
    acc.div(&count).map_err(c)
}

/// `ConvTranspose` as the convolution it is the adjoint of: the input with
/// `stride - 1` zeros between its elements, padded by `dilation (k - 1)`
/// less the pads (plus `output_padding` at the end), convolved with the
/// kernel flipped in space and with its two channel axes swapped per group.
/// Its gradient is then the convolution's, taken through ops candle
/// differentiates.
fn conv_transpose(n: &NodeProto, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> R<Tensor> {
    let rank = weight.rank();
    if !(3..=4).contains(&rank) || x.rank() != rank {
        return Err(format!(
            "the gradient engine has no {}-d `ConvTranspose`",
            rank.saturating_sub(2)
        ));
    }
    let auto = attr_s(n, "auto_pad").unwrap_or_default();
    if attr(n, "output_shape").is_some() || !(auto.is_empty() || auto == "NOTSET") {
        return Err(
            "the gradient engine has no `ConvTranspose` with `output_shape` or `auto_pad`".into(),
        );
    }
    let spatial = rank - 2;
    let kernel = &weight.dims()[2..];
    let list = |name: &str, default: i64, len: usize| -> R<Vec<i64>> {
        let v = attr_ints(n, name).filter(|v| !v.is_empty());
        let v = v.unwrap_or_else(|| vec![default; len]);
        if v.len() != len || v.iter().any(|&d| d < 0) {
            return Err(format!("`ConvTranspose` has a malformed `{name}`"));
        }
        Ok(v)
    };
    let strides = list("strides", 1, spatial)?;
    let dilations = list("dilations", 1, spatial)?;
    let pads = list("pads", 0, 2 * spatial)?;
    let extra = list("output_padding", 0, spatial)?;
    if strides.contains(&0) || dilations.contains(&0) {
        return Err("`ConvTranspose` has a zero stride or dilation".into());
    }
    if !dilations.iter().all(|&d| d == dilations[0]) {
        return Err(
            "the gradient engine has no `ConvTranspose` with different dilations per axis".into(),
        );
    }
    let groups = attr_i(n, "group").unwrap_or(1).max(1) as usize;
    let (c_in, c_out_g) = (weight.dims()[0], weight.dims()[1]);
    if c_in % groups != 0 || x.dims()[1] != c_in {
        return Err("`ConvTranspose`'s channels do not divide into its groups".into());
    }
    let mut y = x.clone();
    for a in 0..spatial {
        let axis = 2 + a;
        let (s, len) = (strides[a] as usize, y.dims()[axis]);
        if s > 1 && len > 0 {
            // [.., L, ..] -> [.., L, s, ..] (zeros after each element) -> [.., L s, ..].
            let u = y.unsqueeze(axis + 1).map_err(c)?;
            let u = pad(&u, axis + 1, 0, s - 1, 0.0)?;
            let mut merged = y.dims().to_vec();
            merged[axis] = len * s;
            y = u
                .reshape(merged)
                .and_then(|t| t.narrow(axis, 0, (len - 1) * s + 1))
                .map_err(c)?;
        }
        let reach = dilations[a] * (kernel[a] as i64 - 1);
        let before = reach - pads[a];
        let after = reach - pads[spatial + a] + extra[a];
        if before < 0 || after < 0 {
            let size = y.dims()[axis] as i64;
            let start = (-before).max(0);
            let end = size + after.min(0);
            if end <= start {
                return Err("`ConvTranspose`'s pads leave no output".into());
            }
            y = y
                .narrow(axis, start as usize, (end - start) as usize)
                .map_err(c)?;
        }
        y = pad(&y, axis, before.max(0) as usize, after.max(0) as usize, 0.0)?;
    }
    // [C_in, C_out/g, k..] -> [C_out, C_in/g, k..], flipped in space.
    let mut w = weight.clone();
    for (a, &k) in kernel.iter().enumerate() {
        let reversed: Vec<i64> = (0..k as i64).rev().collect();
        let index = Tensor::new(reversed.as_slice(), &Device::Cpu).map_err(c)?;
        w = w.index_select(&index, 2 + a).map_err(c)?;
    }
    let mut grouped = vec![groups, c_in / groups, c_out_g];
    grouped.extend_from_slice(kernel);
    let mut swapped = vec![groups * c_out_g, c_in / groups];
    swapped.extend_from_slice(kernel);
    let w = w
        .reshape(grouped)
        .and_then(|w| w.transpose(1, 2))
        .and_then(|w| w.contiguous())
        .and_then(|w| w.reshape(swapped))
        .map_err(c)?;
    let op = super::conv::Conv2d {
        padding: 0,
        stride: 1,
        dilation: dilations[0] as usize,
        groups,
    };
    let out = if rank == 4 {
        y.contiguous().and_then(|i| i.apply_op2(&w, op))
    } else {
        y.unsqueeze(2)
            .and_then(|i| i.contiguous())
            .and_then(|i| i.apply_op2(&w.unsqueeze(2)?.contiguous()?, op))
            .and_then(|t| t.squeeze(2))
    }
    .map_err(c)?;
    add_channel_bias(out, bias)
}

/// A convolution's output plus its per-channel bias (axis 1).
fn add_channel_bias(y: Tensor, bias: Option<&Tensor>) -> R<Tensor> {
    match bias {
        Some(b) => {
            let mut shape = vec![1; y.rank()];
            shape[1] = b.elem_count();
            y.broadcast_add(&b.reshape(shape).map_err(c)?).map_err(c)
        }
        None => Ok(y),
    }
}

fn conv(n: &NodeProto, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> R<Tensor> {
    let rank = weight.rank();
    if !(3..=4).contains(&rank) || x.rank() != rank {
        return Err(format!(
            "the gradient engine has no {}-d convolution",
            rank.saturating_sub(2)
        ));
    }
    let kernel: Vec<usize> = weight.dims()[2..].to_vec();
    let w = Window::of(n, &x.dims()[2..], kernel)?;
    let groups = attr_i(n, "group").unwrap_or(1).max(1) as usize;
    let same = |v: &[usize]| v.iter().all(|&s| s == v[0]);
    if !same(&w.strides) || !same(&w.dilations) {
        return Err(
            "the gradient engine has no convolution with different strides or dilations per axis"
                .into(),
        );
    }
    let symmetric = w.pads.iter().all(|&(b, e)| b == e && b == w.pads[0].0);
    let (input, padding) = if symmetric {
        (x.clone(), w.pads[0].0)
    } else {
        (pad_spatial(x, &w, 0.0)?, 0)
    };
    let (stride, dilation) = (w.strides[0], w.dilations[0]);
    let op = super::conv::Conv2d {
        padding,
        stride,
        dilation,
        groups,
    };
    let y = if rank == 4 {
        input
            .contiguous()
            .and_then(|i| i.apply_op2(&weight.contiguous()?, op))
    } else {
        // A 1-d convolution is a 2-d one over a height of 1, padded along the width only.
        let i = if padding > 0 {
            pad(&input, 2, padding, padding, 0.0)?
        } else {
            input.clone()
        };
        let op = super::conv::Conv2d { padding: 0, ..op };
        i.unsqueeze(2)
            .and_then(|i| i.contiguous())
            .and_then(|i| i.apply_op2(&weight.unsqueeze(2)?.contiguous()?, op))
            .and_then(|y| y.squeeze(2))
    }
    .map_err(c)?;
    add_channel_bias(y, bias)
}

fn matmul(a: &Tensor, b: &Tensor) -> R<Tensor> {
    let (a1, b1) = (a.rank() == 1, b.rank() == 1);
    let a = if a1 {
        a.unsqueeze(0).map_err(c)?
    } else {
        a.clone()
    };
    let b = if b1 {
        b.unsqueeze(1).map_err(c)?
    } else {
        b.clone()
    };
    let a = a.contiguous().map_err(c)?;
    let b = b.contiguous().map_err(c)?;
    let same_stacks = a.rank() == b.rank() && a.dims()[..a.rank() - 2] == b.dims()[..b.rank() - 2];
    let mut y = if same_stacks {
        Product {
            b_transposed: false,
        }
        .apply(&a, &b)
    } else {
        a.broadcast_matmul(&b)
    }
    .map_err(c)?;
    if b1 {
        y = y.squeeze(y.rank() - 1).map_err(c)?;
    }
    if a1 {
        y = y.squeeze(y.rank() - 2).map_err(c)?;
    }
    Ok(y)
}

/// `(x - mean) / sqrt(var + eps)` over `axes`. Batch statistics (`batch`
/// set) are recorded in `cx`, or replayed from it.
fn normalize(x: &Tensor, axes: &[usize], eps: f64, cx: &Cx, batch: bool) -> R<Tensor> {
    let (mean, var) = if batch && cx.replay {
        let i = cx.next.get();
        cx.next.set(i + 1);
        cx.statistics
            .borrow()
            .get(i)
            .cloned()
            .ok_or("the replayed pass normalizes more often than the first")?
    } else {
        // E[x] and E[x²] - E[x]², as the forward probe computes them: two
        // passes over `x`, trailing axes first (contiguous), then the rest.
        let mean_of = |t: &Tensor| -> R<Tensor> {
            let trailing: Vec<usize> = axes.iter().copied().filter(|&a| a >= 2).collect();
            let leading: Vec<usize> = axes.iter().copied().filter(|&a| a < 2).collect();
            let mut m = t.clone();
            if !trailing.is_empty() {
                m = m.mean_keepdim(trailing).map_err(c)?;
            }
            if !leading.is_empty() {
                m = m.mean_keepdim(leading).map_err(c)?;
            }
            Ok(m)
        };
        let mean = mean_of(x)?;
        let mean_sq = mean_of(&x.sqr().map_err(c)?)?;
        let var = mean_sq
            .sub(&mean.sqr().map_err(c)?)
            .and_then(|v| v.relu())
            .map_err(c)?;
        if batch && cx.detach_statistics {
            (mean.detach(), var.detach())
        } else {
            (mean, var)
        }
    };
    if batch && !cx.replay {
        cx.statistics.borrow_mut().push((mean.clone(), var.clone()));
    }
    // x * a + b with a = 1 / std and b = -mean * a: two passes over `x`.
    let a = var
        .affine(1.0, eps)
        .and_then(|v| v.sqrt())
        .and_then(|s| s.recip())
        .map_err(c)?;
    let b = mean.mul(&a).and_then(|b| b.neg()).map_err(c)?;
    x.broadcast_mul(&a)
        .and_then(|y| y.broadcast_add(&b))
        .map_err(c)
}

/// `[1, C, 1, ...]` for per-channel parameters of a rank-`rank` tensor.
fn per_channel(p: &Tensor, rank: usize) -> R<Tensor> {
    let mut shape = vec![1; rank];
    shape[1] = p.elem_count();
    p.reshape(shape).map_err(c)
}

fn slice(x: &Tensor, n: &NodeProto, inputs: &[Option<Tensor>], cx: &Cx) -> R<Tensor> {
    let rank = x.rank();
    let get = |i: usize, name: &str| -> R<Option<Vec<i64>>> {
        if cx.opset >= 10 {
            inputs.get(i).and_then(|t| t.as_ref()).map(ints).transpose()
        } else {
            Ok(attr_ints(n, name))
        }
    };
    let starts = get(1, "starts")?.ok_or("Slice without starts")?;
    let ends = get(2, "ends")?.ok_or("Slice without ends")?;
    let axes = get(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = get(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    let mut y = x.clone();
    for i in 0..starts.len() {
        let a = axis(axes[i], rank)?;
        let dim = y.dims()[a] as i64;
        let step = steps.get(i).copied().unwrap_or(1);
        if step == 0 {
            return Err("Slice with step 0".into());
        }
        let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
        let fix = |v: i64| if v < 0 { v + dim } else { v };
        let idx: Vec<i64> = if step > 0 {
            let (s, e) = (clamp(fix(starts[i]), 0, dim), clamp(fix(ends[i]), 0, dim));
            (s..e).step_by(step as usize).collect()
        } else {
            let (s, e) = (
                clamp(fix(starts[i]), -1, dim - 1),
                clamp(fix(ends[i]), -1, dim - 1),
            );
            let mut v = Vec::new();
            let mut k = s;
            while k > e {
                v.push(k);
                k += step;
            }
            v
        };
        y = if step == 1 {
            let start = idx.first().copied().unwrap_or(0) as usize;
            y.narrow(a, start.min(dim as usize), idx.len()).map_err(c)?
        } else {
            y.index_select(&i64_tensor(&idx)?, a).map_err(c)?
        };
    }
    Ok(y)
}

fn cast(x: &Tensor, to: i32, cx: &Cx) -> R<Tensor> {
    let target = dtype_of(to, cx.float)?;
    if to == dt::BOOL {
        let zero = Tensor::zeros((), x.dtype(), &Device::Cpu).map_err(c)?;
        return x.broadcast_ne(&zero).map_err(c);
    }
    if target == DType::I64 && x.dtype().is_float() {
        // ONNX truncates toward zero, as `as` does.
        let v = floats(x)?;
        let v: Vec<i64> = v.into_iter().map(|f| f as i64).collect();
        return Tensor::from_vec(v, x.dims(), &Device::Cpu).map_err(c);
    }
    x.to_dtype(target).map_err(c)
}

/// The indices of a `Gather` or `GatherElements` along an axis of size
/// `dim`, negative ones counted from the end; an index out of range is an error.
pub(super) fn indices_in(indices: &Tensor, dim: usize, op: &str) -> R<Vec<i64>> {
    let dim = dim as i64;
    let idx: Vec<i64> = ints(indices)?
        .into_iter()
        .map(|i| if i < 0 { i + dim } else { i })
        .collect();
    if idx.iter().any(|&i| i < 0 || i >= dim) {
        return Err(format!("{op} index out of range 0..{dim}"));
    }
    Ok(idx)
}

fn gather(x: &Tensor, indices: &Tensor, a: i64) -> R<Tensor> {
    let a = axis(a, x.rank())?;
    let idx = indices_in(indices, x.dims()[a], "Gather")?;
    let picked = x.index_select(&i64_tensor(&idx)?, a).map_err(c)?;
    let mut shape: Vec<usize> = x.dims()[..a].to_vec();
    shape.extend_from_slice(indices.dims());
    shape.extend_from_slice(&x.dims()[a + 1..]);
    picked.reshape(shape).map_err(c)
}

fn gather_elements(x: &Tensor, indices: &Tensor, a: i64) -> R<Tensor> {
    let a = axis(a, x.rank())?;
    let idx = indices_in(indices, x.dims()[a], "GatherElements")?;
    let idx = Tensor::from_vec(idx, indices.dims(), &Device::Cpu).map_err(c)?;
    // candle gathers from a source as large as the indices off the axis.
    let mut src = x.clone();
    for (d, &size) in indices.dims().iter().enumerate() {
        if d != a && size < src.dims()[d] {
            src = src.narrow(d, 0, size).map_err(c)?;
        }
    }
    src.contiguous().and_then(|s| s.gather(&idx, a)).map_err(c)
}

fn split(n: &NodeProto, x: &Tensor, inputs: &[Option<Tensor>], cx: &Cx) -> R<Vec<Tensor>> {
    let a = axis(attr_i(n, "axis").unwrap_or(0), x.rank())?;
    let dim = x.dims()[a];
    let outputs = n.output.len().max(1);
    let sizes: Vec<usize> = match inputs.get(1).and_then(|t| t.as_ref()) {
        Some(t) if cx.opset >= 13 => ints(t)?.into_iter().map(|s| s.max(0) as usize).collect(),
        _ => match attr_ints(n, "split").filter(|s| !s.is_empty()) {
            Some(s) => s.into_iter().map(|s| s.max(0) as usize).collect(),
            None => {
                let parts = attr_i(n, "num_outputs").map_or(outputs, |p| p.max(1) as usize);
                let each = dim.div_ceil(parts);
                (0..parts)
                    .map(|i| each.min(dim.saturating_sub(i * each)))
                    .collect()
            }
        },
    };
    let mut start = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for s in sizes {
        out.push(x.narrow(a, start, s).map_err(c)?);
        start += s;
    }
    Ok(out)
}

/// ONNX `Pad`: constant, edge or reflect, with negative pads cropping.
fn pad_op(n: &NodeProto, x: &Tensor, inputs: &[Option<Tensor>], cx: &Cx) -> R<Tensor> {
    let rank = x.rank();
    let (pads, value) = if cx.opset >= 11 {
        let pads = ints(
            inputs
                .get(1)
                .and_then(|t| t.as_ref())
                .ok_or("Pad without pads")?,
        )?;
        let value = match inputs.get(2).and_then(|t| t.as_ref()) {
            Some(v) if v.elem_count() > 0 => scalar_f(v)?,
            _ => 0.0,
        };
        (pads, value)
    } else {
        (
            attr_ints(n, "pads").ok_or("Pad without pads")?,
            attr_f(n, "value").unwrap_or(0.0) as f64,
        )
    };
    let axes: Vec<usize> = match inputs.get(3).and_then(|t| t.as_ref()) {
        Some(a) => ints(a)?
            .into_iter()
            .map(|a| axis(a, rank))
            .collect::<R<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!(
            "Pad has {} pads for {} axes",
            pads.len(),
            axes.len()
        ));
    }
    let mode = attr_s(n, "mode").unwrap_or_else(|| "constant".into());
    let mut y = x.clone();
    for (i, &a) in axes.iter().enumerate() {
        let (b, e) = (pads[i], pads[i + axes.len()]);
        // Negative pads crop.
        let dim = y.dims()[a] as i64;
        let (cb, ce) = ((-b).max(0), (-e).max(0));
        if cb + ce > 0 {
            y = y
                .narrow(a, cb as usize, (dim - cb - ce).max(0) as usize)
                .map_err(c)?;
        }
        let (b, e) = (b.max(0) as usize, e.max(0) as usize);
        if b == 0 && e == 0 {
            continue;
        }
        y = match mode.as_str() {
            "constant" => pad(&y, a, b, e, value)?,
            "edge" | "reflect" => {
                let d = y.dims()[a] as i64;
                let pick = |k: i64| -> i64 {
                    if mode == "edge" {
                        k.clamp(0, d - 1)
                    } else {
                        let period = 2 * (d - 1).max(1);
                        let m = k.rem_euclid(period);
                        if m < d {
                            m
                        } else {
                            period - m
                        }
                    }
                };
                let idx: Vec<i64> = (-(b as i64)..d + e as i64).map(pick).collect();
                y.index_select(&i64_tensor(&idx)?, a).map_err(c)?
            }
            other => {
                return Err(format!(
                    "the gradient engine has no `Pad` in `{other}` mode"
                ))
            }
        };
    }
    Ok(y)
}

fn reshape(x: &Tensor, shape: &[i64], allowzero: bool) -> R<Tensor> {
    let mut dims: Vec<usize> = Vec::with_capacity(shape.len());
    let mut hole = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            0 if !allowzero => dims.push(*x.dims().get(i).ok_or("Reshape copies a missing axis")?),
            -1 => {
                hole = Some(i);
                dims.push(1);
            }
            s if s < 0 => return Err(format!("Reshape to a negative size {s}")),
            s => dims.push(s as usize),
        }
    }
    if let Some(h) = hole {
        let known: usize = dims.iter().product();
        if known == 0 {
            return Err("Reshape cannot infer a size next to a zero".into());
        }
        dims[h] = x.elem_count() / known;
    }
    x.reshape(dims).map_err(c)
}

fn squeeze_axes(n: &NodeProto, inputs: &[Option<Tensor>]) -> R<Option<Vec<i64>>> {
    match inputs.get(1).and_then(|t| t.as_ref()) {
        Some(t) => ints(t).map(Some),
        None => Ok(attr_ints(n, "axes")),
    }
}

/// Evaluates one node. `inputs` holds `None` for an absent optional input.
/// The default-domain operators [`eval`] computes, sorted: what the
/// operator census (`examples/op_census.rs`) counts as having a backward.
/// A test holds it to `eval`'s arms.
pub const OPERATORS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Ceil",
    "Celu",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Cos",
    "CumSum",
    "Div",
    "Dropout",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "GRU",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "GroupNormalization",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "IsNaN",
    "LSTM",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "RNN",
    "Range",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Resize",
    "Round",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shape",
    "Sigmoid",
    "Sign",
    "Sin",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "ThresholdedRelu",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Upsample",
    "Where",
    "Xor",
];

pub fn eval(n: &NodeProto, inputs: &[Option<Tensor>], cx: &Cx) -> R<Vec<Tensor>> {
    let op = n.op_type.as_str();
    let arg = |i: usize| -> R<&Tensor> {
        inputs
            .get(i)
            .and_then(|t| t.as_ref())
            .ok_or_else(|| format!("`{op}` is missing input {i}"))
    };
    let one = |t: candle_core::Result<Tensor>| t.map(|t| vec![t]).map_err(c);
    let float_scalar = |v: f64| Tensor::new(v, &Device::Cpu).and_then(|t| t.to_dtype(cx.float));
    match op {
        "Identity" | super::super::lower::DETACH | "Dropout" => {
            let x = arg(0)?;
            let y = if op == super::super::lower::DETACH {
                x.detach()
            } else {
                x.clone()
            };
            Ok(vec![y])
        }
        "Constant" => {
            let a = n.attribute.first().ok_or("Constant without a value")?;
            let t = match a.name.as_str() {
                "value_float" => float_scalar(a.f as f64).map_err(c)?,
                "value_floats" => Tensor::from_vec(
                    a.floats.iter().map(|&f| f as f64).collect::<Vec<_>>(),
                    a.floats.len(),
                    &Device::Cpu,
                )
                .and_then(|t| t.to_dtype(cx.float))
                .map_err(c)?,
                "value_int" => Tensor::new(a.i, &Device::Cpu).map_err(c)?,
                "value_ints" => i64_tensor(&a.ints)?,
                _ => return Err(format!("Constant with `{}` is not read here", a.name)),
            };
            Ok(vec![t])
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = same_dtype(arg(0)?, arg(1)?)?;
            let f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor> = match op {
                "Add" => |a, b| a.add(b),
                "Sub" => |a, b| a.sub(b),
                "Mul" => |a, b| a.mul(b),
                _ => |a, b| a.div(b),
            };
            Ok(vec![bin(&a, &b, f)?])
        }
        "Pow" => {
            let (x, e) = (arg(0)?, arg(1)?);
            if e.elem_count() == 1 {
                let p = scalar_f(e)?;
                return one(if p == 2.0 {
                    x.sqr()
                } else if p == 1.0 {
                    Ok(x.clone())
                } else if p == 0.5 {
                    x.sqrt()
                } else {
                    x.powf(p)
                });
            }
            let (x, e) = same_dtype(x, e)?;
            let l = x.log().map_err(c)?;
            Ok(vec![bin(&l, &e, |a, b| a.mul(b))?.exp().map_err(c)?])
        }
        "Max" | "Min" | "Sum" | "Mean" => {
            let mut acc = arg(0)?.clone();
            for i in 1..inputs.len() {
                let (a, b) = same_dtype(&acc, arg(i)?)?;
                acc = match op {
                    "Max" => bin(&a, &b, |a, b| a.maximum(b))?,
                    "Min" => bin(&a, &b, |a, b| a.minimum(b))?,
                    _ => bin(&a, &b, |a, b| a.add(b))?,
                };
            }
            if op == "Mean" {
                acc = acc.affine(1.0 / inputs.len() as f64, 0.0).map_err(c)?;
            }
            Ok(vec![acc])
        }
        "Mod" => {
            let (a, b) = (arg(0)?, arg(1)?);
            let dtype = a.dtype();
            let (fa, fb) = (
                a.to_dtype(DType::F64).map_err(c)?,
                b.to_dtype(DType::F64).map_err(c)?,
            );
            let q = bin(&fa, &fb, |a, b| a.div(b))?;
            let q = if attr_i(n, "fmod") == Some(1) {
                // Truncated toward zero.
                let t = q.abs().and_then(|a| a.floor()).map_err(c)?;
                t.mul(&q.sign().map_err(c)?).map_err(c)?
            } else {
                q.floor().map_err(c)?
            };
            let m = bin(&fa, &bin(&q, &fb, |a, b| a.mul(b))?, |a, b| a.sub(b))?;
            one(m.to_dtype(dtype))
        }
        "Neg" => one(arg(0)?.neg()),
        "Abs" => one(arg(0)?.abs()),
        "Sqrt" => one(arg(0)?.sqrt()),
        "Exp" => one(arg(0)?.exp()),
        "Log" => one(arg(0)?.log()),
        "Reciprocal" => one(arg(0)?.recip()),
        "Floor" => one(arg(0)?.floor()),
        "Ceil" => one(arg(0)?.neg().and_then(|x| x.floor()).and_then(|x| x.neg())),
        "Round" => one(arg(0)?.round()),
        "Sign" => one(arg(0)?.sign()),
        "Erf" => one(arg(0)?.erf()),
        "Tanh" => one(arg(0)?.tanh()),
        "Sin" => one(arg(0)?.sin()),
        "Cos" => one(arg(0)?.cos()),
        "Sigmoid" => Ok(vec![sigmoid(arg(0)?)?]),
        "Relu" => one(arg(0)?.relu()),
        "LeakyRelu" | "PRelu" => {
            let x = arg(0)?;
            let slope = if op == "PRelu" {
                arg(1)?.clone()
            } else {
                float_scalar(attr_f(n, "alpha").unwrap_or(0.01) as f64).map_err(c)?
            };
            let neg = bin(x, &slope, |a, b| a.mul(b))?;
            let zero = x.zeros_like().map_err(c)?;
            let positive = x.gt(&zero).map_err(c)?;
            let shape = neg.dims().to_vec();
            one(to(&positive, &shape)?.where_cond(&to(x, &shape)?, &neg))
        }
        "Elu" => one(arg(0)?.elu(attr_f(n, "alpha").unwrap_or(1.0) as f64)),
        "Selu" | "Celu" => {
            // Selu: gamma (x > 0 ? x : alpha (e^x - 1));
            // Celu: max(0, x) + min(0, alpha (e^(x / alpha) - 1)).
            let x = arg(0)?;
            let (alpha, gamma) = if op == "Selu" {
                (
                    attr_f(n, "alpha").unwrap_or(1.673_263_2) as f64,
                    attr_f(n, "gamma").unwrap_or(1.050_701) as f64,
                )
            } else {
                (attr_f(n, "alpha").unwrap_or(1.0) as f64, 1.0)
            };
            let scaled = if op == "Selu" {
                x.clone()
            } else {
                x.affine(1.0 / alpha, 0.0).map_err(c)?
            };
            let y = scaled
                .elu(1.0)
                .and_then(|e| e.affine(alpha, 0.0))
                .map_err(c)?;
            let positive = x.gt(&x.zeros_like().map_err(c)?).map_err(c)?;
            let y = positive.where_cond(x, &y).map_err(c)?;
            one(y.affine(gamma, 0.0))
        }
        "Softsign" => {
            let x = arg(0)?;
            one(x
                .abs()
                .and_then(|a| a.affine(1.0, 1.0))
                .and_then(|d| x.div(&d)))
        }
        "Mish" => {
            // x tanh(softplus(x)), the softplus as `Softplus` computes it.
            let x = arg(0)?;
            let soft = x
                .abs()
                .and_then(|a| a.neg())
                .and_then(|a| a.exp())
                .and_then(|e| e.affine(1.0, 1.0))
                .and_then(|e| e.log())
                .and_then(|t| x.relu().and_then(|r| r.add(&t)))
                .map_err(c)?;
            one(soft.tanh().and_then(|t| x.mul(&t)))
        }
        "ThresholdedRelu" => {
            let x = arg(0)?;
            let alpha = float_scalar(attr_f(n, "alpha").unwrap_or(1.0) as f64).map_err(c)?;
            let above = x.broadcast_gt(&alpha).map_err(c)?;
            one(above.where_cond(x, &x.zeros_like().map_err(c)?))
        }
        "Softplus" => {
            // relu(x) + log(1 + exp(-|x|)), finite for any x.
            let x = arg(0)?;
            let r = x.relu().map_err(c)?;
            let t = x
                .abs()
                .and_then(|a| a.neg())
                .and_then(|a| a.exp())
                .and_then(|e| e.affine(1.0, 1.0))
                .and_then(|e| e.log())
                .map_err(c)?;
            one(r.add(&t))
        }
        "Gelu" => match attr_s(n, "approximate").as_deref() {
            Some("tanh") => one(arg(0)?.gelu()),
            _ => one(arg(0)?.gelu_erf()),
        },
        "HardSigmoid" | "HardSwish" => {
            let x = arg(0)?;
            let (alpha, beta) = if op == "HardSwish" {
                (1.0 / 6.0, 0.5)
            } else {
                (
                    attr_f(n, "alpha").unwrap_or(0.2) as f64,
                    attr_f(n, "beta").unwrap_or(0.5) as f64,
                )
            };
            let h = x
                .affine(alpha, beta)
                .and_then(|h| h.clamp(0f64, 1f64))
                .map_err(c)?;
            if op == "HardSwish" {
                one(x.mul(&h))
            } else {
                Ok(vec![h])
            }
        }
        "Clip" => {
            let x = arg(0)?;
            let bound = |i: usize, name: &str| -> R<Option<Tensor>> {
                if cx.opset >= 11 {
                    Ok(inputs.get(i).and_then(|t| t.clone()))
                } else {
                    attr_f(n, name)
                        .map(|v| float_scalar(v as f64).map_err(c))
                        .transpose()
                }
            };
            let mut y = x.clone();
            if let Some(lo) = bound(1, "min")? {
                let (a, b) = same_dtype(&y, &lo)?;
                y = bin(&a, &b, |a, b| a.maximum(b))?;
            }
            if let Some(hi) = bound(2, "max")? {
                let (a, b) = same_dtype(&y, &hi)?;
                y = bin(&a, &b, |a, b| a.minimum(b))?;
            }
            Ok(vec![y])
        }
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => {
            let (a, b) = same_dtype(arg(0)?, arg(1)?)?;
            let f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor> = match op {
                "Equal" => |a, b| a.eq(b),
                "Less" => |a, b| a.lt(b),
                "Greater" => |a, b| a.gt(b),
                "LessOrEqual" => |a, b| a.le(b),
                _ => |a, b| a.ge(b),
            };
            Ok(vec![bin(&a, &b, f)?])
        }
        "Not" => {
            let x = arg(0)?;
            one(x.eq(&x.zeros_like().map_err(c)?))
        }
        "And" | "Or" | "Xor" => {
            let (a, b) = (arg(0)?, arg(1)?);
            Ok(vec![match op {
                "And" => bin(a, b, |a, b| a.mul(b))?,
                "Or" => bin(a, b, |a, b| a.maximum(b))?,
                _ => bin(a, b, |a, b| a.ne(b))?,
            }])
        }
        "IsNaN" => {
            let x = arg(0)?;
            one(x.ne(x))
        }
        "Cast" => {
            let to = attr_i(n, "to").ok_or("Cast without `to`")? as i32;
            Ok(vec![cast(arg(0)?, to, cx)?])
        }
        "CastLike" => {
            let like = arg(1)?.dtype();
            one(arg(0)?.to_dtype(like))
        }
        "Where" => {
            let (cond, a, b) = (arg(0)?, arg(1)?, arg(2)?);
            let (a, b) = same_dtype(a, b)?;
            let shape = broadcast(&broadcast(cond.dims(), a.dims())?, b.dims())?;
            let cond = cond.to_dtype(DType::U8).map_err(c)?;
            one(to(&cond, &shape)?.where_cond(&to(&a, &shape)?, &to(&b, &shape)?))
        }
        "MatMul" => Ok(vec![matmul(arg(0)?, arg(1)?)?]),
        "Gemm" => {
            let mut a = arg(0)?.clone();
            if attr_i(n, "transA") == Some(1) {
                a = a.t().map_err(c)?;
            }
            let product = Product {
                b_transposed: attr_i(n, "transB") == Some(1),
            };
            let mut y = product.apply(&a, arg(1)?).map_err(c)?;
            let alpha = attr_f(n, "alpha").unwrap_or(1.0) as f64;
            if alpha != 1.0 {
                y = y.affine(alpha, 0.0).map_err(c)?;
            }
            if let Some(bias) = inputs.get(2).and_then(|t| t.as_ref()) {
                let beta = attr_f(n, "beta").unwrap_or(1.0) as f64;
                let bias = if beta != 1.0 {
                    bias.affine(beta, 0.0).map_err(c)?
                } else {
                    bias.clone()
                };
                y = bin(&y, &bias, |a, b| a.add(b))?;
            }
            Ok(vec![y])
        }
        "Conv" => Ok(vec![conv(
            n,
            arg(0)?,
            arg(1)?,
            inputs.get(2).and_then(|t| t.as_ref()),
        )?]),
        "ConvTranspose" => Ok(vec![conv_transpose(
            n,
            arg(0)?,
            arg(1)?,
            inputs.get(2).and_then(|t| t.as_ref()),
        )?]),
        "MaxPool" => {
            if n.output.len() > 1 && n.output.get(1).is_some_and(|o| !o.is_empty()) {
                return Err("the gradient engine has no `MaxPool` with indices".into());
            }
            Ok(vec![pool(n, arg(0)?, true)?])
        }
        "AveragePool" => Ok(vec![pool(n, arg(0)?, false)?]),
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let x = arg(0)?;
            let axes: Vec<usize> = (2..x.rank()).collect();
            if op == "GlobalAveragePool" {
                one(x.mean_keepdim(axes))
            } else {
                let mut y = x.clone();
                for a in axes {
                    y = y.max_keepdim(a).map_err(c)?;
                }
                Ok(vec![y])
            }
        }
        "Softmax" => Ok(vec![softmax(n, arg(0)?, cx, false)?]),
        "LogSoftmax" => Ok(vec![softmax(n, arg(0)?, cx, true)?]),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceSumSquare" | "ReduceL2"
        | "ReduceL1" | "ReduceLogSumExp" => Ok(vec![reduce(n, arg(0)?, inputs)?]),
        "ArgMax" | "ArgMin" => {
            let x = arg(0)?;
            let a = axis(attr_i(n, "axis").unwrap_or(0), x.rank())?;
            let y = if op == "ArgMax" {
                x.argmax_keepdim(a)
            } else {
                x.argmin_keepdim(a)
            }
            .and_then(|y| y.to_dtype(DType::I64))
            .map_err(c)?;
            if attr_i(n, "keepdims").unwrap_or(1) == 1 {
                Ok(vec![y])
            } else {
                one(y.squeeze(a))
            }
        }
        "Reshape" => {
            let shape = ints(arg(1)?)?;
            Ok(vec![reshape(
                arg(0)?,
                &shape,
                attr_i(n, "allowzero") == Some(1),
            )?])
        }
        "Flatten" => {
            let x = arg(0)?;
            let a = attr_i(n, "axis").unwrap_or(1);
            let a = if a < 0 { a + x.rank() as i64 } else { a }.clamp(0, x.rank() as i64) as usize;
            let outer: usize = x.dims()[..a].iter().product();
            one(x.reshape((outer, x.elem_count() / outer.max(1))))
        }
        "Transpose" => {
            let x = arg(0)?;
            let perm: Vec<usize> = match attr_ints(n, "perm") {
                Some(p) => p.into_iter().map(|a| axis(a, x.rank())).collect::<R<_>>()?,
                None => (0..x.rank()).rev().collect(),
            };
            one(x.permute(perm).and_then(|t| t.contiguous()))
        }
        "Squeeze" => {
            let x = arg(0)?;
            let mut axes: Vec<usize> = match squeeze_axes(n, inputs)? {
                Some(a) => a.into_iter().map(|a| axis(a, x.rank())).collect::<R<_>>()?,
                None => (0..x.rank()).filter(|&d| x.dims()[d] == 1).collect(),
            };
            axes.sort_unstable();
            let mut y = x.clone();
            for a in axes.into_iter().rev() {
                y = y.squeeze(a).map_err(c)?;
            }
            Ok(vec![y])
        }
        "Unsqueeze" => {
            let x = arg(0)?;
            let listed = squeeze_axes(n, inputs)?.ok_or("Unsqueeze without axes")?;
            let rank = x.rank() + listed.len();
            let mut axes: Vec<usize> = listed
                .into_iter()
                .map(|a| axis(a, rank))
                .collect::<R<_>>()?;
            axes.sort_unstable();
            let mut y = x.clone();
            for a in axes {
                y = y.unsqueeze(a).map_err(c)?;
            }
            Ok(vec![y])
        }
        "Concat" => {
            let parts: Vec<Tensor> = inputs.iter().flatten().cloned().collect();
            let first = parts.first().ok_or("Concat without inputs")?;
            let a = axis(attr_i(n, "axis").unwrap_or(0), first.rank())?;
            let dtype = parts
                .iter()
                .map(|p| p.dtype())
                .find(|d| d.is_float())
                .unwrap_or(first.dtype());
            let parts: Vec<Tensor> = parts
                .iter()
                .filter(|p| p.elem_count() > 0 || parts.len() == 1)
                .map(|p| p.to_dtype(dtype))
                .collect::<candle_core::Result<_>>()
                .map_err(c)?;
            one(Tensor::cat(&parts, a))
        }
        "Pad" => Ok(vec![pad_op(n, arg(0)?, inputs, cx)?]),
        "Split" => split(n, arg(0)?, inputs, cx),
        "Slice" => Ok(vec![slice(arg(0)?, n, inputs, cx)?]),
        "Expand" => {
            let x = arg(0)?;
            let shape: Vec<usize> = ints(arg(1)?)?
                .into_iter()
                .map(|d| d.max(0) as usize)
                .collect();
            let target = broadcast(x.dims(), &shape)?;
            Ok(vec![to(x, &target)?])
        }
        "Tile" => {
            let x = arg(0)?;
            let reps: Vec<usize> = ints(arg(1)?)?
                .into_iter()
                .map(|d| d.max(0) as usize)
                .collect();
            // candle builds one reference per repeat, even of an empty tensor.
            let repeats = volume(&reps);
            within_bound("Tile", repeats.max(x.elem_count().saturating_mul(repeats)))?;
            one(x.repeat(reps))
        }
        "Shape" => {
            let x = arg(0)?;
            let rank = x.rank() as i64;
            let fix = |v: i64| if v < 0 { v + rank } else { v }.clamp(0, rank) as usize;
            let start = fix(attr_i(n, "start").unwrap_or(0));
            let end = fix(attr_i(n, "end").unwrap_or(rank));
            let dims: Vec<i64> = x.dims()[start..end.max(start)]
                .iter()
                .map(|&d| d as i64)
                .collect();
            Ok(vec![i64_tensor(&dims)?])
        }
        "Size" => one(Tensor::new(arg(0)?.elem_count() as i64, &Device::Cpu)),
        "ConstantOfShape" => {
            let shape: Vec<usize> = ints(arg(0)?)?
                .into_iter()
                .map(|d| d.max(0) as usize)
                .collect();
            within_bound("ConstantOfShape", volume(&shape))?;
            let (value, dtype) = match attr(n, "value").and_then(|a| a.t.as_deref()) {
                Some(t) => {
                    let v = if !t.float_data.is_empty() {
                        t.float_data[0] as f64
                    } else if !t.int64_data.is_empty() {
                        t.int64_data[0] as f64
                    } else if !t.int32_data.is_empty() {
                        t.int32_data[0] as f64
                    } else if !t.double_data.is_empty() {
                        t.double_data[0]
                    } else {
                        decode_first(t)?
                    };
                    (v, dtype_of(t.data_type, cx.float)?)
                }
                None => (0.0, cx.float),
            };
            one(Tensor::full(value, shape, &Device::Cpu).and_then(|t| t.to_dtype(dtype)))
        }
        "Range" => {
            let (s, l, d) = (scalar_f(arg(0)?)?, scalar_f(arg(1)?)?, scalar_f(arg(2)?)?);
            if d == 0.0 {
                return Err("Range with delta 0".into());
            }
            let count = ((l - s) / d).ceil().max(0.0) as usize;
            within_bound("Range", count)?;
            let v: Vec<f64> = (0..count).map(|i| s + i as f64 * d).collect();
            let t = Tensor::from_vec(v, count, &Device::Cpu).map_err(c)?;
            one(t
                .to_dtype(arg(0)?.dtype())
                .or_else(|_| t.to_dtype(DType::I64)))
        }
        "Gather" => Ok(vec![gather(
            arg(0)?,
            arg(1)?,
            attr_i(n, "axis").unwrap_or(0),
        )?]),
        "GatherElements" => Ok(vec![gather_elements(
            arg(0)?,
            arg(1)?,
            attr_i(n, "axis").unwrap_or(0),
        )?]),
        "BatchNormalization" => {
            let x = arg(0)?;
            let eps = attr_f(n, "epsilon").unwrap_or(1e-5) as f64;
            let rank = x.rank();
            let training = attr_i(n, "training_mode") == Some(1);
            let (scale, bias) = (per_channel(arg(1)?, rank)?, per_channel(arg(2)?, rank)?);
            let y = if training {
                let axes: Vec<usize> = (0..rank).filter(|&a| a != 1).collect();
                normalize(x, &axes, eps, cx, true)?
            } else {
                let (mean, var) = (per_channel(arg(3)?, rank)?, per_channel(arg(4)?, rank)?);
                let std = var.affine(1.0, eps).and_then(|v| v.sqrt()).map_err(c)?;
                x.broadcast_sub(&mean)
                    .and_then(|t| t.broadcast_div(&std))
                    .map_err(c)?
            };
            let y = y
                .broadcast_mul(&scale)
                .and_then(|t| t.broadcast_add(&bias))
                .map_err(c)?;
            let mut out = vec![y];
            // Training-mode outputs: the running statistics, passed through.
            for i in 3..(3 + n.output.len().saturating_sub(1)).min(5) {
                out.push(arg(i)?.clone());
            }
            Ok(out)
        }
        super::super::normalize::OP_TYPE => {
            let x = arg(0)?;
            let eps = attr_f(n, "epsilon").unwrap_or(1e-5) as f64;
            let rank = x.rank();
            let axes: Vec<usize> = (0..rank).filter(|&a| a != 1).collect();
            let mut y = normalize(x, &axes, eps, cx, true)?;
            for (name, add) in [("scale", false), ("bias", true)] {
                if let Some(v) = attr(n, name).map(|a| &a.floats).filter(|v| !v.is_empty()) {
                    let p = Tensor::from_vec(
                        v.iter().map(|&f| f as f64).collect::<Vec<_>>(),
                        v.len(),
                        &Device::Cpu,
                    )
                    .and_then(|t| t.to_dtype(cx.float))
                    .map_err(c)?;
                    let p = per_channel(&p, rank)?;
                    y = if add {
                        y.broadcast_add(&p)
                    } else {
                        y.broadcast_mul(&p)
                    }
                    .map_err(c)?;
                }
            }
            Ok(vec![y])
        }
        "InstanceNormalization" => {
            let x = arg(0)?;
            let rank = x.rank();
            if rank < 3 {
                return Err(format!(
                    "`InstanceNormalization` of a tensor of rank {rank}"
                ));
            }
            let eps = attr_f(n, "epsilon").unwrap_or(1e-5) as f64;
            let axes: Vec<usize> = (2..rank).collect();
            let y = normalize(x, &axes, eps, cx, false)?;
            let (scale, bias) = (per_channel(arg(1)?, rank)?, per_channel(arg(2)?, rank)?);
            one(y.broadcast_mul(&scale).and_then(|t| t.broadcast_add(&bias)))
        }
        "GroupNormalization" => {
            let x = arg(0)?;
            let dims = x.dims().to_vec();
            let groups = attr_i(n, "num_groups").unwrap_or(0).max(0) as usize;
            let channels = dims.get(1).copied().unwrap_or(0);
            if dims.len() < 2 || groups == 0 || channels % groups != 0 {
                return Err(format!(
                    "`GroupNormalization` of {groups} groups over a tensor of shape {dims:?}"
                ));
            }
            let eps = attr_f(n, "epsilon").unwrap_or(1e-5) as f64;
            let per_group = x.elem_count() / (dims[0] * groups).max(1);
            let grouped = x.reshape((dims[0], groups, per_group)).map_err(c)?;
            let y = normalize(&grouped, &[2], eps, cx, false)?
                .reshape(dims.as_slice())
                .map_err(c)?;
            // Opset 18 has a scale and a bias per group, opset 21 per channel.
            let widen = |p: &Tensor| -> R<Tensor> {
                let p = if p.elem_count() == groups && groups != channels {
                    p.reshape((groups, 1))
                        .and_then(|p| p.broadcast_as((groups, channels / groups)))
                        .and_then(|p| p.reshape(channels))
                        .map_err(c)?
                } else {
                    p.clone()
                };
                per_channel(&p, dims.len())
            };
            let (scale, bias) = (widen(arg(1)?)?, widen(arg(2)?)?);
            one(y.broadcast_mul(&scale).and_then(|t| t.broadcast_add(&bias)))
        }
        "LSTM" | "GRU" | "RNN" => {
            use super::recurrent::{recurrent, Attributes, Cell};
            let cell = match op {
                "LSTM" => Cell::Lstm,
                "GRU" => Cell::Gru {
                    linear_before_reset: attr_i(n, "linear_before_reset").unwrap_or(0) != 0,
                },
                _ => Cell::Rnn,
            };
            let hidden = attr_i(n, "hidden_size")
                .filter(|&h| h > 0)
                .ok_or_else(|| format!("`{op}` without `hidden_size`"))?;
            let a = Attributes {
                hidden: hidden as usize,
                direction: attr_s(n, "direction").unwrap_or_else(|| "forward".into()),
                layout: attr_i(n, "layout").unwrap_or(0),
            };
            recurrent(cell, n, &a, inputs)
        }
        "Einsum" => {
            let equation = attr_s(n, "equation").ok_or("`Einsum` without an equation")?;
            let operands: Vec<&Tensor> = inputs.iter().flatten().collect();
            Ok(vec![super::einsum::einsum(&equation, &operands)?])
        }
        "GatherND" => Ok(vec![super::scatter::gather_nd(
            arg(0)?,
            arg(1)?,
            attr_i(n, "batch_dims").unwrap_or(0),
        )?]),
        "ScatterND" => Ok(vec![super::scatter::scatter_nd(
            arg(0)?,
            arg(1)?,
            arg(2)?,
            &attr_s(n, "reduction").unwrap_or_else(|| "none".into()),
        )?]),
        "ScatterElements" | "Scatter" => Ok(vec![super::scatter::scatter_elements(
            arg(0)?,
            arg(1)?,
            arg(2)?,
            attr_i(n, "axis").unwrap_or(0),
            &attr_s(n, "reduction").unwrap_or_else(|| "none".into()),
        )?]),
        "Resize" | "Upsample" => Ok(vec![resize_op(n, arg(0)?, inputs, cx)?]),
        "CumSum" => {
            let x = arg(0)?;
            let a = axis(
                *ints(arg(1)?)?.first().ok_or("CumSum without an axis")?,
                x.rank(),
            )?;
            // candle sums with a triangular product: integers (positions
            // counted from a mask) go through f64, exact below 2^53.
            let dtype = x.dtype();
            let t = if dtype.is_float() {
                x.clone()
            } else {
                x.to_dtype(DType::F64).map_err(c)?
            };
            let reversed: Vec<i64> = (0..t.dims()[a] as i64).rev().collect();
            let flip = |t: &Tensor| t.index_select(&i64_tensor(&reversed)?, a).map_err(c);
            let reverse = attr_i(n, "reverse").unwrap_or(0) != 0;
            let t = if reverse { flip(&t)? } else { t };
            let mut y = t.cumsum(a).map_err(c)?;
            if attr_i(n, "exclusive").unwrap_or(0) != 0 {
                y = y.sub(&t).map_err(c)?;
            }
            let y = if reverse { flip(&y)? } else { y };
            one(y.to_dtype(dtype))
        }
        "LayerNormalization" => {
            let x = arg(0)?;
            let rank = x.rank();
            let a = axis(attr_i(n, "axis").unwrap_or(-1), rank)?;
            let eps = attr_f(n, "epsilon").unwrap_or(1e-5) as f64;
            let axes: Vec<usize> = (a..rank).collect();
            let mut y = normalize(x, &axes, eps, cx, false)?;
            y = bin(&y, arg(1)?, |a, b| a.mul(b))?;
            if let Some(b) = inputs.get(2).and_then(|t| t.as_ref()) {
                y = bin(&y, b, |a, b| a.add(b))?;
            }
            if n.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(
                    "the gradient engine has no `LayerNormalization` with statistics outputs"
                        .into(),
                );
            }
            Ok(vec![y])
        }
        other => Err(format!("the gradient engine has no `{other}` operator")),
    }
}

/// `Resize` or `Upsample` with its sizes and scales read from whichever
/// inputs or attributes its opset uses.
fn resize_op(n: &NodeProto, x: &Tensor, inputs: &[Option<Tensor>], cx: &Cx) -> R<Tensor> {
    use super::resize::{resize, Mode, Nearest, Transform};
    let given = |i: usize| {
        inputs
            .get(i)
            .and_then(|t| t.as_ref())
            .filter(|t| t.elem_count() > 0)
    };
    let modern = n.op_type == "Resize" && cx.opset >= 11;
    if attr_i(n, "antialias").unwrap_or(0) != 0 || attr(n, "axes").is_some() {
        return Err("the gradient engine has no `Resize` with `antialias` or `axes`".into());
    }
    let dims = x.dims();
    let (sizes, scales): (Vec<usize>, Vec<f64>) = match (modern, given(3)) {
        (true, Some(s)) => {
            let sizes: Vec<usize> = ints(s)?.into_iter().map(|d| d.max(0) as usize).collect();
            let scales = sizes
                .iter()
                .zip(dims)
                .map(|(&o, &i)| o as f64 / i.max(1) as f64)
                .collect();
            (sizes, scales)
        }
        _ => {
            let scales = match (modern, given(if modern { 2 } else { 1 })) {
                (_, Some(t)) => floats(t)?,
                (false, None) => attr(n, "scales")
                    .map(|a| a.floats.iter().map(|&f| f as f64).collect())
                    .ok_or("`Upsample` without scales")?,
                (true, None) => return Err("`Resize` without scales or sizes".into()),
            };
            let sizes = scales
                .iter()
                .zip(dims)
                .map(|(&s, &i)| (i as f64 * s).floor() as usize)
                .collect();
            (sizes, scales)
        }
    };
    let mode = attr_s(n, "mode").unwrap_or_else(|| "nearest".into());
    let (nearest, transform) = if modern {
        (
            Nearest::parse(
                &attr_s(n, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into()),
            )?,
            Transform::parse(
                &attr_s(n, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into()),
            )?,
        )
    } else {
        // Upsample, and Resize before opset 11: x / scale, rounded down.
        (Nearest::Floor, Transform::Asymmetric)
    };
    let mode = match mode.as_str() {
        "nearest" => Mode::Nearest(nearest),
        "linear" | "bilinear" | "trilinear" => Mode::Linear,
        other => {
            return Err(format!(
                "the gradient engine has no `Resize` in mode `{other}`"
            ))
        }
    };
    resize(x, &sizes, &scales, mode, transform)
}

/// The most values a tensor whose size the data chooses (`ConstantOfShape`,
/// `Range`, `Tile`) may have in the backward pass: a gibibyte of float32 values,
/// over what any pass under the default `--probe-memory` holds. The forward
/// probe's guard does not see a size tract folds into a constant, and the
/// fuzz target found a `ConstantOfShape` of `Shape(x) * 4398046511184`
/// that asked for 70 TB here.
const MAX_VALUES: usize = 1 << 28;

fn within_bound(op: &str, count: usize) -> Result<(), String> {
    if count > MAX_VALUES {
        return Err(format!(
            "`{op}` asks for {count} values, over the {MAX_VALUES} the gradient engine allocates at once"
        ));
    }
    Ok(())
}

/// The values of a tensor of `dims`, saturating: an absurd size must read
/// as too large, never wrap to small.
fn volume(dims: &[usize]) -> usize {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX)
}

/// The first element of a raw-data tensor, for `ConstantOfShape`'s value.
fn decode_first(t: &TensorProto) -> R<f64> {
    let raw = t.raw_data.as_deref().unwrap_or(&[]);
    let width = dt::byte_width(t.data_type).unwrap_or(0);
    if raw.len() < width || width == 0 {
        return Ok(0.0);
    }
    let b = &raw[..width];
    Ok(match t.data_type {
        dt::FLOAT => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        dt::DOUBLE => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        dt::INT64 => i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64,
        dt::INT32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        dt::BOOL | dt::UINT8 => b[0] as f64,
        dt::INT8 => b[0] as i8 as f64,
        _ => 0.0,
    })
}
