//! Custom domain names of egress private endpoints as Route 53 private hosted zones.
//!
//! Each domain name gets a private hosted zone associated with the region's platform VPC, named
//! after the domain without `*.`. The apex of a zone is an alias A record to the endpoint's DNS
//! name (a CNAME is not allowed at an apex); a wildcard is a `*` CNAME to it. Zones carry
//! `perimeter:cluster=<cluster id>`: a zone of that name in the VPC that belongs to another
//! cluster is never written to (one VPC resolves one zone per name, so the name would not
//! resolve for this cluster only).

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, HostedZoneConfig, ResourceRecord,
    ResourceRecordSet, RrType, Tag, TagResourceType, Vpc, VpcRegion,
};

use crate::{AwsError, AwsProvider, CLUSTER_TAG};

/// Where an endpoint's names point: its DNS name and that name's hosted zone.
#[derive(Debug, Clone, Copy)]
pub struct DnsTarget<'a> {
    pub dns_name: &'a str,
    pub zone_id: &'a str,
}

/// The hosted zone a domain name lives in, and whether it is a wildcard of that zone.
pub fn zone_of(name: &str) -> (String, bool) {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(zone) => (zone.to_string(), true),
        None => (name, false),
    }
}

/// Route 53 writes `*` in names as `\052`, and ends them with a dot.
fn same_name(route53: &str, fqdn: &str) -> bool {
    route53.replace("\\052", "*").trim_end_matches('.')
        == fqdn.trim_end_matches('.').to_ascii_lowercase()
}

fn bad_request(operation: &'static str, e: impl std::fmt::Display) -> AwsError {
    AwsError::new(operation, format!("the request could not be built: {e}"))
}

/// The record set of one name.
fn record(name: &str, target: DnsTarget<'_>) -> Result<ResourceRecordSet, AwsError> {
    const OP: &str = "ChangeResourceRecordSets";
    let (zone, wildcard) = zone_of(name);
    let set = if wildcard {
        ResourceRecordSet::builder()
            .name(format!("*.{zone}."))
            .r#type(RrType::Cname)
            .ttl(300)
            .resource_records(
                ResourceRecord::builder()
                    .value(target.dns_name)
                    .build()
                    .map_err(|e| bad_request(OP, e))?,
            )
    } else {
        ResourceRecordSet::builder()
            .name(format!("{zone}."))
            .r#type(RrType::A)
            .alias_target(
                AliasTarget::builder()
                    .hosted_zone_id(target.zone_id)
                    .dns_name(target.dns_name)
                    .evaluate_target_health(false)
                    .build()
                    .map_err(|e| bad_request(OP, e))?,
            )
    };
    set.build().map_err(|e| bad_request(OP, e))
}

/// What every `CallerReference` of a cluster's zone begins with: how a zone created before a
/// crash, not yet tagged, is recognised.
fn reference_prefix(cluster_id: &str, zone: &str) -> String {
    format!("perimeter-{}-", crate::digest(&[cluster_id, zone]))
}

/// A new `CallerReference` for a zone: Route 53 wants one per create (a zone deleted and made
/// again needs another).
fn caller_reference(cluster_id: &str, zone: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}{nanos}", reference_prefix(cluster_id, zone))
}

impl AwsProvider {
    /// Make the records of `desired` point at `target` and remove those of `previous` that are
    /// no longer desired (with their zone, once it holds nothing else). Returns the ids of the
    /// changes made, to follow until they are `INSYNC`.
    pub async fn apply_domain_names(
        &self,
        region: &str,
        cluster_id: &str,
        target: DnsTarget<'_>,
        desired: &[String],
        previous: &[String],
    ) -> Result<Vec<String>, AwsError> {
        let mut changes = Vec::new();
        for name in desired {
            let (zone, _) = zone_of(name);
            let zone_id = self.zone(region, cluster_id, &zone, true).await?;
            let Some(zone_id) = zone_id else { continue };
            changes.push(
                self.change(&zone_id, ChangeAction::Upsert, record(name, target)?)
                    .await?,
            );
        }
        for name in previous {
            if desired.contains(name) {
                continue;
            }
            let (zone, _) = zone_of(name);
            let Some(zone_id) = self.zone(region, cluster_id, &zone, false).await? else {
                continue;
            };
            match self
                .change(&zone_id, ChangeAction::Delete, record(name, target)?)
                .await
            {
                Ok(id) => changes.push(id),
                // Already gone: a removal retried after it succeeded.
                Err(e) if e.is("InvalidChangeBatch") && e.message.contains("not found") => {}
                Err(e) => return Err(e),
            }
            self.delete_zone_if_empty(&zone_id).await?;
        }
        Ok(changes)
    }

