//! The collector's HTTP API (SPEC §2) on actix-web.
//!
//! Handlers validate and cap sizes at the edge and hand events to the
//! group-commit [`Writer`]; nothing here blocks on
//! sled or fsync.

mod admin;
mod auth;
mod body;
mod conn;
mod cors;
mod dashboard;
pub mod error;
pub mod ingest;
mod metrics;
pub mod query;
mod rate;
mod sdk_js;
mod track;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_http::{HttpService, KeepAlive, Protocol};
use actix_service::{ServiceFactoryExt, fn_service, map_config};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{AppConfig, Server, Service, ServiceResponse};
use actix_web::http::{ConnectionType, Method, StatusCode, header};
use actix_web::rt::net::TcpStream;
use actix_web::{App, HttpRequest, HttpResponse, guard, web};
use futures_util::FutureExt;

use crate::config::Config;
use crate::error::Error;
use crate::keys::Keys;
use crate::store::writer::WriterHandle;
use crate::store::{DiskStore, EventStore, StoreOptions, Writer};
use body::{BodyLimits, Budget};
use conn::JsonErrors;
use error::ApiError;
use metrics::{Metrics, RequestLabels};

/// Shared by every handler.
pub struct AppState {
    config: Config,
    keys: Keys,
    writer: WriterHandle,
    store: Arc<dyn EventStore>,
    metrics: Metrics,
    body_limits: BodyLimits,
    rate_limit: rate::RateLimit,
    /// Name ids to names for `GET /v1/events?names=only`, kept while the
    /// collector runs.
    names: crate::catalog::NameBook,
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
    ///
    /// If a store thread dies (a bug: a panic), the server stops and this
    /// returns an error, so the process exits non-zero and a supervisor
    /// restarts it, rather than answering 503 to every write forever.
    pub async fn wait(mut self) -> Result<(), Error> {
        let died = self.writer.died();
        let handle = self.server.handle();
        let mut server = self.server;
        let result = tokio::select! {
            r = &mut server => r.map_err(|e| Error::io("running the HTTP server", e)),
            () = died => {
                tracing::error!("a store writer thread died; stopping the collector");
                // The server future handles the stop command: poll both.
                let (_, _) = tokio::join!(handle.stop(true), &mut server);
                Err(Error::Unavailable(
                    "a store writer thread died (see the log above); the collector stopped".into(),
                ))
            }
        };
        let dead = self.writer.is_dead();
        self.writer.shutdown().await;
        if !dead {
            tracing::info!("stopped; all acknowledged events are on disk");
        }
        result
    }
}

