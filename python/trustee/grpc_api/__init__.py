"""gRPC stubs for the Attestation Service (attestation.proto) and the RVPS (reference.proto).

The *_pb2* modules are generated from proto/ at the repository top by `make grpc-stubs` and
committed; a unit test checks that regenerating gives the same files.
"""
