//! Gather and scatter with XLA's general dimension numbers (batching dimensions included), and
//! the conveniences BERT uses: `take` (embedding lookup) and `scatter_add` (its gradient).
//!
//! Shape inference follows XLA's `ShapeInference::InferGatherShape` / `InferScatterShape` and the
//! StableHLO spec's constraints. Out-of-range indices are not an error: XLA clamps gather starts
//! and skips out-of-bounds scatter updates at run time.
use super::{Builder, Value};
use crate::error::{shape_err, Result};
use crate::ir::{BinaryOp, CompId, GatherDims, Op, ScatterDims};
use crate::shape::{ArrayShape, Shape};

type Check<T = ()> = std::result::Result<T, String>;

/// Every entry of `dims` in `0..bound`, none repeated, ascending when `sorted`.
fn check_dims(what: &str, dims: &[i64], bound: usize, sorted: bool) -> Check {
    for (i, &d) in dims.iter().enumerate() {
        if d < 0 || d as usize >= bound {
            return Err(format!("{what} {dims:?}: {d} is outside [0, {bound})"));
        }
        if dims[..i].contains(&d) {
            return Err(format!("{what} {dims:?} repeats {d}"));
        }
        if sorted && i > 0 && dims[i - 1] > d {
            return Err(format!("{what} {dims:?} must be sorted"));
        }
    }
    Ok(())
}

fn check_disjoint(a_name: &str, a: &[i64], b_name: &str, b: &[i64]) -> Check {
    match a.iter().find(|d| b.contains(d)) {
        Some(d) => Err(format!(
            "{a_name} {a:?} and {b_name} {b:?} share dimension {d}"
        )),
        None => Ok(()),
    }
}

/// The indices' dims with XLA's implicit trailing 1 when `index_vector_dim == rank`.
fn expanded_indices(idx: &ArrayShape, index_vector_dim: i64) -> Check<Vec<i64>> {
    if !idx.ty.is_integer() {
        return Err("indices must be an integer array".into());
    }
    if index_vector_dim < 0 || index_vector_dim as usize > idx.rank() {
        return Err(format!(
            "index_vector_dim {index_vector_dim} is outside [0, {}]",
            idx.rank()
        ));
    }
    let mut dims = idx.dims.clone();
    if index_vector_dim as usize == idx.rank() {
        dims.push(1);
    }
    Ok(dims)
}

/// Checks the batching-dimension pairs shared by gather and scatter.
fn check_batching(
    operand: &ArrayShape,
    operand_batching: &[i64],
    idx: &ArrayShape,
    idx_batching: &[i64],
    index_vector_dim: i64,
) -> Check {
    check_dims("indices batching dims", idx_batching, idx.rank(), false)?;
    if idx_batching.contains(&index_vector_dim) {
        return Err(format!(
            "indices batching dims {idx_batching:?} contain index_vector_dim {index_vector_dim}"
        ));
    }
    if operand_batching.len() != idx_batching.len() {
        return Err(format!(
            "operand batching dims {operand_batching:?} and indices batching dims \
             {idx_batching:?} differ in length"
        ));
    }
    for (&o, &i) in operand_batching.iter().zip(idx_batching) {
        if operand.dims[o as usize] != idx.dims[i as usize] {
            return Err(format!(
                "operand batching dim {o} (size {}) and indices batching dim {i} (size {}) differ",
                operand.dims[o as usize], idx.dims[i as usize]
            ));
        }
    }
    Ok(())
}

