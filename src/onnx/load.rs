//! Loading a model file: memory map, zero-copy prost decode, external-data checks.

use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use super::external::{is_external, map_file, ExternalData, Mapped};
use super::proto::{AttributeProto, GraphProto, ModelProto, TensorProto};

/// A decoded model and where its weights live.
#[derive(Debug)]
pub struct Model {
    /// The path as the user gave it.
    pub path: PathBuf,
    pub proto: ModelProto,
    pub(crate) external: ExternalData,
    /// The model file itself, which inline `raw_data` slices point into.
    map: Option<Mapped>,
    /// Why some stored values cannot be read (a missing or refused external
    /// data file), for [`load_partial`]: the graph is whole, the values are not.
    pub unreadable: Option<String>,
}

/// Why a file could not be read. Displays as one line that names the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for LoadError {}

/// Reads a binary `.onnx` file, refusing it when any of its values cannot be read.
pub fn load(path: &Path) -> Result<Model, LoadError> {
    load_partial(path)?.whole()
}

/// Reads a binary `.onnx` file whose graph decodes, even when some of its
/// stored values cannot be read ([`Model::unreadable`] says why).
///
/// The file is memory-mapped and decoded from `Bytes`, so `raw_data` fields
/// are slices of the map: weights cost address space, not memory, until read.
/// prost's recursion limit bounds nesting, so hostile inputs cannot overflow the stack.
pub fn load_partial(path: &Path) -> Result<Model, LoadError> {
    let err = |reason: String| LoadError {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(io_reason(&e)))?;
    if meta.is_dir() {
        return Err(err("is a directory".into()));
    }
    let map = map_file(path).map_err(|e| err(io_reason(&e)))?;
    let bytes = map.bytes();
    if bytes.is_empty() {
        return Err(err("file is empty, not an ONNX model".into()));
    }
    let proto = decode_with(bytes, &|| map.handle()).map_err(err)?;
    let mut model = Model {
        path: path.to_path_buf(),
        external: ExternalData::new(path),
        proto,
        map: Some(map),
        unreadable: None,
    };
    model.unreadable = model.check_external().err();
    Ok(model)
}

/// Decodes and sanity-checks a `ModelProto`.
pub fn decode(bytes: Bytes) -> Result<ModelProto, String> {
    let handle = bytes.clone();
    decode_with(bytes, &|| handle.clone())
}

/// [`decode`], where `handle` gives each decoding thread its own handle on `bytes`.
fn decode_with(bytes: Bytes, handle: &(dyn Fn() -> Bytes + Sync)) -> Result<ModelProto, String> {
    let proto = match super::wire::decode_parallel(&bytes, handle) {
        Some(proto) => proto,
        None => ModelProto::decode(bytes)
            .map_err(|e| format!("not a valid ONNX protobuf file ({})", decode_reason(&e)))?,
    };
    if proto.graph.is_none() {
        return Err("not an ONNX model: it has no graph".into());
    }
    if proto.ir_version <= 0 {
        return Err(format!(
            "not an ONNX model: ir_version is {}",
            proto.ir_version
        ));
    }
    Ok(proto)
}

impl Model {
    /// A model that was not read from a binary file (the text syntax, tests).
    /// Its external data, if any, resolves against `path`'s folder; when it
    /// cannot be read, [`Model::unreadable`] says why.
    pub fn from_proto(path: &Path, proto: ModelProto) -> Result<Model, LoadError> {
        let mut model = Model {
            path: path.to_path_buf(),
            external: ExternalData::new(path),
            proto,
            map: None,
            unreadable: None,
        };
        model.unreadable = model.check_external().err();
        Ok(model)
    }

    /// The model, or why some of its values cannot be read.
    pub fn whole(self) -> Result<Model, LoadError> {
        match self.unreadable {
            Some(reason) => Err(LoadError {
                path: self.path,
                reason,
            }),
            None => Ok(self),
        }
    }

    /// The external data files the main graph's initializers are stored in,
    /// each once, as (location as written, resolved path), in the order the
    /// initializers first name them; locations that do not resolve are left out.
    pub fn data_files(&self) -> Vec<(String, PathBuf)> {
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for t in self.graph().initializer.iter().filter(|t| is_external(t)) {
            if let Ok(r) = self.external.resolve(t) {
                if !files.iter().any(|(_, f)| f == r.file()) {
                    files.push((r.location.clone(), r.file().to_path_buf()));
                }
            }
        }
        files
    }

