-- Private endpoint forwarders: the snapshot version that last changed an endpoint's routing
-- (entering the snapshot, leaving it) and its domain names, so their states are observed from
-- the gateways' acknowledgements; the bytes its forwarders relayed; services that want a PROXY
-- protocol v2 header.

ALTER TABLE egress_endpoints ADD COLUMN routed_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE egress_endpoints ADD COLUMN domain_names_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE egress_endpoints ADD COLUMN bytes_processed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE endpoint_services ADD COLUMN proxy_protocol BIGINT NOT NULL DEFAULT 0;

-- Endpoints that existed before: their routing last changed no later than the cluster's
-- current version, which gateways must have applied before their state moves on.
UPDATE egress_endpoints SET routed_version = (SELECT policy_version FROM clusters WHERE clusters.id = egress_endpoints.cluster_id);
