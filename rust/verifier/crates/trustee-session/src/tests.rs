use super::*;

const NOW: u64 = 1_800_000_000;

fn ring(keys: &[[u8; 32]]) -> Keyring {
    Keyring::new(keys).unwrap()
}

fn raw(cookie: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(cookie).unwrap()
}

#[test]
fn round_trip_small_and_compressible() {
    let r = ring(&[[7; 32]]);
    for payload in [
        b"".to_vec(),
        b"{\"t\":\"sample\"}".to_vec(),
        b"claims ".repeat(2000),
    ] {
        let cookie = r.seal(NOW + 300, &payload).unwrap();
        let opened = r.open(&cookie, NOW).unwrap();
        assert_eq!(opened.payload, payload);
        assert_eq!(opened.expires_at, NOW + 300);
    }
}

#[test]
fn compression_applies_only_when_it_pays() {
    let r = ring(&[[7; 32]]);
    let repetitive = b"abcdefgh".repeat(500);
    let cookie = r.seal(NOW + 1, &repetitive).unwrap();
    assert_eq!(raw(&cookie)[HEADER_BYTES - 1], FLAG_DEFLATE);
    assert!(cookie.len() < repetitive.len() / 4);
    let mut random = vec![0u8; 1000];
    fill(&mut random).unwrap();
    let cookie = r.seal(NOW + 1, &random).unwrap();
    assert_eq!(raw(&cookie)[HEADER_BYTES - 1], 0);
    assert_eq!(raw(&cookie).len(), random.len() + OVERHEAD);
}

#[test]
fn every_altered_byte_is_refused() {
    let r = ring(&[[7; 32]]);
    let cookie = r.seal(NOW + 60, b"the session state, long enough").unwrap();
    let bytes = raw(&cookie);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let err = r.open(&URL_SAFE_NO_PAD.encode(&bad), NOW).unwrap_err();
        match i {
            0 => assert_eq!(err, SessionError::Malformed("unknown format version")),
            1..=4 => assert!(matches!(err, SessionError::UnknownKey(_)), "{i}: {err:?}"),
            _ => assert_eq!(err, SessionError::Tampered, "byte {i}"),
        }
    }
}

#[test]
fn expiry_is_checked_after_authentication() {
    let r = ring(&[[7; 32]]);
    let cookie = r.seal(NOW, b"x").unwrap();
    assert_eq!(r.open(&cookie, NOW), Err(SessionError::Expired(NOW)));
    assert!(r.open(&cookie, NOW - 1).is_ok());
    // Pushing the expiry forward breaks the tag.
    let mut bad = raw(&cookie);
    bad[5..13].copy_from_slice(&(NOW + 3600).to_be_bytes());
    assert_eq!(
        r.open(&URL_SAFE_NO_PAD.encode(&bad), NOW),
        Err(SessionError::Tampered)
    );
}

#[test]
fn foreign_key_and_rotation() {
    let old = ring(&[[1; 32]]);
    let other = ring(&[[2; 32]]);
    let rotated = ring(&[[3; 32], [1; 32]]);
    let sealed_old = old.seal(NOW + 60, b"before rotation").unwrap();
    assert!(matches!(
        other.open(&sealed_old, NOW),
        Err(SessionError::UnknownKey(_))
    ));
    assert_eq!(
        rotated.open(&sealed_old, NOW).unwrap().payload,
        b"before rotation"
    );
    let sealed_new = rotated.seal(NOW + 60, b"after").unwrap();
    assert_eq!(raw(&sealed_new)[1..5], key_id(&[3; 32]));
    assert!(matches!(
        old.open(&sealed_new, NOW),
        Err(SessionError::UnknownKey(_))
    ));
}

#[test]
fn a_key_id_collision_in_the_header_still_needs_the_key() {
    // Same key id, different key material cannot happen by construction; a forged header
    // naming our key id with someone else's ciphertext fails authentication.
    let ours = ring(&[[1; 32]]);
    let theirs = ring(&[[2; 32]]);
    let mut forged = raw(&theirs.seal(NOW + 60, b"forged").unwrap());
    forged[1..5].copy_from_slice(&key_id(&[1; 32]));
    assert_eq!(
        ours.open(&URL_SAFE_NO_PAD.encode(&forged), NOW),
        Err(SessionError::Tampered)
    );
}

#[test]
fn malformed_inputs() {
    let r = ring(&[[7; 32]]);
    for (cookie, why) in [
        ("", "shorter than a sealed session"),
        ("not*base64", "not base64url"),
        ("AAAA", "shorter than a sealed session"),
        (
            "0123456789abcdef0123456789abcdef",
            "shorter than a sealed session",
        ),
    ] {
        assert_eq!(r.open(cookie, NOW), Err(SessionError::Malformed(why)));
    }
    let long = "A".repeat(MAX_COOKIE_CHARS + 1);
    assert_eq!(
        r.open(&long, NOW),
        Err(SessionError::Malformed("longer than any sealed session"))
    );
}

#[test]
fn key_validation() {
    assert!(matches!(
        Keyring::new::<[u8; 32]>(&[]),
        Err(SessionError::Key(_))
    ));
    assert!(matches!(
        Keyring::new(&[vec![0u8; 16]]),
        Err(SessionError::Key(_))
    ));
    assert!(matches!(
        Keyring::new(&[[1u8; 32], [1u8; 32]]),
        Err(SessionError::Key(_))
    ));
    let r = ring(&[[9; 32]]);
    assert_eq!(r.sealing_key_id().len(), 8);
    assert!(!format!("{r:?}").contains("090909"));
}

#[test]
fn payload_bound() {
    let r = ring(&[[7; 32]]);
    let big = vec![b'a'; MAX_PAYLOAD_BYTES + 1];
    assert_eq!(
        r.seal(NOW + 1, &big),
        Err(SessionError::TooLarge(MAX_PAYLOAD_BYTES + 1))
    );
}

#[test]
fn nonces_differ() {
    let r = ring(&[[7; 32]]);
    let a = r.seal(NOW + 1, b"same").unwrap();
    let b = r.seal(NOW + 1, b"same").unwrap();
    assert_ne!(a, b);
}
