//! Egress rules. Rule changes neither take nor wait for the cluster lock: each rule has its own
//! state machine, and the newest change of a rule wins.

use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::audit::{AuditEntry, record};
use crate::clusters::touch_live_cluster;
use crate::model::{EgressRule, RuleSpec, RuleState, flag, int, json, text, to_json};
use crate::page::{Arg, Page, PageRequest, fetch_page};
use crate::{Ctx, Result, Store, StoreError, is_unique_violation};

impl Store {
    pub async fn create_rule(
        &self,
        cluster_id: &str,
        name: &str,
        spec: &RuleSpec,
        crl_managed: bool,
        audit: &AuditEntry,
    ) -> Result<EgressRule> {
        let mut tx = self.begin().await?;
        let cluster = touch_live_cluster(&mut tx, cluster_id).await?;
        // The count kept with the rows (rules being deleted count until they are gone).
        let (have,): (i64,) = sqlx::query_as("SELECT rules_count FROM clusters WHERE id = $1")
            .bind(cluster_id)
            .fetch_one(&mut *tx)
            .await
            .ctx("counting egress rules")?;
        Store::within(
            have,
            self.limits.rules_per_cluster,
            "name",
            &format!("cluster {cluster_id} has too many egress rules"),
            "--max-rules-per-cluster",
        )?;
        let id = crate::new_id();
        let now = crate::now();
        sqlx::query(
            "INSERT INTO egress_rules (id, cluster_id, name, rule_type, destination, description, state, crl_managed, ports, paths, policy_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'PENDING_CREATION', $7, $8, $9, $10, $11, $11)",
        )
        .bind(&id)
        .bind(cluster_id)
        .bind(name)
        .bind(spec.destination.rule_type().as_str())
        .bind(spec.destination.to_string())
        .bind(&spec.description)
        .bind(crl_managed as i64)
        .bind(to_json(&spec.ports))
        .bind(to_json(&spec.paths))
        .bind(cluster.policy_version)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict {
                    field: "name".into(),
                    message: format!("an egress rule named {name:?} already exists in cluster {cluster_id}"),
                }
            } else {
                StoreError::Database { context: "creating an egress rule", source: e }
            }
        })?;
        rules_counted(&mut tx, cluster_id, 1).await?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        let rule = load_rule(&mut tx, cluster_id, &id).await?;
        tx.commit().await.ctx("committing an egress rule")?;
        Ok(rule)
    }

    pub async fn get_rule(&self, cluster_id: &str, id: &str) -> Result<EgressRule> {
        let mut conn = self.read.acquire().await.ctx("acquiring a connection")?;
        load_rule(&mut conn, cluster_id, id).await
    }

    /// Rules of a cluster sorted by name.
    pub async fn list_rules(
        &self,
        cluster_id: &str,
        page: &PageRequest,
    ) -> Result<Page<EgressRule>> {
        let rows = fetch_page(
            &self.read,
            "SELECT * FROM egress_rules WHERE cluster_id = $1",
            vec![Arg::Text(cluster_id.to_string())],
            "name",
            page,
        )
        .await?;
        let items = rows
            .items
            .iter()
            .map(rule_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(rows.with_items(items))
    }

    /// Every rule of a cluster (for compiling its policy).
    pub async fn all_rules(&self, cluster_id: &str) -> Result<Vec<EgressRule>> {
        let rows = sqlx::query("SELECT * FROM egress_rules WHERE cluster_id = $1 ORDER BY name")
            .bind(cluster_id)
            .fetch_all(&self.read)
            .await
            .ctx("listing egress rules")?;
        rows.iter().map(rule_from_row).collect()
    }

    /// Replace a rule's content. A rule not yet created anywhere stays `PENDING_CREATION`;
    /// otherwise it becomes `PENDING_UPDATE`.
    pub async fn edit_rule(
        &self,
        cluster_id: &str,
        id: &str,
        spec: &RuleSpec,
        audit: &AuditEntry,
    ) -> Result<EgressRule> {
        let mut tx = self.begin().await?;
        let cluster = touch_live_cluster(&mut tx, cluster_id).await?;
        let cur = load_rule(&mut tx, cluster_id, id).await?;
        if cur.state == RuleState::PendingDeletion {
            return Err(StoreError::Precondition {
                field: "rule_id".into(),
                message: format!("egress rule {id} is being deleted"),
            });
        }
        let state = if cur.state.never_applied() {
            RuleState::PendingCreation
        } else {
            RuleState::PendingUpdate
        };
        sqlx::query(
            "UPDATE egress_rules SET rule_type = $1, destination = $2, description = $3, ports = $4, paths = $5, \
             state = $6, policy_version = $7, updated_at = $8 WHERE id = $9",
        )
        .bind(spec.destination.rule_type().as_str())
        .bind(spec.destination.to_string())
        .bind(&spec.description)
        .bind(to_json(&spec.ports))
        .bind(to_json(&spec.paths))
        .bind(state.as_str())
        .bind(cluster.policy_version)
        .bind(crate::now())
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("editing an egress rule")?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        let rule = load_rule(&mut tx, cluster_id, id).await?;
        tx.commit().await.ctx("committing an egress rule edit")?;
        Ok(rule)
    }

    /// Start deleting a rule. The returned rule reads `PENDING_DELETION`. A rule that no gateway
    /// ever applied (still `PENDING_CREATION` or `CREATION_FAILED`) has nothing to withdraw and is
    /// removed at once; any other stays until every gateway applied a snapshot without it.
    pub async fn delete_rule(
        &self,
        cluster_id: &str,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<EgressRule> {
        let mut tx = self.begin().await?;
        let cluster = touch_live_cluster(&mut tx, cluster_id).await?;
        let mut rule = load_rule(&mut tx, cluster_id, id).await?;
        if rule.state.never_applied() {
            sqlx::query("DELETE FROM egress_rules WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .ctx("deleting an egress rule")?;
            rules_counted(&mut tx, cluster_id, -1).await?;
        } else {
            sqlx::query("UPDATE egress_rules SET state = 'PENDING_DELETION', policy_version = $1, updated_at = $2 WHERE id = $3")
                .bind(cluster.policy_version)
                .bind(crate::now())
                .bind(id)
                .execute(&mut *tx)
                .await
                .ctx("deleting an egress rule")?;
        }
        rule.state = RuleState::PendingDeletion;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        tx.commit()
            .await
            .ctx("committing an egress rule deletion")?;
        Ok(rule)
    }
}

async fn load_rule(conn: &mut AnyConnection, cluster_id: &str, id: &str) -> Result<EgressRule> {
    let row = sqlx::query("SELECT * FROM egress_rules WHERE id = $1 AND cluster_id = $2")
        .bind(id)
        .bind(cluster_id)
        .fetch_optional(conn)
        .await
        .ctx("reading an egress rule")?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "egress rule {id} not found in cluster {cluster_id}"
            ))
        })?;
    rule_from_row(&row)
}

