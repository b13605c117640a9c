//! `data:` URL decoding (base64 only), bounded by the byte limit.

use super::*;

/// Decodes `data:[<mediatype>][;base64],<data>`; only base64 payloads are
/// accepted. Whitespace is ignored and percent-escapes of base64 characters
/// are decoded.
pub(super) fn decode_data_url(
    raw: &str,
    max_bytes: usize,
    shown: &str,
) -> Result<Vec<u8>, ImageFetchError> {
    let invalid = |reason: &str| ImageFetchError::InvalidDataUrl {
        url: shown.to_owned(),
        reason: reason.to_owned(),
    };
    // `raw` starts with an ASCII "data:" (checked by the caller).
    let rest = raw.get(5..).ok_or_else(|| invalid("missing data"))?;
    let (header, data) = rest
        .split_once(',')
        .ok_or_else(|| invalid("missing ',' between the header and the data"))?;

    let mut params = header.split(';');
    let media_type = params.next().unwrap_or_default().trim();
    let is_base64 = header.contains(';')
        && header
            .rsplit(';')
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !media_type.is_empty() && !media_type.to_ascii_lowercase().starts_with("image/") {
        return Err(ImageFetchError::NotAnImage {
            media_type: media_type.chars().take(64).collect(),
        });
    }
    if !is_base64 {
        return Err(invalid(
            "only base64-encoded data is supported (expected `data:image/<type>;base64,<data>`)",
        ));
    }

    // Early size check without allocating: the number of base64 characters
    // gives a lower bound on the decoded size.
    let significant = data.bytes().filter(|b| !b.is_ascii_whitespace()).count();
    let escapes = data.bytes().filter(|&b| b == b'%').count();
    let chars = significant.saturating_sub(2 * escapes);
    if chars.saturating_sub(2) / 4 * 3 > max_bytes {
        return Err(ImageFetchError::TooLarge { limit: max_bytes });
    }

    let mut encoded = Vec::with_capacity(chars);
    let mut bytes = data.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b if b.is_ascii_whitespace() => {}
            b'%' => {
                let hex = [bytes.next(), bytes.next()];
                let decoded = match hex {
                    [Some(h), Some(l)] => hex_val(h).zip(hex_val(l)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                match decoded {
                    Some(c) if is_base64_char(c) => encoded.push(c),
                    _ => {
                        return Err(invalid(
                            "percent-encoded data is not base64 (only base64 data is supported)",
                        ))
                    }
                }
            }
            b => encoded.push(b),
        }
    }

    let engine = if encoded.iter().any(|&b| b == b'-' || b == b'_') {
        &BASE64_URL_SAFE
    } else {
        &BASE64_STANDARD
    };
    let decoded = engine
        .decode(&encoded)
        .map_err(|e| invalid(&format!("invalid base64 data: {e}")))?;
    if decoded.len() > max_bytes {
        return Err(ImageFetchError::TooLarge { limit: max_bytes });
    }
    Ok(decoded)
}

pub(super) fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

pub(super) fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
}
