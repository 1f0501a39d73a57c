//! HLO text in XLA's syntax (what `HloModule::ToString` prints and XLA's HLO parser reads).
//!
//! Names follow the lowering's scheme (`<opcode>.<id>`, parameters `<name>.<id>`, ids counted
//! from 1 over the module), so a text dump and the proto sent to PJRT name the same things.
//! Attributes are spelled and ordered as XLA's printer does; operands are printed as `%name`
//! only (XLA's short parsable form), and constants always with all their values.
use crate::dtype::{ElementType, NativeType};
use crate::f8::{F8E4M3FN, F8E5M2};
use crate::ir::{CollectiveAttrs, CompId, Computation, Instruction, Module, Op, WindowDim};
use crate::literal::Literal;
use crate::shape::Shape;
use half::{bf16, f16};
use std::collections::HashSet;
use std::fmt;

/// An instruction's shape with layouts: row-major, except where a custom call pinned its
/// result's layouts.
fn shape_text(inst: &Instruction) -> String {
    let pinned = match &inst.op {
        Op::CustomCall { result_layouts, .. } if !result_layouts.is_empty() => result_layouts,
        _ => return inst.shape.to_text_with_layout(),
    };
    let array = |s: &Shape, l: Option<&Vec<i64>>| match (s, l) {
        (Shape::Array(a), Some(l)) if !a.is_scalar() => {
            let l: Vec<String> = l.iter().map(|d| d.to_string()).collect();
            format!("{a}{{{}}}", l.join(","))
        }
        _ => s.to_text_with_layout(),
    };
    match &inst.shape {
        Shape::Tuple(t) => {
            let parts: Vec<String> = t
                .iter()
                .enumerate()
                .map(|(i, s)| array(s, pinned.get(i).and_then(Option::as_ref)))
                .collect();
            format!("({})", parts.join(", "))
        }
        s => array(s, pinned.first().and_then(Option::as_ref)),
    }
}

/// The module as HLO text, parsable by XLA's HLO parser.
pub fn to_text(m: &Module) -> String {
    let names = Names::new(m);
    let mut out = header(m);
    out.push('\n');
    for (ci, c) in m.computations.iter().enumerate() {
        out.push('\n');
        let entry = ci == m.entry.index();
        computation(&mut out, c, ci, entry, &names);
    }
    out
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_text(self))
    }
}

/// Computation names (made valid and unique) and each computation's first instruction id.
struct Names {
    comps: Vec<String>,
    base: Vec<i64>,
}

impl Names {
    fn new(m: &Module) -> Self {
        let mut taken = HashSet::new();
        let mut comps = Vec::with_capacity(m.computations.len());
        let mut base = Vec::with_capacity(m.computations.len());
        let mut next = 1i64;
        for c in &m.computations {
            let mut name = identifier(&c.name);
            let stem = name.clone();
            let mut k = 1;
            while !taken.insert(name.clone()) {
                name = format!("{stem}_{k}");
                k += 1;
            }
            comps.push(name);
            base.push(next);
            next += c.instrs.len() as i64;
        }
        Self { comps, base }
    }

    fn comp(&self, c: CompId) -> String {
        match self.comps.get(c.index()) {
            Some(n) => format!("%{n}"),
            None => format!("%{c}"),
        }
    }

    fn instr(&self, ci: usize, c: &Computation, k: usize) -> String {
        let id = self.base[ci] + k as i64;
        format!("%{}", instruction_name(&c.instrs[k].op, id))
    }
}

/// `<opcode>.<id>`, or `<parameter name>.<id>`: the name lowering gives the same instruction.
pub fn instruction_name(op: &Op, id: i64) -> String {
    match op {
        Op::Parameter { name, .. } => format!("{}.{id}", sanitize(name)),
        op => format!("{}.{id}", op.opcode()),
    }
}

/// Parameter and module names as HLO names: letters, digits, `_` and `-`; anything else
/// becomes `_` (shared with the lowering so text and proto agree).
pub(crate) fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "param".into()
    } else {
        s
    }
}

/// A name XLA's lexer reads as one identifier: `[A-Za-z_][A-Za-z0-9_.-]*`.
fn identifier(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        s.insert(0, '_');
    }
    s
}

