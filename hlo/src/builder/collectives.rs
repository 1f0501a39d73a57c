//! Collectives: all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute.
//!
//! The replica count is unknown while building, so ops whose result shape depends on the group
//! size (all-gather, reduce-scatter, all-to-all) need explicit, equal-size replica groups.
use super::{Builder, Value};
use crate::error::{shape_err, Result};
use crate::ir::{BinaryOp, CollectiveAttrs, CompId, Op};
use crate::shape::{ArrayShape, Shape};

/// Checks groups (non-empty, ids >= 0 and unique across groups) and the channel settings.
fn check_attrs(op: &'static str, attrs: &CollectiveAttrs, a: &ArrayShape) -> Result<()> {
    let groups = &attrs.replica_groups;
    let ids: Vec<i64> = groups.iter().flatten().copied().collect();
    if groups.iter().any(|g| g.is_empty()) || ids.iter().any(|&i| i < 0) {
        return Err(shape_err(
            op,
            format!("replica groups {groups:?} must be non-empty lists of ids >= 0"),
            &[a],
        ));
    }
    if let Some(dup) = (0..ids.len()).find(|&i| ids[..i].contains(&ids[i])) {
        return Err(shape_err(
            op,
            format!("replica groups {groups:?} name id {} twice", ids[dup]),
            &[a],
        ));
    }
    if attrs.channel_id.is_some_and(|c| c <= 0) {
        return Err(shape_err(op, "channel_id must be positive", &[a]));
    }
    if attrs.use_global_device_ids && attrs.channel_id.is_none() {
        return Err(shape_err(
            op,
            "use_global_device_ids needs a channel_id",
            &[a],
        ));
    }
    Ok(())
}

/// The common size of the replica groups; they must be given since the count is unknown here.
fn group_size(op: &'static str, attrs: &CollectiveAttrs, a: &ArrayShape) -> Result<i64> {
    check_attrs(op, attrs, a)?;
    let groups = &attrs.replica_groups;
    let n = groups.first().map(|g| g.len()).ok_or_else(|| {
        shape_err(
            op,
            "needs explicit replica groups: the result shape depends on the group size, and \
             the replica count is unknown at build time",
            &[a],
        )
    })?;
    if groups.iter().any(|g| g.len() != n) {
        return Err(shape_err(
            op,
            format!("replica groups {groups:?} must all have the same size"),
            &[a],
        ));
    }
    Ok(n as i64)
}

fn check_dim(op: &'static str, dim: i64, a: &ArrayShape) -> Result<usize> {
    if dim < 0 || dim as usize >= a.rank() {
        return Err(shape_err(
            op,
            format!("dimension {dim} is outside the rank {}", a.rank()),
            &[a],
        ));
    }
    Ok(dim as usize)
}

