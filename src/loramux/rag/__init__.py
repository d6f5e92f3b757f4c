"""Knowledge base for retrieval-augmented answers.

`readers` (files to text blocks), `chunking` (blocks to passages), `store` (generations on disk,
swapped atomically), `ingest` (incremental ingest), `knowledge_base` (retrieval), `prompt` (the RAG
chat messages with citations). faiss and the encoder are loaded only when a knowledge base is.
"""
