"""rotator: keeps Elasticsearch API keys for ingestion pipelines valid, minimal and fresh."""

__version__ = "0.1.0"
