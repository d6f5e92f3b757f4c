"""Adapters: catalog of served adapters and their versions, validation, and training."""
