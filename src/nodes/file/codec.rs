//! The text encodings of the file nodes, written by hand (no codec crate): `utf-8`, `utf-8-sig`,
//! `latin-1`, `cp1252`, `ascii`, `utf-16` (BOM-detected, little-endian without a BOM, as Python
//! on x86), `utf-16-le` and `utf-16-be`, with Python's names and aliases, and Python's error
//! handlers (`strict`, `ignore`, `replace`, `backslashreplace`, `xmlcharrefreplace`).
//!
//! Decoding `replace` turns each maximal invalid UTF-8 subsequence into one U+FFFD, as Python
//! does. `xmlcharrefreplace` only applies to encoding; a decoding error under it fails like
//! `strict` (Python raises a TypeError there).

use crate::engine::node::NodeError;

/// A supported text encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (a BOM is kept as U+FEFF, as Python does).
    Utf8,
    /// UTF-8 with a BOM: stripped when reading, written when writing at the start of a file.
    Utf8Sig,
    /// ISO-8859-1: bytes are code points 0–255.
    Latin1,
    /// Windows-1252.
    Cp1252,
    /// 7-bit ASCII.
    Ascii,
    /// UTF-16 with a BOM (reading: BOM decides, little-endian without one; writing: BOM + LE).
    Utf16,
    /// UTF-16 little-endian, no BOM handling.
    Utf16Le,
    /// UTF-16 big-endian, no BOM handling.
    Utf16Be,
}

/// Python's codec error handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errors {
    /// Fail on the first error.
    Strict,
    /// Drop what cannot be converted.
    Ignore,
    /// U+FFFD when decoding, `?` when encoding.
    Replace,
    /// `\xNN` escapes (decoding), `\xNN` / `\uNNNN` / `\UNNNNNNNN` (encoding).
    BackslashReplace,
    /// `&#NNNN;` (encoding only).
    XmlCharRefReplace,
}

/// Look up an encoding by a Python name or alias (case and `_`/`-`/space insensitive).
pub fn lookup(name: &str) -> Result<Encoding, NodeError> {
    let norm: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' || c == ' ' { '-' } else { c })
        .collect();
    let enc = match norm.as_str() {
        "" | "utf-8" | "utf8" | "u8" | "utf" | "cp65001" => Encoding::Utf8,
        "utf-8-sig" | "utf8-sig" => Encoding::Utf8Sig,
        "latin-1" | "latin1" | "latin" | "l1" | "iso-8859-1" | "iso8859-1" | "iso-8859-1:1987"
        | "8859" | "cp819" | "iso-ir-100" => Encoding::Latin1,
        "cp1252" | "windows-1252" | "1252" => Encoding::Cp1252,
        "ascii" | "us-ascii" | "646" | "us" => Encoding::Ascii,
        "utf-16" | "utf16" | "u16" => Encoding::Utf16,
        "utf-16-le" | "utf-16le" | "utf16le" | "utf16-le" => Encoding::Utf16Le,
        "utf-16-be" | "utf-16be" | "utf16be" | "utf16-be" => Encoding::Utf16Be,
        _ => {
            return Err(NodeError::new(
                "LookupError",
                format!(
                    "unknown encoding: {name} (supported: utf-8, utf-8-sig, latin-1, cp1252, \
                     ascii, utf-16, utf-16-le, utf-16-be)"
                ),
            ))
        }
    };
    Ok(enc)
}

/// Look up an error handler by its Python name.
pub fn errors(name: &str) -> Result<Errors, NodeError> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "" | "strict" => Errors::Strict,
        "ignore" => Errors::Ignore,
        "replace" => Errors::Replace,
        "backslashreplace" => Errors::BackslashReplace,
        "xmlcharrefreplace" => Errors::XmlCharRefReplace,
        _ => {
            return Err(NodeError::new(
                "LookupError",
                format!(
                    "unknown error handler name '{name}' (use strict, ignore, replace, \
                     backslashreplace or xmlcharrefreplace)"
                ),
            ))
        }
    })
}

