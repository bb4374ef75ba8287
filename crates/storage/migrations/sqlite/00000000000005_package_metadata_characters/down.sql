ALTER TABLE packages DROP COLUMN metadata_characters;
