"""Per-department API keys (stored hashed, with the adapters each may use) and per-key rate
limits."""
