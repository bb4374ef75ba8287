CREATE TABLE organizations (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    suspended BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE spaces (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    organization_guid TEXT NOT NULL REFERENCES organizations (guid) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (organization_guid, name)
);

-- A role attaches to a space (space roles) or an organization (organization_manager);
-- target_guid is whichever applies, so one unique key covers both.
CREATE TABLE roles (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    user_guid TEXT NOT NULL,
    space_guid TEXT REFERENCES spaces (guid) ON DELETE CASCADE,
    organization_guid TEXT REFERENCES organizations (guid) ON DELETE CASCADE,
    target_guid TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (type, user_guid, target_guid)
);
CREATE INDEX roles_user_guid ON roles (user_guid);

CREATE TABLE apps (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    space_guid TEXT NOT NULL REFERENCES spaces (guid) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (space_guid, name)
);

CREATE TABLE packages (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    app_guid TEXT NOT NULL REFERENCES apps (guid) ON DELETE CASCADE,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    package_hash TEXT,
    sha256_checksum TEXT,
    error TEXT,
    url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT,
    -- When the package last entered or was re-driven in a pending state; the pending
    -- sweep measures its timeout from here.
    pending_since BIGINT
);
CREATE INDEX packages_app_guid ON packages (app_guid);
CREATE INDEX packages_pending ON packages (state, pending_since);

-- The transactional outbox: a job is recorded in the same transaction as the change that
-- causes it, then published by a relay. The row lives until the job is done.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    package_guid TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at BIGINT NOT NULL,
    published_at BIGINT,
    claimed_until BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX jobs_unpublished ON jobs (published_at, available_at);
CREATE INDEX jobs_package_guid ON jobs (package_guid);
