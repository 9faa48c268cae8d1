# Default resource policy for v0.11-era configurations, written to [policy_engine] policy_path
# only when that file does not exist. As upstream's, it denies the sample (test) TEE; the
# `cpu` submod is the one tokens carry under such a configuration.
package policy

import rego.v1

default allow := false

allow if {
	not input.submods.cpu["ear.veraison.annotated-evidence"].sample
}
