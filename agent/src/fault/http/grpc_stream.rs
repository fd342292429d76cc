//! grpc_stream: faults inside a streaming RPC's response: end the stream with a status or
//! reset it after N messages or after a time, and delay each message.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamAction {
    /// RST_STREAM: the client sees the stream cancelled/reset.
    Reset,
    /// End the stream cleanly with this status.
    Status { code: u8, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcStream {
    /// Act after this many response messages have been forwarded.
    pub after_messages: Option<u64>,
    /// Act this long after the response started.
    pub after: Option<Duration>,
    /// Present when the stream is to be cut (`None`: only delay messages).
    pub action: Option<StreamAction>,
    /// Delay each response message by this much.
    pub message_delay: Duration,
}
