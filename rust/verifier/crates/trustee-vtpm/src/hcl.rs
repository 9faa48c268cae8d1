//! The Azure HCL (paravisor) attestation report: a fixed 32-byte header, the hardware report
//! (SNP report, or TDX TD report) in a 1184-byte slot, then the IGVM request data whose
//! variable part is the runtime-claims JSON. The hardware report's REPORT_DATA carries the
//! digest of that JSON, which is how the vTPM's attestation key is bound to the hardware.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::keys::AkPublic;
use crate::VtpmError;

const HEADER_LEN: usize = 32;
/// The hardware-report slot: the larger of an SNP report (1184) and a TD report (1024).
const HW_SLOT_LEN: usize = 1184;
pub const SNP_REPORT_LEN: usize = 1184;
pub const TD_REPORT_LEN: usize = 1024;
const REQUEST_DATA_OFFSET: usize = HEADER_LEN + HW_SLOT_LEN;
/// data_size, version, report_type, report_data_hash_type, variable_data_size.
const REQUEST_HEADER_LEN: usize = 20;
const VAR_DATA_OFFSET: usize = REQUEST_DATA_OFFSET + REQUEST_HEADER_LEN;
/// Real reports are 2600 bytes; anything near this bound is not an HCL report.
pub const MAX_HCL_REPORT: usize = 64 * 1024;
const AK_KID: &str = "HCLAkPub";

/// Which hardware report the HCL report carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardware {
    Snp,
    Tdx,
}

impl Hardware {
    pub const fn name(self) -> &'static str {
        match self {
            Hardware::Snp => "SNP",
            Hardware::Tdx => "TDX",
        }
    }
}

/// A parsed HCL report, borrowing its bytes.
#[derive(Debug, Clone)]
pub struct HclReport<'a> {
    bytes: &'a [u8],
    hardware: Hardware,
    hash_type: u32,
    var_data: &'a [u8],
}

fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<'a> HclReport<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, VtpmError> {
        if bytes.len() > MAX_HCL_REPORT {
            return Err(VtpmError::HclTooLarge {
                actual: bytes.len(),
                limit: MAX_HCL_REPORT,
            });
        }
        let too_short = || VtpmError::HclTooShort {
            needed: VAR_DATA_OFFSET,
            actual: bytes.len(),
        };
        let report_type = le_u32(bytes, REQUEST_DATA_OFFSET + 8).ok_or_else(too_short)?;
        let hash_type = le_u32(bytes, REQUEST_DATA_OFFSET + 12).ok_or_else(too_short)?;
        let size = le_u32(bytes, REQUEST_DATA_OFFSET + 16).ok_or_else(too_short)?;
        let hardware = match report_type {
            2 => Hardware::Snp,
            4 => Hardware::Tdx,
            other => return Err(VtpmError::HclReportType(other)),
        };
        let available = bytes.len() - VAR_DATA_OFFSET;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let var_data = bytes
            .get(VAR_DATA_OFFSET..)
            .and_then(|rest| rest.get(..size))
            .ok_or(VtpmError::HclVarDataSize { size, available })?;
        Ok(Self {
            bytes,
            hardware,
            hash_type,
            var_data,
        })
    }

    pub fn hardware(&self) -> Hardware {
        self.hardware
    }

    /// The hardware report, after checking it is of the `expected` kind: the 1184-byte SNP
    /// report or the 1024-byte TD report.
    pub fn hw_report(&self, expected: Hardware) -> Result<&'a [u8], VtpmError> {
        if self.hardware != expected {
            return Err(VtpmError::HclWrongHardware {
                expected: expected.name(),
                actual: self.hardware.name(),
            });
        }
        let len = match expected {
            Hardware::Snp => SNP_REPORT_LEN,
            Hardware::Tdx => TD_REPORT_LEN,
        };
        // parse() guaranteed the bytes up to the variable data, past the whole slot.
        self.bytes
            .get(HEADER_LEN..HEADER_LEN + len)
            .ok_or(VtpmError::HclTooShort {
                needed: HEADER_LEN + len,
                actual: self.bytes.len(),
            })
    }

    /// The runtime-claims JSON the hardware report binds.
    pub fn var_data(&self) -> &'a [u8] {
        self.var_data
    }

    /// The digest of the variable data with the hash the report declares; the hardware
    /// report's REPORT_DATA starts with it.
    pub fn var_data_digest(&self) -> Result<Vec<u8>, VtpmError> {
        Ok(match self.hash_type {
            1 => Sha256::digest(self.var_data).to_vec(),
            2 => Sha384::digest(self.var_data).to_vec(),
            3 => Sha512::digest(self.var_data).to_vec(),
            other => return Err(VtpmError::HclHashType(other)),
        })
    }

    /// The runtime claims: the AK and, when present, the guest's `user-data`.
    pub fn runtime_claims(&self) -> Result<RuntimeClaims, VtpmError> {
        let doc: Value = serde_json::from_slice(self.var_data)
            .map_err(|e| VtpmError::RuntimeClaims(e.to_string()))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| VtpmError::RuntimeClaims("no `keys` array".into()))?;
        let jwk = keys
            .iter()
            .find(|k| k.get("kid").and_then(Value::as_str) == Some(AK_KID))
            .ok_or(VtpmError::AkNotFound)?;
        let user_data = doc.get("user-data").map(|v| match v {
            Value::String(s) => hex::decode(s).map_err(|e| VtpmError::UserData(e.to_string())),
            _ => Err(VtpmError::UserData("not a string".into())),
        });
        Ok(RuntimeClaims {
            ak: ak_from_jwk(jwk)?,
            user_data: user_data.transpose()?,
        })
    }
}

/// What the HCL variable data says about the guest.
#[derive(Debug, Clone)]
pub struct RuntimeClaims {
    pub ak: AkPublic,
    /// Hex-decoded `user-data` (the guest's report data, for evidence v2).
    pub user_data: Option<Vec<u8>>,
}

fn ak_from_jwk(jwk: &Value) -> Result<AkPublic, VtpmError> {
    if jwk.get("kty").and_then(Value::as_str) != Some("RSA") {
        return Err(VtpmError::AkJwk("kty is not RSA".into()));
    }
    let part = |name: &str| -> Result<Vec<u8>, VtpmError> {
        let s = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| VtpmError::AkJwk(format!("`{name}` missing")))?;
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| VtpmError::AkJwk(format!("`{name}` is not base64url: {e}")))
    };
    AkPublic::rsa(part("n")?, part("e")?)
}

/// `user-data` must start with the expected report data (evidence v2 binds it this way).
pub fn user_data_starts_with(user_data: Option<&[u8]>, report_data: &[u8]) -> bool {
    user_data.is_some_and(|u| u.starts_with(report_data))
}
