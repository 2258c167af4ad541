//! The response future behind each layer's own `ResponseFuture`.
//!
//! When an outer layer already parsed the body (the usual full stack), a layer decides
//! synchronously and its future is the inner future plus a post-processing step, with no
//! allocation. When it is the first layer to need the body, it collects the body in a boxed
//! future first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;

/// A post-processed response: at once, or after async work on its body (reading a small JSON
/// reply whole keeps `content-length` exact, so nothing turns into a chunked reply).
pub(crate) enum Post<B> {
    /// Ready now.
    Ready(Response<B>),
    /// Ready when this future is.
    Later(BoxFuture<'static, Response<B>>),
}

impl<B> std::fmt::Debug for Post<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ready(_) => "Post::Ready",
            Self::Later(_) => "Post::Later",
        })
    }
}

/// What a layer does to the inner service's result before handing it out.
pub(crate) trait PostProcess<B, E>: Send + 'static {
    /// Transforms a response.
    fn response(self, response: Response<B>) -> Post<B>;
    /// Sees an error of the inner service (the error itself is passed on unchanged).
    fn error(self, error: &E);
}

/// No post-processing.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NoPost;

impl<B, E> PostProcess<B, E> for NoPost {
    fn response(self, response: Response<B>) -> Post<B> {
        Post::Ready(response)
    }
    fn error(self, _: &E) {}
}

pin_project! {
    /// The response future every layer's own is.
    #[project = Proj]
    pub(crate) struct ResponseFuture<F, B, E, P> {
        #[pin]
        state: State<F, B, E, P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E, P> {
        Boxed { fut: BoxFuture<'static, Result<Response<B>, E>> },
        Inner { #[pin] fut: F, post: Option<P> },
        Finishing { fut: BoxFuture<'static, Response<B>> },
        Ready { response: Option<Response<B>> },
    }
}

impl<F, B, E, P> ResponseFuture<F, B, E, P> {
    pub(crate) fn boxed(fut: BoxFuture<'static, Result<Response<B>, E>>) -> Self {
        Self {
            state: State::Boxed { fut },
        }
    }
    pub(crate) fn inner(fut: F, post: P) -> Self {
        Self {
            state: State::Inner {
                fut,
                post: Some(post),
            },
        }
    }
    pub(crate) fn ready(response: Response<B>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E, P> std::fmt::Debug for ResponseFuture<F, B, E, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E, P> Future for ResponseFuture<F, B, E, P>
where
    F: Future<Output = Result<Response<B>, E>>,
    P: PostProcess<B, E>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let later = match state.as_mut().project() {
                StateProj::Boxed { fut } => return fut.as_mut().poll(cx),
                StateProj::Finishing { fut } => return fut.as_mut().poll(cx).map(Ok),
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
                StateProj::Inner { fut, post } => {
                    let out = std::task::ready!(fut.poll(cx));
                    let post = post.take().expect("polled after completion");
                    match out {
                        Ok(response) => match post.response(response) {
                            Post::Ready(r) => return Poll::Ready(Ok(r)),
                            Post::Later(f) => f,
                        },
                        Err(e) => {
                            post.error(&e);
                            return Poll::Ready(Err(e));
                        }
                    }
                }
            };
            state.set(State::Finishing { fut: later });
        }
    }
}

/// Declares a layer's own `ResponseFuture`: the machinery above under the layer's name, with
/// its post-processing kept inside the crate. The bounds are those of the layer's
/// post-processing, spelled in public types.
macro_rules! layer_future {
    ($(#[$doc:meta])* $post:ty $(, $gen:ident: $gen_bound:path)?; where $($bound:tt)*) => {
        pin_project_lite::pin_project! {
            $(#[$doc])*
            pub struct ResponseFuture<F, B, E $(, $gen: $gen_bound)?> {
                #[pin]
                inner: crate::future::ResponseFuture<F, B, E, $post>,
            }
        }

        impl<F, B, E $(, $gen: $gen_bound)?> ResponseFuture<F, B, E $(, $gen)?> {
            pub(crate) fn from_inner(inner: crate::future::ResponseFuture<F, B, E, $post>) -> Self {
                Self { inner }
            }
        }

        impl<F, B, E $(, $gen: $gen_bound)?> std::fmt::Debug for ResponseFuture<F, B, E $(, $gen)?> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("ResponseFuture").finish_non_exhaustive()
            }
        }

        impl<F, B, E $(, $gen: $gen_bound)?> std::future::Future for ResponseFuture<F, B, E $(, $gen)?>
        where
            F: std::future::Future<Output = Result<http::Response<B>, E>>,
            $($bound)*
        {
            type Output = Result<http::Response<B>, E>;

            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }
    };
}

pub(crate) use layer_future;
