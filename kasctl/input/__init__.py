"""What the user gives on the host: the command line, its options, the credentials to share."""
