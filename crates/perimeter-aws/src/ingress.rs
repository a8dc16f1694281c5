//! A cluster region's private endpoint service as a VPC endpoint service on the region's
//! network load balancers, with acceptance required; its connections accepted or rejected by
//! the cluster's registrations; its allowed principals from the trusted owners.

use aws_sdk_ec2::types::{Filter, ResourceType, TagSpecification};

use crate::{AwsError, AwsProvider, CLUSTER_TAG, REGION_TAG, client_token, ec2_tag, tag_value};

/// A VPC endpoint service as AWS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointService {
    /// `vpce-svc-...`
    pub id: String,
    /// `com.amazonaws.vpce.<region>.vpce-svc-...`
    pub name: String,
    /// `Pending`, `Available`, `Deleting`, `Deleted`, `Failed`.
    pub state: String,
}

/// A connection from a customer's interface endpoint to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The customer's `vpce-...`
    pub endpoint_id: String,
    /// The account that owns it.
    pub owner: String,
    /// AWS's state (`pendingAcceptance`, `available`, `rejected`, ...).
    pub state: String,
}

/// The principal that lets an account's endpoints connect: `*` stays `*`.
pub fn principal_of(owner: &str) -> String {
    if owner == "*" {
        "*".into()
    } else {
        format!("arn:aws:iam::{owner}:root")
    }
}

fn read(s: &aws_sdk_ec2::types::ServiceConfiguration) -> EndpointService {
    EndpointService {
        id: s.service_id().unwrap_or_default().to_string(),
        name: s.service_name().unwrap_or_default().to_string(),
        state: s
            .service_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    }
}

