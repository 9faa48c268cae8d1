//! The attester's serde form of the report (upstream's `sev` crate) decoded into [`Report`].
//!
//! The evidence carries the report as a JSON object, so the signed bytes no longer exist:
//! the verifier has to rebuild them. TCB values arrive decoded, so the TCB layout of the
//! re-encoding must be chosen here: from CPUID for v3+, and for v2 (no CPUID) the Turin
//! layout only when an `fmc` value is present.

use crate::report::{Generation, Report, TcbVersion, REPORT_LEN};
use crate::VerifyError;
use serde_json::{Map, Value};

fn bad(field: &str, msg: impl std::fmt::Display) -> VerifyError {
    VerifyError::Evidence(format!("attestation_report.{field}: {msg}"))
}

fn get<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Value, VerifyError> {
    obj.get(field).ok_or_else(|| bad(field, "missing"))
}

fn uint(v: &Value, field: &str, max: u64) -> Result<u64, VerifyError> {
    let n = v
        .as_u64()
        .ok_or_else(|| bad(field, format!("expected an unsigned integer, got {v}")))?;
    if n > max {
        return Err(bad(field, format!("{n} exceeds the maximum {max}")));
    }
    Ok(n)
}

fn u32_field(obj: &Map<String, Value>, field: &str) -> Result<u32, VerifyError> {
    let n = uint(get(obj, field)?, field, u64::from(u32::MAX))?;
    u32::try_from(n).map_err(|e| bad(field, e))
}

fn u64_field(obj: &Map<String, Value>, field: &str) -> Result<u64, VerifyError> {
    uint(get(obj, field)?, field, u64::MAX)
}

/// A field that is a number or null; older evidence omits some of them (absent = null).
fn opt_uint(obj: &Map<String, Value>, field: &str, max: u64) -> Result<Option<u64>, VerifyError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => uint(v, field, max).map(Some),
    }
}

fn opt_u8(obj: &Map<String, Value>, field: &str) -> Result<Option<u8>, VerifyError> {
    opt_uint(obj, field, u64::from(u8::MAX))?
        .map(|n| u8::try_from(n).map_err(|e| bad(field, e)))
        .transpose()
}

fn bytes_value<const N: usize>(v: &Value, field: &str) -> Result<[u8; N], VerifyError> {
    let items = v
        .as_array()
        .ok_or_else(|| bad(field, "expected an array of byte values"))?;
    if items.len() != N {
        return Err(bad(
            field,
            format!("expected {N} bytes, got {}", items.len()),
        ));
    }
    let mut out = [0u8; N];
    for (i, (dst, item)) in out.iter_mut().zip(items).enumerate() {
        let n = item
            .as_u64()
            .filter(|&n| n <= u64::from(u8::MAX))
            .ok_or_else(|| bad(field, format!("element {i} is not a byte: {item}")))?;
        *dst = u8::try_from(n).map_err(|e| bad(field, e))?;
    }
    Ok(out)
}

fn bytes_field<const N: usize>(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<[u8; N], VerifyError> {
    bytes_value(get(obj, field)?, field)
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, VerifyError> {
    v.as_object()
        .ok_or_else(|| bad(field, format!("expected an object, got {v}")))
}

fn tcb_field(obj: &Map<String, Value>, field: &str) -> Result<TcbVersion, VerifyError> {
    let t = object(get(obj, field)?, field)?;
    let sub = |name: &str| format!("{field}.{name}");
    let byte = |name: &str| -> Result<u8, VerifyError> {
        let f = sub(name);
        let v = t.get(name).ok_or_else(|| bad(&f, "missing"))?;
        let n = uint(v, &f, u64::from(u8::MAX))?;
        u8::try_from(n).map_err(|e| bad(&f, e))
    };
    let fmc = match t.get("fmc") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let f = sub("fmc");
            Some(u8::try_from(uint(v, &f, u64::from(u8::MAX))?).map_err(|e| bad(&f, e))?)
        }
    };
    Ok(TcbVersion {
        fmc,
        bootloader: byte("bootloader")?,
        tee: byte("tee")?,
        snp: byte("snp")?,
        microcode: byte("microcode")?,
    })
}

