"""TEE spellings on the wire (kbs-types serde names)."""

PRIMARY_TEES = frozenset(
    {"az-snp-vtpm", "az-tdx-vtpm", "snp", "tdx", "sgx", "cca", "csv", "se", "tpm", "sample"}
)
DEVICE_TEES = frozenset({"nvidia", "hygondcu", "nvidiadpu", "sampledevice"})
ALL_TEES = PRIMARY_TEES | DEVICE_TEES
# kbs-types before 0.14 spelled the Azure TEEs without hyphens; clients of those generations
# still send these names.
LEGACY_SPELLINGS = {"azsnpvtpm": "az-snp-vtpm", "aztdxvtpm": "az-tdx-vtpm"}
ACCEPTED_TEES = ALL_TEES | frozenset(LEGACY_SPELLINGS)
# How those clients spell a TEE on the wire (kbs-types 0.7 and 0.10 lowercase the variant name).
LEGACY_WIRE_SPELLING = {current: legacy for legacy, current in LEGACY_SPELLINGS.items()}


def verifier_name(tee: str) -> str:
    """The verifier that handles a TEE spelling."""
    return LEGACY_SPELLINGS.get(tee, tee)
