//! [`OtlpMetrics`]: what a [`PrometheusMetrics`] recorder holds, exported over OTLP/HTTP
//! (`http/protobuf`) at a fixed interval, as cumulative histograms and sums.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::SystemTime;

use super::encode;
use super::settings::OtlpMetricsSettings;
use crate::config::ConfigError;
use crate::metrics::PrometheusMetrics;

/// Exports what a [`PrometheusMetrics`] recorder holds to an OpenTelemetry collector, every
/// [`interval`](OtlpMetricsSettings::interval), from a thread of its own: the conventions'
/// names (`mcp.server.operation.duration`, `mcp.client.session.duration`, …) with their
/// attributes, cumulative since the recorder started. The recorder keeps measuring for
/// `GET /metrics` meanwhile; nothing is measured twice. Dropping the exporter sends the last
/// export and ends its thread.
///
/// ```no_run
/// use std::sync::Arc;
/// use mcp_gatekeeper::metrics::PrometheusMetrics;
/// use mcp_gatekeeper::otel::OtlpMetrics;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let prometheus = Arc::new(PrometheusMetrics::new());
/// // Keep it as long as the app runs.
/// let exporter = OtlpMetrics::from_env(Arc::clone(&prometheus))?;
/// # Ok(()) }
/// ```
pub struct OtlpMetrics {
    /// Dropped, it ends the thread (after a last export).
    _stop: SyncSender<()>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for OtlpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpMetrics").finish_non_exhaustive()
    }
}

impl OtlpMetrics {
    /// The exporter the process's environment configures for `recorder`
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, their
    /// headers, `OTEL_SERVICE_NAME`, `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_SDK_DISABLED`,
    /// `OTEL_METRICS_EXPORTER`), started; `None` when none is configured.
    ///
    /// # Errors
    ///
    /// See [`OtlpMetricsSettings::from_vars`]; and an HTTP client that cannot be built.
    pub fn from_env(recorder: Arc<PrometheusMetrics>) -> Result<Option<Self>, ConfigError> {
        OtlpMetricsSettings::from_vars(|name| std::env::var(name).ok())?
            .map(|settings| Self::start(settings, recorder))
            .transpose()
    }

    /// Starts exporting `recorder` as `settings` say.
    ///
    /// # Errors
    ///
    /// An HTTP client that cannot be built.
    pub fn start(
        settings: OtlpMetricsSettings,
        recorder: Arc<PrometheusMetrics>,
    ) -> Result<Self, ConfigError> {
        let client = crate::tls::client(&crate::tls::UpstreamTls::default())
            .map_err(|e| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", e))?;
        let (stop, stopped) = std::sync::mpsc::sync_channel(1);
        let counts = Arc::new(Counts::default());
        let state = Arc::clone(&counts);
        std::thread::Builder::new()
            .name("gk-otlp-metrics".into())
            .spawn(move || export_loop(&stopped, &settings, &client, &recorder, &state))
            .map_err(|e| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", e.to_string()))?;
        Ok(Self {
            _stop: stop,
            counts,
        })
    }

    /// Exports sent, and failed (the collector did not take them).
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.sent.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
        )
    }
}

/// The exporter's thread: one export per interval, and a last one when the handle goes.
fn export_loop(
    stopped: &Receiver<()>,
    settings: &OtlpMetricsSettings,
    client: &reqwest::Client,
    recorder: &PrometheusMetrics,
    counts: &Counts,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    loop {
        let last = match stopped.recv_timeout(settings.interval) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        let body = encode::metrics_request(
            &settings.service_name,
            &recorder.snapshot(),
            SystemTime::now(),
        );
        if super::export(
            &runtime,
            client,
            &settings.endpoint,
            &settings.headers,
            settings.timeout,
            body,
        ) {
            counts.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            crate::decision_events::warn("the OTLP collector did not take an export of metrics");
        }
        if last {
            return;
        }
    }
}
