"""The commands, by what they work on. Each module lists its commands in COMMANDS."""
