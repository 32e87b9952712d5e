//! TFRecord framing, the container of an event file: each record is its length (u64,
//! little-endian), the masked CRC32C of those 8 bytes, the data, and the masked CRC32C of
//! the data (CRCs little-endian u32).

/// Appends `data` to `out` as one record.
pub fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

/// TFRecord's masked CRC32C (Castagnoli): the CRC rotated right by 15 bits plus
/// 0xa282ead8, so that a CRC of data holding CRCs stays a good check.
pub fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from tensorboard's own `masked_crc32c` (its pure-Python reader).
    #[test]
    fn masked_crcs_are_tensorboards() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc(&9u64.to_le_bytes()), 0x3971_f937);
    }

    #[test]
    fn a_record_is_length_crc_data_crc() {
        let mut out = vec![];
        frame(b"123456789", &mut out);
        assert_eq!(out.len(), 8 + 4 + 9 + 4);
        assert_eq!(out[..8], 9u64.to_le_bytes());
        assert_eq!(out[8..12], 0x3971_f937u32.to_le_bytes());
        assert_eq!(&out[12..21], b"123456789");
        assert_eq!(out[21..], 0xc78a_b0e5u32.to_le_bytes());
    }
}
