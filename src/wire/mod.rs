//! Pure protocol codecs (no I/O): framing, startup packets, message views and builders.

pub mod mysql;
pub mod pg;

/// Statement text from the wire: borrowed when it is valid UTF-8 (checked with the standard
/// library's word-at-a-time ASCII path), else with U+FFFD for the bad bytes.
pub fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_borrows_valid_utf8_and_replaces_bad_bytes() {
        assert!(matches!(
            super::text("SELECT 'é'".as_bytes()),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(super::text(b"SELECT '\xff'"), "SELECT '\u{fffd}'");
    }
}
