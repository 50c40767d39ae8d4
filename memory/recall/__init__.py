"""Recall: exact token counts, embeddings and their queue, full-text and vector ranking, the session view."""
