"""trustee-py: the Confidential Containers Key Broker Service and Attestation Service."""

__version__ = "0.1.0"
