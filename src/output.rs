//! JSON Lines output on stdout (or any writer, for tests).
//!
//! Lines are serialized compactly into a reusable buffer and written whole. Output is buffered;
//! streaming programs call [`Output::flush`] at each emission point so a live pipeline sees every
//! result at once, bulk programs let the buffer fill. A write error of kind `BrokenPipe` travels up
//! as an [`crate::Error`] that the runner turns into a quiet exit 0.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

use crate::error::Result;

pub struct Output<W: Write> {
    writer: BufWriter<W>,
    line: Vec<u8>,
}

impl Output<io::Stdout> {
    pub fn stdout() -> Self {
        Output::new(io::stdout())
    }
}

impl<W: Write> Output<W> {
    pub fn new(writer: W) -> Self {
        Output {
            writer: BufWriter::with_capacity(64 * 1024, writer),
            line: Vec::with_capacity(256),
        }
    }

    /// Write one value as one compact JSON line.
    pub fn emit<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value).map_err(io::Error::from)?;
        self.line.push(b'\n');
        self.writer.write_all(&self.line)?;
        Ok(())
    }

    /// Write a line that is already JSON text (without its newline).
    pub fn emit_raw(&mut self, json: &[u8]) -> Result<()> {
        self.writer.write_all(json)?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// Write lines that are already JSON text, each ending in its newline.
    pub fn write_lines(&mut self, lines: &[u8]) -> Result<()> {
        self.writer.write_all(lines)?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush()?;
        Ok(())
    }

    /// Flush and hand back the writer (tests read what was written).
    pub fn into_inner(self) -> Result<W> {
        self.writer.into_inner().map_err(|e| e.into_error().into())
    }
}

/// A number as the data shows it: whole numbers without a fraction (`25`, not `25.0`), others as the
/// shortest text that reads back to the same `f64`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Number(pub f64);

/// Below 2^53 every whole f64 is exactly an integer, so printing it as one loses nothing.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

impl Serialize for Number {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() < EXACT_INT {
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}

/// The decimal digits of `v`, written into the end of `digits` (no allocation), for hot paths
/// that build their text byte by byte.
#[inline]
pub fn decimal(v: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &digits[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits_from_zero_to_the_largest_u64() {
        let mut digits = [0u8; 20];
        for v in [0, 7, 10, 1234, u64::MAX] {
            assert_eq!(decimal(v, &mut digits), v.to_string().as_bytes());
        }
    }

    #[test]
    fn numbers_print_whole_when_whole() {
        let text = |v: f64| serde_json::to_string(&Number(v)).unwrap();
        assert_eq!(text(25.0), "25");
        assert_eq!(text(-3.0), "-3");
        assert_eq!(text(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(text(2.5), "2.5");
        assert_eq!(text(1e300), "1e+300");
        assert_eq!(text(-0.0), "0");
    }

    #[test]
    fn emit_writes_compact_lines() {
        let mut out = Output::new(Vec::new());
        out.emit(&serde_json::json!({"a": 1, "b": [1, 2]})).unwrap();
        out.emit_raw(br#"{"c":3}"#).unwrap();
        let bytes = out.into_inner().unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "{\"a\":1,\"b\":[1,2]}\n{\"c\":3}\n"
        );
    }
}
