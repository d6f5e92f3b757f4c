"""Text embeddings shared by the router and the knowledge base.

`encoder` (texts to unit vectors: the embedded all-MiniLM-L6-v2 or any sentence-transformers
folder, with an LRU cache), `index` (faiss nearest neighbours by inner product) and `device`
(where the embedder runs). torch, sentence-transformers and faiss are imported only when an
encoder or an index is built.
"""
