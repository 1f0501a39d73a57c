//! TensorFlow's checkpoint format (the "tensor bundle" of `tensorflow/core/util/tensor_bundle`),
//! as written by `tf.compat.v1.train.Saver` (V2) and `tf.train.Checkpoint`:
//!
//! - `<prefix>.index`: an SSTable ([`super::sstable`]). The empty key holds a
//!   `BundleHeaderProto` (number of data shards, endianness, format version); every other key is
//!   a tensor name with its `BundleEntryProto` (dtype, shape, shard, byte offset and size, masked
//!   CRC32C of the bytes).
//! - `<prefix>.data-SSSSS-of-NNNNN`: the tensors' raw bytes, row-major, in the header's byte
//!   order (little-endian on every machine TF runs on).
//!
//! Partitioned variables (entries with `slices`) and big-endian bundles are reported as
//! unsupported; Google's BERT checkpoints use neither.
use super::bundle_proto::{
    bundle_header_proto::Endianness, BundleEntryProto, BundleHeaderProto, DataType,
};
use super::{sstable, ImportError};
use crate::model::HostTensor;
use prost::Message;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The bundle format version this reader implements (`kTensorBundleVersion`).
const BUNDLE_VERSION: i32 = 1;

/// A tensor's element type, as far as an importer cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TfDtype {
    F32,
    F64,
    F16,
    Bf16,
    I32,
    I64,
    /// Any other `DataType` (strings, resources, ...), by its enum value.
    Other(i32),
}

impl TfDtype {
    fn from_proto(v: i32) -> Self {
        match DataType::try_from(v) {
            Ok(DataType::DtFloat) => Self::F32,
            Ok(DataType::DtDouble) => Self::F64,
            Ok(DataType::DtHalf) => Self::F16,
            Ok(DataType::DtBfloat16) => Self::Bf16,
            Ok(DataType::DtInt32) => Self::I32,
            Ok(DataType::DtInt64) => Self::I64,
            _ => Self::Other(v),
        }
    }

    /// Bytes per element for the types read here.
    pub fn size(self) -> Option<usize> {
        match self {
            Self::F32 | Self::I32 => Some(4),
            Self::F64 | Self::I64 => Some(8),
            Self::F16 | Self::Bf16 => Some(2),
            Self::Other(_) => None,
        }
    }
}

impl fmt::Display for TfDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::F32 => f.write_str("float32"),
            Self::F64 => f.write_str("float64"),
            Self::F16 => f.write_str("float16"),
            Self::Bf16 => f.write_str("bfloat16"),
            Self::I32 => f.write_str("int32"),
            Self::I64 => f.write_str("int64"),
            Self::Other(v) => match DataType::try_from(*v) {
                Ok(d) => f.write_str(d.as_str_name()),
                Err(_) => write!(f, "DataType {v}"),
            },
        }
    }
}

/// One tensor of the bundle, from its index entry.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: TfDtype,
    pub dims: Vec<usize>,
    pub shard: usize,
    pub offset: u64,
    pub size: u64,
    /// Masked CRC32C of the bytes, as stored.
    pub masked_crc32c: u32,
    /// Number of slices of a partitioned variable (0 for a plain tensor).
    pub num_slices: usize,
}

