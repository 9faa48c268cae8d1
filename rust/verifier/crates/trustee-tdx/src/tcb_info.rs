//! Typed views of the signed TCB info (TDX, v3) and QE identity (TD_QE, v2)
//! JSON documents (spec §2.6 items 3, 6, 8, 9). Parsed from the exact signed
//! bytes after their signature has been checked.

use serde_json::Value;

use crate::time::parse_rfc3339;

/// TCB status of a TCB level / QE level / module level, plus the statuses
/// only the appraisal produces (relaunch advice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
    TDRelaunchAdvised,
    TDRelaunchAdvisedConfigurationNeeded,
}

impl TcbStatus {
    /// The claim string (same spelling as the collateral / upstream claims).
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
            TcbStatus::TDRelaunchAdvised => "TDRelaunchAdvised",
            TcbStatus::TDRelaunchAdvisedConfigurationNeeded => {
                "TDRelaunchAdvisedConfigurationNeeded"
            }
        }
    }

    /// Statuses a collateral document may carry.
    fn from_collateral(s: &str) -> Option<TcbStatus> {
        Some(match s {
            "UpToDate" => TcbStatus::UpToDate,
            "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
            "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => TcbStatus::OutOfDate,
            "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
            "Revoked" => TcbStatus::Revoked,
            _ => return None,
        })
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A platform TCB level of a TDX TCB info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbLevel {
    pub sgx_components: [u8; 16],
    pub pce_svn: u16,
    pub tdx_components: [u8; 16],
    pub tcb_date: i64,
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
}

/// An ISV-SVN based level (QE identity and TDX module identities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsvLevel {
    pub isv_svn: u16,
    pub tcb_date: i64,
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
}

/// TDX module signer/attributes (`tdxModule` or one `tdxModuleIdentities` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleIdentity {
    pub id: String,
    pub mrsigner: Vec<u8>,
    pub attributes: Vec<u8>,
    pub attributes_mask: Vec<u8>,
    pub tcb_levels: Vec<IsvLevel>,
}

/// TDX TCB info, version 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbInfo {
    pub id: String,
    pub version: u64,
    pub issue_date: i64,
    pub next_update: i64,
    pub fmspc: [u8; 6],
    pub pce_id: [u8; 2],
    pub tcb_evaluation_data_number: u64,
    pub tdx_module: Option<ModuleIdentity>,
    pub tdx_module_identities: Vec<ModuleIdentity>,
    pub tcb_levels: Vec<TcbLevel>,
}

/// QE identity (TD_QE), version 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeIdentity {
    pub id: String,
    pub version: u64,
    pub issue_date: i64,
    pub next_update: i64,
    pub tcb_evaluation_data_number: u64,
    pub miscselect: [u8; 4],
    pub miscselect_mask: [u8; 4],
    pub attributes: [u8; 16],
    pub attributes_mask: [u8; 16],
    pub mrsigner: [u8; 32],
    pub isv_prod_id: u16,
    pub tcb_levels: Vec<IsvLevel>,
}

type R<T> = Result<T, String>;

fn field<'a>(v: &'a Value, path: &str, key: &str) -> R<&'a Value> {
    v.get(key).ok_or_else(|| format!("{path}.{key} missing"))
}

fn string<'a>(v: &'a Value, path: &str, key: &str) -> R<&'a str> {
    field(v, path, key)?
        .as_str()
        .ok_or_else(|| format!("{path}.{key} is not a string"))
}

fn number(v: &Value, path: &str, key: &str) -> R<u64> {
    field(v, path, key)?
        .as_u64()
        .ok_or_else(|| format!("{path}.{key} is not a non-negative integer"))
}

fn small<T: TryFrom<u64>>(v: &Value, path: &str, key: &str) -> R<T> {
    let n = number(v, path, key)?;
    T::try_from(n).map_err(|_| format!("{path}.{key} = {n} is out of range"))
}