fn header(m: &Module) -> String {
    let mut out = format!("HloModule {}", identifier(&sanitize(&m.name)));
    if !m.aliases.is_empty() {
        let mut aliases = m.aliases.clone();
        aliases.sort_by(|a, b| a.output_index.cmp(&b.output_index));
        let entries: Vec<String> = aliases
            .iter()
            .map(|a| {
                let kind = if a.must_alias {
                    "must-alias"
                } else {
                    "may-alias"
                };
                format!(
                    "{}: ({}, {}, {kind})",
                    index_list(&a.output_index),
                    a.param_number,
                    index_list(&a.param_index)
                )
            })
            .collect();
        out += &format!(", input_output_alias={{ {} }}", entries.join(", "));
    }
    if m.entry.index() < m.computations.len() {
        let entry = m.entry_computation();
        let params: Vec<String> = entry
            .params
            .iter()
            .filter_map(|p| entry.instrs.get(p.index()))
            .map(|i| i.shape.to_text_with_layout())
            .collect();
        let result = entry
            .instrs
            .get(entry.root.index())
            .map(|r| r.shape.to_text_with_layout())
            .unwrap_or_default();
        out += &format!(
            ", entry_computation_layout={{({})->{result}}}",
            params.join(", ")
        );
    }
    out
}

fn index_list(idx: &[i64]) -> String {
    format!("{{{}}}", join(idx, ","))
}

fn join<T: ToString>(xs: &[T], sep: &str) -> String {
    xs.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

fn dims(name: &str, xs: &[i64]) -> String {
    format!("{name}={{{}}}", join(xs, ","))
}

fn computation(out: &mut String, c: &Computation, ci: usize, entry: bool, names: &Names) {
    let params: Vec<String> = c
        .params
        .iter()
        .filter(|p| p.index() < c.instrs.len())
        .map(|&p| {
            let name = names.instr(ci, c, p.index());
            format!("{}: {}", &name[1..], c.instr(p).shape)
        })
        .collect();
    let result = c
        .instrs
        .get(c.root.index())
        .map(|r| r.shape.to_string())
        .unwrap_or_default();
    if entry {
        out.push_str("ENTRY ");
    }
    out.push_str(&format!(
        "%{} ({}) -> {result} {{\n",
        names.comps[ci],
        params.join(", ")
    ));
    for (k, inst) in c.instrs.iter().enumerate() {
        out.push_str("  ");
        if k == c.root.index() {
            out.push_str("ROOT ");
        }
        instruction(out, c, ci, k, inst, names);
        out.push('\n');
    }
    out.push_str("}\n");
}

fn instruction(
    out: &mut String,
    c: &Computation,
    ci: usize,
    k: usize,
    inst: &Instruction,
    names: &Names,
) {
    let operands: Vec<String> = inst
        .operands
        .iter()
        .map(|o| {
            if o.index() < c.instrs.len() {
                names.instr(ci, c, o.index())
            } else {
                format!("%<bad {o}>")
            }
        })
        .collect();
    let args = match &inst.op {
        Op::Parameter { number, .. } => number.to_string(),
        Op::Constant(l) => literal_text(l),
        _ => operands.join(", "),
    };
    out.push_str(&format!(
        "{} = {} {}({args})",
        names.instr(ci, c, k),
        shape_text(inst),
        inst.op.opcode()
    ));
    let mut attrs = op_attrs(c, inst, names);
    let sharding = match &inst.op {
        Op::ShardingHint(s) => Some(s),
        _ => inst.sharding.as_ref(),
    };
    if let Some(s) = sharding {
        attrs.push(format!("sharding={}", s.to_text()));
    }
    // Where XLA prints it: after the other attributes, before backend_config.
    if let Some(scope) = &inst.scope {
        let name = crate::lower::op_name(scope, &inst.op);
        attrs.push(format!("metadata={{op_name=\"{}\"}}", c_escape(&name)));
    }
    if let Op::CustomCall { backend_config, .. } = &inst.op {
        if !backend_config.is_empty() {
            attrs.push(format!("backend_config=\"{}\"", c_escape(backend_config)));
        }
    }
    for a in attrs {
        out.push_str(", ");
        out.push_str(&a);
    }
}

/// XLA's default comparison type for an element type (printed only when another is used).
fn default_compare(t: ElementType) -> &'static str {
    if t.is_float() {
        "FLOAT"
    } else if t.is_signed_integer() {
        "SIGNED"
    } else {
        "UNSIGNED"
    }
}

fn collective(a: &CollectiveAttrs) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(ch) = a.channel_id {
        v.push(format!("channel_id={ch}"));
    }
    let groups: Vec<String> = a
        .replica_groups
        .iter()
        .map(|g| format!("{{{}}}", join(g, ",")))
        .collect();
    v.push(format!("replica_groups={{{}}}", groups.join(",")));
    v
}

