//! Lowering of the IR to XLA's `HloModuleProto` (prost), the program format PJRT plugins take.
//!
//! Ids: computation `c` gets id `c + 1`; instructions get module-unique ids counted from 1 in
//! module order (XLA treats ids as module-wide). Names are `<opcode>.<id>` (parameters keep
//! their given name as a prefix), so they are unique as XLA requires. An instruction built in a
//! name scope gets `metadata { op_name: "<scope>/<opcode>" }`.
//!
//! Every `Op` variant has its own arm (no catch-all), so a new op does not compile until its
//! lowering is written; a constant whose literal does not fill its shape is an error.
use crate::error::{HloError, Result};
use crate::ir::{Alias, CollectiveAttrs, Computation, Instruction, Module, Op, Sharding};
use crate::literal::Literal;
use crate::proto as p;
use crate::shape::Shape;
use crate::text::{instruction_name, sanitize};
use crate::ElementType;
use prost::Message;

/// The shape as a proto, arrays with XLA's row-major layout.
pub fn shape_proto(s: &Shape) -> p::ShapeProto {
    match s {
        Shape::Array(a) => p::ShapeProto {
            element_type: a.ty.primitive_type() as i32,
            dimensions: a.dims.clone(),
            layout: Some(p::LayoutProto {
                minor_to_major: a.minor_to_major(),
            }),
            is_dynamic_dimension: vec![false; a.rank()],
            ..Default::default()
        },
        Shape::Tuple(t) => p::ShapeProto {
            element_type: p::PrimitiveType::Tuple as i32,
            tuple_shapes: t.iter().map(shape_proto).collect(),
            ..Default::default()
        },
        Shape::Token => p::ShapeProto {
            element_type: p::PrimitiveType::Token as i32,
            ..Default::default()
        },
    }
}

/// Gives the arrays of a custom call's result shape the layouts the call pinned
/// ([`crate::Builder::set_custom_call_result_layouts`]).
fn pin_result_layouts(shape: &mut p::ShapeProto, layouts: &[Option<Vec<i64>>]) {
    let arrays: Vec<&mut p::ShapeProto> = if shape.tuple_shapes.is_empty() {
        vec![shape]
    } else {
        shape.tuple_shapes.iter_mut().collect()
    };
    for (s, l) in arrays.into_iter().zip(layouts) {
        if let (Some(l), Some(layout)) = (l, s.layout.as_mut()) {
            layout.minor_to_major = l.clone();
        }
    }
}

/// The literal as a proto. Errors (rather than emitting an empty or short constant XLA would
/// reject or misread) when the literal's bytes do not fill its shape.
pub fn literal_proto(l: &Literal) -> Result<p::LiteralProto> {
    literal_fields(l).map_err(HloError::Lower)
}

fn literal_fields(l: &Literal) -> std::result::Result<p::LiteralProto, String> {
    let shape = l.shape();
    let b = l.bytes();
    if b.len() as i64 != shape.byte_size() {
        return Err(format!(
            "literal {shape}: {} bytes do not fill its {} bytes",
            b.len(),
            shape.byte_size()
        ));
    }
    let mut out = p::LiteralProto {
        shape: Some(shape_proto(&Shape::Array(shape.clone()))),
        ..Default::default()
    };
    fn typed<T: crate::dtype::NativeType>(l: &Literal) -> std::result::Result<Vec<T>, String> {
        l.to_vec()
            .ok_or_else(|| format!("literal {}: bytes are not {}", l.shape(), T::TYPE))
    }
    match l.element_type() {
        ElementType::Pred => out.preds = b.iter().map(|&x| x != 0).collect(),
        ElementType::S8 => out.s8s = b.to_vec(),
        ElementType::U8 => out.u8s = b.to_vec(),
        ElementType::F16 => out.f16s = b.to_vec(),
        ElementType::Bf16 => out.bf16s = b.to_vec(),
        ElementType::F8E4M3FN => out.f8e4m3fns = b.to_vec(),
        ElementType::F8E5M2 => out.f8e5m2s = b.to_vec(),
        ElementType::S32 => out.s32s = typed(l)?,
        ElementType::S64 => out.s64s = typed(l)?,
        ElementType::U32 => out.u32s = typed(l)?,
        ElementType::U64 => out.u64s = typed(l)?,
        ElementType::F32 => out.f32s = typed(l)?,
        ElementType::F64 => out.f64s = typed(l)?,
    }
    Ok(out)
}

