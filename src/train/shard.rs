//! Host-side splitting of a whole batch into the replicas' shards (row-major literals). Pure
//! host work with no device involved, so an input feed can do it on its own thread
//! ([`split_inputs`]) and hand the loop shards that only need uploading.
use super::step::StepLayout;
use anyhow::{anyhow, bail, Result};
use hlo::{ArrayShape, Literal};

/// Step inputs `first..first + len` split into the replicas' shards, still on the host:
/// `shards[r]` are replica r's literals, in input order.
#[derive(Clone, Debug)]
pub struct HostShards {
    pub first: usize,
    pub shards: Vec<Vec<Literal>>,
}

/// Splits inputs `first..first + inputs.len()` of `layout`'s step, given for the whole batch of
/// `replicas` replicas (see [`StepLayout::batch_shape_for`]): each input of rows into the
/// replicas' shards, a dropout key copied to every replica as is. Checks every shape.
pub fn split_inputs(
    layout: &StepLayout,
    replicas: usize,
    first: usize,
    inputs: Vec<Literal>,
) -> Result<HostShards> {
    let n = replicas;
    if first + inputs.len() > layout.batch.len() {
        bail!(
            "the train step takes {} batch inputs; got inputs {first}..{}",
            layout.batch.len(),
            first + inputs.len()
        );
    }
    let mut shards: Vec<Vec<Literal>> = (0..n).map(|_| Vec::new()).collect();
    for (j, lit) in inputs.into_iter().enumerate() {
        let i = first + j;
        let spec = &layout.batch[i];
        let what = format!("batch input '{}'", spec.name);
        let parts = match layout.shard_dim(i) {
            Some(dim) => {
                let whole = layout
                    .batch_shape_for(i, n as u32)
                    .ok_or_else(|| anyhow!("{what}: not in the step's layout"))?;
                if lit.shape() != &whole {
                    bail!(
                        "{what} is {}, the step takes {whole} for the whole batch ({} per \
                         replica on {n} replicas; the batch size must be a multiple of {n})",
                        lit.shape(),
                        spec.shape
                    );
                }
                // One replica takes the literal as it is (no copy).
                if n == 1 {
                    vec![lit]
                } else {
                    split_literal(&lit, dim, n, &what)?
                }
            }
            None => {
                if lit.shape() != &spec.shape {
                    bail!("{what} is {}, the step takes {}", lit.shape(), spec.shape);
                }
                vec![lit; n]
            }
        };
        for (dst, part) in shards.iter_mut().zip(parts) {
            dst.push(part);
        }
    }
    Ok(HostShards { first, shards })
}

