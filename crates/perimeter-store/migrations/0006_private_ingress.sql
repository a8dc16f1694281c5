-- Private ingress: a cluster's private endpoint services are registered as `local` endpoint
-- services that the cluster's private ingress listeners serve; their states and their
-- connections' states are observed from the gateways' acknowledgements.

-- The snapshot version that put the service in front of the gateways, and the `local`
-- endpoint service it is registered as.
ALTER TABLE ingress_endpoint_services ADD COLUMN routed_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ingress_endpoint_services ADD COLUMN local_service_id TEXT NOT NULL DEFAULT '';

-- Who owns the connecting endpoint (an account id; '' when it cannot be told) and the snapshot
-- version that admitted it (0 while it is not admitted).
ALTER TABLE ingress_endpoint_connections ADD COLUMN owner_account TEXT NOT NULL DEFAULT '';
ALTER TABLE ingress_endpoint_connections ADD COLUMN admitted_version BIGINT NOT NULL DEFAULT 0;

-- Where each gateway's private ingress listener is reached ('' without one), as it reports.
ALTER TABLE gateways ADD COLUMN private_ingress_address TEXT NOT NULL DEFAULT '';

-- A `local` endpoint service whose backends are a cluster's private ingress listeners.
ALTER TABLE endpoint_services ADD COLUMN ingress_cluster_id TEXT NOT NULL DEFAULT '';

-- A network visibility change is a networking change: observed from acknowledgements.
ALTER TABLE clusters ADD COLUMN visibility_changing BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN visibility_version BIGINT NOT NULL DEFAULT 0;
