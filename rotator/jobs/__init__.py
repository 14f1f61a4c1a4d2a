"""Scheduled jobs: each gathers state, plans (pure) and executes through ports."""
