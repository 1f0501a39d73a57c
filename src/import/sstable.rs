//! The LevelDB table format, as TensorFlow's `tensorflow/core/lib/io/table*` writes it: the
//! index of a TF checkpoint (`<prefix>.index`).
//!
//! ```text
//! [data block]* [metaindex block] [index block] [footer: 48 bytes]
//! footer = metaindex handle, index handle (varint64 offset, varint64 size each), zero padding
//!          to 40 bytes, magic 0xdb4775248b80fb57 (fixed64)
//! block  = entries, restart offsets (fixed32 each), number of restarts (fixed32),
//!          then a 5-byte trailer: compression type (1 byte), masked CRC32C of contents + type
//! entry  = shared key bytes, unshared key bytes, value length (varint32 each), key suffix, value
//! ```
//! The index block maps each data block's last key (or a separator) to its handle. Every block's
//! checksum is verified; keys must be strictly increasing. TensorFlow writes checkpoint indexes
//! uncompressed (`TableBuilderOptions` sets `kNoCompression`, so that TF 1.0 can read them), so
//! a Snappy block is reported as unsupported rather than decoded.
use super::ImportError;
use std::path::Path;

/// Size of the footer at the end of every table.
pub const FOOTER_LEN: usize = 48;
/// LevelDB's table magic number (`kTableMagicNumber`), little-endian in the footer's last 8 bytes.
pub const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Compression type byte plus the masked CRC32C.
const TRAILER_LEN: usize = 5;
const MASK_DELTA: u32 = 0xa282_ead8;

/// LevelDB/TFRecord CRC masking: rotate right by 15 bits and add a constant.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// The inverse of [`mask_crc`].
pub fn unmask_crc(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// (key, value) pairs in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a block lives in the file (not counting its trailer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

/// Every (key, value) of the table in `bytes` (the whole file named `path`), in key order.
pub fn parse_table(bytes: &[u8], path: &Path) -> Result<Entries, ImportError> {
    let corrupt = |msg: String| ImportError::corrupt(path, msg);
    if bytes.len() < FOOTER_LEN {
        return Err(corrupt(format!(
            "{} bytes is shorter than a table footer ({FOOTER_LEN} bytes): the file is truncated",
            bytes.len()
        )));
    }
    let footer = &bytes[bytes.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(le_array(&footer[40..]));
    if magic != TABLE_MAGIC {
        return Err(corrupt(format!(
            "no table magic number at the end (found {magic:#018x}): not a TensorFlow checkpoint \
             index, or truncated"
        )));
    }
    let mut pos = 0;
    let _metaindex = read_handle(footer, &mut pos).map_err(|m| corrupt(format!("footer: {m}")))?;
    let index = read_handle(footer, &mut pos).map_err(|m| corrupt(format!("footer: {m}")))?;
    let body = &bytes[..bytes.len() - FOOTER_LEN];
    let index_block = read_block(body, index, path, "index block")?;
    let mut out: Entries = vec![];
    for (i, (_, handle)) in block_entries(&index_block)
        .map_err(|m| corrupt(format!("index block: {m}")))?
        .into_iter()
        .enumerate()
    {
        let mut p = 0;
        let handle = read_handle(&handle, &mut p)
            .map_err(|m| corrupt(format!("index block entry {i}: {m}")))?;
        let what = format!(
            "data block {i} (offset {}, {} bytes)",
            handle.offset, handle.size
        );
        let block = read_block(body, handle, path, &what)?;
        let entries = block_entries(&block).map_err(|m| corrupt(format!("{what}: {m}")))?;
        for (key, value) in entries {
            if let Some((last, _)) = out.last() {
                if key <= *last {
                    return Err(corrupt(format!(
                        "{what}: key {:?} does not follow {:?} (keys must increase)",
                        String::from_utf8_lossy(&key),
                        String::from_utf8_lossy(last)
                    )));
                }
            }
            out.push((key, value));
        }
    }
    Ok(out)
}

/// Reads the whole table file at `path`.
pub fn read_table(path: &Path) -> Result<Entries, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, e))?;
    parse_table(&bytes, path)
}

