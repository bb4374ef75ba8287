//! HTTP at the byte level, for what client libraries will not do: stall mid-body, send
//! invented methods, keep connections open, or watch the server close one.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix(&prefix)
                .map(|v| v.trim().to_owned())
        })
    }
}

pub async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// Writes `bytes`, ignoring a server that already answered and closed.
pub async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
}

/// Sends `head` and `body` while reading the answer, for a server that answers before it
/// has read a body too large for the socket's buffers.
pub async fn exchange_while_sending(port: u16, head: &str, body: &[u8]) -> RawReply {
    let (mut reader, mut writer) = connect(port).await.into_split();
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(body);
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let reply = read_reply(&mut reader, Duration::from_secs(60)).await;
    // Kept open until the answer is read: a closed write half could end the exchange.
    drop(sending.await);
    reply
}

/// Reads one answer (head and a `Content-Length` body) within `timeout`.
pub async fn read_reply<R>(stream: &mut R, timeout: Duration) -> RawReply
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut answer = Vec::new();
    let read = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&answer);
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if rest.len() >= length {
                            break;
                        }
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within {timeout:?}");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    RawReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Whether the server has closed the connection (end of stream within `timeout`).
pub async fn closed_by_server(stream: &mut TcpStream, timeout: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(timeout, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// The head of a request with a JSON body of `length` bytes.
pub fn json_head(method: &str, path: &str, token: &str, length: usize) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// The head of a multipart upload with the given boundary and length header line.
pub fn multipart_head(guid: &str, token: &str, boundary: &str, length: &str) -> String {
    format!(
        "POST /v3/packages/{guid}/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n{length}\r\n"
    )
}
