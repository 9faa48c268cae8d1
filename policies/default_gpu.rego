# Attestation policy for GPU evidence (id "default_gpu").
#
# Affirms NVIDIA GPUs whose attestation report and certificate chain checked out. The sample
# device is deliberately never affirmed here: tests and operators set their own gpu policy.
package policy

import rego.v1

default executables := 33

default hardware := 97

default configuration := 36

default file_system := 0

default instance_identity := 0

default runtime_opaque := 0

default storage_opaque := 0

default sourced_data := 0

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"file-system": file_system,
	"instance-identity": instance_identity,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": storage_opaque,
	"sourced-data": sourced_data,
}

gpu := input.nvidia

hardware := 2 if {
	gpu["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"] == "good"
	gpu["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-status"] == "valid"
	gpu["x-nvidia-gpu-attestation-report-cert-chain-fwid-match"]
	gpu["x-nvidia-gpu-attestation-report-parsed"]
	gpu["x-nvidia-gpu-attestation-report-signature-verified"]
	gpu["x-nvidia-gpu-arch-check"]
}

gpu_secure_boot if {
	gpu.secboot
	gpu.dbgstat == "disabled"
}

gpu_versions_expected if {
	gpu["x-nvidia-gpu-vbios-version"] in query_reference_value("allowed_vbios_versions")
	gpu["x-nvidia-gpu-driver-version"] in query_reference_value("allowed_driver_versions")
}

configuration := 2 if {
	gpu_secure_boot
	gpu_versions_expected
}

configuration := 3 if {
	gpu_secure_boot
	not gpu_versions_expected
}

executables := 3 if {
	gpu["x-nvidia-gpu-driver-rim-schema-validated"]
	gpu["x-nvidia-gpu-driver-rim-signature-verified"]
	gpu["x-nvidia-gpu-driver-rim-measurements-available"]
	gpu["x-nvidia-gpu-vbios-rim-schema-validated"]
	gpu["x-nvidia-gpu-vbios-rim-signature-verified"]
	gpu["x-nvidia-gpu-vbios-rim-measurements-available"]
	gpu.measres == "success"
}
