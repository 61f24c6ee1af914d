//! A gRPC service built on its first call. gRPC reflection takes about a
//! millisecond to index the descriptors, which would double a plugin's start
//! time; almost nobody calls it, so it is built when somebody does.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

pub(super) struct Lazy<S, F> {
    cell: Arc<OnceLock<Option<S>>>,
    init: Arc<F>,
}

impl<S, F> Clone for Lazy<S, F> {
    fn clone(&self) -> Self {
        Self { cell: Arc::clone(&self.cell), init: Arc::clone(&self.init) }
    }
}

impl<S, F: Fn() -> Option<S>> Lazy<S, F> {
    pub fn new(init: F) -> Self {
        Self { cell: Arc::new(OnceLock::new()), init: Arc::new(init) }
    }
}

impl<S: NamedService, F> NamedService for Lazy<S, F> {
    const NAME: &'static str = S::NAME;
}

impl<S, F> Service<http::Request<Body>> for Lazy<S, F>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    F: Fn() -> Option<S> + Send + Sync + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match self.cell.get_or_init(|| (self.init)()).clone() {
            Some(mut svc) => Box::pin(async move { svc.call(req).await }),
            None => Box::pin(async { Ok(tonic::Status::unimplemented("reflection is unavailable").into_http()) }),
        }
    }
}
