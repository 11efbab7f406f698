//! The probe's inputs: synthesized from a seed, or read from `.npy` files.
//!
//! What an input holds follows from what the graph does with it:
//! class labels of a loss are uniform over the classes (one-hot rows for a
//! cross-entropy written out), a binary target is 0 or 1, a KL divergence's
//! target a random distribution, token ids are uniform over the embedding's
//! rows, integer images span their type's range, and float data is N(0, 1).
//! The loss's form and target come from [`Graph::loss`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

use crate::graph::{Dim, Form, Graph};
use crate::onnx::proto::data_type as dt;

/// What an input is filled with.
#[derive(Clone, Debug, PartialEq)]
pub enum Fill {
    /// N(0, 1).
    Normal,
    /// Uniform integers in `0..classes`: labels of the loss whose scores are
    /// `scores`. `classes` is 0 until known from the typed model.
    Labels {
        classes: usize,
        scores: String,
    },
    /// 0 or 1: the target of a binary loss.
    Binary,
    /// One 1 per row of the last axis, at a uniform random class: the
    /// one-hot labels of a cross-entropy written out.
    OneHot,
    /// A random distribution over the last axis (a softmax of N(0, 1)):
    /// the target of a KL divergence.
    Distribution,
    /// Uniform integers in `0..vocab`: token ids into an embedding.
    Tokens {
        vocab: usize,
    },
    /// Uniform over the integer type's range: pixels.
    Range {
        lo: i64,
        hi: i64,
    },
    Ones,
    Zeros,
    /// Real data from a `.npy` file.
    File(PathBuf),
}

/// One graph input as the probe feeds it.
#[derive(Clone, Debug)]
pub struct Input {
    pub name: String,
    pub elem_type: i32,
    pub shape: Vec<usize>,
    pub fill: Fill,
}

impl Input {
    /// Whether the data is real, from `--input`.
    pub fn is_file(&self) -> bool {
        matches!(self.fill, Fill::File(_))
    }
}

/// The batch size of a set of inputs: the leading dimension of the first.
pub fn batch_size(inputs: &[Input]) -> usize {
    inputs
        .first()
        .and_then(|i| i.shape.first().copied())
        .unwrap_or(1)
}

/// What the user told the probe about inputs.
#[derive(Clone, Debug, Default)]
pub struct InputOptions {
    pub seed: u64,
    /// `--dim NAME=VALUE`.
    pub dims: BTreeMap<String, usize>,
    /// `--input NAME=path.npy`.
    pub files: BTreeMap<String, PathBuf>,
    /// The value of a dynamic leading (batch) dimension.
    pub batch: usize,
}

pub use crate::graph::InputNames;

impl InputOptions {
    /// Checks `--input` and `--dim` against the models they are given with:
    /// a name that none of them has is a typo, and a `.npy` file must exist.
    /// The error is one line that lists the names there are.
    pub fn check(&self, models: &[&InputNames]) -> Result<(), String> {
        let list = |names: Vec<&String>| {
            let mut names: Vec<&str> = names.into_iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            if names.is_empty() {
                "none".to_string()
            } else {
                format!("`{}`", names.join("`, `"))
            }
        };
        let (no_input, no_dim, its) = if models.len() == 1 {
            (
                "the model has no input",
                "the model has no dimension",
                "its",
            )
        } else {
            ("no model has an input", "no model has a dimension", "their")
        };
        for (name, path) in &self.files {
            if !models.iter().any(|m| m.inputs.contains(name)) {
                return Err(format!(
                    "`--input {name}={}`: {no_input} `{name}`; {its} inputs are {}",
                    path.display(),
                    list(models.iter().flat_map(|m| &m.inputs).collect())
                ));
            }
            if !path.is_file() {
                return Err(format!("`--input {name}={}`: no such file", path.display()));
            }
        }
        for (name, value) in &self.dims {
            if !models
                .iter()
                .any(|m| m.dims.contains(name) || m.axes.contains(name))
            {
                return Err(format!(
                    "`--dim {name}={value}`: {no_dim} `{name}`; {its} dynamic dimensions are {} (by input and axis: {})",
                    list(models.iter().flat_map(|m| &m.dims).collect()),
                    list(models.iter().flat_map(|m| &m.axes).collect())
                ));
            }
        }
        Ok(())
    }
}

