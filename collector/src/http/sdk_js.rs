//! `GET /sdk.js`: the browser SDK (`collector/assets/tally.js`), embedded
//! in the binary so a page needs nothing but the collector.

use actix_web::HttpResponse;
use actix_web::http::header;

/// The browser SDK's source.
pub const SDK_JS: &str = include_str!("../../assets/tally.js");

/// `GET /sdk.js` (no key: the script is public).
pub async fn sdk_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        // Short: a page picks up a new collector's SDK within minutes.
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(SDK_JS)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The budget: at most 6 KB gzip'd.
    #[test]
    fn sdk_is_small_gzipped() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(SDK_JS.as_bytes()).unwrap();
        let size = gz.finish().unwrap().len();
        assert!(
            size <= 6 * 1024,
            "sdk.js is {size} bytes gzip'd (limit 6 KiB)"
        );
    }
}
