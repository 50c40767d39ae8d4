"""Storage: the store protocol, opening a store by path or URL, session locks; one folder per backend."""
