//! Client create options (PJRT_NamedValue arrays) and compile options (CompileOptionsProto bytes).
use crate::error::{Error, Result};
use crate::ffi::{self, new_args, PJRT_NamedValue};
use hlo::proto;
use prost::Message;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::c_char;

/// A value of a PJRT named value (client options, plugin attributes, cost analysis).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int64(i64),
    Int64List(Vec<i64>),
    Float(f32),
    Bool(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Int64List(v) => write!(f, "{v:?}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// Reads a plugin-owned array of named values.
///
/// # Safety
/// `ptr` must be NULL or point to `n` valid `PJRT_NamedValue`s whose strings/arrays are alive.
pub(crate) unsafe fn read_named_values(
    ptr: *const PJRT_NamedValue,
    n: usize,
) -> Vec<(String, Value)> {
    let items: &[PJRT_NamedValue] = if ptr.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, n) }
    };
    items
        .iter()
        .map(|nv| {
            // SAFETY: name/name_size describe a plugin-owned string (caller's guarantee).
            let name = unsafe { crate::api::str_from(nv.name, nv.name_size) };
            // SAFETY: the union member read is the one `type_` names.
            let value = unsafe {
                match nv.type_ {
                    ffi::PJRT_NamedValue_kString => {
                        Value::Str(crate::api::str_from(nv.value.string_value, nv.value_size))
                    }
                    ffi::PJRT_NamedValue_kInt64 => Value::Int64(nv.value.int64_value),
                    ffi::PJRT_NamedValue_kInt64List => Value::Int64List(crate::api::vec_from(
                        nv.value.int64_array_value,
                        nv.value_size,
                    )),
                    ffi::PJRT_NamedValue_kFloat => Value::Float(nv.value.float_value),
                    ffi::PJRT_NamedValue_kBool => Value::Bool(nv.value.bool_value),
                    other => Value::Str(format!("<unknown named value type {other}>")),
                }
            };
            (name, value)
        })
        .collect()
}

/// Options for `PJRT_Client_Create`. Plugins silently ignore unknown names and abort on a value of
/// the wrong type, so the typed fields are preferred; `extra` passes anything else through as is.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// CPU plugin: number of virtual devices (`cpu_device_count`, int64). Default 4.
    pub cpu_device_count: Option<i64>,
    /// GPU plugin: fraction of device memory the allocator may take (`memory_fraction`, float).
    pub memory_fraction: Option<f32>,
    /// GPU plugin: allocate the memory fraction up front (`preallocate`, bool).
    pub preallocate: Option<bool>,
    /// GPU plugin, multi-process runs: this process's index (`node_id`, int64).
    pub node_id: Option<i64>,
    /// GPU plugin, multi-process runs: the number of processes (`num_nodes`, int64).
    pub num_nodes: Option<i64>,
    /// Any other named option, passed verbatim.
    pub extra: BTreeMap<String, Value>,
}

impl ClientOptions {
    pub fn cpu(device_count: i64) -> Self {
        ClientOptions {
            cpu_device_count: Some(device_count),
            ..Default::default()
        }
    }

