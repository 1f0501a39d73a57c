//! Sharding annotations (XLA OpSharding) for SPMD partitioning.

/// How an instruction's value is laid out across partitions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Sharding {
    /// Every partition holds the whole value.
    Replicated,
    /// One device holds the whole value.
    Maximal { device: i64 },
    /// The value is tiled: `tile_dims[i]` tiles along dimension i, tile k on `devices[k]`
    /// (row-major over `tile_dims`). With `replicate_last`, the last entry of `tile_dims` is a
    /// replication factor, not a dimension.
    Tiled {
        tile_dims: Vec<i64>,
        devices: Vec<i64>,
        replicate_last: bool,
    },
    /// Manually partitioned (inside shard_map-like regions).
    Manual,
    /// One sharding per tuple element.
    Tuple(Vec<Sharding>),
}

impl Sharding {
    /// Tiles dimension `dim` of a rank-`rank` array over `n` devices 0..n.
    pub fn split(rank: usize, dim: usize, n: i64) -> Self {
        let mut tile_dims = vec![1; rank];
        if dim < rank {
            tile_dims[dim] = n;
        }
        Sharding::Tiled {
            tile_dims,
            devices: (0..n).collect(),
            replicate_last: false,
        }
    }

    /// XLA text form, e.g. `{devices=[2,1]0,1}` or `{replicated}`.
    pub fn to_text(&self) -> String {
        match self {
            Sharding::Replicated => "{replicated}".into(),
            Sharding::Maximal { device } => format!("{{maximal device={device}}}"),
            Sharding::Manual => "{manual}".into(),
            Sharding::Tiled {
                tile_dims,
                devices,
                replicate_last,
            } => {
                let d: Vec<String> = tile_dims.iter().map(|x| x.to_string()).collect();
                let v: Vec<String> = devices.iter().map(|x| x.to_string()).collect();
                let last = if *replicate_last {
                    " last_tile_dim_replicate"
                } else {
                    ""
                };
                format!("{{devices=[{}]{}{last}}}", d.join(","), v.join(","))
            }
            Sharding::Tuple(items) => {
                let inner: Vec<String> = items
                    .iter()
                    .map(|s| {
                        let t = s.to_text();
                        t[1..t.len() - 1].to_string()
                    })
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }
}
