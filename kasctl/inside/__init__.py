"""What runs inside the container: stdlib-only, and imported by the host only where shared."""
