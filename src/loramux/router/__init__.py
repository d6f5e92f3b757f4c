"""Routing of chat requests to an adapter, the base model or a RAG answer.

One module per part: `encoder` (texts to unit vectors), `index` (faiss nearest neighbours),
`training` and `augment` (what the router learns from), `head` (classifier over routes + "none"),
`evidence` (head + neighbour vote per request), `semantic` and `baseline` (routers), `thresholds`
and `calibration` (fitting), `persist` (fitted.yaml + .npz), `data` (labelled JSONL),
`evaluation` and `plots` (reports), `decision` (the `RouteDecision` value), `base` (the `Router`
protocol), `build` (name -> class table, factory) and `batcher` (concurrent decisions in one
encoder pass). Importing this package is light: torch,
sentence-transformers and faiss are imported only when an encoder or index is built.
"""