    /// Whether a change reached every Route 53 name server (`INSYNC`).
    pub async fn change_in_sync(&self, change_id: &str) -> Result<bool, AwsError> {
        const OP: &str = "GetChange";
        let out = self
            .route53
            .get_change()
            .id(change_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(out
            .change_info()
            .is_some_and(|c| *c.status() == ChangeStatus::Insync))
    }

    /// The cluster's private hosted zone `zone` in the region's VPC: found, or (with `create`)
    /// created and tagged. A zone of that name that another cluster owns is refused.
    async fn zone(
        &self,
        region: &str,
        cluster_id: &str,
        zone: &str,
        create: bool,
    ) -> Result<Option<String>, AwsError> {
        const OP: &str = "CreateHostedZone";
        let (_, net) = self.region(OP, region)?;
        let prefix = reference_prefix(cluster_id, zone);
        for (id, name) in self.zones_in_vpc(region, &net.vpc_id).await? {
            if !same_name(&name, zone) {
                continue;
            }
            match self.zone_cluster(&id).await? {
                Some(owner) if owner == cluster_id => return Ok(Some(id)),
                Some(owner) => {
                    return Err(AwsError::new(
                        OP,
                        format!(
                            "the private hosted zone {zone} (zone {id}) in {} belongs to cluster {owner}; a domain resolves for one cluster per VPC",
                            net.vpc_id
                        ),
                    ));
                }
                None => {
                    // Created by us before a crash, not yet tagged: adopt it. Anyone else's
                    // zone is left alone.
                    if self.zone_reference(&id).await?.starts_with(&prefix) {
                        self.tag_zone(&id, cluster_id).await?;
                        return Ok(Some(id));
                    }
                    return Err(AwsError::new(
                        OP,
                        format!(
                            "a private hosted zone {zone} (zone {id}) not made by Perimeter is associated with {}; remove it or choose another name",
                            net.vpc_id
                        ),
                    ));
                }
            }
        }
        if !create {
            return Ok(None);
        }
        let out = self
            .route53
            .create_hosted_zone()
            .name(zone)
            .caller_reference(caller_reference(cluster_id, zone))
            .vpc(
                Vpc::builder()
                    .vpc_id(&net.vpc_id)
                    .vpc_region(VpcRegion::from(region))
                    .build(),
            )
            .hosted_zone_config(
                HostedZoneConfig::builder()
                    .private_zone(true)
                    .comment(format!("Perimeter: domain names of cluster {cluster_id}"))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        let id = out
            .hosted_zone()
            .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
            .ok_or_else(|| AwsError::new(OP, "the answer has no HostedZone"))?;
        self.tag_zone(&id, cluster_id).await?;
        Ok(Some(id))
    }

    /// Private hosted zones associated with `vpc_id`: (id, name).
    async fn zones_in_vpc(
        &self,
        region: &str,
        vpc_id: &str,
    ) -> Result<Vec<(String, String)>, AwsError> {
        const OP: &str = "ListHostedZonesByVPC";
        let mut zones = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .route53
                .list_hosted_zones_by_vpc()
                .vpc_id(vpc_id)
                .vpc_region(VpcRegion::from(region))
                .set_next_token(next.clone())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, e))?;
            for z in out.hosted_zone_summaries() {
                zones.push((
                    z.hosted_zone_id()
                        .trim_start_matches("/hostedzone/")
                        .to_string(),
                    z.name().to_string(),
                ));
            }
            match out.next_token() {
                Some(t) if !t.is_empty() && next.as_deref() != Some(t) => next = Some(t.into()),
                _ => return Ok(zones),
            }
        }
    }

    async fn zone_cluster(&self, zone_id: &str) -> Result<Option<String>, AwsError> {
        const OP: &str = "ListTagsForResource";
        let out = self
            .route53
            .list_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(zone_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(out.resource_tag_set().and_then(|s| {
            s.tags()
                .iter()
                .find(|t| t.key() == Some(CLUSTER_TAG))
                .and_then(|t| t.value())
                .map(str::to_string)
        }))
    }

    async fn zone_reference(&self, zone_id: &str) -> Result<String, AwsError> {
        const OP: &str = "GetHostedZone";
        let out = self
            .route53
            .get_hosted_zone()
            .id(zone_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(out
            .hosted_zone()
            .map(|z| z.caller_reference().to_string())
            .unwrap_or_default())
    }

    async fn tag_zone(&self, zone_id: &str, cluster_id: &str) -> Result<(), AwsError> {
        const OP: &str = "ChangeTagsForResource";
        self.route53
            .change_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(zone_id)
            .add_tags(Tag::builder().key(CLUSTER_TAG).value(cluster_id).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(())
    }

    async fn change(
        &self,
        zone_id: &str,
        action: ChangeAction,
        set: ResourceRecordSet,
    ) -> Result<String, AwsError> {
        const OP: &str = "ChangeResourceRecordSets";
        let batch = ChangeBatch::builder()
            .changes(
                Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()
                    .map_err(|e| bad_request(OP, e))?,
            )
            .build()
            .map_err(|e| bad_request(OP, e))?;
        let out = self
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        out.change_info()
            .map(|c| c.id().trim_start_matches("/change/").to_string())
            .ok_or_else(|| AwsError::new(OP, "the answer has no ChangeInfo"))
    }

    /// Delete a zone that holds only its SOA and NS records.
    async fn delete_zone_if_empty(&self, zone_id: &str) -> Result<(), AwsError> {
        const OP: &str = "ListResourceRecordSets";
        let out = self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        let empty = !out.is_truncated()
            && out
                .resource_record_sets()
                .iter()
                .all(|r| matches!(r.r#type(), RrType::Soa | RrType::Ns));
        if !empty {
            return Ok(());
        }
        const DELETE: &str = "DeleteHostedZone";
        match self.route53.delete_hosted_zone().id(zone_id).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = AwsError::from_sdk(DELETE, e);
                if e.is("NoSuchHostedZone") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The records of a cluster's zone `zone` in the region's VPC, as `(name, type, value)`:
    /// what the walkthrough and the tests read back.
    pub async fn zone_records(
        &self,
        region: &str,
        cluster_id: &str,
        zone: &str,
    ) -> Result<Option<Vec<(String, String, String)>>, AwsError> {
        let Some(zone_id) = self.zone(region, cluster_id, zone, false).await? else {
            return Ok(None);
        };
        const OP: &str = "ListResourceRecordSets";
        let out = self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(Some(
            out.resource_record_sets()
                .iter()
                .map(|r| {
                    let value = r
                        .alias_target()
                        .map(|a| a.dns_name().to_string())
                        .or_else(|| r.resource_records().first().map(|v| v.value().to_string()))
                        .unwrap_or_default();
                    (
                        r.name().replace("\\052", "*"),
                        r.r#type().as_str().to_string(),
                        value,
                    )
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_references_are_new_each_time_and_recognisable() {
        let a = caller_reference("c1", "kafka.example.com");
        std::thread::sleep(std::time::Duration::from_millis(1));
        let b = caller_reference("c1", "kafka.example.com");
        assert_ne!(a, b);
        let prefix = reference_prefix("c1", "kafka.example.com");
        assert!(a.starts_with(&prefix) && b.starts_with(&prefix));
        assert!(!caller_reference("c2", "kafka.example.com").starts_with(&prefix));
        assert!(a.len() <= 128);
    }

    #[test]
    fn zones_are_named_after_the_domain_without_its_wildcard() {
        assert_eq!(
            zone_of("*.us-east-2.aws.confluent.cloud"),
            ("us-east-2.aws.confluent.cloud".into(), true)
        );
        assert_eq!(
            zone_of("Kafka.Example.com."),
            ("kafka.example.com".into(), false)
        );
        assert!(same_name("\\052.kafka.example.com.", "*.kafka.example.com"));
        assert!(!same_name("kafka.example.com.", "example.com"));
    }

    #[test]
    fn apex_names_are_aliases_and_wildcards_cnames() {
        let t = DnsTarget {
            dns_name: "vpce-1-abc.vpce-svc-1.us-east-1.vpce.amazonaws.com",
            zone_id: "Z7HUB22UULQXV",
        };
        let apex = record("kafka.example.com", t).unwrap();
        assert_eq!(apex.r#type(), &RrType::A);
        assert_eq!(apex.name(), "kafka.example.com.");
        assert_eq!(
            apex.alias_target().unwrap().hosted_zone_id(),
            "Z7HUB22UULQXV"
        );
        let wild = record("*.kafka.example.com", t).unwrap();
        assert_eq!(wild.r#type(), &RrType::Cname);
        assert_eq!(wild.name(), "*.kafka.example.com.");
        assert_eq!(wild.resource_records()[0].value(), t.dns_name);
    }
}
