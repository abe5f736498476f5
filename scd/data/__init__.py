"""Data sets normalized to one example type, and the answer perturbations that contrast and counterfactuals need."""
