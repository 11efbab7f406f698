//! Numeric values of a stored tensor, whatever its storage: `raw_data`, the
//! typed fields, or external data; float16 and bfloat16 included.

use std::fmt;

use super::load::Model;
use super::proto::{data_type as dt, TensorProto};

/// Why a tensor's values could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

/// Number of elements the tensor's dims declare.
pub fn element_count(t: &TensorProto) -> Result<usize, ValueError> {
    t.dims.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d)
            .ok()
            .and_then(|d| acc.checked_mul(d))
            .ok_or_else(|| ValueError(format!("tensor `{}` has invalid dims {:?}", t.name, t.dims)))
    })
}

impl Model {
    /// Calls `f` with every element of a numeric tensor, converted to f64, in storage order.
    /// Streams: nothing is collected, so a rule can summarise a large weight in constant memory.
    pub fn for_each_value(
        &self,
        t: &TensorProto,
        mut f: impl FnMut(f64),
    ) -> Result<(), ValueError> {
        let n = element_count(t)?;
        let ty = t.data_type;
        let mismatch = |have: usize| {
            ValueError(format!(
                "tensor `{}` declares {n} elements but stores {have}",
                t.name
            ))
        };
        if let Some(raw) = self.raw_bytes(t).map_err(ValueError)? {
            let width = dt::byte_width(ty).ok_or_else(|| unsupported(t))?;
            if ty == dt::COMPLEX64 || ty == dt::COMPLEX128 || ty == dt::STRING {
                return Err(unsupported(t));
            }
            if raw.len() != n.saturating_mul(width) {
                return Err(mismatch(raw.len() / width));
            }
            let decode = raw_decoder(ty).ok_or_else(|| unsupported(t))?;
            raw.chunks_exact(width).for_each(|c| f(decode(c)));
            return Ok(());
        }
        let have = match ty {
            dt::FLOAT => {
                t.float_data.iter().for_each(|&v| f(v as f64));
                t.float_data.len()
            }
            dt::DOUBLE => {
                t.double_data.iter().for_each(|&v| f(v));
                t.double_data.len()
            }
            dt::INT64 => {
                t.int64_data.iter().for_each(|&v| f(v as f64));
                t.int64_data.len()
            }
            dt::UINT32 | dt::UINT64 => {
                t.uint64_data.iter().for_each(|&v| f(v as f64));
                t.uint64_data.len()
            }
            dt::INT32 | dt::INT16 | dt::INT8 | dt::UINT16 | dt::UINT8 | dt::BOOL => {
                t.int32_data.iter().for_each(|&v| f(v as f64));
                t.int32_data.len()
            }
            dt::FLOAT16 | dt::BFLOAT16 | dt::FLOAT8E4M3FN | dt::FLOAT8E5M2 => {
                let decode = raw_decoder(ty).ok_or_else(|| unsupported(t))?;
                // The typed field holds the bit pattern, one element per int32.
                for &bits in &t.int32_data {
                    let b = (bits as u32).to_le_bytes();
                    f(decode(&b[..dt::byte_width(ty).unwrap_or(2)]));
                }
                t.int32_data.len()
            }
            _ => return Err(unsupported(t)),
        };
        if have != n {
            return Err(mismatch(have));
        }
        Ok(())
    }

    /// A reader that decodes any range of the tensor's elements on demand, so
    /// two tensors can be compared in lockstep without holding either whole.
    pub fn reader(&self, t: &TensorProto) -> Result<ValueReader, ValueError> {
        let n = element_count(t)?;
        if let Some(raw) = self.raw_bytes(t).map_err(ValueError)? {
            let width = dt::byte_width(t.data_type).ok_or_else(|| unsupported(t))?;
            let decode = raw_decoder(t.data_type).ok_or_else(|| unsupported(t))?;
            if raw.len() != n.saturating_mul(width) {
                return Err(ValueError(format!(
                    "tensor `{}` declares {n} elements but stores {}",
                    t.name,
                    raw.len() / width
                )));
            }
            return Ok(ValueReader::Raw { raw, width, decode });
        }
        self.values_f64(t).map(ValueReader::Decoded)
    }

    /// All elements as f32.
    pub fn values_f32(&self, t: &TensorProto) -> Result<Vec<f32>, ValueError> {
        // Stored float32 bytes, as many as declared: one allocation of the
        // right size, where growing by pushes held up to twice the tensor.
        if t.data_type == dt::FLOAT {
            if let Some(raw) = self.raw_bytes(t).map_err(ValueError)? {
                if raw.len() == element_count(t)?.saturating_mul(4) {
                    return Ok(raw
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect());
                }
            }
        }
        let mut out = Vec::with_capacity(element_count(t)?.min(1 << 20));
        self.for_each_value(t, |v| out.push(v as f32))?;
        Ok(out)
    }

    /// All elements as f64.
    pub fn values_f64(&self, t: &TensorProto) -> Result<Vec<f64>, ValueError> {
        let mut out = Vec::with_capacity(element_count(t)?.min(1 << 20));
        self.for_each_value(t, |v| out.push(v))?;
        Ok(out)
    }
}

fn unsupported(t: &TensorProto) -> ValueError {
    ValueError(format!(
        "tensor `{}` has element type {}, which has no numeric reading",
        t.name,
        dt::name(t.data_type)
    ))
}

type Decoder = fn(&[u8]) -> f64;

/// Elements of one tensor, decoded a range at a time (see [`Model::reader`]).
pub enum ValueReader {
    /// Stored bytes (a slice of a memory map), decoded on demand.
    Raw {
        raw: bytes::Bytes,
        width: usize,
        decode: Decoder,
    },
    /// Values from the typed fields, already decoded.
    Decoded(Vec<f64>),
    /// This many zeros: an input an exporter left out because it was all zero.
    Zeros(usize),
}