/// Splits `lit` along `dim` into `n` equal, contiguous parts (part r holds indices
/// `r*d/n .. (r+1)*d/n` of that dim, d its size). `what` names the input in errors.
pub fn split_literal(lit: &Literal, dim: usize, n: usize, what: &str) -> Result<Vec<Literal>> {
    let shape = lit.shape();
    if n == 0 {
        bail!("{what}: cannot split into 0 parts");
    }
    let Some(&size) = shape.dims.get(dim) else {
        bail!("{what} is {shape}: it has no dim {dim} to split into {n} replica shards");
    };
    let size = size as usize;
    if !size.is_multiple_of(n) {
        bail!(
            "{what} is {shape}: its dim {dim} (size {size}) does not split into {n} equal \
             replica shards; make the batch size a multiple of the device count"
        );
    }
    if n == 1 {
        return Ok(vec![lit.clone()]);
    }
    let outer: usize = shape.dims[..dim].iter().map(|&d| d as usize).product();
    let inner: usize = shape.dims[dim + 1..]
        .iter()
        .map(|&d| d as usize)
        .product::<usize>()
        * shape.ty.byte_size();
    let part = size / n;
    let bytes = lit.bytes();
    let mut dims = shape.dims.clone();
    dims[dim] = part as i64;
    (0..n)
        .map(|r| {
            let mut out = Vec::with_capacity(outer * part * inner);
            for o in 0..outer {
                let start = (o * size + r * part) * inner;
                out.extend_from_slice(&bytes[start..start + part * inner]);
            }
            Ok(Literal::from_bytes(
                ArrayShape::new(shape.ty, dims.clone()),
                out,
            )?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::BatchSpec;
    use hlo::ElementType;

    /// A step taking `ids: s32[2, 3]` per replica and a dropout key, on `replicas` replicas.
    fn layout(replicas: u32) -> StepLayout {
        StepLayout {
            params: vec![],
            opt_state: vec![],
            batch: vec![
                BatchSpec::new("ids", ElementType::S32, &[2, 3]),
                BatchSpec::rng_key("key"),
            ],
            metric_names: vec![],
            accumulation_steps: 1,
            replicas,
        }
    }

    #[test]
    fn inputs_split_into_row_shards_and_keys_go_to_every_replica() {
        let ids: Vec<i32> = (0..12).collect();
        let key = Literal::from_slice(&[7u64, 9], &[2]).unwrap();
        let whole = vec![Literal::from_slice(&ids, &[4, 3]).unwrap(), key.clone()];
        let split = split_inputs(&layout(2), 2, 0, whole).unwrap();
        assert_eq!(split.first, 0);
        assert_eq!(split.shards.len(), 2);
        for (r, shard) in split.shards.iter().enumerate() {
            let want: Vec<i32> = (r as i32 * 6..r as i32 * 6 + 6).collect();
            assert_eq!(shard[0].to_vec::<i32>().unwrap(), want);
            assert_eq!(shard[1].bytes(), key.bytes());
        }
        // Only the key, as a step after the fields were uploaded once would give it.
        let only_key = split_inputs(&layout(2), 2, 1, vec![key.clone()]).unwrap();
        assert_eq!((only_key.first, only_key.shards[1].len()), (1, 1));
        // One replica takes the rows as they are.
        let one = Literal::from_slice(&ids[..6], &[2, 3]).unwrap();
        let split = split_inputs(&layout(1), 1, 0, vec![one.clone(), key]).unwrap();
        assert_eq!(split.shards[0][0].bytes(), one.bytes());
    }

    #[test]
    fn wrong_shapes_and_ranges_are_errors_naming_the_input() {
        let ids = Literal::from_slice(&[0i32; 6], &[2, 3]).unwrap();
        let e = split_inputs(&layout(2), 2, 0, vec![ids.clone()]).unwrap_err();
        assert!(e.to_string().contains("batch input 'ids'"), "{e}");
        assert!(e.to_string().contains("multiple of 2"), "{e}");
        let e = split_inputs(&layout(1), 1, 1, vec![ids.clone(), ids]).unwrap_err();
        assert!(
            e.to_string()
                .contains("takes 2 batch inputs; got inputs 1..3"),
            "{e}"
        );
    }

    #[test]
    fn splits_rows_of_each_outer_index() {
        // [2, 4, 3]: split dim 1 into 2 -> part r has rows 2r..2r+2 of both outer blocks.
        let v: Vec<i32> = (0..24).collect();
        let lit = Literal::from_slice(&v, &[2, 4, 3]).unwrap();
        let parts = split_literal(&lit, 1, 2, "x").unwrap();
        assert_eq!(parts[0].shape().dims, vec![2, 2, 3]);
        let want0: Vec<i32> = [0..6, 12..18].into_iter().flatten().collect();
        let want1: Vec<i32> = [6..12, 18..24].into_iter().flatten().collect();
        assert_eq!(parts[0].to_vec::<i32>().unwrap(), want0);
        assert_eq!(parts[1].to_vec::<i32>().unwrap(), want1);
        // Dim 0 into 4: plain row blocks.
        let lit = Literal::from_slice(&v, &[4, 6]).unwrap();
        let parts = split_literal(&lit, 0, 4, "x").unwrap();
        for (r, p) in parts.iter().enumerate() {
            let want: Vec<i32> = (r as i32 * 6..r as i32 * 6 + 6).collect();
            assert_eq!(p.to_vec::<i32>().unwrap(), want);
        }
    }

    #[test]
    fn uneven_or_missing_dims_are_errors() {
        let lit = Literal::from_slice(&[1f32, 2., 3.], &[3]).unwrap();
        let e = split_literal(&lit, 0, 2, "batch input 'x'").unwrap_err();
        assert!(e.to_string().contains("does not split into 2"), "{e}");
        assert!(e.to_string().contains("batch input 'x'"), "{e}");
        let e = split_literal(&lit, 1, 2, "y").unwrap_err();
        assert!(e.to_string().contains("no dim 1"), "{e}");
    }
}
