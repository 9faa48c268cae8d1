# Attestation policy for protected-PCIe topology evidence (id "default_ppcie"): the topology
# checks happen in the verifier, so a verified topology is configuration-affirmed.
package policy

import rego.v1

trust_claims := {
	"executables": 0,
	"hardware": 0,
	"configuration": 2,
	"file-system": 0,
	"instance-identity": 0,
	"runtime-opaque": 0,
	"storage-opaque": 0,
	"sourced-data": 0,
}