/// A text column read as a typed value: an unreadable one is a corrupt row, never a default.
fn decode<T: std::str::FromStr>(r: &AnyRow, column: &'static str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let raw = text(r, column)?;
    raw.parse().map_err(|e: T::Err| StoreError::Corrupt {
        table: "egress_rules",
        detail: format!("{column} {raw:?}: {e}"),
    })
}

pub(crate) fn rule_from_row(r: &AnyRow) -> Result<EgressRule> {
    let corrupt = |detail: String| StoreError::Corrupt {
        table: "egress_rules",
        detail,
    };
    let rule_type: perimeter_policy::RuleType = decode(r, "rule_type")?;
    let destination =
        perimeter_policy::RuleDestination::parse_canonical(rule_type, &text(r, "destination")?)
            .map_err(|e| corrupt(format!("destination: {e}")))?;
    let paths = json::<Vec<String>>(r, "paths")?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            perimeter_policy::parse_canonical_path(p)
                .map_err(|e| corrupt(format!("paths[{i}] {p:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EgressRule {
        id: text(r, "id")?,
        cluster_id: text(r, "cluster_id")?,
        name: text(r, "name")?,
        rule_type,
        destination,
        description: text(r, "description")?,
        state: decode(r, "state")?,
        crl_managed: flag(r, "crl_managed")?,
        ports: json(r, "ports")?,
        paths,
        version: int(r, "policy_version")?,
        created_at: text(r, "created_at")?,
        updated_at: text(r, "updated_at")?,
    })
}

/// Keep `clusters.rules_count` with the rows: `by` rules were added (or removed, negative).
pub(crate) async fn rules_counted(
    conn: &mut sqlx::AnyConnection,
    cluster_id: &str,
    by: i64,
) -> Result<()> {
    sqlx::query("UPDATE clusters SET rules_count = rules_count + $1 WHERE id = $2")
        .bind(by)
        .bind(cluster_id)
        .execute(conn)
        .await
        .ctx("counting egress rules")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, NewCluster};

    #[test]
    fn states_spell_as_the_api_does() {
        for s in RuleState::ALL {
            assert_eq!(s.as_str().parse::<RuleState>(), Ok(s));
        }
        assert!("active".parse::<RuleState>().is_err());
        assert!(RuleState::PendingCreation.never_applied());
        assert!(RuleState::CreationFailed.never_applied());
        assert!(!RuleState::Active.never_applied());
    }

    #[tokio::test]
    async fn an_unreadable_stored_rule_is_a_corrupt_row_not_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path(), Durability::Normal)
            .await
            .unwrap();
        let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
        let cluster = store
            .create_cluster(&NewCluster::example("typed"), &audit)
            .await
            .unwrap();
        let spec = RuleSpec {
            destination: perimeter_policy::RuleDestination::Host("example.com".parse().unwrap()),
            description: String::new(),
            ports: vec![443],
            paths: vec!["/v1/*".parse().unwrap()],
        };
        let rule = store
            .create_rule(&cluster.id, "typed", &spec, false, &audit)
            .await
            .unwrap();
        assert_eq!(rule.rule_type, perimeter_policy::RuleType::Fqdn);
        assert_eq!(rule.state, RuleState::PendingCreation);
        assert_eq!(rule.destination.to_string(), "example.com");
        assert_eq!(rule.paths, spec.paths);
        // (column, corrupt value, the part the error names, the value to restore)
        for (column, value, named, restore) in [
            ("rule_type", "FQDNX", "rule_type", "FQDN"),
            ("state", "ACTIVATED", "state", "PENDING_CREATION"),
            // A CIDR rule type over a host name: the columns disagree.
            ("rule_type", "CIDR", "CIDR destination", "FQDN"),
            // Not canonical (upper case), and not a host pattern at all.
            ("destination", "Example.com", "destination", "example.com"),
            ("destination", "*", "destination", "example.com"),
            // A path that the API would have stored in its canonical form.
            ("paths", "[\"/v1/%2e/*\"]", "paths[0]", "[\"/v1/*\"]"),
            ("paths", "[\"no-slash\"]", "paths[0]", "[\"/v1/*\"]"),
        ] {
            sqlx::query(&format!(
                "UPDATE egress_rules SET {column} = $1 WHERE id = $2"
            ))
            .bind(value)
            .bind(&rule.id)
            .execute(&store.write)
            .await
            .unwrap();
            let e = store.get_rule(&cluster.id, &rule.id).await.unwrap_err();
            assert!(
                matches!(&e, StoreError::Corrupt { detail, .. } if detail.contains(named)),
                "{column} {value}: {e}"
            );
            // The policy a gateway would get is not built from it either.
            assert!(store.policy_inputs(&cluster.id).await.is_err());
            sqlx::query(&format!(
                "UPDATE egress_rules SET {column} = $1 WHERE id = $2"
            ))
            .bind(restore)
            .bind(&rule.id)
            .execute(&store.write)
            .await
            .unwrap();
        }
        assert!(store.get_rule(&cluster.id, &rule.id).await.is_ok());
    }
}
