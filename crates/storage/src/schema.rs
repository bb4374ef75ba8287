//! Tables, as both migration folders create them.

diesel::table! {
    organizations (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        suspended -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    spaces (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        organization_guid -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    roles (id) {
        id -> BigInt,
        guid -> Text,
        #[sql_name = "type"]
        role_type -> Text,
        user_guid -> Text,
        space_guid -> Nullable<Text>,
        organization_guid -> Nullable<Text>,
        target_guid -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    apps (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        space_guid -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    packages (id) {
        id -> BigInt,
        guid -> Text,
        app_guid -> Text,
        #[sql_name = "type"]
        package_type -> Text,
        state -> Text,
        package_hash -> Nullable<Text>,
        sha256_checksum -> Nullable<Text>,
        error -> Nullable<Text>,
        url -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> Nullable<BigInt>,
        pending_since -> Nullable<BigInt>,
        upload_claim -> Nullable<Text>,
        upload_claimed_until -> Nullable<BigInt>,
        docker_username -> Nullable<Text>,
        docker_password -> Nullable<Text>,
    }
}

diesel::table! {
    /// The columns of `packages` that its declaration above leaves out: a diesel table
    /// type holds at most 16 columns unless diesel is built with wider tuples, which
    /// doubles its build time. A statement on `packages` names these as SQL.
    #[sql_name = "packages"]
    package_extras (id) {
        id -> BigInt,
        guid -> Text,
        /// How many characters the package's labels and annotations hold together.
        metadata_characters -> BigInt,
    }
}

diesel::table! {
    package_labels (package_guid, key_prefix, key_name) {
        package_guid -> Text,
        key_prefix -> Text,
        key_name -> Text,
        value -> Text,
    }
}

diesel::table! {
    package_annotations (package_guid, key_prefix, key_name) {
        package_guid -> Text,
        key_prefix -> Text,
        key_name -> Text,
        value -> Text,
    }
}

diesel::table! {
    resource_pool (sha1) {
        sha1 -> Text,
        size -> BigInt,
    }
}

diesel::table! {
    jobs (id) {
        id -> Text,
        package_guid -> Text,
        kind -> Text,
        body -> Text,
        attempts -> Integer,
        available_at -> BigInt,
        published_at -> Nullable<BigInt>,
        claimed_until -> Nullable<BigInt>,
        created_at -> BigInt,
        unsettled_runs -> Integer,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    spaces,
    roles,
    apps,
    packages,
    jobs,
    package_labels,
    package_annotations,
    resource_pool,
);