/// The contents of the block at `h`, after checking that it and its trailer lie inside `body`
/// and that the checksum matches.
fn read_block(
    body: &[u8],
    h: BlockHandle,
    path: &Path,
    what: &str,
) -> Result<Vec<u8>, ImportError> {
    let end = h
        .offset
        .checked_add(h.size)
        .and_then(|e| e.checked_add(TRAILER_LEN as u64))
        .filter(|&e| e <= body.len() as u64)
        .ok_or_else(|| {
            ImportError::corrupt(
                path,
                format!(
                    "{what} at offset {} with {} bytes runs past the end of the table ({} bytes \
                     before the footer): the file is truncated or corrupt",
                    h.offset,
                    h.size,
                    body.len()
                ),
            )
        })?;
    let start = h.offset as usize;
    let n = h.size as usize;
    let block = &body[start..end as usize];
    let stored = unmask_crc(u32::from_le_bytes(le_array(&block[n + 1..])));
    let actual = crc32c::crc32c(&block[..n + 1]);
    if stored != actual {
        return Err(ImportError::corrupt(
            path,
            format!(
                "{what}: CRC32C mismatch (stored {stored:#010x}, computed {actual:#010x}): the \
                 index file is corrupt; copy it again from the original checkpoint"
            ),
        ));
    }
    match block[n] {
        0 => Ok(block[..n].to_vec()),
        1 => Err(ImportError::unsupported(
            path,
            format!(
                "{what} is Snappy-compressed; TensorFlow writes checkpoint indexes uncompressed, \
                 so re-save the checkpoint with TensorFlow (tf.train.Saver / tf.train.Checkpoint)"
            ),
        )),
        t => Err(ImportError::corrupt(
            path,
            format!("{what}: unknown compression type {t}"),
        )),
    }
}

/// Decodes a block's entries, undoing the key prefix compression; checks the restart array.
fn block_entries(block: &[u8]) -> Result<Entries, String> {
    if block.len() < 4 {
        return Err(format!("{} bytes is too short for a block", block.len()));
    }
    let num_restarts = u32::from_le_bytes(le_array(&block[block.len() - 4..])) as usize;
    let restarts_at = num_restarts
        .checked_mul(4)
        .and_then(|r| block.len().checked_sub(4 + r))
        .ok_or_else(|| format!("{num_restarts} restart points do not fit the block"))?;
    let restarts: Vec<usize> = block[restarts_at..block.len() - 4]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(le_array(c)) as usize)
        .collect();
    let data = &block[..restarts_at];
    let mut entries = vec![];
    let mut key: Vec<u8> = vec![];
    let mut pos = 0;
    let mut next_restart = 0;
    while pos < data.len() {
        let at = pos;
        let shared = read_varint(data, &mut pos)? as usize;
        let unshared = read_varint(data, &mut pos)? as usize;
        let value_len = read_varint(data, &mut pos)? as usize;
        if next_restart < restarts.len() && restarts[next_restart] == at {
            if shared != 0 {
                return Err(format!(
                    "the entry at restart point {at} shares a key prefix"
                ));
            }
            next_restart += 1;
        }
        if shared > key.len() {
            return Err(format!(
                "the entry at {at} shares {shared} key bytes, the previous key has {}",
                key.len()
            ));
        }
        let suffix = take(data, &mut pos, unshared).map_err(|e| format!("entry at {at}: {e}"))?;
        let value = take(data, &mut pos, value_len).map_err(|e| format!("entry at {at}: {e}"))?;
        key.truncate(shared);
        key.extend_from_slice(suffix);
        entries.push((key.clone(), value.to_vec()));
    }
    if next_restart != restarts.len() {
        return Err(format!(
            "restart point {} ({}) is not the start of an entry",
            next_restart,
            restarts.get(next_restart).copied().unwrap_or(0)
        ));
    }
    Ok(entries)
}

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = pos
        .checked_add(n)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| format!("{n} bytes at {pos} run past the end of the block"))?;
    let out = &data[*pos..end];
    *pos = end;
    Ok(out)
}

fn read_handle(data: &[u8], pos: &mut usize) -> Result<BlockHandle, String> {
    Ok(BlockHandle {
        offset: read_varint(data, pos)?,
        size: read_varint(data, pos)?,
    })
}

/// A protobuf-style varint (up to 64 bits).
fn read_varint(data: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let &byte = data
            .get(*pos)
            .ok_or_else(|| format!("varint at {pos} runs past the end"))?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(format!("varint ending at {pos} is longer than 10 bytes"))
}

