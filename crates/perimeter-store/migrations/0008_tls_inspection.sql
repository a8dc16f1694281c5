-- TLS inspection of a cluster's egress: whether it is on, the cluster's inspection CA (its
-- certificate, and its private key sealed by the control plane: base64 of nonce || ciphertext,
-- never the key in clear), the host patterns never inspected (JSON array), and the propagation
-- of the latest change: `propagating` until every live gateway applied `changed_version`.
-- No row: never enabled. The CA stays when inspection is turned off, so turning it on again
-- keeps the certificate workloads trust.

CREATE TABLE cluster_tls_inspection (
    cluster_id TEXT PRIMARY KEY REFERENCES clusters(id) ON DELETE CASCADE,
    enabled BIGINT NOT NULL,
    ca_certificate TEXT NOT NULL,
    ca_key_sealed TEXT NOT NULL,
    never_inspect TEXT NOT NULL,
    propagating BIGINT NOT NULL,
    changed_version BIGINT NOT NULL,
    changed_at TEXT NOT NULL
);