impl ValueReader {
    pub fn len(&self) -> usize {
        match self {
            ValueReader::Raw { raw, width, .. } => raw.len() / width,
            ValueReader::Decoded(v) => v.len(),
            ValueReader::Zeros(n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces `out` with elements `start..end` (clamped to the tensor).
    pub fn read(&self, start: usize, end: usize, out: &mut Vec<f64>) {
        out.clear();
        let end = end.min(self.len());
        let start = start.min(end);
        match self {
            ValueReader::Raw { raw, width, decode } => out.extend(
                raw[start * width..end * width]
                    .chunks_exact(*width)
                    .map(decode),
            ),
            ValueReader::Decoded(v) => out.extend_from_slice(&v[start..end]),
            ValueReader::Zeros(_) => out.resize(end - start, 0.0),
        }
    }

    /// The stored bytes of elements `start..end`, for giving their pages back.
    pub fn bytes(&self, start: usize, end: usize) -> &[u8] {
        match self {
            ValueReader::Raw { raw, width, .. } => {
                let end = end.min(raw.len() / width);
                &raw[start.min(end) * width..end * width]
            }
            ValueReader::Decoded(_) | ValueReader::Zeros(_) => &[],
        }
    }
}

fn raw_decoder(ty: i32) -> Option<Decoder> {
    fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&c[..N]);
        a
    }
    Some(match ty {
        dt::FLOAT => |c| f32::from_le_bytes(arr(c)) as f64,
        dt::DOUBLE => |c| f64::from_le_bytes(arr(c)),
        dt::FLOAT16 => |c| f16_to_f32(u16::from_le_bytes(arr(c))) as f64,
        dt::BFLOAT16 => |c| f32::from_bits((u16::from_le_bytes(arr(c)) as u32) << 16) as f64,
        dt::FLOAT8E5M2 => |c| f16_to_f32((c[0] as u16) << 8) as f64,
        dt::FLOAT8E4M3FN => |c| f8e4m3fn_to_f32(c[0]) as f64,
        dt::INT8 => |c| c[0] as i8 as f64,
        dt::UINT8 | dt::BOOL => |c| c[0] as f64,
        dt::INT16 => |c| i16::from_le_bytes(arr(c)) as f64,
        dt::UINT16 => |c| u16::from_le_bytes(arr(c)) as f64,
        dt::INT32 => |c| i32::from_le_bytes(arr(c)) as f64,
        dt::UINT32 => |c| u32::from_le_bytes(arr(c)) as f64,
        dt::INT64 => |c| i64::from_le_bytes(arr(c)) as f64,
        dt::UINT64 => |c| u64::from_le_bytes(arr(c)) as f64,
        _ => return None,
    })
}

/// IEEE 754 binary16 to binary32, exact.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value is m * 2^-24.
            let v = m as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// float8 e4m3fn (no infinities, S.1111.111 is NaN) to binary32.
pub fn f8e4m3fn_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = ((b >> 3) & 0x0f) as i32;
    let mant = (b & 0x07) as f32;
    if exp == 0x0f && b & 0x07 == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * mant / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + mant / 8.0) * 2f32.powi(exp - 7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversions() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f8e4m3fn_to_f32(0x38), 1.0);
        assert_eq!(f8e4m3fn_to_f32(0x7e), 448.0);
        assert!(f8e4m3fn_to_f32(0x7f).is_nan());
    }

    fn model_with(t: TensorProto) -> (Model, TensorProto) {
        let proto = crate::onnx::proto::ModelProto::default();
        let m = Model::from_proto(std::path::Path::new("mem.onnx"), proto).unwrap();
        (m, t)
    }

    #[test]
    fn reads_every_storage() {
        let raw_f32: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let cases = vec![
            TensorProto {
                dims: vec![2],
                data_type: dt::FLOAT,
                raw_data: Some(raw_f32.into()),
                ..Default::default()
            },
            TensorProto {
                dims: vec![2],
                data_type: dt::FLOAT,
                float_data: vec![1.5, -2.0],
                ..Default::default()
            },
            TensorProto {
                dims: vec![2],
                data_type: dt::FLOAT16,
                raw_data: Some(vec![0x00, 0x3e, 0x00, 0xc0].into()),
                ..Default::default()
            },
            TensorProto {
                dims: vec![2],
                data_type: dt::BFLOAT16,
                int32_data: vec![0x3fc0, 0xc000],
                ..Default::default()
            },
            TensorProto {
                dims: vec![1, 2],
                data_type: dt::DOUBLE,
                double_data: vec![1.5, -2.0],
                ..Default::default()
            },
        ];
        for t in cases {
            let (m, t) = model_with(t);
            assert_eq!(m.values_f64(&t).unwrap(), vec![1.5, -2.0], "{t:?}");
        }
    }

    #[test]
    fn refuses_size_mismatch_and_bad_dims() {
        let (m, t) = model_with(TensorProto {
            dims: vec![3],
            data_type: dt::FLOAT,
            float_data: vec![1.0],
            ..Default::default()
        });
        assert!(m.values_f32(&t).is_err());
        let (m, t) = model_with(TensorProto {
            dims: vec![-1],
            data_type: dt::FLOAT,
            ..Default::default()
        });
        assert!(m.values_f32(&t).is_err());
        let (m, t) = model_with(TensorProto {
            dims: vec![i64::MAX, i64::MAX],
            data_type: dt::FLOAT,
            raw_data: Some(vec![0u8; 4].into()),
            ..Default::default()
        });
        assert!(m.values_f32(&t).is_err());
    }
}
