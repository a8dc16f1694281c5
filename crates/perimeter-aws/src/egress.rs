//! Egress private endpoints as interface VPC endpoints in the region's platform VPC.

use aws_sdk_ec2::types::{Filter, ResourceType, TagSpecification, VpcEndpointType};

use crate::{AwsError, AwsProvider, CLUSTER_TAG, ENDPOINT_TAG, client_token, ec2_tag, tag_value};

/// An interface VPC endpoint as AWS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcEndpoint {
    /// `vpce-...`: the endpoint's `endpoint_connection_id`.
    pub id: String,
    /// AWS's state, as AWS spells it (`pendingAcceptance`).
    pub state: String,
    /// The first DNS name: the endpoint's `endpoint_address`.
    pub dns_name: String,
    /// The Route 53 zone of that name, the target of alias records.
    pub dns_zone_id: String,
    /// AWS's reason, when it gave one (a failed endpoint's last error).
    pub last_error: Option<String>,
    /// The egress private endpoint it carries (its `perimeter:endpoint` tag).
    pub endpoint_tag: Option<String>,
}

/// An endpoint state as AWS sends it on the wire (`pendingAcceptance`), however it was read:
/// the SDK's enum spells its variants `PendingAcceptance` and keeps wire values it does not
/// match as they came.
pub fn wire_state(state: &str) -> String {
    const STATES: [&str; 9] = [
        "pendingAcceptance",
        "pending",
        "available",
        "deleting",
        "deleted",
        "rejected",
        "failed",
        "expired",
        "partial",
    ];
    STATES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(state))
        .map_or_else(|| state.to_string(), |s| s.to_string())
}

/// Our state for an AWS endpoint state: `None` for `deleted` (the endpoint is gone), and
/// `UNSPECIFIED` for a state this version does not know.
pub fn our_state(aws: &str) -> Option<&'static str> {
    Some(match wire_state(aws).as_str() {
        "pendingAcceptance" => "PENDING_ACCEPTANCE",
        "pending" => "PENDING",
        "available" => "AVAILABLE",
        "rejected" => "REJECTED",
        "expired" => "EXPIRED",
        "failed" => "FAILED",
        "deleting" => "DELETING",
        "deleted" => return None,
        _ => "UNSPECIFIED",
    })
}

/// What an interface endpoint is created for.
#[derive(Debug, Clone)]
pub struct NewEndpoint<'a> {
    /// Our egress private endpoint's id (tag and client token).
    pub endpoint_id: &'a str,
    pub cluster_id: &'a str,
    pub region: &'a str,
    /// The service it connects to (`com.amazonaws.us-east-1.logs`,
    /// `com.amazonaws.vpce.us-east-1.vpce-svc-...`).
    pub service_name: &'a str,
}

fn read(v: &aws_sdk_ec2::types::VpcEndpoint) -> VpcEndpoint {
    let first = v.dns_entries().first();
    VpcEndpoint {
        id: v.vpc_endpoint_id().unwrap_or_default().to_string(),
        state: wire_state(v.state().map(|s| s.as_str()).unwrap_or_default()),
        dns_name: first
            .and_then(|d| d.dns_name())
            .unwrap_or_default()
            .to_string(),
        dns_zone_id: first
            .and_then(|d| d.hosted_zone_id())
            .unwrap_or_default()
            .to_string(),
        last_error: v
            .last_error()
            .map(|e| {
                format!(
                    "{}{}",
                    e.code().map(|c| format!("{c}: ")).unwrap_or_default(),
                    e.message().unwrap_or_default()
                )
            })
            .or_else(|| v.failure_reason().map(str::to_string)),
        endpoint_tag: tag_value(v.tags(), ENDPOINT_TAG).map(str::to_string),
    }
}

