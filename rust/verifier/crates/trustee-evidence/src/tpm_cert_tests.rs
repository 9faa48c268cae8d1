//! AK certificates (our extension to `tpm` evidence): test CAs built here sign certificates
//! for the AK of the quotes `tpm_tests` synthesizes.

use std::str::FromStr as _;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use der::asn1::{AnyRef, BitString, ObjectIdentifier, OctetString, UtcTime};
use der::{Decode as _, Encode as _};
use serde_json::{json, Value};
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::tests::{evidence, padded_nonce, NONCE};
use crate::{HardwareOptions, Inputs, TpmAkRoots, Verifiers};
use trustee_vtpm::MAX_AK_CERT;

const NOW: u64 = 1_800_000_000;
const VALID: (u64, u64) = (NOW - 86_400, NOW + 365 * 86_400);

enum Key {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
}

impl Key {
    fn spki(&self) -> Vec<u8> {
        match self {
            Key::Rsa(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
            Key::P256(k) | Key::P384(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
        }
    }

    fn algorithm(&self) -> AlgorithmIdentifierOwned {
        let (oid, parameters) = match self {
            Key::Rsa(_) => ("1.2.840.113549.1.1.11", Some(AnyRef::NULL.into())),
            Key::P256(_) => ("1.2.840.10045.4.3.2", None),
            Key::P384(_) => ("1.2.840.10045.4.3.3", None),
        };
        AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap(oid),
            parameters,
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Key::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).unwrap();
                sig
            }
            Key::P256(k) | Key::P384(k) => k.sign(&rng, message).unwrap().as_ref().to_vec(),
        }
    }
}

struct Ca {
    key: Key,
    name: &'static str,
    cert: Vec<u8>,
}

fn time(secs: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
}

/// A certificate for `spki` named `subject`, signed by `issuer` (self-signed when `None`,
/// then with `key`).
fn certificate(
    subject: &str,
    spki: &[u8],
    issuer: (&str, &Key),
    ca: bool,
    validity: (u64, u64),
) -> Vec<u8> {
    let constraints = BasicConstraints {
        ca,
        path_len_constraint: None,
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[0x01, 0x02]).unwrap(),
        signature: issuer.1.algorithm(),
        issuer: Name::from_str(issuer.0).unwrap(),
        validity: Validity {
            not_before: time(validity.0),
            not_after: time(validity.1),
        },
        subject: Name::from_str(subject).unwrap(),
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spki).unwrap(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![Extension {
            extn_id: ObjectIdentifier::new_unwrap("2.5.29.19"),
            critical: true,
            extn_value: OctetString::new(constraints.to_der().unwrap()).unwrap(),
        }]),
    };
    let signature = issuer.1.sign(&tbs.to_der().unwrap());
    Certificate {
        signature_algorithm: tbs.signature.clone(),
        tbs_certificate: tbs,
        signature: BitString::from_bytes(&signature).unwrap(),
    }
    .to_der()
    .unwrap()
}

impl Ca {
    fn root(name: &'static str, key: Key) -> Self {
        let cert = certificate(name, &key.spki(), (name, &key), true, VALID);
        Ca { key, name, cert }
    }

    fn issue(&self, name: &'static str, key: Key) -> Self {
        let cert = certificate(name, &key.spki(), (self.name, &self.key), true, VALID);
        Ca { key, name, cert }
    }

    fn certify(&self, subject: &str, spki: &[u8], validity: (u64, u64)) -> Vec<u8> {
        certificate(subject, spki, (self.name, &self.key), false, validity)
    }
}

fn rsa() -> Key {
    Key::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
}

fn p256() -> Key {
    Key::P256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
}

fn p384() -> Key {
    Key::P384(EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).unwrap())
}

fn ak_spki(ev: &Value) -> Vec<u8> {
    STANDARD.decode(ev["ak_public"].as_str().unwrap()).unwrap()
}

fn with_cert(ev: &Value, cert: &[u8], chain: &[&[u8]]) -> Value {
    let mut ev = ev.clone();
    ev["ak_cert"] = json!(STANDARD.encode(cert));
    ev["ak_cert_chain"] = json!(chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>());
    ev
}

fn verifiers(roots: &[&Ca]) -> Verifiers {
    let der: Vec<Vec<u8>> = roots.iter().map(|r| r.cert.clone()).collect();
    Verifiers::new(HardwareOptions {
        tpm_ak_roots: TpmAkRoots::from_der(&der).unwrap(),
        ..HardwareOptions::default()
    })
}