    /// These options for process `process_id` of `num_processes`, as `kind`'s plugin needs them
    /// to form one client across processes (create the client with `Client::with_kv_store`):
    ///
    /// - CUDA (XLA's GPU plugin, `pjrt_c_api_gpu_internal.cc`): `node_id` and `num_nodes`,
    ///   plus the key-value store, through which the processes exchange their local device
    ///   topologies at creation and NCCL ids at the first collective. JAX passes the same two
    ///   options to every C API plugin once `jax.distributed` is initialized.
    /// - TPU (libtpu): no option; JAX's `make_tpu_client` passes only the key-value store.
    ///   libtpu finds its place in the slice itself, from the TPU VM's metadata or the
    ///   `TPU_WORKER_ID` / `TPU_WORKER_HOSTNAMES` environment variables.
    /// - CPU (xla-cpu-pjrt 0.0.1): cannot: it reads only `cpu_device_count` and never calls
    ///   the key-value store (measured, docs/tpu.md), so each process would be a separate
    ///   single-process client. An error for `num_processes` > 1.
    pub fn for_process(
        mut self,
        kind: crate::PluginKind,
        process_id: i64,
        num_processes: i64,
    ) -> Result<Self> {
        if num_processes < 1 || !(0..num_processes).contains(&process_id) {
            return Err(Error::Option(format!(
                "process {process_id} of {num_processes}: the process id must be in 0..{num_processes}"
            )));
        }
        match kind {
            crate::PluginKind::Cuda => {
                self.node_id = Some(process_id);
                self.num_nodes = Some(num_processes);
            }
            crate::PluginKind::Tpu => {}
            crate::PluginKind::Cpu if num_processes == 1 => {}
            crate::PluginKind::Cpu => {
                return Err(Error::Option(format!(
                    "the CPU plugin cannot form a client across {num_processes} processes (it \
                     ignores node_id/num_nodes and the key-value store); multi-process runs \
                     need the cuda or tpu plugin"
                )))
            }
        }
        Ok(self)
    }

    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// All options as (name, value), typed fields first. Errors on a name given twice.
    pub fn named_values(&self) -> Result<Vec<(String, Value)>> {
        let mut out: Vec<(String, Value)> = Vec::new();
        if let Some(n) = self.cpu_device_count {
            if n < 1 {
                return Err(Error::Option(format!(
                    "cpu_device_count must be >= 1, got {n}"
                )));
            }
            out.push(("cpu_device_count".into(), Value::Int64(n)));
        }
        if let Some(f) = self.memory_fraction {
            if !(f > 0.0 && f <= 1.0) {
                return Err(Error::Option(format!(
                    "memory_fraction must be in (0, 1], got {f}"
                )));
            }
            out.push(("memory_fraction".into(), Value::Float(f)));
        }
        if let Some(b) = self.preallocate {
            out.push(("preallocate".into(), Value::Bool(b)));
        }
        match (self.node_id, self.num_nodes) {
            (None, None) => {}
            (Some(id), Some(n)) if n >= 1 && (0..n).contains(&id) => {
                out.push(("node_id".into(), Value::Int64(id)));
                out.push(("num_nodes".into(), Value::Int64(n)));
            }
            (id, n) => {
                return Err(Error::Option(format!(
                    "node_id {id:?} and num_nodes {n:?} must be given together, with \
                     0 <= node_id < num_nodes"
                )))
            }
        }
        for (k, v) in &self.extra {
            if out.iter().any(|(n, _)| n == k) {
                return Err(Error::Option(format!(
                    "client option `{k}` is given both as a typed field and in `extra`"
                )));
            }
            out.push((k.clone(), v.clone()));
        }
        Ok(out)
    }
}

/// Named values laid out for C: the `PJRT_NamedValue` array plus the storage its pointers use.
/// Keep it alive for the duration of the call that reads it.
pub(crate) struct NamedValueArray {
    pub values: Vec<PJRT_NamedValue>,
    _names: Vec<Vec<u8>>,
    _strings: Vec<Vec<u8>>,
    _lists: Vec<Vec<i64>>,
}

impl NamedValueArray {
    pub(crate) fn new(items: &[(String, Value)]) -> NamedValueArray {
        let names: Vec<Vec<u8>> = items.iter().map(|(n, _)| n.as_bytes().to_vec()).collect();
        let mut strings = Vec::new();
        let mut lists = Vec::new();
        let mut values = Vec::with_capacity(items.len());
        for ((_, v), name) in items.iter().zip(&names) {
            let mut nv: PJRT_NamedValue = new_args();
            nv.name = name.as_ptr() as *const c_char;
            nv.name_size = name.len();
            match v {
                Value::Str(s) => {
                    let b = s.as_bytes().to_vec();
                    nv.type_ = ffi::PJRT_NamedValue_kString;
                    nv.value.string_value = b.as_ptr() as *const c_char;
                    nv.value_size = b.len();
                    strings.push(b);
                }
                Value::Int64(i) => {
                    nv.type_ = ffi::PJRT_NamedValue_kInt64;
                    nv.value.int64_value = *i;
                    nv.value_size = 1;
                }
                Value::Int64List(l) => {
                    let l = l.clone();
                    nv.type_ = ffi::PJRT_NamedValue_kInt64List;
                    nv.value.int64_array_value = l.as_ptr();
                    nv.value_size = l.len();
                    lists.push(l);
                }
                Value::Float(f) => {
                    nv.type_ = ffi::PJRT_NamedValue_kFloat;
                    nv.value.float_value = *f;
                    nv.value_size = 1;
                }
                Value::Bool(b) => {
                    nv.type_ = ffi::PJRT_NamedValue_kBool;
                    nv.value.bool_value = *b;
                    nv.value_size = 1;
                }
            }
            values.push(nv);
        }
        // Moving a Vec does not move its heap buffer, so the pointers above stay valid.
        NamedValueArray {
            values,
            _names: names,
            _strings: strings,
            _lists: lists,
        }
    }
}

