//! What the standard OpenTelemetry environment variables configure: where spans and metrics
//! go, with which headers, sampled how, how often.

use std::time::Duration;

use super::{ParentBasedRoot, Sampler};
use crate::config::ConfigError;

/// Where and how spans are exported (see [`OtlpTraces::from_env`](super::OtlpTraces::from_env)).
#[derive(Clone, Debug)]
pub struct OtlpSettings {
    /// The traces endpoint (`…/v1/traces`).
    pub endpoint: String,
    /// Headers sent with every export (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
    /// `service.name` (`OTEL_SERVICE_NAME`; default `mcp-gatekeeper`).
    pub service_name: String,
    /// Which traces are kept.
    pub sampler: Sampler,
    /// How spans wait and go in batches (`OTEL_BSP_*`).
    pub batch: BatchSettings,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; 10 s by default).
    pub timeout: Duration,
}

/// How the trace exporter batches spans: the standard batch span processor's variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// How many spans wait at most; more are dropped and counted (`OTEL_BSP_MAX_QUEUE_SIZE`;
    /// 4,096 by default, at most 1,048,576).
    pub max_queue_size: usize,
    /// How many spans one export carries at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`; 512 by
    /// default, no more than the queue holds).
    pub max_export_batch_size: usize,
    /// How long a span waits for its batch at most (`OTEL_BSP_SCHEDULE_DELAY`, in
    /// milliseconds; 1 s by default, so that a trace shows soon after its call).
    pub schedule_delay: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_queue_size: 4096,
            max_export_batch_size: 512,
            schedule_delay: Duration::from_secs(1),
        }
    }
}

/// The largest queue `OTEL_BSP_MAX_QUEUE_SIZE` may ask for (the queue is allocated whole).
const MAX_QUEUE: usize = 1 << 20;

impl BatchSettings {
    /// The settings `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and
    /// `OTEL_BSP_SCHEDULE_DELAY` give, read through `var`; the defaults for those unset.
    ///
    /// # Errors
    ///
    /// A value that is not a positive whole number, a queue over 1,048,576 spans, a batch
    /// larger than the queue.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let default = Self::default();
        let max_queue_size = positive(&var, "OTEL_BSP_MAX_QUEUE_SIZE")?
            .map_or(Ok(default.max_queue_size), usize::try_from)
            .ok()
            .filter(|n| *n <= MAX_QUEUE)
            .ok_or_else(|| {
                bad(
                    "OTEL_BSP_MAX_QUEUE_SIZE",
                    format!("give at most {MAX_QUEUE} spans"),
                )
            })?;
        let max_export_batch_size = positive(&var, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")?
            .map_or(Ok(default.max_export_batch_size), usize::try_from)
            .ok()
            .filter(|n| *n <= max_queue_size)
            .ok_or_else(|| {
                bad(
                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                    "give no more than OTEL_BSP_MAX_QUEUE_SIZE".to_owned(),
                )
            })?;
        let schedule_delay = positive(&var, "OTEL_BSP_SCHEDULE_DELAY")?
            .map_or(default.schedule_delay, Duration::from_millis);
        Ok(Self {
            max_queue_size,
            max_export_batch_size,
            schedule_delay,
        })
    }
}

/// The variable `name` as a positive whole number, if it is set.
fn positive(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<u64>, ConfigError> {
    var(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(name, "give a positive whole number".to_owned()))
        })
        .transpose()
}

/// How long one export of `signal` may take: `OTEL_EXPORTER_OTLP_{signal}_TIMEOUT`, else
/// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; 10 s by default.
fn timeout(var: &impl Fn(&str) -> Option<String>, signal: &str) -> Result<Duration, ConfigError> {
    let own = format!("OTEL_EXPORTER_OTLP_{signal}_TIMEOUT");
    let ms = match positive(var, &own)? {
        Some(ms) => Some(ms),
        None => positive(var, "OTEL_EXPORTER_OTLP_TIMEOUT")?,
    };
    Ok(ms.map_or(Duration::from_secs(10), Duration::from_millis))
}

