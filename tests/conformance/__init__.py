"""Conformance of rotator.sandbox against Elastic's own YAML REST tests for API keys."""