/// Opens the store in the data directory (the backend `backend.rs` chooses), resolves keys and binds the
/// listener.
pub fn start(config: Config) -> Result<Running, Error> {
    config.validate()?;
    std::fs::create_dir_all(&config.data)
        .map_err(|e| Error::io(format!("creating {}", config.data.display()), e))?;
    let store = Arc::new(crate::backend::open(
        &config.data,
        &StoreOptions {
            cache_capacity: config.cache_mb * 1024 * 1024,
            chunk_events: config.chunk_events,
            keep_ms: config.keep_ms()?,
            ..StoreOptions::default()
        },
    )?);
    // Repairs what a crash left, and refuses to start on damage, before
    // anything is served.
    store.prepare_writer()?;
    // Deletions and `--keep` leave the disk within the hour (SPEC: at most
    // 24 h); small chunks are merged. TALLY_COMPACT_CHECK_SECS is for tests.
    let every = std::env::var("TALLY_COMPACT_CHECK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    DiskStore::compact_in_background(&store, Duration::from_secs(every));
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
        config.admin_key.clone(),
    )?;
    let writer = Writer::start(store.clone());
    let app_metrics = Metrics::default();
    let body_limits = BodyLimits {
        max_bytes: config.max_body_bytes,
        timeout: Duration::from_secs(config.body_timeout_secs),
        budget: Budget::new(
            config.max_inflight_body_bytes(),
            app_metrics.body_bytes_in_flight.clone(),
        ),
    };
    let state = web::Data::new(AppState {
        config: config.clone(),
        keys: resolved.keys.clone(),
        writer: writer.handle(),
        store,
        metrics: app_metrics,
        body_limits,
        rate_limit: rate::RateLimit::new(config.ingest_rate_per_ip),
        names: crate::catalog::NameBook::default(),
    });
    // Set when SIGTERM / SIGINT arrives, before the server stops.
    let stopping = Arc::new(AtomicBool::new(false));
    let stopping_flag = stopping.clone();
    let make_app = move || {
        let stopping = stopping_flag.clone();
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |req, srv| {
                let started = Instant::now();
                let state = req.app_data::<web::Data<AppState>>().cloned();
                let path = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                let stopping = stopping.clone();
                // CORS headers go on every answer of the ingest endpoints to
                // a listed origin, errors included, so a page can read why.
                let cors_origin = state
                    .as_ref()
                    .filter(|_| cors::is_ingest(req.path()))
                    .and_then(|s| cors::allowed_origin(req.headers(), s));
                srv.call(req).map(move |res| {
                    let mut res = res.map(json_error_body);
                    if let (Some(origin), Ok(res)) = (cors_origin, &mut res) {
                        cors::add_headers(res.headers_mut(), origin);
                    }
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
            .service(
                endpoint("/v1/track", web::post().to(track::track))
                    .route(web::method(Method::OPTIONS).to(cors::preflight)),
            )
            .service(
                endpoint("/v1/batch", web::post().to(ingest::batch))
                    .route(web::method(Method::OPTIONS).to(cors::preflight)),
            )
            .service(endpoint("/sdk.js", get_or_head().to(sdk_js::sdk_js)))
            .service(endpoint("/", get_or_head().to(dashboard::index)))
            .service(endpoint(
                "/dashboard/{file}",
                get_or_head().to(dashboard::asset),
            ))
            .service(endpoint("/v1/export", web::get().to(query::export)))
            .service(endpoint("/v1/review", get_or_head().to(query::review)))
            .service(endpoint("/v1/admin/backup", web::post().to(admin::backup)))
            .service(endpoint(
                "/v1/admin/delete-person",
                web::post().to(admin::delete_person),
            ))
            .service(
                web::resource("/v1/{analysis}")
                    .route(get_or_head().to(query::analysis))
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
            .service(endpoint("/healthz", get_or_head().to(healthz)))
            .service(endpoint("/metrics", get_or_head().to(metrics)))
            .default_service(web::to(|req: HttpRequest| async move {
                Err::<HttpResponse, _>(ApiError::NotFound(format!("no endpoint {}", req.path())))
            }))
    };
    // actix-web's `HttpServer`, but on connections wrapped in `JsonErrors`
    // (conn.rs) so that the answers actix's HTTP/1 dispatcher writes itself
    // carry a JSON error body too. Its defaults are kept: listeners on every
    // address `listen` resolves to (backlog 1024, SO_REUSEADDR), keep-alive
    // 5 s, 5 s for a request head, 1 s to close.
    let addrs: Vec<SocketAddr> = config
        .listen
        .to_socket_addrs()
        .map_err(|e| Error::io(format!("resolving {}", config.listen), e))?
        .collect();
    let mut builder = Server::build()
        .shutdown_signal(async move {
            stop_signal().await;
            stopping.store(true, Ordering::Relaxed);
        })
        .shutdown_timeout(30);
    if let Some(w) = config.workers {
        builder = builder.workers(w);
    }
    // Like `HttpServer::bind`: every address that can be bound is served,
    // and only none at all is an error (`localhost` may resolve to an IPv6
    // address on a host without IPv6).
    let mut bound = Vec::new();
    let mut failed = None;
    for addr in addrs {
        let listener = match tcp_listener(addr) {
            Ok(l) => l,
            Err(e) => {
                failed = Some(e);
                continue;
            }
        };
        let local = listener
            .local_addr()
            .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?;
        bound.push(local);
        let make_app = make_app.clone();
        builder = builder
            .listen(format!("tally-{local}"), listener, move || {
                let app = map_config(make_app(), |_| AppConfig::default());
                fn_service(|io: TcpStream| async move {
                    let peer = io.peer_addr().ok();
                    let _ = io.set_nodelay(true);
                    Ok((JsonErrors::new(io), Protocol::Http1, peer))
                })
                .and_then(
                    HttpService::build()
                        .keep_alive(KeepAlive::Timeout(Duration::from_secs(5)))
                        .client_request_timeout(Duration::from_secs(5))
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .local_addr(local)
                        .finish(app),
                )
            })
            .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?;
    }
    let addr = match (bound.first(), failed) {
        (Some(addr), _) => *addr,
        (None, Some(e)) => return Err(Error::io(format!("listening on {}", config.listen), e)),
        (None, None) => {
            return Err(Error::Config(format!(
                "{} resolved to no address",
                config.listen
            )));
        }
    };
    let server = builder;
    Ok(Running {
        addr,
        keys: resolved.keys.clone(),
        key_source: resolved,
        server: server.run(),
        writer,
    })
}

/// A listening socket as actix-web's `HttpServer::bind` makes it.
fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
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

/// GET, and HEAD answered like GET without the body (actix leaves the body
/// out of a HEAD answer).
fn get_or_head() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Gives a JSON `{"error": "..."}` body to an error answer that has none or
/// another kind (actix's own answers, such as an extractor's plain-text
/// 400): SPEC §2 promises one on every non-200 answer. The text, if any,
/// becomes the message; otherwise the status's reason.
fn json_error_body<B: MessageBody + 'static>(res: ServiceResponse<B>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return res.map_into_boxed_body();
    }
    res.map_body(|head, body| {
        let message = body
            .try_into_bytes()
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("request failed")
                    .to_string()
            });
        head.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        BoxBody::new(serde_json::json!({ "error": message }).to_string())
    })
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
    let store = state.store.clone();
    // Sizing the store's files reads the disk: off the async worker.
    if let Ok(stats) = web::block(move || store.stats()).await {
        let g = &state.metrics.store;
        g.events.set(stats.events as i64);
        g.chunks.set(stats.chunks as i64);
        g.bytes.set(stats.bytes_on_disk as i64);
    }
    state
        .metrics
        .store
        .queue
        .set(state.writer.queue_depth() as i64);
    state
        .metrics
        .store
        .last_fsync
        .set(state.writer.last_sync_seconds());
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

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    async fn answer(res: HttpResponse) -> (StatusCode, String, String) {
        let res = json_error_body(TestRequest::default().to_srv_response(res));
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let status = res.status();
        let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[actix_web::test]
    async fn error_answers_without_a_json_body_get_one() {
        for (res, message) in [
            (HttpResponse::BadRequest().finish(), "Bad Request"),
            (
                HttpResponse::NotFound()
                    .content_type("text/plain")
                    .body("no such thing\n"),
                "no such thing",
            ),
            (
                HttpResponse::InternalServerError().finish(),
                "Internal Server Error",
            ),
        ] {
            let status = res.status();
            let (got, ctype, body) = answer(res).await;
            assert_eq!(got, status);
            assert_eq!(ctype, "application/json");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v, serde_json::json!({ "error": message }));
        }
        // JSON errors and successes are left as they are.
        let (_, _, body) =
            answer(HttpResponse::BadRequest().json(serde_json::json!({"error": "x"}))).await;
        assert_eq!(body, r#"{"error":"x"}"#);
        let (_, ctype, body) =
            answer(HttpResponse::Ok().content_type("text/plain").body("ok")).await;
        assert_eq!((ctype.as_str(), body.as_str()), ("text/plain", "ok"));
    }
}
