//! The HTTPS listener: TLS handshakes with a timeout, HTTP/1.1 or HTTP/2 by ALPN, a connection
//! limit, and graceful shutdown (stop accepting, let requests in flight finish, bounded).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::exchange::TokenExchange;
use crate::metrics::ProxyMetrics;
use crate::surface::Surface;
use crate::tls::ServerTls;
use crate::{Error, Result};

/// Settings of the HTTPS listener.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Most connections open at once; more are closed right after being accepted (default
    /// 10,000). SDKs retry connection errors.
    pub max_connections: usize,
    /// Longest TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// HTTP/1.1: longest wait for a request's complete head, which also closes keep-alive
    /// connections idle that long (default 30 s).
    pub header_read_timeout: Duration,
    /// HTTP/2: most concurrent streams per connection (default 200).
    pub max_concurrent_streams: u32,
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list), default 64 KiB.
    pub max_header_bytes: usize,
    /// On shutdown, how long requests in flight may take to finish (default 25 s).
    pub shutdown_grace: Duration,
}

impl ServerOptions {
    /// Defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_concurrent_streams: 200,
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// How a shutdown went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownOutcome {
    /// Every connection finished within the grace period (otherwise the rest were cut).
    pub drained: bool,
}

/// A running HTTPS listener. [`ProxyServer::shutdown`] stops it gracefully; dropping it stops it
/// at once.
#[derive(Debug)]
pub struct ProxyServer {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<bool>>,
}

impl ProxyServer {
    /// Binds `options.listen` and serves `surface` over TLS until shut down.
    pub async fn start<E: TokenExchange>(
        surface: Arc<Surface<E>>,
        tls: &ServerTls,
        options: ServerOptions,
    ) -> Result<Self> {
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: options.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: options.listen,
            source,
        })?;
        let stop = CancellationToken::new();
        let acceptor = TlsAcceptor::from(Arc::clone(tls.config()));
        let task = tokio::spawn(accept_loop(listener, acceptor, surface, options, stop.clone()));
        tracing::info!(%local_addr, "token proxy listening");
        Ok(Self {
            local_addr,
            stop,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets requests in flight finish within the grace period, then
    /// closes what is left.
    pub async fn shutdown(mut self) -> ShutdownOutcome {
        self.stop.cancel();
        let drained = match self.task.take() {
            Some(task) => task.await.unwrap_or(false),
            None => true,
        };
        tracing::info!(drained, "token proxy stopped");
        ShutdownOutcome { drained }
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Accepts until `stop`; returns whether every connection drained in time.
async fn accept_loop<E: TokenExchange>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    surface: Arc<Surface<E>>,
    options: ServerOptions,
    stop: CancellationToken,
) -> bool {
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(options.max_connections));
    let options = Arc::new(options);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    surface.metrics().connection("rejected_limit");
                    tracing::warn!(%peer, limit = options.max_connections, "connection limit reached; closing a new connection");
                    continue;
                };
                let conn = Connection {
                    acceptor: acceptor.clone(),
                    surface: Arc::clone(&surface),
                    options: Arc::clone(&options),
                    watcher: graceful.watcher(),
                    _permit: permit,
                };
                connections.spawn(conn.serve(stream, peer));
            }
        }
    }
    drop(listener);
    tracing::info!(open = graceful.count(), "draining connections");
    let drained = tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_ok();
    connections.shutdown().await;
    drained
}

struct Connection<E> {
    acceptor: TlsAcceptor,
    surface: Arc<Surface<E>>,
    options: Arc<ServerOptions>,
    watcher: Watcher,
    _permit: OwnedSemaphorePermit,
}

/// Decrements the open-connections gauge when the connection ends.
struct OpenGuard(ProxyMetrics);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

impl<E: TokenExchange> Connection<E> {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let metrics = self.surface.metrics().clone();
        // Latency matters more than packet count for small JSON answers.
        let _ = stream.set_nodelay(true);
        let tls =
            match tokio::time::timeout(self.options.handshake_timeout, self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    metrics.connection("handshake_failed");
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.connection("handshake_timeout");
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
        metrics.connection("accepted");
        metrics.connections_open.inc();
        let _open = OpenGuard(metrics);
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.options.header_read_timeout)
            .max_buf_size(self.options.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.options.max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.options.max_header_bytes).unwrap_or(u32::MAX));
        let builder = match alpn.as_deref() {
            Some(b"h2") => builder.http2_only(),
            Some(b"http/1.1") => builder.http1_only(),
            // No ALPN: tell HTTP/2 from HTTP/1.1 by the connection preface.
            _ => builder,
        };
        let surface = self.surface;
        let service = service_fn(move |request| {
            let surface = Arc::clone(&surface);
            async move { Ok::<_, Infallible>(surface.handle(request).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(tls), service);
        if let Err(e) = self.watcher.watch(conn.into_owned()).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}
