//! The write-ahead log decoder on any bytes: records, a torn tail or an
//! error with the offset, never a panic or an absurd allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_store::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, valid)) = codec::decode_wal(data) {
        assert!(valid <= data.len());
    }
    assert!(codec::wal_intact_prefix(data) <= data.len());
});
