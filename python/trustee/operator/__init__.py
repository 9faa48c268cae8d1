"""Kubernetes operator for trustee-py: renders and reconciles the KbsConfig custom resource.

The API lives in `trustee.operator.render` (pure, no kopf) and `trustee.operator.kopf_operator`
(the kopf wiring; `settings`, `kube`, `status` and `reconcile` beside it).
Nothing is re-exported here: a package attribute named `render` would shadow the submodule of
the same name and break dotted patch targets such as "trustee.operator.render.DEFAULT_IMAGE".
"""
