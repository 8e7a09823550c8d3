//! Event validation from raw request bytes (SPEC §1): any input is either
//! an event or an error naming the problem, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tally_event::validate::validate_event_json(text, 1_800_000_000_000);
    }
});
