//! TCB level, TDX module and QE identity matching and the status
//! convergence rules of Intel's QVL.

use crate::error::DcapError;
use crate::pck::PckExtension;
use crate::tcb_info::{IsvLevel, QeIdentity, TcbInfo, TcbLevel, TcbStatus};
use crate::{EnclaveReport, TdReport};

/// Outcome of judging one TEE_TCB_SVN against the TCB info.
#[derive(Debug, Clone)]
pub(crate) struct TdTcb<'a> {
    /// Platform status after the module convergence rule.
    pub(crate) status: TcbStatus,
    pub(crate) platform: &'a TcbLevel,
    pub(crate) module: Option<&'a IsvLevel>,
}

fn sgx_matches(level: &TcbLevel, pck: &PckExtension) -> bool {
    level
        .sgx_components
        .iter()
        .zip(pck.sgx_tcb_components.iter())
        .all(|(need, have)| have >= need)
        && pck.pce_svn >= level.pce_svn
}

/// First level whose SGX part (PCK component SVNs, PCE SVN) and TDX part
/// (TEE_TCB_SVN) both match. Bytes 0–1 of TEE_TCB_SVN are left to the module
/// identity when byte 1 (module major version) is non-zero.
fn platform_level<'a>(
    info: &'a TcbInfo,
    pck: &PckExtension,
    tee_tcb_svn: &[u8; 16],
) -> Result<&'a TcbLevel, DcapError> {
    let first_sgx = info
        .tcb_levels
        .iter()
        .position(|l| sgx_matches(l, pck))
        .ok_or_else(|| DcapError::NoSgxTcbLevel {
            sgx_components: hex::encode(pck.sgx_tcb_components),
            pce_svn: pck.pce_svn,
        })?;
    let start = if tee_tcb_svn[1] > 0 { 2 } else { 0 };
    info.tcb_levels
        .iter()
        .skip(first_sgx)
        .filter(|l| sgx_matches(l, pck))
        .find(|l| {
            (start..16).all(|i| {
                tee_tcb_svn.get(i).copied().unwrap_or(0)
                    >= l.tdx_components.get(i).copied().unwrap_or(u8::MAX)
            })
        })
        .ok_or_else(|| DcapError::NoTdxTcbLevel {
            tee_tcb_svn: hex::encode(tee_tcb_svn),
        })
}

/// SGX platform TCB level: the first level whose SGX components and PCE SVN
/// the PCK certificate meets (an SGX TCB info has no TDX part to match).
pub(crate) fn sgx_level<'a>(
    info: &'a TcbInfo,
    pck: &PckExtension,
) -> Result<&'a TcbLevel, DcapError> {
    let level = info
        .tcb_levels
        .iter()
        .find(|l| sgx_matches(l, pck))
        .ok_or_else(|| DcapError::NoSgxTcbLevel {
            sgx_components: hex::encode(pck.sgx_tcb_components),
            pce_svn: pck.pce_svn,
        })?;
    if level.status == TcbStatus::Revoked {
        return Err(DcapError::TcbRevoked {
            component: "platform TCB level",
        });
    }
    Ok(level)
}

fn masked_eq(value: &[u8], mask: &[u8], expected: &[u8]) -> bool {
    value.len() == mask.len()
        && mask.len() == expected.len()
        && value
            .iter()
            .zip(mask)
            .zip(expected)
            .all(|((v, m), e)| v & m == *e)
}

