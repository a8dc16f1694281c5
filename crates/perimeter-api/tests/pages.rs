//! Page tokens: lists are filtered before they are paged, and a `pagination.page` token only
//! works for the list, caller and query it was issued for, byte for byte. On both backends.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

/// The field a 400 names.
fn field_of(v: &Value) -> &str {
    v["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .and_then(|d| d["field_violations"][0]["field"].as_str())
        .unwrap_or_default()
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What a token may reveal, read as bytes whatever its encoding.
fn token_text(token: &str) -> String {
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .unwrap_or_else(|_| token.as_bytes().to_vec());
    format!("{token} {}", String::from_utf8_lossy(&raw))
}

/// A key scoped to three of six clusters follows `next_page` one cluster at a time: it sees its
/// three clusters on three full pages, and no token it is given names another cluster, its
/// creation time, or betrays how many clusters there are.
async fn cluster_scoped_key_pages_only_its_clusters(s: &TestServer) {
    let mut mine = Vec::new();
    let mut others = Vec::new();
    for i in 0..6 {
        let id = s
            .create_cluster(&format!("tenant-{i}"), json!({"us-east-1": 1}))
            .await;
        if i % 2 == 0 {
            mine.push(id);
        } else {
            others.push(id);
        }
    }
    let roles: Vec<Value> = mine
        .iter()
        .map(|c| json!({"name": "CLUSTER_ADMIN", "resource": {"type": "CLUSTER", "id": c}}))
        .collect();
    let (_, key) = s.key_with("scoped", json!(roles)).await;
    let mut secrets = Vec::new();
    for o in &others {
        let c = s.store.get_cluster(o).await.unwrap();
        let shown = s
            .ok(Method::GET, &format!("/api/v1/clusters/{o}"), None)
            .await;
        secrets.push(o.clone());
        secrets.push(c.created_at.clone());
        secrets.push(shown["created_at"].as_str().unwrap().to_string());
    }
    let ids = |v: &Value| -> Vec<String> {
        v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let check_token = |t: &str| {
        let text = token_text(t);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a page token of the scoped key reveals {secret}: {text}"
            );
        }
    };
    for order in ["ASC", "DESC"] {
        let mut expected = mine.clone();
        if order == "DESC" {
            expected.reverse();
        }
        let query = format!("pagination.limit=1&pagination.sort_order={order}");
        let mut seen = Vec::new();
        let mut pages = Vec::new();
        let mut token = String::new();
        for _ in 0..10 {
            let path = if token.is_empty() {
                format!("/api/v1/clusters?{query}")
            } else {
                format!(
                    "/api/v1/clusters?{query}&pagination.page={}",
                    encode(&token)
                )
            };
            let (st, v) = s.call(Method::GET, &path, Some(&key), None).await;
            assert_eq!(st, 200, "{path}: {v}");
            let page = ids(&v);
            assert_eq!(
                page.len(),
                1,
                "every page of a filtered list is full ({order}): {v}"
            );
            seen.extend(page);
            let next = v["pagination"]["next_page"].as_str().unwrap().to_string();
            let previous = v["pagination"]["previous_page"]
                .as_str()
                .unwrap()
                .to_string();
            check_token(&next);
            check_token(&previous);
            pages.push(v);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, expected, "the scoped key's clusters in {order} order");
        assert_eq!(
            pages.len(),
            mine.len(),
            "as many pages as the key's clusters"
        );
        // And back, from the last page.
        let back = pages.last().unwrap()["pagination"]["previous_page"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, v) = s
            .call(
                Method::GET,
                &format!("/api/v1/clusters?{query}&pagination.page={}", encode(&back)),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(ids(&v), [expected[1].clone()]);
    }
    // Two per page: two pages, the second one holding the last of the key's clusters.
    let (st, v) = s
        .call(
            Method::GET,
            "/api/v1/clusters?pagination.limit=2",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(&v), mine[..2]);
    let next = v["pagination"]["next_page"].as_str().unwrap();
    let (st, v) = s
        .call(
            Method::GET,
            &format!(
                "/api/v1/clusters?pagination.limit=2&pagination.page={}",
                encode(next)
            ),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(&v), mine[2..]);
    assert_eq!(v["pagination"]["next_page"], "");
    // All of them on one page: no pagination at all, though the organisation has more.
    let (st, v) = s
        .call(Method::GET, "/api/v1/clusters", Some(&key), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(&v), mine);
    assert_eq!(v["pagination"], Value::Null);
}

/// One list as a caller asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ask {
    caller: usize,
    /// Path of the list, without the query.
    list: String,
    /// The list is a cluster's (its role check comes before the query is read).
    cluster_list: bool,
    /// The query without `pagination.page`.
    query: String,
}

impl Ask {
    fn path(&self, token: &str) -> String {
        format!(
            "{}?{}&pagination.page={}",
            self.list,
            self.query,
            encode(token)
        )
    }
}

struct World {
    callers: Vec<String>,
    asks: Vec<Ask>,
    /// Whether the caller of `asks[i]` may read that list.
    readable: Vec<bool>,
    /// Tokens issued, with the index of the ask they answered.
    tokens: Vec<(String, usize)>,
}

/// Two clusters with rules and allowlist entries, four more clusters (one deleted), service
/// accounts, API keys and endpoint services; three callers (the admin, a key scoped to one
/// cluster, a key scoped to both); every list each caller may read, in several queries, and
/// the tokens of their first two pages.
async fn world(s: &TestServer) -> World {
    let c1 = s.create_cluster("pages-1", json!({"us-east-1": 1})).await;
    let c2 = s.create_cluster("pages-2", json!({"us-east-1": 1})).await;
    for i in 0..4 {
        let id = s
            .create_cluster(&format!("pages-other-{i}"), json!({"us-east-1": 1}))
            .await;
        if i == 0 {
            s.ok(Method::DELETE, &format!("/api/v1/clusters/{id}"), None)
                .await;
        }
    }
    for c in [&c1, &c2] {
        for i in 0..3 {
            s.ok(
                Method::POST,
                &format!("/api/v1/clusters/{c}/networking/egress-rules"),
                Some(json!({"name": format!("rule-{i}"), "type": "FQDN", "destination": format!("h{i}.example.com"), "ports": [443], "description": "pages"})),
            )
            .await;
            s.ok(
                Method::POST,
                &format!("/api/v1/clusters/{c}/networking/allowlist"),
                Some(json!({"cidr_ip": format!("10.0.{i}.0"), "cidr_mask": 24, "name": format!("net-{i}"), "sql": true, "ui": false})),
            )
            .await;
        }
    }
    for i in 0..3 {
        s.ok(
            Method::POST,
            "/api/v1/endpoint-services",
            Some(json!({"service_name": format!("com.amazonaws.vpce.us-east-1.vpce-svc-pages{i}"), "region": "us-east-1",
                "backends": [format!("198.51.100.{}:9092", 10 + i)], "acceptance_required": true, "auto_accept_accounts": []})),
        )
        .await;
    }
    let admin_of =
        |c: &str| json!({"name": "CLUSTER_ADMIN", "resource": {"type": "CLUSTER", "id": c}});
    let (one_sa, one) = s.key_with("pages-one", json!([admin_of(&c1)])).await;
    let (_, both) = s
        .key_with("pages-both", json!([admin_of(&c1), admin_of(&c2)]))
        .await;
    s.ok(
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({"name": "pages-one-second", "service_account_id": one_sa})),
    )
    .await;
    let callers = vec![s.admin.clone(), one, both];

    let mut lists: Vec<(String, bool, Vec<&str>)> = vec![
        (
            "/api/v1/clusters".into(),
            false,
            vec!["", "show_inactive=true&"],
        ),
        ("/api/v1/service-accounts".into(), false, vec![""]),
        ("/api/v1/endpoint-services".into(), false, vec![""]),
    ];
    let by_account = format!("service_account_id={one_sa}&");
    lists.push(("/api/v1/api-keys".into(), false, vec!["", &by_account]));
    for c in [&c1, &c2] {
        for l in ["egress-rules", "allowlist"] {
            lists.push((
                format!("/api/v1/clusters/{c}/networking/{l}"),
                true,
                vec![""],
            ));
        }
    }
    let mut asks = Vec::new();
    for caller in 0..callers.len() {
        for (list, cluster_list, filters) in &lists {
            for filter in filters {
                for limit in [1, 2] {
                    for order in ["ASC", "DESC"] {
                        asks.push(Ask {
                            caller,
                            list: list.clone(),
                            cluster_list: *cluster_list,
                            query: format!(
                                "{filter}pagination.limit={limit}&pagination.sort_order={order}"
                            ),
                        });
                    }
                }
            }
        }
    }
    let mut readable = Vec::new();
    let mut tokens = Vec::new();
    for (i, ask) in asks.iter().enumerate() {
        let key = &callers[ask.caller];
        let (st, v) = s
            .call(
                Method::GET,
                &format!("{}?{}", ask.list, ask.query),
                Some(key),
                None,
            )
            .await;
        assert!(st == 200 || st == 403, "{ask:?}: {st} {v}");
        readable.push(st == 200);
        let Some(next) = v["pagination"]["next_page"]
            .as_str()
            .filter(|t| !t.is_empty())
        else {
            continue;
        };
        tokens.push((next.to_string(), i));
        let (st, v) = s.call(Method::GET, &ask.path(next), Some(key), None).await;
        assert_eq!(st, 200, "{ask:?} following its own next_page: {v}");
        for t in ["next_page", "previous_page"] {
            if let Some(t) = v["pagination"][t].as_str().filter(|t| !t.is_empty()) {
                tokens.push((t.to_string(), i));
            }
        }
    }
    for caller in 0..callers.len() {
        let issued = tokens
            .iter()
            .filter(|(_, i)| asks[*i].caller == caller)
            .count();
        assert!(
            issued >= 10,
            "caller {caller} was given {issued} tokens, too few to play with"
        );
    }
    World {
        callers,
        asks,
        readable,
        tokens,
    }
}

