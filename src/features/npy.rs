//! NumPy `.npy` files of little-endian f32, written as a stream: the header (format 1.0) states
//! the whole shape up front and the rows follow as they are computed, so an input of any size
//! never has to sit in memory as one array. The header is a few lines of the documented format
//! (numpy's `format.py`: magic, version, header length, a Python dict literal padded with spaces
//! to a 64-byte boundary and ended by `\n`); the npy crates we know build a whole array first.
use anyhow::{bail, Result};

/// The complete header of a C-order little-endian f32 array of `shape`.
pub fn npy_header(shape: &[usize]) -> Result<Vec<u8>> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // magic (6) + version (2) + header length (2) + dict + padding + '\n', a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let Ok(len) = u16::try_from(dict.len()) else {
        bail!("an .npy 1.0 header of {} bytes is too long", dict.len());
    };
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend(len.to_le_bytes());
    out.extend(dict.bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_numpys() {
        // numpy.lib.format.write_array_header_1_0 for shape (2, 3, 4), '<f4'.
        let h = npy_header(&[2, 3, 4]).unwrap();
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
        let dict = std::str::from_utf8(&h[10..]).unwrap();
        assert_eq!(
            dict.trim_end(),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }"
        );
        assert!(dict.ends_with(" \n"));
        let one = npy_header(&[7]).unwrap();
        assert!(std::str::from_utf8(&one[10..])
            .unwrap()
            .contains("'shape': (7,), }"));
    }
}