fn global_ids(a: &CollectiveAttrs, v: &mut Vec<String>) {
    if a.use_global_device_ids {
        v.push("use_global_device_ids=true".into());
    }
}

/// The attributes after the operand list, in XLA's order (sharding and backend_config excluded).
fn op_attrs(c: &Computation, inst: &Instruction, names: &Names) -> Vec<String> {
    let to_apply = |comp: &CompId| format!("to_apply={}", names.comp(*comp));
    let mut v = Vec::new();
    match &inst.op {
        Op::Iota { dim } => v.push(format!("iota_dimension={dim}")),
        Op::Compare { dir, ty } => {
            v.push(format!("direction={}", dir.name()));
            let operand_ty = inst
                .operands
                .first()
                .and_then(|o| c.instrs.get(o.index()))
                .and_then(|i| i.shape.as_array())
                .map(|a| a.ty);
            if operand_ty.map(default_compare) != Some(ty.name()) {
                v.push(format!("type={}", ty.name()));
            }
        }
        Op::Broadcast { dims: d } | Op::Transpose { perm: d } | Op::Reverse { dims: d } => {
            v.push(dims("dimensions", d))
        }
        Op::Slice {
            starts,
            limits,
            strides,
        } => {
            let unit = strides.iter().all(|&s| s == 1);
            let parts: Vec<String> = (0..starts.len())
                .map(|i| {
                    let limit = limits.get(i).copied().unwrap_or_default();
                    match strides.get(i) {
                        Some(s) if !unit => format!("[{}:{limit}:{s}]", starts[i]),
                        _ => format!("[{}:{limit}]", starts[i]),
                    }
                })
                .collect();
            v.push(format!("slice={{{}}}", parts.join(", ")));
        }
        Op::DynamicSlice { sizes } => v.push(dims("dynamic_slice_sizes", sizes)),
        Op::Concatenate { dim } => v.push(dims("dimensions", &[*dim])),
        Op::Pad { dims: pads } => {
            let interior = pads.iter().any(|p| p.interior != 0);
            let parts: Vec<String> = pads
                .iter()
                .map(|p| {
                    if interior {
                        format!("{}_{}_{}", p.low, p.high, p.interior)
                    } else {
                        format!("{}_{}", p.low, p.high)
                    }
                })
                .collect();
            v.push(format!("padding={}", parts.join("x")));
        }
        Op::Dot { dims: d, precision } => {
            if !d.lhs_batch.is_empty() {
                v.push(dims("lhs_batch_dims", &d.lhs_batch));
            }
            v.push(dims("lhs_contracting_dims", &d.lhs_contracting));
            if !d.rhs_batch.is_empty() {
                v.push(dims("rhs_batch_dims", &d.rhs_batch));
            }
            v.push(dims("rhs_contracting_dims", &d.rhs_contracting));
            if precision.iter().any(|p| *p != Default::default()) {
                let p: Vec<&str> = precision.iter().map(|p| p.name()).collect();
                v.push(format!("operand_precision={{{}}}", p.join(",")));
            }
        }
        Op::Reduce { dims: d, comp } => {
            v.push(dims("dimensions", d));
            v.push(to_apply(comp));
        }
        Op::ReduceWindow { window, comp } => {
            if !window.is_empty() {
                v.push(format!("window={{{}}}", window_text(window)));
            }
            v.push(to_apply(comp));
        }
        Op::Gather {
            dims: g,
            slice_sizes,
            indices_are_sorted,
        } => {
            let mut s = format!(
                "{}, {}, {}",
                dims("offset_dims", &g.offset_dims),
                dims("collapsed_slice_dims", &g.collapsed_slice_dims),
                dims("start_index_map", &g.start_index_map)
            );
            if !g.operand_batching_dims.is_empty() {
                s += &format!(
                    ", {}",
                    dims("operand_batching_dims", &g.operand_batching_dims)
                );
            }
            if !g.start_indices_batching_dims.is_empty() {
                s += &format!(
                    ", {}",
                    dims(
                        "start_indices_batching_dims",
                        &g.start_indices_batching_dims
                    )
                );
            }
            s += &format!(", index_vector_dim={}", g.index_vector_dim);
            v.push(s);
            v.push(dims("slice_sizes", slice_sizes));
            if *indices_are_sorted {
                v.push("indices_are_sorted=true".into());
            }
        }
        Op::Scatter {
            dims: d,
            comp,
            indices_are_sorted,
            unique_indices,
        } => {
            let mut s = format!(
                "{}, {}, {}",
                dims("update_window_dims", &d.update_window_dims),
                dims("inserted_window_dims", &d.inserted_window_dims),
                dims(
                    "scatter_dims_to_operand_dims",
                    &d.scatter_dims_to_operand_dims
                )
            );
            if !d.input_batching_dims.is_empty() {
                s += &format!(", {}", dims("input_batching_dims", &d.input_batching_dims));
            }
            if !d.scatter_indices_batching_dims.is_empty() {
                s += &format!(
                    ", {}",
                    dims(
                        "scatter_indices_batching_dims",
                        &d.scatter_indices_batching_dims
                    )
                );
            }
            s += &format!(", index_vector_dim={}", d.index_vector_dim);
            v.push(s);
            if *indices_are_sorted {
                v.push("indices_are_sorted=true".into());
            }
            if *unique_indices {
                v.push("unique_indices=true".into());
            }
            v.push(to_apply(comp));
        }
        Op::Sort { dim, comp, stable } => {
            v.push(dims("dimensions", &[*dim]));
            if *stable {
                v.push("is_stable=true".into());
            }
            v.push(to_apply(comp));
        }
        Op::RngBitGenerator { algorithm } => v.push(format!("algorithm={}", algorithm.name())),
        Op::GetTupleElement { index } => v.push(format!("index={index}")),
        Op::AllReduce { attrs, comp } => {
            v.extend(collective(attrs));
            global_ids(attrs, &mut v);
            v.push(to_apply(comp));
        }
        Op::AllGather { attrs, dim } => {
            v.extend(collective(attrs));
            v.push(dims("dimensions", &[*dim]));
            global_ids(attrs, &mut v);
        }
        Op::ReduceScatter { attrs, dim, comp } => {
            v.extend(collective(attrs));
            global_ids(attrs, &mut v);
            v.push(dims("dimensions", &[*dim]));
            v.push(to_apply(comp));
        }
        Op::AllToAll { attrs, dim } => {
            v.extend(collective(attrs));
            v.push(dims("dimensions", &[*dim]));
        }
        Op::CollectivePermute { pairs, channel_id } => {
            if let Some(ch) = channel_id {
                v.push(format!("channel_id={ch}"));
            }
            let p: Vec<String> = pairs.iter().map(|(s, t)| format!("{{{s},{t}}}")).collect();
            v.push(format!("source_target_pairs={{{}}}", p.join(",")));
        }
        Op::CustomCall {
            target,
            operand_layouts,
            has_side_effect,
            api_version,
            ..
        } => {
            v.push(format!("custom_call_target=\"{}\"", c_escape(target)));
            if let Some(layouts) = operand_layouts {
                let l: Vec<String> = layouts.iter().map(|s| s.to_text_with_layout()).collect();
                v.push(format!("operand_layout_constraints={{{}}}", l.join(", ")));
            }
            if *has_side_effect {
                v.push("custom_call_has_side_effect=true".into());
            }
            if let Some(name) = api_version_name(*api_version) {
                v.push(format!("api_version={name}"));
            }
        }
        Op::ShardingHint(_) => v.push("custom_call_target=\"Sharding\"".into()),
        Op::While { cond, body } => {
            v.push(format!("condition={}", names.comp(*cond)));
            v.push(format!("body={}", names.comp(*body)));
        }
        Op::Conditional { branches } => {
            let pred_index = inst
                .operands
                .first()
                .and_then(|o| c.instrs.get(o.index()))
                .and_then(|i| i.shape.as_array())
                .is_some_and(|a| a.ty == ElementType::Pred);
            match branches.as_slice() {
                [t, f] if pred_index => {
                    v.push(format!("true_computation={}", names.comp(*t)));
                    v.push(format!("false_computation={}", names.comp(*f)));
                }
                _ => {
                    let b: Vec<String> = branches.iter().map(|&b| names.comp(b)).collect();
                    v.push(format!("branch_computations={{{}}}", b.join(", ")));
                }
            }
        }
        Op::Call { comp } => v.push(to_apply(comp)),
        Op::Parameter { .. }
        | Op::Constant(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Select
        | Op::Clamp
        | Op::Convert
        | Op::BitcastConvert
        | Op::Reshape
        | Op::DynamicUpdateSlice
        | Op::Tuple
        | Op::ReplicaId
        | Op::PartitionId
        | Op::OptimizationBarrier => {}
    }
    v
}

/// XLA's `CustomCallApiVersion` names; ORIGINAL (1), the default, is not printed.
fn api_version_name(v: i32) -> Option<&'static str> {
    match v {
        0 => Some("API_VERSION_UNSPECIFIED"),
        2 => Some("API_VERSION_STATUS_RETURNING"),
        3 => Some("API_VERSION_STATUS_RETURNING_UNIFIED"),
        4 => Some("API_VERSION_TYPED_FFI"),
        _ => None,
    }
}

