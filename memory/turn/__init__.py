"""A turn: aligning a request with the stored transcript, and the turn's plan."""
