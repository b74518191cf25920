"""First-party tracking that keeps the policy: pixels, beacons, links, SDK events, e-mail."""
