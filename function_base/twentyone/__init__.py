"""The 21 Points function base (data package: its modules are read as text and compiled by the sandbox, never imported)."""
