//! Report-field checks against caller expectations: VMPL, report data, host data.

use crate::report::Report;
use crate::VerifyError;

/// Right-pad with zeros or truncate to `len` (as upstream's `regularize_data`).
pub fn regularize(data: &[u8], len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = data.iter().copied().take(len).collect();
    out.resize(len, 0);
    out
}

/// VMPL must be 0 unless the caller accepts guests at a lower privilege level.
pub fn check_vmpl(report: &Report, allow_nonzero: bool) -> Result<(), VerifyError> {
    if report.vmpl != 0 && !allow_nonzero {
        return Err(VerifyError::Vmpl { vmpl: report.vmpl });
    }
    Ok(())
}

/// REPORT_DATA must equal `expected` zero-padded (or truncated) to 64 bytes.
pub fn check_report_data(report: &Report, expected: &[u8]) -> Result<(), VerifyError> {
    let want = regularize(expected, report.report_data.len());
    if want != report.report_data {
        return Err(VerifyError::ReportDataMismatch {
            expected: hex::encode(&want),
            actual: hex::encode(report.report_data),
        });
    }
    Ok(())
}

/// HOST_DATA (the init-data binding) must equal `expected` zero-padded or truncated to 32.
pub fn check_host_data(report: &Report, expected: &[u8]) -> Result<(), VerifyError> {
    let want = regularize(expected, report.host_data.len());
    if want != report.host_data {
        return Err(VerifyError::HostDataMismatch {
            expected: hex::encode(&want),
            actual: hex::encode(report.host_data),
        });
    }
    Ok(())
}
