//! The guard as a tower layer on every route. A request the quick answer lets through goes straight to the
//! route's own service: the layer clones nothing and boxes no future for it. Only a request that
//! needs the full check takes the service made ready for it (a clone stays behind) into a boxed future.
//! (axum's `from_fn` did both for every request: a measurable share of what auth cost a prediction.)

use super::guard::{Guard, admitted, full_check};
use axum::extract::Request;
use axum::response::Response;
use futures::future::{BoxFuture, Either};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::util::{BoxCloneSyncService, ServiceExt};
use tower::{Layer, Service};

/// Puts the guard in front of a route (`Router::route_layer`).
#[derive(Clone)]
pub struct GuardLayer(Arc<Guard>);

impl GuardLayer {
    /// A layer checking requests with `guard`.
    pub fn new(guard: Arc<Guard>) -> GuardLayer {
        GuardLayer(guard)
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            guard: self.0.clone(),
            inner,
        }
    }
}

/// A route's service behind the guard.
#[derive(Clone)]
pub struct Guarded<S> {
    guard: Arc<Guard>,
    inner: S,
}

impl<S> Service<Request> for Guarded<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (request, caller) = super::quick::allowed(&self.guard, request);
        if let Some(caller) = caller {
            return Either::Left(self.inner.call(admitted(&self.guard, request, caller)));
        }
        let stays = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, stays);
        let guard = self.guard.clone();
        let next = Next(BoxCloneSyncService::new(ready));
        Either::Right(Box::pin(async move { Ok(full_check(guard, request, next).await) }))
    }
}

/// The route's service, for the full check to run once it has decided.
pub(super) struct Next(BoxCloneSyncService<Request, Response, Infallible>);

impl Next {
    /// Runs the route's handler.
    pub(super) async fn run(self, request: Request) -> Response {
        match self.0.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}
