//! SGX: an enclave's DCAP quote v3 (`{"quote": base64}`, as the SGX DCAP attester of Occlum
//! and Gramine enclaves sends it) against caller-fetched collateral, with the report-data and
//! init-data (config id) bindings upstream checks.

use std::sync::Arc;

use trustee_tdx::ParseError;

use crate::hardware::{check_dcap_bindings, quote_document, refuse_version, Dcap};
use crate::{ClaimsEntry, Expectations, Inputs, Verifier, VerifyError};

pub(crate) struct Sgx {
    dcap: Arc<Dcap>,
}

impl Sgx {
    pub(crate) fn new(dcap: Arc<Dcap>) -> Self {
        Self { dcap }
    }
}

impl Verifier for Sgx {
    /// The quote against its SGX collateral, then REPORT_DATA and CONFIGID against the
    /// expected values regularized to 64 bytes. One `cpu` entry.
    fn verify(
        &self,
        evidence: &[u8],
        expected: Expectations<'_>,
        inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError> {
        let (_, quote) = quote_document("sgx", evidence)?;
        refuse_version("sgx", &quote, |v| v != 3, ParseError::UnsupportedSgxVersion)?;
        let verified = self
            .dcap
            .appraise("sgx", inputs, |dcap, collateral, opts| {
                dcap.verify_sgx_quote(&quote, collateral, opts)
            })?;
        let body = &verified.quote.body;
        check_dcap_bindings(
            "sgx",
            &expected,
            &body.report_data,
            ("CONFIGID", &body.config_id),
        )?;
        Ok(vec![(verified.claims, "cpu".into())])
    }
}
