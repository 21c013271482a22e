#!/usr/bin/env python3
"""A sidecar that fails at once (status 3): what a crash loop looks like to the supervisor."""
import sys

print("crash-sidecar: giving up", file=sys.stderr)
sys.exit(3)
