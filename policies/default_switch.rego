# Attestation policy for NVSwitch evidence (id "default_switch").
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

switch := input.nvidia

hardware := 2 if {
	switch["x-nvidia-switch-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"] == "good"
	switch["x-nvidia-switch-attestation-report-cert-chain"]["x-nvidia-cert-status"] == "valid"
	switch["x-nvidia-switch-attestation-report-cert-chain-fwid-match"]
	switch["x-nvidia-switch-attestation-report-parsed"]
	switch["x-nvidia-switch-attestation-report-signature-verified"]
	switch["x-nvidia-switch-arch-check"]
}

configuration := 2 if {
	switch["x-nvidia-switch-bios-version"] in query_reference_value("allowed_switch_bios_versions")
}

executables := 3 if {
	switch["x-nvidia-switch-bios-rim-schema-validated"]
	switch["x-nvidia-switch-bios-rim-signature-verified"]
	switch["x-nvidia-switch-bios-rim-measurements-available"]
	switch.measres == "success"
}
