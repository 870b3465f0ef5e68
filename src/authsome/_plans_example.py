"""The sample plans file that ``authsome plans example`` prints.

It ships inside the package (a clone's ``examples/plans.toml`` is not in the wheel),
and the demo's plans are read from it, so the sample always describes plans that load.
"""

from __future__ import annotations

__all__ = ["EXAMPLE_PLANS"]

EXAMPLE_PLANS = """\
# A sample plans file for `authsome plans load FILE --db URL`: the two plans of
# `authsome demo`. Edit it, then load it (loading again is safe: a plan that did not
# change keeps its version).
#
#   authsome plans example > plans.toml
#   authsome plans load plans.toml --db app.db
#   authsome subscribe acme starter --db app.db
#
# Each [[plans]] table is a plan; each [[plans.features]] below it, one feature:
#   kind = "boolean"  on or off: switches a plan-gated operation (authsome.feature.*)
#   kind = "metered"  usage counted per billing period, up to an optional limit
#   kind = "seat"     a current count (e.g. organization members), optional limit
# A key the file does not know is an error, so a typo cannot pass unnoticed.

[[plans]]
key = "starter"              # what tenants subscribe to
name = "Starter"             # optional display name (defaults to the key)
interval = "monthly"         # billing cycle: "monthly" (default) or "yearly"

# Plan-gated operations: the auth engine asks before each one.
[[plans.features]]
key = "authsome.feature.mfa"
kind = "boolean"
enabled = true               # optional, default true

[[plans.features]]
key = "authsome.feature.sso"
kind = "boolean"
enabled = false              # configuring SSO is refused on this plan

[[plans.features]]
key = "authsome.feature.orgs"
kind = "boolean"
enabled = true

[[plans.features]]
key = "authsome.feature.passkeys"
kind = "boolean"
enabled = true

[[plans.features]]
key = "authsome.feature.custom_domains"
kind = "boolean"
enabled = false

# Usage the auth engine records after each operation.
[[plans.features]]
key = "authsome.users.active"
kind = "metered"
limit = 1_000                # omit for unlimited
# soft_limit = 800           # past it, use is still allowed but flagged as overage
period = "monthly"           # "monthly" (default), "yearly" or "none" (never resets)
aggregation = "unique"       # "sum" (default) or "unique": distinct users, i.e. MAU

[[plans.features]]
key = "authsome.users.created"
kind = "metered"

[[plans.features]]
key = "authsome.sessions.created"
kind = "metered"

[[plans.features]]
key = "authsome.mfa.enrollments"
kind = "metered"

[[plans.features]]
key = "authsome.apikeys.validated"
kind = "metered"

[[plans.features]]
key = "authsome.orgs.members"
kind = "seat"                # members now, not joins per period


[[plans]]
key = "business"
name = "Business"
interval = "monthly"

# Every operation allowed, nothing limited.
[[plans.features]]
key = "authsome.feature.mfa"
kind = "boolean"

[[plans.features]]
key = "authsome.feature.sso"
kind = "boolean"

[[plans.features]]
key = "authsome.feature.orgs"
kind = "boolean"

[[plans.features]]
key = "authsome.feature.passkeys"
kind = "boolean"

[[plans.features]]
key = "authsome.feature.custom_domains"
kind = "boolean"

[[plans.features]]
key = "authsome.users.active"
kind = "metered"
aggregation = "unique"

[[plans.features]]
key = "authsome.users.created"
kind = "metered"

[[plans.features]]
key = "authsome.sessions.created"
kind = "metered"

[[plans.features]]
key = "authsome.mfa.enrollments"
kind = "metered"

[[plans.features]]
key = "authsome.apikeys.validated"
kind = "metered"

[[plans.features]]
key = "authsome.orgs.members"
kind = "seat"
"""
