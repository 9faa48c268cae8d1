"""The Attestation Service and the RVPS as servers of their own (upstream's APIs)."""
