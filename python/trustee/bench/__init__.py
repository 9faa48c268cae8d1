"""`trustee bench`: load and verification benchmarks of any KBS or Attestation Service, ours or
upstream's, with results people can compare (`trustee bench report`)."""
