//! The routing headers of protocol 2026-07-28 (`Mcp-Method`, `Mcp-Name`), held against the
//! body they travel with: absent is fine, present must agree exactly.

use std::borrow::Cow;

use super::request::{McpRequest, Method, ParseError};

/// Checks the `Mcp-Method` and `Mcp-Name` headers (protocol 2026-07-28) against the body.
///
/// Absent headers are fine (older protocol versions do not send them); present ones must agree
/// with the body exactly, after `=?base64?…?=` decoding.
///
/// # Errors
///
/// [`ParseError::HeaderMismatch`] when a header is repeated, undecodable or disagrees.
pub(crate) fn check_routing_headers(
    headers: &http::HeaderMap,
    request: &McpRequest,
) -> Result<(), ParseError> {
    if let Some(value) = single_header(headers, "mcp-method")? {
        let body = request.method.as_ref().map(Method::as_str);
        if body != Some(value.as_ref()) {
            return Err(ParseError::HeaderMismatch(
                "Mcp-Method header does not match the request body".into(),
            ));
        }
    }
    if let Some(value) = single_header(headers, "mcp-name")? {
        let expected = request
            .method
            .as_ref()
            .and_then(Method::target_field)
            .and(request.target.as_deref());
        if expected != Some(value.as_ref()) {
            return Err(ParseError::HeaderMismatch(
                "Mcp-Name header does not match the request body".into(),
            ));
        }
    }
    if let Some(stated) = request.protocol_version.as_deref() {
        match single_header(headers, "mcp-protocol-version")? {
            Some(header) if header == stated => {}
            Some(_) => {
                return Err(ParseError::HeaderMismatch(
                    "MCP-Protocol-Version header does not match the protocol version in _meta"
                        .into(),
                ));
            }
            None => {
                return Err(ParseError::HeaderMismatch(
                    "a protocol version in _meta needs the MCP-Protocol-Version header".into(),
                ));
            }
        }
    }
    Ok(())
}

fn single_header<'h>(
    headers: &'h http::HeaderMap,
    name: &str,
) -> Result<Option<Cow<'h, str>>, ParseError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ParseError::HeaderMismatch(format!(
            "repeated {name} header"
        )));
    }
    let text = first
        .to_str()
        .map_err(|_| ParseError::HeaderMismatch(format!("{name} header is not visible ASCII")))?;
    decode_header_value(text)
        .map(Some)
        .ok_or_else(|| ParseError::HeaderMismatch(format!("{name} header is not valid base64")))
}

/// Decodes a header value that may be wrapped as `=?base64?<standard base64>?=`.
#[must_use]
pub(crate) fn decode_header_value(value: &str) -> Option<Cow<'_, str>> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(inner) => String::from_utf8(base64_decode(inner)?)
            .ok()
            .map(Cow::Owned),
        None => Some(Cow::Borrowed(value)),
    }
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = input.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.len() / 4;
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        let last = i + 1 == chunks;
        let pad = if last {
            chunk.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return None;
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            acc = (acc << 6) | sextet(c)?;
        }
        acc <<= 6 * pad as u32;
        let triple = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&triple[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_request;

    fn ok(body: &str) -> McpRequest {
        parse_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    #[test]
    fn routing_headers_must_agree() {
        let r = ok(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#);
        let mut h = http::HeaderMap::new();
        assert!(check_routing_headers(&h, &r).is_ok());
        h.insert("mcp-method", "tools/call".parse().unwrap());
        h.insert("mcp-name", "echo".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_ok());
        h.insert("mcp-name", "=?base64?ZWNobw==?=".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_ok());
        h.insert("mcp-name", "=?base64?ZGVsZXRl?=".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_err());
        h.insert("mcp-name", "=?base64?!!?=".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_err());
        h.insert("mcp-name", "echo".parse().unwrap());
        h.insert("mcp-method", "tools/list".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_err());
        h.insert("mcp-method", "tools/call".parse().unwrap());
        h.append("mcp-name", "echo".parse().unwrap());
        assert!(check_routing_headers(&h, &r).is_err(), "repeated header");
        let list = ok(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        let mut h = http::HeaderMap::new();
        h.insert("mcp-name", "echo".parse().unwrap());
        assert!(
            check_routing_headers(&h, &list).is_err(),
            "a name where the method has none"
        );
        // The tasks extension names a task by its id.
        for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
            let task = ok(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"taskId":"t-1"}}}}"#
            ));
            assert_eq!(task.target.as_deref(), Some("t-1"));
            let mut h = http::HeaderMap::new();
            h.insert("mcp-name", "t-1".parse().unwrap());
            assert!(check_routing_headers(&h, &task).is_ok(), "{method}");
            h.insert("mcp-name", "t-2".parse().unwrap());
            assert!(check_routing_headers(&h, &task).is_err(), "{method}");
        }
        let other = ok(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"taskId":"t-1"}}"#);
        assert_eq!(
            other.target, None,
            "a taskId counts only for the task methods"
        );
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert!(base64_decode("Zm9").is_none());
        assert!(base64_decode("Z===").is_none());
        assert!(base64_decode("Zg==Zm9v").is_none());
    }
}