/// The first N bytes of `b` as an array (callers slice exactly N or more).
fn le_array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[..N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A block as LevelDB's BlockBuilder writes it: prefix-compressed keys, a restart point
    /// every `interval` entries.
    fn block(entries: &[(&[u8], &[u8])], interval: usize) -> Vec<u8> {
        let mut out = vec![];
        let mut restarts = vec![];
        let mut last: &[u8] = &[];
        for (i, (k, v)) in entries.iter().enumerate() {
            let shared = if i % interval == 0 {
                restarts.push(out.len() as u32);
                0
            } else {
                last.iter()
                    .zip(k.iter())
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            varint(shared as u64, &mut out);
            varint((k.len() - shared) as u64, &mut out);
            varint(v.len() as u64, &mut out);
            out.extend_from_slice(&k[shared..]);
            out.extend_from_slice(v);
            last = k;
        }
        for r in &restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        out
    }

    fn append_block(file: &mut Vec<u8>, contents: &[u8]) -> Vec<u8> {
        let mut handle = vec![];
        varint(file.len() as u64, &mut handle);
        varint(contents.len() as u64, &mut handle);
        file.extend_from_slice(contents);
        file.push(0);
        let crc = crc32c::crc32c(&file[file.len() - contents.len() - 1..]);
        file.extend_from_slice(&mask_crc(crc).to_le_bytes());
        handle
    }

    /// A table of several data blocks (real checkpoint indexes up to BERT-large with optimizer
    /// slots fit TensorFlow's 256 KiB block, so the fixture from TensorFlow has one).
    fn table(blocks: &[Entries]) -> Vec<u8> {
        let mut file = vec![];
        let mut index = vec![];
        for b in blocks {
            let refs: Vec<(&[u8], &[u8])> = b.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            let handle = append_block(&mut file, &block(&refs, 3));
            index.push((b.last().map(|e| e.0.clone()).unwrap_or_default(), handle));
        }
        let meta = append_block(&mut file, &block(&[], 16));
        let refs: Vec<(&[u8], &[u8])> = index.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let idx = append_block(&mut file, &block(&refs, 1));
        let mut footer = vec![];
        footer.extend_from_slice(&meta);
        footer.extend_from_slice(&idx);
        footer.resize(40, 0);
        footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
        file.extend_from_slice(&footer);
        file
    }

    fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn crc_mask_round_trips_and_matches_leveldb() {
        // LevelDB's crc32c_test: Mask(Value("foo")) != Value("foo"), Unmask(Mask(x)) == x.
        let c = crc32c::crc32c(b"foo");
        assert_ne!(mask_crc(c), c);
        assert_eq!(unmask_crc(mask_crc(c)), c);
        assert_eq!(unmask_crc(unmask_crc(mask_crc(mask_crc(c)))), c);
        // The CRC32C check value (RFC 3720) and its mask as TFRecord writers compute it.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn several_blocks_with_shared_prefixes_read_back_in_order() {
        let blocks = vec![
            vec![
                kv("", "header"),
                kv("bert/a", "1"),
                kv("bert/ab", "22"),
                kv("bert/abc", "333"),
                kv("bert/abd", ""),
            ],
            vec![kv("bert/b", "4"), kv("cls/x", "55555")],
            vec![kv("global_step", "6")],
        ];
        let bytes = table(&blocks);
        let got = parse_table(&bytes, Path::new("t.index")).unwrap();
        let want: Vec<_> = blocks.concat();
        assert_eq!(got, want);
    }

    #[test]
    fn a_flipped_byte_or_a_cut_is_reported() {
        let bytes = table(&[vec![kv("", "h"), kv("a", "1"), kv("b", "2")]]);
        let mut bad = bytes.clone();
        bad[3] ^= 0x40;
        let e = parse_table(&bad, Path::new("x/model.ckpt.index")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("x/model.ckpt.index"), "{msg}");
        assert!(msg.contains("CRC32C mismatch"), "{msg}");
        let e = parse_table(&bytes[..bytes.len() - 1], Path::new("t.index")).unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
        let e = parse_table(&bytes[..20], Path::new("t.index")).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn out_of_order_keys_are_rejected() {
        let bytes = table(&[vec![kv("b", "1")], vec![kv("a", "2")]]);
        let e = parse_table(&bytes, Path::new("t.index")).unwrap_err();
        assert!(e.to_string().contains("keys must increase"), "{e}");
    }
}
