//! Device time per model scope: each device event names the HLO instruction it ran (a fusion, a
//! library call), the optimized module gives that instruction's `OpMetadata.op_name` (the
//! builder's name scopes, which XLA carries onto the fusions it makes), and the op name is cut
//! down to a scope such as `encoder/layer_3/attention`.
//!
//! Which event names which instruction follows XLA's tracers:
//! - GPU (CUPTI): kernels carry the launch annotation's metadata as event stats, `hlo_op` (the
//!   instruction) and `hlo_module` (the module name); the event name is the CUDA kernel's.
//! - TPU and others: the `XLA Ops` line's event metadata is named after the instruction (and may
//!   carry `hlo_op` among its stats).
//!
//! So the candidates, in order: the event's `hlo_op` stat, its metadata's `hlo_op` stat, the
//! metadata's name, its display name; the first that is an instruction of the module wins. An
//! event whose `hlo_module` names another module is not mapped (instruction names such as
//! `fusion.3` repeat across modules). On a device plane that has an `XLA Ops` line only that line
//! counts, as its other lines (modules, steps) span the same time again.
use super::xplane::{XEvent, XLine, XPlane, XSpace};
use anyhow::{Context, Result};
use hlo::proto::{HloComputationProto, HloInstructionProto, HloModuleProto};
use prost::Message;
use std::collections::HashMap;

/// Instruction name -> op name, for every instruction of an optimized module.
#[derive(Clone, Debug, Default)]
pub struct OpScopes {
    pub module_name: String,
    op_names: HashMap<String, String>,
}

/// How deep [`OpScopes`] follows called computations for a fusion without metadata of its own.
const MAX_CALL_DEPTH: usize = 8;

impl OpScopes {
    /// From serialized `HloModuleProto` bytes ([`tpu::Executable::optimized_module`]).
    pub fn from_module_bytes(bytes: &[u8]) -> Result<OpScopes> {
        let module = HloModuleProto::decode(bytes)
            .context("the optimized module is not an HloModuleProto")?;
        Ok(OpScopes::from_module(&module))
    }

    /// Every instruction's op name; an instruction without one (a fusion XLA made without
    /// metadata) takes the op name of its called computation's root, else of the first named
    /// instruction there. Where that computation is called from several places (XLA's GPU
    /// compiler deduplicates identical fused computations, so the twelve layers' FFN fusions
    /// may share one) its op names are one layer's, and the instruction takes the scope most
    /// of its operands and users have instead.
    pub fn from_module(module: &HloModuleProto) -> OpScopes {
        let by_id: HashMap<i64, &HloComputationProto> =
            module.computations.iter().map(|c| (c.id, c)).collect();
        let mut callers: HashMap<i64, usize> = HashMap::new();
        for inst in module.computations.iter().flat_map(|c| &c.instructions) {
            for id in &inst.called_computation_ids {
                *callers.entry(*id).or_default() += 1;
            }
        }
        let mut op_names = HashMap::new();
        for comp in &module.computations {
            // Built on first need: most computations have no shared callee to resolve.
            let mut neighbours = None;
            for inst in &comp.instructions {
                let own = op_name_of(inst);
                let name = if !own.is_empty() {
                    Some(own.to_string())
                } else {
                    let shared = inst
                        .called_computation_ids
                        .iter()
                        .any(|id| callers.get(id).copied().unwrap_or(0) > 1);
                    let called =
                        || called_op_name(&inst.called_computation_ids, &by_id, MAX_CALL_DEPTH);
                    if shared {
                        neighbours
                            .get_or_insert_with(|| Neighbours::of(comp))
                            .common_scope(inst)
                            .or_else(called)
                    } else {
                        called()
                    }
                };
                if let Some(n) = name {
                    op_names.insert(inst.name.clone(), n);
                }
            }
        }
        OpScopes {
            module_name: module.name.clone(),
            op_names,
        }
    }

    /// The op name of instruction `name`, if the module has it and it has one.
    pub fn op_name(&self, instruction: &str) -> Option<&str> {
        self.op_names.get(instruction).map(String::as_str)
    }
}

fn op_name_of(inst: &HloInstructionProto) -> &str {
    inst.metadata.as_ref().map_or("", |m| m.op_name.as_str())
}

/// The operands and users of each instruction of one computation.
struct Neighbours<'a> {
    by_id: HashMap<i64, &'a HloInstructionProto>,
    users: HashMap<i64, Vec<&'a HloInstructionProto>>,
}

impl<'a> Neighbours<'a> {
    fn of(comp: &'a HloComputationProto) -> Self {
        let by_id = comp.instructions.iter().map(|i| (i.id, i)).collect();
        let mut users: HashMap<i64, Vec<&HloInstructionProto>> = HashMap::new();
        for inst in &comp.instructions {
            for op in &inst.operand_ids {
                users.entry(*op).or_default().push(inst);
            }
        }
        Neighbours { by_id, users }
    }

