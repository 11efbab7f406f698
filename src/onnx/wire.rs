//! Decoding a large graph on every core.
//!
//! A model's nodes and initializers are independent messages, one after
//! another in the graph's bytes. Walking the protobuf wire format finds where
//! each starts and ends without decoding it; the two lists are then decoded in
//! slices, one per core, and put back together in file order. The result is
//! the same `ModelProto` a plain prost decode gives: every other field is
//! merged in file order exactly as prost would, and any irregularity (a
//! second `graph` field, a malformed length) falls back to the plain decode,
//! which also gives the canonical error message. One difference: prost's
//! recursion limit (100 nested messages) counts from each node here, two
//! levels below the model, which still bounds the stack.

use std::ops::Range;

use bytes::Bytes;
use prost::Message;

use super::proto::{GraphProto, ModelProto, NodeProto, TensorProto};

/// Graphs with fewer nodes plus initializers than this decode on one core.
const PARALLEL_MIN: usize = 8192;

const MODEL_GRAPH: u32 = 7;
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;

/// One top-level field of a message: its number, the whole field's bytes (key
/// included) and, for a length-delimited field, its payload.
struct Field {
    number: u32,
    whole: Range<usize>,
    payload: Option<Range<usize>>,
}

/// Decodes `bytes` as a `ModelProto`, splitting a large graph across cores.
/// `None` when the model is small or irregular: decode it the plain way.
/// Each thread slices its own `handle()` on the same bytes.
pub fn decode_parallel(bytes: &Bytes, handle: &(dyn Fn() -> Bytes + Sync)) -> Option<ModelProto> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if workers < 2 {
        return None;
    }
    let model_fields = fields(bytes)?;
    let mut graphs = model_fields.iter().filter(|f| f.number == MODEL_GRAPH);
    let graph_field = graphs.next()?;
    if graphs.next().is_some() {
        return None; // prost merges repeated occurrences; leave that to it
    }
    let graph_range = graph_field.payload.clone()?;
    let graph_bytes = bytes.slice(graph_range.clone());
    let graph_fields = fields(&graph_bytes)?;
    // Payload ranges within the whole buffer.
    let at = |p: &Range<usize>| graph_range.start + p.start..graph_range.start + p.end;
    let count = |n| graph_fields.iter().filter(|f| f.number == n).count();
    let (nodes, initializers) = (count(GRAPH_NODE), count(GRAPH_INITIALIZER));
    if nodes + initializers < PARALLEL_MIN {
        return None;
    }

    // Everything but the node and initializer lists, merged in file order.
    let mut model = ModelProto::default();
    for f in model_fields.iter().filter(|f| f.number != MODEL_GRAPH) {
        model.merge(bytes.slice(f.whole.clone())).ok()?;
    }
    let mut graph = GraphProto::default();
    let mut node_parts = Vec::with_capacity(nodes);
    let mut initializer_parts = Vec::with_capacity(initializers);
    for f in &graph_fields {
        match (f.number, &f.payload) {
            (GRAPH_NODE, Some(p)) => node_parts.push(at(p)),
            (GRAPH_INITIALIZER, Some(p)) => initializer_parts.push(at(p)),
            _ => graph.merge(graph_bytes.slice(f.whole.clone())).ok()?,
        }
    }
    // A wrong wire type for a list field: prost reports it.
    if node_parts.len() != nodes || initializer_parts.len() != initializers {
        return None;
    }
    graph.node = decode_all::<NodeProto>(&node_parts, handle, workers)?;
    graph.initializer = decode_all::<TensorProto>(&initializer_parts, handle, workers)?;
    model.graph = Some(graph);
    Some(model)
}

/// Gives back the spare capacity of a decoded message's lists.
trait Shrink {
    fn shrink(&mut self);
}

impl Shrink for NodeProto {
    /// A pushed-to `Vec` starts with room for four: four 320-byte attributes
    /// for a Gemm's one `transB`, 64 MB over a 100k-node chain.
    fn shrink(&mut self) {
        self.attribute.shrink_to_fit();
        self.input.shrink_to_fit();
    }
}

impl Shrink for TensorProto {
    fn shrink(&mut self) {
        self.dims.shrink_to_fit();
    }
}

