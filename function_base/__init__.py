"""The function bases, one data package per task. Their modules are read as text
and compiled by the sandbox; they are never imported."""
