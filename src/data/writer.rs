//! Writing instances as google-research/bert does (`write_instance_to_example_files`): padded
//! tf.train.Example records, dealt round-robin over the shards. Each shard is written under a
//! temporary name and renamed when complete, so an interrupted run leaves no plausible-looking
//! partial shard.
use super::example::PretrainingExample;
use super::instances::Instance;
use super::tfrecord::RecordWriter;
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// `DIR/pretrain-00003-of-00010.tfrecord`.
pub fn shard_path(dir: &Path, index: usize, count: usize) -> PathBuf {
    dir.join(format!("pretrain-{index:05}-of-{count:05}.tfrecord"))
}

/// The stored (padded) form of an instance.
pub fn instance_to_example(
    inst: &Instance,
    max_seq_length: usize,
    max_predictions: usize,
) -> Result<PretrainingExample> {
    let n = inst.tokens.len();
    let m = inst.masked.positions.len();
    if n > max_seq_length || m > max_predictions {
        return Err(anyhow!(
            "instance of {n} tokens / {m} predictions exceeds max_seq_length {max_seq_length} / \
             max_predictions {max_predictions}"
        ));
    }
    let pad = |mut v: Vec<i64>, len: usize| {
        v.resize(len, 0);
        v
    };
    let mut weights = vec![1.0f32; m];
    weights.resize(max_predictions, 0.0);
    Ok(PretrainingExample {
        input_ids: pad(
            inst.tokens.iter().map(|&t| i64::from(t)).collect(),
            max_seq_length,
        ),
        input_mask: pad(vec![1; n], max_seq_length),
        segment_ids: pad(inst.segment_ids().map(i64::from).collect(), max_seq_length),
        masked_lm_positions: pad(
            inst.masked
                .positions
                .iter()
                .map(|&p| i64::from(p))
                .collect(),
            max_predictions,
        ),
        masked_lm_ids: pad(
            inst.masked.labels.iter().map(|&l| i64::from(l)).collect(),
            max_predictions,
        ),
        masked_lm_weights: weights,
        next_sentence_label: i64::from(inst.is_random_next),
    })
}

struct Shard {
    path: PathBuf,
    partial: PathBuf,
    writer: RecordWriter<BufWriter<File>>,
}

/// Deals records round-robin over `num_shards` files.
pub struct ShardWriter {
    shards: Vec<Shard>,
    partials: Vec<PathBuf>,
    next: usize,
    max_seq_length: usize,
    max_predictions: usize,
}

/// A finished shard: its path, record count and size.
#[derive(Clone, Debug)]
pub struct WrittenShard {
    pub path: PathBuf,
    pub records: u64,
    pub bytes: u64,
}

impl ShardWriter {
    pub fn create(
        dir: &Path,
        num_shards: usize,
        max_seq_length: usize,
        max_predictions: usize,
    ) -> Result<ShardWriter> {
        if num_shards == 0 {
            return Err(anyhow!("--num-shards must be at least 1"));
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating output directory {}", dir.display()))?;
        let mut shards: Vec<Shard> = Vec::with_capacity(num_shards);
        for i in 0..num_shards {
            let path = shard_path(dir, i, num_shards);
            let partial = path.with_extension(format!("tfrecord.partial-{}", std::process::id()));
            let writer = match RecordWriter::create(&partial) {
                Ok(w) => w,
                Err(e) => {
                    for s in &shards {
                        let _ = std::fs::remove_file(&s.partial);
                    }
                    return Err(e).with_context(|| format!("creating {}", partial.display()));
                }
            };
            shards.push(Shard {
                path,
                partial,
                writer,
            });
        }
        Ok(ShardWriter {
            partials: shards.iter().map(|s| s.partial.clone()).collect(),
            shards,
            next: 0,
            max_seq_length,
            max_predictions,
        })
    }

    pub fn write(&mut self, inst: &Instance) -> Result<()> {
        let bytes = instance_to_example(inst, self.max_seq_length, self.max_predictions)?.encode();
        let Some(shard) = self.shards.get_mut(self.next) else {
            return Err(anyhow!("shard writer already finished"));
        };
        shard
            .writer
            .write_record(&bytes)
            .with_context(|| format!("writing {}", shard.partial.display()))?;
        self.next = (self.next + 1) % self.shards.len();
        Ok(())
    }

    /// Flushes, syncs and renames every shard to its final name.
    pub fn finish(mut self) -> Result<Vec<WrittenShard>> {
        let mut out = Vec::with_capacity(self.shards.len());
        for s in std::mem::take(&mut self.shards) {
            let (records, bytes) = (s.writer.records(), s.writer.bytes());
            let file = s
                .writer
                .finish()
                .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                .with_context(|| format!("flushing {}", s.partial.display()))?;
            file.sync_all()
                .with_context(|| format!("syncing {}", s.partial.display()))?;
            std::fs::rename(&s.partial, &s.path).with_context(|| {
                format!("renaming {} to {}", s.partial.display(), s.path.display())
            })?;
            out.push(WrittenShard {
                path: s.path,
                records,
                bytes,
            });
        }
        Ok(out)
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        // Partial files left by an error or an early drop; finished shards were renamed already.
        for p in &self.partials {
            let _ = std::fs::remove_file(p);
        }
    }
}
