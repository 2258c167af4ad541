//! `allowed_params`: which top-level argument names a tool call may carry.

use std::fmt::{self, Write as _};

use super::{Catalog, ServerId};

/// A `tools/call` carried arguments its server does not allow for that tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamsDenial {
    /// The bare tool name.
    pub tool: String,
    /// The names sent that are not allowed, in request order.
    pub disallowed: Vec<String>,
    /// The names that are allowed, in config order.
    pub allowed: Vec<String>,
}

impl fmt::Display for ParamsDenial {
    /// LiteLLM's text, word for word, lists in Python `repr` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Parameters {} are not allowed for tool {}. Allowed parameters: {}. Contact proxy admin to allow these parameters.",
            PyList(&self.disallowed),
            self.tool,
            PyList(&self.allowed)
        )
    }
}

/// Formats strings as Python's `repr` of a list of `str`.
struct PyList<'a>(&'a [String]);

impl fmt::Display for PyList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            py_repr(f, s)?;
        }
        f.write_char(']')
    }
}

fn py_repr(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    // Python quotes with ' unless the text holds ' and no ".
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    f.write_char(quote)?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c == quote => write!(f, "\\{c}")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char(quote)
}

impl Catalog {
    /// Checks the top-level argument names of a call to `bare_tool` on `server`.
    ///
    /// A tool without an `allowed_params` entry accepts anything; an empty list accepts no
    /// argument at all.
    ///
    /// # Errors
    ///
    /// A [`ParamsDenial`] listing the names that are not allowed.
    pub fn check_params<K: AsRef<str>>(
        &self,
        server: ServerId,
        bare_tool: &str,
        keys: &[K],
    ) -> Result<(), ParamsDenial> {
        let Some(allowed) = self.server(server).allowed_params(bare_tool) else {
            return Ok(());
        };
        let is_allowed = |k: &str| allowed.iter().any(|a| **a == *k);
        if keys.iter().all(|k| is_allowed(k.as_ref())) {
            return Ok(());
        }
        Err(ParamsDenial {
            tool: bare_tool.to_owned(),
            disallowed: keys
                .iter()
                .map(AsRef::as_ref)
                .filter(|k| !is_allowed(k))
                .map(str::to_owned)
                .collect(),
            allowed: allowed.iter().map(|a| a.to_string()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_matches_litellm_exactly() {
        let d = ParamsDenial {
            tool: "read_wiki_contents".into(),
            disallowed: vec!["limit".into()],
            allowed: vec!["status".into()],
        };
        assert_eq!(
            d.to_string(),
            "Parameters ['limit'] are not allowed for tool read_wiki_contents. Allowed parameters: ['status']. Contact proxy admin to allow these parameters."
        );
        let d = ParamsDenial {
            tool: "t".into(),
            disallowed: vec!["a".into(), "it's".into(), "q\"'\\".into()],
            allowed: vec![],
        };
        assert_eq!(
            d.to_string(),
            r#"Parameters ['a', "it's", 'q"\'\\'] are not allowed for tool t. Allowed parameters: []. Contact proxy admin to allow these parameters."#
        );
    }
}