fn date(v: &Value, path: &str, key: &str) -> R<i64> {
    let s = string(v, path, key)?;
    parse_rfc3339(s).ok_or_else(|| format!("{path}.{key} = \"{s}\" is not an RFC 3339 date"))
}

fn hex_bytes(v: &Value, path: &str, key: &str) -> R<Vec<u8>> {
    let s = string(v, path, key)?;
    hex::decode(s).map_err(|e| format!("{path}.{key} = \"{s}\" is not hex: {e}"))
}

fn hex_fixed<const N: usize>(v: &Value, path: &str, key: &str) -> R<[u8; N]> {
    let b = hex_bytes(v, path, key)?;
    b.as_slice()
        .try_into()
        .map_err(|_| format!("{path}.{key} has {} bytes, expected {N}", b.len()))
}

fn array<'a>(v: &'a Value, path: &str, key: &str) -> R<&'a Vec<Value>> {
    field(v, path, key)?
        .as_array()
        .ok_or_else(|| format!("{path}.{key} is not an array"))
}

fn status(v: &Value, path: &str) -> R<TcbStatus> {
    let s = string(v, path, "tcbStatus")?;
    TcbStatus::from_collateral(s).ok_or_else(|| format!("{path}.tcbStatus \"{s}\" is unknown"))
}

fn advisories(v: &Value, path: &str) -> R<Vec<String>> {
    let Some(a) = v.get("advisoryIDs") else {
        return Ok(Vec::new());
    };
    a.as_array()
        .ok_or_else(|| format!("{path}.advisoryIDs is not an array"))?
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{path}.advisoryIDs has a non-string entry"))
        })
        .collect()
}

fn components(v: &Value, path: &str, key: &str) -> R<[u8; 16]> {
    let a = array(v, path, key)?;
    if a.len() != 16 {
        return Err(format!("{path}.{key} has {} entries, expected 16", a.len()));
    }
    let mut out = [0u8; 16];
    for (i, (c, slot)) in a.iter().zip(out.iter_mut()).enumerate() {
        *slot = small(c, &format!("{path}.{key}[{i}]"), "svn")?;
    }
    Ok(out)
}

fn isv_levels(v: &Value, path: &str) -> R<Vec<IsvLevel>> {
    array(v, path, "tcbLevels")?
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let p = format!("{path}.tcbLevels[{i}]");
            Ok(IsvLevel {
                isv_svn: small(field(l, &p, "tcb")?, &format!("{p}.tcb"), "isvsvn")?,
                tcb_date: date(l, &p, "tcbDate")?,
                status: status(l, &p)?,
                advisory_ids: advisories(l, &p)?,
            })
        })
        .collect()
}

fn module(v: &Value, path: &str, with_levels: bool) -> R<ModuleIdentity> {
    let mrsigner = hex_bytes(v, path, "mrsigner")?;
    let attributes = hex_bytes(v, path, "attributes")?;
    let attributes_mask = hex_bytes(v, path, "attributesMask")?;
    if attributes.len() != attributes_mask.len() {
        return Err(format!(
            "{path}: attributes ({} bytes) and attributesMask ({} bytes) differ in length",
            attributes.len(),
            attributes_mask.len()
        ));
    }
    Ok(ModuleIdentity {
        id: v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        mrsigner,
        attributes,
        attributes_mask,
        tcb_levels: if with_levels {
            isv_levels(v, path)?
        } else {
            Vec::new()
        },
    })
}

fn json(bytes: &[u8], what: &str) -> R<Value> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what} is not JSON: {e}"))
}

