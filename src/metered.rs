//! [`MeteredLayer`]: every MCP request the stack answers or passes on, timed and handed to the
//! gatekeeper's [`Metrics`] as an [`Operation`].
//!
//! The layer reads nothing itself: it leaves a slot in the request's extensions that is filled
//! where the body is parsed (once, by whichever layer parses it), and reads the refusal, if any,
//! from the response's extensions. A streamed answer is timed until its stream ends. Without
//! metrics on the gatekeeper the layer passes requests through untouched.
//!
//! Names become labels only where the policy resolved them: a refusal for an unknown or
//! ambiguous name, or for a body that could not be read, is counted without the name the
//! caller sent.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ReplyBody;
use crate::gatekeeper::Gatekeeper;
use crate::metrics::{Metrics, OTHER, Observed, Operation, Span, SpanContext, TargetKind};
use crate::rejection::Rejection;

/// Times every MCP request (see the [module docs](self)).
#[derive(Clone)]
pub struct MeteredLayer {
    metrics: Option<Arc<dyn Metrics>>,
}

impl fmt::Debug for MeteredLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredLayer")
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl MeteredLayer {
    /// Times requests into the metrics of `gatekeeper` (see [`Gatekeeper::with_metrics`]);
    /// without any, it does nothing.
    #[must_use]
    pub fn new(gatekeeper: &Gatekeeper) -> Self {
        Self {
            metrics: gatekeeper.metrics().cloned(),
        }
    }
}

impl<S> Layer<S> for MeteredLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`MeteredLayer`].
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Option<Arc<dyn Metrics>>,
}

impl<S: fmt::Debug> fmt::Debug for Metered<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metered")
            .field("inner", &self.inner)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

crate::inner_service::inner_access!(impl<S> Metered<S>);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metered<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: ReplyBody + Sync,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let timing = match &self.metrics {
            Some(metrics) if request.method() == http::Method::POST => {
                let spans = metrics.records_spans();
                let header = spans
                    .then(|| request.headers().get("traceparent"))
                    .flatten()
                    .and_then(|v| v.to_str().ok())
                    .and_then(SpanContext::from_traceparent);
                let observed = Observed::new(header, spans);
                request.extensions_mut().insert(observed.clone());
                Some(Timing {
                    metrics: Arc::clone(metrics),
                    started: observed.began().map_or_else(Instant::now, |(_, at)| at),
                    observed,
                    error: None,
                })
            }
            _ => None,
        };
        ResponseFuture {
            inner: self.inner.call(request),
            timing,
        }
    }
}

/// One request being timed.
struct Timing {
    metrics: Arc<dyn Metrics>,
    observed: Observed,
    started: Instant,
    /// Why it failed, once the answer's head says so.
    error: Option<Failure>,
}

/// What made a request fail.
#[derive(Clone, Copy)]
enum Failure {
    /// A refusal of the layers, by its rule; `named` when the policy resolved the name.
    Refused { rule: &'static str, named: bool },
    /// An answer with an error status.
    Status(StatusCode),
    /// The inner service failed.
    Inner,
}

impl Timing {
    /// Records the operation, now. Nothing for a request whose body was never parsed and
    /// that was not refused (a GET stream, a DELETE).
    fn record(self) {
        let parsed = self.observed.get();
        if parsed.is_none() && !matches!(self.error, Some(Failure::Refused { .. })) {
            return;
        }
        let status;
        let (error_type, named) = match self.error {
            None => match self.observed.failed() {
                Some(failed) => (Some(&*failed.error), failed.named),
                None => (None, true),
            },
            Some(Failure::Refused { rule, named }) => (Some(rule), named),
            Some(Failure::Status(code)) => {
                status = code;
                (Some(status.as_str()), true)
            }
            Some(Failure::Inner) => (Some(OTHER), true),
        };
        let target = parsed
            .and_then(|p| p.target.as_ref())
            .filter(|_| named)
            .map(|(name, kind)| (&**name, *kind));
        let span = self.observed.began().map(|(started, _)| {
            let (context, parent) = self.observed.span();
            Span {
                context,
                parent,
                started,
            }
        });
        self.metrics.operation(&Operation {
            method: parsed.map_or(OTHER, |p| p.method),
            tool: target.and_then(|(n, k)| (k == TargetKind::Tool).then_some(n)),
            prompt: target.and_then(|(n, k)| (k == TargetKind::Prompt).then_some(n)),
            protocol_version: parsed.and_then(|p| p.protocol_version),
            error_type,
            seconds: self.started.elapsed().as_secs_f64(),
            span,
        });
    }
}

/// Whether a refusal by `rule` came after the policy resolved the name the request used.
fn resolved_name(rule: &str) -> bool {
    !matches!(
        rule,
        "unknown_name" | "ambiguous_name" | "bad_request" | "header_mismatch" | "payload_too_large"
    )
}

pin_project! {
    /// The response future of [`Metered`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        timing: Option<Timing>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: ReplyBody + Sync,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let Some(mut timing) = this.timing.take() else {
            return Poll::Ready(result);
        };
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                timing.error = Some(Failure::Inner);
                timing.record();
                return Poll::Ready(Err(e));
            }
        };
        timing.error = match response.extensions().get::<Rejection>() {
            Some(rejection) => {
                let rule = crate::decision_events::rule_of_rejection(rejection);
                Some(Failure::Refused {
                    rule,
                    named: resolved_name(rule),
                })
            }
            None if response.status().is_client_error() || response.status().is_server_error() => {
                Some(Failure::Status(response.status()))
            }
            None => None,
        };
        let streamed = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if !streamed {
            timing.record();
            return Poll::Ready(Ok(response));
        }
        Poll::Ready(Ok(response.map(|body| {
            B::wrap(Timed {
                inner: body,
                timing: Some(timing),
            })
        })))
    }
}

pin_project! {
    /// A streamed answer, timed until it ends (or is dropped).
    struct Timed<B> {
        #[pin]
        inner: B,
        timing: Option<Timing>,
    }

    impl<B> PinnedDrop for Timed<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(timing) = this.project().timing.take() {
                timing.record();
            }
        }
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for Timed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if frame.is_none()
            && let Some(timing) = this.timing.take()
        {
            timing.record();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
