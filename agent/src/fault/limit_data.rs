//! limit_data: pass exactly `bytes` bytes on the flow (counted from when the fault reached the
//! connection), then close the connection.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitData {
    pub bytes: u64,
}
