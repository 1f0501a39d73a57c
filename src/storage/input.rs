//! A shard opened for reading, local or in a bucket: `Read` plus the two moves the TFRecord
//! reader makes (start at a saved offset, step over a record's data).
use super::reader::ObjectReader;
use super::Location;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

pub enum Input {
    File(BufReader<File>),
    Object(Box<ObjectReader>),
}

impl Input {
    /// Opens `path` (a file or an object URL) at byte 0; returns it with its size.
    pub fn open(path: &Path) -> io::Result<(Input, u64)> {
        match Location::parse(path)? {
            Location::Local(p) => {
                let f = File::open(&p)?;
                let size = f.metadata()?.len();
                Ok((Input::File(BufReader::with_capacity(1 << 20, f)), size))
            }
            Location::Object(url) => {
                let r = ObjectReader::open(&url)?;
                let size = r.size();
                Ok((Input::Object(Box::new(r)), size))
            }
        }
    }

    /// Moves to byte `offset` from the start.
    pub fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        match self {
            Input::File(f) => f.seek(SeekFrom::Start(offset)).map(|_| ()),
            Input::Object(r) => {
                r.seek_to(offset);
                Ok(())
            }
        }
    }

    /// Steps `n` bytes forward without returning them.
    pub fn skip(&mut self, n: u64) -> io::Result<()> {
        match self {
            Input::File(f) => {
                let n = i64::try_from(n).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "a skip beyond 2^63 bytes")
                })?;
                f.seek_relative(n)
            }
            Input::Object(r) => r.skip(n),
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::File(f) => f.read(buf),
            Input::Object(r) => r.read(buf),
        }
    }
}
