//! The wire: stdio JSON-RPC as bytes. Framing with a bounded message size ([`Framer`],
//! [`FrameReader`]) and the envelope of a message parsed once, borrowing the raw bytes, so that a
//! forwarded message is rewritten only where lastmile must change it ([`Envelope`]).
//!
//! This is the footing of the raw forwarding core (issue #10): it knows nothing of rmcp, and
//! every function here is a pure function of its input, so it is fuzzed directly.

mod envelope;
mod frame;
mod write;

pub use envelope::{
    Envelope, Kind, Piece, RawObject, WireError, json_string, rename, write_json_string,
};
pub use frame::{DEFAULT_MAX_MESSAGE, Frame, FrameReader, Framer};
pub use write::write_queued;
