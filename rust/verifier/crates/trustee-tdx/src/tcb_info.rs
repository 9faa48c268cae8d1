//! Typed views of the signed TCB info (TDX v3, SGX v2/v3) and QE identity (TD_QE or QE, v2)
//! JSON documents (Intel PCS TCB info and QE identity). Parsed from the exact signed
//! bytes after their signature has been checked.

use serde::Deserialize;

use crate::dcap::DcapTee;
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

/// A platform TCB level of a TDX or SGX TCB info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbLevel {
    pub sgx_components: [u8; 16],
    pub pce_svn: u16,
    /// All zero in an SGX TCB info (which has no TDX components).
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

/// TDX TCB info (version 3) or SGX TCB info (version 2 or 3).
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

/// QE identity (TD_QE for TDX, QE for SGX), version 2.
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

// The documents decode into these mirrors first: every member optional, so
// a missing one is reported with its path below rather than as a bare serde
// error, and unknown members are ignored as Intel adds them.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTcbInfo {
    id: Option<String>,
    version: Option<u64>,
    issue_date: Option<String>,
    next_update: Option<String>,
    fmspc: Option<String>,
    pce_id: Option<String>,
    tcb_evaluation_data_number: Option<u64>,
    #[serde(default, deserialize_with = "not_null")]
    tdx_module: Option<RawModule>,
    #[serde(default, deserialize_with = "not_null")]
    tdx_module_identities: Option<Vec<RawModule>>,
    tcb_levels: Option<Vec<RawTcbLevel>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModule {
    id: Option<String>,
    mrsigner: Option<String>,
    attributes: Option<String>,
    attributes_mask: Option<String>,
    tcb_levels: Option<Vec<RawIsvLevel>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTcbLevel {
    tcb: Option<RawPlatformTcb>,
    tcb_date: Option<String>,
    tcb_status: Option<String>,
    #[serde(rename = "advisoryIDs", default, deserialize_with = "not_null")]
    advisory_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawPlatformTcb {
    sgxtcbcomponents: Option<Vec<RawComponent>>,
    pcesvn: Option<u64>,
    tdxtcbcomponents: Option<Vec<RawComponent>>,
    // SGX TCB info v2 names each SGX component SVN instead of listing them.
    #[serde(rename = "sgxtcbcomp01svn")]
    c01: Option<u64>,
    #[serde(rename = "sgxtcbcomp02svn")]
    c02: Option<u64>,
    #[serde(rename = "sgxtcbcomp03svn")]
    c03: Option<u64>,
    #[serde(rename = "sgxtcbcomp04svn")]
    c04: Option<u64>,
    #[serde(rename = "sgxtcbcomp05svn")]
    c05: Option<u64>,
    #[serde(rename = "sgxtcbcomp06svn")]
    c06: Option<u64>,
    #[serde(rename = "sgxtcbcomp07svn")]
    c07: Option<u64>,
    #[serde(rename = "sgxtcbcomp08svn")]
    c08: Option<u64>,
    #[serde(rename = "sgxtcbcomp09svn")]
    c09: Option<u64>,
    #[serde(rename = "sgxtcbcomp10svn")]
    c10: Option<u64>,
    #[serde(rename = "sgxtcbcomp11svn")]
    c11: Option<u64>,
    #[serde(rename = "sgxtcbcomp12svn")]
    c12: Option<u64>,
    #[serde(rename = "sgxtcbcomp13svn")]
    c13: Option<u64>,
    #[serde(rename = "sgxtcbcomp14svn")]
    c14: Option<u64>,
    #[serde(rename = "sgxtcbcomp15svn")]
    c15: Option<u64>,
    #[serde(rename = "sgxtcbcomp16svn")]
    c16: Option<u64>,
}

impl RawPlatformTcb {
    /// The v2 form's named SGX component SVNs, in order.
    fn named_components(&self) -> [Option<u64>; 16] {
        [
            self.c01, self.c02, self.c03, self.c04, self.c05, self.c06, self.c07, self.c08,
            self.c09, self.c10, self.c11, self.c12, self.c13, self.c14, self.c15, self.c16,
        ]
    }
}

#[derive(Deserialize)]
struct RawComponent {
    svn: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIsvLevel {
    tcb: Option<RawIsvTcb>,
    tcb_date: Option<String>,
    tcb_status: Option<String>,
    #[serde(rename = "advisoryIDs", default, deserialize_with = "not_null")]
    advisory_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawIsvTcb {
    isvsvn: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawQeIdentity {
    id: Option<String>,
    version: Option<u64>,
    issue_date: Option<String>,
    next_update: Option<String>,
    tcb_evaluation_data_number: Option<u64>,
    miscselect: Option<String>,
    miscselect_mask: Option<String>,
    attributes: Option<String>,
    attributes_mask: Option<String>,
    mrsigner: Option<String>,
    isvprodid: Option<u64>,
    tcb_levels: Option<Vec<RawIsvLevel>>,
}

/// Where a member sits in the document, formatted only when an error names
/// it (building every level's path eagerly was a measurable share of the
/// parse).
enum Path<'a> {
    Root(&'static str),
    /// `{parent}.{key}`
    Member(&'a Path<'a>, &'static str),
    /// `{parent}.{key}[{index}]`
    Item(&'a Path<'a>, &'static str, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(r) => f.write_str(r),
            Path::Member(p, k) => write!(f, "{p}.{k}"),
            Path::Item(p, k, i) => write!(f, "{p}.{k}[{i}]"),
        }
    }
}

/// For optional members whose absence means something (no module, no
/// advisories): an explicit `null` is a malformed document, not an absence.
fn not_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn present<T>(v: Option<T>, path: &Path<'_>, key: &str) -> R<T> {
    v.ok_or_else(|| format!("{path}.{key} missing"))
}

fn small<T: TryFrom<u64>>(v: Option<u64>, path: &Path<'_>, key: &str) -> R<T> {
    let n = present(v, path, key)?;
    T::try_from(n).map_err(|_| format!("{path}.{key} = {n} is out of range"))
}

fn date(v: Option<&str>, path: &Path<'_>, key: &str) -> R<i64> {
    let s = present(v, path, key)?;
    parse_rfc3339(s).ok_or_else(|| format!("{path}.{key} = \"{s}\" is not an RFC 3339 date"))
}

fn hex_bytes(v: Option<&str>, path: &Path<'_>, key: &str) -> R<Vec<u8>> {
    let s = present(v, path, key)?;
    hex::decode(s).map_err(|e| format!("{path}.{key} = \"{s}\" is not hex: {e}"))
}

fn hex_fixed<const N: usize>(v: Option<&str>, path: &Path<'_>, key: &str) -> R<[u8; N]> {
    let b = hex_bytes(v, path, key)?;
    b.as_slice()
        .try_into()
        .map_err(|_| format!("{path}.{key} has {} bytes, expected {N}", b.len()))
}

fn status(v: Option<&str>, path: &Path<'_>) -> R<TcbStatus> {
    let s = present(v, path, "tcbStatus")?;
    TcbStatus::from_collateral(s).ok_or_else(|| format!("{path}.tcbStatus \"{s}\" is unknown"))
}

fn components(v: Option<&[RawComponent]>, path: &Path<'_>, key: &'static str) -> R<[u8; 16]> {
    let a = present(v, path, key)?;
    if a.len() != 16 {
        return Err(format!("{path}.{key} has {} entries, expected 16", a.len()));
    }
    let mut out = [0u8; 16];
    for (i, (c, slot)) in a.iter().zip(out.iter_mut()).enumerate() {
        *slot = small(c.svn, &Path::Item(path, key, i), "svn")?;
    }
    Ok(out)
}

/// SGX component SVNs: the `sgxtcbcomponents` list (v3), or the named
/// `sgxtcbcompNNsvn` members (v2).
fn sgx_components(tcb: &RawPlatformTcb, path: &Path<'_>, version: u64) -> R<[u8; 16]> {
    if version != 2 {
        return components(tcb.sgxtcbcomponents.as_deref(), path, "sgxtcbcomponents");
    }
    let mut out = [0u8; 16];
    for (i, (svn, slot)) in tcb
        .named_components()
        .iter()
        .zip(out.iter_mut())
        .enumerate()
    {
        let n = svn.ok_or_else(|| format!("{path}.sgxtcbcomp{:02}svn missing", i + 1))?;
        *slot = u8::try_from(n)
            .map_err(|_| format!("{path}.sgxtcbcomp{:02}svn = {n} is out of range", i + 1))?;
    }
    Ok(out)
}

fn isv_levels(v: Option<Vec<RawIsvLevel>>, path: &Path<'_>) -> R<Vec<IsvLevel>> {
    present(v, path, "tcbLevels")?
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let p = Path::Item(path, "tcbLevels", i);
            let tcb = present(l.tcb, &p, "tcb")?;
            Ok(IsvLevel {
                isv_svn: small(tcb.isvsvn, &Path::Member(&p, "tcb"), "isvsvn")?,
                tcb_date: date(l.tcb_date.as_deref(), &p, "tcbDate")?,
                status: status(l.tcb_status.as_deref(), &p)?,
                advisory_ids: l.advisory_ids.unwrap_or_default(),
            })
        })
        .collect()
}

fn module(m: RawModule, path: &Path<'_>, with_levels: bool) -> R<ModuleIdentity> {
    let mrsigner = hex_bytes(m.mrsigner.as_deref(), path, "mrsigner")?;
    let attributes = hex_bytes(m.attributes.as_deref(), path, "attributes")?;
    let attributes_mask = hex_bytes(m.attributes_mask.as_deref(), path, "attributesMask")?;
    if attributes.len() != attributes_mask.len() {
        return Err(format!(
            "{path}: attributes ({} bytes) and attributesMask ({} bytes) differ in length",
            attributes.len(),
            attributes_mask.len()
        ));
    }
    Ok(ModuleIdentity {
        id: m.id.unwrap_or_default(),
        mrsigner,
        attributes,
        attributes_mask,
        tcb_levels: if with_levels {
            isv_levels(m.tcb_levels, path)?
        } else {
            Vec::new()
        },
    })
}

fn json<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> R<T> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what} is not a well-formed document: {e}"))
}

impl TcbInfo {
    /// Parse and check the document type (`id` "TDX", `version` 3).
    pub fn parse(bytes: &[u8]) -> R<TcbInfo> {
        TcbInfo::parse_for(bytes, DcapTee::Tdx)
    }

    /// Parse and check the document type: `id` "TDX" with `version` 3, or
    /// `id` "SGX" with `version` 3 (levels list `sgxtcbcomponents`) or 2 (no
    /// `id`; levels name `sgxtcbcomp01svn` … `sgxtcbcomp16svn`).
    pub fn parse_for(bytes: &[u8], tee: DcapTee) -> R<TcbInfo> {
        let v: RawTcbInfo = json(bytes, "tcbInfo")?;
        let p = &Path::Root("tcbInfo");
        let version = present(v.version, p, "version")?;
        let (want, versions) = match tee {
            DcapTee::Tdx => ("TDX", "v3"),
            DcapTee::Sgx => ("SGX", "v2 or v3"),
        };
        // Version 2 predates the `id` member; only SGX TCB info had that version.
        let id = match (v.id, tee, version) {
            (None, DcapTee::Sgx, 2) => "SGX".to_owned(),
            (id, _, _) => present(id, p, "id")?,
        };
        let version_ok = version == 3 || (tee == DcapTee::Sgx && version == 2);
        if id != want || !version_ok {
            return Err(format!(
                "tcbInfo id \"{id}\" version {version} is not a {want} TCB info {versions}"
            ));
        }
        let tdx_module = match v.tdx_module {
            Some(m) => Some(module(m, &Path::Member(p, "tdxModule"), false)?),
            None => None,
        };
        let tdx_module_identities = v
            .tdx_module_identities
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, m)| module(m, &Path::Item(p, "tdxModuleIdentities", i), true))
            .collect::<R<Vec<_>>>()?;
        let tcb_levels = present(v.tcb_levels, p, "tcbLevels")?
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let lp = Path::Item(p, "tcbLevels", i);
                let tcb = present(l.tcb, &lp, "tcb")?;
                let tp = Path::Member(&lp, "tcb");
                Ok(TcbLevel {
                    sgx_components: sgx_components(&tcb, &tp, version)?,
                    pce_svn: small(tcb.pcesvn, &tp, "pcesvn")?,
                    tdx_components: match tee {
                        DcapTee::Tdx => {
                            components(tcb.tdxtcbcomponents.as_deref(), &tp, "tdxtcbcomponents")?
                        }
                        DcapTee::Sgx => [0; 16],
                    },
                    tcb_date: date(l.tcb_date.as_deref(), &lp, "tcbDate")?,
                    status: status(l.tcb_status.as_deref(), &lp)?,
                    advisory_ids: l.advisory_ids.unwrap_or_default(),
                })
            })
            .collect::<R<Vec<_>>>()?;
        Ok(TcbInfo {
            id,
            version,
            issue_date: date(v.issue_date.as_deref(), p, "issueDate")?,
            next_update: date(v.next_update.as_deref(), p, "nextUpdate")?,
            fmspc: hex_fixed(v.fmspc.as_deref(), p, "fmspc")?,
            pce_id: hex_fixed(v.pce_id.as_deref(), p, "pceId")?,
            tcb_evaluation_data_number: present(
                v.tcb_evaluation_data_number,
                p,
                "tcbEvaluationDataNumber",
            )?,
            tdx_module,
            tdx_module_identities,
            tcb_levels,
        })
    }
}