impl AwsProvider {
    /// The interface endpoint created for `endpoint_id`, if one exists that is not deleted:
    /// how a create that was never recorded is found again.
    pub async fn find_endpoint(
        &self,
        region: &str,
        endpoint_id: &str,
    ) -> Result<Option<VpcEndpoint>, AwsError> {
        const OP: &str = "DescribeVpcEndpoints";
        let (ec2, net) = self.region(OP, region)?;
        let out = ec2
            .describe_vpc_endpoints()
            .filters(
                Filter::builder()
                    .name(format!("tag:{ENDPOINT_TAG}"))
                    .values(endpoint_id)
                    .build(),
            )
            .filters(Filter::builder().name("vpc-id").values(&net.vpc_id).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(out
            .vpc_endpoints()
            .iter()
            .map(read)
            // The filters are applied here too: a server that ignores one does not make
            // another endpoint ours.
            .filter(|v| v.endpoint_tag.as_deref() == Some(endpoint_id))
            .find(|v| v.state != "deleted" && v.state != "deleting"))
    }

    /// Create the interface endpoint (`ClientToken` from our id: a retried create returns the
    /// first one).
    pub async fn create_endpoint(&self, new: &NewEndpoint<'_>) -> Result<VpcEndpoint, AwsError> {
        const OP: &str = "CreateVpcEndpoint";
        let (ec2, net) = self.region(OP, new.region)?;
        let out = ec2
            .create_vpc_endpoint()
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .vpc_id(&net.vpc_id)
            .service_name(new.service_name)
            .set_subnet_ids(Some(net.subnet_ids.clone()))
            .set_security_group_ids(
                (!net.security_group_ids.is_empty()).then(|| net.security_group_ids.clone()),
            )
            .client_token(client_token("ep", &[new.endpoint_id]))
            // Private DNS would take the service's public name over for the whole platform VPC
            // (and refuse a second cluster's endpoint to the same service): each cluster names
            // its endpoint through its own domain names instead.
            .private_dns_enabled(false)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::VpcEndpoint)
                    .tags(ec2_tag(CLUSTER_TAG, new.cluster_id))
                    .tags(ec2_tag(ENDPOINT_TAG, new.endpoint_id))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        let v = out
            .vpc_endpoint()
            .ok_or_else(|| AwsError::new(OP, "the answer has no VpcEndpoint"))?;
        Ok(read(v))
    }

    /// The interface endpoint `vpce_id` as AWS describes it now; `None` once it is gone.
    pub async fn describe_endpoint(
        &self,
        region: &str,
        vpce_id: &str,
    ) -> Result<Option<VpcEndpoint>, AwsError> {
        const OP: &str = "DescribeVpcEndpoints";
        let (ec2, _) = self.region(OP, region)?;
        match ec2
            .describe_vpc_endpoints()
            .vpc_endpoint_ids(vpce_id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .vpc_endpoints()
                .iter()
                .map(read)
                .find(|v| v.id == vpce_id)),
            Err(e) => {
                let e = AwsError::from_sdk(OP, e);
                if e.is("InvalidVpcEndpointId.NotFound") {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Ask AWS to delete the interface endpoint. An endpoint already gone is not an error.
    pub async fn delete_endpoint(&self, region: &str, vpce_id: &str) -> Result<(), AwsError> {
        const OP: &str = "DeleteVpcEndpoints";
        let (ec2, _) = self.region(OP, region)?;
        let out = ec2
            .delete_vpc_endpoints()
            .vpc_endpoint_ids(vpce_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        crate::unsuccessful(OP, out.unsuccessful(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_aws_state_maps() {
        for (aws, ours) in [
            ("pendingAcceptance", Some("PENDING_ACCEPTANCE")),
            ("pending", Some("PENDING")),
            ("available", Some("AVAILABLE")),
            ("rejected", Some("REJECTED")),
            ("expired", Some("EXPIRED")),
            ("failed", Some("FAILED")),
            ("deleting", Some("DELETING")),
            ("deleted", None),
            ("partial", Some("UNSPECIFIED")),
            ("PendingAcceptance", Some("PENDING_ACCEPTANCE")),
            ("Deleted", None),
            ("somethingNew", Some("UNSPECIFIED")),
        ] {
            assert_eq!(our_state(aws), ours, "{aws}");
        }
    }
}