impl TensorInfo {
    pub fn num_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// An opened checkpoint: its index in memory, data shards read on demand.
#[derive(Clone, Debug)]
pub struct TfBundle {
    prefix: PathBuf,
    index_path: PathBuf,
    num_shards: usize,
    tensors: BTreeMap<String, TensorInfo>,
}

/// The checkpoint prefix for `path`: the prefix itself, its `.index` file or one of its data
/// shards.
pub fn checkpoint_prefix(path: &Path) -> PathBuf {
    let s = path.as_os_str().to_string_lossy();
    if let Some(p) = s.strip_suffix(".index") {
        return PathBuf::from(p);
    }
    if let Some(i) = s.rfind(".data-") {
        if s[i..].contains("-of-") {
            return PathBuf::from(&s[..i]);
        }
    }
    path.to_path_buf()
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(prefix.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

impl TfBundle {
    /// Opens the checkpoint at `path` (a prefix such as `.../bert_model.ckpt`, or its `.index`
    /// file): reads and checks the index. Data shards are opened when a tensor is read.
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let prefix = checkpoint_prefix(path);
        let index_path = with_suffix(&prefix, ".index");
        if !index_path.is_file() {
            return Err(ImportError::NotFound {
                path: index_path,
                msg: "no checkpoint index here; give the checkpoint prefix (e.g. \
                      bert_model.ckpt), its .index file or the directory holding them"
                    .into(),
            });
        }
        let entries = sstable::read_table(&index_path)?;
        let corrupt = |msg: String| ImportError::corrupt(&index_path, msg);
        let mut it = entries.into_iter();
        let header = match it.next() {
            Some((k, v)) if k.is_empty() => BundleHeaderProto::decode(&v[..]).map_err(|e| {
                corrupt(format!("the header entry is not a BundleHeaderProto: {e}"))
            })?,
            _ => {
                return Err(corrupt(
                    "the first entry is not the bundle header (empty key)".into(),
                ))
            }
        };
        let num_shards = check_header(&header, &index_path)?;
        let mut tensors = BTreeMap::new();
        for (key, value) in it {
            // Slices of partitioned variables live under binary keys starting with a NUL byte;
            // the full tensor's entry (with `slices`) is what names them.
            if key.first() == Some(&0) {
                continue;
            }
            let name = String::from_utf8(key)
                .map_err(|e| corrupt(format!("a tensor name is not UTF-8: {e}")))?;
            let entry = BundleEntryProto::decode(&value[..])
                .map_err(|e| corrupt(format!("entry '{name}' is not a BundleEntryProto: {e}")))?;
            let info = tensor_info(&name, &entry, num_shards)
                .map_err(|m| corrupt(format!("tensor '{name}': {m}")))?;
            tensors.insert(name, info);
        }
        Ok(Self {
            prefix,
            index_path,
            num_shards,
            tensors,
        })
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    pub fn index_path(&self) -> &Path {
        &self.index_path
    }

    pub fn num_shards(&self) -> usize {
        self.num_shards
    }

    /// `<prefix>.data-SSSSS-of-NNNNN`.
    pub fn data_path(&self, shard: usize) -> PathBuf {
        with_suffix(
            &self.prefix,
            &format!(".data-{shard:05}-of-{:05}", self.num_shards),
        )
    }

    /// Tensor names in index (byte) order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.tensors.values()
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    fn info_or_err(&self, name: &str) -> Result<&TensorInfo, ImportError> {
        self.info(name).ok_or_else(|| ImportError::Tensor {
            path: self.index_path.clone(),
            name: name.into(),
            msg: "no such tensor in the checkpoint".into(),
        })
    }

    /// The raw little-endian bytes of tensor `name`, checked against the entry's CRC32C.
    pub fn read_bytes(&self, name: &str) -> Result<Vec<u8>, ImportError> {
        let info = self.info_or_err(name)?;
        let err = |path: &Path, msg: String| ImportError::Tensor {
            path: path.to_path_buf(),
            name: name.into(),
            msg,
        };
        if info.num_slices > 0 {
            return Err(err(
                &self.index_path,
                format!(
                    "a partitioned variable ({} slices) is not supported; re-save it unpartitioned",
                    info.num_slices
                ),
            ));
        }
        if info.dtype.size().is_none() {
            return Err(err(
                &self.index_path,
                format!("dtype {} is not a numeric tensor type", info.dtype),
            ));
        }
        let data_path = self.data_path(info.shard);
        let mut f = std::fs::File::open(&data_path).map_err(|e| {
            err(
                &data_path,
                format!("cannot open the data shard ({e}); every .data-* file of the checkpoint must sit next to its .index"),
            )
        })?;
        let len = f
            .metadata()
            .map_err(|e| ImportError::io(&data_path, e))?
            .len();
        let end = info.offset.saturating_add(info.size);
        if end > len {
            return Err(err(
                &data_path,
                format!(
                    "needs bytes {}..{end} but the file has {len} bytes: the data file is truncated",
                    info.offset
                ),
            ));
        }
        let mut bytes = vec![0u8; info.size as usize];
        f.seek(SeekFrom::Start(info.offset))
            .and_then(|_| f.read_exact(&mut bytes))
            .map_err(|e| ImportError::io(&data_path, e))?;
        let stored = sstable::unmask_crc(info.masked_crc32c);
        let actual = crc32c::crc32c(&bytes);
        if stored != actual {
            return Err(err(
                &data_path,
                format!(
                    "CRC32C mismatch (stored {stored:#010x}, computed {actual:#010x}): the data \
                     file is corrupt; copy it again from the original checkpoint"
                ),
            ));
        }
        Ok(bytes)
    }

    /// Tensor `name` as f32 (from float32, float64, float16 or bfloat16).
    pub fn read_f32(&self, name: &str) -> Result<HostTensor, ImportError> {
        let info = self.info_or_err(name)?;
        let dims = info.dims.clone();
        let dtype = info.dtype;
        let bytes = self.read_bytes(name)?;
        let data: Vec<f32> = match dtype {
            TfDtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            TfDtype::F64 => bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(le8(c)) as f32)
                .collect(),
            TfDtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            TfDtype::Bf16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(ImportError::Tensor {
                    path: self.index_path.clone(),
                    name: name.into(),
                    msg: format!("dtype {other} is not a floating-point type"),
                })
            }
        };
        HostTensor::new(dims, data).map_err(|e| ImportError::Tensor {
            path: self.index_path.clone(),
            name: name.into(),
            msg: e.to_string(),
        })
    }

    /// Tensor `name` as i64 (from int32 or int64), e.g. `global_step`.
    pub fn read_i64(&self, name: &str) -> Result<Vec<i64>, ImportError> {
        let dtype = self.info_or_err(name)?.dtype;
        let bytes = self.read_bytes(name)?;
        match dtype {
            TfDtype::I64 => Ok(bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(le8(c)))
                .collect()),
            TfDtype::I32 => Ok(bytes
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect()),
            other => Err(ImportError::Tensor {
                path: self.index_path.clone(),
                name: name.into(),
                msg: format!("dtype {other} is not an integer type"),
            }),
        }
    }
}

