# Attestation policy "default" for v0.11-era configurations: one rule per trust claim, with
# reference values in data.reference (name → list of accepted values), as that generation's
# attestation service evaluated them. Without reference values the sample TEE appraises as
# contraindicated (configuration 36, executables 33, hardware 97).
package policy

import rego.v1

default executables := 33

default hardware := 97

default configuration := 36

executables := 3 if {
	input.sample
	input.sample.launch_digest in data.reference.launch_digest
}

hardware := 2 if {
	input.sample
	input.sample.svn in data.reference.svn
}

executables := 3 if {
	input.snp
	input.snp.measurement in data.reference.snp_launch_measurement
}

hardware := 2 if {
	input.snp
	input.snp.reported_tcb_bootloader in data.reference.snp_bootloader
	input.snp.reported_tcb_microcode in data.reference.snp_microcode
	input.snp.reported_tcb_snp in data.reference.snp_snp_svn
	input.snp.reported_tcb_tee in data.reference.snp_tee_svn
}

configuration := 2 if {
	input.snp
	input.snp.policy_debug_allowed == false
	input.snp.policy_migrate_ma == false
}

executables := 3 if {
	input.tdx
	input.tdx.quote.body.rtmr_1 in data.reference.rtmr_1
	input.tdx.quote.body.rtmr_2 in data.reference.rtmr_2
}

hardware := 2 if {
	input.tdx
	input.tdx.quote.header.tee_type == "81000000"
	input.tdx.quote.body.mr_td in data.reference.mr_td
	input.tdx.tcb_status == "UpToDate"
}

configuration := 2 if {
	input.tdx
	input.tdx.td_attributes.debug == false
	input.tdx.quote.body.xfam in data.reference.xfam
}