/// A constant's literal, checked against the instruction's shape so a literal that does not
/// fill it (an empty one included) is an error naming the instruction, not a bad proto.
fn constant_proto(l: &Literal, inst: &Instruction, where_: &str) -> Result<p::LiteralProto> {
    if inst.shape != Shape::Array(l.shape().clone()) {
        return Err(HloError::Lower(format!(
            "{where_}: literal of shape {} ({} bytes) does not match the instruction's shape {}",
            l.shape(),
            l.bytes().len(),
            inst.shape
        )));
    }
    literal_fields(l).map_err(|e| HloError::Lower(format!("{where_}: {e}")))
}

pub fn sharding_proto(s: &Sharding) -> p::OpSharding {
    use p::op_sharding::Type;
    match s {
        Sharding::Replicated => p::OpSharding {
            r#type: Type::Replicated as i32,
            ..Default::default()
        },
        Sharding::Maximal { device } => p::OpSharding {
            r#type: Type::Maximal as i32,
            tile_assignment_dimensions: vec![1],
            tile_assignment_devices: vec![*device],
            ..Default::default()
        },
        Sharding::Manual => p::OpSharding {
            r#type: Type::Manual as i32,
            ..Default::default()
        },
        Sharding::Tiled {
            tile_dims,
            devices,
            replicate_last,
        } => p::OpSharding {
            r#type: Type::Other as i32,
            tile_assignment_dimensions: tile_dims.clone(),
            tile_assignment_devices: devices.clone(),
            replicate_on_last_tile_dim: *replicate_last,
            ..Default::default()
        },
        Sharding::Tuple(items) => p::OpSharding {
            r#type: Type::Tuple as i32,
            tuple_shardings: items.iter().map(sharding_proto).collect(),
            ..Default::default()
        },
    }
}

fn groups_proto(attrs: &CollectiveAttrs) -> Vec<p::ReplicaGroup> {
    attrs
        .replica_groups
        .iter()
        .map(|g| p::ReplicaGroup {
            replica_ids: g.clone(),
        })
        .collect()
}

fn set_collective(i: &mut p::HloInstructionProto, attrs: &CollectiveAttrs) {
    i.replica_groups = groups_proto(attrs);
    i.channel_id = attrs.channel_id.unwrap_or(0);
    i.use_global_device_ids = attrs.use_global_device_ids;
}

/// `<scope>/<opcode>`, JAX's `op_name` form (its `jit(f)/` prefix aside); unscoped
/// instructions get no metadata, since an op_name of the bare opcode would say nothing new.
pub fn op_name(scope: &str, op: &Op) -> String {
    format!("{scope}/{}", op.opcode())
}

