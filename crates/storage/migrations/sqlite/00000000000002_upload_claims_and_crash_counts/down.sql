ALTER TABLE jobs DROP COLUMN unsettled_runs;
ALTER TABLE packages DROP COLUMN upload_claimed_until;
ALTER TABLE packages DROP COLUMN upload_claim;