/// Where and how often metrics are exported (see
/// [`OtlpMetrics::from_env`](super::OtlpMetrics::from_env)).
#[derive(Clone, Debug)]
pub struct OtlpMetricsSettings {
    /// The metrics endpoint (`…/v1/metrics`).
    pub endpoint: String,
    /// Headers sent with every export (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
    /// `service.name` (`OTEL_SERVICE_NAME`; default `mcp-gatekeeper`).
    pub service_name: String,
    /// How long between two exports (`OTEL_METRIC_EXPORT_INTERVAL`, in milliseconds; 60 s by
    /// default).
    pub interval: Duration,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`, else
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; 10 s by default).
    pub timeout: Duration,
}

/// Headers sent with every export: `(name, value)`.
type Headers = Vec<(String, String)>;

fn bad(name: &str, why: String) -> ConfigError {
    ConfigError::new(name.to_owned(), why)
}

/// What one signal (`TRACES`, `METRICS`) is sent to and with: its endpoint (its own variable,
/// else the base one with `path`), its headers; `None` when it is turned off (`exporter`
/// `none`, or the SDK disabled) or no endpoint is set.
fn signal(
    var: &impl Fn(&str) -> Option<String>,
    signal: &str,
    exporter: &str,
    path: &str,
) -> Result<Option<(String, Headers)>, ConfigError> {
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var(exporter).is_some_and(|v| v.trim() == "none")
    {
        return Ok(None);
    }
    for name in [
        format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"),
        "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
    ] {
        if let Some(p) = var(&name).filter(|p| p.trim() != "http/protobuf") {
            return Err(bad(
                &name,
                format!("{p:?}: only http/protobuf is supported"),
            ));
        }
    }
    let endpoint = match (
        var(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")),
        var("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(own), _) => own,
        (None, Some(base)) => format!("{}/{path}", base.trim_end_matches('/')),
        (None, None) => return Ok(None),
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(bad(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "give an http:// or https:// URL".to_owned(),
        ));
    }
    let mut headers = Vec::new();
    for name in [
        "OTEL_EXPORTER_OTLP_HEADERS".to_owned(),
        format!("OTEL_EXPORTER_OTLP_{signal}_HEADERS"),
    ] {
        for pair in var(&name).iter().flat_map(|v| v.split(',')) {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                bad(
                    &name,
                    "headers are key=value, separated by commas".to_owned(),
                )
            })?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Ok(Some((endpoint, headers)))
}

fn service_name(var: &impl Fn(&str) -> Option<String>) -> String {
    var("OTEL_SERVICE_NAME").unwrap_or_else(|| "mcp-gatekeeper".to_owned())
}

impl OtlpSettings {
    /// The settings the standard OpenTelemetry variables give, read through `var`: `None`
    /// when no OTLP endpoint is set, or when `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`.
    ///
    /// # Errors
    ///
    /// A protocol other than `http/protobuf`, a sampler or ratio that is not one, a header
    /// that is not `key=value`, batch or timeout settings that are not (see
    /// [`BatchSettings::from_vars`]).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some((endpoint, headers)) =
            signal(&var, "TRACES", "OTEL_TRACES_EXPORTER", "v1/traces")?
        else {
            return Ok(None);
        };
        let ratio = || -> Result<f64, ConfigError> {
            match var("OTEL_TRACES_SAMPLER_ARG") {
                None => Ok(1.0),
                Some(arg) => arg
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        bad(
                            "OTEL_TRACES_SAMPLER_ARG",
                            "give a ratio from 0 to 1".to_owned(),
                        )
                    }),
            }
        };
        let sampler = match var("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
            None | Some("parentbased_always_on") => Sampler::ParentBased(ParentBasedRoot::AlwaysOn),
            Some("parentbased_always_off") => Sampler::ParentBased(ParentBasedRoot::AlwaysOff),
            Some("parentbased_traceidratio") => {
                Sampler::ParentBased(ParentBasedRoot::Ratio(ratio()?))
            }
            Some("always_on") => Sampler::AlwaysOn,
            Some("always_off") => Sampler::AlwaysOff,
            Some("traceidratio") => Sampler::Ratio(ratio()?),
            Some(other) => {
                return Err(bad(
                    "OTEL_TRACES_SAMPLER",
                    format!("{other:?} is not a sampler this exporter knows"),
                ));
            }
        };
        Ok(Some(Self {
            endpoint,
            headers,
            service_name: service_name(&var),
            sampler,
            batch: BatchSettings::from_vars(&var)?,
            timeout: timeout(&var, "TRACES")?,
        }))
    }
}

impl OtlpMetricsSettings {
    /// The settings the standard OpenTelemetry variables give, read through `var`: `None`
    /// when no OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), or when `OTEL_SDK_DISABLED=true` or
    /// `OTEL_METRICS_EXPORTER=none`.
    ///
    /// # Errors
    ///
    /// A protocol other than `http/protobuf`, an interval or timeout that is not a positive
    /// number of milliseconds, a header that is not `key=value`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some((endpoint, headers)) =
            signal(&var, "METRICS", "OTEL_METRICS_EXPORTER", "v1/metrics")?
        else {
            return Ok(None);
        };
        let interval = match var("OTEL_METRIC_EXPORT_INTERVAL") {
            None => Duration::from_secs(60),
            Some(ms) => ms
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    bad(
                        "OTEL_METRIC_EXPORT_INTERVAL",
                        "give a positive number of milliseconds".to_owned(),
                    )
                })?,
        };
        Ok(Some(Self {
            endpoint,
            headers,
            service_name: service_name(&var),
            interval,
            timeout: timeout(&var, "METRICS")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_standard_variables_configure_it() {
        assert!(OtlpSettings::from_vars(vars(&[])).unwrap().is_none());
        let s = OtlpSettings::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-token=abc, tenant=t1"),
            ("OTEL_SERVICE_NAME", "edge-gateway"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.headers[1], ("tenant".to_owned(), "t1".to_owned()));
        assert_eq!(s.service_name, "edge-gateway");
        assert_eq!(
            s.sampler,
            Sampler::ParentBased(ParentBasedRoot::Ratio(0.25))
        );
        assert_eq!(s.batch, BatchSettings::default());
        assert_eq!(s.timeout, Duration::from_secs(10));
        let traces_only = OtlpSettings::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318/custom"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(traces_only.endpoint, "http://b:4318/custom");
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert!(
                OtlpSettings::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), off]))
                    .unwrap()
                    .is_none()
            );
        }
        for bad in [
            [
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
            ],
            [
                ("OTEL_TRACES_SAMPLER", "sometimes"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
            ],
            [
                ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ],
            [
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
            ],
        ] {
            let mut all = bad.to_vec();
            all.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"));
            assert!(OtlpSettings::from_vars(vars(&all)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_batch_and_timeout_variables_configure_the_trace_exporter() {
        let s = OtlpSettings::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8192"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2048"),
            ("OTEL_BSP_SCHEDULE_DELAY", "5000"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            s.batch,
            BatchSettings {
                max_queue_size: 8192,
                max_export_batch_size: 2048,
                schedule_delay: Duration::from_secs(5),
            }
        );
        assert_eq!(
            s.timeout,
            Duration::from_millis(2500),
            "the signal's own first"
        );
        let m = OtlpMetricsSettings::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(m.timeout, Duration::from_secs(3));
        for bad in [
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "2000000"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5000"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "many"),
            ("OTEL_BSP_SCHEDULE_DELAY", "-1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
        ] {
            let set = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), bad];
            let err = OtlpSettings::from_vars(vars(&set)).expect_err(bad.0);
            assert!(err.to_string().contains(bad.0), "{err}");
        }
    }

    #[test]
    fn the_metrics_variables_configure_its_exporter() {
        assert!(OtlpMetricsSettings::from_vars(vars(&[])).unwrap().is_none());
        let s = OtlpMetricsSettings::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-token=abc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/metrics");
        assert_eq!(s.headers, [("x-token".to_owned(), "abc".to_owned())]);
        assert_eq!(s.interval, Duration::from_millis(250));
        assert!(
            OtlpMetricsSettings::from_vars(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
                ("OTEL_METRICS_EXPORTER", "none"),
            ]))
            .unwrap()
            .is_none()
        );
        // Traces off leaves metrics on, and the other way round.
        assert!(
            OtlpMetricsSettings::from_vars(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ]))
            .unwrap()
            .is_some()
        );
        for bad in ["0", "-5", "soon"] {
            assert!(
                OtlpMetricsSettings::from_vars(vars(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
                    ("OTEL_METRIC_EXPORT_INTERVAL", bad),
                ]))
                .is_err(),
                "{bad}"
            );
        }
    }
}
