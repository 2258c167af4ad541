//! Which revision of MCP a message speaks, and the one place that shapes what the layers and
//! the gateway answer for it.
//!
//! The handshake revisions (2024-11-05 to 2025-11-25) state their version once, in
//! `initialize`, and from 2025-06-18 on in the `MCP-Protocol-Version` header of every later
//! request. From 2026-07-28 on there is no handshake: every request states its version in
//! `params._meta["io.modelcontextprotocol/protocolVersion"]` (and the header must agree), and
//! every result carries `resultType`. A refusal the layers build is a result or an error like
//! any other, so it is shaped here for the era of the request it answers: a 2026-07-28 client
//! rejects a result without `resultType`, and nothing older is sent a field it does not know.

use std::fmt;

use serde_json::{Map, Value};

/// The `_meta` key of a 2026-07-28 request that states its protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// A revision of the MCP protocol, as far as the shape of an answer depends on it.
///
/// Ordered by date. A request that states no version is [`Era::default`], the oldest
/// handshake revision: what a client that sends no version header speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Era {
    /// 2024-11-05: the initialize handshake; legacy HTTP+SSE.
    #[default]
    V2024_11_05,
    /// 2025-03-26: the initialize handshake; streamable HTTP.
    V2025_03_26,
    /// 2025-06-18: the initialize handshake; the `MCP-Protocol-Version` header.
    V2025_06_18,
    /// 2025-11-25: the last revision with the initialize handshake.
    V2025_11_25,
    /// 2026-07-28 and any later revision: per-request versions, `server/discover`,
    /// `resultType` on every result, input-required rounds, `subscriptions/listen`.
    V2026_07_28,
}

impl Era {
    /// Every era, oldest first.
    pub const ALL: [Era; 5] = [
        Era::V2024_11_05,
        Era::V2025_03_26,
        Era::V2025_06_18,
        Era::V2025_11_25,
        Era::V2026_07_28,
    ];

    /// The era of a protocol version string: a known revision, or any later date
    /// (`YYYY-MM-DD` after 2026-07-28), which is answered as 2026-07-28. Anything else is
    /// `None`: a version the layers cannot place.
    #[must_use]
    pub(crate) fn from_version(version: &str) -> Option<Self> {
        let known = Self::ALL.into_iter().find(|e| e.as_str() == version);
        known.or_else(|| {
            (is_date(version) && version > Self::V2026_07_28.as_str()).then_some(Self::V2026_07_28)
        })
    }

    /// The version string of this era.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// Whether this era has no handshake: results carry `resultType`, servers may not send
    /// requests to the client, and each request states its own version.
    #[must_use]
    pub fn is_stateless(self) -> bool {
        self >= Self::V2026_07_28
    }

    /// The era its `MCP-Protocol-Version` header states, when the request has exactly one
    /// such header and it names a version this crate can place.
    #[must_use]
    pub(crate) fn from_header(headers: &http::HeaderMap) -> Option<Self> {
        let mut values = headers.get_all("mcp-protocol-version").iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok().and_then(Self::from_version),
            _ => None,
        }
    }

    /// Shapes a result the layers or the gateway built themselves (a refusal, a result a cost
    /// hook replaced) for this era: `resultType: "complete"` where the era requires it and the
    /// result does not say otherwise; for older eras, no `resultType` at all.
    pub fn shape_result(self, result: &mut Map<String, Value>) {
        if self.is_stateless() {
            if !result.contains_key("resultType") {
                result.insert("resultType".to_owned(), Value::from("complete"));
            }
        } else {
            result.remove("resultType");
        }
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_map_to_eras() {
        for era in Era::ALL {
            assert_eq!(Era::from_version(era.as_str()), Some(era));
        }
        assert_eq!(Era::from_version("2027-01-01"), Some(Era::V2026_07_28));
        assert_eq!(Era::from_version("2026-07-27"), None);
        assert_eq!(Era::from_version("latest"), None);
        assert_eq!(Era::from_version("2027-1-01x"), None);
        assert!(Era::V2026_07_28.is_stateless());
        assert!(!Era::V2025_11_25.is_stateless());
    }

    #[test]
    fn one_readable_header_states_an_era() {
        let mut h = http::HeaderMap::new();
        assert_eq!(Era::from_header(&h), None);
        h.insert("mcp-protocol-version", "2025-06-18".parse().unwrap());
        assert_eq!(Era::from_header(&h), Some(Era::V2025_06_18));
        h.append("mcp-protocol-version", "2025-11-25".parse().unwrap());
        assert_eq!(Era::from_header(&h), None, "two headers state nothing");
        h.insert("mcp-protocol-version", "2025-06-18 ".parse().unwrap());
        assert_eq!(Era::from_header(&h), None, "not a version as sent");
    }

    #[test]
    fn results_are_shaped_per_era() {
        let mut r = json!({"content": [], "isError": true});
        Era::V2026_07_28.shape_result(r.as_object_mut().unwrap());
        assert_eq!(r["resultType"], "complete");
        let mut incomplete = json!({"resultType": "input_required"});
        Era::V2026_07_28.shape_result(incomplete.as_object_mut().unwrap());
        assert_eq!(incomplete["resultType"], "input_required");
        Era::V2025_11_25.shape_result(r.as_object_mut().unwrap());
        assert!(r.get("resultType").is_none());
    }
}
