//! Reader for the IDX format of MNIST-like datasets (raw or gzip-compressed).
//!
//! Format: big-endian magic `0x0000_08DD` (0x08 = unsigned bytes, DD = number of
//! dimensions), then DD big-endian u32 sizes, then the bytes. The reader checks the
//! magic, that the header is sane, and that the data is exactly as long as the
//! header says, before allocating anything the size of the data.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest payload accepted: 4 GiB is far beyond any IDX dataset in use and keeps
/// a corrupt or hostile header from triggering a giant allocation.
pub const MAX_IDX_BYTES: u64 = 1 << 32;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Size of each dimension, outermost first, as in the header.
    pub dims: Vec<usize>,
    /// The bytes, row-major, as many as the product of `dims`.
    pub data: Vec<u8>,
}

fn data_err(path: &str, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Reads an IDX file; a `.gz` name (or gzip magic) is decompressed on the fly.
pub fn read_idx_file(path: &Path) -> Result<IdxArray> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    parse_idx(&name, &bytes)
}

/// Parses IDX bytes (raw or gzip) named `name` for messages.
pub fn parse_idx(name: &str, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut decoder = flate2::read::GzDecoder::new(bytes);
        parse_idx_stream(name, &mut decoder)
    } else {
        parse_idx_stream(name, &mut &bytes[..])
    }
}

fn read_exact_or(name: &str, r: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            data_err(name, format!("file is truncated: it ends inside the {what}"))
        }
        _ => data_err(name, format!("cannot read the {what}: {e}")),
    })
}

fn parse_idx_stream(name: &str, r: &mut dyn Read) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    read_exact_or(name, r, &mut magic, "header")?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(data_err(
            name,
            format!(
                "not an IDX file: magic number {:#010x} (expected 0x0000_08NN)",
                u32::from_be_bytes(magic)
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(data_err(
            name,
            format!(
                "IDX element type {:#04x} is not supported (only 0x08, unsigned bytes)",
                magic[2]
            ),
        ));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 || ndim > 4 {
        return Err(data_err(
            name,
            format!("IDX header declares {ndim} dimensions (expected 1 to 4)"),
        ));
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let mut d = [0u8; 4];
        read_exact_or(name, r, &mut d, "header")?;
        dims.push(u32::from_be_bytes(d) as usize);
    }
    let total = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let total = match total {
        Some(t) if t <= MAX_IDX_BYTES => t,
        _ => {
            return Err(data_err(
                name,
                format!("IDX header declares an absurd size {dims:?}; the file is corrupt"),
            ));
        }
    };
    // Read at most total + 1 bytes so a short file and trailing garbage are both
    // detected without trusting the header for the allocation up front.
    let mut data = Vec::new();
    r.take(total + 1)
        .read_to_end(&mut data)
        .map_err(|e| data_err(name, format!("cannot read the data: {e}")))?;
    if (data.len() as u64) < total {
        return Err(data_err(
            name,
            format!(
                "file is truncated: header {dims:?} declares {total} bytes of data, found {}",
                data.len()
            ),
        ));
    }
    if data.len() as u64 > total {
        return Err(data_err(
            name,
            format!("file has data beyond the {total} bytes its header {dims:?} declares"),
        ));
    }
    Ok(IdxArray { dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_raw_and_gzip() {
        let raw = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let a = parse_idx("raw", &raw).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let b = parse_idx("gz", &gz.finish().unwrap()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_bad_magic_truncation_and_absurd_headers() {
        let e = parse_idx("f", &[0x12, 0x34, 8, 1, 0, 0, 0, 1, 0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an IDX file"), "{e}");
        let e = parse_idx("f", &[0, 0, 0x0d, 1, 0, 0, 0, 1, 0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("element type"), "{e}");
        let e = parse_idx("f", &idx(&[10], &[1, 2, 3])).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = parse_idx("f", &[0, 0, 8]).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = parse_idx("f", &idx(&[2], &[1, 2, 3])).unwrap_err().to_string();
        assert!(e.contains("beyond"), "{e}");
        // Billions of items: refused from the header alone, no allocation.
        let e = parse_idx("f", &idx(&[4_000_000_000, 28, 28], &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absurd"), "{e}");
        let e = parse_idx("f", &[0, 0, 8, 9]).unwrap_err().to_string();
        assert!(e.contains("dimensions"), "{e}");
    }
}
