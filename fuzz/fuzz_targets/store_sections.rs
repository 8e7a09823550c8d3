//! Every decoder of chunk sections and index values on any bytes: an error,
//! never a panic or an absurd allocation (a damaged header copy or sled
//! value is read without a checksum in front of it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_store::codec::{self, ChunkHeader, ColumnBlock, IdSpans};

fuzz_target!(|data: &[u8]| {
    let _ = ChunkHeader::decode(data);
    let _ = IdSpans::decode(data);
    let _ = ColumnBlock::decode(data);
    let _ = codec::decode_ids(data);
    let _ = codec::decode_ranks(data);
    let _ = codec::decode_persons(data);
    let _ = codec::decode_events(data, &[[7u8; 16]; 3]);
    let _ = codec::check_chunk_preamble(data);
});
