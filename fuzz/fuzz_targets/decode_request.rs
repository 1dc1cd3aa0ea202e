//! Arbitrary bytes into the protocol decoders.
//!
//! Checks, for `Message::decode` and `Reply::decode`: no panic; every line that decodes
//! re-encodes to one line (no raw newline) that decodes to an equal value, and encoding
//! is stable (the second encoding is byte for byte the first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use solo_instance::{Message, Reply};

fuzz_target!(|line: &[u8]| {
    if let Ok(message) = Message::decode(line) {
        let encoded = message.encode();
        assert!(!encoded.contains('\n'), "a request encodes with a raw newline: {encoded:?}");
        let again = Message::decode(encoded.as_bytes())
            .unwrap_or_else(|e| panic!("a re-encoded request does not decode: {e}\n{encoded}"));
        // `data` is a serde_json::Value: NaN cannot come from JSON, so `==` is total here,
        // but compare the encodings too, which also catches a float that changes its bits.
        assert_eq!(again, message, "a request changes through encode/decode:\n{encoded}");
        assert_eq!(again.encode(), encoded, "a request's encoding is not stable");
    }
    if let Ok(reply) = Reply::decode(line) {
        let encoded = reply.encode();
        assert!(!encoded.contains('\n'), "a reply encodes with a raw newline: {encoded:?}");
        let again = Reply::decode(encoded.as_bytes())
            .unwrap_or_else(|e| panic!("a re-encoded reply does not decode: {e}\n{encoded}"));
        assert_eq!(again, reply, "a reply changes through encode/decode:\n{encoded}");
        assert_eq!(again.encode(), encoded, "a reply's encoding is not stable");
    }
});
