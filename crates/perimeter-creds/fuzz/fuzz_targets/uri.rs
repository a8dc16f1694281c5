#![no_main]

//! The URI parser and the redactor on arbitrary input: neither panics; the redaction is
//! printable ASCII; a valid URI implies at least one destination and its error-free Debug.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let redacted = perimeter_creds::redact(text);
    assert!(redacted.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    match perimeter_creds::parse(text) {
        Ok(uri) => {
            assert!(!uri.destinations().is_empty());
            let _ = (uri.auth_mode(), uri.role_chain(), uri.warnings());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