/// XLA's gather result shape, or why the dimension numbers are invalid.
fn infer_gather(
    a: &ArrayShape,
    idx: &ArrayShape,
    d: &GatherDims,
    slice_sizes: &[i64],
) -> Check<ArrayShape> {
    let expanded = expanded_indices(idx, d.index_vector_dim)?;
    let ivd = d.index_vector_dim as usize;
    let rank = a.rank();
    let out_rank = d.offset_dims.len() + expanded.len() - 1;
    check_dims("offset_dims", &d.offset_dims, out_rank, true)?;
    if d.start_index_map.len() as i64 != expanded[ivd] {
        return Err(format!(
            "start_index_map {:?} has {} entries but the index vector has {}",
            d.start_index_map,
            d.start_index_map.len(),
            expanded[ivd]
        ));
    }
    check_dims("start_index_map", &d.start_index_map, rank, false)?;
    check_dims("collapsed_slice_dims", &d.collapsed_slice_dims, rank, true)?;
    check_dims(
        "operand_batching_dims",
        &d.operand_batching_dims,
        rank,
        true,
    )?;
    check_disjoint(
        "collapsed_slice_dims",
        &d.collapsed_slice_dims,
        "operand_batching_dims",
        &d.operand_batching_dims,
    )?;
    check_disjoint(
        "start_index_map",
        &d.start_index_map,
        "operand_batching_dims",
        &d.operand_batching_dims,
    )?;
    check_batching(
        a,
        &d.operand_batching_dims,
        idx,
        &d.start_indices_batching_dims,
        d.index_vector_dim,
    )?;
    if slice_sizes.len() != rank {
        return Err(format!(
            "{} slice sizes for an operand of rank {rank}",
            slice_sizes.len()
        ));
    }
    let accounted =
        d.offset_dims.len() + d.collapsed_slice_dims.len() + d.operand_batching_dims.len();
    if accounted != rank {
        return Err(format!(
            "every operand dimension must be an offset, collapsed or batching dimension: \
             {} + {} + {} != rank {rank}",
            d.offset_dims.len(),
            d.collapsed_slice_dims.len(),
            d.operand_batching_dims.len()
        ));
    }
    for (i, (&s, &n)) in slice_sizes.iter().zip(&a.dims).enumerate() {
        if s < 0 || s > n {
            return Err(format!(
                "slice size {s} of dimension {i} is outside [0, {n}]"
            ));
        }
    }
    for &c in d
        .collapsed_slice_dims
        .iter()
        .chain(&d.operand_batching_dims)
    {
        if slice_sizes[c as usize] > 1 {
            return Err(format!(
                "collapsed or batching dimension {c} has slice size {} (must be 0 or 1)",
                slice_sizes[c as usize]
            ));
        }
    }
    let mut offsets = (0..rank as i64)
        .filter(|k| !d.collapsed_slice_dims.contains(k) && !d.operand_batching_dims.contains(k))
        .map(|k| slice_sizes[k as usize]);
    let mut batch = (0..expanded.len())
        .filter(|&k| k != ivd)
        .map(|k| expanded[k]);
    let dims = (0..out_rank as i64)
        .map(|i| {
            if d.offset_dims.contains(&i) {
                offsets.next()
            } else {
                batch.next()
            }
        })
        .collect::<Option<Vec<i64>>>()
        .ok_or("offset and batch dimensions do not add up")?;
    Ok(ArrayShape::new(a.ty, dims))
}

