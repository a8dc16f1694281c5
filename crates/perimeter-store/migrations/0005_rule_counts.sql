-- How many egress rules each cluster holds, kept with the rows (a create checks the limit
-- without counting every rule of the cluster).

ALTER TABLE clusters ADD COLUMN rules_count BIGINT NOT NULL DEFAULT 0;
UPDATE clusters SET rules_count = (SELECT COUNT(*) FROM egress_rules r WHERE r.cluster_id = clusters.id);
