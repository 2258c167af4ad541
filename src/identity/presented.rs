//! What a request presents to the identity layer: its key (the key header, with or without
//! `Bearer `, else a bearer `Authorization`), the end user and agent it names, and its MCP
//! session id, each header read once and refused when repeated or unreadable. It never decides
//! who the caller is.

use http::{HeaderName, header};

use super::HeaderNames;
use crate::protocol::SESSION_HEADER;
use crate::rejection::Rejection;

/// At most one value of a header, as UTF-8; several values or bytes that are not visible ASCII
/// are an error (fail closed: which one would the next hop read?).
pub(crate) fn one_header<'h>(
    headers: &'h http::HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h str>, Rejection> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Rejection::bad_request(format!("repeated {name} header")));
    }
    let value = first
        .to_str()
        .map_err(|_| Rejection::bad_request(format!("{name} header is not visible ASCII")))?
        .trim();
    Ok((!value.is_empty()).then_some(value))
}

/// The session id exactly as the service behind will read it: one header, not empty, no
/// surrounding spaces (which this layer would trim and the service might not).
pub(super) fn session_header(headers: &http::HeaderMap) -> Result<Option<&str>, Rejection> {
    let mut all = headers.get_all(&SESSION_HEADER).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    let value = first.to_str().unwrap_or_default();
    if all.next().is_some() || value.is_empty() || value.trim() != value {
        return Err(Rejection::bad_request(format!(
            "malformed {SESSION_HEADER} header"
        )));
    }
    Ok(Some(value))
}

fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The key of a request: the key header (with or without `Bearer `), else a bearer
/// `Authorization`.
#[cfg(feature = "gateway")]
pub(crate) fn credential<'h>(
    headers: &'h http::HeaderMap,
    names: &HeaderNames,
) -> Result<Option<&'h str>, Rejection> {
    Ok(sourced_credential(headers, names)?.map(|(c, _)| c))
}

/// The credential of a request and whether it came from `Authorization: Bearer` (`true`) rather
/// than the key header.
fn sourced_credential<'h>(
    headers: &'h http::HeaderMap,
    names: &HeaderNames,
) -> Result<Option<(&'h str, bool)>, Rejection> {
    // Checked even when the key header is present: two Authorization headers are ambiguous.
    let authorization = one_header(headers, &header::AUTHORIZATION)?;
    if let Some(v) = one_header(headers, &names.key)? {
        let key = strip_bearer(v).unwrap_or(v);
        return Ok((!key.is_empty()).then_some((key, false)));
    }
    Ok(authorization
        .and_then(strip_bearer)
        .filter(|k| !k.is_empty())
        .map(|k| (k, true)))
}

/// The credential and names a request presents, each header read and checked once.
pub(super) struct Presented<'h> {
    pub(super) key: Option<&'h str>,
    pub(super) bearer: bool,
    pub(super) end_user: Option<&'h str>,
    pub(super) agent: Option<&'h str>,
}

pub(super) fn presented<'h>(
    names: &HeaderNames,
    parts: &'h http::request::Parts,
) -> Result<Presented<'h>, Rejection> {
    let headers = &parts.headers;
    let credential = sourced_credential(headers, names)?;
    Ok(Presented {
        key: credential.map(|(c, _)| c),
        bearer: credential.is_some_and(|(_, bearer)| bearer),
        end_user: one_header(headers, &names.end_user)?,
        agent: one_header(headers, &names.agent)?,
    })
}
