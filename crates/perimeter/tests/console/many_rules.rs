//! A thousand rules: any of them on screen within a second of opening the rules page, and
//! the lists that page through them.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_rules_any_on_screen_within_a_second() {
    let Scene {
        _lock,
        dir: _dir,
        s,
        key,
        cid,
    } = scene_with(
        "console-many",
        // 1,000 creates, each a commit: without an fsync each, a loaded CI disk keeps up.
        &["--durability", "normal"],
    );
    let b = Browser::start().await;
    sign_in(&b, &s.url, &key).await;

    // 1,000 rules through the API, eight requests at a time, from the signed-in page.
    let made = b
        .c
        .execute_async(
            "const [cid, done] = [arguments[0], arguments[arguments.length - 1]];
             const key = sessionStorage.getItem('perimeter.console.api-key');
             let next = 0, failed = [];
             async function worker() {
               while (next < 1000) {
                 const i = next++;
                 const n = String(i).padStart(4, '0');
                 const r = await fetch(`/api/v1/clusters/${cid}/networking/egress-rules`, {method: 'POST',
                   headers: {Authorization: 'Bearer ' + key, 'Content-Type': 'application/json'},
                   body: JSON.stringify({name: `rule-${n}`, type: 'FQDN', destination: `svc-${n}.example.com`, ports: [443],
                     description: `service ${n}`})});
                 if (!r.ok) failed.push(await r.text());
               }
             }
             Promise.all(Array.from({length: 8}, worker)).then(() => done(failed));",
            vec![json!(cid)],
        )
        .await
        .unwrap();
    assert_eq!(made, json!([]));
    assert_eq!(rule_count_all(&s, &key, &cid), 1000);
    // Measured once the gateway has applied them all, not while it compiles.
    let deadline = Instant::now() + Duration::from_secs(120);
    while rule_states(&s, &key, &cid).iter().any(|st| st != "ACTIVE") {
        assert!(
            Instant::now() < deadline,
            "1,000 rules not ACTIVE within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Open the rules page afresh and find a rule far down the list: time from navigation
    // start, measured by the browser.
    let url = format!("{}/console#/clusters/{cid}/rules", s.url);
    for (i, want) in ["rule-0999", "rule-0500"].iter().enumerate() {
        // A full load, not a fragment change: the clock starts at this navigation.
        b.goto("about:blank").await;
        b.goto(&url).await;
        let t =
            b.c.execute_async(
                "const [want, done] = [arguments[0], arguments[arguments.length - 1]];
                 (function poll() {
                   const count = document.getElementById('rule-count');
                   if (!count || !/1000 rules/.test(count.textContent)) return setTimeout(poll, 2);
                   const listed = performance.now();
                   const search = document.getElementById('rule-search');
                   search.value = want;
                   search.dispatchEvent(new Event('input'));
                   const row = document.querySelector(`tr.rule[data-rule='${want}']`);
                   done({listed, shown: row ? performance.now() : null});
                 })();",
                vec![json!(want)],
            )
            .await
            .unwrap();
        let shown = t["shown"]
            .as_f64()
            .unwrap_or_else(|| panic!("{want} not found: {t}"));
        eprintln!(
            "console: open {}: 1,000 rules listed after {:.0} ms, {want} on screen after {shown:.0} ms",
            i + 1,
            t["listed"].as_f64().unwrap()
        );
        assert!(
            shown < 1000.0,
            "{want} on screen after {shown:.0} ms (bound 1,000 ms)"
        );
        b.find(&format!("tr.rule[data-rule='{want}']"), 1).await;
    }
    // The list pages through 100 at a time.
    b.fill("#rule-search", "").await;
    b.wait_exact("#rule-count", "1000 rules · showing 1–100", 5)
        .await;
    b.click("#rule-next").await;
    b.find("tr.rule[data-rule='rule-0100']", 5).await;
    b.shot("rules-thousand", &["1000 rules", "rule-0100"]).await;

    // The audit log, paged: 1,000 creates fill many pages of 50.
    b.hash("#/audit").await;
    b.wait_exact("#audit-page", "Page 1", 10).await;
    let first = b.text("#audit tbody").await;
    b.click("#audit-older").await;
    b.wait_exact("#audit-page", "Page 2", 10).await;
    assert_ne!(b.text("#audit tbody").await, first);
    // A page holds whole seconds of entries (the API's paging), so its size is the API's.
    let shown = b
        .js(
            "return document.querySelectorAll('#audit tr.audit-entry').length;",
            vec![],
        )
        .await;
    assert!(shown.as_u64().unwrap() > 0, "{shown}");
    b.click("#audit-newer").await;
    b.wait_exact("#audit-page", "Page 1", 10).await;
    assert!(!b.find("#audit-newer", 5).await.is_enabled().await.unwrap());
    b.close().await;
}

/// Every rule, page by page (the API answers at most 500 at once).
fn rule_count_all(s: &Server, key: &str, cid: &str) -> usize {
    rule_states(s, key, cid).len()
}

/// The state of every rule.
fn rule_states(s: &Server, key: &str, cid: &str) -> Vec<String> {
    let mut states = Vec::new();
    let mut page = String::new();
    loop {
        let q = if page.is_empty() {
            "pagination.limit=500".to_string()
        } else {
            format!("pagination.limit=500&pagination.page={page}")
        };
        let r = ok(
            s,
            key,
            "GET",
            &format!("/api/v1/clusters/{cid}/networking/egress-rules?{q}"),
            None,
        );
        states.extend(
            r["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["state"].as_str().unwrap().to_string()),
        );
        match r["pagination"]["next_page"].as_str() {
            Some(p) if !p.is_empty() => page = p.to_string(),
            _ => return states,
        }
    }
}
