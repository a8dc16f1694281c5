//! Rule states with two gateways (PENDING_CREATION, ACTIVE, INCONSISTENT as observed), and
//! enforcement of the last-known-good snapshot without the control plane.

use std::path::Path;
use std::time::{Duration, Instant};

use perimeter_testkit::api::{
    add_rule, create_cluster, gateway_token, rule_state, set_policy, wait_gateways_applied,
};
use perimeter_testkit::{Gateway, wait_until};
use serde_json::json;

use crate::case::{self, Case, case, curl, curl_with};
use crate::clients::curl_via;
use crate::fixture::{Net, NetOptions};
use crate::{BIN, start_serve};

/// What a gateway enforces with the first rule (allowed.test on 80 and 443) and, when
/// `denied_allowed`, the second (denied.test on 80).
fn enforcement(cafile: &str, denied_allowed: bool) -> Vec<Case> {
    let denied = case("denied.test", curl("http://denied.test/after"));
    let denied = if denied_allowed {
        denied.allowed(200).serves(["/after"])
    } else {
        denied.refused(403, "no_rule_for_destination")
    };
    vec![
        case("allowed.test over HTTP", curl("http://allowed.test/after"))
            .allowed(200)
            .serves(["/after"]),
        case(
            "allowed.test over TLS",
            curl_with(&["--cacert", cafile], "https://allowed.test/after"),
        )
        .allowed(200)
        .serves(["/after"]),
        denied,
        case("other.test", curl("http://other.test/after")).refused(403, "no_rule_for_destination"),
        case(
            "private.allowed.test",
            curl("http://private.allowed.test/after"),
        )
        .refused(403, "no_rule_for_destination"),
    ]
}

#[test]
fn rule_states_follow_two_gateways_and_enforcement_survives_the_control_plane() {
    let net = Net::new(NetOptions::default());
    let deadline_secs = 4u64;
    let s = start_serve(
        &net.dir.path().join("cp"),
        &["--propagation-deadline-seconds", &deadline_secs.to_string()],
    );
    let key = s.admin_key_file();
    let cid = create_cluster(&s, &key, "netns-states", &["us-east-1", "us-west-2"]);
    let t1 = gateway_token(&s, &key, &cid, "us-east-1", "gw-east");
    let t2 = gateway_token(&s, &key, &cid, "us-west-2", "gw-west");
    let state1 = net.dir.path().join("gw-east");
    let state2 = net.dir.path().join("gw-west");
    let start = |token: &str, region: &str, state: &Path, cp: &str| {
        Gateway::start(
            BIN,
            net.dir.path(),
            cp,
            token,
            region,
            state,
            &net.hosts,
            &net.dns,
        )
    };
    let g1 = start(&t1, "us-east-1", &state1, &s.url);
    let g2 = start(&t2, "us-west-2", &state2, &s.url);
    wait_gateways_applied(&s, &key, &cid, 2);
    set_policy(&s, &key, &cid, false);
    for g in [&g1, &g2] {
        let table = vec![
            case("before any rule", curl("http://allowed.test/"))
                .refused(403, "no_rule_for_destination"),
        ];
        case::assert_passed("before any rule", &case::run(&net, &g.proxy, table));
    }

    // PENDING_CREATION, then ACTIVE once both gateways applied it.
    let rule = add_rule(
        &s,
        &key,
        &cid,
        json!({"name": "allowed", "type": "FQDN", "destination": "allowed.test", "ports": [80, 443], "description": "allowed"}),
    );
    assert_eq!(rule["state"], "PENDING_CREATION", "{rule}");
    let rid = rule["id"].as_str().unwrap().to_string();
    let mut seen = vec![rule["state"].as_str().unwrap().to_string()];
    wait_until("the rule to read ACTIVE", 30, || {
        let st = rule_state(&s, &key, &cid, &rid);
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        st == "ACTIVE"
    });
    assert_eq!(seen, ["PENDING_CREATION", "ACTIVE"], "states observed");
    let cafile = net.cert.to_str().unwrap().to_string();
    for g in [&g1, &g2] {
        let table = vec![
            case("allowed over HTTP", curl("http://allowed.test/both"))
                .allowed(200)
                .serves(["/both"]),
            case(
                "allowed over TLS",
                curl_with(&["--cacert", &cafile], "https://allowed.test/both"),
            )
            .allowed(200)
            .serves(["/both"]),
        ];
        case::assert_passed("rule ACTIVE", &case::run(&net, &g.proxy, table));
    }

    // One gateway stops: a new rule stays PENDING_CREATION (the stopped gateway still counts
    // as live), while the running one already enforces it; past the deadline INCONSISTENT.
    g2.terminate();
    let rule2 = add_rule(
        &s,
        &key,
        &cid,
        json!({"name": "denied-now-allowed", "type": "FQDN", "destination": "denied.test", "ports": [80], "description": "second"}),
    );
    let added = Instant::now();
    assert_eq!(rule2["state"], "PENDING_CREATION", "{rule2}");
    let rid2 = rule2["id"].as_str().unwrap().to_string();
    wait_until("the running gateway to enforce the new rule", 10, || {
        curl_via(&g1.proxy, &[], "http://denied.test/new").code == 200
    });
    let pending_seen_at = added.elapsed();
    let st = rule_state(&s, &key, &cid, &rid2);
    assert!(
        pending_seen_at < Duration::from_secs(deadline_secs),
        "the gateway took {pending_seen_at:?} to apply; cannot observe the pending state"
    );
    assert_eq!(
        st, "PENDING_CREATION",
        "applied by one of two live gateways"
    );
    let mut states = vec![st];
    wait_until("the rule to read INCONSISTENT", deadline_secs + 20, || {
        let st = rule_state(&s, &key, &cid, &rid2);
        if states.last() != Some(&st) {
            states.push(st.clone());
        }
        st == "INCONSISTENT"
    });
    let inconsistent_after = added.elapsed();
    assert_eq!(
        states,
        ["PENDING_CREATION", "INCONSISTENT"],
        "states observed"
    );
    // The deadline runs from the server's clock at the change, a little before `added`.
    assert!(
        inconsistent_after + Duration::from_millis(500) >= Duration::from_secs(deadline_secs),
        "INCONSISTENT after {inconsistent_after:?}, before the {deadline_secs} s deadline"
    );
    // The first rule is untouched.
    assert_eq!(rule_state(&s, &key, &cid, &rid), "ACTIVE");

    // The control plane dies: the running gateway keeps enforcing its last snapshot.
    s.kill9();
    let check = |g: &Gateway, denied_allowed: bool, what: &str| {
        let failures = case::run(&net, &g.proxy, enforcement(&cafile, denied_allowed));
        case::assert_passed(what, &failures);
    };
    check(&g1, true, "control plane down");
    std::thread::sleep(Duration::from_secs(3)); // More than one long-poll round.
    check(&g1, true, "control plane down, a while later");
    // The stopped gateway, restarted without a control plane, enforces the snapshot it had
    // applied: without the second rule.
    let dead_cp = format!("http://{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    });
    let g2 = start(&t2, "us-west-2", &state2, &dead_cp);
    check(&g2, false, "restarted from its last-known-good");
    let denied_events = net
        .events_at(net.a.denied)
        .iter()
        .filter(|e| e["kind"] == "http")
        .count();
    assert_eq!(
        denied_events, 3,
        "denied.test served exactly the allowed requests"
    );
    g1.terminate();
    g2.terminate();
}
