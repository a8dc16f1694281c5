//! Headless Chromium driven through chromedriver (WebDriver) with fantoccini: the browser the
//! console tests use, its screenshots, and polling with a bound.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A Chromium session, its chromedriver and its profile; all killed on drop.
pub struct Browser {
    pub c: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Chromium at 1280x800, headless, with no proxy, on a profile of its own.
    pub async fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                // Its own process group: drop kills Chromium with it.
                .process_group(0)
                .spawn()
                .expect("starting chromedriver")
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-proxy-server", "--window-size=1280,800", "--hide-scrollbars",
                    "--force-device-scale-factor=1", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with Chromium");
        c.set_window_size(1280, 800).await.unwrap();
        // Scripts that make many API calls (1,000 rules) run longer than WebDriver's 30 s default.
        let mut timeouts = fantoccini::wd::TimeoutConfiguration::default();
        timeouts.set_script(Some(Duration::from_secs(300)));
        c.update_timeouts(timeouts).await.unwrap();
        Browser {
            c,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.c.goto(url).await.unwrap();
    }

    /// Navigate inside the page (`#/clusters/...`) without reloading it.
    pub async fn hash(&self, hash: &str) {
        self.js("location.hash = arguments[0];", vec![json!(hash)])
            .await;
    }

    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.c
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The first element matching `css`, waiting up to `secs`.
    pub async fn find(&self, css: &str, secs: u64) -> Element {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(e) = self.c.find(Locator::Css(css)).await
                && e.is_displayed().await.unwrap_or(false)
            {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "no visible {css} within {secs} s; the page says:\n{}",
                    self.text("body").await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        self.js(
            "return document.querySelector(arguments[0]) !== null;",
            vec![json!(css)],
        )
        .await
            == json!(true)
    }

    /// The text of the first element matching `css` ("" when none).
    pub async fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            vec![json!(css)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Wait up to `secs` for the text of `css` to contain `needle`; that text.
    pub async fn wait_text(&self, css: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.text(css).await;
            if t.contains(needle) {
                return t;
            }
            if Instant::now() > deadline {
                panic!(
                    "{css} did not show {needle:?} within {secs} s: {t:?}\npage:\n{}",
                    self.text("body").await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clear the input `css` and type `text` into it, as a person would.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css, 10).await;
        e.clear().await.unwrap();
        if !text.is_empty() {
            e.send_keys(text).await.unwrap();
        }
    }

    /// Click the element matching `css`. Live pages redraw their lists: an element replaced
    /// between finding and clicking is found again (within 10 s).
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.find(css, 10).await.click().await {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("console test: clicking {css} again ({e})");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    /// Wait up to `secs` for the text of `css` to be exactly `want` (trimmed).
    pub async fn wait_exact(&self, css: &str, want: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.text(css).await;
            if t.trim() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} says {t:?}, not {want:?}, after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.find(css, 10)
            .await
            .select_by_value(value)
            .await
            .unwrap();
    }

    /// Screenshot the page as `<name>.png` once it shows every string of `must_show`; check the
    /// picture is not blank.
    pub async fn shot(&self, name: &str, must_show: &[&str]) -> PathBuf {
        for s in must_show {
            self.wait_text("body", s, 10).await;
        }
        let png = self.c.screenshot().await.unwrap();
        let (w, h, distinct, busy) = picture_stats(&png);
        assert!(
            distinct >= 16 && busy >= 0.02,
            "{name}: a blank-looking screenshot ({w}x{h}, {distinct} colours, {:.1}% not background)",
            busy * 100.0
        );
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        path
    }

    /// End the WebDriver session (Chromium exits); drop then stops chromedriver.
    pub async fn close(self) {
        let _ = self.c.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

fn kill_group(driver: &mut Child) {
    if let Ok(None) = driver.try_wait() {
        let pid = nix::unistd::Pid::from_raw(driver.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = driver.wait();
    }
}

/// Where screenshots go: `$PERIMETER_SCREENSHOTS_DIR` (the README's pictures are made with
/// `docs/screenshots`), else the test's scratch directory under `target/`.
pub fn screenshots_dir() -> PathBuf {
    match std::env::var_os("PERIMETER_SCREENSHOTS_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                // Relative to the workspace root, where `cargo test` is run from.
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(d)
            }
        }
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"),
    }
}

/// (width, height, distinct colours among sampled pixels, share of pixels unlike the most
/// common colour).
fn picture_stats(png_bytes: &[u8]) -> (u32, u32, usize, f64) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG screenshot");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sized PNG")];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let data = &buf[..info.buffer_size()];
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    let mut n = 0usize;
    for p in data.chunks_exact(px).step_by(3) {
        *counts.entry(&p[..px.min(3)]).or_default() += 1;
        n += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    (
        info.width,
        info.height,
        counts.len(),
        1.0 - top as f64 / n.max(1) as f64,
    )
}
