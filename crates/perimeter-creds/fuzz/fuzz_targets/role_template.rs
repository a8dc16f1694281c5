#![no_main]

//! Functional role templates on arbitrary input: parsing does not panic, and an accepted
//! template expands, for a UUID cluster id, to a role ARN that is its rendered text.

use perimeter_creds::{ClusterIdentity, RoleTemplate};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let id = ClusterIdentity {
        cluster_id: "6f1c3a8e-2b4d-4e5f-9a0b-1c2d3e4f5a6b",
        account_id: "123456789012",
    };
    match text.parse::<RoleTemplate>() {
        Ok(t) => {
            let arn = t.expand(&id).expect("an accepted template expands");
            assert_eq!(arn.to_string(), t.render(&id));
            assert!(!arn.to_string().contains(['{', '}']));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
