//! External tensor data (`data_location = EXTERNAL`).
//!
//! Locations are resolved against the model's folder and checked when the
//! model is loaded, with nothing but `stat`: an absolute path, a `..`
//! component, a symlink that leaves the folder, a missing file, or an
//! offset/length past the end of the file is refused before any byte is read.
//! The data itself is memory-mapped only when a rule asks for a tensor's
//! values, and each file is mapped once.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use memmap2::Mmap;

use super::proto::{DataLocation, TensorProto};

/// Where one tensor's bytes live, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalRef {
    /// The location as written in the model, for messages.
    pub location: String,
    file: PathBuf,
    offset: u64,
    length: u64,
}

impl ExternalRef {
    /// The file, resolved inside the model's folder.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The tensor's length in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }
}

/// The external files of one model.
#[derive(Debug)]
pub struct ExternalData {
    /// The model's folder, canonicalized.
    dir: Option<PathBuf>,
    /// Canonical path and size of each location seen, so a 500-tensor model stats its file once.
    checked: Mutex<HashMap<String, (PathBuf, u64)>>,
    mapped: Mutex<HashMap<PathBuf, Mapped>>,
}

pub fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32)
}

impl ExternalData {
    /// `model_path` is the model file; its folder is the only place data may come from.
    pub fn new(model_path: &Path) -> Self {
        let dir = model_path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .and_then(|p| p.canonicalize().ok());
        ExternalData {
            dir,
            checked: Mutex::new(HashMap::new()),
            mapped: Mutex::new(HashMap::new()),
        }
    }

    /// Validates the external reference of `t` without reading data.
    pub fn resolve(&self, t: &TensorProto) -> Result<ExternalRef, String> {
        let mut location = None;
        let mut offset = None;
        let mut length = None;
        for e in &t.external_data {
            match e.key.as_str() {
                "location" => location = Some(e.value.clone()),
                "offset" => offset = Some(parse_u64("offset", &e.value)?),
                "length" => length = Some(parse_u64("length", &e.value)?),
                _ => {}
            }
        }
        let tensor = display_name(t);
        let location =
            location.ok_or_else(|| format!("tensor {tensor} is external but has no location"))?;
        let (file, size) = self
            .check_location(&location)
            .map_err(|e| format!("tensor {tensor}: external data location `{location}` {e}"))?;
        let offset = offset.unwrap_or(0);
        let length = match length {
            Some(l) => l,
            None => size.checked_sub(offset).unwrap_or(u64::MAX),
        };
        match offset.checked_add(length) {
            Some(end) if end <= size => Ok(ExternalRef {
                location,
                file,
                offset,
                length,
            }),
            _ => Err(format!(
                "tensor {tensor}: external data range {offset}+{length} is past the end of `{location}` ({size} bytes)"
            )),
        }
    }

    fn check_location(&self, location: &str) -> Result<(PathBuf, u64), String> {
        if let Some(hit) = lock(&self.checked).get(location) {
            return Ok(hit.clone());
        }
        let rel = Path::new(location);
        if location.is_empty() {
            return Err("is empty".into());
        }
        if rel.is_absolute() || location.starts_with('/') || location.starts_with('\\') {
            return Err("is absolute; it must be relative to the model's folder".into());
        }
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            || location.split(['/', '\\']).any(|p| p == "..")
        {
            return Err("leaves the model's folder".into());
        }
        let dir = self.dir.as_ref().ok_or_else(|| {
            "cannot be resolved: the model's folder is not accessible".to_string()
        })?;
        let joined = dir.join(rel);
        let real = joined.canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_string(),
            _ => format!("cannot be opened: {e}"),
        })?;
        if !real.starts_with(dir) {
            return Err("resolves through a symlink to outside the model's folder".into());
        }
        let meta = std::fs::metadata(&real).map_err(|e| format!("cannot be opened: {e}"))?;
        if !meta.is_file() {
            return Err("is not a regular file".into());
        }
        let hit = (real, meta.len());
        lock(&self.checked).insert(location.to_string(), hit.clone());
        Ok(hit)
    }

    /// How many data files are mapped so far.
    pub fn mapped_files(&self) -> usize {
        lock(&self.mapped).len()
    }

    /// The tensor's bytes, mapping the file on first use.
    pub fn read(&self, r: &ExternalRef) -> Result<Bytes, String> {
        let mut mapped = lock(&self.mapped);
        let whole = match mapped.get(&r.file) {
            Some(m) => m.bytes(),
            None => {
                let m = map_file(&r.file).map_err(|e| format!("`{}`: {e}", r.location))?;
                let b = m.bytes();
                mapped.insert(r.file.clone(), m);
                b
            }
        };
        // The bounds were checked against the size at load time; the file may have shrunk since.
        let start = usize::try_from(r.offset).ok();
        let end = start.and_then(|s| s.checked_add(usize::try_from(r.length).ok()?));
        match (start, end) {
            (Some(s), Some(e)) if e <= whole.len() => Ok(whole.slice(s..e)),
            _ => Err(format!(
                "`{}` is shorter than when the model was loaded",
                r.location
            )),
        }
    }

    /// Whether a data file shrank while it was mapped.
    pub fn changed(&self) -> Option<String> {
        lock(&self.mapped)
            .values()
            .any(Mapped::changed)
            .then(|| "its external data changed while nnlint read it".to_string())
    }

    /// Gives back the resident pages behind `part`, which was read from one of the files.
    pub fn release(&self, part: &[u8]) {
        for m in lock(&self.mapped).values() {
            m.release(part);
        }
    }
}

