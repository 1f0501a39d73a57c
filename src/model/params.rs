//! The parameter list: names, shapes and initializers in a fixed order, host storage, graph
//! values by name, and the name/layout mapping to Hugging Face and google-research checkpoints.
//!
//! Names are Hugging Face `BertForPreTraining` names (`bert.encoder.layer.3.attention.self.query.weight`).
//! **Storage layout**: a dense layer's `weight` is `[in, out]` (y = x W + b, as TF's `kernel`);
//! Hugging Face `nn.Linear` stores `[out, in]`, so [`from_hf`] / [`to_hf`] transpose every dense
//! weight. Embedding tables are `[rows, hidden]` everywhere. `cls.seq_relationship.weight` is
//! `[hidden, 2]` here, `[2, hidden]` in both HF and TF (`output_weights`).
//! The MLM decoder is tied: its matrix is `bert.embeddings.word_embeddings.weight`, its bias
//! `cls.predictions.bias` (HF also stores the tied copies `cls.predictions.decoder.weight` and
//! `cls.predictions.decoder.bias`; [`canonical_hf_name`] folds them).
//! With `pad_vocab_to`, the word embeddings and `cls.predictions.bias` have
//! [`BertConfig::padded_vocab_size`] rows, of which the first `vocab_size` are real
//! ([`ParamSpec::real_rows`]); imports pad with zeros and exports crop.
use super::{BertConfig, ModelError};
use hlo::{Builder, ElementType, Shape, Value};
use std::collections::{BTreeMap, HashMap};

/// Parameter names, spelled once.
pub mod names {
    pub const WORD_EMBEDDINGS: &str = "bert.embeddings.word_embeddings.weight";
    pub const POSITION_EMBEDDINGS: &str = "bert.embeddings.position_embeddings.weight";
    pub const TOKEN_TYPE_EMBEDDINGS: &str = "bert.embeddings.token_type_embeddings.weight";
    pub const EMBEDDINGS_LN: &str = "bert.embeddings.LayerNorm";
    pub const POOLER: &str = "bert.pooler.dense";
    pub const MLM_TRANSFORM: &str = "cls.predictions.transform.dense";
    pub const MLM_TRANSFORM_LN: &str = "cls.predictions.transform.LayerNorm";
    pub const MLM_BIAS: &str = "cls.predictions.bias";
    pub const NSP: &str = "cls.seq_relationship";

    /// `bert.encoder.layer.{i}.{part}`, e.g. `layer(0, "attention.self.query")`.
    pub fn layer(i: usize, part: &str) -> String {
        format!("bert.encoder.layer.{i}.{part}")
    }

    pub fn weight(prefix: &str) -> String {
        format!("{prefix}.weight")
    }

    pub fn bias(prefix: &str) -> String {
        format!("{prefix}.bias")
    }
}

/// How a parameter starts (google-research/bert's initializers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamInit {
    /// Normal(0, initializer_range), values beyond 2 sigma re-drawn.
    TruncatedNormal,
    Zeros,
    Ones,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub dims: Vec<usize>,
    pub init: ParamInit,
    /// Leading rows holding real entries: `dims[0]` except for vocab-padded tensors.
    pub real_rows: usize,
}

impl ParamSpec {
    fn new(name: String, dims: Vec<usize>, init: ParamInit) -> Self {
        let real_rows = dims.first().copied().unwrap_or(1);
        Self {
            name,
            dims,
            init,
            real_rows,
        }
    }

    pub fn num_elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// The graph shape: f32 (parameters are f32 master weights whatever the compute dtype).
    pub fn shape(&self) -> Shape {
        Shape::array(ElementType::F32, hlo_dims(&self.dims))
    }
}

pub(crate) fn hlo_dims(dims: &[usize]) -> Vec<i64> {
    dims.iter().map(|&d| d as i64).collect()
}

fn dense(out: &mut Vec<ParamSpec>, prefix: &str, n_in: usize, n_out: usize) {
    use ParamInit::*;
    out.push(ParamSpec::new(
        names::weight(prefix),
        vec![n_in, n_out],
        TruncatedNormal,
    ));
    out.push(ParamSpec::new(names::bias(prefix), vec![n_out], Zeros));
}

