//! Where to talk to and with which token: flags first, then `PACKAGES_API` and
//! `PACKAGES_TOKEN`, then the cf CLI's own config file (`$CF_HOME/.cf/config.json`, else
//! `~/.cf/config.json`: `Target` and `AccessToken`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::ClientError;

/// What the command line said; `None` when the flag is absent.
#[derive(Debug, Clone, Default)]
pub struct TargetFlags {
    pub api: Option<String>,
    pub token: Option<String>,
}

/// The API's base URL (no trailing `/`) and a bearer token (without `bearer `).
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub api: String,
    pub token: String,
}

impl std::fmt::Debug for Target {
    // A token is a credential: never in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// The fields of the cf CLI's config that matter here.
#[derive(Debug, Default, Deserialize)]
struct CfConfig {
    #[serde(rename = "Target", default)]
    target: String,
    #[serde(rename = "AccessToken", default)]
    access_token: String,
}

impl Target {
    /// Resolves the target from `flags`, then the environment (read through `env`), then
    /// the cf CLI's config file. The cf CLI's token is only used for the cf CLI's own
    /// target: `--api https://elsewhere` must not carry the user's cf credential there.
    pub fn resolve(
        flags: &TargetFlags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Target, ClientError> {
        let given = |flag: &Option<String>, name: &str| {
            flag.clone()
                .or_else(|| env(name))
                .filter(|v| !v.trim().is_empty())
        };
        let api = given(&flags.api, "PACKAGES_API");
        let token = given(&flags.token, "PACKAGES_TOKEN");
        // The file is only read when something is missing: a broken cf config does not
        // stand in the way of flags or environment.
        let cf = if api.is_none() || token.is_none() {
            cf_config(env)?
        } else {
            None
        };
        let cf_api = cf
            .as_ref()
            .map(|c| normalise_api(&c.target))
            .filter(|t| !t.is_empty());
        let api = match api {
            Some(api) => normalise_api(&api),
            None => cf_api.clone().ok_or(ClientError::NoApi)?,
        };
        let token = match token {
            Some(token) => token,
            None => cf
                .filter(|_| cf_api.as_deref() == Some(api.as_str()))
                .map(|c| c.access_token)
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| ClientError::NoToken { api: api.clone() })?,
        };
        Ok(Target {
            api,
            token: strip_bearer(&token),
        })
    }
}

fn normalise_api(api: &str) -> String {
    api.trim().trim_end_matches('/').to_owned()
}

/// The cf CLI stores `bearer eyJ…`; a token pasted from elsewhere may carry it too.
fn strip_bearer(token: &str) -> String {
    let token = token.trim();
    match token.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim().to_owned(),
        _ => token.to_owned(),
    }
}

/// The cf CLI's config, `None` when there is no such file.
fn cf_config(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<CfConfig>, ClientError> {
    let Some(home) = env("CF_HOME")
        .or_else(|| env("HOME"))
        .filter(|h| !h.is_empty())
    else {
        return Ok(None);
    };
    let path = PathBuf::from(home).join(".cf").join("config.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ClientError::CfConfig {
                path,
                detail: e.to_string(),
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| ClientError::CfConfig {
            path,
            detail: format!("not the cf CLI's config: {e}"),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(
        flags: (Option<&str>, Option<&str>),
        vars: &[(&str, &str)],
    ) -> Result<Target, ClientError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let flags = TargetFlags {
            api: flags.0.map(str::to_owned),
            token: flags.1.map(str::to_owned),
        };
        Target::resolve(&flags, &|name: &str| vars.get(name).cloned())
    }

    fn cf_home(config: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".cf")).unwrap();
        std::fs::write(home.path().join(".cf/config.json"), config).unwrap();
        home
    }

    fn target(api: &str, token: &str) -> Target {
        Target {
            api: api.into(),
            token: token.into(),
        }
    }

    #[test]
    fn flags_come_before_the_environment_and_the_cf_config() {
        let home = cf_home(r#"{"Target":"https://cf.example","AccessToken":"bearer cf-token"}"#);
        let h = home.path().to_str().unwrap();
        let env = [
            ("PACKAGES_API", "http://env.example"),
            ("PACKAGES_TOKEN", "env-token"),
            ("HOME", h),
        ];
        assert_eq!(
            resolve((Some("http://flag.example/"), Some("flag-token")), &env).unwrap(),
            target("http://flag.example", "flag-token")
        );
        assert_eq!(
            resolve((None, None), &env).unwrap(),
            target("http://env.example", "env-token")
        );
        // Each value on its own: a flag for one, the environment for the other.
        assert_eq!(
            resolve((None, Some("flag-token")), &env).unwrap(),
            target("http://env.example", "flag-token")
        );
        assert_eq!(
            resolve((None, None), &[("HOME", h)]).unwrap(),
            target("https://cf.example", "cf-token")
        );
    }

    #[test]
    fn the_cf_token_only_goes_to_the_cf_target() {
        let home = cf_home(r#"{"Target":"https://cf.example/","AccessToken":"bearer cf-token"}"#);
        let h = home.path().to_str().unwrap();
        assert_eq!(
            resolve((Some("https://cf.example"), None), &[("HOME", h)]).unwrap(),
            target("https://cf.example", "cf-token")
        );
        let err = resolve((Some("https://elsewhere.example"), None), &[("HOME", h)]).unwrap_err();
        assert!(matches!(err, ClientError::NoToken { .. }), "{err}");
        assert!(
            err.to_string().contains("https://elsewhere.example"),
            "{err}"
        );
    }

    #[test]
    fn cf_home_comes_before_home() {
        let cf = cf_home(r#"{"Target":"https://cf-home.example","AccessToken":"a"}"#);
        let home = cf_home(r#"{"Target":"https://home.example","AccessToken":"b"}"#);
        let vars = [
            ("CF_HOME", cf.path().to_str().unwrap()),
            ("HOME", home.path().to_str().unwrap()),
        ];
        assert_eq!(
            resolve((None, None), &vars).unwrap(),
            target("https://cf-home.example", "a")
        );
    }

    #[test]
    fn missing_or_empty_values_are_named() {
        let nothing = tempfile::tempdir().unwrap();
        let h = nothing.path().to_str().unwrap();
        assert!(matches!(
            resolve((None, Some("t")), &[("HOME", h)]).unwrap_err(),
            ClientError::NoApi
        ));
        assert!(matches!(
            resolve((None, Some("t")), &[("HOME", h), ("PACKAGES_API", " ")]).unwrap_err(),
            ClientError::NoApi
        ));
        // Logged out: cf keeps the target and empties the token.
        let logged_out = cf_home(r#"{"Target":"https://cf.example","AccessToken":""}"#);
        let err = resolve(
            (None, None),
            &[("HOME", logged_out.path().to_str().unwrap())],
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::NoToken { .. }), "{err}");
    }

    #[test]
    fn a_broken_cf_config_is_reported_only_when_needed() {
        let home = cf_home("{not json");
        let h = home.path().to_str().unwrap();
        let err = resolve((None, None), &[("HOME", h)]).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        assert_eq!(
            resolve((Some("http://a"), Some("t")), &[("HOME", h)]).unwrap(),
            target("http://a", "t")
        );
    }

    #[test]
    fn a_bearer_prefix_is_stripped_whatever_its_case() {
        for given in ["bearer abc", "Bearer abc", "BEARER  abc ", "abc"] {
            assert_eq!(
                resolve((Some("http://a"), Some(given)), &[]).unwrap().token,
                "abc"
            );
        }
    }
}