/// `{major, minor, build}` → (build, minor, major), the byte order of the binary layout.
fn fw_version(obj: &Map<String, Value>, field: &str) -> Result<(u8, u8, u8), VerifyError> {
    let v = object(get(obj, field)?, field)?;
    let part = |name: &str| -> Result<u8, VerifyError> {
        let f = format!("{field}.{name}");
        let n = uint(v.get(name).ok_or_else(|| bad(&f, "missing"))?, &f, 255)?;
        u8::try_from(n).map_err(|e| bad(&f, e))
    };
    Ok((part("build")?, part("minor")?, part("major")?))
}

/// Decode the serde object of an SNP report and rebuild its canonical binary
/// form, which becomes [`Report::raw`].
pub fn report_from_json(value: &Value) -> Result<Report, VerifyError> {
    let obj = object(value, "(report)")?;
    let version = u32_field(obj, "version")?;
    if version < 2 {
        return Err(VerifyError::Report(crate::ParseError::UnsupportedVersion(
            version,
        )));
    }
    let cpuid_fam_id = opt_u8(obj, "cpuid_fam_id")?;
    let cpuid_mod_id = opt_u8(obj, "cpuid_mod_id")?;
    let cpuid_step = opt_u8(obj, "cpuid_step")?;
    let tcbs = [
        tcb_field(obj, "current_tcb")?,
        tcb_field(obj, "reported_tcb")?,
        tcb_field(obj, "committed_tcb")?,
        tcb_field(obj, "launch_tcb")?,
    ];
    let turin = if version >= 3 {
        let family = cpuid_fam_id.unwrap_or(0);
        let model = cpuid_mod_id.unwrap_or(0);
        Generation::from_cpuid(family, model)
            .ok_or(VerifyError::UnsupportedProcessor { family, model })?
            == Generation::Turin
    } else {
        tcbs.iter().any(|t| t.fmc.is_some())
    };
    let [current, reported, committed, launch] = tcbs.map(|t| t.encode(turin));
    let sig = object(get(obj, "signature")?, "signature")?;
    let sig_r = bytes_value::<72>(
        sig.get("r").ok_or_else(|| bad("signature.r", "missing"))?,
        "signature.r",
    )?;
    let sig_s = bytes_value::<72>(
        sig.get("s").ok_or_else(|| bad("signature.s", "missing"))?,
        "signature.s",
    )?;
    let (current_build, current_minor, current_major) = fw_version(obj, "current")?;
    let (committed_build, committed_minor, committed_major) = fw_version(obj, "committed")?;
    let v3 = version >= 3;
    let v5 = version >= 5;
    let mut report = Report {
        version,
        guest_svn: u32_field(obj, "guest_svn")?,
        policy: u64_field(obj, "policy")?,
        family_id: bytes_field(obj, "family_id")?,
        image_id: bytes_field(obj, "image_id")?,
        vmpl: u32_field(obj, "vmpl")?,
        sig_algo: u32_field(obj, "sig_algo")?,
        current_tcb_raw: current,
        platform_info: u64_field(obj, "plat_info")?,
        key_info: u32_field(obj, "key_info")?,
        report_data: bytes_field(obj, "report_data")?,
        measurement: bytes_field(obj, "measurement")?,
        host_data: bytes_field(obj, "host_data")?,
        id_key_digest: bytes_field(obj, "id_key_digest")?,
        author_key_digest: bytes_field(obj, "author_key_digest")?,
        report_id: bytes_field(obj, "report_id")?,
        report_id_ma: bytes_field(obj, "report_id_ma")?,
        reported_tcb_raw: reported,
        // The binary layout has no CPUID bytes before v3; null means 0 from v3 on.
        cpuid_fam_id: v3.then(|| cpuid_fam_id.unwrap_or(0)),
        cpuid_mod_id: v3.then(|| cpuid_mod_id.unwrap_or(0)),
        cpuid_step: v3.then(|| cpuid_step.unwrap_or(0)),
        chip_id: bytes_field(obj, "chip_id")?,
        committed_tcb_raw: committed,
        current_build,
        current_minor,
        current_major,
        committed_build,
        committed_minor,
        committed_major,
        launch_tcb_raw: launch,
        launch_mit_vector: if v5 {
            Some(opt_uint(obj, "launch_mit_vector", u64::MAX)?.unwrap_or(0))
        } else {
            None
        },
        current_mit_vector: if v5 {
            Some(opt_uint(obj, "current_mit_vector", u64::MAX)?.unwrap_or(0))
        } else {
            None
        },
        sig_r,
        sig_s,
        raw: Vec::new(),
    };
    report.raw = report.encode_layout(turin);
    debug_assert_eq!(report.raw.len(), REPORT_LEN);
    Ok(report)
}
