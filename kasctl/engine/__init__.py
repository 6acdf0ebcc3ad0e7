"""Talking to the engines: a RunPlan rendered as the engine's command line, run, and cleaned up."""