/// Ranges smaller than this are not worth a `madvise`.
const RELEASE_MIN: usize = 64 << 10;

/// A file's bytes, handed out as zero-copy `Bytes`: read into memory when
/// small, memory-mapped read-only when large.
///
/// File-backed pages count as resident once touched; [`Mapped::release`] gives
/// them back after a pass over a tensor, so reading every weight of a 500 MB
/// model once does not leave 500 MB resident. A map is watched for the file
/// shrinking under it ([`Mapped::changed`]).
#[derive(Clone, Debug)]
pub struct Mapped {
    map: Option<Arc<Map>>,
    bytes: Bytes,
}

/// A map and its watch; the watch is dropped first, before the unmapping.
#[derive(Debug)]
struct Map {
    #[cfg(unix)]
    watch: super::sigbus::Watch,
    map: Mmap,
}

struct Owner(Arc<Map>);

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

/// Files smaller than this are read into memory: no map, so nothing another
/// process does to the file can fault a read.
pub const MAP_FROM: u64 = 8 << 20;

impl Mapped {
    pub fn bytes(&self) -> Bytes {
        self.bytes.clone()
    }

    /// Another handle on the same bytes with a reference count of its own, so
    /// that threads slicing their own handles do not contend on one counter.
    pub fn handle(&self) -> Bytes {
        match &self.map {
            Some(map) => Bytes::from_owner(Owner(map.clone())),
            None => self.bytes.clone(),
        }
    }

    /// Whether `part` lies in these bytes.
    pub fn contains(&self, part: &[u8]) -> bool {
        let (base, start) = (self.bytes.as_ptr() as usize, part.as_ptr() as usize);
        !self.bytes.is_empty() && start >= base && start + part.len() <= base + self.bytes.len()
    }

    /// Where `part` starts in the file, if it lies in these bytes.
    pub fn offset_of(&self, part: &[u8]) -> Option<usize> {
        self.contains(part)
            .then(|| part.as_ptr() as usize - self.bytes.as_ptr() as usize)
    }

    /// Whether the file shrank while it was mapped: what was read past its new
    /// end read as zeros, and nothing found in it can be trusted.
    pub fn changed(&self) -> bool {
        #[cfg(unix)]
        return self.map.as_ref().is_some_and(|m| m.watch.faulted());
        #[cfg(not(unix))]
        false
    }

    /// Drops the resident pages of `part` if it lies in this map; the data is
    /// read from the file again if anything touches it later.
    pub fn release(&self, part: &[u8]) {
        let Some(map) = &self.map else { return };
        // Each madvise flushes TLBs on every core: not worth it for a few pages.
        if part.len() < RELEASE_MIN || !self.contains(part) {
            return;
        }
        let (base, start) = (map.map.as_ptr() as usize, part.as_ptr() as usize);
        // SAFETY: the map is a read-only shared file mapping. MADV_DONTNEED only
        // drops resident pages; the next access faults them in again from the
        // file, with the same contents. No Rust reference sees a change.
        #[cfg(unix)]
        unsafe {
            let _ = map.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start - base,
                part.len(),
            );
        }
    }
}

/// A file's bytes: read into memory below [`MAP_FROM`], memory-mapped
/// read-only from there on.
pub fn map_file(path: &Path) -> std::io::Result<Mapped> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < MAP_FROM {
        use std::io::Read;
        // A file that shrinks meanwhile gives fewer bytes, which decode as
        // a truncated model.
        let mut bytes = Vec::with_capacity(len as usize);
        (&file).take(len).read_to_end(&mut bytes)?;
        return Ok(Mapped {
            map: None,
            bytes: Bytes::from(bytes),
        });
    }
    // SAFETY: the map is read-only. Another process truncating the file while
    // nnlint reads it faults the read; the watch turns that fault into
    // zeros and a mark, which the loader reports as a changed file.
    let map = unsafe { Mmap::map(&file)? };
    let map = Arc::new(Map {
        #[cfg(unix)]
        watch: super::sigbus::watch(map.as_ptr(), map.len()),
        map,
    });
    Ok(Mapped {
        bytes: Bytes::from_owner(Owner(map.clone())),
        map: Some(map),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn parse_u64(key: &str, v: &str) -> Result<u64, String> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| format!("external data {key} `{v}` is not a non-negative integer"))
}

fn display_name(t: &TensorProto) -> String {
    if t.name.is_empty() {
        "(unnamed)".into()
    } else {
        format!("`{}`", t.name)
    }
}
