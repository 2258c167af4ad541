//! Body types: the [`ReplyBody`] trait the layers build responses with, and [`Body`], a boxed
//! request/response body for plain hyper users.
//!
//! The layers keep the inner service's response type unchanged, so a stack over rmcp's
//! `StreamableHttpService` answers with exactly rmcp's `BoxResponse` and mounts wherever rmcp
//! mounts. To build refusals and rewritten lists in that type, the response body implements
//! [`ReplyBody`]. Request bodies are rebuilt with `From<Bytes>` after collection.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// An error of a boxed body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body the layers can build: from bytes (refusals, filtered lists) and by wrapping
/// another body with the same error type (streamed rewrites).
pub trait ReplyBody: http_body::Body<Data = Bytes> + Send + Unpin + Sized + 'static {
    /// A body holding exactly `bytes`.
    fn from_bytes(bytes: Bytes) -> Self;
    /// A body streaming `body`.
    fn wrap<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = Self::Error> + Send + Sync + 'static;
}

impl<E: 'static> ReplyBody for BoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        BoxBody::new(Full::new(bytes).map_err(|never| match never {}))
    }
    fn wrap<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = E> + Send + Sync + 'static,
    {
        BoxBody::new(body)
    }
}

/// A boxed body that is also `From<Bytes>`: what a plain hyper server hands the layers.
///
/// ```
/// use mcp_gatekeeper::body::Body;
/// let body = Body::from(bytes::Bytes::from_static(b"{}"));
/// # let _ = body;
/// ```
/// With hyper: `request.map(Body::new)` turns `Request<Incoming>` into `Request<Body>`.
pub struct Body(BoxBody<Bytes, BoxError>);

impl Body {
    /// Boxes any body whose error converts into [`BoxError`].
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Self(BoxBody::new(body.map_err(Into::into)))
    }

    /// An empty body.
    #[must_use]
    pub fn empty() -> Self {
        Self::from(Bytes::new())
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self(BoxBody::new(
            Full::new(bytes).map_err(|never| match never {}),
        ))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self::from(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Self::from(Bytes::from_static(s.as_bytes()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl ReplyBody for Body {
    fn from_bytes(bytes: Bytes) -> Self {
        Self::from(bytes)
    }
    fn wrap<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = BoxError> + Send + Sync + 'static,
    {
        Self(BoxBody::new(body))
    }
}

pin_project_lite::pin_project! {
    /// Bytes already read, then the rest of the body they came from.
    pub(crate) struct Prefixed<B> {
        head: Option<Bytes>,
        #[pin]
        rest: B,
    }
}

impl<B> Prefixed<B> {
    pub(crate) fn new(head: Bytes, rest: B) -> Self {
        Self {
            head: Some(head),
            rest,
        }
    }
}

impl<B> http_body::Body for Prefixed<B>
where
    B: http_body::Body,
    B::Data: bytes::Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        use bytes::Buf as _;
        let this = self.project();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        this.rest
            .poll_frame(cx)
            .map(|f| f.map(|f| f.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))))
    }
}

/// A body that fails at once with the error another body failed with.
pub(crate) struct Failing<E>(pub(crate) Option<E>);

impl<E> http_body::Body for Failing<E> {
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

impl<E> Unpin for Failing<E> {}
