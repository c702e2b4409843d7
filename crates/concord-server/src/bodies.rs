//! Request bodies in memory. Every body the server holds counts against one budget of bytes
//! (`--max-body-memory`), so what clients send cannot grow the server past it, however
//! many send at once. Each piece of a body is reserved as it arrives, so a client holds
//! only what it really sent:
//! - a body read whole (any JSON API request) keeps its pieces reserved until its request
//!   is answered; one whose `Content-Length` exceeds the whole budget is refused at once;
//! - a contents upload (`PUT /api/contents/…`) streams: each piece is released once the
//!   contents service wrote it to disk; only what the service keeps in memory (the model, a
//!   notebook) stays reserved until the request ends.
//!
//! A piece that cannot be reserved within [`BUSY_WAIT`] fails its request with a 503 (a
//! wait without end could deadlock two bodies that each hold part of the budget); one that
//! would take its request past the whole budget fails it with a 413.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use http_body::Frame;
use parking_lot::Mutex;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::error::ApiError;

/// How long a piece of a body may wait for room in the budget.
pub const BUSY_WAIT: Duration = Duration::from_secs(10);

/// How long a streamed body may send nothing before the request fails: its reader holds
/// a blocking thread while it waits.
pub const IDLE_BODY: Duration = Duration::from_secs(60);

/// How many streamed bodies are read at once (each holds a blocking thread; tokio has 512
/// for everything that blocks); more wait their turn before they are read.
pub const STREAMS: usize = 128;

/// The budget shared by all requests.
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total: u32,
    streams: Arc<Semaphore>,
}

/// Why a body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Larger than the whole budget: it could never be held.
    #[error(
        "Request body of {0} bytes is larger than the server can hold in memory (--max-body-memory {1})"
    )]
    LargerThanBudget(u64, u32),
    /// The budget stayed taken for [`BUSY_WAIT`].
    #[error("The server is holding as much request data as it may (--max-body-memory); try again")]
    Busy,
    /// More than `--max-body-size` (a body without `Content-Length`).
    #[error("Request body is larger than the server accepts (--max-body-size {0})")]
    TooLarge(usize),
    /// The client's connection failed while sending it.
    #[error("Could not read the request body: {0}")]
    Broken(String),
}

impl BodyError {
    /// The API's answer.
    pub fn to_api_error(&self) -> ApiError {
        let status = match self {
            BodyError::LargerThanBudget(..) | BodyError::TooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, self.to_string())
    }
}

impl BodyBudget {
    /// A budget of `total` bytes (at most 4 GiB).
    pub fn new(total: u64) -> Arc<Self> {
        let total = u32::try_from(total).unwrap_or(u32::MAX);
        Arc::new(BodyBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            streams: Arc::new(Semaphore::new(STREAMS)),
        })
    }

    /// A turn to read a streamed body (see [`STREAMS`]), held until it is read.
    pub async fn stream_turn(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().acquire_owned().await.ok()
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Charge `req`'s body to the budget: the request carries the [`BodyCharge`] (handlers
    /// that stream call [`BodyCharge::stream`] before reading); the charge is released when
    /// the last holder of it (the caller keeps one until the response) lets go.
    pub fn charge(self: &Arc<Self>, req: Request) -> (Request, Arc<BodyCharge>) {
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let charge = Arc::new(BodyCharge {
            budget: self.clone(),
            held: Mutex::new(None),
            streaming: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            kept: std::sync::atomic::AtomicU64::new(0),

            failure: Mutex::new(None),
        });
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(charge.clone());
        let body = Body::new(BudgetedBody {
            inner: body,
            charge: charge.clone(),
            announced,
            started: false,
            waiting: None,
            ready: None,
        });
        (Request::from_parts(parts, body), charge)
    }
}

/// What one request's body holds of the budget.
pub struct BodyCharge {
    budget: Arc<BodyBudget>,
    held: Mutex<Option<OwnedSemaphorePermit>>,
    streaming: AtomicBool,
    /// What is left of the body is read and dropped (so the client, still sending, gets
    /// the answer): nothing more is reserved.
    draining: AtomicBool,
    /// The whole body was read.
    finished: AtomicBool,
    /// Bytes of a streamed body its reader keeps (the rest passes through).
    kept: std::sync::atomic::AtomicU64,