    pub fn graph(&self) -> &GraphProto {
        // `decode` refuses models without a graph.
        static EMPTY: std::sync::OnceLock<GraphProto> = std::sync::OnceLock::new();
        self.proto
            .graph
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(GraphProto::default))
    }

    /// The raw little-endian bytes of a tensor stored as `raw_data` or externally,
    /// `None` when it uses the typed fields.
    pub fn raw_bytes(&self, t: &TensorProto) -> Result<Option<Bytes>, String> {
        if is_external(t) {
            let r = self.external.resolve(t)?;
            return self.external.read(&r).map(Some);
        }
        Ok(t.raw_data.clone())
    }

    /// The length in bytes of a tensor stored in an external file, `None` for
    /// one stored in the model file.
    pub fn external_length(&self, t: &TensorProto) -> Result<Option<u64>, String> {
        if is_external(t) {
            return self.external.resolve(t).map(|r| Some(r.length()));
        }
        Ok(None)
    }

    /// Gives back the resident memory pages behind a tensor's stored bytes, after
    /// a pass over them. Reading them again later still works.
    pub fn release(&self, t: &TensorProto) {
        if is_external(t) {
            if let Ok(r) = self.external.resolve(t) {
                if let Ok(b) = self.external.read(&r) {
                    self.external.release(&b);
                }
            }
        } else if let (Some(raw), Some(map)) = (&t.raw_data, &self.map) {
            map.release(raw);
        }
    }

    /// Where `part` (a slice of an inline `raw_data`) starts in the model file,
    /// when the model was read from a binary file.
    pub fn file_offset(&self, part: &[u8]) -> Option<usize> {
        self.map.as_ref()?.offset_of(part)
    }

    /// Why what was read of this model cannot be trusted: a mapped file
    /// shrank while it was read (another process truncated or rewrote it).
    pub fn changed(&self) -> Option<String> {
        if self.map.as_ref().is_some_and(Mapped::changed) {
            return Some(
                "the file changed while nnlint read it (another process truncated it); lint it again once it is written"
                    .into(),
            );
        }
        self.external.changed()
    }

    /// Gives back the resident pages behind any bytes read from this model's files.
    pub fn release_bytes(&self, part: &[u8]) {
        match &self.map {
            Some(map) if map.contains(part) => map.release(part),
            _ => self.external.release(part),
        }
    }

    fn check_external(&self) -> Result<(), String> {
        let mut result = Ok(());
        for_each_tensor_in_model(&self.proto, &mut |t| {
            if result.is_ok() && is_external(t) {
                result = self.external.resolve(t).map(|_| ());
            }
        });
        result
    }
}

/// Calls `f` on every tensor the model stores: initializers, tensor attributes,
/// sparse tensors, in every subgraph and function.
pub fn for_each_tensor_in_model(m: &ModelProto, f: &mut dyn FnMut(&TensorProto)) {
    if let Some(g) = &m.graph {
        for_each_tensor_in_graph(g, f);
    }
    for func in &m.functions {
        for n in &func.node {
            for a in &n.attribute {
                for_each_tensor_in_attr(a, f);
            }
        }
    }
}

fn for_each_tensor_in_graph(g: &GraphProto, f: &mut dyn FnMut(&TensorProto)) {
    g.initializer.iter().for_each(&mut *f);
    for s in &g.sparse_initializer {
        s.values.iter().chain(s.indices.iter()).for_each(&mut *f);
    }
    for n in &g.node {
        for a in &n.attribute {
            for_each_tensor_in_attr(a, f);
        }
    }
}

fn for_each_tensor_in_attr(a: &AttributeProto, f: &mut dyn FnMut(&TensorProto)) {
    a.t.as_deref()
        .into_iter()
        .chain(&a.tensors)
        .for_each(&mut *f);
    for s in a
        .sparse_tensor
        .as_deref()
        .into_iter()
        .chain(&a.sparse_tensors)
    {
        s.values.iter().chain(s.indices.iter()).for_each(&mut *f);
    }
    for g in a.subgraphs() {
        for_each_tensor_in_graph(g, f);
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => format!("cannot read file: {e}"),
    }
}

fn decode_reason(e: &prost::DecodeError) -> String {
    // prost's message spans several lines of context; keep the first.
    let s = e.to_string();
    let s = s.lines().next().unwrap_or("").to_string();
    s.strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&s)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INLINE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/torch/dropout_bn_mlp_torchscript_train.onnx"
    );

    #[test]
    fn raw_data_is_a_slice_of_the_map_not_a_copy() {
        let bytes = map_file(Path::new(INLINE)).unwrap().bytes();
        let start = bytes.as_ptr() as usize;
        let mapped = start..start + bytes.len();
        let proto = decode(bytes.clone()).unwrap();
        let raws: Vec<Bytes> = proto
            .graph
            .unwrap()
            .initializer
            .into_iter()
            .filter_map(|t| t.raw_data)
            .collect();
        assert!(raws.len() >= 4);
        for r in raws {
            assert!(
                mapped.contains(&(r.as_ptr() as usize)),
                "raw_data was copied"
            );
        }
    }

    #[test]
    fn external_values_are_read_on_demand() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/torch/dropout_bn_mlp_dynamo_train.onnx"
        );
        let model = load(Path::new(path)).unwrap();
        assert!(crate::onnx::external::is_external(
            &model.graph().initializer[0]
        ));
        assert!(lock_is_empty(&model));
        let w = model.values_f32(&model.graph().initializer[0]).unwrap();
        assert_eq!(w.len(), 32 * 16);
        assert!(
            w.iter().all(|v| v.abs() <= 0.25),
            "fc1 init is U(-1/4, 1/4)"
        );
        assert!(!lock_is_empty(&model));
    }

    fn lock_is_empty(m: &Model) -> bool {
        m.external.mapped_files() == 0
    }
}