fn layer_norm(out: &mut Vec<ParamSpec>, prefix: &str, h: usize) {
    out.push(ParamSpec::new(
        names::weight(prefix),
        vec![h],
        ParamInit::Ones,
    ));
    out.push(ParamSpec::new(
        names::bias(prefix),
        vec![h],
        ParamInit::Zeros,
    ));
}

/// The encoder's parameters (`bert.*`: embeddings, layers, pooler), in a fixed order.
pub fn encoder_param_specs(cfg: &BertConfig) -> Vec<ParamSpec> {
    use ParamInit::*;
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let mut out = vec![];
    let mut word = ParamSpec::new(
        names::WORD_EMBEDDINGS.into(),
        vec![cfg.padded_vocab_size(), h],
        TruncatedNormal,
    );
    word.real_rows = cfg.vocab_size;
    out.push(word);
    out.push(ParamSpec::new(
        names::POSITION_EMBEDDINGS.into(),
        vec![cfg.max_position_embeddings, h],
        TruncatedNormal,
    ));
    out.push(ParamSpec::new(
        names::TOKEN_TYPE_EMBEDDINGS.into(),
        vec![cfg.type_vocab_size, h],
        TruncatedNormal,
    ));
    layer_norm(&mut out, names::EMBEDDINGS_LN, h);
    for l in 0..cfg.num_hidden_layers {
        for part in ["query", "key", "value"] {
            dense(
                &mut out,
                &names::layer(l, &format!("attention.self.{part}")),
                h,
                h,
            );
        }
        dense(&mut out, &names::layer(l, "attention.output.dense"), h, h);
        layer_norm(&mut out, &names::layer(l, "attention.output.LayerNorm"), h);
        dense(&mut out, &names::layer(l, "intermediate.dense"), h, i);
        dense(&mut out, &names::layer(l, "output.dense"), i, h);
        layer_norm(&mut out, &names::layer(l, "output.LayerNorm"), h);
    }
    dense(&mut out, names::POOLER, h, h);
    out
}

/// The pretraining heads' parameters (`cls.*`: MLM transform and bias, NSP classifier).
pub fn pretraining_head_specs(cfg: &BertConfig) -> Vec<ParamSpec> {
    let h = cfg.hidden_size;
    let mut out = vec![];
    dense(&mut out, names::MLM_TRANSFORM, h, h);
    layer_norm(&mut out, names::MLM_TRANSFORM_LN, h);
    let mut bias = ParamSpec::new(
        names::MLM_BIAS.into(),
        vec![cfg.padded_vocab_size()],
        ParamInit::Zeros,
    );
    bias.real_rows = cfg.vocab_size;
    out.push(bias);
    dense(&mut out, names::NSP, h, 2);
    out
}

/// Every parameter of `BertForPreTraining`: [`encoder_param_specs`] then
/// [`pretraining_head_specs`]. This order is the order of graph parameters and checkpoints.
pub fn param_specs(cfg: &BertConfig) -> Vec<ParamSpec> {
    let mut v = encoder_param_specs(cfg);
    v.extend(pretraining_head_specs(cfg));
    v
}

/// One parameter on the host: row-major f32 values.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(dims: Vec<usize>, data: Vec<f32>) -> Result<Self, ModelError> {
        let n: usize = dims.iter().product();
        if n != data.len() {
            return Err(ModelError::Tensor(format!(
                "{} values do not fill dims {dims:?}",
                data.len()
            )));
        }
        Ok(Self { dims, data })
    }

    /// Checks that the values fill the dims (the fields are public).
    pub fn check_len(&self) -> Result<(), ModelError> {
        let n: usize = self.dims.iter().product();
        if n != self.data.len() {
            return Err(ModelError::Tensor(format!(
                "{} values do not fill dims {:?}",
                self.data.len(),
                self.dims
            )));
        }
        Ok(())
    }

    /// The transpose of a 2-D tensor.
    pub fn transposed(&self) -> Result<Self, ModelError> {
        self.check_len()?;
        let [r, c] = self.dims[..] else {
            return Err(ModelError::Tensor(format!(
                "transpose needs a 2-D tensor, got dims {:?}",
                self.dims
            )));
        };
        let mut data = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                data[j * r + i] = self.data[i * c + j];
            }
        }
        Ok(Self {
            dims: vec![c, r],
            data,
        })
    }
}

