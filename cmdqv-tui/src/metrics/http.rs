//! A small HTTP/1.1 responder for `GET /metrics` on the tokio runtime, beside the live loop and
//! never inside it: a scrape asks the loop for fresh figures through a channel and waits at
//! most [`REFRESH_WAIT`], so a busy loop delays a scrape, never the other way round.
//!
//! Robust to slow and bad clients: the request head must arrive within [`IO_TIMEOUT`] and fit
//! in [`HEAD_MAX`] bytes, at most [`CONNECTIONS`] are served at once (more are closed at once),
//! every answer closes its connection, and anything but `GET`/`HEAD` of `/metrics` or `/` gets
//! a plain error status.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
    time::timeout,
};

use super::expose::{Exposition, Format};

/// Time a client has to send its request head, and then to take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted.
pub const HEAD_MAX: usize = 8192;
/// Connections served at once.
pub const CONNECTIONS: usize = 16;
/// How long a scrape waits for the live loop's fresh figures before it serves the last ones.
pub const REFRESH_WAIT: Duration = Duration::from_millis(500);

/// A scrape's request for fresh figures; the loop answers when the state is up to date.
pub type RefreshRequest = oneshot::Sender<()>;

/// What the server answers with.
#[derive(Clone)]
pub struct Responder {
    pub exposition: Arc<Exposition>,
    /// Where to ask for fresh figures (None: the state is kept fresh by its writer).
    pub refresh: Option<mpsc::Sender<RefreshRequest>>,
}

/// Accepts connections until the task is aborted.
pub fn spawn(listener: TcpListener, responder: Responder) -> JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(CONNECTIONS));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of fds and the like: wait a little rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let r = responder.clone();
            tokio::spawn(async move {
                let _ = timeout(IO_TIMEOUT * 2, serve(stream, &r)).await;
                drop(permit);
            });
        }
    })
}

/// One parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub accept: Option<String>,
}

/// Why a head was not answered normally.
#[derive(Debug, PartialEq, Eq)]
pub enum BadHead {
    /// Not HTTP/1.x request syntax.
    Malformed,
    TooLarge,
}

/// Parses a request head (through the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, BadHead> {
    let text = std::str::from_utf8(head).map_err(|_| BadHead::Malformed)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(BadHead::Malformed);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(BadHead::Malformed);
    }
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_string());
    Ok(Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or(target).to_string(),
        accept,
    })
}

/// Reads up to the end of the head, within [`HEAD_MAX`].
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, BadHead> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| BadHead::Malformed)?;
        if n == 0 {
            return Err(BadHead::Malformed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > HEAD_MAX {
            return Err(BadHead::TooLarge);
        }
    }
}

async fn serve(mut stream: TcpStream, r: &Responder) {
    let head = match timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Ok(h) => h,
        // A client that sends nothing in time gets nothing back.
        Err(_) => return,
    };
    let answer = match head.and_then(|h| parse_head(&h)) {
        Ok(req) => answer(&req, r).await,
        Err(BadHead::TooLarge) => status(431, "Request Header Fields Too Large"),
        Err(BadHead::Malformed) => status(400, "Bad Request"),
    };
    let _ = timeout(IO_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
}

async fn answer(req: &Request, r: &Responder) -> Vec<u8> {
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        return response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "Allow: GET, HEAD\r\n",
            b"only GET and HEAD\n",
            false,
        );
    }
    match req.path.as_str() {
        "/metrics" => {
            refresh(r).await;
            let format = Format::negotiate(req.accept.as_deref());
            let body = r.exposition.render(format);
            response(
                "200 OK",
                format.content_type(),
                "",
                body.as_bytes(),
                head_only,
            )
        }
        "/" => response(
            "200 OK",
            "text/plain; charset=utf-8",
            "",
            b"cmdqv: metrics at /metrics\n",
            head_only,
        ),
        _ => status(404, "Not Found"),
    }
}

/// Asks the live loop for fresh figures and waits a bounded time for them.
async fn refresh(r: &Responder) {
    let Some(tx) = &r.refresh else {
        return;
    };
    let (done, wait) = oneshot::channel();
    if tx.try_send(done).is_ok() {
        let _ = timeout(REFRESH_WAIT, wait).await;
    }
}

fn status(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    response(
        &format!("{code} {reason}"),
        "text/plain; charset=utf-8",
        "",
        body.as_bytes(),
        false,
    )
}

fn response(status: &str, ctype: &str, extra: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_query_and_accept_and_garbage_is_refused() {
        let r = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nACCEPT: text/plain").unwrap();
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.accept.as_deref(), Some("text/plain"));
        assert_eq!(parse_head(b"GET /metrics"), Err(BadHead::Malformed));
        assert_eq!(parse_head(b"\xff\xfe HTTP/1.1"), Err(BadHead::Malformed));
        assert_eq!(parse_head(b"GET metrics HTTP/1.1"), Err(BadHead::Malformed));
        assert_eq!(parse_head(b"GET / SPDY/3"), Err(BadHead::Malformed));
    }
}
