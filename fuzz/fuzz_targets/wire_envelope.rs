//! Any bytes through the framer and the envelope parser give frames, messages or named errors —
//! never a panic — however the input is split into reads; and a parsed message, with its id and
//! (for a request with object params) its name rewritten, parses back to the same JSON value
//! apart from what was rewritten.
//!
//! The first byte picks the read size (1–256) and the message limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lastmile::wire::{Envelope, Frame, Framer, Kind, rename};

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first) + 1;
    let max = 16 + usize::from(first) * 8;
    let mut framer = Framer::new(max);
    let mut frames = Vec::new();
    for piece in input.chunks(chunk) {
        framer.push(piece);
        while let Some(f) = framer.next_frame() {
            frames.push(f);
        }
    }
    frames.extend(framer.finish());
    for frame in frames {
        let Frame::Message(bytes) = frame else {
            continue;
        };
        assert!(bytes.len() <= max);
        assert!(!bytes.contains(&b'\n'));
        let Ok(mut m) = Envelope::parse(&bytes) else {
            continue;
        };
        let mut expected: serde_json::Value = serde_json::from_slice(&bytes).expect("parsed once");
        m.set_id("424242".into());
        expected["id"] = 424242.into();
        if m.kind() == Kind::Request && rename(&mut m, "renamed").is_ok() {
            expected["params"]["name"] = "renamed".into();
        }
        let out: serde_json::Value =
            serde_json::from_str(&m.to_json()).expect("a rewritten message is JSON");
        assert_eq!(out, expected);
    }
});
