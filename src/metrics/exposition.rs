//! [`Exposition`]: text in the Prometheus exposition format, one metric family at a time.

use std::fmt::Write;

/// Text in the Prometheus exposition format (version 0.0.4), built one family at a time: its
/// `# HELP` and `# TYPE` lines, then its samples. Label values are escaped; labels with no
/// value are left out.
///
/// ```
/// use mcp_gatekeeper::metrics::Exposition;
///
/// let mut text = Exposition::new();
/// text.family("jobs_running", "gauge", "Jobs running now.");
/// text.sample("jobs_running", &[("queue", Some("a \"b\""))], 3.0);
/// assert_eq!(
///     text.finish(),
///     "# HELP jobs_running Jobs running now.\n# TYPE jobs_running gauge\njobs_running{queue=\"a \\\"b\\\"\"} 3\n"
/// );
/// ```
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Exposition {
    /// Empty text.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the family `name` of `kind` (`counter`, `gauge`, `histogram`), described by
    /// `help` (one line).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the current family: `name` (the family's, or one of a histogram's
    /// `_bucket`, `_sum` and `_count`), its labels in order, and its value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, Option<&str>)], value: f64) {
        self.out.push_str(name);
        let mut first = true;
        for (label, value) in labels {
            let Some(value) = value else { continue };
            self.out.push(if first { '{' } else { ',' });
            first = false;
            self.out.push_str(label);
            self.out.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        if !first {
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(&mut self.out, value);
        self.out.push('\n');
    }

    /// The text.
    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

fn push_value(out: &mut String, value: f64) {
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.is_nan() {
        out.push_str("NaN");
    } else {
        let _ = write!(out, "{value}");
    }
}