/// A dynamic dimension that is not the batch gets this size unless `--dim` says otherwise.
pub const DEFAULT_DIM: usize = 32;

/// Decides every graph input's shape and fill. `batch` sizes dynamic leading dims.
///
/// An input read from a `.npy` file takes the file's shape, which must fit
/// the declared one, and its element type; the sizes it gives named
/// dimensions size the other inputs too.
pub fn plan(graph: &Graph<'_>, options: &InputOptions) -> Result<Vec<Input>, String> {
    let mut options = options.clone();
    let mut files = BTreeMap::new();
    for name in graph.fed_inputs() {
        let Some(path) = options.files.get(name) else {
            continue;
        };
        let header = npy_header(path)?;
        let elem_type = graph.elem_type(name).unwrap_or(dt::FLOAT);
        if header.elem_type != elem_type {
            return Err(format!(
                "input `{name}` takes {} values, and `{}` holds {} (save it with `.astype(numpy.{})`)",
                numpy_name(elem_type),
                path.display(),
                numpy_name(header.elem_type),
                numpy_name(elem_type)
            ));
        }
        let declared = graph.shape(name).unwrap_or_default();
        let fits = declared.len() == header.shape.len()
            && declared.iter().zip(&header.shape).all(|(d, &n)| match d {
                Dim::Known(k) if *k >= 0 => *k as usize == n,
                _ => true,
            });
        if !fits {
            let dims: Vec<String> = declared
                .iter()
                .map(|d| match d {
                    Dim::Known(k) if *k >= 0 => k.to_string(),
                    Dim::Named(s) if !s.is_empty() => s.to_string(),
                    _ => "?".into(),
                })
                .collect();
            let given: Vec<String> = header.shape.iter().map(usize::to_string).collect();
            return Err(format!(
                "input `{name}` has shape [{}], and `{}` holds shape [{}]",
                dims.join(", "),
                path.display(),
                given.join(", ")
            ));
        }
        for (d, &n) in declared.iter().zip(&header.shape) {
            if let Dim::Named(s) = d {
                if !s.is_empty() {
                    options.dims.entry(s.to_string()).or_insert(n);
                }
            }
        }
        files.insert(name, header.shape);
    }
    let mut out = Vec::new();
    for name in graph.fed_inputs() {
        let elem_type = graph.elem_type(name).unwrap_or(dt::FLOAT);
        let options = &options;
        let shape = match graph.shape(name) {
            _ if files.contains_key(name) => files[name].clone(),
            Some(dims) => dims
                .iter()
                .enumerate()
                .map(|(axis, d)| match d {
                    Dim::Known(n) if *n >= 0 => *n as usize,
                    // A name, `-1` (PaddlePaddle's dynamic) or nothing: the
                    // user's `--dim`, by name or as `INPUT:AXIS`, or a guess.
                    _ => given(name, axis, d, options).unwrap_or(if axis == 0 {
                        options.batch
                    } else {
                        DEFAULT_DIM
                    }),
                })
                .collect::<Vec<_>>(),
            None => return Err(format!("input `{name}` has no declared shape")),
        };
        let fill = match options.files.get(name) {
            Some(p) => Fill::File(p.clone()),
            None => fill_for(graph, name, elem_type)?,
        };
        out.push(Input {
            name: name.to_string(),
            elem_type,
            shape,
            fill,
        });
    }
    Ok(out)
}

/// The value `--dim` gives a dynamic dimension: by its name, or as `INPUT:AXIS`.
fn given(input: &str, axis: usize, d: &Dim, options: &InputOptions) -> Option<usize> {
    let named = match d {
        Dim::Named(s) if !s.is_empty() => options.dims.get(&**s).copied(),
        _ => None,
    };
    named.or_else(|| options.dims.get(&format!("{input}:{axis}")).copied())
}