impl QeIdentity {
    /// Parse and check the document type (`id` "TD_QE", `version` 2).
    pub fn parse(bytes: &[u8]) -> R<QeIdentity> {
        QeIdentity::parse_for(bytes, DcapTee::Tdx)
    }

    /// Parse and check the document type: `id` "TD_QE" (TDX) or "QE" (SGX),
    /// `version` 2.
    pub fn parse_for(bytes: &[u8], tee: DcapTee) -> R<QeIdentity> {
        let v: RawQeIdentity = json(bytes, "enclaveIdentity")?;
        let p = &Path::Root("enclaveIdentity");
        let id = present(v.id, p, "id")?;
        let version = present(v.version, p, "version")?;
        let want = match tee {
            DcapTee::Tdx => "TD_QE",
            DcapTee::Sgx => "QE",
        };
        if id != want || version != 2 {
            return Err(format!(
                "enclaveIdentity id \"{id}\" version {version} is not a {want} identity v2"
            ));
        }
        Ok(QeIdentity {
            id,
            version,
            issue_date: date(v.issue_date.as_deref(), p, "issueDate")?,
            next_update: date(v.next_update.as_deref(), p, "nextUpdate")?,
            tcb_evaluation_data_number: present(
                v.tcb_evaluation_data_number,
                p,
                "tcbEvaluationDataNumber",
            )?,
            miscselect: hex_fixed(v.miscselect.as_deref(), p, "miscselect")?,
            miscselect_mask: hex_fixed(v.miscselect_mask.as_deref(), p, "miscselectMask")?,
            attributes: hex_fixed(v.attributes.as_deref(), p, "attributes")?,
            attributes_mask: hex_fixed(v.attributes_mask.as_deref(), p, "attributesMask")?,
            mrsigner: hex_fixed(v.mrsigner.as_deref(), p, "mrsigner")?,
            isv_prod_id: small(v.isvprodid, p, "isvprodid")?,
            tcb_levels: isv_levels(v.tcb_levels, p)?,
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
        let e = TcbInfo::parse(br#"{"id":"TDX","version":3,"tdxModule":null}"#).unwrap_err();
        assert!(e.contains("null"), "{e}");
        let e = TcbInfo::parse(
            br#"{"id":"TDX","version":3,"tcbLevels":[{"tcb":{},"advisoryIDs":null}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("null"), "{e}");
    }

    #[test]
    fn each_tee_takes_its_own_documents() {
        let e = TcbInfo::parse_for(br#"{"id":"TDX","version":3}"#, DcapTee::Sgx).unwrap_err();
        assert!(e.contains("is not a SGX TCB info v2 or v3"), "{e}");
        let e = TcbInfo::parse_for(br#"{"id":"SGX","version":3}"#, DcapTee::Tdx).unwrap_err();
        assert!(e.contains("is not a TDX TCB info v3"), "{e}");
        let e = QeIdentity::parse_for(br#"{"id":"TD_QE","version":2}"#, DcapTee::Sgx).unwrap_err();
        assert!(e.contains("is not a QE identity v2"), "{e}");
        let e = QeIdentity::parse_for(br#"{"id":"QE","version":2}"#, DcapTee::Tdx).unwrap_err();
        assert!(e.contains("is not a TD_QE identity v2"), "{e}");
        // An SGX level needs no TDX components.
        let level = r#"{"tcb":{"sgxtcbcomponents":[SVNS],"pcesvn":13},"tcbDate":"2024-01-01T00:00:00Z","tcbStatus":"UpToDate"}"#
            .replace("SVNS", &["{\"svn\":1}"; 16].join(","));
        let doc = format!(
            r#"{{"id":"SGX","version":3,"issueDate":"2025-01-01T00:00:00Z","nextUpdate":"2025-02-01T00:00:00Z","fmspc":"00606A000000","pceId":"0000","tcbEvaluationDataNumber":17,"tcbLevels":[{level}]}}"#
        );
        let info = TcbInfo::parse_for(doc.as_bytes(), DcapTee::Sgx).expect("SGX TCB info");
        assert_eq!(info.tcb_levels[0].sgx_components, [1; 16]);
        assert_eq!(info.tcb_levels[0].tdx_components, [0; 16]);
        assert!(TcbInfo::parse_for(doc.replace("SGX", "TDX").as_bytes(), DcapTee::Tdx).is_err());

        // Version 2 (no `id`, each SGX component SVN named) is an SGX form only.
        let named: Vec<String> = (1..=16)
            .map(|i| format!("\"sgxtcbcomp{i:02}svn\":{i}"))
            .collect();
        let v2 = doc
            .replace(r#""id":"SGX","version":3"#, r#""version":2"#)
            .replace(
                &format!("\"sgxtcbcomponents\":[{}]", ["{\"svn\":1}"; 16].join(",")),
                &named.join(","),
            );
        let info = TcbInfo::parse_for(v2.as_bytes(), DcapTee::Sgx).expect("SGX TCB info v2");
        let want: Vec<u8> = (1..=16).collect();
        assert_eq!(info.tcb_levels[0].sgx_components.to_vec(), want);
        let e = TcbInfo::parse_for(v2.as_bytes(), DcapTee::Tdx).unwrap_err();
        assert!(e.contains("id missing"), "{e}");
        let e = TcbInfo::parse_for(v2.replace("sgxtcbcomp07svn", "x").as_bytes(), DcapTee::Sgx)
            .unwrap_err();
        assert!(e.contains("sgxtcbcomp07svn missing"), "{e}");
    }
}
