"""Request-method handlers: one module per method family, and the registry of them."""
