-- How many characters a package's labels and annotations hold (every key prefix, name
-- and value), kept on the package's row: a list page batches the loading of its
-- packages' metadata by it, without a subquery per row into both metadata tables.
ALTER TABLE packages ADD COLUMN metadata_characters BIGINT NOT NULL DEFAULT 0;
UPDATE packages SET metadata_characters =
  COALESCE((SELECT SUM(LENGTH(key_prefix) + LENGTH(key_name) + LENGTH(value))
            FROM package_labels WHERE package_labels.package_guid = packages.guid), 0)
  + COALESCE((SELECT SUM(LENGTH(key_prefix) + LENGTH(key_name) + LENGTH(value))
              FROM package_annotations WHERE package_annotations.package_guid = packages.guid), 0);
