//! RS256 tokens checked with UAA's keys from `/token_keys`, served by a local endpoint the
//! test controls: chosen by `kid`, fetched again on an unknown `kid` (rate-limited), the
//! PEM key as the fallback, and `iss` when required.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use packages_auth::{AuthFailure, Jwks, Verifier};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AUD: &str = "cloud_controller";
const KEY_1_PRIVATE: &str = include_str!("fixtures/rsa_private.pem");
const KEY_1_PUBLIC: &str = include_str!("fixtures/rsa_public.pem");
const KEY_1_JWK: &str = include_str!("fixtures/rsa_public.jwk.json");
const KEY_2_PRIVATE: &str = include_str!("fixtures/second_private.pem");
const KEY_2_JWK: &str = include_str!("fixtures/second_public.jwk.json");

/// A stand-in UAA serving `/token_keys`: the set it serves can change, and it counts
/// the fetches.
struct Uaa {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl Uaa {
    async fn start(keys: &[&str]) -> Uaa {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let uaa = Uaa {
            url,
            keys: Arc::new(Mutex::new(Value::Null)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        uaa.serve(keys);
        let (set, fetches) = (uaa.keys.clone(), uaa.fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (set, fetches) = (set.clone(), fetches.clone());
                tokio::spawn(async move {
                    let mut request = vec![0u8; 4096];
                    let n = stream.read(&mut request).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&request[..n]).into_owned();
                    let (status, body) = if head.starts_with("GET /token_keys ") {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", set.lock().unwrap().to_string())
                    } else {
                        ("404 Not Found", "{}".to_owned())
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        uaa
    }

    /// Serves these JWKs from now on.
    fn serve(&self, jwks: &[&str]) {
        let keys: Vec<Value> = jwks
            .iter()
            .map(|j| serde_json::from_str(j).unwrap())
            .collect();
        *self.keys.lock().unwrap() = json!({ "keys": keys });
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn claims() -> Value {
    json!({
        "user_id": "user-1",
        "scope": ["cloud_controller.read"],
        "aud": [AUD],
        "iss": "https://uaa.example/oauth/token",
        "exp": chrono::Utc::now().timestamp() + 600,
    })
}

fn rs256(private: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    format!(
        "bearer {}",
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    )
}

fn verifier(uaa: &Uaa, min_interval: Duration, pem: Option<&str>) -> Verifier {
    let jwks = Arc::new(Jwks::new(&uaa.url, min_interval));
    Verifier::with_uaa_keys(None, pem, jwks, AUD).unwrap()
}

#[tokio::test]
async fn a_rotated_key_is_fetched_without_a_restart() {
    let uaa = Uaa::start(&[KEY_1_JWK]).await;
    let verifier = verifier(&uaa, Duration::ZERO, None);
    let token = rs256(KEY_1_PRIVATE, Some("key-1"), &claims());
    let principal = verifier.verify_async(Some(&token)).await.unwrap();
    assert_eq!(principal.user_guid, "user-1");
    assert_eq!(uaa.fetches(), 1, "the first token fetched the set");
    verifier.verify_async(Some(&token)).await.unwrap();
    assert_eq!(uaa.fetches(), 1, "a known kid needs no fetch");

    // UAA rotates: the new key signs, the old one is gone.
    uaa.serve(&[KEY_2_JWK]);
    let rotated = rs256(KEY_2_PRIVATE, Some("key-2"), &claims());
    assert_eq!(
        verifier
            .verify_async(Some(&rotated))
            .await
            .unwrap()
            .user_guid,
        "user-1"
    );
    assert_eq!(uaa.fetches(), 2);
    assert!(
        verifier.verify_async(Some(&token)).await.is_err(),
        "a key UAA dropped no longer verifies"
    );

    // A token signed by another key than its kid names is refused.
    let lying = rs256(KEY_1_PRIVATE, Some("key-2"), &claims());
    assert_eq!(
        verifier.verify_async(Some(&lying)).await,
        Err(AuthFailure::Invalid("bad signature".into()))
    );
    // The sync check knows only configured keys (none here).
    assert!(verifier.verify(Some(&rotated)).is_err());
}

#[tokio::test]
async fn unknown_key_ids_fetch_at_most_once_per_interval() {
    let uaa = Uaa::start(&[KEY_1_JWK]).await;
    let verifier = verifier(&uaa, Duration::from_secs(3600), None);
    let token = rs256(KEY_1_PRIVATE, Some("key-1"), &claims());
    verifier.verify_async(Some(&token)).await.unwrap();
    for kid in ["invented-1", "invented-2", "invented-3"] {
        let forged = rs256(KEY_1_PRIVATE, Some(kid), &claims());
        assert_eq!(
            verifier.verify_async(Some(&forged)).await,
            Err(AuthFailure::Invalid("unknown signing key id".into()))
        );
    }
    assert_eq!(uaa.fetches(), 1, "invented kids fetched the set again");
    // Many at once share one fetch too.
    let uaa = Uaa::start(&[KEY_1_JWK]).await;
    let verifier = Arc::new(self::verifier(&uaa, Duration::from_secs(3600), None));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (verifier, token) = (verifier.clone(), token.clone());
        tasks.spawn(async move { verifier.verify_async(Some(&token)).await.is_ok() });
    }
    while let Some(ok) = tasks.join_next().await {
        assert!(ok.unwrap());
    }
    assert_eq!(uaa.fetches(), 1);
}

#[tokio::test]
async fn the_pem_key_is_the_fallback() {
    let uaa = Uaa::start(&[KEY_2_JWK]).await;
    let verifier = verifier(&uaa, Duration::ZERO, Some(KEY_1_PUBLIC));
    // A kid the set lacks, and no kid at all: both checked with the PEM key.
    for kid in [Some("key-1"), None] {
        let token = rs256(KEY_1_PRIVATE, kid, &claims());
        verifier.verify_async(Some(&token)).await.unwrap();
    }
    // UAA unreachable: the PEM key still works.
    let gone = Verifier::with_uaa_keys(
        None,
        Some(KEY_1_PUBLIC),
        Arc::new(Jwks::new("http://127.0.0.1:9", Duration::ZERO)),
        AUD,
    )
    .unwrap();
    let token = rs256(KEY_1_PRIVATE, Some("key-1"), &claims());
    gone.verify_async(Some(&token)).await.unwrap();
    // And an HS256 token never reaches UAA's keys.
    let before = uaa.fetches();
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("key-2".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims(),
        &EncodingKey::from_secret(KEY_1_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert!(
        verifier
            .verify_async(Some(&format!("bearer {hs}")))
            .await
            .is_err()
    );
    assert_eq!(uaa.fetches(), before);
}

#[tokio::test]
async fn a_required_issuer_is_checked_for_every_key() {
    let uaa = Uaa::start(&[KEY_1_JWK]).await;
    let verifier =
        verifier(&uaa, Duration::ZERO, None).require_issuer("https://uaa.example/oauth/token");
    let good = rs256(KEY_1_PRIVATE, Some("key-1"), &claims());
    verifier.verify_async(Some(&good)).await.unwrap();
    let mut other = claims();
    other["iss"] = json!("https://elsewhere.example/oauth/token");
    assert_eq!(
        verifier
            .verify_async(Some(&rs256(KEY_1_PRIVATE, Some("key-1"), &other)))
            .await,
        Err(AuthFailure::Invalid("issuer not accepted".into()))
    );
    let mut none = claims();
    none.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        verifier
            .verify_async(Some(&rs256(KEY_1_PRIVATE, Some("key-1"), &none)))
            .await,
        Err(AuthFailure::Invalid("missing iss claim".into()))
    );
    // The HS256 and PEM keys are held to it too.
    let secret = "uaa-symmetric-test-secret-of-32-bytes";
    let hs = Verifier::new(Some(secret), None, AUD)
        .unwrap()
        .require_issuer("https://uaa.example/oauth/token");
    let minted = packages_auth::mint(secret, "u", &[], AUD, Duration::from_secs(60)).unwrap();
    assert_eq!(
        hs.verify(Some(&format!("bearer {minted}"))),
        Err(AuthFailure::Invalid("issuer not accepted".into()))
    );
}

#[tokio::test]
async fn bad_key_sets_change_nothing() {
    let uaa = Uaa::start(&[KEY_1_JWK]).await;
    let verifier = verifier(&uaa, Duration::ZERO, None);
    let token = rs256(KEY_1_PRIVATE, Some("key-1"), &claims());
    verifier.verify_async(Some(&token)).await.unwrap();
    // A set that is not JSON leaves the keys as they were.
    *uaa.keys.lock().unwrap() = json!("not a key set");
    let unknown = rs256(KEY_1_PRIVATE, Some("key-9"), &claims());
    assert!(verifier.verify_async(Some(&unknown)).await.is_err());
    assert_eq!(uaa.fetches(), 2);
    verifier.verify_async(Some(&token)).await.unwrap();
}
