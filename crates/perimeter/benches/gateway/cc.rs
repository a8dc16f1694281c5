//! TCP congestion control: the host's, and one set for the bulk runs of every contender (then
//! the host's put back, on exit, on a panic and on a signal too, through [`CLEANUP`]).

use crate::cleanup::CLEANUP;
use crate::procs::is_root;

pub(crate) const CC_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_congestion_control";
/// The congestion control the gateway's tweak uses towards loopback peers, and the bench's
/// common one on a `bbr` host.
pub(crate) const SAME_CC: &str = "cubic";

/// The host's congestion control and the ones it offers.
pub(crate) fn host_cc() -> (String, Vec<String>) {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let cc = read(CC_SYSCTL);
    let available = read("/proc/sys/net/ipv4/tcp_available_congestion_control")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (if cc.is_empty() { "unknown".into() } else { cc }, available)
}

/// The host's congestion control set to another for the life of this value.
pub(crate) struct CcOverride {
    pub(crate) original: String,
}

impl CcOverride {
    pub(crate) fn set(cc: &str) -> std::io::Result<CcOverride> {
        let (original, _) = host_cc();
        CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).cc = Some(original.clone());
        if let Err(e) = std::fs::write(CC_SYSCTL, cc) {
            CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).cc = None;
            return Err(e);
        }
        Ok(CcOverride { original })
    }
}

impl Drop for CcOverride {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(CC_SYSCTL, &self.original) {
            eprintln!(
                "bench: could not restore net.ipv4.tcp_congestion_control={}: {e}",
                self.original
            );
        }
        CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).cc = None;
    }
}

/// How bulk ran.
pub(crate) struct BulkSetup {
    /// The host's congestion control.
    pub(crate) host_cc: String,
    pub(crate) available: Vec<String>,
    /// The congestion control the same-cc runs set, when it is not the host's.
    pub(crate) set_cc: Option<&'static str>,
    /// Why the same-cc runs could not set it, if they could not.
    pub(crate) unset_why: Option<String>,
}

impl BulkSetup {
    pub(crate) fn new() -> BulkSetup {
        let (host_cc, available) = host_cc();
        let (set_cc, unset_why) = if host_cc != "bbr" {
            // The tweak engages only on bbr: every socket already runs the host's setting.
            (None, None)
        } else if !available.iter().any(|c| c == SAME_CC) {
            (None, Some(format!("{SAME_CC} is not available")))
        } else if !is_root() {
            (None, Some("not root".to_string()))
        } else {
            (Some(SAME_CC), None)
        };
        BulkSetup {
            host_cc,
            available,
            set_cc,
            unset_why,
        }
    }

    /// The congestion control every contender's bulk runs on in the same-cc runs.
    pub(crate) fn same(&self) -> Option<&str> {
        match (&self.set_cc, &self.unset_why) {
            (Some(cc), _) => Some(cc),
            (None, None) => Some(&self.host_cc),
            (None, Some(_)) => None,
        }
    }

    /// Set the common congestion control for the bulk runs, if it is not the host's; the
    /// host's comes back when the value is dropped.
    pub(crate) fn override_for_bulk(&self) -> Option<CcOverride> {
        self.set_cc.map(|cc| {
            CcOverride::set(cc)
                .unwrap_or_else(|e| panic!("setting net.ipv4.tcp_congestion_control={cc}: {e}"))
        })
    }
}