/// Named host tensors in insertion order (checkpoint order when filled from [`param_specs`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamSet {
    tensors: Vec<(String, HostTensor)>,
    index: HashMap<String, usize>,
}

impl ParamSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name`, or replaces its tensor if present (keeping its position).
    pub fn insert(&mut self, name: impl Into<String>, t: HostTensor) {
        let name = name.into();
        match self.index.get(&name) {
            Some(&i) => self.tensors[i].1 = t,
            None => {
                self.index.insert(name.clone(), self.tensors.len());
                self.tensors.push((name, t));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.index.get(name).map(|&i| &self.tensors[i].1)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut HostTensor> {
        self.index.get(name).map(|&i| &mut self.tensors[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &HostTensor)> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t))
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn num_elements(&self) -> usize {
        self.tensors.iter().map(|(_, t)| t.data.len()).sum()
    }

    /// Checks that every spec is present with its dims (extra tensors are allowed).
    pub fn check(&self, specs: &[ParamSpec]) -> Result<(), ModelError> {
        for s in specs {
            let t = self.get(&s.name).ok_or_else(|| ModelError::MissingParam {
                name: s.name.clone(),
            })?;
            if t.dims != s.dims {
                return Err(ModelError::Param {
                    name: s.name.clone(),
                    msg: format!("has dims {:?}, the config needs {:?}", t.dims, s.dims),
                });
            }
        }
        Ok(())
    }
}

/// Parameters as graph values, by name: what the forward functions read.
#[derive(Clone, Debug, Default)]
pub struct ParamValues {
    map: BTreeMap<String, Value>,
}

impl ParamValues {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares one f32 graph parameter per spec, in order (numbered after any already
    /// declared in `b`), named as the spec.
    pub fn declare(b: &Builder, specs: &[ParamSpec]) -> Result<Self, ModelError> {
        let mut p = Self::new();
        for s in specs {
            p.insert(&s.name, b.parameter(s.shape(), &s.name)?);
        }
        Ok(p)
    }

    /// From (name, value) pairs, e.g. the train step's named parameters.
    pub fn from_pairs<'n>(pairs: impl IntoIterator<Item = (&'n str, Value)>) -> Self {
        let mut p = Self::new();
        for (n, v) in pairs {
            p.insert(n, v);
        }
        p
    }

    pub fn insert(&mut self, name: impl Into<String>, v: Value) {
        self.map.insert(name.into(), v);
    }

    pub fn get(&self, name: &str) -> Result<Value, ModelError> {
        self.map
            .get(name)
            .copied()
            .ok_or_else(|| ModelError::MissingParam { name: name.into() })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Value)> {
        self.map.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

/// Whether a parameter is a dense-layer matrix (stored `[in, out]`, transposed against HF).
fn is_dense_weight(name: &str) -> bool {
    name.ends_with(".weight") && !name.contains("embeddings") && !name.contains("LayerNorm")
}

/// The name our parameter list uses for a Hugging Face state-dict key, or `None` for keys that
/// duplicate another (the tied `cls.predictions.decoder.weight`) or are not parameters
/// (`position_ids` buffers). Folds `BertModel` keys without the `bert.` prefix (as in
/// sentence-transformers checkpoints), old `LayerNorm.gamma/beta` spellings and
/// `cls.predictions.decoder.bias`.
pub fn canonical_hf_name(key: &str) -> Option<String> {
    if key == "cls.predictions.decoder.weight" || key.ends_with("position_ids") {
        return None;
    }
    if key == "cls.predictions.decoder.bias" {
        return Some(names::MLM_BIAS.into());
    }
    let mut k = key.to_string();
    if !k.starts_with("bert.") && !k.starts_with("cls.") {
        k = format!("bert.{k}");
    }
    if let Some(stem) = k.strip_suffix(".gamma") {
        k = format!("{stem}.weight");
    } else if let Some(stem) = k.strip_suffix(".beta") {
        k = format!("{stem}.bias");
    }
    Some(k)
}

/// Our tensor for parameter `spec` from the Hugging Face tensor `t` (same name): transposes
/// dense weights and pads vocabulary rows with zeros.
pub fn from_hf(spec: &ParamSpec, t: &HostTensor) -> Result<HostTensor, ModelError> {
    let t = if is_dense_weight(&spec.name) && t.dims.len() == 2 {
        t.transposed()?
    } else {
        t.clone()
    };
    pad_rows(spec, t)
}

/// The Hugging Face tensor for our parameter `spec` holding `t`: transposes dense weights and
/// crops vocabulary padding.
pub fn to_hf(spec: &ParamSpec, t: &HostTensor) -> Result<HostTensor, ModelError> {
    check_dims(spec, t)?;
    let t = crop_rows(spec, t);
    if is_dense_weight(&spec.name) {
        t.transposed()
    } else {
        Ok(t)
    }
}

/// A google-research/bert TF checkpoint variable and whether its layout is the transpose of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TfVariable {
    pub name: String,
    pub transposed: bool,
}

/// The TF variable holding our parameter `name` (`bert/encoder/layer_3/attention/self/query/kernel`,
/// `cls/predictions/output_bias`, ...). TF kernels are `[in, out]` like ours, except
/// `cls/seq_relationship/output_weights` (`[2, hidden]`).
pub fn tf_variable(name: &str) -> Option<TfVariable> {
    let fixed = match name {
        names::MLM_BIAS => Some("cls/predictions/output_bias"),
        "cls.seq_relationship.weight" => Some("cls/seq_relationship/output_weights"),
        "cls.seq_relationship.bias" => Some("cls/seq_relationship/output_bias"),
        names::WORD_EMBEDDINGS => Some("bert/embeddings/word_embeddings"),
        names::POSITION_EMBEDDINGS => Some("bert/embeddings/position_embeddings"),
        names::TOKEN_TYPE_EMBEDDINGS => Some("bert/embeddings/token_type_embeddings"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(TfVariable {
            name: f.into(),
            transposed: name == "cls.seq_relationship.weight",
        });
    }
    let (stem, leaf) = name.rsplit_once('.')?;
    let leaf = match (stem.ends_with("LayerNorm"), leaf) {
        (true, "weight") => "gamma",
        (true, "bias") => "beta",
        (false, "weight") => "kernel",
        (false, "bias") => "bias",
        _ => return None,
    };
    let mut parts: Vec<String> = vec![];
    let mut it = stem.split('.').peekable();
    while let Some(p) = it.next() {
        match (p, it.peek()) {
            ("layer", Some(n)) if n.parse::<usize>().is_ok() => {
                parts.push(format!("layer_{n}"));
                it.next();
            }
            _ => parts.push(p.to_string()),
        }
    }
    Some(TfVariable {
        name: format!("{}/{leaf}", parts.join("/")),
        transposed: false,
    })
}

fn check_dims(spec: &ParamSpec, t: &HostTensor) -> Result<(), ModelError> {
    t.check_len()?;
    if t.dims != spec.dims {
        return Err(ModelError::Param {
            name: spec.name.clone(),
            msg: format!("has dims {:?}, expected {:?}", t.dims, spec.dims),
        });
    }
    Ok(())
}

/// Pads a tensor of `real_rows` leading rows to the spec's rows with zeros.
fn pad_rows(spec: &ParamSpec, t: HostTensor) -> Result<HostTensor, ModelError> {
    let mut real = spec.dims.clone();
    if let Some(r) = real.first_mut() {
        *r = spec.real_rows;
    }
    if t.dims != real {
        return Err(ModelError::Param {
            name: spec.name.clone(),
            msg: format!(
                "has dims {:?} (in our layout), the config needs {real:?}",
                t.dims
            ),
        });
    }
    t.check_len()?;
    let mut data = t.data;
    data.resize(spec.num_elements(), 0.0);
    Ok(HostTensor {
        dims: spec.dims.clone(),
        data,
    })
}

fn crop_rows(spec: &ParamSpec, t: &HostTensor) -> HostTensor {
    let row: usize = spec.dims.iter().skip(1).product();
    let mut dims = spec.dims.clone();
    if let Some(r) = dims.first_mut() {
        *r = spec.real_rows;
    }
    HostTensor {
        dims,
        data: t.data[..spec.real_rows * row].to_vec(),
    }
}
