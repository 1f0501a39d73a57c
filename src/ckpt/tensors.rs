//! Named tensors ([`hlo::Literal`], any element type) to and from safetensors files.
//!
//! The file format is the `safetensors` crate's (the reference implementation Hugging Face's
//! Python package wraps), so our files open in `safetensors.numpy.load_file` and theirs here.
//! Every [`ElementType`] maps to a safetensors dtype (`pred` is `BOOL`, `s32` is `I32`, ...);
//! safetensors dtypes we have no element type for (I16, U16, other F8 variants, ...) are an error
//! naming the tensor.
use super::error::{CkptError, Result};
use hlo::{ArrayShape, ElementType, Literal};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Tensors in a fixed order, by name.
pub type NamedTensors = Vec<(String, Literal)>;

/// The safetensors dtype of an element type.
pub fn dtype_of(ty: ElementType) -> Dtype {
    match ty {
        ElementType::Pred => Dtype::BOOL,
        ElementType::S8 => Dtype::I8,
        ElementType::S32 => Dtype::I32,
        ElementType::S64 => Dtype::I64,
        ElementType::U8 => Dtype::U8,
        ElementType::U32 => Dtype::U32,
        ElementType::U64 => Dtype::U64,
        ElementType::F16 => Dtype::F16,
        ElementType::Bf16 => Dtype::BF16,
        ElementType::F32 => Dtype::F32,
        ElementType::F64 => Dtype::F64,
        ElementType::F8E4M3FN => Dtype::F8_E4M3,
        ElementType::F8E5M2 => Dtype::F8_E5M2,
    }
}

/// The element type of a safetensors dtype, `None` for those HLO arrays here cannot hold.
pub fn element_type_of(d: Dtype) -> Option<ElementType> {
    ElementType::ALL.into_iter().find(|&t| dtype_of(t) == d)
}

/// A literal seen through safetensors' `View` (dims as usize, checked non-negative first).
struct LiteralView<'a> {
    lit: &'a Literal,
    dims: Vec<usize>,
}

impl View for LiteralView<'_> {
    fn dtype(&self) -> Dtype {
        dtype_of(self.lit.element_type())
    }
    fn shape(&self) -> &[usize] {
        &self.dims
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.lit.bytes())
    }
    fn data_len(&self) -> usize {
        self.lit.bytes().len()
    }
}

/// Checks that names are non-empty and unique and dims non-negative (what a file must hold).
pub fn check_tensors(what: &str, tensors: &[(String, Literal)]) -> Result<()> {
    let mut seen = HashSet::new();
    for (name, lit) in tensors {
        if name.is_empty() {
            return Err(CkptError::Invalid(format!(
                "{what}: a tensor has an empty name"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(CkptError::Invalid(format!(
                "{what}: two tensors are named '{name}'; names must be unique"
            )));
        }
        if lit.shape().dims.iter().any(|&d| d < 0) {
            return Err(CkptError::Invalid(format!(
                "{what}: tensor '{name}' has negative dims {}",
                lit.shape()
            )));
        }
    }
    Ok(())
}

/// Writes `tensors` to `path` (replacing it) and fsyncs the file. `metadata` goes into the
/// safetensors header's `__metadata__` (Hugging Face expects `{"format": "pt"}` there).
pub fn write_file(
    path: &Path,
    tensors: &[(String, Literal)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    check_tensors(&path.display().to_string(), tensors)?;
    safetensors::serialize_to_file(views(tensors), metadata, path).map_err(|e| match e {
        SafeTensorError::IoError(source) => CkptError::Io {
            op: "writing",
            path: path.to_path_buf(),
            source,
        },
        other => CkptError::Invalid(format!("writing {}: {other}", path.display())),
    })?;
    sync_file(path)
}

/// The bytes of a safetensors file of `tensors` (`path` only names it in errors), for an
/// object store, where a file is written whole from memory.
pub fn serialize(path: &Path, tensors: &[(String, Literal)]) -> Result<Vec<u8>> {
    check_tensors(&path.display().to_string(), tensors)?;
    safetensors::serialize(views(tensors), None)
        .map_err(|e| CkptError::Invalid(format!("serializing {}: {e}", path.display())))
}

fn views(tensors: &[(String, Literal)]) -> impl Iterator<Item = (&str, LiteralView<'_>)> {
    tensors.iter().map(|(name, lit)| {
        let dims = lit.shape().dims.iter().map(|&d| d as usize).collect();
        (name.as_str(), LiteralView { lit, dims })
    })
}

/// Flushes a written file to the disk.
pub fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(CkptError::io("syncing", path))
}

/// The tensors of one safetensors file, by name, and its header metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    pub tensors: BTreeMap<String, Literal>,
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(CkptError::io("reading", path))?;
        Self::parse(path, &bytes)
    }

    /// Parses the bytes of a safetensors file (`path` only names it in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            CkptError::corrupt(
                path,
                format!("not a valid safetensors file ({e}); the file is truncated or damaged"),
            )
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| CkptError::corrupt(path, format!("safetensors header: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            let ty = element_type_of(view.dtype()).ok_or_else(|| {
                CkptError::tensor(
                    path,
                    name,
                    format!(
                        "dtype {:?} is not supported (use one of {})",
                        view.dtype(),
                        supported_dtypes()
                    ),
                )
            })?;
            let dims = view
                .shape()
                .iter()
                .map(|&d| i64::try_from(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| CkptError::tensor(path, name, "a dimension overflows i64"))?;
            let lit = Literal::from_bytes(ArrayShape::new(ty, dims), view.data().to_vec())
                .map_err(|e| CkptError::tensor(path, name, e.to_string()))?;
            tensors.insert(name.to_string(), lit);
        }
        Ok(Self {
            tensors,
            metadata: header.metadata().clone().unwrap_or_default(),
        })
    }

    /// Removes and returns the tensors named `names`, in that order; errors name the first
    /// missing tensor.
    pub fn take_in_order<'n>(
        &mut self,
        path: &Path,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Result<NamedTensors> {
        names
            .into_iter()
            .map(|n| {
                self.tensors
                    .remove(n)
                    .map(|lit| (n.to_string(), lit))
                    .ok_or_else(|| CkptError::tensor(path, n, "missing from the file"))
            })
            .collect()
    }
}

fn supported_dtypes() -> String {
    ElementType::ALL
        .into_iter()
        .map(|t| format!("{:?}", dtype_of(t)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_type_maps_both_ways() {
        for t in ElementType::ALL {
            assert_eq!(element_type_of(dtype_of(t)), Some(t));
            assert_eq!(dtype_of(t).bitsize(), t.bit_width());
        }
        assert_eq!(element_type_of(Dtype::I16), None);
    }
}
