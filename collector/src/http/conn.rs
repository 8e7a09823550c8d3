//! The connection as actix's HTTP/1 dispatcher sees it: the TCP stream,
//! except that the error answers the dispatcher writes itself get a JSON
//! `{"error": "..."}` body (SPEC §2: every non-200 answer has one).
//!
//! The dispatcher answers a request it cannot parse (400), a head that is
//! too large (431) or too slow (408), and its own internal failure (500)
//! without calling the app, with `content-length: 0` and `connection:
//! close`, and no hook of actix-web reaches those answers. Every answer
//! the app gives to a 4xx/5xx has a JSON body (`json_error_body`), so an
//! error head with `content-length: 0` at the start of a write is one of
//! the dispatcher's; it is rewritten here with a body. The dispatcher
//! writes such an answer last on its connection, from a fresh buffer, so
//! the head is whole at the start of one write (an answer queued behind a
//! pipelined one is left as it is).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose writes pass through unchanged but for the dispatcher's
/// own error answers.
pub struct JsonErrors<T = TcpStream> {
    io: T,
    /// A rewritten answer still to be written, from `sent` on.
    pending: Vec<u8>,
    sent: usize,
}

impl<T> JsonErrors<T> {
    /// Wraps `io`.
    pub fn new(io: T) -> Self {
        JsonErrors {
            io,
            pending: Vec::new(),
            sent: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        match with_json_body(buf) {
            None => Pin::new(&mut this.io).poll_write(cx, buf),
            Some(rewritten) => {
                // Taken whole; what the socket does not take now is written
                // by the next write, flush or shutdown.
                this.pending = rewritten;
                if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(buf.len()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// If `buf` starts with a 4xx/5xx answer head with `content-length: 0`,
/// the same answer with a JSON error body (and what followed it).
fn with_json_body(buf: &[u8]) -> Option<Vec<u8>> {
    const EMPTY: &[u8] = b"\r\ncontent-length: 0\r\n";
    let status = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?
        .get(..3)?;
    if !matches!(status[0], b'4' | b'5') {
        return None;
    }
    // A head is a few hundred bytes; don't scan a large write's body.
    let head_end = find(&buf[..buf.len().min(4096)], b"\r\n\r\n")? + 2;
    let at = find(&buf[..head_end + 2], EMPTY)?;
    let message = match status {
        b"400" => {
            "malformed HTTP request (request line, headers, Content-Length or Transfer-Encoding)"
        }
        b"408" => "the request head did not arrive in time",
        b"431" => "the request head is too large (at most 128 KiB and 96 headers)",
        b"500" => "internal error while reading the request",
        _ => "the request failed",
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let mut out = Vec::with_capacity(buf.len() + body.len() + 64);
    out.extend_from_slice(&buf[..at]);
    out.extend_from_slice(
        format!(
            "\r\ncontent-length: {}\r\ncontent-type: application/json\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&buf[at + EMPTY.len()..head_end + 2]);
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(&buf[head_end + 2..]);
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_empty_error_heads_get_a_body() {
        let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\
                     date: Mon, 07 Dec 2026 22:29:58 GMT\r\n\r\n";
        let out = String::from_utf8(with_json_body(head).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("malformed"));
        // The last header line before the blank line is kept whole.
        let last = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                     content-length: 0\r\n\r\n";
        let out = String::from_utf8(with_json_body(last).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with("content-type: application/json"), "{head}");
        assert!(body.contains("too large"), "{body}");
        for untouched in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 29\r\n\r\n{\"error\":\"no endpoint /nope\"}",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"{\"error\":\"x\"}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0",
        ] {
            assert_eq!(with_json_body(untouched), None);
        }
    }
}
