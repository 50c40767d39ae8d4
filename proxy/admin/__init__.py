"""The operator's side: /memory/* routes, the inspector page, retention."""