fn instruction_proto(
    inst: &Instruction,
    id: i64,
    operand_ids: Vec<i64>,
    comp_id: impl Fn(crate::CompId) -> i64,
    comp_name: &str,
) -> Result<p::HloInstructionProto> {
    let mut i = p::HloInstructionProto {
        opcode: inst.op.opcode().to_string(),
        shape: Some(shape_proto(&inst.shape)),
        id,
        operand_ids,
        called_computation_ids: inst
            .op
            .called_computations()
            .into_iter()
            .map(&comp_id)
            .collect(),
        sharding: inst.sharding.as_ref().map(sharding_proto),
        metadata: inst.scope.as_deref().map(|s| p::OpMetadata {
            op_name: op_name(s, &inst.op),
            ..Default::default()
        }),
        ..Default::default()
    };
    i.name = instruction_name(&inst.op, id);
    match &inst.op {
        Op::Parameter { number, .. } => i.parameter_number = i64::from(*number),
        Op::Constant(l) => {
            let where_ = format!("computation '{comp_name}': {}", i.name);
            i.literal = Some(constant_proto(l, inst, &where_)?);
        }
        Op::Iota { dim } => i.dimensions = vec![*dim],
        Op::Compare { dir, ty } => {
            i.comparison_direction = dir.name().into();
            i.comparison_type = ty.name().into();
        }
        Op::Broadcast { dims }
        | Op::Transpose { perm: dims }
        | Op::Reverse { dims }
        | Op::Reduce { dims, .. } => i.dimensions = dims.clone(),
        Op::Slice {
            starts,
            limits,
            strides,
        } => {
            i.slice_dimensions = (0..starts.len())
                .map(|k| p::hlo_instruction_proto::SliceDimensions {
                    start: starts[k],
                    limit: limits[k],
                    stride: strides[k],
                })
                .collect()
        }
        Op::DynamicSlice { sizes } => i.dynamic_slice_sizes = sizes.clone(),
        Op::Concatenate { dim } => i.dimensions = vec![*dim],
        Op::Pad { dims } => {
            i.padding_config = Some(p::PaddingConfig {
                dimensions: dims
                    .iter()
                    .map(|d| p::padding_config::PaddingConfigDimension {
                        edge_padding_low: d.low,
                        edge_padding_high: d.high,
                        interior_padding: d.interior,
                    })
                    .collect(),
            })
        }
        Op::Dot { dims, precision } => {
            i.dot_dimension_numbers = Some(p::DotDimensionNumbers {
                lhs_contracting_dimensions: dims.lhs_contracting.clone(),
                rhs_contracting_dimensions: dims.rhs_contracting.clone(),
                lhs_batch_dimensions: dims.lhs_batch.clone(),
                rhs_batch_dimensions: dims.rhs_batch.clone(),
            });
            i.precision_config = Some(p::PrecisionConfig {
                operand_precision: precision.iter().map(|&q| q as i32).collect(),
            });
        }
        Op::ReduceWindow { window, .. } => {
            i.window = Some(p::Window {
                dimensions: window
                    .iter()
                    .map(|w| p::WindowDimension {
                        size: w.size,
                        stride: w.stride,
                        padding_low: w.padding_low,
                        padding_high: w.padding_high,
                        window_dilation: w.window_dilation,
                        base_dilation: w.base_dilation,
                        window_reversal: false,
                    })
                    .collect(),
            })
        }
        Op::Gather {
            dims,
            slice_sizes,
            indices_are_sorted,
        } => {
            i.gather_dimension_numbers = Some(p::GatherDimensionNumbers {
                offset_dims: dims.offset_dims.clone(),
                collapsed_slice_dims: dims.collapsed_slice_dims.clone(),
                start_index_map: dims.start_index_map.clone(),
                index_vector_dim: dims.index_vector_dim,
                operand_batching_dims: dims.operand_batching_dims.clone(),
                start_indices_batching_dims: dims.start_indices_batching_dims.clone(),
            });
            i.gather_slice_sizes = slice_sizes.clone();
            i.indices_are_sorted = *indices_are_sorted;
        }
        Op::Scatter {
            dims,
            indices_are_sorted,
            unique_indices,
            ..
        } => {
            i.scatter_dimension_numbers = Some(p::ScatterDimensionNumbers {
                update_window_dims: dims.update_window_dims.clone(),
                inserted_window_dims: dims.inserted_window_dims.clone(),
                scatter_dims_to_operand_dims: dims.scatter_dims_to_operand_dims.clone(),
                index_vector_dim: dims.index_vector_dim,
                input_batching_dims: dims.input_batching_dims.clone(),
                scatter_indices_batching_dims: dims.scatter_indices_batching_dims.clone(),
            });
            i.indices_are_sorted = *indices_are_sorted;
            i.unique_indices = *unique_indices;
        }
        Op::Sort { dim, stable, .. } => {
            i.dimensions = vec![*dim];
            i.is_stable = *stable;
        }
        Op::RngBitGenerator { algorithm } => {
            i.rng_algorithm = match algorithm {
                crate::ir::RngAlgorithm::Default => p::RandomAlgorithm::RngDefault,
                crate::ir::RngAlgorithm::ThreeFry => p::RandomAlgorithm::RngThreeFry,
                crate::ir::RngAlgorithm::Philox => p::RandomAlgorithm::RngPhilox,
            } as i32
        }
        Op::GetTupleElement { index } => i.tuple_index = *index,
        Op::AllReduce { attrs, .. } => set_collective(&mut i, attrs),
        Op::AllGather { attrs, dim }
        | Op::ReduceScatter { attrs, dim, .. }
        | Op::AllToAll { attrs, dim } => {
            set_collective(&mut i, attrs);
            i.dimensions = vec![*dim];
        }
        Op::CollectivePermute { pairs, channel_id } => {
            i.source_target_pairs = pairs
                .iter()
                .map(|&(source, target)| p::SourceTarget { source, target })
                .collect();
            i.channel_id = channel_id.unwrap_or(0);
        }
        Op::CustomCall {
            target,
            backend_config,
            operand_layouts,
            result_layouts,
            has_side_effect,
            api_version,
        } => {
            if let Some(shape) = i.shape.as_mut() {
                pin_result_layouts(shape, result_layouts);
            }
            i.custom_call_target = target.clone();
            i.backend_config = backend_config.clone().into_bytes();
            if let Some(layouts) = operand_layouts {
                i.constrain_layout = true;
                i.operand_shapes_with_layout = layouts.iter().map(shape_proto).collect();
            }
            i.custom_call_has_side_effect = *has_side_effect;
            // XLA rejects API_VERSION_UNSPECIFIED (0) when it reads the proto ("Unknown
            // custom-call API version enum value: 0"); its builder's default is ORIGINAL (1).
            i.custom_call_api_version = if *api_version == 0 { 1 } else { *api_version };
        }
        Op::ShardingHint(s) => {
            i.custom_call_target = "Sharding".into();
            i.custom_call_api_version = 1; // ORIGINAL, XLA's default; 0 is rejected when read back
            i.sharding = Some(sharding_proto(s));
        }
        // No attributes beyond opcode, shape and operands (the opcode names the unary/binary op).
        Op::Unary(_)
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
        // Their callees are all they carry, set above from `called_computations`.
        Op::While { .. } | Op::Conditional { .. } | Op::Call { .. } => {}
    }
    Ok(i)
}