impl Encoding {
    /// Python's canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf8Sig => "utf-8-sig",
            Encoding::Latin1 => "latin-1",
            Encoding::Cp1252 => "cp1252",
            Encoding::Ascii => "ascii",
            Encoding::Utf16 => "utf-16",
            Encoding::Utf16Le => "utf-16-le",
            Encoding::Utf16Be => "utf-16-be",
        }
    }

    /// True when writing at the start of a file begins with a byte-order mark.
    pub fn writes_bom(self) -> bool {
        matches!(self, Encoding::Utf8Sig | Encoding::Utf16)
    }
}

/// A decoding failure: where and why.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset of the offending byte.
    pub offset: usize,
    /// The offending byte.
    pub byte: u8,
    /// Python's reason text (`invalid start byte`, `truncated data`, ...).
    pub reason: &'static str,
}

/// An encoding failure: which character could not be written.
#[derive(Debug, PartialEq, Eq)]
pub struct EncodeError {
    /// Character index in the text.
    pub position: usize,
    /// The character.
    pub ch: char,
}

const CP1252_HIGH: [u16; 32] = [
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
    0x0152, 0, 0x017D, 0, 0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC,
    0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
];

fn cp1252_decode(b: u8) -> Option<char> {
    if (0x80..0xA0).contains(&b) {
        match CP1252_HIGH[usize::from(b - 0x80)] {
            0 => None,
            cp => char::from_u32(u32::from(cp)),
        }
    } else {
        Some(char::from(b))
    }
}

fn cp1252_encode(c: char) -> Option<u8> {
    let cp = u32::from(c);
    if cp < 0x80 || (0xA0..0x100).contains(&cp) {
        return u8::try_from(cp).ok();
    }
    CP1252_HIGH
        .iter()
        .position(|&x| x != 0 && u32::from(x) == cp)
        .and_then(|i| u8::try_from(0x80 + i).ok())
}

fn push_bad_bytes(out: &mut String, bytes: &[u8], errors: Errors) {
    match errors {
        Errors::Ignore => {}
        Errors::BackslashReplace => {
            for b in bytes {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        _ => out.push('\u{FFFD}'),
    }
}

fn decode_error_allowed(errors: Errors) -> bool {
    matches!(
        errors,
        Errors::Ignore | Errors::Replace | Errors::BackslashReplace
    )
}

fn utf8_reason(bytes: &[u8], at: usize, error_len: Option<usize>) -> &'static str {
    let b = bytes[at];
    if (0x80..0xC2).contains(&b) || b >= 0xF5 {
        "invalid start byte"
    } else if error_len.is_none() {
        "unexpected end of data"
    } else {
        "invalid continuation byte"
    }
}

fn decode_utf8(bytes: &[u8], errors: Errors) -> Result<String, DecodeError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) if !decode_error_allowed(errors) => {
            let at = e.valid_up_to();
            Err(DecodeError {
                offset: at,
                byte: bytes[at],
                reason: utf8_reason(bytes, at, e.error_len()),
            })
        }
        Err(_) => {
            let mut out = String::with_capacity(bytes.len());
            for chunk in bytes.utf8_chunks() {
                out.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    push_bad_bytes(&mut out, chunk.invalid(), errors);
                }
            }
            Ok(out)
        }
    }
}

fn decode_single(
    bytes: &[u8],
    errors: Errors,
    map: impl Fn(u8) -> Option<char>,
    reason: &'static str,
) -> Result<String, DecodeError> {
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        match map(b) {
            Some(c) => out.push(c),
            None if decode_error_allowed(errors) => push_bad_bytes(&mut out, &[b], errors),
            None => {
                return Err(DecodeError {
                    offset: i,
                    byte: b,
                    reason,
                })
            }
        }
    }
    Ok(out)
}

