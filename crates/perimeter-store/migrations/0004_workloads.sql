-- Where each region's workload (the cluster's own SQL and UI) listens: what the ingress listeners
-- forward admitted connections to. Set by the platform; `''` when unset.

CREATE TABLE cluster_workloads (
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    sql_address TEXT NOT NULL,
    ui_address TEXT NOT NULL,
    PRIMARY KEY (cluster_id, region)
);
