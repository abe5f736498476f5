"""The student: text forms, data, the Lightning module (standard or counterfactual loss), training and evaluation."""