/// A value of an XLA debug-option override (`CompileOptionsProto.env_option_overrides`).
#[derive(Clone, Debug, PartialEq)]
pub enum OptionOverride {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
}

/// XLA:CPU's XNNPACK switch (`DebugOptions.xla_cpu_use_xnnpack`, on by default in
/// xla-cpu-pjrt 0.0.1), off in programs over several CPU devices: see
/// [`CompileOptions::for_cpu_plugin`].
pub const CPU_XNNPACK_OPTION: &str = "xla_cpu_use_xnnpack";

/// Compile options, serialized to `CompileOptionsProto`. Never empty: the default is one replica,
/// one partition (PJRT aborts the process on empty options).
#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub num_replicas: i64,
    pub num_partitions: i64,
    pub use_spmd_partitioning: bool,
    /// `device_assignment[partition][replica] = device id`; `None` lets the plugin choose.
    pub device_assignment: Option<Vec<Vec<i64>>>,
    /// XLA flags such as `xla_cpu_enable_fast_math`, passed as option overrides.
    pub env_option_overrides: BTreeMap<String, OptionOverride>,
    /// Multi-process runs: this process's index and the process count (0 = single process).
    pub process_index: i64,
    pub process_count: i64,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            num_replicas: 1,
            num_partitions: 1,
            use_spmd_partitioning: false,
            device_assignment: None,
            env_option_overrides: BTreeMap::new(),
            process_index: 0,
            process_count: 0,
        }
    }
}

impl CompileOptions {
    pub fn replicas(n: i64) -> Self {
        CompileOptions {
            num_replicas: n,
            ..Default::default()
        }
    }

    pub fn spmd(partitions: i64) -> Self {
        CompileOptions {
            num_partitions: partitions,
            use_spmd_partitioning: true,
            ..Default::default()
        }
    }

    /// How many devices one execution of the program spans (replicas x partitions).
    pub fn device_count(&self) -> i64 {
        self.num_replicas.saturating_mul(self.num_partitions)
    }

