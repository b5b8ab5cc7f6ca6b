//! The routes as hyper calls them: each request marked in progress for the watchdog (however its
//! future ends), given the client's address, and answered `Connection: close` when its body was
//! left unread.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::body::{Body, Incoming};
use warp::http::Request;
use warp::reply::Response;

use super::activity::Activity;
use super::{ClientAddr, RequestBody, Routes};

/// The routes as hyper calls them: marks each request in progress for the watchdog and hands it
/// the client's address.
pub(super) struct Tracked<S> {
    pub(super) inner: Arc<S>,
    pub(super) activity: Arc<Activity>,
    pub(super) client: SocketAddr,
}

/// Ends a request's time in progress however its future ends (answered or dropped).
struct InFlight {
    pub(super) activity: Arc<Activity>,
    body_read: Arc<AtomicBool>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.end(self.body_read.load(Ordering::Relaxed));
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S: Routes> hyper::service::Service<Request<Incoming>> for Tracked<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, mut request: Request<Incoming>) -> Answer {
        self.activity.begin();
        request.extensions_mut().insert(ClientAddr(self.client));
        let body_read = Arc::new(AtomicBool::new(request.body().is_end_stream()));
        let guard = InFlight {
            activity: self.activity.clone(),
            body_read: body_read.clone(),
        };
        let request = request.map(|inner| RequestBody {
            inner,
            done: body_read.clone(),
        });
        let mut service = S::clone(&self.inner);
        let answer = tower_service::Service::call(&mut service, request);
        Box::pin(async move {
            let _in_flight = guard;
            let mut response = answer.await?;
            // Answered without reading the body (a 413, a 401 before the body): the rest of
            // it is not read, so the connection cannot carry another request; say so, or the
            // client would send its next one on a connection about to close.
            if !body_read.load(Ordering::Relaxed) {
                response.headers_mut().insert(
                    warp::http::header::CONNECTION,
                    warp::http::HeaderValue::from_static("close"),
                );
            }
            Ok(response)
        })
    }
}