/// Run a property with a runner of `cases` cases, each case's requests on this runtime.
fn run_property<T: std::fmt::Debug>(
    cases: u32,
    strategy: impl Strategy<Value = T>,
    test: impl Fn(T) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = tokio::task::block_in_place(|| runner.run(&strategy, test));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A page token issued for one list, caller and query and presented with any other is a 400
/// naming `pagination.page` (or the 403 of a cluster the caller may not read): it never
/// answers with data. And a token changed in any byte or character, cut or extended, is a 400
/// naming `pagination.page`.
async fn page_tokens_are_bound_and_tamper_evident(s: &TestServer) {
    let w = world(s).await;
    let rt = tokio::runtime::Handle::current();

    let tokens = w.tokens.len();
    // The ask a token is presented with: the same list and query by another caller, the same
    // caller and list with another query, the same caller on another list, or any ask.
    let other = |issued: &Ask, kind: u8, pick: prop::sample::Index| -> usize {
        let candidates: Vec<usize> = (0..w.asks.len())
            .filter(|&j| {
                let a = &w.asks[j];
                match kind {
                    0 => {
                        a.list == issued.list
                            && a.query == issued.query
                            && a.caller != issued.caller
                    }
                    1 => {
                        a.list == issued.list
                            && a.caller == issued.caller
                            && a.query != issued.query
                    }
                    2 => a.caller == issued.caller && a.list != issued.list,
                    _ => true,
                }
            })
            .collect();
        if candidates.is_empty() {
            pick.index(w.asks.len())
        } else {
            candidates[pick.index(candidates.len())]
        }
    };
    run_property(
        128,
        (0..tokens, 0u8..4, any::<prop::sample::Index>()),
        |(t, kind, pick)| -> Result<(), TestCaseError> {
            let (token, issued_for) = &w.tokens[t];
            let a = other(&w.asks[*issued_for], kind, pick);
            let ask = &w.asks[a];
            let (st, v) = rt.block_on(s.call(
                Method::GET,
                &ask.path(token),
                Some(&w.callers[ask.caller]),
                None,
            ));
            if a == *issued_for {
                prop_assert_eq!(st, 200, "its own list: {}", v);
                return Ok(());
            }
            let issued = &w.asks[*issued_for];
            if ask.cluster_list && !w.readable[a] {
                prop_assert_eq!(st, 403, "{:?} issued for {:?}: {}", ask, issued, v);
            } else {
                prop_assert_eq!(st, 400, "{:?} issued for {:?}: {}", ask, issued, v);
                prop_assert_eq!(field_of(&v), "pagination.page", "{}", v);
            }
            Ok(())
        },
    );

    #[derive(Debug, Clone)]
    enum Tamper {
        /// XOR a byte of the decoded token.
        Byte(prop::sample::Index, u8),
        /// Replace a character by another of the token alphabet.
        Char(prop::sample::Index, char),
        /// Keep a non-empty prefix.
        Cut(prop::sample::Index),
        /// Append characters of the token alphabet.
        Extend(String),
    }
    let tamper = prop_oneof![
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Tamper::Byte(i, x)),
        (
            any::<prop::sample::Index>(),
            proptest::char::ranges(
                vec!['A'..='Z', 'a'..='z', '0'..='9', '-'..='-', '_'..='_'].into()
            )
        )
            .prop_map(|(i, c)| Tamper::Char(i, c)),
        any::<prop::sample::Index>().prop_map(Tamper::Cut),
        "[A-Za-z0-9_-]{1,8}".prop_map(Tamper::Extend),
    ];
    run_property(
        128,
        (0..tokens, tamper),
        |(t, how)| -> Result<(), TestCaseError> {
            let (token, issued_for) = &w.tokens[t];
            let changed = match &how {
                Tamper::Byte(i, x) => {
                    let mut raw = URL_SAFE_NO_PAD
                        .decode(token)
                        .expect("issued tokens are base64url");
                    let at = i.index(raw.len());
                    raw[at] ^= x;
                    URL_SAFE_NO_PAD.encode(raw)
                }
                Tamper::Char(i, c) => {
                    let mut chars: Vec<char> = token.chars().collect();
                    let at = i.index(chars.len());
                    if chars[at] == *c {
                        return Ok(());
                    }
                    chars[at] = *c;
                    chars.into_iter().collect()
                }
                Tamper::Cut(i) => token[..1 + i.index(token.len() - 1)].to_string(),
                Tamper::Extend(tail) => format!("{token}{tail}"),
            };
            let ask = &w.asks[*issued_for];
            let (st, v) = rt.block_on(s.call(
                Method::GET,
                &ask.path(&changed),
                Some(&w.callers[ask.caller]),
                None,
            ));
            prop_assert_eq!(st, 400, "{:?} of a token of {:?}: {}", how, ask, v);
            prop_assert_eq!(field_of(&v), "pagination.page", "{}", v);
            Ok(())
        },
    );
}