/// `size=2x2 stride=1x2 pad=0_0x1_1 lhs_dilate=.. rhs_dilate=..`, fields only when not trivial.
fn window_text(window: &[WindowDim]) -> String {
    let field = |name: &str, f: &dyn Fn(&WindowDim) -> String| {
        let parts: Vec<String> = window.iter().map(f).collect();
        format!("{name}={}", parts.join("x"))
    };
    let mut s = vec![field("size", &|w| w.size.to_string())];
    if window.iter().any(|w| w.stride != 1) {
        s.push(field("stride", &|w| w.stride.to_string()));
    }
    if window
        .iter()
        .any(|w| w.padding_low != 0 || w.padding_high != 0)
    {
        s.push(field("pad", &|w| {
            format!("{}_{}", w.padding_low, w.padding_high)
        }));
    }
    if window.iter().any(|w| w.base_dilation != 1) {
        s.push(field("lhs_dilate", &|w| w.base_dilation.to_string()));
    }
    if window.iter().any(|w| w.window_dilation != 1) {
        s.push(field("rhs_dilate", &|w| w.window_dilation.to_string()));
    }
    s.join(" ")
}

/// C-style escaping, as absl::CEscape (the parser undoes it with CUnescape).
fn c_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// Constant values as XLA prints them on one line: `1.5`, `{1, 2}`, `{ { 1, 2 }, { 3, 4 } }`.
pub fn literal_text(l: &Literal) -> String {
    let elems = element_strings(l);
    let dims = &l.shape().dims;
    if dims.is_empty() {
        return elems.into_iter().next().unwrap_or_default();
    }
    let mut out = String::new();
    let mut next = 0usize;
    nested(&mut out, dims, dims.len(), &elems, &mut next);
    out
}

