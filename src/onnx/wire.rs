//! Decoding a large graph on every core.
//!
//! A model's nodes and initializers are independent messages, one after
//! another in the graph's bytes. Walking the protobuf wire format finds where
//! each starts and ends without decoding it; the two lists are then decoded in
//! slices, one per core, each written into its place in file order. The result is
//! the same `ModelProto` a plain prost decode gives: every other field is
//! merged in file order exactly as prost would, and any irregularity (a
//! second `graph` field, a malformed length) falls back to the plain decode,
//! which also gives the canonical error message. One difference: prost's
//! recursion limit (100 nested messages) counts from each node here, two
//! levels below the model, which still bounds the stack.

use std::mem::MaybeUninit;
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
pub(super) fn decode_parallel(
    bytes: &Bytes,
    handle: &(dyn Fn() -> Bytes + Sync),
) -> Option<ModelProto> {
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
    // One walk over the graph's fields, keeping only where each node and
    // initializer lies: a list of all 200,000 fields of a 100k-node chain,
    // grown as it was walked, cost more than the walk.
    let at = |p: Range<usize>| graph_range.start + p.start..graph_range.start + p.end;
    let (mut node_parts, mut initializer_parts) = (Vec::new(), Vec::new());
    let mut rest = Vec::new();
    for f in Fields::new(&graph_bytes) {
        let f = f?;
        match (f.number, f.payload) {
            (GRAPH_NODE, Some(p)) => node_parts.push(at(p)),
            (GRAPH_INITIALIZER, Some(p)) => initializer_parts.push(at(p)),
            // A wrong wire type for a list field: prost reports it.
            (GRAPH_NODE | GRAPH_INITIALIZER, None) => return None,
            _ => rest.push(f.whole),
        }
    }
    if node_parts.len() + initializer_parts.len() < PARALLEL_MIN {
        return None;
    }

    // Everything but the node and initializer lists, merged in file order.
    let mut model = ModelProto::default();
    for f in model_fields.iter().filter(|f| f.number != MODEL_GRAPH) {
        model.merge(bytes.slice(f.whole.clone())).ok()?;
    }
    let mut graph = GraphProto::default();
    for whole in rest {
        graph.merge(graph_bytes.slice(whole)).ok()?;
    }
    (graph.node, graph.initializer) =
        decode_lists(&node_parts, &initializer_parts, handle, workers)?;
    model.graph = Some(graph);
    Some(model)
}

/// One list element decoded from its own bytes, as prost decodes it.
trait Part: Message + Default {
    fn decode_part(bytes: Bytes) -> Option<Self>;
}

impl Part for NodeProto {
    /// A pushed-to `Vec` starts with room for four: four 320-byte attributes
    /// for a Gemm's one `transB`, 64 MB over a 100k-node chain. The spare
    /// room is given back.
    fn decode_part(bytes: Bytes) -> Option<Self> {
        let mut node = NodeProto::decode(bytes).ok()?;
        node.attribute.shrink_to_fit();
        node.input.shrink_to_fit();
        Some(node)
    }
}

const TENSOR_FLOAT_DATA: u32 = 4;
const TENSOR_DOUBLE_DATA: u32 = 10;

