//! Decoding a requirement file as pip does (`_decode_req_file`): a BOM wins, then a PEP 263
//! `coding:` comment on line 1 or 2, then UTF-8.

use anyhow::{bail, Result};

const BOMS: &[(&[u8], &str)] = &[
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
];

/// Decodes `data`; errors say what went wrong without the file name (the caller adds it).
pub fn decode(data: &[u8]) -> Result<String> {
    for (bom, enc) in BOMS {
        if let Some(rest) = data.strip_prefix(*bom) {
            return decode_as(rest, enc);
        }
    }
    // PEP 263: `coding[:=]\s*([-\w.]+)` on one of the first two lines, which must start with `#`.
    for line in data.split(|&b| b == b'\n').take(2) {
        if line.first() == Some(&b'#') {
            if let Some(enc) = coding_declaration(line) {
                return decode_as(data, &enc);
            }
        }
    }
    decode_as(data, "utf-8")
}

fn coding_declaration(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let mut rest = text.as_ref();
    while let Some(i) = rest.find("coding") {
        let after = &rest[i + 6..];
        if let Some(v) = after.strip_prefix([':', '=']) {
            let v = v.trim_start_matches([' ', '\t', '\x0c']);
            let name: String = v
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            if !name.is_empty() {
                return Some(name);
            }
        }
        rest = after;
    }
    None
}

fn decode_as(data: &[u8], encoding: &str) -> Result<String> {
    let label = encoding.to_ascii_lowercase().replace('_', "-");
    let text = match label.as_str() {
        "utf-8" | "utf8" | "utf-8-sig" | "u8" => match std::str::from_utf8(data) {
            Ok(s) => s.strip_prefix('\u{feff}').unwrap_or(s).to_string(),
            Err(e) => bail!(
                "not valid UTF-8 at byte {} (line {})",
                e.valid_up_to(),
                line_of(data, e.valid_up_to())
            ),
        },
        // Python's latin-1 maps every byte to the code point of the same value; WHATWG's label
        // would give windows-1252 instead.
        "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1" | "8859" | "cp819" => {
            data.iter().map(|&b| b as char).collect()
        }
        "ascii" | "us-ascii" | "646" => match data.iter().position(|b| !b.is_ascii()) {
            None => String::from_utf8(data.to_vec()).expect("ASCII is UTF-8"),
            Some(i) => bail!("not valid ascii at byte {i} (line {})", line_of(data, i)),
        },
        "utf-32-be" | "utf-32-le" => {
            let be = label.ends_with("be");
            if !data.len().is_multiple_of(4) {
                bail!("not valid {label}: truncated data");
            }
            let mut s = String::new();
            for chunk in data.chunks(4) {
                let arr = [chunk[0], chunk[1], chunk[2], chunk[3]];
                let v = if be {
                    u32::from_be_bytes(arr)
                } else {
                    u32::from_le_bytes(arr)
                };
                match char::from_u32(v) {
                    Some(c) => s.push(c),
                    None => bail!("not valid {label}: code point {v:#x}"),
                }
            }
            s
        }
        other => {
            let other = other.replace("utf-16-", "utf-16");
            let Some(enc) = encoding_rs::Encoding::for_label(other.as_bytes()) else {
                bail!("unknown encoding `{encoding}`");
            };
            let (text, had_errors) = enc.decode_without_bom_handling(data);
            if had_errors {
                bail!("not valid {}", enc.name());
            }
            text.into_owned()
        }
    };
    Ok(text)
}

fn line_of(data: &[u8], offset: usize) -> usize {
    data[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        let mut v = vec![0xff, 0xfe];
        for u in s.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
        v
    }

    #[test]
    fn boms() {
        assert_eq!(decode(b"\xef\xbb\xbffoo==1\n").unwrap(), "foo==1\n");
        assert_eq!(decode(&utf16le("foo==1\n")).unwrap(), "foo==1\n");
        let mut be = vec![0xfe, 0xff];
        for u in "bar".encode_utf16() {
            be.extend_from_slice(&u.to_be_bytes());
        }
        assert_eq!(decode(&be).unwrap(), "bar");
        let mut le32 = vec![0xff, 0xfe, 0, 0];
        for c in "baz".chars() {
            le32.extend_from_slice(&(c as u32).to_le_bytes());
        }
        assert_eq!(decode(&le32).unwrap(), "baz");
    }

    #[test]
    fn pep263_on_line_one_or_two() {
        assert_eq!(
            decode(b"# -*- coding: latin-1 -*-\n# caf\xe9\nfoo\n").unwrap(),
            "# -*- coding: latin-1 -*-\n# caf\u{e9}\nfoo\n"
        );
        assert_eq!(
            decode(b"#!x\n# vim: set fileencoding=cp1252 :\n# \x80\n").unwrap(),
            "#!x\n# vim: set fileencoding=cp1252 :\n# \u{20ac}\n"
        );
        // Only lines that start with `#` count, and only the first two.
        assert!(decode(b"foo # coding: latin-1\n\xe9\n").is_err());
        assert!(decode(b"\n\n# coding: latin-1\n\xe9\n").is_err());
    }

    #[test]
    fn bad_utf8_names_the_line() {
        let err = decode(b"foo\nbar\xff\n").unwrap_err();
        assert_eq!(err.to_string(), "not valid UTF-8 at byte 7 (line 2)");
    }

    #[test]
    fn unknown_encoding() {
        let err = decode(b"# coding: klingon\n").unwrap_err();
        assert_eq!(err.to_string(), "unknown encoding `klingon`");
    }
}