fn decode_utf16(bytes: &[u8], big_endian: bool, errors: Errors) -> Result<String, DecodeError> {
    let mut out = String::with_capacity(bytes.len() / 2);
    let unit = |i: usize| -> u16 {
        let pair = [bytes[i], bytes[i + 1]];
        if big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    };
    let mut i = 0;
    while i + 1 < bytes.len() {
        let u = unit(i);
        if (0xD800..0xDC00).contains(&u) {
            if i + 3 < bytes.len() {
                let lo = unit(i + 2);
                if (0xDC00..0xE000).contains(&lo) {
                    let cp = 0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                    out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                    i += 4;
                    continue;
                }
                if !decode_error_allowed(errors) {
                    return Err(DecodeError {
                        offset: i,
                        byte: bytes[i],
                        reason: "illegal UTF-16 surrogate",
                    });
                }
                push_bad_bytes(&mut out, &bytes[i..i + 2], errors);
                i += 2;
                continue;
            }
            if !decode_error_allowed(errors) {
                return Err(DecodeError {
                    offset: i,
                    byte: bytes[i],
                    reason: "unexpected end of data",
                });
            }
            push_bad_bytes(&mut out, &bytes[i..], errors);
            return Ok(out);
        }
        if (0xDC00..0xE000).contains(&u) {
            if !decode_error_allowed(errors) {
                return Err(DecodeError {
                    offset: i,
                    byte: bytes[i],
                    reason: "illegal encoding",
                });
            }
            push_bad_bytes(&mut out, &bytes[i..i + 2], errors);
            i += 2;
            continue;
        }
        out.push(char::from_u32(u32::from(u)).unwrap_or('\u{FFFD}'));
        i += 2;
    }
    if i < bytes.len() {
        if !decode_error_allowed(errors) {
            return Err(DecodeError {
                offset: i,
                byte: bytes[i],
                reason: "truncated data",
            });
        }
        push_bad_bytes(&mut out, &bytes[i..], errors);
    }
    Ok(out)
}

/// Decode `bytes` (a whole file) with `enc`.
pub fn decode(bytes: &[u8], enc: Encoding, errors: Errors) -> Result<String, DecodeError> {
    match enc {
        Encoding::Utf8 => decode_utf8(bytes, errors),
        Encoding::Utf8Sig => {
            let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            decode_utf8(body, errors).map_err(|e| DecodeError {
                offset: e.offset + (bytes.len() - body.len()),
                ..e
            })
        }
        Encoding::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        Encoding::Ascii => decode_single(
            bytes,
            errors,
            |b| (b < 0x80).then_some(char::from(b)),
            "ordinal not in range(128)",
        ),
        Encoding::Cp1252 => decode_single(
            bytes,
            errors,
            cp1252_decode,
            "character maps to <undefined>",
        ),
        Encoding::Utf16 => {
            if let Some(body) = bytes.strip_prefix(b"\xFF\xFE") {
                decode_utf16(body, false, errors).map_err(|e| DecodeError {
                    offset: e.offset + 2,
                    ..e
                })
            } else if let Some(body) = bytes.strip_prefix(b"\xFE\xFF") {
                decode_utf16(body, true, errors).map_err(|e| DecodeError {
                    offset: e.offset + 2,
                    ..e
                })
            } else {
                decode_utf16(bytes, false, errors)
            }
        }
        Encoding::Utf16Le => decode_utf16(bytes, false, errors),
        Encoding::Utf16Be => decode_utf16(bytes, true, errors),
    }
}

fn replacement(c: char, errors: Errors) -> String {
    let cp = u32::from(c);
    match errors {
        Errors::Replace => "?".to_string(),
        Errors::BackslashReplace if cp < 0x100 => format!("\\x{cp:02x}"),
        Errors::BackslashReplace if cp < 0x10000 => format!("\\u{cp:04x}"),
        Errors::BackslashReplace => format!("\\U{cp:08x}"),
        Errors::XmlCharRefReplace => format!("&#{cp};"),
        _ => String::new(),
    }
}

fn encode_single(
    text: &str,
    errors: Errors,
    map: impl Fn(char) -> Option<u8>,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match map(c) {
            Some(b) => out.push(b),
            None if errors == Errors::Strict => return Err(EncodeError { position: i, ch: c }),
            None => out.extend_from_slice(replacement(c, errors).as_bytes()),
        }
    }
    Ok(out)
}

fn encode_utf16(text: &str, big_endian: bool, out: &mut Vec<u8>) {
    for u in text.encode_utf16() {
        if big_endian {
            out.extend_from_slice(&u.to_be_bytes());
        } else {
            out.extend_from_slice(&u.to_le_bytes());
        }
    }
}