impl Part for TensorProto {
    /// prost grows a packed `float_data` or `double_data` one value at a
    /// time, copying it as it doubles; over the 54 MB of floats of a 100k-node
    /// chain that was 400,000 reallocations. Packed, their count is their
    /// length over the width, so they are read at their final size here and
    /// every other field is merged as prost would. A value list written
    /// unpacked, or a length that is not a whole number of values, is left to
    /// prost.
    fn decode_part(bytes: Bytes) -> Option<Self> {
        let all = fields(&bytes)?;
        let occurrences = |n: u32| all.iter().filter(move |f| f.number == n);
        let values = |n: u32| {
            occurrences(n)
                .filter_map(|f| f.payload.as_ref())
                .map(|p| p.len())
        };
        let irregular = |n: u32, width: usize| {
            occurrences(n).any(|f| f.payload.as_ref().is_none_or(|p| p.len() % width != 0))
        };
        if occurrences(TENSOR_FLOAT_DATA).next().is_none()
            && occurrences(TENSOR_DOUBLE_DATA).next().is_none()
            || irregular(TENSOR_FLOAT_DATA, 4)
            || irregular(TENSOR_DOUBLE_DATA, 8)
        {
            let mut tensor = TensorProto::decode(bytes).ok()?;
            tensor.dims.shrink_to_fit();
            return Some(tensor);
        }
        let mut tensor = TensorProto::default();
        tensor
            .float_data
            .reserve_exact(values(TENSOR_FLOAT_DATA).sum::<usize>() / 4);
        tensor
            .double_data
            .reserve_exact(values(TENSOR_DOUBLE_DATA).sum::<usize>() / 8);
        for f in &all {
            let payload = f.payload.as_ref().map(|p| &bytes[p.clone()]);
            match (f.number, payload) {
                (TENSOR_FLOAT_DATA, Some(p)) => tensor.float_data.extend(
                    p.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                ),
                (TENSOR_DOUBLE_DATA, Some(p)) => {
                    tensor.double_data.extend(p.chunks_exact(8).map(|c| {
                        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
                    }))
                }
                _ => tensor.merge(bytes.slice(f.whole.clone())).ok()?,
            }
        }
        tensor.dims.shrink_to_fit();
        Some(tensor)
    }
}

/// Decodes the node and initializer lists on `workers` threads, each
/// decoding its share of both straight into the lists' final places: filling
/// the lists with empty messages first, on one thread, took a fifth of the
/// read of a 100k-node chain, and gathering per-thread lists touched every
/// decoded message twice.
fn decode_lists(
    nodes: &[Range<usize>],
    initializers: &[Range<usize>],
    handle: &(dyn Fn() -> Bytes + Sync),
    workers: usize,
) -> Option<(Vec<NodeProto>, Vec<TensorProto>)> {
    let (mut node_list, mut initializer_list) = (Vec::new(), Vec::new());
    let shares = Share::split(nodes, &mut node_list, workers).zip(Share::split(
        initializers,
        &mut initializer_list,
        workers,
    ));
    let done: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .map(|(mut n, mut i)| {
                scope.spawn(move || {
                    let bytes = handle();
                    let _ = n.fill(&bytes) && i.fill(&bytes);
                    (n, i)
                })
            })
            .collect();
        // Every thread is joined, even after one has failed: a scope
        // re-raises the panic of a thread nobody joined.
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let complete = done.len() == workers && done.iter().all(|(n, i)| n.complete() && i.complete());
    if !complete {
        return None; // the shares drop what they decoded
    }
    for (n, i) in done {
        std::mem::forget(n);
        std::mem::forget(i);
    }
    // SAFETY: the lists were empty, the shares cover every slot below each
    // list's new length, each share wrote all of its slots (`complete`),
    // and the shares were forgotten, so the messages they wrote are owned
    // by the lists alone.
    unsafe {
        node_list.set_len(nodes.len());
        initializer_list.set_len(initializers.len());
    }
    Some((node_list, initializer_list))
}

/// One thread's share of a list decoded in place: its parts, the slots they
/// decode into, and how many it has written. A share dropped before the list
/// takes its slots drops the messages it wrote.
struct Share<'a, M> {
    parts: &'a [Range<usize>],
    slots: &'a mut [MaybeUninit<M>],
    written: usize,
}

