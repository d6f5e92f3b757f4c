"""Serving engines: the `Engine` protocol, engine-neutral types, and the engines behind them."""
