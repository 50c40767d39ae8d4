"""The prompt: layout (frame, window, evidence), the compiler, the state block, the layout policy."""
