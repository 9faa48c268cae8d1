use core::fmt;

/// The TEE kinds the KBS protocol names. The wire spelling ([`Tee::name`]) is also the key
/// under which the Attestation Service nests a verifier's claims in the policy input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tee {
    Sample,
    SampleDevice,
    Tdx,
    Snp,
    AzSnpVtpm,
    AzTdxVtpm,
    Sgx,
    Cca,
    Csv,
    Se,
    Tpm,
    Nvidia,
    HygonDcu,
    NvidiaDpu,
}

impl Tee {
    pub const ALL: [Tee; 14] = [
        Tee::Sample,
        Tee::SampleDevice,
        Tee::Tdx,
        Tee::Snp,
        Tee::AzSnpVtpm,
        Tee::AzTdxVtpm,
        Tee::Sgx,
        Tee::Cca,
        Tee::Csv,
        Tee::Se,
        Tee::Tpm,
        Tee::Nvidia,
        Tee::HygonDcu,
        Tee::NvidiaDpu,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Tee::Sample => "sample",
            Tee::SampleDevice => "sampledevice",
            Tee::Tdx => "tdx",
            Tee::Snp => "snp",
            Tee::AzSnpVtpm => "az-snp-vtpm",
            Tee::AzTdxVtpm => "az-tdx-vtpm",
            Tee::Sgx => "sgx",
            Tee::Cca => "cca",
            Tee::Csv => "csv",
            Tee::Se => "se",
            Tee::Tpm => "tpm",
            Tee::Nvidia => "nvidia",
            Tee::HygonDcu => "hygondcu",
            Tee::NvidiaDpu => "nvidiadpu",
        }
    }

    /// Exact, case-sensitive match on the wire spelling: clients send these verbatim and a
    /// lenient match would let two spellings map to different policy-input keys.
    pub fn from_name(name: &str) -> Option<Tee> {
        Tee::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// Whether this build can verify the TEE's evidence ([`crate::Verifiers::verify`]).
    pub const fn has_verifier(self) -> bool {
        matches!(
            self,
            Tee::Sample
                | Tee::SampleDevice
                | Tee::Tdx
                | Tee::Snp
                | Tee::Sgx
                | Tee::AzSnpVtpm
                | Tee::AzTdxVtpm
                | Tee::Tpm
        )
    }

    /// Whether verification may need [`crate::Inputs`] the caller fetches with I/O this
    /// crate does not do (TDX/SGX collateral, SNP certificates), and is heavy enough
    /// (hardware signatures and certificate chains) to keep off a server's event loop.
    /// `az-snp-vtpm` is one although its VCEK travels in the evidence: it verifies a full SNP
    /// report. `tpm` is not: one RSA or ECDSA check, microseconds, with nothing to fetch.
    pub const fn is_hardware(self) -> bool {
        matches!(
            self,
            Tee::Tdx | Tee::Snp | Tee::Sgx | Tee::AzSnpVtpm | Tee::AzTdxVtpm
        )
    }
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Tee::ALL {
            assert_eq!(Tee::from_name(t.name()), Some(t));
            assert_eq!(t.to_string(), t.name());
        }
    }
}
