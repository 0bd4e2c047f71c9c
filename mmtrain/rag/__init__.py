"""Retrieval: VectorIndex (FAISS), KnowledgeBase (chunk -> embed -> index, with
attribution), and the knowledge graph in mmtrain.rag.graph. See docs/rag.md."""
