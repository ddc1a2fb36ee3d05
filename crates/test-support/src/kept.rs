//! One HTTP/1.1 connection kept alive across requests, as SDKs, browsers and load generators keep theirs:
//! for tests of what a server remembers per connection. A request fails when the server closed the
//! connection, so a test that sends several requests over one knows they all went over it.

use crate::RawResponse;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest response body read (a test's answers are small).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A kept-alive connection to a server.
pub struct KeptConnection {
    stream: BufReader<TcpStream>,
    address: SocketAddr,
}

impl KeptConnection {
    /// Connects to `address`.
    pub async fn open(address: SocketAddr) -> anyhow::Result<KeptConnection> {
        Ok(KeptConnection {
            stream: BufReader::new(TcpStream::connect(address).await?),
            address,
        })
    }

    /// Sends one request over the connection and reads its whole answer.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<RawResponse> {
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let stream = self.stream.get_mut();
        stream.write_all(request.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut status_line = String::new();
        if self.stream.read_line(&mut status_line).await? == 0 {
            anyhow::bail!("the server closed the connection");
        }
        let status: u16 = status_line.split_whitespace().nth(1).unwrap_or("0").parse()?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                anyhow::bail!("the connection closed inside a response head");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let find = |wanted: &str| {
            headers
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, value)| value.clone())
        };
        let body = if find("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
            self.chunked_body().await?
        } else {
            let length: usize = find("content-length").map_or(Ok(0), |value| value.parse())?;
            anyhow::ensure!(length <= MAX_BODY, "a {length}-byte answer is more than a test reads");
            let mut body = vec![0u8; length];
            self.stream.read_exact(&mut body).await?;
            body
        };
        Ok(RawResponse { status, headers, body })
    }

    async fn chunked_body(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            self.stream.read_line(&mut size_line).await?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or_default(), 16)?;
            anyhow::ensure!(body.len() + size <= MAX_BODY, "the answer is more than a test reads");
            let mut chunk = vec![0u8; size + 2];
            self.stream.read_exact(&mut chunk).await?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
}
