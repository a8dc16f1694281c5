-- Perimeter schema, version 1.
-- One dialect for SQLite, PostgreSQL and CockroachDB: TEXT and BIGINT only, booleans as 0/1,
-- timestamps as fixed-width RFC 3339 UTC text (sortable), JSON as TEXT, ids as UUID text.
-- Every paginated table has a `sort_key` unique within its list scope.

CREATE TABLE service_accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    creator_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sort_key TEXT NOT NULL UNIQUE
);

CREATE TABLE role_bindings (
    service_account_id TEXT NOT NULL REFERENCES service_accounts(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    PRIMARY KEY (service_account_id, role, resource_type, resource_id)
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    service_account_id TEXT NOT NULL REFERENCES service_accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sort_key TEXT NOT NULL UNIQUE
);

CREATE TABLE clusters (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    provider TEXT NOT NULL,
    plan TEXT NOT NULL,
    account_id TEXT NOT NULL,
    state TEXT NOT NULL,
    network_visibility TEXT NOT NULL,
    egress_policy TEXT NOT NULL,
    egress_policy_updating BIGINT NOT NULL,
    allowlist_propagating BIGINT NOT NULL,
    policy_version BIGINT NOT NULL,
    labels TEXT NOT NULL,
    hardware TEXT NOT NULL,
    cockroach_version TEXT NOT NULL,
    creator_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT,
    sort_key TEXT NOT NULL UNIQUE
);
CREATE INDEX clusters_name ON clusters (name);

CREATE TABLE cluster_regions (
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    node_count BIGINT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, name)
);

CREATE TABLE egress_rules (
    id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    rule_type TEXT NOT NULL,
    destination TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL,
    crl_managed BIGINT NOT NULL,
    ports TEXT NOT NULL,
    paths TEXT NOT NULL,
    policy_version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (cluster_id, name)
);

CREATE TABLE allowlist_entries (
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    cidr_ip TEXT NOT NULL,
    cidr_mask BIGINT NOT NULL,
    name TEXT NOT NULL,
    sql_access BIGINT NOT NULL,
    ui_access BIGINT NOT NULL,
    sort_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (cluster_id, cidr_ip, cidr_mask),
    UNIQUE (cluster_id, sort_key)
);

CREATE TABLE egress_endpoints (
    id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    target_service_identifier TEXT NOT NULL,
    target_service_type TEXT NOT NULL,
    endpoint_connection_id TEXT NOT NULL,
    endpoint_address TEXT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT NOT NULL,
    domain_names TEXT NOT NULL,
    domain_names_state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sort_key TEXT NOT NULL UNIQUE,
    lease_holder TEXT,
    lease_until TEXT
);
CREATE INDEX egress_endpoints_state ON egress_endpoints (state);

CREATE TABLE endpoint_services (
    id TEXT PRIMARY KEY,
    service_name TEXT NOT NULL UNIQUE,
    region TEXT NOT NULL,
    backends TEXT NOT NULL,
    acceptance_required BIGINT NOT NULL,
    auto_accept_accounts TEXT NOT NULL,
    acceptance_timeout_seconds BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    sort_key TEXT NOT NULL UNIQUE
);

CREATE TABLE endpoint_connections (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES endpoint_services(id),
    cluster_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    egress_private_endpoint_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    expires_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sort_key TEXT NOT NULL UNIQUE
);

CREATE TABLE ingress_endpoint_services (
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    endpoint_service_id TEXT NOT NULL,
    service_name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (cluster_id, region)
);

CREATE TABLE ingress_endpoint_connections (
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL,
    region TEXT NOT NULL,
    endpoint_service_id TEXT NOT NULL,
    service_name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (cluster_id, endpoint_id)
);

CREATE TABLE trusted_owners (
    id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    owner_type TEXT NOT NULL,
    external_owner_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (cluster_id, owner_type, external_owner_id)
);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    sort_key TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    cluster_name TEXT NOT NULL,
    service_account_name TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL
);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
