"""Documents to a searchable store: loaders, chunking, embeddings, FAISS + SQLite, search.

Knows nothing of chat; ``chatbot`` depends on it, never the other way round.
"""
