//! Token verification matrix: what is accepted, what is refused, and why.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use packages_auth::{AuthError, AuthFailure, Verifier, generate_secret, mint};
use packages_domain::Principal;
use serde_json::{Value, json};

const SECRET: &str = "uaa-symmetric-test-secret-of-32-bytes";
const AUD: &str = "cloud_controller";
const RSA_PRIVATE: &str = include_str!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/rsa_public.pem");
const OTHER_RSA_PUBLIC: &str = include_str!("fixtures/other_public.pem");

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn hs_only() -> Verifier {
    Verifier::new(Some(SECRET), None, AUD).unwrap()
}

fn rs_only() -> Verifier {
    Verifier::new(None, Some(RSA_PUBLIC), AUD).unwrap()
}

fn both() -> Verifier {
    Verifier::new(Some(SECRET), Some(RSA_PUBLIC), AUD).unwrap()
}

fn claims() -> Value {
    json!({
        "user_id": "user-1",
        "scope": ["cloud_controller.read", "cloud_controller.write"],
        "aud": [AUD],
        "exp": now() + 600,
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn rs(alg: Algorithm, claims: &Value) -> String {
    sign(
        &Header::new(alg),
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
}

fn bearer(token: &str) -> String {
    format!("bearer {token}")
}

fn reader_writer() -> Principal {
    Principal::new(
        "user-1",
        &["cloud_controller.read", "cloud_controller.write"],
    )
}

fn assert_invalid(verifier: &Verifier, header: &str) {
    match verifier.verify(Some(header)) {
        Err(AuthFailure::Invalid(_)) => {}
        other => panic!("{header:?} gave {other:?}, expected Invalid"),
    }
}

/// base64url segments by hand, for headers jsonwebtoken refuses to produce.
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[test]
fn minted_token_round_trips() {
    let scopes = vec![
        "cloud_controller.admin".to_owned(),
        "cloud_controller.read".to_owned(),
    ];
    let token = mint(SECRET, "user-42", &scopes, AUD, Duration::from_secs(300)).unwrap();
    let principal = hs_only().verify(Some(&bearer(&token))).unwrap();
    assert_eq!(principal, Principal::new("user-42", &scopes));
    assert!(principal.is_admin());

    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    assert_eq!(claims["user_id"], "user-42");
    assert_eq!(claims["sub"], "user-42");
    assert_eq!(claims["client_id"], "cf");
    assert_eq!(claims["iss"], "packages");
    assert_eq!(claims["aud"], json!([AUD]));
    assert_eq!(claims["scope"], json!(scopes));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);

    // Only the audience it was minted for accepts it.
    let elsewhere = Verifier::new(Some(SECRET), None, "other").unwrap();
    assert_invalid(&elsewhere, &bearer(&token));
}

#[test]
fn missing_or_empty_header_is_missing() {
    let v = both();
    assert_eq!(v.verify(None), Err(AuthFailure::Missing));
    assert_eq!(v.verify(Some("")), Err(AuthFailure::Missing));
    assert_eq!(v.verify(Some("   ")), Err(AuthFailure::Missing));
}

#[test]
fn garbage_and_other_schemes_are_invalid() {
    let v = both();
    for header in [
        "bearer garbage",
        "bearer a.b.c",
        "bearer ...",
        "bearer",
        "bearer   ",
        "Basic x",
        "Basic dXNlcjpwYXNz",
        "Token abc",
    ] {
        assert_invalid(&v, header);
    }
    // A valid token without a scheme, or behind the wrong one.
    let token = hs256(&claims());
    assert_invalid(&v, &token);
    assert_invalid(&v, &format!("Basic {token}"));
    assert_invalid(&v, &format!("bearer{token}"));
}

#[test]
fn scheme_is_case_insensitive() {
    let v = hs_only();
    let token = hs256(&claims());
    for scheme in ["bearer", "Bearer", "BEARER", "bEaReR"] {
        let principal = v.verify(Some(&format!("{scheme} {token}"))).unwrap();
        assert_eq!(principal, reader_writer(), "{scheme}");
    }
    assert_eq!(
        v.verify(Some(&format!("  Bearer \t {token}  "))).unwrap(),
        reader_writer()
    );
}

#[test]
fn expiry_is_enforced() {
    let v = hs_only();
    assert_invalid(
        &v,
        &bearer(&hs256(&with(claims(), "exp", json!(now() - 120)))),
    );
    assert_invalid(&v, &bearer(&hs256(&without(claims(), "exp"))));
    assert_invalid(&v, &bearer(&hs256(&with(claims(), "exp", json!("soon")))));
    // No leeway: a token that expired a moment ago is refused, one about to expire works.
    assert_invalid(
        &v,
        &bearer(&hs256(&with(claims(), "exp", json!(now() - 2)))),
    );
    let about_to_expire = with(claims(), "exp", json!(now() + 5));
    assert!(v.verify(Some(&bearer(&hs256(&about_to_expire)))).is_ok());
}

#[test]
fn not_before_in_the_future_is_refused() {
    let v = hs_only();
    assert_invalid(
        &v,
        &bearer(&hs256(&with(claims(), "nbf", json!(now() + 600)))),
    );
    let started = with(claims(), "nbf", json!(now() - 60));
    assert!(v.verify(Some(&bearer(&hs256(&started)))).is_ok());
}

#[test]
fn wrong_signature_is_invalid() {
    let v = both();
    let forged = sign(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"another-secret"),
    );
    assert_invalid(&v, &bearer(&forged));

    // Payload swapped under a genuine signature.
    let genuine = hs256(&claims());
    let admin = hs256(&with(claims(), "scope", json!(["cloud_controller.admin"])));
    let parts: Vec<&str> = genuine.split('.').collect();
    let admin_payload = admin.split('.').nth(1).unwrap();
    let spliced = format!("{}.{}.{}", parts[0], admin_payload, parts[2]);
    assert_invalid(&v, &bearer(&spliced));

    // Signature stripped.
    assert_invalid(&v, &bearer(&format!("{}.{}.", parts[0], parts[1])));
}

#[test]
fn alg_none_is_invalid() {
    let v = both();
    for alg in ["none", "None", "NONE"] {
        let token = raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims(), b"");
        assert_invalid(&v, &bearer(&token));
    }
}

#[test]
fn other_algorithms_are_invalid_even_with_the_right_key() {
    let v = both();
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(
            &Header::new(alg),
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert!(hs_only_accepts_with_family(&token, alg));
        assert_invalid(&v, &bearer(&token));
    }
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        assert_invalid(&v, &bearer(&rs(alg, &claims())));
    }
    // ES256 never gets to a key: the algorithm alone decides.
    let es = raw_token(&json!({"alg": "ES256", "typ": "JWT"}), &claims(), &[1; 64]);
    assert_invalid(&v, &bearer(&es));
}

