//! The collector's HTTP API (SPEC §2) on actix-web.
//!
//! Handlers validate and cap sizes at the edge and hand events to the
//! group-commit [`Writer`]; nothing here blocks on
//! sled or fsync.

mod auth;
mod body;
pub mod error;
pub mod ingest;
mod metrics;
pub mod query;
mod track;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use actix_web::dev::{Server, Service};
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::FutureExt;

use crate::config::Config;
use crate::error::Error;
use crate::keys::Keys;
use crate::store::writer::WriterHandle;
use crate::store::{DiskStore, EventStore, StoreOptions, Writer};
use error::ApiError;
use metrics::{Metrics, RequestLabels};

/// Shared by every handler.
pub struct AppState {
    config: Config,
    keys: Keys,
    writer: WriterHandle,
    store: Arc<dyn EventStore>,
    metrics: Metrics,
}

/// A started collector.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The keys in force.
    pub keys: Keys,
    /// Where the keys come from, and which were never printed.
    pub key_source: crate::keys::Resolved,
    server: Server,
    writer: Writer,
}

impl Running {
    /// A handle that can stop the server (gracefully, finishing requests).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (or a stop through the handle), lets
    /// in-flight requests finish, then commits and fsyncs queued events.
    pub async fn wait(self) -> Result<(), Error> {
        let result = self.server.await;
        self.writer.shutdown().await;
        tracing::info!("stopped; all acknowledged events are on disk");
        result.map_err(|e| Error::io("running the HTTP server", e))
    }
}

/// Opens the sled store in the data directory, resolves keys and binds the
/// listener.
pub fn start(config: Config) -> Result<Running, Error> {
    config.validate()?;
    std::fs::create_dir_all(&config.data)
        .map_err(|e| Error::io(format!("creating {}", config.data.display()), e))?;
    let store = Arc::new(DiskStore::open(
        &Config::store_dir(&config.data),
        &StoreOptions {
            cache_capacity: config.cache_mb * 1024 * 1024,
            chunk_events: config.chunk_events,
            ..StoreOptions::default()
        },
    )?);
    start_with_store(config, store)
}

/// Like [`start`] over any [`EventStore`] (another backend, or a test
/// double). Keys are still resolved in the data directory.
pub fn start_with_store(config: Config, store: Arc<dyn EventStore>) -> Result<Running, Error> {
    config.validate()?;
    let resolved = crate::keys::resolve(
        &config.data,
        config.write_key.clone(),
        config.read_key.clone(),
    )?;
    let writer = Writer::start(store.clone());
    let state = web::Data::new(AppState {
        config: config.clone(),
        keys: resolved.keys.clone(),
        writer: writer.handle(),
        store,
        metrics: Metrics::default(),
    });
    // Set when SIGTERM / SIGINT arrives, before the server stops.
    let stopping = Arc::new(AtomicBool::new(false));
    let stopping_flag = stopping.clone();
    let mut server = HttpServer::new(move || {
        let stopping = stopping_flag.clone();
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |req, srv| {
                let started = Instant::now();
                let state = req.app_data::<web::Data<AppState>>().cloned();
                let path = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                let stopping = stopping.clone();
                srv.call(req).map(move |mut res| {
                    // While stopping, close each connection after its answer:
                    // a client that keeps sending on a kept-alive connection
                    // would otherwise hold the graceful shutdown open.
                    if stopping.load(Ordering::Relaxed)
                        && let Ok(res) = &mut res
                    {
                        res.response_mut()
                            .head_mut()
                            .set_connection_type(ConnectionType::Close);
                    }
                    if let (Some(state), Ok(res)) = (&state, &res) {
                        state
                            .metrics
                            .latency
                            .get_or_create(&RequestLabels {
                                path,
                                status: res.status().as_u16(),
                            })
                            .observe(started.elapsed().as_secs_f64());
                    }
                    res
                })
            })
            .service(endpoint("/v1/track", web::post().to(track::track)))
            .service(endpoint("/v1/batch", web::post().to(ingest::batch)))
            .service(endpoint("/v1/export", web::get().to(query::export)))
            .service(
                web::resource("/v1/{analysis}")
                    .route(web::get().to(query::analysis))
                    .default_service(web::to(|req: HttpRequest| async move {
                        // Another method on an analysis is 405; any method on
                        // a name that is no endpoint (POST /v1/identify) is 404.
                        let name = req.match_info().get("analysis").unwrap_or_default();
                        Err::<HttpResponse, _>(if crate::analysis::NAMES.contains(&name) {
                            ApiError::MethodNotAllowed(format!(
                                "{} is not allowed on {}",
                                req.method(),
                                req.path()
                            ))
                        } else {
                            ApiError::NotFound(format!("no endpoint {}", req.path()))
                        })
                    })),
            )
            .service(endpoint("/healthz", web::get().to(healthz)))
            .service(endpoint("/metrics", web::get().to(metrics)))
            .default_service(web::to(|req: HttpRequest| async move {
                Err::<HttpResponse, _>(ApiError::NotFound(format!("no endpoint {}", req.path())))
            }))
    })
    .shutdown_signal(async move {
        stop_signal().await;
        stopping.store(true, Ordering::Relaxed);
    })
    .shutdown_timeout(30);
    if let Some(w) = config.workers {
        server = server.workers(w);
    }
    let server = server
        .bind(&config.listen)
        .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?;
    let addr = *server
        .addrs()
        .first()
        .ok_or_else(|| Error::Config(format!("{} resolved to no address", config.listen)))?;
    Ok(Running {
        addr,
        keys: resolved.keys.clone(),
        key_source: resolved,
        server: server.run(),
        writer,
    })
}

/// Waits for SIGTERM or SIGINT (Ctrl-C); both stop gracefully, letting
/// in-flight requests finish (actix's own handling cuts them on SIGINT).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!("{name} received; finishing in-flight requests, then stopping");
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot listen for SIGTERM/SIGINT: {e}");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn endpoint(path: &'static str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(|req: HttpRequest| async move {
            Err::<HttpResponse, _>(ApiError::MethodNotAllowed(format!(
                "{} is not allowed on {}",
                req.method(),
                req.path()
            )))
        }))
}

async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.writer.is_healthy() {
        Ok(HttpResponse::build(StatusCode::OK)
            .content_type("text/plain")
            .body("ok"))
    } else {
        Err(ApiError::Unavailable(
            "the store cannot accept writes".into(),
        ))
    }
}

/// The OpenMetrics content type, for scrapers that ask for it (Prometheus
/// does, first).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `/metrics`: OpenMetrics (what the encoder writes) to a client that
/// accepts it, otherwise the Prometheus text format 0.0.4 under its own
/// content type, which has no `# EOF` terminator.
async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let body = state.metrics.encode();
    let accepts_openmetrics = req
        .headers()
        .get_all(actix_web::http::header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if accepts_openmetrics {
        return HttpResponse::Ok().content_type(OPENMETRICS).body(body);
    }
    let text: String = body
        .lines()
        .filter(|l| *l != "# EOF")
        .flat_map(|l| [l, "\n"])
        .collect();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