/// Decodes each part of the buffer as one `M`, on `workers` threads, keeping the order.
fn decode_all<M: Message + Default + Send + Shrink>(
    parts: &[Range<usize>],
    handle: &(dyn Fn() -> Bytes + Sync),
    workers: usize,
) -> Option<Vec<M>> {
    let per = parts.len().div_ceil(workers).max(1);
    let decoded: Vec<Option<Vec<M>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    let bytes = handle();
                    chunk
                        .iter()
                        .map(|r| {
                            let mut m = M::decode(bytes.slice(r.clone())).ok()?;
                            m.shrink();
                            Some(m)
                        })
                        .collect::<Option<Vec<M>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    let mut out = Vec::with_capacity(parts.len());
    for chunk in decoded {
        out.extend(chunk?);
    }
    Some(out)
}

/// The top-level fields of a message, or `None` when its wire format is malformed.
fn fields(buf: &[u8]) -> Option<Vec<Field>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).ok().filter(|&n| n > 0)?;
        let mut payload = None;
        match key & 7 {
            0 => {
                varint(buf, &mut pos)?;
            }
            1 => pos = pos.checked_add(8)?,
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                payload = Some(pos..end);
                pos = end;
            }
            5 => pos = pos.checked_add(4)?,
            _ => return None, // groups (3, 4) and invalid wire types
        }
        if pos > buf.len() {
            return None;
        }
        out.push(Field {
            number,
            whole: start..pos,
            payload,
        });
    }
    Some(out)
}

/// Reads a base-128 varint at `*pos`, advancing past it.
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::OperatorSetIdProto;

    fn chain(nodes: usize) -> ModelProto {
        let mut graph = GraphProto {
            name: "g".into(),
            ..Default::default()
        };
        for i in 0..nodes {
            graph.node.push(NodeProto {
                op_type: "Relu".into(),
                name: Some(format!("n{i}")),
                input: vec![format!("t{i}")],
                output: vec![format!("t{}", i + 1)],
                ..Default::default()
            });
            graph.initializer.push(TensorProto {
                name: format!("w{i}"),
                dims: vec![2],
                data_type: 1,
                raw_data: Some(Bytes::from(vec![i as u8; 8])),
                ..Default::default()
            });
        }
        ModelProto {
            ir_version: 10,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 20,
            }],
            graph: Some(graph),
            ..Default::default()
        }
    }

    #[test]
    fn gives_what_prost_gives() {
        let model = chain(PARALLEL_MIN);
        let bytes = Bytes::from(model.encode_to_vec());
        let split = decode_parallel(&bytes, &|| bytes.clone());
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
            assert_eq!(split.as_ref(), Some(&model));
        }
        assert_eq!(ModelProto::decode(bytes).ok(), Some(model));
    }

    #[test]
    fn corrupt_bytes_give_what_prost_gives_or_fall_back() {
        let clean = chain(PARALLEL_MIN).encode_to_vec();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut split = 0;
        for _ in 0..40 {
            let mut bytes = clean.clone();
            for _ in 0..4 {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = next() as u8;
            }
            let bytes = Bytes::from(bytes);
            let plain = ModelProto::decode(bytes.clone()).ok();
            if let Some(m) = decode_parallel(&bytes, &|| bytes.clone()) {
                assert_eq!(Some(m), plain);
                split += 1;
            }
        }
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
            assert!(split > 0, "no corrupted model took the parallel path");
        }
    }

    #[test]
    fn leaves_small_and_irregular_models_to_prost() {
        let small = Bytes::from(chain(10).encode_to_vec());
        assert!(decode_parallel(&small, &|| small.clone()).is_none());
        let mut twice = chain(PARALLEL_MIN).encode_to_vec();
        twice.extend(chain(1).encode_to_vec());
        let twice = Bytes::from(twice);
        assert!(decode_parallel(&twice, &|| twice.clone()).is_none());
        let mut truncated = chain(PARALLEL_MIN).encode_to_vec();
        truncated.truncate(truncated.len() - 3);
        let truncated = Bytes::from(truncated);
        assert!(decode_parallel(&truncated, &|| truncated.clone()).is_none());
    }
}