fn program_shape(c: &Computation) -> p::ProgramShapeProto {
    p::ProgramShapeProto {
        parameters: c.param_shapes().into_iter().map(shape_proto).collect(),
        result: Some(shape_proto(c.root_shape())),
        parameter_names: c.param_names().iter().map(|n| sanitize(n)).collect(),
    }
}

fn alias_proto(a: &Alias) -> p::hlo_input_output_alias_proto::AliasEntryProto {
    p::hlo_input_output_alias_proto::AliasEntryProto {
        output_shape_index: a.output_index.clone(),
        parameter_number: i64::from(a.param_number),
        parameter_shape_index: a.param_index.clone(),
        kind: if a.must_alias {
            p::Kind::MustAlias
        } else {
            p::Kind::MayAlias
        } as i32,
    }
}

/// Lowers a (verified) module to the proto PJRT compiles.
pub fn to_proto(m: &Module) -> Result<p::HloModuleProto> {
    crate::passes::verify(m)?;
    let comp_id = |c: crate::CompId| i64::from(c.0) + 1;
    let mut next_id = 1i64;
    let mut computations = Vec::with_capacity(m.computations.len());
    for (ci, c) in m.computations.iter().enumerate() {
        let base = next_id;
        let instructions = c
            .instrs
            .iter()
            .enumerate()
            .map(|(k, inst)| {
                let ops = inst
                    .operands
                    .iter()
                    .map(|o| base + i64::from(o.0))
                    .collect();
                instruction_proto(inst, base + k as i64, ops, comp_id, &c.name)
            })
            .collect::<Result<Vec<_>>>()?;
        next_id += c.instrs.len() as i64;
        computations.push(p::HloComputationProto {
            name: c.name.clone(),
            instructions,
            program_shape: Some(program_shape(c)),
            id: ci as i64 + 1,
            root_id: base + i64::from(c.root.0),
        });
    }
    let entry = m.entry_computation();
    let entry_shardings: Vec<p::OpSharding> = entry
        .params
        .iter()
        .filter_map(|&pid| entry.instr(pid).sharding.as_ref().map(sharding_proto))
        .collect();
    let all_params_sharded =
        entry_shardings.len() == entry.params.len() && !entry.params.is_empty();
    Ok(p::HloModuleProto {
        name: sanitize(&m.name),
        entry_computation_name: entry.name.clone(),
        entry_computation_id: comp_id(m.entry),
        computations,
        host_program_shape: Some(program_shape(entry)),
        id: 1,
        input_output_alias: if m.aliases.is_empty() {
            None
        } else {
            Some(p::HloInputOutputAliasProto {
                entries: m.aliases.iter().map(alias_proto).collect(),
            })
        },
        spmd_output_sharding: entry
            .instr(entry.root)
            .sharding
            .as_ref()
            .map(sharding_proto),
        spmd_parameters_shardings: if all_params_sharded {
            entry_shardings
        } else {
            vec![]
        },
        ..Default::default()
    })
}