    /// The scope most of `inst`'s operands and users with op names of their own are in (the
    /// first seen among equals), as an op name in that scope; `None` if none has one.
    fn common_scope(&self, inst: &HloInstructionProto) -> Option<String> {
        let operands = inst.operand_ids.iter().filter_map(|id| self.by_id.get(id));
        let users = self.users.get(&inst.id).into_iter().flatten();
        let mut counts: Vec<(String, usize)> = Vec::new();
        for n in operands.copied().chain(users.copied()) {
            let own = op_name_of(n);
            if own.is_empty() {
                continue;
            }
            let scope = scope_of(own);
            if scope == UNSCOPED {
                continue;
            }
            match counts.iter_mut().find(|(s, _)| *s == scope) {
                Some((_, c)) => *c += 1,
                None => counts.push((scope, 1)),
            }
        }
        let best = counts.iter().map(|(_, c)| *c).max()?;
        let (scope, _) = counts.into_iter().find(|(_, c)| *c == best)?;
        Some(format!("{scope}/{}", inst.name))
    }
}

fn called_op_name(
    ids: &[i64],
    by_id: &HashMap<i64, &HloComputationProto>,
    depth: usize,
) -> Option<String> {
    if depth == 0 {
        return None;
    }
    for id in ids {
        let Some(comp) = by_id.get(id) else { continue };
        let root = comp.instructions.iter().find(|i| i.id == comp.root_id);
        let named = root
            .filter(|r| !op_name_of(r).is_empty())
            .or_else(|| comp.instructions.iter().find(|i| !op_name_of(i).is_empty()));
        if let Some(i) = named {
            return Some(op_name_of(i).to_string());
        }
        let deeper = comp
            .instructions
            .iter()
            .find_map(|i| called_op_name(&i.called_computation_ids, by_id, depth - 1));
        if deeper.is_some() {
            return deeper;
        }
    }
    None
}

/// The scope an op name is counted under: the op's own (last) component dropped, then cut after
/// the block that follows a `layer_<n>` component (`encoder/layer_3/attention/dot` ->
/// `encoder/layer_3/attention`), or, outside layers, after the first component that is not
/// `grad` (`grad/embeddings/gather` -> `grad/embeddings`, `optimizer/adam/mul` -> `optimizer`).
pub fn scope_of(op_name: &str) -> String {
    let parts: Vec<&str> = op_name.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() <= 1 {
        return UNSCOPED.to_string();
    }
    let scopes = &parts[..parts.len() - 1];
    let keep = match scopes.iter().position(|p| is_layer(p)) {
        Some(i) => (i + 2).min(scopes.len()),
        None => match scopes.iter().position(|p| *p != "grad") {
            Some(i) => i + 1,
            None => scopes.len(),
        },
    };
    scopes[..keep].join("/")
}

/// The scope of ops built outside any name scope.
pub const UNSCOPED: &str = "(unscoped)";

