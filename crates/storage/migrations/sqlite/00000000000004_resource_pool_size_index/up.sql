-- The worker asks whether the pool holds any file of a given size before it writes a
-- large file into the pool while reading the package.
CREATE INDEX resource_pool_size ON resource_pool (size);
