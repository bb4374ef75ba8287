-- GA: Docker registry credentials. The password is an opaque string sealed by the service
-- (ciphertext and nonce); the database never sees the plaintext.
ALTER TABLE packages ADD COLUMN docker_username TEXT;
ALTER TABLE packages ADD COLUMN docker_password TEXT;

-- Lists order by created_at or by updated_at (a never-updated package counts as updated
-- at its creation), ties broken by guid: one index per order, the expression written as
-- the queries write it so the planner can use it.
CREATE INDEX packages_created_at ON packages (created_at, guid);
CREATE INDEX packages_updated_at ON packages ((COALESCE(updated_at, created_at)), guid);

-- Labels and annotations. A key without a prefix is stored with key_prefix '' (not NULL),
-- so the primary key also makes (package, prefix, name) unique for unprefixed keys. The
-- primary key leads with package_guid: it serves loading a package's metadata and the
-- selector subqueries correlated on the package.
CREATE TABLE package_labels (
    package_guid TEXT NOT NULL REFERENCES packages (guid) ON DELETE CASCADE,
    key_prefix TEXT NOT NULL,
    key_name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (package_guid, key_prefix, key_name)
);
-- Label selectors look a key (and value) up across packages.
CREATE INDEX package_labels_selector ON package_labels (key_prefix, key_name, value, package_guid);

CREATE TABLE package_annotations (
    package_guid TEXT NOT NULL REFERENCES packages (guid) ON DELETE CASCADE,
    key_prefix TEXT NOT NULL,
    key_name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (package_guid, key_prefix, key_name)
);

-- The index of the resource pool: the files' bytes live in the blobstore; this table
-- answers which of a batch of (sha1, size) the pool holds in one indexed query. (SQLite
-- lets a primary key column hold NULL unless told otherwise.)
CREATE TABLE resource_pool (
    sha1 TEXT NOT NULL PRIMARY KEY,
    size BIGINT NOT NULL
);