/// A control plane serving `store` on a loopback port until `stop` turns true.
async fn replica(
    store: &perimeter_store::Store,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut stop = stop.clone();
    tokio::spawn(perimeter_api::serve(
        listener,
        perimeter_api::AppState::new(store.clone()),
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ));
    format!("http://{addr}")
}

/// Replicas on one PostgreSQL database make their key together and take each other's tokens;
/// a control plane on another database refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_page_tokens() {
    let (url, db) = common::fresh_pg_database().await;
    let (other_url, other_db) = common::fresh_pg_database().await;
    let a = perimeter_store::Store::open_postgres(&url).await.unwrap();
    let b = perimeter_store::Store::open_postgres(&url).await.unwrap();
    let elsewhere = perimeter_store::Store::open_postgres(&other_url)
        .await
        .unwrap();
    let (id, secret) = perimeter_api::generate_key();
    let admin = [common::org("ORG_ADMIN")];
    for store in [&a, &elsewhere] {
        assert!(
            store
                .bootstrap_admin(&admin, &id, &perimeter_api::hash_secret(&secret))
                .await
                .unwrap()
        );
    }
    let audit = perimeter_store::AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    for i in 0..3 {
        for store in [&a, &elsewhere] {
            store
                .create_cluster(
                    &perimeter_store::NewCluster::example(&format!("replica-page-{i}")),
                    &audit,
                )
                .await
                .unwrap();
        }
    }
    // Both replicas make their key at the same moment: one of them wins, both use it.
    let (ka, kb) = tokio::join!(a.page_tokens(), b.page_tokens());
    let binding = perimeter_store::PageBinding::new("probe", "probe");
    let probe = ka
        .unwrap()
        .seal(&binding, &perimeter_store::Cursor::After("k".into()));
    assert!(kb.unwrap().open(&binding, &probe).is_ok());

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (ua, ub, uo) = (
        replica(&a, &stop).await,
        replica(&b, &stop).await,
        replica(&elsewhere, &stop).await,
    );
    let http = reqwest::Client::new();
    let get = |base: &str, token: &str| {
        let req = http
            .get(format!(
                "{base}/api/v1/clusters?pagination.limit=1&pagination.page={}",
                encode(token)
            ))
            .bearer_auth(&secret);
        async move {
            let resp = tokio::time::timeout(std::time::Duration::from_secs(20), req.send())
                .await
                .expect("list request hung")
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (st, first) = get(&ua, "").await;
    assert_eq!(st, 200, "{first}");
    let next = first["pagination"]["next_page"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, second) = get(&ub, &next).await;
    assert_eq!(st, 200, "the other replica takes the token: {second}");
    assert_eq!(second["clusters"].as_array().unwrap().len(), 1);
    assert_ne!(second["clusters"][0]["id"], first["clusters"][0]["id"]);
    let (st, v) = get(&uo, &next).await;
    assert_eq!(st, 400, "another database's token: {v}");
    assert_eq!(field_of(&v), "pagination.page", "{v}");

    let _ = stop_tx.send(true);
    for store in [&a, &b, &elsewhere] {
        store.close().await;
    }
    common::drop_pg_database(&db).await;
    common::drop_pg_database(&other_db).await;
}

on_both_backends!(
    cluster_scoped_key_pages_only_its_clusters,
    page_tokens_are_bound_and_tamper_evident,
);