    /// These options as XLA:CPU gets them: a program over several devices is compiled without
    /// XNNPACK ([`CPU_XNNPACK_OPTION`] = false) unless the caller set that option itself.
    ///
    /// Why: XLA:CPU (xla-cpu-pjrt 0.0.1) runs every replica's thunks on one shared intra-op
    /// Eigen pool of max(cores, devices) threads (`PjRtCpuClient`'s "XLAEigen" pool; the core
    /// count is `PJRT_NPROC`/`NPROC` or the machine's). A replica that reaches an all-reduce
    /// blocks its pool thread in the in-process rendezvous until every replica arrives. An
    /// XNNPACK dot, run on a pool thread, blocks that thread too when it rebuilds its runtime
    /// (`XnnFusionThunk::UpdateXnnExecutable` -> `pthreadpool_destroy`, which waits until each
    /// worker task it queued on the same pool has run). With as many pool threads as devices
    /// (2 cores, 2 devices) nothing is left to run those tasks: the replica never reaches the
    /// all-reduce, and XLA aborts the process after 40 s ("Termination timeout for all
    /// reduce"). Without XNNPACK, dots are Eigen contractions that never wait on the pool, so
    /// the only waits left are the rendezvous, at most one per replica, and the pool always
    /// keeps a thread for the replica that has not arrived yet. One-device programs keep
    /// XNNPACK (faster there: 292 vs 376 ms for the tiny preset's step at seq 128 on 2 cores).
    pub fn for_cpu_plugin(&self) -> Cow<'_, CompileOptions> {
        if self.device_count() <= 1 || self.env_option_overrides.contains_key(CPU_XNNPACK_OPTION) {
            return Cow::Borrowed(self);
        }
        let mut o = self.clone();
        o.env_option_overrides
            .insert(CPU_XNNPACK_OPTION.into(), OptionOverride::Bool(false));
        Cow::Owned(o)
    }

    /// Checks the options and builds the proto.
    pub fn to_proto(&self) -> Result<proto::CompileOptionsProto> {
        if self.num_replicas < 1 || self.num_partitions < 1 {
            return Err(Error::Option(format!(
                "num_replicas and num_partitions must be >= 1, got {} and {}",
                self.num_replicas, self.num_partitions
            )));
        }
        let device_assignment = match &self.device_assignment {
            None => None,
            Some(parts) => {
                if parts.len() as i64 != self.num_partitions {
                    return Err(Error::Option(format!(
                        "device_assignment has {} partitions, num_partitions is {}",
                        parts.len(),
                        self.num_partitions
                    )));
                }
                let mut seen = std::collections::BTreeSet::new();
                for (p, reps) in parts.iter().enumerate() {
                    if reps.len() as i64 != self.num_replicas {
                        return Err(Error::Option(format!(
                            "device_assignment partition {p} has {} replicas, num_replicas is {}",
                            reps.len(),
                            self.num_replicas
                        )));
                    }
                    for &d in reps {
                        if d < 0 || !seen.insert(d) {
                            return Err(Error::Option(format!(
                                "device_assignment: device id {d} is negative or used twice"
                            )));
                        }
                    }
                }
                Some(proto::DeviceAssignmentProto {
                    replica_count: self.num_replicas as i32,
                    computation_count: self.num_partitions as i32,
                    computation_devices: parts
                        .iter()
                        .map(|r| proto::device_assignment_proto::ComputationDevice {
                            replica_device_ids: r.clone(),
                        })
                        .collect(),
                })
            }
        };
        if self.process_count < 0
            || (self.process_count > 0 && !(0..self.process_count).contains(&self.process_index))
        {
            return Err(Error::Option(format!(
                "process_index {} is not in 0..process_count {}",
                self.process_index, self.process_count
            )));
        }
        let build = proto::ExecutableBuildOptionsProto {
            // XLA's own default: -1 = "no particular device".
            device_ordinal: -1,
            num_replicas: self.num_replicas,
            num_partitions: self.num_partitions,
            use_spmd_partitioning: self.use_spmd_partitioning,
            device_assignment,
            process_index: self.process_index,
            process_count: self.process_count,
            ..Default::default()
        };
        let env_option_overrides = self
            .env_option_overrides
            .iter()
            .map(|(k, v)| {
                use proto::option_override_proto::Value as V;
                let value = match v {
                    OptionOverride::Str(s) => V::StringField(s.clone()),
                    OptionOverride::Bool(b) => V::BoolField(*b),
                    OptionOverride::Int(i) => V::IntField(*i),
                    OptionOverride::Double(d) => V::DoubleField(*d),
                };
                (k.clone(), proto::OptionOverrideProto { value: Some(value) })
            })
            .collect();
        Ok(proto::CompileOptionsProto {
            executable_build_options: Some(build),
            env_option_overrides,
            ..Default::default()
        })
    }

    /// Serialized `CompileOptionsProto`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.to_proto()?.encode_to_vec())
    }
}

/// Options of one execute call.
#[derive(Clone, Debug, Default)]
pub struct ExecuteOptions {
    /// Inputs that must not be donated even where the program aliases them.
    pub non_donatable_input_indices: Vec<i64>,
    /// Non-zero: identifies a multi-device launch (must match across processes).
    pub launch_id: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_compile_options_are_never_empty() {
        let p = CompileOptions::default().to_proto().unwrap();
        let b = p.executable_build_options.unwrap();
        assert_eq!((b.num_replicas, b.num_partitions), (1, 1));
        assert!(!CompileOptions::default().to_bytes().unwrap().is_empty());
    }

    #[test]
    fn device_assignment_is_checked() {
        let mut o = CompileOptions::replicas(2);
        o.device_assignment = Some(vec![vec![0, 1]]);
        let da = o
            .to_proto()
            .unwrap()
            .executable_build_options
            .unwrap()
            .device_assignment
            .unwrap();
        assert_eq!(da.replica_count, 2);
        assert_eq!(da.computation_devices[0].replica_device_ids, vec![0, 1]);
        o.device_assignment = Some(vec![vec![0, 0]]);
        assert!(o.to_proto().is_err());
        o.device_assignment = Some(vec![vec![0]]);
        assert!(o.to_proto().is_err());
        assert!(CompileOptions::replicas(0).to_proto().is_err());
    }

