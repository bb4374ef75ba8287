-- One upload at a time per package, across API processes: an upload claims the package
-- before it stores a byte, and the claim lapses if its process dies.
ALTER TABLE packages ADD COLUMN upload_claim TEXT;
ALTER TABLE packages ADD COLUMN upload_claimed_until BIGINT;

-- Runs of a job begun and not yet settled (finished, rescheduled or given up), counted
-- before each run: what is left over are runs whose process died under them.
ALTER TABLE jobs ADD COLUMN unsettled_runs INTEGER NOT NULL DEFAULT 0;