impl TcbInfo {
    /// Parse and check the document type (`id` "TDX", `version` 3).
    pub fn parse(bytes: &[u8]) -> R<TcbInfo> {
        let v = json(bytes, "tcbInfo")?;
        let p = "tcbInfo";
        let id = string(&v, p, "id")?.to_owned();
        let version = number(&v, p, "version")?;
        if id != "TDX" || version != 3 {
            return Err(format!(
                "tcbInfo id \"{id}\" version {version} is not a TDX TCB info v3"
            ));
        }
        let tdx_module = match v.get("tdxModule") {
            Some(m) => Some(module(m, "tcbInfo.tdxModule", false)?),
            None => None,
        };
        let tdx_module_identities = match v.get("tdxModuleIdentities") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, m)| module(m, &format!("tcbInfo.tdxModuleIdentities[{i}]"), true))
                .collect::<R<Vec<_>>>()?,
            Some(_) => return Err("tcbInfo.tdxModuleIdentities is not an array".into()),
            None => Vec::new(),
        };
        let tcb_levels = array(&v, p, "tcbLevels")?
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let lp = format!("tcbInfo.tcbLevels[{i}]");
                let tcb = field(l, &lp, "tcb")?;
                let tp = format!("{lp}.tcb");
                Ok(TcbLevel {
                    sgx_components: components(tcb, &tp, "sgxtcbcomponents")?,
                    pce_svn: small(tcb, &tp, "pcesvn")?,
                    tdx_components: components(tcb, &tp, "tdxtcbcomponents")?,
                    tcb_date: date(l, &lp, "tcbDate")?,
                    status: status(l, &lp)?,
                    advisory_ids: advisories(l, &lp)?,
                })
            })
            .collect::<R<Vec<_>>>()?;
        Ok(TcbInfo {
            id,
            version,
            issue_date: date(&v, p, "issueDate")?,
            next_update: date(&v, p, "nextUpdate")?,
            fmspc: hex_fixed(&v, p, "fmspc")?,
            pce_id: hex_fixed(&v, p, "pceId")?,
            tcb_evaluation_data_number: number(&v, p, "tcbEvaluationDataNumber")?,
            tdx_module,
            tdx_module_identities,
            tcb_levels,
        })
    }
}

impl QeIdentity {
    /// Parse and check the document type (`id` "TD_QE", `version` 2).
    pub fn parse(bytes: &[u8]) -> R<QeIdentity> {
        let v = json(bytes, "enclaveIdentity")?;
        let p = "enclaveIdentity";
        let id = string(&v, p, "id")?.to_owned();
        let version = number(&v, p, "version")?;
        if id != "TD_QE" || version != 2 {
            return Err(format!(
                "enclaveIdentity id \"{id}\" version {version} is not a TD_QE identity v2"
            ));
        }
        Ok(QeIdentity {
            id,
            version,
            issue_date: date(&v, p, "issueDate")?,
            next_update: date(&v, p, "nextUpdate")?,
            tcb_evaluation_data_number: number(&v, p, "tcbEvaluationDataNumber")?,
            miscselect: hex_fixed(&v, p, "miscselect")?,
            miscselect_mask: hex_fixed(&v, p, "miscselectMask")?,
            attributes: hex_fixed(&v, p, "attributes")?,
            attributes_mask: hex_fixed(&v, p, "attributesMask")?,
            mrsigner: hex_fixed(&v, p, "mrsigner")?,
            isv_prod_id: small(&v, p, "isvprodid")?,
            tcb_levels: isv_levels(&v, p)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = TcbInfo::parse(br#"{"id":"SGX","version":3}"#).unwrap_err();
        assert!(e.contains("\"SGX\""), "{e}");
        let e = TcbInfo::parse(br#"{"id":"TDX","version":3,"tcbLevels":[{}]}"#).unwrap_err();
        assert!(e.contains("tcbInfo.tcbLevels[0].tcb missing"), "{e}");
        let e = QeIdentity::parse(br#"{"id":"TD_QE","version":2,"issueDate":"x"}"#).unwrap_err();
        assert!(e.contains("issueDate"), "{e}");
        assert!(QeIdentity::parse(b"").is_err());
    }
}
