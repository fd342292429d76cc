//! gRPC on the wire: recognising a gRPC request, building trailers-only responses, and finding
//! message boundaries in a response stream (5-byte prefix: compressed flag, 4-byte length).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};

use crate::fault::http::grpc_abort::encode_message;

pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// A trailers-only response: HTTP 200 whose headers carry `grpc-status` and `grpc-message`.
pub fn trailers_only<B>(code: u8, message: &str, body: B) -> Response<B> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(v) = HeaderValue::from_str(&encode_message(message)) {
        h.insert("grpc-message", v);
    }
    resp
}

/// Trailers that end a stream with a status.
pub fn status_trailers(code: u8, message: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(v) = HeaderValue::from_str(&encode_message(message)) {
        h.insert("grpc-message", v);
    }
    h
}

/// Reads `grpc-status` from headers or trailers.
pub fn status_of(h: &HeaderMap) -> Option<u8> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Tracks message boundaries across data frames.
#[derive(Debug)]
pub struct Framer {
    state: FrameState,
}

#[derive(Debug, Clone, Copy)]
enum FrameState {
    /// Inside a 5-byte prefix, with this many bytes of it seen (and the length so far).
    Prefix { seen: usize, len: u32 },
    /// Inside a message payload, with this many bytes still to come.
    Payload { remaining: u64 },
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            state: FrameState::Prefix { seen: 0, len: 0 },
        }
    }
}

/// A piece of a data frame and where it sits among messages.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece {
    pub data: Bytes,
    /// This piece completes a message.
    pub ends_message: bool,
    /// This piece begins with the first byte of a message.
    pub starts_message: bool,
}

impl Framer {
    /// Splits `data` so that a message end always falls at the end of a piece.
    pub fn split(&mut self, mut data: Bytes) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut starts = matches!(self.state, FrameState::Prefix { seen: 0, .. });
        let mut i = 0;
        while i < data.len() {
            let ended = match &mut self.state {
                FrameState::Prefix { seen, len } => {
                    if *seen >= 1 {
                        *len = (*len << 8) | u32::from(data[i]);
                    }
                    *seen += 1;
                    i += 1;
                    if *seen == 5 {
                        let remaining = u64::from(*len);
                        self.state = FrameState::Payload { remaining };
                        remaining == 0
                    } else {
                        false
                    }
                }
                FrameState::Payload { remaining } => {
                    let take = (*remaining).min((data.len() - i) as u64);
                    i += take as usize;
                    *remaining -= take;
                    *remaining == 0
                }
            };
            if ended {
                self.state = FrameState::Prefix { seen: 0, len: 0 };
                out.push(Piece {
                    data: data.split_to(i),
                    ends_message: true,
                    starts_message: starts,
                });
                i = 0;
                starts = true;
            }
        }
        if !data.is_empty() {
            out.push(Piece {
                data,
                ends_message: false,
                starts_message: starts,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn finds_boundaries_across_and_within_frames() {
        let mut stream = msg(b"hello");
        stream.extend(msg(b""));
        stream.extend(msg(b"world!"));
        // Feed in awkward pieces: every split point must give the same messages.
        for cut in 1..stream.len() {
            let mut f = Framer::default();
            let mut pieces = f.split(Bytes::copy_from_slice(&stream[..cut]));
            pieces.extend(f.split(Bytes::copy_from_slice(&stream[cut..])));
            let ends = pieces.iter().filter(|p| p.ends_message).count();
            assert_eq!(ends, 3, "cut at {cut}: {pieces:?}");
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.data.to_vec()).collect();
            assert_eq!(joined, stream);
            // Every end is at a real message boundary.
            let mut offset = 0;
            for p in &pieces {
                offset += p.data.len();
                if p.ends_message {
                    assert!([10, 15, 26].contains(&offset), "cut {cut}: end at {offset}");
                }
            }
        }
    }
}
