//! `GET /` and `GET /dashboard/{file}`: the web dashboard (issue 14), static
//! files from `collector/assets/dashboard/` embedded in the binary. The page
//! asks for the read key, keeps it in `localStorage` and sends it as a
//! Bearer key to the same JSON endpoints the CLI's `--server` uses: the
//! dashboard computes no figure of its own.
//!
//! Every answer carries a Content-Security-Policy that forbids inline
//! scripts and any origin but this one, so an event name that slipped into
//! the page as markup still could not run.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use super::error::ApiError;

/// The policy on every dashboard answer. uPlot sets element styles
/// through the CSSOM, which `style-src 'self'` allows.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The embedded files: name under `/dashboard/`, content type, bytes.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/vendor/uPlot.min.css"),
    ),
];

/// The page itself.
pub const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");

fn secured(mut res: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        // Short: a new binary's dashboard is picked up within minutes.
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"));
    res
}

/// `GET /` (no key: the page holds no data; it asks for the read key).
pub async fn index() -> HttpResponse {
    secured(HttpResponse::Ok())
        .content_type("text/html; charset=utf-8")
        .body(INDEX_HTML)
}

/// `GET /dashboard/{file}`.
pub async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("file").unwrap_or_default();
    let (_, ctype, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::NotFound(format!("no endpoint {}", req.path())))?;
    Ok(secured(HttpResponse::Ok()).content_type(*ctype).body(*body))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The budget: every asset a page load transfers, gzip'd, at
    /// most 300 KB together.
    #[test]
    fn dashboard_assets_fit_300_kb_gzipped() {
        let mut total = 0;
        let files = ASSETS
            .iter()
            .map(|(n, _, b)| (*n, *b))
            .chain([("index.html", INDEX_HTML.as_bytes())]);
        for (name, bytes) in files {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(bytes).unwrap();
            let size = gz.finish().unwrap().len();
            eprintln!("{name}: {} bytes, {size} gzip'd", bytes.len());
            total += size;
        }
        eprintln!("total gzip'd: {total} bytes");
        assert!(
            total <= 300_000,
            "dashboard is {total} bytes gzip'd (limit 300 KB)"
        );
    }
}
