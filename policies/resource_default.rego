# Default resource policy (id "resource-policy"), installed only when none is stored.
# It releases resources to attested guests but never to the sample (test) TEE, so a fresh
# server does not hand secrets to anyone who can run the sample attester.
package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
