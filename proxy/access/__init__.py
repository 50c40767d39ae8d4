"""Who may do what: the request guard, caller identity, request limits."""
