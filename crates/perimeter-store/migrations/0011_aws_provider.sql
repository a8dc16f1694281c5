-- Which provider carries an egress private endpoint ('local' or 'aws'): the one the control
-- plane ran with when it was created. A control plane on another provider leaves it alone.
ALTER TABLE egress_endpoints ADD COLUMN provider TEXT NOT NULL DEFAULT 'local';
-- The hosted zone of the endpoint's DNS name at its provider (the target of alias records).
ALTER TABLE egress_endpoints ADD COLUMN dns_zone_id TEXT NOT NULL DEFAULT '';
-- Domain names whose records exist at the provider, and the provider's changes that have not
-- reached every name server yet.
ALTER TABLE egress_endpoints ADD COLUMN applied_domain_names TEXT NOT NULL DEFAULT '[]';
ALTER TABLE egress_endpoints ADD COLUMN domain_changes TEXT NOT NULL DEFAULT '[]';
-- When the provider last described the endpoint: an AVAILABLE one is described again now and
-- then, so that a change at the provider (rejected by the service's owner, deleted outside
-- Perimeter) shows.
ALTER TABLE egress_endpoints ADD COLUMN provider_checked_at TEXT NOT NULL DEFAULT '';

-- A private endpoint service's provider, its state there ('' on local; AWS's ServiceState),
-- whether the provider has work to do for it (create, follow, principals, connections,
-- delete), the provider's last error, and the lease of the replica doing it.
ALTER TABLE ingress_endpoint_services ADD COLUMN provider TEXT NOT NULL DEFAULT 'local';
ALTER TABLE ingress_endpoint_services ADD COLUMN provider_state TEXT NOT NULL DEFAULT '';
ALTER TABLE ingress_endpoint_services ADD COLUMN provider_pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ingress_endpoint_services ADD COLUMN provider_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE ingress_endpoint_services ADD COLUMN lease_holder TEXT;
ALTER TABLE ingress_endpoint_services ADD COLUMN lease_until TEXT;

-- A connection's state at the provider: '' on local, AWS's VpcEndpointState on aws ('unseen'
-- until AWS shows it). Only a connection the provider made available is admitted as available.
ALTER TABLE ingress_endpoint_connections ADD COLUMN provider_state TEXT NOT NULL DEFAULT '';
