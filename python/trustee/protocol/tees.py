"""TEE spellings on the wire (kbs-types serde names)."""

PRIMARY_TEES = frozenset(
    {"az-snp-vtpm", "az-tdx-vtpm", "snp", "tdx", "sgx", "cca", "csv", "se", "tpm", "sample"}
)
DEVICE_TEES = frozenset({"nvidia", "hygondcu", "nvidiadpu", "sampledevice"})
ALL_TEES = PRIMARY_TEES | DEVICE_TEES
