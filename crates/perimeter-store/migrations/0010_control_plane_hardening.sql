-- The highest snapshot version the control plane delivered to each gateway: an
-- acknowledgement may only name a version up to it (a gateway cannot acknowledge what it was
-- never given).
ALTER TABLE gateways ADD COLUMN delivered_version BIGINT NOT NULL DEFAULT 0;

-- Whether a platform operator registered the service's special-address backends (loopback,
-- private, CGNAT) explicitly: without it, forwarders dial public addresses only.
ALTER TABLE endpoint_services ADD COLUMN special_addresses BIGINT NOT NULL DEFAULT 0;
