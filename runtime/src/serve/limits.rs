//! Per-request bounds: the whole body must arrive within the body timeout (else 408), and the
//! whole request must be answered within the request timeout (else 503).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;

use super::errors::error_response;

/// The request body failed because it did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A body that fails with [`BodyTimeout`] unless it ends before its deadline.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body must be complete within `limit` from the end of the head: a request whose
/// body timed out is answered 408 `timeout` ([`body_checked`]), whatever its handler made of the
/// truncated body.
///
/// The request with its body bounded by `limit`, and the flag its expiry sets.
pub(crate) fn deadline_body(limit: Duration, request: Request) -> (Request, Arc<AtomicBool>) {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            expired: expired.clone(),
        })
    });
    (request, expired)
}

/// `response`, or 408 if the body's deadline expired.
pub(crate) fn body_checked(limit: Duration, expired: &AtomicBool, response: Response) -> Response {
    if expired.load(Ordering::Acquire) {
        return error_response(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the request body did not arrive within {} ms",
                limit.as_millis()
            ),
        );
    }
    response
}

/// A request not answered within `limit` is answered 503 `unavailable` (its handler is dropped,
/// which cancels any statement it was running).
///
/// The answer of `answer`, or 503 if it is not ready within `limit` (`answer` is dropped).
pub(crate) async fn within(limit: Duration, answer: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(limit, answer).await {
        Ok(response) => response,
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "the request was not answered within {} ms",
                limit.as_millis()
            ),
        ),
    }
}