fn verify(v: &Verifiers, ev: &Value) -> Result<Value, String> {
    let inputs = Inputs {
        now_unix: i64::try_from(NOW).unwrap(),
        ..Inputs::default()
    };
    let bytes = serde_json::to_vec(ev).unwrap();
    v.verify("tpm", &bytes, Some(NONCE), None, &inputs)
        .map(|mut out| out.remove(0).0)
        .map_err(|e| e.to_string())
}

/// A root (P-384), an intermediate (RSA) and a leaf for the AK of RSA evidence.
struct Fixture {
    root: Ca,
    intermediate: Ca,
    ev: Value,
    leaf: Vec<u8>,
}

fn fixture() -> Fixture {
    let root = Ca::root("CN=TPM Test Root,O=Trustee Test", p384());
    let intermediate = root.issue("CN=TPM Test Manufacturing CA", rsa());
    let ev = evidence(false, &padded_nonce(), &[0; 32]);
    let leaf = intermediate.certify("CN=AK 0001,O=Trustee Test", &ak_spki(&ev), VALID);
    Fixture {
        root,
        intermediate,
        ev,
        leaf,
    }
}

#[test]
fn ak_certificate_through_an_intermediate_to_a_configured_root_certifies_the_ak() {
    let f = fixture();
    let ev = with_cert(&f.ev, &f.leaf, &[&f.intermediate.cert]);
    let claims = verify(&verifiers(&[&f.root]), &ev).unwrap();
    assert_eq!(claims["ak_certified"], true);
    assert_eq!(claims["ak_cert_subject"], "CN=AK 0001,O=Trustee Test");
    assert_eq!(claims["ak_cert_issuer"], "CN=TPM Test Manufacturing CA");
    assert_eq!(claims["ak_cert_not_after"], "2028-01-15T08:00:00Z");
    assert_eq!(claims["ak_public"], f.ev["ak_public"]);
    // A chain that includes the root itself ends at it too.
    let ev = with_cert(&f.ev, &f.leaf, &[&f.intermediate.cert, &f.root.cert]);
    assert_eq!(
        verify(&verifiers(&[&f.root]), &ev).unwrap()["ak_certified"],
        true
    );
}

#[test]
fn p256_ak_certified_directly_by_an_rsa_root() {
    let root = Ca::root("CN=RSA Root", rsa());
    let ev = evidence(true, &padded_nonce(), &[0; 32]);
    let leaf = root.certify("CN=EC AK", &ak_spki(&ev), VALID);
    let claims = verify(&verifiers(&[&root]), &with_cert(&ev, &leaf, &[])).unwrap();
    assert_eq!(claims["ak_certified"], true);
    assert_eq!(claims["ak_cert_issuer"], "CN=RSA Root");
}

#[test]
fn without_configured_roots_the_chain_is_checked_but_not_certified() {
    let f = fixture();
    let ev = with_cert(&f.ev, &f.leaf, &[&f.intermediate.cert]);
    let claims = verify(&verifiers(&[]), &ev).unwrap();
    assert_eq!(claims["ak_certified"], false);
    assert!(claims.get("ak_cert_subject").is_none(), "{claims}");
    // Still checked: a certificate for another key is refused.
    let other = f.intermediate.certify("CN=AK", &p256().spki(), VALID);
    let err = verify(&verifiers(&[]), &with_cert(&f.ev, &other, &[])).unwrap_err();
    assert!(err.contains("is not the quote's AK"), "{err}");
}

#[test]
fn configured_roots_refuse_evidence_without_a_certificate_to_one_of_them() {
    let f = fixture();
    let v = verifiers(&[&f.root]);
    let err = verify(&v, &f.ev).unwrap_err();
    assert_eq!(
        err,
        "tpm verification failed: the AK is not certified by a configured root: \
         the evidence carries no `ak_cert`"
    );
    // A chain to another CA.
    let other = Ca::root("CN=Other Root", p256());
    let leaf = other.certify("CN=AK", &ak_spki(&f.ev), VALID);
    let err = verify(&v, &with_cert(&f.ev, &leaf, &[])).unwrap_err();
    assert!(
        err.contains("not certified by a configured root: no configured root is the issuer of ak_cert (CN=Other Root)"),
        "{err}"
    );
    // Same name as the configured root, another key: matched by signature, not by name.
    let impostor = Ca::root("CN=TPM Test Root,O=Trustee Test", p384());
    let fake = impostor.issue("CN=TPM Test Manufacturing CA", rsa());
    let leaf = fake.certify("CN=AK", &ak_spki(&f.ev), VALID);
    let err = verify(&v, &with_cert(&f.ev, &leaf, &[&fake.cert])).unwrap_err();
    assert!(
        err.contains("not certified by a configured root: AK certificate ak_cert_chain[0]: signature does not verify with the key of CN=TPM Test Root"),
        "{err}"
    );
}

