"""HTTP routes, one module per API area; each handler calls one service method."""