fn le8(c: &[u8]) -> [u8; 8] {
    let mut a = [0; 8];
    a.copy_from_slice(&c[..8]);
    a
}

/// Checks the header's byte order and version; returns the number of data shards.
fn check_header(h: &BundleHeaderProto, index_path: &Path) -> Result<usize, ImportError> {
    if h.endianness() != Endianness::Little {
        return Err(ImportError::unsupported(
            index_path,
            "the checkpoint was written on a big-endian machine; re-save it on a little-endian one"
                .into(),
        ));
    }
    if let Some(v) = &h.version {
        if v.min_consumer > BUNDLE_VERSION || v.bad_consumers.contains(&BUNDLE_VERSION) {
            return Err(ImportError::unsupported(
                index_path,
                format!(
                    "bundle format version (producer {}, min consumer {}) is newer than the \
                     version {BUNDLE_VERSION} this reader implements",
                    v.producer, v.min_consumer
                ),
            ));
        }
    }
    if h.num_shards < 1 {
        return Err(ImportError::corrupt(
            index_path,
            format!("the header says {} data shards", h.num_shards),
        ));
    }
    Ok(h.num_shards as usize)
}

fn tensor_info(name: &str, e: &BundleEntryProto, num_shards: usize) -> Result<TensorInfo, String> {
    let shape = e.shape.clone().unwrap_or_default();
    if shape.unknown_rank {
        return Err("the shape has unknown rank".into());
    }
    let dims = shape
        .dim
        .iter()
        .map(|d| usize::try_from(d.size).map_err(|_| format!("dimension {} is negative", d.size)))
        .collect::<Result<Vec<_>, _>>()?;
    let dtype = TfDtype::from_proto(e.dtype);
    let shard = usize::try_from(e.shard_id)
        .ok()
        .filter(|&s| s < num_shards)
        .ok_or_else(|| {
            format!(
                "shard {} is not one of the {num_shards} data shards",
                e.shard_id
            )
        })?;
    let (offset, size) = match (u64::try_from(e.offset), u64::try_from(e.size)) {
        (Ok(o), Ok(s)) => (o, s),
        _ => return Err(format!("negative offset {} or size {}", e.offset, e.size)),
    };
    let info = TensorInfo {
        name: name.into(),
        dtype,
        dims,
        shard,
        offset,
        size,
        masked_crc32c: e.crc32c,
        num_slices: e.slices.len(),
    };
    if let (Some(elem), 0) = (dtype.size(), info.num_slices) {
        let want = info
            .dims
            .iter()
            .try_fold(elem, |acc, &d| acc.checked_mul(d))
            .ok_or("the shape's byte size overflows")?;
        if want as u64 != size {
            return Err(format!(
                "{size} bytes do not hold a {dtype} tensor of dims {:?} ({want} bytes)",
                info.dims
            ));
        }
    }
    Ok(info)
}
