-- Gateways and propagation: each gateway acknowledges the snapshot versions it applied; rules,
-- the traffic policy and the allowlist remember the version that carried their last change.

CREATE TABLE gateways (
    id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT,
    applied_version BIGINT NOT NULL,
    failed_version BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    sort_key TEXT NOT NULL UNIQUE,
    UNIQUE (cluster_id, name)
);
CREATE INDEX gateways_cluster ON gateways (cluster_id);

ALTER TABLE clusters ADD COLUMN egress_policy_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN egress_policy_changed_at TEXT NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN allowlist_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN allowlist_changed_at TEXT NOT NULL DEFAULT '';
-- Bumped with every change of a cluster's rules (content or state): keys read caches.
ALTER TABLE clusters ADD COLUMN rules_epoch BIGINT NOT NULL DEFAULT 0;

CREATE TABLE egress_decisions (
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    port BIGINT NOT NULL,
    verdict TEXT NOT NULL,
    rule_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    count BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    PRIMARY KEY (cluster_id, destination, port, verdict, rule_name, reason)
);
