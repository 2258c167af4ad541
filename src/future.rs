//! The response future shared by the layers that read the request body.
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

/// What a layer does to the inner service's result before handing it out.
pub trait PostProcess<B, E>: Send + 'static {
    /// Transforms a response.
    fn response(self, response: Response<B>) -> Response<B>;
    /// Sees an error of the inner service (the error itself is passed on unchanged).
    fn error(self, error: &E);
}

/// No post-processing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPost;

impl<B, E> PostProcess<B, E> for NoPost {
    fn response(self, response: Response<B>) -> Response<B> {
        response
    }
    fn error(self, _: &E) {}
}

pin_project! {
    /// Response future of the body-reading layers.
    #[project = Proj]
    pub struct ResponseFuture<F, B, E, P> {
        #[pin]
        state: State<F, B, E, P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E, P> {
        Boxed { fut: BoxFuture<'static, Result<Response<B>, E>> },
        Inner { #[pin] fut: F, post: Option<P> },
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
        match self.project().state.project() {
            StateProj::Boxed { fut } => fut.as_mut().poll(cx),
            StateProj::Inner { fut, post } => {
                let out = std::task::ready!(fut.poll(cx));
                let post = post.take().expect("polled after completion");
                Poll::Ready(match out {
                    Ok(response) => Ok(post.response(response)),
                    Err(e) => {
                        post.error(&e);
                        Err(e)
                    }
                })
            }
            StateProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}
