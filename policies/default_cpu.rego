# Attestation policy for CPU evidence (id "default_cpu").
#
# It answers with AR4SI trust claims: 2/3 mean the evidence matched reference values,
# 33/36/97 mean nothing vouched for it. Every TEE section is guarded by the presence of that
# TEE's claims, so only the evidence actually presented contributes. Reference values are
# fetched one id at a time with query_reference_value(id); `in` needs a list there.
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

# --- sample (test TEE) ---

executables := 3 if {
	input.sample
	input.sample.launch_digest in query_reference_value("launch_digest")
}

hardware := 2 if {
	input.sample
	input.sample.svn in query_reference_value("svn")
	input.sample.platform_version.major == query_reference_value("major_version")
	input.sample.platform_version.minor >= query_reference_value("minimum_minor_version")
}

configuration := 2 if {
	input.sample
	input.sample.debug == false
}

# --- AMD SEV-SNP ---

executables := 3 if {
	input.snp
	input.snp.measurement in query_reference_value("snp_launch_measurement")
}

hardware := 2 if {
	input.snp
	input.snp.reported_tcb_bootloader in query_reference_value("snp_bootloader")
	input.snp.reported_tcb_microcode in query_reference_value("snp_microcode")
	input.snp.reported_tcb_snp in query_reference_value("snp_snp_svn")
	input.snp.reported_tcb_tee in query_reference_value("snp_tee_svn")
}

snp_policy_safe if {
	input.snp
	input.snp.policy_debug_allowed == false
	input.snp.policy_migrate_ma == false
}

snp_platform_expected if {
	input.snp.platform_smt_enabled == query_reference_value("snp_smt_enabled")
	input.snp.platform_tsme_enabled == query_reference_value("snp_tsme_enabled")
	input.snp.policy_abi_major == query_reference_value("snp_guest_abi_major")
	input.snp.policy_abi_minor == query_reference_value("snp_guest_abi_minor")
	input.snp.policy_single_socket == query_reference_value("snp_single_socket")
	input.snp.policy_smt_allowed == query_reference_value("snp_smt_allowed")
}

configuration := 2 if {
	snp_policy_safe
	snp_platform_expected
}

configuration := 3 if {
	snp_policy_safe
	not snp_platform_expected
}

# --- Intel TDX ---

tdx_rtmrs_expected if {
	input.tdx
	input.tdx.quote.body.rtmr_1 in query_reference_value("rtmr_1")
	input.tdx.quote.body.rtmr_2 in query_reference_value("rtmr_2")
}

tdx_kernel_expected if {
	some event in input.tdx.uefi_event_logs
	event.type_name == "EV_EFI_BOOT_SERVICES_APPLICATION"
	"File(kernel)" in event.details.device_paths
	some d in event.digests
	d.digest == query_reference_value("tdvfkernel")
}

tdx_kernel_params_expected if {
	some event in input.tdx.uefi_event_logs
	event.type_name == "EV_EVENT_TAG"
	event.details.string == "LOADED_IMAGE::LoadOptions"
	some d in event.digests
	d.digest == query_reference_value("tdvfkernelparams")
}

tdx_boot_expected if {
	tdx_kernel_expected
	tdx_kernel_params_expected
}

executables := 3 if {
	tdx_rtmrs_expected
	tdx_boot_expected
}

# Boot paths without the TDVF events (e.g. grub) can only vouch for the RTMRs.
executables := 4 if {
	tdx_rtmrs_expected
	not tdx_boot_expected
}

hardware := 2 if {
	input.tdx
	input.tdx.quote.header.tee_type == "81000000"
	input.tdx.quote.header.vendor_id == "939a7233f79c4ca9940a0db3957f0607"
	input.tdx.quote.body.mr_td in query_reference_value("mr_td")
	input.tdx.tcb_status == "UpToDate"
	input.tdx.collateral_expiration_status == "0"
}

configuration := 2 if {
	input.tdx
	input.tdx.td_attributes.debug == false
	input.tdx.quote.body.xfam in query_reference_value("xfam")
}

# --- Azure SEV-SNP CVM with vTPM ---

executables := 3 if {
	input["az-snp-vtpm"]
	input["az-snp-vtpm"].measurement in query_reference_value("measurement")
	input["az-snp-vtpm"].tpm.pcr11 in query_reference_value("snp_pcr11")
}

