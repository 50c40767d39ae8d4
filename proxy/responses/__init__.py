"""The Responses API route: items, wire shapes, the upstream."""
