"""Pure decisions: which privileges a cell gets, and the RunPlan that carries them."""
