-- Audit entries name the acting service account by id as well as by name: a name says who an
-- account claims to be, the id which account it is. Entries written before this carry ''.

ALTER TABLE audit_log ADD COLUMN service_account_id TEXT NOT NULL DEFAULT '';

-- Service-account names are unique in the organisation. Accounts that shared a name keep it
-- for the oldest; each other one gets its id appended, so that no two read alike.
UPDATE service_accounts SET name = name || ' (' || id || ')'
    WHERE EXISTS (SELECT 1 FROM service_accounts o WHERE o.name = service_accounts.name AND o.sort_key < service_accounts.sort_key);
CREATE UNIQUE INDEX service_accounts_name ON service_accounts (name);