fn nested(out: &mut String, dims: &[i64], rank: usize, elems: &[String], next: &mut usize) {
    let Some((&n, rest)) = dims.split_first() else {
        out.push_str(elems.get(*next).map(String::as_str).unwrap_or("0"));
        *next += 1;
        return;
    };
    // XLA pads braces with spaces inside arrays of rank >= 2, except around one element.
    let (open, close) = if rank == 1 {
        ("{", "}")
    } else if rest.is_empty() {
        if n <= 1 {
            ("{", "}")
        } else {
            ("{ ", " }")
        }
    } else {
        ("{ ", " }")
    };
    out.push_str(open);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        nested(out, rest, rank, elems, next);
    }
    out.push_str(close);
}

fn element_strings(l: &Literal) -> Vec<String> {
    fn ints<T: NativeType + ToString>(l: &Literal) -> Vec<String> {
        l.to_vec::<T>()
            .unwrap_or_default()
            .iter()
            .map(|v| v.to_string())
            .collect()
    }
    match l.element_type() {
        ElementType::Pred => l
            .to_vec::<bool>()
            .unwrap_or_default()
            .iter()
            .map(|&b| if b { "true" } else { "false" }.to_string())
            .collect(),
        ElementType::S8 => ints::<i8>(l),
        ElementType::S32 => ints::<i32>(l),
        ElementType::S64 => ints::<i64>(l),
        ElementType::U8 => ints::<u8>(l),
        ElementType::U32 => ints::<u32>(l),
        ElementType::U64 => ints::<u64>(l),
        ElementType::F16 => floats(l.to_vec::<f16>(), |v| (v.to_f32().to_string(), v.to_f64())),
        ElementType::Bf16 => floats(l.to_vec::<bf16>(), |v| (v.to_f32().to_string(), v.to_f64())),
        ElementType::F32 => floats(l.to_vec::<f32>(), |v| (v.to_string(), f64::from(v))),
        ElementType::F64 => floats(l.to_vec::<f64>(), |v| (v.to_string(), v)),
        ElementType::F8E4M3FN => floats(l.to_vec::<F8E4M3FN>(), |v| {
            (v.to_f32().to_string(), v.to_f64())
        }),
        ElementType::F8E5M2 => floats(l.to_vec::<F8E5M2>(), |v| {
            (v.to_f32().to_string(), v.to_f64())
        }),
    }
}

