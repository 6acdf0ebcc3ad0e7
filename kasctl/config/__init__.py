"""Reading kas config files on the host, before any container starts, split by job.

files (one file read and validated) builds on yaml_lines (YAML with the line
of every key) and validate (the schema, its messages, the cache of valid
files); repo finds the repository and a worktree; includes checks and merges
local includes; read is what the command line uses: the configs a command
names, with their repository and build system.
"""