/// Checks XLA's scatter constraints; the result has the operand's shape.
fn infer_scatter(a: &ArrayShape, idx: &ArrayShape, u: &ArrayShape, d: &ScatterDims) -> Check {
    if u.ty != a.ty {
        return Err("updates must have the operand's element type".into());
    }
    let expanded = expanded_indices(idx, d.index_vector_dim)?;
    let ivd = d.index_vector_dim as usize;
    let rank = a.rank();
    check_dims("update_window_dims", &d.update_window_dims, u.rank(), true)?;
    check_dims("inserted_window_dims", &d.inserted_window_dims, rank, true)?;
    check_dims("input_batching_dims", &d.input_batching_dims, rank, true)?;
    check_disjoint(
        "inserted_window_dims",
        &d.inserted_window_dims,
        "input_batching_dims",
        &d.input_batching_dims,
    )?;
    if d.scatter_dims_to_operand_dims.len() as i64 != expanded[ivd] {
        return Err(format!(
            "scatter_dims_to_operand_dims {:?} has {} entries but the index vector has {}",
            d.scatter_dims_to_operand_dims,
            d.scatter_dims_to_operand_dims.len(),
            expanded[ivd]
        ));
    }
    check_dims(
        "scatter_dims_to_operand_dims",
        &d.scatter_dims_to_operand_dims,
        rank,
        false,
    )?;
    check_disjoint(
        "scatter_dims_to_operand_dims",
        &d.scatter_dims_to_operand_dims,
        "input_batching_dims",
        &d.input_batching_dims,
    )?;
    check_batching(
        a,
        &d.input_batching_dims,
        idx,
        &d.scatter_indices_batching_dims,
        d.index_vector_dim,
    )?;
    let accounted =
        d.update_window_dims.len() + d.inserted_window_dims.len() + d.input_batching_dims.len();
    if accounted != rank {
        return Err(format!(
            "every operand dimension must be a window, inserted or batching dimension: \
             {} + {} + {} != rank {rank}",
            d.update_window_dims.len(),
            d.inserted_window_dims.len(),
            d.input_batching_dims.len()
        ));
    }
    let scatter_rank = expanded.len() - 1;
    if u.rank() != d.update_window_dims.len() + scatter_rank {
        return Err(format!(
            "updates must have rank {} ({} window + {scatter_rank} scatter dimensions)",
            d.update_window_dims.len() + scatter_rank,
            d.update_window_dims.len()
        ));
    }
    let window_operand_dims = (0..rank as i64)
        .filter(|k| !d.inserted_window_dims.contains(k) && !d.input_batching_dims.contains(k));
    for (&w, o) in d.update_window_dims.iter().zip(window_operand_dims) {
        if u.dims[w as usize] > a.dims[o as usize] {
            return Err(format!(
                "update window dimension {w} (size {}) exceeds operand dimension {o} (size {})",
                u.dims[w as usize], a.dims[o as usize]
            ));
        }
    }
    let update_scatter = (0..u.rank() as i64)
        .filter(|k| !d.update_window_dims.contains(k))
        .map(|k| u.dims[k as usize]);
    let index_batch = (0..expanded.len())
        .filter(|&k| k != ivd)
        .map(|k| expanded[k]);
    if !update_scatter.eq(index_batch) {
        return Err(
            "update scatter dimensions must equal the indices' dimensions (without \
             index_vector_dim)"
                .into(),
        );
    }
    Ok(())
}

/// Gather dims of `take` along `axis` of a rank-`rank` table with rank-`idx_rank` indices.
fn take_dims(rank: usize, idx_rank: usize, axis: i64) -> GatherDims {
    let offset_dims = (0..rank as i64)
        .filter(|&k| k != axis)
        .map(|k| if k < axis { k } else { k - 1 + idx_rank as i64 })
        .collect();
    GatherDims {
        offset_dims,
        collapsed_slice_dims: vec![axis],
        start_index_map: vec![axis],
        index_vector_dim: idx_rank as i64,
        ..Default::default()
    }
}

