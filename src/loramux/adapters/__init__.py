"""Adapters: content-named versions, their checks, the registry with traffic splits and
experiments, and training."""
