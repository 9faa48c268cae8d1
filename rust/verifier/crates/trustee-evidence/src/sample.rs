//! The `sample` and `sampledevice` test verifiers.
//!
//! They carry no cryptographic proof at all; they exist so the attestation flow (binding,
//! claims transform, policy, token) can run end to end on machines without a TEE. Their
//! claims must match upstream Trustee's exactly because the default policies and the
//! acceptance tests key on them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::{ClaimsEntry, Expectations, Inputs, Verifier, VerifyError};

/// A sample verifier: `tee` names it in errors, `class` is the claims' TEE class, and the CPU
/// one (`cpu`) adds the platform claims upstream's sample TEE reports.
pub(crate) struct Sample {
    tee: &'static str,
    class: &'static str,
}

/// The `sample` TEE (CPU evidence).
pub(crate) const SAMPLE: Sample = Sample {
    tee: "sample",
    class: "cpu",
};
/// The `sampledevice` TEE (device evidence beside a CPU's).
pub(crate) const SAMPLE_DEVICE: Sample = Sample {
    tee: "sampledevice",
    class: "gpu",
};

impl Verifier for Sample {
    fn verify(
        &self,
        evidence: &[u8],
        expected: Expectations<'_>,
        _inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError> {
        let mut claims = checked_claims(self.tee, evidence, &expected)?;
        if self.class == "cpu" {
            claims.insert("launch_digest".into(), json!("abcde"));
            claims.insert("platform_version".into(), json!({"major": 1, "minor": 4}));
            claims.insert("debug".into(), Value::Bool(false));
            // The sample TEE cannot measure init data, so it simply echoes the expected hash:
            // the claim's presence is what tells the policy layer a binding was requested.
            if let Some(hash) = expected.init_data_hash {
                claims.insert("init_data".into(), Value::String(STANDARD.encode(hash)));
            }
        }
        Ok(vec![(Value::Object(claims), self.class.into())])
    }
}

/// The claims both sample TEEs report (`svn`, `report_data`), once the evidence parses and
/// binds what the caller expects.
fn checked_claims(
    tee: &'static str,
    evidence: &[u8],
    expected: &Expectations<'_>,
) -> Result<Map<String, Value>, VerifyError> {
    let ev = SampleEvidence::parse(tee, evidence)?;
    ev.check_report_data(tee, expected.report_data)?;
    let mut claims = Map::new();
    claims.insert("svn".into(), Value::String(ev.svn));
    claims.insert("report_data".into(), Value::String(ev.report_data));
    Ok(claims)
}

struct SampleEvidence {
    svn: String,
    report_data: String,
}

impl SampleEvidence {
    /// Unknown keys are ignored, as upstream does, so attesters that add fields keep working.
    fn parse(tee: &'static str, evidence: &[u8]) -> Result<Self, VerifyError> {
        let malformed = |reason: String| VerifyError::Malformed { tee, reason };
        let value: Value = serde_json::from_slice(evidence)
            .map_err(|e| malformed(format!("not valid JSON: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(malformed(format!(
                "expected a JSON object, got {}",
                json_type(&value)
            )));
        };
        let svn = match obj.remove("svn") {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(malformed(format!(
                    "`svn` must be a string, got {}",
                    json_type(&other)
                )))
            }
            None => return Err(malformed("missing required field `svn`".into())),
        };
        let report_data = match obj.remove("report_data") {
            Some(Value::String(s)) => s,
            None => String::new(),
            Some(other) => {
                return Err(malformed(format!(
                    "`report_data` must be a string, got {}",
                    json_type(&other)
                )))
            }
        };
        Ok(Self { svn, report_data })
    }

    fn check_report_data(
        &self,
        tee: &'static str,
        expected: Option<&[u8]>,
    ) -> Result<(), VerifyError> {
        let Some(expected) = expected else {
            return Ok(());
        };
        let actual =
            STANDARD
                .decode(self.report_data.as_bytes())
                .map_err(|e| VerifyError::Malformed {
                    tee,
                    reason: format!("`report_data` is not valid standard base64: {e}"),
                })?;
        if actual != expected {
            return Err(VerifyError::ReportDataMismatch {
                tee,
                expected_hex: hex_for_message(expected),
                actual_hex: hex_for_message(&actual),
            });
        }
        Ok(())
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Hex for error messages: report data is at most a few dozen bytes in practice, but a hostile
/// client could send up to the evidence limit, which must not end up verbatim in logs.
fn hex_for_message(bytes: &[u8]) -> String {
    const SHOWN: usize = 128;
    if bytes.is_empty() {
        return "<empty>".into();
    }
    if bytes.len() <= SHOWN {
        return hex::encode(bytes);
    }
    format!("{}… ({} bytes)", hex::encode(&bytes[..SHOWN]), bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify;

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn sample_claims_without_expectations() {
        let out = verify("sample", br#"{"svn":"1","report_data":"AAEC"}"#, None, None).unwrap();
        assert_eq!(
            out,
            vec![(
                json!({
                    "svn": "1",
                    "report_data": "AAEC",
                    "launch_digest": "abcde",
                    "platform_version": {"major": 1, "minor": 4},
                    "debug": false
                }),
                "cpu".to_string()
            )]
        );
    }

    #[test]
    fn sample_binding_ok_and_init_data_echoed() {
        let rd = [7u8; 48];
        let ev = format!(r#"{{"svn":"3","report_data":"{}"}}"#, b64(&rd));
        let init = [0xabu8; 32];
        let out = verify("sample", ev.as_bytes(), Some(&rd), Some(&init)).unwrap();
        assert_eq!(out.len(), 1);
        let (claims, class) = &out[0];
        assert_eq!(class, "cpu");
        assert_eq!(claims["init_data"], json!(b64(&init)));
        assert_eq!(claims["report_data"], json!(b64(&rd)));
        assert_eq!(claims["svn"], json!("3"));
    }

    #[test]
    fn report_data_defaults_to_empty() {
        let out = verify("sample", br#"{"svn":"1"}"#, None, None).unwrap();
        assert_eq!(out[0].0["report_data"], json!(""));
        // Empty evidence report data only binds to an empty expectation.
        assert!(verify("sample", br#"{"svn":"1"}"#, Some(b""), None).is_ok());
        assert!(matches!(
            verify("sample", br#"{"svn":"1"}"#, Some(b"x"), None),
            Err(VerifyError::ReportDataMismatch { .. })
        ));
    }

    #[test]
    fn mismatch_reports_both_values_in_hex() {
        let ev = format!(r#"{{"svn":"1","report_data":"{}"}}"#, b64(&[1, 2, 3]));
        let err = verify("sample", ev.as_bytes(), Some(&[1, 2, 4]), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("mismatch"), "{msg}");
        assert!(msg.contains("010203"), "{msg}");
        assert!(msg.contains("010204"), "{msg}");
    }

    #[test]
    fn comparison_is_exact_no_padding() {
        // Unlike hardware verifiers, the sample TEE has no fixed field size to pad to.
        let ev = format!(r#"{{"svn":"1","report_data":"{}"}}"#, b64(&[1, 2, 0]));
        assert!(verify("sample", ev.as_bytes(), Some(&[1, 2]), None).is_err());
    }

    #[test]
    fn sampledevice_claims_and_class() {
        let rd = [9u8; 32];
        let ev = format!(r#"{{"svn":"2","report_data":"{}","extra":1}}"#, b64(&rd));
        let out = verify("sampledevice", ev.as_bytes(), Some(&rd), Some(&[1; 32])).unwrap();
        assert_eq!(
            out,
            vec![(
                json!({"svn": "2", "report_data": b64(&rd)}),
                "gpu".to_string()
            )]
        );
    }

    #[test]
    fn malformed_evidence_is_explained() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "not valid JSON"),
            (b"{", "not valid JSON"),
            (b"[]", "expected a JSON object, got an array"),
            (b"\"x\"", "expected a JSON object, got a string"),
            (b"{}", "missing required field `svn`"),
            (br#"{"svn":1}"#, "`svn` must be a string, got a number"),
            (br#"{"svn":null}"#, "`svn` must be a string, got null"),
            (
                br#"{"svn":"1","report_data":null}"#,
                "`report_data` must be a string, got null",
            ),
            (
                br#"{"svn":"1","report_data":[1]}"#,
                "`report_data` must be a string, got an array",
            ),
        ];
        for (ev, want) in cases {
            for tee in ["sample", "sampledevice"] {
                let err = verify(tee, ev, None, None).unwrap_err();
                assert!(
                    matches!(err, VerifyError::Malformed { .. }),
                    "{tee} {ev:?}: {err:?}"
                );
                assert!(err.to_string().contains(want), "{tee}: {err} !~ {want}");
            }
        }
    }

    #[test]
    fn bad_base64_only_matters_when_binding_is_checked() {
        let ev = br#"{"svn":"1","report_data":"not base64!"}"#;
        assert!(verify("sample", ev, None, None).is_ok());
        let err = verify("sample", ev, Some(b"x"), None).unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        // URL-safe alphabet is not accepted: the attesters use the standard one.
        let ev = format!(r#"{{"svn":"1","report_data":"{}"}}"#, "-_-_");
        assert!(verify("sample", ev.as_bytes(), Some(&[0xfb, 0xff, 0xbf]), None).is_err());
    }

    #[test]
    fn huge_report_data_is_truncated_in_messages() {
        let rd = vec![0x55u8; 4096];
        let ev = format!(r#"{{"svn":"1","report_data":"{}"}}"#, b64(&rd));
        let msg = verify("sample", ev.as_bytes(), Some(b"x"), None)
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 1024, "{}", msg.len());
        assert!(msg.contains("(4096 bytes)"), "{msg}");
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // Deterministic xorshift so failures reproduce without a fuzzing dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = br#"{}[]":,svnreport_data 0123456789abAB+/=\u-truefalsnul"#;
        for _ in 0..5000 {
            let len = (next() % 96) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        (r >> 8) as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            for tee in ["sample", "sampledevice"] {
                let _ = verify(tee, &buf, Some(b"abc"), Some(b"def"));
                let _ = verify(tee, &buf, None, None);
            }
        }
        // Deep nesting hits serde_json's recursion limit instead of the stack.
        let deep = "[".repeat(100_000);
        assert!(verify("sample", deep.as_bytes(), None, None).is_err());
    }
}
