"""The chat completions route: wire shapes, the upstream (litellm), replies."""
