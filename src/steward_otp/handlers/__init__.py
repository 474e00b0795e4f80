"""Request-method handlers: one module per method family, and the registry that maps names to them."""
