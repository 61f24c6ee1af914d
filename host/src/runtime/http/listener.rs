//! The HTTP listener, which a reload can move: a changed `http.listen` or
//! `http.body_limit` binds a new listener first and only then stops the old
//! one (its open requests finish), so the API is never without a listener;
//! a new address that cannot be bound leaves the old one serving.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{HttpConfig, Readiness, serve};

/// Why a new listen address was not taken.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}; still listening on {kept}")]
pub struct RebindError {
    pub addr: SocketAddr,
    pub kept: SocketAddr,
    pub source: std::io::Error,
}

struct Bound {
    listen: SocketAddr,
    body_limit: usize,
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// The one HTTP server, rebindable.
pub struct Listener {
    /// The routes, before `serve` adds the fallback and body limit.
    router: Router,
    readiness: Readiness,
    /// Cancelled at shutdown: every listener stops.
    shutdown: CancellationToken,
    bound: Mutex<Bound>,
}

impl Listener {
    /// Binds `config.listen` and serves `router` until `shutdown`.
    pub async fn start(
        config: &HttpConfig,
        router: Router,
        shutdown: CancellationToken,
        readiness: &Readiness,
    ) -> std::io::Result<Self> {
        let stop = shutdown.child_token();
        let (addr, task) = serve(config, router.clone(), stop.clone(), readiness).await?;
        let bound = Bound { listen: config.listen, body_limit: config.body_limit, addr, stop, task: Some(task) };
        Ok(Self { router, readiness: readiness.clone(), shutdown, bound: Mutex::new(bound) })
    }

    fn bound(&self) -> std::sync::MutexGuard<'_, Bound> {
        self.bound.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where it listens now.
    pub fn addr(&self) -> SocketAddr {
        self.bound().addr
    }

    /// Follows `config`: when the address or body limit changed, serves on a
    /// new listener, then stops the old one. `Ok(Some(addr))` when it moved.
    pub async fn rebind(&self, config: &HttpConfig) -> Result<Option<SocketAddr>, RebindError> {
        let (listen, body_limit, kept) = {
            let bound = self.bound();
            (bound.listen, bound.body_limit, bound.addr)
        };
        if listen == config.listen && body_limit == config.body_limit {
            return Ok(None);
        }
        // The same address (a body limit change) cannot be bound twice: that
        // one stops first, for the moment the new one binds.
        let same_addr = listen == config.listen;
        if same_addr {
            self.stop_current(Duration::from_secs(5)).await;
        }
        let stop = self.shutdown.child_token();
        // Port 0 would pick another port: a body limit change keeps the bound one.
        let target = if same_addr { HttpConfig { listen: kept, ..config.clone() } } else { config.clone() };
        let (addr, task) = match serve(&target, self.router.clone(), stop.clone(), &self.readiness).await {
            Ok(bound) => bound,
            Err(source) if same_addr => {
                // Nothing serves now: say so loudly (readiness already does).
                tracing::error!(addr = %config.listen, "cannot listen again on {}: {source}", config.listen);
                return Err(RebindError { addr: config.listen, kept, source });
            }
            Err(source) => return Err(RebindError { addr: config.listen, kept, source }),
        };
        let old = std::mem::replace(
            &mut *self.bound(),
            Bound { listen: config.listen, body_limit: config.body_limit, addr, stop, task: Some(task) },
        );
        tracing::info!(addr = %addr, "http listening");
        old.stop.cancel();
        Ok(Some(addr))
    }

    async fn stop_current(&self, deadline: Duration) {
        let task = {
            let mut bound = self.bound();
            bound.stop.cancel();
            bound.task.take()
        };
        if let Some(task) = task
            && tokio::time::timeout(deadline, task).await.is_err()
        {
            tracing::warn!("the HTTP server did not close its connections within {deadline:?}");
        }
    }

    /// Stops serving (after `shutdown` was cancelled, or now) and waits up
    /// to `deadline` for open connections.
    pub async fn stop(&self, deadline: Duration) {
        self.stop_current(deadline).await;
    }
}