#[test]
fn each_broken_ak_certificate_fails_with_its_own_error() {
    let f = fixture();
    let v = verifiers(&[&f.root]);
    let spki = ak_spki(&f.ev);
    let mut tampered = f.leaf.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let expired = f.intermediate.certify("CN=AK", &spki, (NOW - 100, NOW - 1));
    let not_yet = f.intermediate.certify("CN=AK", &spki, (NOW + 1, NOW + 100));
    let by_leaf = certificate("CN=AK", &spki, ("CN=Leaf CA", &p256()), false, VALID);
    let leaf_ca = certificate(
        "CN=Leaf CA",
        &p256().spki(),
        (f.intermediate.name, &f.intermediate.key),
        false,
        VALID,
    );
    let other_key = f.intermediate.certify("CN=AK", &p256().spki(), VALID);
    let huge = vec![0x30; crate::tpm::MAX_CERT_FIELD];
    let int: &[u8] = &f.intermediate.cert;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("tampered signature", with_cert(&f.ev, &tampered, &[int]),
         "AK certificate ak_cert: signature does not verify with the key of CN=TPM Test Manufacturing CA"),
        ("expired", with_cert(&f.ev, &expired, &[int]),
         "AK certificate ak_cert is not valid at 2027-01-15T08:00:00Z (valid from 2027-01-15T07:58:20Z to 2027-01-15T07:59:59Z)"),
        ("not yet valid", with_cert(&f.ev, &not_yet, &[int]), "(valid from 2027-01-15T08:00:01Z"),
        ("key mismatch", with_cert(&f.ev, &other_key, &[int]),
         "AK certificate's public key is not the quote's AK (ak_public)"),
        ("issuer not a CA", with_cert(&f.ev, &by_leaf, &[&leaf_ca]),
         "AK certificate ak_cert_chain[0] issues a certificate but is not a CA"),
        ("out of order", with_cert(&f.ev, &f.leaf, &[&f.root.cert, int]),
         "AK certificate ak_cert names issuer CN=TPM Test Manufacturing CA, but ak_cert_chain[0] is CN=TPM Test Root,O=Trustee Test"),
        ("too many intermediates", with_cert(&f.ev, &f.leaf, &[int; 5]),
         "ak_cert_chain has 5 certificates, at most 4"),
        ("not DER", with_cert(&f.ev, b"not a certificate", &[int]),
         "AK certificate ak_cert is not a DER X.509 certificate"),
        ("too large", with_cert(&f.ev, &huge, &[int]), "`ak_cert` exceeds"),
        (
            "intermediate too large",
            with_cert(&f.ev, &f.leaf, &[&vec![0x30; MAX_AK_CERT + 1]]),
            "AK certificate ak_cert_chain[0] is 16385 bytes, at most 16384",
        ),
    ];
    let mut seen = Vec::new();
    for (case, ev, want) in cases {
        let err = verify(&v, &ev).unwrap_err();
        assert!(err.contains(want), "{case}: {err}");
        assert!(!seen.contains(&err), "{case}: {err}");
        seen.push(err);
    }
    let mut ev = with_cert(&f.ev, &f.leaf, &[int]);
    ev["ak_cert_chain"] = json!("not a list");
    assert!(verify(&v, &ev)
        .unwrap_err()
        .contains("`ak_cert_chain` is not an array"));
}

#[test]
fn a_root_that_is_not_a_ca_is_refused_when_configured() {
    let key = p256();
    let der = certificate("CN=Leaf", &key.spki(), ("CN=Leaf", &key), false, VALID);
    let err = TpmAkRoots::from_der(&[der]).unwrap_err().to_string();
    assert!(
        err.contains("root 0 issues a certificate but is not a CA"),
        "{err}"
    );
    let err = TpmAkRoots::from_der(&[b"junk".to_vec()])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "TPM AK root certificate is not usable: AK certificate root 0 is not a DER"
        ),
        "{err}"
    );
}
