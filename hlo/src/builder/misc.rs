//! Ops that fit no family: sort, rng-bit-generator, custom-call, opt-barrier, replica-id,
//! partition-id and the SPMD sharding hint.
use super::elementwise::default_compare_type;
use super::{join, Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::ir::{CompId, CompareDir, CompareType, Op, RngAlgorithm, Sharding};
use crate::shape::{ArrayShape, Shape};

/// Why `sharding` cannot annotate a value of `shape`, if it cannot.
fn sharding_mismatch(shape: &Shape, sharding: &Sharding) -> Option<String> {
    match (sharding, shape) {
        (Sharding::Tuple(items), Shape::Tuple(elems)) => {
            if items.len() != elems.len() {
                return Some(format!(
                    "tuple sharding has {} entries for {} elements",
                    items.len(),
                    elems.len()
                ));
            }
            elems
                .iter()
                .zip(items)
                .find_map(|(e, s)| sharding_mismatch(e, s))
        }
        (Sharding::Tuple(_), _) => Some("a tuple sharding needs a tuple value".into()),
        (
            Sharding::Tiled {
                tile_dims,
                devices,
                replicate_last,
            },
            Shape::Array(a),
        ) => {
            let want = a.rank() + usize::from(*replicate_last);
            if tile_dims.len() != want {
                return Some(format!(
                    "{} tile dims for rank {} (need {want})",
                    tile_dims.len(),
                    a.rank()
                ));
            }
            if tile_dims.iter().any(|&t| t < 1) {
                return Some(format!("tile dims {tile_dims:?} must be >= 1"));
            }
            let n: i64 = tile_dims.iter().product();
            let unique = (0..devices.len()).all(|i| !devices[..i].contains(&devices[i]));
            if devices.len() as i64 != n || !unique || devices.iter().any(|&d| d < 0) {
                return Some(format!(
                    "tiles {tile_dims:?} need {n} distinct device ids, got {devices:?}"
                ));
            }
            None
        }
        (Sharding::Tiled { .. }, _) => Some("a tiled sharding needs an array value".into()),
        (Sharding::Maximal { device }, _) if *device < 0 => {
            Some(format!("device {device} is negative"))
        }
        _ => None,
    }
}

impl Builder<'_> {
    /// Sorts `operands` (equal dims) together along `dim`. `comparator` takes 2N scalars
    /// `(lhs_0, rhs_0, lhs_1, rhs_1, ...)` and returns `pred[]` (true when lhs goes first).
    /// One operand gives an array, several give a tuple.
    pub fn sort(
        &self,
        operands: &[Value],
        dim: i64,
        comparator: CompId,
        stable: bool,
    ) -> Result<Value> {
        let shapes = operands
            .iter()
            .map(|&x| self.array_shape(x, "sort"))
            .collect::<Result<Vec<_>>>()?;
        let disp: Vec<&dyn std::fmt::Display> =
            shapes.iter().map(|s| s as &dyn std::fmt::Display).collect();
        let first = shapes
            .first()
            .ok_or_else(|| shape_err("sort", "no operands", &[]))?;
        if shapes.iter().any(|s| s.dims != first.dims) {
            return Err(shape_err(
                "sort",
                "operands must have equal dimensions",
                &disp,
            ));
        }
        if dim < 0 || dim as usize >= first.rank() {
            return Err(shape_err(
                "sort",
                format!("dimension {dim} is outside the rank {}", first.rank()),
                &disp,
            ));
        }
        let params: Vec<Shape> = shapes
            .iter()
            .flat_map(|s| [Shape::scalar(s.ty), Shape::scalar(s.ty)])
            .collect();
        self.check_signature(
            "sort",
            comparator,
            &params,
            &Shape::scalar(ElementType::Pred),
        )?;
        let out = if shapes.len() == 1 {
            Shape::Array(first.clone())
        } else {
            Shape::Tuple(shapes.iter().cloned().map(Shape::Array).collect())
        };
        self.push(
            Op::Sort {
                dim,
                comp: comparator,
                stable,
            },
            operands,
            out,
        )
    }

    /// A sort comparator over operands of `types` that orders by the first operand, ascending.
    /// Floats compare in total order (-NaN < -inf < ... < -0 < +0 < ... < inf < NaN), as JAX does.
    pub fn ascending_comparator(&self, types: &[ElementType]) -> Result<CompId> {
        let key = *types
            .first()
            .ok_or_else(|| shape_err("sort", "a comparator needs at least one type", &[]))?;
        let b = self.module().builder(format!("ascending_{key}"));
        let mut params = Vec::with_capacity(2 * types.len());
        for (i, &t) in types.iter().enumerate() {
            params.push(b.parameter(Shape::scalar(t), &format!("lhs{i}"))?);
            params.push(b.parameter(Shape::scalar(t), &format!("rhs{i}"))?);
        }
        let ty = if key.is_float() {
            CompareType::TotalOrder
        } else {
            default_compare_type(key)
        };
        let lt = b.push(
            Op::Compare {
                dir: CompareDir::Lt,
                ty,
            },
            &params[..2],
            Shape::scalar(ElementType::Pred),
        )?;
        b.finish(lt)
    }

    /// Sorts `x` ascending along `dim`.
    pub fn sort_ascending(&self, x: Value, dim: i64) -> Result<Value> {
        let ty = self.array_shape(x, "sort")?.ty;
        let comp = self.ascending_comparator(&[ty])?;
        self.sort(&[x], dim, comp, false)
    }

    /// Sorts `key` ascending along `dim` and permutes `values` the same way (stable, so equal
    /// keys keep their order: with an iota as the value, this is argsort). Returns the tuple
    /// `(sorted key, values...)`.
    pub fn sort_by_key(&self, key: Value, values: &[Value], dim: i64) -> Result<Value> {
        let mut operands = vec![key];
        operands.extend_from_slice(values);
        let types = operands
            .iter()
            .map(|&v| Ok(self.array_shape(v, "sort")?.ty))
            .collect::<Result<Vec<_>>>()?;
        let comp = self.ascending_comparator(&types)?;
        self.sort(&operands, dim, comp, true)
    }

    /// Random bits of `shape` (u32 or u64) from `state`; returns the tuple `(new state, bits)`.
    /// ThreeFry takes a u64[2] state; Philox and the default (Philox on CPU/GPU) take u64[2] or
    /// u64[3].
    pub fn rng_bit_generator(
        &self,
        algorithm: RngAlgorithm,
        state: Value,
        shape: &ArrayShape,
    ) -> Result<Value> {
        let s = self.array_shape(state, "rng-bit-generator")?;
        let sizes: &[i64] = match algorithm {
            RngAlgorithm::ThreeFry => &[2],
            RngAlgorithm::Philox | RngAlgorithm::Default => &[2, 3],
        };
        if s.ty != ElementType::U64 || s.rank() != 1 || !sizes.contains(&s.dims[0]) {
            return Err(shape_err(
                "rng-bit-generator",
                format!("{} needs a u64 state of size {sizes:?}", algorithm.name()),
                &[&s],
            ));
        }
        // XLA's bit generators implement 32- and 64-bit outputs everywhere.
        if !matches!(shape.ty, ElementType::U32 | ElementType::U64) {
            return Err(shape_err(
                "rng-bit-generator",
                format!("output {shape} must be u32 or u64 (convert or bitcast afterwards)"),
                &[&s],
            ));
        }
        if shape.dims.iter().any(|&d| d < 0) {
            return Err(shape_err(
                "rng-bit-generator",
                format!("negative size in {shape}"),
                &[&s],
            ));
        }
        let out = Shape::Tuple(vec![Shape::Array(s), Shape::Array(shape.clone())]);
        self.push(Op::RngBitGenerator { algorithm }, &[state], out)
    }

    /// A call to a backend function `target`. `operand_layouts`, when given, pins one layout
    /// (as a shape equal to the operand's) per operand. `api_version` is XLA's
    /// `CustomCallApiVersion` (0 unspecified .. 4 typed FFI).
    #[allow(clippy::too_many_arguments)] // mirrors XLA's CustomCall signature
    pub fn custom_call(
        &self,
        target: &str,
        operands: &[Value],
        result_shape: Shape,
        backend_config: &str,
        operand_layouts: Option<Vec<Shape>>,
        has_side_effect: bool,
        api_version: i32,
    ) -> Result<Value> {
        let shapes = operands
            .iter()
            .map(|&v| self.shape(v))
            .collect::<Result<Vec<_>>>()?;
        let fail = |m: String| Err(shape_err("custom-call", m, &[&join(&shapes)]));
        if target.is_empty() {
            return fail("empty call target".into());
        }
        if !(0..=4).contains(&api_version) {
            return fail(format!("api_version {api_version} is not in 0..=4"));
        }
        if let Some(layouts) = &operand_layouts {
            if layouts != &shapes {
                return fail(format!(
                    "operand layouts ({}) must match the operands",
                    join(layouts)
                ));
            }
        }
        let op = Op::CustomCall {
            target: target.to_string(),
            backend_config: backend_config.to_string(),
            operand_layouts,
            result_layouts: Vec::new(),
            has_side_effect,
            api_version,
        };
        self.push(op, operands, result_shape)
    }

    /// Pins the memory layout custom call `call` writes its result in: `layouts[i]` is the
    /// `minor_to_major` of the result's i-th array (its tuple elements in order, or the one
    /// array), `None` row-major. XLA lays the buffers out so, and a transpose that only undoes
    /// such a layout becomes a bitcast (cuDNN attention writes `[B,N,T,H]` arrays in BTNH order).
    pub fn set_custom_call_result_layouts(
        &self,
        call: Value,
        layouts: Vec<Option<Vec<i64>>>,
    ) -> Result<()> {
        let shape = self.shape(call)?;
        let arrays: Vec<&Shape> = match &shape {
            Shape::Tuple(t) => t.iter().collect(),
            s => vec![s],
        };
        let fail = |m: String| Err(shape_err("custom-call result layout", m, &[&shape]));
        if layouts.len() > arrays.len() {
            return fail(format!(
                "{} layouts for {} result arrays",
                layouts.len(),
                arrays.len()
            ));
        }
        for (l, s) in layouts.iter().zip(&arrays) {
            let Some(l) = l else { continue };
            let rank = match s {
                Shape::Array(a) => a.rank(),
                other => return fail(format!("{other} is not an array")),
            };
            let mut seen = vec![false; rank];
            let permutation = l.len() == rank
                && l.iter().all(|&d| {
                    usize::try_from(d)
                        .ok()
                        .and_then(|d| seen.get_mut(d))
                        .is_some_and(|s| !std::mem::replace(s, true))
                });
            if !permutation {
                return fail(format!(
                    "minor_to_major {l:?} is not a permutation of the dims of {s}"
                ));
            }
        }
        let mut st = self.m.state.borrow_mut();
        match &mut st.drafts[self.draft as usize].instrs[call.id.index()].op {
            Op::CustomCall { result_layouts, .. } => {
                *result_layouts = layouts;
                Ok(())
            }
            other => fail(format!("{} is not a custom call", other.opcode())),
        }
    }

    /// Identity that XLA may not move computation across (usually on a tuple).
    pub fn optimization_barrier(&self, value: Value) -> Result<Value> {
        let s = self.shape(value)?;
        self.push(Op::OptimizationBarrier, &[value], s)
    }

    /// This replica's id, a u32 scalar.
    pub fn replica_id(&self) -> Result<Value> {
        self.push(Op::ReplicaId, &[], Shape::scalar(ElementType::U32))
    }

    /// This partition's id, a u32 scalar.
    pub fn partition_id(&self) -> Result<Value> {
        self.push(Op::PartitionId, &[], Shape::scalar(ElementType::U32))
    }

    /// Tells the SPMD partitioner how `x` is laid out (a `Sharding` custom-call of the same
    /// shape, which also carries the sharding as its instruction sharding).
    pub fn sharding_hint(&self, x: Value, sharding: Sharding) -> Result<Value> {
        let s = self.shape(x)?;
        if let Some(m) = sharding_mismatch(&s, &sharding) {
            return Err(shape_err(
                "custom-call",
                format!("sharding hint: {m}"),
                &[&s],
            ));
        }
        let v = self.push(Op::ShardingHint(sharding.clone()), &[x], s)?;
        self.set_sharding(v, sharding)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::test_util::{
        entry_root as root, lower_entry as lower, shape_err_msg as err,
    };
    use crate::dtype::ElementType::{F32, S32, U32, U64};
    use crate::ModuleBuilder;

    #[test]
    fn sort_shapes_and_comparator() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![3, 5]), "x").unwrap();
        let i = b.parameter(Shape::array(S32, vec![3, 5]), "i").unwrap();
        let s = b.sort_ascending(x, 1).unwrap();
        assert_eq!(b.shape(s).unwrap(), Shape::array(F32, vec![3, 5]));
        let t = b.sort_by_key(x, &[i], 0).unwrap();
        assert_eq!(
            b.shape(t).unwrap(),
            Shape::Tuple(vec![
                Shape::array(F32, vec![3, 5]),
                Shape::array(S32, vec![3, 5])
            ])
        );
        let (params, result) = m
            .signature(b.ascending_comparator(&[F32, S32]).unwrap())
            .unwrap();
        assert_eq!(params.len(), 4);
        assert_eq!(params[2], Shape::scalar(S32));
        assert_eq!(result, Shape::scalar(ElementType::Pred));
    }

    #[test]
    fn sort_errors() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![3, 5]), "x").unwrap();
        let y = b.parameter(Shape::array(S32, vec![5, 3]), "y").unwrap();
        let c = b.ascending_comparator(&[F32]).unwrap();
        assert!(err(b.sort(&[x], 2, c, false), "sort").contains("dimension 2"));
        assert!(err(b.sort(&[x, y], 0, c, false), "sort").contains("equal dimensions"));
        assert!(err(b.sort(&[], 0, c, false), "sort").contains("no operands"));
        // comparator for one f32 operand used with (f32, f32) operands
        assert!(err(b.sort(&[x, x], 0, c, false), "sort").contains("signature"));
    }

    #[test]
    fn sort_lowers_with_total_order_comparator() {
        let p = lower(|b| {
            let x = b.parameter(Shape::array(F32, vec![8]), "x")?;
            b.sort_ascending(x, 0)
        });
        let r = root(&p);
        assert_eq!(r.opcode, "sort");
        assert_eq!(r.dimensions, vec![0]);
        let cmp = &p.computations[0];
        assert_eq!(r.called_computation_ids, vec![cmp.id]);
        let lt = cmp
            .instructions
            .iter()
            .find(|i| i.opcode == "compare")
            .unwrap();
        assert_eq!(
            (
                lt.comparison_direction.as_str(),
                lt.comparison_type.as_str()
            ),
            ("LT", "TOTALORDER")
        );
        let p = lower(|b| {
            let k = b.parameter(Shape::array(S32, vec![8]), "k")?;
            let v = b.parameter(Shape::array(F32, vec![8]), "v")?;
            b.sort_by_key(k, &[v], 0)
        });
        assert!(root(&p).is_stable);
    }

    #[test]
    fn rng_bit_generator_shapes() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let s2 = b.parameter(Shape::array(U64, vec![2]), "s2").unwrap();
        let s3 = b.parameter(Shape::array(U64, vec![3]), "s3").unwrap();
        let out = ArrayShape::new(U32, vec![4, 6]);
        let r = b
            .rng_bit_generator(RngAlgorithm::ThreeFry, s2, &out)
            .unwrap();
        assert_eq!(
            b.shape(r).unwrap(),
            Shape::Tuple(vec![
                Shape::array(U64, vec![2]),
                Shape::array(U32, vec![4, 6])
            ])
        );
        let r = b.rng_bit_generator(RngAlgorithm::Philox, s3, &out).unwrap();
        assert_eq!(
            b.shape(r).unwrap().tuple_elements().unwrap()[0],
            Shape::array(U64, vec![3])
        );
        let e = err(
            b.rng_bit_generator(RngAlgorithm::ThreeFry, s3, &out),
            "rng-bit-generator",
        );
        assert!(e.contains("u64 state"));
        let f = ArrayShape::new(F32, vec![4]);
        let e = err(
            b.rng_bit_generator(RngAlgorithm::Default, s2, &f),
            "rng-bit-generator",
        );
        assert!(e.contains("u32 or u64"));
        let s32 = b.parameter(Shape::array(U32, vec![2]), "s32").unwrap();
        let e = err(
            b.rng_bit_generator(RngAlgorithm::Default, s32, &out),
            "rng-bit-generator",
        );
        assert!(e.contains("u64 state"));
    }

    #[test]
    fn rng_bit_generator_lowers() {
        let p = lower(|b| {
            let s = b.parameter(Shape::array(U64, vec![2]), "s")?;
            b.rng_bit_generator(RngAlgorithm::ThreeFry, s, &ArrayShape::new(U32, vec![3]))
        });
        let r = root(&p);
        assert_eq!(r.opcode, "rng-bit-generator");
        assert_eq!(
            r.rng_algorithm,
            crate::proto::RandomAlgorithm::RngThreeFry as i32
        );
    }

    #[test]
    fn custom_call_checks_and_lowers() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![2, 3]), "x").unwrap();
        let out = Shape::array(F32, vec![3]);
        let layouts = Some(vec![Shape::array(F32, vec![2, 3])]);
        let c = b
            .custom_call("my_fn", &[x], out.clone(), "cfg", layouts, true, 1)
            .unwrap();
        assert_eq!(b.shape(c).unwrap(), out);
        let bad = Some(vec![Shape::array(F32, vec![3, 2])]);
        let e = err(
            b.custom_call("f", &[x], out.clone(), "", bad, false, 0),
            "custom-call",
        );
        assert!(e.contains("layouts"));
        let e = err(
            b.custom_call("", &[x], out.clone(), "", None, false, 0),
            "custom-call",
        );
        assert!(e.contains("target"));
        let e = err(
            b.custom_call("f", &[x], out.clone(), "", None, false, 9),
            "custom-call",
        );
        assert!(e.contains("api_version"));
        // Result layouts: a permutation of each array's dims, at most one per array.
        let t = b
            .custom_call("g", &[x], Shape::array(F32, vec![2, 3]), "", None, false, 1)
            .unwrap();
        b.set_custom_call_result_layouts(t, vec![Some(vec![0, 1])])
            .unwrap();
        for bad in [
            vec![Some(vec![0, 0])],
            vec![Some(vec![2, 0])],
            vec![None, None],
        ] {
            let e = err(
                b.set_custom_call_result_layouts(t, bad).map(|()| t),
                "custom-call result layout",
            );
            assert!(e.contains("permutation") || e.contains("2 layouts"), "{e}");
        }
        let e = err(
            b.set_custom_call_result_layouts(x, vec![Some(vec![1, 0])])
                .map(|()| x),
            "custom-call result layout",
        );
        assert!(e.contains("not a custom call"), "{e}");

        let p = lower(|b| {
            let x = b.parameter(Shape::array(F32, vec![2]), "x")?;
            b.custom_call("my_fn", &[x], Shape::scalar(F32), "cfg", None, true, 2)
        });
        let r = root(&p);
        assert_eq!(
            (r.opcode.as_str(), r.custom_call_target.as_str()),
            ("custom-call", "my_fn")
        );
        assert_eq!(r.backend_config, b"cfg".to_vec());
        assert!(r.custom_call_has_side_effect);
        assert_eq!(r.custom_call_api_version, 2);
    }

    #[test]
    fn barrier_and_ids() {
        let p = lower(|b| {
            let x = b.parameter(Shape::array(F32, vec![2]), "x")?;
            let r = b.replica_id()?;
            let pid = b.partition_id()?;
            assert_eq!(b.shape(r)?, Shape::scalar(U32));
            assert_eq!(b.shape(pid)?, Shape::scalar(U32));
            let t = b.tuple(&[x, r, pid])?;
            let o = b.optimization_barrier(t)?;
            assert_eq!(b.shape(o)?, b.shape(t)?);
            Ok(o)
        });
        let r = root(&p);
        assert_eq!(r.opcode, "opt-barrier");
        let ops: Vec<&str> = p.computations[0]
            .instructions
            .iter()
            .map(|i| i.opcode.as_str())
            .collect();
        assert!(ops.contains(&"replica-id") && ops.contains(&"partition-id"));
    }

    #[test]
    fn sharding_hint_checks_and_lowers() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![8, 4]), "x").unwrap();
        let h = b.sharding_hint(x, Sharding::split(2, 0, 2)).unwrap();
        assert_eq!(b.shape(h).unwrap(), Shape::array(F32, vec![8, 4]));
        let e = err(b.sharding_hint(x, Sharding::split(3, 0, 2)), "custom-call");
        assert!(e.contains("tile dims"));
        let dup = Sharding::Tiled {
            tile_dims: vec![2, 1],
            devices: vec![0, 0],
            replicate_last: false,
        };
        assert!(err(b.sharding_hint(x, dup), "custom-call").contains("distinct"));
        let t = Sharding::Tuple(vec![Sharding::Replicated]);
        assert!(err(b.sharding_hint(x, t), "custom-call").contains("tuple"));

        let p = lower(|b| {
            let x = b.parameter(Shape::array(F32, vec![8, 4]), "x")?;
            b.sharding_hint(x, Sharding::split(2, 1, 4))
        });
        let r = root(&p);
        assert_eq!(r.custom_call_target, "Sharding");
        let s = r.sharding.as_ref().unwrap();
        assert_eq!(s.tile_assignment_dimensions, vec![1, 4]);
        assert_eq!(s.tile_assignment_devices, vec![0, 1, 2, 3]);
    }
}
