"""The SQLite store (the embedded default): schema migrations, writes, reads, admin, inspection."""
