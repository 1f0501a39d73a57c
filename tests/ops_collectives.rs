//! Collectives on 2 and 4 virtual CPU devices (the shared client has 4): all-reduce with replica
//! groups, all-gather, reduce-scatter, all-to-all, collective-permute, replica-id, and a
//! 2-partition SPMD program whose parameter carries a sharding.
mod common;
use common::check::{assert_close, assert_exact};
use common::inputs::*;
use common::*;
use hlo::ir::{BinaryOp, CollectiveAttrs, Sharding};
use hlo::ElementType::*;
use hlo::{Literal, ModuleBuilder};
use tpu::CompileOptions;

/// One random f32 [dims] input per replica, as literals and values.
fn per_replica(
    n: usize,
    len: usize,
    dims: &[i64],
    seed: u64,
) -> (Vec<Vec<Literal>>, Vec<Vec<f32>>) {
    let vals: Vec<Vec<f32>> = (0..n)
        .map(|r| normal_f32(&mut rng(seed + r as u64), len))
        .collect();
    let lits = vals.iter().map(|v| vec![lit(v, dims)]).collect();
    (lits, vals)
}

fn groups(g: &[&[i64]]) -> CollectiveAttrs {
    CollectiveAttrs {
        replica_groups: g.iter().map(|x| x.to_vec()).collect(),
        ..Default::default()
    }
}

fn elementwise_sum(vs: &[&Vec<f32>]) -> Vec<f64> {
    (0..vs[0].len())
        .map(|i| vs.iter().map(|v| f64::from(v[i])).sum())
        .collect()
}

#[test]
fn all_reduce_with_replica_groups_on_4_devices() {
    let (inputs, xs) = per_replica(4, 6, &[2, 3], 10);
    let m = module(&[arr_shape(F32, &[2, 3])], |b, p| {
        let max = b.module().scalar_reducer(BinaryOp::Max, F32)?;
        Ok(vec![
            b.all_reduce_sum(p[0], &[vec![0, 1], vec![2, 3]])?,
            b.all_reduce_sum(p[0], &[])?,
            b.all_reduce(p[0], max, groups(&[&[0, 3], &[1, 2]]))?,
        ])
    });
    let out = run_devices(&m, &CompileOptions::replicas(4), &inputs);
    for r in 0..4 {
        let g: [usize; 2] = if r < 2 { [0, 1] } else { [2, 3] };
        let want = elementwise_sum(&[&xs[g[0]], &xs[g[1]]]);
        assert_close(
            &f64s(&out[r][0]),
            &want,
            1e-6,
            1e-6,
            &format!("replica {r}: group sum"),
        );
        let want = elementwise_sum(&xs.iter().collect::<Vec<_>>());
        assert_close(
            &f64s(&out[r][1]),
            &want,
            1e-5,
            1e-6,
            &format!("replica {r}: sum of all"),
        );
        let other = [3, 2, 1, 0][r];
        let want: Vec<f64> = (0..6)
            .map(|i| f64::from(xs[r][i].max(xs[other][i])))
            .collect();
        assert_close(
            &f64s(&out[r][2]),
            &want,
            0.0,
            0.0,
            &format!("replica {r}: group max"),
        );
    }
}

#[test]
fn all_reduce_on_2_devices_s32() {
    let a = [1i32, -2, 300];
    let b2 = [-7i32, 5, 11];
    let m = module(&[arr_shape(S32, &[3])], |b, p| {
        Ok(vec![b.all_reduce_sum(p[0], &[vec![0, 1]])?])
    });
    let out = run_devices(
        &m,
        &CompileOptions::replicas(2),
        &[vec![lit(&a, &[3])], vec![lit(&b2, &[3])]],
    );
    for (r, o) in out.iter().enumerate() {
        assert_exact(&vals::<i32>(&o[0]), &[-6, 3, 311], &format!("replica {r}"));
    }
}

