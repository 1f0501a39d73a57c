//! An object read as a byte stream, for callers that want `std::io::Read` (the TFRecord
//! reader): one ranged GET from the current offset to the end, consumed chunk by chunk as the
//! HTTP body arrives, so a shard is never downloaded whole (to memory or disk) before its
//! first record is read. A broken stream is reopened at the offset reached (a few times); a
//! long skip reopens there instead of reading the bytes in between. Reopened streams are
//! pinned to the object's first ETag, so a shard replaced mid-read is an error, never a mix of
//! two versions.
use super::objects::{client, io_error, key};
use super::runtime::block_on;
use super::url::ObjectUrl;
use bytes::{Buf, Bytes};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use std::io::{self, Read};
use std::sync::Arc;

/// Attempts to (re)open the stream at one offset before a read fails.
const ATTEMPTS: u32 = 3;
/// Skips up to this many bytes are read through; longer ones reopen the stream at the target.
const SKIP_THROUGH: u64 = 1 << 20;

pub struct ObjectReader {
    client: Arc<dyn ObjectStore>,
    key: Key,
    url: ObjectUrl,
    size: u64,
    /// Offset of the next byte `read` returns.
    pos: u64,
    e_tag: Option<String>,
    stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    /// Received bytes not yet returned (they start at `pos`).
    chunk: Bytes,
}

impl ObjectReader {
    /// Opens `url` (one HEAD for its size and ETag; nothing is read yet).
    pub fn open(url: &ObjectUrl) -> io::Result<Self> {
        let c = client(url)?;
        let k = key(url);
        let (c2, k2) = (c.clone(), k.clone());
        let meta = block_on(async move { c2.head(&k2).await })?.map_err(io_error)?;
        Ok(ObjectReader {
            client: c,
            key: k,
            url: url.clone(),
            size: meta.size,
            pos: 0,
            e_tag: meta.e_tag,
            stream: None,
            chunk: Bytes::new(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Moves to byte `offset` (at most the size); the next read starts a GET there.
    pub fn seek_to(&mut self, offset: u64) {
        self.pos = offset.min(self.size);
        self.stream = None;
        self.chunk = Bytes::new();
    }

    /// Steps `n` bytes forward: through what was received and a short distance of the
    /// stream, else by reopening at the target.
    pub fn skip(&mut self, n: u64) -> io::Result<()> {
        let in_chunk = n.min(self.chunk.len() as u64);
        self.chunk.advance(in_chunk as usize);
        self.pos += in_chunk;
        let rest = n - in_chunk;
        if rest == 0 {
            return Ok(());
        }
        if rest > SKIP_THROUGH || self.stream.is_none() {
            self.seek_to(self.pos.saturating_add(rest));
            return Ok(());
        }
        let mut left = rest;
        let mut sink = [0u8; 8192];
        while left > 0 {
            let want = left.min(sink.len() as u64) as usize;
            let got = self.read(&mut sink[..want])?;
            if got == 0 {
                break;
            }
            left -= got as u64;
        }
        Ok(())
    }

    /// A GET of `pos..` pinned to the first ETag.
    fn open_stream(&self) -> io::Result<BoxStream<'static, object_store::Result<Bytes>>> {
        let options = GetOptions {
            range: Some(GetRange::Offset(self.pos)),
            if_match: self.e_tag.clone(),
            ..Default::default()
        };
        let (c, k) = (self.client.clone(), self.key.clone());
        let result = block_on(async move { c.get_opts(&k, options).await })?.map_err(io_error)?;
        Ok(result.into_stream())
    }

    /// The next non-empty chunk from `pos` (`None` at the end), reopening a broken stream.
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        let mut failures = 0;
        loop {
            if self.pos >= self.size {
                return Ok(None);
            }
            if self.stream.is_none() {
                match self.open_stream() {
                    Ok(s) => self.stream = Some(s),
                    // Retry what may pass (a dropped connection), not a missing object.
                    Err(e) if failures + 1 < ATTEMPTS && e.kind() == io::ErrorKind::Other => {
                        failures += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            match block_on(stream.next())? {
                Some(Ok(b)) if b.is_empty() => continue,
                Some(Ok(b)) => return Ok(Some(b)),
                Some(Err(e)) => {
                    self.stream = None;
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(io_error(e));
                    }
                    tracing::warn!(
                        "reading {} at byte {}: {e}; reopening the stream there",
                        self.url,
                        self.pos
                    );
                }
                // The body ended before the size HEAD reported: the caller sees the end of
                // input there (a TFRecord reader then reports the truncation).
                None => {
                    self.stream = None;
                    return Ok(None);
                }
            }
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.chunk.is_empty() {
            match self.next_chunk()? {
                Some(b) => self.chunk = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        self.chunk.copy_to_slice(&mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}