impl Builder<'_> {
    /// XLA gather: slices of `slice_sizes` at the starts given by `start_indices`.
    pub fn gather(
        &self,
        operand: Value,
        start_indices: Value,
        dims: GatherDims,
        slice_sizes: &[i64],
        indices_are_sorted: bool,
    ) -> Result<Value> {
        let a = self.array_shape(operand, "gather")?;
        let idx = self.array_shape(start_indices, "gather")?;
        let out = infer_gather(&a, &idx, &dims, slice_sizes)
            .map_err(|m| shape_err("gather", m, &[&a, &idx]))?;
        let op = Op::Gather {
            dims,
            slice_sizes: slice_sizes.to_vec(),
            indices_are_sorted,
        };
        self.push(op, &[operand, start_indices], Shape::Array(out))
    }

    /// XLA scatter: combines `updates` into `operand` at `indices` with `comp: (T[], T[]) -> T[]`.
    #[allow(clippy::too_many_arguments)] // mirrors XLA's Scatter signature
    pub fn scatter(
        &self,
        operand: Value,
        indices: Value,
        updates: Value,
        dims: ScatterDims,
        comp: CompId,
        indices_are_sorted: bool,
        unique_indices: bool,
    ) -> Result<Value> {
        let a = self.array_shape(operand, "scatter")?;
        let idx = self.array_shape(indices, "scatter")?;
        let u = self.array_shape(updates, "scatter")?;
        infer_scatter(&a, &idx, &u, &dims).map_err(|m| shape_err("scatter", m, &[&a, &idx, &u]))?;
        let s = Shape::scalar(a.ty);
        self.check_signature("scatter", comp, &[s.clone(), s.clone()], &s)?;
        let op = Op::Scatter {
            dims,
            comp,
            indices_are_sorted,
            unique_indices,
        };
        self.push(op, &[operand, indices, updates], Shape::Array(a))
    }

    /// Scatter that adds the updates (duplicates accumulate): the transpose of a gather.
    pub fn scatter_add(
        &self,
        operand: Value,
        indices: Value,
        updates: Value,
        dims: ScatterDims,
    ) -> Result<Value> {
        let a = self.array_shape(operand, "scatter")?;
        if a.ty.is_pred() {
            return Err(shape_err(
                "scatter",
                "scatter_add needs a numeric operand",
                &[&a],
            ));
        }
        let comp = self.module().scalar_reducer(BinaryOp::Add, a.ty)?;
        self.scatter(operand, indices, updates, dims, comp, false, false)
    }

    /// The scatter dimension numbers that transpose a gather (for its gradient, a scatter-add
    /// of the output cotangent into zeros of the operand's shape).
    pub fn scatter_dims_for_gather(d: &GatherDims) -> ScatterDims {
        ScatterDims {
            update_window_dims: d.offset_dims.clone(),
            inserted_window_dims: d.collapsed_slice_dims.clone(),
            scatter_dims_to_operand_dims: d.start_index_map.clone(),
            index_vector_dim: d.index_vector_dim,
            input_batching_dims: d.operand_batching_dims.clone(),
            scatter_indices_batching_dims: d.start_indices_batching_dims.clone(),
        }
    }

    /// numpy `take`: entries of `table` along `axis` at `indices` (any rank, integer).
    /// Result dims: `table[..axis] ++ indices ++ table[axis+1..]`; for an embedding lookup
    /// (`axis = 0`), `indices.shape ++ [hidden]`. Out-of-range indices are clamped by XLA.
    pub fn take(&self, table: Value, indices: Value, axis: i64) -> Result<Value> {
        let a = self.array_shape(table, "gather")?;
        let idx = self.array_shape(indices, "gather")?;
        if axis < 0 || axis as usize >= a.rank() {
            return Err(shape_err(
                "gather",
                format!("take axis {axis} is outside the table's rank {}", a.rank()),
                &[&a, &idx],
            ));
        }
        let mut slice_sizes = a.dims.clone();
        slice_sizes[axis as usize] = 1;
        let dims = take_dims(a.rank(), idx.rank(), axis);
        self.gather(table, indices, dims, &slice_sizes, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::test_util::{entry_root, lower_entry, shape_err_msg as err};
    use crate::dtype::ElementType::{Pred, F32, S32, S64};
    use crate::ModuleBuilder;

    /// A module whose entry returns `f(builder)`, lowered; returns the root's proto.
    fn lower_root(f: impl FnOnce(&Builder) -> Result<Value>) -> crate::proto::HloInstructionProto {
        entry_root(&lower_entry(f)).clone()
    }

    #[test]
    fn embedding_lookup_shape() {
        // BERT: word_embeddings f32[30522,768] at input_ids s32[8,128] -> f32[8,128,768].
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let table = b
            .parameter(Shape::array(F32, vec![30522, 768]), "w")
            .unwrap();
        let ids = b.parameter(Shape::array(S32, vec![8, 128]), "ids").unwrap();
        let out = b.take(table, ids, 0).unwrap();
        assert_eq!(b.shape(out).unwrap(), Shape::array(F32, vec![8, 128, 768]));
        // take along a middle axis: [2,5,3] at [4] on axis 1 -> [2,4,3]
        let t = b.parameter(Shape::array(F32, vec![2, 5, 3]), "t").unwrap();
        let i = b.parameter(Shape::array(S32, vec![4]), "i").unwrap();
        let o = b.take(t, i, 1).unwrap();
        assert_eq!(b.shape(o).unwrap(), Shape::array(F32, vec![2, 4, 3]));
        // scalar index on axis 0: [5,3] -> [3]
        let s = b.parameter(Shape::scalar(S32), "s").unwrap();
        let t2 = b.parameter(Shape::array(F32, vec![5, 3]), "t2").unwrap();
        let o = b.take(t2, s, 0).unwrap();
        assert_eq!(b.shape(o).unwrap(), Shape::array(F32, vec![3]));
    }

    #[test]
    fn take_dims_match_xla_embedding_form() {
        // jnp.take(table[V,H], ids[B,S], axis=0) lowers to offset_dims=[2],
        // collapsed=[0], start_index_map=[0], index_vector_dim=2, slice_sizes=[1,H].
        let d = take_dims(2, 2, 0);
        assert_eq!(d.offset_dims, vec![2]);
        assert_eq!(d.collapsed_slice_dims, vec![0]);
        assert_eq!(d.start_index_map, vec![0]);
        assert_eq!(d.index_vector_dim, 2);
        let d = take_dims(3, 1, 1);
        assert_eq!(d.offset_dims, vec![0, 2]);
    }

    #[test]
    fn gather_with_explicit_index_vector_dim() {
        // XLA docs example: operand [3,3], indices [2,2] (vectors along dim 1) gathering
        // 1x1 windows collapsed in both dims -> [2].
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![3, 3]), "x").unwrap();
        let i = b.parameter(Shape::array(S32, vec![2, 2]), "i").unwrap();
        let d = GatherDims {
            offset_dims: vec![],
            collapsed_slice_dims: vec![0, 1],
            start_index_map: vec![0, 1],
            index_vector_dim: 1,
            ..Default::default()
        };
        let g = b.gather(x, i, d, &[1, 1], false).unwrap();
        assert_eq!(b.shape(g).unwrap(), Shape::array(F32, vec![2]));
        // Offset dims in front, index vector dim in the middle: operand [4,5,6],
        // indices [7,2,8] (ivd=1), slices [4,1,3] with dim 1 collapsed -> offsets (4,3) at
        // output dims [0,1], batch dims (7,8) after them.
        let x = b.parameter(Shape::array(F32, vec![4, 5, 6]), "x2").unwrap();
        let i = b.parameter(Shape::array(S32, vec![7, 2, 8]), "i2").unwrap();
        let d = GatherDims {
            offset_dims: vec![0, 1],
            collapsed_slice_dims: vec![1],
            start_index_map: vec![1, 2],
            index_vector_dim: 1,
            ..Default::default()
        };
        let g = b.gather(x, i, d, &[4, 1, 3], true).unwrap();
        assert_eq!(b.shape(g).unwrap(), Shape::array(F32, vec![4, 3, 7, 8]));
    }

    #[test]
    fn gather_with_batching_dims_matches_stablehlo_example() {
        // StableHLO spec example: operand [2,3,4,2], indices [2,2,3,2] -> [2,2,3,2,2].
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b
            .parameter(Shape::array(S32, vec![2, 3, 4, 2]), "x")
            .unwrap();
        let i = b
            .parameter(Shape::array(S64, vec![2, 2, 3, 2]), "i")
            .unwrap();
        let d = GatherDims {
            offset_dims: vec![3, 4],
            collapsed_slice_dims: vec![1],
            start_index_map: vec![2, 1],
            index_vector_dim: 3,
            operand_batching_dims: vec![0],
            start_indices_batching_dims: vec![1],
        };
        let g = b.gather(x, i, d, &[1, 1, 2, 2], false).unwrap();
        assert_eq!(b.shape(g).unwrap(), Shape::array(S32, vec![2, 2, 3, 2, 2]));
    }

    #[test]
    fn gather_errors_name_the_op() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![10, 4]), "x").unwrap();
        let i = b.parameter(Shape::array(S32, vec![3]), "i").unwrap();
        let f = b.parameter(Shape::array(F32, vec![3]), "f").unwrap();
        let good = take_dims(2, 1, 0);
        let with = |f: &dyn Fn(&mut GatherDims)| {
            let mut d = good.clone();
            f(&mut d);
            d
        };
        assert!(b.gather(x, i, good.clone(), &[1, 4], false).is_ok());
        // float indices
        assert!(err(b.gather(x, f, good.clone(), &[1, 4], false), "gather").contains("integer"));
        // index_vector_dim out of range
        let d = with(&|d| d.index_vector_dim = 2);
        assert!(err(b.gather(x, i, d, &[1, 4], false), "gather").contains("index_vector_dim"));
        // slice larger than the operand
        assert!(
            err(b.gather(x, i, good.clone(), &[1, 5], false), "gather").contains("slice size 5")
        );
        // collapsing a dimension of slice size 2
        assert!(
            err(b.gather(x, i, good.clone(), &[2, 4], false), "gather").contains("slice size 2")
        );
        // wrong slice_sizes length
        assert!(err(b.gather(x, i, good.clone(), &[1], false), "gather").contains("1 slice sizes"));
        // offset_dims not sorted / out of range
        let d = with(&|d| d.offset_dims = vec![2]);
        assert!(err(b.gather(x, i, d, &[1, 4], false), "gather").contains("offset_dims"));
        // start_index_map longer than the index vector
        let d = with(&|d| d.start_index_map = vec![0, 1]);
        assert!(err(b.gather(x, i, d, &[1, 4], false), "gather").contains("start_index_map"));
        // dimension both collapsed and batching
        let d = with(&|d| {
            d.operand_batching_dims = vec![0];
            d.start_indices_batching_dims = vec![0];
        });
        assert!(err(b.gather(x, i, d, &[1, 4], false), "gather").contains("share dimension 0"));
        // not every operand dimension accounted for
        let d = with(&|d| d.offset_dims = vec![]);
        assert!(
            err(b.gather(x, i, d, &[1, 4], false), "gather").contains("every operand dimension")
        );
        // take with a bad axis
        assert!(err(b.take(x, i, 2), "gather").contains("take axis 2"));
    }

    #[test]
    fn batching_dims_sizes_must_match() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![2, 5]), "x").unwrap();
        let i = b.parameter(Shape::array(S32, vec![3, 1]), "i").unwrap();
        let d = GatherDims {
            offset_dims: vec![],
            collapsed_slice_dims: vec![1],
            start_index_map: vec![1],
            index_vector_dim: 1,
            operand_batching_dims: vec![0],
            start_indices_batching_dims: vec![0],
        };
        let r = b.gather(x, i, d.clone(), &[1, 1], false);
        assert!(err(r, "gather").contains("batching dim 0 (size 2)"));
        let i = b.parameter(Shape::array(S32, vec![2, 1]), "i2").unwrap();
        let g = b.gather(x, i, d, &[1, 1], false).unwrap();
        assert_eq!(b.shape(g).unwrap(), Shape::array(F32, vec![2]));
    }

    #[test]
    fn embedding_gradient_scatter_add() {
        // d(take(W, ids))/dW: scatter-add of g[8,128,768] into zeros[30522,768].
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let w = b
            .parameter(Shape::array(F32, vec![30522, 768]), "w")
            .unwrap();
        let ids = b.parameter(Shape::array(S32, vec![8, 128]), "ids").unwrap();
        let g = b
            .parameter(Shape::array(F32, vec![8, 128, 768]), "g")
            .unwrap();
        let dims = Builder::scatter_dims_for_gather(&take_dims(2, 2, 0));
        assert_eq!(dims.update_window_dims, vec![2]);
        assert_eq!(dims.inserted_window_dims, vec![0]);
        assert_eq!(dims.scatter_dims_to_operand_dims, vec![0]);
        assert_eq!(dims.index_vector_dim, 2);
        let z = b.zeros_like(w).unwrap();
        let s = b.scatter_add(z, ids, g, dims.clone()).unwrap();
        assert_eq!(b.shape(s).unwrap(), Shape::array(F32, vec![30522, 768]));
        // update window wider than the operand row
        let g2 = b
            .parameter(Shape::array(F32, vec![8, 128, 769]), "g2")
            .unwrap();
        assert!(err(b.scatter_add(z, ids, g2, dims.clone()), "scatter")
            .contains("exceeds operand dimension 1"));
        // scatter dims of updates must equal the indices' dims
        let g3 = b
            .parameter(Shape::array(F32, vec![8, 127, 768]), "g3")
            .unwrap();
        assert!(err(b.scatter_add(z, ids, g3, dims.clone()), "scatter")
            .contains("update scatter dimensions"));
        // updates of another element type
        let g4 = b
            .parameter(Shape::array(S32, vec![8, 128, 768]), "g4")
            .unwrap();
        assert!(err(b.scatter_add(z, ids, g4, dims.clone()), "scatter").contains("element type"));
        // pred operand cannot be added
        let p = b.parameter(Shape::array(Pred, vec![4]), "p").unwrap();
        let pi = b.parameter(Shape::array(S32, vec![2, 1]), "pi").unwrap();
        let pu = b.parameter(Shape::array(Pred, vec![2]), "pu").unwrap();
        let pd = ScatterDims {
            inserted_window_dims: vec![0],
            scatter_dims_to_operand_dims: vec![0],
            index_vector_dim: 1,
            ..Default::default()
        };
        assert!(err(b.scatter_add(p, pi, pu, pd), "scatter").contains("numeric"));
    }

    #[test]
    fn scatter_with_batching_dims() {
        // Transpose of the StableHLO batching gather: updates [2,2,3,2,2] into [2,3,4,2].
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b
            .parameter(Shape::array(F32, vec![2, 3, 4, 2]), "x")
            .unwrap();
        let i = b
            .parameter(Shape::array(S32, vec![2, 2, 3, 2]), "i")
            .unwrap();
        let u = b
            .parameter(Shape::array(F32, vec![2, 2, 3, 2, 2]), "u")
            .unwrap();
        let d = ScatterDims {
            update_window_dims: vec![3, 4],
            inserted_window_dims: vec![1],
            scatter_dims_to_operand_dims: vec![2, 1],
            index_vector_dim: 3,
            input_batching_dims: vec![0],
            scatter_indices_batching_dims: vec![1],
        };
        let s = b.scatter_add(x, i, u, d.clone()).unwrap();
        assert_eq!(b.shape(s).unwrap(), Shape::array(F32, vec![2, 3, 4, 2]));
        // batching dim equal to index_vector_dim
        let bad = ScatterDims {
            scatter_indices_batching_dims: vec![3],
            ..d.clone()
        };
        assert!(err(b.scatter_add(x, i, u, bad), "scatter").contains("contain index_vector_dim"));
        // scatter_dims_to_operand_dims overlapping a batching dim
        let bad = ScatterDims {
            scatter_dims_to_operand_dims: vec![0, 1],
            ..d
        };
        assert!(err(b.scatter_add(x, i, u, bad), "scatter").contains("share dimension 0"));
    }

    #[test]
    fn scatter_checks_the_combiner() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![4]), "x").unwrap();
        let i = b.parameter(Shape::array(S32, vec![2, 1]), "i").unwrap();
        let u = b.parameter(Shape::array(F32, vec![2]), "u").unwrap();
        let d = ScatterDims {
            inserted_window_dims: vec![0],
            scatter_dims_to_operand_dims: vec![0],
            index_vector_dim: 1,
            ..Default::default()
        };
        let wrong = m.scalar_reducer(BinaryOp::Add, S32).unwrap();
        let r = b.scatter(x, i, u, d.clone(), wrong, false, false);
        assert!(err(r, "scatter").contains("signature"));
        let max = m.scalar_reducer(BinaryOp::Max, F32).unwrap();
        let s = b.scatter(x, i, u, d, max, true, true).unwrap();
        assert_eq!(b.shape(s).unwrap(), Shape::array(F32, vec![4]));
    }

    #[test]
    fn gather_and_scatter_lower() {
        let root = lower_root(|b| {
            let w = b.parameter(Shape::array(F32, vec![100, 16]), "w")?;
            let ids = b.parameter(Shape::array(S32, vec![4, 8]), "ids")?;
            b.take(w, ids, 0)
        });
        assert_eq!(root.opcode, "gather");
        let g = root.gather_dimension_numbers.unwrap();
        assert_eq!(
            (g.offset_dims, g.collapsed_slice_dims, g.index_vector_dim),
            (vec![2], vec![0], 2)
        );
        assert_eq!(root.gather_slice_sizes, vec![1, 16]);

        let root = lower_root(|b| {
            let w = b.parameter(Shape::array(F32, vec![100, 16]), "w")?;
            let ids = b.parameter(Shape::array(S32, vec![4, 8]), "ids")?;
            let g = b.parameter(Shape::array(F32, vec![4, 8, 16]), "g")?;
            let dims = Builder::scatter_dims_for_gather(&take_dims(2, 2, 0));
            b.scatter_add(w, ids, g, dims)
        });
        assert_eq!(root.opcode, "scatter");
        assert_eq!(root.called_computation_ids.len(), 1);
        assert_eq!(
            root.scatter_dimension_numbers.unwrap().update_window_dims,
            vec![2]
        );
    }
}