fn is_layer(part: &str) -> bool {
    part.strip_prefix("layer_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Device time summed per scope over the device planes of a space.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceTime {
    /// (scope, picoseconds, events), largest first.
    pub per_scope: Vec<(String, i128, usize)>,
    /// Device events not mapped to a scope, and their time.
    pub unmapped_events: usize,
    pub unmapped_ps: i128,
    /// The unmapped events grouped by what they are (event name and the `hlo_op` /
    /// `hlo_module` stats they carry), (label, picoseconds, events), largest first: what a
    /// reader needs to see why they could not be mapped.
    pub unmapped_kinds: Vec<(String, i128, usize)>,
    /// The mapped events by kernel: (scope with its layer index folded to `layer_*`, kernel
    /// name), picoseconds, events; largest first. The fusion audit reads this: which kernels
    /// each block of every layer runs and what they cost.
    pub per_kernel: Vec<((String, String), i128, usize)>,
    /// Device planes seen.
    pub device_planes: usize,
}

/// The instruction an event ran and its scope, where it can be told.
pub fn event_scope(
    plane: &XPlane,
    event: &XEvent,
    scopes: Option<&OpScopes>,
) -> Option<(String, String)> {
    let scopes = scopes?;
    let meta = plane.event_metadata.get(&event.metadata_id);
    let meta_stats = meta.map_or(&[][..], |m| m.stats.as_slice());
    let module = plane
        .find_str(&event.stats, "hlo_module")
        .or_else(|| plane.find_str(meta_stats, "hlo_module"));
    if module.is_some_and(|m| m != scopes.module_name) {
        return None;
    }
    let candidates = [
        plane.find_str(&event.stats, "hlo_op"),
        plane.find_str(meta_stats, "hlo_op"),
        meta.map(|m| m.name.as_str()),
        meta.map(|m| m.display_name.as_str()),
    ];
    candidates.into_iter().flatten().find_map(|name| {
        scopes
            .op_name(name)
            .map(|op| (name.to_string(), scope_of(op)))
    })
}

/// The lines of a device plane whose events are counted.
pub fn counted_lines(plane: &XPlane) -> impl Iterator<Item = &XLine> {
    let has_ops_line = plane.lines.iter().any(|l| l.name == XLA_OPS_LINE);
    plane
        .lines
        .iter()
        .filter(move |l| !has_ops_line || l.name == XLA_OPS_LINE)
}

/// The per-op line of TPU-style device planes (tsl's `kXlaOpLineName`).
pub const XLA_OPS_LINE: &str = "XLA Ops";

/// Sums device time per scope. Without a module nothing can be mapped, and every device event
/// is counted as unmapped.
pub fn device_time(space: &XSpace, scopes: Option<&OpScopes>) -> DeviceTime {
    let mut sums: HashMap<String, (i128, usize)> = HashMap::new();
    let mut unmapped: HashMap<String, (i128, usize)> = HashMap::new();
    let mut kernels: HashMap<(String, String), (i128, usize)> = HashMap::new();
    let mut out = DeviceTime::default();
    for plane in space.planes.iter().filter(|p| p.is_device()) {
        out.device_planes += 1;
        for line in counted_lines(plane) {
            for event in &line.events {
                let dur = i128::from(event.duration_ps.max(0));
                match event_scope(plane, event, scopes) {
                    Some((_, scope)) => {
                        let k = kernels
                            .entry((fold_layer_index(&scope), event_name(plane, event)))
                            .or_default();
                        k.0 += dur;
                        k.1 += 1;
                        let e = sums.entry(scope).or_default();
                        e.0 += dur;
                        e.1 += 1;
                    }
                    None => {
                        out.unmapped_events += 1;
                        out.unmapped_ps += dur;
                        let e = unmapped.entry(unmapped_label(plane, event)).or_default();
                        e.0 += dur;
                        e.1 += 1;
                    }
                }
            }
        }
    }
    out.per_scope = largest_first(sums);
    out.unmapped_kinds = largest_first(unmapped);
    out.per_kernel = largest_first(kernels);
    out
}

/// `encoder/layer_3/attention` -> `encoder/layer_*/attention`: the twelve layers' kernels add up.
pub fn fold_layer_index(scope: &str) -> String {
    scope
        .split('/')
        .map(|p| if is_layer(p) { "layer_*" } else { p })
        .collect::<Vec<_>>()
        .join("/")
}

/// An event's name (the CUDA kernel's on GPUs), at most 120 characters.
fn event_name(plane: &XPlane, event: &XEvent) -> String {
    plane
        .event_metadata
        .get(&event.metadata_id)
        .map_or("?", |m| m.name.as_str())
        .chars()
        .take(120)
        .collect()
}

fn largest_first<K: Ord>(sums: HashMap<K, (i128, usize)>) -> Vec<(K, i128, usize)> {
    let mut v: Vec<_> = sums.into_iter().map(|(s, (ps, n))| (s, ps, n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// What an unmapped event is: its name (at most 80 characters) and its HLO stats.
fn unmapped_label(plane: &XPlane, event: &XEvent) -> String {
    let meta = plane.event_metadata.get(&event.metadata_id);
    let meta_stats = meta.map_or(&[][..], |m| m.stats.as_slice());
    let stat = |name: &str| {
        plane
            .find_str(&event.stats, name)
            .or_else(|| plane.find_str(meta_stats, name))
            .unwrap_or("-")
            .to_string()
    };
    let name: String = event_name(plane, event).chars().take(80).collect();
    format!(
        "{name} hlo_op={} hlo_module={}",
        stat("hlo_op"),
        stat("hlo_module")
    )
}

/// Picoseconds as milliseconds.
pub fn ps_to_ms(ps: i128) -> f64 {
    ps as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cut_after_the_layer_block() {
        assert_eq!(
            scope_of("encoder/layer_3/attention/dot"),
            "encoder/layer_3/attention"
        );
        assert_eq!(
            scope_of("bert/encoder/layer_11/attention/self/query/dot"),
            "bert/encoder/layer_11/attention"
        );
        assert_eq!(
            scope_of("grad/encoder/layer_0/ffn/dot"),
            "grad/encoder/layer_0/ffn"
        );
        // A layer op outside any block keeps the layer.
        assert_eq!(scope_of("encoder/layer_2/add"), "encoder/layer_2");
        assert_eq!(scope_of("grad/embeddings/gather"), "grad/embeddings");
        assert_eq!(scope_of("optimizer/adam/mul"), "optimizer");
        assert_eq!(scope_of("embeddings/gather"), "embeddings");
        // `layer_x` is no layer index; `layers_1` neither.
        assert_eq!(scope_of("encoder/layer_x/attention/dot"), "encoder");
        assert_eq!(scope_of("layers_1/ffn/dot"), "layers_1");
        assert_eq!(scope_of("dot"), UNSCOPED);
        assert_eq!(scope_of(""), UNSCOPED);
        assert_eq!(scope_of("grad/dot"), "grad");
    }

    #[test]
    fn layer_indices_fold_and_nothing_else_does() {
        assert_eq!(
            fold_layer_index("grad/encoder/layer_11/ffn"),
            "grad/encoder/layer_*/ffn"
        );
        assert_eq!(
            fold_layer_index("encoder/layer_x/ffn"),
            "encoder/layer_x/ffn"
        );
        assert_eq!(fold_layer_index("optimizer"), "optimizer");
    }
}
