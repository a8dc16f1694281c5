//! The gateway's one client of the control plane: the snapshot long-poll, acknowledgements and
//! decision pushes, each authenticated with the gateway's token, with the messages of
//! [`perimeter_wire`]. The policy sync ([`crate::sync`]) and the decision push
//! ([`crate::decision::push_loop`]) share it.

use std::time::Duration;

use perimeter_wire::{
    ACK_PATH, AckRequest, DECISIONS_PATH, PushDecisionsRequest, SNAPSHOT_PATH, SnapshotResponse,
};

use crate::registration::token_gateway_id;

/// Longest wait for a connection to the control plane.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a long-poll (and an acknowledgement) may take beyond the longest wait asked.
const POLL_MARGIN: Duration = Duration::from_secs(15);
/// Longest decision push.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A call the control plane did not answer with success.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// No answer, or one that could not be read: worth retrying.
    #[error("control plane unreachable at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// An answer other than 200: the control plane's word on the request.
    #[error("control plane answered {status} while {context}: {body}")]
    Refused {
        status: u16,
        context: &'static str,
        body: String,
    },
}

/// The control plane as one gateway reaches it.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    http: reqwest::Client,
    /// Base URL without a trailing `/`, e.g. `http://127.0.0.1:8080`.
    base: String,
    /// The gateway's token (`PRGW.<id>.<secret>`).
    token: String,
    /// Timeout of long-polls and acknowledgements: the longest wait asked, plus a margin.
    poll_timeout: Duration,
}

impl ControlPlane {
    /// A client of the control plane at `base_url` for the gateway whose token is `token`, that
    /// asks long-polls to wait at most `longest_wait`.
    pub fn new(
        base_url: &str,
        token: &str,
        longest_wait: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            poll_timeout: longest_wait + POLL_MARGIN,
        })
    }

    /// The gateway id the token names, if it is a gateway token.
    pub fn gateway_id(&self) -> Option<&str> {
        token_gateway_id(&self.token)
    }

    /// The long-poll: the cluster's policy once it is newer than `after` or `wait_seconds` passed,
    /// and the gateway's registration.
    pub async fn snapshot(
        &self,
        after: u64,
        wait_seconds: u64,
    ) -> Result<SnapshotResponse, ControlPlaneError> {
        let url = format!(
            "{}{SNAPSHOT_PATH}?after_version={after}&wait_seconds={wait_seconds}",
            self.base
        );
        let request = self.http.get(&url).timeout(self.poll_timeout);
        let resp = self.send(request, &url, "fetching a snapshot").await?;
        resp.json()
            .await
            .map_err(|source| ControlPlaneError::Unreachable { url, source })
    }

    /// Acknowledge a snapshot version.
    pub async fn ack(&self, ack: &AckRequest) -> Result<(), ControlPlaneError> {
        let url = format!("{}{ACK_PATH}", self.base);
        let request = self.http.post(&url).timeout(self.poll_timeout).json(ack);
        self.send(request, &url, "acknowledging a snapshot").await?;
        Ok(())
    }

    /// Push decision counts and endpoint bytes.
    pub async fn push(&self, push: &PushDecisionsRequest) -> Result<(), ControlPlaneError> {
        let url = format!("{}{DECISIONS_PATH}", self.base);
        let request = self.http.post(&url).timeout(PUSH_TIMEOUT).json(push);
        self.send(request, &url, "pushing decision counts").await?;
        Ok(())
    }

    /// Send with the token; the response if it is a 200, else the refusal with its body.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        context: &'static str,
    ) -> Result<reqwest::Response, ControlPlaneError> {
        let resp = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ControlPlaneError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        ok_or_refused(resp, context).await
    }
}

/// The response if it is a 200 (every success of the gateway's calls is), else the control
/// plane's refusal with its body.
async fn ok_or_refused(
    resp: reqwest::Response,
    context: &'static str,
) -> Result<reqwest::Response, ControlPlaneError> {
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(ControlPlaneError::Refused {
        status,
        context,
        body,
    })
}
