//! Bare names across servers: which server offers each unprefixed tool, prompt and resource
//! (URI templates included), for catalogs that do not prefix names. A name two servers offer
//! belongs to neither.

use std::collections::HashMap;

use super::ServerId;

/// Who offers a bare name when tools are not prefixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Exactly one server.
    One(ServerId),
    /// Two or more servers: the name is withheld and refused.
    Collision,
}

/// Which server offers each bare tool, prompt and resource name, for [`ToolPrefix::Never`](super::ToolPrefix::Never).
///
/// An aggregating service fills it from its upstreams' lists; without it, bare names cannot be
/// attributed and are refused (fail closed).
#[derive(Clone, Debug, Default)]
pub struct NameIndex {
    tools: HashMap<Box<str>, Owner>,
    prompts: HashMap<Box<str>, Owner>,
    resources: HashMap<Box<str>, Owner>,
    /// Resource URI templates (RFC 6570), matched when a URI is not listed as such.
    templates: Vec<(Box<str>, ServerId)>,
}

/// Which namespace of a [`NameIndex`] a name belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// Tool names.
    Tool,
    /// Prompt names.
    Prompt,
    /// Resource URIs and URI templates.
    Resource,
}

impl NameIndex {
    /// Records that `server` offers `name`; a second server offering it makes a collision.
    ///
    /// A resource name with a `{` is a URI template (`test://items/{id}`; a URI cannot hold a
    /// bare `{`): URIs it expands to belong to `server` too, unless a listed URI says otherwise.
    pub fn insert(&mut self, kind: NameKind, name: &str, server: ServerId) {
        if kind == NameKind::Resource
            && name.contains('{')
            && !self
                .templates
                .iter()
                .any(|(t, s)| **t == *name && *s == server)
        {
            self.templates.push((name.into(), server));
        }
        let map = self.map_mut(kind);
        match map.get_mut(name) {
            Some(owner) if *owner != Owner::One(server) => *owner = Owner::Collision,
            Some(_) => {}
            None => {
                map.insert(name.into(), Owner::One(server));
            }
        }
    }

    /// Who offers `name`: a listed name, else (for resources) the servers whose URI templates
    /// match it — one server, or a collision when templates of several match.
    #[must_use]
    pub fn owner(&self, kind: NameKind, name: &str) -> Option<Owner> {
        if let Some(owner) = self.map(kind).get(name) {
            return Some(*owner);
        }
        if kind != NameKind::Resource {
            return None;
        }
        let mut found = None;
        for (template, server) in &self.templates {
            if uri_template_matches(template, name) {
                match found {
                    None => found = Some(Owner::One(*server)),
                    Some(Owner::One(s)) if s != *server => return Some(Owner::Collision),
                    Some(_) => {}
                }
            }
        }
        found
    }

    /// Names offered by more than one server.
    pub fn collisions(&self, kind: NameKind) -> impl Iterator<Item = &str> {
        self.map(kind)
            .iter()
            .filter(|(_, o)| **o == Owner::Collision)
            .map(|(n, _)| &**n)
    }

    fn map(&self, kind: NameKind) -> &HashMap<Box<str>, Owner> {
        match kind {
            NameKind::Tool => &self.tools,
            NameKind::Prompt => &self.prompts,
            NameKind::Resource => &self.resources,
        }
    }

    fn map_mut(&mut self, kind: NameKind) -> &mut HashMap<Box<str>, Owner> {
        match kind {
            NameKind::Tool => &mut self.tools,
            NameKind::Prompt => &mut self.prompts,
            NameKind::Resource => &mut self.resources,
        }
    }
}

/// Whether `uri` is an expansion of the RFC 6570 template `template`. A simple expression
/// (`{id}`) stands for one or more characters other than `/ ? #`; an expression with an operator
/// (`{+path}`, `{/segments}`, `{?query}`, …) for any run of characters, possibly empty. Literal
/// text must match exactly.
fn uri_template_matches(template: &str, uri: &str) -> bool {
    // Which positions of `uri` the template so far can end at: one pass per template part, so
    // the cost stays polynomial whatever the template (no backtracking).
    let u = uri.as_bytes();
    let mut t = template.as_bytes();
    let mut reach = vec![false; u.len() + 1];
    reach[0] = true;
    while !t.is_empty() {
        let mut next = vec![false; u.len() + 1];
        if t[0] == b'{' {
            let Some(close) = t.iter().position(|&b| b == b'}') else {
                return false;
            };
            // A variable name starts with a letter, digit, `_` or `%`; anything else is an operator.
            let simple = t
                .get(1)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'%');
            for start in (0..=u.len()).filter(|&i| reach[i]) {
                if simple {
                    for end in start + 1..=u.len() {
                        if matches!(u[end - 1], b'/' | b'?' | b'#') {
                            break;
                        }
                        next[end] = true;
                    }
                } else {
                    next[start..].fill(true);
                    break; // every later start is covered already
                }
            }
            t = &t[close + 1..];
        } else {
            let len = t.iter().position(|&b| b == b'{').unwrap_or(t.len());
            let literal = &t[..len];
            for start in (0..=u.len()).filter(|&i| reach[i]) {
                if u[start..].starts_with(literal) {
                    next[start + len] = true;
                }
            }
            t = &t[len..];
        }
        reach = next;
    }
    reach[u.len()]
}
