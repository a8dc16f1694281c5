-- Functional roles: per cluster and purpose (`backup`, `changefeed`), the role ARN template the
-- platform puts first in every role chain the cluster's jobs assume. Set by the platform.

CREATE TABLE cluster_credential_roles (
    cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    template TEXT NOT NULL,
    PRIMARY KEY (cluster_id, purpose)
);