/// The HS384/HS512 tokens above are correctly signed: a verification configured for that
/// algorithm accepts them, so the refusal is the algorithm pin and nothing else.
fn hs_only_accepts_with_family(token: &str, alg: Algorithm) -> bool {
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_audience(&[AUD]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .is_ok()
}

#[test]
fn audience_must_contain_ours() {
    let v = hs_only();
    assert_invalid(&v, &bearer(&hs256(&with(claims(), "aud", json!("other")))));
    assert_invalid(
        &v,
        &bearer(&hs256(&with(claims(), "aud", json!(["a", "b"])))),
    );
    assert_invalid(&v, &bearer(&hs256(&with(claims(), "aud", json!([])))));
    assert_invalid(&v, &bearer(&hs256(&without(claims(), "aud"))));

    for aud in [
        json!(AUD),
        json!([AUD]),
        json!(["openid", AUD, "password", "scim"]),
    ] {
        let token = hs256(&with(claims(), "aud", aud.clone()));
        assert_eq!(
            v.verify(Some(&bearer(&token))).unwrap(),
            reader_writer(),
            "{aud}"
        );
    }
}

#[test]
fn rs256_with_a_real_key_pair() {
    let token = rs(Algorithm::RS256, &claims());
    assert_eq!(
        rs_only().verify(Some(&bearer(&token))).unwrap(),
        reader_writer()
    );
    assert_eq!(
        both().verify(Some(&bearer(&token))).unwrap(),
        reader_writer()
    );

    let other = Verifier::new(None, Some(OTHER_RSA_PUBLIC), AUD).unwrap();
    assert_invalid(&other, &bearer(&token));
    assert_invalid(
        &rs_only(),
        &bearer(&rs(
            Algorithm::RS256,
            &with(claims(), "exp", json!(now() - 120)),
        )),
    );
}

#[test]
fn rs256_when_only_hs256_is_configured_is_invalid() {
    assert_invalid(&hs_only(), &bearer(&rs(Algorithm::RS256, &claims())));
}

#[test]
fn hs256_when_only_rs256_is_configured_is_invalid() {
    assert_invalid(&rs_only(), &bearer(&hs256(&claims())));
}

#[test]
fn hs256_signed_with_the_public_key_is_invalid() {
    let confused = sign(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    );
    assert_invalid(&rs_only(), &bearer(&confused));
    assert_invalid(&both(), &bearer(&confused));

    // The token itself is well formed: a verifier whose HMAC secret is that text accepts
    // it, so the refusals above come from the algorithm pin.
    let pem_as_secret = Verifier::new(Some(RSA_PUBLIC), None, AUD).unwrap();
    assert_eq!(
        pem_as_secret.verify(Some(&bearer(&confused))).unwrap(),
        reader_writer()
    );
    // And configuring the public key as the secret too is refused outright.
    assert!(matches!(
        Verifier::new(Some(RSA_PUBLIC), Some(RSA_PUBLIC), AUD),
        Err(AuthError::SecretIsPublicKey)
    ));
}

#[test]
fn uaa_style_tokens_are_accepted() {
    let uaa = json!({
        "jti": "6c5a9b2e1f3d4c8a9b7e6d5c4b3a2f1e",
        "sub": "user-1",
        "scope": ["cloud_controller.read", "cloud_controller.write", "openid"],
        "client_id": "cf",
        "cid": "cf",
        "azp": "cf",
        "grant_type": "password",
        "user_id": "user-1",
        "origin": "uaa",
        "user_name": "admin",
        "email": "admin@example.org",
        "auth_time": now() - 60,
        "rev_sig": "a1b2c3d4",
        "iat": now() - 60,
        "exp": now() + 600,
        "iss": "https://uaa.example.org/oauth/token",
        "zid": "uaa",
        "aud": ["scim", "cloud_controller", "password", "cf", "uaa", "openid"],
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-1".into());
    let token = sign(
        &header,
        &uaa,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    );
    let expected = Principal::new(
        "user-1",
        &["cloud_controller.read", "cloud_controller.write"],
    );
    assert_eq!(rs_only().verify(Some(&bearer(&token))).unwrap(), expected);

    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("legacy-token-key".into());
    let token = sign(&header, &uaa, &EncodingKey::from_secret(SECRET.as_bytes()));
    assert_eq!(
        both().verify(Some(&format!("Bearer {token}"))).unwrap(),
        expected
    );
}

#[test]
fn user_falls_back_to_client_id() {
    let v = hs_only();
    let client = with(
        without(claims(), "user_id"),
        "client_id",
        json!("ci-client"),
    );
    let principal = v.verify(Some(&bearer(&hs256(&client)))).unwrap();
    assert_eq!(principal.user_guid, "ci-client");

    // user_id wins when both are present.
    let both_ids = with(claims(), "client_id", json!("cf"));
    assert_eq!(
        v.verify(Some(&bearer(&hs256(&both_ids))))
            .unwrap()
            .user_guid,
        "user-1"
    );
}

#[test]
fn token_without_a_user_is_invalid() {
    let v = hs_only();
    assert_invalid(&v, &bearer(&hs256(&without(claims(), "user_id"))));
    assert_invalid(&v, &bearer(&hs256(&with(claims(), "user_id", json!("")))));
    assert_invalid(&v, &bearer(&hs256(&with(claims(), "user_id", json!(42)))));
}

#[test]
fn scope_must_be_an_array() {
    let v = hs_only();
    let principal = v
        .verify(Some(&bearer(&hs256(&without(claims(), "scope")))))
        .unwrap();
    assert_eq!(principal, Principal::new("user-1", &[] as &[&str]));
    assert!(!principal.may_read() && !principal.may_write());

    assert_invalid(
        &v,
        &bearer(&hs256(&with(
            claims(),
            "scope",
            json!("cloud_controller.read cloud_controller.write"),
        ))),
    );
    assert_invalid(&v, &bearer(&hs256(&with(claims(), "scope", json!([1, 2])))));
}

#[test]
fn mint_needs_a_usable_secret() {
    for secret in ["", "   "] {
        assert!(matches!(
            mint(secret, "u", &[], AUD, Duration::from_secs(60)),
            Err(AuthError::NoSecret)
        ));
    }
}

#[test]
fn generated_secrets_are_random_and_usable() {
    let a = generate_secret();
    let b = generate_secret();
    assert_ne!(a, b);
    assert_eq!(a.len(), 64);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));

    let token = mint(&a, "u", &[], AUD, Duration::from_secs(60)).unwrap();
    let v = Verifier::new(Some(&a), None, AUD).unwrap();
    assert_eq!(v.verify(Some(&bearer(&token))).unwrap().user_guid, "u");
    let other = Verifier::new(Some(&b), None, AUD).unwrap();
    assert_invalid(&other, &bearer(&token));
}

#[test]
fn bad_configuration_is_refused() {
    assert!(matches!(
        Verifier::new(None, None, AUD),
        Err(AuthError::NoKey)
    ));
    assert!(matches!(
        Verifier::new(Some(""), None, AUD),
        Err(AuthError::EmptySecret)
    ));
    assert!(matches!(
        Verifier::new(Some("31-bytes-31-bytes-31-bytes-3133"), None, AUD),
        Err(AuthError::ShortSecret(31))
    ));
    assert!(matches!(
        Verifier::new(Some(SECRET), None, " "),
        Err(AuthError::EmptyAudience)
    ));
    for pem in [
        "not a pem",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        RSA_PRIVATE,
    ] {
        assert!(
            matches!(
                Verifier::new(None, Some(pem), AUD),
                Err(AuthError::InvalidPublicKey(_))
            ),
            "{pem}"
        );
    }
    // The PEM may come with surrounding whitespace from a config file.
    assert!(Verifier::new(None, Some(&format!("\n{RSA_PUBLIC}\n\n")), AUD).is_ok());
}
