//! Configuration of the gateway's metrics (`general_settings.metrics`).

use serde::Deserialize;

/// `general_settings.metrics`: what the gateway measures and who may read `GET /metrics`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Measure and serve `GET /metrics` (default `true`).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Let anyone read `GET /metrics` (default `false`: the master key only).
    #[serde(default)]
    pub public: bool,
    /// How many distinct tool, prompt and server names become labels (default 200); later
    /// ones are counted under `_OTHER`.
    pub max_names: Option<usize>,
}

fn enabled() -> bool {
    true
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            public: false,
            max_names: None,
        }
    }
}
