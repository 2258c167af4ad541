//! Limits and budgets of one level (a key, team, organisation, end user or agent): what the
//! configuration says ([`LimitSpec`]) and the same checked against the catalog ([`LevelLimits`]),
//! with the names of the counters that enforce it computed once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Catalog, Level, ServerId};

/// An amount of money in billionths of a dollar, so that sums are exact (twenty calls at 0.05
/// are exactly 1.00).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    /// Dollars, rounded to the nearest billionth; a negative or non-finite amount is zero.
    #[must_use]
    pub fn from_dollars(dollars: f64) -> Self {
        if dollars.is_finite() && dollars > 0.0 {
            // Saturating: an absurd price is the largest amount, never a wrap-around.
            Self((dollars * 1e9).round() as u64)
        } else {
            Self(0)
        }
    }

    /// The amount in dollars.
    #[must_use]
    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// How long a budget lasts before it starts again: LiteLLM's `budget_duration`, `<n>s`, `<n>m`,
/// `<n>h`, `<n>d`, `<n>w` or `<n>mo` (a month is 30 days). Periods are whole multiples of
/// their length since the Unix epoch, so every replica (and a restarted one) agrees on them: a
/// `1d` budget starts again at midnight UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetPeriod(pub Duration);

impl BudgetPeriod {
    /// Reads LiteLLM's duration form.
    ///
    /// # Errors
    ///
    /// A text that is not a positive whole number followed by one of the units.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (n, unit) = text.split_at(digits);
        let unit_seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "mo" => 30 * 86_400,
            _ => {
                return Err(format!(
                    "`{text}` is not a duration like 30s, 1h, 1d, 4w or 1mo"
                ));
            }
        };
        let n: u64 = n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{text}` is not a duration like 30s, 1h, 1d, 4w or 1mo"))?;
        n.checked_mul(unit_seconds)
            .map(|s| Self(Duration::from_secs(s)))
            .ok_or_else(|| format!("`{text}` is too long a duration"))
    }
}

/// Limits on one tool of one server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolLimitSpec {
    /// Calls per minute.
    pub rpm: Option<u64>,
    /// Calls in flight at once.
    pub max_parallel: Option<u64>,
}

/// The limits and budget of one level, as configuration states them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitSpec {
    /// Tool calls per minute, to any server (LiteLLM's `rpm_limit`).
    pub rpm_limit: Option<u64>,
    /// Tool calls in flight at once, to any server (LiteLLM's `max_parallel_requests`).
    pub max_parallel_requests: Option<u64>,
    /// Tool calls per minute per server, by server name or alias (LiteLLM's `mcp_rpm_limit`).
    pub mcp_rpm_limit: Vec<(String, u64)>,
    /// Limits per tool: server name or alias, bare tool name, limits.
    pub mcp_tool_limits: Vec<(String, String, ToolLimitSpec)>,
    /// Dollars that tool calls may cost (LiteLLM's `max_budget`).
    pub max_budget: Option<f64>,
    /// When the budget starts again (LiteLLM's `budget_duration`); `None`: never.
    pub budget_duration: Option<BudgetPeriod>,
}

impl LimitSpec {
    /// Whether nothing is set (a `budget_duration` alone is set, and refused by compiling).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rpm_limit.is_none()
            && self.max_parallel_requests.is_none()
            && self.mcp_rpm_limit.is_empty()
            && self.mcp_tool_limits.is_empty()
            && self.max_budget.is_none()
            && self.budget_duration.is_none()
    }
}

/// A mistake in a level's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitError {
    /// The limits name a server the catalog does not have.
    UnknownServer(String),
    /// A limit of zero calls (refuse the server or tool instead) or a budget that is negative
    /// or not a number.
    Invalid(String),
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownServer(s) => {
                write!(f, "limits name server `{s}`, which is not configured")
            }
            Self::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for LimitError {}

/// One limit of a level, with the name of the counter that enforces it.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    /// The counter's name: the level's subject and what is counted (never a key).
    pub counter: Arc<str>,
    /// The level the limit belongs to.
    pub level: Level,
    /// The id the spend ledger records the level under (a key's alias, else its short digest
    /// id; the id of any other level): where a budget's past spend is read from.
    pub ledger: Arc<str>,
    /// What is limited.
    pub kind: LimitKind,
    /// Where it applies: all servers, one server, or one tool of one server.
    pub applies_to: AppliesTo,
}

/// What a [`Limit`] counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LimitKind {
    /// Calls per minute.
    Rate(u64),
    /// Calls in flight at once.
    Parallel(u64),
    /// Dollars per period (or for ever).
    Budget {
        /// The most that may be spent.
        max: Nanos,
        /// When it starts again.
        period: Option<BudgetPeriod>,
    },
}

/// Where a [`Limit`] applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppliesTo {
    /// Every tool of every server.
    All,
    /// Every tool of one server.
    Server(ServerId),
    /// One tool of one server.
    Tool(ServerId, Box<str>),
}

impl Limit {
    /// Whether the limit applies to a call of `tool` (bare name) on `server`.
    #[must_use]
    pub fn applies(&self, server: ServerId, tool: &str) -> bool {
        self.applies_to.covers(server, tool)
    }
}

impl AppliesTo {
    fn covers(&self, server: ServerId, tool: &str) -> bool {
        match self {
            Self::All => true,
            Self::Server(s) => *s == server,
            Self::Tool(s, t) => *s == server && **t == *tool,
        }
    }
}

/// The limits of one level, checked against the catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LevelLimits {
    limits: Vec<Limit>,
}

impl LevelLimits {
    /// Checks `spec` against `catalog`; `subject` names the level in counter names (for a key,
    /// a digest prefix, never the key).
    ///
    /// # Errors
    ///
    /// A server the catalog lacks, a zero call limit, a bad budget.
    pub(crate) fn compile(
        catalog: &Catalog,
        level: Level,
        subject: &str,
        ledger: &str,
        spec: &LimitSpec,
    ) -> Result<Self, LimitError> {
        let mut limits = Vec::new();
        let ledger: Arc<str> = ledger.into();
        let mut push = |what: &str, kind: LimitKind, applies_to: AppliesTo| {
            limits.push(Limit {
                counter: format!("{subject}:{what}").into(),
                level,
                ledger: Arc::clone(&ledger),
                kind,
                applies_to,
            });
        };
        let calls = |n: u64, field: &str| {
            if n == 0 {
                Err(LimitError::Invalid(format!(
                    "{field} must be at least 1 (to forbid calls, leave the server or tool out of the permissions)"
                )))
            } else {
                Ok(n)
            }
        };
        let server = |name: &str| {
            catalog
                .lookup(name)
                .ok_or_else(|| LimitError::UnknownServer(name.to_owned()))
        };
        if let Some(n) = spec.rpm_limit {
            push(
                "rpm",
                LimitKind::Rate(calls(n, "rpm_limit")?),
                AppliesTo::All,
            );
        }
        if let Some(n) = spec.max_parallel_requests {
            let n = calls(n, "max_parallel_requests")?;
            push("parallel", LimitKind::Parallel(n), AppliesTo::All);
        }
        for (name, n) in &spec.mcp_rpm_limit {
            let id = server(name)?;
            let canonical = catalog.server(id).name();
            let n = calls(*n, "mcp_rpm_limit")?;
            push(
                &format!("rpm:{}", escape(canonical)),
                LimitKind::Rate(n),
                AppliesTo::Server(id),
            );
        }
        for (name, tool, t) in &spec.mcp_tool_limits {
            let id = server(name)?;
            let canonical = catalog.server(id).name();
            if let Some(n) = t.rpm {
                let n = calls(n, "mcp_tool_limits rpm")?;
                push(
                    &format!("rpm:{}/{}", escape(canonical), escape(tool)),
                    LimitKind::Rate(n),
                    AppliesTo::Tool(id, tool.as_str().into()),
                );
            }
            if let Some(n) = t.max_parallel {
                let n = calls(n, "mcp_tool_limits max_parallel")?;
                push(
                    &format!("parallel:{}/{}", escape(canonical), escape(tool)),
                    LimitKind::Parallel(n),
                    AppliesTo::Tool(id, tool.as_str().into()),
                );
            }
        }
        if let Some(max) = spec.max_budget {
            if !max.is_finite() || max < 0.0 {
                return Err(LimitError::Invalid(
                    "max_budget must be a number of dollars, zero or more".into(),
                ));
            }
            push(
                "budget",
                LimitKind::Budget {
                    max: Nanos::from_dollars(max),
                    period: spec.budget_duration,
                },
                AppliesTo::All,
            );
        } else if spec.budget_duration.is_some() {
            return Err(LimitError::Invalid(
                "budget_duration needs max_budget".into(),
            ));
        }
        Ok(Self { limits })
    }

    /// Whether nothing is limited.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Every limit of the level.
    #[must_use]
    pub fn all(&self) -> &[Limit] {
        &self.limits
    }

    /// The limits that apply to a call of `tool` (bare name) on `server`.
    pub(crate) fn applying_to<'a>(
        &'a self,
        server: ServerId,
        tool: &'a str,
    ) -> impl Iterator<Item = &'a Limit> + 'a {
        self.limits
            .iter()
            .filter(move |l| l.applies_to.covers(server, tool))
    }
}

/// The name of a level in counter names: its kind and id, with `:` and `%` escaped so that
/// no two levels, servers or tools can make the same name.
pub(crate) fn subject(level: Level, id: &str) -> String {
    let kind = match level {
        Level::Key => "key",
        Level::Team => "team",
        Level::Organization => "org",
        Level::EndUser => "user",
        Level::Agent => "agent",
    };
    format!("{kind}:{}", escape(id))
}

fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([':', '%', '/']) {
        text.replace('%', "%25")
            .replace(':', "%3A")
            .replace('/', "%2F")
            .into()
    } else {
        text.into()
    }
}

/// Compiles the limits of one level; `None` when it has none.
pub(crate) fn compile_level(
    catalog: &Catalog,
    level: Level,
    subject: &str,
    ledger: &str,
    spec: Option<&LimitSpec>,
) -> Result<Option<Arc<LevelLimits>>, LimitError> {
    match spec {
        Some(spec) if !spec.is_empty() => {
            LevelLimits::compile(catalog, level, subject, ledger, spec).map(|l| Some(Arc::new(l)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_litellm_writes_them() {
        let secs = |t: &str| BudgetPeriod::parse(t).map(|p| p.0.as_secs());
        assert_eq!(secs("30s"), Ok(30));
        assert_eq!(secs("1h"), Ok(3_600));
        assert_eq!(secs("1d"), Ok(86_400));
        assert_eq!(secs("30d"), Ok(30 * 86_400));
        assert_eq!(secs("2w"), Ok(14 * 86_400));
        assert_eq!(secs("1mo"), Ok(30 * 86_400));
        for bad in ["", "d", "0d", "1y", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(BudgetPeriod::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_is_counted_exactly() {
        let price = Nanos::from_dollars(0.05);
        assert_eq!(Nanos(price.0 * 20), Nanos::from_dollars(1.0));
        assert_eq!(Nanos::from_dollars(-1.0), Nanos(0));
        assert_eq!(Nanos::from_dollars(f64::NAN), Nanos(0));
    }
}