hardware := 2 if {
	input["az-snp-vtpm"]
	input["az-snp-vtpm"].reported_tcb_bootloader in query_reference_value("tcb_bootloader")
	input["az-snp-vtpm"].reported_tcb_microcode in query_reference_value("tcb_microcode")
	input["az-snp-vtpm"].reported_tcb_snp in query_reference_value("tcb_snp")
	input["az-snp-vtpm"].reported_tcb_tee in query_reference_value("tcb_tee")
}

configuration := 2 if {
	input["az-snp-vtpm"]
	input["az-snp-vtpm"].platform_smt_enabled in query_reference_value("smt_enabled")
	input["az-snp-vtpm"].platform_tsme_enabled in query_reference_value("tsme_enabled")
	input["az-snp-vtpm"].policy_abi_major in query_reference_value("abi_major")
	input["az-snp-vtpm"].policy_abi_minor in query_reference_value("abi_minor")
	input["az-snp-vtpm"].policy_single_socket in query_reference_value("single_socket")
	input["az-snp-vtpm"].policy_smt_allowed in query_reference_value("smt_allowed")
}

# --- Azure TDX CVM with vTPM ---

executables := 3 if {
	input["az-tdx-vtpm"]
	input["az-tdx-vtpm"].tpm.pcr11 in query_reference_value("tdx_pcr11")
}

hardware := 2 if {
	input["az-tdx-vtpm"]
	input["az-tdx-vtpm"].quote.header.tee_type == "81000000"
	input["az-tdx-vtpm"].quote.header.vendor_id == "939a7233f79c4ca9940a0db3957f0607"
	input["az-tdx-vtpm"].quote.body.mr_td in query_reference_value("mr_td")
	input["az-tdx-vtpm"].tcb_status == "UpToDate"
}

configuration := 2 if {
	input["az-tdx-vtpm"]
	input["az-tdx-vtpm"].quote.body.xfam in query_reference_value("xfam")
}

# --- TPM ---

executables := 3 if {
	input.tpm
	input.tpm.pcr11 in query_reference_value("tpm_pcr11")
	input.tpm.ak_public in query_reference_value("trusted_aks")
}

# Our extension: an AK certified by a configured root (`tpm_ak_roots`) is trusted without
# being listed in `trusted_aks`.
executables := 3 if {
	input.tpm
	input.tpm.pcr11 in query_reference_value("tpm_pcr11")
	input.tpm.ak_certified == true
}

hardware := 2 if input.tpm

configuration := 0 if input.tpm

# --- Intel SGX (DCAP) ---
# Upstream's policy has no SGX section, so SGX evidence could never be affirmed; these rules
# follow the TDX section with the enclave's identity in place of the TD's.

executables := 3 if {
	input.sgx
	input.sgx.body.mr_enclave in query_reference_value("mr_enclave")
	input.sgx.body.mr_signer in query_reference_value("mr_signer")
}

hardware := 2 if {
	input.sgx
	input.sgx.header.vendor_id == "939a7233f79c4ca9940a0db3957f0607"
	input.sgx.tcb_status == "UpToDate"
}

configuration := 2 if {
	input.sgx
	not sgx_debug
	input.sgx.body.isv_prod_id in query_reference_value("isv_prod_id")
	input.sgx.body.isv_svn in query_reference_value("isv_svn")
}

# ATTRIBUTES.DEBUG is bit 1 of the first flags byte, i.e. of the claim's second hex digit.
sgx_debug if substring(input.sgx.body["attributes.flags"], 1, 1) in {"2", "3", "6", "7", "a", "b", "e", "f"}

# --- IBM Secure Execution ---

executables := 3 if input.se

hardware := 2 if input.se

configuration := 2 if input.se

# --- Workload identifiers from the init-data agent policy ---

container_images := [image |
	some container in input.init_data_claims.agent_policy_claims.containers
	image := container.OCI.Annotations["io.kubernetes.cri.image-name"]
]

container_uids := [uid |
	some container in input.init_data_claims.agent_policy_claims.containers
	uid := container.OCI.Process.User.UID
]

validated_images := {"container_images": container_images} if {
	count(container_images) > 0
} else := {}

validated_uids := {"container_uids": container_uids} if {
	count(container_uids) > 0
} else := {}

# Without an agent policy there is nothing to collect; the constant default keeps the common
# case from walking the comprehensions above.
default extensions := [{"name": "ear.trustee.identifiers", "key": -18, "value": {"validated": {}}}]

extensions := [{
	"name": "ear.trustee.identifiers",
	"key": -18,
	"value": {"validated": object.union(validated_images, validated_uids)},
}] if {
	input.init_data_claims.agent_policy_claims.containers
}
