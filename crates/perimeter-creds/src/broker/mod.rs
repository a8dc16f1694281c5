//! The I/O half (feature `broker`): role chains assumed with STS ([`Sts`]), the refreshing,
//! single-flight [`CredentialCache`], and the container-credentials [`Endpoint`] that
//! `perimeter creds serve` runs.
//!
//! GCS and Azure token exchange are not here yet: their URIs parse, validate and redact, and
//! their token endpoints are listed as destinations, but the broker assumes AWS chains only.

mod cache;
mod clock;
mod endpoint;
mod sts;

pub use cache::{CacheStats, Cached, CredentialCache, RefreshPolicy};
pub use clock::{Clock, ManualClock, Sleep, SystemClock};
pub use endpoint::{Endpoint, serve};
pub use sts::{AwsCredentials, ChainError, RoleChain, SettingsError, Sts, StsSettings};