#[test]
fn all_gather_along_each_dim() {
    let (inputs, xs) = per_replica(4, 6, &[2, 3], 20);
    let m = module(&[arr_shape(F32, &[2, 3])], |b, p| {
        Ok(vec![
            b.all_gather(p[0], 0, groups(&[&[0, 1, 2, 3]]))?,
            b.all_gather(p[0], 1, groups(&[&[0, 1], &[2, 3]]))?,
        ])
    });
    let out = run_devices(&m, &CompileOptions::replicas(4), &inputs);
    // Dim 0 over all: the replicas' [2,3] blocks stacked in replica order.
    let want: Vec<f32> = xs.iter().flatten().copied().collect();
    for (r, o) in out.iter().enumerate() {
        assert_eq!(o[0].shape().dims, vec![8, 3]);
        assert_exact(
            &vals::<f32>(&o[0]),
            &want,
            &format!("replica {r}: gather dim 0"),
        );
        // Dim 1 within the pair: row i is [x_a row i, x_b row i].
        let (a, b) = if r < 2 { (0, 1) } else { (2, 3) };
        let want: Vec<f32> = (0..2)
            .flat_map(|i| {
                xs[a][i * 3..i * 3 + 3]
                    .iter()
                    .chain(&xs[b][i * 3..i * 3 + 3])
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(o[1].shape().dims, vec![2, 6]);
        assert_exact(
            &vals::<f32>(&o[1]),
            &want,
            &format!("replica {r}: gather dim 1"),
        );
    }
}

#[test]
fn reduce_scatter_gives_each_member_its_slice() {
    let (inputs, xs) = per_replica(4, 16, &[8, 2], 30);
    let m = module(&[arr_shape(F32, &[8, 2])], |b, p| {
        let add = b.module().scalar_reducer(BinaryOp::Add, F32)?;
        Ok(vec![
            b.reduce_scatter(p[0], 0, add, groups(&[&[0, 1, 2, 3]]))?,
            b.reduce_scatter(p[0], 0, add, groups(&[&[0, 1], &[2, 3]]))?,
        ])
    });
    let out = run_devices(&m, &CompileOptions::replicas(4), &inputs);
    let total = elementwise_sum(&xs.iter().collect::<Vec<_>>());
    for r in 0..4 {
        // All four: rows 2r..2r+2 of the sum.
        assert_eq!(out[r][0].shape().dims, vec![2, 2]);
        assert_close(
            &f64s(&out[r][0]),
            &total[r * 4..r * 4 + 4],
            1e-5,
            1e-6,
            &format!("replica {r}: 1/4"),
        );
        // Pairs: member k of its pair gets rows 4k..4k+4 of the pair's sum.
        let (a, b, k) = if r < 2 { (0, 1, r) } else { (2, 3, r - 2) };
        let pair = elementwise_sum(&[&xs[a], &xs[b]]);
        assert_close(
            &f64s(&out[r][1]),
            &pair[k * 8..k * 8 + 8],
            1e-6,
            1e-6,
            &format!("replica {r}: 1/2"),
        );
    }
}

#[test]
fn all_to_all_and_collective_permute() {
    let (inputs, xs) = per_replica(4, 8, &[4, 2], 40);
    let m = module(&[arr_shape(F32, &[4, 2])], |b, p| {
        Ok(vec![
            b.all_to_all(p[0], 0, groups(&[&[0, 1, 2, 3]]))?,
            b.collective_permute(p[0], &[(0, 1), (1, 2), (2, 3), (3, 0)], None)?,
            // Replica 3 receives nothing: zeros.
            b.collective_permute(p[0], &[(0, 2), (3, 1), (2, 0)], None)?,
        ])
    });
    let out = run_devices(&m, &CompileOptions::replicas(4), &inputs);
    for r in 0..4 {
        // Block i of replica r's output is block r of replica i's input (blocks are rows).
        let want: Vec<f32> = (0..4)
            .flat_map(|i| xs[i][r * 2..r * 2 + 2].to_vec())
            .collect();
        assert_exact(
            &vals::<f32>(&out[r][0]),
            &want,
            &format!("replica {r}: all-to-all"),
        );
        assert_exact(
            &vals::<f32>(&out[r][1]),
            &xs[(r + 3) % 4],
            &format!("replica {r}: ring"),
        );
        let want = match r {
            0 => xs[2].clone(),
            1 => xs[3].clone(),
            2 => xs[0].clone(),
            _ => vec![0.0; 8],
        };
        assert_exact(
            &vals::<f32>(&out[r][2]),
            &want,
            &format!("replica {r}: partial permute"),
        );
    }
}

#[test]
fn replica_id_on_each_device() {
    let m = module(&[], |b, _| Ok(vec![b.replica_id()?]));
    let out = run_devices(&m, &CompileOptions::replicas(4), &vec![vec![]; 4]);
    for (r, o) in out.iter().enumerate() {
        assert_exact(&vals::<u32>(&o[0]), &[r as u32], "replica-id");
    }
}

#[test]
fn spmd_two_partitions_with_sharded_parameter() {
    // Global x: f32[8,4], split along dim 0 over 2 partitions; y = 2x + 1 stays split, the
    // column sums s = sum_rows(x) are replicated (the partitioner inserts the all-reduce).
    let global = normal_f32(&mut rng(50), 32);
    let split = Sharding::split(2, 0, 2);
    let mb = ModuleBuilder::new("spmd");
    let e = mb.builder("main");
    let x = e.parameter(arr_shape(F32, &[8, 4]), "x").unwrap();
    e.set_sharding(x, split.clone()).unwrap();
    let y = e
        .add(
            e.mul(x, e.scalar(2f32).unwrap()).unwrap(),
            e.scalar(1f32).unwrap(),
        )
        .unwrap();
    let s = e.reduce_sum(x, &[0]).unwrap();
    let root = e.tuple(&[y, s]).unwrap();
    e.set_sharding(root, Sharding::Tuple(vec![split, Sharding::Replicated]))
        .unwrap();
    let entry = e.finish(root).unwrap();
    let m = mb.build(entry).unwrap();
    let shard = |p: usize| global[p * 16..p * 16 + 16].to_vec();
    let inputs = vec![vec![lit(&shard(0), &[4, 4])], vec![lit(&shard(1), &[4, 4])]];
    let out = run_devices(&m, &CompileOptions::spmd(2), &inputs);
    let sums: Vec<f64> = (0..4)
        .map(|c| (0..8).map(|r| f64::from(global[r * 4 + c])).sum())
        .collect();
    for (p, o) in out.iter().enumerate() {
        assert_eq!(
            o[0].shape().dims,
            vec![4, 4],
            "partition {p}: local shard of y"
        );
        let want: Vec<f32> = shard(p).iter().map(|v| 2.0 * v + 1.0).collect();
        assert_exact(
            &vals::<f32>(&o[0]),
            &want,
            &format!("partition {p}: y shard"),
        );
        assert_eq!(o[1].shape().dims, vec![4], "partition {p}: replicated s");
        assert_close(
            &f64s(&o[1]),
            &sums,
            1e-5,
            1e-6,
            &format!("partition {p}: s"),
        );
    }
}

#[test]
fn spmd_sharding_hint_on_an_intermediate() {
    // x is replicated; the hint splits -x along dim 0, and the root keeps that split, so each
    // partition returns its half. (partition-id is refused under SPMD partitioning by XLA:
    // "PartitionId instruction is not supported for SPMD partitioning since the meaning is
    // ambiguous"; see partition_id_in_a_manual_region. Without SPMD, 2 partitions are refused:
    // "num_partitions=2 but SPMD partitioning not enabled".)
    let split = Sharding::split(2, 0, 2);
    let mb = ModuleBuilder::new("spmd_hint");
    let e = mb.builder("main");
    let x = e.parameter(arr_shape(F32, &[4, 2]), "x").unwrap();
    e.set_sharding(x, Sharding::Replicated).unwrap();
    let h = e.sharding_hint(e.neg(x).unwrap(), split.clone()).unwrap();
    let y = e.mul(h, e.scalar(3f32).unwrap()).unwrap();
    e.set_sharding(y, split).unwrap();
    let entry = e.finish(y).unwrap();
    let m = mb.build(entry).unwrap();
    let xv: Vec<f32> = normal_f32(&mut rng(51), 8);
    let inputs = vec![vec![lit(&xv, &[4, 2])]; 2];
    let out = run_devices(&m, &CompileOptions::spmd(2), &inputs);
    for (p, o) in out.iter().enumerate() {
        assert_eq!(o[0].shape().dims, vec![2, 2]);
        let want: Vec<f32> = xv[p * 4..p * 4 + 4].iter().map(|v| -v * 3.0).collect();
        assert_exact(
            &vals::<f32>(&o[0]),
            &want,
            &format!("partition {p}: hinted shard"),
        );
    }
}

#[test]
fn partition_id_in_a_manual_region() {
    // Under SPMD, partition-id is only meaningful where the sharding is manual (as inside JAX's
    // shard_map); with a manual sharding each partition returns its own id.
    let mb = ModuleBuilder::new("pid");
    let e = mb.builder("main");
    let pid = e.partition_id().unwrap();
    e.set_sharding(pid, Sharding::Manual).unwrap();
    let entry = e.finish(pid).unwrap();
    let m = mb.build(entry).unwrap();
    let out = run_devices(&m, &CompileOptions::spmd(2), &[vec![], vec![]]);
    for (p, o) in out.iter().enumerate() {
        assert_exact(&vals::<u32>(&o[0]), &[p as u32], "partition-id");
    }
}