/// Floats in the shortest form that reads back to the same value in their own type; very large
/// or small magnitudes in exponent form (`1e-07` style, as `%g` would), specials as XLA spells
/// them (`nan`, `-inf`).
fn floats<T: Copy>(values: Option<Vec<T>>, show: impl Fn(T) -> (String, f64)) -> Vec<String> {
    values
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            let (plain, x) = show(v);
            float_text(plain, x)
        })
        .collect()
}

fn float_text(plain: String, x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust's `{:e}` of the shortest digits: reparse `plain` in exponent form.
        if let Ok(v) = plain.parse::<f64>() {
            return format!("{v:e}");
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_forms_match_xla() {
        let m = Literal::from_slice(&[1i32, 2, 3, 4], &[2, 2]).unwrap();
        assert_eq!(literal_text(&m), "{ { 1, 2 }, { 3, 4 } }");
        let v = Literal::from_slice(&[1.5f32, -2.0, 0.1], &[3]).unwrap();
        assert_eq!(literal_text(&v), "{1.5, -2, 0.1}");
        assert_eq!(literal_text(&Literal::scalar(true)), "true");
        assert_eq!(literal_text(&Literal::scalar(f32::NEG_INFINITY)), "-inf");
        assert_eq!(literal_text(&Literal::scalar(1e-7f32)), "1e-7");
        assert_eq!(literal_text(&Literal::scalar(3e20f64)), "3e20");
        let col = Literal::from_slice(&[1u8, 2], &[2, 1]).unwrap();
        assert_eq!(literal_text(&col), "{ {1}, {2} }");
        let e = Literal::from_slice::<f32>(&[], &[0]).unwrap();
        assert_eq!(literal_text(&e), "{}");
    }

    #[test]
    fn f8_types_print_as_xla_spells_them() {
        let q = Literal::from_slice(
            &[F8E4M3FN::from_f32(448.0), F8E4M3FN::from_f32(-0.0625)],
            &[2],
        )
        .unwrap();
        assert_eq!(literal_text(&q), "{448, -0.0625}");
        assert_eq!(
            literal_text(&Literal::scalar(F8E4M3FN::from_bits(0x7F))),
            "nan"
        );
        assert_eq!(
            literal_text(&Literal::scalar(F8E5M2::from_f32(-1e9))),
            "-inf"
        );
        let m = crate::ModuleBuilder::new("q");
        let b = m.builder("main");
        let x = b
            .parameter(crate::Shape::array(ElementType::F32, vec![4]), "x")
            .unwrap();
        let y = b.convert(x, ElementType::F8E4M3FN).unwrap();
        let z = b.convert(y, ElementType::F8E5M2).unwrap();
        let e = b.finish(z).unwrap();
        let t = to_text(&m.build(e).unwrap());
        assert!(t.contains("f8e4m3fn[4]{0} convert("), "{t}");
        assert!(t.contains("f8e5m2[4]{0} convert("), "{t}");
    }

    #[test]
    fn escapes_like_absl() {
        assert_eq!(c_escape("a\"b\\c\n\u{1}"), "a\\\"b\\\\c\\n\\001");
    }

    #[test]
    fn broken_modules_print_without_panicking() {
        use crate::ir::{Computation, InstrId};
        use crate::shape::Shape;
        let inst = Instruction {
            op: Op::Tuple,
            operands: vec![InstrId(9)],
            shape: Shape::Tuple(vec![]),
            sharding: None,
            scope: None,
        };
        let m = Module {
            name: "broken".into(),
            computations: vec![Computation {
                name: "main".into(),
                instrs: vec![inst],
                params: vec![InstrId(5)],
                root: InstrId(7),
            }],
            entry: CompId(0),
            aliases: vec![],
        };
        let t = to_text(&m);
        assert!(t.contains("tuple(%<bad %9>)"), "{t}");
    }

    #[test]
    fn identifiers_are_lexable() {
        assert_eq!(identifier("main"), "main");
        assert_eq!(identifier("main.1"), "main.1");
        assert_eq!(identifier("my comp"), "my_comp");
        assert_eq!(identifier("1st"), "_1st");
    }
}
