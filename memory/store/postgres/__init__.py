"""The PostgreSQL store (several instances sharing one memory) and the import from SQLite."""