/// Encode `text` with `enc`; `bom` asks for the byte-order mark of `utf-8-sig` / `utf-16`
/// (callers pass false when appending to a non-empty file, as Python does).
pub fn encode(
    text: &str,
    enc: Encoding,
    errors: Errors,
    bom: bool,
) -> Result<Vec<u8>, EncodeError> {
    match enc {
        Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
        Encoding::Utf8Sig => {
            let mut out = Vec::with_capacity(text.len() + 3);
            if bom {
                out.extend_from_slice(b"\xEF\xBB\xBF");
            }
            out.extend_from_slice(text.as_bytes());
            Ok(out)
        }
        Encoding::Latin1 => encode_single(text, errors, |c| u8::try_from(u32::from(c)).ok()),
        Encoding::Ascii => encode_single(text, errors, |c| {
            u8::try_from(u32::from(c)).ok().filter(|b| *b < 0x80)
        }),
        Encoding::Cp1252 => encode_single(text, errors, cp1252_encode),
        Encoding::Utf16 => {
            let mut out = Vec::with_capacity(text.len() * 2 + 2);
            if bom {
                out.extend_from_slice(b"\xFF\xFE");
            }
            encode_utf16(text, false, &mut out);
            Ok(out)
        }
        Encoding::Utf16Le | Encoding::Utf16Be => {
            let mut out = Vec::with_capacity(text.len() * 2);
            encode_utf16(text, enc == Encoding::Utf16Be, &mut out);
            Ok(out)
        }
    }
}

