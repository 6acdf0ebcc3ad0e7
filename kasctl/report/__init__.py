"""What kasctl tells the user about a host (doctor) and about a failed build."""
