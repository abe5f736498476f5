"""The student: text forms, data, the objectives (the loss forms), the Lightning module, training and evaluation."""
