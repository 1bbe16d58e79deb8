"""The labels every prompt store knows (a light module: the CLI's option defaults read it without loading the store)."""

__all__ = ["LATEST", "PRODUCTION"]

#: The label agents read by default; nights compare candidates with it.
PRODUCTION = "production"
#: Virtual label: always the highest version; it cannot be moved.
LATEST = "latest"
