DROP TABLE resource_pool;
DROP TABLE package_annotations;
DROP TABLE package_labels;
DROP INDEX packages_updated_at;
DROP INDEX packages_created_at;
ALTER TABLE packages DROP COLUMN docker_password;
ALTER TABLE packages DROP COLUMN docker_username;