/// The dynamic dimensions the probe sized itself, each with the `--dim`
/// that would set it: what to say when a pass on guessed shapes fails.
pub fn guessed(graph: &Graph<'_>, options: &InputOptions) -> Vec<String> {
    let mut out = Vec::new();
    // An input read from a file has the file's shape.
    for name in graph
        .fed_inputs()
        .filter(|n| !options.files.contains_key(*n))
    {
        for (axis, d) in graph.shape(name).unwrap_or_default().iter().enumerate() {
            if matches!(d, Dim::Known(n) if *n >= 0) || given(name, axis, d, options).is_some() {
                continue;
            }
            let value = if axis == 0 {
                options.batch
            } else {
                DEFAULT_DIM
            };
            let flag = match d {
                Dim::Named(s) if !s.is_empty() => format!("--dim {s}=N"),
                _ => format!("--dim {name}:{axis}=N"),
            };
            out.push(format!("input `{name}` axis {axis} = {value} (`{flag}`)"));
        }
    }
    out
}

fn fill_for(graph: &Graph<'_>, name: &str, elem_type: i32) -> Result<Fill, String> {
    for u in graph.follow(name) {
        let n = graph.node(u.node);
        if let ("Gather", 1) = (n.op_type(), u.slot) {
            if let Some(rows) = n
                .input(0)
                .and_then(|t| graph.stored(t))
                .and_then(|s| s.dims().first().copied())
            {
                if n.attr_i64("axis").unwrap_or(0) == 0 && rows > 0 {
                    return Ok(Fill::Tokens {
                        vocab: rows as usize,
                    });
                }
            }
        }
    }
    // The target of a loss: what the loss's form says it holds.
    let float = matches!(elem_type, dt::FLOAT | dt::DOUBLE | dt::FLOAT16);
    let id = graph.tensor_id(name);
    if let Some(term) = graph
        .loss()
        .data_terms()
        .find(|t| t.target.is_some() && t.target == id)
    {
        let labels = |scores: Option<crate::graph::TensorId>| {
            let scores = scores.map(|s| graph.tensor_name(s)).unwrap_or_default();
            Fill::Labels {
                classes: classes(graph, scores).unwrap_or(0),
                scores: scores.to_string(),
            }
        };
        let meet = term.meet.map(|m| graph.node(m));
        let gathered = meet.filter(|m| m.is("GatherElements") || m.is("Gather"));
        match term.form {
            Form::BinaryCrossEntropy if float => return Ok(Fill::Binary),
            Form::KlDivergence if float => return Ok(Fill::Distribution),
            Form::CrossEntropyWritten | Form::Focal | Form::Contrastive if float => {
                return Ok(Fill::OneHot)
            }
            Form::CrossEntropyWritten | Form::Focal if gathered.is_some() => {
                return Ok(labels(gathered.and_then(|g| g.input_id(0))));
            }
            Form::CrossEntropy | Form::NegativeLogLikelihood | Form::Contrastive | Form::Focal
                if !float =>
            {
                return Ok(labels(meet.and_then(|m| m.input_id(0))));
            }
            _ => {}
        }
    }
    Ok(match elem_type {
        dt::FLOAT | dt::DOUBLE | dt::FLOAT16 => Fill::Normal,
        dt::UINT8 => Fill::Range { lo: 0, hi: 255 },
        dt::INT8 => Fill::Range { lo: -128, hi: 127 },
        dt::BOOL => Fill::Ones,
        _ if name.to_ascii_lowercase().contains("mask") => Fill::Ones,
        _ => Fill::Zeros,
    })
}

/// The size of axis 1 of a loss's scores.
fn classes(graph: &Graph<'_>, scores: &str) -> Option<usize> {
    match graph.shape(scores)?.get(1)? {
        Dim::Known(c) if *c > 0 => Some(*c as usize),
        _ => None,
    }
}

/// A small, seeded generator (SplitMix64): the same seed gives the same inputs
/// on every platform.
pub struct Rng(u64);

