//! TFRecord framing: each record is
//! `u64 length (LE) | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data)`,
//! where `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8` (TensorFlow's
//! core/lib/hash/crc32c.h and record_writer.cc). Reading verifies both CRCs and names the file and
//! byte offset of any damage.
use super::error::{DataError, Result};
use crate::storage::Input;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MASK_DELTA: u32 = 0xa282_ead8;
/// Bytes of framing before a record's data (length + its CRC).
pub const HEADER_LEN: u64 = 12;
/// Bytes of framing after a record's data (its CRC).
pub const FOOTER_LEN: u64 = 4;

/// TensorFlow's masked CRC32C (so that CRCs of data containing CRCs do not degenerate).
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
        .rotate_right(15)
        .wrapping_add(MASK_DELTA)
}

/// The full framed bytes of one record.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + (HEADER_LEN + FOOTER_LEN) as usize);
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Writes framed records to a byte sink.
pub struct RecordWriter<W: Write> {
    out: W,
    bytes: u64,
    records: u64,
}

impl RecordWriter<BufWriter<std::fs::File>> {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self::new(BufWriter::new(std::fs::File::create(path)?)))
    }
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W) -> Self {
        RecordWriter {
            out,
            bytes: 0,
            records: 0,
        }
    }

    pub fn write_record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc32c(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc32c(data).to_le_bytes())?;
        self.bytes += data.len() as u64 + HEADER_LEN + FOOTER_LEN;
        self.records += 1;
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes and returns the sink.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One record read from a file: its data and the byte offset where its framing starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Reads framed records, verifying lengths and CRCs (data CRCs can be skipped for speed with
/// `verify_data = false`; the length CRC is always checked since a bad length desynchronizes
/// everything after it).
pub struct RecordReader<R: Read> {
    input: R,
    path: PathBuf,
    offset: u64,
    /// Bytes from `offset` to the end of the input, when known: a length beyond it is reported
    /// as truncation before anything is allocated.
    remaining: Option<u64>,
    verify_data: bool,
}

impl RecordReader<Input> {
    /// Opens `path` (a file, or a `gs://` / `s3://` object read as a stream) and positions the
    /// reader at byte `offset` (0, or the start of a record as reported by
    /// [`RecordReader::offset`]).
    pub fn open_at(path: &Path, offset: u64, verify_data: bool) -> Result<Self> {
        let io = |source| DataError::Io {
            path: path.to_path_buf(),
            offset,
            source,
        };
        let (mut input, size) = Input::open(path).map_err(io)?;
        if offset > size {
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                offset: size,
                what: "seek to a saved position",
                needed: offset,
                available: size,
            });
        }
        input.seek_to(offset).map_err(io)?;
        let mut r = RecordReader::new(input, path, verify_data);
        r.offset = offset;
        r.remaining = Some(size - offset);
        Ok(r)
    }

    /// Steps over the next record without reading its data: its start offset, `None` at a
    /// clean end of the file. The length and its CRC are checked (a bad one is an error as in
    /// [`RecordReader::next_record`]); the data CRC is not. For indexing a file's records.
    pub fn skip_record(&mut self) -> Result<Option<u64>> {
        let start = self.offset;
        let Some(len) = self.read_header()? else {
            return Ok(None);
        };
        // read_header checked that the data and its CRC are within the file.
        let body = len + FOOTER_LEN;
        self.input.skip(body).map_err(|source| DataError::Io {
            path: self.path.clone(),
            offset: start + HEADER_LEN,
            source,
        })?;
        let total = HEADER_LEN + body;
        self.offset = start + total;
        if let Some(rem) = self.remaining.as_mut() {
            *rem -= total;
        }
        Ok(Some(start))
    }
}

impl<R: Read> RecordReader<R> {
    /// `path` is used in error messages only.
    pub fn new(input: R, path: &Path, verify_data: bool) -> Self {
        RecordReader {
            input,
            path: path.to_path_buf(),
            offset: 0,
            remaining: None,
            verify_data,
        }
    }

    /// Byte offset of the next record's framing.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads up to `buf.len()` bytes; returns how many were read (less only at end of input).
    fn read_full(&mut self, buf: &mut [u8], at: u64) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(DataError::Io {
                        path: self.path.clone(),
                        offset: at + got as u64,
                        source,
                    })
                }
            }
        }
        Ok(got)
    }

    fn truncated(&self, what: &'static str, needed: u64, available: u64) -> DataError {
        DataError::Truncated {
            path: self.path.clone(),
            offset: self.offset,
            what,
            needed,
            available,
        }
    }

    /// Reads and checks the next record's header: its data length, `None` at a clean end of
    /// input. A length beyond the rest of a sized input is reported as truncation.
    fn read_header(&mut self) -> Result<Option<u64>> {
        let start = self.offset;
        let mut header = [0u8; HEADER_LEN as usize];
        let got = self.read_full(&mut header, start)?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            return Err(self.truncated("the record header", HEADER_LEN, got as u64));
        }
        let (len_bytes, crc_bytes) = header.split_at(8);
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if masked_crc32c(len_bytes) != stored {
            return Err(DataError::CorruptLength {
                path: self.path.clone(),
                offset: start,
            });
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(len_bytes);
        let len = u64::from_le_bytes(len8);
        let body_needed = len.saturating_add(FOOTER_LEN);
        if let Some(rem) = self.remaining {
            let after_header = rem.saturating_sub(HEADER_LEN);
            if body_needed > after_header {
                return Err(self.truncated(
                    "the record data and its CRC",
                    body_needed,
                    after_header,
                ));
            }
        }
        Ok(Some(len))
    }

    /// The next record, `None` at a clean end of input. After `CorruptData` the reader is
    /// positioned at the next record and can go on; after any other error it cannot.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        let start = self.offset;
        let Some(len) = self.read_header()? else {
            return Ok(None);
        };
        let body_needed = len.saturating_add(FOOTER_LEN);
        // `take` + `read_to_end` grows the buffer with what is really there, so a huge bogus
        // length on an unsized input cannot allocate it up front.
        let mut data = Vec::with_capacity(len.min(1 << 24) as usize);
        let data_at = start + HEADER_LEN;
        let n = (&mut self.input)
            .take(len)
            .read_to_end(&mut data)
            .map_err(|source| DataError::Io {
                path: self.path.clone(),
                offset: data_at,
                source,
            })? as u64;
        if n < len {
            return Err(self.truncated("the record data and its CRC", body_needed, n));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        let got = self.read_full(&mut footer, data_at + len)?;
        if got < footer.len() {
            return Err(self.truncated(
                "the record data and its CRC",
                body_needed,
                len + got as u64,
            ));
        }
        let total = HEADER_LEN + len + FOOTER_LEN;
        self.offset = start + total;
        if let Some(rem) = self.remaining.as_mut() {
            *rem -= total;
        }
        if self.verify_data && masked_crc32c(&data) != u32::from_le_bytes(footer) {
            return Err(DataError::CorruptData {
                path: self.path.clone(),
                offset: start,
                len,
            });
        }
        Ok(Some(Record {
            offset: start,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C check value from RFC 3720 B.4 / the CRC catalogue: crc32c("123456789") = 0xE3069283.
    #[test]
    // The mask is written as TensorFlow's crc32c.h spells it, independently of rotate_right.
    #[allow(clippy::manual_rotate)]
    fn crc32c_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // masked = rotr(c, 15) + 0xa282ead8, computed by hand from the check value.
        let c: u32 = 0xE306_9283;
        let expected = ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc32c(b"123456789"), expected);
    }
}
