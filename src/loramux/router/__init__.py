"""Routing of chat requests to an adapter, the base model or a RAG answer: what runs per request.

`base` (the `Router` protocol, the route table, abstention), `decision` (the `RouteDecision`
value), `semantic` and `baseline` (the routers), `evidence` (head + neighbour vote per request),
`head` (classifier over routes + "none"), `training` and `augment` (the labelled set a router
is built from), `persist` (fitted.yaml + .npz), `versions` (content-named fitted routers, the
active one, rollback), `build` (the name -> class table and the
factory) and `batcher` (concurrent decisions in one encoder pass). Encoders and indexes are
`loramux.embed`; fitting and evaluation are `router.fit`. Importing this package is light:
torch, sentence-transformers and faiss are imported only when an encoder or index is built.
"""
