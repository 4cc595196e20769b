"""Operations compiled outside XLA and called through its FFI (optional backends)."""
