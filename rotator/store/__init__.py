"""The durable record: tables, engine and sessions, repositories and the leader lease."""