impl Rng {
    /// A stream for one input: the seed mixed with the input's name, so adding
    /// an input does not change the others.
    pub fn for_input(seed: u64, name: &str) -> Rng {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        Rng(seed ^ h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// N(0, 1), by Box-Muller.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The tensor for one input.
pub fn make(input: &Input, seed: u64) -> Result<Tensor, String> {
    if let Fill::File(path) = &input.fill {
        return read_npy(path);
    }
    let len = input
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("input `{}` is too large to synthesize", input.name))?;
    let mut rng = Rng::for_input(seed, &input.name);
    if matches!(input.fill, Fill::OneHot | Fill::Distribution) {
        let width = input.shape.last().copied().unwrap_or(1).max(1);
        let mut values = Vec::with_capacity(len);
        for _ in 0..len / width {
            if input.fill == Fill::OneHot {
                let hot = rng.below(width as u64) as usize;
                values.extend((0..width).map(|i| if i == hot { 1.0 } else { 0.0 }));
            } else {
                let e: Vec<f64> = (0..width).map(|_| rng.normal().exp()).collect();
                let total: f64 = e.iter().sum();
                values.extend(e.iter().map(|v| v / total));
            }
        }
        return typed(input.elem_type, &input.shape, &values);
    }
    let values: Vec<f64> = (0..len)
        .map(|_| match &input.fill {
            Fill::Normal => rng.normal(),
            Fill::Labels { classes, .. } => rng.below((*classes).max(1) as u64) as f64,
            Fill::Binary => rng.below(2) as f64,
            Fill::OneHot | Fill::Distribution => 0.0,
            Fill::Tokens { vocab } => rng.below(*vocab as u64) as f64,
            Fill::Range { lo, hi } => (*lo + rng.below((hi - lo + 1) as u64) as i64) as f64,
            Fill::Ones => 1.0,
            Fill::Zeros | Fill::File(_) => 0.0,
        })
        .collect();
    typed(input.elem_type, &input.shape, &values)
}

fn typed(elem_type: i32, shape: &[usize], v: &[f64]) -> Result<Tensor, String> {
    fn arr<T: Datum>(shape: &[usize], v: Vec<T>) -> Result<Tensor, String> {
        tract_ndarray::ArrayD::from_shape_vec(shape, v)
            .map(|a| a.into_tensor())
            .map_err(|e| e.to_string())
    }
    match elem_type {
        dt::FLOAT => arr(shape, v.iter().map(|&x| x as f32).collect()),
        dt::DOUBLE => arr(shape, v.to_vec()),
        dt::FLOAT16 => arr(
            shape,
            v.iter().map(|&x| f16::from_f64(x)).collect::<Vec<f16>>(),
        ),
        dt::INT64 => arr(shape, v.iter().map(|&x| x as i64).collect()),
        dt::INT32 => arr(shape, v.iter().map(|&x| x as i32).collect()),
        dt::INT16 => arr(shape, v.iter().map(|&x| x as i16).collect()),
        dt::INT8 => arr(shape, v.iter().map(|&x| x as i8).collect()),
        dt::UINT8 => arr(shape, v.iter().map(|&x| x as u8).collect()),
        dt::UINT16 => arr(shape, v.iter().map(|&x| x as u16).collect()),
        dt::UINT32 => arr(shape, v.iter().map(|&x| x as u32).collect()),
        dt::UINT64 => arr(shape, v.iter().map(|&x| x as u64).collect()),
        dt::BOOL => arr(shape, v.iter().map(|&x| x != 0.0).collect()),
        other => Err(format!(
            "cannot synthesize an input of type {}",
            dt::name(other)
        )),
    }
}

/// tract's type for an ONNX element type.
pub fn datum_type(elem_type: i32) -> Result<DatumType, String> {
    Ok(match elem_type {
        dt::FLOAT => f32::datum_type(),
        dt::DOUBLE => f64::datum_type(),
        dt::FLOAT16 => f16::datum_type(),
        dt::INT64 => i64::datum_type(),
        dt::INT32 => i32::datum_type(),
        dt::INT16 => i16::datum_type(),
        dt::INT8 => i8::datum_type(),
        dt::UINT8 => u8::datum_type(),
        dt::UINT16 => u16::datum_type(),
        dt::UINT32 => u32::datum_type(),
        dt::UINT64 => u64::datum_type(),
        dt::BOOL => bool::datum_type(),
        other => return Err(format!("tract has no {} inputs", dt::name(other))),
    })
}

/// What a `.npy` file's header says.
struct NpyHeader {
    elem_type: i32,
    /// Width of one value in bytes.
    size: usize,
    shape: Vec<usize>,
    /// Where the data starts.
    start: usize,
}

/// numpy's name for an ONNX element type, for messages.
fn numpy_name(elem_type: i32) -> &'static str {
    match elem_type {
        dt::FLOAT => "float32",
        dt::DOUBLE => "float64",
        dt::FLOAT16 => "float16",
        dt::BOOL => "bool_",
        dt::INT64 => "int64",
        dt::INT32 => "int32",
        dt::INT16 => "int16",
        dt::INT8 => "int8",
        dt::UINT8 => "uint8",
        t => dt::name(t),
    }
}

/// Reads the header of a `.npy` file.
fn npy_header(path: &Path) -> Result<NpyHeader, String> {
    use std::io::Read;
    let err = |m: &str| format!("{}: {m}", path.display());
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 16).read_to_end(&mut head))
        .map_err(|e| err(&format!("cannot read file: {e}")))?;
    parse_header(&head).map_err(|m| err(&m))
}

