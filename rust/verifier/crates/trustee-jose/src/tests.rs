use super::*;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey as SigKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// A guest key: its private half and its JWK coordinates (decoded).
fn guest(curve: Curve) -> (PrivateKey, Vec<u8>, Vec<u8>) {
    let key = PrivateKey::generate(curve.agreement()).unwrap();
    let point = key.compute_public_key().unwrap();
    let n = curve.coordinate_len();
    let p = point.as_ref();
    (key, p[1..1 + n].to_vec(), p[1 + n..].to_vec())
}

/// What a guest does: ECDH with the header's epk, unwrap the content key, open the GCM.
fn open(jwe: &Jwe, curve: Curve, key: &PrivateKey) -> Vec<u8> {
    let header: String = String::from_utf8(unb64(&jwe.protected)).unwrap();
    let field = |name: &str| {
        let start = header.find(&format!("\"{name}\":\"")).unwrap() + name.len() + 4;
        let end = start + header[start..].find('"').unwrap();
        header[start..end].to_owned()
    };
    let mut epk = vec![4u8];
    epk.extend(unb64(&field("x")));
    epk.extend(unb64(&field("y")));
    let kek = agreement::agree(
        key,
        UnparsedPublicKey::new(curve.agreement(), &epk),
        (),
        |z| Ok(concat_kdf_256(z, KEY_ALG)),
    )
    .unwrap();
    let mut cek = [0u8; 32];
    AesKek::new(&AES_256, &kek)
        .unwrap()
        .unwrap(&unb64(&jwe.encrypted_key), &mut cek)
        .unwrap();
    let opener = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).unwrap());
    let mut data = unb64(&jwe.ciphertext);
    data.extend(unb64(&jwe.tag));
    let iv: [u8; 12] = unb64(&jwe.iv).try_into().unwrap();
    opener
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(jwe.protected.as_bytes()),
            &mut data,
        )
        .unwrap()
        .to_vec()
}

#[test]
fn p256_and_p521_round_trip() {
    for curve in [Curve::P256, Curve::P521] {
        let (key, x, y) = guest(curve);
        let jwe = ecdh_es_a256kw(curve, &x, &y, b"the secret", &Fixed::default()).unwrap();
        assert_eq!(open(&jwe, curve, &key), b"the secret");
        let header = String::from_utf8(unb64(&jwe.protected)).unwrap();
        let prefix = format!(
            r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{{"crv":"{}","kty":"EC","x":""#,
            curve.jwk_name()
        );
        assert!(header.starts_with(&prefix), "{header}");
        assert_eq!(unb64(&jwe.encrypted_key).len(), 40);
        assert_eq!(unb64(&jwe.iv).len(), 12);
        assert_eq!(unb64(&jwe.tag).len(), 16);
    }
}

#[test]
fn fresh_ephemeral_key_content_key_and_iv_every_time() {
    let (_, x, y) = guest(Curve::P256);
    let a = ecdh_es_a256kw(Curve::P256, &x, &y, b"s", &Fixed::default()).unwrap();
    let b = ecdh_es_a256kw(Curve::P256, &x, &y, b"s", &Fixed::default()).unwrap();
    assert_ne!(a.protected, b.protected);
    assert_ne!(a.encrypted_key, b.encrypted_key);
    assert_ne!(a.iv, b.iv);
}

#[test]
fn fixed_values_give_identical_output() {
    let (_, x, y) = guest(Curve::P256);
    let scalar = [7u8; 32];
    let fixed = Fixed {
        cek: Some(&[1u8; 32]),
        iv: Some(&[2u8; 12]),
        ephemeral: Some(&scalar),
    };
    let a = ecdh_es_a256kw(Curve::P256, &x, &y, b"s", &fixed).unwrap();
    let b = ecdh_es_a256kw(Curve::P256, &x, &y, b"s", &fixed).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.iv, b64(&[2u8; 12]));
}

#[test]
fn bad_guest_keys_and_fixed_values_are_named() {
    let (_, x, y) = guest(Curve::P256);
    let err = ecdh_es_a256kw(Curve::P256, &[1u8; 31], &y, b"s", &Fixed::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "TEE public key is invalid: EC JWK coordinate 'x' is 31 bytes; P-256 needs exactly 32 \
         (big-endian, left-padded with zeros)"
    );
    // (x, x) is not a point of the curve (for all but a negligible set of x).
    let err = ecdh_es_a256kw(Curve::P256, &x, &x, b"s", &Fixed::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "TEE public key is invalid: EC JWK point is not on curve P-256"
    );
    // A P-256 point given as P-521 coordinates is the wrong size.
    assert!(matches!(
        ecdh_es_a256kw(Curve::P521, &x, &y, b"s", &Fixed::default()),
        Err(JoseError::PeerKey(_))
    ));
    let fixed = Fixed {
        iv: Some(&[0u8; 8]),
        ..Fixed::default()
    };
    let err = ecdh_es_a256kw(Curve::P256, &x, &y, b"s", &fixed).unwrap_err();
    assert_eq!(err.to_string(), "a fixed iv must be 12 bytes, got 8");
}

#[test]
fn curve_names() {
    assert_eq!(Curve::from_jwk_name("P-256"), Some(Curve::P256));
    assert_eq!(Curve::from_jwk_name("P-521"), Some(Curve::P521));
    assert_eq!(Curve::from_jwk_name("P-384"), None);
}

#[test]
fn concat_kdf_depends_on_secret_and_algorithm() {
    let a = concat_kdf_256(&[1u8; 32], KEY_ALG);
    assert_ne!(a, concat_kdf_256(&[2u8; 32], KEY_ALG));
    assert_ne!(a, concat_kdf_256(&[1u8; 32], "ECDH-ES"));
}

#[test]
fn es256_signatures_verify_and_differ() {
    let rng = SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref()).unwrap();
    let signer = Es256Signer::from_pkcs8(der.as_ref()).unwrap();
    let jws = signer.sign_compact("aGVhZGVy.cGF5bG9hZA").unwrap();
    let (input, sig) = jws.rsplit_once('.').unwrap();
    assert_eq!(input, "aGVhZGVy.cGF5bG9hZA");
    let sig = unb64(sig);
    assert_eq!(sig.len(), 64);
    SigKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())
        .verify(input.as_bytes(), &sig)
        .unwrap();
    assert_ne!(signer.sign(b"m").unwrap(), signer.sign(b"m").unwrap());
}

#[test]
fn non_p256_signing_keys_are_refused() {
    let err = Es256Signer::from_pkcs8(b"not a key").unwrap_err();
    assert!(err
        .to_string()
        .starts_with("signing key: not a P-256 PKCS#8 key"));
}