impl Builder<'_> {
    /// Reduces `x` across the replicas of each group with `comp: (T[], T[]) -> T[]`.
    pub fn all_reduce(&self, x: Value, comp: CompId, attrs: CollectiveAttrs) -> Result<Value> {
        let a = self.array_shape(x, "all-reduce")?;
        check_attrs("all-reduce", &attrs, &a)?;
        let s = Shape::scalar(a.ty);
        self.check_signature("all-reduce", comp, &[s.clone(), s.clone()], &s)?;
        self.push(Op::AllReduce { attrs, comp }, &[x], Shape::Array(a))
    }

    /// Cross-replica sum over `groups` (empty: all replicas together).
    pub fn all_reduce_sum(&self, x: Value, groups: &[Vec<i64>]) -> Result<Value> {
        let a = self.array_shape(x, "all-reduce")?;
        if a.ty.is_pred() {
            return Err(shape_err("all-reduce", "cannot sum pred values", &[&a]));
        }
        let comp = self.module().scalar_reducer(BinaryOp::Add, a.ty)?;
        let attrs = CollectiveAttrs {
            replica_groups: groups.to_vec(),
            ..Default::default()
        };
        self.all_reduce(x, comp, attrs)
    }

    /// Concatenates `x` from every member of the group along `dim` (which grows by the group
    /// size).
    pub fn all_gather(&self, x: Value, dim: i64, attrs: CollectiveAttrs) -> Result<Value> {
        let a = self.array_shape(x, "all-gather")?;
        let d = check_dim("all-gather", dim, &a)?;
        let n = group_size("all-gather", &attrs, &a)?;
        let mut out = a.clone();
        out.dims[d] *= n;
        self.push(Op::AllGather { attrs, dim }, &[x], Shape::Array(out))
    }

    /// Reduces `x` across the group with `comp`, then each member keeps its 1/n slice of `dim`.
    pub fn reduce_scatter(
        &self,
        x: Value,
        dim: i64,
        comp: CompId,
        attrs: CollectiveAttrs,
    ) -> Result<Value> {
        let a = self.array_shape(x, "reduce-scatter")?;
        let d = check_dim("reduce-scatter", dim, &a)?;
        let n = group_size("reduce-scatter", &attrs, &a)?;
        if a.dims[d] % n != 0 {
            return Err(shape_err(
                "reduce-scatter",
                format!(
                    "dimension {dim} (size {}) does not divide into {n} parts",
                    a.dims[d]
                ),
                &[&a],
            ));
        }
        let s = Shape::scalar(a.ty);
        self.check_signature("reduce-scatter", comp, &[s.clone(), s.clone()], &s)?;
        let mut out = a.clone();
        out.dims[d] /= n;
        self.push(
            Op::ReduceScatter { attrs, dim, comp },
            &[x],
            Shape::Array(out),
        )
    }

    /// Array all-to-all: splits `dim` into n blocks, sends block i to member i and concatenates
    /// the received blocks along `dim` again (shape unchanged).
    pub fn all_to_all(&self, x: Value, dim: i64, attrs: CollectiveAttrs) -> Result<Value> {
        let a = self.array_shape(x, "all-to-all")?;
        let d = check_dim("all-to-all", dim, &a)?;
        let n = group_size("all-to-all", &attrs, &a)?;
        if a.dims[d] % n != 0 {
            return Err(shape_err(
                "all-to-all",
                format!(
                    "dimension {dim} (size {}) does not divide into {n} parts",
                    a.dims[d]
                ),
                &[&a],
            ));
        }
        self.push(Op::AllToAll { attrs, dim }, &[x], Shape::Array(a))
    }

    /// Sends `x` from each `source` to its `target`; devices that receive nothing get zeros.
    pub fn collective_permute(
        &self,
        x: Value,
        pairs: &[(i64, i64)],
        channel_id: Option<i64>,
    ) -> Result<Value> {
        let a = self.array_shape(x, "collective-permute")?;
        let fail = |m: String| Err(shape_err("collective-permute", m, &[&a]));
        if pairs.iter().any(|&(s, t)| s < 0 || t < 0) {
            return fail(format!("pairs {pairs:?} must name ids >= 0"));
        }
        for i in 0..pairs.len() {
            let (s, t) = pairs[i];
            if pairs[..i].iter().any(|p| p.0 == s) {
                return fail(format!("source {s} appears twice in {pairs:?}"));
            }
            if pairs[..i].iter().any(|p| p.1 == t) {
                return fail(format!("target {t} appears twice in {pairs:?}"));
            }
        }
        if channel_id.is_some_and(|c| c <= 0) {
            return fail("channel_id must be positive".into());
        }
        let op = Op::CollectivePermute {
            pairs: pairs.to_vec(),
            channel_id,
        };
        self.push(op, &[x], Shape::Array(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::test_util::shape_err_msg as err;
    use crate::dtype::ElementType::{Pred, F32, S32};
    use crate::lower::to_proto;
    use crate::ModuleBuilder;

    fn groups(g: &[&[i64]]) -> CollectiveAttrs {
        CollectiveAttrs {
            replica_groups: g.iter().map(|x| x.to_vec()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn shapes() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![6, 4]), "x").unwrap();
        let r = b.all_reduce_sum(x, &[]).unwrap();
        assert_eq!(b.shape(r).unwrap(), Shape::array(F32, vec![6, 4]));
        let pairs = groups(&[&[0, 1, 2], &[3, 4, 5]]);
        let g = b.all_gather(x, 1, pairs.clone()).unwrap();
        assert_eq!(b.shape(g).unwrap(), Shape::array(F32, vec![6, 12]));
        let add = m.scalar_reducer(BinaryOp::Add, F32).unwrap();
        let rs = b.reduce_scatter(x, 0, add, pairs.clone()).unwrap();
        assert_eq!(b.shape(rs).unwrap(), Shape::array(F32, vec![2, 4]));
        let a2a = b.all_to_all(x, 0, pairs).unwrap();
        assert_eq!(b.shape(a2a).unwrap(), Shape::array(F32, vec![6, 4]));
        let cp = b.collective_permute(x, &[(0, 1), (1, 0)], None).unwrap();
        assert_eq!(b.shape(cp).unwrap(), Shape::array(F32, vec![6, 4]));
        let max = m.scalar_reducer(BinaryOp::Max, F32).unwrap();
        let r = b.all_reduce(x, max, groups(&[&[0, 1]])).unwrap();
        assert_eq!(b.shape(r).unwrap(), Shape::array(F32, vec![6, 4]));
    }

    #[test]
    fn errors_name_the_op() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![6, 4]), "x").unwrap();
        let p = b.parameter(Shape::array(Pred, vec![2]), "p").unwrap();
        let add = m.scalar_reducer(BinaryOp::Add, F32).unwrap();
        let add_s32 = m.scalar_reducer(BinaryOp::Add, S32).unwrap();
        let e = err(b.all_gather(x, 0, CollectiveAttrs::default()), "all-gather");
        assert!(e.contains("replica count is unknown"));
        let e = err(b.all_gather(x, 0, groups(&[&[0, 1], &[2]])), "all-gather");
        assert!(e.contains("same size"));
        let e = err(b.all_gather(x, 2, groups(&[&[0, 1]])), "all-gather");
        assert!(e.contains("dimension 2"));
        let e = err(
            b.all_gather(x, 0, groups(&[&[0, 1], &[1, 2]])),
            "all-gather",
        );
        assert!(e.contains("twice"));
        let e = err(
            b.reduce_scatter(x, 1, add, groups(&[&[0, 1, 2]])),
            "reduce-scatter",
        );
        assert!(e.contains("does not divide"));
        let e = err(
            b.reduce_scatter(x, 0, add_s32, groups(&[&[0, 1]])),
            "reduce-scatter",
        );
        assert!(e.contains("signature"));
        let e = err(b.all_to_all(x, 1, groups(&[&[0, 1, 2]])), "all-to-all");
        assert!(e.contains("does not divide"));
        let e = err(
            b.all_reduce(x, add_s32, CollectiveAttrs::default()),
            "all-reduce",
        );
        assert!(e.contains("signature"));
        assert!(err(b.all_reduce_sum(p, &[]), "all-reduce").contains("pred"));
        let global = CollectiveAttrs {
            use_global_device_ids: true,
            ..Default::default()
        };
        let e = err(b.all_reduce(x, add, global), "all-reduce");
        assert!(e.contains("channel_id"));
        let e = err(
            b.collective_permute(x, &[(0, 1), (0, 2)], None),
            "collective-permute",
        );
        assert!(e.contains("source 0"));
        let e = err(
            b.collective_permute(x, &[(0, 1), (2, 1)], None),
            "collective-permute",
        );
        assert!(e.contains("target 1"));
        let e = err(
            b.collective_permute(x, &[(0, 1)], Some(0)),
            "collective-permute",
        );
        assert!(e.contains("channel_id"));
    }

    #[test]
    fn collectives_lower() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let x = b.parameter(Shape::array(F32, vec![4, 2]), "x").unwrap();
        let attrs = CollectiveAttrs {
            replica_groups: vec![vec![0, 1]],
            channel_id: Some(3),
            use_global_device_ids: true,
        };
        let add = m.scalar_reducer(BinaryOp::Add, F32).unwrap();
        let ar = b.all_reduce(x, add, attrs.clone()).unwrap();
        let ag = b.all_gather(ar, 1, attrs.clone()).unwrap();
        let rs = b.reduce_scatter(ag, 0, add, attrs.clone()).unwrap();
        let a2a = b.all_to_all(rs, 1, attrs).unwrap();
        let cp = b
            .collective_permute(a2a, &[(0, 1), (1, 0)], Some(7))
            .unwrap();
        assert_eq!(b.shape(cp).unwrap(), Shape::array(F32, vec![2, 4]));
        let e = b.finish(cp).unwrap();
        let p = to_proto(&m.build(e).unwrap()).unwrap();
        let entry = p.computations.last().unwrap();
        let find = |op: &str| entry.instructions.iter().find(|i| i.opcode == op).unwrap();
        let ar = find("all-reduce");
        assert_eq!(ar.replica_groups[0].replica_ids, vec![0, 1]);
        assert_eq!((ar.channel_id, ar.use_global_device_ids), (3, true));
        assert_eq!(ar.called_computation_ids, vec![p.computations[0].id]);
        assert_eq!(find("all-gather").dimensions, vec![1]);
        assert_eq!(find("reduce-scatter").dimensions, vec![0]);
        assert_eq!(find("all-to-all").dimensions, vec![1]);
        let cp = find("collective-permute");
        assert_eq!(cp.source_target_pairs.len(), 2);
        assert_eq!(cp.channel_id, 7);
    }
}
