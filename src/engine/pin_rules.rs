//! A server's pinning rules ([`PinRules`]), as configuration gives them.

use std::collections::HashMap;

use super::pin_digest::{PinDigest, PinKind};

/// `tool_pinning` of a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PinMode {
    /// Definitions are not looked at.
    #[default]
    Off,
    /// Changes are reported, nothing is withheld.
    Observe,
    /// Quarantined tools and prompts are withheld from lists and refused.
    Enforce,
}

/// `pin_new_tools` of a server: what happens to a definition without a pin once the server's
/// definitions were pinned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NewTools {
    /// It is pinned as it is first seen (trust on first use).
    #[default]
    Pin,
    /// It is quarantined until approved.
    Quarantine,
}

/// A server's pinning rules, as configuration gives them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PinRules {
    /// `tool_pinning`.
    pub mode: PinMode,
    /// `pin_new_tools`.
    pub new_tools: NewTools,
    /// `pinned_tools`: bare tool name and its pin.
    pub tools: HashMap<Box<str>, PinDigest>,
    /// `pinned_prompts`: bare prompt name and its pin.
    pub prompts: HashMap<Box<str>, PinDigest>,
}

/// The configuration pins no UI resource (MCP Apps): their pins are learned or approved.
static NO_PINS: std::sync::LazyLock<HashMap<Box<str>, PinDigest>> =
    std::sync::LazyLock::new(HashMap::new);

impl PinRules {
    /// The pins configuration gives for definitions of `kind`.
    pub(crate) fn configured(&self, kind: PinKind) -> &HashMap<Box<str>, PinDigest> {
        match kind {
            PinKind::Tool => &self.tools,
            PinKind::Prompt => &self.prompts,
            PinKind::App => &NO_PINS,
        }
    }
}