    failure: Mutex<Option<BodyError>>,
}

impl BodyCharge {
    /// The body will be streamed: charge it piece by piece (and release what is passed on
    /// with [`BodyCharge::release`]) instead of reserving its whole length.
    pub fn stream(&self) {
        self.streaming.store(true, Ordering::Relaxed);
    }

    /// `n` bytes are no longer held (`usize::MAX`: none is).
    pub fn release(&self, n: usize) {
        let mut held = self.held.lock();
        if let Some(permit) = held.as_mut() {
            let n = n.min(permit.num_permits());
            if n == permit.num_permits() {
                *held = None;
            } else {
                drop(permit.split(n));
            }
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        let held = self.held.lock();
        held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    fn add(&self, permit: OwnedSemaphorePermit) {
        let mut held = self.held.lock();
        match held.as_mut() {
            Some(h) => h.merge(permit),
            None => *held = Some(permit),
        }
    }

    /// Whether the body was read to its end (else the connection cannot be reused: what
    /// is left of the body would be read as the next request).
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    /// Why reading the body failed, if it was the budget's or the connection's fault.
    pub fn failure(&self) -> Option<BodyError> {
        self.failure.lock().clone()
    }

    fn fail(&self, error: BodyError) -> BodyError {
        *self.failure.lock() = Some(error.clone());
        error
    }

    /// What the request will keep of its body: all of a body read whole; of a streamed
    /// one, what its reader kept so far (pieces in flight are released once they pass).
    fn keeps(&self) -> u64 {
        if self.streaming.load(Ordering::Relaxed) {
            self.kept.load(Ordering::Relaxed)
        } else {
            self.held() as u64
        }
    }

    /// Reserve `n` more bytes, waiting at most [`BUSY_WAIT`] for them; refused at once when
    /// what the request keeps leaves no room for them in the whole budget.
    fn reserve(self: &Arc<Self>, n: u64) -> Reserving {
        let charge = self.clone();
        Box::pin(async move {
            let total = charge.budget.total;
            let Ok(count) = u32::try_from(n) else {
                return Err(BodyError::LargerThanBudget(n, total));
            };
            let deadline = tokio::time::Instant::now() + BUSY_WAIT;
            loop {
                let after = charge.keeps().saturating_add(n);
                if after > u64::from(total) {
                    return Err(BodyError::LargerThanBudget(after, total));
                }
                // Looked at again every so often: what this request keeps may have grown
                // (its own pieces in flight were kept), leaving no room at all.
                let acquire = charge.budget.permits.clone().acquire_many_owned(count);
                match tokio::time::timeout(Duration::from_millis(100), acquire).await {
                    Ok(Ok(permit)) => return Ok(permit),
                    Ok(Err(_)) => return Err(BodyError::Busy),
                    Err(_) if tokio::time::Instant::now() >= deadline => {
                        return Err(BodyError::Busy)
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

type Reserving = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, BodyError>> + Send>>;

/// A request body whose bytes are reserved in the budget before they are handed on.
struct BudgetedBody {
    inner: Body,
    charge: Arc<BodyCharge>,
    announced: Option<u64>,
    started: bool,
    waiting: Option<Reserving>,
    ready: Option<Frame<Bytes>>,
}

impl BudgetedBody {
    /// A reader may stop at the last piece without asking for more: the body is read.
    fn note_end(&self) {
        if http_body::Body::is_end_stream(&self.inner) {
            self.charge.finished.store(true, Ordering::Relaxed);
        }
    }
}

impl http_body::Body for BudgetedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(waiting) = this.waiting.as_mut() {
                match waiting.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(permit)) => {
                        this.waiting = None;
                        this.charge.add(permit);
                        if let Some(frame) = this.ready.take() {
                            this.note_end();
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        this.waiting = None;
                        this.ready = None;
                        return Poll::Ready(Some(Err(axum::Error::new(this.charge.fail(e)))));
                    }
                }
            }
            if !this.started {
                this.started = true;
                // A body read whole that could never fit is refused before it is read.
                let total = u64::from(this.charge.budget.total);
                if let (false, Some(n)) = (
                    this.charge.streaming.load(Ordering::Relaxed),
                    this.announced,
                ) {
                    if n > total {
                        let e = this
                            .charge
                            .fail(BodyError::LargerThanBudget(n, this.charge.budget.total));
                        return Poll::Ready(Some(Err(axum::Error::new(e))));
                    }
                }
            }
            return match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let len = frame.data_ref().map_or(0, Bytes::len);
                    if len == 0 || this.charge.draining.load(Ordering::Relaxed) {
                        this.note_end();
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    this.ready = Some(frame);
                    this.waiting = Some(this.charge.reserve(len as u64));
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    this.charge.fail(BodyError::Broken(e.to_string()));
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(None) => {
                    this.charge.finished.store(true, Ordering::Relaxed);
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.ready.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body read from blocking code (the contents service), fed by an async task:
/// what the service writes out is released from the budget as it reads it.
pub struct BlockingBody {
    pieces: tokio::sync::mpsc::Receiver<Result<Bytes, ()>>,
    current: Bytes,
    charge: Arc<BodyCharge>,
    held: bool,
}

impl BlockingBody {
    /// Start feeding `body` (at most `max` bytes) to the returned reader; the feeding task
    /// ends with the body, or when the reader is dropped.
    pub fn feed(body: Body, charge: Arc<BodyCharge>, max: usize) -> BlockingBody {
        // A few pieces in flight: enough to keep the disk and the network both busy.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let feeder_charge = charge.clone();
        tokio::spawn(async move {
            use http_body_util::BodyExt;
            let mut body = body;
            let mut total = 0usize;
            let mut tx = Some(tx);
            loop {
                let frame = match tokio::time::timeout(IDLE_BODY, body.frame()).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return,
                    Err(_) => {
                        let silent = IDLE_BODY.as_secs();
                        feeder_charge.fail(BodyError::Broken(format!(
                            "nothing was sent for {silent} s"
                        )));
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(Err(())).await;
                        }
                        return;
                    }
                };
                let piece = match frame {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => Ok(data),
                        Err(_) => continue,
                    },
                    // The connection failed: nothing more will come.
                    Err(_)
                        if matches!(feeder_charge.failure(), Some(BodyError::Broken(_)) | None) =>
                    {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(Err(())).await;
                        }
                        return;
                    }
                    Err(_) => Err(()),
                };
                if let Ok(data) = &piece {
                    total = total.saturating_add(data.len());
                    if total > max {
                        feeder_charge.fail(BodyError::TooLarge(max));
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(Err(())).await;
                        }
                        return;
                    }
                }
                let Some(sender) = &tx else {
                    // Draining: the service is done with the body.
                    continue;
                };
                let failed = piece.is_err();
                if sender.send(piece).await.is_err() || failed {
                    // The service stopped reading (it has its answer) or the budget refused
                    // a piece: read the rest without holding it, so the client, still
                    // sending, gets to read the answer.
                    tx = None;
                    feeder_charge.draining.store(true, Ordering::Relaxed);
                    feeder_charge.release(usize::MAX);
                }
            }
        });
        BlockingBody {
            pieces: rx,
            current: Bytes::new(),
            charge,
            held: true,
        }
    }
}

impl Read for BlockingBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current.split_to(n));
                if self.held {
                    self.charge.kept.fetch_add(n as u64, Ordering::Relaxed);
                } else {
                    self.charge.release(n);
                }
                return Ok(n);
            }
            match self.pieces.blocking_recv() {
                Some(Ok(piece)) => self.current = piece,
                Some(Err(())) => {
                    return Err(io::Error::other("the request body could not be read"))
                }
                None => return Ok(0),
            }
        }
    }
}

impl concord_contents::RequestBody for BlockingBody {
    fn holding(&mut self, held: bool) {
        self.held = held;
    }
}
