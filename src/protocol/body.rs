//! Bounded body collection.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

/// Why a body could not be collected.
#[derive(Debug)]
pub(crate) enum CollectError<E> {
    /// The body is larger than the limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body itself failed (the client went away, a bad chunk).
    Body(E),
}

impl<E: fmt::Display> fmt::Display for CollectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "body larger than {limit} bytes"),
            Self::Body(e) => write!(f, "error reading body: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for CollectError<E> {}

/// Collects a body of at most `limit` bytes.
///
/// A `content-length` above the limit is refused before anything is read. A single-frame body
/// is returned without copying.
///
/// # Errors
///
/// [`CollectError::TooLarge`] as soon as the limit is passed; [`CollectError::Body`] when the
/// body fails.
pub(crate) async fn collect_limited<B>(
    body: B,
    limit: usize,
) -> Result<Bytes, CollectError<B::Error>>
where
    B: Body,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(CollectError::TooLarge { limit });
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(CollectError::Body)?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers carry nothing we forward
        };
        let n = data.remaining();
        len = len.saturating_add(n);
        if len > limit {
            return Err(CollectError::TooLarge { limit });
        }
        if n == 0 {
            continue;
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data.copy_to_bytes(n)),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(len.max(f.len() * 2));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data.copy_to_bytes(n));
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data.copy_to_bytes(n)),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// What [`collect_up_to`] got.
#[derive(Debug)]
pub(crate) enum Collected<B: Body> {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// The limit was passed: what was read so far, and the unread rest.
    TooLarge {
        /// The bytes read so far (more than the limit).
        head: Bytes,
        /// The rest of the body, unread.
        rest: B,
    },
    /// The body failed.
    Failed(B::Error),
}

/// Collects a body of at most `limit` bytes, but unlike [`collect_limited`] loses nothing when
/// it is larger: the bytes read so far and the unread rest come back, so the caller can still
/// pass the body on unchanged.
pub(crate) async fn collect_up_to<B>(mut body: B, limit: usize) -> Collected<B>
where
    B: Body + Unpin,
{
    let mut buf = BytesMut::new();
    let mut first: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return Collected::Failed(e),
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let chunk = data.copy_to_bytes(data.remaining());
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            Some(f) => {
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&chunk);
            }
            None => buf.extend_from_slice(&chunk),
        }
        let len = first.as_ref().map_or(buf.len(), Bytes::len);
        if len > limit {
            let head = first.take().unwrap_or_else(|| buf.split().freeze());
            return Collected::TooLarge { head, rest: body };
        }
    }
    Collected::Whole(first.unwrap_or_else(|| buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::{Full, StreamBody};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures_util::FutureExt::now_or_never(f).expect("ready")
    }

    #[test]
    fn collects_within_limit_and_refuses_beyond() {
        let ok = block_on(collect_limited(Full::new(Bytes::from_static(b"hello")), 5)).unwrap();
        assert_eq!(&ok[..], b"hello");
        assert!(matches!(
            block_on(collect_limited(Full::new(Bytes::from_static(b"hello!")), 5)),
            Err(CollectError::TooLarge { limit: 5 })
        ));
        let chunks = futures_util::stream::iter(
            ["ab", "cd", "ef"]
                .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c)))),
        );
        let got = block_on(collect_limited(StreamBody::new(chunks), 6)).unwrap();
        assert_eq!(&got[..], b"abcdef");
        let chunks = futures_util::stream::iter(
            ["ab", "cd", "ef"]
                .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c)))),
        );
        assert!(block_on(collect_limited(StreamBody::new(chunks), 5)).is_err());
    }

    #[test]
    fn collect_up_to_loses_nothing() {
        let stream = || {
            StreamBody::new(futures_util::stream::iter(["ab", "cd", "ef"].map(|c| {
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c)))
            })))
        };
        match block_on(collect_up_to(stream(), 6)) {
            Collected::Whole(b) => assert_eq!(&b[..], b"abcdef"),
            other => panic!("{other:?}"),
        }
        match block_on(collect_up_to(stream(), 3)) {
            Collected::TooLarge { head, rest } => {
                let rest = block_on(collect_limited(rest, 100)).unwrap();
                assert_eq!([&head[..], &rest[..]].concat(), b"abcdef");
            }
            other => panic!("{other:?}"),
        }
    }
}
