//! The embedded default's generated secrets (the HS256 key, the encryption key for Docker
//! passwords), and minting tokens.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use packages_config::Settings;

use crate::StartError;
use crate::cli::{Binary, TokenArgs};

/// Where `packages` keeps the secret it generated when none was configured.
fn secret_path() -> PathBuf {
    Path::new("data").join("jwt-secret")
}

/// Where `packages` keeps the encryption key it generated when none was configured.
fn encryption_key_path() -> PathBuf {
    Path::new("data").join("encryption-key")
}

fn read_generated(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn read_generated_secret() -> Option<String> {
    read_generated(&secret_path())
}

/// `packages` with no `packages.encryption_key` uses the one under `data/`, generating
/// it (32 random bytes, hex) at the first start.
pub fn ensure_embedded_encryption_key(settings: &mut Settings) -> Result<(), StartError> {
    if settings.packages.encryption_key.is_some() {
        return Ok(());
    }
    let path = encryption_key_path();
    if let Some(key) = read_generated(&path) {
        settings.packages.encryption_key = Some(key);
        return Ok(());
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &key).map_err(|e| {
        StartError::Setup(format!(
            "cannot store a generated encryption key in {}: {e}",
            path.display()
        ))
    })?;
    settings.packages.encryption_key = Some(key);
    // Logged (not printed): with `log.format = json` every line of output is JSON.
    tracing::info!(
        path = %path.display(),
        "No packages.encryption_key is configured: generated one (kept for later starts)"
    );
    Ok(())
}

/// `packages` with no key configured uses the secret under `data/`, generating it at the
/// first start and saying how to mint an admin token.
pub fn ensure_embedded_secret(settings: &mut Settings) -> Result<(), StartError> {
    if settings.auth.has_key() {
        return Ok(());
    }
    if let Some(secret) = read_generated_secret() {
        settings.auth.jwt_secret = Some(secret);
        return Ok(());
    }
    let secret = packages_auth::generate_secret();
    let path = secret_path();
    write_private(&path, &secret).map_err(|e| {
        StartError::Setup(format!(
            "cannot store a generated secret in {}: {e}",
            path.display()
        ))
    })?;
    settings.auth.jwt_secret = Some(secret);
    let exe = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "packages".to_owned());
    println!(
        "No auth.jwt_secret is configured: generated one in {} (kept for later starts).",
        path.display()
    );
    println!("Mint an admin token with:");
    println!(
        "  export TOKEN=$({exe} token --user {} --scopes cloud_controller.admin)",
        uuid::Uuid::new_v4()
    );
    Ok(())
}

fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()
}

/// `token --user GUID --scopes a,b`: prints a token signed with the configured HS256
/// secret (for `packages`, also the generated one).
pub fn print_token(
    binary: Binary,
    settings: &Settings,
    args: &TokenArgs,
) -> Result<(), StartError> {
    let secret = match (&settings.auth.jwt_secret, binary) {
        (Some(secret), _) => secret.clone(),
        (None, Binary::Packages) => read_generated_secret().ok_or_else(|| {
            StartError::Usage(
                "no HS256 secret: set auth.jwt_secret, or start `packages` once to generate one"
                    .into(),
            )
        })?,
        (None, _) => {
            return Err(StartError::Usage(
                "no HS256 secret configured (auth.jwt_secret)".into(),
            ));
        }
    };
    let token = packages_auth::mint(
        &secret,
        &args.user,
        &args.scopes,
        &settings.auth.audience,
        Duration::from_secs(args.ttl),
    )
    .map_err(|e| StartError::Setup(format!("cannot mint a token: {e}")))?;
    println!("{token}");
    Ok(())
}
