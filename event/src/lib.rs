//! Tally's event model (SPEC §1): the wire form that the SDK sends, the
//! validation the collector applies, and the time handling both share.
//!
//! This crate deliberately depends on neither actix nor sled, so that the
//! SDK can use the same types without pulling in the server.

pub mod ingest;
pub mod stage;
pub mod time;
pub mod validate;
pub mod wire;

pub use ingest::{IngestAnswer, IngestRejection};
pub use stage::Stage;
pub use validate::{
    Defaulted, ValidationError, validate_event, validate_event_json, validate_event_json_defaults,
};
pub use wire::{Event, WireEvent};