/// TDX module identity check; returns the module TCB level when the
/// module is versioned (TEE_TCB_SVN[1] > 0).
fn module_level<'a>(
    info: &'a TcbInfo,
    body: &TdReport,
    tee_tcb_svn: &[u8; 16],
) -> Result<Option<&'a IsvLevel>, DcapError> {
    let (identity, versioned) = if tee_tcb_svn[1] == 0 {
        match &info.tdx_module {
            Some(m) => (m, false),
            None => return Ok(None),
        }
    } else {
        let id = format!("TDX_{:02X}", tee_tcb_svn[1]);
        let m = info
            .tdx_module_identities
            .iter()
            .find(|m| m.id.eq_ignore_ascii_case(&id))
            .ok_or(DcapError::TdxModuleIdentityNotFound { id })?;
        (m, true)
    };
    if identity.mrsigner != body.mrsigner_seam {
        return Err(DcapError::TdxModuleMismatch {
            field: "mrsigner",
            expected: hex::encode(&identity.mrsigner),
            found: hex::encode(body.mrsigner_seam),
        });
    }
    if !masked_eq(
        &body.seam_attributes,
        &identity.attributes_mask,
        &identity.attributes,
    ) {
        return Err(DcapError::TdxModuleMismatch {
            field: "seam_attributes",
            expected: format!(
                "{} under mask {}",
                hex::encode(&identity.attributes),
                hex::encode(&identity.attributes_mask)
            ),
            found: hex::encode(body.seam_attributes),
        });
    }
    if !versioned {
        return Ok(None);
    }
    let isv_svn = tee_tcb_svn[0];
    identity
        .tcb_levels
        .iter()
        .find(|l| l.isv_svn <= u16::from(isv_svn))
        .map(Some)
        .ok_or_else(|| DcapError::TdxModuleTcbNotSupported {
            id: identity.id.clone(),
            isv_svn,
        })
}

/// An OutOfDate component pulls a better status down to OutOfDate
/// (keeping a configuration requirement).
fn out_of_date(status: TcbStatus) -> TcbStatus {
    match status {
        TcbStatus::UpToDate | TcbStatus::SWHardeningNeeded => TcbStatus::OutOfDate,
        TcbStatus::ConfigurationNeeded | TcbStatus::ConfigurationAndSWHardeningNeeded => {
            TcbStatus::OutOfDateConfigurationNeeded
        }
        other => other,
    }
}

fn needs_config(s: TcbStatus) -> bool {
    matches!(
        s,
        TcbStatus::ConfigurationNeeded
            | TcbStatus::ConfigurationAndSWHardeningNeeded
            | TcbStatus::OutOfDateConfigurationNeeded
    )
}

/// Platform + module status for one TEE_TCB_SVN.
pub(crate) fn td_tcb<'a>(
    info: &'a TcbInfo,
    pck: &PckExtension,
    body: &TdReport,
    tee_tcb_svn: &[u8; 16],
) -> Result<TdTcb<'a>, DcapError> {
    let platform = platform_level(info, pck, tee_tcb_svn)?;
    if platform.status == TcbStatus::Revoked {
        return Err(DcapError::TcbRevoked {
            component: "platform TCB level",
        });
    }
    let module = module_level(info, body, tee_tcb_svn)?;
    let mut status = platform.status;
    if let Some(m) = module {
        match m.status {
            TcbStatus::Revoked => {
                return Err(DcapError::TcbRevoked {
                    component: "TDX module TCB level",
                })
            }
            TcbStatus::OutOfDate | TcbStatus::OutOfDateConfigurationNeeded => {
                status = out_of_date(status);
            }
            _ => {}
        }
    }
    Ok(TdTcb {
        status,
        platform,
        module,
    })
}

/// TD relaunch advice: the launch TCB is out of date while the current one
/// is not.
pub(crate) fn relaunch(launch: TcbStatus, current: TcbStatus) -> TcbStatus {
    let launch_old = matches!(
        launch,
        TcbStatus::OutOfDate | TcbStatus::OutOfDateConfigurationNeeded
    );
    let current_ok = matches!(
        current,
        TcbStatus::UpToDate
            | TcbStatus::SWHardeningNeeded
            | TcbStatus::ConfigurationNeeded
            | TcbStatus::ConfigurationAndSWHardeningNeeded
    );
    if !(launch_old && current_ok) {
        return current;
    }
    if needs_config(launch) || needs_config(current) {
        TcbStatus::TDRelaunchAdvisedConfigurationNeeded
    } else {
        TcbStatus::TDRelaunchAdvised
    }
}

