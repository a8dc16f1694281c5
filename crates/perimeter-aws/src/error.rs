//! An AWS call that failed: which call, AWS's own code and message, and whether trying again
//! later may succeed.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    /// The API call (`CreateVpcEndpoint`).
    pub operation: &'static str,
    /// AWS's error code (`InvalidServiceName`), when it sent one.
    pub code: Option<String>,
    /// AWS's message, or what went wrong on the way to it.
    pub message: String,
    /// Throttling, a 5xx, a timeout or a connection failure: the same call may succeed later.
    /// Anything else is AWS's answer to this request and is not retried.
    pub transient: bool,
}

/// Error codes AWS uses for throttling and for its own transient failures.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    "ProvisionedThroughputExceededException",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

/// Whether an error code is throttling or a transient failure of AWS's.
pub fn transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code)
}

impl AwsError {
    pub(crate) fn new(operation: &'static str, message: impl Into<String>) -> AwsError {
        AwsError {
            operation,
            code: None,
            message: message.into(),
            transient: false,
        }
    }

    /// Read an SDK error of `operation`.
    pub(crate) fn from_sdk<E>(operation: &'static str, e: SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &e {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().map(str::to_string);
                let message = ctx
                    .err()
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status}"));
                let transient = status >= 500 || code.as_deref().is_some_and(transient_code);
                AwsError {
                    operation,
                    code,
                    message,
                    transient,
                }
            }
            // A request that never got an answer for a reason of the network may succeed
            // later; one that could not be sent for a reason of ours (no credentials, no
            // endpoint for the region) will not.
            SdkError::DispatchFailure(d) if !(d.is_timeout() || d.is_io()) => AwsError {
                operation,
                code: None,
                message: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
                transient: false,
            },
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => AwsError {
                operation,
                code: None,
                message: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
                transient: true,
            },
            _ => AwsError {
                operation,
                code: None,
                message: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
                transient: false,
            },
        }
    }

    /// Whether AWS answered with this code.
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_faults_are_transient() {
        for c in [
            "Throttling",
            "RequestLimitExceeded",
            "PriorRequestNotComplete",
            "InternalError",
        ] {
            assert!(transient_code(c), "{c}");
        }
        for c in [
            "InvalidServiceName",
            "UnauthorizedOperation",
            "InvalidVpcID.NotFound",
            "",
        ] {
            assert!(!transient_code(c), "{c}");
        }
    }

    #[test]
    fn the_message_names_call_code_and_message() {
        let e = AwsError {
            operation: "CreateVpcEndpoint",
            code: Some("InvalidServiceName".into()),
            message: "The Vpc Endpoint Service 'x' does not exist".into(),
            transient: false,
        };
        assert_eq!(
            e.to_string(),
            "CreateVpcEndpoint: InvalidServiceName: The Vpc Endpoint Service 'x' does not exist"
        );
        assert_eq!(
            AwsError::new("GetChange", "no change id").to_string(),
            "GetChange: no change id"
        );
    }
}