impl<'a, M: Part> Share<'a, M> {
    /// `parts` in `workers` shares of room made at the end of `list`;
    /// shares past the end of a short list are empty.
    fn split(
        parts: &'a [Range<usize>],
        list: &'a mut Vec<M>,
        workers: usize,
    ) -> impl Iterator<Item = Share<'a, M>> {
        let per = parts.len().div_ceil(workers).max(1);
        list.reserve_exact(parts.len());
        let mut chunks = parts
            .chunks(per)
            .zip(list.spare_capacity_mut()[..parts.len()].chunks_mut(per));
        (0..workers).map(move |_| {
            let (parts, slots) = chunks.next().unwrap_or((&[], &mut []));
            Share {
                parts,
                slots,
                written: 0,
            }
        })
    }

    /// Decodes the share's parts into its slots, in order; false at the
    /// first part that does not decode.
    fn fill(&mut self, bytes: &Bytes) -> bool {
        while let (Some(r), Some(slot)) = (
            self.parts.get(self.written),
            self.slots.get_mut(self.written),
        ) {
            let Some(message) = M::decode_part(bytes.slice(r.clone())) else {
                return false;
            };
            slot.write(message);
            self.written += 1;
        }
        true
    }

    fn complete(&self) -> bool {
        self.written == self.slots.len()
    }
}

impl<M> Drop for Share<'_, M> {
    fn drop(&mut self) {
        for slot in &mut self.slots[..self.written] {
            // SAFETY: the first `written` slots were written by `fill`, and
            // the list they belong to has not taken them (its length is unset).
            unsafe { slot.assume_init_drop() }
        }
    }
}

/// The top-level fields of a message, or `None` when its wire format is malformed.
fn fields(buf: &[u8]) -> Option<Vec<Field>> {
    Fields::new(buf).collect()
}

/// The top-level fields of a message, one at a time: `None` for a field
/// whose wire format is malformed, and nothing after it.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn field(&mut self) -> Option<Field> {
        let (buf, start) = (self.buf, self.pos);
        let mut pos = start;
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
        self.pos = pos;
        Some(Field {
            number,
            whole: start..pos,
            payload,
        })
    }
}

impl Iterator for Fields<'_> {
    type Item = Option<Field>;

    fn next(&mut self) -> Option<Option<Field>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let field = self.field();
        if field.is_none() {
            self.pos = self.buf.len(); // malformed: stop here
        }
        Some(field)
    }
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
            // Every storage of values: raw bytes, packed floats, packed doubles.
            let mut tensor = TensorProto {
                name: format!("w{i}"),
                dims: vec![2],
                data_type: 1,
                ..Default::default()
            };
            match i % 3 {
                0 => tensor.raw_data = Some(Bytes::from(vec![i as u8; 8])),
                1 => tensor.float_data = vec![i as f32, -0.5],
                _ => {
                    tensor.data_type = 11;
                    tensor.double_data = vec![i as f64, 1e-300];
                }
            }
            graph.initializer.push(tensor);
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
    fn a_tensor_decodes_as_prost_decodes_it_whatever_its_value_lists() {
        let float = |v: f32| v.to_le_bytes().to_vec();
        // name "w", then float_data packed twice, then one float unpacked.
        let mut packed_twice = vec![0x42, 1, b'w', 0x22, 8];
        packed_twice.extend(float(1.5));
        packed_twice.extend(float(-2.0));
        packed_twice.extend([0x22, 4]);
        packed_twice.extend(float(3.0));
        let mut unpacked = packed_twice.clone();
        unpacked.push(0x25);
        unpacked.extend(float(4.0));
        // A packed length that is not a whole number of floats.
        let mut ragged = vec![0x22, 3];
        ragged.extend(&float(1.0)[..3]);
        // Doubles, packed, after a raw_data field.
        let mut doubles = vec![0x4a, 2, 7, 7, 0x52, 8];
        doubles.extend(0.25f64.to_le_bytes());
        for bytes in [packed_twice, unpacked, ragged, doubles] {
            let bytes = Bytes::from(bytes);
            let plain = TensorProto::decode(bytes.clone()).ok();
            assert_eq!(TensorProto::decode_part(bytes), plain);
        }
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