impl AwsProvider {
    /// The endpoint service made for the cluster's region, if one exists: how a create that
    /// was never recorded is found again.
    pub async fn find_service(
        &self,
        region: &str,
        cluster_id: &str,
    ) -> Result<Option<EndpointService>, AwsError> {
        const OP: &str = "DescribeVpcEndpointServiceConfigurations";
        let (ec2, _) = self.region(OP, region)?;
        let mut next: Option<String> = None;
        loop {
            let out = ec2
                .describe_vpc_endpoint_service_configurations()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{CLUSTER_TAG}"))
                        .values(cluster_id)
                        .build(),
                )
                .set_next_token(next.clone())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, e))?;
            // Checked here too: a server that ignores the filter does not make another
            // cluster's service ours.
            if let Some(s) = out.service_configurations().iter().find(|s| {
                tag_value(s.tags(), CLUSTER_TAG) == Some(cluster_id)
                    && tag_value(s.tags(), REGION_TAG) == Some(region)
                    && !matches!(
                        s.service_state().map(|s| s.as_str()),
                        Some("Deleted" | "Deleting")
                    )
            }) {
                return Ok(Some(read(s)));
            }
            match out.next_token() {
                Some(t) if !t.is_empty() && next.as_deref() != Some(t) => next = Some(t.into()),
                _ => return Ok(None),
            }
        }
    }

    /// Create the endpoint service on the region's network load balancers, acceptance required.
    /// `nonce` tells this service from an earlier one of the same cluster region.
    pub async fn create_service(
        &self,
        region: &str,
        cluster_id: &str,
        nonce: &str,
    ) -> Result<EndpointService, AwsError> {
        const OP: &str = "CreateVpcEndpointServiceConfiguration";
        let (ec2, net) = self.region(OP, region)?;
        if net.nlb_arns.is_empty() {
            return Err(AwsError::new(
                OP,
                format!(
                    "region {region} has no network load balancers in the provider configuration (regions.{region}.nlb_arns): a private endpoint service needs at least one"
                ),
            ));
        }
        let out = ec2
            .create_vpc_endpoint_service_configuration()
            .acceptance_required(true)
            .set_network_load_balancer_arns(Some(net.nlb_arns.clone()))
            // The nonce (when our record of the service was made) keeps a service made again,
            // after its region was removed and added back, from getting the old one.
            .client_token(client_token("svc", &[cluster_id, region, nonce]))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::VpcEndpointService)
                    .tags(ec2_tag(CLUSTER_TAG, cluster_id))
                    .tags(ec2_tag(REGION_TAG, region))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        out.service_configuration()
            .map(read)
            .ok_or_else(|| AwsError::new(OP, "the answer has no ServiceConfiguration"))
    }

    /// The endpoint service as AWS describes it now; `None` once it is gone.
    pub async fn describe_service(
        &self,
        region: &str,
        service_id: &str,
    ) -> Result<Option<EndpointService>, AwsError> {
        const OP: &str = "DescribeVpcEndpointServiceConfigurations";
        let (ec2, _) = self.region(OP, region)?;
        match ec2
            .describe_vpc_endpoint_service_configurations()
            .service_ids(service_id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .service_configurations()
                .iter()
                .map(read)
                .find(|s| s.id == service_id)),
            Err(e) => {
                let e = AwsError::from_sdk(OP, e);
                if e.is("InvalidVpcEndpointServiceId.NotFound") {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Delete the endpoint service. One already gone is not an error.
    pub async fn delete_service(&self, region: &str, service_id: &str) -> Result<(), AwsError> {
        const OP: &str = "DeleteVpcEndpointServiceConfigurations";
        let (ec2, _) = self.region(OP, region)?;
        let out = match ec2
            .delete_vpc_endpoint_service_configurations()
            .service_ids(service_id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let e = AwsError::from_sdk(OP, e);
                return if e.is("InvalidVpcEndpointServiceId.NotFound") {
                    Ok(())
                } else {
                    Err(e)
                };
            }
        };
        crate::unsuccessful(OP, out.unsuccessful(), true)
    }

    /// Make the service's allowed principals exactly `principals` (`arn:aws:iam::<account>:root`
    /// or `*`). Returns whether anything changed.
    pub async fn set_principals(
        &self,
        region: &str,
        service_id: &str,
        principals: &[String],
    ) -> Result<bool, AwsError> {
        const OP: &str = "DescribeVpcEndpointServicePermissions";
        let (ec2, _) = self.region(OP, region)?;
        let out = ec2
            .describe_vpc_endpoint_service_permissions()
            .service_id(service_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        let have: Vec<String> = out
            .allowed_principals()
            .iter()
            .filter_map(|p| p.principal().map(str::to_string))
            .collect();
        let add: Vec<String> = principals
            .iter()
            .filter(|p| !have.contains(p))
            .cloned()
            .collect();
        let remove: Vec<String> = have
            .iter()
            .filter(|p| !principals.contains(p))
            .cloned()
            .collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(false);
        }
        const MODIFY: &str = "ModifyVpcEndpointServicePermissions";
        ec2.modify_vpc_endpoint_service_permissions()
            .service_id(service_id)
            .set_add_allowed_principals((!add.is_empty()).then_some(add))
            .set_remove_allowed_principals((!remove.is_empty()).then_some(remove))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(MODIFY, e))?;
        Ok(true)
    }

    /// Every connection to the service.
    pub async fn connections(
        &self,
        region: &str,
        service_id: &str,
    ) -> Result<Vec<Connection>, AwsError> {
        const OP: &str = "DescribeVpcEndpointConnections";
        let (ec2, _) = self.region(OP, region)?;
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = ec2
                .describe_vpc_endpoint_connections()
                .filters(
                    Filter::builder()
                        .name("service-id")
                        .values(service_id)
                        .build(),
                )
                .set_next_token(next.clone())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, e))?;
            all.extend(
                out.vpc_endpoint_connections()
                    .iter()
                    .filter(|c| c.service_id().is_none_or(|s| s == service_id))
                    .map(|c| Connection {
                        endpoint_id: c.vpc_endpoint_id().unwrap_or_default().to_string(),
                        owner: c.vpc_endpoint_owner().unwrap_or_default().to_string(),
                        state: crate::egress::wire_state(
                            c.vpc_endpoint_state()
                                .map(|s| s.as_str())
                                .unwrap_or_default(),
                        ),
                    }),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() && next.as_deref() != Some(t) => next = Some(t.into()),
                _ => return Ok(all),
            }
        }
    }

    /// Accept (`true`) or reject (`false`) connections of the service.
    pub async fn decide_connections(
        &self,
        region: &str,
        service_id: &str,
        endpoint_ids: &[String],
        accept: bool,
    ) -> Result<(), AwsError> {
        if endpoint_ids.is_empty() {
            return Ok(());
        }
        let ids = Some(endpoint_ids.to_vec());
        if accept {
            const OP: &str = "AcceptVpcEndpointConnections";
            let (ec2, _) = self.region(OP, region)?;
            let out = ec2
                .accept_vpc_endpoint_connections()
                .service_id(service_id)
                .set_vpc_endpoint_ids(ids)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, e))?;
            crate::unsuccessful(OP, out.unsuccessful(), false)
        } else {
            const OP: &str = "RejectVpcEndpointConnections";
            let (ec2, _) = self.region(OP, region)?;
            let out = ec2
                .reject_vpc_endpoint_connections()
                .service_id(service_id)
                .set_vpc_endpoint_ids(ids)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, e))?;
            crate::unsuccessful(OP, out.unsuccessful(), false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_become_account_root_principals() {
        assert_eq!(
            principal_of("123456789012"),
            "arn:aws:iam::123456789012:root"
        );
        assert_eq!(principal_of("*"), "*");
    }
}
