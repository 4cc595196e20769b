"""Unlearning methods: Adapt-then-Unlearn parameter-space mathematics (EWC, repulsion, extrapolation)."""
