//! Independent f64 references for HLO ops, written from XLA's operational semantics
//! (https://openxla.org/xla/operation_semantics). Nothing here builds or runs HLO.
use hlo::ir::{GatherDims, ScatterDims};
use ndarray::{ArrayD, Axis, Dimension, IxDyn};

pub type A = ArrayD<f64>;

/// An array from row-major values.
pub fn arr(data: &[f64], dims: &[usize]) -> A {
    ArrayD::from_shape_vec(IxDyn(dims), data.to_vec()).expect("data fills dims")
}

/// Row-major values of an array (whatever its memory layout).
pub fn flat(a: &A) -> Vec<f64> {
    a.iter().copied().collect()
}

pub fn udims(d: &[i64]) -> Vec<usize> {
    d.iter().map(|&x| x as usize).collect()
}

/// Calls `f` with every multi-index of `dims` in row-major order.
pub fn for_each_index(dims: &[usize], mut f: impl FnMut(&[usize])) {
    if dims.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; dims.len()];
    loop {
        f(&idx);
        let mut k = dims.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// dot_general: output dims are batch, lhs free, rhs free (each in increasing order).
pub fn dot_general(l: &A, r: &A, lb: &[usize], rb: &[usize], lc: &[usize], rc: &[usize]) -> A {
    let lfree: Vec<usize> = (0..l.ndim())
        .filter(|d| !lb.contains(d) && !lc.contains(d))
        .collect();
    let rfree: Vec<usize> = (0..r.ndim())
        .filter(|d| !rb.contains(d) && !rc.contains(d))
        .collect();
    let mut out: Vec<usize> = lb.iter().map(|&d| l.shape()[d]).collect();
    out.extend(lfree.iter().map(|&d| l.shape()[d]));
    out.extend(rfree.iter().map(|&d| r.shape()[d]));
    let csizes: Vec<usize> = lc.iter().map(|&d| l.shape()[d]).collect();
    let nb = lb.len();
    ArrayD::from_shape_fn(IxDyn(&out), |idx| {
        let idx = idx.slice();
        let mut li = vec![0usize; l.ndim()];
        let mut ri = vec![0usize; r.ndim()];
        for k in 0..nb {
            li[lb[k]] = idx[k];
            ri[rb[k]] = idx[k];
        }
        for (k, &d) in lfree.iter().enumerate() {
            li[d] = idx[nb + k];
        }
        for (k, &d) in rfree.iter().enumerate() {
            ri[d] = idx[nb + lfree.len() + k];
        }
        let mut s = 0.0;
        for_each_index(&csizes, |c| {
            for j in 0..c.len() {
                li[lc[j]] = c[j];
                ri[rc[j]] = c[j];
            }
            s += l[IxDyn(&li)] * r[IxDyn(&ri)];
        });
        s
    })
}

/// reduce over `dims` with `f`, starting each output element from `init`.
pub fn reduce(x: &A, dims: &[usize], init: f64, f: impl Fn(f64, f64) -> f64) -> A {
    let kept: Vec<usize> = (0..x.ndim()).filter(|d| !dims.contains(d)).collect();
    let out_dims: Vec<usize> = kept.iter().map(|&d| x.shape()[d]).collect();
    let mut out = ArrayD::from_elem(IxDyn(&out_dims), init);
    for (idx, &v) in x.indexed_iter() {
        let o: Vec<usize> = kept.iter().map(|&d| idx[d]).collect();
        let slot = &mut out[IxDyn(&o)];
        *slot = f(*slot, v);
    }
    out
}

/// One window dimension: size, stride, low/high padding, window and base dilation.
#[derive(Clone, Copy, Debug)]
pub struct Win {
    pub size: i64,
    pub stride: i64,
    pub lo: i64,
    pub hi: i64,
    pub wdil: i64,
    pub bdil: i64,
}

impl Win {
    pub fn new(size: i64, stride: i64, lo: i64, hi: i64) -> Self {
        Win {
            size,
            stride,
            lo,
            hi,
            wdil: 1,
            bdil: 1,
        }
    }
}

/// reduce-window: padding and base-dilation holes contribute nothing (they hold `init`).
pub fn reduce_window(x: &A, win: &[Win], init: f64, f: impl Fn(f64, f64) -> f64) -> A {
    let n = x.ndim();
    let out_dims: Vec<usize> = (0..n)
        .map(|i| {
            let w = win[i];
            let base = (x.shape()[i] as i64 - 1) * w.bdil + 1 + w.lo + w.hi;
            let eff = (w.size - 1) * w.wdil + 1;
            if base < eff {
                0
            } else {
                ((base - eff) / w.stride + 1) as usize
            }
        })
        .collect();
    let wsizes: Vec<usize> = win.iter().map(|w| w.size as usize).collect();
    ArrayD::from_shape_fn(IxDyn(&out_dims), |o| {
        let o = o.slice();
        let mut acc = init;
        for_each_index(&wsizes, |w| {
            let mut xi = vec![0usize; n];
            for d in 0..n {
                let wd = win[d];
                let p = o[d] as i64 * wd.stride + w[d] as i64 * wd.wdil - wd.lo;
                let extent = (x.shape()[d] as i64 - 1) * wd.bdil + 1;
                if p < 0 || p >= extent || p % wd.bdil != 0 {
                    return;
                }
                xi[d] = (p / wd.bdil) as usize;
            }
            acc = f(acc, x[IxDyn(&xi)]);
        });
        acc
    })
}

/// transpose: output dimension i is operand dimension perm[i].
pub fn transpose(x: &A, perm: &[usize]) -> A {
    x.clone()
        .permuted_axes(IxDyn(perm))
        .as_standard_layout()
        .to_owned()
}

pub fn reverse(x: &A, dims: &[usize]) -> A {
    let mut v = x.clone();
    for &d in dims {
        v.invert_axis(Axis(d));
    }
    v.as_standard_layout().to_owned()
}

/// broadcast_in_dim: operand dimension i maps to output dimension dims[i] (size equal or 1).
pub fn broadcast_in_dim(x: &A, out: &[usize], dims: &[usize]) -> A {
    ArrayD::from_shape_fn(IxDyn(out), |idx| {
        let xi: Vec<usize> = (0..x.ndim())
            .map(|i| if x.shape()[i] == 1 { 0 } else { idx[dims[i]] })
            .collect();
        x[IxDyn(&xi)]
    })
}

pub fn reshape(x: &A, dims: &[usize]) -> A {
    arr(&flat(x), dims)
}

/// slice with strides: element k of dimension d is operand index start[d] + k * stride[d].
pub fn slice(x: &A, start: &[usize], limit: &[usize], stride: &[usize]) -> A {
    let out: Vec<usize> = (0..x.ndim())
        .map(|d| (limit[d] - start[d]).div_ceil(stride[d]))
        .collect();
    ArrayD::from_shape_fn(IxDyn(&out), |idx| {
        let xi: Vec<usize> = (0..x.ndim())
            .map(|d| start[d] + idx[d] * stride[d])
            .collect();
        x[IxDyn(&xi)]
    })
}

pub fn concatenate(xs: &[&A], dim: usize) -> A {
    let views: Vec<_> = xs.iter().map(|a| a.view()).collect();
    ndarray::concatenate(Axis(dim), &views)
        .expect("concatenable")
        .as_standard_layout()
        .to_owned()
}

/// pad with (low, high, interior) per dimension; negative low/high crop.
pub fn pad(x: &A, value: f64, cfg: &[(i64, i64, i64)]) -> A {
    let out: Vec<usize> = (0..x.ndim())
        .map(|d| {
            let n = x.shape()[d] as i64;
            let (lo, hi, int) = cfg[d];
            (lo + hi + n + (n - 1).max(0) * int).max(0) as usize
        })
        .collect();
    let mut o = ArrayD::from_elem(IxDyn(&out), value);
    for (idx, &v) in x.indexed_iter() {
        let mut oi = vec![0usize; x.ndim()];
        let mut inside = true;
        for d in 0..x.ndim() {
            let (lo, _, int) = cfg[d];
            let p = lo + idx[d] as i64 * (int + 1);
            if p < 0 || p >= out[d] as i64 {
                inside = false;
                break;
            }
            oi[d] = p as usize;
        }
        if inside {
            o[IxDyn(&oi)] = v;
        }
    }
    o
}

/// XLA clamps dynamic-slice/update start indices to `[0, dim - size]`.
fn clamp_starts(dims: &[usize], sizes: &[usize], starts: &[i64]) -> Vec<usize> {
    (0..dims.len())
        .map(|d| starts[d].clamp(0, (dims[d] - sizes[d]) as i64) as usize)
        .collect()
}

pub fn dynamic_slice(x: &A, starts: &[i64], sizes: &[usize]) -> A {
    let s = clamp_starts(x.shape(), sizes, starts);
    ArrayD::from_shape_fn(IxDyn(sizes), |idx| {
        let xi: Vec<usize> = (0..x.ndim()).map(|d| s[d] + idx[d]).collect();
        x[IxDyn(&xi)]
    })
}

pub fn dynamic_update_slice(x: &A, upd: &A, starts: &[i64]) -> A {
    let s = clamp_starts(x.shape(), upd.shape(), starts);
    let mut o = x.clone();
    for (idx, &v) in upd.indexed_iter() {
        let xi: Vec<usize> = (0..x.ndim()).map(|d| s[d] + idx[d]).collect();
        o[IxDyn(&xi)] = v;
    }
    o
}

/// The start-index vector of batch position `g` (start-indices dims without index_vector_dim).
fn index_vector(indices: &A, ivd: usize, g: &[usize]) -> Vec<i64> {
    if ivd == indices.ndim() {
        return vec![indices[IxDyn(g)] as i64];
    }
    let mut full: Vec<usize> = g.to_vec();
    full.insert(ivd, 0);
    (0..indices.shape()[ivd])
        .map(|k| {
            full[ivd] = k;
            indices[IxDyn(&full)] as i64
        })
        .collect()
}

/// Batch position of start-indices dimension `d` within `g` (which omits index_vector_dim).
fn batch_pos(d: usize, ivd: usize) -> usize {
    if d < ivd {
        d
    } else {
        d - 1
    }
}

/// gather with general dimension numbers (including operand/start-indices batching dims).
pub fn gather(x: &A, indices: &A, dn: &GatherDims, slice_sizes: &[usize]) -> A {
    let ivd = dn.index_vector_dim as usize;
    let offset_dims = udims(&dn.offset_dims);
    let collapsed = udims(&dn.collapsed_slice_dims);
    let obatch = udims(&dn.operand_batching_dims);
    let ibatch = udims(&dn.start_indices_batching_dims);
    let sim = udims(&dn.start_index_map);
    let batch_sizes: Vec<usize> = (0..indices.ndim())
        .filter(|&d| d != ivd)
        .map(|d| indices.shape()[d])
        .collect();
    let window_operand_dims: Vec<usize> = (0..x.ndim())
        .filter(|d| !collapsed.contains(d) && !obatch.contains(d))
        .collect();
    let out_rank = batch_sizes.len() + offset_dims.len();
    let batch_out_dims: Vec<usize> = (0..out_rank).filter(|d| !offset_dims.contains(d)).collect();
    let mut out = vec![0usize; out_rank];
    for (k, &d) in batch_out_dims.iter().enumerate() {
        out[d] = batch_sizes[k];
    }
    for (k, &d) in offset_dims.iter().enumerate() {
        out[d] = slice_sizes[window_operand_dims[k]];
    }
    ArrayD::from_shape_fn(IxDyn(&out), |o| {
        let o = o.slice();
        let g: Vec<usize> = batch_out_dims.iter().map(|&d| o[d]).collect();
        let s = index_vector(indices, ivd, &g);
        let mut start = vec![0i64; x.ndim()];
        for (k, &d) in sim.iter().enumerate() {
            start[d] = s[k];
        }
        for (k, &d) in obatch.iter().enumerate() {
            start[d] = g[batch_pos(ibatch[k], ivd)] as i64;
        }
        let xi: Vec<usize> = (0..x.ndim())
            .map(|d| start[d].clamp(0, (x.shape()[d] - slice_sizes[d]) as i64) as usize)
            .collect();
        let mut xi = xi;
        for (k, &d) in offset_dims.iter().enumerate() {
            xi[window_operand_dims[k]] += o[d];
        }
        x[IxDyn(&xi)]
    })
}

/// scatter with general dimension numbers; windows that do not fit the operand are skipped.
pub fn scatter(
    x: &A,
    indices: &A,
    updates: &A,
    dn: &ScatterDims,
    combine: impl Fn(f64, f64) -> f64,
) -> A {
    let ivd = dn.index_vector_dim as usize;
    let uwd = udims(&dn.update_window_dims);
    let inserted = udims(&dn.inserted_window_dims);
    let ibatch_in = udims(&dn.input_batching_dims);
    let ibatch_idx = udims(&dn.scatter_indices_batching_dims);
    let sdod = udims(&dn.scatter_dims_to_operand_dims);
    let window_operand_dims: Vec<usize> = (0..x.ndim())
        .filter(|d| !inserted.contains(d) && !ibatch_in.contains(d))
        .collect();
    let scatter_dims: Vec<usize> = (0..updates.ndim()).filter(|d| !uwd.contains(d)).collect();
    // Window sizes per operand dim (1 for inserted/batching dims), to check whole windows fit.
    let mut wsize = vec![1usize; x.ndim()];
    for (k, &d) in uwd.iter().enumerate() {
        wsize[window_operand_dims[k]] = updates.shape()[d];
    }
    let mut o = x.clone();
    for (u, &v) in updates.indexed_iter() {
        let g: Vec<usize> = scatter_dims.iter().map(|&d| u[d]).collect();
        let s = index_vector(indices, ivd, &g);
        let mut start = vec![0i64; x.ndim()];
        for (k, &d) in sdod.iter().enumerate() {
            start[d] = s[k];
        }
        for (k, &d) in ibatch_in.iter().enumerate() {
            start[d] = g[batch_pos(ibatch_idx[k], ivd)] as i64;
        }
        let fits = (0..x.ndim())
            .all(|d| start[d] >= 0 && start[d] + wsize[d] as i64 <= x.shape()[d] as i64);
        if !fits {
            continue;
        }
        let mut xi: Vec<usize> = start.iter().map(|&s| s as usize).collect();
        for (k, &d) in uwd.iter().enumerate() {
            xi[window_operand_dims[k]] += u[d];
        }
        let slot = &mut o[IxDyn(&xi)];
        *slot = combine(*slot, v);
    }
    o
}

/// Sorts every lane along `dim` of all `xs` by `less` on the first array's values (stable).
pub fn sort_by_key(xs: &[&A], dim: usize, less: impl Fn(f64, f64) -> bool) -> Vec<A> {
    let key = xs[0];
    let mut outs: Vec<A> = xs.iter().map(|a| (*a).clone()).collect();
    let n = key.shape()[dim];
    let mut lane_dims = key.shape().to_vec();
    lane_dims[dim] = 1;
    for_each_index(&lane_dims, |base| {
        let at = |k: usize| {
            let mut i = base.to_vec();
            i[dim] = k;
            i
        };
        let mut perm: Vec<usize> = (0..n).collect();
        // A stable merge sort ordered by `less` (as XLA's stable sort with a strict comparator).
        perm.sort_by(|&a, &b| {
            let (ka, kb) = (key[IxDyn(&at(a))], key[IxDyn(&at(b))]);
            if less(ka, kb) {
                std::cmp::Ordering::Less
            } else if less(kb, ka) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        for (src, out) in xs.iter().zip(outs.iter_mut()) {
            for (k, &p) in perm.iter().enumerate() {
                out[IxDyn(&at(k))] = src[IxDyn(&at(p))];
            }
        }
    });
    outs
}

/// Applies `f` to every lane along `axis`, writing the lane it returns.
pub fn map_lanes(x: &A, axis: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> A {
    let mut o = x.clone();
    for mut lane in o.lanes_mut(Axis(axis)) {
        let v: Vec<f64> = lane.iter().copied().collect();
        for (dst, r) in lane.iter_mut().zip(f(&v)) {
            *dst = r;
        }
    }
    o
}

pub fn softmax(x: &A, axis: usize) -> A {
    map_lanes(x, axis, |v| {
        let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = v.iter().map(|&a| (a - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|a| a / s).collect()
    })
}

fn lse(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|&a| (a - m).exp()).sum::<f64>().ln()
}

pub fn log_softmax(x: &A, axis: usize) -> A {
    map_lanes(x, axis, |v| {
        let l = lse(v);
        v.iter().map(|a| a - l).collect()
    })
}

/// logsumexp over `axis` (the axis is removed).
pub fn logsumexp(x: &A, axis: usize) -> A {
    let lanes: Vec<f64> = x
        .lanes(Axis(axis))
        .into_iter()
        .map(|l| lse(&l.iter().copied().collect::<Vec<_>>()))
        .collect();
    let mut dims = x.shape().to_vec();
    dims.remove(axis);
    arr(&lanes, &dims)
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Population variance (divide by n), as layer norm uses.
pub fn variance(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / v.len() as f64
}

/// Layer norm over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta.
pub fn layer_norm(x: &A, gamma: &[f64], beta: &[f64], eps: f64) -> A {
    map_lanes(x, x.ndim() - 1, |v| {
        let (m, var) = (mean(v), variance(v));
        let r = 1.0 / (var + eps).sqrt();
        v.iter()
            .enumerate()
            .map(|(i, a)| (a - m) * r * gamma[i] + beta[i])
            .collect()
    })
}

pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

pub fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

pub fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

/// Index of the first maximum of each lane along `axis` (the axis is removed).
pub fn argmax(x: &A, axis: usize) -> Vec<i64> {
    x.lanes(Axis(axis))
        .into_iter()
        .map(|l| {
            let mut best = 0;
            for (i, &v) in l.iter().enumerate() {
                if v > l[best] {
                    best = i;
                }
            }
            best as i64
        })
        .collect()
}

/// one_hot: `[.., depth]`, 1 where the trailing index equals the index (out-of-range: all 0).
pub fn one_hot(indices: &[i64], depth: usize) -> Vec<f64> {
    let mut out = vec![0.0; indices.len() * depth];
    for (i, &k) in indices.iter().enumerate() {
        if k >= 0 && (k as usize) < depth {
            out[i * depth + k as usize] = 1.0;
        }
    }
    out
}

/// Round half away from zero (XLA round-nearest-afz; Rust's `f64::round`).
pub fn round_afz(x: f64) -> f64 {
    x.round()
}

/// Round half to even (XLA round-nearest-even).
pub fn round_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// XLA's sign: -1, 0 or 1 (and NaN for NaN).
pub fn sign(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Logistic sigmoid.
pub fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