/// Python's universal newlines on reading: `\r\n` and lone `\r` become `\n`.
pub fn universal_newlines(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8], enc: &str, errors_name: &str) -> Result<String, DecodeError> {
        decode(bytes, lookup(enc).unwrap(), errors(errors_name).unwrap())
    }

    #[test]
    fn names_and_aliases() {
        for (name, enc) in [
            ("UTF-8", Encoding::Utf8),
            ("utf8", Encoding::Utf8),
            ("utf_8_sig", Encoding::Utf8Sig),
            ("Latin-1", Encoding::Latin1),
            ("ISO-8859-1", Encoding::Latin1),
            ("iso8859_1", Encoding::Latin1),
            ("cp1252", Encoding::Cp1252),
            ("Windows-1252", Encoding::Cp1252),
            ("US-ASCII", Encoding::Ascii),
            ("utf-16", Encoding::Utf16),
            ("UTF-16LE", Encoding::Utf16Le),
            ("utf_16_be", Encoding::Utf16Be),
        ] {
            assert_eq!(lookup(name).unwrap(), enc, "{name}");
        }
        let e = lookup("ebcdic").unwrap_err();
        assert_eq!(e.kind, "LookupError");
        assert!(
            e.message.starts_with("unknown encoding: ebcdic"),
            "{}",
            e.message
        );
        assert!(errors("surrogateescape").is_err());
    }

    #[test]
    fn utf8_errors_report_offset_and_reason() {
        assert_eq!(
            dec(b"ab\xffc", "utf-8", "strict").unwrap_err(),
            DecodeError {
                offset: 2,
                byte: 0xff,
                reason: "invalid start byte"
            }
        );
        assert_eq!(
            dec(b"a\xe2\x82", "utf-8", "strict").unwrap_err().reason,
            "unexpected end of data"
        );
        assert_eq!(
            dec(b"a\xe2(x", "utf-8", "strict").unwrap_err().reason,
            "invalid continuation byte"
        );
        assert_eq!(
            dec(b"a\xffb\xe2\x82", "utf-8", "replace").unwrap(),
            "a\u{FFFD}b\u{FFFD}"
        );
        assert_eq!(dec(b"a\xffb", "utf-8", "ignore").unwrap(), "ab");
        assert_eq!(
            dec(b"a\xff\xfeb", "utf-8", "backslashreplace").unwrap(),
            "a\\xff\\xfeb"
        );
        assert!(dec(b"a\xff", "utf-8", "xmlcharrefreplace").is_err());
        // A BOM stays with utf-8 and goes with utf-8-sig.
        assert_eq!(
            dec(b"\xEF\xBB\xBFhi", "utf-8", "strict").unwrap(),
            "\u{FEFF}hi"
        );
        assert_eq!(dec(b"\xEF\xBB\xBFhi", "utf-8-sig", "strict").unwrap(), "hi");
        assert_eq!(dec(b"hi", "utf-8-sig", "strict").unwrap(), "hi");
        assert_eq!(
            dec(b"\xEF\xBB\xBFh\xff", "utf-8-sig", "strict")
                .unwrap_err()
                .offset,
            4
        );
    }

    #[test]
    fn single_byte_codecs() {
        assert_eq!(dec(b"caf\xe9", "latin-1", "strict").unwrap(), "café");
        assert_eq!(dec(b"\x80 \x93x\x94", "cp1252", "strict").unwrap(), "€ “x”");
        assert_eq!(
            dec(b"a\x81", "cp1252", "strict").unwrap_err(),
            DecodeError {
                offset: 1,
                byte: 0x81,
                reason: "character maps to <undefined>"
            }
        );
        assert_eq!(dec(b"a\x81", "cp1252", "replace").unwrap(), "a\u{FFFD}");
        assert_eq!(dec(b"a\xe9", "ascii", "strict").unwrap_err().offset, 1);
        assert_eq!(dec(b"a\xe9", "ascii", "ignore").unwrap(), "a");

        let enc =
            |t: &str, e: &str, h: &str| encode(t, lookup(e).unwrap(), errors(h).unwrap(), true);
        assert_eq!(enc("café €", "cp1252", "strict").unwrap(), b"caf\xe9 \x80");
        assert_eq!(enc("café", "latin-1", "strict").unwrap(), b"caf\xe9");
        assert_eq!(
            enc("a€", "latin-1", "strict").unwrap_err(),
            EncodeError {
                position: 1,
                ch: '€'
            }
        );
        assert_eq!(enc("a€é", "ascii", "replace").unwrap(), b"a??");
        assert_eq!(enc("a€é", "ascii", "ignore").unwrap(), b"a");
        assert_eq!(
            enc("a€é😀", "ascii", "backslashreplace").unwrap(),
            b"a\\u20ac\\xe9\\U0001f600"
        );
        assert_eq!(
            enc("a€", "latin-1", "xmlcharrefreplace").unwrap(),
            b"a&#8364;"
        );
        assert_eq!(enc("Ā", "cp1252", "strict").unwrap_err().ch, 'Ā');
        // Every cp1252 byte that decodes encodes back to itself.
        for b in 0u8..=255 {
            if let Some(c) = cp1252_decode(b) {
                assert_eq!(cp1252_encode(c), Some(b), "byte {b:#x}");
            }
        }
    }

    #[test]
    fn utf16_with_and_without_bom() {
        let text = "hé😀";
        let le = encode(text, Encoding::Utf16, Errors::Strict, true).unwrap();
        assert_eq!(&le[..2], b"\xFF\xFE");
        assert_eq!(le.len(), 2 + 2 + 2 + 4);
        assert_eq!(decode(&le, Encoding::Utf16, Errors::Strict).unwrap(), text);
        let mut be = b"\xFE\xFF".to_vec();
        be.extend(encode(text, Encoding::Utf16Be, Errors::Strict, true).unwrap());
        assert_eq!(decode(&be, Encoding::Utf16, Errors::Strict).unwrap(), text);
        let bare = encode(text, Encoding::Utf16Le, Errors::Strict, true).unwrap();
        assert_eq!(
            decode(&bare, Encoding::Utf16, Errors::Strict).unwrap(),
            text
        );
        assert_eq!(
            encode(text, Encoding::Utf16, Errors::Strict, false).unwrap(),
            bare
        );
        assert_eq!(
            decode(b"\xFF\xFEa\x00b", Encoding::Utf16, Errors::Strict).unwrap_err(),
            DecodeError {
                offset: 4,
                byte: b'b',
                reason: "truncated data"
            }
        );
        assert_eq!(
            decode(b"\x00\xdca\x00", Encoding::Utf16Le, Errors::Strict)
                .unwrap_err()
                .reason,
            "illegal encoding"
        );
        assert_eq!(
            decode(b"\x00\xdca\x00", Encoding::Utf16Le, Errors::Replace).unwrap(),
            "\u{FFFD}a"
        );
        assert_eq!(
            decode(b"\x3d\xd8a\x00", Encoding::Utf16Le, Errors::Strict)
                .unwrap_err()
                .reason,
            "illegal UTF-16 surrogate"
        );
    }

    #[test]
    fn newlines() {
        assert_eq!(universal_newlines("a\r\nb\rc\n".into()), "a\nb\nc\n");
        assert_eq!(universal_newlines("plain".into()), "plain");
    }
}
