//! The pieces of extract_features.py's output line that Python formats itself, so that ours match
//! it byte for byte: `round(float(x), 6)` printed as `json.dumps` prints a float (its `repr`),
//! and strings as `json.dumps` writes them by default (`ensure_ascii`: every character outside
//! printable ASCII as `\uXXXX`, UTF-16 surrogate pairs beyond the BMP).
use crate::squad::pyfloat::python_float_repr;
use std::fmt::Write;

/// Appends `repr(round(float(x), 6))` to `out`.
///
/// Python's `round(x, 6)` rounds the exact binary value of `x` to 6 decimals, ties to even, and
/// reads the result back as the nearest double; Rust's `{:.6}` rounds the same exact value the
/// same way, and `parse` is correctly rounded, so `r` is Python's result. For
/// 1e-4 <= |r| < 1e16 (and zero) the 6-decimal string without its trailing zeros is already
/// `repr(r)`: a shorter decimal would differ from it by at least 1e-6, more than r's spacing,
/// so it could not read back as `r`. Other magnitudes take [`python_float_repr`]'s general path
/// (`5e-05`, `1e+16`).
pub fn push_rounded6(out: &mut String, x: f32) {
    let fixed = format!("{:.6}", f64::from(x));
    let r: f64 = match fixed.parse() {
        Ok(r) => r,
        // NaN and infinities: `{:.6}` prints `NaN`/`inf`, which do not parse back.
        Err(_) => {
            out.push_str(&python_float_repr(f64::from(x)));
            return;
        }
    };
    let a = r.abs();
    if r == 0.0 || (1e-4..1e16).contains(&a) {
        let trimmed = fixed.trim_end_matches('0');
        out.push_str(trimmed);
        if trimmed.ends_with('.') {
            out.push('0');
        }
    } else {
        out.push_str(&python_float_repr(r));
    }
}

/// Appends `s` as a JSON string the way Python's `json.dumps` writes it with its defaults.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounded(x: f32) -> String {
        let mut s = String::new();
        push_rounded6(&mut s, x);
        s
    }

    #[test]
    fn rounding_prints_as_python_json() {
        // Expected: Python 3 `json.dumps(round(float(numpy.float32(x)), 6))`.
        let cases: [(f32, &str); 24] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-1e-7, "-0.0"),
            (4e-7, "0.0"),
            (6e-7, "1e-06"),
            (1e-6, "1e-06"),
            (-1.5e-5, "-1.5e-05"),
            (5e-5, "5e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.000123"),
            (0.123_456_79, "0.123457"),
            (-1.5, "-1.5"),
            (2.0, "2.0"),
            (1.0 / 3.0, "0.333333"),
            (0.0078125, "0.007812"),
            (0.0234375, "0.023438"),
            (0.999_999_9, "1.0"),
            (-7.25, "-7.25"),
            (123456.78, "123456.78125"),
            (16777216.0, "16777216.0"),
            (1e16, "1.0000000272564224e+16"),
            (3.4028235e38, "3.4028234663852886e+38"),
            (f32::INFINITY, "Infinity"),
            (f32::NAN, "NaN"),
        ];
        for (x, want) in cases {
            assert_eq!(rounded(x), want, "{x:e}");
        }
    }

    #[test]
    fn strings_escape_as_python_json_with_ensure_ascii() {
        let mut s = String::new();
        push_json_str(&mut s, "[CLS] \"a\\b\"\t\u{1}\u{7f} café 東 😀");
        assert_eq!(
            s,
            r#""[CLS] \"a\\b\"\t\u0001\u007f caf\u00e9 \u6771 \ud83d\ude00""#
        );
    }
}