/// Serialized `HloModuleProto` bytes (PJRT program format `hlo`).
pub fn to_proto_bytes(m: &Module) -> Result<Vec<u8>> {
    Ok(to_proto(m)?.encode_to_vec())
}

impl Module {
    /// Serialized `HloModuleProto`, ready for `PJRT_Client_Compile` with format `hlo`.
    pub fn to_proto_bytes(&self) -> Result<Vec<u8>> {
        to_proto_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{CompId, InstrId};
    use crate::shape::ArrayShape;
    use crate::{ElementType::F32, ModuleBuilder};

    /// A module whose entry returns one constant instruction of shape `shape` holding `lit`
    /// (built by hand: the builder always gives a constant its literal's shape).
    fn constant_module(lit: Literal, shape: Shape) -> Module {
        Module {
            name: "c".into(),
            computations: vec![Computation {
                name: "main".into(),
                instrs: vec![Instruction {
                    op: Op::Constant(lit),
                    operands: vec![],
                    shape,
                    sharding: None,
                    scope: None,
                }],
                params: vec![],
                root: InstrId(0),
            }],
            entry: CompId(0),
            aliases: vec![],
        }
    }

    #[test]
    fn empty_constant_for_a_non_empty_shape_is_an_error() {
        let empty = Literal::from_slice::<f32>(&[], &[0]).unwrap();
        let m = constant_module(empty, Shape::array(F32, vec![4]));
        let e = to_proto(&m).unwrap_err().to_string();
        assert!(e.contains("computation 'main': constant.1"), "{e}");
        assert!(e.contains("f32[4]"), "{e}");
    }

    #[test]
    fn literal_bytes_short_of_the_shape_are_an_error() {
        let shape = ArrayShape::new(F32, vec![2, 2]);
        let short = Literal::unchecked(shape.clone(), vec![0; 12]);
        let m = constant_module(short.clone(), Shape::Array(shape));
        let e = to_proto(&m).unwrap_err().to_string();
        assert!(e.contains("constant.1"), "{e}");
        assert!(e.contains("12 bytes do not fill its 16 bytes"), "{e}");
        assert!(literal_proto(&short).is_err());
        let none = Literal::unchecked(ArrayShape::new(F32, vec![3]), vec![]);
        assert!(literal_proto(&none).is_err());
    }

    #[test]
    fn zero_element_constants_still_lower() {
        let empty = Literal::from_slice::<f32>(&[], &[0]).unwrap();
        let m = constant_module(empty, Shape::array(F32, vec![0]));
        let p = to_proto(&m).unwrap();
        let lit = p.computations[0].instructions[0].literal.as_ref().unwrap();
        assert!(lit.f32s.is_empty());
    }

    #[test]
    fn lowers_reduce_with_reducer_before_entry() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![2, 3]), "x").unwrap();
        let s = b.reduce_sum(x, &[1]).unwrap();
        let e = b.finish(s).unwrap();
        let module = m.build(e).unwrap();
        let p = to_proto(&module).unwrap();
        assert_eq!(p.computations.len(), 2);
        assert_eq!(p.entry_computation_id, p.computations[1].id);
        let reduce = p.computations[1].instructions.last().unwrap();
        assert_eq!(reduce.opcode, "reduce");
        assert_eq!(reduce.called_computation_ids, vec![p.computations[0].id]);
        assert_eq!(
            p.host_program_shape.unwrap().parameter_names,
            vec!["x".to_string()]
        );
    }
}
