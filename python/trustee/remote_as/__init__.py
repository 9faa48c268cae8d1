"""The KBS's clients of an Attestation Service in another process: `coco_as_restful` (upstream's
REST AS API over httpx) and `coco_as_grpc` (upstream's attestation.proto and reference.proto
over grpcio). Both satisfy trustee.attestation.backend.AttestationBackend; `build` makes the
one a configuration names. Beside them, `rvps_client`: an AS's client of an RVPS in another
process (`rvps_config.type = "GrpcRemote"`)."""
