//! How an HTTP/1.1 response body is framed (RFC 9112 §6.3), whether the connection outlives
//! it, and the decoder that takes the body out of the connection's read buffer: by length,
//! chunked (trailers kept), until the upstream closes, or none.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use http_body::Frame;

use super::{MAX_HEAD, MAX_HEADERS};
use crate::http::body::BoxError;

/// How a response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body at all.
    Empty,
    /// This many bytes left.
    Length(u64),
    /// Chunked transfer coding, at this point of it.
    Chunked(Chunk),
    /// Until the upstream closes.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

pub(super) fn framing(method: &Method, head: &http::response::Parts) -> Result<Framing, String> {
    let s = head.status.as_u16();
    if method == Method::HEAD || s == 204 || s == 304 {
        return Ok(Framing::Empty);
    }
    if let Some(te) = head.headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        let chunked = te
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    for v in head.headers.get_all(CONTENT_LENGTH) {
        for part in v
            .to_str()
            .map_err(|_| "bad content-length from upstream")?
            .split(',')
        {
            let n: u64 = part
                .trim()
                .parse()
                .map_err(|_| "bad content-length from upstream")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting content-length from upstream".into());
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Whether the upstream keeps the connection open after this answer.
pub(super) fn keeps_alive(head: &http::response::Parts) -> bool {
    let has = |token: &str| {
        head.headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    match head.version {
        Version::HTTP_10 => has("keep-alive"),
        _ => !has("close"),
    }
}

pub(super) enum Step {
    Frame(Frame<Bytes>),
    /// The body ended (with trailers, for a chunked one that had them).
    End(Option<HeaderMap>),
    /// More bytes are needed.
    More,
}

/// Takes what `buf` holds of the body as `framing` reads it.
pub(super) fn step(framing: &mut Framing, buf: &mut BytesMut) -> Result<Step, BoxError> {
    loop {
        match framing {
            Framing::Empty | Framing::Length(0) => return Ok(Step::End(None)),
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                return Ok(Step::Frame(Frame::data(buf.split_to(n).freeze())));
            }
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                return Ok(Step::Frame(Frame::data(buf.split().freeze())));
            }
            Framing::Chunked(state) => match *state {
                Chunk::Size => {
                    let Some(end) = find_crlf(buf) else {
                        if buf.len() > 4096 {
                            return Err("chunk size line too long".into());
                        }
                        return Ok(Step::More);
                    };
                    let line = &buf[..end];
                    let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                        .ok_or("bad chunk size from upstream")?;
                    buf.advance(end + 2);
                    *state = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = left.min(buf.len() as u64) as usize;
                    *state = if left == n as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n as u64)
                    };
                    return Ok(Step::Frame(Frame::data(buf.split_to(n).freeze())));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("bad chunk end from upstream".into());
                    }
                    buf.advance(2);
                    *state = Chunk::Size;
                }
                Chunk::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *framing = Framing::Empty;
                        return Ok(Step::End(None));
                    }
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(buf, &mut headers) {
                        Ok(httparse::Status::Complete((len, fields))) => {
                            let mut map = HeaderMap::with_capacity(fields.len());
                            for h in fields {
                                if let (Ok(n), Ok(v)) = (
                                    HeaderName::from_bytes(h.name.as_bytes()),
                                    HeaderValue::from_bytes(h.value),
                                ) {
                                    map.append(n, v);
                                }
                            }
                            buf.advance(len);
                            *framing = Framing::Empty;
                            return Ok(Step::End((!map.is_empty()).then_some(map)));
                        }
                        Ok(httparse::Status::Partial) => {
                            if buf.len() > MAX_HEAD {
                                return Err("upstream trailers too large".into());
                            }
                            return Ok(Step::More);
                        }
                        Err(e) => return Err(format!("bad trailers from upstream: {e}").into()),
                    }
                }
            },
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_decodes_however_it_is_split() {
        let wire = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for cut in 1..wire.len() {
            let mut framing = Framing::Chunked(Chunk::Size);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut ended = false;
            for piece in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(piece);
                loop {
                    match step(&mut framing, &mut buf).unwrap() {
                        Step::Frame(f) => out.extend_from_slice(&f.into_data().unwrap()),
                        Step::End(_) => {
                            ended = true;
                            break;
                        }
                        Step::More => break,
                    }
                }
            }
            assert!(ended, "cut at {cut}");
            assert_eq!(out, b"abc0123456789abcdef", "cut at {cut}");
            assert!(buf.is_empty());
        }
    }
}