/// Fold the QE identity status into the TD status.
pub(crate) fn with_qe(status: TcbStatus, qe: TcbStatus) -> TcbStatus {
    if qe == TcbStatus::OutOfDate {
        out_of_date(status)
    } else {
        status
    }
}

/// QE identity match (masked MISCSELECT / ATTRIBUTES, MRSIGNER, ISVPRODID)
/// and the QE TCB level for its ISVSVN.
pub(crate) fn qe_level<'a>(
    id: &'a QeIdentity,
    qe: &EnclaveReport,
) -> Result<&'a IsvLevel, DcapError> {
    let misc = qe.misc_select.to_le_bytes();
    let misc_expected: Vec<u8> = id
        .miscselect
        .iter()
        .zip(id.miscselect_mask.iter())
        .map(|(a, m)| a & m)
        .collect();
    if !masked_eq(&misc, &id.miscselect_mask, &misc_expected) {
        return Err(DcapError::QeIdentityMismatch {
            field: "miscselect",
            expected: format!(
                "{} under mask {}",
                hex::encode(id.miscselect),
                hex::encode(id.miscselect_mask)
            ),
            found: hex::encode(misc),
        });
    }
    let attr_expected: Vec<u8> = id
        .attributes
        .iter()
        .zip(id.attributes_mask.iter())
        .map(|(a, m)| a & m)
        .collect();
    if !masked_eq(&qe.attributes, &id.attributes_mask, &attr_expected) {
        return Err(DcapError::QeIdentityMismatch {
            field: "attributes",
            expected: format!(
                "{} under mask {}",
                hex::encode(id.attributes),
                hex::encode(id.attributes_mask)
            ),
            found: hex::encode(qe.attributes),
        });
    }
    if qe.mr_signer != id.mrsigner {
        return Err(DcapError::QeIdentityMismatch {
            field: "mrsigner",
            expected: hex::encode(id.mrsigner),
            found: hex::encode(qe.mr_signer),
        });
    }
    if qe.isv_prod_id != id.isv_prod_id {
        return Err(DcapError::QeIdentityMismatch {
            field: "isvprodid",
            expected: id.isv_prod_id.to_string(),
            found: qe.isv_prod_id.to_string(),
        });
    }
    let level = id
        .tcb_levels
        .iter()
        .find(|l| l.isv_svn <= qe.isv_svn)
        .ok_or(DcapError::QeTcbNotSupported {
            isv_svn: qe.isv_svn,
        })?;
    if level.status == TcbStatus::Revoked {
        return Err(DcapError::TcbRevoked {
            component: "QE identity TCB level",
        });
    }
    Ok(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_rules() {
        use TcbStatus::*;
        assert_eq!(out_of_date(UpToDate), OutOfDate);
        assert_eq!(out_of_date(SWHardeningNeeded), OutOfDate);
        assert_eq!(
            out_of_date(ConfigurationNeeded),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(out_of_date(OutOfDate), OutOfDate);
        assert_eq!(with_qe(UpToDate, UpToDate), UpToDate);
        assert_eq!(
            with_qe(ConfigurationAndSWHardeningNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(relaunch(OutOfDate, UpToDate), TDRelaunchAdvised);
        assert_eq!(
            relaunch(OutOfDate, ConfigurationNeeded),
            TDRelaunchAdvisedConfigurationNeeded
        );
        assert_eq!(
            relaunch(OutOfDateConfigurationNeeded, UpToDate),
            TDRelaunchAdvisedConfigurationNeeded
        );
        assert_eq!(relaunch(UpToDate, UpToDate), UpToDate);
        assert_eq!(relaunch(OutOfDate, OutOfDate), OutOfDate);
    }

    #[test]
    fn masks() {
        assert!(masked_eq(&[0xff, 0x01], &[0x0f, 0x00], &[0x0f, 0x00]));
        assert!(!masked_eq(&[0xff], &[0x0f, 0x00], &[0x0f, 0x00]));
        assert!(!masked_eq(&[0xf0], &[0x0f], &[0x0f]));
    }
}