/// Reads a `.npy` file (format 1.0 to 3.0, little-endian, C order).
pub fn read_npy(path: &Path) -> Result<Tensor, String> {
    let err = |m: &str| format!("{}: {m}", path.display());
    let bytes = std::fs::read(path).map_err(|e| err(&format!("cannot read file: {e}")))?;
    let NpyHeader {
        elem_type,
        size,
        shape,
        start,
    } = parse_header(&bytes).map_err(|m| err(&m))?;
    let data = &bytes[start..];
    let count: usize = shape.iter().product();
    if data.len()
        != count
            .checked_mul(size)
            .ok_or_else(|| err("shape too large"))?
    {
        return Err(err("data length does not match the shape"));
    }
    if elem_type == dt::BOOL {
        let v: Vec<f64> = data.iter().map(|&b| (b != 0) as u8 as f64).collect();
        return typed(dt::BOOL, &shape, &v);
    }
    let dt_ = datum_type(elem_type).map_err(|e| err(&e))?;
    // SAFETY: the length was checked against the shape and element size above,
    // and every bit pattern is a valid value of these numeric types.
    unsafe { Tensor::from_raw_dt(dt_, &shape, data) }.map_err(|e| err(&e.to_string()))
}

/// The header at the start of `bytes`, a `.npy` file or its first bytes.
fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    let err = |m: &str| m.to_string();
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(err("not a .npy file"));
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(err("unsupported .npy version")),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or_else(|| err("truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|_| err("bad .npy header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| err("no descr in .npy header"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(err("Fortran-ordered arrays are not supported"));
    }
    let shape: Vec<usize> = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| err("no shape in .npy header"))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| err("bad shape in .npy header"))
        })
        .collect::<Result<_, _>>()?;
    let (elem_type, size) = match descr {
        "<f4" => (dt::FLOAT, 4),
        "<f8" => (dt::DOUBLE, 8),
        "<f2" => (dt::FLOAT16, 2),
        "<i8" => (dt::INT64, 8),
        "<i4" => (dt::INT32, 4),
        "<i2" => (dt::INT16, 2),
        "|i1" => (dt::INT8, 1),
        "|u1" => (dt::UINT8, 1),
        "|b1" => (dt::BOOL, 1),
        other => return Err(err(&format!("unsupported dtype `{other}`"))),
    };
    Ok(NpyHeader {
        elem_type,
        size,
        shape,
        start: start + header_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_roughly_standard_normal() {
        let a: Vec<f64> = {
            let mut r = Rng::for_input(7, "x");
            (0..20000).map(|_| r.normal()).collect()
        };
        let mut r = Rng::for_input(7, "x");
        assert!(a.iter().all(|&x| x == r.normal()));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let mut r = Rng::for_input(7, "y");
        assert_ne!(a[0], r.normal());
    }

    #[test]
    fn npy_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut h = header.to_string();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((h.len() as u16).to_le_bytes());
        bytes.extend(h.as_bytes());
        for v in [1f32, 2., 3., 4., 5., 6.] {
            bytes.extend(v.to_le_bytes());
        }
        std::fs::write(&p, &bytes).unwrap();
        let t = read_npy(&p).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(
            t.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(),
            &[1., 2., 3., 4., 5., 6.]
        );
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        assert!(read_npy(&p).unwrap_err().contains("does not match"));
    }
}