    #[test]
    fn cpu_programs_over_several_devices_go_without_xnnpack() {
        let off = Some(&OptionOverride::Bool(false));
        let xnn = |o: &CompileOptions| {
            o.for_cpu_plugin()
                .env_option_overrides
                .get(CPU_XNNPACK_OPTION)
                .cloned()
        };
        assert_eq!(xnn(&CompileOptions::default()), None);
        assert!(matches!(
            CompileOptions::default().for_cpu_plugin(),
            Cow::Borrowed(_)
        ));
        assert_eq!(xnn(&CompileOptions::replicas(2)).as_ref(), off);
        assert_eq!(xnn(&CompileOptions::spmd(4)).as_ref(), off);
        // The caller's own choice stays, either way.
        let mut mine = CompileOptions::replicas(2);
        mine.env_option_overrides
            .insert(CPU_XNNPACK_OPTION.into(), OptionOverride::Bool(true));
        assert_eq!(xnn(&mine), Some(OptionOverride::Bool(true)));
        // Nothing else changes.
        let two = CompileOptions::replicas(2);
        let p = two.for_cpu_plugin().to_proto().unwrap();
        assert_eq!(
            p.executable_build_options,
            two.to_proto().unwrap().executable_build_options
        );
        assert_eq!(p.env_option_overrides.len(), 1);
    }

    #[test]
    fn overrides_are_encoded() {
        let mut o = CompileOptions::default();
        o.env_option_overrides.insert(
            "xla_cpu_enable_fast_math".into(),
            OptionOverride::Bool(false),
        );
        let p = o.to_proto().unwrap();
        assert_eq!(p.env_option_overrides.len(), 1);
    }

    #[test]
    fn client_options_named_values() {
        let o = ClientOptions::cpu(4).with("foo", Value::Int64List(vec![1, 2]));
        let nv = o.named_values().unwrap();
        assert_eq!(nv[0], ("cpu_device_count".into(), Value::Int64(4)));
        let arr = NamedValueArray::new(&nv);
        // SAFETY: arr is alive and holds 2 valid values.
        let back = unsafe { read_named_values(arr.values.as_ptr(), arr.values.len()) };
        assert_eq!(back, nv);
        assert!(ClientOptions::cpu(0).named_values().is_err());
        let dup = ClientOptions::cpu(2).with("cpu_device_count", Value::Int64(3));
        assert!(dup.named_values().is_err());
    }

    #[test]
    fn process_options_per_plugin() {
        use crate::PluginKind;
        let gpu = ClientOptions::default()
            .for_process(PluginKind::Cuda, 2, 4)
            .unwrap();
        assert_eq!(
            gpu.named_values().unwrap(),
            vec![
                ("node_id".to_string(), Value::Int64(2)),
                ("num_nodes".to_string(), Value::Int64(4))
            ]
        );
        let tpu = ClientOptions::default()
            .for_process(PluginKind::Tpu, 3, 4)
            .unwrap();
        assert!(tpu.named_values().unwrap().is_empty());
        let err = ClientOptions::cpu(2)
            .for_process(PluginKind::Cpu, 0, 2)
            .unwrap_err();
        assert!(err.to_string().contains("cuda or tpu"), "{err}");
        ClientOptions::cpu(2)
            .for_process(PluginKind::Cpu, 0, 1)
            .unwrap();
        for (id, n) in [(4, 4), (-1, 2), (0, 0)] {
            let err = ClientOptions::default()
                .for_process(PluginKind::Cuda, id, n)
                .unwrap_err();
            assert!(err.to_string().contains("process id"), "{err}");
        }
        let half = ClientOptions {
            node_id: Some(1),
            ..Default::default()
        };
        assert!(half.named_values().is_err());
        let out_of_range = ClientOptions {
            node_id: Some(2),
            num_nodes: Some(2),
            ..Default::default()
        };
        assert!(out_of_range.named_values().is_err());
    }
}
