//! The walkthrough: every page of the console in one session, as an operator uses it, with
//! curl sending traffic through the cluster's egress proxy.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_walkthrough_in_a_real_browser() {
    let Scene {
        _lock,
        dir: _dir,
        s,
        key,
        cid,
    } = scene("console-demo");
    set_traffic_policy(&s, &key, &cid, "DEFAULT_DENY");
    let cluster = ok(&s, &key, "GET", &format!("/api/v1/clusters/{cid}"), None);
    let proxy = cluster["regions"][0]["egress_proxy_address"]
        .as_str()
        .unwrap()
        .to_string();
    let dns = cluster["regions"][0]["dns_address"]
        .as_str()
        .unwrap()
        .to_string();
    let upstream = http_upstream();

    // The page and its assets come from the binary, under a policy with no inline script.
    let (st, head) = curl(&[
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{}/console", s.url),
    ]);
    assert_eq!(st, 200, "{head}");
    let csp = perimeter_testkit::header_value(&head, "content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(curl(&[&format!("{}/console/nope.js", s.url)]).0, 404);

    let b = Browser::start().await;
    b.goto(&format!("{}/console", s.url)).await;
    b.find("#sign-in", 10).await;
    b.shot("sign-in", &["Sign in", "API key"]).await;

    // A wrong key: the API's 401, in its words.
    b.fill("#api-key", "pk_nope_0000").await;
    b.click("#sign-in-button").await;
    b.wait_text("#sign-in-error", "401", 10).await;

    // The right key, held in this tab only.
    b.fill("#api-key", &key).await;
    b.click("#sign-in-button").await;
    b.wait_text("#who-name", "admin", 10).await;
    let kept = b
        .js(
            "return {local: localStorage.length, cookie: document.cookie, url: location.href, \
             session: Object.keys(sessionStorage).length};",
            vec![],
        )
        .await;
    assert_eq!(kept["local"], 0, "{kept}");
    assert_eq!(kept["cookie"], "", "{kept}");
    assert!(!kept["url"].as_str().unwrap().contains(&key), "{kept}");
    assert_eq!(kept["session"], 1, "{kept}");

    // Clusters: policy, gateways (last seen, applied version), rule counts.
    b.find(&format!("section.cluster[data-cluster='{cid}']"), 10)
        .await;
    b.wait_text("#clusters", "embedded-us-east-1", 10).await;
    b.shot(
        "clusters",
        &["console-demo", "DEFAULT_DENY", "Applied version"],
    )
    .await;

    // Rules: a bad CIDR is refused at its field in the API's words, before and at saving.
    b.click(&format!("section.cluster[data-cluster='{cid}'] h2 a"))
        .await;
    b.click("#rule-add").await;
    b.fill("#f-name", "payments").await;
    b.select("#f-type", "CIDR").await;
    b.fill("#f-ports", "443").await;
    b.fill("#f-destination", "198.51.100.0/33").await;
    let said = b.wait_text("#err-destination", "198.51.100.0/33", 10).await;
    // The save says it too (the preview's words are cleared first).
    b.js(
        "document.getElementById('err-destination').replaceChildren();",
        vec![],
    )
    .await;
    b.click("#rule-save").await;
    b.wait_text("#err-destination", &said, 10).await;
    let (st, body) = api(
        &s,
        &key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
        Some(
            json!({"name": "payments", "type": "CIDR", "destination": "198.51.100.0/33", "ports": [443]}),
        ),
    );
    assert_eq!(st, 400);
    let api_words = serde_json::from_str::<Value>(&body).unwrap()["details"][0]["field_violations"]
        [0]["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        said.trim(),
        api_words,
        "the console shows the API's own words"
    );
    assert_eq!(rule_count(&s, &key, &cid), 0);
    b.shot(
        "rule-field-error",
        &["New egress rule", "has prefix length 33"],
    )
    .await;

    // Fixed, saved, and watched until ACTIVE without reloading.
    b.fill("#f-destination", "198.51.100.0/24").await;
    wait_field_clear(&b, "#err-destination").await;
    b.click("#rule-save").await;
    b.find("tr.rule[data-rule='payments'][data-state='ACTIVE']", 20)
        .await;

    // Warnings before saving: apex-only name, every port.
    b.click("#rule-add").await;
    b.fill("#f-name", "docs").await;
    b.fill("#f-destination", "example.com").await;
    b.wait_text("#rule-warnings", "matches only example.com itself", 10)
        .await;
    b.wait_text("#rule-warnings", "no ports listed", 10).await;
    b.shot("rule-warnings", &["matches only example.com itself"])
        .await;
    b.click("#rule-cancel").await;
    assert_eq!(
        rule_count(&s, &key, &cid),
        1,
        "a warning preview stores nothing"
    );

    // A description that is markup stays text; no script runs.
    b.js(
        "window.__alerted = false; window.alert = () => { window.__alerted = true; };",
        vec![],
    )
    .await;
    let markup = "<img src=x onerror=alert(1)>";
    b.click("#rule-add").await;
    b.fill("#f-name", "markup").await;
    b.fill("#f-destination", "xss.example.com").await;
    b.fill("#f-ports", "443").await;
    b.fill("#f-description", markup).await;
    b.click("#rule-save").await;
    let row = "tr.rule[data-rule='markup']";
    b.find(row, 10).await;
    assert_eq!(b.text(&format!("{row} td.description")).await, markup);
    let dom = b
        .js("return {imgs: document.querySelectorAll('main img').length, alerted: window.__alerted};", vec![])
        .await;
    assert_eq!(dom, json!({"imgs": 0, "alerted": false}));

    // A request through the cluster's egress proxy is denied, and the denial shows in live
    // decisions within a bound.
    let target = format!("http://127.0.0.1:{upstream}/");
    assert_eq!(curl(&["-x", &format!("http://{proxy}"), &target]).0, 403);
    b.hash(&format!("#/clusters/{cid}/decisions")).await;
    let started = Instant::now();
    let denial = "tr.decision[data-destination='127.0.0.1'][data-verdict='DENIED']";
    b.find(denial, 15).await;
    eprintln!(
        "console: the denial showed in live decisions after {:?}",
        started.elapsed()
    );
    b.shot("decisions", &["Live decisions", "127.0.0.1", "DENIED"])
        .await;

    // One click makes it a rule; the rule goes ACTIVE and the same request passes.
    b.click(&format!("{denial} a.allow-from-decision")).await;
    b.find("#rule-form", 10).await;
    let prefilled = b
        .js(
            "return ['f-name','f-type','f-destination','f-ports'].map(i => document.getElementById(i).value);",
            vec![],
        )
        .await;
    let rule_name = format!("allow-127.0.0.1-{upstream}");
    assert_eq!(
        prefilled,
        json!([rule_name, "CIDR", "127.0.0.1/32", upstream.to_string()])
    );
    b.click("#rule-save").await;
    b.find(
        &format!("tr.rule[data-rule='{rule_name}'][data-state='ACTIVE']"),
        20,
    )
    .await;
    let (st, body) = curl(&["-x", &format!("http://{proxy}"), &target]);
    assert_eq!((st, body.as_str()), (200, "upstream-ok /\n"));
    b.fill("#rule-search", "").await;
    b.shot("rules", &["Egress rules", "payments", &rule_name, "ACTIVE"])
        .await;

    // Edit: the name is fixed, the ports change, and the rule is ACTIVE again once applied.
    b.click("tr.rule[data-rule='payments'] button.edit").await;
    assert!(!b.find("#f-name", 5).await.is_enabled().await.unwrap());
    b.fill("#f-ports", "443, 8443").await;
    b.click("#rule-save").await;
    b.find("tr.rule[data-rule='payments'][data-state='ACTIVE']", 20)
        .await;
    b.wait_text("tr.rule[data-rule='payments']", "443, 8443", 10)
        .await;
    // Delete, confirmed in the browser's own dialog: gone once every gateway dropped it.
    b.fill("#rule-search", "").await;
    b.click("tr.rule[data-rule='markup'] button.delete").await;
    assert_eq!(b.c.get_alert_text().await.unwrap(), "Delete rule markup?");
    b.c.accept_alert().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.exists("tr.rule[data-rule='markup']").await {
        assert!(Instant::now() < deadline, "the deleted rule still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rule_count(&s, &key, &cid), 2);

    // Report-only: UPDATING until every gateway applied it, then a would-deny shows.
    b.hash(&format!("#/clusters/{cid}/policy")).await;
    b.click("#policy-REPORT_ONLY").await;
    b.click("#policy-apply").await;
    b.wait_text("#policy-current", "REPORT_ONLY", 20).await;
    b.shot("policy", &["Traffic policy", "REPORT_ONLY", "Report only"])
        .await;
    let (host, port) = dns.rsplit_once(':').unwrap();
    let out = std::process::Command::new("dig")
        .args([
            &format!("@{host}"),
            "-p",
            port,
            "+short",
            "+time=3",
            "+tries=1",
            "report.example.test",
            "A",
        ])
        .output()
        .expect("dig (dnsutils)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "203.0.113.9");
    b.hash(&format!("#/clusters/{cid}/decisions")).await;
    b.select("#decision-filter", "WOULD_DENY").await;
    let would = "tr.decision[data-destination='report.example.test'][data-verdict='WOULD_DENY']";
    b.find(would, 15).await;
    assert!(b.exists(&format!("{would} a.allow-from-decision")).await);
    b.shot(
        "decisions-would-deny",
        &["report.example.test", "WOULD_DENY"],
    )
    .await;

    // What-if: the verdict and the rule, as egress-check answers; a bad port at its field.
    b.hash(&format!("#/clusters/{cid}/what-if")).await;
    b.fill("#f-destination", "127.0.0.1").await;
    b.fill("#f-port", &upstream.to_string()).await;
    b.click("#what-if-check").await;
    b.wait_text("#what-if-rule", &rule_name, 10).await;
    b.shot("what-if", &["What-if", "ALLOWED", &rule_name]).await;

    // Private endpoints: create one to a service that needs acceptance, accept it on the
    // endpoint services page, watch it go AVAILABLE, set a domain name.
    let service = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0";
    ok(
        &s,
        &key,
        "POST",
        "/api/v1/endpoint-services",
        Some(json!({"service_name": service, "region": "us-east-1",
            "backends": [format!("127.0.0.1:{upstream}")], "allow_special_addresses": true,
            "acceptance_required": true, "auto_accept_accounts": []})),
    );
    b.hash(&format!("#/clusters/{cid}/endpoints")).await;
    b.fill("#f-target_service_identifier", service).await;
    b.click("#endpoint-create").await;
    b.find("tr.endpoint[data-state='PENDING_ACCEPTANCE']", 20)
        .await;
    b.hash("#/endpoint-services").await;
    b.find(
        "tr.connection[data-status='PENDING_ACCEPTANCE'] button.accept",
        10,
    )
    .await;
    b.shot(
        "endpoint-services",
        &["Endpoint services", service, "PENDING_ACCEPTANCE", "Accept"],
    )
    .await;
    b.click("tr.connection[data-status='PENDING_ACCEPTANCE'] button.accept")
        .await;
    b.find("tr.connection[data-status='AVAILABLE']", 10).await;
    b.hash(&format!("#/clusters/{cid}/endpoints")).await;
    let ep = "tr.endpoint[data-state='AVAILABLE']";
    b.find(&format!("{ep} textarea"), 30).await;
    b.fill(&format!("{ep} textarea"), "db.internal.example")
        .await;
    b.click(&format!("{ep} form.domains button")).await;
    b.find(
        "tr.endpoint[data-state='AVAILABLE'][data-domains-state='AVAILABLE']",
        30,
    )
    .await;
    b.wait_text(ep, "db.internal.example", 10).await;
    b.shot(
        "endpoints",
        &[
            "Private endpoints",
            "AVAILABLE",
            ".endpoints.perimeter.internal",
            "db.internal.example",
        ],
    )
    .await;

    // Ingress: the cluster's own private endpoint service, and a customer's endpoint admitted
    // by the gateways' private ingress listeners.
    b.click("#ingress-create").await;
    b.find("tr.ingress-service[data-status='AVAILABLE']", 30)
        .await;
    b.fill("#f-endpoint_id", "vpce-0123456789abcdef0").await;
    b.click("#ingress-connect").await;
    b.find("tr.ingress-connection[data-status='STATUS_AVAILABLE']", 30)
        .await;
    b.js(
        "document.getElementById('ingress-private').scrollIntoView();",
        vec![],
    )
    .await;
    b.shot(
        "ingress-private",
        &[
            "Ingress: private connections",
            "vpce-0123456789abcdef0",
            "STATUS_AVAILABLE",
        ],
    )
    .await;

    // The allowlist: a bad CIDR at its field, then an entry and its propagation.
    b.hash(&format!("#/clusters/{cid}/allowlist")).await;
    b.fill("#f-cidr", "203.0.113.0/99").await;
    b.fill("#f-name", "office").await;
    b.click("#allowlist-add").await;
    b.wait_text("#err-cidr", "cidr_ip/cidr_mask", 10).await;
    b.fill("#f-cidr", "203.0.113.0/24").await;
    b.click("#allowlist-add").await;
    b.find("tr[data-cidr='203.0.113.0/24']", 10).await;
    b.wait_text("#allowlist-status", "APPLIED", 20).await;
    b.shot(
        "allowlist",
        &["IP allowlist", "203.0.113.0/24", "office", "APPLIED"],
    )
    .await;

    // The audit log, paged.
    b.hash("#/audit").await;
    b.wait_text("#audit", "ADD_EGRESS_RULE", 10).await;
    b.shot(
        "audit",
        &["Audit log", "SET_EGRESS_TRAFFIC_POLICY", "admin"],
    )
    .await;

    // Keyboard: every control is reachable (no negative tabindex) and labelled.
    b.hash(&format!("#/clusters/{cid}/rules")).await;
    b.find("tr.rule", 10).await;
    let unlabelled = b
        .js(
            "return [...document.querySelectorAll('input, select, textarea, button')]
               .filter(e => e.tabIndex < 0 || !(e.labels && e.labels.length || e.getAttribute('aria-label') || (e.innerText || '').trim()))
               .map(e => e.outerHTML.slice(0, 120));",
            vec![],
        )
        .await;
    assert_eq!(
        unlabelled,
        json!([]),
        "controls a keyboard or screen reader cannot use"
    );
    // The search works from the keyboard alone.
    b.fill("#rule-search", "payments").await;
    b.wait_exact("#rule-count", "1 of 2 rules match", 5).await;

    // A narrow window: navigation above the content, nothing wider than the window.
    b.c.set_window_size(420, 800).await.unwrap();
    b.fill("#rule-search", "").await;
    b.wait_exact("#rule-count", "2 rules", 5).await;
    let layout = b
        .js(
            "const n = document.getElementById('nav').getBoundingClientRect();
             const m = document.getElementById('main').getBoundingClientRect();
             return {nav_above: n.bottom <= m.top + 1, page: document.documentElement.scrollWidth, view: window.innerWidth};",
            vec![],
        )
        .await;
    assert_eq!(layout["nav_above"], true, "{layout}");
    assert!(
        layout["page"].as_u64() <= layout["view"].as_u64(),
        "{layout}"
    );
    b.shot("narrow-rules", &["Egress rules", "payments"]).await;
    b.close().await;
    drop(s);
}

async fn wait_field_clear(b: &Browser, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.text(css).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{css} still says {:?}",
            b.text(css).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
